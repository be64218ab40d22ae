//! PKCS#11 return codes: the one classification that decides what a failure means (retry on
//! a new session, temporarily unavailable, or permanent), the error of one failed call, and the
//! helper every call goes through so that each failure is logged with its function and code.
//!
//! What this module must not do: act on a failure (the pool and the signer decide), or put
//! anything but the function name and the code into a message.

use std::fmt;

use cryptoki::error::{Error as CkError, RvError};

/// What a failed call means for the caller. The first three are the "retry once" class,
/// told apart by what must be replaced before the retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// The session (or the device behind it) is gone: drop the session, open a new one, log
    /// in, retry once. If no session can be opened, the library is re-initialised.
    NewSession,
    /// The session is open but no longer logged in: close it, open a new one (which logs in
    /// again), retry once. Its handle is still valid, so closing it is safe.
    Relogin,
    /// An object handle went stale; the session is fine: look the key up again, retry once.
    Relookup,
    /// The token is busy or short of resources: report "unavailable" now, try on a later call.
    Unavailable,
    /// Retrying will not help; an operator must act (wrong PIN, bad key, bad mechanism).
    Permanent,
}

/// Classifies every PKCS#11 return code. Unknown and vendor codes count as permanent: a
/// code nobody understands should reach an operator rather than be retried blindly.
pub(crate) fn classify(rv: RvError) -> Disposition {
    use Disposition::*;
    use RvError as R;
    match rv {
        R::UserNotLoggedIn => Relogin,
        R::KeyHandleInvalid | R::ObjectHandleInvalid => Relookup,
        // The session no longer exists, or the device behind it went away: a new session
        // (after re-initialisation if needed) may work.
        R::SessionHandleInvalid
        | R::SessionClosed
        | R::OperationActive
        | R::OperationNotInitialized
        | R::DeviceError
        | R::DeviceRemoved
        | R::DeviceMemory
        | R::TokenNotPresent
        | R::TokenNotRecognized
        | R::SlotIdInvalid
        | R::CryptokiNotInitialized
        | R::GeneralError
        | R::FunctionFailed => NewSession,
        // Load, not loss: asking again right away would only add to it.
        R::SessionCount
        | R::HostMemory
        | R::CantLock
        | R::FunctionCanceled
        | R::FunctionNotParallel
        | R::MutexBad
        | R::MutexNotLocked => Unavailable,
        // PIN problems are never retried: a real HSM locks the token after a few tries.
        R::PinIncorrect
        | R::PinInvalid
        | R::PinLenRange
        | R::PinExpired
        | R::PinLocked
        | R::PinTooWeak => Permanent,
        _ => Permanent,
    }
}

/// The `CKR_…` name of a return code, for logs and error texts.
pub(crate) fn ckr_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(v) => format!("CKR_VENDOR_DEFINED({v:#x})"),
        RvError::UnknownErrorCode(v) => format!("CKR_UNKNOWN({v:#x})"),
        other => {
            // The variant names are the CKR names in CamelCase.
            let camel = format!("{other:?}");
            let mut name = String::from("CKR");
            for c in camel.chars() {
                if c.is_ascii_uppercase() {
                    name.push('_');
                }
                name.push(c.to_ascii_uppercase());
            }
            name
        }
    }
}

/// One failed PKCS#11 call.
#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) function: &'static str,
    pub(crate) error: CkError,
}

impl CallError {
    /// A failure the library did not report but a check here found (e.g. a session that is
    /// open but no longer logged in).
    pub(crate) fn synthetic(
        function: &'static str,
        rv: RvError,
        f: cryptoki::context::Function,
    ) -> Self {
        Self {
            function,
            error: CkError::Pkcs11(rv, f),
        }
    }

    /// The return code, when the failure came from the module (not from loading it).
    pub(crate) fn rv(&self) -> Option<RvError> {
        match self.error {
            CkError::Pkcs11(rv, _) => Some(rv),
            _ => None,
        }
    }

    pub(crate) fn disposition(&self) -> Disposition {
        self.rv().map_or(Disposition::Permanent, classify)
    }

    /// The code (or the wrapper's error kind) without the library's long description.
    pub(crate) fn code(&self) -> String {
        match self.rv() {
            Some(rv) => ckr_name(rv),
            None => self.error.to_string(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} returned {}", self.function, self.code())
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Routes a cryptoki result through the one logging point: a failure is logged with the
/// PKCS#11 function and the CKR code (never arguments: one of them may be the PIN).
pub(crate) fn call<T>(
    function: &'static str,
    result: cryptoki::error::Result<T>,
) -> Result<T, CallError> {
    result.map_err(|error| {
        let e = CallError { function, error };
        tracing::debug!(function, code = %e.code(), "PKCS#11 call failed");
        e
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_sessions_and_devices_retry_on_a_new_session() {
        for rv in [
            RvError::SessionHandleInvalid,
            RvError::SessionClosed,
            RvError::DeviceError,
            RvError::DeviceRemoved,
            RvError::TokenNotPresent,
        ] {
            assert_eq!(classify(rv), Disposition::NewSession, "{rv:?}");
        }
        assert_eq!(classify(RvError::UserNotLoggedIn), Disposition::Relogin);
        assert_eq!(classify(RvError::KeyHandleInvalid), Disposition::Relookup);
        assert_eq!(
            classify(RvError::ObjectHandleInvalid),
            Disposition::Relookup
        );
    }

    #[test]
    fn pin_failures_are_permanent() {
        for rv in [
            RvError::PinIncorrect,
            RvError::PinLocked,
            RvError::PinExpired,
            RvError::PinLenRange,
        ] {
            assert_eq!(classify(rv), Disposition::Permanent, "{rv:?}");
        }
    }

    #[test]
    fn load_is_unavailable_and_the_unknown_permanent() {
        assert_eq!(classify(RvError::SessionCount), Disposition::Unavailable);
        assert_eq!(classify(RvError::HostMemory), Disposition::Unavailable);
        assert_eq!(classify(RvError::MechanismInvalid), Disposition::Permanent);
        assert_eq!(
            classify(RvError::VendorDefined(0x8000_0001)),
            Disposition::Permanent
        );
    }

    #[test]
    fn names_follow_the_standard() {
        assert_eq!(
            ckr_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            ckr_name(RvError::UserAlreadyLoggedIn),
            "CKR_USER_ALREADY_LOGGED_IN"
        );
    }
}
