//! CA records and CRL numbers.
//!
//! Owns "exactly one active CA" (also enforced by a partial unique index) and monotonic CRL
//! numbers. It never touches keys: `key_label` only names the key object in the HSM.

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head_if};
use super::backend::{WritePool, on_backend};
use super::error::on_violation;
use super::{CaRecord, NewAudit, Store, StoreError};
use crate::clock::UnixTime;

impl Store {
    /// Stores a CA certificate; when `active`, every other CA becomes inactive.
    pub async fn insert_ca(
        &self,
        key_label: &str,
        cert_der: &[u8],
        chain_pem: &str,
        active: bool,
        now: UnixTime,
    ) -> Result<CaRecord, StoreError> {
        self.insert_ca_audited(
            key_label,
            cert_der,
            chain_pem,
            active,
            now,
            None::<fn(i64) -> NewAudit>,
        )
        .await
    }

    /// Like [`Store::insert_ca`], appending the audit entry `audit` makes from the new CA's
    /// id in the same transaction: neither without the other.
    pub async fn insert_ca_audited(
        &self,
        key_label: &str,
        cert_der: &[u8],
        chain_pem: &str,
        active: bool,
        now: UnixTime,
        audit: Option<impl FnOnce(i64) -> NewAudit>,
    ) -> Result<CaRecord, StoreError> {
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock first, as every appender takes it.
            let mut head = lock_chain_head_if!(PG, tx, audit.is_some());
            if active {
                sqlx::query("UPDATE cas SET active = FALSE WHERE active")
                    .execute(&mut *tx)
                    .await?;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO cas (key_label, cert_der, chain_pem, active, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(key_label)
            .bind(cert_der)
            .bind(chain_pem)
            .bind(active)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                on_violation(
                    e,
                    || "another CA was activated meanwhile".to_owned(),
                    || "CA".to_owned(),
                )
            })?;
            if let (Some(make), Some(head)) = (audit, head.as_mut()) {
                let entry = PreparedAudit::new(&make(id))?;
                append_chained!(tx, head, &entry);
            }
            tx.commit().await?;
            tracing::info!(ca_id = id, key_label, active, "CA certificate stored");
            Ok(CaRecord {
                id,
                key_label: key_label.to_owned(),
                cert_der: cert_der.to_vec(),
                chain_pem: chain_pem.to_owned(),
                active,
                created_at: now,
            })
        })
    }

    /// Makes the CA `id` the one that issues; every other CA becomes inactive. `NotFound`
    /// when there is no such CA.
    pub async fn activate_ca(&self, id: i64) -> Result<(), StoreError> {
        self.activate_ca_audited(id, None).await
    }

    /// Like [`Store::activate_ca`], appending `audit` in the same transaction.
    pub async fn activate_ca_audited(
        &self,
        id: i64,
        audit: Option<&NewAudit>,
    ) -> Result<(), StoreError> {
        let audit = audit.map(PreparedAudit::new).transpose()?;
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock first, as every appender takes it.
            let mut head = lock_chain_head_if!(PG, tx, audit.is_some());
            sqlx::query("UPDATE cas SET active = FALSE WHERE active AND id <> $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("UPDATE cas SET active = TRUE WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("CA {id}")));
            }
            if let (Some(entry), Some(head)) = (&audit, head.as_mut()) {
                append_chained!(tx, head, entry);
            }
            tx.commit().await?;
            tracing::info!(ca_id = id, "CA activated");
            Ok(())
        })
    }

    /// Every CA record, oldest first.
    pub async fn cas(&self) -> Result<Vec<CaRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, CaRecord>(
                "SELECT id, key_label, cert_der, chain_pem, active, created_at FROM cas ORDER BY id",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// The CA that issues new certificates, if one is set up.
    pub async fn active_ca(&self) -> Result<Option<CaRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, CaRecord>(
                "SELECT id, key_label, cert_der, chain_pem, active, created_at FROM cas \
                 WHERE active",
            )
            .fetch_optional(pool)
            .await?)
        })
    }

    /// The next CRL number for a CA, starting at 1; monotonic, never reused (one atomic
    /// upsert). `NotFound` when the CA does not exist.
    pub async fn next_crl_number(&self, ca_id: i64) -> Result<i64, StoreError> {
        on_backend!(self, |pool, _PG| {
            let n: i64 = sqlx::query_scalar(
                "INSERT INTO crl_numbers (ca_id, last_number) VALUES ($1, 1) \
                 ON CONFLICT (ca_id) DO UPDATE SET last_number = crl_numbers.last_number + 1 \
                 RETURNING last_number",
            )
            .bind(ca_id)
            .fetch_one(pool)
            .await
            .map_err(|e| {
                on_violation(
                    e,
                    || format!("CRL number of CA {ca_id} changed meanwhile"),
                    || format!("CA {ca_id}"),
                )
            })?;
            Ok(n)
        })
    }
}
