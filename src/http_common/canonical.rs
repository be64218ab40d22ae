//! The one canonical form of a request path, decided before routing, so that the route
//! chosen, the login binding and the app behind all see the same path.
//!
//! Apps normalise paths in their own ways (Tomcat strips `;` parameters and resolves `..;`,
//! IIS decodes `%` twice, reads `\` as `/` and drops trailing dots). A spelling the gateway
//! routes one way and the app reads another would reach a certificate route through a public
//! one. So the gateway decodes only what is unambiguous (percent-encoded unreserved
//! characters), resolves `.` and `..` segments itself, and refuses what it cannot make
//! canonical without guessing how the app would read it.
//!
//! Cost: an already canonical ASCII path (the common case) is one scan with no allocation.

use std::borrow::Cow;

/// Why a path cannot be made canonical. Each is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with /")]
    NotAbsolute,
    #[error("the path holds a control character, a space or a non-ASCII byte")]
    BadByte,
    #[error("the path holds a backslash")]
    Backslash,
    #[error("the path holds a malformed percent escape")]
    BadEscape,
    #[error("the path holds an encoded /, \\, ; or NUL")]
    EncodedSeparator,
    #[error("the path holds an encoded percent escape (%25 followed by an escape)")]
    DoubleEncoded,
    #[error("the path holds a ; parameter not on its last segment, or on a dot segment")]
    Parameter,
    #[error("the path holds an empty segment (//)")]
    EmptySegment,
    #[error("the path climbs above the root with ..")]
    AboveRoot,
    #[error("a path segment ends with a dot")]
    TrailingDot,
    #[error("the path's escapes do not decode to UTF-8")]
    NotUtf8,
    #[error("the path holds a character whose case folds to ASCII")]
    AsciiLookalike,
}

/// A request path in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath<'a> {
    /// The path routed on and forwarded (without parameters).
    path: Cow<'a, str>,
    /// The `;` parameters of the last segment, without the first `;` (checked: no `%`,
    /// no `/`, only characters that mean the same to every app).
    params: Option<&'a str>,
}

impl CanonicalPath<'_> {
    /// The canonical path, without `;` parameters: what routing and login binding see.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `;` parameters of the last segment (e.g. `jsessionid=…`), if any. Forwarded only
    /// on routes with `path_params = "pass"`; refused elsewhere.
    pub fn params(&self) -> Option<&str> {
        self.params
    }

    /// Whether the path is exactly what the client sent (no rewrite needed).
    pub fn is_unchanged(&self) -> bool {
        matches!(self.path, Cow::Borrowed(_)) && self.params.is_none()
    }

    /// The path to forward: the canonical path, with the parameters when `with_params`.
    pub fn forwarded(&self, with_params: bool) -> Cow<'_, str> {
        match self.params {
            Some(p) if with_params => Cow::Owned(format!("{};{p}", self.path)),
            _ => Cow::Borrowed(self.path()),
        }
    }
}

/// The canonical form of `raw` (the path of a request target, without the query), or why
/// there is none.
pub fn canonicalize(raw: &str) -> Result<CanonicalPath<'_>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(raw.as_bytes())? {
        return Ok(CanonicalPath {
            path: Cow::Borrowed(raw),
            params: None,
        });
    }
    let c = rewrite(raw)?;
    if c.params.is_none() && c.path == raw {
        // Escapes that stay as they are (`%3F`): nothing to rewrite after all.
        return Ok(CanonicalPath {
            path: Cow::Borrowed(raw),
            params: None,
        });
    }
    Ok(c)
}

/// The single scan of the common case: `Ok(true)` when `raw` is canonical as it is,
/// `Ok(false)` when it needs [`rewrite`] (escapes, dot segments, parameters), an error for
/// what no rewrite can fix.
fn is_canonical(raw: &[u8]) -> Result<bool, PathError> {
    let mut plain = true;
    // Where the current segment starts (after its `/`).
    let mut seg = 1;
    for i in 1..=raw.len() {
        let b = raw.get(i).copied().unwrap_or(b'/');
        match b {
            b'/' => {
                let s = &raw[seg..i];
                let last = i == raw.len();
                match s {
                    b"" if !last => return Err(PathError::EmptySegment),
                    b"." | b".." => plain = false,
                    // A trailing dot Windows would drop; but an escape may yet make this a
                    // dot segment, so only a plain segment is judged here.
                    [.., b'.'] if plain => return Err(PathError::TrailingDot),
                    _ => {}
                }
                seg = i + 1;
            }
            b'%' | b';' => plain = false,
            b'\\' => return Err(PathError::Backslash),
            0x21..=0x7e => {}
            _ => return Err(PathError::BadByte),
        }
    }
    Ok(plain)
}

/// The slow path: decode, resolve dot segments, split off the last segment's parameters.
fn rewrite(raw: &str) -> Result<CanonicalPath<'_>, PathError> {
    let mut out = String::with_capacity(raw.len());
    let mut params = None;
    let mut name = String::new();
    let mut segments = raw[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let (encoded, param) = match segment.split_once(';') {
            Some((n, p)) => (n, Some(p)),
            None => (segment, None),
        };
        name.clear();
        decode_segment(encoded, &mut name)?;
        check_escaped_text(&name)?;
        if let Some(p) = param {
            // Only `…/name;params` at the end: anywhere else an app strips it and routes
            // differently (`/public/..;/ib`), and on a dot or empty name it hides a climb.
            if !last || matches!(name.as_str(), "" | "." | "..") || !plain_params(p) {
                return Err(PathError::Parameter);
            }
            params = Some(p);
        }
        match name.as_str() {
            "" if !last => return Err(PathError::EmptySegment),
            "." => {}
            ".." => match out.rfind('/') {
                Some(at) => out.truncate(at),
                None => return Err(PathError::AboveRoot),
            },
            n if n.ends_with('.') => return Err(PathError::TrailingDot),
            n => {
                out.push('/');
                out.push_str(n);
                continue;
            }
        }
        // A dot segment at the end names a directory: `/a/b/..` is `/a/`.
        if last {
            out.push('/');
        }
    }
    Ok(CanonicalPath {
        path: Cow::Owned(out),
        params,
    })
}

/// Appends the canonical spelling of one segment (no `/`, no `;`) to `out`: unreserved
/// characters decoded, other escapes kept with upper-case hex.
fn decode_segment(s: &str, out: &mut String) -> Result<(), PathError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (Some(h), Some(l)) = (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let c = h << 4 | l;
                match c {
                    _ if is_unreserved(c) => out.push(char::from(c)),
                    b'/' | b'\\' | b';' | 0 => return Err(PathError::EncodedSeparator),
                    // `%25` followed by what reads as an escape: decoded twice (IIS) it is
                    // another character than decoded once.
                    b'%' if b
                        .get(i + 3)
                        .is_some_and(|n| *n == b'%' || hex(*n).is_some()) =>
                    {
                        return Err(PathError::DoubleEncoded);
                    }
                    // Decoded, these would be refused as raw bytes too.
                    0x01..=0x20 | 0x7f => return Err(PathError::BadByte),
                    _ => {
                        out.push('%');
                        out.push(char::from(HEX[usize::from(c >> 4)]));
                        out.push(char::from(HEX[usize::from(c & 0xf)]));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            c @ 0x21..=0x7e => {
                out.push(char::from(c));
                i += 1;
            }
            _ => return Err(PathError::BadByte),
        }
    }
    Ok(())
}

/// The escapes left in a decoded segment must spell UTF-8 (overlong or broken sequences
/// such as `%C0%AF` are read as `/` by some decoders) and no character whose case folds to
/// ASCII (`ſ` is `S` to Java's `equalsIgnoreCase`, `K` (Kelvin) is `k` to lower-casing), which
/// a case-insensitive app would match against a route the gateway did not choose.
fn check_escaped_text(name: &str) -> Result<(), PathError> {
    if !name.bytes().any(|c| c == b'%') {
        return Ok(());
    }
    let b = name.as_bytes();
    let mut bytes = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let decoded = (b[i] == b'%')
            .then(|| Some(hex(*b.get(i + 1)?)? << 4 | hex(*b.get(i + 2)?)?))
            .flatten();
        match decoded {
            Some(c) => {
                bytes.push(c);
                i += 3;
            }
            None => {
                bytes.push(b[i]);
                i += 1;
            }
        }
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| PathError::NotUtf8)?;
    if text.chars().any(folds_to_ascii) {
        return Err(PathError::AsciiLookalike);
    }
    Ok(())
}

/// A non-ASCII character whose upper or lower case is ASCII.
fn folds_to_ascii(c: char) -> bool {
    !c.is_ascii()
        && (c.to_uppercase().any(|u| u.is_ascii()) || c.to_lowercase().any(|l| l.is_ascii()))
}

/// Parameters every app reads alike: `name=value` pairs of unreserved characters and a few
/// delimiters; no escapes.
fn plain_params(p: &str) -> bool {
    !p.is_empty()
        && p.bytes()
            .all(|c| is_unreserved(c) || matches!(c, b'=' | b';' | b',' | b'!' | b'*' | b':'))
}

/// RFC 3986 §2.3.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn hex(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(p: &str) -> Result<String, PathError> {
        canonicalize(p).map(|c| c.path().to_owned())
    }

    #[test]
    fn a_canonical_path_is_borrowed_as_it_is() {
        for p in [
            "/",
            "/ib/top",
            "/ib/top/",
            "/a.b/c-d_e~f",
            "/.well-known/x",
            "/a..b",
            "/x%3F",
            "/100%25off",
        ] {
            let c = canonicalize(p).unwrap();
            assert!(c.is_unchanged(), "{p}");
            assert_eq!(c.path(), p);
        }
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_dot_segments_resolved() {
        for (raw, want) in [
            ("/%69b/top", "/ib/top"),
            ("/ib/%2e%2e/", "/"),
            ("/ib/%2E/top", "/ib/top"),
            ("/public/../ib/top", "/ib/top"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/a/./b", "/a/b"),
            ("/x%3fy", "/x%3Fy"),
            ("/x%c3%a9", "/x%C3%A9"),
            ("/100%25", "/100%25"),
            ("/100%25off", "/100%25off"),
        ] {
            assert_eq!(canon(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn what_cannot_be_made_canonical_is_refused() {
        use PathError::*;
        for (raw, why) in [
            ("ib/top", NotAbsolute),
            ("*", NotAbsolute),
            ("/public/..;/ib/top", Parameter),
            ("/ib;x/top", Parameter),
            ("/ib/..;x", Parameter),
            ("/ib/;x", Parameter),
            ("/ib/top;a%3Db", Parameter),
            ("//ib/top", EmptySegment),
            ("/ib//top", EmptySegment),
            ("/ib/%2e%2e%2f", EncodedSeparator),
            ("/ib%2Ftop", EncodedSeparator),
            ("/ib%5Ctop", EncodedSeparator),
            ("/ib%3Btop", EncodedSeparator),
            ("/ib%00", EncodedSeparator),
            ("/ib\\top", Backslash),
            ("/%252e%252e/ib", DoubleEncoded),
            ("/%25%32e", DoubleEncoded),
            ("/a%2", BadEscape),
            ("/a%zz", BadEscape),
            ("/a%0a", BadByte),
            ("/a%20", BadByte),
            ("/a\u{7f}", BadByte),
            ("/a\u{e9}", BadByte),
            ("/..", AboveRoot),
            ("/a/../..", AboveRoot),
            ("/ib./top", TrailingDot),
            ("/ib%2e/top", TrailingDot),
            ("/ib...", TrailingDot),
            ("/%C0%AFib", NotUtf8),
            ("/a%E3%81", NotUtf8),
            ("/%C5%BFecure", AsciiLookalike),
            ("/%E2%84%AAb", AsciiLookalike),
            ("/%C4%B1b", AsciiLookalike),
        ] {
            assert_eq!(canon(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn parameters_of_the_last_segment_are_split_off() {
        let c = canonicalize("/ib/%74op;jsessionid=AB12.node1").unwrap();
        assert_eq!(c.path(), "/ib/top");
        assert_eq!(c.params(), Some("jsessionid=AB12.node1"));
        assert_eq!(c.forwarded(true), "/ib/top;jsessionid=AB12.node1");
        assert_eq!(c.forwarded(false), "/ib/top");
        assert!(!c.is_unchanged());
    }
}
