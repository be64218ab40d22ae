//! Login-ID binding: on a route that asks for it, a POST to the login form's path must be an
//! urlencoded form whose login field (in the body and in the query, every occurrence) is
//! the certificate's login ID. The form is read up to a bound, then forwarded unchanged.

use bytes::Bytes;
use http::{Method, Request, header};

use super::refusal::Problem;
use crate::config::LoginBindingConfig;
use crate::http_common::body::{ProxyBody, collect_limited, full};

/// Checks `req` against `binding` for the certificate's `login`; returns the request to
/// forward (with its body buffered when it was read).
pub async fn check(
    binding: &LoginBindingConfig,
    login: &str,
    req: Request<ProxyBody>,
) -> Result<Request<ProxyBody>, Problem> {
    if req.method() != Method::POST || req.uri().path() != binding.path {
        return Ok(req);
    }
    let urlencoded = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !urlencoded {
        return Err(Problem::LoginFormUnreadable);
    }
    let query_ok = req
        .uri()
        .query()
        .is_none_or(|q| names_only(q, &binding.field, login));
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match collect_limited(body, binding.max_form_bytes).await {
        Ok(Some(b)) => b,
        Ok(None) => return Err(Problem::BodyTooLarge),
        Err(_) => return Err(Problem::LoginFormUnreadable),
    };
    if !query_ok || !names_only(&bytes, &binding.field, login) {
        return Err(Problem::LoginMismatch);
    }
    Ok(Request::from_parts(parts, full(bytes)))
}

/// True when every `field` in the urlencoded `form` equals `login` (or there is none).
fn names_only(form: impl AsRef<[u8]>, field: &str, login: &str) -> bool {
    form_urlencoded::parse(form.as_ref())
        .filter(|(k, _)| k == field)
        .all(|(_, v)| v == login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_must_match() {
        assert!(names_only("loginId=alice&pw=x", "loginId", "alice"));
        assert!(names_only("pw=x", "loginId", "alice"));
        assert!(!names_only("loginId=bob", "loginId", "alice"));
        assert!(!names_only("loginId=alice&loginId=bob", "loginId", "alice"));
        assert!(names_only("loginId=al%69ce", "loginId", "alice"));
    }
}
