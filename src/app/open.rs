//! Opening what a command or `serve` needs: the configuration, the store, the key store and
//! the CAs, each checked (a CA certificate must match its key). Keys are reached only through
//! the key seam ([`crate::keys`]); which store that is comes from `[hsm]` here. An edge like
//! the CLI: errors carry context for the operator (anyhow).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow};

use crate::ca::{Authority, CaName, IssuancePolicy};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::keys::{
    KeyAlgorithm, KeyBackend, KeyRef, KeyStore, KeyStoreError, ObservedKey, SignObserver,
};
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

/// Opens the key store `[hsm]` configures: the PKCS#11 token, logged in.
pub async fn open_key_store(cfg: &Config) -> anyhow::Result<Arc<dyn KeyStore>> {
    let cfg = cfg.clone();
    let store = tokio::task::spawn_blocking(move || crate::hsm::open_key_store(&cfg)).await??;
    Ok(Arc::new(store))
}

/// Runs `call` on the key store off the async threads (its calls block).
pub async fn with_keys<T: Send + 'static>(
    keys: &Arc<dyn KeyStore>,
    call: impl FnOnce(&dyn KeyStore) -> T + Send + 'static,
) -> anyhow::Result<T> {
    let keys = keys.clone();
    Ok(tokio::task::spawn_blocking(move || call(keys.as_ref())).await?)
}

/// Opens the key `label` as a signer (checked safe and matching its public key).
pub async fn open_key(
    keys: &Arc<dyn KeyStore>,
    label: &str,
) -> anyhow::Result<Arc<dyn KeyBackend>> {
    let key = KeyRef::label(label);
    with_keys(keys, move |k| k.open(&key))
        .await?
        .with_context(|| format!("cannot open the key {label:?}"))
}

/// Generates `key` in the store (blocking); refused when the store only lends keys.
pub fn generate_key(
    keys: &dyn KeyStore,
    key: &KeyRef,
    algorithm: KeyAlgorithm,
) -> Result<Arc<dyn KeyBackend>, KeyStoreError> {
    keys.generator()
        .ok_or_else(|| KeyStoreError::Unusable("this key store does not generate keys".into()))?
        .generate(key, algorithm)
}

/// The issuance policy from the configuration.
pub fn issuance_policy(cfg: &Config) -> IssuancePolicy {
    IssuancePolicy {
        validity_days: cfg.ca.validity_days,
        organization: cfg.ca.organization.clone(),
        public_url: cfg.ca.status_base().to_owned(),
        crl_partition_days: cfg.revocation.crl_partition_days,
    }
}

/// Opens the active CA: its record from the store and its key from the key store, checked
/// to match.
pub async fn open_authority(
    cfg: &Config,
    store: &Store,
    keys: &Arc<dyn KeyStore>,
) -> anyhow::Result<Arc<Authority>> {
    let ca = store
        .active_ca()
        .await?
        .ok_or_else(|| anyhow!("no CA certificate yet: run `certgate init` first"))?;
    let label = KeyRef::label(&ca.key_label);
    let key = with_keys(keys, move |k| k.open(&label))
        .await?
        .with_context(|| format!("cannot open the CA key {:?}", ca.key_label))?;
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

/// Opens the store, the key store and the CA, and builds the lifecycle service.
pub async fn open_all(cfg: Config) -> anyhow::Result<Opened> {
    let store = open_store(&cfg).await?;
    let keys = open_key_store(&cfg).await?;
    let authority = open_authority(&cfg, &store, &keys).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let lifecycle = Lifecycle::new(
        store.clone(),
        authority,
        clock,
        LifecycleSettings::from_config(&cfg),
    );
    Ok(Opened { lifecycle })
}

/// Opens every CA in the store (the active one first), each with its key from the key store.
/// A CA whose key is missing is left out with a warning: its certificates then get no fresh
/// CRL or OCSP answers, which `/readyz` does not hide from the log.
pub async fn open_cas(
    cfg: &Config,
    store: &Store,
    keys: &Arc<dyn KeyStore>,
    observer: Option<Arc<dyn SignObserver>>,
) -> anyhow::Result<Vec<Arc<Authority>>> {
    let mut records = store.cas().await?;
    records.sort_by_key(|c| (!c.active, -c.id));
    let mut out = Vec::with_capacity(records.len());
    for ca in records {
        let label = KeyRef::label(&ca.key_label);
        let key = match with_keys(keys, move |k| k.open(&label)).await? {
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
        let key: Arc<dyn KeyBackend> = match &observer {
            Some(o) => Arc::new(ObservedKey::new(key, Arc::clone(o))),
            None => key,
        };
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
