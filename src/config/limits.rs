//! `[limits]`: token-bucket limits on certgate's public surface (obtain, EST, OCSP with a
//! nonce, failed code attempts), how many client keys are tracked, how refusals are
//! summarised in the audit log, and how long a request body may take to arrive.

use serde::Deserialize;

/// One token bucket: `per_minute` tokens come back each minute, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    pub per_minute: u32,
    pub burst: u32,
}

impl RateConfig {
    const fn new(per_minute: u32, burst: u32) -> Self {
        Self { per_minute, burst }
    }
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// First issuance with login ID and code (obtain page's API and EST `simpleenroll`),
    /// per client address and per login ID.
    #[serde(default = "default_obtain")]
    pub obtain: RateConfig,
    /// Renewal with the current certificate (renew page's API and EST `simplereenroll`),
    /// per client address and per login ID.
    #[serde(default = "default_reenroll")]
    pub reenroll: RateConfig,
    /// A contract administrator's changes (add a login ID, make a code, re-issue), per
    /// client address and per administrator.
    #[serde(default = "default_admin_changes")]
    pub admin_changes: RateConfig,
    /// OCSP requests carrying a nonce (each costs an HSM signature), per client address.
    #[serde(default = "default_ocsp_nonce")]
    pub ocsp_nonce: RateConfig,
    /// Refused issuance codes, per client address and per login ID.
    #[serde(default = "default_failed_codes")]
    pub failed_codes: RateConfig,
    /// Client keys (address or login ID, per surface) tracked at most; past it the longest
    /// unused are forgotten, so a flood of addresses cannot grow memory without bound.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
    /// Seconds per audit summary: the first refusal of a key in a window is audited
    /// (`limit.refused`), the rest are counted and written as one `limit.refused_summary`.
    #[serde(default = "default_summary_window_secs")]
    pub summary_window_secs: u64,
    /// Seconds a request body on certgate's own paths may take to arrive (then 408).
    #[serde(default = "default_body_read_timeout_secs")]
    pub body_read_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            obtain: default_obtain(),
            reenroll: default_reenroll(),
            admin_changes: default_admin_changes(),
            ocsp_nonce: default_ocsp_nonce(),
            failed_codes: default_failed_codes(),
            max_keys: default_max_keys(),
            summary_window_secs: default_summary_window_secs(),
            body_read_timeout_secs: default_body_read_timeout_secs(),
        }
    }
}

impl LimitsConfig {
    /// What makes the section unusable, if anything.
    pub fn problem(&self) -> Option<String> {
        let rates = [
            ("obtain", self.obtain),
            ("reenroll", self.reenroll),
            ("admin_changes", self.admin_changes),
            ("ocsp_nonce", self.ocsp_nonce),
            ("failed_codes", self.failed_codes),
        ];
        for (name, r) in rates {
            if r.per_minute == 0 || r.burst == 0 {
                return Some(format!(
                    "[limits] {name}: per_minute and burst must be at least 1"
                ));
            }
        }
        if self.max_keys == 0 {
            return Some("[limits] max_keys must be at least 1".into());
        }
        if self.summary_window_secs == 0 || self.body_read_timeout_secs == 0 {
            return Some(
                "[limits] summary_window_secs and body_read_timeout_secs must be at least 1".into(),
            );
        }
        None
    }
}

fn default_obtain() -> RateConfig {
    RateConfig::new(10, 20)
}
fn default_reenroll() -> RateConfig {
    RateConfig::new(10, 20)
}
fn default_admin_changes() -> RateConfig {
    RateConfig::new(30, 60)
}
fn default_ocsp_nonce() -> RateConfig {
    RateConfig::new(120, 120)
}
fn default_failed_codes() -> RateConfig {
    RateConfig::new(5, 10)
}
fn default_max_keys() -> usize {
    100_000
}
fn default_summary_window_secs() -> u64 {
    300
}
fn default_body_read_timeout_secs() -> u64 {
    10
}
