//! The per-request pipeline: SNI/Host check, routing (certgate's own paths first), the live
//! certificate check on every request, header sanitation, login binding, identity headers,
//! forwarding; then one access-log line and the metrics. Problems become responses only in
//! [`super::refusal`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use tracing::Level;

use super::canonical::canonicalize;
use super::local::LocalContext;
use super::login_binding;
use super::refusal::{Problem, Reply, wants_html};
use super::{Runtime, Shared, forward, request_id, tunnel};
use crate::clock::DAY;
use crate::config::{ClientAuth, PathParams, RouteAuth, is_issuance_surface};
use crate::http_common::body::{ProxyBody, full};
use crate::http_common::request_head::{self, HeadRefusal};
use crate::identity::{self, IdentityError, JWKS_PATH, PeerIdentity, ViewHeaders, WriteContext};
use crate::status::{Refusal, Verdict};
use crate::store::CertStatusView;
use crate::telemetry::{in_span, phase_span};
use crate::tls::PresentedCert;

/// The W3C trace context header, sent to the app when spans are exported.
const TRACEPARENT: header::HeaderName = header::HeaderName::from_static("traceparent");

/// What the connection learned at the handshake.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub remote: SocketAddr,
    /// `remote`'s address as the value of `X-Forwarded-For`.
    pub forwarded_for: HeaderValue,
    pub client_auth: ClientAuth,
    /// Lower-cased SNI, when the client sent one.
    pub sni: Option<String>,
    /// The names the listener's certificate is for.
    pub names: Arc<crate::tls::ServerNames>,
    pub presented: Option<Arc<PresentedCert>>,
    /// The identity header values of the status view last seen on this connection.
    pub identity_headers: Mutex<CachedIdentityHeaders>,
    /// The listener's connection permit (a tunnel opened here holds it too).
    pub permit: Arc<super::server::ConnPermit>,
    /// The listener keeps a client's own `X-Request-Id` (`trust_request_id`).
    pub trust_request_id: bool,
}

/// A status view and the identity header values made from it.
type CachedIdentityHeaders = Option<(Arc<CertStatusView>, Arc<ViewHeaders>)>;

impl ConnInfo {
    /// Drops what was kept for the next request (a parked connection holds no more than it
    /// must; the values are made again on its next request).
    pub(crate) fn forget_request_state(&self) {
        *self.cached_identity_headers() = None;
    }

    /// The identity header values for `id`: made once per status view and connection.
    fn identity_headers(&self, id: &PeerIdentity) -> Result<Arc<ViewHeaders>, IdentityError> {
        let mut cached = self.cached_identity_headers();
        if let Some((view, values)) = cached.as_ref()
            && Arc::ptr_eq(view, id.view())
        {
            return Ok(Arc::clone(values));
        }
        let values = Arc::new(identity::view_headers(id.view())?);
        *cached = Some((Arc::clone(id.view()), Arc::clone(&values)));
        Ok(values)
    }

    fn cached_identity_headers(&self) -> MutexGuard<'_, CachedIdentityHeaders> {
        // Holds no invariant a panic could break: use the value as it is.
        self.identity_headers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// What the access log line says about a request.
#[derive(Default)]
struct Outcome {
    /// Filled only when the access log is on (no copies per request otherwise).
    log: bool,
    route: RouteLabel,
    user: Option<String>,
    serial: Option<String>,
    problem: Option<Problem>,
}

/// The route a request took, for metrics and the log (no copy of the label per request).
#[derive(Default)]
enum RouteLabel {
    #[default]
    None,
    Own(&'static str),
    Upstream(Arc<super::routes::Route>),
}

impl RouteLabel {
    fn as_str(&self) -> &str {
        match self {
            Self::None => "none",
            Self::Own(s) => s,
            Self::Upstream(r) => &r.label,
        }
    }
}

pub(crate) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let request_id = request_id::assign(req.headers_mut(), conn.trust_request_id);
    // Every log line of this request carries its ID.
    let span = phase_span!(
        Level::INFO,
        "request",
        id = %request_id.to_str().unwrap_or_default()
    );
    // HTTP/1.1 drops the body of an answer to HEAD by itself; HTTP/2 would send it as DATA,
    // which clients treat as a protocol error (nghttp2 resets the stream). certgate's own
    // answers (refusals, pages) have bodies whatever the method.
    let head = req.method() == http::Method::HEAD;
    // Awaited where it is made: a future put in a variable first is copied once more.
    let mut resp = in_span(&span, handle_in_span(&shared, &conn, req, start)).await;
    if head {
        *resp.body_mut() = crate::http_common::body::empty();
    }
    resp.headers_mut().insert(request_id::HEADER, request_id);
    crate::http_common::add_hsts(resp.headers_mut());
    crate::http_common::header_case::registered_spellings(&mut resp);
    Ok(resp)
}

async fn handle_in_span(
    shared: &Arc<Shared>,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    start: Instant,
) -> Response<ProxyBody> {
    let runtime = shared.runtime.borrow().clone();
    let reply = Reply::of(req.headers());
    let log = tracing::enabled!(target: "certgate::access", tracing::Level::INFO);
    let request_line = log.then(|| (req.method().clone(), req.uri().path().to_owned()));
    let mut out = Outcome {
        log,
        // The presented certificate's serial, refused or not: the access line of a revoked
        // certificate's use names it.
        serial: conn
            .presented
            .as_ref()
            .filter(|_| log)
            .map(|p| p.serial.clone()),
        ..Outcome::default()
    };
    let resp = match pipeline(shared, &runtime, conn, req, &mut out).await {
        Ok(r) => r,
        Err(p) => {
            out.problem = Some(p);
            if p.is_refusal() {
                shared.metrics.refusal(p.code());
            }
            p.respond(reply)
        }
    };
    let status = resp.status().as_u16();
    let route = out.route.as_str();
    match &out.route {
        RouteLabel::Upstream(r) => shared.metrics.route_request(&r.metrics, &r.label, status),
        _ => shared.metrics.request(route, status),
    }
    if let Some((method, path)) = request_line {
        let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
        let reason = out.problem.map(Problem::code);
        tracing::info!(
            target: "certgate::access",
            remote = %conn.remote,
            %method,
            path,
            route,
            status,
            user = out.user.as_deref(),
            serial = out.serial.as_deref(),
            reason,
            latency_ms,
            "request"
        );
    }
    resp
}

enum Target {
    Local(RouteAuth),
    Upstream(Arc<super::routes::Route>),
}

async fn pipeline(
    shared: &Arc<Shared>,
    runtime: &Runtime,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    out: &mut Outcome,
) -> Result<Response<ProxyBody>, Problem> {
    let raw_host = match request_head::check(&req) {
        Ok(authority) => authority.map(str::to_owned),
        Err(refusal) => {
            tracing::warn!(target: "certgate::security", remote = %conn.remote, method = %req.method(), reason = refusal.reason(), detail = %refusal, "request head refused");
            return Err(match refusal {
                HeadRefusal::Method(_) => Problem::MethodRefused,
                HeadRefusal::TransferCoding => Problem::TransferCodingRefused,
                _ => Problem::HostRefused,
            });
        }
    };
    let host = raw_host.as_deref().map(host_without_port);
    if let (ClientAuth::Optional | ClientAuth::Required, Some(sni), Some(host)) =
        (conn.client_auth, &conn.sni, &host)
        && sni != host
    {
        return Err(Problem::Misdirected);
    }
    // A host the certificate is not for (reachable only by skipping its verification):
    // never passed on as the app's X-Forwarded-Host.
    if let Some(host) = &host
        && !conn.names.covers(host)
    {
        return Err(Problem::Misdirected);
    }
    // One canonical path decides routing, login binding and what the app receives.
    let uri = req.uri().clone();
    let canonical = match canonicalize(uri.path()) {
        Ok(c) => c,
        Err(e) => {
            // An own path whose tail is data (OCSP GET) is served here as sent, when it is
            // nothing but that data.
            if is_ocsp_get_path(uri.path())
                && let Some(auth) = shared.local.owns_raw(uri.path())
            {
                out.route = RouteLabel::Own("local");
                return local(shared, runtime, conn, auth, req).await;
            }
            tracing::warn!(target: "certgate::security", remote = %conn.remote, path = uri.path(), reason = %e, "request path refused");
            return Err(Problem::PathRefused);
        }
    };
    let path = canonical.path();
    if path == JWKS_PATH {
        out.route = RouteLabel::Own("jwks");
        return Ok(json_response(shared.signer.jwks()));
    }
    // `[gateway] enroll_host`: the issuance surface is served on that host only, and that
    // host serves only the routes that name it.
    let enroll_host = runtime.config.gateway.enroll_host.as_deref();
    let on_enroll_host = enroll_host.is_some_and(|e| host.as_deref() == Some(e));
    let target = match shared.local.owns(path) {
        Some(_) if enroll_host.is_some() && !on_enroll_host && is_issuance_surface(path) => {
            return Err(Problem::NoRoute);
        }
        Some(auth) => {
            out.route = RouteLabel::Own("local");
            Target::Local(auth)
        }
        None => {
            let route = phase_span!(Level::DEBUG, "route", path)
                .in_scope(|| runtime.routes.find(host.as_deref(), path, on_enroll_host))
                .ok_or(Problem::NoRoute)?;
            out.route = RouteLabel::Upstream(Arc::clone(&route));
            Target::Upstream(route)
        }
    };
    let pass_params = match &target {
        Target::Upstream(r) => r.config.path_params == PathParams::Pass,
        Target::Local(_) => false,
    };
    if canonical.params().is_some() && !pass_params {
        tracing::warn!(target: "certgate::security", remote = %conn.remote, path = uri.path(), "path parameters refused");
        return Err(Problem::PathRefused);
    }
    if !canonical.is_unchanged() {
        *req.uri_mut() = with_path(&uri, &canonical.forwarded(pass_params))?;
    }
    let auth = match &target {
        Target::Local(a) => *a,
        Target::Upstream(r) => r.config.auth,
    };
    let identity = match auth {
        RouteAuth::Certificate => Some(
            verify(shared, runtime, conn)
                .await
                .inspect_err(|p| refused_certificate(shared, conn, *p))?,
        ),
        // A local public page may still show who is there; an upstream public route gets
        // no identity at all.
        RouteAuth::Public if matches!(target, Target::Local(_)) && conn.presented.is_some() => {
            match verify(shared, runtime, conn).await {
                Ok(id) => Some(id),
                // Expired: on a renewal path only, the grace days may still let it renew.
                Err(Problem::Certificate(Refusal::Expired)) if shared.local.renews(path) => {
                    verify_for_renewal(shared, runtime, conn)
                        .await
                        .inspect_err(|p| refused_certificate(shared, conn, *p))
                        .ok()
                }
                // A renewal with a refused certificate (revoked, of a disabled login ID) is
                // an attempt to keep it alive: named like a refusal at an app.
                Err(p) if shared.local.renews(path) => {
                    refused_certificate(shared, conn, p);
                    None
                }
                Err(_) => None,
            }
        }
        RouteAuth::Public => None,
    };
    if let Some(id) = identity.as_ref().filter(|_| out.log) {
        out.user = Some(id.login().to_owned());
    }
    shared.identity.strip_reserved(req.headers_mut());
    if let Target::Upstream(r) = &target
        && !r.strip.is_empty()
    {
        r.strip.strip(req.headers_mut());
    }

    match target {
        Target::Local(_) => Ok(call_local(shared, conn, identity, req).await),
        Target::Upstream(route) => {
            let cfg = &route.config;
            if content_length(&req).is_some_and(|len| len > cfg.max_body_bytes) {
                return Err(Problem::BodyTooLarge);
            }
            if cfg.renewal_interstitial
                && let Some(id) = &identity
                && super::interstitial::applies(
                    req.method(),
                    wants_html(req.headers()),
                    req.headers(),
                    id,
                )
            {
                let target = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                let renew_url = renew_url(enroll_host, raw_host.as_deref());
                let lang = Reply::of(req.headers()).lang;
                return Ok(super::interstitial::page(id, &target, &renew_url, lang));
            }
            // An Upgrade the route does not allow (h2c never) goes on as a plain request: the
            // hop-by-hop removal below drops its Upgrade and Connection.
            let upgrade =
                forward::is_upgrade(&req) && forward::upgrade_allowed(req.headers(), &cfg.upgrades);
            let opening = upgrade.then(|| tunnel::Opening {
                shared: Arc::clone(shared),
                client: hyper::upgrade::on(&mut req),
                route: route.label.clone(),
                limits: tunnel_limits(&runtime.config.gateway, cfg),
                holder: identity.as_ref().map(|id| tunnel::Holder {
                    serial: id.serial().to_owned(),
                    sha256: id.sha256().to_owned(),
                    login: id.login().to_owned(),
                }),
                permit: Arc::clone(&conn.permit),
            });
            let fwd = forward::Forwarding {
                forwarded_for: &conn.forwarded_for,
                client: conn.remote.ip(),
                host: raw_host.as_deref(),
                formats: &cfg.forwarding,
            };
            forward::set_forwarding_headers(req.headers_mut(), &fwd, upgrade);
            let limit = usize::try_from(cfg.max_body_bytes).unwrap_or(usize::MAX);
            let (parts, body) = req.into_parts();
            let mut req =
                Request::from_parts(parts, crate::http_common::body::limited(body, limit));
            if let Some(id) = &identity {
                if let Some(binding) = &cfg.login_binding {
                    req = login_binding::check(binding, id.login(), path, req).await?;
                }
                let now = shared.clock.now();
                conn.identity_headers(id)
                    .and_then(|view_headers| {
                        let cx = WriteContext {
                            identity: id,
                            view_headers: &view_headers,
                            route: cfg,
                            now,
                        };
                        shared.identity.write(&route.identity, req.headers_mut(), &cx)
                    })
                    .map_err(|e| {
                        tracing::error!(error = %crate::telemetry::error_chain(&e), "cannot write identity headers");
                        Problem::Internal
                    })?;
            }
            let span = phase_span!(
                Level::DEBUG,
                "upstream",
                otel.kind = "client",
                route = %route.label,
                status = tracing::field::Empty,
                error = tracing::field::Empty,
            );
            // The app's own spans join the request's trace.
            if let Some(parent) = span.in_scope(crate::telemetry::otlp::traceparent) {
                req.headers_mut().insert(TRACEPARENT, parent);
            }
            let started = Instant::now();
            let result = in_span(&span, route.upstream.send(req, opening)).await;
            match &result {
                Ok(resp) => span.record("status", resp.status().as_u16()),
                Err(p) => span.record("error", p.code()),
            };
            route
                .metrics
                .upstream_latency(started.elapsed().as_secs_f64());
            result
        }
    }
}

fn tunnel_limits(
    gateway: &crate::config::GatewayConfig,
    route: &crate::config::RouteConfig,
) -> tunnel::Limits {
    let (idle, max) = route.tunnel_limits(gateway);
    tunnel::Limits { idle, max }
}

/// Serves an own path taken as sent ([`super::LocalService::owns_raw`]): the same checks as
/// any own path, then certgate's handler; nothing is forwarded.
async fn local(
    shared: &Shared,
    runtime: &Runtime,
    conn: &ConnInfo,
    auth: RouteAuth,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Problem> {
    let identity = match auth {
        RouteAuth::Certificate => Some(
            verify(shared, runtime, conn)
                .await
                .inspect_err(|p| refused_certificate(shared, conn, *p))?,
        ),
        RouteAuth::Public if conn.presented.is_some() => verify(shared, runtime, conn).await.ok(),
        RouteAuth::Public => None,
    };
    shared.identity.strip_reserved(req.headers_mut());
    Ok(call_local(shared, conn, identity, req).await)
}

/// Hands a request (headers already stripped) to certgate's own handler with the caller.
async fn call_local(
    shared: &Shared,
    conn: &ConnInfo,
    identity: Option<PeerIdentity>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, crate::http_common::body::from_incoming(body));
    let ctx = LocalContext {
        identity,
        presented: conn.presented.clone(),
        remote_addr: conn.remote,
    };
    shared.local.call(req, ctx).await
}

/// The live check, on every request: the chain as judged after the handshake, then the
/// store's status of that exact certificate (serial and DER hash).
async fn verify(
    shared: &Shared,
    runtime: &Runtime,
    conn: &ConnInfo,
) -> Result<PeerIdentity, Problem> {
    verify_with(shared, runtime, conn, None).await
}

/// Names a presented certificate the status check refused, so its holder can be found: a
/// revoked certificate still in use is an attack indicator. The security log has every
/// one; the audit log those only a certificate of certgate's CA can cause.
fn refused_certificate(shared: &Shared, conn: &ConnInfo, problem: Problem) {
    let Some(presented) = &conn.presented else {
        return;
    };
    tracing::warn!(
        target: "certgate::security",
        remote = %conn.remote,
        reason = problem.code(),
        serial = %presented.serial,
        sha256 = %presented.sha256,
        subject = %presented.subject,
        "certificate refused"
    );
    if let (Some(refused), Problem::Certificate(refusal)) = (&shared.refused, problem) {
        refused.record(shared.clock.now(), conn.remote.ip(), presented, refusal);
    }
}

/// The check of a renewal path: as [`verify`], except that a certificate expired within
/// `[renewal] grace_after_expiry_days` passes while it is still the current certificate of
/// an enabled user of an enabled contract. Never used for anything forwarded.
async fn verify_for_renewal(
    shared: &Shared,
    runtime: &Runtime,
    conn: &ConnInfo,
) -> Result<PeerIdentity, Problem> {
    let grace_secs = i64::from(runtime.config.renewal.grace_after_expiry_days) * DAY;
    let id = verify_with(shared, runtime, conn, Some(grace_secs)).await?;
    tracing::info!(
        user = id.login(),
        serial = id.serial(),
        "an expired certificate within its grace days asks to renew"
    );
    Ok(id)
}

/// [`verify`] (`grace_secs = None`) or [`verify_for_renewal`], in a `status.check` span.
async fn verify_with(
    shared: &Shared,
    runtime: &Runtime,
    conn: &ConnInfo,
    grace_secs: Option<i64>,
) -> Result<PeerIdentity, Problem> {
    let span = phase_span!(
        Level::DEBUG,
        "status.check",
        grace = grace_secs.is_some(),
        error = tracing::field::Empty
    );
    let checked = in_span(&span, check_status(shared, runtime, conn, grace_secs)).await;
    if let Err(p) = &checked {
        span.record("error", p.code());
    }
    checked
}

async fn check_status(
    shared: &Shared,
    runtime: &Runtime,
    conn: &ConnInfo,
    grace_secs: Option<i64>,
) -> Result<PeerIdentity, Problem> {
    let refuse = |r| Err(Problem::Certificate(r));
    let Some(presented) = &conn.presented else {
        return refuse(Refusal::NoCertificate);
    };
    if let Some(p) = presented.problem {
        return refuse(p);
    }
    let (verdict, view, outcome) = match grace_secs {
        None => shared.cache.check(&presented.serial).await,
        Some(grace) => {
            shared
                .cache
                .decide_for_renewal(crate::status::Audience::Customer, &presented.serial, grace)
                .await
        }
    };
    shared.metrics.status_lookup(outcome);
    if let Verdict::Refuse(r) = verdict {
        return refuse(r);
    }
    let Some(view) = view else {
        return refuse(Refusal::Unknown);
    };
    if !view.cert.sha256.eq_ignore_ascii_case(&presented.sha256) {
        // Same serial, other certificate: not one certgate issued.
        return refuse(Refusal::Unknown);
    }
    Ok(PeerIdentity::new(
        view,
        presented.clone(),
        shared.clock.now(),
        runtime.config.renewal.window_days,
    ))
}

/// Where the renewal interstitial sends the customer: certgate's renew page on this host, or
/// on `enroll_host` (same port as asked) when the pages live there.
fn renew_url(enroll_host: Option<&str>, raw_host: Option<&str>) -> String {
    let Some(enroll) = enroll_host else {
        return "/certgate/renew".to_owned();
    };
    let port = raw_host
        .map(|h| h.rsplit_once(']').map_or(h, |(_, after)| after))
        .and_then(|h| h.rsplit_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    match port {
        Some(p) => format!("https://{enroll}:{p}/certgate/renew"),
        None => format!("https://{enroll}/certgate/renew"),
    }
}

fn host_without_port(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `uri` with its path replaced by `path` (its query kept).
fn with_path(uri: &Uri, path: &str) -> Result<Uri, Problem> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|_| Problem::BadRequest)?);
    Uri::from_parts(parts).map_err(|_| Problem::BadRequest)
}

/// The OCSP GET form (RFC 6960 A.1): base64 of the DER request, URL-encoded, as the path
/// under `/ocsp/`, where `%2F`, `%2B` and `%3D` stand for `/`, `+` and `=` (or appear raw).
/// Allowed past [`canonicalize`] because certgate answers this path itself (it is never
/// forwarded) and it holds only base64 characters and those three escapes, so no dot
/// segment, backslash or other encoded separator can hide in it.
fn is_ocsp_get_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/ocsp/") else {
        return false;
    };
    let bytes = rest.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escape = bytes.get(i + 1..i + 3).map(<[u8]>::to_ascii_uppercase);
                if !matches!(escape.as_deref(), Some(b"2F" | b"2B" | b"3D")) {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') => i += 1,
            _ => return false,
        }
    }
    !rest.is_empty()
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn json_response(v: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interstitial_sends_to_the_enroll_host_on_the_same_port() {
        assert_eq!(renew_url(None, Some("ib.example")), "/certgate/renew");
        let enroll = Some("enroll.example");
        assert_eq!(
            renew_url(enroll, Some("ib.example")),
            "https://enroll.example/certgate/renew"
        );
        assert_eq!(
            renew_url(enroll, Some("ib.example:8443")),
            "https://enroll.example:8443/certgate/renew"
        );
        assert_eq!(
            renew_url(enroll, Some("[::1]:8443")),
            "https://enroll.example:8443/certgate/renew"
        );
        assert_eq!(
            renew_url(enroll, Some("[::1]")),
            "https://enroll.example/certgate/renew"
        );
        assert_eq!(
            renew_url(enroll, None),
            "https://enroll.example/certgate/renew"
        );
    }

    #[test]
    fn a_rewritten_path_keeps_the_query_and_authority() {
        let uri: Uri = "https://ib.example/%69b/./top?a=1".parse().unwrap();
        let got = with_path(&uri, "/ib/top").unwrap();
        assert_eq!(got.to_string(), "https://ib.example/ib/top?a=1");
        let uri: Uri = "/x".parse().unwrap();
        assert_eq!(with_path(&uri, "/y").unwrap().to_string(), "/y");
    }

    #[test]
    fn the_ocsp_get_form_may_carry_encoded_base64_and_nothing_else() {
        for ok in [
            "/ocsp/MEMwQTA%2FMD0wOzAJBgUrDgMCGgUABBQ%3D",
            "/ocsp/MEMwQTA/MD0wOzAJ+BgUr%2b%2f%3d==",
        ] {
            assert!(is_ocsp_get_path(ok), "{ok}");
        }
        for bad in [
            "/ocsp/",
            "/ocsp/../ib",
            "/ocsp/a%2e%2e/b",
            "/ocsp/a%5Cb",
            "/ocsp/a%00",
            "/ocsp/a%2",
            "/ocspx/a%2Fb",
            "/ib/a%2Fb",
            "/ocsp/a.b",
        ] {
            assert!(!is_ocsp_get_path(bad), "{bad}");
        }
    }

    #[test]
    fn hosts_lose_port_and_case() {
        assert_eq!(host_without_port("IB.Example:8443"), "ib.example");
        assert_eq!(host_without_port("localhost"), "localhost");
        assert_eq!(host_without_port("[::1]:443"), "::1");
    }
}
