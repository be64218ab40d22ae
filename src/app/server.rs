//! The serving side of the process, assembled in one place: the status cache over the
//! store's view, the metrics registry, the assertion signer, a bound socket for every
//! `[[listener]]` and for `[admin]`; then the gateway and the admin listener run side by
//! side until shutdown, on one stop signal.
//!
//! Tests build a [`Server`] directly (port 0, then [`Server::listener_addrs`]); `serve` does
//! it through [`super::serve`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::admin::{self, AdminState, Readiness};
use crate::clock::{Clock, DAY};
use crate::config::{ClientAuth, Config, ConfigError, IdentityFormatName};
use crate::identity::{AssertionError, AssertionSigner};
use crate::proxy::status_http::StatusListener;
use crate::proxy::{Gateway, GatewayError, GatewayParts, LocalService};
use crate::staff::{Door, StaffListener, StaffService};
use crate::status::{StatusCache, StatusCacheSettings, StatusSource};
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::tls::{ListenerTls, build_listener_tls, load_server_key_pair};

/// Why the servers cannot start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(ConfigError),
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("the assertion signer cannot be set up")]
    Assertion(#[source] AssertionError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// What the servers are built from.
pub struct ServerDeps {
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
    /// Called with the new configuration after each accepted reload (SIGHUP, file change).
    pub on_reload: Vec<ReloadHook>,
    /// Called with the reason of each refused reload (the running configuration stays).
    pub on_reload_refused: Vec<RefusedReloadHook>,
    /// The staff console, served on `[staff] addr` when that is set.
    pub staff: Option<StaffDeps>,
    /// Where the gateway audits refused uses of certgate's certificates.
    pub audit: Option<crate::audit::Audit>,
}

/// What the staff listener serves and where it looks staff members up.
pub struct StaffDeps {
    pub service: Arc<dyn StaffService>,
    pub store: Store,
}

/// Puts a reloaded configuration in force in a part built outside the gateway.
pub type ReloadHook = Box<dyn Fn(&Config) + Send + Sync>;

/// Hears why a reload was refused.
pub type RefusedReloadHook = Box<dyn Fn(&str) + Send + Sync>;

impl ServerDeps {
    /// Dependencies over the real store.
    pub fn new(
        config_path: PathBuf,
        store: Store,
        local: Arc<dyn LocalService>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config_path,
            audit: Some(crate::audit::Audit::new(store.clone())),
            source: Arc::new(store),
            local,
            clock,
            readiness: Vec::new(),
            collectors: Vec::new(),
            on_reload: Vec::new(),
            on_reload_refused: Vec::new(),
            staff: None,
        }
    }
}

/// The gateway and the admin listener over bound sockets, ready to serve.
pub struct Server {
    gateway: Gateway,
    admin: Option<(TcpListener, AdminState)>,
    staff: Vec<StaffListener>,
    /// Where each staff listener's TLS side comes from, to follow reloads.
    staff_tls: Vec<StaffTls>,
    /// `[revocation] http_addr`: OCSP and CRLs over plain HTTP.
    status_http: Option<StatusListener>,
    cache: Arc<StatusCache>,
    on_reload: Vec<ReloadHook>,
    on_reload_refused: Vec<RefusedReloadHook>,
}

/// A staff listener's TLS side and what it is rebuilt from at a reload.
struct StaffTls {
    client_auth: ClientAuth,
    tx: watch::Sender<ListenerTls>,
}

impl Server {
    /// Loads the configuration, builds the shared parts and binds every socket.
    pub async fn bind(deps: ServerDeps) -> Result<Self, ServerError> {
        crate::tls::install_default_provider();
        let config = Config::load(&deps.config_path).map_err(ServerError::Config)?;
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
        let signer = Arc::new(assertion_signer(&config)?);
        let mut metrics = Metrics::new();
        for collector in deps.collectors {
            metrics.register_collector(collector);
        }
        let metrics = Arc::new(metrics);
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for l in &config.listeners {
            listeners.push(bind(l.addr).await?);
        }
        let (staff, staff_tls) = match (config.staff.addr, deps.staff) {
            (Some(addr), Some(staff)) => {
                staff_listeners(
                    &config,
                    addr,
                    staff,
                    &cache,
                    &deps.source,
                    &deps.clock,
                    &metrics,
                )
                .await?
            }
            _ => (Vec::new(), Vec::new()),
        };
        let admin = match config.admin.as_ref().map(|a| a.addr) {
            Some(addr) => Some((
                bind(addr).await?,
                AdminState {
                    metrics: Arc::clone(&metrics),
                    source: deps.source,
                    readiness: deps.readiness,
                    signer: Arc::clone(&signer),
                },
            )),
            None => None,
        };
        let on_reload = deps.on_reload;
        let on_reload_refused = deps.on_reload_refused;
        let status_http = match config.revocation.http_addr {
            Some(addr) => Some(StatusListener {
                tcp: bind(addr).await?,
                local: Arc::clone(&deps.local),
            }),
            None => None,
        };
        let gateway = Gateway::new(GatewayParts {
            config_path: deps.config_path,
            config,
            listeners,
            cache: Arc::clone(&cache),
            metrics,
            local: deps.local,
            clock: deps.clock,
            signer,
            audit: deps.audit,
        })
        .await?;
        Ok(Self {
            gateway,
            admin,
            staff,
            staff_tls,
            status_http,
            cache,
            on_reload,
            on_reload_refused,
        })
    }

    /// The bound address of the plain-HTTP OCSP and CRL listener, when configured.
    pub fn status_http_addr(&self) -> Option<SocketAddr> {
        self.status_http
            .as_ref()
            .and_then(|s| s.tcp.local_addr().ok())
    }

    /// The bound address of each listener, in configuration order.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        self.gateway.listener_addrs()
    }

    /// The bound admin address, when `[admin]` is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The bound staff console address, when `[staff] addr` is configured.
    pub fn staff_addr(&self) -> Option<SocketAddr> {
        self.staff
            .iter()
            .find(|s| s.door == Door::Console)
            .and_then(|s| s.tcp.local_addr().ok())
    }

    /// A handle that reloads like SIGHUP when notified.
    pub fn reload_trigger(&self) -> Arc<Notify> {
        self.gateway.reload_trigger()
    }

    /// Serves until `shutdown` completes, then stops accepting, drains open connections for
    /// up to `[gateway] drain_secs`, and returns.
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        // Read once here, not on the first 401 a customer waits for.
        crate::http_common::header_case::prepare();
        let (stop_tx, stop_rx) = watch::channel(false);
        let invalidator = self.cache.spawn_invalidator();
        let watchdog = crate::sd_notify::watchdog_interval().map(|every| {
            // Pinged from the main runtime: a stuck runtime misses the pings and systemd
            // restarts the process.
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    crate::sd_notify::watchdog();
                }
            })
        });
        let mut updates = self.gateway.config_updates();
        let hooks = self.on_reload;
        let refused_hooks = self.on_reload_refused;
        let mut refusals = self.gateway.reload_refusals();
        let follower = tokio::spawn(async move {
            loop {
                tokio::select! {
                    update = updates.next() => match update {
                        Some(config) => hooks.iter().for_each(|hook| hook(&config)),
                        None => return,
                    },
                    Some(why) = async {
                        match refusals.as_mut() {
                            Some(r) => r.recv().await,
                            None => std::future::pending().await,
                        }
                    } => refused_hooks.iter().for_each(|hook| hook(&why)),
                }
            }
        });
        let staff_follower = (!self.staff_tls.is_empty()).then(|| {
            tokio::spawn(follow_staff_tls(
                self.gateway.config_updates(),
                self.staff_tls,
                Arc::clone(&self.cache),
            ))
        });
        let admin = self
            .admin
            .map(|(l, state)| tokio::spawn(admin::serve(l, state, stop_rx.clone())));
        let staff: Vec<_> = self
            .staff
            .into_iter()
            .map(|l| tokio::spawn(crate::staff::serve(l, stop_rx.clone())))
            .collect();
        let status_http = self
            .status_http
            .map(|l| tokio::spawn(crate::proxy::status_http::serve(l, stop_rx.clone())));
        let serving = self.gateway.serve(stop_rx);
        tokio::pin!(serving);
        let result = tokio::select! {
            // The gateway ends by itself only when it cannot start its workers.
            r = &mut serving => r,
            () = shutdown => {
                let _ = stop_tx.send(true);
                serving.await
            }
        };
        let _ = stop_tx.send(true);
        if let Some(a) = admin {
            let _ = a.await;
        }
        for s in staff {
            let _ = s.await;
        }
        if let Some(s) = status_http {
            let _ = s.await;
        }
        invalidator.abort();
        if let Some(w) = watchdog {
            w.abort();
        }
        follower.abort();
        if let Some(f) = staff_follower {
            f.abort();
        }
        Ok(result?)
    }
}

/// The staff console's listener: its socket, and TLS that requires a client certificate of
/// one of certgate's CAs at the handshake (the staff check follows on every request); and
/// with `[staff] obtain_addr`, the obtain page's, with no client certificate.
async fn staff_listeners(
    config: &Config,
    addr: SocketAddr,
    deps: StaffDeps,
    cache: &Arc<StatusCache>,
    source: &Arc<dyn StatusSource>,
    clock: &Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
) -> Result<(Vec<StaffListener>, Vec<StaffTls>), ServerError> {
    let anchors = source.trust_anchors().await.map_err(|e| {
        ServerError::Config(ConfigError::Invalid(format!(
            "the staff console cannot read the CA certificates: {e}"
        )))
    })?;
    let mut doors = vec![(Door::Console, addr, ClientAuth::Required)];
    if let Some(obtain) = config.staff.obtain_addr {
        doors.push((Door::Obtain, obtain, ClientAuth::None));
    }
    let mut listeners = Vec::with_capacity(doors.len());
    let mut sources = Vec::with_capacity(doors.len());
    for (door, addr, client_auth) in doors {
        let tls = staff_tls(config, client_auth, &anchors, cache)
            .map_err(|e| ServerError::Config(ConfigError::Invalid(e)))?;
        let (tx, rx) = watch::channel(tls);
        listeners.push(StaffListener {
            door,
            tcp: bind(addr).await?,
            tls: rx,
            cache: Arc::clone(cache),
            store: deps.store.clone(),
            clock: Arc::clone(clock),
            service: Arc::clone(&deps.service),
            metrics: Arc::clone(metrics),
            max_per_address: config.staff.max_connections_per_address,
        });
        sources.push(StaffTls { client_auth, tx });
    }
    Ok((listeners, sources))
}

/// The TLS side of a staff listener: `[staff] cert` and `key`, and for the console a client
/// certificate of one of `anchors` at the handshake.
fn staff_tls(
    config: &Config,
    client_auth: ClientAuth,
    anchors: &[rustls_pki_types::CertificateDer<'static>],
    cache: &Arc<StatusCache>,
) -> Result<ListenerTls, String> {
    let (Some(cert), Some(key)) = (&config.staff.cert, &config.staff.key) else {
        return Err("[staff] addr needs cert and key".into());
    };
    let unusable = |e: crate::tls::TlsError| {
        format!(
            "[staff] cert/key cannot be used: {}",
            crate::telemetry::error_chain(&e)
        )
    };
    let keys =
        load_server_key_pair(&config.resolve(cert), &config.resolve(key)).map_err(unusable)?;
    build_listener_tls(&keys, client_auth, anchors, Arc::clone(cache), 0).map_err(unusable)
}

/// Rebuilds the staff listeners' TLS at every reload the gateway puts in force (the
/// configuration file, SIGHUP, a change of the CAs in the store), so that a renewed console
/// certificate or a CA rollover needs no restart. A side that cannot be built keeps the one
/// in force, with an error in the log.
async fn follow_staff_tls(
    mut updates: crate::proxy::ConfigUpdates,
    staff: Vec<StaffTls>,
    cache: Arc<StatusCache>,
) {
    while let Some((config, anchors)) = updates.next_with_anchors().await {
        for s in &staff {
            match staff_tls(&config, s.client_auth, &anchors, &cache) {
                Ok(tls) => {
                    s.tx.send_replace(tls);
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "the staff console keeps its TLS certificate, key and trust anchors in force"
                ),
            }
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Bind(addr, e))
}

/// The signer `[gateway]` describes, with a warning when several instances could not share
/// its key.
fn assertion_signer(config: &Config) -> Result<AssertionSigner, ServerError> {
    let g = &config.gateway;
    let key_path = g.assertion_key.as_ref().map(|p| config.resolve(p));
    let signer =
        AssertionSigner::from_config(g, key_path.as_deref()).map_err(ServerError::Assertion)?;
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
    Ok(signer)
}
