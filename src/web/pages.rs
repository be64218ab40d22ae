//! certgate's own pages (landing, obtain, renew, admin) in Japanese and English, and their
//! static assets. The HTML comes from the templates and catalogs of [`crate::locale`]; this
//! file picks the language of a request, adds the headers, and serves the assets. The only
//! assets served are named here, so no request path can reach a file.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::lifecycle::rules;
use crate::locale::pages::{Notice, PageData};
use crate::locale::{self, Lang};
use crate::store::Store;

pub use crate::locale::pages::Page;

use super::csrf;
use super::request::WebRequest;
use super::respond::{WebResponse, text, with_type};

/// The language a request names: `?lang=` first, then `Accept-Language`.
pub fn stated_lang(req: &WebRequest) -> Option<Lang> {
    match req.query_param("lang") {
        Some("en") => return Some(Lang::En),
        Some("ja") => return Some(Lang::Ja),
        _ => {}
    }
    req.header("accept-language")
        .and_then(Lang::from_accept_language)
}

/// The language of a page: the one the request names, Japanese otherwise.
pub fn lang_of(req: &WebRequest) -> Lang {
    stated_lang(req).unwrap_or(Lang::Ja)
}

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/certgate.js");
const ADMIN_SCRIPT: &str = include_str!("assets/admin.js");

/// The content security policy of every page: nothing but certgate's own files.
pub const CSP: &str =
    "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The policy of an SVG logo opened on its own: no script, no fetch, a sandbox.
const LOGO_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; sandbox";

/// `GET /certgate/assets/<name>`
pub fn asset(path: &str) -> WebResponse {
    let locale = locale::current();
    let (body, ctype) = match path.strip_prefix("/certgate/assets/") {
        Some("style.css") => (
            Bytes::from_static(STYLE.as_bytes()),
            "text/css; charset=utf-8",
        ),
        Some("brand.css") => (
            Bytes::from(locale.brand().css().to_owned()),
            "text/css; charset=utf-8",
        ),
        Some("certgate.js") => (
            Bytes::from_static(SCRIPT.as_bytes()),
            "text/javascript; charset=utf-8",
        ),
        Some("admin.js") => (
            Bytes::from_static(ADMIN_SCRIPT.as_bytes()),
            "text/javascript; charset=utf-8",
        ),
        Some("logo") => match locale.brand().logo() {
            Some(logo) => (Bytes::from(logo.bytes.clone()), logo.content_type),
            None => return text(StatusCode::NOT_FOUND, "not found"),
        },
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    // What [branding] makes follows a reload within minutes; the rest changes with a release.
    let cache = if matches!(path, "/certgate/assets/brand.css" | "/certgate/assets/logo") {
        "public, max-age=300"
    } else {
        "public, max-age=3600"
    };
    let mut r = with_type(StatusCode::OK, ctype, body);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if ctype == "image/svg+xml" {
        h.insert(
            "content-security-policy",
            HeaderValue::from_static(LOGO_CSP),
        );
    }
    r
}

/// The renewal notice for the presented certificate, when renewal is due.
pub async fn renewal_notice(
    store: &Store,
    req: &WebRequest,
    lang: Lang,
    now: i64,
    window_days: u32,
) -> Option<(String, i64, &'static str)> {
    let peer = req.peer.as_ref()?;
    let cert = store.certificate(&peer.serial).await.ok()??;
    if !rules::renewal_due(cert.not_after, now, window_days) {
        return None;
    }
    let href = if lang == Lang::En {
        "/certgate/renew?lang=en"
    } else {
        "/certgate/renew"
    };
    Some((cert.login, cert.not_after, href))
}

/// `GET /certgate/renew-later?next=/path`: remembers for a day that the customer chose to
/// renew later (no more renewal interstitial), then goes on to `next`. Only paths on this
/// site are followed ([`super::redirect`]), so the link cannot send anyone elsewhere.
pub fn renew_later(req: &WebRequest) -> WebResponse {
    let next = req
        .query_param("next")
        .map(|n| {
            form_urlencoded::parse(format!("n={n}").as_bytes())
                .map(|(_, v)| v.into_owned())
                .next()
        })
        .unwrap_or_default()
        .map_or_else(
            || super::redirect::FALLBACK.to_owned(),
            |n| super::redirect::same_origin_path(&n),
        );
    let mut r = with_type(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    if let Ok(v) = HeaderValue::from_str(&next) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "certgate_renewal_later=1; Max-Age=86400; Path=/; Secure; HttpOnly; SameSite=Lax",
        ),
    );
    r
}

/// Renders a page with a fresh CSRF token (also set as a cookie). `notice` is the renewal
/// notice (login ID, expiry, where to renew), when renewal is due.
pub fn render(
    page: Page,
    lang: Lang,
    notice: Option<(String, i64, &'static str)>,
    login: &str,
) -> WebResponse {
    let (token, cookie) = csrf::new_token(csrf::Surface::Customer);
    let data = PageData {
        csrf: &token,
        login,
        notice: notice.as_ref().map(|(login, not_after, href)| Notice {
            login,
            not_after: *not_after,
            renew_href: href,
        }),
    };
    let html = locale::pages::page(&locale::current(), lang, page, &data);
    html_answer(html, lang, &cookie)
}

/// A rendered page with its security headers (CSP, no sniffing, no referrer, not stored)
/// and the cookie holding its CSRF token; a template failure is logged and answered 500.
pub fn html_answer(
    html: Result<String, minijinja::Error>,
    lang: Lang,
    cookie: &str,
) -> WebResponse {
    let html = match html {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "a page template failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let mut r = with_type(
        StatusCode::OK,
        "text/html; charset=utf-8",
        Bytes::from(html),
    );
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.as_str()),
    );
    if let Ok(v) = HeaderValue::from_str(cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_fill_every_placeholder_and_escape() {
        for page in Page::ALL {
            for lang in Lang::ALL {
                let r = render(page, lang, None, "<b>x</b>");
                let body = std::str::from_utf8(r.body()).unwrap();
                assert!(!body.contains("{{"), "{page:?} {lang:?}");
                assert!(!body.contains("<b>x</b>"));
                assert!(r.headers().get("set-cookie").is_some());
            }
        }
        assert_eq!(
            asset("/certgate/assets/../../etc/passwd").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(asset("/certgate/assets/style.css").status(), StatusCode::OK);
        assert_eq!(asset("/certgate/assets/brand.css").status(), StatusCode::OK);
        // No logo configured: nothing to serve.
        assert_eq!(
            asset("/certgate/assets/logo").status(),
            StatusCode::NOT_FOUND
        );
    }

    fn later(query: &str) -> Option<String> {
        let req = WebRequest {
            method: http::Method::GET,
            path: "/certgate/renew-later".into(),
            query: Some(query.into()),
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
            peer: None,
            remote: "127.0.0.1".into(),
            origin: "https://bank.example".into(),
        };
        let r = renew_later(&req);
        assert!(r.headers().get(header::SET_COOKIE).is_some());
        r.headers()
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn renew_later_only_follows_local_paths() {
        assert_eq!(
            later("next=%2Fib%2Fhome%3Fa%3D1").as_deref(),
            Some("/ib/home?a=1")
        );
        for hostile in [
            "next=https%3A%2F%2Fevil.example",
            "next=%2F%2Fevil.example",
            "next=%2F%5Cevil.example",
            "next=%2F%09%2Fevil.example",
            "next=%2F%0D%0A%2Fevil.example",
            "next=%5C%5Cevil.example",
            "next=%20%2F%2Fevil.example",
            "next=javascript%3Aalert(1)",
            "x=1",
        ] {
            assert_eq!(later(hostile).as_deref(), Some("/certgate/"), "{hostile}");
        }
    }
}
