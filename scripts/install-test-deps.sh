#!/usr/bin/env bash
# Installs the Debian packages the test servers need, only when missing.
set -euo pipefail
need=()
command -v /usr/sbin/dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
if [ ${#need[@]} -gt 0 ]; then
  sudo_=""
  [ "$(id -u)" -eq 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${need[@]}" >/dev/null
fi
