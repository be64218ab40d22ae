//! CA names: the text an operator writes (`[ca] subject`, `--subject`) parsed with
//! `x509-cert`'s RFC 4514 parser (type names, `\` escapes, `#` hex values), checked
//! against what certgate writes into a CA certificate, and handed to rcgen or encoded.
//!
//! What certgate accepts: one attribute per RDN, each of CN, O, OU, C, L, ST at most once,
//! none empty, a CN required. Spaces around `,` and `=` are ignored (as they always were),
//! an escaped space (`\ `) is kept.
//!
//! Order: certgate writes the attributes into the certificate in the order the text lists
//! them (`CN=certgate Customer CA,O=Example Bank` puts CN first), as it always has, although
//! RFC 4514 text lists a name the other way round (the last RDN of the DER first). A
//! [`CaName`] holds its attributes in certificate order, and prints them in that order.
//!
//! This module must not decide any other field of a certificate (that is `profile`'s).

use std::fmt;
use std::str::FromStr;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc4519;
use der::asn1::{PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode, Tag, Tagged};
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};

/// The attributes certgate writes into a CA name, with the names it shows.
const SUPPORTED: [(ObjectIdentifier, &str, rcgen::DnType); 6] = [
    (rfc4519::CN, "CN", rcgen::DnType::CommonName),
    (rfc4519::O, "O", rcgen::DnType::OrganizationName),
    (rfc4519::OU, "OU", rcgen::DnType::OrganizationalUnitName),
    (rfc4519::C, "C", rcgen::DnType::CountryName),
    (rfc4519::L, "L", rcgen::DnType::LocalityName),
    (rfc4519::ST, "ST", rcgen::DnType::StateOrProvinceName),
];

/// Why a CA name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A part without `=`.
    #[error("{0:?} is not KEY=VALUE")]
    NotKeyValue(String),
    /// An attribute type certgate does not put into a CA name.
    #[error("unsupported attribute {0:?} (use CN, O, OU, C, L, ST)")]
    Unsupported(String),
    /// Several attributes in one RDN (`CN=a+O=b`).
    #[error("{0:?} joins several attributes with +; certgate writes one attribute per RDN")]
    MultiValued(String),
    /// The value is not valid RFC 4514 or not text of the attribute's kind.
    #[error("{attribute}: {reason}")]
    BadValue { attribute: String, reason: String },
    /// An attribute with an empty value.
    #[error("{0} has an empty value")]
    Empty(&'static str),
    /// An attribute given twice.
    #[error("{0} is given twice; certgate writes each attribute once")]
    Repeated(&'static str),
    /// No CN.
    #[error("a CN is required")]
    NoCommonName,
}

/// A checked CA name, its attributes in certificate order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaName {
    /// One single-attribute RDN per entry of [`SUPPORTED`], in certificate (DER) order.
    name: Name,
}

impl FromStr for CaName {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, NameError> {
        let mut rdns = Vec::new();
        let mut seen = Vec::new();
        for part in split_unescaped(text, ',') {
            let (key, atv) = parse_attribute(part)?;
            let label =
                label(&atv.oid).ok_or_else(|| NameError::Unsupported(key.to_ascii_uppercase()))?;
            if seen.contains(&label) {
                return Err(NameError::Repeated(label));
            }
            seen.push(label);
            let value = text_value(&atv, label)?;
            if value.trim().is_empty() {
                return Err(NameError::Empty(label));
            }
            rdns.push(single_rdn(atv, label)?);
        }
        if !seen.contains(&"CN") {
            return Err(NameError::NoCommonName);
        }
        Ok(Self {
            name: RdnSequence(rdns),
        })
    }
}

impl CaName {
    /// Parses `text`; see the module documentation for what is accepted.
    pub fn parse(text: &str) -> Result<Self, NameError> {
        text.parse()
    }

    /// The name with ` {suffix}` added to its CN (a rollover's default subject, so two
    /// generations differ by name).
    pub fn with_cn_suffix(&self, suffix: &str) -> Result<Self, NameError> {
        let mut rdns = Vec::with_capacity(self.name.0.len());
        for (label, value, atv) in self.attributes() {
            rdns.push(if label == "CN" {
                let cn = der::Any::new(Tag::Utf8String, format!("{value} {suffix}").into_bytes())
                    .map_err(|e| bad_value(label, e))?;
                single_rdn(
                    AttributeTypeAndValue {
                        oid: rfc4519::CN,
                        value: cn,
                    },
                    label,
                )?
            } else {
                single_rdn(atv.clone(), label)?
            });
        }
        Ok(Self {
            name: RdnSequence(rdns),
        })
    }

    /// The name as rcgen writes it into a certificate: the same attributes, order and string
    /// types as [`CaName::to_der`].
    pub fn to_rcgen(&self) -> Result<rcgen::DistinguishedName, NameError> {
        let mut dn = rcgen::DistinguishedName::new();
        for (label, value, atv) in self.attributes() {
            let kind = SUPPORTED
                .iter()
                .find(|(oid, _, _)| *oid == atv.oid)
                .map(|(_, _, kind)| kind.clone())
                .ok_or(NameError::Unsupported(label.into()))?;
            let value = match atv.value.tag() {
                Tag::PrintableString => rcgen::DnValue::PrintableString(
                    rcgen::string::PrintableString::try_from(value)
                        .map_err(|e| bad_value(label, e))?,
                ),
                _ => rcgen::DnValue::Utf8String(value.to_owned()),
            };
            dn.push(kind, value);
        }
        Ok(dn)
    }

    /// The DER of the name, as a certificate with this subject carries it.
    pub fn to_der(&self) -> Result<Vec<u8>, NameError> {
        self.name.to_der().map_err(|e| bad_value("the name", e))
    }

    /// Whether a certificate subject (DER) names the same CA: the same attributes in the
    /// same order, values compared without regard to ASCII case or string type, as relying
    /// parties match names (RFC 5280 §7.1). An unparsable subject matches nothing.
    pub fn same_as_der(&self, subject_der: &[u8]) -> bool {
        let Ok(other) = Name::from_der(subject_der) else {
            return false;
        };
        let ours: Vec<_> = self.name.0.iter().map(comparable).collect();
        let theirs: Vec<_> = other.0.iter().map(comparable).collect();
        ours.len() == theirs.len()
            && ours.iter().zip(&theirs).all(|(a, b)| match (a, b) {
                (Some((oa, va)), Some((ob, vb))) => oa == ob && va.eq_ignore_ascii_case(vb),
                _ => false,
            })
    }

    /// Each attribute's label, text and encoded form, in certificate order.
    fn attributes(&self) -> impl Iterator<Item = (&'static str, &str, &AttributeTypeAndValue)> {
        self.name.0.iter().filter_map(|rdn| {
            let atv = rdn.0.iter().next()?;
            let label = label(&atv.oid)?;
            Some((label, string_of(atv)?, atv))
        })
    }
}

/// RFC 4514 text in certificate order (see the module documentation), with its escapes.
impl fmt::Display for CaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.name.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{rdn}")?;
        }
        Ok(())
    }
}

/// The pieces of `text` between unescaped `sep`s, unescaped spaces around them trimmed.
fn split_unescaped(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == sep => {
                parts.push(trim_unescaped(&text[start..i]));
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(trim_unescaped(&text[start..]));
    parts
}

/// `s` without leading spaces and without trailing ones that are not escaped (`\ `).
fn trim_unescaped(s: &str) -> &str {
    let s = s.trim_start();
    let mut end = s.len();
    while s[..end].ends_with(' ') {
        let backslashes = s[..end - 1]
            .chars()
            .rev()
            .take_while(|&c| c == '\\')
            .count();
        if backslashes % 2 == 1 {
            break;
        }
        end -= 1;
    }
    &s[..end]
}

/// One `TYPE=VALUE`, spaces around `=` ignored, parsed by `x509-cert`; with the type as
/// written.
fn parse_attribute(part: &str) -> Result<(&str, AttributeTypeAndValue), NameError> {
    if split_unescaped(part, '+').len() > 1 {
        return Err(NameError::MultiValued(part.into()));
    }
    let (key, value) = part
        .split_once('=')
        .ok_or_else(|| NameError::NotKeyValue(part.into()))?;
    let key = key.trim();
    let known = const_oid::db::DB.by_name(key).is_some() || ObjectIdentifier::new(key).is_ok();
    if !known {
        return Err(NameError::Unsupported(key.to_ascii_uppercase()));
    }
    let value = value.trim_start();
    let atv = AttributeTypeAndValue::from_str(&format!("{key}={value}")).map_err(|_| {
        NameError::BadValue {
            attribute: key.to_ascii_uppercase(),
            reason: format!(
                "{value:?} is not valid RFC 4514 text (check its \\ escapes and # hex)"
            ),
        }
    })?;
    Ok((key, atv))
}

/// The label certgate shows for an attribute type it supports.
fn label(oid: &ObjectIdentifier) -> Option<&'static str> {
    SUPPORTED
        .iter()
        .find(|(o, _, _)| o == oid)
        .map(|(_, label, _)| *label)
}

/// The text of a value: UTF8String, or PrintableString (what `x509-cert` writes for C).
fn string_of(atv: &AttributeTypeAndValue) -> Option<&str> {
    match atv.value.tag() {
        Tag::Utf8String => Utf8StringRef::try_from(&atv.value).ok().map(|s| s.as_str()),
        Tag::PrintableString => PrintableStringRef::try_from(&atv.value)
            .ok()
            .map(|s| s.as_str()),
        _ => None,
    }
}

fn text_value<'a>(
    atv: &'a AttributeTypeAndValue,
    label: &'static str,
) -> Result<&'a str, NameError> {
    string_of(atv).ok_or_else(|| NameError::BadValue {
        attribute: label.into(),
        reason: if atv.value.tag() == Tag::PrintableString {
            "only letters, digits, spaces and '()+,-./:=? are allowed".into()
        } else {
            "the value must be UTF-8 text".into()
        },
    })
}

fn single_rdn(
    atv: AttributeTypeAndValue,
    label: &'static str,
) -> Result<RelativeDistinguishedName, NameError> {
    RelativeDistinguishedName::try_from(vec![atv]).map_err(|e| bad_value(label, e))
}

fn bad_value(attribute: &str, e: impl fmt::Display) -> NameError {
    NameError::BadValue {
        attribute: attribute.into(),
        reason: e.to_string(),
    }
}

/// An RDN as names are compared: its one attribute's type and text.
fn comparable(rdn: &RelativeDistinguishedName) -> Option<(ObjectIdentifier, String)> {
    let mut atvs = rdn.0.iter();
    let atv = atvs.next()?;
    if atvs.next().is_some() {
        return None;
    }
    Some((atv.oid, string_of(atv)?.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subject rcgen writes for `dn`, read back from a certificate.
    fn subject_der(dn: rcgen::DistinguishedName) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = dn;
        let cert = p.self_signed(&key).unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        x.subject().as_raw().to_vec()
    }

    /// The name as the former hand-written parser gave it to rcgen: the text's order.
    fn former(pairs: &[(rcgen::DnType, &str)]) -> rcgen::DistinguishedName {
        let mut dn = rcgen::DistinguishedName::new();
        for (ty, v) in pairs {
            dn.push(ty.clone(), *v);
        }
        dn
    }

    #[test]
    fn the_subject_keeps_the_order_of_the_text() {
        use rcgen::DnType::{CommonName, OrganizationName, OrganizationalUnitName};
        for (text, pairs) in [
            (
                "CN=certgate Customer CA,O=Example Bank",
                vec![
                    (CommonName, "certgate Customer CA"),
                    (OrganizationName, "Example Bank"),
                ],
            ),
            (
                " CN = certgate Customer CA , OU=Cards,  O= Example Bank ",
                vec![
                    (CommonName, "certgate Customer CA"),
                    (OrganizationalUnitName, "Cards"),
                    (OrganizationName, "Example Bank"),
                ],
            ),
            (
                "o=Example Bank,cn=Root",
                vec![(OrganizationName, "Example Bank"), (CommonName, "Root")],
            ),
        ] {
            let name = CaName::parse(text).unwrap();
            let written = subject_der(name.to_rcgen().unwrap());
            assert_eq!(written, subject_der(former(&pairs)), "{text}");
            assert_eq!(written, name.to_der().unwrap(), "{text}");
        }
    }

    #[test]
    fn country_is_a_printable_string_in_place() {
        let name = CaName::parse("CN=Example Bank CA 2025,O=Example Bank,C=JP").unwrap();
        let der = subject_der(name.to_rcgen().unwrap());
        assert_eq!(der, name.to_der().unwrap());
        let kinds: Vec<_> = Name::from_der(&der)
            .unwrap()
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .map(|atv| (atv.oid.to_string(), atv.value.tag()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("2.5.4.3".to_owned(), Tag::Utf8String),
                ("2.5.4.10".to_owned(), Tag::Utf8String),
                ("2.5.4.6".to_owned(), Tag::PrintableString),
            ]
        );
        assert!(matches!(
            CaName::parse("CN=x,C=J_P"),
            Err(NameError::BadValue { attribute, .. }) if attribute == "C"
        ));
    }

    #[test]
    fn rfc4514_escapes_are_understood() {
        let name = CaName::parse(r"CN=Bank\, Cards \+ Loans,O=Example\20Bank,OU=\ lead").unwrap();
        let values: Vec<_> = name
            .attributes()
            .map(|(l, v, _)| (l, v.to_owned()))
            .collect();
        assert_eq!(
            values,
            vec![
                ("CN", "Bank, Cards + Loans".to_owned()),
                ("O", "Example Bank".to_owned()),
                ("OU", " lead".to_owned()),
            ]
        );
        // Printed with escapes, in certificate order; parsing it again gives the same name.
        let printed = name.to_string();
        assert_eq!(CaName::parse(&printed).unwrap(), name);
        assert!(
            printed.starts_with("CN=Bank\\, Cards \\+ Loans,O="),
            "{printed}"
        );
        // A hex value (`#` and the DER of a UTF8String) is text too.
        let hex = CaName::parse("CN=#0c03616263").unwrap();
        assert_eq!(hex.attributes().next().map(|(_, v, _)| v), Some("abc"));
    }

    #[test]
    fn refusals_are_clear() {
        let refused = |text: &str| CaName::parse(text).unwrap_err().to_string();
        assert_eq!(refused("O=Example Bank"), "a CN is required");
        assert_eq!(refused("CN=x,O= "), "O has an empty value");
        assert_eq!(
            refused("CN=x,Example Bank"),
            "\"Example Bank\" is not KEY=VALUE"
        );
        assert_eq!(
            refused("CN=x,dc=example"),
            "unsupported attribute \"DC\" (use CN, O, OU, C, L, ST)"
        );
        assert_eq!(
            refused("CN=x,FOO=y"),
            "unsupported attribute \"FOO\" (use CN, O, OU, C, L, ST)"
        );
        assert!(refused("CN=x,emailAddress=a@example.com").contains("unsupported attribute"));
        assert!(refused("CN=a+O=b").contains("one attribute per RDN"));
        assert!(refused("CN=a,OU=b,OU=c").contains("OU is given twice"));
        assert!(refused(r"CN=a\x").contains("not valid RFC 4514"));
        assert!(refused("CN=#0201ff").contains("UTF-8 text"));
    }

    #[test]
    fn names_compare_as_relying_parties_do() {
        let name = CaName::parse("CN=certgate Customer CA,O=Example Bank,C=JP").unwrap();
        // The same text written with a UTF8String country (as before) is the same name.
        let utf8_country = subject_der(former(&[
            (rcgen::DnType::CommonName, "certgate customer CA"),
            (rcgen::DnType::OrganizationName, "Example Bank"),
            (rcgen::DnType::CountryName, "JP"),
        ]));
        assert!(name.same_as_der(&utf8_country));
        let reordered = CaName::parse("O=Example Bank,CN=certgate Customer CA,C=JP").unwrap();
        assert!(!name.same_as_der(&reordered.to_der().unwrap()));
        assert!(!name.same_as_der(b"not DER"));
    }

    #[test]
    fn the_example_configuration_names_a_valid_ca() {
        let example = crate::config::EXAMPLE;
        let cfg = crate::config::Config::parse(example, "example", std::path::Path::new("."));
        CaName::parse(&cfg.unwrap().ca.subject).unwrap();
    }

    #[test]
    fn the_cn_suffix_names_the_generation() {
        let name = CaName::parse("CN=certgate Customer CA,O=Example Bank").unwrap();
        let next = name.with_cn_suffix("ca-2").unwrap();
        assert_eq!(
            next.to_string(),
            "CN=certgate Customer CA ca-2,O=Example Bank"
        );
    }
}
