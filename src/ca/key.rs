//! The seam between the CA and whatever holds its private key.
//!
//! The CA never sees key material: it asks a [`KeyBackend`] for the public key and for
//! signatures. The PKCS#11 backend in [`crate::hsm`] is the production implementation; tests
//! may use a software key, but the real path is exercised against SoftHSM2.

use std::fmt;

/// Key types the CA key may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signing with SHA-256 (the default).
    EcP256,
    /// ECDSA on NIST P-384, signing with SHA-384.
    EcP384,
    /// RSA 2048-bit, PKCS#1 v1.5 with SHA-256.
    Rsa2048,
    /// RSA 3072-bit, PKCS#1 v1.5 with SHA-256.
    Rsa3072,
}

impl KeyAlgorithm {
    /// The name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcP256 => "ec-p256",
            Self::EcP384 => "ec-p384",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
        }
    }

    /// The signature algorithm this key signs with.
    pub fn signature_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::Rsa2048 | Self::Rsa3072 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// The aws-lc-rs verification algorithm matching [`Self::signature_algorithm`], used to
    /// check every signature in software before it is released.
    pub fn verification_algorithm(
        self,
    ) -> &'static dyn aws_lc_rs::signature::VerificationAlgorithm {
        match self {
            Self::EcP256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            Self::EcP384 => &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1,
            Self::Rsa2048 | Self::Rsa3072 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ec-p256" => Ok(Self::EcP256),
            "ec-p384" => Ok(Self::EcP384),
            "rsa-2048" => Ok(Self::Rsa2048),
            "rsa-3072" => Ok(Self::Rsa3072),
            other => Err(format!(
                "unknown key algorithm {other:?}: expected ec-p256, ec-p384, rsa-2048 or rsa-3072"
            )),
        }
    }
}

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
/// [`KeyBackend::public_key_der`] before returning it.
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

/// Adapts a [`KeyBackend`] to rcgen's signing interface.
#[derive(Debug, Clone)]
pub struct RcgenKey(pub std::sync::Arc<dyn KeyBackend>);

impl rcgen::PublicKeyData for RcgenKey {
    fn der_bytes(&self) -> &[u8] {
        subject_public_key_bits(self.0.public_key_der()).unwrap_or_default()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.0.algorithm().signature_algorithm()
    }
}

impl rcgen::SigningKey for RcgenKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}
