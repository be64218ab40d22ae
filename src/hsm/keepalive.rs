//! The keep-alive thread: every `keepalive_secs` it has the pool touch its idle sessions,
//! so a device that drops idle sessions (YubiHSM 2 after 30 s) keeps them, and one it did
//! drop is replaced before a signature needs it. A thread, not a tokio task: PKCS#11 calls
//! block.
//!
//! What this module must not do: keep the HSM alive by itself (it holds a weak reference and
//! stops when the last handle goes), or touch a session in use.

use std::sync::Weak;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::time::Duration;

use super::HsmInner;

/// Stops the thread when dropped.
#[derive(Debug)]
pub(super) struct Stop {
    _closes_on_drop: SyncSender<()>,
}

/// Starts the thread when `every_secs` is not 0.
pub(super) fn start(every_secs: u64, hsm: Weak<HsmInner>) -> Option<Stop> {
    if every_secs == 0 {
        return None;
    }
    let every = Duration::from_secs(every_secs);
    let (tx, rx) = mpsc::sync_channel::<()>(0);
    let spawned = std::thread::Builder::new()
        .name("hsm-keepalive".into())
        .spawn(move || {
            // Nothing is ever sent: the channel only says, by closing, that the HSM is gone.
            while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                let Some(hsm) = hsm.upgrade() else { break };
                hsm.pool.keep_alive();
            }
        });
    match spawned {
        Ok(_) => Some(Stop {
            _closes_on_drop: tx,
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the HSM keep-alive thread");
            None
        }
    }
}
