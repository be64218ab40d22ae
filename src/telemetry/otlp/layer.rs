//! The tracing layer that turns certgate's spans into OTLP span records: IDs on creation
//! (a new trace at a root, the parent's trace below it), fields as attributes, and the
//! record handed to the exporter when the span closes.
//!
//! It never blocks the code it observes: a full export queue drops the span and counts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, span};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::record::{AttrValue, FieldRecorder, SpanKind, SpanRecord};

/// What a live span carries in the registry's extensions.
pub(super) struct LiveSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    parent_span_id: Option<[u8; 8]>,
    start_unix_nanos: u64,
    kind: SpanKind,
    error: Option<String>,
    attributes: Vec<(&'static str, AttrValue)>,
}

/// The layer; see the module comment.
pub struct OtlpLayer {
    queue: mpsc::Sender<SpanRecord>,
    /// Out of `u64::MAX`: a root span starts a recorded trace when a random draw is below it.
    sample_below: u64,
    dropped: Arc<AtomicU64>,
}

impl OtlpLayer {
    pub(super) fn new(
        queue: mpsc::Sender<SpanRecord>,
        sample_ratio: f64,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        let ratio = sample_ratio.clamp(0.0, 1.0);
        // The float-to-int cast saturates: a ratio of 1.0 becomes u64::MAX.
        let sample_below = (ratio * u64::MAX as f64) as u64;
        Self {
            queue,
            sample_below,
            dropped,
        }
    }

    fn sampled(&self) -> bool {
        self.sample_below == u64::MAX || u64::from_le_bytes(random()) < self.sample_below
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The system's random source; should it ever fail, a zero ID is still a usable span
    // (OTLP receivers reject only all-zero trace IDs, so keep one bit set).
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        b[N - 1] = 1;
    }
    b
}

fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl<S> tracing_subscriber::Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let parent = span.parent().and_then(|p| {
            p.extensions()
                .get::<LiveSpan>()
                .map(|l| (l.trace_id, l.span_id, l.sampled))
        });
        let (trace_id, parent_span_id, sampled) = match parent {
            Some((trace, parent_id, sampled)) => (trace, Some(parent_id), sampled),
            None => (random::<16>(), None, self.sampled()),
        };
        let mut live = LiveSpan {
            trace_id,
            span_id: random::<8>(),
            sampled,
            parent_span_id,
            start_unix_nanos: now_unix_nanos(),
            kind: SpanKind::of_name(attrs.metadata().name()),
            error: None,
            attributes: Vec::new(),
        };
        if sampled {
            attrs.record(&mut FieldRecorder {
                kind: &mut live.kind,
                error: &mut live.error,
                attributes: &mut live.attributes,
            });
        }
        span.extensions_mut().insert(live);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        if let Some(live) = ext.get_mut::<LiveSpan>().filter(|l| l.sampled) {
            values.record(&mut FieldRecorder {
                kind: &mut live.kind,
                error: &mut live.error,
                attributes: &mut live.attributes,
            });
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(live) = span.extensions_mut().remove::<LiveSpan>() else {
            return;
        };
        if !live.sampled {
            return;
        }
        let record = SpanRecord {
            trace_id: live.trace_id,
            span_id: live.span_id,
            parent_span_id: live.parent_span_id,
            name: span.metadata().name(),
            kind: live.kind,
            start_unix_nanos: live.start_unix_nanos,
            end_unix_nanos: now_unix_nanos(),
            attributes: live.attributes,
            error: live.error,
        };
        if self.queue.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
