//! Server certificates signed by `ca issue-server`: stored with their audit record in one
//! transaction, read for OCSP and the CRL, revoked like client certificates.
//!
//! Owns the `server_certificates` table. Whether a name may be in a server certificate is
//! decided by the CA profile, not here.

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head};
use super::backend::{WritePool, on_backend};
use super::changes::pg_notify;
use super::{NewAudit, ServerCertRecord, Store, StoreError};
use crate::clock::UnixTime;

macro_rules! server_cols {
    () => {
        "serial, ca_id, names, der, sha256, not_before, not_after, status, revoked_at, \
         revocation_reason, created_at"
    };
}

impl Store {
    /// Stores `cert` (status current) with `audit` appended in the same transaction.
    /// `Conflict` when its serial or DER is already stored.
    pub async fn insert_server_certificate_audited(
        &self,
        cert: &ServerCertRecord,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let entry = PreparedAudit::new(audit)?;
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_chain_head!(PG, tx);
            let done = sqlx::query(concat!(
                "INSERT INTO server_certificates (",
                server_cols!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, 'current', NULL, NULL, $8) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(&cert.serial)
            .bind(cert.ca_id)
            .bind(&cert.names)
            .bind(&cert.der)
            .bind(&cert.sha256)
            .bind(cert.not_before)
            .bind(cert.not_after)
            .bind(cert.created_at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "server certificate {} is already stored",
                    cert.serial
                )));
            }
            append_chained!(tx, &mut head, &entry);
            pg_notify!(PG, tx, [&cert.serial]);
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })?;
        self.announce(std::slice::from_ref(&cert.serial));
        Ok(())
    }

    /// The server certificate `serial`, if any.
    pub async fn server_certificate(
        &self,
        serial: &str,
    ) -> Result<Option<ServerCertRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, ServerCertRecord>(concat!(
                "SELECT ",
                server_cols!(),
                " FROM server_certificates WHERE serial = $1"
            ))
            .bind(serial)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Every server certificate, oldest first.
    pub async fn server_certificates(&self) -> Result<Vec<ServerCertRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, ServerCertRecord>(concat!(
                "SELECT ",
                server_cols!(),
                " FROM server_certificates ORDER BY created_at, serial"
            ))
            .fetch_all(pool)
            .await?)
        })
    }

    /// Revoked server certificates of CA `ca_id` not expired at `now`, for the CRL.
    pub(crate) async fn revoked_server_certificates(
        &self,
        ca_id: i64,
        now: UnixTime,
    ) -> Result<Vec<ServerCertRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, ServerCertRecord>(concat!(
                "SELECT ",
                server_cols!(),
                " FROM server_certificates \
                 WHERE ca_id = $1 AND status = 'revoked' AND not_after > $2 ORDER BY serial"
            ))
            .bind(ca_id)
            .bind(now)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Revokes the server certificate `serial` with `reason`, `audit` appended in the same
    /// transaction. `NotFound` for an unknown serial, `Conflict` when already revoked.
    pub async fn revoke_server_certificate_audited(
        &self,
        serial: &str,
        reason: &str,
        now: UnixTime,
        audit: impl FnOnce(&ServerCertRecord) -> NewAudit,
    ) -> Result<ServerCertRecord, StoreError> {
        let cert = on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_chain_head!(PG, tx);
            let revoked = sqlx::query_as::<_, ServerCertRecord>(concat!(
                "UPDATE server_certificates SET status = 'revoked', revoked_at = $2, \
                 revocation_reason = $3 WHERE serial = $1 AND status <> 'revoked' RETURNING ",
                server_cols!()
            ))
            .bind(serial)
            .bind(now)
            .bind(reason)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(cert) = revoked else {
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT serial FROM server_certificates WHERE serial = $1")
                        .bind(serial)
                        .fetch_optional(&mut *tx)
                        .await?;
                return Err(match exists {
                    Some(_) => StoreError::Conflict(format!(
                        "server certificate {serial} is already revoked"
                    )),
                    None => StoreError::NotFound(format!("certificate {serial}")),
                });
            };
            let entry = PreparedAudit::new(&audit(&cert))?;
            append_chained!(tx, &mut head, &entry);
            pg_notify!(PG, tx, [&cert.serial]);
            tx.commit().await?;
            Ok::<_, StoreError>(cert)
        })?;
        self.announce(std::slice::from_ref(&cert.serial));
        Ok(cert)
    }
}
