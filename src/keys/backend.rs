//! One private key that signs: the [`KeyBackend`] the CA, the OCSP responder and the audit
//! checkpoints sign through, why a signature could not be made ([`SignError`]), and the
//! software check every signature passes before it is released.
//!
//! What this module must not do: know where a key lives (that is the store's business, see
//! [`super::KeyStore`]).

use std::fmt;

use super::KeyAlgorithm;

/// Why a signature could not be made. The split matters to callers: a temporary failure is
/// answered with 503 and retried later; a permanent one needs an operator.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The key store cannot sign right now (session lost, token absent, device error).
    #[error("the CA key is temporarily unavailable: {0}")]
    Unavailable(String),
    /// The key store will not sign until an operator acts (wrong PIN, key missing or unsafe).
    #[error("the CA key is unusable: {0}")]
    Unusable(String),
    /// The key store returned a signature that does not verify against the CA public key.
    #[error("the CA key produced a signature that does not verify; it was not released")]
    BadSignature,
}

/// A private key the CA can sign with. Implementations must verify each signature against
/// [`KeyBackend::public_key_der`] before returning it (see [`verify_signature`]).
///
/// Calls block (PKCS#11 is synchronous): async callers run them in `spawn_blocking`.
pub trait KeyBackend: Send + Sync + fmt::Debug {
    /// The key's algorithm.
    fn algorithm(&self) -> KeyAlgorithm;
    /// The DER `SubjectPublicKeyInfo` of the key.
    fn public_key_der(&self) -> &[u8];
    /// Signs `message` (the whole to-be-signed DER) and returns the signature in the form
    /// X.509 carries it: DER `ECDSA-Sig-Value` for EC, the raw PKCS#1 block for RSA.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
    /// Whether the backend can sign at this moment, with a reason when it cannot.
    fn health(&self) -> Result<(), SignError>;
    /// Its session pool's use, for backends that keep one (an HSM); `None` otherwise.
    fn sessions(&self) -> Option<SessionUse> {
        None
    }
}

/// A key store's sessions at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionUse {
    /// Sessions the pool may hold (`[hsm] sessions`).
    pub size: usize,
    /// Sessions open now, idle or in use.
    pub open: usize,
    /// Open sessions waiting for work.
    pub idle: usize,
    /// Operations retried after a lost session or login, and re-initialisations, since start.
    pub recoveries: u64,
}

/// Checks `signature` over `message` against the SubjectPublicKeyInfo `spki_der`.
pub fn verify_signature(
    algorithm: KeyAlgorithm,
    spki_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignError> {
    let raw = subject_public_key_bits(spki_der).ok_or(SignError::BadSignature)?;
    aws_lc_rs::signature::UnparsedPublicKey::new(algorithm.verification_algorithm(), raw)
        .verify(message, signature)
        .map_err(|_| SignError::BadSignature)
}

/// The BIT STRING contents of a DER SubjectPublicKeyInfo (the raw EC point or PKCS#1 key).
pub fn subject_public_key_bits(spki_der: &[u8]) -> Option<&[u8]> {
    use x509_parser::prelude::FromDer;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    match spki.subject_public_key.data {
        std::borrow::Cow::Borrowed(bits) => Some(bits),
        std::borrow::Cow::Owned(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_software_signature_verifies_and_a_changed_message_does_not() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).unwrap();
        let spki = pair.public_key().as_der().unwrap();
        let signature = pair.sign(&SystemRandom::new(), b"tbs").unwrap();
        let spki = spki.as_ref();
        verify_signature(KeyAlgorithm::EcP384, spki, b"tbs", signature.as_ref()).unwrap();
        assert!(matches!(
            verify_signature(KeyAlgorithm::EcP384, spki, b"tbz", signature.as_ref()),
            Err(SignError::BadSignature)
        ));
        assert!(matches!(
            verify_signature(KeyAlgorithm::EcP256, spki, b"tbs", signature.as_ref()),
            Err(SignError::BadSignature)
        ));
        assert!(subject_public_key_bits(b"not der").is_none());
    }
}
