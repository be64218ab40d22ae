//! Signed checkpoints of the audit chain: "entry `seq` had hash `hash` at time `at`", signed
//! by a key in the HSM (the CA key or a dedicated audit key).
//!
//! The hash chain alone shows an edited row, but someone with write access to the database
//! can rewrite every hash after the edit, or cut the tail off; a checkpoint signed in the
//! HSM pins the chain up to its entry, so both become visible. Checkpoints are verified with
//! the public key read from the HSM, never with the one stored next to them.
//!
//! Each checkpoint (version 2) also signs the hash of the one before it, so the checkpoints
//! form a chain of their own: one deleted from the middle leaves a link to nothing. Version 1
//! checkpoints (before the chain) keep verifying as they were signed.
//!
//! What this module must not do: talk to PKCS#11 (keys come as [`KeyBackend`]), or trust a
//! public key found in the database.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ca::{KeyAlgorithm, KeyBackend, SignError, SignatureKind, verify_signature};
use aws_lc_rs::digest;

use crate::clock::UnixTime;
use crate::store::{AuditCheckpoint, GENESIS_HASH, Store, StoreError};

use super::{Actor, Outcome};

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
    /// Other checkpoints kept being made while this one was signed.
    #[error("other audit checkpoints are being made at the same time; try again")]
    Busy,
}

/// How many times a checkpoint is signed again when another one was made meanwhile.
const ATTEMPTS: usize = 3;

/// The bytes a checkpoint's signature covers. A fixed ASCII prefix keeps it apart from
/// anything else the key signs (certificates and CRLs are DER and start with 0x30).
pub fn checkpoint_message(seq: i64, hash: &str, at: UnixTime, key_label: &str) -> Vec<u8> {
    format!("certgate audit checkpoint v1\nseq={seq}\nhash={hash}\nat={at}\nkey={key_label}\n")
        .into_bytes()
}

/// The bytes a version 2 checkpoint's signature covers: version 1's fields and the hash of
/// the previous checkpoint ([`checkpoint_hash`]; [`GENESIS_HASH`] for the first).
pub fn checkpoint_message_v2(
    seq: i64,
    hash: &str,
    at: UnixTime,
    key_label: &str,
    prev_checkpoint: &str,
) -> Vec<u8> {
    format!(
        "certgate audit checkpoint v2\nseq={seq}\nhash={hash}\nat={at}\nkey={key_label}\n\
         prev={prev_checkpoint}\n"
    )
    .into_bytes()
}

/// The bytes a version 3 checkpoint's signature covers: version 2's fields and the hash of
/// the checkpoint the abandoned anchor named (made with `audit checkpoint --after-restore`).
pub fn checkpoint_message_v3(
    seq: i64,
    hash: &str,
    at: UnixTime,
    key_label: &str,
    prev_checkpoint: &str,
    replaces_checkpoint: &str,
) -> Vec<u8> {
    format!(
        "certgate audit checkpoint v3\nseq={seq}\nhash={hash}\nat={at}\nkey={key_label}\n\
         prev={prev_checkpoint}\nreplaces={replaces_checkpoint}\n"
    )
    .into_bytes()
}

/// What `c`'s signature covers, by its version; the reason when the row cannot say.
pub fn signed_message(c: &AuditCheckpoint) -> Result<Vec<u8>, String> {
    match (
        c.version,
        c.prev_checkpoint.as_deref(),
        c.replaces_checkpoint.as_deref(),
    ) {
        (1, None, None) => Ok(checkpoint_message(c.seq, &c.hash, c.at, &c.key_label)),
        (2, Some(prev), None) => Ok(checkpoint_message_v2(
            c.seq,
            &c.hash,
            c.at,
            &c.key_label,
            prev,
        )),
        (3, Some(prev), Some(replaces)) => Ok(checkpoint_message_v3(
            c.seq,
            &c.hash,
            c.at,
            &c.key_label,
            prev,
            replaces,
        )),
        (v, _, _) => Err(format!(
            "its format (version {v}) is not one certgate writes"
        )),
    }
}

/// A checkpoint's own hash, the link the next one signs: hex SHA-256 of its signed message.
pub fn checkpoint_hash(c: &AuditCheckpoint) -> Result<String, String> {
    let message = signed_message(c)?;
    Ok(hex::encode(digest::digest(&digest::SHA256, &message)))
}

/// Signs the newest audit entry and the newest checkpoint's hash with `key` (labelled
/// `key_label` in the token), and stores the checkpoint together with its audit entry in
/// one transaction. After a restore from backup, `replaces` is the checkpoint hash the
/// abandoned anchor names: it is signed too (version 3). When the key is CA `ca_id`'s, each signature is counted for
/// `audit signatures`, and one thrown away because another checkpoint was stored first is
/// recorded as `audit.checkpoint_discarded`.
pub async fn make_checkpoint(
    store: &Store,
    key: Arc<dyn KeyBackend>,
    key_label: &str,
    ca_id: Option<i64>,
    actor: &Actor,
    now: UnixTime,
    replaces: Option<&str>,
) -> Result<AuditCheckpoint, CheckpointError> {
    for _ in 0..ATTEMPTS {
        let newest = store.newest_checkpoint().await?;
        let prev = match &newest {
            Some(c) => checkpoint_hash(c).map_err(|why| {
                StoreError::Corrupt(format!("the newest audit checkpoint {}: {why}", c.id))
            })?,
            None => GENESIS_HASH.to_owned(),
        };
        let (seq, hash) = store.last_audit().await?.ok_or(CheckpointError::EmptyLog)?;
        let message = match replaces {
            None => checkpoint_message_v2(seq, &hash, now, key_label, &prev),
            Some(r) => checkpoint_message_v3(seq, &hash, now, key_label, &prev, r),
        };
        let signer = key.clone();
        let signature = tokio::task::spawn_blocking(move || signer.sign(&message))
            .await
            .map_err(|e| CheckpointError::Task(e.to_string()))??;
        if let Some(ca_id) = ca_id
            && let Err(e) = store
                .add_signature_counts(&[(ca_id, SignatureKind::Checkpoint.as_str(), 1)])
                .await
        {
            // The checkpoint itself is the record; only the count is missing.
            tracing::warn!(error = %e, "the checkpoint signature was not counted");
        }
        let unsaved = AuditCheckpoint {
            id: 0,
            seq,
            hash: hash.clone(),
            at: now,
            key_label: key_label.to_owned(),
            algorithm: key.algorithm().as_str().to_owned(),
            public_key: key.public_key_der().to_vec(),
            signature,
            version: if replaces.is_some() { 3 } else { 2 },
            prev_checkpoint: Some(prev),
            replaces_checkpoint: replaces.map(str::to_owned),
        };
        let audit_entry = |id: i64| {
            super::entry(
                now,
                actor,
                "audit.checkpoint",
                &seq.to_string(),
                Outcome::Ok,
                match replaces {
                    None => {
                        serde_json::json!({"checkpoint": id, "hash": hash, "key_label": key_label})
                    }
                    Some(r) => serde_json::json!({
                        "checkpoint": id,
                        "hash": hash,
                        "key_label": key_label,
                        "after_restore": {"replaces_checkpoint": r},
                    }),
                },
            )
        };
        match store
            .insert_checkpoint(&unsaved, newest.map(|c| c.id), audit_entry)
            .await
        {
            Ok(stored) => {
                tracing::info!(
                    seq,
                    checkpoint = stored.id,
                    key_label,
                    "audit checkpoint signed"
                );
                return Ok(stored);
            }
            Err(StoreError::Conflict(_)) => {
                if ca_id.is_some() {
                    let discarded = super::entry(
                        now,
                        actor,
                        "audit.checkpoint_discarded",
                        &seq.to_string(),
                        Outcome::Ok,
                        serde_json::json!({
                            "key_label": key_label,
                            "reason": "another checkpoint was stored first",
                        }),
                    );
                    store.append_audit(&discarded).await?;
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CheckpointError::Busy)
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
        // The padding an RSA key signs with is a setting that may change (`[hsm]
        // rsa_signature`): a checkpoint is checked as it says it was signed, by the same key.
        let claimed = c
            .algorithm
            .parse::<KeyAlgorithm>()
            .ok()
            .filter(|claimed| claimed.key_type() == algorithm.key_type())
            .ok_or_else(|| {
                format!(
                    "it claims algorithm {} but the HSM key {:?} is {algorithm}",
                    c.algorithm, c.key_label
                )
            })?;
        let message = signed_message(c)?;
        verify_signature(claimed, spki, &message, &c.signature).map_err(|_| {
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
    fn the_v2_message_binds_the_previous_checkpoint() {
        let a = checkpoint_message_v2(7, "ab", 1_700_000_000, "ca", GENESIS_HASH);
        let b = checkpoint_message_v2(7, "ab", 1_700_000_000, "ca", "11");
        assert_ne!(a, b);
        assert_ne!(a, checkpoint_message(7, "ab", 1_700_000_000, "ca"));
    }

    #[test]
    fn the_hash_follows_the_version() {
        let mut c = AuditCheckpoint {
            id: 1,
            seq: 1,
            hash: "00".into(),
            at: 0,
            key_label: "ca".into(),
            algorithm: "ec-p256".into(),
            public_key: vec![],
            signature: vec![],
            version: 1,
            prev_checkpoint: None,
            replaces_checkpoint: None,
        };
        let v1 = checkpoint_hash(&c).unwrap();
        c.version = 2;
        assert!(checkpoint_hash(&c).is_err(), "v2 without its link");
        c.prev_checkpoint = Some(GENESIS_HASH.into());
        let v2 = checkpoint_hash(&c).unwrap();
        assert_ne!(v1, v2);
        assert_eq!(v2.len(), 64);
        c.replaces_checkpoint = Some("11".into());
        assert!(checkpoint_hash(&c).is_err(), "v2 does not replace");
        c.version = 3;
        let v3 = checkpoint_hash(&c).unwrap();
        assert_ne!(v3, v2);
        c.replaces_checkpoint = Some("12".into());
        assert_ne!(
            checkpoint_hash(&c).unwrap(),
            v3,
            "the replaced hash is signed"
        );
        c.replaces_checkpoint = None;
        assert!(checkpoint_hash(&c).is_err(), "v3 without what it replaces");
    }

    /// A checkpoint signed before the chain (v1) keeps verifying; the same signature read as
    /// v2 does not.
    #[test]
    fn a_v1_checkpoint_still_verifies() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
        let message = checkpoint_message(5, "ab", 1_700_000_000, "ca");
        let signature = pair.sign(&SystemRandom::new(), &message).unwrap();
        let mut c = AuditCheckpoint {
            id: 1,
            seq: 5,
            hash: "ab".into(),
            at: 1_700_000_000,
            key_label: "ca".into(),
            algorithm: "ec-p256".into(),
            public_key: vec![],
            signature: signature.as_ref().to_vec(),
            version: 1,
            prev_checkpoint: None,
            replaces_checkpoint: None,
        };
        let mut keys = CheckpointKeys::default();
        keys.insert("ca", KeyAlgorithm::EcP256, spki);
        keys.check(&c).unwrap();
        c.version = 2;
        c.prev_checkpoint = Some(GENESIS_HASH.into());
        assert!(keys.check(&c).is_err());
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
            version: 1,
            prev_checkpoint: None,
            replaces_checkpoint: None,
        };
        let err = CheckpointKeys::default().check(&c).unwrap_err();
        assert!(err.contains("gone"), "{err}");
    }
}
