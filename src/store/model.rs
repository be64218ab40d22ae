//! Plain records as the store keeps them. Timestamps are Unix seconds (UTC); serials are
//! lowercase hex without separators; hashes are lowercase hex SHA-256.
//!
//! The records decode from rows with `#[derive(sqlx::FromRow)]`, the same code for SQLite and
//! PostgreSQL (integers are `i64` on both: the PostgreSQL columns are `BIGINT`; statuses and
//! roles are stored as text and parsed through `TryFrom<String>`, an unknown one surfacing as
//! `StoreError::Corrupt`).

use crate::clock::UnixTime;

/// A customer's role within its contract (seed: 管理者 / 承認者 / 一般者).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// 管理者: manages the contract's other IDs.
    Admin,
    /// 承認者: approves transactions.
    Approver,
    /// 一般者: everyday use.
    General,
}

impl Role {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Approver => "approver",
            Self::General => "general",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Self::Admin),
            "approver" => Ok(Self::Approver),
            "general" => Ok(Self::General),
            other => Err(format!(
                "unknown role {other:?}: expected admin, approver or general"
            )),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    /// Decoding a stored role (`#[sqlx(try_from = "String")]`).
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A customer contract: the tenant boundary.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Contract {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub created_at: UnixTime,
}

/// A login ID. One current certificate at most, on one PC.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub login: String,
    pub contract_id: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub email: String,
    pub enabled: bool,
    pub created_at: UnixTime,
}

/// Where a certificate stands. Expiry is not a status: it follows from `not_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertStatus {
    /// The login ID's certificate in use. At most one per login ID (enforced by the schema).
    Current,
    /// Replaced by a renewal; still accepted until `superseded_at + grace` or until the new
    /// certificate is first used, then revoked with reason `superseded`.
    Superseded,
    /// Revoked; listed on the CRL.
    Revoked,
}

impl CertStatus {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Superseded => "superseded",
            Self::Revoked => "revoked",
        }
    }
}

impl std::str::FromStr for CertStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "current" => Ok(Self::Current),
            "superseded" => Ok(Self::Superseded),
            "revoked" => Ok(Self::Revoked),
            other => Err(format!("unknown certificate status {other:?}")),
        }
    }
}

impl TryFrom<String> for CertStatus {
    type Error = String;
    /// Decoding a stored status (`#[sqlx(try_from = "String")]`).
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// An issued certificate with everything needed to check it without parsing the DER again.
/// Decoded from the columns of `rows::cert_cols!`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CertRecord {
    pub serial: String,
    pub login: String,
    pub contract_id: String,
    /// The CA that issued it (see [`CaRecord::id`]).
    pub ca_id: i64,
    pub der: Vec<u8>,
    /// SHA-256 of the DER certificate.
    pub sha256: String,
    /// SHA-256 of the DER SubjectPublicKeyInfo; ties a retried enrollment to the same key.
    pub spki_sha256: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    #[sqlx(try_from = "String")]
    pub status: CertStatus,
    pub superseded_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    /// RFC 5280 reason name (e.g. `keyCompromise`, `superseded`).
    pub revocation_reason: Option<String>,
    /// When the gateway first saw this certificate in use (ends a predecessor's grace).
    pub first_used_at: Option<UnixTime>,
    pub created_at: UnixTime,
}

/// A CA certificate whose key lives in the HSM. Several exist during a rollover; exactly one
/// is active (issues new certificates).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CaRecord {
    pub id: i64,
    /// Label of the key object in the token.
    pub key_label: String,
    pub cert_der: Vec<u8>,
    /// PEM of the chain above this CA certificate (empty for a self-signed root).
    pub chain_pem: String,
    pub active: bool,
    pub created_at: UnixTime,
}

/// The stored side of a one-time issuance code. The code itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CodeRecord {
    pub login: String,
    pub code_hash: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub failed_attempts: i64,
    pub locked: bool,
    /// Set when the code has been redeemed.
    pub used_at: Option<UnixTime>,
    /// The certificate it was redeemed for.
    pub used_serial: Option<String>,
}

/// Everything the gateway needs to decide whether a presented certificate may pass,
/// read in one query.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CertStatusView {
    #[sqlx(flatten)]
    pub cert: CertRecord,
    #[sqlx(try_from = "String")]
    pub role: Role,
    pub user_enabled: bool,
    pub contract_enabled: bool,
    /// When the login ID was disabled (set while it is).
    pub user_disabled_at: Option<UnixTime>,
    /// When the contract was disabled (set while it is).
    pub contract_disabled_at: Option<UnixTime>,
}

impl CertStatusView {
    /// The facts the status rule reads.
    pub fn facts(&self) -> StatusFacts {
        let c = &self.cert;
        StatusFacts {
            serial: c.serial.clone(),
            ca_id: c.ca_id,
            not_before: c.not_before,
            not_after: c.not_after,
            status: c.status,
            superseded_at: c.superseded_at,
            revoked_at: c.revoked_at,
            revocation_reason: c.revocation_reason.clone(),
            created_at: c.created_at,
            user_enabled: self.user_enabled,
            user_disabled_at: self.user_disabled_at,
            contract_enabled: self.contract_enabled,
            contract_disabled_at: self.contract_disabled_at,
        }
    }
}

/// What decides a certificate's status (gateway, OCSP and CRL alike), without its DER: the
/// CRL reads one per listed certificate. A server certificate has no login ID or contract:
/// both count as enabled.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatusFacts {
    pub serial: String,
    pub ca_id: i64,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    #[sqlx(try_from = "String")]
    pub status: CertStatus,
    pub superseded_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    pub revocation_reason: Option<String>,
    pub created_at: UnixTime,
    pub user_enabled: bool,
    pub user_disabled_at: Option<UnixTime>,
    pub contract_enabled: bool,
    pub contract_disabled_at: Option<UnixTime>,
}

/// A TLS server certificate signed by `ca issue-server`: stored so that OCSP and the CRL
/// answer for it like for any certificate the CA key signed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ServerCertRecord {
    pub serial: String,
    pub ca_id: i64,
    /// The DNS names and IP addresses, comma-separated.
    pub names: String,
    pub der: Vec<u8>,
    pub sha256: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    /// `Current` or `Revoked` (a server certificate is never superseded).
    #[sqlx(try_from = "String")]
    pub status: CertStatus,
    pub revoked_at: Option<UnixTime>,
    pub revocation_reason: Option<String>,
    pub created_at: UnixTime,
}

impl ServerCertRecord {
    /// The facts the status rule reads.
    pub fn facts(&self) -> StatusFacts {
        StatusFacts {
            serial: self.serial.clone(),
            ca_id: self.ca_id,
            not_before: self.not_before,
            not_after: self.not_after,
            status: self.status,
            superseded_at: None,
            revoked_at: self.revoked_at,
            revocation_reason: self.revocation_reason.clone(),
            created_at: self.created_at,
            user_enabled: true,
            user_disabled_at: None,
            contract_enabled: true,
            contract_disabled_at: None,
        }
    }
}

/// One audit entry as written. `prev_hash` and `hash` chain every entry to the one before.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: UnixTime,
    /// Who acted: `staff:<os user>`, `user:<login>`, `system`.
    pub actor: String,
    /// What happened, e.g. `cert.issue`, `code.refused`, `cert.revoke`.
    pub action: String,
    /// What it happened to, e.g. a login ID or serial.
    pub subject: String,
    /// `ok` or `refused`.
    pub outcome: String,
    /// Free JSON with details (never a secret).
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

/// An audit entry before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    pub at: UnixTime,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: String,
    pub detail: serde_json::Value,
}
