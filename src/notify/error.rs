//! Errors of the notice scheduler and sender.
//!
//! Owns the split between what stops a pass (the store is unavailable, the configuration
//! cannot be used) and what does not: a refused e-mail is not an error here but a row state.

use crate::config::SecretError;
use crate::store::StoreError;

/// A notice pass, or setting one up, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The `[notify]` section cannot be used as written.
    #[error("notice configuration: {0}")]
    Config(String),
    /// The SMTP password could not be read.
    #[error("cannot read the SMTP password")]
    Secret(#[source] SecretError),
    /// A template or root-certificate file could not be read.
    #[error("cannot read {0}")]
    Template(String, #[source] std::io::Error),
    /// The SMTP transport could not be set up (e.g. unusable TLS roots).
    #[error("cannot set up the SMTP transport: {0}")]
    Transport(String),
    /// The task recording outcomes ended abnormally; the pass stops, unrecorded rows are
    /// sent again after their lease.
    #[error("recording expiry-notice outcomes failed: {0}")]
    Record(String),
    /// The store failed; the pass stops and the next one starts over.
    #[error("the notice store failed")]
    Store(#[from] StoreError),
}
