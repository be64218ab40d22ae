//! Column lists shared by both backends. Nothing here queries or decodes: rows decode into
//! the records of `model` with `#[derive(sqlx::FromRow)]`.
//!
//! Macros rather than constants because the lists are spliced into statements with
//! `concat!`, which takes only literals.

/// The columns of a certificate (for `SELECT ... FROM certificates` and `RETURNING`), as
/// [`super::CertRecord`] decodes them.
macro_rules! cert_cols {
    () => {
        "serial, login, contract_id, ca_id, der, sha256, spki_sha256, not_before, not_after, \
         status, superseded_at, revoked_at, revocation_reason, first_used_at, created_at"
    };
}
pub(crate) use cert_cols;

/// The columns of a signature intent, as [`super::SignatureIntent`] decodes them.
macro_rules! intent_cols {
    () => {
        "serial, ca_id, kind, subject, spki_sha256, state, reason, created_at, settled_at, \
         not_before, not_after"
    };
}
pub(crate) use intent_cols;

/// The columns of a certificate prefixed by the alias `c`, for joins (the result columns
/// keep their bare names, so [`super::CertRecord`] decodes them alike).
macro_rules! cert_cols_c {
    () => {
        "c.serial, c.login, c.contract_id, c.ca_id, c.der, c.sha256, c.spki_sha256, \
         c.not_before, c.not_after, c.status, c.superseded_at, c.revoked_at, \
         c.revocation_reason, c.first_used_at, c.created_at"
    };
}
pub(crate) use cert_cols_c;

/// The columns of [`super::StatusFacts`] from `certificates c` joined with `users u` and
/// `contracts k`.
macro_rules! facts_cols {
    () => {
        "c.serial, c.ca_id, c.not_before, c.not_after, c.status, c.superseded_at, \
         c.revoked_at, c.revocation_reason, c.created_at, u.enabled AS user_enabled, \
         u.disabled_at AS user_disabled_at, k.enabled AS contract_enabled, \
         k.disabled_at AS contract_disabled_at"
    };
}
pub(crate) use facts_cols;
