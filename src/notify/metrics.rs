//! Counters of the notice machinery, for `/metrics` and for tests.
//!
//! Owns plain atomics only: what to count is decided by the passes, how to expose it
//! (Prometheus text) by the admin listener.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since this process started, plus the outbox backlog seen at the last pass.
#[derive(Debug, Default)]
pub struct NotifyMetrics {
    scheduled: AtomicU64,
    sent: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    pass_errors: AtomicU64,
    pending: AtomicU64,
    failed_in_outbox: AtomicU64,
    left_due: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Notices queued by this process.
    pub scheduled_total: u64,
    /// E-mails the relay accepted from this process.
    pub sent_total: u64,
    /// Delivery attempts that failed temporarily and were put back.
    pub retried_total: u64,
    /// E-mails refused permanently.
    pub failed_total: u64,
    /// E-mails cancelled because their certificate was renewed, revoked or expired first.
    pub cancelled_total: u64,
    /// Passes that stopped on an error (store unavailable).
    pub pass_errors_total: u64,
    /// Outbox rows waiting for delivery, at the end of the last pass.
    pub pending: u64,
    /// Outbox rows in state `failed`, at the end of the last pass.
    pub failed_in_outbox: u64,
    /// Due e-mails the last pass left untried (relay unreachable, or stopping).
    pub left_due: u64,
}

impl NotifyMetrics {
    /// The current values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            scheduled_total: get(&self.scheduled),
            sent_total: get(&self.sent),
            retried_total: get(&self.retried),
            failed_total: get(&self.failed),
            cancelled_total: get(&self.cancelled),
            pass_errors_total: get(&self.pass_errors),
            pending: get(&self.pending),
            failed_in_outbox: get(&self.failed_in_outbox),
            left_due: get(&self.left_due),
        }
    }

    pub(super) fn add_pass(&self, r: &super::PassReport) {
        self.scheduled.fetch_add(r.scheduled, Ordering::Relaxed);
        self.sent.fetch_add(r.sent, Ordering::Relaxed);
        self.retried.fetch_add(r.retried, Ordering::Relaxed);
        self.failed.fetch_add(r.failed, Ordering::Relaxed);
        self.cancelled.fetch_add(r.cancelled, Ordering::Relaxed);
        self.pending.store(r.outbox.pending, Ordering::Relaxed);
        self.failed_in_outbox
            .store(r.outbox.failed, Ordering::Relaxed);
        self.left_due.store(r.left_due, Ordering::Relaxed);
    }

    pub(super) fn add_pass_error(&self) {
        self.pass_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Exposes [`NotifyMetrics`] on the gateway's `/metrics` (read at each scrape).
#[derive(Debug)]
pub struct NotifyCollector(pub std::sync::Arc<NotifyMetrics>);

impl prometheus_client::collector::Collector for NotifyCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric};
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let s = self.0.snapshot();
        // One metric per question an operator asks, the outcome as a label (one alert rule
        // covers them all): what happened to notices, and what the outbox holds.
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct Event {
            event: &'static str,
        }
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct State {
            state: &'static str,
        }
        let mut notices = encoder.encode_descriptor(
            "notices",
            "Expiry notices by event: scheduled (queued), sent (the SMTP relay accepted it), \
             retried (put back after a temporary failure), failed (refused permanently), \
             cancelled (renewed, revoked or expired first)",
            None,
            MetricType::Counter,
        )?;
        for (event, value) in [
            ("scheduled", s.scheduled_total),
            ("sent", s.sent_total),
            ("retried", s.retried_total),
            ("failed", s.failed_total),
            ("cancelled", s.cancelled_total),
        ] {
            ConstCounter::new(value).encode(notices.encode_family(&Event { event })?)?;
        }
        let errors = ConstCounter::new(s.pass_errors_total);
        errors.encode(encoder.encode_descriptor(
            "notice_pass_errors",
            "Scheduler passes that stopped on an error",
            None,
            errors.metric_type(),
        )?)?;
        let left = ConstGauge::new(i64::try_from(s.left_due).unwrap_or(i64::MAX));
        left.encode(encoder.encode_descriptor(
            "notices_left_due",
            "Due expiry notices the last pass left untried because the SMTP relay could not be \
             reached, was too slow to finish a batch within its claim, or serve was stopping \
             (the next pass tries them)",
            None,
            left.metric_type(),
        )?)?;
        let mut outbox = encoder.encode_descriptor(
            "notice_outbox",
            "Outbox rows by state: pending (waiting for delivery), failed (refused permanently)",
            None,
            MetricType::Gauge,
        )?;
        for (state, value) in [("pending", s.pending), ("failed", s.failed_in_outbox)] {
            ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
                .encode(outbox.encode_family(&State { state })?)?;
        }
        Ok(())
    }
}
