//! Optional OpenTelemetry trace export over OTLP/HTTP (JSON), with no OpenTelemetry SDK:
//! a tracing layer records certgate's spans ([`OtlpLayer`]), an exporter task posts them in
//! batches to a local collector, and [`traceparent`] gives the W3C trace context that the
//! gateway sends to the banking app so the app's own spans join the same trace.
//!
//! Off unless `[trace] otlp_endpoint` is set; then certgate's spans (debug level and up, of
//! certgate's own targets) go to the exporter whatever the log level.

mod encode;
mod endpoint;
mod export;
mod layer;
mod record;

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing_subscriber::Registry;
use tracing_subscriber::registry::LookupSpan;

pub use endpoint::Endpoint;
pub use layer::OtlpLayer;

/// Spans waiting for export at most; more are dropped (and counted) rather than wait.
const QUEUE: usize = 8192;

/// What `[trace]` configures.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    pub endpoint: Endpoint,
    pub service_name: String,
    /// Share of traces recorded, 0.0 to 1.0, decided at each trace's root span.
    pub sample_ratio: f64,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static FLUSH: OnceLock<mpsc::Sender<oneshot::Sender<()>>> = OnceLock::new();

/// Starts the exporter on the current tokio runtime and returns the layer feeding it.
pub fn start(settings: OtlpSettings) -> OtlpLayer {
    let (span_tx, span_rx) = mpsc::channel(QUEUE);
    let (flush_tx, flush_rx) = mpsc::channel(4);
    let dropped = Arc::new(AtomicU64::new(0));
    let exporter = export::Exporter {
        spans: span_rx,
        flushes: flush_rx,
        endpoint: settings.endpoint,
        service_name: settings.service_name,
        dropped: Arc::clone(&dropped),
    };
    tokio::spawn(exporter.run());
    let _ = FLUSH.set(flush_tx);
    ENABLED.store(true, std::sync::atomic::Ordering::Relaxed);
    OtlpLayer::new(span_tx, settings.sample_ratio, dropped)
}

/// Whether spans are exported: callers skip work (such as building a `traceparent`) when not.
pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sends every closed span now and waits for the receiver's answer (at most `timeout`), so
/// a command's or a stopping server's last spans are not lost.
pub async fn flush(timeout: Duration) {
    let Some(tx) = FLUSH.get() else {
        return;
    };
    let (done_tx, done_rx) = oneshot::channel();
    if tx.send(done_tx).await.is_ok() {
        let _ = tokio::time::timeout(timeout, done_rx).await;
    }
}

/// The W3C `traceparent` of the current span (`00-{trace}-{span}-01`), when it is exported.
pub fn traceparent() -> Option<http::HeaderValue> {
    if !enabled() {
        return None;
    }
    tracing::Span::current()
        .with_subscriber(|(id, dispatch)| {
            let registry = dispatch.downcast_ref::<Registry>()?;
            let span = registry.span(id)?;
            let ext = span.extensions();
            let live = ext.get::<layer::LiveSpan>().filter(|l| l.sampled)?;
            let value = format!(
                "00-{}-{}-01",
                hex::encode(live.trace_id),
                hex::encode(live.span_id)
            );
            http::HeaderValue::from_str(&value).ok()
        })
        .flatten()
}
