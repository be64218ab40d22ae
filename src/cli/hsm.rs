//! `certgate hsm info|keygen`: what the module and token offer, and key generation for the
//! key ceremony. The PIN is read from its configured source and never printed.
//!
//! This file must not call PKCS#11 itself (see [`crate::hsm`]) or accept an unsafe key.

use anyhow::{Context, bail};

use crate::audit::{Actor, Audit, Outcome};
use crate::ca::KeyBackend;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::hsm::{self, HsmError, KeyAttributes, ModuleInfo};

use super::args::HsmCmd;
use super::context;

pub async fn run(cfg: &Config, cmd: HsmCmd) -> anyhow::Result<()> {
    match cmd {
        HsmCmd::Info { key_label, json } => info(cfg, key_label, json).await,
        HsmCmd::Keygen { label, algorithm } => {
            let store = context::open_store(cfg).await?;
            let hsm = context::open_hsm(cfg).await?;
            let (h, l) = (hsm.clone(), label.clone());
            let key = tokio::task::spawn_blocking(move || h.generate_key(&l, algorithm))
                .await?
                .with_context(|| format!("cannot generate the key {label:?}"))?;
            let (h, l) = (hsm.clone(), label.clone());
            let attrs = tokio::task::spawn_blocking(move || h.key_attributes(&l)).await??;
            Audit::new(store)
                .record(
                    SystemClock.now(),
                    &Actor::current_staff(),
                    "hsm.keygen",
                    &label,
                    Outcome::Ok,
                    serde_json::json!({"algorithm": algorithm.as_str(), "id": key.id_hex(),
                        "token": cfg.hsm.token_label}),
                )
                .await?;
            println!(
                "generated {algorithm} key {label:?} (CKA_ID {}) in token {:?}",
                key.id_hex(),
                cfg.hsm.token_label
            );
            print_attributes(&attrs);
            print!(
                "{}",
                crate::ca::pem::encode("PUBLIC KEY", key.public_key_der())
            );
            Ok(())
        }
    }
}

async fn info(cfg: &Config, key_label: Option<String>, json: bool) -> anyhow::Result<()> {
    let module = cfg.resolve(&cfg.hsm.module);
    let token = cfg.hsm.token_label.clone();
    let m = module.clone();
    let described = tokio::task::spawn_blocking(move || hsm::inspect(&m, &token))
        .await?
        .with_context(|| format!("cannot inspect the PKCS#11 module {}", module.display()))?;
    // The key: as asked, else the active CA's (when a database is there), else the config's.
    let label = match key_label {
        Some(l) => l,
        None => active_key_label(cfg)
            .await
            .unwrap_or_else(|| cfg.hsm.key_label.clone()),
    };
    let hsm = context::open_hsm(cfg).await?;
    let l = label.clone();
    let attrs = match tokio::task::spawn_blocking(move || hsm.key_attributes(&l)).await? {
        Ok(a) => Some(a),
        Err(HsmError::KeyNotFound(_)) => None,
        Err(e) => return Err(e).context(format!("cannot read the key {label:?}")),
    };
    let unsafe_reason = attrs.as_ref().and_then(KeyAttributes::unsafe_reason);
    if json {
        let out = serde_json::json!({
            "module": described,
            "token_label": cfg.hsm.token_label,
            "key": {
                "label": label,
                "present": attrs.is_some(),
                "attributes": attrs,
                "safe": attrs.is_some() && unsafe_reason.is_none(),
                "unsafe_reason": unsafe_reason,
            },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_module(&described, &cfg.hsm.token_label);
        println!();
        match &attrs {
            None => println!(
                "CA key {label:?}: not in the token (`certgate init` or `hsm keygen` creates it)"
            ),
            Some(a) => {
                println!("CA key {label:?}:");
                print_attributes(a);
            }
        }
    }
    if let Some(reason) = unsafe_reason {
        bail!("key {label:?} is not safe as a CA key: {reason}");
    }
    Ok(())
}

/// The active CA's key label, if a database with a CA is reachable.
async fn active_key_label(cfg: &Config) -> Option<String> {
    let store = context::open_store(cfg).await.ok()?;
    store.active_ca().await.ok()?.map(|c| c.key_label)
}

fn print_module(m: &ModuleInfo, token_label: &str) {
    println!("module:       {}", m.module);
    println!(
        "library:      {} {} ({}), Cryptoki {}",
        m.manufacturer, m.description, m.library_version, m.cryptoki_version
    );
    println!("tokens:");
    for t in &m.tokens {
        let mark = if t.label == token_label {
            " (configured)"
        } else {
            ""
        };
        println!(
            "  slot {:<10} label {:?}{mark}; {} {} serial {}; sessions {}",
            t.slot_id, t.label, t.manufacturer, t.model, t.serial_number, t.sessions
        );
        let mut pin = Vec::new();
        if !t.initialized {
            pin.push("token not initialised");
        }
        if !t.user_pin_initialized {
            pin.push("user PIN not set");
        }
        if t.user_pin_count_low {
            pin.push("a wrong user PIN was entered recently");
        }
        if t.user_pin_final_try {
            pin.push("ONE user PIN try left");
        }
        if t.user_pin_locked {
            pin.push("USER PIN LOCKED");
        }
        if !pin.is_empty() {
            println!("    warning: {}", pin.join("; "));
        }
        for a in &t.algorithms {
            println!(
                "    {:<9} {}",
                a.algorithm.as_str(),
                if a.usable { "usable" } else { "NOT usable" }
            );
            for mech in &a.mechanisms {
                let sizes = mech
                    .key_sizes
                    .map(|(lo, hi)| format!(" key sizes {lo}-{hi}"))
                    .unwrap_or_default();
                let state = match (mech.present, mech.fits) {
                    (false, _) => "missing",
                    (true, false) => "present but unfit",
                    (true, true) => "present",
                };
                println!("      {:<24} {state}{sizes} ({})", mech.name, mech.purpose);
            }
        }
    }
}

fn print_attributes(a: &KeyAttributes) {
    let alg = a.algorithm.map_or("unsupported", |x| x.as_str());
    println!("  CKA_ID {}  algorithm {alg}", a.id_hex);
    let flag = |name: &str, v: bool| format!("{name}={v}");
    println!(
        "  {}",
        [
            flag("token", a.token),
            flag("private", a.private),
            flag("sensitive", a.sensitive),
            flag("always_sensitive", a.always_sensitive),
            flag("extractable", a.extractable),
            flag("never_extractable", a.never_extractable),
            flag("local", a.local),
            flag("decrypt", a.decrypt),
            flag("unwrap", a.unwrap),
            flag("derive", a.derive),
        ]
        .join(" ")
    );
    match a.unsafe_reason() {
        None => println!("  safe as a CA key"),
        Some(r) => println!("  UNSAFE as a CA key: {r}"),
    }
    if let Some(w) = a.history_warning() {
        println!("  note: {w}");
    }
}
