//! `[notify]`: expiry notices by e-mail (schedule, SMTP relay, templates, retries).
//!
//! Owns the keys of the section, their defaults and their checks. It must not open
//! connections or read templates: `notify` does that when it starts.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, SecretSource};

/// `[notify]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `smtp://host:port` (plain, for a local relay), `smtp://host:port?tls=starttls`
    /// (STARTTLS required) or `smtps://host:port` (TLS from the first byte).
    pub smtp_url: String,
    /// Sender address, e.g. `certgate@bank.example` or `Example Bank <certgate@bank.example>`.
    pub from: String,
    /// SMTP user; when set, the password comes from `password_env` or `password_file`.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Extra trusted root certificates (PEM) for the relay's TLS certificate, beside the
    /// system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Days before expiry at which a notice is sent, each once.
    #[serde(default = "default_notice_days")]
    pub notice_days: Vec<u32>,
    /// Language of the notices: `ja` or `en`.
    #[serde(default = "default_language")]
    pub language: String,
    /// Folder with `notice.ja.txt` / `notice.en.txt` replacing the built-in templates.
    #[serde(default)]
    pub template_dir: Option<PathBuf>,
    /// Where customers renew; defaults to `[ca] public_url` + `/certgate/renew`.
    #[serde(default)]
    pub renew_url: Option<String>,
    /// Offset from UTC, in minutes, of the expiry time written in notices (540 = JST).
    /// Unset (the default): the `[branding]` time zone of the notice's language, as on
    /// the pages.
    #[serde(default)]
    pub utc_offset_minutes: Option<i32>,
    /// Seconds between two passes while `serve` runs.
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// First wait after a temporary delivery failure; doubles on each further one.
    #[serde(default = "default_retry_initial_secs")]
    pub retry_initial_secs: u64,
    /// Longest wait between two delivery attempts.
    #[serde(default = "default_retry_max_secs")]
    pub retry_max_secs: u64,
    /// Time limit of each step of the SMTP session: connecting, the TLS handshake, each
    /// reply of the relay.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// How long a claimed e-mail stays reserved for the worker that claimed it.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// E-mails claimed at once.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// Outcomes recorded per transaction (a group is committed while the next is sent). A
    /// killed worker sends at most twice this many e-mails again (accepted by the relay, not
    /// yet recorded): smaller is fewer duplicates, larger is fewer commits.
    #[serde(default = "default_record_every")]
    pub record_every: u32,
}

fn default_notice_days() -> Vec<u32> {
    vec![30, 10]
}
fn default_language() -> String {
    "ja".into()
}
fn default_interval_secs() -> u64 {
    300
}
fn default_retry_initial_secs() -> u64 {
    60
}
fn default_retry_max_secs() -> u64 {
    3600
}
fn default_timeout_secs() -> u64 {
    30
}
fn default_lease_secs() -> u64 {
    600
}
fn default_batch() -> u32 {
    50
}
fn default_record_every() -> u32 {
    5
}

impl NotifyConfig {
    /// Where the SMTP password is read from, when a user is configured.
    pub fn password_source(&self) -> Result<Option<SecretSource>, ConfigError> {
        match (&self.user, &self.password_env, &self.password_file) {
            (None, None, None) => Ok(None),
            (None, _, _) => Err(ConfigError::Invalid(
                "[notify] names a password source but no user".into(),
            )),
            (Some(_), Some(var), None) => Ok(Some(SecretSource::Env(var.clone()))),
            (Some(_), None, Some(path)) => Ok(Some(SecretSource::File(path.clone()))),
            (Some(_), None, None) => Err(ConfigError::Invalid(
                "[notify] sets user but neither password_env nor password_file".into(),
            )),
            (Some(_), Some(_), Some(_)) => Err(ConfigError::Invalid(
                "[notify] sets both password_env and password_file; keep one".into(),
            )),
        }
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if !(self.smtp_url.starts_with("smtp://") || self.smtp_url.starts_with("smtps://")) {
            return invalid(format!(
                "[notify] smtp_url must start with smtp:// or smtps://, not {:?}",
                self.smtp_url
            ));
        }
        if self.from.trim().is_empty() {
            return invalid("[notify] from must name the sender address".into());
        }
        if self.notice_days.is_empty() || self.notice_days.iter().any(|d| *d == 0 || *d > 365) {
            return invalid("[notify] notice_days must list days between 1 and 365".into());
        }
        if !matches!(self.language.as_str(), "ja" | "en") {
            return invalid(format!(
                "[notify] language must be ja or en, not {:?}",
                self.language
            ));
        }
        if self.utc_offset_minutes.is_some_and(|m| m.abs() > 18 * 60) {
            return invalid("[notify] utc_offset_minutes must be within ±1080".into());
        }
        if self.interval_secs == 0 || self.retry_initial_secs == 0 || self.timeout_secs == 0 {
            return invalid(
                "[notify] interval_secs, retry_initial_secs and timeout_secs must be positive"
                    .into(),
            );
        }
        if self.retry_max_secs < self.retry_initial_secs {
            return invalid("[notify] retry_max_secs must not be below retry_initial_secs".into());
        }
        // A lease shorter than one SMTP conversation could let a second worker send again.
        if self.lease_secs <= self.timeout_secs * 2 {
            return invalid("[notify] lease_secs must exceed twice timeout_secs".into());
        }
        if self.batch == 0 || self.batch > 1000 {
            return invalid("[notify] batch must be between 1 and 1000".into());
        }
        if self.record_every == 0 || self.record_every > self.batch {
            return invalid("[notify] record_every must be between 1 and batch".into());
        }
        self.password_source()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> NotifyConfig {
        toml::from_str("smtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"a@b.example\"").unwrap()
    }

    #[test]
    fn defaults_follow_the_scheme() {
        let n = minimal();
        assert_eq!(n.notice_days, vec![30, 10]);
        assert_eq!(n.language, "ja");
        n.check().unwrap();
        assert_eq!(n.password_source().unwrap(), None);
    }

    #[test]
    fn a_user_needs_exactly_one_password_source() {
        let mut n = minimal();
        n.user = Some("relay".into());
        assert!(n.check().is_err());
        n.password_env = Some("SMTP_PW".into());
        assert_eq!(
            n.password_source().unwrap(),
            Some(SecretSource::Env("SMTP_PW".into()))
        );
        n.password_file = Some("/x".into());
        assert!(n.check().is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        let mut n = minimal();
        n.smtp_url = "http://x".into();
        assert!(n.check().is_err());
        let mut n = minimal();
        n.notice_days = vec![30, 0];
        assert!(n.check().is_err());
        let mut n = minimal();
        n.language = "fr".into();
        assert!(n.check().is_err());
    }
}
