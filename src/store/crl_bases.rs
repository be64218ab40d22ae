//! The latest complete CRL of each scope, shared by every instance: delta CRLs are made
//! against it (`web::revocation`), so their base CRL number names a CRL a relying party can
//! have got from any instance.

use super::backend::on_backend;
use super::{Store, StoreError};
use crate::clock::UnixTime;

/// A complete CRL kept as the base of delta CRLs.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CrlBase {
    pub number: i64,
    pub this_update: UnixTime,
    pub der: Vec<u8>,
}

impl Store {
    /// Keeps `base` as the complete CRL of CA `ca_id`'s scope `scope` (`CrlScope::key`),
    /// unless a later one (a higher number) is kept already.
    pub async fn keep_crl_base(
        &self,
        ca_id: i64,
        scope: &str,
        base: &CrlBase,
    ) -> Result<(), StoreError> {
        on_backend!(self, |pool, _PG| {
            sqlx::query(
                "INSERT INTO crl_bases (ca_id, scope, number, this_update, der) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (ca_id, scope) DO UPDATE SET number = excluded.number, \
                   this_update = excluded.this_update, der = excluded.der \
                 WHERE excluded.number > crl_bases.number",
            )
            .bind(ca_id)
            .bind(scope)
            .bind(base.number)
            .bind(base.this_update)
            .bind(&base.der)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The complete CRL kept for CA `ca_id`'s scope `scope`, if one was made.
    pub async fn crl_base(&self, ca_id: i64, scope: &str) -> Result<Option<CrlBase>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(sqlx::query_as::<_, CrlBase>(
                "SELECT number, this_update, der FROM crl_bases WHERE ca_id = $1 AND scope = $2",
            )
            .bind(ca_id)
            .bind(scope)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// The scopes of CA `ca_id` that have a kept complete CRL.
    pub async fn crl_base_scopes(&self, ca_id: i64) -> Result<Vec<String>, StoreError> {
        on_backend!(self, |pool, _PG| {
            Ok(
                sqlx::query_scalar("SELECT scope FROM crl_bases WHERE ca_id = $1 ORDER BY scope")
                    .bind(ca_id)
                    .fetch_all(pool)
                    .await?,
            )
        })
    }

    /// Forgets the kept complete CRL of CA `ca_id`'s scope `scope` (a part no longer served).
    pub async fn forget_crl_base(&self, ca_id: i64, scope: &str) -> Result<(), StoreError> {
        on_backend!(self, |pool, _PG| {
            sqlx::query("DELETE FROM crl_bases WHERE ca_id = $1 AND scope = $2")
                .bind(ca_id)
                .bind(scope)
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}
