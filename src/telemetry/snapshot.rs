//! Metrics whose values are kept elsewhere and read at each scrape of `/metrics`: one
//! family, its label values given with each sample (issuance outcomes, expiring
//! certificates).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The samples at this moment: label pairs and a value.
pub type Samples = Arc<dyn Fn() -> Vec<(Vec<(&'static str, &'static str)>, i64)> + Send + Sync>;

/// Counter (values only grow) or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    Counter,
    Gauge,
}

/// One family read from `read` at each scrape.
pub struct SnapshotFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: SnapshotKind,
    pub read: Samples,
}

impl std::fmt::Debug for SnapshotFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotFamily")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Collector for SnapshotFamily {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric_type = match self.kind {
            SnapshotKind::Counter => MetricType::Counter,
            SnapshotKind::Gauge => MetricType::Gauge,
        };
        let mut family = encoder.encode_descriptor(self.name, self.help, None, metric_type)?;
        let samples = (self.read)();
        // One sample without labels is written as `name value`, not `name{} value`.
        if let [(labels, value)] = samples.as_slice()
            && labels.is_empty()
        {
            return encode_value(self.kind, *value, family);
        }
        for (labels, value) in samples {
            encode_value(self.kind, value, family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn encode_value(
    kind: SnapshotKind,
    value: i64,
    sample: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    match kind {
        SnapshotKind::Counter => {
            ConstCounter::new(u64::try_from(value).unwrap_or(0)).encode(sample)
        }
        SnapshotKind::Gauge => ConstGauge::new(value).encode(sample),
    }
}
