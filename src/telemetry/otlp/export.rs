//! Sends closed spans to an OTLP/HTTP receiver (`POST {endpoint}/v1/traces`, JSON) in
//! batches: when 512 spans are waiting, every second otherwise, and on a flush request.
//!
//! A receiver that is down costs spans, never requests: the batch is dropped with one
//! warning per outage, and the layer drops spans while the queue is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};

use super::encode::export_request;
use super::endpoint::Endpoint;
use super::record::SpanRecord;

/// Spans sent in one request at most.
const MAX_BATCH: usize = 512;
/// How long a span waits for its batch at most.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// A receiver slower than this loses the batch.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Exporter {
    pub spans: mpsc::Receiver<SpanRecord>,
    pub flushes: mpsc::Receiver<oneshot::Sender<()>>,
    pub endpoint: Endpoint,
    pub service_name: String,
    pub dropped: Arc<AtomicU64>,
}

impl Exporter {
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut failing = false;
        loop {
            let mut flushed = None;
            tokio::select! {
                got = self.spans.recv() => match got {
                    Some(s) => batch.push(s),
                    None => return,
                },
                Some(done) = self.flushes.recv() => flushed = Some(done),
            }
            if flushed.is_none() {
                // Collect the rest of the batch until it is full or the delay is over.
                let deadline = tokio::time::Instant::now() + BATCH_DELAY;
                while batch.len() < MAX_BATCH {
                    tokio::select! {
                        got = self.spans.recv() => match got {
                            Some(s) => batch.push(s),
                            None => break,
                        },
                        Some(done) = self.flushes.recv() => { flushed = Some(done); break; }
                        () = tokio::time::sleep_until(deadline) => break,
                    }
                }
            }
            if flushed.is_some() {
                while let Ok(s) = self.spans.try_recv() {
                    batch.push(s);
                }
            }
            for chunk in batch.chunks(MAX_BATCH) {
                failing = self.send(chunk, failing).await;
            }
            batch.clear();
            if let Some(done) = flushed {
                let _ = done.send(());
            }
        }
    }

    /// Posts one batch; returns whether the receiver is failing, so an outage is logged once.
    async fn send(&self, spans: &[SpanRecord], was_failing: bool) -> bool {
        let body = export_request(&self.service_name, spans);
        match tokio::time::timeout(POST_TIMEOUT, post(&self.endpoint, body)).await {
            Ok(Ok(())) => {
                if was_failing {
                    tracing::info!(endpoint = %self.endpoint, "OTLP receiver reachable again");
                }
                false
            }
            outcome => {
                if !was_failing {
                    let why = match outcome {
                        Ok(Err(e)) => e,
                        _ => "timed out".to_owned(),
                    };
                    let dropped = self.dropped.load(Ordering::Relaxed);
                    tracing::warn!(endpoint = %self.endpoint, error = %why, spans = spans.len(), dropped_before = dropped, "OTLP export failed; spans are dropped until the receiver answers");
                }
                true
            }
        }
    }
}

async fn post(endpoint: &Endpoint, body: Vec<u8>) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(endpoint.connect_to())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(conn);
    let req = http::Request::post(endpoint.traces_path())
        .header(http::header::HOST, endpoint.authority())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    // Read the answer so the connection ends cleanly; its content is not needed.
    let _ = resp.into_body().collect().await;
    driver.abort();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}
