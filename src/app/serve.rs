//! What `certgate serve` runs: opens the store, the HSM and every CA, builds the lifecycle,
//! the CRL/OCSP responder, certgate's own web surface, the expiry-notice scheduler and the
//! retirement of superseded certificates, and hands them to the [`Server`] until
//! `shutdown` completes (then drains connections).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use rustls_pki_types::pem::PemObject;

use crate::ca::{KeyBackend, ocsp::OcspIssuer};
use crate::clock::{Clock, DAY, SystemClock};
use crate::config::Config;
use crate::keys::SignObserver;
use crate::lifecycle::{Lifecycle, LifecycleSettings};
use crate::notify::{NotifyCollector, NotifyContext};
use crate::store::Store;
use crate::telemetry::{SigningCollector, SigningMetrics, SnapshotFamily, SnapshotKind};
use crate::web::{CaSigner, Limits, Revocation, RevocationSettings, Web};

use super::expiry_watch::ExpiryCounts;
use super::open as context;
use super::server::{Server, ServerDeps, StaffDeps};
use super::staff_service::ConsoleService;
use super::web_service::WebService;
use crate::lifecycle::ApprovalPolicy;
use crate::web::staff::Console;

/// How often superseded certificates past their overlap are revoked.
const RETIRE_EVERY: Duration = Duration::from_secs(600);

/// `/readyz` reports whether the CA key can sign.
struct HsmReady(Arc<dyn KeyBackend>);

impl crate::admin::Readiness for HsmReady {
    fn name(&self) -> &str {
        "hsm"
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        let key = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || key.health())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        })
    }
}

/// Runs everything `certgate serve` runs until `shutdown` completes.
pub async fn run(
    config_path: &Path,
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    // [branding] first: every page, refusal and API message from now on speaks in its names.
    crate::locale::install(
        crate::locale::Locale::from_config(&cfg)
            .context("the [branding] section cannot be used")?,
    );
    let store = context::open_store(&cfg).await?;
    let keys = context::open_key_store(&cfg).await?;
    // Every signature of every CA key is timed for `/metrics`.
    let signing = SigningMetrics::default();
    let observer: Arc<dyn SignObserver> = Arc::new(SigningObserver(signing.clone()));
    let cas = context::open_cas(&cfg, &store, &keys, Some(observer)).await?;
    let active = cas[0].clone();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let settings = LifecycleSettings::from_config(&cfg);
    let lifecycle = Lifecycle::new(store.clone(), active.clone(), clock.clone(), settings);
    let (reloaded, retiring) = (lifecycle.clone(), lifecycle.clone());
    let outcomes = lifecycle.outcomes().clone();
    let flush_store = store.clone();

    let mut signers = Vec::with_capacity(cas.len());
    for authority in &cas {
        let ocsp = OcspIssuer::new(
            authority.ca_id(),
            authority.ca_der(),
            authority.key().clone(),
        )
        .context("cannot prepare the OCSP responder")?
        .with_tally(authority.tally().clone());
        signers.push(CaSigner {
            authority: authority.clone(),
            ocsp: std::sync::Arc::new(ocsp),
        });
    }
    let revocation = Revocation::new(
        store.clone(),
        clock.clone(),
        signers,
        RevocationSettings::from_config(&cfg),
    );
    let _follow = revocation.follow_changes();

    let active_record = store
        .active_ca()
        .await?
        .context("no active CA: run `certgate init` first")?;
    let mut ca_chain = vec![active.ca_der().to_vec()];
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(active_record.chain_pem.as_bytes())
    {
        ca_chain.push(
            cert.context("the stored CA chain is not valid PEM")?
                .to_vec(),
        );
    }
    let limits = Arc::new(
        Limits::new(cfg.limits.clone())
            .with_audit(crate::audit::Audit::new(store.clone()), clock.clone()),
    );
    let summaries = tokio::spawn(Arc::clone(&limits).summarise_forever());
    let console = Arc::new(
        Console::new(lifecycle.clone(), approval_policy(&cfg))
            .with_ca_chain(ca_chain.clone())
            .with_host(cfg.staff.host.clone())
            .with_limits(Arc::clone(&limits)),
    );
    let web = Arc::new(Web::new(lifecycle, revocation, ca_chain).with_limits(Arc::clone(&limits)));

    let _retire = tokio::spawn(retire_superseded(store.clone(), clock.clone(), retiring));

    let web_refusals = web.refusals().samples();
    let mut deps = ServerDeps::new(
        config_path.to_path_buf(),
        store.clone(),
        Arc::new(WebService(web)),
        clock.clone(),
    );
    deps.staff = Some(StaffDeps {
        service: Arc::new(ConsoleService(Arc::clone(&console))),
        store: store.clone(),
    });
    let _requests = tokio::spawn(expire_requests_forever(console.clone()));
    deps.readiness
        .push(Arc::new(HsmReady(active.key().clone())));
    deps.collectors.push(limits.collector());
    deps.collectors.push(Box::new(SnapshotFamily {
        name: "web_refusals",
        help: "What certgate's own paths refused, by surface (api, est, ocsp, crl, pages) and \
               refusal code (the API's error code, the OCSP error status, or the HTTP status)",
        kind: SnapshotKind::Counter,
        read: web_refusals,
    }));
    deps.collectors.push(Box::new(SnapshotFamily {
        name: "issuance_requests",
        help: "Issuance requests (web, EST) by kind (obtain with a code, renew with the current \
               certificate) and outcome (issued, or the refusal code the API answers)",
        kind: SnapshotKind::Counter,
        read: Arc::new(move || {
            outcomes
                .snapshot()
                .into_iter()
                .map(|(kind, outcome, n)| {
                    let n = i64::try_from(n).unwrap_or(i64::MAX);
                    (vec![("kind", kind), ("outcome", outcome)], n)
                })
                .collect()
        }),
    }));
    let expiring = Arc::new(ExpiryCounts::default());
    deps.collectors.push(Box::new(SnapshotFamily {
        name: "certificates_expiring",
        help: "Current certificates expiring within 10 or 30 days, client and server \
               (counted every minute)",
        kind: SnapshotKind::Gauge,
        read: expiring.samples(),
    }));
    deps.collectors.push(Box::new(SnapshotFamily {
        name: "certificates",
        help: "Customer certificates by status: current, expired (not renewed), superseded, \
               revoked (counted every minute)",
        kind: SnapshotKind::Gauge,
        read: expiring.status_samples(),
    }));
    let hsm_key = active.key().clone();
    let sessions = move || hsm_key.sessions();
    let in_use = sessions.clone();
    deps.collectors.push(Box::new(SnapshotFamily {
        name: "hsm_sessions",
        help: "The key store's sessions: in use, idle, and the configured size",
        kind: SnapshotKind::Gauge,
        read: Arc::new(move || {
            in_use()
                .map(|u| {
                    let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
                    vec![
                        (vec![("state", "in_use")], n(u.open.saturating_sub(u.idle))),
                        (vec![("state", "idle")], n(u.idle)),
                        (vec![("state", "size")], n(u.size)),
                    ]
                })
                .unwrap_or_default()
        }),
    }));
    deps.collectors.push(Box::new(SnapshotFamily {
        name: "hsm_session_recoveries",
        help: "Key store operations retried after a lost session or login, and library \
               re-initialisations, since start",
        kind: SnapshotKind::Counter,
        read: Arc::new(move || {
            sessions()
                .map(|u| vec![(vec![], i64::try_from(u.recoveries).unwrap_or(i64::MAX))])
                .unwrap_or_default()
        }),
    }));
    let _expiry = tokio::spawn(super::expiry_watch::run(
        store.clone(),
        clock.clone(),
        expiring,
    ));
    let tallies: Vec<_> = cas.iter().map(|a| (a.ca_id(), a.tally().clone())).collect();
    deps.collectors.push(Box::new(SigningCollector {
        metrics: signing,
        totals: Arc::new(move || {
            tallies
                .iter()
                .flat_map(|(ca, t)| t.totals().into_iter().map(|(k, n)| (*ca, k.as_str(), n)))
                .collect()
        }),
    }));
    // The configuration in force, in the audit log: at start, at every reload, at stop.
    let config_audit = super::config_audit::ConfigAudit::new(
        config_path,
        &cfg,
        crate::audit::Audit::new(store.clone()),
        clock.clone(),
    );
    config_audit.started().await;
    let reload_audit = Arc::clone(&config_audit);
    deps.on_reload.push(Box::new(move |cfg: &Config| {
        let audit = Arc::clone(&reload_audit);
        let cfg = cfg.clone();
        tokio::spawn(async move { audit.reloaded(&cfg).await });
    }));
    let refusal_audit = Arc::clone(&config_audit);
    deps.on_reload_refused.push(Box::new(move |why: &str| {
        let audit = Arc::clone(&refusal_audit);
        let why = why.to_owned();
        tokio::spawn(async move { audit.refused(&why).await });
    }));
    // [issuance] and [renewal] follow reloads: the lifecycle's settings are replaced.
    deps.on_reload.push(Box::new(move |cfg: &Config| {
        reloaded.replace_settings(LifecycleSettings::from_config(cfg));
        console.replace_policy(approval_policy(cfg));
        match crate::locale::Locale::from_config(cfg) {
            Ok(l) => crate::locale::install(l),
            Err(e) => {
                tracing::warn!(error = %e, "[branding] not reloaded: the previous branding stays")
            }
        }
    }));

    // Expiry notices: one pass at start, then every `[notify] interval_secs`.
    let (stop_notices, stopped) = tokio::sync::watch::channel(false);
    let mut notice_task = None;
    if let Some(notices) = NotifyContext::from_config(&cfg, store, clock)
        .context("the [notify] section cannot be used")?
    {
        deps.collectors
            .push(Box::new(NotifyCollector(notices.metrics())));
        let every = notices.interval();
        notice_task = Some(tokio::spawn(crate::notify::run_forever(
            notices, every, stopped,
        )));
    }
    // Signature counts: flushed every minute, and once more when serving ends.
    let (stop_flush, flush_stopped) = tokio::sync::watch::channel(false);
    let flusher = tokio::spawn(super::tally_flush::run_flusher(
        flush_store,
        cas.clone(),
        flush_stopped,
    ));
    let result = async { Server::bind(deps).await?.serve(shutdown).await }.await;
    config_audit.stopped().await;
    let _ = stop_notices.send(true);
    // A pass in progress ends after the batch in hand is sent and recorded; waiting for it
    // (bounded) keeps a stop from counting like a crash (e-mails sent again at next start).
    if let Some(task) = notice_task
        && tokio::time::timeout(NOTICE_STOP_WAIT, task).await.is_err()
    {
        tracing::warn!(
            wait_secs = NOTICE_STOP_WAIT.as_secs(),
            "the expiry-notice pass did not end in time; its unrecorded e-mails are sent again at the next start"
        );
    }
    summaries.abort();
    let _ = stop_flush.send(true);
    if let Err(e) = flusher.await {
        tracing::warn!(error = %e, "the signature count flusher failed");
    }
    Ok(result?)
}

/// How long a stopping `serve` waits for the notice pass to finish its batch in hand.
const NOTICE_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// Revokes superseded certificates whose successor is in use or whose overlap has passed.
async fn retire_superseded(store: Store, clock: Arc<dyn Clock>, lifecycle: Lifecycle) {
    let mut tick = tokio::time::interval(RETIRE_EVERY);
    loop {
        tick.tick().await;
        let now = clock.now();
        // Read each time: `[renewal] overlap_days` follows reloads.
        let overlap_days = lifecycle.settings().overlap_days;
        match store
            .retire_superseded(now - i64::from(overlap_days) * DAY, now)
            .await
        {
            Ok(serials) if !serials.is_empty() => {
                tracing::info!(count = serials.len(), "revoked superseded certificates");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot retire superseded certificates"),
        }
    }
}

/// Hands each signature's timing to the metrics (`keys` and `telemetry` know nothing of
/// each other).
struct SigningObserver(SigningMetrics);

impl SignObserver for SigningObserver {
    fn signed(&self, seconds: f64, ok: bool) {
        self.0.signed(seconds, ok);
    }
}

/// The four-eyes rules `[staff]` gives.
fn approval_policy(cfg: &Config) -> ApprovalPolicy {
    ApprovalPolicy {
        kinds: cfg.staff.approval_kinds(),
        request_ttl_secs: i64::from(cfg.staff.request_ttl_hours) * 3600,
    }
}

/// Marks staff requests whose time ran out as expired, every minute, so the audit log says
/// when each ended even if nobody looks at the queue.
async fn expire_requests_forever(console: Arc<Console>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        if let Err(e) = console.expire_requests().await {
            tracing::warn!(error = %e, "cannot mark expired staff requests");
        }
    }
}
