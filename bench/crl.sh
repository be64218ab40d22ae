#!/usr/bin/env bash
# bench/crl.sh: CRL build time, size and peak memory at large revocation counts, through the
# CLI (`certgate ca crl`) and the distribution point of `certgate serve` (/crl/{ca_id}.crl).
# Standalone; loopback only; stops every process it started, by PID. Only the CLI and the
# HTTP endpoint are used, so it keeps working while the CRL builder changes.
#
# Per backend and size: a fresh work folder with its own SoftHSM2 token, `certgate init`,
# one contract and one login ID, N revoked certificates seeded with SQL in one transaction,
# then BENCH_CRL_RUNS timed `ca crl` runs (median seconds, max RSS) and a `serve` with a first
# (built on demand) and a second (cached) GET of the CRL, then a GET of the delta CRL made
# against it (`[revocation] delta_crl = true`: the first GET also keeps the complete CRL in the
# store as the deltas' base). One JSON line per (backend, size) on stdout, a markdown table on
# stderr.
#
# Knobs (environment): BENCH_CRL_SIZES (revoked entries, "1000 10000 100000"),
# BENCH_CRL_PG=1 (also PostgreSQL at 127.0.0.1:5432, user postgres, trust auth; a database of
# its own per size, dropped at the end), BENCH_CRL_RUNS (CLI runs per size, 3),
# BENCH_CERTGATE_BIN (default target/release/certgate, built with `cargo build --release`
# when missing), BENCH_CRL_WORK (parent of the work folders, default a fresh /tmp one; kept).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
read -r -a SIZES <<<"${BENCH_CRL_SIZES:-1000 10000 100000}"
RUNS=${BENCH_CRL_RUNS:-3}
CG=${BENCH_CERTGATE_BIN:-$ROOT/target/release/certgate}
WORK_ROOT=${BENCH_CRL_WORK:-$(mktemp -d /tmp/certgate-crlbench.XXXXXX)}
MODULE=/usr/lib/softhsm/libsofthsm2.so
# Notices ("does not exist, skipping") are noise here.
PG=(env PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)
BACKENDS=(sqlite)
[[ ${BENCH_CRL_PG:-0} == 1 ]] && BACKENDS+=(postgres)

STARTED=()  # PIDs of running `serve` processes
PG_DBS=()   # databases to drop
log() { printf '[crl-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { echo "crl-bench: $*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cleanup() {
    local pid db
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    for db in "${PG_DBS[@]}"; do
        "${PG[@]}" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- checks and build
for n in "${SIZES[@]}"; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "BENCH_CRL_SIZES: $n is not a count"; done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CRL_RUNS must be a positive count"
# GNU time reports the peak RSS (%M); the shell keyword does not.
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time"
    apt-get install -y -q time >/dev/null
fi
for tool in softhsm2-util sqlite3 openssl curl ss; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ -f $MODULE ]] || die "SoftHSM2 is not installed ($MODULE)"
if [[ ${BACKENDS[*]} == *postgres* ]]; then
    command -v psql >/dev/null || die "psql is missing"
    "${PG[@]}" -c 'SELECT 1' >/dev/null 2>&1 || die "PostgreSQL at 127.0.0.1:5432 is not reachable"
fi
if [[ ! -x $CG ]]; then
    [[ -n ${BENCH_CERTGATE_BIN:-} ]] && die "$CG is not executable"
    log "building $CG (release)"
    (cd "$ROOT" && nice cargo build --release --locked --bin certgate)
fi
mkdir -p "$WORK_ROOT"
log "work folders under $WORK_ROOT; certgate $("$CG" --version 2>/dev/null || echo '?')"

used_ports=" "
# free_port VAR START: the first port from START that nothing listens on and no earlier call
# took, into VAR (not echoed: a $(...) subshell would lose what it took).
free_port() {
    local p=$2
    while ss -Htln "sport = :$p" | grep -q . || [[ $used_ports == *" $p "* ]]; do p=$((p + 1)); done
    used_ports+="$p "
    printf -v "$1" '%s' "$p"
}
# A line per second of CPU others use would skew the figures: say so in each result.
busy() { if pgrep -x rustc >/dev/null; then echo true; else echo false; fi; }
median() { sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
crl_entries() { # DER file -> number of revoked entries
    openssl crl -inform DER -in "$1" -noout -text | grep -c 'Serial Number' || true
}
check_crl() { # DER file, expected entries, CA file, what
    local got
    got=$(crl_entries "$1")
    [[ $got == "$2" ]] || die "$4: the CRL lists $got entries, expected $2 ($1)"
    # `openssl crl -CAfile` exits 0 even on "verify failure" (3.0): read what it says.
    openssl crl -inform DER -in "$1" -CAfile "$3" -noout 2>&1 | grep -qx 'verify OK' \
        || die "$4: the CRL does not verify against the CA ($1)"
}

# ---------------------------------------------------------------- one (backend, size)
TABLE=()
bench_one() {
    local backend=$1 n=$2
    local work=$WORK_ROOT/$backend-$n db_url db="" port admin_port
    # A folder of its own, never reused: `ca crl --out` refuses to overwrite anyway.
    mkdir -m 700 "$work" || die "$work exists; point BENCH_CRL_WORK elsewhere"
    mkdir "$work/tokens"
    free_port port 18543
    free_port admin_port 18590
    case $backend in
        sqlite) db_url="sqlite://$work/certgate.db" ;;
        postgres)
            db=certgate_crlbench_$$_$n
            PG_DBS+=("$db")
            "${PG[@]}" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
            db_url="postgres://postgres@127.0.0.1/$db" ;;
    esac

    # Token and PIN as softhsm-tests/ci-gateway.sh makes them: random, only in a 0600 file.
    (umask 077; openssl rand -hex 16 | tr -d '\n' >"$work/hsm-pin")
    export SOFTHSM2_CONF=$work/softhsm2.conf
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$work/tokens" >"$SOFTHSM2_CONF"
    # softhsm2-util takes its PINs only as arguments (a throwaway token).
    softhsm2-util --init-token --free --label certgate-crlbench --so-pin "$(openssl rand -hex 16)" \
        --pin "$(cat "$work/hsm-pin")" >/dev/null
    cat >"$work/certgate.toml" <<CONF
[database]
url = "$db_url"

[hsm]
module = "$MODULE"
token_label = "certgate-crlbench"
pin_file = "$work/hsm-pin"
key_label = "certgate-ca"

[ca]
subject = "CN=certgate CRL Bench CA,O=Example Bank"
public_url = "https://127.0.0.1:$port"
organization = "Example Bank corporate customers"

[[listener]]
addr = "127.0.0.1:$port"
cert = "$work/server.pem"
key = "$work/server.key"
# The CRL is public: no client certificate needed to fetch it.
client_auth = "none"

[admin]
addr = "127.0.0.1:$admin_port"

[revocation]
delta_crl = true

[log]
json = false
CONF
    cg() { "$CG" --config "$work/certgate.toml" "$@"; }
    log "$backend n=$n: certgate init in $work"
    cg init >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; die "certgate init failed"; }
    cg ca issue-server --name 127.0.0.1 --days 30 \
        --cert-out "$work/server.pem" --key-out "$work/server.key" >/dev/null
    cg ca cert >"$work/ca.pem"
    cg contract add crlbench-corp --name "CRL Bench Co." >/dev/null
    cg user add crlbench --contract crlbench-corp --role general \
        --email crlbench@bench.invalid >/dev/null

    # N revoked certificates in one transaction. Serials as the CA draws them (16 bytes,
    # first byte 0x40..0x7f, lowercase hex); the der is a placeholder nothing on the CRL
    # path reads; not_after far ahead so none drops off as expired.
    local now ca_id seed_start seed_s
    now=$(date +%s)
    local nb=$((now - 400 * 86400)) na=$((now + 3650 * 86400))
    seed_start=$(date +%s.%N)
    case $backend in
        sqlite)
            ca_id=$(sqlite3 "$work/certgate.db" 'SELECT id FROM cas WHERE active = 1')
            sqlite3 "$work/certgate.db" <<SQL
PRAGMA foreign_keys = ON;
BEGIN;
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $n)
INSERT INTO certificates (serial, login, contract_id, ca_id, der, sha256, spki_sha256,
    not_before, not_after, status, revoked_at, revocation_reason, created_at)
SELECT printf('%02x', 64 + abs(random() % 64)) || lower(hex(randomblob(15))),
       'crlbench', 'crlbench-corp', $ca_id, x'3000', printf('%064x', i),
       lower(hex(randomblob(32))), $nb, $na, 'revoked', $now - 1 - (i % 2592000),
       'keyCompromise', $nb
FROM seq;
COMMIT;
SQL
            ;;
        postgres)
            ca_id=$("${PG[@]}" -d "$db" -Atc 'SELECT id FROM cas WHERE active')
            "${PG[@]}" -d "$db" <<SQL
BEGIN;
INSERT INTO certificates (serial, login, contract_id, ca_id, der, sha256, spki_sha256,
    not_before, not_after, status, revoked_at, revocation_reason, created_at)
SELECT to_hex(64 + (random() * 63)::int) || substr(md5(random()::text || i::text), 1, 30),
       'crlbench', 'crlbench-corp', $ca_id, '\x3000'::bytea,
       encode(sha256(convert_to(i::text, 'UTF8')), 'hex'), md5(i::text) || md5(i::text),
       $nb, $na, 'revoked', $now - 1 - (i % 2592000), 'keyCompromise', $nb
FROM generate_series(1, $n) AS i;
COMMIT;
-- A live database has planner statistics (autovacuum); a table filled a second ago not.
ANALYZE certificates;
SQL
            ;;
    esac
    seed_s=$(awk -v a="$seed_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
    log "$backend n=$n: seeded in ${seed_s}s (CA $ca_id)"

    # ---- the CLI: build + sign through the HSM, a fresh process each run
    local i t m times=() rss_max=0 busy_cli=false
    for i in $(seq "$RUNS"); do
        [[ $(busy) == true ]] && busy_cli=true
        /usr/bin/time -f '%e %M' -o "$work/time-$i.txt" \
            "$CG" --config "$work/certgate.toml" ca crl --out "$work/crl-$i.der" >"$work/crl-$i.log" 2>&1 \
            || { cat "$work/crl-$i.log" >&2; die "$backend n=$n: ca crl failed"; }
        read -r t m <"$work/time-$i.txt"
        times+=("$t")
        (( m > rss_max )) && rss_max=$m
        check_crl "$work/crl-$i.der" "$n" "$work/ca.pem" "$backend n=$n CLI run $i"
    done
    local build_s crl_bytes
    build_s=$(printf '%s\n' "${times[@]}" | median)
    crl_bytes=$(stat -c %s "$work/crl-1.der")
    log "$backend n=$n: ca crl ${times[*]} s (median $build_s), max RSS $rss_max KiB, $crl_bytes bytes"

    # ---- serve: first GET builds the CRL, the second is served from its cache
    RUST_LOG=warn "$CG" --config "$work/certgate.toml" serve </dev/null >"$work/serve.log" 2>&1 &
    local pid=$!
    STARTED+=("$pid")
    local ready=0
    for _ in $(seq 300); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/readyz" 2>/dev/null; then ready=1; break; fi
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$work/serve.log" >&2; die "serve exited"; }
        sleep 0.1
    done
    (( ready )) || die "serve not ready after 30 s; see $work/serve.log"
    local url="https://127.0.0.1:$port/crl/$ca_id.crl" hwm_idle first second busy_http
    hwm_idle=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    busy_http=$(busy)
    # time_total includes a fresh loopback TLS handshake on each request (curl per GET).
    first=$(curl -sS --fail --cacert "$work/ca.pem" -o "$work/get-1.der" -w '%{time_total}' "$url")
    second=$(curl -sS --fail --cacert "$work/ca.pem" -o "$work/get-2.der" -w '%{time_total}' "$url")
    # The delta against the complete CRL just kept: nothing changed, so no entry, but it
    # reads every candidate and the kept CRL to find that out.
    local delta_url="https://127.0.0.1:$port/crl/$ca_id-delta.crl" delta_s delta_bytes
    delta_s=$(curl -sS --fail --cacert "$work/ca.pem" -o "$work/delta.der" -w '%{time_total}' "$delta_url")
    delta_bytes=$(stat -c %s "$work/delta.der")
    check_crl "$work/delta.der" 0 "$work/ca.pem" "$backend n=$n delta GET"
    local hwm
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
    check_crl "$work/get-1.der" "$n" "$work/ca.pem" "$backend n=$n first GET"
    cmp -s "$work/get-1.der" "$work/get-2.der" \
        || die "$backend n=$n: the second GET returned another CRL (not cached?)"
    stop_pid "$pid"
    STARTED=()
    log "$backend n=$n: GET first ${first}s, cached ${second}s, delta ${delta_s}s ($delta_bytes bytes); serve VmHWM $hwm_idle -> $hwm KiB"

    if [[ -n $db ]]; then
        "${PG[@]}" -c "DROP DATABASE IF EXISTS $db" >/dev/null
        PG_DBS=()
    fi

    printf '{"kind":"crl","backend":"%s","entries":%d,"crl_bytes":%d,"cli_build_s":%s,"cli_build_runs_s":[%s],"cli_max_rss_kib":%d,"first_get_s":%s,"cached_get_s":%s,"delta_get_s":%s,"delta_bytes":%d,"serve_vmhwm_kib":%d,"serve_vmhwm_before_get_kib":%d,"seed_s":%s,"rustc_running":%s,"loadavg":"%s"}\n' \
        "$backend" "$n" "$crl_bytes" "$build_s" "$(IFS=,; echo "${times[*]}")" "$rss_max" \
        "$first" "$second" "$delta_s" "$delta_bytes" "$hwm" "$hwm_idle" "$seed_s" \
        "$([[ $busy_cli == true || $busy_http == true ]] && echo true || echo false)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
    TABLE+=("$(awk -v b="$backend" -v n="$n" -v by="$crl_bytes" -v s="$build_s" -v r="$rss_max" \
        -v f="$first" -v c="$second" -v d="$delta_s" -v h="$hwm" \
        'BEGIN {printf "| %s | %d | %d | %.2f | %.1f | %.3f | %.3f | %.3f | %.1f |", b, n, by, s, r/1024, f, c, d, h/1024}')")
}

for backend in "${BACKENDS[@]}"; do
    for n in "${SIZES[@]}"; do bench_one "$backend" "$n"; done
done

{
    echo
    echo "| backend | entries | CRL bytes | build s (CLI, median of $RUNS) | CLI max RSS MiB | first GET s | cached GET s | delta GET s | serve VmHWM MiB |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${TABLE[@]}"
    echo
} >&2
log "done in ${SECONDS}s; work folders kept in $WORK_ROOT"
