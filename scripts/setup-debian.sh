#!/usr/bin/env bash
# Installs what certgate's demo and tests need on a fresh Debian 12 machine. Idempotent.
# Needs root (or sudo) for apt-get. Rust (cargo) is expected to be installed already.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have softhsm2-util || need_apt+=(softhsm2)
have pkcs11-tool || need_apt+=(opensc)
# A second PKCS#11 implementation for the HSM tests: openCryptoki's software token.
have pkcsslotd || need_apt+=(opencryptoki)
have certutil || need_apt+=(libnss3-tools)
have openssl || need_apt+=(openssl)
have curl || need_apt+=(curl)
# Tests move a code's expiry into the past directly in the SQLite file.
have sqlite3 || need_apt+=(sqlite3)
have pki || need_apt+=(strongswan-pki)
# pki --est fetches over HTTP through strongSwan's curl plugin.
[ -e /usr/lib/ipsec/plugins/libstrongswan-curl.so ] || need_apt+=(libstrongswan-extra-plugins)
# ... and parses the EC (P-256) CA certificate through its openssl plugin.
[ -e /usr/lib/ipsec/plugins/libstrongswan-openssl.so ] || need_apt+=(libstrongswan-standard-plugins)
have chromium || need_apt+=(chromium)
# The browser tests screenshot the Japanese pages: without a CJK font they show boxes.
[ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || need_apt+=(fonts-noto-cjk)
have nginx || need_apt+=(nginx)
have haproxy || need_apt+=(haproxy)
have ab || need_apt+=(apache2-utils)
# bench/run.sh counts instructions per request with callgrind.
have callgrind_control || need_apt+=(valgrind)
have systemd-analyze || need_apt+=(systemd)
# promtool (/usr/bin/promtool) checks and unit-tests deploy/prometheus (deploy/check.sh).
# The package also brings a Prometheus server for :9090, the demo's admin port: it is
# installed with services held back (policy-rc.d below) and disabled, so nothing listens.
have promtool || need_apt+=(prometheus)
# The grace-after-expiry tests run the gateway some days ahead of the clock.
have faketime || need_apt+=(faketime)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  # No package may start a service while it installs (prometheus would take :9090); a
  # policy-rc.d of the machine's own is left as it was.
  held_back=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    held_back=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  [ -z "$held_back" ] || $SUDO rm -f /usr/sbin/policy-rc.d
  # Only a Prometheus this run installed; one the machine already had is left alone.
  if [[ " ${need_apt[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1 \
    && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
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

# openCryptoki: its slot daemon must run, and its one software token (slot 3) is the HSM
# tests' second token, labelled certgate-test (the tests delete every object on it, so no
# real key may live there). Its PINs are 4-8 characters; these are the tests' throwaway
# ones (softhsm-tests/support/token.rs). The factory SO PIN is 87654321.
OCK_SLOT=3
OCK_LABEL=certgate-test
OCK_SO_PIN=5678test
OCK_USER_PIN=1234test
if have pkcsslotd; then
  # pkcsconf answers only while the daemon runs (no pgrep: procps may be missing).
  if ! pkcsconf -s >/dev/null 2>&1; then
    echo "setup: starting pkcsslotd"
    $SUDO mkdir -p /run/opencryptoki
    $SUDO pkcsslotd
  fi
  # Into a variable first: under pipefail, grep -q closing the pipe early would count as
  # a failure of pkcsconf.
  ock_token=$(pkcsconf -t -c "$OCK_SLOT" 2>/dev/null || true)
  if ! grep -q "Label: $OCK_LABEL " <<<"$ock_token"; then
    echo "setup: initialising openCryptoki's soft token as $OCK_LABEL"
    printf '87654321\n%s\n' "$OCK_LABEL" | $SUDO pkcsconf -I -c "$OCK_SLOT" >/dev/null
    $SUDO pkcsconf -c "$OCK_SLOT" -P -S 87654321 -n "$OCK_SO_PIN" >/dev/null
    # The user PIN is set by the SO, then changed by the user: openCryptoki flags a PIN the
    # SO set as "to be changed".
    $SUDO pkcsconf -c "$OCK_SLOT" -u -S "$OCK_SO_PIN" -n 1234init >/dev/null
    $SUDO pkcsconf -c "$OCK_SLOT" -p -U 1234init -n "$OCK_USER_PIN" >/dev/null
  fi
  # A non-root user reaches the daemon through the pkcs11 group.
  if [ -n "${SUDO_USER:-}" ] && ! id -nG "$SUDO_USER" | grep -qw pkcs11; then
    $SUDO usermod -aG pkcs11 "$SUDO_USER"
    echo "setup: added $SUDO_USER to the pkcs11 group (log in again for it to apply)"
  fi
fi
