//! Delivery of the outbox: cancel what no longer applies, claim due rows, send each, and
//! record the outcome (sent, retry with exponential backoff, failed).
//!
//! Owns the retry policy. It must not decide which notices exist (the scheduler does) and
//! talks SMTP only through [`super::smtp::Mailer`].
//!
//! Guarantee: a row is sent by at most one worker at a time (the claim), and once marked
//! sent it is never sent again. A worker that dies after the relay accepted an e-mail but
//! before recording it leaves the row to be sent again after its lease: a rare duplicate is
//! preferred to a lost notice. Outcomes are recorded in groups of `record_every`, a group
//! committed while the next is sent, so a killed worker causes at most `2 * record_every`
//! duplicates; each carries the Message-ID of its row, so relays, mail programs and the
//! tests recognise it. No send starts in the last `2 * timeout_secs` of a claim, so a slow
//! relay cannot make a live worker's batch outlast its lease.

use super::smtp::{Letter, Outgoing, SendOutcome};
use super::{NotifyContext, NotifyError};
use crate::clock::UnixTime;
use crate::store::{OutboxRow, Settlement};

/// What one delivery round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Delivered {
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Rows whose claim ran out before the outcome was recorded (another worker has them).
    pub lost: u64,
    /// Rows due at the end of the pass that it did not try (the relay was unreachable, or
    /// `serve` is stopping).
    pub left_due: u64,
}

/// Cancels stale rows, then sends what is due at `now`, batch after batch, over one kept
/// relay session, until nothing due is left or the relay cannot be reached.
///
/// A pass ends: each due row is claimed at most once per pass (an attempt either settles
/// it or puts it back with a `next_attempt_at` after `now`).
pub(super) async fn deliver(ctx: &NotifyContext, now: UnixTime) -> Result<Delivered, NotifyError> {
    let s = &ctx.inner;
    let mut out = Delivered {
        cancelled: s.store.cancel_stale_notices(now).await?,
        ..Delivered::default()
    };
    let token = claim_token();
    let mut relay = s.mailer.outgoing();
    let done = rounds(ctx, now, &token, &mut relay, &mut out).await;
    relay.close().await;
    done?;
    Ok(out)
}

async fn rounds(
    ctx: &NotifyContext,
    now: UnixTime,
    token: &str,
    relay: &mut Outgoing<'_>,
    out: &mut Delivered,
) -> Result<(), NotifyError> {
    let s = &ctx.inner;
    let mut recorder = Recorder::new(ctx, token);
    // Rows of a claim that ran out before they were tried (see below).
    let mut cut_short = false;
    loop {
        // Due means due at the start of the pass (so the pass ends); the lease runs from
        // the claim, as a long pass would otherwise claim rows with a lease already over.
        let lease_until = s.clock.now().max(now) + s.lease_secs;
        let rows = s
            .store
            .claim_notices(now, lease_until, token, s.batch)
            .await?;
        if rows.is_empty() {
            recorder.finish(out).await?;
            if cut_short {
                out.left_due = s.store.count_due_notices(now).await?;
            }
            return Ok(());
        }
        // Checked after a claim so that a pass always tries at least one batch.
        let stopping = s.stopping.load(std::sync::atomic::Ordering::Relaxed);
        let full = rows.len() as i64 >= s.batch;
        // Once the relay cannot be reached, the rest of the batch waits without trying.
        let mut unreachable: Option<String> = None;
        for (i, row) in rows.iter().enumerate() {
            // A send must end, and its outcome be committed, while the claim holds: after
            // it another worker may claim the row and send it again. A slow relay can make
            // a batch outlast its lease; what would start too late waits for a later claim.
            if s.clock.now().max(now) + s.send_margin_secs > lease_until {
                recorder.finish(out).await?;
                tracing::info!(
                    left = rows.len() - i,
                    "the claim on a batch of expiry notices is running out: the rest wait for a later claim"
                );
                cut_short = true;
                break;
            }
            let outcome = match &unreachable {
                Some(why) => SendOutcome::Unreachable(why.clone()),
                None => relay.send(&letter(row)).await,
            };
            if let SendOutcome::Unreachable(why) = &outcome {
                unreachable.get_or_insert_with(|| why.clone());
            }
            let at = s.clock.now().max(now);
            recorder
                .push(settlement(ctx, row, outcome, at, out), out)
                .await?;
        }
        if let Some(why) = unreachable {
            recorder.finish(out).await?;
            out.left_due = s.store.count_due_notices(now).await?;
            if out.left_due > 0 {
                tracing::warn!(
                    left_due = out.left_due,
                    error = %why,
                    "the SMTP relay cannot be reached: due expiry notices are left for the next pass"
                );
            }
            return Ok(());
        }
        if stopping && full {
            recorder.finish(out).await?;
            out.left_due = s.store.count_due_notices(now).await?;
            tracing::info!(
                left_due = out.left_due,
                "stopping: due expiry notices are left for the next start"
            );
            return Ok(());
        }
        if !full {
            recorder.finish(out).await?;
            if cut_short {
                out.left_due = s.store.count_due_notices(now).await?;
            }
            return Ok(());
        }
    }
}

/// Records outcomes in groups of `record_every`, one transaction (one commit, one fsync on
/// SQLite) per group. A group is committed while the next one is being sent, and the one
/// after waits for that commit: at most two groups are ever unrecorded, so a crash sends at
/// most `2 * record_every` e-mails again.
struct Recorder {
    store: crate::store::Store,
    token: String,
    every: usize,
    group: Vec<Settlement>,
    committing: Option<tokio::task::JoinHandle<Result<Vec<i64>, crate::store::StoreError>>>,
}

impl Recorder {
    fn new(ctx: &NotifyContext, token: &str) -> Self {
        Self {
            store: ctx.inner.store.clone(),
            token: token.to_owned(),
            every: ctx.inner.record_every,
            group: Vec::with_capacity(ctx.inner.record_every),
            committing: None,
        }
    }

    async fn push(&mut self, o: Settlement, out: &mut Delivered) -> Result<(), NotifyError> {
        self.group.push(o);
        if self.group.len() >= self.every {
            self.commit(out).await?;
        }
        Ok(())
    }

    /// Waits for the group being committed, then starts committing the current one.
    async fn commit(&mut self, out: &mut Delivered) -> Result<(), NotifyError> {
        self.wait(out).await?;
        if self.group.is_empty() {
            return Ok(());
        }
        let group = std::mem::replace(&mut self.group, Vec::with_capacity(self.every));
        let store = self.store.clone();
        let token = self.token.clone();
        self.committing = Some(tokio::spawn(async move {
            store.settle_notices(&token, &group).await
        }));
        Ok(())
    }

    async fn wait(&mut self, out: &mut Delivered) -> Result<(), NotifyError> {
        let Some(task) = self.committing.take() else {
            return Ok(());
        };
        let lost = task
            .await
            .map_err(|e| NotifyError::Record(e.to_string()))??;
        for id in &lost {
            tracing::warn!(
                id,
                "the claim on an expiry notice ran out before its outcome was recorded"
            );
        }
        out.lost += lost.len() as u64;
        Ok(())
    }

    /// Records everything still open and waits until it is committed.
    async fn finish(&mut self, out: &mut Delivered) -> Result<(), NotifyError> {
        self.commit(out).await?;
        self.wait(out).await
    }
}

fn letter(row: &OutboxRow) -> Letter<'_> {
    Letter {
        id: row.id,
        serial: &row.serial,
        to: &row.recipient,
        subject: &row.subject,
        body: &row.body,
    }
}

/// What to record for `row` after `outcome`, counted and logged.
fn settlement(
    ctx: &NotifyContext,
    row: &OutboxRow,
    outcome: SendOutcome,
    at: UnixTime,
    out: &mut Delivered,
) -> Settlement {
    let s = &ctx.inner;
    match outcome {
        SendOutcome::Sent => {
            out.sent += 1;
            tracing::info!(id = row.id, serial = %row.serial, notice_days = row.notice_days, "expiry notice sent");
            Settlement::sent(row.id, at)
        }
        SendOutcome::Deferred(why) | SendOutcome::Unreachable(why) => {
            out.retried += 1;
            let next = at + backoff(row.attempts, s.retry_initial_secs, s.retry_max_secs);
            tracing::warn!(id = row.id, serial = %row.serial, attempts = row.attempts, next_attempt_at = next, error = %why, "expiry notice deferred");
            Settlement::retry(row.id, at, next, why)
        }
        SendOutcome::Permanent(why) => {
            out.failed += 1;
            tracing::error!(id = row.id, serial = %row.serial, error = %why, "expiry notice refused permanently");
            Settlement::failed(row.id, at, why)
        }
    }
}

/// Seconds to wait after the `attempts`-th failed attempt: `initial`, doubling, at most `max`.
pub fn backoff(attempts: i64, initial: i64, max: i64) -> i64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 32)).unwrap_or(32);
    initial
        .saturating_mul(1_i64 << doublings.min(40))
        .min(max)
        .max(1)
}

/// A token naming this claim; random so that two workers never share one.
fn claim_token() -> String {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .is_err()
    {
        // Unique enough without randomness: process, time, and a counter.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return format!("{}-{nanos}-{n}", std::process::id());
    }
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1, 60, 3600), 60);
        assert_eq!(backoff(2, 60, 3600), 120);
        assert_eq!(backoff(3, 60, 3600), 240);
        assert_eq!(backoff(7, 60, 3600), 3600);
        assert_eq!(backoff(1000, 60, 3600), 3600);
        assert_eq!(backoff(0, 60, 3600), 60);
    }

    #[test]
    fn claim_tokens_differ() {
        assert_ne!(claim_token(), claim_token());
    }
}
