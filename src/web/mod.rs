//! certgate's own HTTP surface: the landing, obtain and renew pages, the JSON API, EST,
//! the CRL distribution point and the OCSP responder.
//!
//! Every own path is declared once, in the table in [`routes`]; the gateway's ownership
//! question and the dispatch both read it. Enrollment protocols are adapters in [`enroll`]
//! over `Lifecycle::enroll`. Handlers take a [`WebRequest`] whose body the listener has
//! already read within a size limit, and whose client certificate (if any) the gateway has
//! verified and status-checked. Errors become responses in one place ([`respond`]).

// Handlers return a ready response as their error value to exit early; boxing it would
// add an allocation on every refusal and buy nothing.
#![allow(clippy::result_large_err)]

mod api;
mod crl_point;
pub mod csrf;
pub mod enroll;
mod http_caching;
mod json_call;
pub mod limits;
pub mod ocsp_reservations;
pub mod pages;
mod path_login;
pub mod redirect;
pub mod refusals;
pub mod request;
pub mod respond;
pub mod revocation;
pub mod route_table;
pub mod routes;
pub mod staff;

use std::sync::Arc;

use http::{StatusCode, header};

pub use limits::{ClientKeys, Limits, Surface};
pub use request::{PeerCert, WebRequest};
pub use respond::WebResponse;
pub use revocation::{CaSigner, Revocation, RevocationSettings};
pub use route_table::Access;

use crate::lifecycle::Lifecycle;
use pages::Page;
use route_table::Resolved;

/// Largest request body certgate's own paths accept.
pub const MAX_BODY: usize = 64 * 1024;

/// certgate's own paths and what their handlers need.
pub struct Web {
    lifecycle: Lifecycle,
    revocation: Arc<Revocation>,
    /// The active CA certificate, then its chain (DER), sent with enrolled certificates.
    ca_chain: Vec<Vec<u8>>,
    /// Token buckets on the public surface (`[limits]`).
    limits: Arc<Limits>,
    /// What the paths refused, for `/metrics`.
    refusals: Arc<refusals::RefusalCounts>,
}

impl Web {
    pub fn new(lifecycle: Lifecycle, revocation: Arc<Revocation>, ca_chain: Vec<Vec<u8>>) -> Self {
        Self {
            lifecycle,
            revocation,
            ca_chain,
            limits: Arc::new(Limits::new(crate::config::LimitsConfig::default())),
            refusals: Arc::default(),
        }
    }

    /// The same paths under `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: Arc<Limits>) -> Self {
        self.limits = limits;
        self
    }

    /// The token buckets (and the body read timeout) these paths work under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether `path` belongs to certgate rather than to an upstream app, and who may call
    /// it. Asked for every request: reads the table without allocating.
    pub fn owns(path: &str) -> Option<Access> {
        route_table::owns(&routes::OWN_PATHS, path)
    }

    /// Whether `path`, as sent, is an own path whose tail is data rather than path segments:
    /// an OCSP GET carries the url-encoded base64 of its request (RFC 6960 A.1), where `/`
    /// and `%2F` are characters of the request, not separators. The gateway serves such a
    /// path here without making it canonical; it is never forwarded.
    pub fn takes_raw_path(path: &str) -> bool {
        path.starts_with("/ocsp/")
    }

    /// What the paths refused, by surface and code (`certgate_web_refusals_total`).
    pub fn refusals(&self) -> &Arc<refusals::RefusalCounts> {
        &self.refusals
    }

    /// Answers a request for one of certgate's own paths.
    pub async fn handle(&self, req: &WebRequest) -> WebResponse {
        let resp = self.dispatch(req).await;
        self.refusals.observe(&req.path, &resp);
        respond::in_language(resp, pages::stated_lang(req))
    }

    async fn dispatch(&self, req: &WebRequest) -> WebResponse {
        match route_table::resolve(&routes::OWN_PATHS, &req.method, &req.path) {
            Resolved::Route(route, rest) => (route.handler)(self, req, rest).await,
            Resolved::NotAllowed(mount, allow) => {
                let mut r = (mount.not_allowed)();
                r.headers_mut().insert(header::ALLOW, allow.allow_header());
                r
            }
            Resolved::NotFound(mount) => (mount.not_found)(),
            // The gateway hands over only paths `owns` claims.
            Resolved::NotOurs => respond::text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    async fn page(&self, page: Page, req: &WebRequest) -> WebResponse {
        let lang = pages::lang_of(req);
        let notice = pages::renewal_notice(
            self.lifecycle.store(),
            req,
            lang,
            self.lifecycle.now(),
            self.lifecycle.settings().renewal_window_days,
        )
        .await;
        let login = req
            .peer
            .as_ref()
            .map(|p| p.login.as_str())
            .unwrap_or_default();
        pages::render(page, lang, notice, login)
    }
}
