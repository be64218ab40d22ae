//! One-time issuance codes: storing, claiming (with attempt counting) and redeeming.
//!
//! Owns the atomicity of a claim; a redemption's SQL runs in `issue_writer` (group commit),
//! started from here. What this file shares with the writer (replacing a code, comparing
//! hashes) lives below both, in `issuance_parts`. The code itself never reaches the
//! store, only its hash (hashing and code generation are the caller's). What counts as a
//! wrong try is decided by [`decide`], a pure function:
//! - a used code answers `AlreadyIssued` (same code, same key, certificate still current)
//!   or `Used`, and counts nothing (it cannot be redeemed any more, so guessing gains nothing);
//! - a locked code answers `Locked`, an expired one `Expired`, and counts nothing;
//! - only a wrong code presented against a live code counts, and the try that reaches
//!   `max_attempts` locks the code and answers `Locked`.
//!
//! A code is expired from `expires_at` on (`now >= expires_at`).

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head, lock_chain_head_if};
use super::backend::{WritePool, on_backend};
use super::issuance_parts::{hash_eq, upsert_code};
use super::issue_writer::{IssueWork, JobOutcome};
use super::rows::cert_cols;
use super::{
    CertRecord, CodeClaim, CodeRecord, CodeRefusal, NewAudit, Redeemed, Store, StoreError, User,
};
use crate::clock::UnixTime;

/// Makes the audit entry of a counted wrong try from the refusal it is answered with.
pub type RefusalAudit<'a> = &'a (dyn Fn(&CodeRefusal) -> NewAudit + Sync);

/// What a counted wrong try is answered: the try that reached the maximum locks the code.
fn wrong_refusal(lock: bool, remaining: i64) -> CodeRefusal {
    if lock {
        CodeRefusal::Locked
    } else {
        CodeRefusal::Wrong { remaining }
    }
}

impl Store {
    /// Stores a new code for `login`, replacing any earlier one (used, locked or not).
    /// `NotFound` when the login ID does not exist.
    pub async fn set_code(
        &self,
        login: &str,
        code_hash: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        on_backend!(self, |pool, _PG| {
            upsert_code!(pool, login, code_hash, now, expires_at)?;
            Ok(())
        })
    }

    /// Like [`Store::set_code`], appending `audit` in the same transaction: a code never
    /// exists without its `code.authorize` record, nor the record without the code.
    pub async fn set_code_audited(
        &self,
        login: &str,
        code_hash: &str,
        now: UnixTime,
        expires_at: UnixTime,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let audit = PreparedAudit::new(audit)?;
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock first, as every appender takes it.
            let mut head = lock_chain_head!(PG, tx);
            upsert_code!(&mut *tx, login, code_hash, now, expires_at)?;
            append_chained!(tx, &mut head, &audit);
            tx.commit().await?;
            Ok(())
        })
    }

    /// The stored side of the login's code, if any.
    pub async fn code(&self, login: &str) -> Result<Option<CodeRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, CodeRecord>(
                "SELECT login, code_hash, created_at, expires_at, failed_attempts, locked, \
                 used_at, used_serial FROM issuance_codes WHERE login = $1",
            )
            .bind(login)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Checks a presented code (by its hash, compared in constant time) for `login`. A wrong
    /// code increments the attempt counter and locks the code at `max_attempts`; this is
    /// committed even though the claim is refused. Any other answer writes nothing: an
    /// accepted code is redeemed (and checked again) by [`Store::complete_issue_audited`],
    /// in the transaction that stores the certificate.
    /// See the module documentation for which refusals count.
    pub async fn claim_code(
        &self,
        login: &str,
        presented_hash: &str,
        spki_sha256: &str,
        now: UnixTime,
        max_attempts: i64,
    ) -> Result<CodeClaim, StoreError> {
        let code = on_backend!(self, |pool, _PG| {
            sqlx::query_as::<_, ReadCode>(CLAIM_SELECT)
                .bind(login)
                .fetch_optional(pool)
                .await?
        });
        self.claim_read_code(
            login,
            code,
            presented_hash,
            spki_sha256,
            now,
            max_attempts,
            None,
        )
        .await
    }

    /// The user `login`, whether its contract is enabled and its code, in one read: what an
    /// issuance request checks before anything is signed. `None` when the login ID does not
    /// exist.
    pub async fn issuance_subject(
        &self,
        login: &str,
    ) -> Result<Option<IssuanceSubject>, StoreError> {
        on_backend!(self, |pool, _PG| {
            let row = sqlx::query_as::<_, SubjectRow>(
                "SELECT u.login, u.contract_id, u.role, u.email, u.enabled, u.created_at, \
                 c.enabled AS contract_enabled, k.login AS code_login, k.code_hash, \
                 k.created_at AS code_created_at, k.expires_at, k.failed_attempts, k.locked, \
                 k.used_at, k.used_serial, k.claim_spki_sha256 \
                 FROM users u LEFT JOIN contracts c ON c.id = u.contract_id \
                 LEFT JOIN issuance_codes k ON k.login = u.login WHERE u.login = $1",
            )
            .bind(login)
            .fetch_optional(pool)
            .await?;
            row.map(SubjectRow::into_subject).transpose()
        })
    }

    /// [`Store::claim_code`] on the code row `subject` was read with: the same decisions and
    /// counting, one read fewer. A wrong try is counted together with the audit entry
    /// `refusal_audit` makes for its refusal (answered `CountedAndAudited`).
    pub async fn claim_subject_code(
        &self,
        subject: &IssuanceSubject,
        presented_hash: &str,
        spki_sha256: &str,
        now: UnixTime,
        max_attempts: i64,
        refusal_audit: RefusalAudit<'_>,
    ) -> Result<CodeClaim, StoreError> {
        self.claim_read_code(
            &subject.user.login,
            subject.code.clone(),
            presented_hash,
            spki_sha256,
            now,
            max_attempts,
            Some(refusal_audit),
        )
        .await
    }

    /// Decides a claim on a code row already read (without a lock); only a wrong code is
    /// decided again under the row's write lock before its try is counted.
    #[allow(clippy::too_many_arguments)]
    async fn claim_read_code(
        &self,
        login: &str,
        code: Option<ReadCode>,
        presented_hash: &str,
        spki_sha256: &str,
        now: UnixTime,
        max_attempts: i64,
        refusal_audit: Option<RefusalAudit<'_>>,
    ) -> Result<CodeClaim, StoreError> {
        // Most claims are accepted (or dead) and need no write lock, so they never queue
        // behind the issuance writer for SQLite's lock.
        let Some(read) = code else {
            return Ok(CodeClaim::Refused(CodeRefusal::NoCode));
        };
        let view = CodeView {
            code: &read.code,
            claim_spki_sha256: read.claim_spki_sha256.as_deref(),
        };
        let matches = hash_eq(&read.code.code_hash, presented_hash);
        let mut decision = decide(&view, matches, spki_sha256, now, max_attempts);
        let mut audited = false;
        on_backend!(self, |pool, PG| {
            if let Decision::Wrong { .. } = decision {
                // Counting writes: decide again under the row's write lock, so concurrent
                // wrong tries all count and the lock lands exactly at the maximum.
                let mut tx = pool.begin_write().await?;
                // The audit lock before the row's, in the order every appender takes them
                // (an issuance holds the audit lock while it redeems the code row).
                let mut head = lock_chain_head_if!(PG, tx, refusal_audit.is_some());
                let row = sqlx::query_as::<_, ReadCode>(if PG {
                    CLAIM_SELECT_FOR_UPDATE
                } else {
                    CLAIM_SELECT
                })
                .bind(login)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(locked_read) = row else {
                    return Ok(CodeClaim::Refused(CodeRefusal::NoCode));
                };
                let view = CodeView {
                    code: &locked_read.code,
                    claim_spki_sha256: locked_read.claim_spki_sha256.as_deref(),
                };
                let matches = hash_eq(&locked_read.code.code_hash, presented_hash);
                decision = decide(&view, matches, spki_sha256, now, max_attempts);
                if let Decision::Wrong { lock, remaining } = decision {
                    sqlx::query(
                        "UPDATE issuance_codes SET failed_attempts = failed_attempts + 1, \
                         locked = $2 WHERE login = $1",
                    )
                    .bind(login)
                    .bind(lock)
                    .execute(&mut *tx)
                    .await?;
                    if let (Some(make), Some(head)) = (refusal_audit, head.as_mut()) {
                        let refusal = wrong_refusal(lock, remaining);
                        let entry = PreparedAudit::new(&make(&refusal))?;
                        append_chained!(tx, head, &entry);
                        audited = true;
                    }
                    tx.commit().await?;
                    tracing::debug!(login, lock, "wrong issuance code counted");
                }
                // Any other decision drops `tx`: rolled back, nothing written.
            }
            match decision {
                Decision::Refuse(r) => Ok(CodeClaim::Refused(r)),
                Decision::Fresh => Ok(CodeClaim::Fresh),
                Decision::Wrong { lock, remaining } => {
                    let refusal = wrong_refusal(lock, remaining);
                    Ok(if audited {
                        CodeClaim::CountedAndAudited(refusal)
                    } else {
                        CodeClaim::Refused(refusal)
                    })
                }
                Decision::AlreadyIssued(serial) => {
                    let row = sqlx::query_as::<_, CertRecord>(concat!(
                        "SELECT ",
                        cert_cols!(),
                        " FROM certificates WHERE serial = $1"
                    ))
                    .bind(serial)
                    .fetch_optional(pool)
                    .await?;
                    let cert = match row {
                        Some(cert) => cert,
                        None => {
                            return Err(StoreError::Corrupt(format!(
                                "the code of login ID {login:?} names a missing certificate"
                            )));
                        }
                    };
                    // Revoked meanwhile (e.g. by staff): do not hand it out again.
                    if cert.status != super::CertStatus::Current {
                        return Ok(CodeClaim::Refused(CodeRefusal::Used));
                    }
                    Ok(CodeClaim::AlreadyIssued(Box::new(cert)))
                }
            }
        })
    }

    /// Redeems the login's code for `cert` without audit records; see
    /// [`Store::complete_issue_audited`]. A code already redeemed, even for this same key,
    /// is a `Conflict` here. Returns the serials it revoked.
    pub async fn complete_issue(
        &self,
        code_hash: &str,
        cert: &CertRecord,
        now: UnixTime,
    ) -> Result<Vec<String>, StoreError> {
        match self
            .complete_issue_audited(code_hash, cert, now, &[])
            .await?
        {
            Redeemed::Stored { revoked } => Ok(revoked),
            Redeemed::AlreadyIssued(_) => Err(StoreError::Conflict(format!(
                "the issuance code of login ID {:?} was already redeemed",
                cert.login
            ))),
        }
    }

    /// In one transaction, shared with other issuances through the group writer: checks the
    /// code is still unused, valid, unlocked and matches; revokes (reason `superseded`) any
    /// current certificate of the login; inserts `cert` as current; marks the code used for
    /// it; and appends `audit` to the audit chain. Returns once that transaction committed.
    ///
    /// `Conflict` when the code was redeemed meanwhile for another key (or is no longer
    /// valid), `NotFound` when the login has no code; then nothing of it is stored.
    /// [`Redeemed::AlreadyIssued`] when it was redeemed meanwhile for this same code and key.
    pub async fn complete_issue_audited(
        &self,
        code_hash: &str,
        cert: &CertRecord,
        now: UnixTime,
        audit: &[NewAudit],
    ) -> Result<Redeemed, StoreError> {
        let audit = audit
            .iter()
            .map(PreparedAudit::new)
            .collect::<Result<Vec<_>, _>>()?;
        let work = IssueWork::Fresh {
            code_hash: code_hash.to_owned(),
            cert: cert.clone(),
            now,
        };
        let done = self.inner.writer.submit(Some(work), audit).await?;
        match done.outcome {
            JobOutcome::Stored { revoked, changed } => {
                self.announce(&changed);
                Ok(Redeemed::Stored { revoked })
            }
            JobOutcome::AlreadyIssued(c) => Ok(Redeemed::AlreadyIssued(c)),
            other @ (JobOutcome::AuditOnly | JobOutcome::Recorded) => Err(StoreError::Corrupt(
                format!("the group writer answered an issuance with {other:?}"),
            )),
        }
    }
}

/// A login ID as an issuance request checks it, from [`Store::issuance_subject`].
#[derive(Debug, Clone)]
pub struct IssuanceSubject {
    pub user: User,
    /// Whether the user's contract is enabled; `None` when its row is missing.
    pub contract_enabled: Option<bool>,
    /// The login's code row, for [`Store::claim_subject_code`].
    code: Option<ReadCode>,
}

/// A code row and the key it was claimed for (as [`CLAIM_SELECT`] reads it).
#[derive(Debug, Clone, sqlx::FromRow)]
struct ReadCode {
    #[sqlx(flatten)]
    code: CodeRecord,
    claim_spki_sha256: Option<String>,
}

/// The row [`Store::issuance_subject`] reads: a user, its contract's flag, and the columns
/// of its code, all NULL when it has none (a LEFT JOIN, so every code column is optional
/// here; `code_login` tells whether the code row exists).
#[derive(sqlx::FromRow)]
struct SubjectRow {
    #[sqlx(flatten)]
    user: User,
    contract_enabled: Option<bool>,
    code_login: Option<String>,
    code_hash: Option<String>,
    code_created_at: Option<UnixTime>,
    expires_at: Option<UnixTime>,
    failed_attempts: Option<i64>,
    locked: Option<bool>,
    used_at: Option<UnixTime>,
    used_serial: Option<String>,
    claim_spki_sha256: Option<String>,
}

impl SubjectRow {
    fn into_subject(self) -> Result<IssuanceSubject, StoreError> {
        let code = match self.code_login {
            None => None,
            Some(login) => {
                // NOT NULL columns of an existing code row.
                let missing =
                    || StoreError::Corrupt(format!("the code row of {login:?} is incomplete"));
                Some(ReadCode {
                    code: CodeRecord {
                        code_hash: self.code_hash.ok_or_else(missing)?,
                        created_at: self.code_created_at.ok_or_else(missing)?,
                        expires_at: self.expires_at.ok_or_else(missing)?,
                        failed_attempts: self.failed_attempts.ok_or_else(missing)?,
                        locked: self.locked.ok_or_else(missing)?,
                        used_at: self.used_at,
                        used_serial: self.used_serial,
                        login,
                    },
                    claim_spki_sha256: self.claim_spki_sha256,
                })
            }
        };
        Ok(IssuanceSubject {
            user: self.user,
            contract_enabled: self.contract_enabled,
            code,
        })
    }
}

/// The code row as a claim reads it.
const CLAIM_SELECT: &str = "SELECT login, code_hash, created_at, expires_at, failed_attempts, \
     locked, used_at, used_serial, claim_spki_sha256 FROM issuance_codes WHERE login = $1";
const CLAIM_SELECT_FOR_UPDATE: &str = "SELECT login, code_hash, created_at, expires_at, \
     failed_attempts, locked, used_at, used_serial, claim_spki_sha256 \
     FROM issuance_codes WHERE login = $1 FOR UPDATE";

/// The parts of a code row a claim decides on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodeView<'a> {
    pub code: &'a CodeRecord,
    pub claim_spki_sha256: Option<&'a str>,
}

/// What a claim does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Accept: record the claimed key.
    Fresh,
    /// Answer with the certificate this code was redeemed for.
    AlreadyIssued(String),
    /// Count a wrong try; `lock` when it reaches the maximum.
    Wrong { lock: bool, remaining: i64 },
    /// Refuse without counting.
    Refuse(CodeRefusal),
}

/// Decides a claim from the stored state alone (see the module documentation).
pub(crate) fn decide(
    view: &CodeView<'_>,
    matches: bool,
    spki_sha256: &str,
    now: UnixTime,
    max_attempts: i64,
) -> Decision {
    let code = view.code;
    if code.used_at.is_some() {
        return match (&code.used_serial, view.claim_spki_sha256) {
            (Some(serial), Some(claimed)) if matches && hash_eq(claimed, spki_sha256) => {
                Decision::AlreadyIssued(serial.clone())
            }
            _ => Decision::Refuse(CodeRefusal::Used),
        };
    }
    if code.locked {
        return Decision::Refuse(CodeRefusal::Locked);
    }
    if now >= code.expires_at {
        return Decision::Refuse(CodeRefusal::Expired);
    }
    if matches {
        return Decision::Fresh;
    }
    let failed = code.failed_attempts.saturating_add(1);
    let remaining = max_attempts.saturating_sub(failed).max(0);
    Decision::Wrong {
        lock: remaining == 0,
        remaining,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(used: bool, locked: bool, failed: i64) -> CodeRecord {
        CodeRecord {
            login: "alice".into(),
            code_hash: "h".into(),
            created_at: 0,
            expires_at: 100,
            failed_attempts: failed,
            locked,
            used_at: used.then_some(10),
            used_serial: used.then(|| "0a".to_owned()),
        }
    }

    #[test]
    fn live_code_counts_wrong_tries_and_locks_at_max() {
        let c = code(false, false, 0);
        let v = CodeView {
            code: &c,
            claim_spki_sha256: None,
        };
        assert_eq!(decide(&v, true, "k", 5, 3), Decision::Fresh);
        assert_eq!(
            decide(&v, false, "k", 5, 3),
            Decision::Wrong {
                lock: false,
                remaining: 2
            }
        );
        let c = code(false, false, 2);
        let v = CodeView {
            code: &c,
            claim_spki_sha256: None,
        };
        assert_eq!(
            decide(&v, false, "k", 5, 3),
            Decision::Wrong {
                lock: true,
                remaining: 0
            }
        );
    }

    #[test]
    fn dead_codes_refuse_without_counting() {
        let c = code(false, true, 3);
        let v = CodeView {
            code: &c,
            claim_spki_sha256: None,
        };
        assert_eq!(
            decide(&v, true, "k", 5, 3),
            Decision::Refuse(CodeRefusal::Locked)
        );
        let c = code(false, false, 0);
        let v = CodeView {
            code: &c,
            claim_spki_sha256: None,
        };
        assert_eq!(
            decide(&v, true, "k", 100, 3),
            Decision::Refuse(CodeRefusal::Expired)
        );
        let c = code(true, false, 0);
        let v = CodeView {
            code: &c,
            claim_spki_sha256: Some("k"),
        };
        assert_eq!(
            decide(&v, true, "k", 500, 3),
            Decision::AlreadyIssued("0a".into())
        );
        assert_eq!(
            decide(&v, true, "other", 5, 3),
            Decision::Refuse(CodeRefusal::Used)
        );
        assert_eq!(
            decide(&v, false, "k", 5, 3),
            Decision::Refuse(CodeRefusal::Used)
        );
    }
}
