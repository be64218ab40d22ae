//! Signature intents and counts: every certificate the CA key signs is announced before the
//! HSM signs it and settled after (completed or discarded), and the signatures made without
//! a row of their own (CRLs, OCSP responses) are counted.
//!
//! Owns the `signature_intents` and `signature_counts` tables. When to record, complete or
//! discard is decided in `lifecycle` and the CLI; how a discarded certificate stands
//! (revoked, `cessationOfOperation`) is read from here by `certs` for OCSP and the CRL.

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head};
use super::backend::{WritePool, on_backend};
use super::changes::pg_notify;
use super::issue_writer::{IssueWork, JobOutcome};
use super::rows::intent_cols;
use super::{
    CertRecord, CertStatus, CertStatusView, NewAudit, Role, StatusFacts, Store, StoreError,
};
use crate::clock::UnixTime;

/// The revocation reason a discarded certificate is given: it was never handed out, so
/// the CA ceased to operate it rather than anyone compromising it.
pub const DISCARDED_REASON: &str = "cessationOfOperation";

/// Where an intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentState {
    /// Recorded; the signature may or may not have been made yet.
    Open,
    /// Signed and stored: the certificate was handed out.
    Completed,
    /// Signed (or possibly signed) and thrown away: revoked in OCSP and the CRL.
    Discarded,
}

impl IntentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Completed => "completed",
            Self::Discarded => "discarded",
        }
    }
}

impl TryFrom<String> for IntentState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "open" => Ok(Self::Open),
            "completed" => Ok(Self::Completed),
            "discarded" => Ok(Self::Discarded),
            _ => Err(format!("unknown intent state {s:?}")),
        }
    }
}

/// One intent row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct SignatureIntent {
    pub serial: String,
    pub ca_id: i64,
    /// `client` or `server` (`ca::SignatureKind`).
    pub kind: String,
    /// The login ID (client) or the names (server).
    pub subject: String,
    pub spki_sha256: String,
    #[sqlx(try_from = "String")]
    #[serde(serialize_with = "state_name")]
    pub state: IntentState,
    /// Why it was discarded.
    pub reason: Option<String>,
    pub created_at: UnixTime,
    pub settled_at: Option<UnixTime>,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
}

fn state_name<S: serde::Serializer>(k: &IntentState, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

impl SignatureIntent {
    /// A new open intent.
    pub fn open(
        serial: &str,
        ca_id: i64,
        kind: &str,
        subject: &str,
        spki_sha256: &str,
        now: UnixTime,
        not_after: UnixTime,
    ) -> Self {
        Self {
            serial: serial.into(),
            ca_id,
            kind: kind.into(),
            subject: subject.into(),
            spki_sha256: spki_sha256.into(),
            state: IntentState::Open,
            reason: None,
            created_at: now,
            settled_at: None,
            not_before: now,
            not_after,
        }
    }

    /// How a discarded certificate stands: revoked since it was discarded. `None` for an
    /// intent that is not discarded (its certificate's own row answers, if it has one).
    pub fn discarded_facts(&self) -> Option<StatusFacts> {
        (self.state == IntentState::Discarded).then(|| StatusFacts {
            serial: self.serial.clone(),
            ca_id: self.ca_id,
            not_before: self.not_before,
            not_after: self.not_after,
            status: CertStatus::Revoked,
            superseded_at: None,
            revoked_at: Some(self.settled_at.unwrap_or(self.created_at)),
            revocation_reason: Some(DISCARDED_REASON.into()),
            created_at: self.created_at,
            user_enabled: true,
            user_disabled_at: None,
            contract_enabled: true,
            contract_disabled_at: None,
        })
    }
}

impl SignatureIntent {
    /// How the gateway sees a discarded certificate: revoked like in [`Self::discarded_facts`],
    /// with an empty DER and digest (its copy was never stored). `None` unless discarded.
    pub fn discarded_view(&self) -> Option<CertStatusView> {
        let facts = self.discarded_facts()?;
        Some(CertStatusView {
            cert: CertRecord {
                serial: facts.serial,
                login: self.subject.clone(),
                contract_id: String::new(),
                ca_id: facts.ca_id,
                der: Vec::new(),
                sha256: String::new(),
                spki_sha256: self.spki_sha256.clone(),
                not_before: facts.not_before,
                not_after: facts.not_after,
                status: facts.status,
                superseded_at: None,
                revoked_at: facts.revoked_at,
                revocation_reason: facts.revocation_reason,
                first_used_at: None,
                created_at: facts.created_at,
            },
            role: Role::General,
            user_enabled: true,
            contract_enabled: true,
            user_disabled_at: None,
            contract_disabled_at: None,
        })
    }
}

/// Filters for [`Store::signature_intents`].
#[derive(Debug, Clone, Copy, Default)]
pub struct IntentFilter {
    /// Only open intents recorded before this time whose certificate is not stored (a
    /// stored one was handed out; only its completion was lost).
    pub open_before: Option<UnixTime>,
    /// Only discarded intents.
    pub discarded: bool,
}

/// Signatures counted per CA and kind.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SignatureCount {
    pub ca_id: i64,
    pub kind: String,
    pub count: i64,
}

impl Store {
    /// Records `intent` (open) with `audit` appended in the same transaction, before the
    /// key signs. `Conflict` when the serial is already recorded.
    pub async fn record_intent_audited(
        &self,
        intent: &SignatureIntent,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let entry = PreparedAudit::new(audit)?;
        // Through the group writer: concurrent issuances share the commit.
        let work = IssueWork::Intent(Box::new(intent.clone()));
        let done = self.inner.writer.submit(Some(work), vec![entry]).await?;
        match done.outcome {
            JobOutcome::Recorded => Ok(()),
            other => Err(StoreError::Corrupt(format!(
                "the group writer answered a signature intent with {other:?}"
            ))),
        }
    }

    /// Marks the open intent `serial` completed (its certificate is stored). Returns false
    /// when it was not open.
    pub async fn complete_intent(&self, serial: &str, now: UnixTime) -> Result<bool, StoreError> {
        on_backend!(self, |pool, _PG| {
            let done = sqlx::query(
                "UPDATE signature_intents SET state = 'completed', settled_at = $2 \
                 WHERE serial = $1 AND state = 'open'",
            )
            .bind(serial)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Marks the open intent `serial` discarded for `reason`, with the signed validity when
    /// known, and appends `audit` in the same transaction. From then OCSP and the CRL give
    /// the serial as revoked. `NotFound` for an unknown serial, `Conflict` when it is
    /// already settled or a certificate with that serial is stored (it was handed out).
    pub async fn discard_intent_audited(
        &self,
        serial: &str,
        reason: &str,
        validity: Option<(UnixTime, UnixTime)>,
        now: UnixTime,
        audit: &NewAudit,
    ) -> Result<SignatureIntent, StoreError> {
        let entry = PreparedAudit::new(audit)?;
        let (not_before, not_after) = validity.unzip();
        let intent = on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_chain_head!(PG, tx);
            let stored: Option<String> = sqlx::query_scalar(
                "SELECT serial FROM certificates WHERE serial = $1 \
                 UNION ALL SELECT serial FROM server_certificates WHERE serial = $1",
            )
            .bind(serial)
            .fetch_optional(&mut *tx)
            .await?;
            if stored.is_some() {
                return Err(StoreError::Conflict(format!(
                    "certificate {serial} is stored: it was handed out, revoke it instead"
                )));
            }
            let discarded = sqlx::query_as::<_, SignatureIntent>(concat!(
                "UPDATE signature_intents SET state = 'discarded', reason = $2, settled_at = $3, \
                 not_before = COALESCE($4, not_before), not_after = COALESCE($5, not_after) \
                 WHERE serial = $1 AND state = 'open' RETURNING ",
                intent_cols!()
            ))
            .bind(serial)
            .bind(reason)
            .bind(now)
            .bind(not_before)
            .bind(not_after)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(intent) = discarded else {
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT state FROM signature_intents WHERE serial = $1")
                        .bind(serial)
                        .fetch_optional(&mut *tx)
                        .await?;
                return Err(match exists {
                    Some(state) => StoreError::Conflict(format!(
                        "the signature intent {serial} is already {state}"
                    )),
                    None => StoreError::NotFound(format!("signature intent {serial}")),
                });
            };
            append_chained!(tx, &mut head, &entry);
            pg_notify!(PG, tx, [&intent.serial]);
            tx.commit().await?;
            Ok::<_, StoreError>(intent)
        })?;
        self.announce(std::slice::from_ref(&intent.serial));
        Ok(intent)
    }

    /// The intent `serial`, if any.
    pub async fn signature_intent(
        &self,
        serial: &str,
    ) -> Result<Option<SignatureIntent>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, SignatureIntent>(concat!(
                "SELECT ",
                intent_cols!(),
                " FROM signature_intents WHERE serial = $1"
            ))
            .bind(serial)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Intents matching `filter`, oldest first.
    pub async fn signature_intents(
        &self,
        filter: IntentFilter,
    ) -> Result<Vec<SignatureIntent>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, SignatureIntent>(concat!(
                "SELECT ",
                intent_cols!(),
                " FROM signature_intents i WHERE ($1 IS NULL OR (state = 'open' AND created_at < $1 \
                   AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = i.serial) \
                   AND NOT EXISTS (SELECT 1 FROM server_certificates s WHERE s.serial = i.serial))) \
                   AND ($2 = FALSE OR state = 'discarded') \
                 ORDER BY created_at, serial"
            ))
            .bind(filter.open_before)
            .bind(filter.discarded)
            .fetch_all(pool)
            .await?)
        })
    }

    /// How many intents there are, per kind and state: `(kind, state, count)`.
    pub async fn intent_totals(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, (String, String, i64)>(
                "SELECT kind, state, COUNT(*) FROM signature_intents \
                 GROUP BY kind, state ORDER BY kind, state",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// The discarded certificates of CA `ca_id` not expired at `now`, as the status rule
    /// reads them (for the CRL).
    pub async fn discarded_facts_for_crl(
        &self,
        ca_id: i64,
        now: UnixTime,
    ) -> Result<Vec<StatusFacts>, StoreError> {
        let rows = on_backend!(self, |pool, _PG| {
            Ok::<_, StoreError>(
                sqlx::query_as::<_, SignatureIntent>(concat!(
                    "SELECT ",
                    intent_cols!(),
                    " FROM signature_intents WHERE ca_id = $1 AND state = 'discarded' \
                      AND not_after > $2 ORDER BY serial"
                ))
                .bind(ca_id)
                .bind(now)
                .fetch_all(pool)
                .await?,
            )
        })?;
        Ok(rows.iter().filter_map(|i| i.discarded_facts()).collect())
    }

    /// Adds signatures counted in memory: `(ca_id, kind, count)` each.
    pub async fn add_signature_counts(
        &self,
        counts: &[(i64, &str, u64)],
    ) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        on_backend!(self, |pool, _PG| {
            let mut tx = pool.begin_write().await?;
            for (ca_id, kind, count) in counts {
                let count = i64::try_from(*count).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO signature_counts (ca_id, kind, count) VALUES ($1, $2, $3) \
                     ON CONFLICT (ca_id, kind) DO UPDATE \
                     SET count = signature_counts.count + excluded.count",
                )
                .bind(ca_id)
                .bind(*kind)
                .bind(count)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Every stored signature count, by CA and kind.
    pub async fn signature_counts(&self) -> Result<Vec<SignatureCount>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, SignatureCount>(
                "SELECT ca_id, kind, count FROM signature_counts ORDER BY ca_id, kind",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// How many CRL numbers were handed out, all CAs together: every CRL signed took one
    /// before it was signed (a number whose signing failed is a gap).
    pub async fn crl_numbers_handed_out(&self) -> Result<i64, StoreError> {
        on_backend!(self, |pool, _PG| {
            let total: Option<i64> = sqlx::query_scalar(if _PG {
                "SELECT SUM(last_number)::BIGINT FROM crl_numbers"
            } else {
                "SELECT SUM(last_number) FROM crl_numbers"
            })
            .fetch_one(pool)
            .await?;
            Ok(total.unwrap_or(0))
        })
    }

    /// The records of audit checkpoints signed with a CA's key: those stored, and those
    /// signed but discarded because another was stored first (`audit.checkpoint_discarded`).
    pub async fn checkpoint_signature_records(&self) -> Result<i64, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM audit_checkpoints c \
                           JOIN cas ON cas.key_label = c.key_label) \
                      + (SELECT COUNT(*) FROM audit_log \
                           WHERE action = 'audit.checkpoint_discarded')",
            )
            .fetch_one(pool)
            .await?)
        })
    }
}
