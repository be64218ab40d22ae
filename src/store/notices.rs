//! Expiry notices: which notice of which certificate was decided, and the outbox of e-mails
//! to send, with claims (leases) so that several workers never send the same row twice.
//!
//! Owns the atomicity of "decide notice N for a certificate and queue its e-mail" and of a
//! claim. It must not decide which notice is due or render anything: that is `notify`'s.
//!
//! Claiming: inside a write transaction (SQLite `BEGIN IMMEDIATE`; PostgreSQL rows picked
//! with `FOR UPDATE SKIP LOCKED`) pending rows that are due and not leased get a fresh
//! `claim_token` and a lease until `claimed_until`. Only the holder of the token can settle
//! the row; a lease that ran out (a worker died mid-send) lets another worker claim it again.

use super::backend::{Backend, WritePool, on_backend};
use super::{Store, StoreError};
use crate::clock::UnixTime;

/// A current certificate inside the notice window, with what is needed to write to its owner.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NoticeCandidate {
    pub serial: String,
    pub login: String,
    pub contract_id: String,
    pub contract_name: String,
    pub email: String,
    pub not_after: UnixTime,
    /// The smallest notice (in days) already decided for this certificate, if any.
    pub decided_min: Option<i64>,
}

/// A notice to record as scheduled, with its rendered e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotice {
    pub serial: String,
    /// N of "N days before expiry".
    pub notice_days: i64,
    pub login: String,
    pub recipient: String,
    pub language: String,
    pub subject: String,
    pub body: String,
    pub now: UnixTime,
}

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    /// Waiting for (another) delivery attempt.
    Pending,
    /// Accepted by the SMTP server.
    Sent,
    /// Refused permanently (5xx, bad address); `last_error` says why.
    Failed,
    /// Not sent: the certificate was renewed, revoked, re-issued or expired first.
    Cancelled,
}

impl OutboxState {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for OutboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(format!(
                "unknown outbox state {other:?}: expected pending, sent, failed or cancelled"
            )),
        }
    }
}

impl TryFrom<String> for OutboxState {
    type Error = String;
    /// Decoding a stored state (`#[sqlx(try_from = "String")]`).
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl std::fmt::Display for OutboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One e-mail of the outbox, decoded from the columns of `outbox_cols!`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub serial: String,
    pub notice_days: i64,
    pub login: String,
    pub recipient: String,
    pub language: String,
    pub subject: String,
    pub body: String,
    #[sqlx(try_from = "String")]
    pub state: OutboxState,
    /// Delivery attempts started so far.
    pub attempts: i64,
    pub next_attempt_at: UnixTime,
    pub last_error: Option<String>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
    pub sent_at: Option<UnixTime>,
}

/// Outbox rows per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    pub cancelled: u64,
}

/// The outcome of one claimed row, to record with [`Store::settle_notices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub id: i64,
    state: OutboxState,
    at: UnixTime,
    next_attempt_at: UnixTime,
    error: Option<String>,
}

impl Settlement {
    /// The relay accepted it.
    pub fn sent(id: i64, at: UnixTime) -> Self {
        Self {
            id,
            state: OutboxState::Sent,
            at,
            next_attempt_at: at,
            error: None,
        }
    }

    /// Put back for another attempt at `next_attempt_at`, keeping `error`.
    pub fn retry(id: i64, at: UnixTime, next_attempt_at: UnixTime, error: String) -> Self {
        Self {
            id,
            state: OutboxState::Pending,
            at,
            next_attempt_at,
            error: Some(error),
        }
    }

    /// Refused for good, keeping `error`.
    pub fn failed(id: i64, at: UnixTime, error: String) -> Self {
        Self {
            id,
            state: OutboxState::Failed,
            at,
            next_attempt_at: at,
            error: Some(error),
        }
    }
}

/// The columns [`OutboxRow`] decodes (a macro: spliced into statements with `concat!`).
macro_rules! outbox_cols {
    () => {
        "id, serial, notice_days, login, recipient, language, subject, body, state, attempts, \
         next_attempt_at, last_error, created_at, updated_at, sent_at"
    };
}

/// Why a pending row is cancelled, computed from its certificate inside the UPDATE.
const CANCEL_REASON: &str = "(SELECT CASE WHEN c.status = 'current' \
     THEN 'certificate expired before delivery' \
     ELSE 'certificate is ' || c.status || ' (renewed, revoked or re-issued)' END \
     FROM certificates c WHERE c.serial = notice_outbox.serial)";

/// Settles one claimed row: only the holder of the claim token, only while pending.
const SETTLE: &str = "UPDATE notice_outbox SET state = $3, updated_at = $4, next_attempt_at = $5, \
     last_error = COALESCE($6, last_error), sent_at = $7, \
     claim_token = NULL, claimed_until = NULL \
     WHERE id = $1 AND claim_token = $2 AND state = 'pending'";

impl Store {
    /// Current certificates of enabled users and contracts with `now < not_after <= until`,
    /// soonest expiry first.
    pub async fn notice_candidates(
        &self,
        now: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<NoticeCandidate>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, NoticeCandidate>(
                "SELECT c.serial, c.login, c.contract_id, k.name AS contract_name, u.email, \
                 c.not_after, \
                 (SELECT MIN(n.notice_days) FROM notices n WHERE n.serial = c.serial) \
                   AS decided_min \
                 FROM certificates c \
                 JOIN users u ON u.login = c.login \
                 JOIN contracts k ON k.id = c.contract_id \
                 WHERE c.status = 'current' AND c.not_after > $1 AND c.not_after <= $2 \
                   AND u.enabled AND k.enabled \
                 ORDER BY c.not_after, c.serial",
            )
            .bind(now)
            .bind(until)
            .fetch_all(pool)
            .await?)
        })
    }

    /// In one transaction: records `notice` as scheduled, records each of `skipped` as
    /// skipped, and queues its e-mail (due at once). Returns false, changing nothing, when
    /// this notice or a more urgent one was already decided, or when the certificate is no
    /// longer current or has expired.
    pub async fn schedule_notice(
        &self,
        notice: &NewNotice,
        skipped: &[i64],
    ) -> Result<bool, StoreError> {
        let done = self
            .schedule_notices(std::slice::from_ref(&(notice.clone(), skipped.to_vec())))
            .await?;
        Ok(done.first().copied().unwrap_or(false))
    }

    /// [`Store::schedule_notice`] for many notices in one transaction (one commit, one fsync
    /// on SQLite, for the lot): each is decided on its own as there, and the answer says, in
    /// order, which ones this call queued.
    pub async fn schedule_notices(
        &self,
        notices: &[(NewNotice, Vec<i64>)],
    ) -> Result<Vec<bool>, StoreError> {
        if notices.is_empty() {
            return Ok(Vec::new());
        }
        // PostgreSQL: three statements for the lot, not three round trips per notice.
        if let Backend::Postgres(pool) = &self.inner.backend {
            return schedule_pg(pool, notices).await;
        }
        on_backend!(self, |pool, _PG| {
            let mut tx = pool.begin_write().await?;
            let mut queued = Vec::with_capacity(notices.len());
            for (notice, skipped) in notices {
                // The unique key (serial, notice_days) makes a concurrent second decision a
                // no-op (PostgreSQL: it waits for the first to commit, then conflicts).
                let decided = sqlx::query(
                    "INSERT INTO notices (serial, notice_days, state, decided_at) \
                     SELECT $1, $2, 'scheduled', $3 \
                     WHERE NOT EXISTS (SELECT 1 FROM notices \
                                       WHERE serial = $1 AND notice_days <= $2) \
                       AND EXISTS (SELECT 1 FROM certificates \
                                   WHERE serial = $1 AND status = 'current' AND not_after > $3) \
                     ON CONFLICT (serial, notice_days) DO NOTHING",
                )
                .bind(notice.serial.as_str())
                .bind(notice.notice_days)
                .bind(notice.now)
                .execute(&mut *tx)
                .await?;
                // Nothing was written for this one: the others go on.
                if decided.rows_affected() != 1 {
                    queued.push(false);
                    continue;
                }
                for days in skipped {
                    sqlx::query(
                        "INSERT INTO notices (serial, notice_days, state, decided_at) \
                         VALUES ($1, $2, 'skipped', $3) \
                         ON CONFLICT (serial, notice_days) DO NOTHING",
                    )
                    .bind(notice.serial.as_str())
                    .bind(*days)
                    .bind(notice.now)
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "INSERT INTO notice_outbox (serial, notice_days, login, recipient, language, \
                     subject, body, state, attempts, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8)",
                )
                .bind(notice.serial.as_str())
                .bind(notice.notice_days)
                .bind(notice.login.as_str())
                .bind(notice.recipient.as_str())
                .bind(notice.language.as_str())
                .bind(notice.subject.as_str())
                .bind(notice.body.as_str())
                .bind(notice.now)
                .execute(&mut *tx)
                .await?;
                queued.push(true);
            }
            tx.commit().await?;
            Ok(queued)
        })
    }

    /// The decisions recorded for `serial`: (notice days, `scheduled` or `skipped`), most
    /// urgent first.
    pub async fn notice_decisions(&self, serial: &str) -> Result<Vec<(i64, String)>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, (i64, String)>(
                "SELECT notice_days, state FROM notices WHERE serial = $1 ORDER BY notice_days",
            )
            .bind(serial)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Cancels the pending, unleased rows whose certificate is no longer current or has
    /// expired. Returns how many.
    pub async fn cancel_stale_notices(&self, now: UnixTime) -> Result<u64, StoreError> {
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            let sql = format!(
                "UPDATE notice_outbox SET state = 'cancelled', last_error = {CANCEL_REASON}, \
                 updated_at = $1, claim_token = NULL, claimed_until = NULL \
                 WHERE id IN (SELECT o.id FROM notice_outbox o \
                              JOIN certificates c ON c.serial = o.serial \
                              WHERE o.state = 'pending' \
                                AND (o.claimed_until IS NULL OR o.claimed_until <= $1) \
                                AND (c.status <> 'current' OR c.not_after <= $1){})",
                if PG {
                    " FOR UPDATE OF o SKIP LOCKED"
                } else {
                    ""
                }
            );
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected())
        })
    }

    /// Claims up to `limit` pending rows due at `now` and not leased by another worker:
    /// each gets `token` and a lease until `lease_until`, and its attempt is counted.
    /// Returns them oldest first.
    pub async fn claim_notices(
        &self,
        now: UnixTime,
        lease_until: UnixTime,
        token: &str,
        limit: i64,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            let sql = format!(
                "UPDATE notice_outbox SET claim_token = $2, claimed_until = $3, \
                 attempts = attempts + 1, updated_at = $1 \
                 WHERE id IN (SELECT id FROM notice_outbox \
                              WHERE state = 'pending' AND next_attempt_at <= $1 \
                                AND (claimed_until IS NULL OR claimed_until <= $1) \
                              ORDER BY id LIMIT $4{}) \
                 RETURNING {}",
                if PG { " FOR UPDATE SKIP LOCKED" } else { "" },
                outbox_cols!()
            );
            let mut out = sqlx::query_as::<_, OutboxRow>(sqlx::AssertSqlSafe(sql))
                .bind(now)
                .bind(token)
                .bind(lease_until)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            out.sort_by_key(|r| r.id);
            Ok(out)
        })
    }

    /// Marks a claimed row sent. False when the claim was lost (the lease ran out and
    /// another worker took the row).
    pub async fn mark_notice_sent(
        &self,
        id: i64,
        token: &str,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.settle(id, token, "sent", now, now, None).await
    }

    /// Puts a claimed row back for another attempt at `next_attempt_at`, keeping `error`.
    pub async fn mark_notice_retry(
        &self,
        id: i64,
        token: &str,
        now: UnixTime,
        next_attempt_at: UnixTime,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.settle(id, token, "pending", now, next_attempt_at, Some(error))
            .await
    }

    /// Marks a claimed row failed for good, keeping `error`.
    pub async fn mark_notice_failed(
        &self,
        id: i64,
        token: &str,
        now: UnixTime,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.settle(id, token, "failed", now, now, Some(error))
            .await
    }

    /// Records the outcomes of rows claimed with `token`, in one transaction. Returns the
    /// ids whose claim was lost (the lease ran out and another worker took the row): their
    /// outcome is not recorded.
    pub async fn settle_notices(
        &self,
        token: &str,
        outcomes: &[Settlement],
    ) -> Result<Vec<i64>, StoreError> {
        if outcomes.is_empty() {
            return Ok(Vec::new());
        }
        // PostgreSQL: one statement for the group, not a round trip per row.
        if let Backend::Postgres(pool) = &self.inner.backend {
            return settle_pg(pool, token, outcomes).await;
        }
        on_backend!(self, |pool, _PG| {
            let mut tx = pool.begin_write().await?;
            let mut lost = Vec::new();
            for o in outcomes {
                let sent_at = (o.state == OutboxState::Sent).then_some(o.at);
                let done = sqlx::query(SETTLE)
                    .bind(o.id)
                    .bind(token)
                    .bind(o.state.as_str())
                    .bind(o.at)
                    .bind(o.next_attempt_at)
                    .bind(o.error.as_deref())
                    .bind(sent_at)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() != 1 {
                    lost.push(o.id);
                }
            }
            tx.commit().await?;
            Ok(lost)
        })
    }

    /// Pending rows due at `now` (leased or not).
    pub async fn count_due_notices(&self, now: UnixTime) -> Result<u64, StoreError> {
        on_backend!(self, |pool, _PG| {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM notice_outbox \
                 WHERE state = 'pending' AND next_attempt_at <= $1",
            )
            .bind(now)
            .fetch_one(pool)
            .await?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    async fn settle(
        &self,
        id: i64,
        token: &str,
        state: &str,
        now: UnixTime,
        next_attempt_at: UnixTime,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sent_at = (state == "sent").then_some(now);
        on_backend!(self, |pool, _PG| {
            let done = sqlx::query(SETTLE)
                .bind(id)
                .bind(token)
                .bind(state)
                .bind(now)
                .bind(next_attempt_at)
                .bind(error)
                .bind(sent_at)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Outbox rows, optionally of one state, oldest first.
    pub async fn outbox(&self, state: Option<OutboxState>) -> Result<Vec<OutboxRow>, StoreError> {
        let state = state.map(OutboxState::as_str);
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, OutboxRow>(concat!(
                "SELECT ",
                outbox_cols!(),
                " FROM notice_outbox WHERE ($1 IS NULL OR state = $1) ORDER BY id"
            ))
            .bind(state)
            .fetch_all(pool)
            .await?)
        })
    }

    /// How many outbox rows are in each state.
    pub async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        on_backend!(self, |pool, _PG| {
            let rows: Vec<(String, i64)> =
                sqlx::query_as("SELECT state, COUNT(*) AS n FROM notice_outbox GROUP BY state")
                    .fetch_all(pool)
                    .await?;
            let mut counts = OutboxCounts::default();
            for (state, n) in rows {
                let n = u64::try_from(n).unwrap_or(0);
                let state: OutboxState = state.parse().map_err(StoreError::Corrupt)?;
                match state {
                    OutboxState::Pending => counts.pending = n,
                    OutboxState::Sent => counts.sent = n,
                    OutboxState::Failed => counts.failed = n,
                    OutboxState::Cancelled => counts.cancelled = n,
                }
            }
            Ok(counts)
        })
    }
}

/// [`Store::schedule_notices`] on PostgreSQL: the decisions in one INSERT (each row decided
/// as the single-row statement would), then the skipped notices and the outbox rows of the
/// decided ones, in one transaction.
async fn schedule_pg(
    pool: &sqlx::PgPool,
    notices: &[(NewNotice, Vec<i64>)],
) -> Result<Vec<bool>, StoreError> {
    let mut tx = pool.begin_write().await?;
    let serials: Vec<&str> = notices.iter().map(|(n, _)| n.serial.as_str()).collect();
    let days: Vec<i64> = notices.iter().map(|(n, _)| n.notice_days).collect();
    let nows: Vec<i64> = notices.iter().map(|(n, _)| n.now).collect();
    let decided: Vec<String> = sqlx::query_scalar(
        "INSERT INTO notices (serial, notice_days, state, decided_at) \
         SELECT v.serial, v.days, 'scheduled', v.now \
         FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS v(serial, days, now) \
         WHERE NOT EXISTS (SELECT 1 FROM notices n \
                           WHERE n.serial = v.serial AND n.notice_days <= v.days) \
           AND EXISTS (SELECT 1 FROM certificates c WHERE c.serial = v.serial \
                       AND c.status = 'current' AND c.not_after > v.now) \
         ON CONFLICT (serial, notice_days) DO NOTHING \
         RETURNING serial",
    )
    .bind(&serials)
    .bind(&days)
    .bind(&nows)
    .fetch_all(&mut *tx)
    .await?;
    let decided: std::collections::HashSet<String> = decided.into_iter().collect();
    let queued: Vec<bool> = notices
        .iter()
        .map(|(n, _)| decided.contains(&n.serial))
        .collect();
    let chosen: Vec<&(NewNotice, Vec<i64>)> = notices
        .iter()
        .zip(&queued)
        .filter_map(|(n, q)| q.then_some(n))
        .collect();
    let (mut sk_serial, mut sk_days, mut sk_now) = (Vec::new(), Vec::new(), Vec::new());
    for (n, skipped) in &chosen {
        for d in skipped {
            sk_serial.push(n.serial.as_str());
            sk_days.push(*d);
            sk_now.push(n.now);
        }
    }
    if !sk_serial.is_empty() {
        sqlx::query(
            "INSERT INTO notices (serial, notice_days, state, decided_at) \
             SELECT v.serial, v.days, 'skipped', v.now \
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS v(serial, days, now) \
             ON CONFLICT (serial, notice_days) DO NOTHING",
        )
        .bind(&sk_serial)
        .bind(&sk_days)
        .bind(&sk_now)
        .execute(&mut *tx)
        .await?;
    }
    if !chosen.is_empty() {
        let col =
            |f: fn(&NewNotice) -> &str| -> Vec<&str> { chosen.iter().map(|(n, _)| f(n)).collect() };
        sqlx::query(
            "INSERT INTO notice_outbox (serial, notice_days, login, recipient, language, \
             subject, body, state, attempts, next_attempt_at, created_at, updated_at) \
             SELECT v.serial, v.days, v.login, v.recipient, v.language, v.subject, v.body, \
                    'pending', 0, v.now, v.now, v.now \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                         $6::text[], $7::text[], $8::bigint[]) WITH ORDINALITY \
                  AS v(serial, days, login, recipient, language, subject, body, now, i) \
             ORDER BY v.i",
        )
        .bind(col(|n| n.serial.as_str()))
        .bind(
            chosen
                .iter()
                .map(|(n, _)| n.notice_days)
                .collect::<Vec<i64>>(),
        )
        .bind(col(|n| n.login.as_str()))
        .bind(col(|n| n.recipient.as_str()))
        .bind(col(|n| n.language.as_str()))
        .bind(col(|n| n.subject.as_str()))
        .bind(col(|n| n.body.as_str()))
        .bind(chosen.iter().map(|(n, _)| n.now).collect::<Vec<i64>>())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(queued)
}

/// [`Store::settle_notices`] on PostgreSQL: one UPDATE for the group (atomic on its own).
async fn settle_pg(
    pool: &sqlx::PgPool,
    token: &str,
    outcomes: &[Settlement],
) -> Result<Vec<i64>, StoreError> {
    let ids: Vec<i64> = outcomes.iter().map(|o| o.id).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state.as_str()).collect();
    let ats: Vec<i64> = outcomes.iter().map(|o| o.at).collect();
    let nexts: Vec<i64> = outcomes.iter().map(|o| o.next_attempt_at).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
    let sent_ats: Vec<Option<i64>> = outcomes
        .iter()
        .map(|o| (o.state == OutboxState::Sent).then_some(o.at))
        .collect();
    let done: Vec<i64> = sqlx::query_scalar(
        "UPDATE notice_outbox o SET state = v.state, updated_at = v.at, \
         next_attempt_at = v.next, last_error = COALESCE(v.err, o.last_error), \
         sent_at = v.sent_at, claim_token = NULL, claimed_until = NULL \
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], \
                     $6::bigint[]) AS v(id, state, at, next, err, sent_at) \
         WHERE o.id = v.id AND o.claim_token = $7 AND o.state = 'pending' \
         RETURNING o.id",
    )
    .bind(&ids)
    .bind(&states)
    .bind(&ats)
    .bind(&nexts)
    .bind(&errors)
    .bind(&sent_ats)
    .bind(token)
    .fetch_all(pool)
    .await?;
    let done: std::collections::HashSet<i64> = done.into_iter().collect();
    Ok(ids.into_iter().filter(|id| !done.contains(id)).collect())
}
