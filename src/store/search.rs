//! The staff console's searches: login IDs by contract or by part of the ID, and the audit
//! log by actor, action, subject and time, newest first, a page at a time.

use super::backend::on_backend;
use super::{AuditRecord, STAFF_CONTRACT, Store, StoreError, User};
use crate::clock::UnixTime;

/// What an audit search asks for; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Entries whose actor contains this text (a staff name finds both their own entries
    /// and the four-eyes entries they approved or asked for).
    pub actor: Option<String>,
    /// Entries whose action is this or starts with it followed by `.` (`cert` finds
    /// `cert.revoke`).
    pub action: Option<String>,
    /// Entries about exactly this subject (a login ID, serial, `request:<id>`).
    pub subject: Option<String>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
    /// Entries older than this sequence number (the previous page's last).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// `%`, `_` and `\` taken literally in a `LIKE` pattern (with `ESCAPE '\'`).
fn like_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Store {
    /// Customer login IDs, in `contract` when given, whose ID contains `text` when given,
    /// at most `limit`, by ID. Staff members are not customers and never listed here.
    pub async fn search_users(
        &self,
        contract: Option<&str>,
        text: Option<&str>,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        let pattern = text.map(|t| format!("%{}%", like_literal(&t.to_lowercase())));
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, User>(
                "SELECT login, contract_id, role, email, enabled, created_at FROM users \
                 WHERE contract_id <> $1 AND ($2 IS NULL OR contract_id = $2) \
                 AND ($3 IS NULL OR LOWER(login) LIKE $3 ESCAPE '\\') \
                 ORDER BY login LIMIT $4",
            )
            .bind(STAFF_CONTRACT)
            .bind(contract)
            .bind(pattern.as_deref())
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Audit entries matching `q`, newest first.
    pub async fn search_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let actor = q.actor.as_deref().map(|a| format!("%{}%", like_literal(a)));
        let action_prefix = q
            .action
            .as_deref()
            .map(|a| format!("{}.%", like_literal(a)));
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, AuditRecord>(
                "SELECT seq, at, actor, action, subject, outcome, detail, prev_hash, hash \
                 FROM audit_log \
                 WHERE ($1 IS NULL OR actor LIKE $1 ESCAPE '\\') \
                 AND ($2 IS NULL OR action = $2 OR action LIKE $3 ESCAPE '\\') \
                 AND ($4 IS NULL OR subject = $4) \
                 AND ($5 IS NULL OR at >= $5) AND ($6 IS NULL OR at <= $6) \
                 AND ($7 IS NULL OR seq < $7) \
                 ORDER BY seq DESC LIMIT $8",
            )
            .bind(actor.as_deref())
            .bind(q.action.as_deref())
            .bind(action_prefix.as_deref())
            .bind(q.subject.as_deref())
            .bind(q.since)
            .bind(q.until)
            .bind(q.before_seq)
            .bind(q.limit)
            .fetch_all(pool)
            .await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::like_literal;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(like_literal("a_b%c\\"), "a\\_b\\%c\\\\");
        assert_eq!(like_literal("plain"), "plain");
    }
}
