//! Turning a login ID or a contract off and on: the `enabled` flag, its audit record and
//! the word to every status cache, in one transaction.
//!
//! The gateway refuses the certificates of a disabled login ID, or of any login ID of a
//! disabled contract, on the next request; the certificates themselves stay as they are,
//! so enabling again restores access without a new issuance. While disabled, OCSP and the
//! CRL give them as revoked with reason `certificateHold` since `disabled_at`.

use super::audit_chain::{PreparedAudit, append_chained, lock_chain_head};
use super::backend::{WritePool, on_backend};
use super::changes::pg_notify;
use super::{CertChange, NewAudit, Store, StoreError};

/// What a switch is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switched {
    User,
    Contract,
}

impl Store {
    /// Sets whether `login` may use its certificates, with `audit` appended in the same
    /// transaction. Returns false (and records nothing) when it already was so; `NotFound`
    /// for an unknown login ID.
    pub async fn set_user_enabled_audited(
        &self,
        login: &str,
        enabled: bool,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        self.switch(Switched::User, login, enabled, audit.at, audit)
            .await
    }

    /// [`Store::set_user_enabled_audited`] with the hold starting at `at` (a staff
    /// member's switch, `store::staff`).
    pub(super) async fn switch_user(
        &self,
        login: &str,
        enabled: bool,
        at: crate::clock::UnixTime,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        self.switch(Switched::User, login, enabled, at, audit).await
    }

    /// Sets whether the login IDs of contract `id` may use their certificates, with `audit`
    /// appended in the same transaction. Returns false (and records nothing) when it
    /// already was so; `NotFound` for an unknown contract.
    pub async fn set_contract_enabled_audited(
        &self,
        id: &str,
        enabled: bool,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        self.switch(Switched::Contract, id, enabled, audit.at, audit)
            .await
    }

    async fn switch(
        &self,
        what: Switched,
        key: &str,
        enabled: bool,
        at: crate::clock::UnixTime,
        audit: &NewAudit,
    ) -> Result<bool, StoreError> {
        let entry = PreparedAudit::new(audit)?;
        let (update, exists) = match what {
            Switched::User => (
                "UPDATE users SET enabled = $2, \
                 disabled_at = CASE WHEN $2 THEN NULL ELSE $3 END \
                 WHERE login = $1 AND enabled <> $2",
                "SELECT login FROM users WHERE login = $1",
            ),
            Switched::Contract => (
                "UPDATE contracts SET enabled = $2, \
                 disabled_at = CASE WHEN $2 THEN NULL ELSE $3 END \
                 WHERE id = $1 AND enabled <> $2",
                "SELECT id FROM contracts WHERE id = $1",
            ),
        };
        let changed = on_backend!(self, |pool, PG| {
            let mut tx = pool.begin_write().await?;
            // The audit lock before the row lock, as every appender does.
            let mut head = lock_chain_head!(PG, tx);
            let done = sqlx::query(update)
                .bind(key)
                .bind(enabled)
                // The hold's start, as OCSP and the CRL give it (status::standing).
                .bind(at)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                let found: Option<String> = sqlx::query_scalar(exists)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await?;
                match found {
                    Some(_) => Ok(None),
                    None => Err(StoreError::NotFound(match what {
                        Switched::User => format!("login ID {key:?}"),
                        Switched::Contract => format!("contract {key:?}"),
                    })),
                }
            } else {
                append_chained!(tx, &mut head, &entry);
                // A user's own certificates, or everything for a contract (its users may
                // be many; the caches start over).
                let serials: Vec<String> = match what {
                    Switched::User => {
                        sqlx::query_scalar("SELECT serial FROM certificates WHERE login = $1")
                            .bind(key)
                            .fetch_all(&mut *tx)
                            .await?
                    }
                    Switched::Contract => vec![CertChange::RESYNC.to_string()],
                };
                pg_notify!(PG, tx, &serials);
                tx.commit().await?;
                Ok::<_, StoreError>(Some(serials))
            }
        })?;
        // `None`: it already was so.
        let Some(serials) = changed else {
            return Ok(false);
        };
        self.announce(&serials);
        Ok(true)
    }
}
