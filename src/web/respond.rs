//! The one place where errors become HTTP answers: a status, a stable error code and a
//! message safe for the client. The log gets the full error; the client never sees internals.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::http_common::RETRY_AFTER_SECS;
use crate::lifecycle::LifecycleError;
use crate::locale::{self, Lang};

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
    // No answer of certgate's is to be read as another type than it says.
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
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

/// A JSON error answered to a caller that named its language (the pages' scripts send the
/// page's `lang` as `Accept-Language`) gets its `message` from that language's catalog,
/// keyed by the stable `error` code; the code itself never changes. Without a named
/// language, or for anything but a JSON error, the answer is left as it is.
pub fn in_language(resp: WebResponse, lang: Option<Lang>) -> WebResponse {
    let Some(lang) = lang else {
        return resp;
    };
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if resp.status().as_u16() < 400 || !is_json {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return WebResponse::from_parts(parts, body);
    };
    let Some(code) = value
        .get("error")
        .and_then(|c| c.as_str())
        .map(str::to_owned)
    else {
        return WebResponse::from_parts(parts, body);
    };
    let locale = locale::current();
    let texts = locale.texts(lang);
    let message = texts
        .get("api", &code)
        .or_else(|| texts.get("api", "generic"))
        .unwrap_or_default();
    value["message"] = serde_json::Value::from(message);
    parts.headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.as_str()),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    WebResponse::from_parts(parts, Bytes::from(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: &WebResponse) -> String {
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        v["message"].as_str().unwrap().to_owned()
    }

    #[test]
    fn json_errors_speak_the_callers_language_and_keep_their_code() {
        let err = || {
            json_error(
                StatusCode::UNAUTHORIZED,
                "bad_code",
                "the login ID or the issuance code is not correct",
            )
        };
        let ja = in_language(err(), Some(Lang::Ja));
        assert_eq!(
            message(&ja),
            "ログインIDまたは発行コードが正しくありません。"
        );
        let v: serde_json::Value = serde_json::from_slice(ja.body()).unwrap();
        assert_eq!(v["error"], "bad_code");
        assert_eq!(ja.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ja.headers()[header::CONTENT_LANGUAGE], "ja");
        assert_eq!(
            message(&in_language(err(), Some(Lang::En))),
            "The login ID or the issuance code is not correct."
        );
        // No language named: unchanged.
        assert_eq!(
            message(&in_language(err(), None)),
            "the login ID or the issuance code is not correct"
        );
        // A code the catalog does not know gets the catalog's general sentence, never English.
        let odd = in_language(
            json_error(StatusCode::CONFLICT, "new_code", "english text"),
            Some(Lang::Ja),
        );
        assert_eq!(message(&odd), "処理を完了できませんでした。");
        // Success and non-JSON answers pass untouched.
        let ok = in_language(json_ok(&serde_json::json!({"a": 1})), Some(Lang::Ja));
        assert_eq!(ok.body().as_ref(), br#"{"a":1}"#);
        let plain = in_language(text(StatusCode::BAD_REQUEST, "est says no"), Some(Lang::Ja));
        assert_eq!(plain.body().as_ref(), b"est says no\n");
    }
}
