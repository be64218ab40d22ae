//! The only code that talks to PKCS#11 (through cryptoki).
//!
//! One [`Hsm`] per process loads the module once, finds the token by label (slot numbers
//! change after token initialisation), logs in with the PIN from the environment or a file,
//! and keeps a pool of sessions. [`HsmKey`] implements [`crate::ca::KeyBackend`]: the CA
//! signs through it without ever seeing a cryptoki type. Key generation is a separate,
//! operator-only path ([`Hsm::generate_key`]).
//!
//! What this module must not do: retry a wrong PIN (a real HSM locks the token), log or echo
//! the PIN, or release a signature that does not verify.

mod error;

pub use error::HsmError;

use std::path::PathBuf;
use std::sync::Arc;

use crate::ca::{KeyAlgorithm, KeyBackend, SignError};
use crate::config::Secret;

/// What is needed to open a token.
#[derive(Debug, Clone)]
pub struct HsmSettings {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Label of the token holding the CA key.
    pub token_label: String,
    /// The user PIN.
    pub pin: Secret,
    /// How many sessions to keep open for signing.
    pub sessions: usize,
}

/// Security-relevant attributes of a private key object, as the token reports them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyAttributes {
    pub label: String,
    pub id_hex: String,
    pub algorithm: Option<KeyAlgorithm>,
    pub token: bool,
    pub private: bool,
    pub sensitive: bool,
    pub always_sensitive: bool,
    pub extractable: bool,
    pub never_extractable: bool,
    pub local: bool,
    pub decrypt: bool,
    pub unwrap: bool,
    pub derive: bool,
}

impl KeyAttributes {
    /// Why this key must not be used as a CA key, if it must not.
    pub fn unsafe_reason(&self) -> Option<String> {
        todo!()
    }
}

/// An open PKCS#11 module with a logged-in session pool on one token.
#[derive(Debug, Clone)]
pub struct Hsm {
    _private: Arc<()>,
}

#[allow(unused_variables)]
impl Hsm {
    /// Loads the module, finds the token by label and logs in. Blocking.
    pub fn open(settings: &HsmSettings) -> Result<Self, HsmError> {
        todo!()
    }
    /// Opens the private key labelled `label` (with its public key) as a signer.
    /// `KeyNotFound` when absent; `UnsafeKey` when it is extractable or not sensitive.
    pub fn key(&self, label: &str) -> Result<HsmKey, HsmError> {
        todo!()
    }
    /// Generates a key pair inside the token: token object, private, sensitive, never
    /// extractable, no decrypt/unwrap/derive. Refuses (`KeyExists`) when the label is taken.
    pub fn generate_key(&self, label: &str, algorithm: KeyAlgorithm) -> Result<HsmKey, HsmError> {
        todo!()
    }
    /// The attributes of the private key labelled `label`.
    pub fn key_attributes(&self, label: &str) -> Result<KeyAttributes, HsmError> {
        todo!()
    }
}

/// A CA private key in the token, usable for signing from any thread.
#[derive(Debug, Clone)]
pub struct HsmKey {
    _private: Arc<()>,
}

impl KeyBackend for HsmKey {
    fn algorithm(&self) -> KeyAlgorithm {
        todo!()
    }
    fn public_key_der(&self) -> &[u8] {
        todo!()
    }
    fn sign(&self, _message: &[u8]) -> Result<Vec<u8>, SignError> {
        todo!()
    }
    fn health(&self) -> Result<(), SignError> {
        todo!()
    }
}
