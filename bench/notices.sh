#!/usr/bin/env bash
# bench/notices.sh: the expiry-notice pass at scale (issue 20): one `certgate notify run`
# over a store of N certificates of which DUE are inside the 30-day notice window, against
# the local SMTP sink (tests/support/smtp/sink.py, a real SMTP server process on loopback).
# Standalone; loopback only; stops every process it started, by PID. Needs no HSM: the pass
# opens only the configuration and the store.
#
# Per backend: a fresh work folder (and, for PostgreSQL, a database of its own, dropped at
# the end), the schema made by `certgate notify list`, then in one transaction N contracts'
# worth of users with one current certificate each (DUE expiring within 30 days, spread
# over them; the rest 31 to 361 days ahead), then one timed pass (wall seconds and peak RSS
# by GNU time). The sink's count and its Message-IDs are checked: every due notice arrived,
# once. One JSON line per backend on stdout, a markdown table on stderr.
#
# Knobs (environment): BENCH_NOTICES_CERTS (100000), BENCH_NOTICES_DUE (7799: the issue's
# 5,000 sent + 2,799 left), BENCH_NOTICES_PG=1 (also PostgreSQL at 127.0.0.1:5432, user
# postgres, trust auth), BENCH_NOTICES_RECORD_EVERY (`[notify] record_every`, 5),
# BENCH_NOTICES_BATCH (`[notify] batch`, 50), BENCH_CERTGATE_BIN (default
# target/release/certgate, built with `cargo build --release` when missing),
# BENCH_NOTICES_WORK (parent of the work folders, default a fresh /tmp one; kept),
# BENCH_NOTICES_LOG (RUST_LOG of the pass, warn; info logs each notice, in run.err).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${BENCH_NOTICES_CERTS:-100000}
DUE=${BENCH_NOTICES_DUE:-7799}
RECORD_EVERY=${BENCH_NOTICES_RECORD_EVERY:-5}
BATCH=${BENCH_NOTICES_BATCH:-50}
CG=${BENCH_CERTGATE_BIN:-$ROOT/target/release/certgate}
WORK_ROOT=${BENCH_NOTICES_WORK:-$(mktemp -d /tmp/certgate-noticebench.XXXXXX)}
SINK=$ROOT/tests/support/smtp/sink.py
PG=(env PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)
BACKENDS=(sqlite)
[[ ${BENCH_NOTICES_PG:-0} == 1 ]] && BACKENDS+=(postgres)

STARTED=()  # PIDs of running sinks
PG_DBS=()   # databases to drop
log() { printf '[notice-bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { echo "notice-bench: $*" >&2; exit 1; }
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
[[ $N =~ ^[1-9][0-9]*$ && $DUE =~ ^[1-9][0-9]*$ ]] || die "BENCH_NOTICES_CERTS and _DUE must be counts"
(( DUE <= N )) || die "BENCH_NOTICES_DUE exceeds BENCH_NOTICES_CERTS"
[[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is missing"
for tool in sqlite3 python3; do command -v "$tool" >/dev/null || die "$tool is missing"; done
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
log "work folders under $WORK_ROOT; certgate $("$CG" --version 2>/dev/null || echo '?'), $N certificates, $DUE due"
busy() { if pgrep -x rustc >/dev/null; then echo true; else echo false; fi; }

# The seed, as one statement per table; NOW and the CA id are filled in. Users bulkI with
# one current certificate bI each; certificates 1..DUE expire within the 30-day window
# (spread over it: some inside 10 days, so both notices occur), the others later.
seed_sql() { # backend now ca_id
    local bool=TRUE seq
    seq="WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $N)"
    cat <<SQL
BEGIN;
INSERT INTO contracts (id, name, enabled, created_at) VALUES ('bench', 'Notice Bench Co.', $bool, $2);
$seq
INSERT INTO users (login, contract_id, role, email, enabled, created_at)
SELECT 'bulk' || i, 'bench', 'general', 'bulk' || i || '@customer.invalid', $bool, $2 FROM seq;
$seq
INSERT INTO certificates (serial, login, contract_id, ca_id, der, sha256, spki_sha256,
    not_before, not_after, status, created_at)
SELECT 'b' || i, 'bulk' || i, 'bench', $3, $(if [[ $1 == sqlite ]]; then echo "x'3000'"; else echo "'\\x3000'::bytea"; fi),
       'sha-b' || i, 'spki-b' || i, $2 - 86400 * 30, na, 'current', $2 - 86400 * 30
FROM (SELECT i, CASE WHEN i <= $DUE THEN $2 + 3600 + (CAST(i AS BIGINT) * 29 * 86400) / $DUE
                     ELSE $2 + 31 * 86400 + (CAST(i - $DUE AS BIGINT) * 330 * 86400) / ($N - $DUE + 1) END AS na
      FROM seq) AS s;
COMMIT;
SQL
}

TABLE=()
bench_one() {
    local backend=$1
    local work=$WORK_ROOT/$backend db_url db=""
    mkdir -m 700 "$work" || die "$work exists; point BENCH_NOTICES_WORK elsewhere"
    case $backend in
        sqlite) db_url="sqlite://$work/certgate.db" ;;
        postgres)
            db=certgate_noticebench_$$
            PG_DBS+=("$db")
            "${PG[@]}" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
            db_url="postgres://postgres@127.0.0.1/$db" ;;
    esac

    python3 "$SINK" --dir "$work/mail" >"$work/sink.out" 2>"$work/sink.err" &
    local sink_pid=$!
    STARTED+=("$sink_pid")
    local port=""
    for _ in $(seq 50); do
        port=$(awk '/^PORT / {print $2}' "$work/sink.out" 2>/dev/null)
        [[ -n $port ]] && break
        sleep 0.1
    done
    [[ -n $port ]] || die "the SMTP sink did not start: $(cat "$work/sink.err")"

    cat >"$work/certgate.toml" <<CONF
[database]
url = "$db_url"

[hsm]
token_label = "unused-by-notify"

[ca]
subject = "CN=certgate Notice Bench CA,O=Example Bank"
public_url = "https://gw.bank.example"

[notify]
smtp_url = "smtp://127.0.0.1:$port"
from = "Example Bank <certgate@bank.example>"
language = "ja"
batch = $BATCH
record_every = $RECORD_EVERY

[log]
json = false
CONF
    cg() { "$CG" --config "$work/certgate.toml" "$@"; }
    cg notify list >/dev/null || die "$backend: the schema could not be made"

    local now ca_id seed_start seed_s
    now=$(date +%s)
    seed_start=$(date +%s.%N)
    case $backend in
        sqlite)
            sqlite3 "$work/certgate.db" \
                "INSERT INTO cas (key_label, cert_der, chain_pem, active, created_at) VALUES ('bench', x'3000', '', 1, $now)"
            ca_id=$(sqlite3 "$work/certgate.db" 'SELECT id FROM cas WHERE active = 1')
            seed_sql sqlite "$now" "$ca_id" | sqlite3 "$work/certgate.db" ;;
        postgres)
            ca_id=$("${PG[@]}" -d "$db" -Atc \
                "INSERT INTO cas (key_label, cert_der, chain_pem, active, created_at) VALUES ('bench', '\\x3000'::bytea, '', TRUE, $now) RETURNING id")
            seed_sql postgres "$now" "$ca_id" | "${PG[@]}" -d "$db"
            "${PG[@]}" -d "$db" -c 'ANALYZE' ;;
    esac
    seed_s=$(awk -v a="$seed_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
    log "$backend: seeded $N certificates in ${seed_s}s"

    local busy_run t rss
    busy_run=$(busy)
    RUST_LOG=${BENCH_NOTICES_LOG:-warn} /usr/bin/time -f '%e %M %U %S' -o "$work/time.txt" \
        "$CG" --config "$work/certgate.toml" notify run >"$work/run.out" 2>"$work/run.err" \
        || { tail -n 20 "$work/run.err" >&2; die "$backend: notify run failed"; }
    read -r t rss cpu_user cpu_sys <"$work/time.txt"
    log "$backend: $(cat "$work/run.out")"

    # What the sink received: every due notice once (a fresh pass, nothing killed).
    local got distinct
    got=$(cat "$work"/mail/*.jsonl | wc -l)
    distinct=$(python3 -c 'import json,sys; print(len({json.loads(l)["message_id"] for f in sys.argv[1:] for l in open(f)}))' "$work"/mail/*.jsonl)
    [[ $got == "$DUE" && $distinct == "$DUE" ]] \
        || die "$backend: the sink has $got e-mails ($distinct distinct Message-IDs), expected $DUE"
    grep -q "sent $DUE " "$work/run.out" || die "$backend: the pass did not report $DUE sent: $(cat "$work/run.out")"
    # CPU seconds the sink spent (utime + stime, in clock ticks): is it the bound?
    local sink_cpu
    sink_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$sink_pid/stat")
    stop_pid "$sink_pid"
    STARTED=()
    if [[ -n $db ]]; then
        "${PG[@]}" -c "DROP DATABASE IF EXISTS $db" >/dev/null
        PG_DBS=()
    fi

    local rate
    rate=$(awk -v n="$DUE" -v t="$t" 'BEGIN {printf "%.0f", n / t}')
    log "$backend: $DUE notices in ${t}s = $rate notices/s, peak RSS $rss KiB; CPU s: certgate ${cpu_user} user + ${cpu_sys} sys, sink $sink_cpu"
    printf '{"kind":"notices","backend":"%s","certificates":%d,"due":%d,"sent":%d,"pass_s":%s,"notices_per_s":%s,"max_rss_kib":%d,"certgate_cpu_user_s":%s,"certgate_cpu_sys_s":%s,"sink_cpu_s":%s,"batch":%d,"record_every":%d,"seed_s":%s,"rustc_running":%s,"loadavg":"%s"}\n' \
        "$backend" "$N" "$DUE" "$got" "$t" "$rate" "$rss" "$cpu_user" "$cpu_sys" "$sink_cpu" "$BATCH" "$RECORD_EVERY" "$seed_s" "$busy_run" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
    TABLE+=("| $backend | $N | $DUE | $t | $rate | $(awk -v r="$rss" 'BEGIN {printf "%.1f", r/1024}') | $(awk -v u="$cpu_user" -v s="$cpu_sys" 'BEGIN {printf "%.2f", u + s}') | $sink_cpu | $busy_run |")
}

for backend in "${BACKENDS[@]}"; do bench_one "$backend"; done

{
    echo
    echo "| backend | certificates | due (sent) | pass s | notices/s | peak RSS MiB | certgate CPU s | sink CPU s | rustc running |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${TABLE[@]}"
    echo
} >&2
log "done in ${SECONDS}s; work folders kept in $WORK_ROOT"
