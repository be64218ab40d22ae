//! The admin listener (plain HTTP, keep it on a private network): `/healthz` (the process
//! answers), `/readyz` (the store and every registered [`Readiness`] check, e.g. the HSM),
//! `/metrics` (Prometheus text) and the assertion JWKS. It must not expose anything secret
//! nor change state.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::http_common::body::{ProxyBody, full};
use crate::identity::{AssertionSigner, JWKS_PATH};
use crate::status::StatusSource;
use crate::telemetry::Metrics;

/// A dependency `/readyz` checks, e.g. the HSM.
pub trait Readiness: Send + Sync {
    /// The name shown in `/readyz` (e.g. `hsm`).
    fn name(&self) -> &str;
    /// `Ok` when usable; the error text is shown, so it must not hold secrets.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// What the admin listener reads.
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub source: Arc<dyn StatusSource>,
    pub readiness: Vec<Arc<dyn Readiness>>,
    pub signer: Arc<AssertionSigner>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves the admin endpoints until `stop` turns true.
pub async fn serve(listener: TcpListener, state: AdminState, mut stop: watch::Receiver<bool>) {
    if let Ok(a) = listener.local_addr() {
        tracing::info!(addr = %a, "admin listening");
    }
    let state = Arc::new(state);
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::http_common::stopped(&mut stop) => return,
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                // Conventional header-name case, as on the gateway's listeners.
                .title_case_headers(true)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn answer<B>(state: &AdminState, req: Request<B>) -> Response<ProxyBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n", "text/plain");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
        "/readyz" => readyz(state).await,
        "/metrics" => text(
            StatusCode::OK,
            &state.metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        JWKS_PATH => text(
            StatusCode::OK,
            &state.signer.jwks().to_string(),
            "application/json",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n", "text/plain"),
    }
}

async fn readyz(state: &AdminState) -> Response<ProxyBody> {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let store = match tokio::time::timeout(CHECK_TIMEOUT, state.source.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => {
            ready = false;
            e.to_string()
        }
        Err(_) => {
            ready = false;
            "timed out".into()
        }
    };
    checks.insert("store".into(), store.into());
    for r in &state.readiness {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, r.check()).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(e)) => {
                ready = false;
                e
            }
            Err(_) => {
                ready = false;
                "timed out".into()
            }
        };
        checks.insert(r.name().to_string(), outcome.into());
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "ready": ready, "checks": checks }).to_string();
    let mut r = text(status, &body, "application/json");
    if !ready {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(crate::http_common::RETRY_AFTER_SECS),
        );
    }
    r
}

fn text(status: StatusCode, body: &str, content_type: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}
