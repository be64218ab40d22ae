//! Signing with a token key: hashing where the token cannot (SoftHSM lacks
//! `CKM_ECDSA_SHA256`, openCryptoki's soft token `CKM_SHA256_RSA_PKCS`; for EC keys the
//! choice is made once, see `mechanism`), the mechanism per algorithm (RSA: PKCS#1 v1.5 or
//! PSS with SHA-256, MGF1-SHA-256, 32-byte salt), raw `r‖s` to DER, and the software check
//! of every signature before it leaves (SoftHSMv2#901): a bad one is retried once, then
//! refused.
//!
//! A key with `CKA_ALWAYS_AUTHENTICATE` (see `context_login`) signs in three steps on one
//! session: `C_SignInit` and `C_Login(CKU_CONTEXT_SPECIFIC)` through cryptoki, then
//! `C_Sign` through `pkcs11_token_info` (cryptoki's single-part `sign` also initialises, so
//! nothing could go in between).
//!
//! What this module must not do: release a signature that does not verify, or keep an object
//! handle across a retry or a library re-initialisation.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use cryptoki::context::Function;
use cryptoki::error::{Rv, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;

use super::HsmError;
use super::asn1;
use super::ckr::call;
use super::context_login::KeyLogin;
use super::mechanism::EcdsaSigning;
use super::objects::find_private_key;
use super::pool::{OpError, Pool, touch};
use crate::keys::{KeyAlgorithm, SignError, verify_signature};

/// Why a signature was not released.
#[derive(Debug)]
pub(crate) enum SignFailure {
    Hsm(HsmError),
    /// Two signatures in a row did not verify against the public key.
    BadSignature,
}

impl From<SignFailure> for SignError {
    /// The edge to the CA: what may pass by itself is `Unavailable`, the rest `Unusable`.
    fn from(f: SignFailure) -> Self {
        match f {
            SignFailure::BadSignature => SignError::BadSignature,
            // A token that went away after start-up is an outage, not a configuration error.
            SignFailure::Hsm(e @ (HsmError::Unavailable(_) | HsmError::TokenNotFound(_))) => {
                SignError::Unavailable(e.to_string())
            }
            SignFailure::Hsm(e) => SignError::Unusable(e.to_string()),
        }
    }
}

/// A private key in the token and what is known of it.
pub(crate) struct Signer {
    pub(crate) label: String,
    pub(crate) id: Vec<u8>,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) spki: Vec<u8>,
    /// The key's object handle with the context epoch it belongs to.
    handle: Mutex<Option<(u64, ObjectHandle)>>,
    /// When the library was last re-initialised because the key was missing.
    last_reinit: Mutex<Option<Instant>>,
    /// Set when the token refused `CKM_SHA256_RSA_PKCS` (or `CKM_SHA256_RSA_PKCS_PSS` for a
    /// PSS key): RSA hashes in software from then on.
    rsa_hash_in_software: AtomicBool,
    /// How an EC key signs (ignored for RSA).
    ecdsa: EcdsaSigning,
    /// Whether each signature logs in for the key (`CKA_ALWAYS_AUTHENTICATE`).
    login: KeyLogin,
}

/// RSASSA-PSS as certgate writes it into every signed object: SHA-256, MGF1 with SHA-256,
/// a salt as long as the hash (RFC 4055 §3.1; `ca::pss` writes the matching
/// AlgorithmIdentifier, and aws-lc-rs checks with the same three).
const PSS_SHA256: PkcsPssParams = PkcsPssParams {
    hash_alg: MechanismType::SHA256,
    mgf: PkcsMgfType::MGF1_SHA256,
    s_len: cryptoki::types::Ulong::new(32),
};

/// Shortest time between two re-initialisations because the key went missing.
const MISSING_KEY_REINIT_EVERY: Duration = Duration::from_secs(5);

impl Signer {
    pub(crate) fn new(
        label: String,
        id: Vec<u8>,
        algorithm: KeyAlgorithm,
        spki: Vec<u8>,
        handle: (u64, ObjectHandle),
        ecdsa: EcdsaSigning,
        login: KeyLogin,
    ) -> Self {
        Self {
            label,
            id,
            algorithm,
            spki,
            handle: Mutex::new(Some(handle)),
            last_reinit: Mutex::new(None),
            rsa_hash_in_software: AtomicBool::new(false),
            ecdsa,
            login,
        }
    }

    /// Test support: RSA hashes in software from now on, as after the token refused its
    /// hashing mechanism (both test tokens offer `CKM_SHA256_RSA_PKCS_PSS`).
    pub(crate) fn hash_rsa_in_software(&self) {
        self.rsa_hash_in_software.store(true, Ordering::Relaxed);
    }

    /// Signs `message` and checks the signature in software; retries once on a bad one.
    pub(crate) fn sign(&self, pool: &Pool, message: &[u8]) -> Result<Vec<u8>, SignFailure> {
        let span = tracing::debug_span!(
            "hsm.sign",
            key = %self.label,
            algorithm = ?self.algorithm,
            error = tracing::field::Empty
        );
        let _in_span = span.enter();
        let signed = self.sign_verified(pool, message);
        if let Err(e) = &signed {
            let why = match e {
                SignFailure::Hsm(e) => e.to_string(),
                SignFailure::BadSignature => "the signature does not verify".to_owned(),
            };
            span.record("error", why);
        }
        signed
    }

    fn sign_verified(&self, pool: &Pool, message: &[u8]) -> Result<Vec<u8>, SignFailure> {
        for attempt in 0..2 {
            let signature = self
                .sign_in_token(pool, message, attempt > 0)
                .map_err(SignFailure::Hsm)?;
            match verify_signature(self.algorithm, &self.spki, message, &signature) {
                Ok(()) => return Ok(signature),
                Err(_) => tracing::warn!(label = %self.label, attempt,
                    "the token's signature does not verify; not released"),
            }
        }
        tracing::error!(label = %self.label, "two signatures in a row did not verify");
        Err(SignFailure::BadSignature)
    }

    /// One signature from the token, in the form X.509 carries it.
    fn sign_in_token(
        &self,
        pool: &Pool,
        message: &[u8],
        refind: bool,
    ) -> Result<Vec<u8>, HsmError> {
        let (mechanism, data, raw_len): (Mechanism<'_>, Cow<'_, [u8]>, Option<usize>) =
            match self.algorithm {
                // The token hashes: it is given the message itself.
                KeyAlgorithm::EcP256 if self.ecdsa == EcdsaSigning::TokenHashes => {
                    (Mechanism::EcdsaSha256, Cow::Borrowed(message), Some(64))
                }
                KeyAlgorithm::EcP384 if self.ecdsa == EcdsaSigning::TokenHashes => {
                    (Mechanism::EcdsaSha384, Cow::Borrowed(message), Some(96))
                }
                KeyAlgorithm::EcP256 => (
                    Mechanism::Ecdsa,
                    Cow::Owned(digest::digest(&digest::SHA256, message).as_ref().to_vec()),
                    Some(64),
                ),
                KeyAlgorithm::EcP384 => (
                    Mechanism::Ecdsa,
                    Cow::Owned(digest::digest(&digest::SHA384, message).as_ref().to_vec()),
                    Some(96),
                ),
                // Used only once the token has refused CKM_SHA256_RSA_PKCS_PSS (see below).
                KeyAlgorithm::Rsa2048Pss | KeyAlgorithm::Rsa3072Pss => (
                    Mechanism::RsaPkcsPss(PSS_SHA256),
                    Cow::Owned(digest::digest(&digest::SHA256, message).as_ref().to_vec()),
                    None,
                ),
                // Used only once the token has refused CKM_SHA256_RSA_PKCS (see below).
                KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => (
                    Mechanism::RsaPkcs,
                    Cow::Owned(
                        asn1::sha256_digest_info(digest::digest(&digest::SHA256, message).as_ref())
                            .map_err(|e| HsmError::Pkcs11 {
                                function: "C_Sign",
                                detail: format!("cannot encode the DigestInfo: {e}"),
                            })?,
                    ),
                    None,
                ),
            };
        let is_rsa = self.algorithm.is_rsa();
        let hashing_rsa = if self.algorithm.is_pss() {
            Mechanism::Sha256RsaPkcsPss(PSS_SHA256)
        } else {
            Mechanism::Sha256RsaPkcs
        };
        let once = |refind: bool| {
            pool.run(|session, attempt| {
                let handle = self.handle(session, attempt.epoch, refind || attempt.retry)?;
                // RSA: the token hashes when it offers CKM_SHA256_RSA_PKCS (_PSS for a PSS
                // key); openCryptoki's soft token lacks the PKCS#1 v1.5 one, and then the
                // DigestInfo is built here for CKM_RSA_PKCS (the same signature); a token
                // without the PSS one gets the hash for CKM_RSA_PKCS_PSS. Decided once, by
                // the token's answer.
                if is_rsa && !self.rsa_hash_in_software.load(Ordering::Relaxed) {
                    match self.sign_once(pool, session, &hashing_rsa, handle, message) {
                        Err(OpError::Call(e)) if e.rv() == Some(RvError::MechanismInvalid) => {
                            tracing::info!(label = %self.label, refused = %hashing_rsa.mechanism_type(),
                                "the token refused its RSA hashing mechanism; hashing in software");
                            self.rsa_hash_in_software.store(true, Ordering::Relaxed);
                        }
                        other => return other,
                    }
                }
                self.sign_once(pool, session, &mechanism, handle, &data)
            })
        };
        let raw = match once(refind) {
            // The token (or its key) vanished after start-up: maybe removed and put back,
            // which the library only sees after re-initialising. A key truly deleted stays
            // missing and the error stands; the interval keeps this from hammering the HSM.
            Err(HsmError::KeyNotFound(_) | HsmError::TokenNotFound(_))
                if self.may_reinitialize() =>
            {
                tracing::warn!(label = %self.label,
                    "the CA key is no longer found; re-initialising the PKCS#11 library");
                pool.reinitialize()?;
                once(true)?
            }
            other => other?,
        };
        match raw_len {
            None => Ok(raw),
            Some(len) => (raw.len() == len)
                .then(|| asn1::ecdsa_signature_from_raw(&raw))
                .flatten()
                .ok_or_else(|| HsmError::Pkcs11 {
                    function: "C_Sign",
                    detail: format!("{}-byte ECDSA signature, expected {len}", raw.len()),
                }),
        }
    }

    /// One `C_SignInit` + `C_Sign` of `data` on `session`, with the context-specific login in
    /// between when the key asks for it.
    fn sign_once(
        &self,
        pool: &Pool,
        session: &Session,
        mechanism: &Mechanism<'_>,
        handle: ObjectHandle,
        data: &[u8],
    ) -> Result<Vec<u8>, OpError> {
        let unusable = |reason: String| -> OpError {
            HsmError::UnsupportedKey {
                label: self.label.clone(),
                reason,
            }
            .into()
        };
        if !self.login.per_signature() {
            return match call("C_Sign", session.sign(mechanism, handle, data)) {
                // "Not logged in" while the session still is: the token wants the login for
                // the key alone. Retrying on a new session would only be refused again.
                Err(e) if e.rv() == Some(RvError::UserNotLoggedIn) && touch(session).is_ok() => {
                    Err(unusable(self.login.missing_reason()))
                }
                other => Ok(other?),
            };
        }
        call("C_SignInit", session.sign_init(mechanism, handle))?;
        if let Err(e) = pool.context_login(session) {
            // C_Sign ends the operation whatever it answers, so the session goes back to the
            // pool without one active; its result (at most a signature of the very message
            // this call was asked to sign) is dropped.
            let _ = pkcs11_token_info::sign(pool.module().as_os_str(), session.handle(), data);
            return Err(match e {
                // The token wants no such login here, or knows none: asking again won't help.
                OpError::Call(c)
                    if matches!(
                        c.rv(),
                        Some(RvError::OperationNotInitialized | RvError::UserTypeInvalid)
                    ) =>
                {
                    unusable(self.login.refused_reason(&c.code()))
                }
                other => other,
            });
        }
        sign_after_init(pool, session, data)
    }

    /// Whether a re-initialisation for a missing key is allowed now (and notes it).
    fn may_reinitialize(&self) -> bool {
        let mut last = self
            .last_reinit
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < MISSING_KEY_REINIT_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The key's handle: cached within one epoch, looked up again (by label, class and
    /// `CKA_ID`, so it is the same key) on a retry or in a new epoch.
    fn handle(
        &self,
        session: &cryptoki::session::Session,
        epoch: u64,
        refind: bool,
    ) -> Result<ObjectHandle, super::pool::OpError> {
        if !refind
            && let Some((e, h)) = *self.handle.lock().unwrap_or_else(PoisonError::into_inner)
            && e == epoch
        {
            return Ok(h);
        }
        let found = find_private_key(session, &self.label, Some(&self.id));
        // A failed lookup also forgets the old handle: it must not be tried again.
        *self.handle.lock().unwrap_or_else(PoisonError::into_inner) =
            found.as_ref().ok().map(|h| (epoch, *h));
        found
    }
}

/// Single-part `C_Sign` of `data` on `session`, whose operation was initialised (and
/// authenticated) already: the call cryptoki does not offer on its own.
fn sign_after_init(pool: &Pool, session: &Session, data: &[u8]) -> Result<Vec<u8>, OpError> {
    match pkcs11_token_info::sign(pool.module().as_os_str(), session.handle(), data) {
        Ok(signature) => Ok(signature),
        // Through `call`, so the code is classified and logged like every other.
        Err(pkcs11_token_info::Error::Rv(rv)) => {
            call("C_Sign", Rv::from(rv).into_result(Function::Sign))?;
            Err(HsmError::Pkcs11 {
                function: "C_Sign",
                detail: "failed with CKR_OK".into(),
            }
            .into())
        }
        Err(other) => Err(HsmError::Pkcs11 {
            function: "C_Sign",
            detail: other.to_string(),
        }
        .into()),
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("label", &self.label)
            .field("id", &hex::encode(&self.id))
            .field("algorithm", &self.algorithm)
            .field("ecdsa", &self.ecdsa)
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}
