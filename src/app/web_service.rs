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
        Web::owns(path).map(|a| match a {
            Access::Public => RouteAuth::Public,
            Access::Certificate => RouteAuth::Certificate,
        })
    }

    fn call(
        &self,
        req: Request<ProxyBody>,
        ctx: LocalContext,
    ) -> BoxFuture<'static, Response<ProxyBody>> {
        let web = self.0.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body::collect_limited(body, MAX_BODY).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    return into_proxy(respond::text(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request body too large",
                    ));
                }
                Err(_) => {
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

fn into_proxy(r: respond::WebResponse) -> Response<ProxyBody> {
    r.map(body::full)
}
