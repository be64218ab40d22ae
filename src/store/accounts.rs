//! Contracts and users: inserts (each with its audit entry in the same transaction when
//! given) and reads.
//!
//! Owns the mapping of duplicate ids to `Conflict` and of a missing contract to `NotFound`.
//! Who may create which user is decided in `lifecycle`, not here.

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head_if};
use super::backend::{WritePool, on_backend};
use super::error::on_violation;
use super::{Contract, NewAudit, Store, StoreError, User};

impl Store {
    /// Adds a contract; `Conflict` when the id exists.
    pub async fn insert_contract(&self, c: &Contract) -> Result<(), StoreError> {
        self.insert_contract_audited(c, None).await
    }

    /// Adds a contract and appends `audit` in the same transaction: neither without the
    /// other. `Conflict` when the id exists (also in another case).
    pub async fn insert_contract_audited(
        &self,
        c: &Contract,
        audit: Option<&NewAudit>,
    ) -> Result<(), StoreError> {
        let audit = audit.map(PreparedAudit::new).transpose()?;
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock first, as every appender takes it.
            let mut head = lock_chain_head_if!(PG, tx, audit.is_some());
            // IDs that differ only in case are one: apps and their databases (SQL Server's
            // and MySQL's default collations) often compare them so.
            let folded: Option<String> =
                sqlx::query_scalar("SELECT id FROM contracts WHERE lower(id) = lower($1)")
                    .bind(c.id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(existing) = folded {
                return Err(StoreError::Conflict(already_exists(
                    "contract", &c.id, &existing,
                )));
            }
            sqlx::query(
                "INSERT INTO contracts (id, name, enabled, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(c.id.as_str())
            .bind(c.name.as_str())
            .bind(c.enabled)
            .bind(c.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                on_violation(
                    e,
                    || format!("contract {:?} already exists", c.id),
                    || format!("contract {:?}", c.id),
                )
            })?;
            if let (Some(entry), Some(head)) = (&audit, head.as_mut()) {
                append_chained!(tx, head, entry);
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The contract `id`, if any.
    pub async fn contract(&self, id: &str) -> Result<Option<Contract>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, Contract>(
                "SELECT id, name, enabled, created_at FROM contracts WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Every customer contract, by id (the reserved staff contract is not one).
    pub async fn contracts(&self) -> Result<Vec<Contract>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, Contract>(
                "SELECT id, name, enabled, created_at FROM contracts WHERE id <> $1 ORDER BY id",
            )
            .bind(super::STAFF_CONTRACT)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Adds a user; `Conflict` when the login exists, `NotFound` when the contract does not.
    pub async fn insert_user(&self, u: &User) -> Result<(), StoreError> {
        self.insert_user_audited(u, None).await
    }

    /// Adds a user and appends `audit` in the same transaction: neither without the other.
    /// `Conflict` when the login ID exists (also in another case), `NotFound` when the
    /// contract does not.
    pub async fn insert_user_audited(
        &self,
        u: &User,
        audit: Option<&NewAudit>,
    ) -> Result<(), StoreError> {
        let audit = audit.map(PreparedAudit::new).transpose()?;
        on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock first, as every appender takes it.
            let mut head = lock_chain_head_if!(PG, tx, audit.is_some());
            // Login IDs that differ only in case are one (see `insert_contract_audited`).
            let folded: Option<String> =
                sqlx::query_scalar("SELECT login FROM users WHERE lower(login) = lower($1)")
                    .bind(u.login.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(existing) = folded {
                return Err(StoreError::Conflict(already_exists(
                    "login ID", &u.login, &existing,
                )));
            }
            sqlx::query(
                "INSERT INTO users (login, contract_id, role, email, enabled, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(u.login.as_str())
            .bind(u.contract_id.as_str())
            .bind(u.role.as_str())
            .bind(u.email.as_str())
            .bind(u.enabled)
            .bind(u.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                on_violation(
                    e,
                    || format!("login ID {:?} already exists", u.login),
                    || format!("contract {:?}", u.contract_id),
                )
            })?;
            if let (Some(entry), Some(head)) = (&audit, head.as_mut()) {
                append_chained!(tx, head, entry);
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The user `login`, if any.
    pub async fn user(&self, login: &str) -> Result<Option<User>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, User>(
                "SELECT login, contract_id, role, email, enabled, created_at \
                 FROM users WHERE login = $1",
            )
            .bind(login)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// The stored login ID (a customer's, or a staff member's `staff:<name>`) equal to
    /// `login` ignoring case, if any: login IDs are unique that way.
    pub async fn login_ignoring_case(&self, login: &str) -> Result<Option<String>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_scalar::<_, String>(
                "SELECT login FROM users WHERE lower(login) = lower($1) LIMIT 1",
            )
            .bind(login)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// The users of one contract, by login.
    pub async fn users_of_contract(&self, contract_id: &str) -> Result<Vec<User>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, User>(
                "SELECT login, contract_id, role, email, enabled, created_at \
                 FROM users WHERE contract_id = $1 ORDER BY login",
            )
            .bind(contract_id)
            .fetch_all(pool)
            .await?)
        })
    }
}
/// The conflict message for `wanted` when `existing` (equal to it ignoring case) is taken.
pub(super) fn already_exists(noun: &str, wanted: &str, existing: &str) -> String {
    if wanted == existing {
        format!("{noun} {wanted:?} already exists")
    } else {
        format!("{noun} {wanted:?} already exists as {existing:?}")
    }
}
