//! The plain-HTTP door for relying parties that fetch revocation information over `http`
//! only: NSS (Firefox, Thunderbird) asks OCSP responders over `http` alone, RFC 5019 §5
//! expects OCSP over `http`, and a CRL fetched over `https` needs the status of the server's
//! own certificate first (RFC 5280 §8). `[revocation] http_addr` opens it.
//!
//! It serves certgate's OCSP responder and CRLs, exactly as the TLS listeners do (the same
//! handlers, limits and caching), and nothing else: every other path is 404, no request is
//! forwarded to an app, and no client certificate or identity exists here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::{LocalContext, LocalService, canonical};
use crate::config::RouteAuth;
use crate::http_common::address_slots::AddressSlots;
use crate::http_common::body::{ProxyBody, from_incoming, full};
use crate::http_common::request_head;

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 1024;
/// Connections of one client address at once: a relying party asks once and goes, so one
/// address cannot hold the port's connections and keep the others' OCSP from answering.
const MAX_PER_ADDRESS: usize = 16;
/// Longest wait for a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection is served: relying parties ask once and go.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The bound socket and what answers on it.
pub struct StatusListener {
    pub tcp: TcpListener,
    pub local: Arc<dyn LocalService>,
}

/// Serves OCSP and CRL requests until `stop` turns true.
pub async fn serve(l: StatusListener, mut stop: watch::Receiver<bool>) {
    if let Ok(a) = l.tcp.local_addr() {
        tracing::info!(addr = %a, "OCSP and CRLs over plain HTTP listening");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_address = AddressSlots::new(MAX_PER_ADDRESS);
    loop {
        let (tcp, remote) = tokio::select! {
            a = l.tcp.accept() => match a {
                Ok((tcp, remote)) => (tcp, crate::http_common::unmapped(remote)),
                Err(e) => {
                    tracing::warn!(error = %e, "status listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::http_common::stopped(&mut stop) => return,
        };
        let Some(address) = per_address.take(remote.ip()) else {
            tracing::debug!(%remote, "status listener: over the connections of one address; closing");
            continue;
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%remote, "status listener at its connection limit; closing");
            continue;
        };
        let local = Arc::clone(&l.local);
        tokio::spawn(async move {
            let _permit = (permit, address);
            let svc = service_fn(move |req| {
                let local = Arc::clone(&local);
                async move {
                    let start = std::time::Instant::now();
                    let line = tracing::enabled!(target: "certgate::access", tracing::Level::INFO)
                        .then(|| (req.method().clone(), req.uri().path().to_owned()));
                    let response = answer(&*local, remote, req).await;
                    if let Some((method, path)) = line {
                        tracing::info!(
                            target: "certgate::access",
                            listener = "status_http",
                            %remote,
                            %method,
                            path,
                            status = response.status().as_u16(),
                            latency_ms = start.elapsed().as_secs_f64() * 1000.0,
                            "request"
                        );
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

/// One request: an OCSP or CRL path goes to the responder, anything else is refused here.
async fn answer(
    local: &dyn LocalService,
    remote: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if let Err(refusal) = request_head::check(&req) {
        tracing::info!(%remote, reason = refusal.reason(), "status listener: request refused");
        return plain(StatusCode::BAD_REQUEST, "bad request\n");
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::POST) {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "this port answers GET and POST for OCSP and CRLs only\n",
        );
        r.headers_mut().insert(
            header::ALLOW,
            header::HeaderValue::from_static("GET, HEAD, POST"),
        );
        return r;
    }
    if !served_here(local, req.uri().path()) {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: this port serves OCSP (/ocsp) and CRLs (/crl/) only\n",
        );
    }
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, from_incoming(body));
    let ctx = LocalContext {
        identity: None,
        presented: None,
        remote_addr: remote,
    };
    local.call(req, ctx).await
}

/// Whether `path` is one of the responder's or a CRL, and public: the canonical path under
/// `/ocsp` or `/crl/`, or an OCSP GET whose tail is base64 (served as sent, as on the TLS
/// listeners).
fn served_here(local: &dyn LocalService, path: &str) -> bool {
    let auth = match canonical::canonicalize(path) {
        Ok(c) if is_status_path(c.path()) && c.params().is_none() => local.owns(c.path()),
        Ok(_) => None,
        Err(_) if path.starts_with("/ocsp/") => local.owns_raw(path),
        Err(_) => None,
    };
    auth == Some(RouteAuth::Public)
}

fn is_status_path(path: &str) -> bool {
    path == "/ocsp" || path.starts_with("/ocsp/") || path.starts_with("/crl/")
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_responder_and_the_crls_are_status_paths() {
        for p in ["/ocsp", "/ocsp/MEow", "/crl/1.crl", "/crl/1-delta.crl"] {
            assert!(is_status_path(p), "{p}");
        }
        for p in [
            "/",
            "/ocspx",
            "/crl",
            "/certgate/",
            "/.well-known/est/cacerts",
            "/api/v1/users",
        ] {
            assert!(!is_status_path(p), "{p}");
        }
    }
}
