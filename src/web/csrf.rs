//! Cross-site request refusal. A browser sends the client certificate with any site's
//! request, so a state-changing call must prove it came from certgate's own pages:
//! - `Sec-Fetch-Site`, when sent, must be `same-origin` or `none`;
//! - `Origin`, when sent, must be this gateway's origin;
//! - the JSON API needs `Content-Type: application/json` (a cross-site form cannot send it
//!   without a CORS preflight, which certgate never grants);
//! - page forms also carry a token that must equal the `__Host-certgate_csrf` cookie (double
//!   submit). The `__Host-` prefix makes browsers refuse that cookie from any other host name
//!   (a sibling subdomain cannot plant a token of its choosing) and from plain HTTP.

use super::request::WebRequest;

/// The cookie holding the page's CSRF token.
pub const COOKIE: &str = "__Host-certgate_csrf";
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

/// [`check_api`] plus the double-submit token of certgate's pages.
pub fn check_page(req: &WebRequest) -> Result<(), CrossSite> {
    check_api(req)?;
    let sent = req.header(HEADER).ok_or(CrossSite::Token)?;
    let cookie = cookie_value(req, COOKIE).ok_or(CrossSite::Token)?;
    if sent.len() < 32 || !constant_time_eq(sent.as_bytes(), cookie.as_bytes()) {
        return Err(CrossSite::Token);
    }
    Ok(())
}

/// A new token and the `Set-Cookie` value that stores it.
pub fn new_token() -> (String, String) {
    let mut raw = [0u8; 24];
    // A failed RNG leaves zeros: the token then never matches a cookie of another page.
    let _ = aws_lc_rs::rand::fill(&mut raw);
    let token = hex::encode(raw);
    let cookie = format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict");
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
        let (token, _) = new_token();
        let ok = req(&[
            ("content-type", "application/json"),
            ("x-csrf-token", &token),
            ("cookie", &format!("a=b; {COOKIE}={token}")),
        ]);
        assert_eq!(check_page(&ok), Ok(()));
        let (other, _) = new_token();
        let bad = req(&[
            ("content-type", "application/json"),
            ("x-csrf-token", &other),
            ("cookie", &format!("{COOKIE}={token}")),
        ]);
        assert_eq!(check_page(&bad), Err(CrossSite::Token));
        let missing = req(&[
            ("content-type", "application/json"),
            ("x-csrf-token", &token),
        ]);
        assert_eq!(check_page(&missing), Err(CrossSite::Token));
        // The same token under the unprefixed name (which any sibling host could plant) is
        // not the page's cookie.
        let unprefixed = req(&[
            ("content-type", "application/json"),
            ("x-csrf-token", &token),
            ("cookie", &format!("certgate_csrf={token}")),
        ]);
        assert_eq!(check_page(&unprefixed), Err(CrossSite::Token));
    }

    #[test]
    fn the_cookie_meets_the_host_prefix_rules() {
        // Browsers store a `__Host-` cookie only with Secure, Path=/ and no Domain.
        let (token, cookie) = new_token();
        let mut parts = cookie.split("; ");
        assert_eq!(
            parts.next(),
            Some(format!("__Host-certgate_csrf={token}").as_str())
        );
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
