//! `X-Forwarded-Client-Cert` read the way its consumers read what Envoy sends, written
//! without certgate's code: elements at `,`, pairs at `;`, key and value at the first `=`,
//! all outside double quotes (a `\` inside quotes escapes the next character); `Cert` and
//! `Chain` percent-decoded, then read as PEM. Shared by the XFCC unit test
//! (`src/identity/xfcc.rs`) and the gateway tests.

use std::collections::HashMap;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// One element's keys and their values, in order (`URI` and `DNS` may repeat).
pub type Element = HashMap<String, Vec<String>>;

/// Splits at `sep` outside double quotes.
pub fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// A value without its double quotes and escapes.
pub fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap() } else { c });
    }
    out
}

/// The header's elements.
pub fn consume(header: &str) -> Vec<Element> {
    split_unquoted(header, ',')
        .into_iter()
        .map(|element| {
            let mut pairs = Element::new();
            for pair in split_unquoted(element, ';') {
                let (k, v) = pair.split_once('=').unwrap();
                pairs.entry(k.to_owned()).or_default().push(unquote(v));
            }
            pairs
        })
        .collect()
}

/// `%XX` to bytes; every other character as it is (a `+` stays a `+`).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The certificates of a `Cert` or `Chain` value.
pub fn certificates(value: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(&percent_decode(value))
        .collect::<Result<_, _>>()
        .unwrap()
}
