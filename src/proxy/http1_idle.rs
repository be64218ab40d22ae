//! HTTP/1.1 connections that give their buffers back while idle.
//!
//! hyper keeps a connection's read buffer (up to `max_header_bytes`), an 8 KiB write buffer
//! and its dispatcher state for as long as the connection is open, idle or not. Most
//! keep-alive connections are idle most of the time, so here a connection is served in
//! *rounds*: once a round has answered its requests and its connection has been quiet for
//! [`PARK_AFTER`], hyper is asked to close the idle connection without shutting the stream
//! down; the stream (and any bytes hyper had read ahead) is taken back and *parked*. A
//! parked connection holds only its TLS state until the client's next bytes arrive, which
//! start the next round on a fresh hyper connection.
//!
//! The stream is taken back only when hyper provably stopped at a message boundary: the
//! shutdown must complete in the very poll that asks for it, with no byte read or written
//! and no stuck flush finished meanwhile, which is hyper's path for an idle connection. Any
//! other ending closes the connection as before. The idle limit (`header_read_timeout_secs`)
//! counts from when the connection went idle, parked or not.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::Shared;
use super::handler::{ConnInfo, handle};
use crate::config::ListenerConfig;
use crate::http_common::body::{BoxError, ProxyBody};

/// How long a round's connection must be quiet (no request in flight, nothing read or
/// written) before it is parked. Checked on a timer of this period, so parking happens
/// between one and two periods after the last byte. Short, so that a burst of new
/// connections reuses the buffers of the ones before it instead of adding its own; long
/// against the gap between a busy client's requests, which keep their round.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(50);

/// Longest wait for a parked connection's TLS close_notify to leave when it is closed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The first bytes of every HTTP/2 connection (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client connection's stream as hyper sees it: bytes read ahead by an earlier round are
/// served first, and reads and writes are counted so the round can tell it is quiet.
pub(crate) struct ConnIo {
    stream: TlsStream<TcpStream>,
    prefix: Bytes,
    activity: Arc<Activity>,
    /// A flush returned `Pending`; its completion counts as activity.
    flush_pending: bool,
}

impl ConnIo {
    pub(crate) fn new(stream: TlsStream<TcpStream>) -> Self {
        Self {
            stream,
            prefix: Bytes::new(),
            activity: Arc::new(Activity::default()),
            flush_pending: false,
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            if this.prefix.is_empty() {
                // An emptied slice still holds the buffer it came from.
                this.prefix = Bytes::new();
            }
            this.activity.touch();
            return Poll::Ready(Ok(()));
        }
        let ready = Pin::new(&mut this.stream).poll_read(cx, buf);
        if ready.is_ready() {
            // Data, end of stream or an error: all of them change what hyper does next.
            this.activity.touch();
        }
        ready
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let ready = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.activity.wrote(ready.is_ready());
        ready
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let ready = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.activity.wrote(ready.is_ready());
        ready
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let ready = Pin::new(&mut this.stream).poll_flush(cx);
        match ready {
            Poll::Pending => {
                this.flush_pending = true;
                this.activity.wrote(false);
            }
            Poll::Ready(_) if this.flush_pending => {
                this.flush_pending = false;
                this.activity.wrote(true);
            }
            Poll::Ready(_) => {}
        }
        ready
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.activity.parking.load(Ordering::Relaxed) {
            // hyper is closing an idle round; the stream itself stays open.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

/// What a round's timer reads to decide whether the connection is quiet. Atomics because
/// request and response bodies may end on other tasks (an upstream forwarder, say).
#[derive(Default)]
struct Activity {
    /// Bumped on every read or write that did something.
    events: AtomicU64,
    /// Requests whose response has not been dropped by hyper yet.
    in_flight: AtomicU64,
    /// Responses finished in the current round.
    answered: AtomicU64,
    /// A request head arrived in the current round.
    head_seen: AtomicBool,
    /// The last write or flush is waiting for the client to read.
    write_blocked: AtomicBool,
    /// The round is being closed to park the connection.
    parking: AtomicBool,
}

impl Activity {
    fn touch(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// A write or flush finished (`true`, which counts as activity) or is waiting.
    fn wrote(&self, done: bool) {
        self.write_blocked.store(!done, Ordering::Relaxed);
        if done {
            self.touch();
        }
    }

    fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    fn start_round(&self) {
        self.answered.store(0, Ordering::Relaxed);
        self.head_seen.store(false, Ordering::Relaxed);
        self.parking.store(false, Ordering::Relaxed);
    }

    fn request_started(self: &Arc<Self>) -> Ticket {
        self.head_seen.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Ticket(Arc::clone(self))
    }

    /// Every request of this round answered, none in flight, nothing waiting to be sent
    /// (a slow reader's response keeps its connection as it is).
    fn settled(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
            && self.answered.load(Ordering::Relaxed) > 0
            && !self.write_blocked.load(Ordering::Relaxed)
    }
}

/// Held by a request until hyper drops its response body (fully sent, or abandoned).
struct Ticket(Arc<Activity>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that holds its request's [`Ticket`].
pub(crate) struct CountedBody {
    inner: ProxyBody,
    _ticket: Option<Ticket>,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The handler's future, whose response body takes its request's [`Ticket`].
struct Counted<F> {
    handler: F,
    ticket: Option<Ticket>,
}

impl<F> Future for Counted<F>
where
    F: Future<Output = Result<http::Response<ProxyBody>, Infallible>> + Unpin,
{
    type Output = Result<http::Response<CountedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Poll::Ready(resp) = Pin::new(&mut this.handler).poll(cx) else {
            return Poll::Pending;
        };
        let Ok(resp) = resp;
        Poll::Ready(Ok(resp.map(|inner| CountedBody {
            inner,
            _ticket: this.ticket.take(),
        })))
    }
}

/// What an HTTP/1.1 connection needs besides its stream.
pub(crate) struct Http1Setup {
    pub shared: Arc<Shared>,
    pub info: Arc<ConnInfo>,
    pub stop: watch::Receiver<bool>,
}

/// How a served connection ended.
pub(crate) enum Served {
    Closed,
    /// The client did not use ALPN and opened with the HTTP/2 preface: the caller serves
    /// HTTP/2 on the returned stream (the preface is read again from its prefix).
    Http2(Box<ConnIo>),
}

type Io = TokioIo<Box<ConnIo>>;

/// Serves HTTP/1.1 on `io` until the connection ends. With `sniff` (no ALPN) the first
/// bytes decide between HTTP/1.1 and HTTP/2.
pub(crate) async fn serve(
    mut io: Box<ConnIo>,
    limits: &ListenerConfig,
    setup: Http1Setup,
    mut sniff: bool,
) -> Served {
    let Http1Setup {
        shared,
        info,
        mut stop,
    } = setup;
    let metrics = Arc::clone(&shared.metrics);
    let idle_limit = Duration::from_secs(limits.header_read_timeout_secs);
    let builder = http1_builder(limits);
    let activity = Arc::clone(&io.activity);
    let svc_activity = Arc::clone(&activity);
    let conn_info = Arc::clone(&info);
    let mut service = service_fn(move |req: http::Request<Incoming>| {
        let ticket = svc_activity.request_started();
        // Boxed where it is made (the handler's future is large; moving it into another
        // future would copy it per request), and hyper keeps only a pointer per connection.
        Counted {
            handler: Box::pin(handle(Arc::clone(&shared), Arc::clone(&info), req)),
            ticket: Some(ticket),
        }
    });
    // When the connection last went idle: the idle limit counts from here.
    let mut idle_since = Instant::now();
    loop {
        if io.prefix.is_empty() || (sniff && undecided(&io.prefix)) {
            // Parked (or not started yet): only the TLS state is held while waiting.
            metrics.connection_parked();
            let woke = wait_for_bytes(&mut io, idle_since + idle_limit, &mut stop).await;
            metrics.connection_unparked();
            match woke {
                Woken::Data => {}
                Woken::Closed => return Served::Closed,
                Woken::Expired | Woken::Stopping => {
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.stream.shutdown()).await;
                    return Served::Closed;
                }
            }
            if sniff && undecided(&io.prefix) {
                continue;
            }
        }
        if std::mem::take(&mut sniff) && io.prefix.starts_with(H2_PREFACE) {
            return Served::Http2(io);
        }
        activity.start_round();
        // Boxed, so that the connection's task does not keep room for it while parked.
        let conn = Box::new(
            builder
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades(),
        );
        let Some(parts) = run_round(conn, &activity, idle_since + idle_limit, &stop).await else {
            return Served::Closed;
        };
        conn_info.forget_request_state();
        let now = Instant::now();
        idle_since = now.checked_sub(PARK_AFTER).unwrap_or(now);
        service = parts.service;
        io = parts.io.into_inner();
        // Bytes hyper had read ahead come first, then whatever the old prefix still held;
        // copied, because `read_buf` is a view into hyper's whole read buffer.
        if !parts.read_buf.is_empty() {
            io.prefix = [parts.read_buf.as_ref(), io.prefix.as_ref()]
                .concat()
                .into();
        }
    }
}

/// Runs one round of hyper until the connection ends (`None`) or is parked: then its
/// stream, read-ahead bytes and service come back.
async fn run_round<S, B>(
    mut conn: Box<http1::UpgradeableConnection<Io, S>>,
    activity: &Activity,
    head_deadline: Instant,
    stop: &watch::Receiver<bool>,
) -> Option<http1::Parts<Io, S>>
where
    S: hyper::service::HttpService<Incoming, ResBody = B> + Unpin,
    S::Future: Unpin,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut tick = Box::pin(tokio::time::sleep(PARK_AFTER));
    // Whether the timer has been polled since it was last set, so its waker is registered.
    let mut armed = false;
    let mut seen = activity.events();
    // Set once the round is to end with its current exchange: no parking after that.
    let mut ending = false;
    loop {
        // The connection is polled on every wake-up; the timer only when it has fired or
        // has not registered its waker yet (a task's waker does not change), and the stop
        // signal is read at each tick, so a request pays for neither.
        let fired = std::future::poll_fn(|cx| {
            if let Poll::Ready(done) = Pin::new(&mut *conn).poll(cx) {
                return Poll::Ready(Err(done));
            }
            if !armed || tick.is_elapsed() {
                armed = true;
                if tick.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
            }
            Poll::Pending
        })
        .await;
        if let Err(done) = fired {
            if let Err(e) = done {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return None;
        }
        let now = Instant::now();
        if !activity.head_seen.load(Ordering::Relaxed) && now >= head_deadline {
            tracing::debug!("no request head within header_read_timeout_secs");
            return None;
        }
        if !ending && *stop.borrow() {
            // Shutting down: finish the current exchange, then close (noticed within a tick).
            ending = true;
            Pin::new(&mut *conn).graceful_shutdown();
        }
        let events = activity.events();
        if !ending && events == seen && activity.settled() {
            activity.parking.store(true, Ordering::Relaxed);
            Pin::new(&mut *conn).graceful_shutdown();
            // Only an idle connection finishes in this very poll without any I/O.
            let before = activity.events();
            let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut conn).poll(cx))).await;
            match polled {
                Poll::Ready(Ok(())) if activity.events() == before => {
                    return (*conn).into_parts();
                }
                Poll::Ready(_) => return None,
                Poll::Pending => {
                    // Not idle after all: keep-alive is now off, so the connection closes
                    // (for real) after its current exchange.
                    activity.parking.store(false, Ordering::Relaxed);
                    ending = true;
                }
            }
        }
        seen = events;
        tick.as_mut().reset(now + PARK_AFTER);
        armed = false;
    }
}

enum Woken {
    /// Bytes arrived; they are in the stream's prefix.
    Data,
    /// The client closed the connection (or it failed).
    Closed,
    /// The idle limit passed.
    Expired,
    /// The gateway is shutting down.
    Stopping,
}

/// Waits for the client's next bytes without any HTTP state, appending them to the prefix.
async fn wait_for_bytes(
    io: &mut ConnIo,
    deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Woken {
    let read = std::future::poll_fn(|cx| {
        // On the stack only while polled: a parked connection keeps no buffer of its own.
        let mut buf = [0u8; 2048];
        let mut rb = ReadBuf::new(&mut buf);
        match Pin::new(&mut io.stream).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(_)) => Poll::Ready(false),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(false),
            Poll::Ready(Ok(())) => {
                io.prefix = if io.prefix.is_empty() {
                    Bytes::copy_from_slice(rb.filled())
                } else {
                    [io.prefix.as_ref(), rb.filled()].concat().into()
                };
                Poll::Ready(true)
            }
        }
    });
    tokio::select! {
        got = read => if got { Woken::Data } else { Woken::Closed },
        () = tokio::time::sleep_until(deadline) => Woken::Expired,
        () = super::stopped(stop) => Woken::Stopping,
    }
}

/// The first bytes could still be the start of the HTTP/2 preface.
fn undecided(prefix: &[u8]) -> bool {
    prefix.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(prefix)
}

fn http1_builder(l: &ListenerConfig) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(l.header_read_timeout_secs))
        .max_buf_size(l.max_header_bytes)
        // One buffer, so head and body of a response leave in one TLS record.
        .writev(false)
        // `Content-Type`, not `content-type`: names are case-insensitive, but EST clients in
        // routers and phones (libest) compare them case-sensitively.
        .title_case_headers(true)
        .keep_alive(true);
    b
}
