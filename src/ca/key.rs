//! rcgen signing through the key seam: [`RcgenKey`] lets rcgen build certificates and CRLs
//! with a [`KeyBackend`] (see [`crate::keys`]), so the CA never sees key material.
//!
//! What this module must not do: define key types of its own (they live in `keys`, which
//! `ca` re-exports) or reach a key store.

use crate::keys::{KeyAlgorithm, KeyBackend, subject_public_key_bits};

/// The rcgen signature algorithm a key of `algorithm` signs with. rcgen has no RSASSA-PSS:
/// a PSS key gets PKCS#1's, and what rcgen builds with it is a draft `ca::pss` signs.
pub fn rcgen_signature_algorithm(algorithm: KeyAlgorithm) -> &'static rcgen::SignatureAlgorithm {
    match algorithm {
        KeyAlgorithm::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyAlgorithm::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa2048Pss
        | KeyAlgorithm::Rsa3072Pss => &rcgen::PKCS_RSA_SHA256,
    }
}

/// Adapts a [`KeyBackend`] to rcgen's signing interface. For a PSS key it does not sign:
/// rcgen's output is then a draft with an empty signature, which only
/// [`super::pss::finish_certificate`] / [`super::pss::finish_request`] turn into a signed
/// object (the key signs once, with the right AlgorithmIdentifier in the signed bytes).
#[derive(Debug, Clone)]
pub struct RcgenKey(pub std::sync::Arc<dyn KeyBackend>);

impl rcgen::PublicKeyData for RcgenKey {
    fn der_bytes(&self) -> &[u8] {
        subject_public_key_bits(self.0.public_key_der()).unwrap_or_default()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        rcgen_signature_algorithm(self.0.algorithm())
    }
}

impl rcgen::SigningKey for RcgenKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        if self.0.algorithm().is_pss() {
            return Ok(Vec::new());
        }
        self.0.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}
