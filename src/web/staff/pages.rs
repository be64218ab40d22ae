//! The staff console's page and its assets on the staff listener: `/staff/` (one page whose
//! script calls the JSON API), `/staff/assets/staff.{js,css}`, and the frame's shared sheets
//! and logo under `/certgate/assets/` (the staff listener serves no customer page, but the
//! frame links them there). Only the files named here are served.

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};

use crate::identity::StaffCaller;
use crate::locale;

use super::super::csrf;
use super::super::pages::{asset, html_answer, lang_of};
use super::super::request::WebRequest;
use super::super::respond::{WebResponse, text, with_type};

/// Where the page lives.
pub const HOME: &str = "/staff/";

const SCRIPT: &str = include_str!("../assets/staff.js");
const STYLE: &str = include_str!("../assets/staff.css");

/// Where a staff member renews the certificate they are using.
pub const RENEW_PAGE: &str = "/staff/renew";

/// Answers a request of `caller` for a path outside the API.
pub fn serve(req: &WebRequest, caller: &StaffCaller) -> WebResponse {
    if req.method != Method::GET && req.method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    match req.path.as_str() {
        "/staff" | "/" => redirect(HOME),
        HOME => page(req),
        RENEW_PAGE => {
            let lang = lang_of(req);
            let (token, cookie) = csrf::new_token(csrf::Surface::Staff);
            let html = locale::pages::staff_renew(
                &locale::current(),
                lang,
                &token,
                &caller.name,
                super::api::RENEW_PATH,
            );
            html_answer(html, lang, &cookie)
        }
        "/staff/assets/staff.js" => own_asset(SCRIPT, "text/javascript; charset=utf-8"),
        "/staff/assets/staff.css" => own_asset(STYLE, "text/css; charset=utf-8"),
        p if p.starts_with("/certgate/assets/") => asset(p),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Where a staff member obtains a first certificate, on the obtain listener.
pub const OBTAIN_PAGE: &str = "/staff/obtain";

/// Answers a GET on the obtain listener: the obtain page and the files it loads.
pub fn serve_obtain(req: &WebRequest) -> WebResponse {
    if req.method != Method::GET && req.method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    match req.path.as_str() {
        "/" | "/staff" | "/staff/" => redirect(OBTAIN_PAGE),
        OBTAIN_PAGE => {
            let lang = lang_of(req);
            let (token, cookie) = csrf::new_token(csrf::Surface::Staff);
            let html = locale::pages::staff_obtain(
                &locale::current(),
                lang,
                &token,
                super::api::OBTAIN_PATH,
            );
            html_answer(html, lang, &cookie)
        }
        p if p.starts_with("/certgate/assets/") => asset(p),
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The console in the request's language, with a fresh CSRF token (cookie and page).
fn page(req: &WebRequest) -> WebResponse {
    let lang = lang_of(req);
    let (token, cookie) = csrf::new_token(csrf::Surface::Staff);
    let html = locale::pages::staff_console(&locale::current(), lang, &token);
    html_answer(html, lang, &cookie)
}

fn own_asset(body: &'static str, ctype: &'static str) -> WebResponse {
    let mut r = with_type(StatusCode::OK, ctype, Bytes::from_static(body.as_bytes()));
    let h = r.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn redirect(to: &'static str) -> WebResponse {
    let mut r = with_type(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        Bytes::new(),
    );
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locale::Lang;
    use crate::web::pages::CSP;

    fn get(path: &str, query: Option<&str>) -> WebResponse {
        let req = WebRequest {
            method: Method::GET,
            path: path.into(),
            query: query.map(str::to_owned),
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
            peer: None,
            remote: "127.0.0.1".into(),
            origin: "https://staff.bank.example".into(),
        };
        serve(&req, &caller())
    }

    fn caller() -> StaffCaller {
        StaffCaller {
            name: "sato".into(),
            role: crate::store::StaffRole::Operator,
            serial: "0a".into(),
        }
    }

    fn body(r: &WebResponse) -> &str {
        std::str::from_utf8(r.body()).unwrap()
    }

    #[test]
    fn the_console_page_in_both_languages_with_its_token_and_policy() {
        for (query, lang, title, other) in [
            (None, Lang::Ja, "<title>行員コンソール | ", "Staff console"),
            (
                Some("lang=en"),
                Lang::En,
                "<title>Staff console | ",
                "行員コンソール",
            ),
        ] {
            let r = get(HOME, query);
            assert_eq!(r.status(), StatusCode::OK);
            let html = body(&r);
            assert!(html.contains(&format!("<html lang=\"{}\">", lang.as_str())));
            assert!(html.contains(title), "{html}");
            assert!(
                !html.contains(other),
                "{lang:?} page shows the other language"
            );
            let h = r.headers();
            assert_eq!(h["content-security-policy"], CSP);
            assert_eq!(h[header::CONTENT_LANGUAGE], lang.as_str());
            // The double-submit token: the cookie and the page carry the same value.
            let cookie = h[header::SET_COOKIE].to_str().unwrap();
            let token = cookie
                .strip_prefix("__Host-certgate_staff_csrf=")
                .and_then(|c| c.split(';').next())
                .unwrap();
            assert_eq!(token.len(), 48);
            assert!(html.contains(&format!(
                "<meta name=\"certgate-csrf\" content=\"{token}\">"
            )));
            // No inline script: the script's texts are an attribute of a template element.
            assert!(html.contains("<script src=\"/staff/assets/staff.js\" defer></script>"));
            assert_eq!(html.matches("<script").count(), 1, "{html}");
            let json = html
                .split("id=\"staff-texts\" data-json=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap()
                .replace("&quot;", "\"")
                .replace("&#x27;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#x2f;", "/")
                .replace("&amp;", "&");
            let texts: serde_json::Value =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(texts["lang"], lang.as_str());
            assert_eq!(texts["tz"], "Asia/Tokyo");
            for code in [
                "role_forbidden",
                "own_request",
                "request_finished",
                "cross_site",
            ] {
                assert!(texts["e"][code].is_string(), "{code}");
            }
            assert!(texts["t"]["pending"].is_string());
        }
    }

    #[test]
    fn only_the_named_files_are_served() {
        let js = get("/staff/assets/staff.js", None);
        assert_eq!(js.status(), StatusCode::OK);
        assert_eq!(
            js.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            get("/staff/assets/staff.css", None).status(),
            StatusCode::OK
        );
        assert_eq!(
            get("/certgate/assets/style.css", None).status(),
            StatusCode::OK
        );
        for path in [
            "/staff/assets/../../etc/passwd",
            "/staff/assets/admin.js",
            "/staff/other",
            "/certgate/admin",
            "/ib/",
        ] {
            assert_eq!(get(path, None).status(), StatusCode::NOT_FOUND, "{path}");
        }
        assert_eq!(get("/staff", None).headers()[header::LOCATION], HOME);
        let mut post = WebRequest {
            method: Method::POST,
            path: HOME.into(),
            query: None,
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
            peer: None,
            remote: "127.0.0.1".into(),
            origin: "https://staff.bank.example".into(),
        };
        assert_eq!(
            serve(&post, &caller()).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        post.method = Method::DELETE;
        assert_eq!(
            serve(&post, &caller()).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
