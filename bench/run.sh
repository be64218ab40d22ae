#!/usr/bin/env bash
# bench/run.sh: certgate against nginx and HAProxy on one machine, and issuance against the
# raw PKCS#11 signing rate (issue 8). One command, loopback only, bounded in time; stops
# every process it started, by PID. See BENCHMARKS.md.
#
# Knobs (environment): BENCH_SECS (measured seconds per load run, 5), BENCH_ROUNDS
# (interleaved rounds, 3), BENCH_IDLE_CONNS (1000), BENCH_ISSUE_COUNT (certificates per
# concurrency level, 1000), BENCH_WORK (work folder, default a fresh /tmp one),
# BENCH_NO_BUILD=1 (use the binaries already built), BENCH_WRITE=0 (do not touch
# BENCHMARKS.md), BENCH_WAIT_RUSTC (seconds to wait for other compilations, 600),
# BENCH_PROFILE=1 (perf profiles of certgate under keep-alive and handshake load; with
# perf present, a count of system calls per keep-alive request is always taken),
# BENCH_TARGETS (the load targets, "direct certgate nginx haproxy"), BENCH_PARTS (what to
# measure, "load tlsup idle ocsp instr issue"; a partial run is for looking, not for
# BENCHMARKS.md; `tlsup` is the HTTPS-upstream case: each proxy in front of the app's TLS
# port, verifying its certificate, keep-alive both ways),
# BENCH_INSTR_SECS (seconds of load per proxy under callgrind, 10), BENCH_SIGN_DELAY_MS
# (milliseconds added to each signature for the simulated slow-HSM issuance runs, 2; 0: none),
# BENCH_TOKEN (the CA key's token: "softhsm2", a throwaway token, or "opencryptoki", the
# machine's openCryptoki soft token that scripts/setup-debian.sh initialises; the bench adds
# its own key there and deletes it at the end, so not while the openCryptoki test pass runs),
# BENCH_CA_ALGORITHM (the CA key: ec-p256 on softhsm2, rsa-2048 on opencryptoki, which has no
# EC; ec-p384, rsa-2048 and rsa-3072 also work), BENCH_WORKERS (event-loop workers of each
# proxy: certgate's worker_threads, nginx's worker_processes, HAProxy's nbthread; 2).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${BENCH_SECS:-5}
ROUNDS=${BENCH_ROUNDS:-3}
IDLE_CONNS=${BENCH_IDLE_CONNS:-1000}
ISSUE_COUNT=${BENCH_ISSUE_COUNT:-1000}
WAIT_RUSTC=${BENCH_WAIT_RUSTC:-600}
WORKERS=${BENCH_WORKERS:-2}
read -r -a TARGETS <<<"${BENCH_TARGETS:-direct certgate nginx haproxy}"
PARTS=" ${BENCH_PARTS:-load tlsup idle ocsp instr issue} "
INSTR_SECS=${BENCH_INSTR_SECS:-10}
TOKEN=${BENCH_TOKEN:-softhsm2}
case $TOKEN in
    softhsm2) CA_ALGORITHM=${BENCH_CA_ALGORITHM:-ec-p256} ;;
    opencryptoki) CA_ALGORITHM=${BENCH_CA_ALGORITHM:-rsa-2048} ;;
    *) echo "bench: BENCH_TOKEN=$TOKEN: use softhsm2 or opencryptoki" >&2; exit 1 ;;
esac
OCK_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so
part() { [[ $PARTS == *" $1 "* ]]; }
WORK=${BENCH_WORK:-$(mktemp -d /tmp/certgate-bench.XXXXXX)}
RESULTS=$WORK/results.jsonl
LG_CPU=0   # the load generator's core
SRV_CPU=1  # proxies and upstream share the other core
CG=$ROOT/target/release/certgate
LG=$ROOT/target/release/loadgen

STARTED=()
log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    if [[ -n ${OCK_KEY_MADE:-} ]]; then delete_ock_key; fi
    if [[ -n ${PG_DB:-} ]]; then
        psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $PG_DB" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

token_tools=(softhsm2-util)
[[ $TOKEN == opencryptoki ]] && token_tools=(pkcsconf pkcs11-tool)
for tool in nginx haproxy "${token_tools[@]}" openssl taskset python3 cargo; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
NCPU=$(nproc)
if (( NCPU < 2 )); then LG_CPU=0; SRV_CPU=0; fi

# ---------------------------------------------------------------- build
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building release binaries (certgate, loadgen)"
    (cd "$ROOT" && cargo build --release --bin certgate)
    CARGO_TARGET_DIR=$ROOT/target cargo build --release \
        --manifest-path "$ROOT/bench/loadgen/Cargo.toml"
fi

# ---------------------------------------------------------------- quiet machine
waited=0
while pgrep -x rustc >/dev/null && (( waited < WAIT_RUSTC )); do
    (( waited == 0 )) && log "waiting for other compilations (rustc) to finish"
    sleep 10; waited=$((waited + 10))
done
OTHER_LOAD="none seen"
if pgrep -x rustc >/dev/null; then OTHER_LOAD="rustc still running after ${WAIT_RUSTC}s"; fi
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- ports and folders
used_ports=" "
# free_port VAR START: the first port from START that nothing listens on and no earlier call
# took, into VAR (not echoed: a $(...) subshell would lose what it took).
free_port() {
    local p=$2
    while ss -Htln "sport = :$p" | grep -q . || [[ $used_ports == *" $p "* ]]; do p=$((p + 1)); done
    used_ports+="$p "
    printf -v "$1" '%s' "$p"
}
free_port UPSTREAM_PORT 18080
free_port CERTGATE_PORT 18443
free_port ADMIN_PORT 18090
free_port NGINX_PORT 18444
free_port HAPROXY_PORT 18445
free_port TLS_UPSTREAM_PORT 18081
free_port NGINX_TLSUP_PORT 18447
free_port HAPROXY_TLSUP_PORT 18448
mkdir -p "$WORK"/{tokens,pki,upstream/tmp,nginx/tmp,haproxy}
: >"$RESULTS"
log "work folder $WORK"

fill() {
    sed -e "s#@WORK@#$WORK#g" -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" \
        -e "s#@CERTGATE_PORT@#$CERTGATE_PORT#g" -e "s#@ADMIN_PORT@#$ADMIN_PORT#g" \
        -e "s#@NGINX_PORT@#$NGINX_PORT#g" -e "s#@HAPROXY_PORT@#$HAPROXY_PORT#g" \
        -e "s#@TLS_UPSTREAM_PORT@#$TLS_UPSTREAM_PORT#g" -e "s#@NGINX_TLSUP_PORT@#$NGINX_TLSUP_PORT#g" \
        -e "s#@HAPROXY_TLSUP_PORT@#$HAPROXY_TLSUP_PORT#g" -e "s#@WORKERS@#$WORKERS#g" "$1" >"$2"
}
# The [hsm] section of a filled certgate.toml for the chosen token and key.
set_hsm() {
    sed -i -e "s#^module = .*#module = \"$HSM_MODULE\"#" \
        -e "s#^token_label = .*#token_label = \"$HSM_TOKEN\"#" \
        -e "s#^key_label = .*#key_label = \"$KEY_LABEL\"\nkey_algorithm = \"$CA_ALGORITHM\"#" "$1"
}
fill "$ROOT/bench/conf/certgate.toml" "$WORK/certgate.toml"
fill "$ROOT/bench/conf/nginx-upstream.conf" "$WORK/upstream/nginx.conf"
fill "$ROOT/bench/conf/nginx-proxy.conf" "$WORK/nginx/nginx.conf"
fill "$ROOT/bench/conf/haproxy.cfg" "$WORK/haproxy/haproxy.cfg"

# ---------------------------------------------------------------- PKI through certgate
if [[ $TOKEN == opencryptoki ]]; then
    # The machine's one soft token, its label and test PIN as scripts/setup-debian.sh set
    # them (read from there, as the tests use the same values). A key of this run's own,
    # deleted when the bench ends.
    HSM_MODULE=$OCK_MODULE
    HSM_TOKEN=$(sed -n 's/^OCK_LABEL=//p' "$ROOT/scripts/setup-debian.sh")
    CERTGATE_HSM_PIN=$(sed -n 's/^OCK_USER_PIN=//p' "$ROOT/scripts/setup-debian.sh")
    KEY_LABEL=certgate-bench-$$
    if ! pkcsconf -t 2>/dev/null | grep -q "Label: $HSM_TOKEN "; then
        echo "bench: no openCryptoki token labelled $HSM_TOKEN (is pkcsslotd running? scripts/setup-debian.sh)" >&2
        exit 1
    fi
    delete_ock_key() {
        local type
        local type _
        for type in privkey pubkey; do
            for _ in 1 2 3; do
                pkcs11-tool --module "$OCK_MODULE" --token-label "$HSM_TOKEN" --login \
                    --pin "$CERTGATE_HSM_PIN" --delete-object --type "$type" --label "$KEY_LABEL" \
                    >/dev/null 2>&1 || break
            done
        done
    }
    OCK_KEY_MADE=1
else
    export SOFTHSM2_CONF=$WORK/softhsm2.conf
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$WORK/tokens" >"$SOFTHSM2_CONF"
    HSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
    HSM_TOKEN=certgate-bench
    KEY_LABEL=certgate-ca
    CERTGATE_HSM_PIN=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    so_pin=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    # A throwaway token: softhsm2-util takes its PINs only as arguments.
    softhsm2-util --init-token --free --label "$HSM_TOKEN" --so-pin "$so_pin" \
        --pin "$CERTGATE_HSM_PIN" >/dev/null
fi
export CERTGATE_HSM_PIN
set_hsm "$WORK/certgate.toml"
cg() { "$CG" --config "$WORK/certgate.toml" "$@"; }
log "PKI: certgate init, server certificate, client certificates, CRL"
cg init >/dev/null
cg ca issue-server --name 127.0.0.1 --name localhost \
    --cert-out "$WORK/pki/server.pem" --key-out "$WORK/pki/server.key" >/dev/null
cg ca cert >"$WORK/pki/ca.pem"
cat "$WORK/pki/server.pem" "$WORK/pki/server.key" >"$WORK/pki/server-with-key.pem"
cg contract add bench-corp --name "Bench Trading Co." >/dev/null
client_cert() { # login -> pki/<login>.pem and .key, signed through `cert sign`
    local login=$1 code
    cg user add "$login" --contract bench-corp --role general --email "$login@bench.example" >/dev/null
    code=$(cg issue authorize "$login" | tail -n1)
    openssl ecparam -genkey -name prime256v1 -noout -out "$WORK/pki/$login.key" 2>/dev/null
    openssl req -new -key "$WORK/pki/$login.key" -subj "/CN=$login" -out "$WORK/pki/$login.csr"
    cg cert sign "$login" --csr "$WORK/pki/$login.csr" --code "$code" >"$WORK/pki/$login.pem"
}
client_cert bench-user
client_cert bench-revoked
revoked_serial=$(openssl x509 -in "$WORK/pki/bench-revoked.pem" -noout -serial | cut -d= -f2)
cg cert revoke "$revoked_serial" --reason keyCompromise >/dev/null
cg ca crl --out "$WORK/pki/crl.der" >/dev/null
openssl crl -inform DER -in "$WORK/pki/crl.der" -out "$WORK/pki/crl.pem"
# The HTTPS-upstream route needs the CA file, so it joins the configuration only now.
fill "$ROOT/bench/conf/certgate-tlsup.toml" "$WORK/certgate-tlsup.toml"
cat "$WORK/certgate-tlsup.toml" >>"$WORK/certgate.toml"
PKI_ARGS=(--cacert "$WORK/pki/ca.pem" --cert "$WORK/pki/bench-user.pem" --key "$WORK/pki/bench-user.key")

# ---------------------------------------------------------------- servers
wait_port() {
    local port=$1 i
    for i in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench: nothing listens on port $port" >&2; return 1
}
children() { pgrep -P "$1" | paste -sd, -; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
log "starting upstream, certgate, nginx, HAProxy (pinned to CPU $SRV_CPU)"
taskset -c "$SRV_CPU" nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" \
    -g 'daemon off;' 2>"$WORK/upstream/stderr.log" &
UP_PID=$!; STARTED+=("$UP_PID")
# certgate's workers (BENCH_WORKERS, 2) come from `[gateway] worker_threads` in its configuration; its main
# runtime (admin port, reloads, status-change invalidation) keeps the default of one thread
# per CPU it may run on, which is 1 under taskset.
# BENCH_CG_WRAPPER runs certgate under a tool (e.g. "valgrind --tool=massif"); not for figures.
read -r -a CG_WRAPPER <<<"${BENCH_CG_WRAPPER:-}"
RUST_LOG=warn taskset -c "$SRV_CPU" "${CG_WRAPPER[@]}" "$CG" --config "$WORK/certgate.toml" \
    serve 2>"$WORK/certgate.log" &
CG_PID=$!; STARTED+=("$CG_PID")
taskset -c "$SRV_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    -g 'daemon off;' 2>"$WORK/nginx/stderr.log" &
NG_PID=$!; STARTED+=("$NG_PID")
taskset -c "$SRV_CPU" haproxy -db -f "$WORK/haproxy/haproxy.cfg" 2>"$WORK/haproxy/stderr.log" &
HA_PID=$!; STARTED+=("$HA_PID")
for p in "$UPSTREAM_PORT" "$TLS_UPSTREAM_PORT" "$CERTGATE_PORT" "$NGINX_PORT" "$HAPROXY_PORT" \
    "$NGINX_TLSUP_PORT" "$HAPROXY_TLSUP_PORT"; do wait_port "$p"; done
sleep 0.5
UP_PIDS="$UP_PID,$(children "$UP_PID")"
NG_PIDS="$NG_PID,$(children "$NG_PID")"
HA_PIDS=$HA_PID
CG_PIDS=$CG_PID

declare -A URL=(
    [direct]="http://127.0.0.1:$UPSTREAM_PORT/"
    [certgate]="https://127.0.0.1:$CERTGATE_PORT/"
    [nginx]="https://127.0.0.1:$NGINX_PORT/"
    [haproxy]="https://127.0.0.1:$HAPROXY_PORT/"
    [certgate-tlsup]="https://127.0.0.1:$CERTGATE_PORT/tlsup/"
    [nginx-tlsup]="https://127.0.0.1:$NGINX_TLSUP_PORT/tlsup/"
    [haproxy-tlsup]="https://127.0.0.1:$HAPROXY_TLSUP_PORT/tlsup/"
)
declare -A PIDS=([direct]=$UP_PIDS [certgate]=$CG_PIDS [nginx]=$NG_PIDS [haproxy]=$HA_PIDS
    [certgate-tlsup]=$CG_PIDS [nginx-tlsup]=$NG_PIDS [haproxy-tlsup]=$HA_PIDS)
TLSUP_TARGETS=()
if part tlsup; then
    for target in "${TARGETS[@]}"; do
        [[ $target != direct ]] && TLSUP_TARGETS+=("$target-tlsup")
    done
fi

# Sanity: the good certificate passes, the revoked one does not, everywhere.
for proxy in "${TARGETS[@]}" "${TLSUP_TARGETS[@]}"; do
    [[ $proxy == direct ]] && continue
    good=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/pki/ca.pem" \
        --cert "$WORK/pki/bench-user.pem" --key "$WORK/pki/bench-user.key" "${URL[$proxy]}" || true)
    bad=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/pki/ca.pem" \
        --cert "$WORK/pki/bench-revoked.pem" --key "$WORK/pki/bench-revoked.key" "${URL[$proxy]}" || true)
    log "check $proxy: valid certificate -> $good, revoked certificate -> $bad"
    echo "{\"kind\":\"check\",\"proxy\":\"$proxy\",\"valid\":\"$good\",\"revoked\":\"$bad\"}" >>"$RESULTS"
    if [[ $good != 200 || $bad == 200 ]]; then echo "bench: $proxy fails the sanity check" >&2; exit 1; fi
done

lg() { timeout 300 taskset -c "$LG_CPU" "$LG" "$@"; }
load() { # target concurrency mode(keepalive|handshake)
    local target=$1 conc=$2 mode=$3 extra=()
    [[ $mode == handshake ]] && extra+=(--handshake)
    [[ $target != direct ]] && extra+=("${PKI_ARGS[@]}")
    lg load --url "${URL[$target]}" --pids "${PIDS[$target]}" --concurrency "$conc" \
        --secs "$SECS" --warmup 1 --label "$target" "${extra[@]}" >>"$RESULTS"
    tail -n1 "$RESULTS" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("  %-9s %-9s c=%-3d %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  server CPU %7.1f us/req  errors %d" % (r["label"], r["mode"], r["concurrency"], r["rps"], r["p50_us"]/1000, r["p99_us"]/1000, r["server_cpu_us_per_req"], r["errors"]))' >&2
}

part load && log "load: $ROUNDS interleaved rounds of ${SECS}s runs"
for round in $(seq "$ROUNDS"); do
    part load || break
    for conc in 16 64; do
        for target in "${TARGETS[@]}"; do load "$target" "$conc" keepalive; done
    done
    for target in "${TARGETS[@]}"; do load "$target" 16 handshake; done
done

# HTTPS upstream: every proxy verifies the app's certificate and keeps its TLS connections
# to the app alive; same rounds, interleaved, against the same app process.
part tlsup && log "tlsup: HTTPS upstream, $ROUNDS interleaved rounds of ${SECS}s runs"
for round in $(seq "$ROUNDS"); do
    part tlsup || break
    for conc in 16 64; do
        for target in "${TLSUP_TARGETS[@]}"; do load "$target" "$conc" keepalive; done
    done
done

# System calls per request (keep-alive, c=16): a run of its own, not used for throughput,
# because counting them costs a little. perf counts the raw_syscalls tracepoint in every
# process of the target; the load runs without warm-up so all its requests are counted.
if part load && command -v perf >/dev/null; then
    log "system calls per keep-alive request (perf stat)"
    for target in "${TARGETS[@]}"; do
        perf stat -x, -e raw_syscalls:sys_enter -p "${PIDS[$target]}" -o "$WORK/syscalls-$target.txt" \
            -- sleep "$((SECS + 1))" 2>/dev/null &
        perf_pid=$!
        sleep 0.2
        extra=(); [[ $target != direct ]] && extra+=("${PKI_ARGS[@]}")
        lg load --url "${URL[$target]}" --concurrency 16 --secs "$SECS" --warmup 0 \
            --label "$target" "${extra[@]}" >"$WORK/syscalls-$target.load.json"
        wait "$perf_pid" || true
        python3 - "$target" "$WORK/syscalls-$target.txt" "$WORK/syscalls-$target.load.json" >>"$RESULTS" <<'PY'
import json, sys
target, counts, load = sys.argv[1], sys.argv[2], sys.argv[3]
calls = sum(int(l.split(",")[0]) for l in open(counts)
            if "raw_syscalls:sys_enter" in l and l.split(",")[0].isdigit())
requests = json.load(open(load))["ok"]
print(json.dumps({"kind": "syscalls", "label": target, "syscalls": calls, "requests": requests}))
PY
    done
fi

part idle && log "memory per idle connection ($IDLE_CONNS connections each)"
for target in "${TARGETS[@]}"; do
    part idle || break
    [[ $target == direct ]] && continue
    lg idle --url "${URL[$target]}" "${PKI_ARGS[@]}" --pids "${PIDS[$target]}" \
        --connections "$IDLE_CONNS" --label "$target" >>"$RESULTS"
    sleep 1
done

if part ocsp; then
log "OCSP from cache: POST /ocsp for the same certificate"
openssl ocsp -issuer "$WORK/pki/ca.pem" -cert "$WORK/pki/bench-user.pem" -no_nonce \
    -reqout "$WORK/pki/ocsp.req" >/dev/null
curl -s --cacert "$WORK/pki/ca.pem" --cert "$WORK/pki/bench-user.pem" \
    --key "$WORK/pki/bench-user.key" -H 'Content-Type: application/ocsp-request' \
    --data-binary @"$WORK/pki/ocsp.req" -o "$WORK/pki/ocsp.resp" "${URL[certgate]}ocsp"
ocsp_status=$(openssl ocsp -respin "$WORK/pki/ocsp.resp" -issuer "$WORK/pki/ca.pem" \
    -CAfile "$WORK/pki/ca.pem" -cert "$WORK/pki/bench-user.pem" 2>&1 | grep -c ': good' || true)
echo "{\"kind\":\"check\",\"proxy\":\"ocsp\",\"valid\":\"$ocsp_status\",\"revoked\":\"\"}" >>"$RESULTS"
for round in $(seq "$ROUNDS"); do
    lg load --url "${URL[certgate]}ocsp" "${PKI_ARGS[@]}" --pids "$CG_PIDS" --method POST \
        --body-file "$WORK/pki/ocsp.req" --header 'Content-Type: application/ocsp-request' \
        --concurrency 16 --secs "$SECS" --warmup 1 --label ocsp >>"$RESULTS"
done
fi

# User-space instructions per keep-alive request, counted by callgrind: exact and the same
# from run to run (CPU time on a shared machine is not), though blind to the kernel's part,
# which is the same loopback TCP work for every proxy. Each proxy runs alone under valgrind
# on a port of its own (nginx in one process); loadgen zeroes the counters when its
# measured window opens, after the handshakes, and dumps them when it closes.
if part instr; then
  if command -v valgrind >/dev/null && command -v callgrind_control >/dev/null; then
    log "user-space instructions per keep-alive request (callgrind, c=16, ${INSTR_SECS}s each)"
    free_port VG_PORT 18446
    free_port VG_ADMIN_PORT 18091
    # The tlsup listeners of the proxies under valgrind must not collide with the running ones.
    free_port TLSUP_SPARE 18449
    free_port TLS_SPARE2 18450
    mkdir -p "$WORK/vg/nginx/tmp" "$WORK/vg/haproxy"
    CERTGATE_PORT=$VG_PORT ADMIN_PORT=$VG_ADMIN_PORT fill "$ROOT/bench/conf/certgate.toml" "$WORK/vg/certgate.toml"
    set_hsm "$WORK/vg/certgate.toml"
    cat "$WORK/certgate-tlsup.toml" >>"$WORK/vg/certgate.toml"
    NGINX_PORT=$VG_PORT NGINX_TLSUP_PORT=$TLSUP_SPARE fill "$ROOT/bench/conf/nginx-proxy.conf" "$WORK/vg/nginx/nginx.conf"
    HAPROXY_PORT=$VG_PORT HAPROXY_TLSUP_PORT=$TLS_SPARE2 fill "$ROOT/bench/conf/haproxy.cfg" "$WORK/vg/haproxy/haproxy.cfg"
    sed -i "s#$WORK/nginx/#$WORK/vg/nginx/#g" "$WORK/vg/nginx/nginx.conf"
    sed -i "s#$WORK/haproxy/#$WORK/vg/haproxy/#g" "$WORK/vg/haproxy/haproxy.cfg"
    for target in "${TARGETS[@]}"; do
        [[ $target == direct ]] && continue
        vg=(taskset -c "$SRV_CPU" valgrind -q --tool=callgrind --callgrind-out-file="$WORK/vg/callgrind-$target.%p")
        case $target in
            certgate) RUST_LOG=warn "${vg[@]}" "$CG" --config "$WORK/vg/certgate.toml" serve 2>"$WORK/vg/certgate.log" & ;;
            nginx) "${vg[@]}" nginx -p "$WORK/vg/nginx" -c "$WORK/vg/nginx/nginx.conf" \
                       -g 'daemon off; master_process off;' 2>"$WORK/vg/nginx.log" & ;;
            haproxy) "${vg[@]}" haproxy -db -f "$WORK/vg/haproxy/haproxy.cfg" 2>"$WORK/vg/haproxy.log" & ;;
        esac
        vg_pid=$!; STARTED+=("$vg_pid")
        wait_port "$VG_PORT"
        lg load --url "https://127.0.0.1:$VG_PORT/" "${PKI_ARGS[@]}" --concurrency 16 \
            --secs "$INSTR_SECS" --warmup 3 --label "$target" \
            --on-window-start "callgrind_control -z $vg_pid" \
            --on-window-end "callgrind_control -d $vg_pid" >"$WORK/vg/load-$target.json"
        stop_pid "$vg_pid"
        python3 - "$target" "$WORK/vg/load-$target.json" "$WORK/vg/callgrind-$target.$vg_pid.1" >>"$RESULTS" <<'PY'
import json, sys
target, load, dump = sys.argv[1:4]
instr = next(int(l.split()[1]) for l in open(dump) if l.startswith(("summary:", "totals:")))
print(json.dumps({"kind": "instr", "label": target, "instructions": instr,
                  "requests": json.load(open(load))["ok"]}))
PY
        while ss -Htln "sport = :$VG_PORT" | grep -q .; do sleep 0.2; done
    done
  else
    log "valgrind (callgrind_control) is missing: instructions per request not counted"
  fi
fi

if [[ ${BENCH_PROFILE:-0} == 1 ]] && command -v perf >/dev/null; then
    # cpu-clock sampling (hardware counters are often missing in VMs), DWARF call graphs.
    for mode in keepalive handshake; do
        log "profiling certgate under $mode load (perf, cpu-clock)"
        extra=(); [[ $mode == handshake ]] && extra=(--handshake)
        # The whole server core, filtered to certgate's threads when reporting: attaching
        # to the process by PID does not follow its worker threads on every perf version.
        perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -C "$SRV_CPU" \
            -o "$WORK/perf-$mode.data" -- sleep "$((SECS + 1))" 2>/dev/null &
        perf_pid=$!
        lg load --url "${URL[certgate]}" "${PKI_ARGS[@]}" --pids "$CG_PIDS" --concurrency 64 \
            --secs "$SECS" --warmup 1 --label "certgate-profiled" "${extra[@]}" >"$WORK/perf-$mode.load.json"
        wait "$perf_pid" || true
        perf report -i "$WORK/perf-$mode.data" --pid "$CG_PID" --no-children -g none --sort dso,symbol --stdio 2>/dev/null \
            | grep -v '^$' | head -n 400 >"$WORK/perf-$mode.flat.txt" || true
        perf report -i "$WORK/perf-$mode.data" --pid "$CG_PID" --children --sort symbol --stdio -g none 2>/dev/null \
            | grep -v '^$' | head -n 400 >"$WORK/perf-$mode.children.txt" || true
    done
fi

log "stopping the servers"
for pid in "$HA_PID" "$NG_PID" "$CG_PID" "$UP_PID"; do stop_pid "$pid"; done
STARTED=()

if part issue; then
log "raw PKCS#11 signing rate (1 and 2 threads), $TOKEN, $CA_ALGORITHM"
timeout 120 "$LG" hsm-raw --module "$HSM_MODULE" --token-label "$HSM_TOKEN" \
    --key-label "$KEY_LABEL" --secs 3 >>"$RESULTS"
log "issuance through Lifecycle::obtain on SQLite ($ISSUE_COUNT per concurrency level)"
timeout 600 "$LG" issue --config "$WORK/certgate.toml" --count "$ISSUE_COUNT" \
    --sign-delay-ms "${BENCH_SIGN_DELAY_MS:-2}" >>"$RESULTS"
if psql -q -h 127.0.0.1 -U postgres -c 'SELECT 1' >/dev/null 2>&1; then
    PG_DB=certgate_bench_$$
    psql -q -h 127.0.0.1 -U postgres -c "CREATE DATABASE $PG_DB" >/dev/null
    sed "s#^url = .*#url = \"postgres://postgres@127.0.0.1/$PG_DB\"#" "$WORK/certgate.toml" \
        >"$WORK/certgate-pg.toml"
    "$CG" --config "$WORK/certgate-pg.toml" init >/dev/null
    log "issuance through Lifecycle::obtain on PostgreSQL"
    timeout 600 "$LG" issue --config "$WORK/certgate-pg.toml" --count "$ISSUE_COUNT" \
        --sign-delay-ms "${BENCH_SIGN_DELAY_MS:-2}" >>"$RESULTS"
else
    log "PostgreSQL at 127.0.0.1:5432 not reachable: issuance measured on SQLite only"
fi
fi

# ---------------------------------------------------------------- report
META=$WORK/meta.json
python3 - "$META" <<PY
import json, sys, subprocess, platform, datetime
def out(*cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except Exception as e:
        return f"unknown ({e})"
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "?")
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "machine": f"{cpu}, {$NCPU} CPUs, {int(mem)//1024} MiB RAM",
    "os": out("uname", "-srm"),
    "certgate": out("git", "-C", "$ROOT", "describe", "--always", "--dirty"),
    "rustc": out("rustc", "-V"),
    "nginx": out("nginx", "-v"),
    "haproxy": out("haproxy", "-v"),
    "openssl": out("openssl", "version"),
    "softhsm": out("softhsm2-util", "--version"),
    "token": "$TOKEN, CA key $CA_ALGORITHM",
    "command": "bench/run.sh (BENCH_SECS=$SECS BENCH_ROUNDS=$ROUNDS BENCH_IDLE_CONNS=$IDLE_CONNS BENCH_ISSUE_COUNT=$ISSUE_COUNT BENCH_TOKEN=$TOKEN BENCH_CA_ALGORITHM=$CA_ALGORITHM BENCH_WORKERS=$WORKERS)",
    "other_load": "$OTHER_LOAD; load average at start $LOADAVG_START",
    "pinning": "load generator on CPU $LG_CPU; proxies and upstream on CPU $SRV_CPU",
}, open(sys.argv[1], "w"))
PY
write=()
[[ ${BENCH_WRITE:-1} == 1 ]] && write=(--write "$ROOT/BENCHMARKS.md")
python3 "$ROOT/bench/report.py" "$RESULTS" "$META" "${write[@]}"
log "raw results: $RESULTS"
