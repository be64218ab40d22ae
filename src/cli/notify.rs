//! `certgate notify run` (one pass of the expiry-notice scheduler and sender) and
//! `certgate notify list` (the outbox with state, attempts and last error).
//!
//! Opens only the configuration and the store: no HSM is needed to send notices.

use std::sync::Arc;

use anyhow::{Context, anyhow};

use super::args::{Format, NotifyCmd};
use super::context::open_store;
use super::progress::Progress;
use super::views::{self, OutboxView, PassView};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::notify::{NotifyContext, run_once};
use crate::store::OutboxState;

/// Runs one `notify` subcommand.
pub async fn run(cfg: &Config, cmd: NotifyCmd) -> anyhow::Result<()> {
    match cmd {
        NotifyCmd::Run { output } => pass(cfg, output.format).await,
        NotifyCmd::List { state, output } => list(cfg, state, output.format).await,
    }
}

/// One pass. Progress comes from what the pass reports: the outbox before it, and the
/// counts when it ends (the pass itself is one call).
async fn pass(cfg: &Config, format: Format) -> anyhow::Result<()> {
    let mut progress = Progress::start("notify run", 2);
    progress.step("opening the database and the relay settings");
    let store = open_store(cfg).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ctx = NotifyContext::from_config(cfg, store.clone(), clock)
        .context("cannot set up expiry notices")?
        .ok_or_else(|| anyhow!("the configuration has no [notify] section"))?;
    let before = store.outbox_counts().await?;
    progress.step(format!(
        "queueing the notices due now and delivering the outbox ({} pending before the pass)",
        before.pending
    ));
    let r = run_once(&ctx)
        .await
        .context("the expiry-notice pass failed")?;
    progress.detail(format!(
        "pass ended: {} queued, {} sent, {} to retry, {} failed, {} cancelled",
        r.scheduled, r.sent, r.retried, r.failed, r.cancelled
    ));
    progress.finish();
    if format == Format::Json {
        return views::print_json(&PassView::from(&r));
    }
    println!(
        "scheduled {} sent {} retried {} failed {} cancelled {}; outbox: {} pending, {} sent, {} failed, {} cancelled",
        r.scheduled,
        r.sent,
        r.retried,
        r.failed,
        r.cancelled,
        r.outbox.pending,
        r.outbox.sent,
        r.outbox.failed,
        r.outbox.cancelled
    );
    if r.left_due > 0 {
        println!(
            "{} due notices left for the next pass: the SMTP relay could not be reached",
            r.left_due
        );
    }
    Ok(())
}

async fn list(cfg: &Config, state: Option<String>, format: Format) -> anyhow::Result<()> {
    let state = state
        .map(|s| s.parse::<OutboxState>().map_err(|e| anyhow!(e)))
        .transpose()?;
    let store = open_store(cfg).await?;
    let rows = store.outbox(state).await?;
    if format == Format::Json {
        let listed: Vec<OutboxView<'_>> = rows.iter().map(Into::into).collect();
        return views::print_json(&listed);
    }
    println!("ID\tSERIAL\tDAYS\tLOGIN\tRECIPIENT\tSTATE\tATTEMPTS\tNEXT_ATTEMPT\tLAST_ERROR");
    for r in rows {
        let next = if r.state == OutboxState::Pending {
            rfc3339(r.next_attempt_at)
        } else {
            "-".to_owned()
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.id,
            r.serial,
            r.notice_days,
            r.login,
            r.recipient,
            r.state,
            r.attempts,
            next,
            r.last_error.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}
