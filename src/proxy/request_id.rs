//! The request ID: one per request, in every log line of the request (a tracing span), sent
//! to the app as `X-Request-Id` and back to the client, so one request can be followed from
//! the customer's complaint through the gateway to the app's log.
//!
//! A client's own `X-Request-Id` is replaced unless its listener trusts it
//! (`trust_request_id`, for a front end that makes IDs of its own), and even then only a
//! short plain token is kept: an ID goes into log lines, so it must not carry anything a
//! log reader could take for structure.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header in both directions.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest ID accepted from a client.
pub const MAX_LEN: usize = 64;

/// IDs made here: a random prefix per process (so instances never collide) and a counter.
fn made() -> HeaderValue {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness the process id keeps instances apart well enough.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            bytes[..4].copy_from_slice(&std::process::id().to_be_bytes());
        }
        hex::encode(bytes)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix}-{n:x}"))
        .unwrap_or(HeaderValue::from_static("unnumbered"))
}

/// Whether `v` may be kept as an ID: 1 to [`MAX_LEN`] characters of letters, digits and
/// `-._:`.
pub fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    (1..=MAX_LEN).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':'))
}

/// The request's ID: the client's single acceptable one when `trust_client`, else a new
/// one. Leaves exactly that one in `headers`, for the app.
pub fn assign(headers: &mut HeaderMap, trust_client: bool) -> HeaderValue {
    let mut sent = headers.get_all(&HEADER).iter();
    let kept = match (sent.next(), sent.next()) {
        (Some(v), None) if trust_client && acceptable(v) => Some(v.clone()),
        _ => None,
    };
    let id = kept.unwrap_or_else(made);
    headers.insert(HEADER, id.clone());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_unique_and_acceptable() {
        let (a, b) = (made(), made());
        assert_ne!(a, b);
        assert!(acceptable(&a) && acceptable(&b), "{a:?}");
    }

    #[test]
    fn a_client_id_is_kept_only_when_trusted_single_and_plain() {
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(HEADER, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let mut h = with(&["abc-123"]);
        assert_eq!(assign(&mut h, true), "abc-123");
        assert_eq!(h.get_all(&HEADER).iter().count(), 1);
        for (values, trusted) in [
            (&["abc-123"][..], false),
            (&["abc 123"][..], true),
            (&["a\"b"][..], true),
            (&["{\"x\":1}"][..], true),
            (&["a", "b"][..], true),
            (&[""][..], true),
        ] {
            let mut h = with(values);
            let id = assign(&mut h, trusted);
            assert!(!values.contains(&id.to_str().unwrap()), "{values:?} kept");
            assert_eq!(h.get_all(&HEADER).iter().collect::<Vec<_>>(), [&id]);
        }
        let long = "a".repeat(MAX_LEN + 1);
        assert_ne!(assign(&mut with(&[&long]), true), long.as_str());
        let max = "a".repeat(MAX_LEN);
        assert_eq!(assign(&mut with(&[&max]), true), max.as_str());
    }
}
