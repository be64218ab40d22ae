# Shared by bench/run.sh and bench/crl.sh (sourced, not run).

# Stops a process this bench started, by PID: TERM, up to 5 s to exit, then KILL.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}
