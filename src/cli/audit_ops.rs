//! `certgate audit verify|checkpoint|export`: the audit log for the security team.
//!
//! Checkpoint signatures are checked with public keys read from the HSM, never with keys
//! stored in the database. This file must not decide what a valid chain is (see
//! [`crate::audit`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, anyhow};

use crate::audit::{self, Actor, CheckpointKeys};
use crate::ca::KeyBackend;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::hsm::{Hsm, HsmError};

use super::args::AuditCmd;
use super::context;

pub async fn run(cfg: &Config, cmd: AuditCmd) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    match cmd {
        AuditCmd::Verify => {
            let checkpoints = store.checkpoints().await?;
            let report = if checkpoints.is_empty() {
                audit::verify_chain(&store).await?
            } else {
                let hsm = context::open_hsm(cfg)
                    .await
                    .context("checkpoint signatures are checked with keys from the HSM")?;
                let labels: BTreeSet<String> =
                    checkpoints.iter().map(|c| c.key_label.clone()).collect();
                let keys = checkpoint_keys(&hsm, labels).await?;
                audit::verify_with_checkpoints(&store, &keys).await?
            };
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
        }
        AuditCmd::Checkpoint { key_label } => {
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
            let hsm = context::open_hsm(cfg).await?;
            let key = open_key(&hsm, &label).await?;
            let c = audit::make_checkpoint(
                &store,
                key,
                &label,
                &Actor::current_staff(),
                SystemClock.now(),
            )
            .await?;
            // One JSON line: easy to ship off the host (SIEM, ticket, paper log).
            println!("{}", serde_json::to_string(&c)?);
        }
        AuditCmd::Export { from } => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            audit::export(&store, from, &mut lock).await?;
        }
    }
    Ok(())
}

/// Opens the key `label` as a signer (checked safe and matching its public key).
pub async fn open_key(hsm: &Hsm, label: &str) -> anyhow::Result<Arc<dyn KeyBackend>> {
    let hsm = hsm.clone();
    let l = label.to_owned();
    let key = tokio::task::spawn_blocking(move || hsm.key(&l))
        .await?
        .with_context(|| format!("cannot open the key {label:?}"))?;
    Ok(Arc::new(key))
}

/// The public keys of `labels` from the HSM; a key that is gone is left out (its
/// checkpoints then fail, naming it).
async fn checkpoint_keys(hsm: &Hsm, labels: BTreeSet<String>) -> anyhow::Result<CheckpointKeys> {
    let hsm = hsm.clone();
    let keys = tokio::task::spawn_blocking(move || -> Result<CheckpointKeys, HsmError> {
        let mut keys = CheckpointKeys::default();
        for label in labels {
            match hsm.key(&label) {
                Ok(k) => keys.insert(&label, k.algorithm(), k.public_key_der().to_vec()),
                Err(HsmError::KeyNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(keys)
    })
    .await??;
    Ok(keys)
}
