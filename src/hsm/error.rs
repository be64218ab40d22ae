//! Errors of the PKCS#11 layer. None of them carries the PIN.

/// A PKCS#11 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The module could not be loaded or initialised.
    #[error("cannot load the PKCS#11 module {module}: {detail}")]
    Module { module: String, detail: String },
    /// No token with this label is present.
    #[error("no token labelled {0:?} is present")]
    TokenNotFound(String),
    /// The PIN was refused. Never retried: a real HSM locks the token after a few tries.
    #[error("the token refused the PIN (not retried, to avoid locking the token)")]
    PinIncorrect,
    /// The token is locked or the PIN expired.
    #[error("the token's user PIN is locked or expired")]
    PinLocked,
    /// No key with this label.
    #[error("no key labelled {0:?} in the token")]
    KeyNotFound(String),
    /// A key with this label already exists.
    #[error("a key labelled {0:?} already exists in the token")]
    KeyExists(String),
    /// The key is of a type or shape this CA does not use (curve, size, missing public key,
    /// several keys under one label).
    #[error("key {label:?} cannot be used: {reason}")]
    UnsupportedKey { label: String, reason: String },
    /// The key's attributes allow it to leave the token or be misused.
    #[error("key {label:?} is not safe as a CA key: {reason}")]
    UnsafeKey { label: String, reason: String },
    /// The token or library failed in a way that may pass (session lost, device error).
    #[error("the HSM is temporarily unavailable: {0}")]
    Unavailable(String),
    /// Any other PKCS#11 failure.
    #[error("PKCS#11 error in {function}: {detail}")]
    Pkcs11 {
        function: &'static str,
        detail: String,
    },
}

impl From<super::ckr::CallError> for HsmError {
    /// A failed call is "unavailable" when it may pass by itself, else a plain PKCS#11 error.
    /// Only the function and the CKR code are kept: no argument can leak into the text.
    fn from(e: super::ckr::CallError) -> Self {
        match e.disposition() {
            super::ckr::Disposition::Permanent => Self::Pkcs11 {
                function: e.function,
                detail: e.code(),
            },
            _ => Self::Unavailable(e.to_string()),
        }
    }
}
