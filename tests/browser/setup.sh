#!/bin/sh
# Installs what the browser tests need on a Debian machine: Chromium, the NSS
# tools (certutil, pk12util), openssl, and playwright-core from package-lock.json.
# Idempotent; apt-get runs only when something is missing.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
need=""
[ -x /usr/bin/chromium ] || need="$need chromium"
command -v certutil >/dev/null 2>&1 || need="$need libnss3-tools"
command -v pk12util >/dev/null 2>&1 || need="$need libnss3-tools"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
if [ -n "$need" ]; then
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need
fi
cd "$here"
npm ci --no-audit --no-fund
