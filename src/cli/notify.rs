//! `certgate notify run` (one pass of the expiry-notice scheduler and sender) and
//! `certgate notify list` (the outbox with state, attempts and last error).
//!
//! Opens only the configuration and the store: no HSM is needed to send notices.

use std::sync::Arc;

use anyhow::{Context, anyhow};

use super::args::NotifyCmd;
use super::context::open_store;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::notify::{NotifyContext, run_once};
use crate::store::OutboxState;

/// Runs one `notify` subcommand.
pub async fn run(cfg: &Config, cmd: NotifyCmd) -> anyhow::Result<()> {
    match cmd {
        NotifyCmd::Run => pass(cfg).await,
        NotifyCmd::List { state } => list(cfg, state).await,
    }
}

async fn pass(cfg: &Config) -> anyhow::Result<()> {
    let store = open_store(cfg).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let ctx = NotifyContext::from_config(cfg, store, clock)
        .context("cannot set up expiry notices")?
        .ok_or_else(|| anyhow!("the configuration has no [notify] section"))?;
    let r = run_once(&ctx)
        .await
        .context("the expiry-notice pass failed")?;
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

async fn list(cfg: &Config, state: Option<String>) -> anyhow::Result<()> {
    let state = state
        .map(|s| s.parse::<OutboxState>().map_err(|e| anyhow!(e)))
        .transpose()?;
    let store = open_store(cfg).await?;
    let rows = store.outbox(state).await?;
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
