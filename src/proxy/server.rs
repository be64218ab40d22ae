//! The accept loop of one TLS listener: connection limit (shedding with 503 past it),
//! handshake timeout, judging the presented chain once per connection, then hyper serving
//! HTTP/1.1 and HTTP/2 (with upgrades) under the listener's limits, watched for graceful
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use super::Shared;
use super::h2_idle;
use super::handler::{ConnInfo, handle};
use super::http1_idle::{self, ConnIo, Http1Setup, Served};
use super::refusal::{Problem, Reply};
use crate::config::{ClientAuth, ListenerConfig};
use crate::http_common::address_slots::{AddressSlot, AddressSlots};
use crate::telemetry::{in_span, phase_span};
use crate::tls::PresentedCert;

/// Connections past `max_connections` still complete the handshake and get a 503, this
/// many at a time; beyond that they are closed at once. Either way the gateway keeps its
/// memory bounded and the clients it serves are not slowed.
const SHED_SLOTS: usize = 64;
/// Longest a shed connection may take for its handshake and request head.
const SHED_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection limits of one listener, shared by every worker accepting on it.
#[derive(Clone)]
pub(crate) struct ListenerSlots {
    /// `max_connections` permits; a connection holds one while open.
    pub open: Arc<Semaphore>,
    /// Connections being answered 503 at once.
    pub shedding: Arc<Semaphore>,
    /// `max_connections_per_address`.
    pub per_address: Arc<AddressSlots>,
}

impl ListenerSlots {
    pub(crate) fn new(max_connections: usize, per_address: usize) -> Self {
        Self {
            open: Arc::new(Semaphore::new(max_connections)),
            shedding: Arc::new(Semaphore::new(SHED_SLOTS)),
            per_address: AddressSlots::new(per_address),
        }
    }
}

/// Accepts connections on `listener` (the `index`th configured) until `stop` turns true.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    index: usize,
    listener: TcpListener,
    limits: ListenerSlots,
    mut stop: watch::Receiver<bool>,
    watcher: impl Fn() -> Watcher + Send + 'static,
) {
    let ListenerSlots {
        open: slots,
        shedding: shed_slots,
        per_address,
    } = limits;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = crate::http_common::stopped(&mut stop) => return,
        };
        let (tcp, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shed(&shared, index, tcp, remote, &shed_slots);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let runtime = shared.runtime.borrow().clone();
        let Some(tls) = runtime.listeners.get(index).cloned() else {
            return;
        };
        // Limits and timeouts follow the configuration in force when the connection opens.
        // (The configuration itself, not a copy of the listener's part: a copy would keep
        // its paths on the heap for as long as the connection lives.)
        let config = Arc::clone(&runtime.config);
        let shared = Arc::clone(&shared);
        let watcher = watcher();
        let stop = stop.clone();
        let per_address = Arc::clone(&per_address);
        tokio::spawn(async move {
            let mut tcp = tcp;
            // A connection's task is as large as its largest state, for as long as the
            // connection lives: the handshake and the served connection are boxed, and
            // everything between them is scoped to the block, so an idle connection's task
            // holds little more than pointers.
            let served = {
                let limits = &config.listeners[index];
                // One deadline for the PROXY header and the TLS handshake together.
                let deadline = tokio::time::Instant::now()
                    + Duration::from_secs(limits.handshake_timeout_secs);
                let Some(remote) =
                    client_address(&shared, limits, &mut tcp, remote, deadline).await
                else {
                    return;
                };
                // Counted by the client's address, the PROXY header's when there is one.
                let Some(address) = per_address.take(remote.ip()) else {
                    shared.metrics.handshake_failure("per_address_limit");
                    tracing::debug!(%remote, "over max_connections_per_address: closed");
                    return;
                };
                // Shared with a tunnel opened on this connection, which keeps it after the
                // connection's own task ends.
                let permit = Arc::new(ConnPermit {
                    _open: permit,
                    _address: address,
                });
                let acceptor = TlsAcceptor::from(tls.server_config.clone());
                // A trace of its own per connection (its requests are traces of their own):
                // the handshake, where the client certificate is judged.
                let span = phase_span!(
                    tracing::Level::DEBUG,
                    "tls.handshake",
                    otel.kind = "server",
                    %remote,
                    client_certificate = tracing::field::Empty,
                    error = tracing::field::Empty,
                );
                let handshake = tokio::time::timeout_at(
                    deadline,
                    Box::pin(in_span(&span, acceptor.accept(tcp))),
                )
                .await;
                let stream = match handshake {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        let reason = handshake_reason(&e);
                        span.record("error", reason);
                        shared.metrics.handshake_failure(reason);
                        tracing::info!(%remote, reason, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        span.record("error", "timeout");
                        shared.metrics.handshake_failure("timeout");
                        tracing::info!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
                let (_, session) = stream.get_ref();
                span.record("client_certificate", session.peer_certificates().is_some());
                drop(span);
                let sni = session.server_name().map(str::to_ascii_lowercase);
                // Under `required` the handshake has already judged the chain and refused
                // any problem; only a lenient handshake (`optional`) needs the verdict again.
                let strict = tls.client_auth == ClientAuth::Required;
                let presented = session
                    .peer_certificates()
                    .and_then(PresentedCert::inspect)
                    .map(|mut p| {
                        if p.problem.is_none() && !strict {
                            p.problem = tls.verifier.judge(&p.chain);
                        }
                        Arc::new(p)
                    });
                let alpn = Alpn::of(session.alpn_protocol());
                let info = Arc::new(ConnInfo {
                    remote,
                    forwarded_for: super::forward::forwarded_for(remote),
                    client_auth: tls.client_auth,
                    sni,
                    names: Arc::clone(&tls.names),
                    presented,
                    identity_headers: std::sync::Mutex::default(),
                    permit,
                    trust_request_id: limits.trust_request_id,
                });
                let conn = Conn {
                    io: Box::new(ConnIo::new(stream)),
                    shared: Arc::clone(&shared),
                    info,
                    watcher,
                    stop,
                };
                Box::pin(serve(conn, Arc::clone(&config), index, alpn))
            };
            shared.metrics.connection_opened();
            served.await;
            shared.metrics.connection_closed();
        });
    }
}

/// What an open connection holds of its listener's limits, given back when the connection
/// (and any tunnel opened on it) ends.
#[derive(Debug)]
pub(crate) struct ConnPermit {
    _open: tokio::sync::OwnedSemaphorePermit,
    _address: AddressSlot,
}

/// The client's address: the peer's own, or on a `proxy_protocol` listener the one its
/// PROXY header names, read within the handshake timeout. `None` when the connection must
/// be closed before TLS: a peer outside `trusted_proxies`, no header, a malformed one.
async fn client_address(
    shared: &Shared,
    limits: &ListenerConfig,
    tcp: &mut tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    deadline: tokio::time::Instant,
) -> Option<std::net::SocketAddr> {
    let peer = crate::http_common::unmapped(peer);
    if !limits.proxy_protocol {
        return Some(peer);
    }
    // Judged before reading a byte: an untrusted peer's header would be a forged address.
    if !limits.trusted_proxies.iter().any(|c| c.contains(peer.ip())) {
        shared.metrics.handshake_failure("proxy_untrusted");
        tracing::warn!(target: "certgate::security", %peer, "PROXY protocol connection from a peer outside trusted_proxies: closed");
        return None;
    }
    match tokio::time::timeout_at(deadline, super::proxy_protocol::read_header(tcp)).await {
        Ok(Ok(source)) => {
            // The balancer's address appears nowhere else once the client's replaces it.
            tracing::debug!(%peer, client = ?source, "PROXY protocol header read");
            Some(source.map_or(peer, crate::http_common::unmapped))
        }
        Ok(Err(e)) => {
            shared.metrics.handshake_failure(e.reason());
            tracing::warn!(target: "certgate::security", %peer, error = %e, "PROXY protocol header refused: closed");
            None
        }
        Err(_) => {
            shared.metrics.handshake_failure("proxy_header_timeout");
            tracing::info!(%peer, "PROXY protocol header timed out");
            None
        }
    }
}

/// An accepted connection after its handshake.
struct Conn {
    io: Box<ConnIo>,
    shared: Arc<Shared>,
    info: Arc<ConnInfo>,
    /// Keeps the gateway's drain waiting for this connection.
    watcher: Watcher,
    stop: watch::Receiver<bool>,
}

/// Serves HTTP on a connection until it ends: HTTP/1.1 in rounds that release their
/// buffers while idle ([`http1_idle`]), HTTP/2 with hyper's own connection.
async fn serve(conn: Conn, config: Arc<crate::config::Config>, index: usize, alpn: Alpn) {
    let limits = &config.listeners[index];
    let Conn {
        io,
        shared,
        info,
        watcher,
        mut stop,
    } = conn;
    let io = match alpn {
        Alpn::H2 => io,
        Alpn::Http1 | Alpn::None => {
            let setup = Http1Setup {
                shared: Arc::clone(&shared),
                info: Arc::clone(&info),
                stop: stop.clone(),
            };
            match http1_idle::serve(io, limits, setup, matches!(alpn, Alpn::None)).await {
                Served::Closed => return,
                Served::Http2(io) => io,
            }
        }
    };
    // Boxed: hyper keeps room for the service's future in every connection, idle or not;
    // boxed, that room is a pointer and the request's state exists only while a request is
    // in flight.
    let streams = h2_idle::Streams::new();
    let counted = Arc::clone(&streams);
    let service = service_fn(move |req| {
        let guard = counted.begin();
        let answer = handle(Arc::clone(&shared), Arc::clone(&info), req);
        Box::pin(async move {
            let response = answer.await?;
            Ok::<_, std::convert::Infallible>(response.map(|b| h2_idle::GuardedBody::new(b, guard)))
        })
    });
    let conn = http2_builder(limits)
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let mut conn = Box::pin(conn);
    let idle = Duration::from_secs(limits.h2_idle_timeout_secs);
    let ended = h2_idle::serve(
        conn.as_mut(),
        |c| c.graceful_shutdown(),
        &streams,
        idle,
        &mut stop,
    )
    .await;
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    // Held until here: the gateway's drain waits for this connection.
    drop(watcher);
}

/// Answers a connection over the limit with 503 (`overloaded`) and closes it; closes it at
/// once when too many are being shed already.
fn shed(
    shared: &Arc<Shared>,
    index: usize,
    tcp: tokio::net::TcpStream,
    remote: std::net::SocketAddr,
    shed_slots: &Arc<Semaphore>,
) {
    shared.metrics.request("overloaded", 503);
    let Ok(permit) = shed_slots.clone().try_acquire_owned() else {
        tracing::debug!(%remote, "over max_connections and shedding capacity: closed");
        return;
    };
    let (tls, config) = {
        let runtime = shared.runtime.borrow();
        let Some(tls) = runtime.listeners.get(index).cloned() else {
            return;
        };
        (tls, Arc::clone(&runtime.config))
    };
    tracing::warn!(%remote, "over max_connections: answering 503");
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let _permit = permit;
        let mut tcp = tcp;
        // A PROXY header comes before the handshake here too.
        let limits = &config.listeners[index];
        let deadline = tokio::time::Instant::now() + SHED_TIMEOUT;
        if client_address(&shared, limits, &mut tcp, remote, deadline)
            .await
            .is_none()
        {
            return;
        }
        let acceptor = TlsAcceptor::from(tls.server_config.clone());
        let Ok(Ok(stream)) = tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await else {
            return;
        };
        let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let mut resp = Problem::Overloaded.respond(Reply::of(req.headers()));
            let h = resp.headers_mut();
            h.insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("5"),
            );
            h.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            Ok::<_, std::convert::Infallible>(resp)
        });
        let mut b = auto::Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(SHED_TIMEOUT)
            .title_case_headers(true)
            .keep_alive(false);
        b.http2().timer(TokioTimer::new()).max_concurrent_streams(1);
        let conn = b.serve_connection(TokioIo::new(stream), service);
        let _ = tokio::time::timeout(SHED_TIMEOUT, conn).await;
    });
}

/// The HTTP version the client chose with ALPN, when it did.
#[derive(Debug, Clone, Copy)]
enum Alpn {
    Http1,
    H2,
    /// No ALPN: the version is read from the first bytes.
    None,
}

impl Alpn {
    fn of(protocol: Option<&[u8]>) -> Self {
        match protocol {
            Some(b"h2") => Self::H2,
            Some(_) => Self::Http1,
            None => Self::None,
        }
    }
}

fn http2_builder(l: &ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(l.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(l.h2_keepalive_secs))
        .keep_alive_timeout(Duration::from_secs(20));
    b.http2_only()
}

/// A short, stable reason for a failed handshake (a metric label).
fn handshake_reason(e: &std::io::Error) -> &'static str {
    let Some(err) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    match err {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(_) => {
            crate::status::Refusal::as_str(crate::tls::classify(err))
        }
        rustls::Error::PeerIncompatible(_) => "incompatible",
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::InvalidMessage(_) => "invalid_message",
        _ => "other",
    }
}
