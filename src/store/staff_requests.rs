//! Four-eyes requests: an action one staff member asked for, waiting for another's
//! decision. Every state change is a conditional update with its audit entry in the same
//! transaction, so two supervisors deciding at once cannot both win, and nothing is
//! recorded as decided without its trail.
//!
//! What may be asked, who may decide and what runs on approval are decided in
//! `lifecycle::four_eyes`, not here.

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head};
use super::backend::{WritePool, on_backend};
use super::{NewAudit, Store, StoreError};
use crate::clock::UnixTime;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Waiting for a supervisor.
    Pending,
    /// Approved; the action is running.
    Approving,
    /// Approved and the action succeeded.
    Done,
    /// Approved but the action was refused when it ran (the state had moved on).
    Failed,
    Rejected,
    /// Taken back by the staff member who asked.
    Withdrawn,
    /// Nobody decided in time.
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approving => "approving",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
            Self::Withdrawn => "withdrawn",
            Self::Expired => "expired",
        }
    }
}

impl std::str::FromStr for RequestState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => Self::Pending,
            "approving" => Self::Approving,
            "done" => Self::Done,
            "failed" => Self::Failed,
            "rejected" => Self::Rejected,
            "withdrawn" => Self::Withdrawn,
            "expired" => Self::Expired,
            other => {
                return Err(format!(
                    "unknown request state {other:?}: expected pending, approving, done, failed, \
                     rejected, withdrawn or expired"
                ));
            }
        })
    }
}

impl TryFrom<String> for RequestState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A stored request.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StaffRequest {
    pub id: i64,
    pub action: String,
    pub subject: String,
    /// The action's parameters, JSON.
    pub params: String,
    pub maker: String,
    pub checker: Option<String>,
    #[sqlx(try_from = "String")]
    pub state: RequestState,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub decided_at: Option<UnixTime>,
    /// JSON: what the action answered (no code), or why it failed.
    pub result: Option<String>,
}

/// A request to be stored.
#[derive(Debug, Clone)]
pub struct NewStaffRequest<'a> {
    pub action: &'a str,
    pub subject: &'a str,
    pub params: &'a serde_json::Value,
    pub maker: &'a str,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

/// A state change: from one of `from` to `to`, by `by` (the checker, or the maker who
/// withdraws), at `at`.
#[derive(Debug, Clone)]
pub struct RequestTransition<'a> {
    pub id: i64,
    pub from: &'a [RequestState],
    pub to: RequestState,
    pub by: Option<&'a str>,
    pub at: UnixTime,
    /// Only while not yet expired (approve, reject, withdraw).
    pub unexpired: bool,
    pub result: Option<&'a serde_json::Value>,
}

/// What asking to store a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Stored as pending, with this id.
    Stored(i64),
    /// Nothing stored: request `id` asks for the same action with the same parameters and
    /// is still pending (a second one would only wait beside it).
    AlreadyPending(i64),
}

const COLUMNS: &str = "id, action, subject, params, maker, checker, state, created_at, \
                       expires_at, decided_at, result";

impl Store {
    /// Stores a pending request and the audit entry `audit(id)` in one transaction, unless
    /// a request for the same action, subject and parameters is pending and not expired at
    /// `req.created_at` (checked under the audit lock, which every writer of requests takes).
    pub async fn insert_staff_request_audited(
        &self,
        req: &NewStaffRequest<'_>,
        audit: impl FnOnce(i64) -> NewAudit,
    ) -> Result<Submitted, StoreError> {
        let params = serde_json::to_string(req.params)
            .map_err(|_| StoreError::Corrupt("request parameters cannot be serialized".into()))?;
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_chain_head!(PG, tx);
            let pending: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM staff_requests WHERE state = 'pending' AND expires_at > $1 \
                 AND action = $2 AND subject = $3 AND params = $4 ORDER BY id LIMIT 1",
            )
            .bind(req.created_at)
            .bind(req.action)
            .bind(req.subject)
            .bind(params.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(id) = pending {
                return Ok(Submitted::AlreadyPending(id));
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO staff_requests (action, subject, params, maker, state, created_at, \
                 expires_at) VALUES ($1, $2, $3, $4, 'pending', $5, $6) RETURNING id",
            )
            .bind(req.action)
            .bind(req.subject)
            .bind(params.as_str())
            .bind(req.maker)
            .bind(req.created_at)
            .bind(req.expires_at)
            .fetch_one(&mut *tx)
            .await?;
            let entry = PreparedAudit::new(&audit(id))?;
            append_chained!(tx, &mut head, &entry);
            tx.commit().await?;
            Ok(Submitted::Stored(id))
        })
    }

    /// One request.
    pub async fn staff_request(&self, id: i64) -> Result<Option<StaffRequest>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM staff_requests WHERE id = $1");
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, StaffRequest>(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Requests in `state` (all when `None`), newest first, at most `limit`, older than id
    /// `before` when given (paging).
    pub async fn staff_requests(
        &self,
        state: Option<RequestState>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<StaffRequest>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM staff_requests \
             WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        );
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, StaffRequest>(sqlx::AssertSqlSafe(sql))
                .bind(state.map(RequestState::as_str))
                .bind(before)
                .bind(limit)
                .fetch_all(pool)
                .await?)
        })
    }

    /// Applies `change` when the request is still in one of `change.from` (and unexpired,
    /// when asked), with `audit` in the same transaction. Returns false, recording nothing,
    /// when the request had moved on; `NotFound` for an unknown id.
    pub async fn transition_staff_request_audited(
        &self,
        change: &RequestTransition<'_>,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let entry = PreparedAudit::new(audit)?;
        let result = change
            .result
            .map(serde_json::to_string)
            .transpose()
            .map_err(|_| StoreError::Corrupt("a request result cannot be serialized".into()))?;
        let from: Vec<&str> = change.from.iter().map(|s| s.as_str()).collect();
        // At most a handful of states: spelled out rather than bound as an array, which
        // the two backends take differently.
        let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 6)).collect();
        let sql = format!(
            "UPDATE staff_requests SET state = $1, \
             checker = COALESCE($2, checker), decided_at = $3, result = COALESCE($4, result) \
             WHERE id = $5 AND state IN ({}) {}",
            placeholders.join(", "),
            if change.unexpired {
                format!("AND expires_at > ${}", from.len() + 6)
            } else {
                String::new()
            }
        );
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            let mut head = lock_chain_head!(PG, tx);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(change.to.as_str())
                .bind(change.by)
                .bind(change.at)
                .bind(result.as_deref())
                .bind(change.id);
            for s in &from {
                q = q.bind(*s);
            }
            if change.unexpired {
                q = q.bind(change.at);
            }
            let done = q.execute(&mut *tx).await?;
            if done.rows_affected() == 0 {
                let found: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM staff_requests WHERE id = $1")
                        .bind(change.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                return match found {
                    Some(_) => Ok(false),
                    None => Err(StoreError::NotFound(format!("request {}", change.id))),
                };
            }
            append_chained!(tx, &mut head, &entry);
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Pending requests whose time ran out by `now`.
    pub async fn expired_staff_requests(&self, now: UnixTime) -> Result<Vec<i64>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_scalar(
                "SELECT id FROM staff_requests WHERE state = 'pending' AND expires_at <= $1 \
                 ORDER BY id",
            )
            .bind(now)
            .fetch_all(pool)
            .await?)
        })
    }
}
