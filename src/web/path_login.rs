//! The login ID in an API path (`/api/v1/users/{login}/...`), as the administrator's page
//! sends it: `encodeURIComponent` writes `@` as `%40`, and the gateway's canonical path
//! keeps escapes of reserved characters as they are (only unreserved ones are decoded
//! before routing). So the segment is decoded here, and only to the characters a login ID
//! may hold; anything else is refused rather than passed on half-decoded.

/// The login ID spelt by a path segment, or `None` when the segment holds a malformed
/// escape or a character no login ID has.
pub fn decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let c = if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            i += 3;
            (hi << 4) | lo
        } else {
            i += 1;
            b
        };
        if !(c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'@')) {
            return None;
        }
        out.push(char::from(c));
    }
    (!out.is_empty()).then_some(out)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn at_signs_arrive_escaped_or_plain() {
        assert_eq!(
            decode("alice%40corp.example").as_deref(),
            Some("alice@corp.example")
        );
        assert_eq!(decode("alice%40Corp").as_deref(), Some("alice@Corp"));
        assert_eq!(decode("alice@corp").as_deref(), Some("alice@corp"));
        assert_eq!(decode("bob").as_deref(), Some("bob"));
        assert_eq!(decode("a%2db").as_deref(), Some("a-b"));
    }

    #[test]
    fn other_escapes_and_characters_are_refused() {
        for bad in [
            "", "a%2Fb", "a%2fb", "a%00", "a%", "a%4", "a%g0", "a%+4", "a b", "a%20b", "a%25",
            "a;b", "%C3%A9", "a%3F",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
