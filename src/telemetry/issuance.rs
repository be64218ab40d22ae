//! How issuance requests ended, by kind (`obtain`, `renew`) and outcome (`issued` or the
//! refusal's stable code), read at each scrape of `/metrics`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

/// Outcomes so far: `(kind, outcome, count)`.
pub type IssuanceCounts = Arc<dyn Fn() -> Vec<(&'static str, &'static str, u64)> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindOutcome {
    kind: &'static str,
    outcome: &'static str,
}

/// Exposes the issuance outcomes.
pub struct IssuanceCollector(pub IssuanceCounts);

impl std::fmt::Debug for IssuanceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuanceCollector").finish_non_exhaustive()
    }
}

impl Collector for IssuanceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "issuance_requests",
            "Issuance requests (web, EST, command line) by kind (obtain with a code, renew with \
             the current certificate) and outcome (issued, or the refusal code the API answers)",
            None,
            MetricType::Counter,
        )?;
        for (kind, outcome, n) in (self.0)() {
            ConstCounter::new(n).encode(family.encode_family(&KindOutcome { kind, outcome })?)?;
        }
        Ok(())
    }
}
