//! Reads CPU time and memory of other processes from /proc. Nothing else.

use std::time::Duration;

/// Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time of `pid` (all its threads) as (user, system), or zeros when it is gone.
pub fn cpu_split(pid: u32) -> (Duration, Duration) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return (Duration::ZERO, Duration::ZERO);
    };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else {
        return (Duration::ZERO, Duration::ZERO);
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let ticks = |i: usize| {
        let t = f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Duration::from_secs_f64(t / TICKS_PER_SEC)
    };
    (ticks(11), ticks(12))
}

/// User+system CPU time of `pid` (all its threads), or 0 when it is gone.
pub fn cpu(pid: u32) -> Duration {
    let (user, system) = cpu_split(pid);
    user + system
}

/// Sum of CPU time over `pids`.
pub fn cpu_sum(pids: &[u32]) -> Duration {
    pids.iter().map(|&p| cpu(p)).sum()
}

/// Sum of system (kernel) CPU time over `pids`.
pub fn system_cpu_sum(pids: &[u32]) -> Duration {
    pids.iter().map(|&p| cpu_split(p).1).sum()
}

/// RSS and PSS of `pid` in KiB, from smaps_rollup.
pub fn mem(pid: u32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

/// Sum of RSS and PSS over `pids`, KiB.
pub fn mem_sum(pids: &[u32]) -> (u64, u64) {
    pids.iter()
        .map(|&p| mem(p))
        .fold((0, 0), |(r, p), (r2, p2)| (r + r2, p + p2))
}

/// Sum of peak RSS (VmHWM) over `pids`, KiB.
pub fn hwm_sum(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|&p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|t| {
            t.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

/// CPU time of this process (the load generator itself).
pub fn own_cpu() -> Duration {
    cpu(std::process::id())
}
