//! Time as the rest of certgate sees it. The real binary reads the system clock; tests inject
//! a fixed or moving clock through [`Clock`] so expiry rules can be exercised without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch, UTC. Every timestamp in the store uses this unit.
pub type UnixTime = i64;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time in seconds since the Unix epoch.
    fn now(&self) -> UnixTime;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        unix_seconds(std::time::SystemTime::now())
    }
}

/// Whole seconds since the epoch, rounded down as `OffsetDateTime::unix_timestamp` does.
/// Read on every proxied request (the live status check), so plain arithmetic: no calendar
/// date is built only to take the seconds back out of it.
fn unix_seconds(t: std::time::SystemTime) -> UnixTime {
    let whole = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => whole(since),
        // A clock set before 1970.
        Err(e) => {
            let before = e.duration();
            -whole(before) - i64::from(before.subsec_nanos() > 0)
        }
    }
}

/// A clock that stands still until moved; for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock showing `t`.
    pub fn new(t: UnixTime) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(t)))
    }
    /// Moves the clock by `secs` (may be negative).
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    /// Sets the clock to `t`.
    pub fn set(&self, t: UnixTime) {
        self.0.store(t, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

/// One day in seconds.
pub const DAY: i64 = 86_400;

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn system_seconds_round_down_like_the_calendar_type() {
        for t in [
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::from_millis(1_500),
            UNIX_EPOCH - Duration::from_millis(1_500),
            UNIX_EPOCH - Duration::from_secs(2),
            UNIX_EPOCH + Duration::from_secs(1_796_000_000),
        ] {
            let calendar = time::OffsetDateTime::from(t).unix_timestamp();
            assert_eq!(unix_seconds(t), calendar, "{t:?}");
        }
        let before = time::OffsetDateTime::now_utc().unix_timestamp();
        let now = SystemClock.now();
        let after = time::OffsetDateTime::now_utc().unix_timestamp();
        assert!((before..=after).contains(&now));
    }
}
