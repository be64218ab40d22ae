//! What every part of certgate uses to be observed: the gateway's Prometheus metrics and
//! the one-line rendering of an error with its causes for log fields.
//!
//! A leaf: it imports nothing else of the crate, so any layer may count and log through it.
//! It must not decide anything; it only records.

mod metrics;
pub mod otlp;
mod phase;
mod signing;
mod snapshot;

pub use metrics::{CacheOutcome, Metrics, RouteMetrics, UpstreamFailure, UpstreamFailures};
pub use phase::in_span;
pub(crate) use phase::phase_span;
pub use signing::{SignatureTotals, SigningCollector, SigningMetrics};
pub use snapshot::{Samples, SnapshotFamily, SnapshotKind};

/// An error with its sources, for one log field: `outer: cause: root cause`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_lists_every_cause() {
        let e = Outer(std::io::Error::other("root"));
        assert_eq!(error_chain(&e), "outer: root");
    }
}
