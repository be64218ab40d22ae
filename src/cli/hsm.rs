//! `certgate hsm info|keygen`: what the module and token offer, and key generation for the
//! key ceremony. The PIN is read from its configured source and never printed.
//!
//! This file must not reach the token except through the key seam ([`crate::keys`]), or
//! accept an unsafe key.

use anyhow::Context;

use crate::audit::{Actor, Audit, Outcome};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ContextLogin};
use crate::keys::{KeyDescription, KeyRef, KeyStoreError};

use super::args::{Format, HsmCmd};
use super::context;
use super::exit::Finding;
use super::progress::Progress;

pub async fn run(cfg: &Config, cmd: HsmCmd) -> anyhow::Result<()> {
    match cmd {
        HsmCmd::Info {
            key_label,
            output,
            json,
        } => {
            let format = if json { Format::Json } else { output.format };
            info(cfg, key_label, format).await
        }
        HsmCmd::Keygen {
            label,
            algorithm,
            always_authenticate,
        } => {
            // The flag is the setting for this one key; the key store creates keys by it.
            let mut cfg = cfg.clone();
            if always_authenticate {
                if cfg.hsm.context_login == ContextLogin::Never {
                    anyhow::bail!(
                        "--always-authenticate creates a key that needs a context-specific \
                         login for each signature, which [hsm] context_login = \"never\" turns off"
                    );
                }
                cfg.hsm.key_always_authenticate = true;
            }
            let cfg = &cfg;
            let mut progress = Progress::start("hsm keygen", 4);
            progress.step("opening the database");
            let store = context::open_store(cfg).await?;
            progress.step(format!("opening the token {:?}", cfg.hsm.token_label));
            let keys = context::open_key_store(cfg).await?;
            let key_ref = KeyRef::label(&label);
            let r = key_ref.clone();
            progress.step(format!(
                "generating the {algorithm} key {label:?} in the token"
            ));
            let key = context::with_keys(&keys, move |k| context::generate_key(k, &r, algorithm))
                .await?
                .with_context(|| format!("cannot generate the key {label:?}"))?;
            let described = context::with_keys(&keys, move |k| k.describe_key(&key_ref)).await??;
            progress.step("recording the key in the audit log");
            Audit::new(store)
                .record(
                    SystemClock.now(),
                    &Actor::host()?,
                    "hsm.keygen",
                    &label,
                    Outcome::Ok,
                    serde_json::json!({"algorithm": algorithm.as_str(), "id": described.id_hex,
                        "token": cfg.hsm.token_label,
                        "always_authenticate": cfg.hsm.key_always_authenticate}),
                )
                .await?;
            progress.finish();
            println!(
                "generated {algorithm} key {label:?} (CKA_ID {}) in token {:?}",
                described.id_hex, cfg.hsm.token_label
            );
            print_key(&described);
            print!(
                "{}",
                crate::ca::pem::encode("PUBLIC KEY", key.public_key_der())
            );
            Ok(())
        }
    }
}

async fn info(cfg: &Config, key_label: Option<String>, format: Format) -> anyhow::Result<()> {
    let keys = context::open_key_store(cfg).await?;
    let described = context::with_keys(&keys, |k| k.describe())
        .await?
        .with_context(|| {
            format!(
                "cannot inspect the PKCS#11 module {}",
                cfg.resolve(&cfg.hsm.module).display()
            )
        })?;
    // The key: as asked, else the active CA's (when a database is there), else the config's.
    let label = match key_label {
        Some(l) => l,
        None => active_key_label(cfg)
            .await
            .unwrap_or_else(|| cfg.hsm.key_label.clone()),
    };
    let key_ref = KeyRef::label(&label);
    let key = match context::with_keys(&keys, move |k| k.describe_key(&key_ref)).await? {
        Ok(d) => Some(d),
        Err(KeyStoreError::NotFound(_)) => None,
        Err(e) => return Err(e).context(format!("cannot read the key {label:?}")),
    };
    let unsafe_reason = key.as_ref().and_then(|k| k.unsafe_reason.clone());
    if format == Format::Json {
        let out = serde_json::json!({
            "module": described.details,
            "token_label": cfg.hsm.token_label,
            "key": {
                "label": label,
                "present": key.is_some(),
                "attributes": key.as_ref().map(|k| &k.details),
                "safe": key.is_some() && unsafe_reason.is_none(),
                "unsafe_reason": unsafe_reason,
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", described.text);
        println!();
        match &key {
            None => println!(
                "CA key {label:?}: not in the token (`certgate init` or `hsm keygen` creates it)"
            ),
            Some(k) => {
                println!("CA key {label:?}:");
                print_key(k);
            }
        }
    }
    if let Some(reason) = unsafe_reason {
        return Err(Finding::error(format!(
            "key {label:?} is not safe as a CA key: {reason}"
        )));
    }
    Ok(())
}

/// The active CA's key label, if a database with a CA is reachable.
async fn active_key_label(cfg: &Config) -> Option<String> {
    let store = context::open_store(cfg).await.ok()?;
    store.active_ca().await.ok()?.map(|c| c.key_label)
}

fn print_key(k: &KeyDescription) {
    let alg = k.algorithm.map_or("unsupported", |x| x.as_str());
    println!("  CKA_ID {}  algorithm {alg}", k.id_hex);
    let properties: Vec<String> = k
        .properties
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    println!("  {}", properties.join(" "));
    match &k.unsafe_reason {
        None => println!("  safe as a CA key"),
        Some(r) => println!("  UNSAFE as a CA key: {r}"),
    }
    if let Some(w) = &k.history_warning {
        println!("  note: {w}");
    }
}
