//! The only code that talks to PKCS#11 (through cryptoki).
//!
//! One [`Hsm`] per process loads the module once, finds the token by label (slot numbers
//! change after token initialisation), logs in with the PIN from the environment or a file,
//! and keeps a pool of sessions. [`HsmKey`] implements [`crate::keys::KeyBackend`]: the CA
//! signs through it without ever seeing a cryptoki type. [`Pkcs11KeyStore`] is the token as
//! the seam's [`crate::keys::KeyStore`], built from `[hsm]` by [`open_key_store`]; the rest of
//! certgate reaches the token only through it. Key generation is a separate, operator-only
//! path ([`Hsm::generate_key`], the store's [`crate::keys::KeyGenerator`]).
//!
//! What this module must not do: retry a wrong PIN (a real HSM locks the token), log or echo
//! the PIN, or release a signature that does not verify.

mod asn1;
mod attributes;
mod ckr;
mod context;
mod context_login;
mod data_objects;
mod error;
mod info;
mod keepalive;
mod keygen;
mod mechanism;
mod objects;
mod pool;
mod session;
mod signer;
mod store;
mod token;

pub use attributes::KeyAttributes;
pub use error::HsmError;
pub use info::{AlgorithmSupport, KeyUri, MechanismSupport, ModuleInfo, TokenInfo, inspect};
pub use objects::ListedKey;
pub use store::{Pkcs11KeyStore, open_key_store};

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ContextLogin, EcdsaMechanism, RsaSignature, Secret};
use crate::keys::{KeyAlgorithm, KeyBackend, SignError};

use context::Context;
use pool::{OpError, Pool};
use signer::{SignFailure, Signer};
use token::TokenMatch;

/// What is needed to open a token.
#[derive(Debug, Clone)]
pub struct HsmSettings {
    /// Path of the PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// Label of the token holding the CA key.
    pub token_label: String,
    /// The token's URI when configured so: its manufacturer, model and serial (when given)
    /// must match as well as the label.
    pub token_uri: Option<crate::config::Pkcs11Uri>,
    /// The user PIN.
    pub pin: Secret,
    /// How many sessions to keep open for signing: the most ever open at once.
    pub sessions: usize,
    /// Seconds between touches of the idle sessions; 0: none.
    pub keepalive_secs: u64,
    /// Which ECDSA mechanism EC keys sign with.
    pub ecdsa_mechanism: EcdsaMechanism,
    /// Which signature scheme RSA keys sign with (PKCS#1 v1.5 or PSS).
    pub rsa_signature: RsaSignature,
    /// When a signature makes a context-specific login (`CKA_ALWAYS_AUTHENTICATE` keys).
    pub context_login: ContextLogin,
    /// Keys generated here get `CKA_ALWAYS_AUTHENTICATE`.
    pub key_always_authenticate: bool,
}

/// An open PKCS#11 module with a logged-in session pool on one token.
#[derive(Debug, Clone)]
pub struct Hsm {
    inner: Arc<HsmInner>,
}

#[derive(Debug)]
struct HsmInner {
    module: PathBuf,
    pool: Pool,
    ecdsa_mechanism: EcdsaMechanism,
    rsa_signature: RsaSignature,
    context_login: ContextLogin,
    key_always_authenticate: bool,
    /// Dropped with the last handle, which stops the keep-alive thread.
    _keepalive: Option<keepalive::Stop>,
}

/// A fixed message signed when a key is opened, to prove that its public key object belongs
/// to its private key.
const KEY_CHECK_MESSAGE: &[u8] = b"certgate: does the public key match the private key?";

impl Hsm {
    /// Loads the module (once per process), finds the token by label and logs in. Blocking.
    ///
    /// Login state belongs to the process, not the session: if this process is already
    /// logged in to the token, the PIN is not checked again.
    pub fn open(settings: &HsmSettings) -> Result<Self, HsmError> {
        let ctx = Context::get(&settings.module)?;
        let pool = Pool::open(
            ctx,
            TokenMatch::new(&settings.token_label, settings.token_uri.as_ref()),
            settings.pin.clone(),
            settings.sessions,
        )?;
        tracing::info!(token = %settings.token_label, sessions = settings.sessions.max(1),
            keepalive_secs = settings.keepalive_secs, "logged in to the token");
        let inner = Arc::new_cyclic(|weak| HsmInner {
            module: settings.module.clone(),
            pool,
            ecdsa_mechanism: settings.ecdsa_mechanism,
            rsa_signature: settings.rsa_signature,
            context_login: settings.context_login,
            key_always_authenticate: settings.key_always_authenticate,
            _keepalive: keepalive::start(settings.keepalive_secs, weak.clone()),
        });
        Ok(Self { inner })
    }

    /// Opens the private key labelled `label` (with its public key) as a signer; see
    /// [`Hsm::key_with_id`].
    pub fn key(&self, label: &str) -> Result<HsmKey, HsmError> {
        self.key_with_id(label, None)
    }

    /// Opens the private key labelled `label`, and with `CKA_ID` `id` when given (a key URI's
    /// `id=`), as a signer.
    /// `KeyNotFound` when absent; `UnsafeKey` when it is extractable or not sensitive (or
    /// otherwise unfit, see [`KeyAttributes::unsafe_reason`]), or when its public key object
    /// does not match it; `UnsupportedKey` for other curves and sizes.
    pub fn key_with_id(&self, label: &str, id: Option<&[u8]>) -> Result<HsmKey, HsmError> {
        let (key, spki, epoch) = self.inner.pool.run(|session, attempt| {
            let key = objects::read_private_key(session, label, id)?;
            if let Some(reason) = key.attributes.unsafe_reason() {
                return Err(HsmError::UnsafeKey {
                    label: label.to_owned(),
                    reason,
                }
                .into());
            }
            let algorithm = key
                .attributes
                .algorithm
                .ok_or_else(|| HsmError::UnsupportedKey {
                    label: label.to_owned(),
                    reason: "not an EC P-256/P-384 or RSA 2048/3072 key".into(),
                })?;
            let spki = objects::public_key_der(session, &key, algorithm)?;
            Ok((key, spki, attempt.epoch))
        })?;
        if let Some(warning) = key.attributes.history_warning() {
            tracing::warn!(label, warning, "CA key history");
        }
        let algorithm = key
            .attributes
            .algorithm
            .ok_or_else(|| HsmError::UnsupportedKey {
                label: label.to_owned(),
                reason: "unknown algorithm".into(),
            })?;
        // The token knows the key type only; how an RSA key signs is the configuration's.
        let algorithm = match self.inner.rsa_signature {
            RsaSignature::Pss => algorithm.with_pss(),
            RsaSignature::Pkcs1 => algorithm,
        };
        if algorithm.is_rsa() {
            tracing::info!(label, algorithm = %algorithm, "RSA key signs as");
        }
        let ecdsa = self.ecdsa_signing(label, algorithm)?;
        if mechanism::hashing_mechanism(algorithm).is_some() {
            tracing::info!(label, setting = self.inner.ecdsa_mechanism.as_str(),
                mechanism = %mechanism::describe(algorithm, ecdsa), "EC key signs with");
        }
        let login = context_login::KeyLogin {
            setting: self.inner.context_login,
            attribute: key.attributes.always_authenticate,
        };
        if login.per_signature() {
            tracing::info!(
                label,
                always_authenticate = login.attribute,
                setting = login.setting.as_str(),
                "the key signs after a context-specific login, one per signature"
            );
        }
        let hsm_key = HsmKey {
            inner: Arc::new(KeyInner {
                hsm: self.clone(),
                signer: Signer::new(
                    label.to_owned(),
                    key.id,
                    algorithm,
                    spki,
                    (epoch, key.handle),
                    ecdsa,
                    login,
                ),
            }),
        };
        match hsm_key.sign_checked(KEY_CHECK_MESSAGE) {
            Ok(_) => Ok(hsm_key),
            Err(SignFailure::BadSignature) => Err(HsmError::UnsafeKey {
                label: label.to_owned(),
                reason: "its public key object does not match the private key".into(),
            }),
            Err(SignFailure::Hsm(e)) => Err(e),
        }
    }

    /// How an EC key of `algorithm` signs on this token (decided once, when the key is
    /// opened); RSA keys are given `Raw`, which their signer ignores.
    fn ecdsa_signing(
        &self,
        label: &str,
        algorithm: KeyAlgorithm,
    ) -> Result<mechanism::EcdsaSigning, HsmError> {
        let Some(hashing) = mechanism::hashing_mechanism(algorithm) else {
            return Ok(mechanism::EcdsaSigning::Raw);
        };
        let setting = self.inner.ecdsa_mechanism;
        // With "raw" the token's list does not matter: no need to ask.
        let offered =
            setting != EcdsaMechanism::Raw && self.inner.pool.offers_for_signing(hashing)?;
        mechanism::choose_ecdsa(setting, offered).map_err(|reason| HsmError::UnsupportedKey {
            label: label.to_owned(),
            reason: reason.to_owned(),
        })
    }

    /// Generates a key pair inside the token: token object, private, sensitive, never
    /// extractable, no decrypt/unwrap/derive; with `CKA_ALWAYS_AUTHENTICATE` when the
    /// settings say `key_always_authenticate`. Refuses (`KeyExists`) when the label is taken.
    pub fn generate_key(&self, label: &str, algorithm: KeyAlgorithm) -> Result<HsmKey, HsmError> {
        self.generate_key_with_id(label, algorithm, None)
    }

    /// Like [`Hsm::generate_key`], with the `CKA_ID` `id` instead of a random one when given.
    pub fn generate_key_with_id(
        &self,
        label: &str,
        algorithm: KeyAlgorithm,
        id: Option<&[u8]>,
    ) -> Result<HsmKey, HsmError> {
        // A key that could not sign under `[hsm] ecdsa_mechanism` is not made at all, nor
        // one asking for a padding `[hsm] rsa_signature` would not give it.
        self.ecdsa_signing(label, algorithm)?;
        let pss_configured = self.inner.rsa_signature == RsaSignature::Pss;
        if algorithm.is_pss() && !pss_configured {
            return Err(HsmError::UnsupportedKey {
                label: label.to_owned(),
                reason: format!(
                    "{algorithm} asks for RSASSA-PSS, but [hsm] rsa_signature = \"pkcs1\" \
                     (set rsa_signature = \"pss\" and key_algorithm = \"{}\")",
                    algorithm.key_type()
                ),
            });
        }
        let always_authenticate = self.inner.key_always_authenticate;
        self.inner.pool.with_rw_session(|session| {
            keygen::generate(session, label, algorithm, id, always_authenticate)
        })?;
        self.key_with_id(label, id)
    }

    /// The values of the private data objects labelled `label` (none before the first
    /// [`Hsm::write_data`]).
    pub fn read_data(&self, label: &str) -> Result<Vec<Vec<u8>>, HsmError> {
        self.inner
            .pool
            .run(|session, _| data_objects::read(session, label))
    }

    /// Replaces the private data object labelled `label` with one holding `value`.
    pub fn write_data(&self, label: &str, value: &[u8]) -> Result<(), HsmError> {
        self.inner
            .pool
            .with_rw_session(|session| data_objects::write(session, label, value))
    }

    /// Every private key on the token: its label, `CKA_ID` and `CKA_ALWAYS_AUTHENTICATE`, for
    /// `hsm info`.
    pub fn private_keys(&self) -> Result<Vec<ListedKey>, HsmError> {
        self.inner
            .pool
            .run(|session, _| objects::list_private_keys(session))
    }

    /// The attributes of the private key labelled `label` (and with `CKA_ID` `id`, if given).
    pub fn key_attributes(&self, label: &str) -> Result<KeyAttributes, HsmError> {
        self.key_attributes_with_id(label, None)
    }

    /// Like [`Hsm::key_attributes`], for the key with `CKA_ID` `id` when given.
    pub fn key_attributes_with_id(
        &self,
        label: &str,
        id: Option<&[u8]>,
    ) -> Result<KeyAttributes, HsmError> {
        self.inner
            .pool
            .run(|session, _| Ok(objects::read_private_key(session, label, id)?.attributes))
    }

    /// Whether a pooled session answers and is logged in; recovers a lost session on the way.
    pub fn health(&self) -> Result<(), HsmError> {
        // A session not logged in is treated like the library saying so: a new session and
        // login follow.
        self.inner
            .pool
            .run(|session, _| pool::touch(session).map_err(OpError::Call))
    }

    /// `[hsm] context_login` as this HSM was opened with it.
    pub fn context_login(&self) -> ContextLogin {
        self.inner.context_login
    }

    /// The module path this HSM was opened with.
    pub fn module(&self) -> &std::path::Path {
        &self.inner.module
    }

    /// Test support: the most sessions the pool has had open at once.
    #[doc(hidden)]
    pub fn sessions_peak_for_tests(&self) -> usize {
        self.inner.pool.counts().0
    }

    /// Test support: how many sessions the pool has opened since it was opened.
    #[doc(hidden)]
    pub fn sessions_opened_for_tests(&self) -> u64 {
        self.inner.pool.counts().1
    }

    /// Test support: how many context-specific logins (`CKU_CONTEXT_SPECIFIC`) were made.
    #[doc(hidden)]
    pub fn context_logins_for_tests(&self) -> u64 {
        self.inner.pool.context_logins()
    }

    /// Test support: touches the idle sessions now, as the keep-alive thread does; returns
    /// how many were found dead (and replaced).
    #[doc(hidden)]
    pub fn keep_alive_for_tests(&self) -> usize {
        self.inner.pool.keep_alive()
    }

    /// Test support: ends every session of the PKCS#11 library behind the pool's back, as a
    /// device reset would (cryptoki has no safe `C_CloseAllSessions`, so this finalises and
    /// re-initialises the library without telling the pool).
    #[doc(hidden)]
    pub fn close_all_sessions_for_tests(&self) {
        self.inner.pool.kill_sessions_for_tests();
    }
}

/// A CA private key in the token, usable for signing from any thread.
#[derive(Debug, Clone)]
pub struct HsmKey {
    inner: Arc<KeyInner>,
}

#[derive(Debug)]
struct KeyInner {
    hsm: Hsm,
    signer: Signer,
}

impl HsmKey {
    /// The key's `CKA_LABEL`.
    pub fn label(&self) -> &str {
        &self.inner.signer.label
    }

    /// The key's `CKA_ID`, hex.
    pub fn id_hex(&self) -> String {
        hex::encode(&self.inner.signer.id)
    }

    /// Test support: RSA signs with `CKM_RSA_PKCS` / `CKM_RSA_PKCS_PSS` over a hash computed
    /// in software from now on, the path of a token without the hashing mechanism.
    #[doc(hidden)]
    pub fn hash_rsa_in_software_for_tests(&self) {
        self.inner.signer.hash_rsa_in_software();
    }

    fn sign_checked(&self, message: &[u8]) -> Result<Vec<u8>, SignFailure> {
        self.inner.signer.sign(&self.inner.hsm.inner.pool, message)
    }
}

impl KeyBackend for HsmKey {
    fn algorithm(&self) -> KeyAlgorithm {
        self.inner.signer.algorithm
    }
    fn public_key_der(&self) -> &[u8] {
        &self.inner.signer.spki
    }
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_checked(message).map_err(SignError::from)
    }
    /// A session that answers is not enough: a token whose object store is gone still
    /// answers `C_GetSessionInfo`. Only a signature (verified) shows that the key signs, and
    /// it takes the signing path's recovery (a token put back is found again).
    fn health(&self) -> Result<(), SignError> {
        self.sign_checked(KEY_CHECK_MESSAGE)
            .map(|_| ())
            .map_err(SignError::from)
    }
    fn sessions(&self) -> Option<crate::keys::SessionUse> {
        Some(self.inner.hsm.inner.pool.usage())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync_clone<T: Send + Sync + Clone>() {}

    #[test]
    fn handles_cross_threads() {
        assert_send_sync_clone::<Hsm>();
        assert_send_sync_clone::<HsmKey>();
    }
}
