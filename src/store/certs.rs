//! Certificates: renewal, revocation, re-issue, retirement of superseded certificates, and
//! the reads the gateway, the CRL and the CLI need.
//!
//! Owns the atomicity of each status change and its announcement (`pg_notify` inside the
//! transaction, the local broadcast after commit). Whether a change is allowed (who may
//! revoke, when renewal opens) is decided in `lifecycle`, not here. Serials are matched
//! exactly as stored (lowercase hex): callers normalise what users type.

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head_if};
use super::backend::{WritePool, on_backend};
use super::changes::pg_notify;
use super::issuance_parts::upsert_code;
use super::issue_writer::{IssueWork, JobOutcome};
use super::rows::{cert_cols, cert_cols_c, facts_cols};
use super::{
    CertFilter, CertRecord, CertStatus, CertStatusView, NewAudit, StatusFacts, Store, StoreError,
};
use crate::clock::UnixTime;

/// Why a public key may not be certified again ([`Store::key_conflict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyConflict {
    /// Certificate `serial`, with this key, was revoked as `keyCompromise`.
    Compromised { serial: String },
    /// Certificate `serial`, with this key, belongs to `login`.
    OtherLogin { serial: String, login: String },
}

/// Revokes (reason `superseded`, at `$1`) the superseded certificates of login ID `$2`
/// superseded at or before `$3`, the creation time of their successor; returns their
/// serials.
const RETIRE_PREDECESSORS: &str = "UPDATE certificates SET status = 'revoked', \
     revoked_at = $1, revocation_reason = 'superseded' \
     WHERE status = 'superseded' AND login = $2 AND superseded_at <= $3 RETURNING serial";

impl Store {
    /// In one transaction: `old_serial` (must be current) becomes superseded at `now`, and
    /// `cert` becomes the current certificate. `Conflict` when `old_serial` is not current
    /// or belongs to another login ID, `NotFound` when it does not exist.
    pub async fn complete_renewal(
        &self,
        old_serial: &str,
        cert: &CertRecord,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.complete_renewal_audited(old_serial, cert, now, &[])
            .await
    }

    /// [`Store::complete_renewal`] with `audit` appended to the audit chain in the same
    /// transaction, which the group writer may share with other issuances. Returns once it
    /// committed; on an error nothing of it is stored.
    pub async fn complete_renewal_audited(
        &self,
        old_serial: &str,
        cert: &CertRecord,
        now: UnixTime,
        audit: &[NewAudit],
    ) -> Result<(), StoreError> {
        let audit = audit
            .iter()
            .map(PreparedAudit::new)
            .collect::<Result<Vec<_>, _>>()?;
        let work = IssueWork::Renewal {
            old_serial: old_serial.to_owned(),
            cert: cert.clone(),
            now,
        };
        let done = self.inner.writer.submit(Some(work), audit).await?;
        match done.outcome {
            JobOutcome::Stored { changed, .. } => {
                self.announce(&changed);
                Ok(())
            }
            other => Err(StoreError::Corrupt(format!(
                "the group writer answered a renewal with {other:?}"
            ))),
        }
    }

    /// Revokes a current or superseded certificate, and with it every superseded
    /// predecessor of the same login ID still in its overlap (reason `superseded`): a
    /// predecessor never outlives its revoked successor. `NotFound` for an unknown serial,
    /// `Conflict` when it is already revoked. Returns the revoked record.
    pub async fn revoke(
        &self,
        serial: &str,
        reason: &str,
        now: UnixTime,
    ) -> Result<CertRecord, StoreError> {
        self.revoke_inner(serial, reason, now, None::<fn(&CertRecord) -> NewAudit>)
            .await
    }

    /// [`Store::revoke`] with the audit record `audit` makes from the revoked certificate
    /// appended in the same transaction: both are stored or neither.
    pub async fn revoke_audited(
        &self,
        serial: &str,
        reason: &str,
        now: UnixTime,
        audit: impl FnOnce(&CertRecord) -> NewAudit,
    ) -> Result<CertRecord, StoreError> {
        self.revoke_inner(serial, reason, now, Some(audit)).await
    }

    async fn revoke_inner(
        &self,
        serial: &str,
        reason: &str,
        now: UnixTime,
        audit: Option<impl FnOnce(&CertRecord) -> NewAudit>,
    ) -> Result<CertRecord, StoreError> {
        let cert = on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock before the row lock, as every appender does.
            let mut head = lock_chain_head_if!(PG, tx, audit.is_some());
            // The condition re-checks the row under its lock: a concurrent revocation of
            // the same serial makes this one update nothing.
            let revoked = sqlx::query_as::<_, CertRecord>(concat!(
                "UPDATE certificates SET status = 'revoked', revoked_at = $2, \
                 revocation_reason = $3 WHERE serial = $1 AND status <> 'revoked' RETURNING ",
                cert_cols!()
            ))
            .bind(serial)
            .bind(now)
            .bind(reason)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(cert) = revoked else {
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT serial FROM certificates WHERE serial = $1")
                        .bind(serial)
                        .fetch_optional(&mut *tx)
                        .await?;
                return Err(match exists {
                    Some(_) => {
                        StoreError::Conflict(format!("certificate {serial} is already revoked"))
                    }
                    None => StoreError::NotFound(format!("certificate {serial}")),
                });
            };
            // Its predecessors: superseded by it or before it.
            let predecessors: Vec<String> = sqlx::query_scalar(RETIRE_PREDECESSORS)
                .bind(now)
                .bind(&cert.login)
                .bind(cert.created_at)
                .fetch_all(&mut *tx)
                .await?;
            if let (Some(make), Some(head)) = (audit, head.as_mut()) {
                let entry = PreparedAudit::new(&make(&cert))?;
                append_chained!(tx, head, &entry);
            }
            pg_notify!(PG, tx, [&cert.serial]);
            pg_notify!(PG, tx, &predecessors);
            tx.commit().await?;
            Ok::<_, StoreError>((cert, predecessors))
        })?;
        let (cert, predecessors) = cert;
        self.announce(std::slice::from_ref(&cert.serial));
        self.announce_retired(&cert.serial, &predecessors);
        Ok(cert)
    }

    /// Announces predecessors revoked with their successor.
    fn announce_retired(&self, serial: &str, retired: &[String]) {
        if !retired.is_empty() {
            tracing::info!(
                serial,
                retired = ?retired,
                "superseded predecessors revoked with their successor"
            );
            self.announce(retired);
        }
    }

    /// In one transaction: revokes the login's current certificate (if any) with `reason`,
    /// and every superseded one still in its overlap (reason `superseded`), and stores a
    /// new code. Returns the revoked current certificate. `NotFound` when the login ID
    /// does not exist.
    pub async fn reissue(
        &self,
        login: &str,
        reason: &str,
        code_hash: &str,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<Option<CertRecord>, StoreError> {
        self.reissue_inner(
            login,
            reason,
            code_hash,
            now,
            expires_at,
            None::<fn(Option<&CertRecord>) -> NewAudit>,
        )
        .await
    }

    /// [`Store::reissue`] with the audit record `audit` makes from the revoked certificate
    /// (if any) appended in the same transaction: all of it is stored or none.
    pub async fn reissue_audited(
        &self,
        login: &str,
        reason: &str,
        code_hash: &str,
        now: UnixTime,
        expires_at: UnixTime,
        audit: impl FnOnce(Option<&CertRecord>) -> NewAudit,
    ) -> Result<Option<CertRecord>, StoreError> {
        self.reissue_inner(login, reason, code_hash, now, expires_at, Some(audit))
            .await
    }

    async fn reissue_inner(
        &self,
        login: &str,
        reason: &str,
        code_hash: &str,
        now: UnixTime,
        expires_at: UnixTime,
        audit: Option<impl FnOnce(Option<&CertRecord>) -> NewAudit>,
    ) -> Result<Option<CertRecord>, StoreError> {
        let revoked = on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock before the row locks, as every appender does.
            let mut head = lock_chain_head_if!(PG, tx, audit.is_some());
            let revoked = sqlx::query_as::<_, CertRecord>(concat!(
                "UPDATE certificates SET status = 'revoked', revoked_at = $2, \
                 revocation_reason = $3 WHERE login = $1 AND status = 'current' RETURNING ",
                cert_cols!()
            ))
            .bind(login)
            .bind(now)
            .bind(reason)
            .fetch_optional(&mut *tx)
            .await?;
            // Every superseded one too: a copy of a predecessor must not outlive the
            // re-issue that was asked for because a certificate was lost or stolen.
            let predecessors: Vec<String> = sqlx::query_scalar(RETIRE_PREDECESSORS)
                .bind(now)
                .bind(login)
                .bind(UnixTime::MAX)
                .fetch_all(&mut *tx)
                .await?;
            upsert_code!(&mut *tx, login, code_hash, now, expires_at)?;
            if let (Some(make), Some(head)) = (audit, head.as_mut()) {
                let entry = PreparedAudit::new(&make(revoked.as_ref()))?;
                append_chained!(tx, head, &entry);
            }
            if let Some(c) = &revoked {
                pg_notify!(PG, tx, [&c.serial]);
            }
            pg_notify!(PG, tx, &predecessors);
            tx.commit().await?;
            Ok::<_, StoreError>((revoked, predecessors))
        })?;
        let (revoked, predecessors) = revoked;
        if let Some(c) = &revoked {
            self.announce(std::slice::from_ref(&c.serial));
        }
        self.announce_retired(login, &predecessors);
        Ok(revoked)
    }

    /// Records the first time the gateway saw `serial` in use; a no-op after the first call.
    /// Returns true when this call set it.
    ///
    /// The first use of a renewal's certificate ends its predecessor's overlap at once: in
    /// the same transaction every superseded certificate of the login ID that the new one
    /// replaced is revoked (reason `superseded`, from now) and announced, as
    /// [`Store::retire_superseded`] would do at its next pass.
    pub async fn mark_first_used(&self, serial: &str, now: UnixTime) -> Result<bool, StoreError> {
        let (first, retired) = on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            let used: Option<(String, i64)> = sqlx::query_as(
                "UPDATE certificates SET first_used_at = $2 \
                 WHERE serial = $1 AND first_used_at IS NULL \
                 RETURNING login, created_at",
            )
            .bind(serial)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            let retired: Vec<String> = match &used {
                None => Vec::new(),
                Some((login, created_at)) => {
                    sqlx::query_scalar(RETIRE_PREDECESSORS)
                        .bind(now)
                        .bind(login)
                        .bind(created_at)
                        .fetch_all(&mut *tx)
                        .await?
                }
            };
            pg_notify!(PG, tx, &retired);
            tx.commit().await?;
            Ok::<_, StoreError>((used.is_some(), retired))
        })?;
        if !retired.is_empty() {
            tracing::info!(
                serial,
                retired = ?retired,
                "first use of a renewed certificate: its predecessor is revoked"
            );
            self.announce(&retired);
        }
        Ok(first)
    }

    /// Revokes (reason `superseded`) every superseded certificate whose successor has been
    /// used, or that was superseded before `superseded_before`. Returns their serials.
    ///
    /// A successor is a certificate of the same login ID created at or after the moment the
    /// old one was superseded; "used" means its `first_used_at` is set.
    pub async fn retire_superseded(
        &self,
        superseded_before: UnixTime,
        now: UnixTime,
    ) -> Result<Vec<String>, StoreError> {
        let retired = on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            let retired: Vec<String> = sqlx::query_scalar(
                // Past the overlap: revoked from the overlap's end, the time OCSP and the
                // CRL gave before this ran (status::standing); successor used: from now.
                "UPDATE certificates SET status = 'revoked', \
                 revoked_at = CASE WHEN superseded_at < $2 THEN superseded_at + ($1 - $2) \
                 ELSE $1 END, \
                 revocation_reason = 'superseded' \
                 WHERE status = 'superseded' AND (superseded_at < $2 OR EXISTS ( \
                     SELECT 1 FROM certificates n \
                     WHERE n.login = certificates.login \
                       AND n.serial <> certificates.serial \
                       AND n.first_used_at IS NOT NULL \
                       AND n.created_at >= certificates.superseded_at)) \
                 RETURNING serial",
            )
            .bind(now)
            .bind(superseded_before)
            .fetch_all(&mut *tx)
            .await?;
            pg_notify!(PG, tx, &retired);
            tx.commit().await?;
            Ok::<_, StoreError>(retired)
        })?;
        self.announce(&retired);
        Ok(retired)
    }

    /// The certificate `serial`, if any.
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, CertRecord>(concat!(
                "SELECT ",
                cert_cols!(),
                " FROM certificates WHERE serial = $1"
            ))
            .bind(serial)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// A certificate that keeps `spki_sha256` from being certified for `login`: one of
    /// another login ID with the same key, or one revoked as `keyCompromise` (of any login
    /// ID). `None` when the key may be certified.
    pub async fn key_conflict(
        &self,
        spki_sha256: &str,
        login: &str,
    ) -> Result<Option<KeyConflict>, StoreError> {
        on_backend!(self, |pool, _PG| {
            let row: Option<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT serial, login, revocation_reason FROM certificates \
                 WHERE spki_sha256 = $1 AND (login <> $2 OR revocation_reason = 'keyCompromise') \
                 ORDER BY CASE WHEN revocation_reason = 'keyCompromise' THEN 0 ELSE 1 END LIMIT 1",
            )
            .bind(spki_sha256)
            .bind(login)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|(serial, holder, reason)| {
                if reason.as_deref() == Some("keyCompromise") {
                    KeyConflict::Compromised { serial }
                } else {
                    KeyConflict::OtherLogin {
                        serial,
                        login: holder,
                    }
                }
            }))
        })
    }

    /// The login's current certificate, if any.
    pub async fn current_certificate(&self, login: &str) -> Result<Option<CertRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, CertRecord>(concat!(
                "SELECT ",
                cert_cols!(),
                " FROM certificates WHERE login = $1 AND status = 'current'"
            ))
            .bind(login)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Certificates matching `filter`, oldest first.
    pub async fn certificates(&self, filter: &CertFilter) -> Result<Vec<CertRecord>, StoreError> {
        let status = filter.status.map(CertStatus::as_str);
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, CertRecord>(concat!(
                "SELECT ",
                cert_cols!(),
                " FROM certificates WHERE ($1 IS NULL OR login = $1) \
                  AND ($2 IS NULL OR status = $2) ORDER BY created_at, serial"
            ))
            .bind(filter.login.as_deref())
            .bind(status)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The certificate with its user's and contract's state, for the gateway's live check.
    pub async fn certificate_status(
        &self,
        serial: &str,
    ) -> Result<Option<CertStatusView>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, CertStatusView>(concat!(
                "SELECT ",
                cert_cols_c!(),
                ", u.role AS role, u.enabled AS user_enabled, k.enabled AS contract_enabled, \
                 u.disabled_at AS user_disabled_at, k.disabled_at AS contract_disabled_at \
                 FROM certificates c \
                 JOIN users u ON u.login = c.login \
                 JOIN contracts k ON k.id = c.contract_id \
                 WHERE c.serial = $1"
            ))
            .bind(serial)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// What decides the status of `serial`, client or server certificate, for OCSP.
    pub async fn status_facts(&self, serial: &str) -> Result<Option<StatusFacts>, StoreError> {
        let client = on_backend!(self, |pool, _PG| {
            Ok::<_, StoreError>(
                sqlx::query_as::<_, StatusFacts>(concat!(
                    "SELECT ",
                    facts_cols!(),
                    " FROM certificates c JOIN users u ON u.login = c.login \
                     JOIN contracts k ON k.id = c.contract_id WHERE c.serial = $1"
                ))
                .bind(serial)
                .fetch_optional(pool)
                .await?,
            )
        })?;
        if client.is_some() {
            return Ok(client);
        }
        if let Some(server) = self.server_certificate(serial).await? {
            return Ok(Some(server.facts()));
        }
        // Signed but never handed out: revoked, so no copy of it can pass.
        Ok(self
            .signature_intent(serial)
            .await?
            .and_then(|i| i.discarded_facts()))
    }

    /// What decides the status of every certificate of CA `ca_id` that may be on its CRL at
    /// `now`: not expired, and revoked, superseded or of a disabled login ID or contract.
    /// Server certificates and discarded signatures included, in no particular order (the
    /// CRL builder sorts). The caller applies `status::on_crl`.
    pub async fn facts_for_crl(
        &self,
        ca_id: i64,
        now: UnixTime,
    ) -> Result<Vec<StatusFacts>, StoreError> {
        let mut out = on_backend!(self, |pool, _PG| {
            Ok::<_, StoreError>(
                sqlx::query_as::<_, StatusFacts>(concat!(
                    "SELECT ",
                    facts_cols!(),
                    " FROM certificates c JOIN users u ON u.login = c.login \
                     JOIN contracts k ON k.id = c.contract_id \
                     WHERE c.ca_id = $1 AND c.not_after > $2 \
                       AND (c.status <> 'current' OR NOT u.enabled OR NOT k.enabled)"
                ))
                .bind(ca_id)
                .bind(now)
                .fetch_all(pool)
                .await?,
            )
        })?;
        out.extend(
            self.revoked_server_certificates(ca_id, now)
                .await?
                .iter()
                .map(|s| s.facts()),
        );
        out.extend(self.discarded_facts_for_crl(ca_id, now).await?);
        Ok(out)
    }

    /// How many current certificates expire in `(now, now + within]`: client certificates
    /// and server certificates (`ca issue-server`), in that order.
    /// Customer certificates by status at `now`: current (still valid), expired (current
    /// but past `not_after`, not renewed), superseded, revoked. One scan of the table.
    pub async fn client_certificates_by_status(
        &self,
        now: UnixTime,
    ) -> Result<[i64; 4], StoreError> {
        on_backend!(self, |pool, _PG| {
            let (current, expired, superseded, revoked) =
                sqlx::query_as::<_, (i64, i64, i64, i64)>(
                    "SELECT \
                       COALESCE(SUM(CASE WHEN status = 'current' AND not_after > $1 THEN 1 ELSE 0 END), 0), \
                       COALESCE(SUM(CASE WHEN status = 'current' AND not_after <= $1 THEN 1 ELSE 0 END), 0), \
                       COALESCE(SUM(CASE WHEN status = 'superseded' THEN 1 ELSE 0 END), 0), \
                       COALESCE(SUM(CASE WHEN status = 'revoked' THEN 1 ELSE 0 END), 0) \
                     FROM certificates",
                )
                .bind(now)
                .fetch_one(pool)
                .await?;
            Ok([current, expired, superseded, revoked])
        })
    }

    pub async fn expiring(&self, now: UnixTime, within: i64) -> Result<(i64, i64), StoreError> {
        let until = now.saturating_add(within);
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, (i64, i64)>(
                "SELECT (SELECT COUNT(*) FROM certificates \
                         WHERE status = 'current' AND not_after > $1 AND not_after <= $2), \
                        (SELECT COUNT(*) FROM server_certificates \
                         WHERE status = 'current' AND not_after > $1 AND not_after <= $2)",
            )
            .bind(now)
            .bind(until)
            .fetch_one(pool)
            .await?)
        })
    }
}
