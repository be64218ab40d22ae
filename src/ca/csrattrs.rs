//! The CSR attributes EST announces at `csrattrs` (RFC 7030 §4.5.2), built with the `der`
//! types from what this CA certifies: the preferred client key (EC P-256, the key the
//! browser flow makes too) and the signature algorithm for its request. `csr::check`
//! accepts every other key it lists in its error message; announcing the preferred one is
//! what a device client needs to pick a key it will not be refused for.
//!
//! ```text
//! CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID
//! AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }
//! ```

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5912;
use der::asn1::SetOfVec;
use der::{Any, Encode};
use x509_cert::attr::Attribute;

use super::CaError;
use super::csr::ClientKeyKind;

/// The key a client should make: the first kind `csr::check` accepts.
pub const PREFERRED_KEY: ClientKeyKind = ClientKeyKind::EcP256;

/// `(key algorithm, its parameter, signature algorithm)` announced for a key kind; RSA has
/// no curve and is announced by its algorithm alone.
fn announcement(
    kind: ClientKeyKind,
) -> (ObjectIdentifier, Option<ObjectIdentifier>, ObjectIdentifier) {
    match kind {
        ClientKeyKind::EcP256 => (
            rfc5912::ID_EC_PUBLIC_KEY,
            Some(rfc5912::SECP_256_R_1),
            rfc5912::ECDSA_WITH_SHA_256,
        ),
        ClientKeyKind::EcP384 => (
            rfc5912::ID_EC_PUBLIC_KEY,
            Some(rfc5912::SECP_384_R_1),
            rfc5912::ECDSA_WITH_SHA_384,
        ),
        ClientKeyKind::Rsa(_) => (
            rfc5912::RSA_ENCRYPTION,
            None,
            rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
        ),
    }
}

/// The DER `CsrAttrs` for the preferred key: the signature algorithm as an OID, the key
/// type as an attribute whose value is the curve.
pub fn csr_attributes() -> Result<Vec<u8>, CaError> {
    let (key, param, signature) = announcement(PREFERRED_KEY);
    let mut items: Vec<Any> = vec![Any::encode_from(&signature).map_err(encoding)?];
    let mut values = SetOfVec::new();
    if let Some(param) = param {
        values
            .insert(Any::encode_from(&param).map_err(encoding)?)
            .map_err(encoding)?;
    }
    let attribute = Attribute { oid: key, values };
    items.push(Any::encode_from(&attribute).map_err(encoding)?);
    items.to_der().map_err(encoding)
}

fn encoding(e: der::Error) -> CaError {
    CaError::Profile(format!("cannot encode the CSR attributes: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode, Tag, Tagged};

    /// The announced attributes, read back with the `der` types.
    fn parsed() -> (ObjectIdentifier, Attribute) {
        let der = csr_attributes().unwrap();
        let items = Vec::<Any>::from_der(&der).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].tag(), Tag::ObjectIdentifier);
        assert_eq!(items[1].tag(), Tag::Sequence);
        (items[0].decode_as().unwrap(), items[1].decode_as().unwrap())
    }

    #[test]
    fn csrattrs_is_valid_der_naming_p256_and_ecdsa_sha256() {
        let (signature, attribute) = parsed();
        assert_eq!(signature, rfc5912::ECDSA_WITH_SHA_256);
        assert_eq!(attribute.oid, rfc5912::ID_EC_PUBLIC_KEY);
        let curves: Vec<ObjectIdentifier> = attribute
            .values
            .iter()
            .map(|v| v.decode_as().unwrap())
            .collect();
        assert_eq!(curves, vec![rfc5912::SECP_256_R_1]);
    }

    /// A request made as announced is one the CA accepts, of the announced kind.
    #[test]
    fn a_request_made_as_announced_is_accepted() {
        let (signature, _) = parsed();
        assert_eq!(signature, rfc5912::ECDSA_WITH_SHA_256);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let csr = params.serialize_request(&key).unwrap();
        let checked = super::super::csr::check(csr.der()).unwrap();
        assert_eq!(checked.key_kind, PREFERRED_KEY);
    }

    /// `openssl asn1parse` (a real process) reads every byte: a wrong length anywhere makes
    /// it stop with "too long" and exit non-zero.
    #[test]
    fn openssl_asn1parse_reads_csrattrs() {
        let der = csr_attributes().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("csrattrs.der");
        std::fs::write(&file, &der).unwrap();
        let out = match std::process::Command::new("openssl")
            .args(["asn1parse", "-inform", "DER", "-in"])
            .arg(&file)
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                assert!(std::env::var("CI").is_err(), "openssl is needed: {e}");
                eprintln!("SKIPPED: openssl is not installed");
                return;
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("ecdsa-with-SHA256"), "{text}");
        assert!(text.contains("id-ecPublicKey"), "{text}");
        assert!(text.contains("prime256v1"), "{text}");
        assert!(!text.contains("error"), "{text}");
    }
}
