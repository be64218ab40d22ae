#!/usr/bin/env bash
# A throwaway certgate for the CI pipelines of the apps behind the gateway.
#
#   softhsm-tests/ci-gateway.sh [--dir DIR] [--contract ID] [--no-serve] LOGIN:ROLE...
#
# Makes a SoftHSM2 token, a SQLite database and a configuration in DIR (default: a new temp
# folder), runs `certgate init`, adds one contract and the given login IDs (ROLE is admin,
# approver or general), and issues each a client certificate (openssl key + CSR, then
# `certgate cert sign`). Prints shell assignments on stdout, one per line, e.g.
#   CERTGATE_DIR=/tmp/cg.x  CERTGATE_CONFIG=...  SOFTHSM2_CONF=...  CERTGATE_CA=.../ca.pem
#   CERTGATE_CERT_ALICE=.../alice.pem  CERTGATE_KEY_ALICE=.../alice.key  CERTGATE_P12_ALICE=...
#   CERTGATE_URL=https://127.0.0.1:8443  CERTGATE_PID=1234   (unless --no-serve)
# so a pipeline can `eval "$(softhsm-tests/ci-gateway.sh alice:admin)"`. Logs go to stderr.
#
# Environment: CERTGATE_BIN (default: certgate on PATH, else target/debug/certgate),
# CERTGATE_UPSTREAM (the app under test, default http://127.0.0.1:8080),
# CERTGATE_LISTEN (default 127.0.0.1:8443), CERTGATE_ADMIN (default 127.0.0.1:9090).
# The PIN and the PKCS#12 password are random per run and written only into DIR (0600).
set -euo pipefail

dir=""
contract="ci"
serve=1
users=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --contract) contract="$2"; shift 2 ;;
    --no-serve) serve=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *:admin|*:approver|*:general) users+=("$1"); shift ;;
    *) echo "ci-gateway: unknown argument $1 (want LOGIN:admin|approver|general)" >&2; exit 2 ;;
  esac
done
[ ${#users[@]} -gt 0 ] || { echo "ci-gateway: give at least one LOGIN:ROLE" >&2; exit 2; }

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${CERTGATE_BIN:-}"
if [ -z "$bin" ]; then
  if command -v certgate >/dev/null 2>&1; then bin="$(command -v certgate)"
  else bin="$here/target/debug/certgate"; fi
fi
[ -x "$bin" ] || { echo "ci-gateway: $bin is not executable (cargo build first)" >&2; exit 1; }
module="/usr/lib/softhsm/libsofthsm2.so"
[ -f "$module" ] || { echo "ci-gateway: SoftHSM2 is not installed ($module)" >&2; exit 1; }

[ -n "$dir" ] || dir="$(mktemp -d "${TMPDIR:-/tmp}/certgate-ci.XXXXXX")"
mkdir -p "$dir/tokens" "$dir/certs"
dir="$(cd "$dir" && pwd)"
umask 077

rand() { openssl rand -hex 16; }
pin="$(rand)"
printf '%s' "$pin" >"$dir/hsm-pin"
cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF="$dir/softhsm2.conf"
softhsm2-util --init-token --free --label certgate-ci --so-pin "$(rand)" --pin "$pin" >/dev/null


cat >"$dir/certgate.toml" <<CONF
[database]
url = "sqlite://$dir/certgate.db"

[hsm]
module = "$module"
token_label = "certgate-ci"
pin_file = "$dir/hsm-pin"
key_label = "certgate-ca"

[ca]
subject = "CN=certgate CI Customer CA,O=certgate CI"
public_url = "https://${CERTGATE_LISTEN:-127.0.0.1:8443}"
organization = "certgate CI"

[[listener]]
addr = "${CERTGATE_LISTEN:-127.0.0.1:8443}"
cert = "server.pem"
key = "server.key"
client_auth = "optional"

[[route]]
prefix = "/"
upstream = "${CERTGATE_UPSTREAM:-http://127.0.0.1:8080}"
auth = "certificate"

[admin]
addr = "${CERTGATE_ADMIN:-127.0.0.1:9090}"
CONF

cg() { "$bin" --config "$dir/certgate.toml" "$@"; }
cg init >&2
# The listener's certificate comes from the same CA, so CERTGATE_CA trusts both sides.
cg ca issue-server --name localhost --name 127.0.0.1 --days 30 \
  --cert-out "$dir/server.pem" --key-out "$dir/server.key" >&2
cg ca cert >"$dir/ca.pem"
cg contract add "$contract" --name "CI contract $contract" >&2

out=(
  "CERTGATE_DIR=$dir"
  "CERTGATE_CONFIG=$dir/certgate.toml"
  "SOFTHSM2_CONF=$dir/softhsm2.conf"
  "CERTGATE_CA=$dir/ca.pem"
)
p12pass="$(rand)"
printf '%s' "$p12pass" >"$dir/certs/p12-password"
out+=("CERTGATE_P12_PASSWORD_FILE=$dir/certs/p12-password")
for spec in "${users[@]}"; do
  login="${spec%%:*}"; role="${spec##*:}"
  var="$(printf '%s' "$login" | tr '[:lower:]-.' '[:upper:]__')"
  cg user add "$login" --contract "$contract" --role "$role" --email "$login@ci.invalid" >&2
  code_file="$dir/certs/$login.code"
  cg issue authorize "$login" | tail -n 1 >"$code_file"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$login" -keyout "$dir/certs/$login.key" -out "$dir/certs/$login.csr" 2>/dev/null
  cg cert sign "$login" --csr "$dir/certs/$login.csr" --code-file "$code_file" \
    >"$dir/certs/$login.pem"
  rm -f "$code_file"
  openssl pkcs12 -export -inkey "$dir/certs/$login.key" -in "$dir/certs/$login.pem" \
    -certfile "$dir/ca.pem" -name "$login" -passout "file:$dir/certs/p12-password" \
    -out "$dir/certs/$login.p12"
  out+=("CERTGATE_CERT_$var=$dir/certs/$login.pem"
        "CERTGATE_KEY_$var=$dir/certs/$login.key"
        "CERTGATE_P12_$var=$dir/certs/$login.p12")
done

# Start the gateway in the background (unless --no-serve) and wait until it is ready.
# Its output goes to $dir/serve.log; stop it with: kill "$CERTGATE_PID".
if [ "$serve" = 1 ]; then
  "$bin" --config "$dir/certgate.toml" serve </dev/null >"$dir/serve.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$dir/certgate.pid"
  admin="${CERTGATE_ADMIN:-127.0.0.1:9090}"
  ready=0
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "http://$admin/readyz" 2>/dev/null; then ready=1; break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "ci-gateway: certgate serve exited; its log:" >&2
      tail -n 20 "$dir/serve.log" >&2
      exit 1
    fi
    sleep 0.2
  done
  if [ "$ready" != 1 ]; then
    echo "ci-gateway: certgate serve not ready after 30 s; see $dir/serve.log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  out+=("CERTGATE_PID=$pid" "CERTGATE_URL=https://${CERTGATE_LISTEN:-127.0.0.1:8443}")
fi

printf '%s\n' "${out[@]}"
