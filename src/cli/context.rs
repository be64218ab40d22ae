//! Opening what a command needs: the configuration, the store, the HSM and the CA.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};

use crate::ca::{Authority, CaName, IssuancePolicy, KeyBackend};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::hsm::{Hsm, HsmSettings};
use crate::lifecycle::{Lifecycle, LifecycleSettings};
use crate::store::Store;

/// Loads and checks the configuration file, `[ca] subject` included: whether a name can be
/// a CA's is `ca`'s to judge, which `config` (below it) does not ask.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let cfg = Config::load(path)?;
    CaName::parse(&cfg.ca.subject)
        .map_err(|e| ConfigError::Invalid(format!("[ca] subject: {e}")))?;
    Ok(cfg)
}

/// Connects to the database and applies pending migrations.
pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let url = cfg.database_url();
    let store = Store::connect(&url)
        .await
        .context("cannot open the database")?;
    store
        .migrate()
        .await
        .context("cannot prepare the database schema")?;
    Ok(store)
}

/// Opens the HSM token named in the configuration (blocking: PKCS#11).
pub async fn open_hsm(cfg: &Config) -> anyhow::Result<Hsm> {
    let pin = cfg.hsm.pin_source()?.read("HSM PIN")?;
    let settings = HsmSettings {
        module: cfg.resolve(&cfg.hsm.module),
        token_label: cfg.hsm.token_label.clone(),
        pin,
        sessions: cfg.hsm.sessions,
    };
    tokio::task::spawn_blocking(move || Hsm::open(&settings))
        .await?
        .context("cannot open the HSM")
}

/// The issuance policy from the configuration.
pub fn issuance_policy(cfg: &Config) -> IssuancePolicy {
    IssuancePolicy {
        validity_days: cfg.ca.validity_days,
        organization: cfg.ca.organization.clone(),
        public_url: cfg.ca.public_url.clone(),
    }
}

/// Opens the active CA: its record from the store and its key from the HSM, checked to match.
pub async fn open_authority(
    cfg: &Config,
    store: &Store,
    hsm: &Hsm,
) -> anyhow::Result<Arc<Authority>> {
    let ca = store
        .active_ca()
        .await?
        .ok_or_else(|| anyhow!("no CA certificate yet: run `certgate init` first"))?;
    let hsm = hsm.clone();
    let label = ca.key_label.clone();
    let key = tokio::task::spawn_blocking(move || hsm.key(&label))
        .await?
        .with_context(|| format!("cannot open the CA key {:?}", ca.key_label))?;
    let key: Arc<dyn KeyBackend> = Arc::new(key);
    let authority = Authority::new(ca.id, ca.cert_der.clone(), key, issuance_policy(cfg))
        .with_context(|| {
            format!(
                "the CA certificate does not match the HSM key {:?}",
                ca.key_label
            )
        })?;
    Ok(Arc::new(authority))
}

/// Everything a signing command needs.
pub struct Opened {
    pub lifecycle: Lifecycle,
}

/// Opens the store, the HSM and the CA, and builds the lifecycle service.
pub async fn open_all(cfg: Config) -> anyhow::Result<Opened> {
    let store = open_store(&cfg).await?;
    let hsm = open_hsm(&cfg).await?;
    let authority = open_authority(&cfg, &store, &hsm).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let lifecycle = Lifecycle::new(
        store.clone(),
        authority,
        clock,
        LifecycleSettings::from_config(&cfg),
    );
    Ok(Opened { lifecycle })
}

/// Opens every CA in the store (the active one first), each with its HSM key. A CA whose key
/// is missing is left out with a warning: its certificates then get no fresh CRL or OCSP
/// answers, which `/readyz` does not hide from the log.
pub async fn open_cas(
    cfg: &Config,
    store: &Store,
    hsm: &Hsm,
) -> anyhow::Result<Vec<Arc<Authority>>> {
    let mut records = store.cas().await?;
    records.sort_by_key(|c| (!c.active, -c.id));
    let mut out = Vec::with_capacity(records.len());
    for ca in records {
        let opener = hsm.clone();
        let label = ca.key_label.clone();
        let key = match tokio::task::spawn_blocking(move || opener.key(&label)).await? {
            Ok(k) => k,
            Err(e) if !ca.active => {
                tracing::warn!(ca = ca.id, label = %ca.key_label, error = %e, "cannot open the key of an inactive CA");
                continue;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open the CA key {:?}", ca.key_label));
            }
        };
        let key: Arc<dyn KeyBackend> = Arc::new(key);
        let authority = Authority::new(ca.id, ca.cert_der.clone(), key, issuance_policy(cfg))
            .with_context(|| {
                format!("CA {} does not match the HSM key {:?}", ca.id, ca.key_label)
            })?;
        out.push(Arc::new(authority));
    }
    if out.is_empty() {
        anyhow::bail!("no CA certificate yet: run `certgate init` first");
    }
    Ok(out)
}
