//! Checking and exporting the whole audit chain, with its signed checkpoints.

use crate::store::{
    AuditChainBroken, AuditCheckpoint, GENESIS_HASH, Store, StoreError, verify_audit_chain,
};

use super::checkpoint::CheckpointKeys;

const PAGE: i64 = 1000;

/// What a successful check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub entries: i64,
    pub last_hash: String,
    /// Checkpoints whose signature and hash were checked (0 for [`verify_chain`]).
    pub checkpoints: usize,
    /// The newest checkpointed entry, if any.
    pub last_checkpointed: Option<i64>,
}

/// Why the check failed. Each variant names the first record found broken.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("audit record {} is broken: {}", .0.seq, .0.why)]
    Broken(AuditChainBroken),
    /// A checkpoint is not what the HSM key signed.
    #[error("audit checkpoint {id} (record {seq}) is not valid: {why}")]
    BadCheckpoint { id: i64, seq: i64, why: String },
    /// The chain verifies but differs from a signed checkpoint: it was rewritten after the
    /// previous checkpoint.
    #[error(
        "audit record {seq} is broken: checkpoint {id} signed hash {signed} for it, the log now \
         holds {found}; records {first_suspect} to {seq} were rewritten"
    )]
    Rewritten {
        id: i64,
        seq: i64,
        first_suspect: i64,
        signed: String,
        found: String,
    },
    /// A checkpointed record is gone: the tail of the log was cut off.
    #[error(
        "audit record {first_missing} is missing: checkpoint {id} covers record {seq}, the log \
         ends before it (truncated)"
    )]
    Truncated {
        id: i64,
        seq: i64,
        first_missing: i64,
    },
    #[error("cannot read the audit log")]
    Store(#[from] StoreError),
}

/// Walks the chain from the first entry (which must be number 1) to the last, without
/// looking at checkpoints.
pub async fn verify_chain(store: &Store) -> Result<ChainReport, VerifyError> {
    walk(store, &[]).await
}

/// Checks every checkpoint's signature with `keys` (read from the HSM), then walks the chain
/// and compares each checkpointed entry's hash with the signed one. Detects an edited row,
/// a rewritten chain and a cut-off tail.
pub async fn verify_with_checkpoints(
    store: &Store,
    keys: &CheckpointKeys,
) -> Result<ChainReport, VerifyError> {
    let checkpoints = store.checkpoints().await?;
    for c in &checkpoints {
        keys.check(c).map_err(|why| VerifyError::BadCheckpoint {
            id: c.id,
            seq: c.seq,
            why,
        })?;
    }
    walk(store, &checkpoints).await
}

/// The walk; `checkpoints` sorted by `seq` (already signature-checked).
async fn walk(store: &Store, checkpoints: &[AuditCheckpoint]) -> Result<ChainReport, VerifyError> {
    let mut prev = GENESIS_HASH.to_owned();
    let mut next = 1;
    let mut entries = 0;
    let mut pending = checkpoints.iter().peekable();
    // The newest checkpointed entry seen to match: a rewrite starts after it.
    let mut last_good: i64 = 0;
    loop {
        let page = store.audit_records(next, PAGE).await?;
        if page.is_empty() {
            if let Some(c) = pending.next() {
                return Err(VerifyError::Truncated {
                    id: c.id,
                    seq: c.seq,
                    first_missing: next,
                });
            }
            return Ok(ChainReport {
                entries,
                last_hash: prev,
                checkpoints: checkpoints.len(),
                last_checkpointed: checkpoints.last().map(|c| c.seq),
            });
        }
        if page[0].seq != next {
            return Err(VerifyError::Broken(AuditChainBroken {
                seq: page[0].seq,
                why: "an entry is missing before it",
            }));
        }
        // Checkpoints pointing into a gap or before the first entry cannot match anything.
        if let Some(c) = pending.next_if(|c| c.seq < next) {
            return Err(VerifyError::Truncated {
                id: c.id,
                seq: c.seq,
                first_missing: c.seq,
            });
        }
        let chained = verify_audit_chain(&prev, &page);
        // Compare checkpoints up to the first broken entry (or the whole page), so the
        // earliest problem is the one reported.
        let good_until = match &chained {
            Ok(_) => page.last().map_or(next, |r| r.seq),
            Err(b) => b.seq - 1,
        };
        for r in page.iter().take_while(|r| r.seq <= good_until) {
            while let Some(c) = pending.next_if(|c| c.seq == r.seq) {
                if c.hash != r.hash {
                    return Err(VerifyError::Rewritten {
                        id: c.id,
                        seq: c.seq,
                        first_suspect: last_good + 1,
                        signed: c.hash.clone(),
                        found: r.hash.clone(),
                    });
                }
                last_good = c.seq;
            }
        }
        prev = chained.map_err(VerifyError::Broken)?;
        entries += i64::try_from(page.len()).unwrap_or(i64::MAX);
        next = page.last().map_or(next, |r| r.seq + 1);
    }
}

/// Writes every entry from `from` on as one JSON object per line.
pub async fn export(
    store: &Store,
    from: i64,
    out: &mut impl std::io::Write,
) -> anyhow::Result<i64> {
    let mut next = from;
    let mut written = 0;
    loop {
        let page = store.audit_records(next, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(written);
        };
        next = last.seq + 1;
        for r in &page {
            serde_json::to_writer(&mut *out, r)?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
}
