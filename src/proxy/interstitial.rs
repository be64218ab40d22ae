//! The optional "renew now / later" page shown before a route's app to a customer whose
//! certificate is due for renewal (seed: the login screen tells the customer from 30 days
//! before expiry). Shown at most once a day: "later" sets a cookie for 24 hours, through
//! certgate's own `/certgate/renew-later` path.

use http::{HeaderMap, Method, Response, StatusCode, header};

use crate::http_common::body::{self, ProxyBody};
use crate::identity::PeerIdentity;

/// The cookie that says "asked today, the customer chose later".
pub const LATER_COOKIE: &str = "certgate_renewal_later";

/// Whether to show the page instead of passing the request on.
pub fn applies(method: &Method, wants_html: bool, headers: &HeaderMap, id: &PeerIdentity) -> bool {
    id.renewal_due && method == Method::GET && wants_html && !has_later_cookie(headers)
}

fn has_later_cookie(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|kv| {
            kv.trim()
                .split_once('=')
                .is_some_and(|(k, _)| k == LATER_COOKIE)
        })
}

/// The page, in Japanese and English, for a request to `path_and_query`; "renew now" goes to
/// `renew_url`.
pub fn page(id: &PeerIdentity, path_and_query: &str, renew_url: &str) -> Response<ProxyBody> {
    let renew_url = crate::http_common::escape(renew_url);
    let expiry = crate::lifecycle::format_date(id.not_after());
    let next = percent_encode(path_and_query);
    let login = crate::http_common::escape(id.login());
    let html = format!(
        "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>電子証明書の更新 / Certificate renewal</title>\
         <link rel=\"stylesheet\" href=\"/certgate/assets/style.css\"></head>\n<body><main class=\"wrap\">\n\
         <h1>電子証明書の更新のお知らせ</h1>\n\
         <p>ログインID {login} の電子証明書は {expiry} に有効期限が切れます。更新手続を行ってください。</p>\n\
         <div lang=\"en\"><h2>Please renew your certificate</h2>\n\
         <p>The certificate of login ID {login} expires on {expiry}.</p></div>\n\
         <p><a class=\"button\" id=\"renew-now\" href=\"{renew_url}\">今すぐ更新する / Renew now</a>\n\
         <a class=\"button secondary\" id=\"renew-later\" href=\"/certgate/renew-later?next={next}\">後で / Later</a></p>\n\
         </main></body></html>\n"
    );
    let mut r = Response::new(body::full(html));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        "content-security-policy",
        header::HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    r
}

fn percent_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
