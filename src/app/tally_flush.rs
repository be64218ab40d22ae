//! Adds the signatures counted in memory (`ca::SignatureTally`) to the store: every minute
//! while `serve` runs, and once more at shutdown and at the end of a command that signed.
//! A flush that fails puts its counts back for the next one.

use std::sync::Arc;
use std::time::Duration;

use crate::ca::Authority;
use crate::store::Store;

/// How often `serve` adds its counts to the store.
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Adds what `authority`'s tally counted since the last flush. Failures are logged.
pub async fn flush_tally(store: &Store, authority: &Authority) {
    let tally = authority.tally();
    let taken = tally.take();
    if taken.is_empty() {
        return;
    }
    let rows: Vec<(i64, &str, u64)> = taken
        .iter()
        .map(|(kind, n)| (authority.ca_id(), kind.as_str(), *n))
        .collect();
    if let Err(e) = store.add_signature_counts(&rows).await {
        tracing::warn!(error = %e, "cannot add the signature counts; kept for the next flush");
        tally.restore(&taken);
    }
}

/// Flushes every CA's tally each [`FLUSH_EVERY`] until `stop` turns true, then once more.
pub async fn run_flusher(
    store: Store,
    cas: Vec<Arc<Authority>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        for ca in &cas {
            flush_tally(&store, ca).await;
        }
    }
    for ca in &cas {
        flush_tally(&store, ca).await;
    }
}
