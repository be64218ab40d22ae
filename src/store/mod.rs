//! Persistence: contracts, users, issuance codes, certificates, CA records and the audit log.
//!
//! SQLite (one file, WAL) is the embedded default; PostgreSQL serves several gateway
//! instances. Both run the same operations; each has its own migrations under
//! `store/migrations/`. Rules live in [`crate::lifecycle`]: this module only makes each
//! operation atomic and keeps the invariants the schema can enforce (at most one current
//! certificate per login ID, a code redeemed once, an audit chain without gaps).
//!
//! Every change to a certificate's status is announced to [`Store::subscribe_changes`] on
//! this instance and, on PostgreSQL, through `NOTIFY certgate_cert` to the other instances.
//!
//! Layout: `backend` (pools, write transactions, migrations, the `on_backend!` macro that
//! writes each operation once for both pools), `model` (the records, decoded from rows with
//! `sqlx::FromRow`), `rows` (column lists), one file per topic (`accounts`, `codes`, `certs`,
//! `cas`, `audit_chain`, `notices`, `checkpoints`, `enablement`, `server_certs`,
//! `signatures`, `staff`), `changes` (the broadcast
//! channel and the PostgreSQL listener), `issue_writer` (the group commit that issuance,
//! renewal and audit appends go through) and `issuance_parts` (what the writer shares with
//! `certs` and `codes`, below all three). Imports between these files run one way: the
//! `import_order` test fails on a cycle.

mod accounts;
mod audit_chain;
pub(crate) mod backend;
mod cas;
mod certs;
mod changes;
mod checkpoints;
mod codes;
mod crl_bases;
mod enablement;
mod error;
#[cfg(test)]
mod import_order;
mod issuance_parts;
mod issue_writer;
pub mod model;
mod notices;
pub(crate) mod rows;
mod search;
mod server_certs;
mod signatures;
mod staff;
mod staff_requests;

pub use audit_chain::{AuditChainBroken, GENESIS_HASH, audit_hash, verify_audit_chain};
pub use certs::KeyConflict;
pub use checkpoints::AuditCheckpoint;
pub use codes::{IssuanceSubject, RefusalAudit};
pub use crl_bases::CrlBase;
pub use error::StoreError;
pub use model::*;
pub use notices::{NewNotice, NoticeCandidate, OutboxCounts, OutboxRow, OutboxState, Settlement};
pub use search::AuditQuery;
pub use signatures::{
    DISCARDED_REASON, IntentFilter, IntentState, SignatureCount, SignatureIntent,
};
pub use staff::{Audience, STAFF_CONTRACT, StaffMember, StaffRole, staff_login, staff_name};
pub use staff_requests::{
    NewStaffRequest, RequestState, RequestTransition, StaffRequest, Submitted,
};

use std::sync::Arc;

use backend::Backend;

/// Why a presented issuance code was not accepted. The attempt is already recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRefusal {
    /// No code was authorized for this login ID.
    NoCode,
    /// The code does not match; `remaining` tries are left before the lock.
    Wrong { remaining: i64 },
    /// Too many wrong tries: staff must authorize again.
    Locked,
    /// The code's validity ended.
    Expired,
    /// The code was already redeemed for a different key.
    Used,
}

/// The outcome of presenting an issuance code with the public key to certify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeClaim {
    /// The code is valid and unused: sign, then call [`Store::complete_issue_audited`]
    /// (which checks the code again: nothing was written for this answer).
    Fresh,
    /// The code was already redeemed for this same public key (a retried request whose
    /// response was lost): answer with this certificate again.
    AlreadyIssued(Box<CertRecord>),
    /// Refused; the attempt has been counted.
    Refused(CodeRefusal),
    /// Refused as a wrong try: its count and the audit entry the caller gave for it were
    /// committed in one transaction, so the caller writes no entry of its own.
    CountedAndAudited(CodeRefusal),
}

/// The outcome of [`Store::complete_issue_audited`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The certificate is stored; these serials were revoked (reason `superseded`) for it.
    Stored { revoked: Vec<String> },
    /// A concurrent request with the same code and key redeemed the code first: this is
    /// its certificate. Nothing of this request was stored, not even its audit records.
    AlreadyIssued(Box<CertRecord>),
}

/// A status change of one certificate, announced to the status caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertChange {
    /// The serial whose status changed, or [`CertChange::RESYNC`].
    pub serial: String,
}

impl CertChange {
    /// The serial announced when changes may have been missed (the PostgreSQL listener lost
    /// its connection, or a receiver lagged): reload everything.
    pub const RESYNC: &'static str = "*";

    /// True when this announcement means "reload everything".
    pub fn is_resync(&self) -> bool {
        self.serial == Self::RESYNC
    }
}

/// Filters for [`Store::certificates`].
#[derive(Debug, Clone, Default)]
pub struct CertFilter {
    pub login: Option<String>,
    pub status: Option<CertStatus>,
}

/// The store handle: cheap to clone, safe to share.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    changes: changes::Changes,
    writer: issue_writer::IssueWriter,
}

impl Store {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:`, `postgres://...`); creates the
    /// SQLite file when absent. Does not migrate. On PostgreSQL it also starts listening for
    /// the other instances' certificate changes before returning.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let backend = backend::connect(url).await?;
        let changes = match &backend {
            Backend::Sqlite(pool) => changes::Changes::with_sqlite_poller(pool.clone()),
            Backend::Postgres(_) => changes::Changes::with_pg_listener(url).await?,
        };
        tracing::debug!(backend = backend_name(&backend), "store connected");
        let writer = issue_writer::IssueWriter::spawn(backend.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                changes,
                writer,
            }),
        })
    }

    /// Applies pending migrations. Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        backend::migrate(&self.inner.backend).await
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        backend_name(&self.inner.backend)
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        backend::on_backend!(self, |pool, _PG| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    /// Announcements of certificate status changes, from this instance and (PostgreSQL)
    /// from the others. A receiver that lags behind gets `RecvError::Lagged`: treat it like
    /// [`CertChange::RESYNC`]. Local changes may arrive twice on PostgreSQL (once directly,
    /// once through `NOTIFY`); consumers reload the serial, so that is harmless.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<CertChange> {
        self.inner.changes.subscribe()
    }

    /// Announces changed serials on this instance, after their transaction committed.
    fn announce(&self, serials: &[String]) {
        self.inner.changes.announce(serials);
    }
}

fn backend_name(b: &Backend) -> &'static str {
    match b {
        Backend::Sqlite(_) => "sqlite",
        Backend::Postgres(_) => "postgres",
    }
}
