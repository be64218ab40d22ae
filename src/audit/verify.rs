//! Checking and exporting the whole audit chain.

use crate::store::{AuditChainBroken, GENESIS_HASH, Store, StoreError, verify_audit_chain};

const PAGE: i64 = 1000;

/// What a successful check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub entries: i64,
    pub last_hash: String,
}

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("audit record {} is broken: {}", .0.seq, .0.why)]
    Broken(AuditChainBroken),
    #[error("cannot read the audit log")]
    Store(#[from] StoreError),
}

/// Walks the chain from the first entry (which must be number 1) to the last.
pub async fn verify_chain(store: &Store) -> Result<ChainReport, VerifyError> {
    let mut prev = GENESIS_HASH.to_owned();
    let mut next = 1;
    let mut entries = 0;
    loop {
        let page = store.audit_records(next, PAGE).await?;
        if page.is_empty() {
            return Ok(ChainReport {
                entries,
                last_hash: prev,
            });
        }
        if page[0].seq != next {
            return Err(VerifyError::Broken(AuditChainBroken {
                seq: page[0].seq,
                why: "an entry is missing before it",
            }));
        }
        prev = verify_audit_chain(&prev, &page).map_err(VerifyError::Broken)?;
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
