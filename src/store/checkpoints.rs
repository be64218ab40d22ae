//! Signed checkpoints of the audit chain: appending one and reading them back.
//!
//! Owns the `audit_checkpoints` table only. It neither signs nor verifies (that is
//! [`crate::audit`]'s job with a key from the HSM) and never changes a stored checkpoint.

use super::backend::{WritePool, on_backend};
use super::{Store, StoreError};
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
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

impl Store {
    /// Appends a checkpoint (its `id` is ignored and assigned here).
    pub async fn insert_checkpoint(
        &self,
        c: &AuditCheckpoint,
    ) -> Result<AuditCheckpoint, StoreError> {
        on_backend!(self, |pool, _PG| {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO audit_checkpoints (seq, hash, at, key_label, algorithm, \
                 public_key, signature) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(c.seq)
            .bind(c.hash.as_str())
            .bind(c.at)
            .bind(c.key_label.as_str())
            .bind(c.algorithm.as_str())
            .bind(c.public_key.as_slice())
            .bind(c.signature.as_slice())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(AuditCheckpoint { id, ..c.clone() })
        })
    }

    /// Every checkpoint, by audit entry then by id.
    pub async fn checkpoints(&self) -> Result<Vec<AuditCheckpoint>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, AuditCheckpoint>(
                "SELECT id, seq, hash, at, key_label, algorithm, public_key, signature \
                 FROM audit_checkpoints ORDER BY seq, id",
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
