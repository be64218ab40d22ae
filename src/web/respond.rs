//! The one place where errors become HTTP answers: a status, a stable error code and a
//! message safe for the client. The log gets the full error; the client never sees internals.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::http_common::RETRY_AFTER_SECS;
use crate::lifecycle::LifecycleError;

/// A response with a body already in memory.
pub type WebResponse = Response<Bytes>;

/// JSON `{"error": code, "message": message}` with `status`.
pub fn json_error(status: StatusCode, code: &'static str, message: &str) -> WebResponse {
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let mut r = with_type(status, "application/json", Bytes::from(body));
    r.extensions_mut()
        .insert(super::refusals::RefusalCode(code));
    r
}

/// A JSON body with 200.
pub fn json_ok(value: &serde_json::Value) -> WebResponse {
    with_type(
        StatusCode::OK,
        "application/json",
        Bytes::from(value.to_string()),
    )
}

/// A body with a content type.
pub fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> WebResponse {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Plain text (EST errors are text per RFC 7030 §4.2.3).
pub fn text(status: StatusCode, message: &str) -> WebResponse {
    with_type(
        status,
        "text/plain; charset=utf-8",
        Bytes::from(format!("{message}\n")),
    )
}

/// The HTTP status for a lifecycle error.
pub fn status_of(e: &LifecycleError) -> StatusCode {
    use crate::store::CodeRefusal;
    match e {
        LifecycleError::Refused(r) => match r.code {
            "renewal_not_open" | "renewal_closed" | "has_certificate" | "conflict" => {
                StatusCode::CONFLICT
            }
            _ => StatusCode::FORBIDDEN,
        },
        LifecycleError::Csr(_) => StatusCode::BAD_REQUEST,
        LifecycleError::Code(CodeRefusal::NoCode | CodeRefusal::Wrong { .. }) => {
            StatusCode::UNAUTHORIZED
        }
        LifecycleError::Code(_) => StatusCode::FORBIDDEN,
        LifecycleError::NotFound(_) => StatusCode::NOT_FOUND,
        LifecycleError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        LifecycleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A lifecycle error as JSON. Internal errors are logged in full and shown as a generic line.
pub fn lifecycle_json(e: &LifecycleError) -> WebResponse {
    let status = status_of(e);
    let message = match e {
        LifecycleError::Internal(_) => {
            tracing::error!(error = %e, "internal error");
            "an internal error occurred; the bank has been notified".to_owned()
        }
        other => other.to_string(),
    };
    let mut r = json_error(status, e.code(), &message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    // A lifecycle 401 is a missing or wrong issuance code (sent in the JSON body). Not
    // `Basic`: that would make the browser show its own password dialog over the page.
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(ISSUANCE_CODE_CHALLENGE),
        );
    }
    r
}

/// The challenge of a 401 for an issuance code given in a JSON body.
const ISSUANCE_CODE_CHALLENGE: &str = "IssuanceCode realm=\"certgate\"";
