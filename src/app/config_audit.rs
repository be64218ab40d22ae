//! The configuration in force, in the audit log: an entry when `serve` starts, one for
//! every reload put in force, and one when it stops. A reload can open or close the gate
//! (a route made public, a limit raised, a trust anchor added), so auditors must be able
//! to see when the configuration changed and which sections did; the file's SHA-256 ties
//! the entry to a reviewed copy of the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::audit::{Actor, Audit, Outcome};
use crate::clock::Clock;

/// Each top-level key of the file (a section, or the array of `[[route]]`) by the SHA-256
/// of its value as TOML; a file that cannot be read or parsed has none.
type Sections = BTreeMap<String, Vec<u8>>;

fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// What the file says now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Snapshot {
    /// SHA-256 of the file's bytes, hex.
    sha256: String,
    sections: Sections,
}

impl Snapshot {
    fn read(path: &Path) -> Self {
        let Ok(bytes) = std::fs::read(path) else {
            return Self::default();
        };
        let sections = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .map(|table| {
                table
                    .into_iter()
                    .map(|(k, v)| (k, sha256(v.to_string().as_bytes())))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            sha256: hex::encode(sha256(&bytes)),
            sections,
        }
    }

    /// The sections added, removed or changed since `before`, in name order.
    fn changed_since(&self, before: &Self) -> Vec<String> {
        let mut names: Vec<String> = self
            .sections
            .iter()
            .filter(|(k, v)| before.sections.get(*k) != Some(v))
            .map(|(k, _)| k.clone())
            .collect();
        names.extend(
            before
                .sections
                .keys()
                .filter(|k| !self.sections.contains_key(*k))
                .cloned(),
        );
        names.sort();
        names
    }
}

/// Writes the configuration's audit entries for one `serve`.
pub struct ConfigAudit {
    path: PathBuf,
    audit: Audit,
    clock: Arc<dyn Clock>,
    last: Mutex<Snapshot>,
}

impl ConfigAudit {
    pub fn new(path: &Path, audit: Audit, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_path_buf(),
            audit,
            clock,
            last: Mutex::new(Snapshot::read(path)),
        })
    }

    /// `config.start`: the file `serve` started with.
    pub async fn started(&self) {
        let now = self.snapshot();
        self.record("config.start", serde_json::json!({ "sha256": now.sha256 }))
            .await;
    }

    /// `config.stop`: serving ends, with the file last put in force.
    pub async fn stopped(&self) {
        let now = self.snapshot();
        self.record("config.stop", serde_json::json!({ "sha256": now.sha256 }))
            .await;
    }

    /// `config.reload`: called once a reload is in force; names the sections changed
    /// since the last entry (none when only certificate files changed).
    pub async fn reloaded(&self) {
        let now = Snapshot::read(&self.path);
        let changed = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let changed = now.changed_since(&last);
            *last = now.clone();
            changed
        };
        self.record(
            "config.reload",
            serde_json::json!({ "sha256": now.sha256, "changed": changed }),
        )
        .await;
    }

    fn snapshot(&self) -> Snapshot {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn record(&self, action: &str, detail: serde_json::Value) {
        // A failure is logged by `record`; serving goes on, as the reload already did.
        let _ = self
            .audit
            .record(
                self.clock.now(),
                &Actor::System,
                action,
                &self.path.display().to_string(),
                Outcome::Ok,
                detail,
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(text: &str) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certgate.toml");
        std::fs::write(&path, text).unwrap();
        Snapshot::read(&path)
    }

    #[test]
    fn names_the_sections_that_changed() {
        let before = snapshot(
            "[gateway]\nworkers = 2\n[[route]]\nprefix = \"/\"\nauth = \"certificate\"\n[log]\njson = true\n",
        );
        let after = snapshot(
            "[gateway]\nworkers = 2\n[[route]]\nprefix = \"/\"\nauth = \"public\"\n[limits]\nx = 1\n",
        );
        assert_eq!(after.changed_since(&before), ["limits", "log", "route"]);
        assert_ne!(after.sha256, before.sha256);
        assert!(before.changed_since(&before).is_empty());
    }

    #[test]
    fn a_comment_changes_the_hash_but_no_section() {
        let before = snapshot("[log]\njson = true\n");
        let after = snapshot("# reviewed\n[log]\njson = true\n");
        assert!(after.changed_since(&before).is_empty());
        assert_ne!(after.sha256, before.sha256);
    }

    #[test]
    fn an_unreadable_file_has_no_sections() {
        let s = Snapshot::read(Path::new("/nonexistent/certgate.toml"));
        assert_eq!(s, Snapshot::default());
    }
}
