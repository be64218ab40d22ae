//! Keep-alive HTTP/1.1 connections to one upstream, kept apart per worker thread, on hyper's
//! client connection API. A request is sent on an idle connection of its own thread when
//! one is ready, else on a new one; a request the idle connection could not take (it was
//! closed before the request was written) is sent again on a new connection, never one that
//! was written. The pool replaced hyper-util's general client, whose per-request key hashing
//! and pool bookkeeping were the largest single cost left in the request path. At most
//! `max_idle_per_worker` idle connections are kept per thread, and [`UpstreamPool::sweep`]
//! closes those idle longer than `idle_timeout`. With `http2`, requests share one HTTP/2
//! connection per thread instead (see `upstream_h2`); upgrades still take HTTP/1.1.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::upstream_h2::H2Slots;

use crate::http_common::body::ProxyBody;
use crate::telemetry::UpstreamFailure;
use crate::tls::UpstreamTls;

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connecting to {addr} failed")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: String, after: Duration },
    #[error("TLS handshake with {addr} failed")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{addr} {detail}")]
    Protocol { addr: String, detail: &'static str },
    #[error("HTTP handshake with {addr} failed")]
    Handshake {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    /// TLS 1.3 lets the client finish its handshake before the server has judged the
    /// client's certificate: an app that refuses the gateway's certificate (or its missing
    /// one) says so with an alert on the first read, after the request was written. Its TLS
    /// layer never passed that request on.
    #[error("{addr} refused the TLS connection after the handshake ({alert})")]
    TlsRefused {
        addr: String,
        alert: String,
        #[source]
        source: hyper::Error,
    },
    #[error("the exchange with the upstream failed")]
    Exchange(#[source] hyper::Error),
}

impl SendError {
    /// The reason counted in the route's failure metric.
    pub fn failure(&self) -> UpstreamFailure {
        match self {
            Self::Connect { .. } => UpstreamFailure::Connect,
            Self::ConnectTimeout { .. } => UpstreamFailure::Timeout,
            Self::Tls { .. } | Self::TlsRefused { .. } => UpstreamFailure::Tls,
            Self::Protocol { .. } => UpstreamFailure::Protocol,
            Self::Handshake { .. } | Self::Exchange(_) => UpstreamFailure::Exchange,
        }
    }
}

/// A request that failed, with the request itself when it was never written (the connection
/// could not be made, or closed before the request went out).
#[derive(Debug)]
pub struct Failed {
    pub error: SendError,
    pub unsent: Option<Request<ProxyBody>>,
}

impl Failed {
    fn sent(error: SendError) -> Self {
        Self {
            error,
            unsent: None,
        }
    }
}

impl SendError {
    /// The endpoint could not be reached at all (TCP, TLS or the HTTP start): a reason
    /// to leave it out for a while.
    pub fn is_connect(&self) -> bool {
        !matches!(self, Self::Exchange(_))
    }
}

/// How the connections to one upstream are made and kept.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// `host:port`, as the socket connects to it.
    pub addr: String,
    pub connect_timeout: Duration,
    /// An idle connection older than this is closed instead of used.
    pub idle_timeout: Duration,
    /// Idle connections kept per worker thread; more are closed after their exchange.
    pub max_idle_per_worker: usize,
    /// For an `https` upstream.
    pub tls: Option<UpstreamTls>,
    /// Requests go over one shared HTTP/2 connection per thread (`upstream_http2`).
    pub http2: bool,
}

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// The idle connections of one upstream, one list per worker thread.
pub struct UpstreamPool {
    settings: PoolSettings,
    /// Indexed by worker: each lock is taken only by its own thread, so never contended.
    idle: Box<[Mutex<Vec<Idle>>]>,
    /// With `http2`.
    h2: Option<H2Slots>,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl UpstreamPool {
    pub fn new(settings: PoolSettings, workers: usize) -> Self {
        let idle = (0..workers.max(1))
            .map(|_| Mutex::new(Vec::new()))
            .collect();
        let h2 = settings
            .http2
            .then(|| H2Slots::new(workers, settings.tls.as_ref()));
        Self { settings, idle, h2 }
    }

    /// Closes the idle connections older than `idle_timeout` (and forgets closed ones);
    /// returns how many went. Run now and then, so that an endpoint no longer asked keeps
    /// no sockets open at the app.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let timeout = self.settings.idle_timeout;
        let mut closed = 0;
        for list in &self.idle {
            let Ok(mut list) = list.lock() else {
                continue;
            };
            let before = list.len();
            // Dropping the sender ends the connection once any answer on it is read.
            list.retain(|e| !e.sender.is_closed() && now.duration_since(e.since) <= timeout);
            closed += before - list.len();
        }
        if let Some(h2) = &self.h2 {
            closed += h2.sweep(timeout, now);
        }
        closed
    }

    /// How often [`Self::sweep`] should run: often enough that a connection is closed
    /// within half its idle timeout after it expired.
    pub fn sweep_interval(&self) -> Duration {
        (self.settings.idle_timeout / 2).clamp(Duration::from_millis(500), Duration::from_secs(30))
    }

    /// Sends `req` (origin-form URI, headers final) and returns the answer's head; the
    /// connection goes back to the pool and takes its next request once this body is read.
    /// A failure hands back the request when it was never written, so that another endpoint
    /// may take it.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, Failed> {
        if let Some(h2) = &self.h2
            && !wants_http1(&req)
        {
            // Boxed: inline, the HTTP/2 path's connect and handshake states would make every
            // HTTP/1.1 request's future larger.
            return Box::pin(self.send_h2(h2, req)).await;
        }
        let mut req = req;
        if let Some(mut sender) = self.checkout() {
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin(sender);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the connection had closed. A new one takes it.
                    Some(unsent) => req = unsent,
                    None => return Err(Failed::sent(SendError::Exchange(e.into_error()))),
                },
            }
        }
        // Boxed: a new connection is the rare case; inline, its TCP and TLS states would
        // make the future of every request on a kept connection larger.
        let mut sender = match Box::pin(self.connect()).await {
            Ok(s) => s,
            Err(error) => {
                return Err(Failed {
                    error,
                    unsent: Some(req),
                });
            }
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                self.checkin(sender);
                Ok(resp)
            }
            Err(mut e) => {
                let unsent = e.take_message();
                let e = e.into_error();
                let error = match handshake_alert(&e) {
                    Some(alert) => SendError::TlsRefused {
                        addr: self.settings.addr.clone(),
                        alert,
                        source: e,
                    },
                    None => SendError::Exchange(e),
                };
                Err(Failed { unsent, error })
            }
        }
    }

    /// [`Self::send`] on this thread's HTTP/2 connection: a request it refused unsent goes
    /// on a new connection once.
    async fn send_h2(
        &self,
        h2: &H2Slots,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, Failed> {
        let mut req = h2.request(req, &self.settings.addr);
        let mut fresh = false;
        loop {
            let mut sender = match h2.sender(fresh, || self.connect_h2(h2)).await {
                Ok(s) => s,
                Err(error) => {
                    return Err(Failed {
                        error,
                        unsent: Some(req),
                    });
                }
            };
            match sender.try_send_request(req).await {
                Ok(mut resp) => {
                    // Answered to the client in its own version; HTTP/1.1 is the fast path.
                    *resp.version_mut() = http::Version::HTTP_11;
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => {
                        req = unsent;
                        fresh = true;
                    }
                    unsent => {
                        return Err(Failed {
                            unsent,
                            error: SendError::Exchange(e.into_error()),
                        });
                    }
                },
            }
        }
    }

    /// Sends `req` on a connection of its own, closed afterwards, and returns the answer's
    /// status: a health check must show that the endpoint takes new connections now.
    pub async fn probe(&self, req: Request<ProxyBody>) -> Result<http::StatusCode, SendError> {
        if let Some(h2) = &self.h2 {
            let req = h2.request(req, &self.settings.addr);
            let mut sender = self.connect_h2(h2).await?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(SendError::Exchange)?;
            return Ok(resp.status());
        }
        let mut sender = self.connect().await?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(SendError::Exchange)?;
        Ok(resp.status())
    }

    fn worker_list(&self) -> &Mutex<Vec<Idle>> {
        &self.idle[super::workers::current_index() % self.idle.len()]
    }

    /// A connection of this thread ready for a request; closed and expired ones are dropped
    /// on the way, busy ones (an answer still streaming) left for later.
    fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        let mut list = self.worker_list().lock().ok()?;
        let mut now = None;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let entry = &list[i];
            if entry.sender.is_closed() {
                list.swap_remove(i);
                continue;
            }
            if !entry.sender.is_ready() {
                continue;
            }
            let now = *now.get_or_insert_with(Instant::now);
            let expired = now.duration_since(entry.since) > self.settings.idle_timeout;
            let entry = list.swap_remove(i);
            if !expired {
                return Some(entry.sender);
            }
        }
        None
    }

    fn checkin(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut list) = self.worker_list().lock()
            && list.len() < self.settings.max_idle_per_worker
        {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, SendError> {
        let stream = self.tcp().await?;
        match &self.settings.tls {
            None => self.start_http1(stream).await,
            Some(tls) => self.start_http1(self.tls(tls, stream).await?).await,
        }
    }

    /// A new HTTP/2 connection: over TLS only when the app chose `h2` in ALPN (an app
    /// answering HTTP/1.1 would read the HTTP/2 preface as a bad request).
    async fn connect_h2(&self, h2: &H2Slots) -> Result<http2::SendRequest<ProxyBody>, SendError> {
        let stream = self.tcp().await?;
        let Some(tls) = h2.tls() else {
            return self.start_http2(stream).await;
        };
        let stream = self.tls(tls, stream).await?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(SendError::Protocol {
                addr: self.settings.addr.clone(),
                detail: "did not choose h2 in ALPN, and upstream_http2 is set",
            });
        }
        self.start_http2(stream).await
    }

    async fn tcp(&self) -> Result<TcpStream, SendError> {
        let s = &self.settings;
        let stream = tokio::time::timeout(s.connect_timeout, TcpStream::connect(s.addr.as_str()))
            .await
            .map_err(|_| SendError::ConnectTimeout {
                addr: s.addr.clone(),
                after: s.connect_timeout,
            })?
            .map_err(|source| SendError::Connect {
                addr: s.addr.clone(),
                source,
            })?;
        // Small requests and answers go out at once, not after the peer's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set on an upstream connection");
        }
        Ok(stream)
    }

    async fn tls(
        &self,
        tls: &UpstreamTls,
        stream: TcpStream,
    ) -> Result<TlsStream<TcpStream>, SendError> {
        let s = &self.settings;
        // Bounded like the TCP connect: an app that stalls the handshake is not waited for.
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(&tls.config));
        tokio::time::timeout(
            s.connect_timeout,
            connector.connect(tls.server_name.clone(), stream),
        )
        .await
        .map_err(|_| SendError::ConnectTimeout {
            addr: s.addr.clone(),
            after: s.connect_timeout,
        })?
        .map_err(|source| SendError::Tls {
            addr: s.addr.clone(),
            source,
        })
    }

    async fn start_http2<T>(&self, io: T) -> Result<http2::SendRequest<ProxyBody>, SendError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(|source| SendError::Handshake {
                addr: self.settings.addr.clone(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        Ok(sender)
    }

    async fn start_http1<T>(&self, io: T) -> Result<SendRequest<ProxyBody>, SendError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) =
            http1::handshake(TokioIo::new(io))
                .await
                .map_err(|source| SendError::Handshake {
                    addr: self.settings.addr.clone(),
                    source,
                })?;
        // Upgrades (WebSocket) need the connection driven with them.
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// A request only HTTP/1.1 carries: an `Upgrade` (WebSocket) or `CONNECT`.
fn wants_http1(req: &Request<ProxyBody>) -> bool {
    req.headers().contains_key(http::header::UPGRADE) || req.method() == http::Method::CONNECT
}

/// The alert an app ended a fresh connection with, when it is about the handshake (the
/// gateway's certificate, or the lack of one) rather than the exchange.
fn handshake_alert(e: &hyper::Error) -> Option<String> {
    use rustls::AlertDescription as A;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        // An io::Error's `source` skips the error it wraps: look inside it as well.
        let inner = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(c), inner].into_iter().flatten() {
            if let Some(rustls::Error::AlertReceived(alert)) = candidate.downcast_ref() {
                return matches!(
                    alert,
                    A::CertificateRequired
                        | A::BadCertificate
                        | A::UnsupportedCertificate
                        | A::CertificateRevoked
                        | A::CertificateExpired
                        | A::CertificateUnknown
                        | A::UnknownCA
                        | A::AccessDenied
                        | A::HandshakeFailure
                        | A::DecryptError
                )
                .then(|| format!("{alert:?}"));
            }
        }
        cause = c.source();
    }
    None
}
