//! Signed checkpoints of the audit chain: "entry `seq` had hash `hash` at time `at`", signed
//! by a key in the HSM (the CA key or a dedicated audit key).
//!
//! The hash chain alone shows an edited row, but someone with write access to the database
//! can rewrite every hash after the edit, or cut the tail off; a checkpoint signed in the
//! HSM pins the chain up to its entry, so both become visible. Checkpoints are verified with
//! the public key read from the HSM, never with the one stored next to them.
//!
//! What this module must not do: talk to PKCS#11 (keys come as [`KeyBackend`]), or trust a
//! public key found in the database.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ca::{KeyAlgorithm, KeyBackend, SignError, verify_signature};
use crate::clock::UnixTime;
use crate::store::{AuditCheckpoint, Store, StoreError};

use super::{Actor, Audit, Outcome};

/// Why a checkpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// There is nothing to checkpoint yet.
    #[error("the audit log is empty: nothing to checkpoint")]
    EmptyLog,
    /// The HSM key did not sign.
    #[error("cannot sign the checkpoint")]
    Sign(#[from] SignError),
    /// Reading or writing the store failed.
    #[error("cannot store the checkpoint")]
    Store(#[from] StoreError),
    /// The blocking signing task ended abnormally.
    #[error("the signing task failed: {0}")]
    Task(String),
}

/// The bytes a checkpoint's signature covers. A fixed ASCII prefix keeps it apart from
/// anything else the key signs (certificates and CRLs are DER and start with 0x30).
pub fn checkpoint_message(seq: i64, hash: &str, at: UnixTime, key_label: &str) -> Vec<u8> {
    format!("certgate audit checkpoint v1\nseq={seq}\nhash={hash}\nat={at}\nkey={key_label}\n")
        .into_bytes()
}

/// Signs the newest audit entry with `key` (labelled `key_label` in the token), stores the
/// checkpoint, and records that in the audit log.
pub async fn make_checkpoint(
    store: &Store,
    key: Arc<dyn KeyBackend>,
    key_label: &str,
    actor: &Actor,
    now: UnixTime,
) -> Result<AuditCheckpoint, CheckpointError> {
    let (seq, hash) = store.last_audit().await?.ok_or(CheckpointError::EmptyLog)?;
    let message = checkpoint_message(seq, &hash, now, key_label);
    let signer = key.clone();
    let signature = tokio::task::spawn_blocking(move || signer.sign(&message))
        .await
        .map_err(|e| CheckpointError::Task(e.to_string()))??;
    let stored = store
        .insert_checkpoint(&AuditCheckpoint {
            id: 0,
            seq,
            hash: hash.clone(),
            at: now,
            key_label: key_label.to_owned(),
            algorithm: key.algorithm().as_str().to_owned(),
            public_key: key.public_key_der().to_vec(),
            signature,
        })
        .await?;
    Audit::new(store.clone())
        .record(
            now,
            actor,
            "audit.checkpoint",
            &seq.to_string(),
            Outcome::Ok,
            serde_json::json!({"checkpoint": stored.id, "hash": hash, "key_label": key_label}),
        )
        .await?;
    tracing::info!(
        seq,
        checkpoint = stored.id,
        key_label,
        "audit checkpoint signed"
    );
    Ok(stored)
}

/// Public keys to check checkpoints with, by key label, as read from the HSM.
#[derive(Debug, Clone, Default)]
pub struct CheckpointKeys {
    keys: HashMap<String, (KeyAlgorithm, Vec<u8>)>,
}

impl CheckpointKeys {
    /// Adds the key labelled `label`.
    pub fn insert(&mut self, label: &str, algorithm: KeyAlgorithm, spki_der: Vec<u8>) {
        self.keys.insert(label.to_owned(), (algorithm, spki_der));
    }

    /// Checks one checkpoint's signature; the reason when it does not hold.
    pub fn check(&self, c: &AuditCheckpoint) -> Result<(), String> {
        let (algorithm, spki) = self.keys.get(&c.key_label).ok_or_else(|| {
            format!(
                "its signing key {:?} is not in the HSM (or was not looked up)",
                c.key_label
            )
        })?;
        if algorithm.as_str() != c.algorithm {
            return Err(format!(
                "it claims algorithm {} but the HSM key {:?} is {algorithm}",
                c.algorithm, c.key_label
            ));
        }
        let message = checkpoint_message(c.seq, &c.hash, c.at, &c.key_label);
        verify_signature(*algorithm, spki, &message, &c.signature).map_err(|_| {
            format!(
                "its signature does not verify with the HSM key {:?}",
                c.key_label
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_binds_every_field_and_is_not_der() {
        let m = checkpoint_message(7, "ab", 1_700_000_000, "ca");
        assert_ne!(m.first(), Some(&0x30));
        let others = [
            checkpoint_message(8, "ab", 1_700_000_000, "ca"),
            checkpoint_message(7, "ac", 1_700_000_000, "ca"),
            checkpoint_message(7, "ab", 1_700_000_001, "ca"),
            checkpoint_message(7, "ab", 1_700_000_000, "cb"),
        ];
        assert!(others.iter().all(|o| *o != m));
    }

    #[test]
    fn an_unknown_key_is_a_failure() {
        let c = AuditCheckpoint {
            id: 1,
            seq: 1,
            hash: "00".into(),
            at: 0,
            key_label: "gone".into(),
            algorithm: "ec-p256".into(),
            public_key: vec![],
            signature: vec![],
        };
        let err = CheckpointKeys::default().check(&c).unwrap_err();
        assert!(err.contains("gone"), "{err}");
    }
}
