//! Errors of lifecycle operations, split by who must act: the caller (refused, bad input),
//! nobody yet (temporarily unavailable), or an operator (internal).

use crate::ca::{CaError, CsrError, SignError};
use crate::store::{CodeRefusal, StoreError};

use super::rules::Refusal;

/// A lifecycle operation did not happen. Nothing was changed, except a counted code attempt.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// A rule of the scheme refused the request.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The CSR was refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The login ID and issuance code did not match, or the code cannot be used.
    #[error("{}", code_message(*.0))]
    Code(CodeRefusal),
    /// The thing named does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The database or the HSM cannot serve right now; retry later.
    #[error("the service is temporarily unavailable ({0}); please try again later")]
    Unavailable(String),
    /// Something an operator must look at.
    #[error("internal error: {0}")]
    Internal(String),
}

fn code_message(r: CodeRefusal) -> String {
    match r {
        // The same sentence for an unknown login ID and a wrong code: no enumeration.
        CodeRefusal::NoCode | CodeRefusal::Wrong { .. } => {
            "the login ID or the issuance code is not correct".into()
        }
        CodeRefusal::Locked => {
            "this issuance code is locked after too many wrong tries; please ask the bank to issue a new one".into()
        }
        CodeRefusal::Expired => {
            "this issuance code has expired; please ask the bank to issue a new one".into()
        }
        CodeRefusal::Used => "this issuance code has already been used".into(),
    }
}

impl LifecycleError {
    /// What an anonymous caller of an issuance-code enrollment is told: one answer for an
    /// unknown login ID, a wrong, used, expired or locked code and a disabled user or
    /// contract, so the answer cannot tell which login IDs exist or how they stand. The
    /// precise reason is audited before this is applied. Other errors (a bad CSR, the
    /// service unavailable) do not depend on the login ID and pass unchanged.
    pub fn hide_login_state(self) -> Self {
        match self {
            Self::Code(_) => Self::Code(CodeRefusal::NoCode),
            // A disabled login ID, or one of the other audience (a staff member's on a
            // customer way in, or the reverse).
            Self::Refused(r) if matches!(r.code, "user_disabled" | "staff_login" | "not_staff") => {
                Self::Code(CodeRefusal::NoCode)
            }
            other => other,
        }
    }

    /// A stable machine-readable code for APIs and audit.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(r) => r.code,
            Self::Csr(_) => "bad_csr",
            Self::Code(CodeRefusal::NoCode | CodeRefusal::Wrong { .. }) => "bad_code",
            Self::Code(CodeRefusal::Locked) => "code_locked",
            Self::Code(CodeRefusal::Expired) => "code_expired",
            Self::Code(CodeRefusal::Used) => "code_used",
            Self::NotFound(_) => "not_found",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for LifecycleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Conflict(msg) => Self::Refused(Refusal::new("conflict", msg)),
            StoreError::Unavailable(_) => Self::Unavailable("database".into()),
            StoreError::Batch(shared) => match &*shared {
                StoreError::Unavailable(_) => Self::Unavailable("database".into()),
                other => Self::Internal(other.to_string()),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CaError> for LifecycleError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::Sign(SignError::Unavailable(_)) => Self::Unavailable("HSM".into()),
            CaError::Rcgen(rcgen::Error::RemoteKeyError) => Self::Unavailable("HSM".into()),
            other => Self::Internal(other.to_string()),
        }
    }
}
