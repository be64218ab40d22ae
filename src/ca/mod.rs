//! The certificate authority: the CA certificate, client certificate profiles, CSR checks.
//!
//! Keys are reached only through [`KeyBackend`]; this module never touches PKCS#11. It
//! decides every field of an issued certificate itself: nothing of a CSR but its public key
//! reaches a certificate.

mod authority;
pub mod crl;
pub mod csr;
pub mod intermediate;
mod key;
pub mod ocsp;
pub mod pem;
pub mod pkcs7;
pub mod profile;
mod revocation;

pub use authority::{Authority, IssuancePolicy, IssuedCert, check_key_matches, self_signed_ca};
pub use csr::{CheckedCsr, ClientKeyKind, CsrError};
pub use key::{
    KeyAlgorithm, KeyBackend, RcgenKey, SignError, subject_public_key_bits, verify_signature,
};
pub use profile::ClientSubject;
pub use revocation::RevocationReason;

/// Why the CA could not produce a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The key could not sign.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// rcgen refused the parameters or the signature failed (see the key backend's log).
    #[error("certificate generation failed: {0}")]
    Rcgen(#[source] rcgen::Error),
    /// The CA certificate does not certify the key in the HSM.
    #[error("the CA certificate's public key is not the HSM key's public key")]
    KeyMismatch,
    /// The CA certificate cannot be parsed.
    #[error("the CA certificate cannot be parsed: {0}")]
    CaCert(String),
    /// The system random generator failed.
    #[error("the random number generator failed")]
    Random,
    /// A time outside what certificates can carry.
    #[error("time {0} cannot be encoded in a certificate")]
    Time(i64),
    /// A profile value cannot be encoded.
    #[error("{0}")]
    Profile(String),
}

/// Parses `CN=...,O=...` into rcgen's form.
pub fn parse_distinguished_name(s: &str) -> Result<rcgen::DistinguishedName, String> {
    let mut dn = rcgen::DistinguishedName::new();
    for part in s.split(',') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
        let ty = match k.trim().to_ascii_uppercase().as_str() {
            "CN" => rcgen::DnType::CommonName,
            "O" => rcgen::DnType::OrganizationName,
            "OU" => rcgen::DnType::OrganizationalUnitName,
            "C" => rcgen::DnType::CountryName,
            "L" => rcgen::DnType::LocalityName,
            "ST" => rcgen::DnType::StateOrProvinceName,
            other => {
                return Err(format!(
                    "unsupported attribute {other:?} (use CN, O, OU, C, L, ST)"
                ));
            }
        };
        let v = v.trim();
        if v.is_empty() {
            return Err(format!("{k} has an empty value"));
        }
        dn.push(ty, v);
    }
    if dn.get(&rcgen::DnType::CommonName).is_none() {
        return Err("a CN is required".into());
    }
    Ok(dn)
}
