//! certgate's own pages (landing, obtain, renew) in Japanese and English, and their static
//! assets. Templates are compiled into the binary; the only assets served are named here,
//! so no request path can reach a file.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::http_common::escape;
use crate::lifecycle::{format_date, rules};
use crate::store::Store;

use super::csrf;
use super::request::WebRequest;
use super::respond::{WebResponse, text, with_type};

/// A page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    /// `?lang=` first, then `Accept-Language`; Japanese by default.
    pub fn of(req: &WebRequest) -> Self {
        match req.query_param("lang") {
            Some("en") => return Self::En,
            Some("ja") => return Self::Ja,
            _ => {}
        }
        let accept = req
            .header("accept-language")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let first = accept.split(',').next().unwrap_or_default().trim();
        if first.starts_with("en") {
            Self::En
        } else {
            Self::Ja
        }
    }
}

struct Template {
    ja: &'static str,
    en: &'static str,
}

const LANDING: Template = Template {
    ja: include_str!("assets/landing.ja.html"),
    en: include_str!("assets/landing.en.html"),
};
const OBTAIN: Template = Template {
    ja: include_str!("assets/obtain.ja.html"),
    en: include_str!("assets/obtain.en.html"),
};
const RENEW: Template = Template {
    ja: include_str!("assets/renew.ja.html"),
    en: include_str!("assets/renew.en.html"),
};

const ADMIN: Template = Template {
    ja: include_str!("assets/admin.ja.html"),
    en: include_str!("assets/admin.en.html"),
};

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/certgate.js");
const ADMIN_SCRIPT: &str = include_str!("assets/admin.js");

/// The content security policy of every page: nothing but certgate's own files.
const CSP: &str = "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `GET /certgate/assets/<name>`
pub fn asset(path: &str) -> WebResponse {
    let (body, ctype) = match path.strip_prefix("/certgate/assets/") {
        Some("style.css") => (STYLE, "text/css; charset=utf-8"),
        Some("certgate.js") => (SCRIPT, "text/javascript; charset=utf-8"),
        Some("admin.js") => (ADMIN_SCRIPT, "text/javascript; charset=utf-8"),
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let mut r = with_type(StatusCode::OK, ctype, Bytes::from_static(body.as_bytes()));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The renewal notice for the presented certificate, when renewal is due (HTML, may be empty).
pub async fn renewal_notice(
    store: &Store,
    req: &WebRequest,
    lang: Lang,
    now: i64,
    window_days: u32,
) -> String {
    let Some(peer) = &req.peer else {
        return String::new();
    };
    let Ok(Some(cert)) = store.certificate(&peer.serial).await else {
        return String::new();
    };
    if !rules::renewal_due(cert.not_after, now, window_days) {
        return String::new();
    }
    let date = format_date(cert.not_after);
    let login = escape(&cert.login);
    let href = if lang == Lang::En {
        "/certgate/renew?lang=en"
    } else {
        "/certgate/renew"
    };
    match lang {
        Lang::Ja => format!(
            "<p><strong>電子証明書の有効期限が近づいています。</strong>ログインID {login} の電子証明書は {date} に有効期限が切れます。</p><p><a class=\"button\" href=\"{href}\">電子証明書を更新する</a></p>"
        ),
        Lang::En => format!(
            "<p><strong>Your certificate expires soon.</strong> The certificate of login ID {login} expires on {date}.</p><p><a class=\"button\" href=\"{href}\">Renew the certificate now</a></p>"
        ),
    }
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

/// Which page.
#[derive(Debug, Clone, Copy)]
pub enum Page {
    Landing,
    Obtain,
    Renew,
    /// The contract administrator's user management.
    Admin,
}

/// Renders a page with a fresh CSRF token (also set as a cookie).
pub fn render(page: Page, lang: Lang, notice: &str, login: &str) -> WebResponse {
    let t = match page {
        Page::Landing => &LANDING,
        Page::Obtain => &OBTAIN,
        Page::Renew => &RENEW,
        Page::Admin => &ADMIN,
    };
    let template = if lang == Lang::En { t.en } else { t.ja };
    let (token, cookie) = csrf::new_token();
    let html = template
        .replace("{{csrf}}", &token)
        .replace("{{login}}", &escape(login))
        .replace("{{lang}}", if lang == Lang::En { "en" } else { "ja" })
        .replace("{{notice}}", notice);
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
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(header::SET_COOKIE, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_fill_every_placeholder_and_escape() {
        for page in [Page::Landing, Page::Obtain, Page::Renew, Page::Admin] {
            for lang in [Lang::Ja, Lang::En] {
                let r = render(page, lang, "", "<b>x</b>");
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
