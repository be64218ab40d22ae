//! openCryptoki's slot daemon, `pkcsslotd`, stopped and started again by a test.
//!
//! Only the openCryptoki pass uses it, which runs one test at a time, so no other test shares
//! the daemon meanwhile. The daemon is stopped with SIGKILL, as a crash would: it ignores
//! SIGTERM (and every other catchable signal) while any process has the library initialised,
//! and the test itself has. [`SlotDaemon`] starts it again when dropped, also when the test
//! fails, so the token stays usable for the tests after it.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The daemon, started again on drop if this value stopped it.
#[derive(Debug, Default)]
pub struct SlotDaemon {
    stopped: bool,
}

impl SlotDaemon {
    pub fn new() -> Self {
        Self::default()
    }

    /// Kills the one running daemon (found through /proc) and waits until it is gone.
    pub fn stop(&mut self) {
        let pids = running_pids();
        let &[pid] = pids.as_slice() else {
            panic!("expected one running pkcsslotd, found {pids:?}");
        };
        // Set first: even a kill that half worked must be followed by a start.
        self.stopped = true;
        let out = privileged("kill")
            .args(["-KILL", &pid.to_string()])
            .output()
            .expect("run kill");
        assert!(out.status.success(), "kill -KILL {pid}: {}", text(&out));
        wait_until("pkcsslotd to exit", || !running_pids().contains(&pid));
    }

    /// Starts the daemon and waits until a new process can initialise the library.
    pub fn start(&mut self) {
        if let Err(e) = start_daemon() {
            panic!("{e}");
        }
        self.stopped = false;
    }
}

impl Drop for SlotDaemon {
    fn drop(&mut self) {
        if self.stopped
            && let Err(e) = start_daemon()
        {
            eprintln!("error: pkcsslotd could not be started again: {e}");
        }
    }
}

fn start_daemon() -> Result<(), String> {
    // It forks into the background and closes its standard streams: the call returns.
    let out = privileged("pkcsslotd")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run pkcsslotd: {e}"))?;
    // It says "Shared memory creation failed ... Reclaiming" after a kill: not a failure.
    if !out.status.success() {
        return Err(format!("pkcsslotd failed: {}", text(&out)));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if Command::new("pkcsconf")
            .arg("-s")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("pkcsslotd was started but pkcsconf -s still fails".into())
}

/// PIDs of the running (not zombie) processes named `pkcsslotd`.
pub fn running_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let dir = Path::new("/proc").join(pid.to_string());
            let named =
                std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == "pkcsslotd");
            // The state follows the command name in parentheses: "123 (pkcsslotd) S ...".
            let alive = std::fs::read_to_string(dir.join("stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            });
            named && alive
        })
        .collect()
}

/// `program`, through `sudo -n` unless this process runs as root (the daemon is root's).
fn privileged(program: &str) -> Command {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    });
    if root {
        Command::new(program)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", program]);
        sudo
    }
}

fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(out: &Output) -> String {
    format!(
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
