//! The audit log as a hash chain: the pure hash a verifier recomputes, chain verification,
//! and serialized appends.
//!
//! `hash = hex(SHA-256(prev_hash ‖ "\n" ‖ canonical JSON))`, where the canonical JSON is the
//! object `{action, actor, at, detail, outcome, seq, subject}` with keys in that (sorted)
//! order, no white space, and `detail` as the JSON *string* stored in the row. The first
//! entry's `prev_hash` is [`GENESIS_HASH`]. What gets audited is decided by the callers.

use aws_lc_rs::digest;

use super::backend::on_backend;
use super::{AuditRecord, NewAudit, Store, StoreError};

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// PostgreSQL advisory lock key that serializes appends ("certgate" in ASCII).
pub(crate) const AUDIT_LOCK_KEY: i64 = 0x6365_7274_6761_7465;

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

/// The last entry of the chain as a transaction sees it: what the next entry chains to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

impl ChainHead {
    /// Chains `entry` on this head and moves the head to it. Pure: the caller inserts the
    /// record in the transaction whose audit lock it holds.
    pub(crate) fn advance(&mut self, entry: &PreparedAudit) -> AuditRecord {
        let rec = entry.chain(self);
        self.seq = rec.seq;
        self.hash = rec.hash.clone();
        rec
    }
}

/// An audit entry whose detail is already serialized: ready to be chained inside a
/// transaction without any step that can fail before the insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreparedAudit {
    pub at: crate::clock::UnixTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: String,
    pub detail: String,
}

impl PreparedAudit {
    pub(crate) fn new(entry: &NewAudit) -> Result<Self, StoreError> {
        let detail = serde_json::to_string(&entry.detail)
            .map_err(|_| StoreError::Corrupt("the audit detail cannot be serialized".into()))?;
        Ok(Self {
            at: entry.at,
            actor: entry.actor.clone(),
            action: entry.action.clone(),
            subject: entry.subject.clone(),
            outcome: entry.outcome.clone(),
            detail,
        })
    }

    /// The record that follows `head`, with its hash. Pure: the caller inserts it and
    /// advances the head only once the insert succeeded.
    pub(crate) fn chain(&self, head: &ChainHead) -> AuditRecord {
        let mut rec = AuditRecord {
            seq: head.seq.saturating_add(1),
            at: self.at,
            actor: self.actor.clone(),
            action: self.action.clone(),
            subject: self.subject.clone(),
            outcome: self.outcome.clone(),
            detail: self.detail.clone(),
            prev_hash: head.hash.clone(),
            hash: String::new(),
        };
        rec.hash = audit_hash(&rec.prev_hash, &rec);
        rec
    }
}

/// Inside a write transaction: serializes audit appends (PostgreSQL: the transaction-level
/// advisory lock; SQLite: the write lock the transaction already holds) and reads the
/// chain's head. Every transaction that appends takes this lock *first*, before any row
/// lock, so appenders cannot deadlock with each other.
macro_rules! lock_chain_head {
    ($pg:expr, $tx:expr) => {{
        if $pg {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind($crate::store::audit_chain::AUDIT_LOCK_KEY)
                .execute(&mut *$tx)
                .await?;
        }
        let last = sqlx::query_as::<_, (i64, String)>(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut *$tx)
        .await?;
        match last {
            Some((seq, hash)) => $crate::store::audit_chain::ChainHead { seq, hash },
            None => $crate::store::audit_chain::ChainHead {
                seq: 0,
                hash: $crate::store::audit_chain::GENESIS_HASH.to_owned(),
            },
        }
    }};
}
pub(crate) use lock_chain_head;

/// [`lock_chain_head!`] only when `$wanted` (the change has an audit entry to append):
/// `Some(head)`, else `None` and no lock taken.
macro_rules! lock_chain_head_if {
    ($pg:expr, $tx:expr, $wanted:expr) => {
        if $wanted {
            Some($crate::store::audit_chain::lock_chain_head!($pg, $tx))
        } else {
            None
        }
    };
}
pub(crate) use lock_chain_head_if;

/// Inserts the entry that follows `$head` and advances `$head`. Evaluates to the record.
macro_rules! append_chained {
    ($tx:expr, $head:expr, $prepared:expr) => {{
        let head: &mut $crate::store::audit_chain::ChainHead = $head;
        // Chain on a copy: the head moves only once the insert succeeded.
        let mut next = head.clone();
        let rec = next.advance($prepared);
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
        .execute(&mut *$tx)
        .await?;
        *head = next;
        rec
    }};
}
pub(crate) use append_chained;

impl Store {
    /// Appends an entry, chaining it to the previous one: `hash = SHA-256(prev_hash ‖
    /// canonical entry)`. Appends are serialized so the chain never forks (SQLite: the
    /// write lock of `BEGIN IMMEDIATE`; PostgreSQL: a transaction-level advisory lock; and
    /// on both, `prev_hash` is unique). Goes through this store's group writer, so it
    /// shares a commit with concurrent issuances instead of queueing for the lock.
    pub async fn append_audit(&self, entry: &NewAudit) -> Result<AuditRecord, StoreError> {
        let prepared = PreparedAudit::new(entry)?;
        let done = self.inner.writer.submit(None, vec![prepared]).await?;
        done.audit
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("the group writer returned no audit record".into()))
    }

    /// The actor of the latest successful `action` about `subject`, if any.
    pub async fn latest_audit_actor(
        &self,
        action: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_scalar::<_, String>(
                "SELECT actor FROM audit_log WHERE subject = $1 AND action = $2 \
                 AND outcome = 'ok' ORDER BY seq DESC LIMIT 1",
            )
            .bind(subject)
            .bind(action)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Entries with `seq >= from`, oldest first, at most `limit`.
    pub async fn audit_records(
        &self,
        from: i64,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, AuditRecord>(
                "SELECT seq, at, actor, action, subject, outcome, detail, prev_hash, hash \
                 FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2",
            )
            .bind(from)
            .bind(limit)
            .fetch_all(pool)
            .await?)
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
