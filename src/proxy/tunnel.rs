//! The life of a tunnel: an HTTP/1.1 Upgrade (WebSocket) joined to the app after `101`.
//!
//! A tunnel is a connection like any other while it lives: it keeps its listener's
//! connection permit, counts in the shutdown drain, and ends after an idle time and an
//! absolute time. Its certificate is judged again whenever the store announces a change of
//! it (the status cache's feed), when the rule's answer would change by the clock alone
//! (expiry, end of a superseded overlap) and every [`RECHECK`] as a safety net; a refused
//! certificate closes the tunnel at once. This module owns that lifecycle; the request that
//! opened the tunnel was checked by the handler like any other.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::Shared;
use crate::status::{Refusal, Verdict, next_decision_change};
use crate::store::CertChange;

/// The safety net: a tunnel's certificate is judged at least this often, whatever the
/// change feed says (a lost notification, a clock jump).
const RECHECK: Duration = Duration::from_secs(30);
/// Longest wait for each side's orderly close when the gateway ends a tunnel.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The open tunnels of one gateway, as far as shutdown is concerned: each holds a receiver
/// of `stop`, so the drain can tell them to close and wait until every one has.
#[derive(Debug)]
pub(crate) struct Tunnels {
    stop: watch::Sender<bool>,
}

impl Tunnels {
    pub(crate) fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
        }
    }

    /// Closes every open tunnel (and any opened from now on), then waits until all have
    /// ended. The caller bounds the wait with the drain time.
    pub(crate) async fn shutdown(&self) {
        self.stop.send_replace(true);
        self.stop.closed().await;
    }

    fn enlist(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// Limits of one route's tunnels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// No byte either way for this long closes the tunnel.
    pub idle: Duration,
    /// The tunnel is closed this long after it opened, however busy.
    pub max: Duration,
}

/// The certificate a tunnel was opened with, judged again while it lives.
#[derive(Debug)]
pub(crate) struct Holder {
    pub serial: String,
    pub sha256: String,
    pub login: String,
}

/// What a tunnel needs from the request that asks for it; handed to the upstream send so
/// that the permit and the identity travel with it until the `101`.
pub(crate) struct Opening {
    pub shared: Arc<Shared>,
    /// The client side of the upgrade.
    pub client: OnUpgrade,
    /// The route's label (metrics, logs).
    pub route: String,
    pub limits: Limits,
    /// `None` on a public route: only the timeouts apply.
    pub holder: Option<Holder>,
    /// The listener's connection permit, shared with the connection it came on.
    pub permit: Arc<super::server::ConnPermit>,
}

/// Why a tunnel ended (the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// The client closed first.
    Client,
    /// The app closed first.
    Upstream,
    /// Reading or writing failed.
    Error,
    Idle,
    MaxAge,
    /// The certificate is no longer accepted: the refusal's own name.
    Status(Refusal),
    Shutdown,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client_closed",
            Self::Upstream => "upstream_closed",
            Self::Error => "error",
            Self::Idle => "idle",
            Self::MaxAge => "max_age",
            Self::Status(r) => r.as_str(),
            Self::Shutdown => "shutdown",
        }
    }
}

/// Starts the tunnel in the background; `upstream` is the app's side of the `101`.
pub(crate) fn spawn(opening: Opening, upstream: OnUpgrade) {
    // Enlisted before the task runs, so a shutdown starting now waits for this tunnel.
    let stop = opening.shared.tunnels.enlist();
    tokio::spawn(run(opening, upstream, stop));
}

async fn run(opening: Opening, upstream: OnUpgrade, mut stop: watch::Receiver<bool>) {
    let Opening {
        shared,
        client,
        route,
        limits,
        holder,
        permit,
    } = opening;
    // Subscribed before the first judgement below, so no change announced after the
    // opening request's check is missed.
    let mut changes = holder.as_ref().map(|_| shared.cache.source().changes());
    let (c, u) = match tokio::try_join!(client, upstream) {
        Ok(sides) => sides,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let open = shared.metrics.tunnels_open(&route);
    open.inc();
    let started = Instant::now();
    let activity = Activity::new(started);
    let mut c = Tracked::new(TokioIo::new(c), &activity, Side::Client);
    let mut u = Tracked::new(TokioIo::new(u), &activity, Side::Upstream);
    let mut next_check = match &holder {
        Some(h) => judge(&shared, h).await,
        None => Ok(None),
    };
    let closed = {
        let copy = tokio::io::copy_bidirectional(&mut c, &mut u);
        tokio::pin!(copy);
        let max_at = started + limits.max;
        let mut idle_at = started + limits.idle;
        let mut recheck = tokio::time::interval_at(started + RECHECK, RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let status_at = match next_check {
                Err(refusal) => break Closed::Status(refusal),
                Ok(at) => at,
            };
            let judge_now = tokio::select! {
                r = &mut copy => {
                    if let Err(e) = &r {
                        tracing::debug!(error = %e, "tunnel ended with an error");
                    }
                    // A side that went away without closing properly (a client whose
                    // TCP connection ended without TLS close_notify) still closed first.
                    break activity.first_closed().unwrap_or(Closed::Error);
                }
                () = tokio::time::sleep_until(idle_at) => {
                    let quiet_until = activity.last() + limits.idle;
                    if quiet_until <= Instant::now() {
                        break Closed::Idle;
                    }
                    idle_at = quiet_until;
                    false
                }
                () = tokio::time::sleep_until(max_at) => break Closed::MaxAge,
                _ = stop.wait_for(|s| *s) => break Closed::Shutdown,
                relevant = next_change(&mut changes, holder.as_ref()) => relevant,
                _ = recheck.tick(), if holder.is_some() => true,
                () = sleep_until_opt(status_at) => true,
            };
            if judge_now && let Some(h) = &holder {
                next_check = judge(&shared, h).await;
            }
        }
    };
    // Each side learns the tunnel is over (TLS close_notify and FIN to the client, FIN to
    // the app), rather than finding out at its next write.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, c.inner.shutdown()).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, u.inner.shutdown()).await;
    // Counted as closed before it leaves the open gauge: whoever sees the gauge drop sees
    // the reason too.
    shared.metrics.tunnel_closed(&route, closed.as_str());
    open.dec();
    let lived_secs = started.elapsed().as_secs();
    match (closed, &holder) {
        (Closed::Status(refusal), Some(h)) => tracing::warn!(
            target: "certgate::security",
            route,
            user = h.login,
            serial = h.serial,
            reason = refusal.as_str(),
            lived_secs,
            "tunnel_closed: its certificate is no longer accepted"
        ),
        _ => tracing::info!(route, reason = closed.as_str(), lived_secs, "tunnel closed"),
    }
    drop(permit);
}

/// Judges the tunnel's certificate now, as the handler does for a request: `Ok` with the
/// moment the answer would change by the clock alone (when it would), or the refusal.
async fn judge(shared: &Shared, h: &Holder) -> Result<Option<Instant>, Refusal> {
    let (verdict, view, outcome) = shared.cache.check(&h.serial).await;
    shared.metrics.status_lookup(outcome);
    if let Verdict::Refuse(r) = verdict {
        return Err(r);
    }
    let Some(view) = view else {
        return Err(Refusal::Unknown);
    };
    if !view.cert.sha256.eq_ignore_ascii_case(&h.sha256) {
        return Err(Refusal::Unknown);
    }
    let now = shared.cache.clock().now();
    Ok(
        next_decision_change(&view, now, shared.cache.overlap_secs()).map(|at| {
            // The clock counts whole seconds: waking at `at` after the current second's
            // start is never early. At least a second, so a disagreeing clock cannot spin.
            let secs = u64::try_from(at.saturating_sub(now)).unwrap_or(0).max(1);
            Instant::now() + Duration::from_secs(secs)
        }),
    )
}

/// Waits for the next announcement that concerns `holder`'s certificate: its serial, a
/// resync, or missed announcements. Never returns without a feed.
async fn next_change(
    changes: &mut Option<broadcast::Receiver<CertChange>>,
    holder: Option<&Holder>,
) -> bool {
    let (Some(rx), Some(h)) = (changes.as_mut(), holder) else {
        return std::future::pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(change) if change.is_resync() || change.serial == h.serial => return true,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return true,
            Err(RecvError::Closed) => {
                // The periodic re-check goes on without the feed.
                *changes = None;
                return std::future::pending().await;
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client = 1,
    Upstream = 2,
}

/// When a tunnel last carried a byte, and which side closed first.
struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last byte read from either side.
    last_ms: AtomicU64,
    /// 0 until a side reads end-of-stream, then that [`Side`].
    first_eof: AtomicU8,
}

impl Activity {
    fn new(started: Instant) -> Self {
        Self {
            started,
            last_ms: AtomicU64::new(0),
            first_eof: AtomicU8::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn ended(&self, side: Side) {
        let _ =
            self.first_eof
                .compare_exchange(0, side as u8, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn first_closed(&self) -> Option<Closed> {
        match self.first_eof.load(Ordering::Relaxed) {
            0 => None,
            s if s == Side::Upstream as u8 => Some(Closed::Upstream),
            _ => Some(Closed::Client),
        }
    }
}

/// One side of a tunnel, noting in [`Activity`] each read that carried bytes and its end.
struct Tracked<'a, T> {
    inner: T,
    activity: &'a Activity,
    side: Side,
}

impl<'a, T> Tracked<'a, T> {
    fn new(inner: T, activity: &'a Activity, side: Side) -> Self {
        Self {
            inner,
            activity,
            side,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.activity.touch(),
            Poll::Ready(Ok(())) if buf.remaining() > 0 => this.activity.ended(this.side),
            Poll::Ready(Err(_)) => this.activity.ended(this.side),
            _ => {}
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_every_enlisted_tunnel() {
        let tunnels = Arc::new(Tunnels::new());
        let mut a = tunnels.enlist();
        let t = Arc::clone(&tunnels);
        let drain = tokio::spawn(async move { t.shutdown().await });
        a.wait_for(|s| *s).await.unwrap();
        assert!(!drain.is_finished(), "a tunnel is still open");
        // One opened during the drain is told at once.
        let late = tunnels.enlist();
        assert!(*late.borrow());
        drop((a, late));
        drain.await.unwrap();
    }

    #[tokio::test]
    async fn the_side_that_ends_first_is_named() {
        let activity = Activity::new(Instant::now());
        assert_eq!(activity.first_closed(), None);
        activity.ended(Side::Upstream);
        activity.ended(Side::Client);
        assert_eq!(activity.first_closed(), Some(Closed::Upstream));
        assert_eq!(Closed::Status(Refusal::Revoked).as_str(), "revoked");
    }
}
