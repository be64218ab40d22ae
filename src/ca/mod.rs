//! The certificate authority: the CA certificate, client certificate profiles, CSR checks.
//!
//! Keys are reached only through [`KeyBackend`]; this module never touches PKCS#11. It
//! decides every field of an issued certificate itself: nothing of a CSR but its public key
//! reaches a certificate.

mod key;

pub use key::{
    KeyAlgorithm, KeyBackend, RcgenKey, SignError, subject_public_key_bits, verify_signature,
};

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
