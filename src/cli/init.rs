//! `certgate init`: schema, CA key and CA certificate, each created only when absent.

use anyhow::{Context, bail};

use crate::audit::{Actor, Audit, Outcome};
use crate::ca;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::keys::{KeyRef, KeyStoreError};

use super::context;
use super::progress::Progress;

pub async fn run(cfg: &Config) -> anyhow::Result<()> {
    let mut progress = Progress::start("init", 4);
    progress.step("preparing the database schema");
    let store = context::open_store(cfg).await?;
    progress.out(format_args!(
        "database schema ready ({})",
        store.backend_name()
    ));
    progress.step(format!("opening the token {:?}", cfg.hsm.token_label));
    let keys = context::open_key_store(cfg).await?;
    // After a rollover the active CA's key is no longer [hsm] key_label: the store decides.
    let label = match store.active_ca().await? {
        Some(active) => active.key_label,
        None => cfg.hsm.key_label.clone(),
    };
    let algorithm = cfg.hsm.key_algorithm;

    let key_ref = KeyRef::label(&label);
    let r = key_ref.clone();
    progress.step(format!("looking for the CA key {label:?}"));
    let key = match context::with_keys(&keys, move |k| k.open(&r)).await? {
        Ok(key) => {
            progress.out(format_args!(
                "CA key {label:?} found in token {:?}",
                cfg.hsm.token_label
            ));
            key
        }
        Err(KeyStoreError::NotFound(_)) => {
            if store.active_ca().await?.is_some() {
                bail!(
                    "the database has a CA certificate but the token has no key {label:?}: wrong token or key label; refusing to create a new key"
                );
            }
            progress.detail(format!("generating the {algorithm} CA key {label:?}"));
            let key = context::with_keys(&keys, move |k| {
                context::generate_key(k, &key_ref, algorithm)
            })
            .await?
            .context("cannot generate the CA key in the HSM")?;
            progress.out(format_args!(
                "CA key {label:?} ({algorithm}) generated in token {:?}",
                cfg.hsm.token_label
            ));
            Audit::new(store.clone())
                .record(
                    SystemClock.now(),
                    &Actor::host()?,
                    "hsm.keygen",
                    &label,
                    Outcome::Ok,
                    serde_json::json!({"algorithm": algorithm.as_str(), "token": cfg.hsm.token_label,
                        "always_authenticate": cfg.hsm.key_always_authenticate}),
                )
                .await?;
            key
        }
        Err(e) => return Err(e).context("cannot open the CA key"),
    };

    progress.step("checking the CA certificate");
    if let Some(active) = store.active_ca().await? {
        ca::check_key_matches(&active.cert_der, key.as_ref()).with_context(|| {
            format!("the active CA certificate does not match the HSM key {label:?}")
        })?;
        progress.finish();
        println!(
            "CA certificate present (id {}), matches the HSM key",
            active.id
        );
        return Ok(());
    }
    progress.detail("making and signing the CA certificate");
    let now = SystemClock.now();
    let signer = key.clone();
    let subject = ca::CaName::parse(&cfg.ca.subject).context("[ca] subject")?;
    let validity = cfg.ca.ca_validity_days;
    let der =
        tokio::task::spawn_blocking(move || ca::self_signed_ca(signer, &subject, now, validity))
            .await?
            .context("cannot make the CA certificate")?;
    let detail =
        serde_json::json!({"subject": cfg.ca.subject, "key_label": label, "self_signed": true});
    let actor = Actor::host()?;
    let record = store
        .insert_ca_audited(
            &label,
            &der,
            "",
            true,
            now,
            Some(|id: i64| {
                crate::audit::entry(
                    now,
                    &actor,
                    "ca.create",
                    &id.to_string(),
                    Outcome::Ok,
                    detail,
                )
            }),
        )
        .await?;
    progress.finish();
    println!(
        "CA certificate created (id {}): {}",
        record.id, cfg.ca.subject
    );
    Ok(())
}
