//! One-time issuance codes: storing, claiming (with attempt counting) and redeeming.
//!
//! Owns the atomicity of a claim and of a redemption. The code itself never reaches the
//! store, only its hash (hashing and code generation are the caller's). What counts as a
//! wrong try is decided by [`decide`], a pure function:
//! - a used code answers `AlreadyIssued` (same code, same key, certificate still current)
//!   or `Used`, and counts nothing (it cannot be redeemed any more, so guessing gains nothing);
//! - a locked code answers `Locked`, an expired one `Expired`, and counts nothing;
//! - only a wrong code presented against a live code counts, and the try that reaches
//!   `max_attempts` locks the code and answers `Locked`.
//!
//! A code is expired from `expires_at` on (`now >= expires_at`).

use super::backend::{WritePool, on_backend};
use super::certs::insert_current;
use super::changes::pg_notify;
use super::rows::{cert_cols, cert_from_row, code_from_row};
use super::{CertRecord, CodeClaim, CodeRecord, CodeRefusal, Store, StoreError};
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
    /// committed even though the claim is refused. An accepted claim records `spki_sha256`.
    /// See the module documentation for which refusals count.
    pub async fn claim_code(
        &self,
        login: &str,
        presented_hash: &str,
        spki_sha256: &str,
        now: UnixTime,
        max_attempts: i64,
    ) -> Result<CodeClaim, StoreError> {
        on_backend!(self, |pool, PG| {
            use sqlx::Row as _;
            let mut tx = pool.begin_write().await?;
            let row = sqlx::query(if PG {
                "SELECT login, code_hash, created_at, expires_at, failed_attempts, locked, \
                 used_at, used_serial, claim_spki_sha256 \
                 FROM issuance_codes WHERE login = $1 FOR UPDATE"
            } else {
                "SELECT login, code_hash, created_at, expires_at, failed_attempts, locked, \
                 used_at, used_serial, claim_spki_sha256 \
                 FROM issuance_codes WHERE login = $1"
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
            match decide(&view, matches, spki_sha256, now, max_attempts) {
                Decision::Refuse(r) => Ok(CodeClaim::Refused(r)),
                Decision::Fresh => {
                    sqlx::query(
                        "UPDATE issuance_codes SET claim_spki_sha256 = $2 WHERE login = $1",
                    )
                    .bind(login)
                    .bind(spki_sha256)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(CodeClaim::Fresh)
                }
                Decision::Wrong { lock, remaining } => {
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
                    Ok(CodeClaim::Refused(if lock {
                        CodeRefusal::Locked
                    } else {
                        CodeRefusal::Wrong { remaining }
                    }))
                }
                Decision::AlreadyIssued(serial) => {
                    let row = sqlx::query(concat!(
                        "SELECT ",
                        cert_cols!(),
                        " FROM certificates WHERE serial = $1"
                    ))
                    .bind(serial)
                    .fetch_optional(&mut *tx)
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

    /// In one transaction: checks the code is still unused and matches, revokes (reason
    /// `superseded`) any current certificate of the login, inserts `cert` as current and
    /// marks the code used for it. `Conflict` when the code was redeemed meanwhile (or is
    /// no longer valid), `NotFound` when the login has no code. Returns the serials it revoked.
    pub async fn complete_issue(
        &self,
        code_hash: &str,
        cert: &CertRecord,
        now: UnixTime,
    ) -> Result<Vec<String>, StoreError> {
        let login = cert.login.as_str();
        let revoked = on_backend!(self, |pool, PG| {
            use sqlx::Row as _;
            let mut tx = pool.begin_write().await?;
            // Lock the code row first: a concurrent redemption waits here, then sees `used_at`.
            let row = sqlx::query(if PG {
                "SELECT code_hash, expires_at, locked, used_at \
                 FROM issuance_codes WHERE login = $1 FOR UPDATE"
            } else {
                "SELECT code_hash, expires_at, locked, used_at \
                 FROM issuance_codes WHERE login = $1"
            })
            .bind(login)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Err(StoreError::NotFound(format!(
                    "issuance code for login ID {login:?}"
                )));
            };
            let stored: String = row.try_get("code_hash")?;
            let expires_at: i64 = row.try_get("expires_at")?;
            let locked: bool = row.try_get("locked")?;
            let used_at: Option<i64> = row.try_get("used_at")?;
            if used_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "the issuance code of login ID {login:?} was already redeemed"
                )));
            }
            if locked || now >= expires_at || !hash_eq(&stored, code_hash) {
                return Err(StoreError::Conflict(format!(
                    "the issuance code of login ID {login:?} is no longer valid"
                )));
            }

            let revoked: Vec<String> = sqlx::query_scalar(
                "UPDATE certificates SET status = 'revoked', revoked_at = $2, \
                 revocation_reason = 'superseded' \
                 WHERE login = $1 AND status = 'current' RETURNING serial",
            )
            .bind(login)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;

            insert_current!(&mut *tx, cert)?;

            let done = sqlx::query(
                "UPDATE issuance_codes SET used_at = $2, used_serial = $3, \
                 claim_spki_sha256 = $4 WHERE login = $1 AND used_at IS NULL",
            )
            .bind(login)
            .bind(now)
            .bind(cert.serial.as_str())
            .bind(cert.spki_sha256.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                // Dropping the transaction rolls the insert back.
                return Err(StoreError::Conflict(format!(
                    "the issuance code of login ID {login:?} was already redeemed"
                )));
            }

            pg_notify!(PG, tx, revoked.iter().chain([&cert.serial]));
            tx.commit().await?;
            Ok::<_, StoreError>(revoked)
        })?;
        self.announce(&revoked);
        self.announce(std::slice::from_ref(&cert.serial));
        Ok(revoked)
    }
}

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
