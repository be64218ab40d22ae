//! Counts what certgate's own paths refuse, by surface and refusal code, for `/metrics`
//! (`certgate_web_refusals_total{surface,code}`): a wave of `bad_csr` on EST, `cross_site`
//! on the API or `malformed_request` on OCSP shows there before anyone reads a log.
//!
//! The code comes from the answer itself ([`RefusalCode`], set where refusals are made);
//! an error status without one is counted under a name for its status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::StatusCode;

use super::respond::WebResponse;
use crate::telemetry::Samples;

/// The stable code of a refusal, carried in the answer's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalCode(pub &'static str);

/// The counts; see the module comment.
#[derive(Debug, Default)]
pub struct RefusalCounts {
    counts: Mutex<HashMap<(&'static str, &'static str), i64>>,
}

impl RefusalCounts {
    /// Counts `resp` if it refuses (a code set, or an error status).
    pub fn observe(&self, path: &str, resp: &WebResponse) {
        let code = match resp.extensions().get::<RefusalCode>() {
            Some(RefusalCode(c)) => *c,
            None if resp.status().is_client_error() || resp.status().is_server_error() => {
                status_name(resp.status())
            }
            None => return,
        };
        let key = (surface_of(path), code);
        // Holds no invariant a panic could break: use the map as it is.
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(key).or_default() += 1;
    }

    /// The counts as `/metrics` samples.
    pub fn samples(self: &Arc<Self>) -> Samples {
        let this = Arc::clone(self);
        Arc::new(move || {
            let counts = this.counts.lock().unwrap_or_else(|p| p.into_inner());
            let mut out: Vec<_> = counts
                .iter()
                .map(|((surface, code), n)| (vec![("surface", *surface), ("code", *code)], *n))
                .collect();
            out.sort();
            out
        })
    }
}

/// Which of certgate's surfaces a path belongs to.
fn surface_of(path: &str) -> &'static str {
    if path.starts_with("/api/") {
        "api"
    } else if path.starts_with("/.well-known/est") {
        "est"
    } else if path.starts_with("/ocsp") {
        "ocsp"
    } else if path.starts_with("/crl") {
        "crl"
    } else {
        "pages"
    }
}

fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "server_error",
        _ => "client_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn answer(status: StatusCode, code: Option<&'static str>) -> WebResponse {
        let mut r = http::Response::new(Bytes::new());
        *r.status_mut() = status;
        if let Some(c) = code {
            r.extensions_mut().insert(RefusalCode(c));
        }
        r
    }

    #[test]
    fn refusals_are_counted_by_surface_and_code() {
        let counts = Arc::new(RefusalCounts::default());
        counts.observe(
            "/api/v1/users",
            &answer(StatusCode::FORBIDDEN, Some("cross_site")),
        );
        counts.observe(
            "/api/v1/users",
            &answer(StatusCode::FORBIDDEN, Some("cross_site")),
        );
        counts.observe("/ocsp", &answer(StatusCode::OK, Some("malformed_request")));
        counts.observe("/crl/x.crl", &answer(StatusCode::NOT_FOUND, None));
        counts.observe("/certgate/", &answer(StatusCode::OK, None));
        let samples = (counts.samples())();
        assert_eq!(
            samples,
            vec![
                (vec![("surface", "api"), ("code", "cross_site")], 2),
                (vec![("surface", "crl"), ("code", "not_found")], 1),
                (vec![("surface", "ocsp"), ("code", "malformed_request")], 1),
            ]
        );
    }
}
