//! The gateway: TLS listeners in front of the banking apps and certgate's own pages.
//!
//! ```text
//! accept (server) ─▶ TLS handshake (tls) ─▶ chain judged once per connection
//!   each request (handler): method and one Host (http_common::request_head) ─▶ SNI = Host?
//!     ─▶ canonical path (canonical) ─▶ route (local paths first, then [[route]], prefixes
//!     and hosts ignoring case)
//!     ─▶ live status check (status cache) ─▶ strip spoofable headers (crate::identity)
//!     ─▶ login binding ─▶ the route's identity formats ─▶ upstream (forward) or LocalService
//!   an upstream's 101 → a tunnel (tunnel): permit, timeouts, drain, the certificate
//!     re-judged on the status change feed
//!   refusals → one place (refusal): HTML for browsers, JSON otherwise
//! reload: config / cert / key files, SIGHUP, CA records → validated Runtime → watch channel
//! ```
//!
//! The composition root (`crate::app`) builds the parts ([`GatewayParts`]: bound sockets,
//! status cache, metrics, own paths, assertion signer) and calls [`Gateway::new`] then
//! [`Gateway::serve`]. This module owns serving, routing and forwarding; it builds none of
//! its parts, must not decide lifecycle rules, and writes no identity header itself (that is
//! `crate::identity`).

/// Kept here too: tests and the fuzz targets name it by this path.
pub use crate::http_common::canonical;
mod endpoints;
mod forward;
mod h2_idle;
mod handler;
mod http1_idle;
mod interstitial;
mod local;
mod login_binding;
mod proxy_protocol;
mod refusal;
mod refused_certificates;
mod reload;
mod request_id;
mod routes;
mod server;
pub mod status_http;
mod tunnel;
mod upstream_h2;
mod upstream_pool;
mod workers;

pub use local::{LocalContext, LocalService, NoLocalService};
pub use refusal::Problem;
pub use routes::prefix_matches;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::clock::Clock;
use crate::config::{Config, ConfigError};
use crate::http_common::stopped;
use crate::identity::{AssertionSigner, IdentityFormats};
use crate::status::StatusCache;
use crate::store::StoreError;
use crate::telemetry::Metrics;
use crate::tls::{ListenerTls, TlsError};

/// Why the gateway cannot start or a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(ConfigError),
    #[error("listener {listener}: TLS setup failed")]
    Tls {
        listener: SocketAddr,
        #[source]
        source: Box<TlsError>,
    },
    #[error("cannot read the CA certificates from the store")]
    Store(#[source] StoreError),
    #[error("the configuration has no [[listener]]")]
    NoListener,
    #[error("{configured} [[listener]] sections but {bound} bound sockets")]
    ListenerCount { configured: usize, bound: usize },
    #[error("cannot start the gateway's worker threads")]
    Worker(#[source] Box<std::io::Error>),
    #[error("listener addresses changed; that needs a restart")]
    ListenersChanged,
}

/// What the composition root hands the gateway: everything is built elsewhere; the gateway
/// only serves with it.
pub struct GatewayParts {
    /// The configuration file, watched for reloads.
    pub config_path: PathBuf,
    /// The checked configuration loaded from it.
    pub config: Config,
    /// One bound socket per `[[listener]]`, in configuration order.
    pub listeners: Vec<TcpListener>,
    /// The live status of certificates (its store view answers the trust anchors too).
    pub cache: Arc<StatusCache>,
    pub metrics: Arc<Metrics>,
    /// certgate's own paths.
    pub local: Arc<dyn LocalService>,
    pub clock: Arc<dyn Clock>,
    /// Signs the identity assertion of routes that send one.
    pub signer: Arc<AssertionSigner>,
    /// Where refused uses of certgate's certificates are audited; `None`: the security
    /// log only.
    pub audit: Option<crate::audit::Audit>,
}

/// Everything a request needs that a reload may replace.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub config: Arc<Config>,
    pub routes: routes::RouteTable,
    /// One per configured listener, same order.
    pub listeners: Vec<ListenerTls>,
    pub anchors: Vec<CertificateDer<'static>>,
}

/// Follows the gateway's reloads; see [`Gateway::config_updates`].
pub struct ConfigUpdates(watch::Receiver<Arc<Runtime>>);

impl ConfigUpdates {
    /// The next configuration put in force; None once the gateway is gone.
    pub async fn next(&mut self) -> Option<Arc<Config>> {
        self.0.changed().await.ok()?;
        Some(Arc::clone(&self.0.borrow_and_update().config))
    }

    /// As [`Self::next`], with the trust anchors (the CAs' certificates) put in force with
    /// it: a reload or a change of the CAs in the store.
    pub async fn next_with_anchors(
        &mut self,
    ) -> Option<(Arc<Config>, Vec<rustls_pki_types::CertificateDer<'static>>)> {
        self.0.changed().await.ok()?;
        let rt = self.0.borrow_and_update();
        Some((Arc::clone(&rt.config), rt.anchors.clone()))
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub runtime: watch::Receiver<Arc<Runtime>>,
    pub cache: Arc<StatusCache>,
    pub metrics: Arc<Metrics>,
    pub local: Arc<dyn LocalService>,
    pub clock: Arc<dyn Clock>,
    pub signer: Arc<AssertionSigner>,
    /// The identity formats and the header names stripped from every request.
    pub identity: IdentityFormats,
    /// Open tunnels, closed and waited for at shutdown.
    pub tunnels: tunnel::Tunnels,
    pub refused: Option<Arc<refused_certificates::RefusedCertificates>>,
}

/// A gateway over bound sockets, ready to serve.
pub struct Gateway {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    reloader: reload::Reloader,
    trigger: Arc<Notify>,
    refusals: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
}

impl Gateway {
    /// Reads the trust anchors and builds TLS and routes for the bound sockets.
    pub async fn new(parts: GatewayParts) -> Result<Self, GatewayError> {
        crate::tls::install_default_provider();
        let config = parts.config;
        if config.listeners.is_empty() {
            return Err(GatewayError::NoListener);
        }
        if config.listeners.len() != parts.listeners.len() {
            return Err(GatewayError::ListenerCount {
                configured: config.listeners.len(),
                bound: parts.listeners.len(),
            });
        }
        let anchors = parts
            .cache
            .source()
            .trust_anchors()
            .await
            .map_err(GatewayError::Store)?;
        let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
        let runtime = reload::build_runtime(config, &anchors, &parts.cache, &parts.metrics)?;
        let (tx, rx) = watch::channel(Arc::new(runtime));
        let trigger = Arc::new(Notify::new());
        let (refused, refusals) = tokio::sync::mpsc::unbounded_channel();
        let mut reloader = reload::Reloader {
            config_path: parts.config_path,
            tx,
            cache: Arc::clone(&parts.cache),
            metrics: Arc::clone(&parts.metrics),
            trigger: Arc::clone(&trigger),
            addrs,
            loaded: 0,
            refused,
        };
        // Taken now, not when the reloader's task first runs: a change made in between
        // would otherwise count as already seen and never be loaded.
        reloader.loaded = reloader.fingerprint();
        Ok(Self {
            shared: Arc::new(Shared {
                runtime: rx,
                cache: parts.cache,
                metrics: parts.metrics,
                local: parts.local,
                clock: parts.clock,
                identity: IdentityFormats::new(Arc::clone(&parts.signer)),
                signer: parts.signer,
                tunnels: tunnel::Tunnels::new(),
                refused: parts
                    .audit
                    .map(refused_certificates::RefusedCertificates::new),
            }),
            listeners: parts.listeners,
            reloader,
            trigger,
            refusals: Some(refusals),
        })
    }

    /// The bound address of each listener, in configuration order.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// A handle that reloads like SIGHUP when notified.
    pub fn reload_trigger(&self) -> Arc<Notify> {
        Arc::clone(&self.trigger)
    }

    /// Each refused reload's reason (the file or a certificate did not load; the running
    /// configuration stays), for the audit log. `None` after the first call.
    pub fn reload_refusals(&mut self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.refusals.take()
    }

    /// The configuration each accepted reload puts in force, for the parts built outside
    /// the gateway that follow reloads (the lifecycle's renewal and issuance rules).
    pub fn config_updates(&self) -> ConfigUpdates {
        let mut rx = self.shared.runtime.clone();
        rx.mark_unchanged();
        ConfigUpdates(rx)
    }

    /// Serves until `stop` turns true, then stops accepting, lets open connections finish
    /// for up to `[gateway] drain_secs`, and returns.
    pub async fn serve(self, mut stop: watch::Receiver<bool>) -> Result<(), GatewayError> {
        let graceful = Arc::new(GracefulShutdown::new());
        let (drain, worker_count) = {
            let runtime = self.shared.runtime.borrow();
            let g = &runtime.config.gateway;
            (
                Duration::from_secs(g.drain_secs),
                g.effective_worker_threads(),
            )
        };
        let mut listeners = Vec::with_capacity(self.listeners.len());
        for l in self.listeners {
            if let Ok(addr) = l.local_addr() {
                tracing::info!(%addr, "gateway listening");
            }
            // Each worker registers its own copy of the socket with its event loop.
            listeners.push(
                l.into_std()
                    .map_err(|e| GatewayError::Worker(Box::new(e)))?,
            );
        }
        let slots = self
            .shared
            .runtime
            .borrow()
            .config
            .listeners
            .iter()
            .map(|l| server::ListenerSlots::new(l.max_connections, l.max_connections_per_address))
            .collect();
        let mut workers = workers::Workers::start(
            worker_count,
            workers::WorkerSetup {
                shared: Arc::clone(&self.shared),
                listeners,
                slots,
                stop: stop.clone(),
                graceful: Arc::clone(&graceful),
            },
        )
        .map_err(|e| GatewayError::Worker(Box::new(e)))?;
        let reloader = tokio::spawn(self.reloader.run(stop.clone()));
        // The sockets listen and every worker accepts: a Type=notify unit is now started.
        crate::sd_notify::ready();

        stopped(&mut stop).await;
        crate::sd_notify::stopping();
        tracing::info!("shutting down: no new connections, draining open ones");
        let _ = reloader.await;
        workers.stopped_accepting().await;
        // Tunnels are closed at once (a tunnel has no request to finish) and waited for
        // alongside the connections.
        let tunnels = self.shared.tunnels.shutdown();
        match Arc::try_unwrap(graceful) {
            Ok(g) => {
                let both = async { tokio::join!(g.shutdown(), tunnels) };
                if tokio::time::timeout(drain, both).await.is_err() {
                    tracing::warn!("drain time over; closing the remaining connections");
                }
            }
            Err(_) => tracing::warn!("connections still being accepted; not draining"),
        }
        workers.finish().await;
        Ok(())
    }
}
