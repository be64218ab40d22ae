//! What certgate's JSON calls share (the pages' obtain and renew, the contract
//! administrator's `/api/v1/`): the body read strictly, and the answers for a cross-site
//! request and a missing certificate, each as the JSON error the pages expect.

use http::StatusCode;
use serde::Deserialize;

use crate::http_common::CLIENT_CERTIFICATE_CHALLENGE;

use super::csrf;
use super::request::{PeerCert, WebRequest};
use super::respond::{WebResponse, json_error};

/// The JSON body as `T`, or a 400 `bad_request` saying why not.
pub fn parse<T: for<'de> Deserialize<'de>>(req: &WebRequest) -> Result<T, WebResponse> {
    serde_json::from_slice(&req.body).map_err(|e| {
        json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("the request body is not valid: {e}"),
        )
    })
}

/// 403 `cross_site`.
pub fn cross_site(e: csrf::CrossSite) -> WebResponse {
    json_error(StatusCode::FORBIDDEN, "cross_site", &e.to_string())
}

/// The verified certificate, or 401 `certificate_required`.
pub fn need_peer(req: &WebRequest) -> Result<&PeerCert, WebResponse> {
    req.peer.as_ref().ok_or_else(|| {
        let mut r = json_error(
            StatusCode::UNAUTHORIZED,
            "certificate_required",
            "this call needs your current client certificate",
        );
        r.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(CLIENT_CERTIFICATE_CHALLENGE),
        );
        r
    })
}
