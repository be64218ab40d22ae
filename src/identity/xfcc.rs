//! The `xfcc` format: Envoy's `X-Forwarded-Client-Cert`, one element of `Key=Value` pairs
//! separated by `;` (elements of several proxies would be separated by `,`). The keys are the
//! route's `xfcc_fields`, written in Envoy's order: `By`, `Hash`, `Cert`, `Chain`, `Subject`,
//! `URI`, `DNS`. `Cert` and `Chain` are the PEM percent-encoded as Envoy does it (a space is
//! `%20`, never `+`, which form decoders would read as a space), `Subject` is RFC 4514 and
//! always quoted; other values are quoted when they hold a separator, with `"` and `\`
//! escaped by `\` inside quotes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use der::Decode;
use http::{HeaderMap, HeaderName};
use rustls_pki_types::CertificateDer;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::format::{IdentityError, IdentityFormat, OwnedName, WriteContext, header_value};
use crate::config::{IdentityFormatName, XfccField};
use crate::tls::PresentedCert;

pub const XFCC: &str = "x-forwarded-client-cert";

/// Envoy's client-certificate header.
#[derive(Debug)]
pub struct Xfcc;

impl IdentityFormat for Xfcc {
    fn name(&self) -> IdentityFormatName {
        IdentityFormatName::Xfcc
    }

    fn owned_names(&self) -> Vec<OwnedName> {
        vec![OwnedName::Exact(XFCC.into())]
    }

    fn write(&self, headers: &mut HeaderMap, cx: &WriteContext<'_>) -> Result<(), IdentityError> {
        let value = element(
            &cx.identity.presented,
            &cx.route.xfcc_fields,
            cx.route.xfcc_by.as_deref(),
        )?;
        headers.insert(HeaderName::from_static(XFCC), header_value(XFCC, &value)?);
        Ok(())
    }
}

/// The XFCC element describing `presented` with the keys in `fields`; `by` is the value of
/// `By`, which is left out when `None`.
fn element(
    presented: &PresentedCert,
    fields: &[XfccField],
    by: Option<&str>,
) -> Result<String, IdentityError> {
    let leaf = presented.chain.first().ok_or(IdentityError::Value(XFCC))?;
    let wants = |f: XfccField| fields.contains(&f);
    let names = if wants(XfccField::Subject) || wants(XfccField::Uri) || wants(XfccField::Dns) {
        Some(LeafNames::read(leaf)?)
    } else {
        None
    };
    let mut out = String::with_capacity(2048);
    let key = |out: &mut String, f: XfccField| {
        if !out.is_empty() {
            out.push(';');
        }
        out.push_str(f.as_str());
        out.push('=');
    };
    for f in XfccField::ALL.into_iter().filter(|f| wants(*f)) {
        match f {
            XfccField::By => {
                if let Some(by) = by {
                    key(&mut out, f);
                    push_value(&mut out, by, false);
                }
            }
            XfccField::Hash => {
                key(&mut out, f);
                out.push_str(&presented.sha256);
            }
            XfccField::Cert => {
                key(&mut out, f);
                push_value(&mut out, &url_encoded_pem(std::slice::from_ref(leaf)), true);
            }
            XfccField::Chain => {
                key(&mut out, f);
                push_value(&mut out, &url_encoded_pem(&presented.chain), true);
            }
            XfccField::Subject => {
                if let Some(n) = &names {
                    key(&mut out, f);
                    push_value(&mut out, &n.subject, true);
                }
            }
            XfccField::Uri => {
                for uri in names.iter().flat_map(|n| &n.uris) {
                    key(&mut out, f);
                    push_value(&mut out, uri, false);
                }
            }
            XfccField::Dns => {
                for dns in names.iter().flat_map(|n| &n.dns) {
                    key(&mut out, f);
                    push_value(&mut out, dns, false);
                }
            }
        }
    }
    Ok(out)
}

/// What XFCC reports from the leaf certificate's names.
struct LeafNames {
    /// RFC 4514, bytes outside ASCII as `\XX` (as OpenSSL, and so Envoy, prints it).
    subject: String,
    uris: Vec<String>,
    dns: Vec<String>,
}

impl LeafNames {
    fn read(der: &CertificateDer<'_>) -> Result<Self, IdentityError> {
        let cert = x509_cert::Certificate::from_der(der.as_ref())
            .map_err(|_| IdentityError::Value(XFCC))?;
        let tbs = &cert.tbs_certificate;
        let mut names = Self {
            subject: ascii_only(&tbs.subject.to_string()),
            uris: Vec::new(),
            dns: Vec::new(),
        };
        let sans = tbs
            .extensions
            .iter()
            .flatten()
            .filter(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME);
        for ext in sans {
            let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                .map_err(|_| IdentityError::Value(XFCC))?;
            for name in san.0 {
                match name {
                    GeneralName::UniformResourceIdentifier(u) => {
                        names.uris.push(u.as_str().to_owned());
                    }
                    GeneralName::DnsName(d) => names.dns.push(d.as_str().to_owned()),
                    _ => {}
                }
            }
        }
        Ok(names)
    }
}

/// `s` with each byte outside ASCII written as an RFC 4514 `\XX` pair.
fn ascii_only(s: &str) -> String {
    if s.is_ascii() {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push('\\');
            push_hex(&mut out, b);
        }
    }
    out
}

/// The certificates as PEM, one after another, percent-encoded: every byte but
/// `A-Z a-z 0-9 - . _ ~` as `%XX`.
fn url_encoded_pem(chain: &[CertificateDer<'_>]) -> String {
    let mut pem = String::new();
    for der in chain {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = STANDARD.encode(der.as_ref());
        let mut rest = b64.as_str();
        while !rest.is_empty() {
            let (line, tail) = rest.split_at(rest.len().min(64));
            pem.push_str(line);
            pem.push('\n');
            rest = tail;
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    let mut out = String::with_capacity(pem.len() * 3 / 2);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            push_hex(&mut out, b);
        }
    }
    out
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0f)]));
}

/// Appends `v`, in double quotes when `quote` or when it holds a separator, a quote, a
/// backslash or a space (escaping `"` and `\` with `\`).
fn push_value(out: &mut String, v: &str, quote: bool) {
    let needs_quotes = quote
        || v.is_empty()
        || v.bytes()
            .any(|b| matches!(b, b',' | b';' | b'=' | b'"' | b'\\' | b' ' | b'\t'));
    if !needs_quotes {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// How the tests read the header: as a consumer of Envoy's does, written apart from this file.
#[cfg(test)]
#[path = "../../tests/support/xfcc_consumer.rs"]
mod consumer;

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        SanType,
    };

    use super::consumer::{certificates, consume, split_unquoted};
    use super::*;

    const SUBJECT_CN: &str = r#"Doe, "J"; Ltd"#;
    const BY: &str = "spiffe://bank.example/certgate";
    const URI: &str = "https://bank.example/pc?a=1;b=2";
    const DNS: &str = "pc1.bank.example";

    /// A CA and a client certificate whose subject holds `,`, `"`, `;`, `+` and non-ASCII
    /// characters, with a URI and a DNS SAN, and whose base64 holds a `+`.
    fn chain() -> Vec<CertificateDer<'static>> {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "XFCC Test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        for _ in 0..100 {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(vec![DNS.to_owned()]).unwrap();
            p.subject_alt_names
                .push(SanType::URI(URI.try_into().unwrap()));
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, SUBJECT_CN);
            dn.push(DnType::OrganizationName, "Bank+Co 銀行");
            p.distinguished_name = dn;
            let leaf = p.signed_by(&key, &issuer).unwrap();
            if STANDARD.encode(leaf.der()).contains('+') {
                return vec![leaf.der().clone(), ca_cert.der().clone()];
            }
        }
        panic!("no certificate with a + in its base64");
    }

    #[test]
    fn an_envoy_consumer_gets_the_exact_certificates_back() {
        let chain = chain();
        let presented = PresentedCert::inspect(&chain).unwrap();
        let header = element(&presented, &XfccField::ALL, Some(BY)).unwrap();
        // A valid header value, ASCII only.
        assert!(header_value(XFCC, &header).is_ok());
        assert!(header.is_ascii(), "{header}");

        let elements = consume(&header);
        assert_eq!(
            elements.len(),
            1,
            "one element despite the commas: {header}"
        );
        let e = &elements[0];
        let one = |k: &str| -> &str {
            assert_eq!(e[k].len(), 1, "{k}: {header}");
            &e[k][0]
        };
        for raw in [one("Cert"), one("Chain")] {
            assert!(!raw.contains('+') && !raw.contains(' '), "{raw}");
        }
        assert_eq!(certificates(one("Cert")), [chain[0].clone()]);
        assert_eq!(certificates(one("Chain")), chain);
        // A form decoder (`+` read as a space, as Java's URLDecoder does) gets the same.
        let form: String = form_urlencoded::parse(format!("c={}", one("Cert")).as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        assert_eq!(certificates(&form), [chain[0].clone()]);

        assert_eq!(one("Hash"), presented.sha256);
        assert_eq!(
            hex::decode(one("Hash")).unwrap(),
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &chain[0]).as_ref()
        );
        assert_eq!(one("By"), BY);
        assert_eq!(one("URI"), URI);
        assert_eq!(one("DNS"), DNS);
        // RFC 4514: last RDN first, specials escaped, UTF-8 bytes as hex pairs.
        assert_eq!(
            one("Subject"),
            r#"O=Bank\+Co \E9\8A\80\E8\A1\8C,CN=Doe\, \"J\"\; Ltd"#
        );
        // Envoy's key order.
        let keys: Vec<&str> = split_unquoted(&header, ';')
            .into_iter()
            .map(|p| p.split_once('=').unwrap().0)
            .collect();
        assert_eq!(
            keys,
            ["By", "Hash", "Cert", "Chain", "Subject", "URI", "DNS"]
        );
    }

    #[test]
    fn the_default_fields_are_hash_cert_and_subject() {
        let chain = chain();
        let presented = PresentedCert::inspect(&chain).unwrap();
        let fields = [XfccField::Subject, XfccField::Cert, XfccField::Hash];
        let header = element(&presented, &fields, None).unwrap();
        assert!(
            header.starts_with(&format!(
                "Hash={};Cert=\"-----BEGIN%20CERTIFICATE-----%0A",
                presented.sha256
            )),
            "{header}"
        );
        let e = &consume(&header)[0];
        let mut keys: Vec<&String> = e.keys().collect();
        keys.sort();
        assert_eq!(keys, ["Cert", "Hash", "Subject"]);
    }

    #[test]
    fn values_are_quoted_only_when_needed() {
        let mut s = String::new();
        push_value(&mut s, "plain.example", false);
        s.push('|');
        push_value(&mut s, r#"a;b,c=d "e" \f"#, false);
        s.push('|');
        push_value(&mut s, "x", true);
        assert_eq!(s, r#"plain.example|"a;b,c=d \"e\" \\f"|"x""#);
    }
}
