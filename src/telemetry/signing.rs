//! What a CA operator watches of the key: how long the HSM takes per signature, how many
//! signatures failed, and how many of each kind each CA made. Read at each scrape of the
//! gateway's `/metrics`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Unit;

/// Signatures made so far: `(ca, kind, count)`, read at each scrape.
pub type SignatureTotals = Arc<dyn Fn() -> Vec<(i64, &'static str, u64)> + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CaKind {
    ca: String,
    kind: String,
}

/// HSM signature timings and failures, shared by every observed key of the process.
#[derive(Debug, Clone)]
pub struct SigningMetrics {
    latency: Histogram,
    failures: Counter,
}

impl Default for SigningMetrics {
    fn default() -> Self {
        Self {
            // 0.25 ms .. ~4 s: a software token signs in well under a millisecond, a
            // network HSM in a few, an overloaded one much later.
            latency: Histogram::new(exponential_buckets(0.000_25, 2.0, 15)),
            failures: Counter::default(),
        }
    }
}

impl SigningMetrics {
    /// One signature took `seconds`; `ok` whether it was made.
    pub fn signed(&self, seconds: f64, ok: bool) {
        self.latency.observe(seconds);
        if !ok {
            self.failures.inc();
        }
    }
}

/// Exposes [`SigningMetrics`] and the CAs' signature totals.
pub struct SigningCollector {
    pub metrics: SigningMetrics,
    pub totals: SignatureTotals,
}

impl std::fmt::Debug for SigningCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCollector")
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl Collector for SigningCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latency = &self.metrics.latency;
        latency.encode(encoder.encode_descriptor(
            "hsm_sign_duration",
            "Time the key store took for one signature, failed ones included",
            Some(&Unit::Seconds),
            latency.metric_type(),
        )?)?;
        let failures = &self.metrics.failures;
        failures.encode(encoder.encode_descriptor(
            "hsm_sign_failures",
            "Signatures the key store did not make (unavailable, unusable, not verifying)",
            None,
            failures.metric_type(),
        )?)?;
        let mut family = encoder.encode_descriptor(
            "ca_signatures",
            "Signatures each CA's key made since start, by kind (client, server, crl, ocsp, checkpoint)",
            None,
            MetricType::Counter,
        )?;
        for (ca, kind, n) in (self.totals)() {
            let labels = CaKind {
                ca: ca.to_string(),
                kind: kind.to_string(),
            };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
