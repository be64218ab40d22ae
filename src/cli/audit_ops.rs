//! `certgate audit verify|checkpoint|export`: the audit log for the security team.
//!
//! Checkpoint signatures are checked with public keys read from the key store (the HSM),
//! never with keys stored in the database. This file must not decide what a valid chain is
//! (see [`crate::audit`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{Context, anyhow};

use crate::audit::{self, Actor, CheckpointKeys};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::{KeyRef, KeyStore, KeyStoreError};

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
                let keys = context::open_key_store(cfg)
                    .await
                    .context("checkpoint signatures are checked with keys from the HSM")?;
                let labels: BTreeSet<String> =
                    checkpoints.iter().map(|c| c.key_label.clone()).collect();
                let public_keys = checkpoint_keys(&keys, labels).await?;
                audit::verify_with_checkpoints(&store, &public_keys).await?
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
            let keys = context::open_key_store(cfg).await?;
            let key = context::open_key(&keys, &label).await?;
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
        AuditCmd::Signatures {
            stale_minutes,
            format,
        } => super::signature_ops::signatures(&store, stale_minutes, format).await?,
        AuditCmd::SettleIntent { serial, .. } => {
            super::signature_ops::settle_discarded(&store, &serial).await?
        }
    }
    Ok(())
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
