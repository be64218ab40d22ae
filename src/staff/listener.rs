//! Accepting staff connections: a bounded number at once, the TLS handshake within a time
//! limit, HTTP/1.1 with a header timeout, and the staff check before every request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::audit::refusal_log::{Entry, RefusalLog};
use crate::audit::{Actor, Audit, Outcome};
use crate::clock::Clock;
use crate::http_common::address_slots::AddressSlots;
use crate::http_common::request_head::{self, HeadRefusal};
use crate::status::StatusCache;
use crate::store::Store;
use crate::tls::{ListenerTls, PresentedCert};

use super::{MAX_BODY, PublicHttpRequest, StaffHttpRequest, StaffService, caller};

/// Staff connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 256;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which of the staff listeners this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// The console: a staff certificate on every request.
    Console,
    /// The obtain page: no client certificate.
    Obtain,
}

impl Door {
    /// The listener's name in the access log.
    fn label(self) -> &'static str {
        match self {
            Self::Console => "staff_console",
            Self::Obtain => "staff_obtain",
        }
    }
}

/// Everything a staff listener needs, built by `app`.
pub struct StaffListener {
    pub door: Door,
    pub tcp: TcpListener,
    /// The TLS side in force: replaced when a reload changes the certificate, the key or
    /// the trust anchors (a CA rollover); open connections keep the one they started with.
    pub tls: watch::Receiver<ListenerTls>,
    pub cache: Arc<StatusCache>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub service: Arc<dyn StaffService>,
    /// The gateway's metrics (refused accesses are counted there).
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// `[staff] max_connections_per_address`.
    pub max_per_address: usize,
}

struct Shared {
    door: Door,
    cache: Arc<StatusCache>,
    store: Store,
    audit: Audit,
    clock: Arc<dyn Clock>,
    service: Arc<dyn StaffService>,
    refusals: RefusalLog,
    metrics: Arc<crate::telemetry::Metrics>,
}

/// Serves staff connections until `stop` turns true.
pub async fn serve(l: StaffListener, mut stop: watch::Receiver<bool>) {
    if let Ok(a) = l.tcp.local_addr() {
        tracing::info!(addr = %a, door = ?l.door, "staff console listening");
    }
    let mut tls = l.tls;
    let mut acceptor = acceptor_of(&tls.borrow_and_update());
    let mut tls_followed = true;
    let shared = Arc::new(Shared {
        door: l.door,
        cache: l.cache,
        audit: Audit::new(l.store.clone()),
        store: l.store,
        clock: l.clock,
        service: l.service,
        refusals: RefusalLog::default(),
        metrics: l.metrics,
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_address = AddressSlots::new(l.max_per_address);
    loop {
        let (tcp, remote) = tokio::select! {
            a = l.tcp.accept() => match a {
                Ok((tcp, remote)) => (tcp, crate::http_common::unmapped(remote)),
                Err(e) => {
                    tracing::warn!(error = %e, "staff console accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::http_common::stopped(&mut stop) => return,
            changed = tls.changed(), if tls_followed => {
                if changed.is_ok() {
                    acceptor = acceptor_of(&tls.borrow_and_update());
                    tracing::info!(door = ?shared.door, "staff console: TLS certificate, key and trust anchors read again at a reload; new connections use them");
                } else {
                    // Nothing follows reloads any more (shutting down): keep what is in force.
                    tls_followed = false;
                }
                continue;
            }
        };
        let Some(address) = per_address.take(remote.ip()) else {
            shared.metrics.handshake_failure("staff_per_address_limit");
            tracing::debug!(%remote, "staff console: over max_connections_per_address; closing");
            continue;
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%remote, "staff console at its connection limit; closing");
            continue;
        };
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let _permit = (permit, address);
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
            let (handshake, refused) = crate::tls::noting_refused_leaf(handshake).await;
            let stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    log_failed_handshake(shared.door, remote, &e, refused.as_ref());
                    return;
                }
                Err(_) => {
                    tracing::info!(%remote, "staff console TLS handshake timed out");
                    return;
                }
            };
            let presented = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(PresentedCert::inspect)
                .map(Arc::new);
            let svc = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                let presented = presented.clone();
                async move {
                    let start = std::time::Instant::now();
                    let log = tracing::enabled!(target: "certgate::access", tracing::Level::INFO);
                    let line = log.then(|| (req.method().clone(), req.uri().path().to_owned()));
                    let mut who = Access::default();
                    let mut response =
                        answer(&shared, presented.as_deref(), remote, req, &mut who).await;
                    crate::http_common::add_hsts(response.headers_mut());
                    crate::http_common::header_case::registered_spellings(&mut response);
                    if let Some((method, path)) = line {
                        tracing::info!(
                            target: "certgate::access",
                            listener = shared.door.label(),
                            %remote,
                            %method,
                            path,
                            status = response.status().as_u16(),
                            staff = who.staff.as_deref(),
                            serial = presented.as_deref().map(|p| p.serial.as_str()),
                            reason = who.reason,
                            latency_ms = start.elapsed().as_secs_f64() * 1000.0,
                            "request"
                        );
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// A failed handshake. A certificate the verifier refused (revoked, expired, another CA)
/// is a security event, logged with its serial: it never reaches the per-request check
/// that audits `staff.access`.
fn log_failed_handshake(
    door: Door,
    remote: std::net::SocketAddr,
    e: &std::io::Error,
    refused: Option<&crate::tls::RefusedLeaf>,
) {
    match refused {
        Some(leaf) => tracing::warn!(target: "certgate::security", listener = door.label(),
            %remote, serial = leaf.serial.as_str(), reason = leaf.refusal.as_str(),
            "staff console: client certificate refused at the TLS handshake"),
        None => tracing::info!(%remote, error = %e, "staff console TLS handshake failed"),
    }
}

/// The console speaks HTTP/1.1 only: no ALPN h2 offer.
fn acceptor_of(tls: &ListenerTls) -> TlsAcceptor {
    let mut server_config = (*tls.server_config).clone();
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(server_config))
}

/// Who a console request was answered for, for its access log line.
#[derive(Default)]
struct Access {
    /// The staff member, once the certificate passed the staff check.
    staff: Option<String>,
    /// The refusal's code when the staff check refused the caller.
    reason: Option<&'static str>,
}

async fn answer(
    shared: &Shared,
    presented: Option<&PresentedCert>,
    remote: std::net::SocketAddr,
    req: Request<Incoming>,
    who: &mut Access,
) -> Response<Full<Bytes>> {
    // The gateway's rules for the method and the host hold here too: the pages judge the
    // Host (`[staff] host`, the CSRF origin) and nothing here is a tunnel or an echo.
    if let Err(refusal) = request_head::check(&req) {
        tracing::warn!(target: "certgate::security", listener = shared.door.label(), %remote,
            method = %req.method(), reason = refusal.reason(), detail = %refusal,
            "request head refused");
        who.reason = Some(refusal.reason());
        shared.metrics.staff_refusal(refusal.reason());
        let mut r = match refusal {
            HeadRefusal::Method(_) => json(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_refused",
                "the staff console does not take this method",
            ),
            HeadRefusal::TransferCoding => json(
                StatusCode::NOT_IMPLEMENTED,
                "transfer_coding_refused",
                "the request body's transfer coding is not chunked alone",
            ),
            _ => json(
                StatusCode::BAD_REQUEST,
                "host_refused",
                "the request names no single, valid host",
            ),
        };
        if r.status() == StatusCode::METHOD_NOT_ALLOWED {
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static(request_head::ALLOWED_METHODS),
            );
        }
        return r;
    }
    if shared.door == Door::Obtain {
        let (parts, body) = req.into_parts();
        let body = match read_body(body).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let response = shared
            .service
            .call_public(PublicHttpRequest {
                parts,
                body,
                remote,
            })
            .await;
        return response.map(Full::new);
    }
    let caller = match caller::resolve(&shared.cache, &shared.store, presented).await {
        Ok(c) => c,
        Err(refusal) => {
            // Someone with a certificate of this CA tried the console: a security event,
            // recorded once a minute per certificate and reason (`refusal_log`).
            who.reason = Some(refusal.code());
            let serial = presented.map_or("none", |p| p.serial.as_str());
            let now = shared.clock.now();
            shared.metrics.staff_refusal(refusal.code());
            match shared.refusals.entry(serial, refusal.code(), now) {
                Entry::Counted => {
                    tracing::debug!(%remote, serial, reason = refusal.code(),
                        "staff console refusal counted, not recorded");
                }
                Entry::Record { repeated } => {
                    let mut detail =
                        serde_json::json!({"reason": refusal.code(), "path": req.uri().path()});
                    if repeated > 0 {
                        detail["repeated"] = repeated.into();
                    }
                    if let Err(e) = shared
                        .audit
                        .record(
                            now,
                            &Actor::Anonymous(remote.ip().to_string()),
                            "staff.access",
                            serial,
                            Outcome::Refused,
                            detail,
                        )
                        .await
                    {
                        tracing::error!(error = %crate::telemetry::error_chain(&e),
                            "cannot record a refused staff console access");
                    }
                }
            }
            let status = match refusal {
                caller::CallerRefusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::FORBIDDEN,
            };
            return json(status, refusal.code(), &refusal.to_string());
        }
    };
    who.staff = Some(caller.name.clone());
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let response = shared
        .service
        .call(StaffHttpRequest {
            parts,
            body,
            caller,
            remote,
        })
        .await;
    response.map(Full::new)
}

/// The body within [`MAX_BODY`] and [`BODY_TIMEOUT`], or the answer saying why not.
async fn read_body(body: Incoming) -> Result<Bytes, Response<Full<Bytes>>> {
    let read = Limited::new(body, MAX_BODY).collect();
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(json(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the request body is too large",
        )),
        Ok(Err(_)) => Err(json(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "cannot read the request body",
        )),
        Err(_) => Err(json(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request body did not arrive in time",
        )),
    }
}

fn json(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
