//! Delivery of the outbox: cancel what no longer applies, claim due rows, send each, and
//! record the outcome (sent, retry with exponential backoff, failed).
//!
//! Owns the retry policy. It must not decide which notices exist (the scheduler does) and
//! talks SMTP only through [`super::smtp::Mailer`].
//!
//! Guarantee: a row is sent by at most one worker at a time (the claim), and once marked
//! sent it is never sent again. A worker that dies after the relay accepted an e-mail but
//! before recording it leaves the row to be sent again after its lease: a rare duplicate is
//! preferred to a lost notice.

use super::smtp::SendOutcome;
use super::{NotifyContext, NotifyError};
use crate::clock::UnixTime;

/// What one delivery round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Delivered {
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Rows whose claim ran out before the outcome was recorded (another worker has them).
    pub lost: u64,
}

/// Upper bound of claim rounds in one pass, so a pass always ends.
const MAX_ROUNDS: usize = 100;

/// Cancels stale rows, then sends what is due at `now`.
pub(super) async fn deliver(ctx: &NotifyContext, now: UnixTime) -> Result<Delivered, NotifyError> {
    let s = &ctx.inner;
    let mut out = Delivered {
        cancelled: s.store.cancel_stale_notices(now).await?,
        ..Delivered::default()
    };
    let token = claim_token();
    for _ in 0..MAX_ROUNDS {
        let rows = s
            .store
            .claim_notices(now, now + s.lease_secs, &token, s.batch)
            .await?;
        if rows.is_empty() {
            break;
        }
        let full = rows.len() as i64 >= s.batch;
        // Once the relay cannot be reached, the rest of the batch waits without trying.
        let mut unreachable: Option<String> = None;
        for row in rows {
            let outcome = match &unreachable {
                Some(why) => SendOutcome::Unreachable(why.clone()),
                None => s.mailer.send(&row.recipient, &row.subject, &row.body).await,
            };
            let at = s.clock.now().max(now);
            let recorded = match &outcome {
                SendOutcome::Sent => {
                    out.sent += 1;
                    tracing::info!(id = row.id, serial = %row.serial, notice_days = row.notice_days, "expiry notice sent");
                    s.store.mark_notice_sent(row.id, &token, at).await?
                }
                SendOutcome::Deferred(why) | SendOutcome::Unreachable(why) => {
                    if matches!(outcome, SendOutcome::Unreachable(_)) {
                        unreachable = Some(why.clone());
                    }
                    out.retried += 1;
                    let next = at + backoff(row.attempts, s.retry_initial_secs, s.retry_max_secs);
                    tracing::warn!(id = row.id, serial = %row.serial, attempts = row.attempts, next_attempt_at = next, error = %why, "expiry notice deferred");
                    s.store
                        .mark_notice_retry(row.id, &token, at, next, why)
                        .await?
                }
                SendOutcome::Permanent(why) => {
                    out.failed += 1;
                    tracing::error!(id = row.id, serial = %row.serial, error = %why, "expiry notice refused permanently");
                    s.store.mark_notice_failed(row.id, &token, at, why).await?
                }
            };
            if !recorded {
                out.lost += 1;
                tracing::warn!(
                    id = row.id,
                    "the claim on an expiry notice ran out before its outcome was recorded"
                );
            }
        }
        if !full {
            break;
        }
    }
    Ok(out)
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
