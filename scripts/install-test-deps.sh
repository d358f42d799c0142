#!/usr/bin/env bash
# Installs the Debian packages the tests need, only when missing: Dovecot
# (dovecot-imapd) for the IMAP tests, PostgreSQL, python3-venv, and Chromium
# with its driver and npm for the browser tests; then fetches axe-core from npm
# into .cache/axe-core/ (not committed). Idempotent and quiet; apt runs as root,
# or through sudo otherwise. The tests start their own Dovecot with their own
# configuration; the system service is not used.
set -euo pipefail
cd "$(dirname "$0")/.."

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

# The browser tests: Debian's Chromium and its WebDriver (Selenium drives it;
# nothing is downloaded at test time), npm to fetch axe-core.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)

if [ ${#need[@]} -gt 0 ]; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-test-deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
    as_root=(sudo)
  fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
fi

# axe-core (the accessibility checker the browser tests inject), major version
# 4, as the tests' user: .cache/axe-core/package/axe.min.js.
axe=.cache/axe-core
if [ ! -s "$axe/package/axe.min.js" ]; then
  rm -rf "$axe" && mkdir -p "$axe"
  npm pack --silent --pack-destination "$axe" axe-core@4 >/dev/null
  tar -xzf "$axe"/axe-core-*.tgz -C "$axe" package/axe.min.js package/package.json package/LICENSE
fi
