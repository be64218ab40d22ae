//! Errors of the store, split by what the caller can do about them.

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
    /// Stored data violates an invariant (e.g. an unknown status string).
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// Migrations failed.
    #[error("database migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}
