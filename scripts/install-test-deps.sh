#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when missing: Dovecot
# (dovecot-imapd) for the IMAP tests, PostgreSQL, and python3-venv.
# Idempotent and quiet; runs as root, or through sudo otherwise. The tests start their own Dovecot with
# their own configuration; the system service is not used.
set -euo pipefail

need=()
[ -x /usr/sbin/dovecot ] && dpkg-query -W -f='${Status}' dovecot-imapd 2>/dev/null | grep -q "ok installed" \
  || need+=(dovecot-imapd)

# PostgreSQL server binaries (initdb, pg_ctl) and pg_dump for the store tests.
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
  || need+=(postgresql)
command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)

# The virtual environment scripts/test installs into (Debian splits ensurepip off).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)

# The openssl command: the independent reader and writer of S/MIME in the tests.
command -v openssl >/dev/null 2>&1 || need+=(openssl)

[ ${#need[@]} -eq 0 ] && exit 0

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-test-deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${need[@]}" >/dev/null
