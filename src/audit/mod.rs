//! The audit log: every security event (issuance, refusal, revocation, admin action) goes
//! here, hash-chained in the store, and pinned from time to time by checkpoints signed in
//! the HSM (`checkpoint`), each checkpoint also anchored outside the database (`anchor`).
//! Details are JSON and never contain a secret.

pub mod anchor;
mod checkpoint;
pub mod signatures;
mod verify;

pub use checkpoint::{
    CheckpointError, CheckpointKeys, checkpoint_hash, checkpoint_message, checkpoint_message_v2,
    make_checkpoint, signed_message,
};
pub use verify::{
    AnchorSeen, ChainReport, VerifyError, anchors_reached, export, verify_chain,
    verify_with_checkpoints,
};

use crate::clock::UnixTime;
use crate::store::{NewAudit, Store};

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Bank staff at the command line (the OS user name).
    Staff(String),
    /// A customer, authenticated by certificate or by login ID and code.
    User(String),
    /// An anonymous caller (e.g. a wrong code for an unknown login ID), by address.
    Anonymous(String),
    /// certgate itself (scheduler, retirement of superseded certificates).
    System,
    /// A four-eyes action run on approval: asked for by `maker`, approved by `checker`
    /// (staff names), as request `request`. Both people are in every entry it writes.
    FourEyes {
        maker: String,
        checker: String,
        request: i64,
    },
}

impl Actor {
    /// The staff member running the command line.
    pub fn current_staff() -> Self {
        let name = std::env::var("SUDO_USER")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "unknown".into());
        Self::Staff(name)
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Staff(n) => write!(f, "staff:{n}"),
            Self::User(n) => write!(f, "user:{n}"),
            Self::Anonymous(a) => write!(f, "anonymous:{a}"),
            Self::System => f.write_str("system"),
            Self::FourEyes {
                maker,
                checker,
                request,
            } => write!(
                f,
                "staff:{checker} (approving request {request} of staff:{maker})"
            ),
        }
    }
}

/// An audit entry, for [`Audit::record`] or for an operation that appends it in its own
/// transaction.
pub fn entry(
    at: UnixTime,
    actor: &Actor,
    action: &str,
    subject: &str,
    outcome: Outcome,
    detail: serde_json::Value,
) -> NewAudit {
    NewAudit {
        at,
        actor: actor.to_string(),
        action: action.into(),
        subject: subject.into(),
        outcome: outcome.as_str().into(),
        detail,
    }
}

/// Writes audit entries.
#[derive(Debug, Clone)]
pub struct Audit {
    store: Store,
}

impl Audit {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Appends an entry. A failure is logged loudly and returned; callers decide whether
    /// the operation may go on (refusals still refuse).
    pub async fn record(
        &self,
        at: UnixTime,
        actor: &Actor,
        action: &str,
        subject: &str,
        outcome: Outcome,
        detail: serde_json::Value,
    ) -> Result<(), crate::store::StoreError> {
        let entry = entry(at, actor, action, subject, outcome, detail);
        match self.store.append_audit(&entry).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(action, subject, error = %e, "cannot write the audit log");
                Err(e)
            }
        }
    }
}

/// Whether the audited action happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
        }
    }
}
