//! The audit anchor: the newest checkpoint's record number, record hash and own hash, kept
//! where the database's credentials cannot reach (a private data object in the HSM token,
//! and optionally an append-only file). Whoever rewrites the database can delete the newest
//! checkpoints and log rows consistently; they cannot move the anchor back, so `audit
//! verify` sees the log or the checkpoints end before it.
//!
//! What this module must not do: talk to PKCS#11 (values go through [`AnchorStore`]), or
//! decide what a valid chain is (`verify` does).

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use crate::keys::{AnchorStore, KeyStoreError};
use crate::store::AuditCheckpoint;

use super::checkpoint::checkpoint_hash;

/// Label of the HSM data object holding the anchor.
pub const HSM_ANCHOR_LABEL: &str = "certgate-audit-anchor";

/// "Checkpoint `checkpoint` signed audit record `seq`, whose hash was `hash`."
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    /// The audit record the newest checkpoint covers.
    pub seq: i64,
    /// That record's hash.
    pub hash: String,
    /// The checkpoint's own hash (see [`super::checkpoint_hash`]).
    pub checkpoint: String,
    /// After a restore from backup: the checkpoint hash of the anchor this one replaces
    /// (signed in the version 3 checkpoint `checkpoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// A restore a signed version 3 checkpoint states: the checkpoint with hash `checkpoint`
/// replaces the anchor naming checkpoint `replaces`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedRestore {
    pub checkpoint: String,
    pub replaces: String,
}

/// Why an anchor could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("the HSM cannot keep the audit anchor: {0}")]
    Hsm(#[from] KeyStoreError),
    #[error("the key store has no place for the audit anchor")]
    NoPlace,
    #[error("cannot use the audit anchor file {path}")]
    File {
        path: String,
        #[source]
        cause: std::io::Error,
    },
    #[error("the audit anchor in {source_name} is not readable: {why}")]
    Unreadable { source_name: String, why: String },
}

impl Anchor {
    /// The anchor of a stored checkpoint.
    pub fn of(c: &AuditCheckpoint) -> Result<Self, String> {
        Ok(Self {
            seq: c.seq,
            hash: c.hash.clone(),
            checkpoint: checkpoint_hash(c)?,
            replaces: c.replaces_checkpoint.clone(),
        })
    }

    /// One JSON line, without the newline.
    pub fn to_line(&self) -> String {
        // Three plain fields: serializing them cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The newest (highest record) of several stored anchors; `None` when there is none.
    fn newest<'a>(
        values: impl IntoIterator<Item = &'a [u8]>,
        source_name: &str,
    ) -> Result<Option<Self>, AnchorError> {
        let mut newest: Option<Self> = None;
        for v in values {
            let a: Self = serde_json::from_slice(v).map_err(|e| AnchorError::Unreadable {
                source_name: source_name.to_owned(),
                why: e.to_string(),
            })?;
            if newest.as_ref().is_none_or(|n| a.seq >= n.seq) {
                newest = Some(a);
            }
        }
        Ok(newest)
    }
}

/// Writes `anchor` into the HSM token, replacing the previous one. Blocking.
pub fn write_hsm(store: Option<&dyn AnchorStore>, anchor: &Anchor) -> Result<(), AnchorError> {
    let store = store.ok_or(AnchorError::NoPlace)?;
    Ok(store.write_anchor(HSM_ANCHOR_LABEL, anchor.to_line().as_bytes())?)
}

/// The anchor kept in the HSM token, `None` before the first checkpoint that wrote one.
/// Blocking.
pub fn read_hsm(store: Option<&dyn AnchorStore>) -> Result<Option<Anchor>, AnchorError> {
    let store = store.ok_or(AnchorError::NoPlace)?;
    let values = store.read_anchor(HSM_ANCHOR_LABEL)?;
    Anchor::newest(values.iter().map(Vec::as_slice), "the HSM")
}

/// Appends `anchor` as one line to `path` (created when absent; only appended to, so it
/// can be made append-only with `chattr +a` or shipped by a log forwarder).
pub fn append_file(path: &Path, anchor: &Anchor) -> Result<(), AnchorError> {
    let fail = |cause| AnchorError::File {
        path: path.display().to_string(),
        cause,
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    file.write_all(format!("{}\n", anchor.to_line()).as_bytes())
        .map_err(fail)?;
    file.sync_all().map_err(fail)
}

/// Every anchor line of the file at `path`, in file order; none when it is absent or empty.
pub fn read_file(path: &Path) -> Result<Vec<Anchor>, AnchorError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(cause) => {
            return Err(AnchorError::File {
                path: path.display().to_string(),
                cause,
            });
        }
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| AnchorError::Unreadable {
                source_name: path.display().to_string(),
                why: e.to_string(),
            })
        })
        .collect()
}

/// The anchor an anchor file stands for: its highest record, except where a later line is
/// a restore that a signed checkpoint in `restores` states (it replaces exactly the anchor
/// in force before it). A line claiming a restore that no signed checkpoint states, or
/// replacing another anchor, moves nothing: whoever can append to the file cannot move
/// its anchor back.
pub fn effective(lines: &[Anchor], restores: &HashSet<SignedRestore>) -> Option<Anchor> {
    let mut current: Option<&Anchor> = None;
    for line in lines {
        let moves = match current {
            None => true,
            Some(c) if line.seq >= c.seq => true,
            Some(c) => line.replaces.as_ref().is_some_and(|r| {
                *r == c.checkpoint
                    && restores.contains(&SignedRestore {
                        checkpoint: line.checkpoint.clone(),
                        replaces: r.clone(),
                    })
            }),
        };
        if moves {
            current = Some(line);
        }
    }
    current.cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(seq: i64) -> Anchor {
        Anchor {
            seq,
            hash: format!("{seq:064}"),
            checkpoint: format!("c{seq}"),
            replaces: None,
        }
    }

    fn restore(seq: i64, replaces: i64) -> Anchor {
        Anchor {
            replaces: Some(format!("c{replaces}")),
            ..anchor(seq)
        }
    }

    fn signed(seq: i64, replaces: i64) -> SignedRestore {
        SignedRestore {
            checkpoint: format!("c{seq}"),
            replaces: format!("c{replaces}"),
        }
    }

    #[test]
    fn the_file_keeps_every_anchor_and_stands_for_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchor");
        assert_eq!(read_file(&path).unwrap(), []);
        append_file(&path, &anchor(4)).unwrap();
        append_file(&path, &anchor(9)).unwrap();
        append_file(&path, &anchor(6)).unwrap();
        let lines = read_file(&path).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(effective(&lines, &HashSet::new()), Some(anchor(9)));
        assert_eq!(effective(&[], &HashSet::new()), None);
    }

    #[test]
    fn only_a_signed_restore_moves_the_anchor_back() {
        let lines = [anchor(4), anchor(9), restore(5, 9)];
        // No signed checkpoint states it: the line is ignored.
        assert_eq!(effective(&lines, &HashSet::new()), Some(anchor(9)));
        // Signed, but replacing another anchor than the one in force.
        let other = HashSet::from([signed(5, 4)]);
        assert_eq!(
            effective(&[anchor(4), anchor(9), restore(5, 4)], &other),
            Some(anchor(9))
        );
        let stated = HashSet::from([signed(5, 9)]);
        assert_eq!(effective(&lines, &stated), Some(restore(5, 9)));
        // Later checkpoints go on from the restored state; an old line appended again
        // moves the anchor forward, where the database no longer reaches.
        let mut later = lines.to_vec();
        later.push(anchor(7));
        assert_eq!(effective(&later, &stated), Some(anchor(7)));
        later.push(anchor(9));
        assert_eq!(effective(&later, &stated), Some(anchor(9)));
    }

    #[test]
    fn a_restore_line_round_trips_and_an_old_line_reads_without_it() {
        let line = restore(5, 9).to_line();
        assert!(line.contains("\"replaces\":\"c9\""), "{line}");
        assert!(!anchor(5).to_line().contains("replaces"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchor");
        std::fs::write(
            &path,
            format!(
                "{{\"seq\":4,\"hash\":\"{:064}\",\"checkpoint\":\"c4\"}}\n{line}\n",
                4
            ),
        )
        .unwrap();
        assert_eq!(read_file(&path).unwrap(), [anchor(4), restore(5, 9)]);
    }

    #[test]
    fn a_damaged_anchor_is_an_error_not_an_absence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchor");
        std::fs::write(&path, "not json\n").unwrap();
        assert!(matches!(
            read_file(&path),
            Err(AnchorError::Unreadable { .. })
        ));
    }
}
