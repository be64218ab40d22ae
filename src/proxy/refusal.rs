//! The one place where the gateway's own refusals and failures become HTTP responses: an
//! HTML page for browsers (`Accept: text/html`), JSON for everything else, in the language
//! of `Accept-Language`. Texts come from the catalogs of [`crate::locale`] keyed by the
//! stable code and never echo request data, so a page cannot carry an injection.

use http::{HeaderValue, Response, StatusCode, header};

use crate::http_common::body::{ProxyBody, full};
use crate::http_common::{CLIENT_CERTIFICATE_CHALLENGE, RETRY_AFTER_SECS};
use crate::locale::{self, Lang};
use crate::status::Refusal;

/// Why the gateway answered instead of the app behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The client certificate (or its absence) does not let the request through.
    Certificate(Refusal),
    /// A login form named another login ID than the certificate's.
    LoginMismatch,
    /// A login form the gateway cannot read (not urlencoded, unreadable).
    LoginFormUnreadable,
    /// SNI and Host name different servers on a listener that authenticates clients.
    Misdirected,
    /// No route for this path.
    NoRoute,
    /// The request body is larger than the route allows.
    BodyTooLarge,
    /// The request is malformed.
    BadRequest,
    /// The path cannot be made canonical without guessing how the app reads it
    /// ([`super::canonical`]).
    PathRefused,
    /// A method the gateway never forwards: `CONNECT`, `TRACE`, `TRACK`
    /// ([`crate::http_common::request_head`]).
    MethodRefused,
    /// No `Host`, several, one that is not a host name, or one the request target
    /// contradicts ([`crate::http_common::request_head`]).
    HostRefused,
    /// A request body in a transfer coding other than `chunked` alone
    /// ([`crate::http_common::request_head`]).
    TransferCodingRefused,
    /// The upstream could not be reached or failed.
    UpstreamFailed,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The gateway failed (e.g. an identity header could not be written).
    Internal,
    /// The listener holds `max_connections` already: this connection is shed.
    Overloaded,
}

impl Problem {
    /// Whether this refusal is about who the caller is (counted as a refusal in metrics).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::Certificate(_)
                | Self::LoginMismatch
                | Self::LoginFormUnreadable
                | Self::PathRefused
                | Self::MethodRefused
                | Self::HostRefused
                | Self::TransferCodingRefused
        )
    }

    /// The stable code: JSON `error`, log `reason`, metric label.
    pub fn code(self) -> &'static str {
        match self {
            Self::Certificate(r) => r.as_str(),
            Self::LoginMismatch => "login_id_mismatch",
            Self::LoginFormUnreadable => "login_form_unreadable",
            Self::Misdirected => "misdirected_request",
            Self::NoRoute => "no_route",
            Self::BodyTooLarge => "body_too_large",
            Self::BadRequest => "bad_request",
            Self::PathRefused => "path_refused",
            Self::MethodRefused => "method_refused",
            Self::HostRefused => "host_refused",
            Self::TransferCodingRefused => "transfer_coding_refused",
            Self::UpstreamFailed => "upstream_failed",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Internal => "internal_error",
            Self::Overloaded => "overloaded",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Certificate(Refusal::NoCertificate) => StatusCode::UNAUTHORIZED,
            Self::Certificate(Refusal::StatusUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Certificate(_) | Self::LoginMismatch => StatusCode::FORBIDDEN,
            Self::LoginFormUnreadable => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest | Self::PathRefused | Self::HostRefused => StatusCode::BAD_REQUEST,
            Self::MethodRefused => StatusCode::METHOD_NOT_ALLOWED,
            Self::TransferCodingRefused => StatusCode::NOT_IMPLEMENTED,
            Self::UpstreamFailed => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The response for this problem: an HTML page for a browser, JSON otherwise, in the
    /// language the request names (see [`Reply`]).
    pub fn respond(self, reply: Reply) -> Response<ProxyBody> {
        let status = self.status();
        let locale = locale::current();
        let code = self.code();
        let (body, content_type) = if reply.html {
            // A caller naming no language (curl, a script) gets Japanese with English below.
            let lang = reply.lang.unwrap_or(Lang::Ja);
            match locale::pages::refusal(&locale, lang, reply.lang.is_none(), code) {
                Ok(html) => (html, "text/html; charset=utf-8"),
                Err(e) => {
                    tracing::error!(error = %e, code, "the refusal template failed");
                    (format!("{status}\n{code}\n"), "text/plain; charset=utf-8")
                }
            }
        } else {
            // JSON keeps English for callers naming no language, as it always answered.
            let texts = locale.texts(reply.lang.unwrap_or(Lang::En));
            serde_json_body(
                code,
                texts.get("refusal", code).unwrap_or_default(),
                texts.get("refusal_todo", code).unwrap_or_default(),
            )
        };
        let mut resp = Response::new(full(body));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if reply.html {
            h.insert(
                "content-security-policy",
                HeaderValue::from_static(PAGE_CSP),
            );
            h.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
        }
        if let Some(lang) = reply.lang {
            h.insert(
                header::CONTENT_LANGUAGE,
                HeaderValue::from_static(lang.as_str()),
            );
        }
        // The headers HTTP expects with these statuses: a challenge on 401, when to come
        // back on 503 (the shed path sets a shorter wait of its own).
        if status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(CLIENT_CERTIFICATE_CHALLENGE),
            );
        }
        // A 405 names what the gateway does forward (RFC 9110 §15.5.6).
        if status == StatusCode::METHOD_NOT_ALLOWED {
            h.insert(
                header::ALLOW,
                HeaderValue::from_static(crate::http_common::request_head::ALLOWED_METHODS),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

fn serde_json_body(code: &str, message: &str, action: &str) -> (String, &'static str) {
    (
        serde_json::json!({ "error": code, "message": message, "action": action }).to_string(),
        "application/json",
    )
}

/// The refusal page's policy: certgate's own stylesheet, nothing else.
const PAGE_CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// How to answer a request: as a page or as JSON, and in which language it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The caller accepts `text/html` (a browser).
    pub html: bool,
    /// The language of `Accept-Language`, when it names one certgate speaks.
    pub lang: Option<Lang>,
}

impl Reply {
    /// Reads `Accept` and `Accept-Language`.
    pub fn of(headers: &http::HeaderMap) -> Self {
        let lang = headers
            .get_all(header::ACCEPT_LANGUAGE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(Lang::from_accept_language);
        Self {
            html: wants_html(headers),
            lang,
        }
    }
}

/// Whether the caller prefers HTML (a browser).
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http_body_util::BodyExt;

    const ALL: &[Problem] = &[
        Problem::Certificate(Refusal::NoCertificate),
        Problem::Certificate(Refusal::ForeignCa),
        Problem::Certificate(Refusal::InvalidCertificate),
        Problem::Certificate(Refusal::Unknown),
        Problem::Certificate(Refusal::Revoked),
        Problem::Certificate(Refusal::Superseded),
        Problem::Certificate(Refusal::Expired),
        Problem::Certificate(Refusal::NotYetValid),
        Problem::Certificate(Refusal::UserDisabled),
        Problem::Certificate(Refusal::ContractDisabled),
        Problem::Certificate(Refusal::StatusUnavailable),
        Problem::Certificate(Refusal::StaffCertificate),
        Problem::Certificate(Refusal::NotStaffCertificate),
        Problem::LoginMismatch,
        Problem::LoginFormUnreadable,
        Problem::Misdirected,
        Problem::NoRoute,
        Problem::BodyTooLarge,
        Problem::BadRequest,
        Problem::PathRefused,
        Problem::MethodRefused,
        Problem::HostRefused,
        Problem::TransferCodingRefused,
        Problem::UpstreamFailed,
        Problem::UpstreamTimeout,
        Problem::Internal,
        Problem::Overloaded,
    ];

    async fn body(r: Response<ProxyBody>) -> String {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn headers(accept: &str, lang: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, accept.parse().unwrap());
        if let Some(l) = lang {
            h.insert(header::ACCEPT_LANGUAGE, l.parse().unwrap());
        }
        h
    }

    #[tokio::test]
    async fn every_problem_has_a_page_and_json_in_both_languages() {
        for p in ALL {
            for (lang, title) in [
                ("ja", "<title>ご利用いただけません"),
                ("en", "<title>This page cannot be shown"),
            ] {
                let r = p.respond(Reply::of(&headers("text/html", Some(lang))));
                assert_eq!(
                    r.headers()[header::CONTENT_TYPE],
                    "text/html; charset=utf-8",
                    "{p:?}"
                );
                assert!(r.headers().contains_key("content-security-policy"));
                let page = body(r).await;
                assert!(
                    page.contains(&format!("<html lang=\"{lang}\">")),
                    "{p:?} {lang}"
                );
                assert!(page.contains(title), "{p:?}: {page}");
                assert!(page.contains("/certgate/assets/style.css"));
                assert!(!page.contains("lang=\"en\"><h2>") && !page.contains("class=\"second\""));
                let r = p.respond(Reply::of(&headers("application/json", Some(lang))));
                let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
                assert_eq!(v["error"], p.code());
                assert!(!v["message"].as_str().unwrap().is_empty(), "{p:?} {lang}");
            }
        }
    }

    #[tokio::test]
    async fn a_caller_naming_no_language_gets_both() {
        let r = Problem::Certificate(Refusal::NoCertificate)
            .respond(Reply::of(&headers("text/html", None)));
        let page = body(r).await;
        assert!(
            page.contains("<html lang=\"ja\">")
                && page.contains("電子証明書が提示されませんでした")
        );
        assert!(
            page.contains("lang=\"en\"") && page.contains("No client certificate"),
            "{page}"
        );
        let r =
            Problem::Certificate(Refusal::NoCertificate).respond(Reply::of(&headers("*/*", None)));
        let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
        assert_eq!(v["message"], "No client certificate was presented.");
        let r = Problem::Certificate(Refusal::NoCertificate)
            .respond(Reply::of(&headers("*/*", Some("ja,en;q=0.5"))));
        let v: serde_json::Value = serde_json::from_str(&body(r).await).unwrap();
        assert_eq!(v["message"], "電子証明書が提示されませんでした。");
    }
}
