//! The audit log as a hash chain: the pure hash a verifier recomputes, chain verification,
//! and serialized appends.
//!
//! `hash = hex(SHA-256(prev_hash ‖ "\n" ‖ canonical JSON))`, where the canonical JSON is the
//! object `{action, actor, at, detail, outcome, seq, subject}` with keys in that (sorted)
//! order, no white space, and `detail` as the JSON *string* stored in the row. The first
//! entry's `prev_hash` is [`GENESIS_HASH`]. What gets audited is decided by the callers.

use aws_lc_rs::digest;

use super::backend::{WritePool, on_backend};
use super::rows::audit_from_row;
use super::{AuditRecord, NewAudit, Store, StoreError};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// PostgreSQL advisory lock key that serializes appends ("certgate" in ASCII).
const AUDIT_LOCK_KEY: i64 = 0x6365_7274_6761_7465;

/// The hash of `record` chained to `prev_hash`. Ignores `record.prev_hash` and
/// `record.hash`, so a verifier can recompute a stored entry's hash and compare.
pub fn audit_hash(prev_hash: &str, record: &AuditRecord) -> String {
    let mut input = Vec::with_capacity(prev_hash.len() + 1 + 256);
    input.extend_from_slice(prev_hash.as_bytes());
    input.push(b'\n');
    input.extend_from_slice(canonical_json(record).as_bytes());
    hex::encode(digest::digest(&digest::SHA256, &input))
}

fn canonical_json(r: &AuditRecord) -> String {
    format!(
        r#"{{"action":{},"actor":{},"at":{},"detail":{},"outcome":{},"seq":{},"subject":{}}}"#,
        json_str(&r.action),
        json_str(&r.actor),
        r.at,
        json_str(&r.detail),
        json_str(&r.outcome),
        r.seq,
        json_str(&r.subject),
    )
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Where a chain of audit entries stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit chain breaks at entry {seq}: {why}")]
pub struct AuditChainBroken {
    /// The first entry that does not verify.
    pub seq: i64,
    /// What is wrong with it.
    pub why: &'static str,
}

/// Checks that `records` (consecutive, oldest first) chain from `prev_hash` (use
/// [`GENESIS_HASH`] when starting at the first entry) and that every hash is right.
/// Returns the hash of the last entry, to continue with the next page.
pub fn verify_audit_chain(
    prev_hash: &str,
    records: &[AuditRecord],
) -> Result<String, AuditChainBroken> {
    let mut prev = prev_hash.to_owned();
    let mut expected_seq: Option<i64> = None;
    for r in records {
        if expected_seq.is_some_and(|s| s != r.seq) {
            return Err(AuditChainBroken {
                seq: r.seq,
                why: "an entry is missing before it",
            });
        }
        if r.prev_hash != prev {
            return Err(AuditChainBroken {
                seq: r.seq,
                why: "its prev_hash is not the previous entry's hash",
            });
        }
        if audit_hash(&prev, r) != r.hash {
            return Err(AuditChainBroken {
                seq: r.seq,
                why: "its hash does not match its content",
            });
        }
        prev = r.hash.clone();
        expected_seq = Some(r.seq.saturating_add(1));
    }
    Ok(prev)
}

impl Store {
    /// Appends an entry, chaining it to the previous one: `hash = SHA-256(prev_hash ‖
    /// canonical entry)`. Appends are serialized so the chain never forks (SQLite: the
    /// write lock of `BEGIN IMMEDIATE`; PostgreSQL: a transaction-level advisory lock; and
    /// on both, `prev_hash` is unique).
    pub async fn append_audit(&self, entry: &NewAudit) -> Result<AuditRecord, StoreError> {
        let detail = serde_json::to_string(&entry.detail)
            .map_err(|_| StoreError::Corrupt("the audit detail cannot be serialized".into()))?;
        on_backend!(self, |pool, PG| {
            use sqlx::Row as _;
            let mut tx = pool.begin_write().await?;
            if PG {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(AUDIT_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
            }
            let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
            let (seq, prev_hash) = match last {
                Some(r) => (
                    r.try_get::<i64, _>("seq")?.saturating_add(1),
                    r.try_get::<String, _>("hash")?,
                ),
                None => (1, GENESIS_HASH.to_owned()),
            };
            let mut rec = AuditRecord {
                seq,
                at: entry.at,
                actor: entry.actor.clone(),
                action: entry.action.clone(),
                subject: entry.subject.clone(),
                outcome: entry.outcome.clone(),
                detail: detail.clone(),
                prev_hash,
                hash: String::new(),
            };
            rec.hash = audit_hash(&rec.prev_hash, &rec);
            sqlx::query(
                "INSERT INTO audit_log (seq, at, actor, action, subject, outcome, detail, \
                 prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(rec.seq)
            .bind(rec.at)
            .bind(rec.actor.as_str())
            .bind(rec.action.as_str())
            .bind(rec.subject.as_str())
            .bind(rec.outcome.as_str())
            .bind(rec.detail.as_str())
            .bind(rec.prev_hash.as_str())
            .bind(rec.hash.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(rec)
        })
    }

    /// Entries with `seq >= from`, oldest first, at most `limit`.
    pub async fn audit_records(
        &self,
        from: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            let rows = sqlx::query(
                "SELECT seq, at, actor, action, subject, outcome, detail, prev_hash, hash \
                 FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2",
            )
            .bind(from)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                out.push(audit_from_row!(r));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: i64, prev: &str) -> AuditRecord {
        let mut r = AuditRecord {
            seq,
            at: 1_700_000_000,
            actor: "staff:ops".into(),
            action: "cert.revoke".into(),
            subject: "0a1b".into(),
            outcome: "ok".into(),
            detail: r#"{"reason":"keyCompromise"}"#.into(),
            prev_hash: prev.into(),
            hash: String::new(),
        };
        r.hash = audit_hash(prev, &r);
        r
    }

    #[test]
    fn canonical_json_has_sorted_keys_and_escapes() {
        let mut r = rec(1, GENESIS_HASH);
        r.actor = "a\"b".into();
        assert_eq!(
            canonical_json(&r),
            r#"{"action":"cert.revoke","actor":"a\"b","at":1700000000,"detail":"{\"reason\":\"keyCompromise\"}","outcome":"ok","seq":1,"subject":"0a1b"}"#
        );
    }

    #[test]
    fn hash_is_sha256_of_prev_newline_json() {
        let r = rec(1, GENESIS_HASH);
        let input = format!("{GENESIS_HASH}\n{}", canonical_json(&r));
        let want = hex::encode(digest::digest(&digest::SHA256, input.as_bytes()));
        assert_eq!(r.hash, want);
        assert_eq!(r.hash.len(), 64);
    }

    #[test]
    fn verify_detects_tampering_and_gaps() {
        let a = rec(1, GENESIS_HASH);
        let b = rec(2, &a.hash);
        let c = rec(3, &b.hash);
        assert_eq!(
            verify_audit_chain(GENESIS_HASH, &[a.clone(), b.clone(), c.clone()]),
            Ok(c.hash.clone())
        );
        let mut t = b.clone();
        t.outcome = "refused".into();
        assert_eq!(
            verify_audit_chain(GENESIS_HASH, &[a.clone(), t, c.clone()]).map_err(|e| e.seq),
            Err(2)
        );
        assert_eq!(
            verify_audit_chain(GENESIS_HASH, &[a, c]).map_err(|e| e.seq),
            Err(3)
        );
    }
}
