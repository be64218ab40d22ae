//! `certgate audit verify|checkpoint|export`: the audit log for the security team.
//!
//! Checkpoint signatures are checked with public keys read from the key store (the HSM),
//! never with keys stored in the database. This file must not decide what a valid chain is
//! (see [`crate::audit`]).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use anyhow::{Context, anyhow};

use crate::audit::anchor::{self, Anchor};
use crate::audit::{self, Actor, AnchorPlace, AnchorSeen, CheckpointKeys, VerifyError};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::{KeyRef, KeyStore, KeyStoreError};
use crate::store::{AuditCheckpoint, Store};

use super::args::{AuditCmd, Format};
use super::context;
use super::exit::Finding;
use super::progress::Progress;
use super::views::{self, AnchorView, VerifyView};

/// How `audit verify` names the anchor kept in the token.
const HSM_SOURCE: &str = "the HSM";

pub async fn run(cfg: &Config, cmd: AuditCmd) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    match cmd {
        AuditCmd::Verify { output } => verify(cfg, &store, output.format).await?,
        AuditCmd::Checkpoint {
            key_label,
            after_restore,
        } => {
            let label = match key_label {
                Some(l) => l,
                None => {
                    store
                        .active_ca()
                        .await?
                        .ok_or_else(|| {
                            anyhow!("no CA yet: run `certgate init` or give --key-label")
                        })?
                        .key_label
                }
            };
            let keys = context::open_key_store(cfg).await?;
            // A checkpoint moves the anchors: never over a rollback unless told so.
            let anchors = read_anchors(cfg, &keys, &store.checkpoints().await?).await?;
            let replaces = match audit::anchors_reached(&store, &anchors).await {
                Ok(()) => None,
                Err(e) if after_restore => {
                    tracing::warn!(error = %e, "anchoring a database behind the audit anchor (--after-restore)");
                    // Signed into the checkpoint, so that the anchor file (which keeps the
                    // abandoned anchor) can be followed to the restored state.
                    restored_from(cfg, &anchors)
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(
                        "no checkpoint made: the database is behind the audit anchor; \
                         run `certgate audit verify` (after a restore from backup: \
                         `audit checkpoint --after-restore`)",
                    ));
                }
            };
            let key = context::open_key(&keys, &label).await?;
            // A CA's key: its checkpoint signatures are counted with its other signatures.
            let ca_id = store
                .cas()
                .await?
                .iter()
                .find(|ca| ca.key_label == label)
                .map(|ca| ca.id);
            let c = audit::make_checkpoint(
                &store,
                key,
                &label,
                ca_id,
                &Actor::host()?,
                SystemClock.now(),
                replaces.as_deref(),
            )
            .await?;
            // One JSON line: easy to ship off the host (SIEM, ticket, paper log).
            println!("{}", serde_json::to_string(&c)?);
            write_anchors(cfg, &keys, &c).await?;
        }
        AuditCmd::Export { from } => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            audit::export(&store, from, &mut lock).await?;
        }
        AuditCmd::Signatures {
            stale_minutes,
            output,
        } => super::signature_ops::signatures(&store, stale_minutes, output.format).await?,
        AuditCmd::SettleIntent { serial, .. } => {
            super::signature_ops::settle_discarded(&store, &serial).await?
        }
    }
    Ok(())
}

/// `audit verify`: the chain, every checkpoint and every anchor. A broken chain, a bad or
/// missing checkpoint or a rollback is a finding (exit 3); a store or HSM that cannot be
/// read is an error (exit 1).
async fn verify(cfg: &Config, store: &Store, format: Format) -> anyhow::Result<()> {
    let mut progress = Progress::start("audit verify", 4);
    progress.step(format!("opening the token {:?}", cfg.hsm.token_label));
    let keys = context::open_key_store(cfg)
        .await
        .context("checkpoint signatures and the audit anchor are checked against the HSM")?;
    let checkpoints = store.checkpoints().await?;
    let labels: BTreeSet<String> = checkpoints.iter().map(|c| c.key_label.clone()).collect();
    progress.step(format!(
        "reading the public keys of {} checkpoint key(s)",
        labels.len()
    ));
    let public_keys = checkpoint_keys(&keys, labels).await?;
    progress.step("reading the audit anchors");
    let anchors = read_anchors(cfg, &keys, &checkpoints).await?;
    let places = anchor_places(cfg, &anchors);
    progress.step("walking the hash chain and the checkpoints");
    let checked = match audit::anchors_present(&checkpoints, &places) {
        Ok(()) => audit::verify_with_checkpoints(store, &public_keys, &anchors).await,
        Err(missing) => Err(missing),
    };
    let report = match checked {
        Ok(report) => report,
        Err(VerifyError::Store(e)) => {
            return Err(anyhow::Error::new(e).context("cannot read the audit log"));
        }
        Err(problem) => {
            drop(progress);
            if format == Format::Json {
                views::print_json(&VerifyView {
                    intact: false,
                    problem: Some(problem.to_string()),
                    ..VerifyView::default()
                })?;
            }
            return Err(Finding::error(problem));
        }
    };
    progress.finish();
    if format == Format::Json {
        return views::print_json(&VerifyView {
            intact: true,
            problem: None,
            entries: Some(report.entries),
            last_hash: Some(report.last_hash),
            checkpoints: Some(report.checkpoints),
            last_checkpointed: report.last_checkpointed,
            anchors: anchors
                .iter()
                .map(|seen| AnchorView {
                    source: seen.source_name.clone(),
                    seq: seen.anchor.seq,
                })
                .collect(),
        });
    }
    println!(
        "audit chain intact: {} entries, last hash {}",
        report.entries, report.last_hash
    );
    match report.last_checkpointed {
        Some(seq) => println!(
            "{} signed checkpoint(s) verified; the newest covers record {seq}",
            report.checkpoints
        ),
        None => println!("no signed checkpoints yet (run `certgate audit checkpoint`)"),
    }
    for seen in &anchors {
        println!(
            "the anchor in {} (record {}) is reached",
            seen.source_name, seen.anchor.seq
        );
    }
    if anchors.is_empty() {
        println!("no audit anchor yet (the next `certgate audit checkpoint` writes one)");
    }
    Ok(())
}

/// Keeps the new checkpoint's anchor in the HSM, then in `[audit] anchor_file` if set. The
/// checkpoint is stored already: a failure here is reported, and the next checkpoint
/// writes a newer anchor.
async fn write_anchors(
    cfg: &Config,
    keys: &Arc<dyn KeyStore>,
    c: &crate::store::AuditCheckpoint,
) -> anyhow::Result<()> {
    let anchor = Anchor::of(c).map_err(|why| anyhow!("checkpoint {}: {why}", c.id))?;
    let for_hsm = anchor.clone();
    context::with_keys(keys, move |k| anchor::write_hsm(k.anchors(), &for_hsm))
        .await?
        .context("the checkpoint is stored, but its anchor is not in the HSM")?;
    if let Some(path) = &cfg.audit.anchor_file {
        anchor::append_file(&cfg.resolve(path), &anchor)
            .context("the checkpoint is stored and anchored in the HSM, but not in the file")?;
    }
    Ok(())
}

/// The anchors to check: the HSM's and the file's, each when there is one. The file stands
/// for its newest line, or for a restore that a signed checkpoint among `checkpoints`
/// states ([`anchor::effective`]).
async fn read_anchors(
    cfg: &Config,
    keys: &Arc<dyn KeyStore>,
    checkpoints: &[AuditCheckpoint],
) -> anyhow::Result<Vec<AnchorSeen>> {
    let mut seen = Vec::new();
    let in_hsm = context::with_keys(keys, |k| anchor::read_hsm(k.anchors()))
        .await?
        .context("cannot read the audit anchor from the HSM")?;
    if let Some(a) = in_hsm {
        seen.push(AnchorSeen {
            source_name: HSM_SOURCE.into(),
            anchor: a,
        });
    }
    if let Some(path) = &cfg.audit.anchor_file {
        let path = cfg.resolve(path);
        let lines = anchor::read_file(&path)?;
        let restores = if lines.iter().any(|l| l.replaces.is_some()) {
            let labels = checkpoints
                .iter()
                .filter(|c| c.version == 3)
                .map(|c| c.key_label.clone())
                .collect();
            audit::signed_restores(checkpoints, &checkpoint_keys(keys, labels).await?)
        } else {
            HashSet::new()
        };
        if let Some(a) = anchor::effective(&lines, &restores) {
            seen.push(AnchorSeen {
                source_name: path.display().to_string(),
                anchor: a,
            });
        }
    }
    Ok(seen)
}

/// The anchor a restore from backup leaves behind, named by the checkpoint made after it:
/// the file's (the HSM's anchor object is simply replaced), or the HSM's without a file.
fn restored_from(cfg: &Config, anchors: &[AnchorSeen]) -> Option<String> {
    let file = cfg
        .audit
        .anchor_file
        .as_ref()
        .map(|p| cfg.resolve(p).display().to_string());
    anchors
        .iter()
        .find(|a| Some(&a.source_name) == file.as_ref())
        .or_else(|| anchors.iter().find(|a| a.source_name == HSM_SOURCE))
        .map(|a| a.anchor.checkpoint.clone())
}

/// Where anchors are expected (the HSM always; the file when configured), and whether one
/// was read there.
fn anchor_places(cfg: &Config, anchors: &[AnchorSeen]) -> Vec<AnchorPlace> {
    let found = |name: &str| anchors.iter().any(|a| a.source_name == name);
    let mut places = vec![AnchorPlace {
        source_name: HSM_SOURCE.into(),
        found: found(HSM_SOURCE),
        configured: false,
    }];
    if let Some(path) = &cfg.audit.anchor_file {
        let name = cfg.resolve(path).display().to_string();
        places.push(AnchorPlace {
            found: found(&name),
            source_name: name,
            configured: true,
        });
    }
    places
}

/// The public keys of `labels` from the key store; a key that is gone is left out (its
/// checkpoints then fail, naming it).
async fn checkpoint_keys(
    keys: &Arc<dyn KeyStore>,
    labels: BTreeSet<String>,
) -> anyhow::Result<CheckpointKeys> {
    let found = context::with_keys(keys, move |k| -> Result<CheckpointKeys, KeyStoreError> {
        let mut found = CheckpointKeys::default();
        for label in labels {
            match k.open(&KeyRef::label(&label)) {
                Ok(key) => found.insert(&label, key.algorithm(), key.public_key_der().to_vec()),
                Err(KeyStoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    })
    .await??;
    Ok(found)
}
