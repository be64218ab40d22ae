//! How refused attempts on the staff console (a certificate refused by the listener, a
//! call refused by the role table) reach the audit log. Each one is a security
//! event, but a holder of any certificate of the CA who can reach the console could
//! otherwise add a row per request. The first refusal of a certificate for a reason is
//! recorded; the same refusals within [`WINDOW_SECS`] after it are only counted, and the
//! next row recorded for that certificate and reason carries how many were not.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::UnixTime;

/// How long a recorded refusal covers the same certificate's same refusals.
pub const WINDOW_SECS: UnixTime = 60;

/// Certificates tracked at once; past it, expired windows are dropped, and when none has
/// expired every refusal is recorded (rows are never lost to a full table).
const MAX_TRACKED: usize = 4096;

/// Whether a refusal gets its own audit row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Record it; `repeated` refusals of the same kind were counted, not recorded, since
    /// the last row.
    Record { repeated: u64 },
    /// Covered by a row written less than [`WINDOW_SECS`] ago.
    Counted,
}

#[derive(Debug)]
struct Window {
    opened: UnixTime,
    counted: u64,
}

/// The open windows, by certificate serial and refusal code.
#[derive(Debug, Default)]
pub struct RefusalLog {
    windows: Mutex<HashMap<(String, &'static str), Window>>,
}

impl RefusalLog {
    /// Decides for a refusal of `serial` with `code` at `now`.
    pub fn entry(&self, serial: &str, code: &'static str, now: UnixTime) -> Entry {
        // Holds no invariant a panic could break: use the table as it is.
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let key = (serial.to_owned(), code);
        if let Some(w) = windows.get_mut(&key) {
            if now >= w.opened && now - w.opened < WINDOW_SECS {
                w.counted += 1;
                return Entry::Counted;
            }
            let repeated = w.counted;
            *w = Window {
                opened: now,
                counted: 0,
            };
            return Entry::Record { repeated };
        }
        if windows.len() >= MAX_TRACKED {
            windows.retain(|_, w| now >= w.opened && now - w.opened < WINDOW_SECS);
            if windows.len() >= MAX_TRACKED {
                return Entry::Record { repeated: 0 };
            }
        }
        windows.insert(
            key,
            Window {
                opened: now,
                counted: 0,
            },
        );
        Entry::Record { repeated: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_window_and_the_next_row_carries_the_count() {
        let log = RefusalLog::default();
        assert_eq!(
            log.entry("0a", "not_staff", 1000),
            Entry::Record { repeated: 0 }
        );
        for t in 1000..1000 + WINDOW_SECS {
            assert_eq!(log.entry("0a", "not_staff", t), Entry::Counted);
        }
        // Another reason or another certificate is a row of its own.
        assert_eq!(
            log.entry("0a", "revoked", 1001),
            Entry::Record { repeated: 0 }
        );
        assert_eq!(
            log.entry("0b", "not_staff", 1001),
            Entry::Record { repeated: 0 }
        );
        assert_eq!(
            log.entry("0a", "not_staff", 1000 + WINDOW_SECS),
            Entry::Record {
                repeated: WINDOW_SECS as u64
            }
        );
        assert_eq!(
            log.entry("0a", "not_staff", 1000 + WINDOW_SECS + 1),
            Entry::Counted
        );
    }

    #[test]
    fn a_clock_stepped_back_opens_a_new_window() {
        let log = RefusalLog::default();
        assert_eq!(
            log.entry("0a", "not_staff", 1000),
            Entry::Record { repeated: 0 }
        );
        assert_eq!(
            log.entry("0a", "not_staff", 900),
            Entry::Record { repeated: 0 }
        );
    }

    #[test]
    fn a_full_table_drops_expired_windows_and_never_drops_a_row() {
        let log = RefusalLog::default();
        for i in 0..MAX_TRACKED {
            assert_eq!(
                log.entry(&format!("{i:x}"), "not_staff", 1000),
                Entry::Record { repeated: 0 }
            );
        }
        // Full of open windows: recorded, not tracked.
        for _ in 0..3 {
            assert_eq!(
                log.entry("new", "not_staff", 1001),
                Entry::Record { repeated: 0 }
            );
        }
        // Once they expired, there is room again.
        assert_eq!(
            log.entry("new", "not_staff", 1000 + WINDOW_SECS),
            Entry::Record { repeated: 0 }
        );
        assert_eq!(
            log.entry("new", "not_staff", 1001 + WINDOW_SECS),
            Entry::Counted
        );
    }
}
