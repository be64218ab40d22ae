//! Keep-alive HTTP/1.1 connections to one upstream, kept apart per worker thread, on hyper's
//! client connection API. A request is sent on an idle connection of its own thread when
//! one is ready, else on a new one; a request the idle connection could not take (it was
//! closed before the request was written) is sent again on a new connection, never one that
//! was written. The pool replaced hyper-util's general client, whose per-request key hashing
//! and pool bookkeeping were the largest single cost left in the request path.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

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
    #[error("HTTP/1.1 handshake with {addr} failed")]
    Handshake {
        addr: String,
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
            Self::Tls { .. } => UpstreamFailure::Tls,
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
    /// The endpoint could not be reached at all (TCP, TLS or the HTTP/1.1 start): a reason
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
        Self { settings, idle }
    }

    /// Sends `req` (origin-form URI, headers final) and returns the answer's head; the
    /// connection goes back to the pool and takes its next request once this body is read.
    /// A failure hands back the request when it was never written, so that another endpoint
    /// may take it.
    pub async fn send(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, Failed> {
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
        let mut sender = match self.connect().await {
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
            Err(mut e) => Err(Failed {
                unsent: e.take_message(),
                error: SendError::Exchange(e.into_error()),
            }),
        }
    }

    /// Sends `req` on a connection of its own, closed afterwards, and returns the answer's
    /// status: a health check must show that the endpoint takes new connections now.
    pub async fn probe(&self, req: Request<ProxyBody>) -> Result<http::StatusCode, SendError> {
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
        let Some(tls) = &s.tls else {
            return self.start_http1(stream).await;
        };
        // Bounded like the TCP connect: an app that stalls the handshake is not waited for.
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::clone(&tls.config));
        let stream = tokio::time::timeout(
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
        })?;
        self.start_http1(stream).await
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
