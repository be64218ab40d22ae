//! The service manager's notification protocol (`sd_notify(3)`): one datagram per state
//! change to the socket named by `$NOTIFY_SOCKET`, so a `Type=notify` unit is "started"
//! only once the listeners accept connections, and `WatchdogSec=` can restart a process
//! that stopped answering.
//!
//! A leaf: without `$NOTIFY_SOCKET` (not under systemd, or in tests) every call does
//! nothing. A failed send is logged and otherwise ignored: the service must not stop
//! because its supervisor cannot be told something.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::time::Duration;

/// Where the notifications go, found once per process.
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
}

fn target() -> Option<&'static Target> {
    static TARGET: OnceLock<Option<Target>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let name = std::env::var_os("NOTIFY_SOCKET")?;
            match open(&name) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!(socket = ?name, error = %e, "NOTIFY_SOCKET cannot be used; the service manager is not told about readiness");
                    None
                }
            }
        })
        .as_ref()
}

fn open(name: &std::ffi::OsStr) -> std::io::Result<Target> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = name.as_bytes();
    // `@name` is a Linux abstract socket (systemd uses them in containers).
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => abstract_addr(abstract_name)?,
        None if bytes.starts_with(b"/") => SocketAddr::from_pathname(std::path::Path::new(name))?,
        None => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract socket name",
            ));
        }
    };
    Ok(Target {
        socket: UnixDatagram::unbound()?,
        addr,
    })
}

#[cfg(target_os = "linux")]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_addr(_: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract sockets exist on Linux only",
    ))
}

/// Sends one notification (newline-separated `KEY=VALUE` lines).
fn send(message: &str) {
    let Some(t) = target() else { return };
    if let Err(e) = t.socket.send_to_addr(message.as_bytes(), &t.addr) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// The service is up: its listeners accept connections. Also ends a reload.
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// A reload started (SIGHUP); [`ready`] ends it. `MONOTONIC_USEC` lets systemd tell this
/// reload from an earlier one.
pub fn reloading() {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = now.tv_sec.saturating_mul(1_000_000) + now.tv_nsec / 1_000;
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading"
    ));
}

/// The service is stopping (draining connections).
pub fn stopping() {
    send("STOPPING=1\nSTATUS=draining connections");
}

/// The process is alive; sent every [`watchdog_interval`].
pub fn watchdog() {
    send("WATCHDOG=1");
}

/// Half the watchdog timeout systemd set for this process (`WatchdogSec=`), or `None` when
/// there is no watchdog or it is meant for another process (`$WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    target()?;
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str()?.parse::<u32>().ok()? != std::process::id()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_socket_name_is_refused() {
        assert!(open(std::ffi::OsStr::new("relative/sock")).is_err());
    }

    #[test]
    fn an_abstract_name_and_a_path_are_understood() {
        assert!(open(std::ffi::OsStr::new("@certgate-test")).is_ok());
        assert!(open(std::ffi::OsStr::new("/run/systemd/notify")).is_ok());
    }
}
