//! The idle timeout of HTTP/2 connections (`[[listener]] h2_idle_timeout_secs`).
//!
//! hyper's HTTP/2 server keeps a connection open for as long as the client answers pings,
//! so an idle one would hold its buffers, a connection slot and its TLS state forever.
//! Here every request counts as in flight from its start until its response body is
//! finished or dropped; a connection with nothing in flight for the timeout is closed
//! gracefully (GOAWAY, streams under way finish). A busy connection is never closed for
//! being idle, however long its one stream lasts.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::http_common::body::{BoxError, ProxyBody};

/// What is in flight on one HTTP/2 connection, and since when it has been quiet.
#[derive(Debug)]
pub(crate) struct Streams {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `born` when the last stream ended.
    last_end_ms: AtomicU64,
}

impl Streams {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        })
    }

    /// Counts a request as in flight until the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> StreamGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        StreamGuard(Arc::clone(self))
    }

    /// Completes once the connection has had nothing in flight for `idle`. Looks again at
    /// most every `idle`, so it ends between one and two `idle`s after the last stream.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(idle).await;
                continue;
            }
            let last = self.born + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
            let deadline = last + idle;
            if Instant::now() >= deadline && self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep_until(deadline.max(Instant::now() + Duration::from_millis(10)))
                .await;
        }
    }
}

/// One request in flight; dropped with its response body.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<Streams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let s = &self.0;
        let ms = u64::try_from(s.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        s.last_end_ms.fetch_max(ms, Ordering::AcqRel);
        s.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted as in flight until it is done.
pub(crate) struct GuardedBody {
    inner: ProxyBody,
    _guard: StreamGuard,
}

impl GuardedBody {
    pub(crate) fn new(inner: ProxyBody, guard: StreamGuard) -> Self {
        Self {
            inner,
            _guard: guard,
        }
    }
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Drives `conn` to its end; asks it to close (`shutdown`, hyper's graceful shutdown) when
/// it has been idle for `idle` or the gateway stops.
pub(crate) async fn serve<F: Future>(
    mut conn: Pin<&mut F>,
    shutdown: impl Fn(Pin<&mut F>),
    streams: &Streams,
    idle: Duration,
    stop: &mut watch::Receiver<bool>,
) -> F::Output {
    let mut closing = false;
    loop {
        tokio::select! {
            out = conn.as_mut() => return out,
            () = streams.idle_for(idle), if !closing => {
                tracing::debug!("idle HTTP/2 connection closed");
                shutdown(conn.as_mut());
                closing = true;
            }
            () = crate::http_common::stopped(stop), if !closing => {
                shutdown(conn.as_mut());
                closing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_quiet_connection_is_idle_and_a_busy_one_is_not() {
        let streams = Streams::new();
        let idle = Duration::from_millis(20);
        let guard = streams.begin();
        // A stream lasting many idle periods keeps the connection busy.
        let busy = tokio::time::timeout(idle * 10, streams.idle_for(idle)).await;
        assert!(
            busy.is_err(),
            "a connection with a stream in flight is not idle"
        );
        drop(guard);
        // Generous: only that it ends is asserted, not when.
        let quiet = tokio::time::timeout(Duration::from_secs(30), streams.idle_for(idle)).await;
        assert!(quiet.is_ok(), "idle once its last stream ended");
    }
}
