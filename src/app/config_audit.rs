//! The configuration in force, in the audit log: an entry when `serve` starts, one for
//! every reload put in force, and one when it stops. A reload can open or close the gate
//! (a route made public, a limit raised, a trust anchor added), so auditors must be able
//! to see when the configuration changed and which sections did; the file's SHA-256 ties
//! the entry to a reviewed copy of the file. A reload that was refused is recorded too
//! (outcome `refused`, with the reason), and so is a change of a certificate, key or trust
//! anchor file, which changes no section.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::audit::{Actor, Audit, Outcome};
use crate::clock::Clock;
use crate::config::Config;
use crate::config::reload_scope::{WatchedFile, watched_files};

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

/// The certificate, key and trust-anchor files a reload reads, by path: the SHA-256 of
/// their bytes (`None`: unreadable), and whether each holds a private key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Files(BTreeMap<PathBuf, (Option<Vec<u8>>, bool)>);

impl Files {
    fn read(watched: &[WatchedFile]) -> Self {
        Self(
            watched
                .iter()
                .map(|f| {
                    let digest = std::fs::read(&f.path).ok().map(|b| sha256(&b));
                    (f.path.clone(), (digest, f.private_key))
                })
                .collect(),
        )
    }

    /// The files added, removed or changed since `before`: each path, and for a file that
    /// holds no private key its new SHA-256 (a key file is only named).
    fn changed_since(&self, before: &Self) -> Vec<serde_json::Value> {
        let mut changed: Vec<serde_json::Value> = self
            .0
            .iter()
            .filter(|(path, now)| before.0.get(*path) != Some(now))
            .map(|(path, (digest, private_key))| {
                let mut entry = serde_json::json!({ "path": path.display().to_string() });
                if !private_key {
                    entry["sha256"] = digest.as_deref().map(hex::encode).into();
                }
                entry
            })
            .collect();
        changed.extend(
            before
                .0
                .keys()
                .filter(|path| !self.0.contains_key(*path))
                .map(|path| serde_json::json!({ "path": path.display().to_string(), "removed": true })),
        );
        changed
    }
}

/// Writes the configuration's audit entries for one `serve`.
pub struct ConfigAudit {
    path: PathBuf,
    audit: Audit,
    clock: Arc<dyn Clock>,
    last: Mutex<(Snapshot, Files)>,
}

impl ConfigAudit {
    /// `config` is the configuration `serve` started with, read from `path`.
    pub fn new(path: &Path, config: &Config, audit: Audit, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new(Self {
            path: path.to_path_buf(),
            audit,
            clock,
            last: Mutex::new((Snapshot::read(path), Files::read(&watched_files(config)))),
        })
    }

    /// `config.start`: the file `serve` started with.
    pub async fn started(&self) {
        let now = self.snapshot();
        self.record(
            "config.start",
            Outcome::Ok,
            serde_json::json!({ "sha256": now.sha256 }),
        )
        .await;
    }

    /// `config.stop`: serving ends, with the file last put in force.
    pub async fn stopped(&self) {
        let now = self.snapshot();
        self.record(
            "config.stop",
            Outcome::Ok,
            serde_json::json!({ "sha256": now.sha256 }),
        )
        .await;
    }

    /// `config.reload`: called once a reload is in force with the configuration `config`;
    /// names the sections changed since the last entry and the certificate, key and trust
    /// anchor files that changed (a reload caused by the CAs in the store changes neither).
    pub async fn reloaded(&self, config: &Config) {
        let now = Snapshot::read(&self.path);
        let files = Files::read(&watched_files(config));
        let (changed, files_changed) = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let changed = now.changed_since(&last.0);
            let files_changed = files.changed_since(&last.1);
            *last = (now.clone(), files);
            (changed, files_changed)
        };
        self.record(
            "config.reload",
            Outcome::Ok,
            serde_json::json!({
                "sha256": now.sha256,
                "changed": changed,
                "files_changed": files_changed,
            }),
        )
        .await;
    }

    /// `config.reload` refused: the file (or a file it names) did not load and the running
    /// configuration stays. The reason's first line only: a parser's later lines quote the
    /// file, which is kept out of the audit log.
    pub async fn refused(&self, why: &str) {
        let now = Snapshot::read(&self.path);
        let in_force = self.snapshot().sha256;
        let reason = why.lines().next().unwrap_or_default();
        self.record(
            "config.reload",
            Outcome::Refused,
            serde_json::json!({
                "sha256": now.sha256,
                "in_force_sha256": in_force,
                "reason": reason,
            }),
        )
        .await;
    }

    fn snapshot(&self) -> Snapshot {
        self.last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    async fn record(&self, action: &str, outcome: Outcome, detail: serde_json::Value) {
        // A failure is logged by `record`; serving goes on, as the reload already did.
        let _ = self
            .audit
            .record(
                self.clock.now(),
                &Actor::System,
                action,
                &self.path.display().to_string(),
                outcome,
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

    #[test]
    fn names_changed_files_and_fingerprints_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
        std::fs::write(&cert, "cert one").unwrap();
        std::fs::write(&key, "key one").unwrap();
        let watched = [
            WatchedFile {
                path: cert.clone(),
                private_key: false,
            },
            WatchedFile {
                path: key.clone(),
                private_key: true,
            },
        ];
        let before = Files::read(&watched);
        assert!(Files::read(&watched).changed_since(&before).is_empty());
        std::fs::write(&cert, "cert two").unwrap();
        std::fs::write(&key, "key two").unwrap();
        let changed = Files::read(&watched).changed_since(&before);
        assert_eq!(
            changed,
            [
                serde_json::json!({ "path": key.display().to_string() }),
                serde_json::json!({
                    "path": cert.display().to_string(),
                    "sha256": hex::encode(sha256(b"cert two")),
                }),
            ]
        );
        let fewer = Files::read(&watched[..1]).changed_since(&Files::read(&watched));
        assert_eq!(
            fewer,
            [serde_json::json!({ "path": key.display().to_string(), "removed": true })]
        );
    }
}
