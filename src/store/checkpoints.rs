//! Signed checkpoints of the audit chain: appending one and reading them back.
//!
//! Owns the `audit_checkpoints` table only. It neither signs nor verifies (that is
//! [`crate::audit`]'s job with a key from the HSM) and never changes a stored checkpoint.

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head};
use super::backend::{WritePool, on_backend};
use super::{NewAudit, Store, StoreError};
use crate::clock::UnixTime;

/// A checkpoint as stored: "audit entry `seq` had hash `hash`", signed at `at`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct AuditCheckpoint {
    pub id: i64,
    /// The audit entry checkpointed.
    pub seq: i64,
    /// That entry's hash when it was checkpointed.
    pub hash: String,
    /// When the checkpoint was signed (Unix seconds).
    pub at: UnixTime,
    /// Label of the HSM key that signed it.
    pub key_label: String,
    /// `ec-p256`, `ec-p384`, `rsa-2048` or `rsa-3072`.
    pub algorithm: String,
    /// DER SubjectPublicKeyInfo of the signing key when it signed (for reference only).
    #[serde(with = "hex_bytes")]
    pub public_key: Vec<u8>,
    /// The signature over [`crate::audit::checkpoint_message`].
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
    /// 1: the entry only; 2: also the previous checkpoint's hash (`prev_checkpoint`).
    pub version: i64,
    /// Version 2: the hash of the checkpoint before this one (all zeros for the first).
    pub prev_checkpoint: Option<String>,
    /// Version 3 (made after a restore from backup): the hash of the checkpoint the
    /// abandoned anchor named.
    pub replaces_checkpoint: Option<String>,
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

impl Store {
    /// Appends a checkpoint (its `id` is ignored and assigned here) together with its audit
    /// entry (`entry` gets the new id), in one transaction under the audit lock.
    /// `Conflict` when the newest checkpoint is no longer `built_on` (another checkpoint was
    /// made meanwhile: `c` chains to a stale one and must be signed again).
    pub async fn insert_checkpoint(
        &self,
        c: &AuditCheckpoint,
        built_on: Option<i64>,
        entry: impl FnOnce(i64) -> NewAudit,
    ) -> Result<AuditCheckpoint, StoreError> {
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock first (see `lock_chain_head!`): it also serializes checkpoints.
            let mut head = lock_chain_head!(PG, tx);
            let newest: Option<i64> =
                sqlx::query_scalar("SELECT id FROM audit_checkpoints ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?;
            if newest != built_on {
                return Err(StoreError::Conflict(
                    "another audit checkpoint was made meanwhile".into(),
                ));
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO audit_checkpoints (seq, hash, at, key_label, algorithm, \
                 public_key, signature, version, prev_checkpoint, replaces_checkpoint) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            )
            .bind(c.seq)
            .bind(c.hash.as_str())
            .bind(c.at)
            .bind(c.key_label.as_str())
            .bind(c.algorithm.as_str())
            .bind(c.public_key.as_slice())
            .bind(c.signature.as_slice())
            .bind(c.version)
            .bind(c.prev_checkpoint.as_deref())
            .bind(c.replaces_checkpoint.as_deref())
            .fetch_one(&mut *tx)
            .await?;
            let prepared = PreparedAudit::new(&entry(id))?;
            append_chained!(tx, &mut head, &prepared);
            tx.commit().await?;
            Ok(AuditCheckpoint { id, ..c.clone() })
        })
    }

    /// The newest checkpoint (by id), if any: the one the next checkpoint chains to.
    pub async fn newest_checkpoint(&self) -> Result<Option<AuditCheckpoint>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, AuditCheckpoint>(
                "SELECT id, seq, hash, at, key_label, algorithm, public_key, signature, \
                 version, prev_checkpoint, replaces_checkpoint FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Every checkpoint, by audit entry then by id.
    pub async fn checkpoints(&self) -> Result<Vec<AuditCheckpoint>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, AuditCheckpoint>(
                "SELECT id, seq, hash, at, key_label, algorithm, public_key, signature, \
                 version, prev_checkpoint, replaces_checkpoint FROM audit_checkpoints ORDER BY seq, id",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// The newest audit entry's number and hash, if the log is not empty.
    pub async fn last_audit(&self) -> Result<Option<(i64, String)>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, (i64, String)>(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?)
        })
    }
}
