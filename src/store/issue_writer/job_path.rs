//! The per-job path of a batch: one fresh issuance or one renewal, run inside the job's own
//! savepoint by `batch`, which rolls the savepoint back when the job fails. Each macro
//! evaluates to the job's [`JobOutcome`](super::job::JobOutcome) or returns its error; the
//! statements are written once for both databases (`$pg` is true on PostgreSQL).

use crate::clock::UnixTime;

/// The code row a fresh issuance locks and decides on.
#[derive(sqlx::FromRow)]
pub(super) struct LockedCode {
    pub code_hash: String,
    pub expires_at: UnixTime,
    pub locked: bool,
    pub used_at: Option<UnixTime>,
    pub used_serial: Option<String>,
    pub claim_spki_sha256: Option<String>,
}

/// A fresh issuance inside the job's savepoint; evaluates to its [`JobOutcome`].
macro_rules! apply_fresh {
    ($pg:expr, $tx:expr, $code_hash:expr, $cert:expr, $now:expr) => {{
        use $crate::clock::UnixTime;
        use $crate::store::issuance_parts::{hash_eq, insert_current};
        use $crate::store::issue_writer::job::JobOutcome;
        use $crate::store::issue_writer::job_path::LockedCode;
        use $crate::store::rows::cert_cols;
        use $crate::store::{CertRecord, CertStatus, StoreError};
        let cert: &CertRecord = $cert;
        let code_hash: &str = $code_hash;
        let now: UnixTime = $now;
        let login = cert.login.as_str();
        // Lock the code row: another instance's redemption waits here, then sees `used_at`.
        let row = sqlx::query_as::<_, LockedCode>(if $pg {
            "SELECT code_hash, expires_at, locked, used_at, used_serial, claim_spki_sha256 \
             FROM issuance_codes WHERE login = $1 FOR UPDATE"
        } else {
            "SELECT code_hash, expires_at, locked, used_at, used_serial, claim_spki_sha256 \
             FROM issuance_codes WHERE login = $1"
        })
        .bind(login)
        .fetch_optional(&mut *$tx)
        .await?;
        let Some(LockedCode {
            code_hash: stored,
            expires_at,
            locked,
            used_at,
            used_serial,
            claim_spki_sha256: claimed,
        }) = row
        else {
            return Err(StoreError::NotFound(format!(
                "issuance code for login ID {login:?}"
            )));
        };
        let matches = hash_eq(&stored, code_hash);
        if used_at.is_some() {
            // The same code and key won a race with this request: answer with that
            // certificate, as a retried request would get it, if it is still current.
            let same_key = claimed
                .as_deref()
                .is_some_and(|c| hash_eq(c, &cert.spki_sha256));
            if let (true, true, Some(serial)) = (matches, same_key, used_serial) {
                let stored_cert = sqlx::query_as::<_, CertRecord>(concat!(
                    "SELECT ",
                    cert_cols!(),
                    " FROM certificates WHERE serial = $1"
                ))
                .bind(serial.as_str())
                .fetch_optional(&mut *$tx)
                .await?;
                if let Some(stored_cert) = stored_cert {
                    if stored_cert.status == CertStatus::Current {
                        return Ok(JobOutcome::AlreadyIssued(Box::new(stored_cert)));
                    }
                }
            }
            return Err(StoreError::Conflict(format!(
                "the issuance code of login ID {login:?} was already redeemed"
            )));
        }
        if locked || now >= expires_at || !matches {
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
        .fetch_all(&mut *$tx)
        .await?;

        insert_current!(&mut *$tx, cert)?;

        let done = sqlx::query(
            "UPDATE issuance_codes SET used_at = $2, used_serial = $3, \
             claim_spki_sha256 = $4 WHERE login = $1 AND used_at IS NULL",
        )
        .bind(login)
        .bind(now)
        .bind(cert.serial.as_str())
        .bind(cert.spki_sha256.as_str())
        .execute(&mut *$tx)
        .await?;
        if done.rows_affected() != 1 {
            // The savepoint rollback undoes the insert.
            return Err(StoreError::Conflict(format!(
                "the issuance code of login ID {login:?} was already redeemed"
            )));
        }
        $crate::store::issue_writer::job_path::complete_intent!($tx, cert, now);
        let mut changed = revoked.clone();
        changed.push(cert.serial.clone());
        JobOutcome::Stored { revoked, changed }
    }};
}
pub(super) use apply_fresh;

/// A renewal inside the job's savepoint; evaluates to its [`JobOutcome`].
macro_rules! apply_renewal {
    ($pg:expr, $tx:expr, $old_serial:expr, $cert:expr, $now:expr) => {{
        use $crate::clock::UnixTime;
        use $crate::store::issuance_parts::insert_current;
        use $crate::store::issue_writer::job::JobOutcome;
        use $crate::store::{CertRecord, CertStatus, StoreError};
        let cert: &CertRecord = $cert;
        let old_serial: &str = $old_serial;
        let now: UnixTime = $now;
        let row = sqlx::query_as::<_, (String, String)>(if $pg {
            "SELECT login, status FROM certificates WHERE serial = $1 FOR UPDATE"
        } else {
            "SELECT login, status FROM certificates WHERE serial = $1"
        })
        .bind(old_serial)
        .fetch_optional(&mut *$tx)
        .await?;
        let Some((login, status)) = row else {
            return Err(StoreError::NotFound(format!("certificate {old_serial}")));
        };
        let status: CertStatus = status.parse().map_err(StoreError::Corrupt)?;
        if status != CertStatus::Current {
            return Err(StoreError::Conflict(format!(
                "certificate {old_serial} is not current"
            )));
        }
        if login != cert.login {
            return Err(StoreError::Conflict(format!(
                "certificate {old_serial} belongs to another login ID"
            )));
        }
        sqlx::query(
            "UPDATE certificates SET status = 'superseded', superseded_at = $2 \
             WHERE serial = $1",
        )
        .bind(old_serial)
        .bind(now)
        .execute(&mut *$tx)
        .await?;
        insert_current!(&mut *$tx, cert)?;
        $crate::store::issue_writer::job_path::complete_intent!($tx, cert, now);
        JobOutcome::Stored {
            revoked: Vec::new(),
            changed: vec![old_serial.to_owned(), cert.serial.clone()],
        }
    }};
}
pub(super) use apply_renewal;

/// Completes the open signature intent of `$cert`, stored in the same transaction (a
/// certificate signed without one, as in store tests, changes nothing here).
macro_rules! complete_intent {
    ($tx:expr, $cert:expr, $now:expr) => {{
        sqlx::query(
            "UPDATE signature_intents SET state = 'completed', settled_at = $2 \
             WHERE serial = $1 AND state = 'open'",
        )
        .bind($cert.serial.as_str())
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}
pub(crate) use complete_intent;

/// Records an open signature intent inside the job's savepoint; evaluates to its
/// [`JobOutcome`](super::job::JobOutcome).
macro_rules! apply_intent {
    ($tx:expr, $intent:expr) => {{
        use $crate::store::issue_writer::job::JobOutcome;
        use $crate::store::{SignatureIntent, StoreError};
        let intent: &SignatureIntent = $intent;
        let done = sqlx::query(concat!(
            "INSERT INTO signature_intents (",
            $crate::store::rows::intent_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, 'open', NULL, $6, NULL, $7, $8) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(&intent.serial)
        .bind(intent.ca_id)
        .bind(&intent.kind)
        .bind(&intent.subject)
        .bind(&intent.spki_sha256)
        .bind(intent.created_at)
        .bind(intent.not_before)
        .bind(intent.not_after)
        .execute(&mut *$tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "serial {} already has a signature intent",
                intent.serial
            )));
        }
        JobOutcome::Recorded
    }};
}
pub(super) use apply_intent;
