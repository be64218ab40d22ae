//! Cross-site request refusal. A browser sends the client certificate with any site's
//! request, so a state-changing call must prove it came from certgate's own pages:
//! - `Sec-Fetch-Site`, when sent, must be `same-origin` or `none`;
//! - `Origin`, when sent, must be this gateway's origin;
//! - the JSON API needs `Content-Type: application/json` (a cross-site form cannot send it
//!   without a CORS preflight, which certgate never grants);
//! - page forms also carry a token that must equal the `__Host-certgate_csrf` cookie (double
//!   submit). The `__Host-` prefix makes browsers refuse that cookie from any other host name
//!   (a sibling subdomain cannot plant a token of its choosing) and from plain HTTP.
//!
//! The staff console's pages have a cookie of their own: cookies are kept per host name, not
//! per port, so a console on the customers' host name would otherwise overwrite the token of
//! a customer page open beside it, and the other way round.

use super::request::WebRequest;

/// The cookie holding a customer page's CSRF token.
pub const COOKIE: &str = "__Host-certgate_csrf";
/// The cookie holding a staff console page's CSRF token.
pub const STAFF_COOKIE: &str = "__Host-certgate_staff_csrf";

/// Whose pages a token belongs to: each has its own cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The login pages and the customers' JSON API.
    Customer,
    /// The staff console and the staff obtain listener.
    Staff,
}

impl Surface {
    /// The name of this surface's token cookie.
    pub const fn cookie(self) -> &'static str {
        match self {
            Self::Customer => COOKIE,
            Self::Staff => STAFF_COOKIE,
        }
    }
}
/// The header a page's script echoes the token in. Not an `X-Certgate-*` name: the gateway
/// strips that whole namespace from incoming requests.
pub const HEADER: &str = "x-csrf-token";

/// Why a request was refused as cross-site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    #[error("cross-site request refused (Sec-Fetch-Site)")]
    FetchSite,
    #[error("cross-site request refused (Origin does not match)")]
    Origin,
    #[error("the request must have Content-Type: application/json")]
    ContentType,
    #[error("the page's security token is missing or does not match; reload the page")]
    Token,
}

/// Checks Sec-Fetch-Site, Origin and the JSON content type.
pub fn check_api(req: &WebRequest) -> Result<(), CrossSite> {
    if let Some(site) = req.header("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return Err(CrossSite::FetchSite);
    }
    if let Some(origin) = req.header("origin")
        && !origin.eq_ignore_ascii_case(&req.origin)
    {
        return Err(CrossSite::Origin);
    }
    let json = req
        .header("content-type")
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(CrossSite::ContentType);
    }
    Ok(())
}

/// [`check_api`] plus the double-submit token of `surface`'s pages.
pub fn check_page(req: &WebRequest, surface: Surface) -> Result<(), CrossSite> {
    check_api(req)?;
    let sent = req.header(HEADER).ok_or(CrossSite::Token)?;
    let cookie = cookie_value(req, surface.cookie()).ok_or(CrossSite::Token)?;
    if sent.len() < 32 || !constant_time_eq(sent.as_bytes(), cookie.as_bytes()) {
        return Err(CrossSite::Token);
    }
    Ok(())
}

/// A new token for `surface`'s pages and the `Set-Cookie` value that stores it.
pub fn new_token(surface: Surface) -> (String, String) {
    let mut raw = [0u8; 24];
    // A failed RNG leaves zeros: the token then never matches a cookie of another page.
    let _ = aws_lc_rs::rand::fill(&mut raw);
    let token = hex::encode(raw);
    let cookie = format!(
        "{}={token}; Path=/; Secure; HttpOnly; SameSite=Strict",
        surface.cookie()
    );
    (token, cookie)
}

fn cookie_value<'a>(req: &'a WebRequest, name: &str) -> Option<&'a str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> WebRequest {
        let mut h = http::HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        WebRequest {
            method: http::Method::POST,
            path: "/x".into(),
            query: None,
            headers: h,
            body: bytes::Bytes::new(),
            peer: None,
            remote: "127.0.0.1".into(),
            origin: "https://bank.example:8443".into(),
        }
    }

    #[test]
    fn api_rules() {
        assert_eq!(
            check_api(&req(&[("content-type", "application/json")])),
            Ok(())
        );
        assert_eq!(
            check_api(&req(&[(
                "content-type",
                "application/x-www-form-urlencoded"
            )])),
            Err(CrossSite::ContentType)
        );
        assert_eq!(
            check_api(&req(&[
                ("content-type", "application/json"),
                ("origin", "https://evil.example")
            ])),
            Err(CrossSite::Origin)
        );
        assert_eq!(
            check_api(&req(&[
                ("content-type", "application/json"),
                ("sec-fetch-site", "cross-site")
            ])),
            Err(CrossSite::FetchSite)
        );
        assert_eq!(
            check_api(&req(&[
                ("content-type", "application/json; charset=utf-8"),
                ("origin", "https://bank.example:8443"),
                ("sec-fetch-site", "same-origin")
            ])),
            Ok(())
        );
    }

    #[test]
    fn page_token_must_match_cookie() {
        let (token, _) = new_token(Surface::Customer);
        let ok = req(&[
            ("content-type", "application/json"),
            ("x-csrf-token", &token),
            ("cookie", &format!("a=b; {COOKIE}={token}")),
        ]);
        assert_eq!(check_page(&ok, Surface::Customer), Ok(()));
        let (other, _) = new_token(Surface::Customer);
        let bad = req(&[
            ("content-type", "application/json"),
            ("x-csrf-token", &other),
            ("cookie", &format!("{COOKIE}={token}")),
        ]);
        assert_eq!(check_page(&bad, Surface::Customer), Err(CrossSite::Token));
        let missing = req(&[
            ("content-type", "application/json"),
            ("x-csrf-token", &token),
        ]);
        assert_eq!(
            check_page(&missing, Surface::Customer),
            Err(CrossSite::Token)
        );
        // The same token under the unprefixed name (which any sibling host could plant) is
        // not the page's cookie.
        let unprefixed = req(&[
            ("content-type", "application/json"),
            ("x-csrf-token", &token),
            ("cookie", &format!("certgate_csrf={token}")),
        ]);
        assert_eq!(
            check_page(&unprefixed, Surface::Customer),
            Err(CrossSite::Token)
        );
        // A customer page's cookie is not the staff console's, nor the other way round.
        assert_eq!(check_page(&ok, Surface::Staff), Err(CrossSite::Token));
        let (staff_token, staff_cookie) = new_token(Surface::Staff);
        let staff = req(&[
            ("content-type", "application/json"),
            ("x-csrf-token", &staff_token),
            ("cookie", staff_cookie.split(';').next().unwrap()),
        ]);
        assert_eq!(check_page(&staff, Surface::Staff), Ok(()));
        assert_eq!(check_page(&staff, Surface::Customer), Err(CrossSite::Token));
    }

    #[test]
    fn the_cookie_meets_the_host_prefix_rules() {
        // Browsers store a `__Host-` cookie only with Secure, Path=/ and no Domain.
        for (surface, name) in [
            (Surface::Customer, "__Host-certgate_csrf"),
            (Surface::Staff, "__Host-certgate_staff_csrf"),
        ] {
            let (token, cookie) = new_token(surface);
            let mut parts = cookie.split("; ");
            assert_eq!(parts.next(), Some(format!("{name}={token}").as_str()));
            let attrs: Vec<&str> = parts.collect();
            assert!(attrs.contains(&"Secure"), "{cookie}");
            assert!(attrs.contains(&"Path=/"), "{cookie}");
            assert!(
                !attrs
                    .iter()
                    .any(|a| a.to_ascii_lowercase().starts_with("domain")),
                "{cookie}"
            );
        }
    }
}
