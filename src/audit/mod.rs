//! The audit log: every security event (issuance, refusal, revocation, admin action) goes
//! here, hash-chained in the store, and pinned from time to time by checkpoints signed in
//! the HSM (`checkpoint`), each checkpoint also anchored outside the database (`anchor`).
//! Details are JSON and never contain a secret.

pub mod anchor;
mod checkpoint;
pub mod clean;
mod host;
pub mod refusal_log;
pub mod signatures;
mod verify;

pub use checkpoint::{
    CheckpointError, CheckpointKeys, checkpoint_hash, checkpoint_message, checkpoint_message_v2,
    make_checkpoint, signed_message,
};
pub use host::HostUserError;
pub use verify::{
    AnchorPlace, AnchorSeen, ChainReport, VerifyError, anchors_present, anchors_reached, export,
    signed_restores, verify_chain, verify_with_checkpoints,
};

use crate::clock::UnixTime;
use crate::store::{NewAudit, Store};

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A bank staff member, authenticated by a staff certificate (the member's name).
    Staff(String),
    /// Someone at the command line on the gateway host: the process's real uid and its
    /// user name ([`Actor::host`]).
    Host { user: String, uid: u32 },
    /// A customer, authenticated by certificate or by login ID and code.
    User(String),
    /// An anonymous caller (e.g. a wrong code for an unknown login ID), by address.
    Anonymous(String),
    /// certgate itself (scheduler, retirement of superseded certificates).
    System,
    /// A four-eyes action run on approval: asked for by `maker`, approved by `checker`
    /// (staff names), as request `request`. Both people are in every entry it writes.
    FourEyes {
        maker: String,
        checker: String,
        request: i64,
    },
}

impl Actor {
    /// Whoever runs this process on the host, by its real uid (never an environment
    /// variable, which the caller chooses).
    pub fn host() -> Result<Self, HostUserError> {
        let (user, uid) = host::current()?;
        Ok(Self::Host { user, uid })
    }

    /// Whether this is bank staff (a staff member or the host's command line), who may see
    /// precise refusal reasons.
    pub fn is_bank(&self) -> bool {
        matches!(self, Self::Staff(_) | Self::Host { .. })
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Staff(n) => write!(f, "staff:{n}"),
            Self::Host { user, .. } => write!(f, "host:{user}"),
            Self::User(n) => write!(f, "user:{n}"),
            Self::Anonymous(a) => write!(f, "anonymous:{a}"),
            Self::System => f.write_str("system"),
            Self::FourEyes {
                maker,
                checker,
                request,
            } => write!(
                f,
                "staff:{checker} (approving request {request} of staff:{maker})"
            ),
        }
    }
}

/// The actions that wait for a second staff member's approval on the staff console (the
/// default set). Done from the host's command line they bypass that, and their audit
/// entries say so with `"break_glass": true`.
pub const FOUR_EYES_ACTIONS: &[&str] = &[
    "cert.reissue",
    "cert.revoke",
    "contract.disable",
    "staff.add",
    "staff.role",
    "staff.disable",
];

/// An audit entry, for [`Audit::record`] or for an operation that appends it in its own
/// transaction. Every entry is built here, so this is where its text is made safe to store
/// ([`clean`]): the chained hash covers the cleaned text, exactly as stored.
pub fn entry(
    at: UnixTime,
    actor: &Actor,
    action: &str,
    subject: &str,
    outcome: Outcome,
    detail: serde_json::Value,
) -> NewAudit {
    let mut detail = clean::clean_detail(detail);
    if matches!(actor, Actor::Host { .. })
        && outcome == Outcome::Ok
        && FOUR_EYES_ACTIONS.contains(&action)
        && let Some(fields) = detail.as_object_mut()
    {
        fields.insert("break_glass".into(), serde_json::Value::Bool(true));
    }
    let text = |s: &str| clean::clean(s, clean::MAX_SUBJECT_CHARS).into_owned();
    NewAudit {
        at,
        actor: text(&actor.to_string()),
        action: text(action),
        subject: text(subject),
        outcome: outcome.as_str().into(),
        detail,
    }
}

/// Writes audit entries.
#[derive(Debug, Clone)]
pub struct Audit {
    store: Store,
}

impl Audit {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Appends an entry. A failure is logged loudly and returned; callers decide whether
    /// the operation may go on (refusals still refuse).
    pub async fn record(
        &self,
        at: UnixTime,
        actor: &Actor,
        action: &str,
        subject: &str,
        outcome: Outcome,
        detail: serde_json::Value,
    ) -> Result<(), crate::store::StoreError> {
        let entry = entry(at, actor, action, subject, outcome, detail);
        match self.store.append_audit(&entry).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(action, subject, error = %e, "cannot write the audit log");
                Err(e)
            }
        }
    }
}

/// Whether the audited action happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one place every entry passes: nothing unsafe or unbounded gets through, and the
    /// hash is computed over what is stored.
    #[test]
    fn every_entry_is_cleaned_before_it_is_chained() {
        let hostile = format!("nul\0x\r\n\u{202e}{}", "z".repeat(60_000));
        let e = entry(
            1,
            &Actor::User(hostile.clone()),
            "user.add",
            &hostile,
            Outcome::Refused,
            serde_json::json!({"reason": hostile}),
        );
        for text in [
            &e.actor,
            &e.subject,
            &e.detail["reason"].as_str().unwrap().to_owned(),
        ] {
            assert!(!text.contains(['\0', '\r', '\n', '\u{202e}']), "{text:.40}");
            assert!(text.contains("\\u{0}x\\u{d}\\u{a}\\u{202e}"), "{text:.40}");
            assert!(text.contains("…[cut: "), "{text:.40}");
            assert!(text.chars().count() < clean::MAX_DETAIL_CHARS + 30);
        }
        assert!(e.subject.chars().count() < clean::MAX_SUBJECT_CHARS + 30);
        let prepared = crate::store::AuditRecord {
            seq: 1,
            at: e.at,
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: e.subject.clone(),
            outcome: e.outcome.clone(),
            detail: e.detail.to_string(),
            prev_hash: crate::store::GENESIS_HASH.into(),
            hash: String::new(),
        };
        // The hash function itself is unchanged: a stored row, cleaned or not (rows from
        // before the cleaning), verifies by what it holds.
        let mut raw = prepared.clone();
        raw.subject = hostile;
        for mut r in [prepared, raw] {
            r.hash = crate::store::audit_hash(&r.prev_hash, &r);
            crate::store::verify_audit_chain(crate::store::GENESIS_HASH, &[r]).unwrap();
        }
    }

    #[test]
    fn the_host_bypassing_four_eyes_is_marked_break_glass() {
        let host = Actor::Host {
            user: "hanako".into(),
            uid: 1001,
        };
        assert_eq!(host.to_string(), "host:hanako");
        let detail = |actor: &Actor, action: &str, outcome| {
            entry(1, actor, action, "x", outcome, serde_json::json!({"a": 1})).detail
        };
        let marked = detail(&host, "cert.revoke", Outcome::Ok);
        assert_eq!(marked["break_glass"], true);
        assert_eq!(marked["a"], 1);
        // Not for actions outside the set, refusals, or anyone but the host.
        assert!(
            detail(&host, "contract.add", Outcome::Ok)
                .get("break_glass")
                .is_none()
        );
        assert!(
            detail(&host, "cert.revoke", Outcome::Refused)
                .get("break_glass")
                .is_none()
        );
        let member = Actor::Staff("taro".into());
        assert!(
            detail(&member, "cert.revoke", Outcome::Ok)
                .get("break_glass")
                .is_none()
        );
    }
}
