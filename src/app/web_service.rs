//! certgate's own paths ([`Web`]) plugged into the gateway's [`LocalService`] seam: reads
//! the body within [`MAX_BODY`], turns the verified identity into a [`PeerCert`], and hands
//! the request to the handlers. It lives in the composition root so that neither `web` nor
//! `proxy` depends on the other.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::{Request, Response, StatusCode};

use crate::config::RouteAuth;
use crate::http_common::body::{self, ProxyBody};
use crate::proxy::{LocalContext, LocalService};
use crate::web::{Access, MAX_BODY, PeerCert, Web, WebRequest, respond};

/// certgate's own paths as a [`LocalService`].
pub struct WebService(pub Arc<Web>);

impl LocalService for WebService {
    fn owns(&self, path: &str) -> Option<RouteAuth> {
        Web::owns(path).map(gateway_auth)
    }

    fn owns_raw(&self, raw_path: &str) -> Option<RouteAuth> {
        if !Web::takes_raw_path(raw_path) {
            return None;
        }
        Web::owns(raw_path).map(gateway_auth)
    }

    fn renews(&self, path: &str) -> bool {
        Web::owns(path) == Some(Access::Renewal)
    }

    fn call(
        &self,
        req: Request<ProxyBody>,
        ctx: LocalContext,
    ) -> BoxFuture<'static, Response<ProxyBody>> {
        let web = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // A body that trickles in would hold a connection and a handler for as long as
            // the client likes.
            let read = body::collect_limited(body, MAX_BODY);
            let body = match tokio::time::timeout(web.limits().body_read_timeout(), read).await {
                Err(_) => {
                    tracing::debug!(remote = %ctx.remote_addr, "request body too slow");
                    return into_proxy(respond::text(
                        StatusCode::REQUEST_TIMEOUT,
                        "the request body did not arrive in time",
                    ));
                }
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) => {
                    return into_proxy(respond::text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large",
                    ));
                }
                Ok(Err(_)) => {
                    return into_proxy(respond::text(
                        StatusCode::BAD_REQUEST,
                        "cannot read the request body",
                    ));
                }
            };
            let host = parts
                .uri
                .authority()
                .map(|a| a.as_str().to_owned())
                .or_else(|| {
                    parts
                        .headers
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            let request = WebRequest {
                method: parts.method,
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers,
                body,
                peer: ctx.identity.map(|i| PeerCert {
                    serial: i.serial().to_owned(),
                    login: i.login().to_owned(),
                }),
                remote: ctx.remote_addr.ip().to_string(),
                origin: format!("https://{host}"),
            };
            into_proxy(web.handle(&request).await)
        })
    }
}

/// What the gateway enforces for an access before the handler runs.
fn gateway_auth(access: Access) -> RouteAuth {
    match access {
        // Renewal answers a missing certificate in its protocol's own words.
        Access::Public | Access::Renewal => RouteAuth::Public,
        // The administrator's role is checked by the lifecycle rules, per action.
        Access::Customer | Access::ContractAdmin => RouteAuth::Certificate,
    }
}

fn into_proxy(r: respond::WebResponse) -> Response<ProxyBody> {
    r.map(body::full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_checks_certificates_where_it_did_before_the_table() {
        let auth = |path| Web::owns(path).map(gateway_auth);
        for path in ["/certgate/admin", "/api/v1/users", "/api/v1/anything"] {
            assert_eq!(auth(path), Some(RouteAuth::Certificate), "{path}");
        }
        for path in [
            "/certgate",
            "/certgate/api/renew",
            "/certgate/renew",
            "/.well-known/est/simplereenroll",
            "/ocsp",
        ] {
            assert_eq!(auth(path), Some(RouteAuth::Public), "{path}");
        }
        assert_eq!(auth("/ib/top"), None);
    }
}
