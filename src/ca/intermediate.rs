//! A CA certificate from outside: the PKCS#10 request for the HSM key that an offline root
//! signs, and the checks a returned certificate and its chain must pass before the store
//! takes them (it certifies the HSM key, it is a CA that may sign certificates and CRLs,
//! every link of the chain verifies up to a self-signed root, and all are valid now).
//!
//! What this module must not do: store anything, or trust a chain it has not verified.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyUsagePurpose};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use super::{CaError, CaName, KeyBackend, RcgenKey, check_key_matches, csr};
use crate::clock::UnixTime;

/// Why an outside CA certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file is not PEM certificates, or a certificate cannot be parsed.
    #[error("{0}")]
    Malformed(String),
    /// The certificate is for another key.
    #[error("the certificate does not certify the HSM key {0:?}")]
    KeyMismatch(String),
    /// The certificate may not act as this CA.
    #[error("the certificate is not usable as an issuing CA: {0}")]
    NotCa(String),
    /// Outside its validity period.
    #[error("{0}")]
    Validity(String),
    /// The chain does not lead to a root.
    #[error("the chain does not verify: {0}")]
    Chain(String),
}

/// A checked CA certificate with its chain, ready for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCa {
    /// The CA certificate, DER.
    pub der: Vec<u8>,
    /// The chain above it, PEM, nearest issuer first, ending with the root.
    pub chain_pem: String,
    /// The CA's subject, as text.
    pub subject: String,
    pub not_after: UnixTime,
}

/// A PEM PKCS#10 request for `key` with `subject`, asking for a CA that issues end-entity
/// certificates only (pathLen 0, keyCertSign, cRLSign). The root decides; the request only
/// states what certgate needs.
pub fn request_pem(key: Arc<dyn KeyBackend>, subject: &CaName) -> Result<String, CaError> {
    let dn = subject.to_rcgen()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let csr = params
        .serialize_request(&RcgenKey(key.clone()))
        .map_err(CaError::Rcgen)?;
    let der = super::pss::finish_request(csr.der().to_vec(), key.as_ref())?;
    Ok(super::pem::encode("CERTIFICATE REQUEST", &der))
}

/// Every certificate in a PEM text, DER, in order.
pub fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, ImportError> {
    let mut out = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| ImportError::Malformed(format!("not valid PEM: {e}")))?;
        if pem.label == "CERTIFICATE" {
            out.push(pem.contents);
        }
    }
    Ok(out)
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, ImportError> {
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| ImportError::Malformed(format!("a certificate cannot be parsed: {e}")))?;
    if !rest.is_empty() {
        return Err(ImportError::Malformed(
            "trailing bytes after a certificate".into(),
        ));
    }
    Ok(cert)
}

/// Checks `cert_der` (for the HSM key `key`, labelled `key_label`) against `chain_pem` at
/// time `now`; see the module docs for what is checked.
pub fn check_import(
    cert_der: &[u8],
    chain_pem: &str,
    key: &dyn KeyBackend,
    key_label: &str,
    now: UnixTime,
) -> Result<CheckedCa, ImportError> {
    let cert = parse(cert_der)?;
    match check_key_matches(cert_der, key) {
        Ok(()) => {}
        Err(CaError::KeyMismatch) => return Err(ImportError::KeyMismatch(key_label.to_owned())),
        Err(e) => return Err(ImportError::Malformed(e.to_string())),
    }
    check_ca(&cert, "the certificate", true)?;
    check_validity(&cert, "the certificate", now)?;

    let chain_der = pem_certificates(chain_pem)?;
    if chain_der.is_empty() {
        return Err(ImportError::Chain(
            "the chain file holds no certificate (give at least the root)".into(),
        ));
    }
    let chain = chain_der
        .iter()
        .map(|d| parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut child = &cert;
    for (i, parent) in chain.iter().enumerate() {
        let what = format!("chain certificate {} ({})", i + 1, parent.subject());
        check_ca(parent, &what, false)?;
        check_validity(parent, &what, now)?;
        // Path length: the CA certificates below `parent` (ours and the chain's before it).
        if let Ok(Some(bc)) = parent.basic_constraints()
            && let Some(max) = bc.value.path_len_constraint
            && u64::from(max) < i as u64 + 1
        {
            return Err(ImportError::Chain(format!(
                "{what} allows {max} CA certificate(s) below it, the chain puts {} there",
                i + 1
            )));
        }
        signed_by(child, parent).map_err(|why| {
            ImportError::Chain(format!(
                "{} is not signed by {what}: {why}",
                child.subject()
            ))
        })?;
        child = parent;
    }
    let root = child;
    if root.subject().as_raw() != root.issuer().as_raw() {
        return Err(ImportError::Chain(format!(
            "the chain ends with {}, which is not a self-signed root (issuer {})",
            root.subject(),
            root.issuer()
        )));
    }
    signed_by(root, root)
        .map_err(|why| ImportError::Chain(format!("the root's self-signature: {why}")))?;

    let chain_pem = chain_der
        .iter()
        .map(|d| super::pem::certificate(d))
        .collect::<String>();
    Ok(CheckedCa {
        der: cert_der.to_vec(),
        chain_pem,
        subject: cert.subject().to_string(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// basicConstraints CA:TRUE and keyUsage with keyCertSign (and cRLSign for certgate's own
/// CA, which signs CRLs); certgate's own CA also needs a subject key identifier.
fn check_ca(cert: &X509Certificate<'_>, what: &str, ours: bool) -> Result<(), ImportError> {
    let not_ca = |m: String| ImportError::NotCa(format!("{what} {m}"));
    let bc = cert
        .basic_constraints()
        .map_err(|_| not_ca("has a duplicated basicConstraints".into()))?
        .ok_or_else(|| not_ca("has no basicConstraints".into()))?;
    if !bc.value.ca {
        return Err(not_ca("says CA:FALSE".into()));
    }
    let ku = cert
        .key_usage()
        .map_err(|_| not_ca("has a duplicated keyUsage".into()))?
        .ok_or_else(|| not_ca("has no keyUsage".into()))?;
    if !ku.value.key_cert_sign() {
        return Err(not_ca("lacks keyUsage keyCertSign".into()));
    }
    if ours {
        if !ku.value.crl_sign() {
            return Err(not_ca("lacks keyUsage cRLSign".into()));
        }
        let has_ski = cert.extensions().iter().any(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::SubjectKeyIdentifier(_)
            )
        });
        if !has_ski {
            return Err(not_ca("has no subjectKeyIdentifier".into()));
        }
    }
    Ok(())
}

fn check_validity(
    cert: &X509Certificate<'_>,
    what: &str,
    now: UnixTime,
) -> Result<(), ImportError> {
    let v = cert.validity();
    if now < v.not_before.timestamp() {
        return Err(ImportError::Validity(format!(
            "{what} is not valid before {}",
            v.not_before
        )));
    }
    if now > v.not_after.timestamp() {
        return Err(ImportError::Validity(format!(
            "{what} expired on {}",
            v.not_after
        )));
    }
    Ok(())
}

/// The check for an RSASSA-PSS signature (a root or CA that signs like certgate's own PSS
/// keys, see `ca::pss`): SHA-256/384/512 with MGF1 of the same hash and a salt as long as
/// the hash, the combinations aws-lc-rs verifies. `None` for other algorithms.
fn rsa_pss(
    id: &x509_parser::x509::AlgorithmIdentifier<'_>,
) -> Result<Option<&'static dyn aws_lc_rs::signature::VerificationAlgorithm>, String> {
    use x509_parser::oid_registry::{
        OID_NIST_HASH_SHA256, OID_NIST_HASH_SHA384, OID_NIST_HASH_SHA512, OID_PKCS1_RSASSAPSS,
    };
    use x509_parser::signature_algorithm::SignatureAlgorithm;
    if id.algorithm != OID_PKCS1_RSASSAPSS {
        return Ok(None);
    }
    let unsupported =
        || "an RSASSA-PSS signature with parameters certgate does not check".to_owned();
    let Ok(SignatureAlgorithm::RSASSA_PSS(params)) = SignatureAlgorithm::try_from(id) else {
        return Err(unsupported());
    };
    let hash = params.hash_algorithm_oid();
    let mgf = params.mask_gen_algorithm().map_err(|_| unsupported())?;
    if mgf.hash != *hash || params.trailer_field() != 1 {
        return Err(unsupported());
    }
    use aws_lc_rs::signature as s;
    let alg: &'static dyn aws_lc_rs::signature::VerificationAlgorithm =
        match (hash, params.salt_length()) {
            (h, 32) if *h == OID_NIST_HASH_SHA256 => &s::RSA_PSS_2048_8192_SHA256,
            (h, 48) if *h == OID_NIST_HASH_SHA384 => &s::RSA_PSS_2048_8192_SHA384,
            (h, 64) if *h == OID_NIST_HASH_SHA512 => &s::RSA_PSS_2048_8192_SHA512,
            _ => return Err(unsupported()),
        };
    Ok(Some(alg))
}

/// Whether `child`'s signature verifies with `parent`'s key and names `parent` as issuer.
pub(super) fn signed_by(
    child: &X509Certificate<'_>,
    parent: &X509Certificate<'_>,
) -> Result<(), String> {
    if child.issuer().as_raw() != parent.subject().as_raw() {
        return Err(format!(
            "its issuer is {}, not {}",
            child.issuer(),
            parent.subject()
        ));
    }
    let spki = parent.public_key();
    let kind = csr::key_kind(spki).map_err(|e| e.to_string())?;
    let alg = match rsa_pss(&child.signature_algorithm)? {
        Some(pss) if matches!(kind, csr::ClientKeyKind::Rsa(_)) => pss,
        _ => csr::verification_algorithm(&child.signature_algorithm.algorithm, kind)
            .map_err(|e| e.to_string())?,
    };
    aws_lc_rs::signature::UnparsedPublicKey::new(alg, spki.subject_public_key.data.as_ref())
        .verify(
            child.tbs_certificate.as_ref(),
            child.signature_value.data.as_ref(),
        )
        .map_err(|_| "the signature does not verify".to_owned())
}
