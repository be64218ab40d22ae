//! The staff console ([`web::staff::Console`]) plugged into the staff listener's
//! [`StaffService`] seam, as `web_service.rs` plugs the customer paths into the gateway.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::Response;

use crate::staff::{StaffHttpRequest, StaffService};
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
            let host = parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let request = WebRequest {
                method: parts.method,
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().map(str::to_owned),
                headers: parts.headers,
                body,
                peer: None,
                remote: remote.ip().to_string(),
                origin: format!("https://{host}"),
            };
            console.handle(&request, &caller).await
        })
    }
}
