//! Checking and exporting the whole audit chain, with its signed checkpoints and the
//! anchors kept outside the database.

use std::collections::HashSet;

use crate::store::{
    AuditChainBroken, AuditCheckpoint, GENESIS_HASH, Store, StoreError, verify_audit_chain,
};

use super::anchor::{Anchor, SignedRestore};
use super::checkpoint::{CheckpointKeys, checkpoint_hash};

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
    /// Anchors the log and the checkpoints were found to reach.
    pub anchors: usize,
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
    /// A chained checkpoint links to one the database no longer holds.
    #[error(
        "an audit checkpoint is missing: checkpoint {id} (record {seq}) signs the hash {prev} \
         of the checkpoint before it, which is not in the database (deleted)"
    )]
    MissingCheckpoint { id: i64, seq: i64, prev: String },
    /// The database ends before what an anchor outside it records: rolled back.
    #[error("audit rollback: {} (the anchor in {source_name} covers record {seq})", .problems.join("; "))]
    BeforeAnchor {
        source_name: String,
        seq: i64,
        problems: Vec<String>,
    },
    /// An anchor that must exist is gone: configured, or written by a chained checkpoint.
    #[error("the audit anchor in {source_name} is missing: {why}")]
    MissingAnchor { source_name: String, why: String },
    /// An anchor is older than the newest chained checkpoint, which wrote a newer one there.
    #[error(
        "the audit anchor in {source_name} is behind: it covers record {seq}, but checkpoint \
         {id} (record {newest}) wrote a newer anchor there; lines were removed from the file or \
         the object was replaced, or that checkpoint failed to write it (the next `certgate \
         audit checkpoint` writes a new one)"
    )]
    StaleAnchor {
        source_name: String,
        seq: i64,
        id: i64,
        newest: i64,
    },
    #[error("cannot read the audit log")]
    Store(#[from] StoreError),
}

/// Where an anchor is expected, and whether one was read there.
#[derive(Debug, Clone)]
pub struct AnchorPlace {
    /// `the HSM` or the anchor file's path.
    pub source_name: String,
    /// Whether an anchor was read there.
    pub found: bool,
    /// Whether the configuration names this place (the anchor file).
    pub configured: bool,
}

/// Fails when an anchor is missing that must exist: every chained (version 2 or later)
/// checkpoint wrote one to each place, and a configured place is expected to hold one
/// once there is such a checkpoint. Before the first chained checkpoint there is none yet.
pub fn anchors_present(
    checkpoints: &[AuditCheckpoint],
    places: &[AnchorPlace],
) -> Result<(), VerifyError> {
    // The newest chained checkpoint: the one whose anchor should be there.
    let Some(writer) = checkpoints
        .iter()
        .filter(|c| c.version >= 2)
        .max_by_key(|c| c.id)
    else {
        return Ok(());
    };
    match places.iter().find(|p| !p.found) {
        None => Ok(()),
        Some(p) => Err(VerifyError::MissingAnchor {
            source_name: p.source_name.clone(),
            why: format!(
                "checkpoint {} (record {}) wrote one there{}; deleted, or a new token or \
                 file not yet anchored (`certgate audit checkpoint` writes one)",
                writer.id,
                writer.seq,
                if p.configured { ", as configured" } else { "" },
            ),
        }),
    }
}

/// Fails when an anchor is older than the newest chained checkpoint (by record): that
/// checkpoint wrote its anchor to every place, so an older one there was put back.
fn anchors_current(
    checkpoints: &[AuditCheckpoint],
    anchors: &[AnchorSeen],
) -> Result<(), VerifyError> {
    let Some(newest) = checkpoints
        .iter()
        .filter(|c| c.version >= 2)
        .max_by_key(|c| (c.seq, c.id))
    else {
        return Ok(());
    };
    match anchors.iter().find(|a| a.anchor.seq < newest.seq) {
        None => Ok(()),
        Some(a) => Err(VerifyError::StaleAnchor {
            source_name: a.source_name.clone(),
            seq: a.anchor.seq,
            id: newest.id,
            newest: newest.seq,
        }),
    }
}

/// The restores stated by version 3 checkpoints whose signature holds with `keys` (one that
/// does not is left out here, and is a finding of [`verify_with_checkpoints`]).
pub fn signed_restores(
    checkpoints: &[AuditCheckpoint],
    keys: &CheckpointKeys,
) -> HashSet<SignedRestore> {
    checkpoints
        .iter()
        .filter(|c| c.version == 3 && keys.check(c).is_ok())
        .filter_map(|c| {
            Some(SignedRestore {
                checkpoint: checkpoint_hash(c).ok()?,
                replaces: c.replaces_checkpoint.clone()?,
            })
        })
        .collect()
}

/// An anchor and where it was read (`the HSM`, a file name), for [`verify_with_checkpoints`].
#[derive(Debug, Clone)]
pub struct AnchorSeen {
    pub source_name: String,
    pub anchor: Anchor,
}

/// Walks the chain from the first entry (which must be number 1) to the last, without
/// looking at checkpoints.
pub async fn verify_chain(store: &Store) -> Result<ChainReport, VerifyError> {
    walk(store, &[]).await
}

/// Checks every checkpoint's signature with `keys` (read from the HSM) and the links between
/// chained checkpoints, walks the chain comparing each checkpointed entry's hash with the
/// signed one, and checks that log and checkpoints reach each of `anchors` and that none is
/// older than the newest checkpoint. Detects an edited row, a rewritten chain, a cut-off
/// tail, a deleted checkpoint, a rollback and an anchor put back.
pub async fn verify_with_checkpoints(
    store: &Store,
    keys: &CheckpointKeys,
    anchors: &[AnchorSeen],
) -> Result<ChainReport, VerifyError> {
    let checkpoints = store.checkpoints().await?;
    for c in &checkpoints {
        keys.check(c).map_err(|why| VerifyError::BadCheckpoint {
            id: c.id,
            seq: c.seq,
            why,
        })?;
    }
    let hashes = checkpoint_links(&checkpoints)?;
    let mut report = walk(store, &checkpoints).await?;
    for seen in anchors {
        // The walk started at record 1 without gaps: the count is the last record's number.
        check_anchor(store, &checkpoints, &hashes, report.entries, seen).await?;
    }
    anchors_current(&checkpoints, anchors)?;
    report.anchors = anchors.len();
    Ok(report)
}

/// Every checkpoint's own hash, once each chained checkpoint was found to link to the
/// genesis or to another checkpoint present (not by id or order: those are not signed).
fn checkpoint_links(checkpoints: &[AuditCheckpoint]) -> Result<HashSet<String>, VerifyError> {
    let mut hashes = HashSet::with_capacity(checkpoints.len());
    for c in checkpoints {
        let hash = checkpoint_hash(c).map_err(|why| VerifyError::BadCheckpoint {
            id: c.id,
            seq: c.seq,
            why,
        })?;
        hashes.insert(hash);
    }
    for c in checkpoints {
        if let Some(prev) = &c.prev_checkpoint
            && prev != GENESIS_HASH
            && !hashes.contains(prev)
        {
            return Err(VerifyError::MissingCheckpoint {
                id: c.id,
                seq: c.seq,
                prev: prev.clone(),
            });
        }
    }
    Ok(hashes)
}

/// Whether the database still reaches every anchor, without walking the whole chain: what
/// must hold before a new checkpoint moves the anchors, so that a rollback is never
/// anchored over.
pub async fn anchors_reached(store: &Store, anchors: &[AnchorSeen]) -> Result<(), VerifyError> {
    if anchors.is_empty() {
        return Ok(());
    }
    let checkpoints = store.checkpoints().await?;
    let hashes = checkpoint_links(&checkpoints)?;
    let last = store.last_audit().await?.map_or(0, |(seq, _)| seq);
    for seen in anchors {
        check_anchor(store, &checkpoints, &hashes, last, seen).await?;
    }
    Ok(())
}

/// Whether the log and the checkpoints reach `seen`'s anchor; every way they fall short.
async fn check_anchor(
    store: &Store,
    checkpoints: &[AuditCheckpoint],
    hashes: &HashSet<String>,
    last: i64,
    seen: &AnchorSeen,
) -> Result<(), VerifyError> {
    let a = &seen.anchor;
    let mut problems = Vec::new();
    if last < a.seq {
        problems.push(format!(
            "the audit log ends at record {last}, before the anchored record {}: records {} \
             to {} at least were deleted",
            a.seq,
            last + 1,
            a.seq
        ));
    } else {
        let found = store.audit_records(a.seq, 1).await?;
        match found.first() {
            Some(r) if r.seq == a.seq && r.hash == a.hash => {}
            Some(r) if r.seq == a.seq => problems.push(format!(
                "audit record {} has hash {}, the anchor holds {} (changed)",
                a.seq, r.hash, a.hash
            )),
            _ => problems.push(format!("audit record {} is missing", a.seq)),
        }
    }
    if !hashes.contains(&a.checkpoint) {
        let newest = checkpoints.iter().map(|c| c.seq).max().map_or_else(
            || "none is left".to_owned(),
            |s| format!("the newest left covers record {s}"),
        );
        problems.push(format!(
            "the checkpoints end before the anchor: its checkpoint of record {} is missing \
             ({newest}; deleted)",
            a.seq
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(VerifyError::BeforeAnchor {
            source_name: seen.source_name.clone(),
            seq: a.seq,
            problems,
        })
    }
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
                anchors: 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(id: i64, version: i64) -> AuditCheckpoint {
        AuditCheckpoint {
            id,
            seq: id * 10,
            hash: "00".into(),
            at: 0,
            key_label: "ca".into(),
            algorithm: "ec-p256".into(),
            public_key: vec![],
            signature: vec![],
            version,
            prev_checkpoint: (version >= 2).then(|| GENESIS_HASH.into()),
            replaces_checkpoint: None,
        }
    }

    fn place(name: &str, found: bool) -> AnchorPlace {
        AnchorPlace {
            source_name: name.into(),
            found,
            configured: name != "the HSM",
        }
    }

    #[test]
    fn a_missing_anchor_is_a_finding_once_a_chained_checkpoint_wrote_one() {
        let hsm_gone = [place("the HSM", false), place("a.jsonl", true)];
        let file_gone = [place("the HSM", true), place("a.jsonl", false)];
        // Nothing written yet: no chained checkpoint (none, or only version 1).
        for checkpoints in [vec![], vec![checkpoint(1, 1)]] {
            anchors_present(&checkpoints, &hsm_gone).unwrap();
            anchors_present(&checkpoints, &file_gone).unwrap();
        }
        let chained = [checkpoint(1, 1), checkpoint(2, 2)];
        let err = anchors_present(&chained, &hsm_gone)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the audit anchor in the HSM is missing") && err.contains("checkpoint 2"),
            "{err}"
        );
        let err = anchors_present(&chained, &file_gone)
            .unwrap_err()
            .to_string();
        assert!(err.contains("in a.jsonl is missing"), "{err}");
        anchors_present(&chained, &[place("the HSM", true), place("a.jsonl", true)]).unwrap();
    }
}
