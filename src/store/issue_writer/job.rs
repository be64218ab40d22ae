//! What a job of the group writer is, and what it came to: the types the queue, the batch
//! transaction and both paths share. No SQL here.

use tokio::sync::oneshot;

use crate::clock::UnixTime;
use crate::store::audit_chain::PreparedAudit;
use crate::store::{AuditRecord, CertRecord, SignatureIntent, StoreError};

/// The change a job makes, besides its audit records.
#[derive(Debug, Clone)]
pub(crate) enum IssueWork {
    /// Redeem the login's code for `cert`: re-check the code, revoke (reason
    /// `superseded`) any current certificate, insert `cert`, mark the code used.
    Fresh {
        code_hash: String,
        cert: CertRecord,
        now: UnixTime,
    },
    /// `old_serial` (current, same login) becomes superseded; `cert` becomes current.
    Renewal {
        old_serial: String,
        cert: CertRecord,
        now: UnixTime,
    },
    /// Record an open signature intent before the key signs: `Conflict` when its serial
    /// already has one. Batched with the issuances, so it costs no commit of its own.
    Intent(Box<SignatureIntent>),
}

impl IssueWork {
    /// The login ID whose certificates the job changes (an intent changes none).
    pub(super) fn login(&self) -> Option<&str> {
        match self {
            Self::Fresh { cert, .. } | Self::Renewal { cert, .. } => Some(&cert.login),
            Self::Intent(_) => None,
        }
    }
}

/// What a committed job did.
#[derive(Debug)]
pub(crate) enum JobOutcome {
    /// Nothing but the audit records (an audit append).
    AuditOnly,
    /// The signature intent is recorded (a row no one is told about).
    Recorded,
    /// The certificate is stored; `revoked` lists serials this revoked, `changed` every
    /// serial whose status changed (to announce).
    Stored {
        revoked: Vec<String>,
        changed: Vec<String>,
    },
    /// The code had meanwhile been redeemed by a concurrent request for this same key and
    /// code: that certificate is the answer. Nothing of this job was stored.
    AlreadyIssued(Box<CertRecord>),
}

/// Whether a job that came to `outcome` appends its audit records. A repeat stored
/// nothing: its audit is the caller's (`.repeat`).
pub(super) fn audited(outcome: &JobOutcome) -> bool {
    !matches!(outcome, JobOutcome::AlreadyIssued(_))
}

/// A committed job: its outcome and the audit records it appended.
#[derive(Debug)]
pub(crate) struct JobDone {
    pub outcome: JobOutcome,
    pub audit: Vec<AuditRecord>,
}

/// A job waiting in the queue, with where its answer goes.
pub(super) struct Pending {
    pub work: Option<IssueWork>,
    pub audit: Vec<PreparedAudit>,
    pub reply: oneshot::Sender<Result<JobDone, StoreError>>,
}
