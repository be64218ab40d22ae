//! certgate's own HTTP surface: the landing, obtain and renew pages, the JSON API, EST,
//! the CRL distribution point and the OCSP responder.
//!
//! Handlers take a [`WebRequest`] whose body the listener has already read within a size
//! limit, and whose client certificate (if any) the gateway has verified and status-checked.
//! Errors become responses in one place ([`respond`]).

// Handlers return a ready response as their error value to exit early; boxing it would
// add an allocation on every refusal and buy nothing.
#![allow(clippy::result_large_err)]

mod api;
pub mod csrf;
pub mod est;
pub mod pages;
pub mod request;
pub mod respond;
pub mod revocation;

use std::sync::Arc;

use http::{Method, StatusCode};

pub use request::{PeerCert, WebRequest};
pub use respond::WebResponse;
pub use revocation::{CaSigner, Revocation};

use crate::lifecycle::Lifecycle;
use pages::{Lang, Page};

/// Who may call a path of certgate's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a client certificate is used when present (landing page notice, EST
    /// re-enrollment).
    Public,
    /// Only with a verified, current client certificate.
    Certificate,
}

/// Largest request body certgate's own paths accept.
pub const MAX_BODY: usize = 64 * 1024;

/// certgate's own paths and their handlers.
pub struct Web {
    lifecycle: Lifecycle,
    revocation: Arc<Revocation>,
    /// The active CA certificate, then its chain (DER).
    ca_chain: Vec<Vec<u8>>,
}

impl Web {
    pub fn new(lifecycle: Lifecycle, revocation: Arc<Revocation>, ca_chain: Vec<Vec<u8>>) -> Self {
        Self {
            lifecycle,
            revocation,
            ca_chain,
        }
    }

    /// Whether `path` belongs to certgate rather than to an upstream app, and who may call it.
    pub fn owns(path: &str) -> Option<Access> {
        if path == "/certgate/admin" {
            return Some(Access::Certificate);
        }
        let public = path == "/certgate"
            || path.starts_with("/certgate/")
            || path.starts_with(est::PREFIX)
            || path.starts_with("/crl/")
            || path == "/ocsp"
            || path.starts_with("/ocsp/");
        if public {
            // Renewal pages and re-enrollment read the certificate when one is presented;
            // they refuse by themselves without one.
            return Some(Access::Public);
        }
        if path.starts_with("/api/v1/") {
            return Some(Access::Certificate);
        }
        None
    }

    /// Answers a request for one of certgate's own paths.
    pub async fn handle(&self, req: &WebRequest) -> WebResponse {
        let path = req.path.as_str();
        if path.starts_with(est::PREFIX) {
            return est::handle(&self.lifecycle, &self.ca_chain, req).await;
        }
        if path.starts_with("/crl/") {
            return self.revocation.crl(req).await;
        }
        if path == "/ocsp" || path.starts_with("/ocsp/") {
            return self.revocation.ocsp(req).await;
        }
        if path.starts_with("/api/v1/") {
            return api::admin(&self.lifecycle, req).await;
        }
        if path.starts_with("/certgate/assets/") {
            return pages::asset(path);
        }
        match (&req.method, path) {
            (&Method::POST, "/certgate/api/obtain") => {
                api::obtain(&self.lifecycle, &self.ca_chain, req).await
            }
            (&Method::POST, "/certgate/api/renew") => {
                api::renew(&self.lifecycle, &self.ca_chain, req).await
            }
            (&Method::GET, "/certgate" | "/certgate/") => self.page(Page::Landing, req).await,
            (&Method::GET, "/certgate/obtain") => self.page(Page::Obtain, req).await,
            (&Method::GET, "/certgate/renew") => self.page(Page::Renew, req).await,
            (&Method::GET, "/certgate/admin") => self.page(Page::Admin, req).await,
            (&Method::GET, "/certgate/renew-later") => pages::renew_later(req),
            _ => respond::text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    async fn page(&self, page: Page, req: &WebRequest) -> WebResponse {
        let lang = Lang::of(req);
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
        pages::render(page, lang, &notice, login)
    }
}
