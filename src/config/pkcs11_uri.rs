//! PKCS#11 URIs (RFC 7512): `pkcs11:token=certgate;object=certgate-ca;id=%01;type=private`.
//!
//! certgate reads the attributes that name a token (`token`, `manufacturer`, `model`,
//! `serial`) and a key (`object`, `id`, `type`) and writes the URI of each key `hsm info`
//! finds. Every other attribute is refused by name rather than ignored: a constraint an
//! operator wrote must never be dropped silently, or a different token or key than the one
//! meant could be used. `pin-value` and `pin-source` are refused too: the PIN comes from
//! `pin_env` or `pin_file` only, and never sits in a URI that is logged or printed.
//!
//! What this module must not do: look at tokens (matching is `hsm`'s), or echo a refused
//! attribute's value (it might be a PIN).

use std::fmt;

/// The object class a URI's `type` names (RFC 7512 section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Private,
    Public,
    Cert,
    SecretKey,
    Data,
}

impl ObjectType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
            Self::Cert => "cert",
            Self::SecretKey => "secret-key",
            Self::Data => "data",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "private" => Self::Private,
            "public" => Self::Public,
            "cert" => Self::Cert,
            "secret-key" => Self::SecretKey,
            "data" => Self::Data,
            _ => return None,
        })
    }
}

/// The attributes of a `pkcs11:` URI that certgate understands, percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token`: the token label (`CKA_LABEL` of the token, `CK_TOKEN_INFO.label`).
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    /// `object`: the object's `CKA_LABEL`.
    pub object: Option<String>,
    /// `id`: the object's `CKA_ID`, raw bytes.
    pub id: Option<Vec<u8>>,
    pub object_type: Option<ObjectType>,
}

/// Why a text is not a URI certgate accepts. Never carries an attribute's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("a PKCS#11 URI starts with \"pkcs11:\"")]
    Scheme,
    #[error("PKCS#11 URI attribute {0:?} has no \"=\"")]
    NoValue(String),
    #[error("PKCS#11 URI attribute {0:?} appears twice")]
    Repeated(String),
    #[error("PKCS#11 URI attribute {0:?} has a bad percent-encoding")]
    Encoding(String),
    #[error("PKCS#11 URI attribute {0:?} is not valid UTF-8 once decoded")]
    NotUtf8(String),
    #[error("PKCS#11 URI type {0:?} is none of private, public, cert, secret-key, data")]
    Type(String),
    #[error(
        "PKCS#11 URI attribute {0:?} is a PIN: give the PIN with pin_env or pin_file, never in a URI"
    )]
    Pin(String),
    #[error("PKCS#11 URI attribute {0:?} is not supported by certgate (refused, not ignored)")]
    Unsupported(String),
}

impl Pkcs11Uri {
    /// Parses `pkcs11:path?query`. The scheme is case-insensitive (RFC 3986), attribute names
    /// are not (RFC 7512).
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let rest = text
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &text[7..])
            .ok_or(UriError::Scheme)?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Self::default();
        for part in path.split(';').filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| UriError::NoValue(part.to_owned()))?;
            uri.set(name, value)?;
        }
        // Every query attribute (pin-*, module-*) is refused: the first one found is named.
        if let Some(part) = query.split('&').find(|p| !p.is_empty()) {
            let name = part.split_once('=').map_or(part, |(n, _)| n);
            return Err(match name {
                "pin-value" | "pin-source" => UriError::Pin(name.to_owned()),
                _ => UriError::Unsupported(name.to_owned()),
            });
        }
        Ok(uri)
    }

    fn set(&mut self, name: &str, value: &str) -> Result<(), UriError> {
        let text = || {
            let bytes = decode(value).ok_or_else(|| UriError::Encoding(name.to_owned()))?;
            String::from_utf8(bytes).map_err(|_| UriError::NotUtf8(name.to_owned()))
        };
        let slot_taken = match name {
            "token" => put(&mut self.token, text()?),
            "manufacturer" => put(&mut self.manufacturer, text()?),
            "model" => put(&mut self.model, text()?),
            "serial" => put(&mut self.serial, text()?),
            "object" => put(&mut self.object, text()?),
            "id" => put(
                &mut self.id,
                decode(value).ok_or_else(|| UriError::Encoding(name.to_owned()))?,
            ),
            "type" => {
                let t = text()?;
                let parsed = ObjectType::parse(&t).ok_or(UriError::Type(t))?;
                put(&mut self.object_type, parsed)
            }
            "pin-value" | "pin-source" => return Err(UriError::Pin(name.to_owned())),
            other => return Err(UriError::Unsupported(other.to_owned())),
        };
        if slot_taken {
            return Err(UriError::Repeated(name.to_owned()));
        }
        Ok(())
    }

    /// True when the URI names a token only (no object attributes).
    pub fn names_token_only(&self) -> bool {
        self.object.is_none() && self.id.is_none() && self.object_type.is_none()
    }

    /// True when the URI names an object only (no token attributes).
    pub fn names_object_only(&self) -> bool {
        self.token.is_none()
            && self.manufacturer.is_none()
            && self.model.is_none()
            && self.serial.is_none()
    }
}

/// Sets `slot` unless it is already set; returns whether it was.
fn put<T>(slot: &mut Option<T>, value: T) -> bool {
    if slot.is_some() {
        return true;
    }
    *slot = Some(value);
    false
}

/// Percent-decodes; None on a `%` not followed by two hex digits.
fn decode(value: &str) -> Option<Vec<u8>> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Writes `value` as a path attribute value: RFC 3986 unreserved characters and the few
/// RFC 7512 allows as they are, every other byte percent-encoded.
fn encode(out: &mut fmt::Formatter<'_>, value: &[u8]) -> fmt::Result {
    for &b in value {
        let plain = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b':'
                    | b'['
                    | b']'
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'&'
            );
        if plain {
            write!(out, "{}", b as char)?;
        } else {
            write!(out, "%{b:02X}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Pkcs11Uri {
    /// The URI in RFC 7512's attribute order; `id` fully percent-encoded, as the RFC advises
    /// for binary values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkcs11:")?;
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if !std::mem::take(&mut first) {
                f.write_str(";")?;
            }
            Ok(())
        };
        for (name, value) in [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
            ("object", &self.object),
        ] {
            if let Some(v) = value {
                sep(f)?;
                write!(f, "{name}=")?;
                encode(f, v.as_bytes())?;
            }
        }
        if let Some(id) = &self.id {
            sep(f)?;
            f.write_str("id=")?;
            for b in id {
                write!(f, "%{b:02X}")?;
            }
        }
        if let Some(t) = self.object_type {
            sep(f)?;
            write!(f, "type={}", t.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_examples_that_name_tokens_and_keys_parse() {
        let u = Pkcs11Uri::parse("pkcs11:token=certgate;object=certgate-ca;id=%01;type=private")
            .unwrap();
        assert_eq!(u.token.as_deref(), Some("certgate"));
        assert_eq!(u.object.as_deref(), Some("certgate-ca"));
        assert_eq!(u.id.as_deref(), Some(&[1u8][..]));
        assert_eq!(u.object_type, Some(ObjectType::Private));
        // RFC 7512 section 3: percent-encoded text and a multi-byte id.
        let u = Pkcs11Uri::parse(
            "PKCS11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.;id=%69%95%3E%5C%F4%BD%EC%91;serial=",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("Software PKCS#11 softtoken"));
        assert_eq!(u.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(
            u.id,
            Some(vec![0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91])
        );
        assert_eq!(u.serial.as_deref(), Some(""));
        assert_eq!(Pkcs11Uri::parse("pkcs11:").unwrap(), Pkcs11Uri::default());
    }

    #[test]
    fn printing_and_parsing_round_trip() {
        let u = Pkcs11Uri {
            token: Some("bank CA;1 100%".into()),
            object: Some("certgate-ca".into()),
            id: Some(vec![0x00, 0xab, 0x7f]),
            object_type: Some(ObjectType::Private),
            ..Default::default()
        };
        let text = u.to_string();
        assert_eq!(
            text,
            "pkcs11:token=bank%20CA%3B1%20100%25;object=certgate-ca;id=%00%AB%7F;type=private"
        );
        assert_eq!(Pkcs11Uri::parse(&text).unwrap(), u);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let cases = [
            ("token=x", UriError::Scheme),
            ("pkcs11:token", UriError::NoValue("token".into())),
            ("pkcs11:token=a;token=b", UriError::Repeated("token".into())),
            ("pkcs11:id=%0", UriError::Encoding("id".into())),
            ("pkcs11:object=%ZZ", UriError::Encoding("object".into())),
            ("pkcs11:object=%FF", UriError::NotUtf8("object".into())),
            ("pkcs11:type=key", UriError::Type("key".into())),
            ("pkcs11:slot-id=3", UriError::Unsupported("slot-id".into())),
            (
                "pkcs11:library-version=3",
                UriError::Unsupported("library-version".into()),
            ),
            ("pkcs11:Token=x", UriError::Unsupported("Token".into())),
            (
                "pkcs11:token=x?module-path=/tmp/evil.so",
                UriError::Unsupported("module-path".into()),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Pkcs11Uri::parse(text), Err(want), "{text}");
        }
    }

    #[test]
    fn a_pin_in_a_uri_is_refused_without_echoing_it() {
        for text in [
            "pkcs11:token=x?pin-value=secret-4711",
            "pkcs11:token=x;pin-value=secret-4711",
            "pkcs11:token=x?pin-source=file:/secret-4711",
        ] {
            let e = Pkcs11Uri::parse(text).unwrap_err();
            assert!(matches!(e, UriError::Pin(_)), "{text}: {e}");
            assert!(!e.to_string().contains("secret-4711"));
        }
    }

    #[test]
    fn token_and_object_parts_are_told_apart() {
        let token = Pkcs11Uri::parse("pkcs11:token=t;serial=1").unwrap();
        assert!(token.names_token_only() && !token.names_object_only());
        let key = Pkcs11Uri::parse("pkcs11:object=k;type=private").unwrap();
        assert!(key.names_object_only() && !key.names_token_only());
    }
}
