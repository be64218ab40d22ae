//! Hot reload: the configuration file, the listeners' certificate and key files, and the
//! trust anchors in the store are watched (polling, plus SIGHUP and an explicit trigger).
//! A change is built and validated completely before it replaces the running [`Runtime`]
//! through a `watch` channel; open connections keep what they started with. A bad file
//! keeps the old runtime and is logged with the reason.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use tokio::sync::{Notify, mpsc, watch};

use super::routes::RouteTable;
use super::{GatewayError, Runtime};
use crate::config::{Config, reload_scope};
use crate::status::StatusCache;
use crate::telemetry::Metrics;
use crate::telemetry::error_chain;
use crate::tls::{build_listener_tls, load_server_key_pair};

/// Builds a complete runtime from a checked configuration and the trust anchors.
pub(crate) fn build_runtime(
    config: Config,
    anchors: &[CertificateDer<'static>],
    cache: &Arc<StatusCache>,
    metrics: &Metrics,
) -> Result<Runtime, GatewayError> {
    let mut listeners = Vec::with_capacity(config.listeners.len());
    // An expired certificate within its grace days completes the handshake to renew.
    let expiry_grace_secs = u64::from(config.renewal.grace_after_expiry_days) * 86_400;
    for l in &config.listeners {
        let keys = load_server_key_pair(&config.resolve(&l.cert), &config.resolve(&l.key))
            .map_err(|source| GatewayError::Tls {
                listener: l.addr,
                source: Box::new(source),
            })?;
        let tls = build_listener_tls(
            &keys,
            l.client_auth,
            anchors,
            Arc::clone(cache),
            expiry_grace_secs,
        )
        .map_err(|source| GatewayError::Tls {
            listener: l.addr,
            source: Box::new(source),
        })?;
        listeners.push(tls);
    }
    let routes = RouteTable::new(
        &config.routes,
        config.gateway.effective_worker_threads(),
        metrics,
        &|p| config.resolve(p),
    )
    .map_err(GatewayError::Config)?;
    Ok(Runtime {
        config: Arc::new(config),
        routes,
        listeners,
        anchors: anchors.to_vec(),
    })
}

/// Watches for changes and swaps the runtime.
pub(crate) struct Reloader {
    pub config_path: PathBuf,
    pub tx: watch::Sender<Arc<Runtime>>,
    pub cache: Arc<StatusCache>,
    pub metrics: Arc<Metrics>,
    pub trigger: Arc<Notify>,
    /// The listener addresses as configured at start; they cannot change without a restart.
    pub addrs: Vec<SocketAddr>,
    /// The watched files' fingerprint when the running configuration was built.
    pub loaded: u64,
    /// Each refused reload's reason, for the audit log (`Gateway::reload_refusals`).
    pub refused: mpsc::UnboundedSender<String>,
}

impl Reloader {
    /// Watches until `stop`. The SIGHUP handler is installed before this returns the
    /// future, so a reload asked for right after READY=1 cannot meet SIGHUP's default
    /// action (termination).
    pub(crate) fn run(
        self,
        stop: watch::Receiver<bool>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by file change only");
                None
            }
        };
        self.watch(stop, hangup)
    }

    async fn watch(
        self,
        mut stop: watch::Receiver<bool>,
        mut hangup: Option<tokio::signal::unix::Signal>,
    ) {
        let (poll, anchors_every) = {
            let rt = self.tx.borrow();
            (
                Duration::from_secs(rt.config.gateway.reload_poll_secs),
                Duration::from_secs(rt.config.gateway.anchors_refresh_secs),
            )
        };
        let mut files_tick = tokio::time::interval(poll);
        let mut anchors_tick = tokio::time::interval(anchors_every);
        anchors_tick.reset();
        let mut seen = self.loaded;
        loop {
            tokio::select! {
                _ = crate::http_common::stopped(&mut stop) => return,
                _ = async { match hangup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading");
                    // systemctl reload waits for READY=1 after RELOADING=1.
                    crate::sd_notify::reloading();
                    seen = self.fingerprint();
                    self.reload().await;
                    crate::sd_notify::ready();
                }
                _ = self.trigger.notified() => {
                    seen = self.fingerprint();
                    self.reload().await;
                }
                _ = files_tick.tick() => {
                    let now = self.fingerprint();
                    if now != seen {
                        tracing::info!("configuration or certificate files changed: reloading");
                        // Remember what was tried, so a bad file is reported once, not per tick.
                        seen = now;
                        self.reload().await;
                    }
                }
                _ = anchors_tick.tick() => self.refresh_anchors().await,
            }
        }
    }

    /// Re-reads everything and swaps the runtime when it is valid.
    async fn reload(&self) {
        let anchors = match self.cache.source().trust_anchors().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot read the CA certificates; keeping the current ones");
                self.tx.borrow().anchors.clone()
            }
        };
        match self.build(&anchors) {
            Ok(rt) => {
                let stale =
                    reload_scope::changed_needing_restart(&self.tx.borrow().config, &rt.config);
                self.tx.send_replace(Arc::new(rt));
                self.metrics.reload(true);
                tracing::info!(
                    applied = reload_scope::APPLIED_ON_RELOAD,
                    needs_restart = reload_scope::NEEDS_RESTART,
                    "reloaded configuration, certificates and trust anchors"
                );
                if !stale.is_empty() {
                    tracing::warn!(
                        changed = %stale.join(", "),
                        "changed settings that are read only at start: they take effect after a restart"
                    );
                }
            }
            Err(e) => {
                self.metrics.reload(false);
                let why = error_chain(&e).to_string();
                tracing::error!(error = %why, "reload refused; the running configuration stays");
                // Nobody listening (no audit log) is not a reason to fail the reload path.
                let _ = self.refused.send(why);
            }
        }
    }

    async fn refresh_anchors(&self) {
        let anchors = match self.cache.source().trust_anchors().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot read the CA certificates");
                return;
            }
        };
        if anchors == self.tx.borrow().anchors {
            return;
        }
        tracing::info!(count = anchors.len(), "CA certificates changed");
        let config = (*self.tx.borrow().config).clone();
        match build_runtime(config, &anchors, &self.cache, &self.metrics) {
            Ok(rt) => {
                self.tx.send_replace(Arc::new(rt));
                self.metrics.reload(true);
            }
            Err(e) => {
                self.metrics.reload(false);
                let why = format!("new CA certificates: {}", error_chain(&e));
                tracing::error!(error = %why, "new CA certificates refused; keeping the current ones");
                let _ = self.refused.send(why);
            }
        }
    }

    fn build(&self, anchors: &[CertificateDer<'static>]) -> Result<Runtime, GatewayError> {
        let config = Config::load(&self.config_path).map_err(GatewayError::Config)?;
        let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
        if addrs != self.addrs {
            return Err(GatewayError::ListenersChanged);
        }
        build_runtime(config, anchors, &self.cache, &self.metrics)
    }

    /// A digest of the watched files' contents (a missing file counts as a state too).
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut files = vec![self.config_path.clone()];
        files.extend(
            reload_scope::watched_files(&self.tx.borrow().config)
                .into_iter()
                .map(|f| f.path),
        );
        let mut h = DefaultHasher::new();
        for f in files {
            f.hash(&mut h);
            std::fs::read(&f).ok().hash(&mut h);
        }
        h.finish()
    }
}
