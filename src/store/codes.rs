//! One-time issuance codes: storing, claiming (with attempt counting) and redeeming.
//!
//! Owns the atomicity of a claim; a redemption's SQL runs in `issue_writer` (group commit),
//! started from here. The code itself never reaches the
//! store, only its hash (hashing and code generation are the caller's). What counts as a
//! wrong try is decided by [`decide`], a pure function:
//! - a used code answers `AlreadyIssued` (same code, same key, certificate still current)
//!   or `Used`, and counts nothing (it cannot be redeemed any more, so guessing gains nothing);
//! - a locked code answers `Locked`, an expired one `Expired`, and counts nothing;
//! - only a wrong code presented against a live code counts, and the try that reaches
//!   `max_attempts` locks the code and answers `Locked`.
//!
//! A code is expired from `expires_at` on (`now >= expires_at`).

use super::audit_chain::PreparedAudit;
use super::backend::{WritePool, on_backend};
use super::issue_writer::{IssueWork, JobOutcome};
use super::rows::{cert_cols, cert_from_row, code_from_row, user_from_row};
use super::{
    CertRecord, CodeClaim, CodeRecord, CodeRefusal, NewAudit, Redeemed, Store, StoreError, User,
};
use crate::clock::UnixTime;

/// Replaces any earlier code of the login by a fresh one.
macro_rules! upsert_code {
    ($ex:expr, $login:expr, $hash:expr, $now:expr, $expires:expr) => {
        sqlx::query(
            "INSERT INTO issuance_codes (login, code_hash, created_at, expires_at, \
             failed_attempts, locked, used_at, used_serial, claim_spki_sha256) \
             VALUES ($1, $2, $3, $4, 0, FALSE, NULL, NULL, NULL) \
             ON CONFLICT (login) DO UPDATE SET code_hash = excluded.code_hash, \
             created_at = excluded.created_at, expires_at = excluded.expires_at, \
             failed_attempts = 0, locked = FALSE, used_at = NULL, used_serial = NULL, \
             claim_spki_sha256 = NULL",
        )
        .bind($login)
        .bind($hash)
        .bind($now)
        .bind($expires)
        .execute($ex)
        .await
        .map_err(|e| {
            $crate::store::error::on_violation(
                e,
                || "the issuance code changed meanwhile".to_owned(),
                || format!("login ID {:?}", $login),
            )
        })
    };
}
pub(crate) use upsert_code;

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

    /// The stored side of the login's code, if any.
    pub async fn code(&self, login: &str) -> Result<Option<CodeRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            let row = sqlx::query(
                "SELECT login, code_hash, created_at, expires_at, failed_attempts, locked, \
                 used_at, used_serial FROM issuance_codes WHERE login = $1",
            )
            .bind(login)
            .fetch_optional(pool)
            .await?;
            Ok(match row {
                Some(r) => Some(code_from_row!(r)),
                None => None,
            })
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
            use sqlx::Row as _;
            let row = sqlx::query(CLAIM_SELECT)
                .bind(login)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => Some(ReadCode {
                    code: code_from_row!(row),
                    claim_spki_sha256: row.try_get("claim_spki_sha256")?,
                }),
                None => None,
            }
        });
        self.claim_read_code(login, code, presented_hash, spki_sha256, now, max_attempts)
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
            use sqlx::Row as _;
            let row = sqlx::query(
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
            let Some(row) = row else {
                return Ok(None);
            };
            let code_login: Option<String> = row.try_get("code_login")?;
            let code = match code_login {
                Some(code_login) => Some(ReadCode {
                    code: CodeRecord {
                        login: code_login,
                        code_hash: row.try_get("code_hash")?,
                        created_at: row.try_get("code_created_at")?,
                        expires_at: row.try_get("expires_at")?,
                        failed_attempts: row.try_get("failed_attempts")?,
                        locked: row.try_get("locked")?,
                        used_at: row.try_get("used_at")?,
                        used_serial: row.try_get("used_serial")?,
                    },
                    claim_spki_sha256: row.try_get("claim_spki_sha256")?,
                }),
                None => None,
            };
            Ok(Some(IssuanceSubject {
                user: user_from_row!(row),
                contract_enabled: row.try_get("contract_enabled")?,
                code,
            }))
        })
    }

    /// [`Store::claim_code`] on the code row `subject` was read with: the same decisions and
    /// counting, one read fewer.
    pub async fn claim_subject_code(
        &self,
        subject: &IssuanceSubject,
        presented_hash: &str,
        spki_sha256: &str,
        now: UnixTime,
        max_attempts: i64,
    ) -> Result<CodeClaim, StoreError> {
        self.claim_read_code(
            &subject.user.login,
            subject.code.clone(),
            presented_hash,
            spki_sha256,
            now,
            max_attempts,
        )
        .await
    }

    /// Decides a claim on a code row already read (without a lock); only a wrong code is
    /// decided again under the row's write lock before its try is counted.
    async fn claim_read_code(
        &self,
        login: &str,
        code: Option<ReadCode>,
        presented_hash: &str,
        spki_sha256: &str,
        now: UnixTime,
        max_attempts: i64,
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
        on_backend!(self, |pool, PG| {
            use sqlx::Row as _;
            if let Decision::Wrong { .. } = decision {
                // Counting writes: decide again under the row's write lock, so concurrent
                // wrong tries all count and the lock lands exactly at the maximum.
                let mut tx = pool.begin_write().await?;
                let row = sqlx::query(if PG {
                    CLAIM_SELECT_FOR_UPDATE
                } else {
                    CLAIM_SELECT
                })
                .bind(login)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    return Ok(CodeClaim::Refused(CodeRefusal::NoCode));
                };
                let code = code_from_row!(row);
                let claimed: Option<String> = row.try_get("claim_spki_sha256")?;
                let view = CodeView {
                    code: &code,
                    claim_spki_sha256: claimed.as_deref(),
                };
                let matches = hash_eq(&code.code_hash, presented_hash);
                decision = decide(&view, matches, spki_sha256, now, max_attempts);
                if let Decision::Wrong { lock, .. } = decision {
                    sqlx::query(
                        "UPDATE issuance_codes SET failed_attempts = failed_attempts + 1, \
                         locked = $2 WHERE login = $1",
                    )
                    .bind(login)
                    .bind(lock)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    tracing::debug!(login, lock, "wrong issuance code counted");
                }
                // Any other decision drops `tx`: rolled back, nothing written.
            }
            match decision {
                Decision::Refuse(r) => Ok(CodeClaim::Refused(r)),
                Decision::Fresh => Ok(CodeClaim::Fresh),
                Decision::Wrong { lock, remaining } => Ok(CodeClaim::Refused(if lock {
                    CodeRefusal::Locked
                } else {
                    CodeRefusal::Wrong { remaining }
                })),
                Decision::AlreadyIssued(serial) => {
                    let row = sqlx::query(concat!(
                        "SELECT ",
                        cert_cols!(),
                        " FROM certificates WHERE serial = $1"
                    ))
                    .bind(serial)
                    .fetch_optional(pool)
                    .await?;
                    let cert = match row {
                        Some(r) => cert_from_row!(r),
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
            JobOutcome::AuditOnly => Err(StoreError::Corrupt(
                "the group writer answered an issuance with an audit-only outcome".into(),
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

/// A code row and the key it was claimed for, read without a lock.
#[derive(Debug, Clone)]
struct ReadCode {
    code: CodeRecord,
    claim_spki_sha256: Option<String>,
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

/// Compares two hashes in time independent of where they differ.
pub(crate) fn hash_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let len_diff = (a.len() ^ b.len()) as u64;
    // Walk the longer input whole so the time depends only on the lengths.
    let n = a.len().max(b.len());
    let mut diff = 0u8;
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    len_diff == 0 && diff == 0
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
    fn hash_eq_compares_whole_strings() {
        assert!(hash_eq("abcd", "abcd"));
        assert!(!hash_eq("abcd", "abce"));
        assert!(!hash_eq("abcd", "abc"));
        assert!(!hash_eq("", "a"));
        assert!(hash_eq("", ""));
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
