//! Identity to the upstream: first remove every header a client could use to pretend an
//! identity (names compared lower-cased with `_` and `-` alike, as CGI-style apps read them),
//! then write the verified identity. Nothing here decides *whether* a caller is allowed.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName, HeaderValue};
use rustls_pki_types::CertificateDer;

use super::assertion::AssertionSigner;
use crate::clock::{DAY, UnixTime};
use crate::config::RouteConfig;
use crate::store::{CertStatusView, Role};
use crate::tls::PresentedCert;

/// The identity headers, always set on certificate routes.
pub const USER: &str = "x-certgate-user";
pub const CONTRACT: &str = "x-certgate-contract";
pub const ROLE: &str = "x-certgate-role";
pub const CERT_SERIAL: &str = "x-certgate-cert-serial";
pub const CERT_SHA256: &str = "x-certgate-cert-sha256";
pub const CERT_NOT_AFTER: &str = "x-certgate-cert-not-after";
pub const RENEWAL_DUE: &str = "x-certgate-renewal-due";
/// RFC 9440.
pub const CLIENT_CERT: &str = "client-cert";
pub const CLIENT_CERT_CHAIN: &str = "client-cert-chain";
/// Envoy.
pub const XFCC: &str = "x-forwarded-client-cert";

/// The names above, parsed once: inserting them parses and validates nothing per request.
const IDENTITY_NAMES: [HeaderName; 6] = [
    HeaderName::from_static(USER),
    HeaderName::from_static(CONTRACT),
    HeaderName::from_static(ROLE),
    HeaderName::from_static(CERT_SERIAL),
    HeaderName::from_static(CERT_SHA256),
    HeaderName::from_static(CERT_NOT_AFTER),
];
const RENEWAL_DUE_NAME: HeaderName = HeaderName::from_static(RENEWAL_DUE);

/// The identity header values of one certificate (all but `Renewal-Due`, which depends on
/// the day), made once per status view and cloned into each request (a reference count,
/// not a copy).
#[derive(Debug)]
pub struct IdentityHeaders {
    /// In the order of [`IDENTITY_NAMES`].
    values: [HeaderValue; 6],
}

impl IdentityHeaders {
    /// The values for the certificate of `view`.
    pub fn of(view: &CertStatusView) -> Result<Self, IdentityError> {
        let c = &view.cert;
        let not_after = time::OffsetDateTime::from_unix_timestamp(c.not_after)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .ok_or(IdentityError::Value(CERT_NOT_AFTER))?;
        Ok(Self {
            values: [
                value(USER, &c.login)?,
                value(CONTRACT, &c.contract_id)?,
                value(ROLE, view.role.as_str())?,
                value(CERT_SERIAL, &c.serial)?,
                value(CERT_SHA256, &c.sha256)?,
                value(CERT_NOT_AFTER, &not_after)?,
            ],
        })
    }
}

/// A caller whose certificate passed the live check. Its names are read from the status
/// view it was made from (no copies per request).
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// True from `window_days` before expiry.
    pub renewal_due: bool,
    pub presented: Arc<PresentedCert>,
    /// The status cache hands out the same view until it reads the store again, so header
    /// values made from it can be reused while it does.
    view: Arc<CertStatusView>,
}

impl PeerIdentity {
    /// The identity from the store's view of the presented certificate.
    pub fn new(
        view: Arc<CertStatusView>,
        presented: Arc<PresentedCert>,
        now: UnixTime,
        window_days: u32,
    ) -> Self {
        Self {
            renewal_due: now >= view.cert.not_after - i64::from(window_days) * DAY,
            presented,
            view,
        }
    }

    /// The login ID.
    pub fn login(&self) -> &str {
        &self.view.cert.login
    }

    /// The contract the login ID belongs to.
    pub fn contract(&self) -> &str {
        &self.view.cert.contract_id
    }

    /// The login ID's role in its contract.
    pub fn role(&self) -> Role {
        self.view.role
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> UnixTime {
        self.view.cert.not_after
    }

    /// The certificate's serial, lowercase hex as the store keeps it.
    pub fn serial(&self) -> &str {
        &self.view.cert.serial
    }

    /// Lowercase hex SHA-256 of the certificate DER.
    pub fn sha256(&self) -> &str {
        &self.view.cert.sha256
    }

    /// The status view this identity was made from.
    pub fn view(&self) -> &Arc<CertStatusView> {
        &self.view
    }
}

/// Whether `name`, read lower-case with `_` as `-`, is a name a client must never set.
/// `assertion_header` is the configured assertion header, lower-cased. Compared without
/// allocating: this runs for every header of every request.
fn is_reserved(name: &str, assertion_header: &str) -> bool {
    const PREFIXES: [&str; 2] = ["x-certgate-", "x-forwarded-"];
    const EXACT: [&str; 6] = [
        CLIENT_CERT,
        CLIENT_CERT_CHAIN,
        XFCC,
        "forwarded",
        "x-real-ip",
        "x-client-cert",
    ];
    PREFIXES
        .iter()
        .any(|p| name.len() >= p.len() && same_name(&name.as_bytes()[..p.len()], p))
        || EXACT.iter().any(|e| same_name(name.as_bytes(), e))
        || same_name(name.as_bytes(), assertion_header)
}

/// `presented == wanted` with ASCII case ignored and `_` in `presented` read as `-`.
fn same_name(presented: &[u8], wanted: &str) -> bool {
    presented.len() == wanted.len()
        && presented.iter().zip(wanted.bytes()).all(|(&p, w)| {
            let p = if p == b'_' { b'-' } else { p };
            p.eq_ignore_ascii_case(&w)
        })
}

/// Removes every header whose name, lower-cased with `_` read as `-`, is an identity or
/// forwarding header. `assertion_header` is the configured assertion header, lower-cased.
pub fn strip_reserved(headers: &mut HeaderMap, assertion_header: &str) {
    if !headers
        .keys()
        .any(|n| is_reserved(n.as_str(), assertion_header))
    {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_reserved(n.as_str(), assertion_header))
        .cloned()
        .collect();
    for n in doomed {
        headers.remove(&n);
    }
}

/// Why identity headers could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the value of {0} cannot be sent in a header")]
    Value(&'static str),
    #[error("cannot sign the assertion")]
    Assertion(#[source] super::assertion::AssertionError),
}

fn value(name: &'static str, v: &str) -> Result<HeaderValue, IdentityError> {
    HeaderValue::from_bytes(v.as_bytes()).map_err(|_| IdentityError::Value(name))
}

/// Writes the identity headers (and the route's optional formats) for `id`, whose values
/// not depending on the day are `values` (see [`IdentityHeaders::of`]).
pub fn apply(
    headers: &mut HeaderMap,
    id: &PeerIdentity,
    values: &IdentityHeaders,
    route: &RouteConfig,
    signer: &AssertionSigner,
    now: UnixTime,
) -> Result<(), IdentityError> {
    headers.reserve(IDENTITY_NAMES.len() + 1);
    for (name, v) in IDENTITY_NAMES.into_iter().zip(&values.values) {
        headers.insert(name, v.clone());
    }
    headers.insert(
        RENEWAL_DUE_NAME,
        HeaderValue::from_static(if id.renewal_due { "true" } else { "false" }),
    );
    let set = |h: &mut HeaderMap, n: &'static str, v: &str| -> Result<(), IdentityError> {
        h.insert(HeaderName::from_static(n), value(n, v)?);
        Ok(())
    };
    let chain = &id.presented.chain;
    if route.client_cert_header {
        if let Some(leaf) = chain.first() {
            set(headers, CLIENT_CERT, &sf_binary(leaf))?;
        }
        if chain.len() > 1 {
            let list: Vec<String> = chain[1..].iter().map(sf_binary).collect();
            set(headers, CLIENT_CERT_CHAIN, &list.join(", "))?;
        }
    }
    if route.xfcc {
        set(headers, XFCC, &xfcc(&id.presented))?;
    }
    if route.assertion {
        let jwt = signer
            .sign(id, &route.upstream, now)
            .map_err(IdentityError::Assertion)?;
        headers.insert(signer.header().clone(), value("assertion", &jwt)?);
    }
    Ok(())
}

/// RFC 8941 byte sequence: `:base64:`.
fn sf_binary(der: &CertificateDer<'_>) -> String {
    format!(":{}:", STANDARD.encode(der.as_ref()))
}

/// Envoy's `X-Forwarded-Client-Cert` element: `Hash=..;Cert="..";Subject=".."`.
fn xfcc(p: &PresentedCert) -> String {
    let pem = p
        .chain
        .first()
        .map(|der| {
            let b64 = STANDARD.encode(der.as_ref());
            let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                s.push_str(&String::from_utf8_lossy(line));
                s.push('\n');
            }
            s.push_str("-----END CERTIFICATE-----\n");
            s
        })
        .unwrap_or_default();
    let cert: String = form_urlencoded::byte_serialize(pem.as_bytes()).collect();
    let subject = p.subject.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "Hash={};Cert=\"{}\";Subject=\"{}\"",
        p.sha256, cert, subject
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofed_variants_are_stripped_and_others_kept() {
        let mut h = HeaderMap::new();
        for n in [
            "x-certgate-user",
            "x_certgate_user",
            "X_Certgate_Role",
            "x-certgate_cert-serial",
            "client_cert",
            "x-forwarded-client-cert",
            "x_forwarded_for",
            "forwarded",
            "x-certgate-assertion",
        ] {
            h.insert(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                "mallory".parse().unwrap(),
            );
        }
        h.insert("accept", "text/html".parse().unwrap());
        h.insert("x-app-thing", "1".parse().unwrap());
        strip_reserved(&mut h, "x-certgate-assertion");
        assert!(is_reserved("X_FORWARDED_HOST", "x-certgate-assertion"));
        assert!(!is_reserved("x-forwarded", "x-certgate-assertion"));
        assert!(!is_reserved("x-certgate", "x-certgate-assertion"));
        let left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(h.contains_key("accept") && h.contains_key("x-app-thing"));
    }
}
