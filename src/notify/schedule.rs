//! The scheduler: which notice of a certificate is due, and queuing it.
//!
//! Owns the catch-up rule: of the notices due at a pass only the most urgent (smallest N)
//! goes out, the others are recorded as skipped; a notice is never decided twice, and never
//! after a more urgent one. It must not send anything: the outbox is delivered separately.

use super::template::NoticeFacts;
use super::{NotifyContext, NotifyError};
use crate::clock::{DAY, UnixTime};
use crate::store::{NewNotice, STAFF_CONTRACT};

/// What to do for one certificate at one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The notice to send (N days before expiry).
    pub send: u32,
    /// Earlier notices, also due, superseded by `send`.
    pub skip: Vec<u32>,
}

/// Decides for a certificate expiring at `not_after`, given the smallest notice already
/// decided for it. A notice N is due from `not_after - N days` until `not_after`.
pub fn decide(
    notice_days: &[u32],
    not_after: UnixTime,
    now: UnixTime,
    decided_min: Option<i64>,
) -> Option<Decision> {
    if now >= not_after {
        return None;
    }
    let due: Vec<u32> = notice_days
        .iter()
        .copied()
        .filter(|n| now >= not_after.saturating_sub(i64::from(*n) * DAY))
        .collect();
    let send = due.iter().copied().min()?;
    if decided_min.is_some_and(|d| d <= i64::from(send)) {
        return None;
    }
    let mut skip: Vec<u32> = due
        .into_iter()
        .filter(|n| *n != send && decided_min.is_none_or(|d| i64::from(*n) < d))
        .collect();
    skip.sort_unstable();
    skip.dedup();
    Some(Decision { send, skip })
}

/// Notices decided and queued per transaction: one commit for many, and a short one.
const SCHEDULE_CHUNK: usize = 500;

/// Queues every notice due at `now`. Returns how many this call queued (another instance
/// may have queued the rest).
pub(super) async fn schedule(ctx: &NotifyContext, now: UnixTime) -> Result<u64, NotifyError> {
    let s = &ctx.inner;
    let horizon = i64::from(s.notice_days.iter().copied().max().unwrap_or(0)) * DAY;
    let candidates = s.store.notice_candidates(now, now + horizon).await?;
    let mut queued = 0;
    let mut chunk: Vec<(NewNotice, Vec<i64>)> = Vec::with_capacity(SCHEDULE_CHUNK);
    for c in candidates {
        let Some(d) = decide(&s.notice_days, c.not_after, now, c.decided_min) else {
            continue;
        };
        // Staff renew on their console, not on the customers' page.
        let renew_url = if c.contract_id == STAFF_CONTRACT {
            match &s.staff_renew_url {
                Some(u) => u,
                None => continue,
            }
        } else {
            &s.renew_url
        };
        let mail = s.templates.render(
            s.language,
            &NoticeFacts {
                login: &c.login,
                contract_id: &c.contract_id,
                contract_name: &c.contract_name,
                not_after: c.not_after,
                now,
                renew_url,
            },
        );
        let notice = NewNotice {
            serial: c.serial,
            notice_days: i64::from(d.send),
            login: c.login,
            recipient: c.email,
            language: s.language.as_str().to_owned(),
            subject: mail.subject,
            body: mail.body,
            now,
        };
        chunk.push((notice, d.skip.iter().map(|n| i64::from(*n)).collect()));
        if chunk.len() >= SCHEDULE_CHUNK {
            queued += queue(ctx, &mut chunk).await?;
        }
    }
    queued += queue(ctx, &mut chunk).await?;
    Ok(queued)
}

/// Queues `chunk` in one transaction and empties it; returns how many were queued.
async fn queue(
    ctx: &NotifyContext,
    chunk: &mut Vec<(NewNotice, Vec<i64>)>,
) -> Result<u64, NotifyError> {
    let done = ctx.inner.store.schedule_notices(chunk).await?;
    let mut queued = 0;
    for ((notice, skipped), yes) in chunk.iter().zip(done) {
        if yes {
            tracing::info!(
                serial = %notice.serial,
                login = %notice.login,
                notice_days = notice.notice_days,
                skipped = ?skipped,
                "expiry notice queued"
            );
            queued += 1;
        }
    }
    chunk.clear();
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    const END: UnixTime = 1_800_000_000;
    const DAYS: &[u32] = &[30, 10];

    fn at(days_before: i64) -> UnixTime {
        END - days_before * DAY
    }

    #[test]
    fn nothing_before_the_first_notice() {
        assert_eq!(decide(DAYS, END, at(65), None), None);
        assert_eq!(decide(DAYS, END, at(30) - 1, None), None);
    }

    #[test]
    fn thirty_then_ten() {
        let d = decide(DAYS, END, at(30), None).unwrap();
        assert_eq!(
            d,
            Decision {
                send: 30,
                skip: vec![]
            }
        );
        assert_eq!(decide(DAYS, END, at(20), Some(30)), None);
        let d = decide(DAYS, END, at(10), Some(30)).unwrap();
        assert_eq!(
            d,
            Decision {
                send: 10,
                skip: vec![]
            }
        );
        assert_eq!(decide(DAYS, END, at(1), Some(10)), None);
    }

    #[test]
    fn catch_up_sends_only_the_most_urgent() {
        let d = decide(DAYS, END, at(5), None).unwrap();
        assert_eq!(
            d,
            Decision {
                send: 10,
                skip: vec![30]
            }
        );
        let d = decide(&[60, 30, 10], END, at(12), None).unwrap();
        assert_eq!(
            d,
            Decision {
                send: 30,
                skip: vec![60]
            }
        );
    }

    #[test]
    fn expired_certificates_get_nothing() {
        assert_eq!(decide(DAYS, END, END, None), None);
        assert_eq!(decide(DAYS, END, END + DAY, None), None);
    }

    #[test]
    fn never_after_a_more_urgent_notice() {
        // The clock went back after the 10-day notice: the 30-day one is not sent late.
        assert_eq!(decide(DAYS, END, at(25), Some(10)), None);
    }
}
