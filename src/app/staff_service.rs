//! The staff console ([`web::staff::Console`]) plugged into the staff listener's
//! [`StaffService`] seam, as `web_service.rs` plugs the customer paths into the gateway.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Response;

use crate::staff::{PublicHttpRequest, StaffHttpRequest, StaffService};
use crate::web::WebRequest;
use crate::web::staff::Console;

/// The console as a [`StaffService`].
pub struct ConsoleService(pub Arc<Console>);

impl StaffService for ConsoleService {
    fn call(&self, req: StaffHttpRequest) -> BoxFuture<'static, Response<Bytes>> {
        let console = Arc::clone(&self.0);
        Box::pin(async move {
            let StaffHttpRequest {
                parts,
                body,
                caller,
                remote,
            } = req;
            console
                .handle(&web_request(parts, body, remote), &caller)
                .await
        })
    }

    fn call_public(&self, req: PublicHttpRequest) -> BoxFuture<'static, Response<Bytes>> {
        let console = Arc::clone(&self.0);
        Box::pin(async move {
            let PublicHttpRequest {
                parts,
                body,
                remote,
            } = req;
            console
                .handle_public(&web_request(parts, body, remote))
                .await
        })
    }
}

/// The request as the web handlers see it; its origin is the host it was addressed to.
fn web_request(parts: http::request::Parts, body: Bytes, remote: SocketAddr) -> WebRequest {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    WebRequest {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        peer: None,
        remote: remote.ip().to_string(),
        origin: format!("https://{host}"),
    }
}
