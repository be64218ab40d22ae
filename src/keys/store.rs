//! Where keys live: the [`KeyStore`] that opens, describes and (through [`KeyGenerator`])
//! creates keys, how a key is named ([`KeyRef`]), and why a store refused
//! ([`KeyStoreError`]).
//!
//! What this module must not do: name a particular store's types (PKCS#11 objects, slots,
//! attributes): each store speaks of itself through [`StoreDescription`] and
//! [`KeyDescription`].

use std::fmt;
use std::sync::Arc;

use super::{KeyAlgorithm, KeyBackend};

/// How a key is named in its store. Today by label (PKCS#11 `CKA_LABEL`); an RFC 7512
/// `pkcs11:` URI (`pkcs11:object=certgate-ca;id=%01;type=private`) becomes a variant of its
/// own, and each store refuses the kinds of name it cannot resolve as `Unusable`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyRef {
    /// The key's label, as `[hsm] key_label` and the store's CA records name it.
    Label(String),
}

impl KeyRef {
    /// A key named by its label.
    pub fn label(label: impl Into<String>) -> Self {
        Self::Label(label.into())
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Label(label) => f.write_str(label),
        }
    }
}

/// What a store reports as the cause of a refusal, in its own words.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a key store refused. The variant tells the caller what to do next; the message (and
/// the chain behind it) is the store's own, for the operator.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// No key answers to the name.
    #[error(transparent)]
    NotFound(Cause),
    /// A key with this name exists already; a store never replaces one.
    #[error(transparent)]
    AlreadyExists(Cause),
    /// The store cannot answer now and may later by itself (session lost, token removed,
    /// device busy, network).
    #[error(transparent)]
    Unavailable(Cause),
    /// The store will not serve until an operator acts (wrong PIN, locked token, a key that
    /// is unsafe or of a kind the CA does not use, a name it cannot resolve).
    #[error(transparent)]
    Unusable(Cause),
}

/// A place that holds CA keys: a PKCS#11 token today, a cloud KMS later. Opening a key
/// checks it is fit to be a CA key; the private key never leaves the store.
///
/// Calls block (PKCS#11 is synchronous): async callers run them in `spawn_blocking`.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// Opens `key` as a signer: kept in the store and unreadable, allowed to sign only, its
    /// public key proven to belong to it by a trial signature. `NotFound` when absent,
    /// `Unusable` when it exists but is unfit.
    fn open(&self, key: &KeyRef) -> Result<Arc<dyn KeyBackend>, KeyStoreError>;

    /// Describes `key` without signing with it, also when it is unfit. `NotFound` when
    /// absent.
    fn describe_key(&self, key: &KeyRef) -> Result<KeyDescription, KeyStoreError>;

    /// Describes the store: what it runs on and what it offers for each key algorithm.
    fn describe(&self) -> Result<StoreDescription, KeyStoreError>;

    /// Whether the store answers now (for signing readiness ask the key: its
    /// [`KeyBackend::health`]).
    fn health(&self) -> Result<(), KeyStoreError>;

    /// Key generation, when certgate may create keys in this store (the key ceremony:
    /// `init`, `hsm keygen`, `ca rollover`). A store that only lends existing keys has none.
    fn generator(&self) -> Option<&dyn KeyGenerator> {
        None
    }

    /// Small values kept beside the keys, out of the database's reach (the audit anchor),
    /// when the store can keep them.
    fn anchors(&self) -> Option<&dyn AnchorStore> {
        None
    }
}

/// Named small values in a key store (PKCS#11: private `CKO_DATA` objects). Whoever holds
/// only the database's credentials can neither read nor change them.
///
/// Calls block, like the rest of the store.
pub trait AnchorStore: Send + Sync {
    /// Every value stored under `name`: none before the first write, and more than one only
    /// when a replacement was interrupted (the caller chooses the newest).
    fn read_anchor(&self, name: &str) -> Result<Vec<Vec<u8>>, KeyStoreError>;

    /// Replaces the value stored under `name`.
    fn write_anchor(&self, name: &str, value: &[u8]) -> Result<(), KeyStoreError>;
}

/// The power to create keys in a store, kept apart from [`KeyStore`]: the online service
/// only opens keys; only the operator's ceremony commands create them.
pub trait KeyGenerator: Send + Sync {
    /// Generates `key` inside the store, fit to be a CA key from birth (never readable,
    /// never extractable, signing only), and opens it as [`KeyStore::open`] does.
    /// `AlreadyExists` when the name is taken.
    fn generate(
        &self,
        key: &KeyRef,
        algorithm: KeyAlgorithm,
    ) -> Result<Arc<dyn KeyBackend>, KeyStoreError>;
}

/// What a store says about itself (`certgate hsm info`), in its own terms: for PKCS#11 the
/// module, its slots and tokens, and the mechanisms each key algorithm needs.
#[derive(Debug, Clone)]
pub struct StoreDescription {
    /// The whole description, for `--json`.
    pub details: serde_json::Value,
    /// The same for people: lines of text, each ending in a newline.
    pub text: String,
}

/// What a store says about one key: whether it is fit to be a CA key, and the facts that
/// decided it.
#[derive(Debug, Clone)]
pub struct KeyDescription {
    /// The name it was asked for.
    pub key: KeyRef,
    /// The store's own identifier of the key, hex (PKCS#11 `CKA_ID`).
    pub id_hex: String,
    /// The algorithm, when it is one the CA supports.
    pub algorithm: Option<KeyAlgorithm>,
    /// The yes/no properties that decide fitness, in the store's terms and the order to
    /// show them (PKCS#11: `sensitive`, `extractable`, ...).
    pub properties: Vec<(&'static str, bool)>,
    /// Why the key must not be a CA key, if it must not.
    pub unsafe_reason: Option<String>,
    /// A note for the operator when the key is fit now but was not always (imported).
    pub history_warning: Option<String>,
    /// Everything the store knows of the key, for `--json`.
    pub details: serde_json::Value,
}

impl KeyDescription {
    /// Fit to be a CA key.
    pub fn is_safe(&self) -> bool {
        self.unsafe_reason.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("no key labelled {0:?} in the token")]
    struct Missing(String);

    #[test]
    fn an_error_speaks_with_the_store_s_words_and_keeps_its_kind() {
        let e = KeyStoreError::NotFound(Box::new(Missing("ca".into())));
        assert_eq!(e.to_string(), "no key labelled \"ca\" in the token");
        assert!(matches!(e, KeyStoreError::NotFound(_)));
        // Transparent: the chain does not repeat the store's message.
        assert!(std::error::Error::source(&e).is_none());
    }

    #[test]
    fn a_label_shows_as_itself() {
        assert_eq!(KeyRef::label("certgate-ca").to_string(), "certgate-ca");
        assert_eq!(
            KeyRef::label("a"),
            KeyRef::Label("a".into()),
            "one name, one key"
        );
    }
}
