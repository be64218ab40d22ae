//! The JSON documents `--format json` prints: one small view per thing listed or shown,
//! so the field names scripts rely on are written here, once, and not taken from store
//! types that may change. docs/cli.md lists the same fields; the unit tests below fail
//! when a name changes.
//!
//! Conventions: snake_case names; times are Unix seconds (UTC), like `audit export`,
//! `audit checkpoint` and `audit signatures`; a value that does not apply is `null`, never
//! left out.

use serde::Serialize;

use crate::clock::UnixTime;
use crate::notify::PassReport;
use crate::store::{CaRecord, CertRecord, Contract, OutboxRow, OutboxState, StaffMember, User};

/// Prints `value` as one pretty-printed JSON document on stdout.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `contract list`: one per contract.
#[derive(Debug, Serialize)]
pub struct ContractView<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub enabled: bool,
    pub created_at: UnixTime,
}

impl<'a> From<&'a Contract> for ContractView<'a> {
    fn from(c: &'a Contract) -> Self {
        Self {
            id: &c.id,
            name: &c.name,
            enabled: c.enabled,
            created_at: c.created_at,
        }
    }
}

/// `user list`: one per login ID.
#[derive(Debug, Serialize)]
pub struct UserView<'a> {
    pub login: &'a str,
    pub contract_id: &'a str,
    /// `admin`, `approver` or `general`.
    pub role: &'static str,
    pub email: &'a str,
    pub enabled: bool,
    pub created_at: UnixTime,
}

impl<'a> From<&'a User> for UserView<'a> {
    fn from(u: &'a User) -> Self {
        Self {
            login: &u.login,
            contract_id: &u.contract_id,
            role: u.role.as_str(),
            email: &u.email,
            enabled: u.enabled,
            created_at: u.created_at,
        }
    }
}

/// `staff list`: one per staff member.
#[derive(Debug, Serialize)]
pub struct StaffView<'a> {
    pub name: &'a str,
    /// `operator`, `supervisor` or `auditor`.
    pub role: &'static str,
    pub email: &'a str,
    pub enabled: bool,
    pub created_at: UnixTime,
}

impl<'a> From<&'a StaffMember> for StaffView<'a> {
    fn from(m: &'a StaffMember) -> Self {
        Self {
            name: &m.name,
            role: m.role.as_str(),
            email: &m.email,
            enabled: m.enabled,
            created_at: m.created_at,
        }
    }
}

/// `cert list`: one per client certificate.
#[derive(Debug, Serialize)]
pub struct CertView<'a> {
    /// Lower-case hex without separators.
    pub serial: &'a str,
    pub login: &'a str,
    pub contract_id: &'a str,
    pub ca_id: i64,
    /// `current`, `superseded` or `revoked`.
    pub status: &'static str,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    pub superseded_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
    /// RFC 5280 reason name, e.g. `keyCompromise`.
    pub revocation_reason: Option<&'a str>,
    pub first_used_at: Option<UnixTime>,
    pub created_at: UnixTime,
    /// SHA-256 of the DER certificate, hex.
    pub sha256: &'a str,
}

impl<'a> From<&'a CertRecord> for CertView<'a> {
    fn from(c: &'a CertRecord) -> Self {
        Self {
            serial: &c.serial,
            login: &c.login,
            contract_id: &c.contract_id,
            ca_id: c.ca_id,
            status: c.status.as_str(),
            not_before: c.not_before,
            not_after: c.not_after,
            superseded_at: c.superseded_at,
            revoked_at: c.revoked_at,
            revocation_reason: c.revocation_reason.as_deref(),
            first_used_at: c.first_used_at,
            created_at: c.created_at,
            sha256: &c.sha256,
        }
    }
}

/// `cert show`: the listed fields, the subject and the certificate.
#[derive(Debug, Serialize)]
pub struct CertShowView<'a> {
    #[serde(flatten)]
    pub cert: CertView<'a>,
    /// The subject DN as text, as `ca list` prints it; `null` if the certificate does not
    /// parse.
    pub subject: Option<String>,
    pub pem: String,
}

/// `ca list`: one per CA, active or retired.
#[derive(Debug, Serialize)]
pub struct CaView<'a> {
    pub id: i64,
    pub active: bool,
    /// Label of the CA's key in the token.
    pub key_label: &'a str,
    /// `self` (self-signed) or `chain` (signed by an outside root).
    pub issued_by: &'static str,
    /// The three below are `null` if the stored certificate does not parse.
    pub subject: Option<String>,
    pub not_before: Option<UnixTime>,
    pub not_after: Option<UnixTime>,
    pub created_at: UnixTime,
}

impl<'a> From<&'a CaRecord> for CaView<'a> {
    fn from(c: &'a CaRecord) -> Self {
        let parsed = x509_parser::parse_x509_certificate(&c.cert_der).ok();
        let cert = parsed.as_ref().map(|(_, cert)| cert);
        Self {
            id: c.id,
            active: c.active,
            key_label: &c.key_label,
            issued_by: if c.chain_pem.is_empty() {
                "self"
            } else {
                "chain"
            },
            subject: cert.map(|x| x.subject().to_string()),
            not_before: cert.map(|x| x.validity().not_before.timestamp()),
            not_after: cert.map(|x| x.validity().not_after.timestamp()),
            created_at: c.created_at,
        }
    }
}

/// `ca cert`: the listed fields, the certificate and the chain above it.
#[derive(Debug, Serialize)]
pub struct CaShowView<'a> {
    #[serde(flatten)]
    pub ca: CaView<'a>,
    pub pem: String,
    /// PEM of the chain up to the root, nearest issuer first; empty when self-signed.
    pub chain_pem: &'a str,
}

/// `notify list`: one per outbox e-mail (the body is left out).
#[derive(Debug, Serialize)]
pub struct OutboxView<'a> {
    pub id: i64,
    pub serial: &'a str,
    /// The notice: days before expiry it was due.
    pub notice_days: i64,
    pub login: &'a str,
    pub recipient: &'a str,
    pub language: &'a str,
    pub subject: &'a str,
    /// `pending`, `sent`, `failed` or `cancelled`.
    pub state: &'static str,
    pub attempts: i64,
    /// The next try; `null` unless pending.
    pub next_attempt_at: Option<UnixTime>,
    pub last_error: Option<&'a str>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    pub sent_at: Option<UnixTime>,
}

impl<'a> From<&'a OutboxRow> for OutboxView<'a> {
    fn from(r: &'a OutboxRow) -> Self {
        Self {
            id: r.id,
            serial: &r.serial,
            notice_days: r.notice_days,
            login: &r.login,
            recipient: &r.recipient,
            language: &r.language,
            subject: &r.subject,
            state: r.state.as_str(),
            attempts: r.attempts,
            next_attempt_at: (r.state == OutboxState::Pending).then_some(r.next_attempt_at),
            last_error: r.last_error.as_deref(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            sent_at: r.sent_at,
        }
    }
}

/// `notify run`: what the pass did and the outbox after it.
#[derive(Debug, Serialize)]
pub struct PassView {
    pub scheduled: u64,
    pub sent: u64,
    pub retried: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub lost_claims: u64,
    pub outbox: OutboxCountsView,
}

/// Outbox e-mails per state.
#[derive(Debug, Serialize)]
pub struct OutboxCountsView {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    pub cancelled: u64,
}

impl From<&PassReport> for PassView {
    fn from(r: &PassReport) -> Self {
        Self {
            scheduled: r.scheduled,
            sent: r.sent,
            retried: r.retried,
            failed: r.failed,
            cancelled: r.cancelled,
            lost_claims: r.lost_claims,
            outbox: OutboxCountsView {
                pending: r.outbox.pending,
                sent: r.outbox.sent,
                failed: r.outbox.failed,
                cancelled: r.outbox.cancelled,
            },
        }
    }
}

/// `audit verify`: the whole report when intact; `intact: false` and the problem otherwise
/// (the counts are then `null`).
#[derive(Debug, Default, Serialize)]
pub struct VerifyView {
    pub intact: bool,
    pub problem: Option<String>,
    pub entries: Option<i64>,
    pub last_hash: Option<String>,
    /// Signed checkpoints whose signature was checked.
    pub checkpoints: Option<usize>,
    /// The newest checkpointed record.
    pub last_checkpointed: Option<i64>,
    /// The anchors found outside the database, each reached.
    pub anchors: Vec<AnchorView>,
}

/// An audit anchor and where it was read.
#[derive(Debug, Serialize)]
pub struct AnchorView {
    /// `the HSM` or the anchor file's path.
    pub source: String,
    /// The audit record it covers.
    pub seq: i64,
}

/// `config check`.
#[derive(Debug, Serialize)]
pub struct ConfigCheckView {
    pub config_file: String,
    pub valid: bool,
    /// Why the configuration was refused; `null` when valid.
    pub problem: Option<String>,
    /// What is valid but weaker than it could be, one sentence each; empty when nothing.
    pub warnings: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CertStatus, Role};

    /// The top-level field names of `value`'s JSON object, sorted.
    fn keys(value: &impl Serialize) -> Vec<String> {
        match serde_json::to_value(value).expect("serializes") {
            serde_json::Value::Object(m) => {
                let mut k: Vec<String> = m.keys().cloned().collect();
                k.sort();
                k
            }
            other => panic!("not an object: {other}"),
        }
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn the_documented_field_names_do_not_drift() {
        let contract = Contract {
            id: "corp1".into(),
            name: "Example".into(),
            enabled: true,
            created_at: 1,
        };
        assert_eq!(
            keys(&ContractView::from(&contract)),
            sorted(&["id", "name", "enabled", "created_at"])
        );
        let user = User {
            login: "alice".into(),
            contract_id: "corp1".into(),
            role: Role::Admin,
            email: "a@example.com".into(),
            enabled: false,
            created_at: 1,
        };
        let v = serde_json::to_value(UserView::from(&user)).expect("user");
        assert_eq!(v["role"], "admin");
        assert_eq!(v["enabled"], false);
        assert_eq!(
            keys(&UserView::from(&user)),
            sorted(&[
                "login",
                "contract_id",
                "role",
                "email",
                "enabled",
                "created_at"
            ])
        );
        let member = StaffMember {
            name: "hanako".into(),
            role: crate::store::StaffRole::Supervisor,
            email: "h@bank.example".into(),
            enabled: true,
            created_at: 1,
        };
        assert_eq!(
            serde_json::to_value(StaffView::from(&member)).expect("staff")["role"],
            "supervisor"
        );
        assert_eq!(
            keys(&StaffView::from(&member)),
            sorted(&["name", "role", "email", "enabled", "created_at"])
        );
        let cert = CertRecord {
            serial: "0a".into(),
            login: "alice".into(),
            contract_id: "corp1".into(),
            ca_id: 1,
            der: vec![],
            sha256: "00".into(),
            spki_sha256: "11".into(),
            not_before: 1,
            not_after: 2,
            status: CertStatus::Revoked,
            superseded_at: None,
            revoked_at: Some(3),
            revocation_reason: Some("keyCompromise".into()),
            first_used_at: None,
            created_at: 1,
        };
        let listed = [
            "serial",
            "login",
            "contract_id",
            "ca_id",
            "status",
            "not_before",
            "not_after",
            "superseded_at",
            "revoked_at",
            "revocation_reason",
            "first_used_at",
            "created_at",
            "sha256",
        ];
        assert_eq!(keys(&CertView::from(&cert)), sorted(&listed));
        let shown = CertShowView {
            cert: CertView::from(&cert),
            subject: None,
            pem: String::new(),
        };
        let mut with_pem = listed.to_vec();
        with_pem.extend(["subject", "pem"]);
        assert_eq!(keys(&shown), sorted(&with_pem));
        let v = serde_json::to_value(&shown).expect("cert");
        assert_eq!(v["status"], "revoked");
        // A value that does not apply is null, not missing.
        assert!(v["superseded_at"].is_null() && v.get("superseded_at").is_some());

        let ca = CaRecord {
            id: 1,
            key_label: "k".into(),
            cert_der: vec![1, 2],
            chain_pem: String::new(),
            active: true,
            created_at: 1,
        };
        let v = serde_json::to_value(CaView::from(&ca)).expect("ca");
        assert_eq!(v["issued_by"], "self");
        assert!(v["subject"].is_null(), "unparsable certificate: {v}");
        assert_eq!(
            keys(&CaView::from(&ca)),
            sorted(&[
                "id",
                "active",
                "key_label",
                "issued_by",
                "subject",
                "not_before",
                "not_after",
                "created_at"
            ])
        );
        assert_eq!(
            keys(&VerifyView::default()),
            sorted(&[
                "intact",
                "problem",
                "entries",
                "last_hash",
                "checkpoints",
                "last_checkpointed",
                "anchors"
            ])
        );
        assert_eq!(
            keys(&PassView::from(&PassReport::default())),
            sorted(&[
                "scheduled",
                "sent",
                "retried",
                "failed",
                "cancelled",
                "lost_claims",
                "outbox"
            ])
        );
    }
}
