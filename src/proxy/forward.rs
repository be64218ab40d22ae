//! Sending a request to a route's upstream and streaming the answer back: pooled keep-alive
//! HTTP/1.1 connections (or shared HTTP/2 ones), hop-by-hop headers removed both ways, `X-Forwarded-*` set by the
//! gateway (the edge, so a client's own are never trusted), connect and response timeouts,
//! and WebSocket (HTTP/1.1 Upgrade) tunnels. Identity decisions are made before this.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::endpoints::{Endpoint, Endpoints};
use super::refusal::Problem;
use super::upstream_pool::{Failed, PoolSettings, SendError, UpstreamPool};
use crate::config::{ConfigError, ForwardingFormat, RouteConfig};
use crate::http_common::body::ProxyBody;
use crate::telemetry::{Metrics, UpstreamFailure, UpstreamFailures};

/// Headers meaningful only for one connection (RFC 9110 §7.6.1), and `Transfer-Encoding`,
/// the framing of one hop (RFC 9112 §6.1): each side's hyper frames the message anew for its
/// own connection, so a client's `Chunked` or `identity, chunked` never reaches the app as
/// written, and an app's never reaches the client. Parsed names, so a message's names are
/// compared with them without parsing or hashing anything.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The client side of one route: its endpoints, each with its own pool.
#[derive(Debug)]
pub struct Upstream {
    endpoints: Arc<Endpoints>,
    response_timeout: Duration,
    failures: UpstreamFailures,
}

impl Upstream {
    /// Pooled connections to each of `route.upstream` (checked to be
    /// `http[s]://host:port[/base]`, one scheme), kept per worker thread; `label` names the
    /// route in metrics; `resolve` anchors the TLS files' names. With `[route.health]`, the
    /// endpoints' checks start on the current runtime.
    pub fn new(
        route: &RouteConfig,
        workers: usize,
        metrics: &Metrics,
        label: &str,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Self, ConfigError> {
        let mut list = Vec::with_capacity(route.upstream.urls().len());
        for url in route.upstream.urls() {
            list.push(endpoint(route, url, workers, metrics, label, resolve)?);
        }
        if list.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "[[route]] {}: upstream lists no URL",
                route.prefix
            )));
        }
        let endpoints = Arc::new(Endpoints::new(
            list,
            route.lb,
            Duration::from_secs(route.eject_secs),
        ));
        if let Some(h) = &route.health {
            endpoints.spawn_health(h);
        }
        endpoints.spawn_sweep();
        Ok(Self {
            endpoints,
            response_timeout: Duration::from_secs(route.response_timeout_secs),
            failures: metrics.upstream_failures(label),
        })
    }

    /// Sends `req` (whose headers the caller has sanitized) and returns the upstream's
    /// answer. `opening` carries the client side of an HTTP/1.1 Upgrade; on `101` both
    /// sides are joined in a background tunnel ([`super::tunnel`]).
    pub(crate) async fn send(
        &self,
        req: Request<ProxyBody>,
        opening: Option<super::tunnel::Opening>,
    ) -> Result<Response<ProxyBody>, Problem> {
        let sent = tokio::time::timeout(self.response_timeout, self.send_retrying(req)).await;
        let mut resp = match sent {
            Err(_) => {
                self.failures.count(UpstreamFailure::Timeout);
                return Err(Problem::UpstreamTimeout);
            }
            Ok(r) => r?,
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(opening) = opening else {
                return Err(Problem::UpstreamFailed);
            };
            super::tunnel::spawn(opening, hyper::upgrade::on(&mut resp));
            let (parts, _) = resp.into_parts();
            return Ok(Response::from_parts(
                parts,
                crate::http_common::body::empty(),
            ));
        }
        if let Err(e) = check_response_framing(resp.headers_mut()) {
            self.failures.count(UpstreamFailure::Protocol);
            tracing::warn!(error = %e, "the app's answer is framed two ways or in a way the gateway cannot pass on");
            return Err(Problem::UpstreamFailed);
        }
        remove_hop_by_hop(resp.headers_mut());
        Ok(resp.map(crate::http_common::body::from_incoming))
    }

    /// Sends on one endpoint and, when that fails, once more on another: a request never
    /// written goes again whatever its method; a written one only when it is idempotent and
    /// had no body (a body is a stream, read once, and cannot be replayed).
    async fn send_retrying(&self, req: Request<ProxyBody>) -> Result<Response<Incoming>, Problem> {
        let eps = &*self.endpoints;
        let pq = req.uri().path_and_query().cloned();
        // Only where another endpoint could take it: the copy costs allocations.
        let replay = (eps.len() > 1 && replayable(&req)).then(|| head_copy(&req));
        let first = eps.pick(None);
        let failed = match self.send_to(first, req, pq.as_ref()).await? {
            Ok(resp) => return Ok(resp),
            Err(f) => f,
        };
        // Written and lost (or refused by the app's TLS after it was written): only a
        // replayable request goes again.
        let again = match (failed.unsent, replay) {
            _ if eps.len() == 1 => None,
            (Some(unsent), _) => Some(unsent),
            (None, copy) => copy,
        };
        let Some(again) = again else {
            return Err(self.refuse(first, &failed.error));
        };
        let second = eps.pick(Some(first));
        tracing::info!(
            from = %eps.get(first).authority,
            to = %eps.get(second).authority,
            error = %crate::telemetry::error_chain(&failed.error),
            "upstream request retried on another endpoint"
        );
        self.failures.count(failed.error.failure());
        match self.send_to(second, again, pq.as_ref()).await? {
            Ok(resp) => Ok(resp),
            Err(f) => Err(self.refuse(second, &f.error)),
        }
    }

    /// One attempt on endpoint `i`: the request line and Host header made for it, the
    /// endpoint left out when it could not be connected to, brought back when it answered.
    /// The outer error: the path cannot be joined to the endpoint's base path.
    async fn send_to(
        &self,
        i: usize,
        mut req: Request<ProxyBody>,
        pq: Option<&PathAndQuery>,
    ) -> Result<Result<Response<Incoming>, Failed>, Problem> {
        let eps = &*self.endpoints;
        let ep = eps.get(i);
        let target = ep.target(pq).ok_or(Problem::BadRequest)?;
        // Origin form: the request line carries the path, the Host header the authority.
        *req.uri_mut() = Uri::from(target);
        *req.version_mut() = Version::HTTP_11;
        req.headers_mut().insert(header::HOST, ep.host.clone());
        let _outstanding = eps.start(i);
        Ok(match ep.pool.send(req).await {
            Ok(resp) => {
                eps.restore(i);
                Ok(resp)
            }
            Err(f) => {
                if f.error.is_connect() {
                    eps.eject(i, f.error.failure().as_str());
                }
                Err(f)
            }
        })
    }

    /// The answer to a request no endpoint took: 400/413 when the client's body failed,
    /// else 502, counted and logged.
    fn refuse(&self, i: usize, e: &SendError) -> Problem {
        let authority = &self.endpoints.get(i).authority;
        if let SendError::Exchange(he) = e
            && let Some(p) = client_body_problem(he)
        {
            tracing::info!(upstream = %authority, error = %crate::telemetry::error_chain(e), "the client's request body failed");
            return p;
        }
        self.failures.count(e.failure());
        tracing::warn!(upstream = %authority, error = %crate::telemetry::error_chain(e), "upstream request failed");
        Problem::UpstreamFailed
    }
}

/// One endpoint of `route`: its URL parsed, its TLS settings built, its pool.
fn endpoint(
    route: &RouteConfig,
    url: &str,
    workers: usize,
    metrics: &Metrics,
    label: &str,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<Endpoint, ConfigError> {
    let bad = || ConfigError::Invalid(format!("[[route]] upstream {url:?}"));
    let uri: Uri = url.parse().map_err(|_| bad())?;
    let authority = uri.authority().cloned().ok_or_else(bad)?;
    let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
    let (tls, default_port) = match (uri.scheme(), &route.upstream_tls) {
        (Some(s), None) if *s == Scheme::HTTP => (None, 80),
        (Some(s), Some(t)) if *s == Scheme::HTTPS => {
            let tls = crate::tls::upstream_tls(t, authority.host(), resolve).map_err(|e| {
                ConfigError::Invalid(format!(
                    "[[route]] {}: [route.upstream_tls]: {}",
                    route.prefix,
                    crate::telemetry::error_chain(&e)
                ))
            })?;
            (Some(tls), 443)
        }
        _ => return Err(bad()),
    };
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(default_port)
    );
    let up = metrics.upstream_endpoint_up(label, &addr);
    let settings = PoolSettings {
        addr,
        connect_timeout: Duration::from_secs(route.connect_timeout_secs),
        idle_timeout: Duration::from_secs(route.pool.idle_timeout_secs),
        max_idle_per_worker: route.pool.max_idle_per_worker,
        tls,
        http2: route.upstream_http2,
    };
    Ok(Endpoint::new(
        authority,
        host,
        uri.path().trim_end_matches('/').to_string(),
        UpstreamPool::new(settings, workers),
        up,
    ))
}

/// A request another endpoint may take after it was written: an idempotent method (RFC
/// 9110 §9.2.2) and no body, so that sending it twice changes nothing the first did not.
fn replayable(req: &Request<ProxyBody>) -> bool {
    use hyper::body::Body as _;
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    idempotent && req.body().is_end_stream() && !req.headers().contains_key(header::UPGRADE)
}

/// A copy of `req`'s head with an empty body, to send again.
fn head_copy(req: &Request<ProxyBody>) -> Request<ProxyBody> {
    let mut copy = Request::new(crate::http_common::body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// When forwarding failed because the client's body did (malformed chunking, cut off, over
/// the route's limit), the client's problem rather than the upstream's: 400 or 413, not 502.
fn client_body_problem(e: &(dyn std::error::Error + 'static)) -> Option<Problem> {
    let mut body_failed = false;
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.is::<http_body_util::LengthLimitError>() {
            return Some(Problem::BodyTooLarge);
        }
        // hyper reports a failing request body stream as a user error.
        if c.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            body_failed = true;
        }
        cur = c.source();
    }
    body_failed.then_some(Problem::BadRequest)
}

/// Whether a request asks for an HTTP/1.1 protocol upgrade (WebSocket).
pub fn is_upgrade(req: &Request<hyper::body::Incoming>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && connection_tokens(req.headers()).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// Whether every protocol the request's `Upgrade` names is in `allowed` (compared
/// ignoring case; a version suffix such as `websocket/13` counts as its name). `h2c` never
/// passes, whatever the list says.
pub fn upgrade_allowed(h: &HeaderMap, allowed: &[String]) -> bool {
    let mut any = false;
    let all_allowed = h
        .get_all(header::UPGRADE)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .all(|t| {
            any = true;
            let name = t.split('/').next().unwrap_or(t);
            !name.eq_ignore_ascii_case("h2c")
                && allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
        });
    any && all_allowed
}

fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers, including those the Connection header names (never the
/// request ID the gateway has just set: `Connection: x-request-id` would cut the app's logs
/// off from the gateway's). One pass over the message's names: most messages carry none of
/// them, or only Connection.
pub fn remove_hop_by_hop(h: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = {
        let listed: Vec<&str> = connection_tokens(h).collect();
        h.keys()
            .filter(|name| {
                HOP_BY_HOP.contains(name)
                    || (**name != super::request_id::HEADER
                        && listed.iter().any(|t| t.eq_ignore_ascii_case(name.as_str())))
            })
            .cloned()
            .collect()
    };
    for name in doomed {
        h.remove(name);
    }
}

/// Why an app's answer is not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("the answer carries both Transfer-Encoding and Content-Length")]
    LengthAndCoding,
    #[error("the answer's Transfer-Encoding is not chunked alone")]
    Coding,
}

/// An app's answer must be framed one way: a `Transfer-Encoding` beside a `Content-Length`
/// is refused (RFC 9112 §6.3 lets an intermediary pass it only with the length removed,
/// and a client that trusts the length reads the next answer as this one's rest), and a
/// transfer coding other than `chunked` cannot be passed on once hyper has taken the
/// chunking off. A `Content-Length` list of equal values (`2, 2`) becomes one value.
pub fn check_response_framing(h: &mut HeaderMap) -> Result<(), FramingError> {
    if h.contains_key(header::TRANSFER_ENCODING) {
        if h.contains_key(header::CONTENT_LENGTH) {
            return Err(FramingError::LengthAndCoding);
        }
        if !crate::http_common::request_head::chunked_alone(h) {
            return Err(FramingError::Coding);
        }
    }
    canonical_content_length(h);
    Ok(())
}

/// Rewrites a `Content-Length` that hyper accepted but another reader might not (two lines,
/// a list of equal values, leading zeros) as one plain decimal; a single plain value, the
/// common case, is left alone without allocating.
pub fn canonical_content_length(h: &mut HeaderMap) {
    let mut values = h.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return;
    };
    let plain = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b == b"0" || b[0] != b'0')
    };
    if values.next().is_none() && plain(first) {
        return;
    }
    let parsed: Option<Vec<u64>> = h
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| {
            std::str::from_utf8(t.trim_ascii())
                .ok()?
                .parse::<u64>()
                .ok()
        })
        .collect();
    // hyper refused unequal or unreadable lengths before this; only equal ones get here.
    if let Some(n) = parsed.as_deref().and_then(|p| p.first().copied())
        && parsed.iter().flatten().all(|&v| v == n)
    {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
}

/// One `Cookie` line for the app: HTTP/2 clients may send each cookie as a field of its own,
/// which an HTTP/1.1 reader must join with `; ` (RFC 9113 §8.2.3); frameworks that join
/// repeated headers with `,` would otherwise read `a=1,b=2` as one cookie's value.
pub fn join_cookies(h: &mut HeaderMap) {
    let mut values = h.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for v in h.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        h.insert(header::COOKIE, v);
    }
}

/// What [`set_forwarding_headers`] says about the client.
pub struct Forwarding<'a> {
    /// The client's address as the value of `X-Forwarded-For` (made once per connection).
    pub forwarded_for: &'a HeaderValue,
    /// The client's address (from the PROXY header on such a listener), for `Forwarded`.
    pub client: IpAddr,
    /// The request's host as the client sent it.
    pub host: Option<&'a str>,
    /// The route's `forwarding`.
    pub formats: &'a [ForwardingFormat],
}

/// Prepares the request headers for the upstream: hop-by-hop removed (an Upgrade is carried
/// over), and the gateway's own forwarding headers set in the route's formats.
pub fn set_forwarding_headers(h: &mut HeaderMap, fwd: &Forwarding<'_>, upgrade: bool) {
    let upgrade_value = if upgrade {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    };
    remove_hop_by_hop(h);
    canonical_content_length(h);
    join_cookies(h);
    if let Some(v) = upgrade_value {
        h.insert(header::UPGRADE, v);
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if fwd.formats.contains(&ForwardingFormat::XForwarded) {
        h.insert(X_FORWARDED_FOR, fwd.forwarded_for.clone());
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        if let Some(v) = fwd.host.and_then(|h| HeaderValue::from_str(h).ok()) {
            h.insert(X_FORWARDED_HOST, v);
        }
    }
    if fwd.formats.contains(&ForwardingFormat::Forwarded)
        && let Ok(v) = HeaderValue::from_str(&forwarded_element(fwd.client, fwd.host))
    {
        h.insert(header::FORWARDED, v);
    }
}

/// One RFC 7239 forwarded-element. An IPv6 node is bracketed and quoted (`:` is not a
/// token character); a host that is not a token (a port's `:`) is quoted, and one that
/// could not be quoted safely is left out rather than sent mangled.
fn forwarded_element(client: IpAddr, host: Option<&str>) -> String {
    let mut v = match client {
        IpAddr::V4(a) => format!("for={a}"),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => format!("for={v4}"),
            None => format!("for=\"[{a}]\""),
        },
    };
    v.push_str(";proto=https");
    if let Some(host) = host {
        let token = !host.is_empty() && host.bytes().all(is_tchar);
        if token {
            v.push_str(";host=");
            v.push_str(host);
        } else if !host.is_empty()
            && host
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            v.push_str(";host=\"");
            v.push_str(host);
            v.push('"');
        }
    }
    v
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The client's address as the value of `X-Forwarded-For`.
pub fn forwarded_for(remote: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&remote.ip().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_listed_upgrades_pass_and_h2c_never() {
        let ws = vec!["websocket".to_string()];
        let ok =
            |pairs: &[(&str, &str)], allowed: &[String]| upgrade_allowed(&headers(pairs), allowed);
        assert!(ok(&[("upgrade", "websocket")], &ws));
        assert!(ok(&[("upgrade", "WebSocket")], &ws));
        assert!(!ok(&[("upgrade", "h2c")], &ws));
        assert!(!ok(&[("upgrade", "websocket, h2c")], &ws));
        assert!(!ok(&[("upgrade", "websocket"), ("upgrade", "h2c")], &ws));
        assert!(!ok(&[("upgrade", "h2c")], &["h2c".to_string()]));
        assert!(!ok(&[("upgrade", "TLS/1.2")], &ws));
        assert!(!ok(&[("upgrade", "")], &ws));
        assert!(!ok(&[], &ws));
        assert!(!ok(&[("upgrade", "websocket")], &[]));
    }

    #[test]
    fn only_idempotent_requests_without_a_body_are_sent_twice() {
        let req = |m: Method, body: ProxyBody| {
            let mut r = Request::new(body);
            *r.method_mut() = m;
            r
        };
        let empty = crate::http_common::body::empty;
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ] {
            assert!(replayable(&req(m.clone(), empty())), "{m}");
        }
        assert!(!replayable(&req(Method::POST, empty())));
        assert!(!replayable(&req(Method::PATCH, empty())));
        let with_body = req(Method::PUT, crate::http_common::body::full("x"));
        assert!(!replayable(&with_body), "a body is read once");
        let mut upgrade = req(Method::GET, empty());
        upgrade
            .headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!replayable(&upgrade));

        let mut original = req(Method::DELETE, empty());
        original
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_static("app"));
        let copy = head_copy(&original);
        assert_eq!(copy.method(), Method::DELETE);
        assert_eq!(copy.headers()[header::HOST], "app");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Private-Hop"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("proxy-authenticate", "Basic"),
            ("x-private-hop", "1"),
            ("x-app", "kept"),
            ("content-type", "text/plain"),
        ]);
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-app"]);
    }

    #[test]
    fn connection_cannot_take_the_request_id_away() {
        let mut h = headers(&[
            ("connection", "x-request-id, x-private"),
            ("x-request-id", "abc-1"),
            ("x-private", "1"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h["x-request-id"], "abc-1");
        assert!(!h.contains_key("x-private"));
    }

    #[test]
    fn lengths_become_one_plain_number() {
        for (given, want) in [
            (&["5"][..], "5"),
            (&["0"], "0"),
            (&["005"], "5"),
            (&["5", "5"], "5"),
            (&["2, 2"], "2"),
        ] {
            let mut h = HeaderMap::new();
            for v in given {
                h.append(header::CONTENT_LENGTH, HeaderValue::from_static(v));
            }
            canonical_content_length(&mut h);
            let got: Vec<_> = h.get_all(header::CONTENT_LENGTH).iter().collect();
            assert_eq!(got, [want], "{given:?}");
        }
    }

    #[test]
    fn an_answer_is_framed_one_way_and_chunked_alone() {
        let mut ok = headers(&[("transfer-encoding", "Chunked")]);
        assert_eq!(check_response_framing(&mut ok), Ok(()));
        let mut both = headers(&[("transfer-encoding", "chunked"), ("content-length", "40")]);
        assert_eq!(
            check_response_framing(&mut both),
            Err(FramingError::LengthAndCoding)
        );
        for coding in ["gzip, chunked", "identity", "chunked, chunked"] {
            let mut h = headers(&[("transfer-encoding", coding)]);
            assert_eq!(check_response_framing(&mut h), Err(FramingError::Coding));
        }
    }

    #[test]
    fn cookie_fields_become_one_line() {
        let mut h = headers(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        join_cookies(&mut h);
        let got: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(got, ["a=1; b=2; c=3"]);
        let mut one = headers(&[("cookie", "a=1; b=2")]);
        join_cookies(&mut one);
        assert_eq!(one[header::COOKIE], "a=1; b=2");
    }

    #[test]
    fn forwarding_headers_replace_the_clients_and_keep_an_upgrade() {
        let mut h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "http"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
        ]);
        let addr: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        let ip = forwarded_for(addr);
        let mut fwd = Forwarding {
            forwarded_for: &ip,
            client: addr.ip(),
            host: Some("ib.example"),
            formats: &[ForwardingFormat::XForwarded],
        };
        set_forwarding_headers(&mut h, &fwd, true);
        assert_eq!(h.get_all(X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h[X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "ib.example");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");

        let mut h = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        fwd.host = None;
        set_forwarding_headers(&mut h, &fwd, false);
        assert!(!h.contains_key(header::UPGRADE) && !h.contains_key(header::CONNECTION));
        assert!(!h.contains_key(X_FORWARDED_HOST));
        assert!(!h.contains_key(header::FORWARDED));
    }

    #[test]
    fn forwarded_is_sent_beside_or_instead_of_x_forwarded() {
        let addr: SocketAddr = "[2001:db8::1]:50000".parse().unwrap();
        let ip = forwarded_for(addr);
        let both = [ForwardingFormat::XForwarded, ForwardingFormat::Forwarded];
        let mut fwd = Forwarding {
            forwarded_for: &ip,
            client: addr.ip(),
            host: Some("ib.example:8443"),
            formats: &both,
        };
        let mut h = headers(&[("forwarded", "for=203.0.113.9")]);
        set_forwarding_headers(&mut h, &fwd, false);
        assert_eq!(h.get_all(header::FORWARDED).iter().count(), 1);
        assert_eq!(
            h[header::FORWARDED],
            "for=\"[2001:db8::1]\";proto=https;host=\"ib.example:8443\""
        );
        assert_eq!(h[X_FORWARDED_FOR], "2001:db8::1");

        fwd.formats = &[ForwardingFormat::Forwarded];
        fwd.client = "192.0.2.7".parse().unwrap();
        fwd.host = Some("ib.example");
        let mut h = HeaderMap::new();
        set_forwarding_headers(&mut h, &fwd, false);
        assert_eq!(
            h[header::FORWARDED],
            "for=192.0.2.7;proto=https;host=ib.example"
        );
        assert!(!h.contains_key(X_FORWARDED_FOR) && !h.contains_key(X_FORWARDED_PROTO));

        // A host that cannot be quoted safely is left out, not sent mangled.
        assert_eq!(
            forwarded_element("::ffff:192.0.2.7".parse().unwrap(), Some("a\"b")),
            "for=192.0.2.7;proto=https"
        );
    }
}
