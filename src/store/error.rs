//! Errors of the store, split by what the caller can do about them.
//!
//! Owns the mapping from `sqlx` errors to [`StoreError`]. Messages name the thing concerned
//! (a login ID, a serial) but never carry SQL text or secrets.

use sqlx::error::ErrorKind;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The change conflicts with what is stored (duplicate id, state moved on meanwhile).
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached or answered with an error; retrying later may help.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database refused a value as invalid (PostgreSQL's data exceptions, SQLSTATE
    /// class 22: e.g. a NUL byte in text). Not a reason to retry, and not the database
    /// being down: the same value is refused again, and other operations are not at fault.
    #[error("the database refused a value: {0}")]
    InvalidValue(String),
    /// Stored data violates an invariant (e.g. an unknown status string).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// The group commit that carried this operation failed as a whole (see
    /// `issue_writer`): every operation in it got this error and none of them was stored.
    #[error(transparent)]
    Batch(std::sync::Arc<StoreError>),
    /// Migrations failed.
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    /// The fallback mapping. Operations that insert map unique and foreign-key violations
    /// themselves (see [`on_violation`]) so the message can name the thing.
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
                Self::Conflict("a record with the same key already exists".into())
            }
            // The source says why (e.g. an unknown status name); decoders never quote
            // secrets, and the store keeps none in clear.
            sqlx::Error::ColumnDecode { index, source } => {
                Self::Corrupt(format!("column {index} cannot be decoded: {source}"))
            }
            // The server's message names the problem (e.g. `invalid byte sequence for
            // encoding "UTF8": 0x00`), never the value.
            sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")) => {
                Self::InvalidValue(db.message().to_owned())
            }
            sqlx::Error::Encode(_) => Self::InvalidValue("a value cannot be encoded".into()),
            sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
                Self::Corrupt("a stored row cannot be decoded".into())
            }
            _ => Self::Unavailable(e),
        }
    }
}

impl StoreError {
    /// Whether the database refused a value (also as the cause of a failed group commit):
    /// what running each job of the batch on its own isolates.
    pub fn is_invalid_value(&self) -> bool {
        match self {
            Self::InvalidValue(_) => true,
            Self::Batch(shared) => shared.is_invalid_value(),
            _ => false,
        }
    }
}

/// Maps a unique violation to `Conflict(conflict)` and a foreign-key violation to
/// `NotFound(missing)`; anything else goes through the fallback mapping.
pub(crate) fn on_violation(
    e: sqlx::Error,
    conflict: impl FnOnce() -> String,
    missing: impl FnOnce() -> String,
) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        match db.kind() {
            ErrorKind::UniqueViolation => return StoreError::Conflict(conflict()),
            ErrorKind::ForeignKeyViolation => return StoreError::NotFound(missing()),
            _ => {}
        }
    }
    StoreError::from(e)
}
