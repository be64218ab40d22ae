//! Expiry notices: the scheme's e-mails 30 and 10 days before a certificate expires, each
//! sent exactly once, also across restarts and with several instances on PostgreSQL.
//!
//! ```text
//! run_once ─▶ schedule: due notice? ─▶ store: decide N + outbox row (one transaction)
//!          ─▶ deliver:  cancel stale rows ─▶ claim a batch (lease) ─▶ smtp (one kept
//!                       session, pipelined) ─▶ record each group: sent | retry | failed
//! ```
//! `serve` calls [`run_forever`]; `certgate notify run` calls [`run_once`].
//!
//! Layout: `schedule` (which notice is due, catch-up), `deliver` (claims, retries),
//! `smtp` (relay settings, the e-mail, outcomes), `session` (the SMTP conversation), `template` (ja/en texts), `metrics`, `error`. This module must not
//! decide whether a certificate may be renewed (that is `lifecycle`), nor talk SQL (that
//! is `store::notices`). Time comes from a [`Clock`], so tests move it by hand.

mod deliver;
mod error;
mod metrics;
mod schedule;
mod session;
mod smtp;
mod template;

pub use deliver::backoff;
pub use error::NotifyError;
pub use metrics::{MetricsSnapshot, NotifyCollector, NotifyMetrics};
pub use schedule::{Decision, decide};
pub use smtp::{Mailer, RelayUrl, SendOutcome, TlsMode, message_id};
pub use template::{Language, NoticeFacts, Rendered, Templates};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{Config, NotifyConfig};
use crate::store::{OutboxCounts, Store};
use crate::telemetry::error_chain;

/// The staff console's renew page: `https://<[staff] host or address>:<port>/staff/renew`;
/// `None` without a console, or when it listens on every address and names no host.
fn staff_renew_url(staff: &crate::config::StaffConfig) -> Option<String> {
    let addr = staff.addr?;
    let host = match &staff.host {
        Some(h) => h.clone(),
        None if addr.ip().is_unspecified() => return None,
        None => match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        },
    };
    Some(format!("https://{host}:{}/staff/renew", addr.port()))
}

/// Everything a pass needs: store, clock, relay, templates and settings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NotifyContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    clock: Arc<dyn Clock>,
    mailer: Mailer,
    templates: Templates,
    language: Language,
    /// Distinct, largest first.
    notice_days: Vec<u32>,
    renew_url: String,
    /// Where staff renew (the staff console's renew page); `None` without a console
    /// address a link can name, and then staff certificates get no notice.
    staff_renew_url: Option<String>,
    interval: Duration,
    retry_initial_secs: i64,
    retry_max_secs: i64,
    lease_secs: i64,
    /// The part of a claim no send may start in: one SMTP conversation and the commit of
    /// its outcome (twice `timeout_secs`, which the lease must exceed).
    send_margin_secs: i64,
    batch: i64,
    /// Outcomes recorded per transaction.
    record_every: usize,
    metrics: Arc<NotifyMetrics>,
    /// Set when `serve` stops: the pass ends after the batch in hand (all recorded).
    stopping: std::sync::atomic::AtomicBool,
}

impl NotifyContext {
    /// The context for `[notify]` of `cfg`, or `None` when the section is absent (no
    /// notices are sent). Reads the SMTP password and the templates now.
    pub fn from_config(
        cfg: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, NotifyError> {
        match &cfg.notify {
            Some(n) => Self::new(cfg, n, store, clock).map(Some),
            None => Ok(None),
        }
    }

    /// The context for the section `n` of `cfg`.
    pub fn new(
        cfg: &Config,
        n: &NotifyConfig,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, NotifyError> {
        let mailer = Mailer::from_config(cfg, n)?;
        let dir = n.template_dir.as_ref().map(|d| cfg.resolve(d));
        // Names (and, unless a fixed offset is set, the time zone) from `[branding]`, as
        // the pages have them; read from the file, so `notify run` has them too.
        let locale = crate::locale::Locale::from_config(cfg)
            .map_err(|e| NotifyError::Config(format!("[branding]: {e}")))?;
        let templates = match n.utc_offset_minutes {
            Some(minutes) => {
                Templates::load(dir.as_deref(), minutes)?.with_locale(std::sync::Arc::new(locale))
            }
            None => Templates::load_branded(dir.as_deref(), std::sync::Arc::new(locale))?,
        };
        let mut notice_days = n.notice_days.clone();
        notice_days.sort_unstable_by(|a, b| b.cmp(a));
        notice_days.dedup();
        let renew_url = n.renew_url.clone().unwrap_or_else(|| {
            format!("{}/certgate/renew", cfg.ca.public_url.trim_end_matches('/'))
        });
        let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                clock,
                mailer,
                templates,
                language: Language::parse(&n.language)?,
                notice_days,
                renew_url,
                staff_renew_url: staff_renew_url(&cfg.staff),
                interval: Duration::from_secs(n.interval_secs),
                retry_initial_secs: secs(n.retry_initial_secs),
                retry_max_secs: secs(n.retry_max_secs),
                lease_secs: secs(n.lease_secs),
                send_margin_secs: secs(n.timeout_secs).saturating_mul(2),
                batch: i64::from(n.batch),
                record_every: usize::try_from(n.record_every).unwrap_or(1).max(1),
                metrics: Arc::default(),
                stopping: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The counters, to be exposed on `/metrics`.
    pub fn metrics(&self) -> Arc<NotifyMetrics> {
        Arc::clone(&self.inner.metrics)
    }

    /// The configured time between two passes (`interval_secs`).
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// The store this context works on.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    /// Notices queued by this pass.
    pub scheduled: u64,
    /// E-mails the relay accepted.
    pub sent: u64,
    /// E-mails put back after a temporary failure.
    pub retried: u64,
    /// E-mails refused permanently.
    pub failed: u64,
    /// E-mails cancelled (certificate renewed, revoked, re-issued or expired first).
    pub cancelled: u64,
    /// E-mails whose claim ran out before their outcome was recorded.
    pub lost_claims: u64,
    /// Due e-mails this pass did not try because the relay could not be reached or `serve`
    /// is stopping; the next pass tries them.
    pub left_due: u64,
    /// The outbox after the pass.
    pub outbox: OutboxCounts,
}

/// One pass: queue the notices due now, then deliver the outbox.
pub async fn run_once(ctx: &NotifyContext) -> Result<PassReport, NotifyError> {
    let result = pass(ctx).await;
    match &result {
        Ok(r) => ctx.inner.metrics.add_pass(r),
        Err(_) => ctx.inner.metrics.add_pass_error(),
    }
    result
}

async fn pass(ctx: &NotifyContext) -> Result<PassReport, NotifyError> {
    let now = ctx.inner.clock.now();
    let scheduled = schedule::schedule(ctx, now).await?;
    let d = deliver::deliver(ctx, now).await?;
    let outbox = ctx.inner.store.outbox_counts().await?;
    Ok(PassReport {
        scheduled,
        sent: d.sent,
        retried: d.retried,
        failed: d.failed,
        cancelled: d.cancelled,
        lost_claims: d.lost,
        left_due: d.left_due,
        outbox,
    })
}

/// Runs a pass now and then every `every`, until `shutdown` turns true or its sender goes.
/// A failed pass is logged and counted; the next one starts over.
pub async fn run_forever(ctx: NotifyContext, every: Duration, mut shutdown: watch::Receiver<bool>) {
    // A long pass stops at the next batch once shutdown is asked, rather than keeping
    // `serve` alive until every due notice is sent (and being killed mid-batch).
    let flag = ctx.clone();
    let mut watch_stop = shutdown.clone();
    let watcher = tokio::spawn(async move {
        while !*watch_stop.borrow_and_update() {
            if watch_stop.changed().await.is_err() {
                break;
            }
        }
        flag.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = ticks.tick() => {}
            changed = shutdown.changed() => {
                if changed.is_err() { break; }
                continue;
            }
        }
        // A pass is not cut mid-batch: it ends after recording the batch in hand.
        match run_once(&ctx).await {
            Ok(r) => {
                if r.scheduled + r.sent + r.retried + r.failed + r.cancelled > 0 {
                    tracing::info!(?r, "expiry notice pass");
                }
            }
            Err(e) => tracing::error!(error = %error_chain(&e), "expiry notice pass failed"),
        }
    }
    watcher.abort();
    tracing::debug!("expiry notices stopped");
}

#[cfg(test)]
mod staff_url_tests {
    use super::staff_renew_url;
    use crate::config::StaffConfig;

    #[test]
    fn staff_notices_link_to_the_console_under_its_host_name() {
        let mut staff = StaffConfig::default();
        assert_eq!(staff_renew_url(&staff), None);
        staff.addr = "10.0.0.5:9443".parse().ok();
        assert_eq!(
            staff_renew_url(&staff).as_deref(),
            Some("https://10.0.0.5:9443/staff/renew")
        );
        staff.addr = "0.0.0.0:9443".parse().ok();
        assert_eq!(staff_renew_url(&staff), None);
        staff.host = Some("console.bank.example".into());
        assert_eq!(
            staff_renew_url(&staff).as_deref(),
            Some("https://console.bank.example:9443/staff/renew")
        );
    }
}
