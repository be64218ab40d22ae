//! `certgate init`: schema, CA key and CA certificate, each created only when absent.

use std::sync::Arc;

use anyhow::{Context, bail};

use crate::audit::{Actor, Audit, Outcome};
use crate::ca::{self, KeyBackend};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::hsm::HsmError;

use super::context;

pub async fn run(cfg: &Config) -> anyhow::Result<()> {
    let store = context::open_store(cfg).await?;
    println!("database schema ready ({})", store.backend_name());
    let hsm = context::open_hsm(cfg).await?;
    // After a rollover the active CA's key is no longer [hsm] key_label: the store decides.
    let label = match store.active_ca().await? {
        Some(active) => active.key_label,
        None => cfg.hsm.key_label.clone(),
    };
    let algorithm = cfg.hsm.key_algorithm;

    let opener = hsm.clone();
    let open_label = label.clone();
    let key = match tokio::task::spawn_blocking(move || opener.key(&open_label)).await? {
        Ok(key) => {
            println!("CA key {label:?} found in token {:?}", cfg.hsm.token_label);
            key
        }
        Err(HsmError::KeyNotFound(_)) => {
            if store.active_ca().await?.is_some() {
                bail!(
                    "the database has a CA certificate but the token has no key {label:?}: wrong token or key label; refusing to create a new key"
                );
            }
            let generator = hsm.clone();
            let gen_label = label.clone();
            let key =
                tokio::task::spawn_blocking(move || generator.generate_key(&gen_label, algorithm))
                    .await?
                    .context("cannot generate the CA key in the HSM")?;
            println!(
                "CA key {label:?} ({algorithm}) generated in token {:?}",
                cfg.hsm.token_label
            );
            Audit::new(store.clone())
                .record(
                    SystemClock.now(),
                    &Actor::current_staff(),
                    "hsm.keygen",
                    &label,
                    Outcome::Ok,
                    serde_json::json!({"algorithm": algorithm.as_str(), "token": cfg.hsm.token_label}),
                )
                .await?;
            key
        }
        Err(e) => return Err(e).context("cannot open the CA key"),
    };
    let key: Arc<dyn KeyBackend> = Arc::new(key);

    if let Some(active) = store.active_ca().await? {
        ca::check_key_matches(&active.cert_der, key.as_ref()).with_context(|| {
            format!("the active CA certificate does not match the HSM key {label:?}")
        })?;
        println!(
            "CA certificate present (id {}), matches the HSM key",
            active.id
        );
        return Ok(());
    }
    let now = SystemClock.now();
    let signer = key.clone();
    let subject = ca::CaName::parse(&cfg.ca.subject).context("[ca] subject")?;
    let validity = cfg.ca.ca_validity_days;
    let der =
        tokio::task::spawn_blocking(move || ca::self_signed_ca(signer, &subject, now, validity))
            .await?
            .context("cannot make the CA certificate")?;
    let record = store.insert_ca(&label, &der, "", true, now).await?;
    Audit::new(store.clone())
        .record(
            now,
            &Actor::current_staff(),
            "ca.create",
            &record.id.to_string(),
            Outcome::Ok,
            serde_json::json!({"subject": cfg.ca.subject, "key_label": label, "self_signed": true}),
        )
        .await?;
    println!(
        "CA certificate created (id {}): {}",
        record.id, cfg.ca.subject
    );
    Ok(())
}
