//! The gateway: TLS listeners in front of the banking apps and certgate's own pages.
//!
//! ```text
//! accept (server) ─▶ TLS handshake (tls) ─▶ chain judged once per connection
//!   each request (handler): SNI = Host? ─▶ route (local paths first, then [[route]])
//!     ─▶ live status check (status cache) ─▶ strip spoofable headers (crate::identity)
//!     ─▶ login binding ─▶ the route's identity formats ─▶ upstream (forward) or LocalService
//!   refusals → one place (refusal): HTML for browsers, JSON otherwise
//! reload: config / cert / key files, SIGHUP, CA records → validated Runtime → watch channel
//! ```
//!
//! Entry points: [`run`] (what `certgate serve` calls), or [`Gateway::bind`] then
//! [`Gateway::serve`] to learn the bound addresses first (tests, port 0). This module owns
//! listening, routing and forwarding; it must not decide lifecycle rules nor write identity
//! headers itself (that is `crate::identity`).

pub mod body;
mod forward;
mod handler;
mod http1_idle;
mod interstitial;
mod local;
mod login_binding;
mod refusal;
mod reload;
mod routes;
mod server;
mod workers;

pub use local::{LocalContext, LocalService, NoLocalService};
pub use refusal::Problem;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::admin::{self, Metrics, Readiness};
use crate::clock::{Clock, DAY};
use crate::config::{Config, ConfigError, IdentityFormatName};
use crate::identity::{AssertionError, AssertionSigner, IdentityFormats};
use crate::status::{StatusCache, StatusCacheSettings, StatusSource};
use crate::store::{Store, StoreError};
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
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("cannot read the CA certificates from the store")]
    Store(#[source] StoreError),
    #[error("the assertion signer cannot be set up")]
    Assertion(#[source] AssertionError),
    #[error("the configuration has no [[listener]]")]
    NoListener,
    #[error("cannot start the gateway's worker threads")]
    Worker(#[source] Box<std::io::Error>),
    #[error("listener addresses changed; that needs a restart")]
    ListenersChanged,
}

/// What `certgate serve` hands the gateway.
pub struct GatewayDeps {
    pub config_path: PathBuf,
    /// The store, seen through the gateway's narrow view.
    pub source: Arc<dyn StatusSource>,
    /// certgate's own paths.
    pub local: Arc<dyn LocalService>,
    pub clock: Arc<dyn Clock>,
    /// Extra checks for `/readyz` (e.g. the HSM); the store is always checked.
    pub readiness: Vec<Arc<dyn Readiness>>,
    /// More metrics for `/metrics`, read at each scrape (e.g. the notice counters).
    pub collectors: Vec<Box<dyn prometheus_client::collector::Collector>>,
}

impl GatewayDeps {
    /// Dependencies over the real store.
    pub fn new(
        config_path: PathBuf,
        store: Store,
        local: Arc<dyn LocalService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config_path,
            source: Arc::new(store),
            local,
            clock,
            readiness: Vec::new(),
            collectors: Vec::new(),
        }
    }
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
}

/// A gateway whose sockets are bound, ready to serve.
pub struct Gateway {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    admin: Option<TcpListener>,
    reloader: reload::Reloader,
    readiness: Vec<Arc<dyn Readiness>>,
    trigger: Arc<Notify>,
}

impl Gateway {
    /// Loads the configuration, reads the trust anchors, builds TLS and binds every socket.
    pub async fn bind(deps: GatewayDeps) -> Result<Self, GatewayError> {
        crate::tls::install_default_provider();
        let config = Config::load(&deps.config_path).map_err(GatewayError::Config)?;
        if config.listeners.is_empty() {
            return Err(GatewayError::NoListener);
        }
        let g = &config.gateway;
        let cache = StatusCache::new(
            Arc::clone(&deps.source),
            Arc::clone(&deps.clock),
            StatusCacheSettings {
                max_age: Duration::from_secs(g.status_max_age_secs),
                fail_closed_after: Duration::from_secs(g.status_fail_closed_secs),
                overlap_secs: i64::from(config.renewal.overlap_days) * DAY,
            },
        );
        let key_path = g.assertion_key.as_ref().map(|p| config.resolve(p));
        let signer = Arc::new(
            AssertionSigner::from_config(g, key_path.as_deref())
                .map_err(GatewayError::Assertion)?,
        );
        if key_path.is_none()
            && config
                .routes
                .iter()
                .any(|r| r.sends(IdentityFormatName::Jwt))
        {
            tracing::warn!(
                "[gateway] assertion_key is not set: assertions are signed by a key made at \
                 start; several instances need a shared key"
            );
        }
        let anchors = deps
            .source
            .trust_anchors()
            .await
            .map_err(GatewayError::Store)?;
        let addrs: Vec<SocketAddr> = config.listeners.iter().map(|l| l.addr).collect();
        let admin_addr = config.admin.as_ref().map(|a| a.addr);
        let mut metrics = Metrics::new();
        for collector in deps.collectors {
            metrics.register_collector(collector);
        }
        let metrics = Arc::new(metrics);
        let runtime = reload::build_runtime(config, &anchors, &cache, &metrics)?;
        let mut listeners = Vec::with_capacity(addrs.len());
        for a in &addrs {
            listeners.push(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| GatewayError::Bind(*a, e))?,
            );
        }
        let admin = match admin_addr {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| GatewayError::Bind(a, e))?,
            ),
            None => None,
        };
        let (tx, rx) = watch::channel(Arc::new(runtime));
        let trigger = Arc::new(Notify::new());
        let reloader = reload::Reloader {
            config_path: deps.config_path,
            tx,
            cache: Arc::clone(&cache),
            metrics: Arc::clone(&metrics),
            trigger: Arc::clone(&trigger),
            addrs,
        };
        Ok(Self {
            shared: Arc::new(Shared {
                runtime: rx,
                cache,
                metrics,
                local: deps.local,
                clock: deps.clock,
                identity: IdentityFormats::new(Arc::clone(&signer)),
                signer,
            }),
            listeners,
            admin,
            reloader,
            readiness: deps.readiness,
            trigger,
        })
    }

    /// The bound address of each listener, in configuration order.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The bound admin address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// A handle that reloads like SIGHUP when notified.
    pub fn reload_trigger(&self) -> Arc<Notify> {
        Arc::clone(&self.trigger)
    }

    /// Serves until `shutdown` completes, then stops accepting, lets open connections finish
    /// for up to `[gateway] drain_secs`, and returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let (drain, worker_count) = {
            let runtime = self.shared.runtime.borrow();
            let g = &runtime.config.gateway;
            (
                Duration::from_secs(g.drain_secs),
                g.effective_worker_threads(),
            )
        };
        let invalidator = self.shared.cache.spawn_invalidator();
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
            .map(|l| server::ListenerSlots::new(l.max_connections))
            .collect();
        let mut workers = workers::Workers::start(
            worker_count,
            workers::WorkerSetup {
                shared: Arc::clone(&self.shared),
                listeners,
                slots,
                stop: stop_rx.clone(),
                graceful: Arc::clone(&graceful),
            },
        )
        .map_err(|e| GatewayError::Worker(Box::new(e)))?;
        let mut tasks = Vec::new();
        if let Some(l) = self.admin {
            let state = admin::AdminState {
                metrics: Arc::clone(&self.shared.metrics),
                source: Arc::clone(self.shared.cache.source()),
                readiness: self.readiness,
                signer: Arc::clone(&self.shared.signer),
            };
            tasks.push(tokio::spawn(admin::serve(l, state, stop_rx.clone())));
        }
        tasks.push(tokio::spawn(self.reloader.run(stop_rx.clone())));

        shutdown.await;
        tracing::info!("shutting down: no new connections, draining open ones");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        workers.stopped_accepting().await;
        invalidator.abort();
        match Arc::try_unwrap(graceful) {
            Ok(g) => {
                if tokio::time::timeout(drain, g.shutdown()).await.is_err() {
                    tracing::warn!("drain time over; closing the remaining connections");
                }
            }
            Err(_) => tracing::warn!("connections still being accepted; not draining"),
        }
        workers.finish().await;
        Ok(())
    }
}

/// Runs the gateway until `shutdown` completes (see [`Gateway::serve`]).
pub async fn run(deps: GatewayDeps, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    Gateway::bind(deps).await?.serve(shutdown).await?;
    Ok(())
}

/// An error with its sources, for one log field.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Completes when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
