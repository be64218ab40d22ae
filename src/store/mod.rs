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

mod error;
pub mod model;

pub use error::StoreError;
pub use model::*;

use crate::clock::UnixTime;

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
    /// The code is valid and unused: sign, then call [`Store::complete_issue`].
    Fresh,
    /// The code was already redeemed for this same public key (a retried request whose
    /// response was lost): answer with this certificate again.
    AlreadyIssued(Box<CertRecord>),
    /// Refused; the attempt has been counted.
    Refused(CodeRefusal),
}

/// A status change of one certificate, announced to the status caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertChange {
    pub serial: String,
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
    _private: (),
}

#[allow(unused_variables)]
impl Store {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:`, `postgres://...`); creates the
    /// SQLite file when absent. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        todo!()
    }
    /// Applies pending migrations. Idempotent.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        todo!()
    }
    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        todo!()
    }
    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        todo!()
    }

    // --- contracts and users

    /// Adds a contract; `Conflict` when the id exists.
    pub async fn insert_contract(&self, c: &Contract) -> Result<(), StoreError> {
        todo!()
    }
    pub async fn contract(&self, id: &str) -> Result<Option<Contract>, StoreError> {
        todo!()
    }
    pub async fn contracts(&self) -> Result<Vec<Contract>, StoreError> {
        todo!()
    }
    /// Adds a user; `Conflict` when the login exists, `NotFound` when the contract does not.
    pub async fn insert_user(&self, u: &User) -> Result<(), StoreError> {
        todo!()
    }
    pub async fn user(&self, login: &str) -> Result<Option<User>, StoreError> {
        todo!()
    }
    pub async fn users_of_contract(&self, contract_id: &str) -> Result<Vec<User>, StoreError> {
        todo!()
    }

    // --- issuance codes

    /// Stores a new code for `login`, replacing any earlier one (used, locked or not).
    pub async fn set_code(
        &self,
        login: &str,
        code_hash: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        todo!()
    }
    pub async fn code(&self, login: &str) -> Result<Option<CodeRecord>, StoreError> {
        todo!()
    }
    /// Checks a presented code (by its hash, compared in constant time) for `login`. A wrong
    /// code increments the attempt counter and locks the code at `max_attempts`; this is
    /// committed even though the claim is refused.
    pub async fn claim_code(
        &self,
        login: &str,
        presented_hash: &str,
        spki_sha256: &str,
        now: UnixTime,
        max_attempts: i64,
    ) -> Result<CodeClaim, StoreError> {
        todo!()
    }
    /// In one transaction: checks the code is still unused and matches, revokes (reason
    /// `superseded`) any current certificate of the login, inserts `cert` as current and
    /// marks the code used for it. `Conflict` when the code was redeemed meanwhile. Returns
    /// the serials it revoked.
    pub async fn complete_issue(
        &self,
        code_hash: &str,
        cert: &CertRecord,
        now: UnixTime,
    ) -> Result<Vec<String>, StoreError> {
        todo!()
    }

    // --- certificates

    /// In one transaction: `old_serial` (must be current) becomes superseded at `now`, and
    /// `cert` becomes the current certificate. `Conflict` when `old_serial` is not current.
    pub async fn complete_renewal(
        &self,
        old_serial: &str,
        cert: &CertRecord,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        todo!()
    }
    /// Revokes a current or superseded certificate. `NotFound` for an unknown serial,
    /// `Conflict` when it is already revoked.
    pub async fn revoke(
        &self,
        serial: &str,
        reason: &str,
        now: UnixTime,
    ) -> Result<CertRecord, StoreError> {
        todo!()
    }
    /// In one transaction: revokes the login's current certificate (if any) with `reason`
    /// and stores a new code. Returns the revoked certificate.
    pub async fn reissue(
        &self,
        login: &str,
        reason: &str,
        code_hash: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<Option<CertRecord>, StoreError> {
        todo!()
    }
    /// Records the first time the gateway saw `serial` in use; a no-op after the first call.
    /// Returns true when this call set it.
    pub async fn mark_first_used(&self, serial: &str, now: UnixTime) -> Result<bool, StoreError> {
        todo!()
    }
    /// Revokes (reason `superseded`) every superseded certificate whose successor has been
    /// used, or that was superseded before `superseded_before`. Returns their serials.
    pub async fn retire_superseded(
        &self,
        superseded_before: UnixTime,
        now: UnixTime,
    ) -> Result<Vec<String>, StoreError> {
        todo!()
    }
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        todo!()
    }
    pub async fn current_certificate(&self, login: &str) -> Result<Option<CertRecord>, StoreError> {
        todo!()
    }
    pub async fn certificates(&self, filter: &CertFilter) -> Result<Vec<CertRecord>, StoreError> {
        todo!()
    }
    /// The certificate with its user's and contract's state, for the gateway's live check.
    pub async fn certificate_status(
        &self,
        serial: &str,
    ) -> Result<Option<CertStatusView>, StoreError> {
        todo!()
    }
    /// Revoked certificates of one CA that have not yet expired past `not_after_after`, for
    /// the CRL: (serial, revoked_at, reason).
    pub async fn revoked_for_crl(
        &self,
        ca_id: i64,
        not_after_after: UnixTime,
    ) -> Result<Vec<(String, UnixTime, String)>, StoreError> {
        todo!()
    }
    /// Announcements of certificate status changes, from this instance and (PostgreSQL)
    /// from the others.
    pub fn subscribe_changes(&self) -> tokio::sync::broadcast::Receiver<CertChange> {
        todo!()
    }

    // --- CA records

    /// Stores a CA certificate; when `active`, every other CA becomes inactive.
    pub async fn insert_ca(
        &self,
        key_label: &str,
        cert_der: &[u8],
        chain_pem: &str,
        active: bool,
        now: UnixTime,
    ) -> Result<CaRecord, StoreError> {
        todo!()
    }
    pub async fn cas(&self) -> Result<Vec<CaRecord>, StoreError> {
        todo!()
    }
    pub async fn active_ca(&self) -> Result<Option<CaRecord>, StoreError> {
        todo!()
    }
    /// The next CRL number for a CA; monotonic, never reused.
    pub async fn next_crl_number(&self, ca_id: i64) -> Result<i64, StoreError> {
        todo!()
    }

    // --- audit

    /// Appends an entry, chaining it to the previous one: `hash = SHA-256(prev_hash ‖
    /// canonical entry)`. Appends are serialized so the chain never forks.
    pub async fn append_audit(&self, entry: &NewAudit) -> Result<AuditRecord, StoreError> {
        todo!()
    }
    /// Entries with `seq >= from`, oldest first, at most `limit`.
    pub async fn audit_records(
        &self,
        from: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        todo!()
    }
}
