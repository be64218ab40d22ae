#!/usr/bin/env bash
# Installs what certgate's demo and tests need on a fresh Debian 12 machine. Idempotent.
# Needs root (or sudo) for apt-get. Rust (cargo) is expected to be installed already.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have softhsm2-util || need_apt+=(softhsm2)
have pkcs11-tool || need_apt+=(opensc)
have certutil || need_apt+=(libnss3-tools)
have openssl || need_apt+=(openssl)
have curl || need_apt+=(curl)
have pki || need_apt+=(strongswan-pki)
# pki --est fetches over HTTP through strongSwan's curl plugin.
[ -e /usr/lib/ipsec/plugins/libstrongswan-curl.so ] || need_apt+=(libstrongswan-extra-plugins)
# ... and parses the EC (P-256) CA certificate through its openssl plugin.
[ -e /usr/lib/ipsec/plugins/libstrongswan-openssl.so ] || need_apt+=(libstrongswan-standard-plugins)
have chromium || need_apt+=(chromium)
have nginx || need_apt+=(nginx)
have haproxy || need_apt+=(haproxy)
have ab || need_apt+=(apache2-utils)
# bench/run.sh counts instructions per request with callgrind.
have callgrind_control || need_apt+=(valgrind)
have systemd-analyze || need_apt+=(systemd)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# pkilint lints certificates, CRLs and OCSP responses in the tests.
if ! have lint_pkix_cert; then
  echo "setup: installing pkilint"
  python3 -m pip install --quiet pkilint
fi

# kubernetes-validate checks deploy/kubernetes offline against the schemas it ships
# (deploy/check.sh).
if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
  echo "setup: installing kubernetes-validate"
  python3 -m pip install --quiet kubernetes-validate
fi

if ! have cargo-nextest && ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

# The browser test harness (playwright-core drives Debian's chromium).
if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules ]; then
  echo "setup: installing the browser test harness"
  (cd tests/browser && npm ci --silent --no-audit --no-fund)
fi

# PostgreSQL serves the multi-instance tests; start the local cluster if it is installed
# but stopped.
if have pg_ctlcluster && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  ver=$(ls /etc/postgresql 2>/dev/null | head -n1)
  if [ -n "$ver" ]; then
    echo "setup: starting PostgreSQL $ver"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
  fi
fi
