//! The optional "renew now / later" page shown before a route's app to a customer whose
//! certificate is due for renewal (seed: the login screen tells the customer from 30 days
//! before expiry). Shown at most once a day: "later" sets a cookie for 24 hours, through
//! certgate's own `/certgate/renew-later` path.

use http::{HeaderMap, Method, Response, StatusCode, header};

use crate::http_common::body::{self, ProxyBody};
use crate::identity::PeerIdentity;
use crate::locale::pages::Notice;
use crate::locale::{self, Lang};

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

/// The page for a request to `path_and_query`, in `lang` (Japanese when the request names
/// none); "renew now" goes to `renew_url`.
pub fn page(
    id: &PeerIdentity,
    path_and_query: &str,
    renew_url: &str,
    lang: Option<Lang>,
) -> Response<ProxyBody> {
    let lang = lang.unwrap_or(Lang::Ja);
    let later = format!(
        "/certgate/renew-later?next={}",
        percent_encode(path_and_query)
    );
    let notice = Notice {
        login: id.login(),
        not_after: id.not_after(),
        renew_href: renew_url,
    };
    let (html, ctype) = match locale::pages::interstitial(&locale::current(), lang, &notice, &later)
    {
        Ok(html) => (html, "text/html; charset=utf-8"),
        Err(e) => {
            tracing::error!(error = %e, "the renewal interstitial template failed");
            (
                format!("renew: {renew_url}\nlater: {later}\n"),
                "text/plain; charset=utf-8",
            )
        }
    };
    let mut r = Response::new(body::full(html));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::CONTENT_LANGUAGE,
        header::HeaderValue::from_static(lang.as_str()),
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
