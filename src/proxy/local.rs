//! The seam to certgate's own pages and endpoints (landing, obtain, renewal, contract
//! admin, EST, CRL, OCSP, `/api/v1/`), which the `web` module implements. The gateway asks
//! [`LocalService::owns`] first, enforces the answer's [`RouteAuth`], strips spoofable
//! headers, then hands the request over with the verified identity.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::{Request, Response};

use crate::config::RouteAuth;
use crate::http_common::body::ProxyBody;
use crate::identity::PeerIdentity;
use crate::tls::PresentedCert;

/// What the gateway knows about the caller of a local path.
#[derive(Debug, Clone)]
pub struct LocalContext {
    /// The certificate's identity, present only when its live status lets it pass.
    pub identity: Option<PeerIdentity>,
    /// The chain presented at the handshake, whatever its status (e.g. renewal of an
    /// expired certificate during its grace period needs it).
    pub presented: Option<Arc<PresentedCert>>,
    /// The client's address.
    pub remote_addr: SocketAddr,
}

/// certgate's own paths, served in-process.
pub trait LocalService: Send + Sync + 'static {
    /// Whether `path` is served here, and with which authentication. `None` lets the
    /// configured `[[route]]`s handle it. Called for every request: keep it cheap.
    fn owns(&self, path: &str) -> Option<RouteAuth>;

    /// For a path that cannot be made canonical: whether it is nevertheless served here as
    /// sent, because its tail is data rather than path segments (OCSP GET). Such a request
    /// is never forwarded. Default: none.
    fn owns_raw(&self, _raw_path: &str) -> Option<RouteAuth> {
        None
    }

    /// Whether `path` renews the caller's certificate: there alone an expired certificate
    /// within its grace days is passed on as the caller. Default: no path.
    fn renews(&self, _path: &str) -> bool {
        false
    }

    /// Answers a request for a path this service owns. On `certificate` paths the gateway
    /// has already refused callers without a valid identity.
    fn call(
        &self,
        req: Request<ProxyBody>,
        ctx: LocalContext,
    ) -> BoxFuture<'static, Response<ProxyBody>>;
}

/// Owns no path; every request goes to the configured routes.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoLocalService;

impl LocalService for NoLocalService {
    fn owns(&self, _path: &str) -> Option<RouteAuth> {
        None
    }

    fn call(
        &self,
        _req: Request<ProxyBody>,
        _ctx: LocalContext,
    ) -> BoxFuture<'static, Response<ProxyBody>> {
        Box::pin(async {
            let mut r = Response::new(crate::http_common::body::empty());
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            r
        })
    }
}
