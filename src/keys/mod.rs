//! The key seam: everything the rest of certgate knows about keys, and nothing about where
//! they live.
//!
//! - [`KeyBackend`]: one private key that signs (public key, sign, health). The CA, the OCSP
//!   responder and the audit checkpoints sign through it and never see key material.
//! - [`KeyStore`]: where keys live: open a key by name ([`KeyRef`]), describe a key or the
//!   store, health. [`KeyGenerator`] is the separate power to create keys, used only by the
//!   operator's ceremony commands. Failures are [`KeyStoreError`]s: not found, already
//!   exists, unavailable (may pass) or unusable (needs an operator).
//! - [`KeyAlgorithm`], [`SignError`], [`verify_signature`]: the shared vocabulary.
//!
//! PKCS#11 (`crate::hsm`) is the one implementation today. A new kind of store (a cloud KMS)
//! is one new folder implementing [`KeyStore`] and [`KeyBackend`], chosen from the
//! configuration where the application is put together (docs/architecture.md).
//!
//! What this module must not do: import any other part of certgate (it is the lowest layer),
//! or name a particular store's types.

mod algorithm;
mod backend;
mod observed;
mod store;

pub use algorithm::KeyAlgorithm;
pub use backend::{KeyBackend, SessionUse, SignError, subject_public_key_bits, verify_signature};
pub use observed::{ObservedKey, SignObserver};
pub use store::{
    AnchorStore, Cause, KeyDescription, KeyGenerator, KeyRef, KeyStore, KeyStoreError,
    StoreDescription,
};
