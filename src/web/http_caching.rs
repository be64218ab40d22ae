//! How signed revocation data travels through HTTP caches. A CRL or an OCSP answer that any
//! relying party may reuse says how long a cache may keep it (never past the moment its
//! status could change, and at most [`HTTP_MAX_AGE`]); an OCSP answer also carries the
//! validators of RFC 5019 §6.2 (`ETag`, `Last-Modified`, `Expires`), and a conditional GET
//! whose tag matches is answered 304 without the body. An OCSP answer that echoes a
//! client's nonce was made for that request alone: `no-store`, no validators.

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use super::respond::{WebResponse, with_type};
use crate::clock::UnixTime;

/// Longest a relying party's HTTP cache is told to keep an answer: a revocation reaches
/// those caches within this time.
pub const HTTP_MAX_AGE: i64 = 300;

/// `Cache-Control` for something valid `left` more seconds: never past that, nor past
/// [`HTTP_MAX_AGE`].
pub fn max_age(prefix: &str, left: i64) -> HeaderValue {
    let secs = left.clamp(0, HTTP_MAX_AGE);
    HeaderValue::from_str(&format!("{prefix}max-age={secs}"))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

/// When a reusable OCSP answer was signed, and how long it stays right.
#[derive(Debug, Clone, Copy)]
pub struct Reusable {
    /// Its producedAt (thisUpdate): `Last-Modified`.
    pub signed_at: UnixTime,
    pub now: UnixTime,
    /// Seconds from `now` until its status could change or it reaches its nextUpdate.
    pub left: i64,
}

/// A signed OCSP answer. `reusable` is `None` for an answer made for one request (a
/// nonce); `if_none_match` is the request's header on a GET.
pub fn ocsp_answer(
    der: Bytes,
    reusable: Option<Reusable>,
    if_none_match: Option<&str>,
) -> WebResponse {
    let Some(r) = reusable else {
        // `with_type` says `no-store`.
        return with_type(StatusCode::OK, "application/ocsp-response", der);
    };
    let tag = entity_tag(&der);
    let secs = r.left.clamp(0, HTTP_MAX_AGE);
    let not_modified = if_none_match.is_some_and(|v| matches_tag(v, &tag));
    let mut resp = if not_modified {
        let mut resp = with_type(
            StatusCode::NOT_MODIFIED,
            "application/ocsp-response",
            Bytes::new(),
        );
        resp.headers_mut().remove(header::CONTENT_TYPE);
        resp
    } else {
        with_type(StatusCode::OK, "application/ocsp-response", der)
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "max-age={secs}, public, no-transform, must-revalidate"
    )) {
        h.insert(header::CACHE_CONTROL, v);
    }
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    for (name, at) in [
        (header::LAST_MODIFIED, r.signed_at),
        (header::EXPIRES, r.now + secs),
    ] {
        if let Ok(v) = HeaderValue::from_str(&http_date(at)) {
            h.insert(name, v);
        }
    }
    resp
}

/// A strong tag of the answer's bytes: equal answers, equal tags, across instances.
fn entity_tag(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    format!("\"{}\"", hex::encode(&digest.as_ref()[..16]))
}

/// `If-None-Match`: `*`, or a list of tags, weak ones compared by their opaque part
/// (RFC 9110 §13.1.2 uses the weak comparison for it).
fn matches_tag(header_value: &str, tag: &str) -> bool {
    header_value
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); times before 1970 as 1970.
fn http_date(t: UnixTime) -> String {
    let secs = u64::try_from(t).unwrap_or(0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reusable() -> Reusable {
        Reusable {
            signed_at: 1_796_000_000,
            now: 1_796_000_060,
            left: 1_000,
        }
    }

    #[test]
    fn a_reusable_answer_carries_its_validators() {
        let r = ocsp_answer(Bytes::from_static(b"der"), Some(reusable()), None);
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(
            h[header::CACHE_CONTROL],
            "max-age=300, public, no-transform, must-revalidate"
        );
        assert_eq!(h[header::LAST_MODIFIED], "Mon, 30 Nov 2026 00:53:20 GMT");
        // Expires agrees with max-age, not with the longer nextUpdate.
        assert_eq!(h[header::EXPIRES], "Mon, 30 Nov 2026 00:59:20 GMT");
        let tag = h[header::ETAG].to_str().unwrap();
        assert!(
            tag.starts_with('"') && tag.ends_with('"') && tag.len() == 34,
            "{tag}"
        );
        assert_eq!(r.body().as_ref(), b"der");
        // Another answer, another tag.
        let other = ocsp_answer(Bytes::from_static(b"der2"), Some(reusable()), None);
        assert_ne!(other.headers()[header::ETAG], tag);
    }

    #[test]
    fn a_matching_tag_gets_304_without_the_body() {
        let tag = ocsp_answer(Bytes::from_static(b"der"), Some(reusable()), None).headers()
            [header::ETAG]
            .to_str()
            .unwrap()
            .to_owned();
        for sent in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"x\", {tag}"),
            "*".to_owned(),
        ] {
            let r = ocsp_answer(Bytes::from_static(b"der"), Some(reusable()), Some(&sent));
            assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{sent}");
            assert!(r.body().is_empty());
            assert_eq!(r.headers()[header::ETAG], tag.as_str());
            assert!(r.headers().get(header::CONTENT_TYPE).is_none());
        }
        let r = ocsp_answer(
            Bytes::from_static(b"der"),
            Some(reusable()),
            Some("\"other\""),
        );
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn an_answer_for_one_request_is_never_stored() {
        let r = ocsp_answer(Bytes::from_static(b"der"), None, Some("*"));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(r.headers().get(header::ETAG).is_none());
        assert!(r.headers().get(header::LAST_MODIFIED).is_none());
    }

    #[test]
    fn dates_read_back() {
        let s = http_date(1_796_000_000);
        assert_eq!(
            httpdate::parse_http_date(&s).ok(),
            Some(UNIX_EPOCH + Duration::from_secs(1_796_000_000))
        );
        assert_eq!(http_date(-5), "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
