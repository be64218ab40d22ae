//! Column lists and row-to-record decoding, shared by both backends.
//!
//! Macros rather than functions because one body must decode a `SqliteRow` and a `PgRow`
//! alike. Nothing here queries: callers run the SQL and hand over the row.

use super::{CertStatus, Role, StoreError};

/// The columns of a certificate (for `SELECT ... FROM certificates` and `RETURNING`).
macro_rules! cert_cols {
    () => {
        "serial, login, contract_id, ca_id, der, sha256, spki_sha256, not_before, not_after, \
         status, superseded_at, revoked_at, revocation_reason, first_used_at, created_at"
    };
}
pub(crate) use cert_cols;

/// The columns of a certificate prefixed by the alias `c`, for joins.
macro_rules! cert_cols_c {
    () => {
        "c.serial, c.login, c.contract_id, c.ca_id, c.der, c.sha256, c.spki_sha256, \
         c.not_before, c.not_after, c.status, c.superseded_at, c.revoked_at, \
         c.revocation_reason, c.first_used_at, c.created_at"
    };
}
pub(crate) use cert_cols_c;

/// Decodes a row selected with `cert_cols!` into a [`super::CertRecord`].
macro_rules! cert_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        $crate::store::CertRecord {
            serial: row.try_get("serial")?,
            login: row.try_get("login")?,
            contract_id: row.try_get("contract_id")?,
            ca_id: row.try_get("ca_id")?,
            der: row.try_get("der")?,
            sha256: row.try_get("sha256")?,
            spki_sha256: row.try_get("spki_sha256")?,
            not_before: row.try_get("not_before")?,
            not_after: row.try_get("not_after")?,
            status: $crate::store::rows::status(&row.try_get::<String, _>("status")?)?,
            superseded_at: row.try_get("superseded_at")?,
            revoked_at: row.try_get("revoked_at")?,
            revocation_reason: row.try_get("revocation_reason")?,
            first_used_at: row.try_get("first_used_at")?,
            created_at: row.try_get("created_at")?,
        }
    }};
}
pub(crate) use cert_from_row;

macro_rules! contract_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        $crate::store::Contract {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            enabled: row.try_get("enabled")?,
            created_at: row.try_get("created_at")?,
        }
    }};
}
pub(crate) use contract_from_row;

macro_rules! user_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        $crate::store::User {
            login: row.try_get("login")?,
            contract_id: row.try_get("contract_id")?,
            role: $crate::store::rows::role(&row.try_get::<String, _>("role")?)?,
            email: row.try_get("email")?,
            enabled: row.try_get("enabled")?,
            created_at: row.try_get("created_at")?,
        }
    }};
}
pub(crate) use user_from_row;

macro_rules! code_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        $crate::store::CodeRecord {
            login: row.try_get("login")?,
            code_hash: row.try_get("code_hash")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            failed_attempts: row.try_get("failed_attempts")?,
            locked: row.try_get("locked")?,
            used_at: row.try_get("used_at")?,
            used_serial: row.try_get("used_serial")?,
        }
    }};
}
pub(crate) use code_from_row;

macro_rules! ca_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        $crate::store::CaRecord {
            id: row.try_get("id")?,
            key_label: row.try_get("key_label")?,
            cert_der: row.try_get("cert_der")?,
            chain_pem: row.try_get("chain_pem")?,
            active: row.try_get("active")?,
            created_at: row.try_get("created_at")?,
        }
    }};
}
pub(crate) use ca_from_row;

macro_rules! audit_from_row {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = &$row;
        $crate::store::AuditRecord {
            seq: row.try_get("seq")?,
            at: row.try_get("at")?,
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            subject: row.try_get("subject")?,
            outcome: row.try_get("outcome")?,
            detail: row.try_get("detail")?,
            prev_hash: row.try_get("prev_hash")?,
            hash: row.try_get("hash")?,
        }
    }};
}
pub(crate) use audit_from_row;

/// Parses a stored status; an unknown one means the data is corrupt.
pub(crate) fn status(s: &str) -> Result<CertStatus, StoreError> {
    s.parse().map_err(StoreError::Corrupt)
}

/// Parses a stored role; an unknown one means the data is corrupt.
pub(crate) fn role(s: &str) -> Result<Role, StoreError> {
    s.parse().map_err(StoreError::Corrupt)
}
