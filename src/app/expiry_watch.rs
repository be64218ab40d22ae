//! Counts the current certificates that expire soon, once a minute, for `/metrics`
//! (`certgate_certificates_expiring{kind,within}`): a count that keeps growing while
//! renewals do not is what an operator should see before customers call, and an expiring
//! server certificate of the CA's own before the gateway stops answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use crate::clock::{Clock, DAY};
use crate::store::Store;
use crate::telemetry::Samples;

/// The windows counted, as their label says them.
const WINDOWS: [(&str, i64); 2] = [("10d", 10 * DAY), ("30d", 30 * DAY)];
/// How often the store is asked (two counting queries per window).
const EVERY: Duration = Duration::from_secs(60);

/// The statuses of customer certificates counted, as their label says them.
const STATUSES: [&str; 4] = ["current", "expired", "superseded", "revoked"];

/// The latest counts: per window, client and server certificates; and customer
/// certificates by status.
#[derive(Debug, Default)]
pub struct ExpiryCounts {
    cells: [[AtomicI64; 2]; 2],
    by_status: [AtomicI64; 4],
}

impl ExpiryCounts {
    /// The counts as `/metrics` samples.
    pub fn samples(self: &Arc<Self>) -> Samples {
        let this = Arc::clone(self);
        Arc::new(move || {
            let mut out = Vec::with_capacity(4);
            for (w, (within, _)) in WINDOWS.iter().enumerate() {
                for (k, kind) in ["client", "server"].into_iter().enumerate() {
                    let n = this.cells[w][k].load(Ordering::Relaxed);
                    out.push((vec![("kind", kind), ("within", *within)], n));
                }
            }
            out
        })
    }

    /// The customer certificates by status, as `/metrics` samples.
    pub fn status_samples(self: &Arc<Self>) -> Samples {
        let this = Arc::clone(self);
        Arc::new(move || {
            STATUSES
                .iter()
                .zip(&this.by_status)
                .map(|(status, n)| (vec![("status", *status)], n.load(Ordering::Relaxed)))
                .collect()
        })
    }

    /// Asks the store once. A failure leaves the last counts and is logged.
    pub async fn refresh(&self, store: &Store, clock: &dyn Clock) {
        let now = clock.now();
        match store.client_certificates_by_status(now).await {
            Ok(counts) => {
                for (cell, n) in self.by_status.iter().zip(counts) {
                    cell.store(n, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the certificates by status");
                return;
            }
        }
        for (w, (_, secs)) in WINDOWS.iter().enumerate() {
            match store.expiring(now, *secs).await {
                Ok((clients, servers)) => {
                    self.cells[w][0].store(clients, Ordering::Relaxed);
                    self.cells[w][1].store(servers, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count the certificates expiring soon");
                    return;
                }
            }
        }
    }
}

/// Refreshes `counts` now and then every minute, for as long as the process serves.
pub async fn run(store: Store, clock: Arc<dyn Clock>, counts: Arc<ExpiryCounts>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        counts.refresh(&store, clock.as_ref()).await;
    }
}
