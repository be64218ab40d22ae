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

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The header in both directions.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// Longest ID accepted from a client.
pub const MAX_LEN: usize = 64;

/// IDs made here: a random prefix per process (so instances never collide) and a counter,
/// as `{16 hex digits}-{counter in hex}`. Written by hand: this runs for every request, and
/// `format!` cost about a thousand instructions a request more.
fn made() -> HeaderValue {
    static PREFIX: OnceLock<[u8; 16]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness the process id keeps instances apart well enough.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            bytes[..4].copy_from_slice(&std::process::id().to_be_bytes());
        }
        let mut out = [0u8; 16];
        for (i, b) in bytes.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        out
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 33];
    buf[..16].copy_from_slice(prefix);
    buf[16] = b'-';
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
    for i in 0..digits {
        let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
        buf[17 + i] = HEX[nibble as usize];
    }
    HeaderValue::from_bytes(&buf[..17 + digits]).unwrap_or(HeaderValue::from_static("unnumbered"))
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
    // One lookup of the name, whatever the client sent.
    match headers.entry(HEADER) {
        Entry::Occupied(mut sent) => {
            let mut values = sent.iter();
            let kept = match (values.next(), values.next()) {
                (Some(v), None) if trust_client && acceptable(v) => Some(v.clone()),
                _ => None,
            };
            let id = kept.unwrap_or_else(made);
            // Replaces every value the client sent.
            sent.insert(id.clone());
            id
        }
        Entry::Vacant(slot) => slot.insert(made()).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_unique_and_acceptable() {
        let (a, b) = (made(), made());
        assert_ne!(a, b);
        assert!(acceptable(&a) && acceptable(&b), "{a:?}");
        let (prefix, n) = a.to_str().unwrap().split_once('-').unwrap();
        assert_eq!(prefix.len(), 16);
        let (_, m) = b.to_str().unwrap().split_once('-').unwrap();
        let (n, m) = (
            u64::from_str_radix(n, 16).unwrap(),
            u64::from_str_radix(m, 16).unwrap(),
        );
        assert!(m > n, "{a:?} then {b:?}");
        assert!(!n.to_string().is_empty() && !a.to_str().unwrap().ends_with('-'));
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
