//! One PKCS#11 session on the token, closed when dropped — unless it is known to be dead.
//!
//! A dead session's handle number may already belong to a newer session (SoftHSM reuses
//! them), so closing it could close someone else's; [`HsmSession::abandon`] drops it without
//! `C_CloseSession`. Drop it only while holding the context's read guard, so no
//! re-initialisation runs between the check and the close.
//!
//! What this module must not do: retry, pool, or keep the PIN beyond the login call.

use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::HsmError;
use super::ckr::{CallError, call};
use super::context::Live;
use crate::config::Secret;

/// A session plus what is needed to know whether it is still ours.
pub(crate) struct HsmSession {
    session: Option<Session>,
    /// The context epoch it was opened in.
    pub(crate) epoch: u64,
    /// The pool generation it was opened in.
    pub(crate) generation: u64,
}

impl HsmSession {
    /// Opens a session on `slot` (read-write only for key generation).
    pub(crate) fn open(
        live: &Live,
        slot: Slot,
        read_write: bool,
        generation: u64,
    ) -> Result<Self, CallError> {
        // `_no_drop`: closing is decided here, where a dead handle can be told from a live one.
        let session = if read_write {
            call("C_OpenSession", live.pkcs11.open_rw_session_no_drop(slot))?
        } else {
            call("C_OpenSession", live.pkcs11.open_ro_session_no_drop(slot))?
        };
        Ok(Self {
            session: Some(session),
            epoch: live.epoch,
            generation,
        })
    }

    /// Logs the user in. A second login answering `CKR_USER_ALREADY_LOGGED_IN` is success
    /// (login state belongs to the application, not the session). PIN failures are mapped
    /// to `PinIncorrect`/`PinLocked` and must not be retried by the caller.
    pub(crate) fn login(&self, pin: &Secret) -> Result<(), LoginError> {
        match login_as(self.get(), UserType::User, pin) {
            Err(LoginError::Call(e))
                if e.rv() == Some(cryptoki::error::RvError::UserAlreadyLoggedIn) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// The cryptoki session.
    pub(crate) fn get(&self) -> &Session {
        match &self.session {
            Some(s) => s,
            // Taken only by `abandon` and `drop`, which consume or end `self`.
            None => unreachable!("session used after it was given up"),
        }
    }

    /// Gives the session up without closing it: its handle is dead and may be reused.
    pub(crate) fn abandon(mut self) {
        self.session = None;
    }
}

impl Drop for HsmSession {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = call("C_CloseSession", session.close());
        }
    }
}

/// `C_Login(CKU_CONTEXT_SPECIFIC)` on `session`, between `C_SignInit` and `C_Sign` for a key
/// with `CKA_ALWAYS_AUTHENTICATE`. PIN failures as in [`HsmSession::login`]: never retry.
pub(crate) fn context_login(session: &Session, pin: &Secret) -> Result<(), LoginError> {
    login_as(session, UserType::ContextSpecific, pin)
}

/// `C_Login` as `user`, with the PIN refusals told apart from other failures.
fn login_as(session: &Session, user: UserType, pin: &Secret) -> Result<(), LoginError> {
    use cryptoki::error::RvError as R;
    let pin = AuthPin::from(pin.expose());
    let context = matches!(user, UserType::ContextSpecific);
    match call("C_Login", session.login(user, Some(&pin))) {
        Ok(()) => Ok(()),
        Err(e) => match e.rv() {
            Some(R::PinIncorrect | R::PinInvalid | R::PinLenRange) => {
                tracing::error!(code = %e.code(), context,
                    "the token refused the PIN; not retrying");
                Err(LoginError::Pin(HsmError::PinIncorrect))
            }
            Some(R::PinLocked | R::PinExpired) => {
                tracing::error!(code = %e.code(), context,
                    "the token's user PIN is locked or expired");
                Err(LoginError::Pin(HsmError::PinLocked))
            }
            _ => Err(LoginError::Call(e)),
        },
    }
}

/// Why a login failed.
#[derive(Debug)]
pub(crate) enum LoginError {
    /// The PIN was refused or is locked: never retry.
    Pin(HsmError),
    /// Any other failure, classified like every call.
    Call(CallError),
}
