//! The PKCS#11 token as certgate's key store: [`Pkcs11KeyStore`] implements the seam's
//! [`KeyStore`] and [`KeyGenerator`] over an open [`Hsm`], [`open_key_store`] builds it from
//! `[hsm]`, and every [`HsmError`] becomes the seam's kind of failure here.
//!
//! What this module must not do: call cryptoki (the rest of `hsm` does), or judge a key
//! (`attributes` does).

use std::sync::Arc;

use super::info::KeyUri;
use super::{Hsm, HsmError, HsmSettings, KeyAttributes, info};
use crate::config::{Config, ObjectType, Pkcs11Uri};
use crate::keys::{
    AnchorStore, Cause, KeyAlgorithm, KeyBackend, KeyDescription, KeyGenerator, KeyRef, KeyStore,
    KeyStoreError, StoreDescription,
};

/// The token `[hsm]` names, logged in, as a [`KeyStore`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pkcs11KeyStore {
    hsm: Hsm,
    token_label: String,
    /// A key label and the `CKA_ID` its configured URI requires (`[hsm] key = "...;id=..."`).
    pinned_id: Option<(String, Vec<u8>)>,
}

/// Opens the token `[hsm]` names as the key store: reads the PIN from its configured source,
/// loads the module (once per process), finds the token by label and logs in. Blocking.
pub fn open_key_store(cfg: &Config) -> Result<Pkcs11KeyStore, KeyStoreError> {
    let settings = HsmSettings::from_config(cfg)?;
    let hsm = Hsm::open(&settings).map_err(|e| kind(&e)(Box::new(OpenFailed(e))))?;
    let mut store = Pkcs11KeyStore::new(hsm, settings.token_label);
    if let Some(id) = &cfg.hsm.key_id {
        store = store.with_key_id(&cfg.hsm.key_label, id);
    }
    Ok(store)
}

impl HsmSettings {
    /// The settings `[hsm]` gives, with the PIN read from its source (never from the file).
    pub fn from_config(cfg: &Config) -> Result<Self, KeyStoreError> {
        let unusable = |e: Cause| KeyStoreError::Unusable(e);
        let pin = cfg
            .hsm
            .pin_source()
            .map_err(|e| unusable(Box::new(e)))?
            .read("HSM PIN")
            .map_err(|e| unusable(Box::new(e)))?;
        Ok(Self {
            module: cfg.resolve(&cfg.hsm.module),
            token_label: cfg.hsm.token_label.clone(),
            token_uri: cfg.hsm.token_uri.clone(),
            pin,
            sessions: cfg.hsm.sessions,
            keepalive_secs: cfg.hsm.keepalive_secs,
            ecdsa_mechanism: cfg.hsm.ecdsa_mechanism,
            rsa_signature: cfg.hsm.rsa_signature,
            context_login: cfg.hsm.context_login,
            key_always_authenticate: cfg.hsm.key_always_authenticate,
        })
    }
}

/// Opening the token failed; the cause says why.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the HSM")]
struct OpenFailed(#[source] HsmError);

impl Pkcs11KeyStore {
    /// The key store of `hsm`, opened on the token labelled `token_label`.
    pub fn new(hsm: Hsm, token_label: impl Into<String>) -> Self {
        Self {
            hsm,
            token_label: token_label.into(),
            pinned_id: None,
        }
    }

    /// Requires the key labelled `label` to carry `CKA_ID` `id` (a key generated under the
    /// label gets it).
    pub fn with_key_id(mut self, label: &str, id: &[u8]) -> Self {
        self.pinned_id = Some((label.to_owned(), id.to_vec()));
        self
    }

    /// The `CKA_ID` required of the key labelled `label`, if any.
    fn id_for(&self, label: &str) -> Option<&[u8]> {
        self.pinned_id
            .as_ref()
            .filter(|(l, _)| l == label)
            .map(|(_, id)| id.as_slice())
    }

    /// The open token underneath (tests and benchmarks reach PKCS#11 details through it).
    pub fn hsm(&self) -> &Hsm {
        &self.hsm
    }
}

/// The label a key reference names. (An RFC 7512 URI will add its `object=` and `id=`.)
fn label_of(key: &KeyRef) -> &str {
    match key {
        KeyRef::Label(label) => label,
    }
}

/// The seam's kind of an HSM failure: a token that went away may come back by itself; a
/// wrong PIN, an unsafe key or an unknown failure needs an operator.
fn kind(e: &HsmError) -> fn(Cause) -> KeyStoreError {
    match e {
        HsmError::KeyNotFound(_) => KeyStoreError::NotFound,
        HsmError::KeyExists(_) => KeyStoreError::AlreadyExists,
        HsmError::Unavailable(_) | HsmError::TokenNotFound(_) => KeyStoreError::Unavailable,
        HsmError::Module { .. }
        | HsmError::PinIncorrect
        | HsmError::PinLocked
        | HsmError::UnsupportedKey { .. }
        | HsmError::UnsafeKey { .. }
        | HsmError::Pkcs11 { .. } => KeyStoreError::Unusable,
    }
}

impl From<HsmError> for KeyStoreError {
    fn from(e: HsmError) -> Self {
        kind(&e)(Box::new(e))
    }
}

/// A description's JSON; a failure here would be a bug in a `Serialize` derive.
fn json(value: &impl serde::Serialize) -> Result<serde_json::Value, KeyStoreError> {
    serde_json::to_value(value).map_err(|e| KeyStoreError::Unusable(Box::new(e)))
}

fn describe_attributes(key: &KeyRef, a: &KeyAttributes) -> Result<KeyDescription, KeyStoreError> {
    Ok(KeyDescription {
        key: key.clone(),
        id_hex: a.id_hex.clone(),
        algorithm: a.algorithm,
        properties: a.flags().to_vec(),
        unsafe_reason: a.unsafe_reason(),
        history_warning: a.history_warning().map(str::to_owned),
        details: json(a)?,
    })
}

impl KeyStore for Pkcs11KeyStore {
    fn open(&self, key: &KeyRef) -> Result<Arc<dyn KeyBackend>, KeyStoreError> {
        let label = label_of(key);
        Ok(Arc::new(self.hsm.key_with_id(label, self.id_for(label))?))
    }

    fn describe_key(&self, key: &KeyRef) -> Result<KeyDescription, KeyStoreError> {
        let label = label_of(key);
        describe_attributes(
            key,
            &self.hsm.key_attributes_with_id(label, self.id_for(label))?,
        )
    }

    fn describe(&self) -> Result<StoreDescription, KeyStoreError> {
        let mut module = info::inspect(
            self.hsm.module(),
            &self.token_label,
            self.hsm.inner.ecdsa_mechanism,
        )?;
        // The configured token is the one logged in: its private keys are visible.
        let keys = self.hsm.private_keys()?;
        if let Some(token) = module
            .tokens
            .iter_mut()
            .find(|t| t.label == self.token_label)
        {
            let setting = self.hsm.context_login();
            token.keys = keys
                .into_iter()
                .map(|key| KeyUri {
                    uri: Pkcs11Uri {
                        token: Some(self.token_label.clone()),
                        object: Some(key.label.clone()),
                        id: (!key.id.is_empty()).then_some(key.id),
                        object_type: Some(ObjectType::Private),
                        ..Default::default()
                    }
                    .to_string(),
                    label: key.label,
                    always_authenticate: key.always_authenticate,
                    context_login: super::context_login::KeyLogin {
                        setting,
                        attribute: key.always_authenticate,
                    }
                    .per_signature(),
                })
                .collect();
        }
        Ok(StoreDescription {
            details: json(&module)?,
            text: module.render(&self.token_label),
        })
    }

    fn health(&self) -> Result<(), KeyStoreError> {
        Ok(self.hsm.health()?)
    }

    fn generator(&self) -> Option<&dyn KeyGenerator> {
        Some(self)
    }

    fn anchors(&self) -> Option<&dyn AnchorStore> {
        Some(self)
    }
}

impl AnchorStore for Pkcs11KeyStore {
    fn read_anchor(&self, name: &str) -> Result<Vec<Vec<u8>>, KeyStoreError> {
        Ok(self.hsm.read_data(name)?)
    }

    fn write_anchor(&self, name: &str, value: &[u8]) -> Result<(), KeyStoreError> {
        Ok(self.hsm.write_data(name, value)?)
    }
}

impl KeyGenerator for Pkcs11KeyStore {
    fn generate(
        &self,
        key: &KeyRef,
        algorithm: KeyAlgorithm,
    ) -> Result<Arc<dyn KeyBackend>, KeyStoreError> {
        let label = label_of(key);
        Ok(Arc::new(self.hsm.generate_key_with_id(
            label,
            algorithm,
            self.id_for(label),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hsm_failure_has_the_kind_its_remedy_needs() {
        let cases = [
            (HsmError::KeyNotFound("ca".into()), "not found"),
            (HsmError::KeyExists("ca".into()), "exists"),
            (HsmError::TokenNotFound("t".into()), "unavailable"),
            (
                HsmError::Unavailable("CKR_DEVICE_ERROR".into()),
                "unavailable",
            ),
            (HsmError::PinIncorrect, "unusable"),
            (HsmError::PinLocked, "unusable"),
            (
                HsmError::UnsafeKey {
                    label: "ca".into(),
                    reason: "it is extractable".into(),
                },
                "unusable",
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            let got = KeyStoreError::from(e);
            let kind = match got {
                KeyStoreError::NotFound(_) => "not found",
                KeyStoreError::AlreadyExists(_) => "exists",
                KeyStoreError::Unavailable(_) => "unavailable",
                KeyStoreError::Unusable(_) => "unusable",
            };
            assert_eq!(kind, want, "{text}");
            assert_eq!(got.to_string(), text, "the HSM's words reach the operator");
        }
    }

    #[test]
    fn an_open_failure_says_so_before_its_cause() {
        let e = HsmError::TokenNotFound("certgate".into());
        let got: KeyStoreError = kind(&e)(Box::new(OpenFailed(e)));
        assert!(matches!(got, KeyStoreError::Unavailable(_)));
        assert_eq!(got.to_string(), "cannot open the HSM");
        let cause = std::error::Error::source(&got).map(ToString::to_string);
        assert_eq!(
            cause.as_deref(),
            Some("no token labelled \"certgate\" is present")
        );
    }
}
