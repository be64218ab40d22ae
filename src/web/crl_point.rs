//! The CRL distribution point, `GET /crl/{scope}.crl`: the complete CRL and, with
//! `[revocation] delta_crl`, the delta CRL of each CA the store holds, for the whole CA or
//! for one issuance period (`crl_partition_days`). Lists what `status::crl_entries` says,
//! the rule the gateway and OCSP read too.
//!
//! Complete CRLs are kept in the store when deltas are made, and every delta is made
//! against the kept one (its base), so a relying party can combine a complete CRL and a
//! delta CRL fetched from different instances.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;

use crate::ca::crl::{self, CrlContents, CrlKind, CrlScope, RevokedEntry};
use crate::clock::UnixTime;
use crate::http_common::RETRY_AFTER_SECS;
use crate::status::{changes_at, crl_entries};
use crate::store::CrlBase;

use super::http_caching::max_age;
use super::request::WebRequest;
use super::respond::{WebResponse, text, with_type};
use super::revocation::{CaSigner, Revocation};

/// Entries past which a whole-CA CRL is called large in the log (about 2.5 MB of DER).
const LARGE_CRL: usize = 50_000;

/// A CRL made by this instance, served until `stale_at`.
pub(super) struct CachedCrl {
    der: Bytes,
    made_at: UnixTime,
    /// nextUpdate − thisUpdate.
    validity: i64,
    /// Remade from then on: the refresh period, or sooner when a listed certificate's
    /// standing changes by time alone (an overlap ending).
    stale_at: UnixTime,
}

/// What the cache keys a CRL by: its scope, and whether it is the delta.
type CrlKey = (CrlScope, bool);

impl Revocation {
    /// `GET /crl/{scope}.crl` (see [`CrlScope::file_name`]).
    pub async fn crl(&self, req: &WebRequest) -> WebResponse {
        let now = self.clock.now();
        let wanted = req
            .path
            .strip_prefix("/crl/")
            .and_then(CrlScope::parse)
            .filter(|(scope, delta)| self.serves(scope, *delta, now));
        let Some((scope, delta)) = wanted else {
            return text(StatusCode::NOT_FOUND, "no such CRL");
        };
        let Some(signer) = self.cas.iter().find(|c| c.authority.ca_id() == scope.ca_id) else {
            return text(StatusCode::NOT_FOUND, "no such CRL");
        };
        match self.current_crl(signer, (scope, delta)).await {
            Ok((der, made_at, validity)) => {
                let left = made_at + validity - self.clock.now();
                let mut r = with_type(StatusCode::OK, "application/pkix-crl", der);
                r.headers_mut()
                    .insert(http::header::CACHE_CONTROL, max_age("public, ", left));
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, crl = %scope.file_name(delta), "cannot produce the CRL");
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the CRL is temporarily unavailable",
                );
                r.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static(RETRY_AFTER_SECS),
                );
                r
            }
        }
    }

    /// Whether this CRL exists: deltas only when made, parts only of a served period length
    /// and only while a certificate of the period can be valid. Anything else would make
    /// the HSM sign a CRL nobody can need.
    fn serves(&self, scope: &CrlScope, delta: bool, now: UnixTime) -> bool {
        if delta && self.settings.delta_crl.is_none() {
            return false;
        }
        scope.part.is_none_or(|p| {
            let (from, to) = p.not_before_range();
            self.settings.partition_days.contains(&p.days)
                && from <= now
                && to.saturating_add(self.settings.client_validity) > now
        })
    }

    /// The CRL `key` names and when it was made: the cached one unless a change or its age
    /// made it stale.
    async fn current_crl(
        &self,
        signer: &CaSigner,
        key: CrlKey,
    ) -> Result<(Bytes, UnixTime, i64), String> {
        let (scope, delta) = key;
        let mut crls = self.crls.lock().await;
        let now = self.clock.now();
        if let Some(c) = crls.get(&key)
            && now < c.stale_at
        {
            return Ok((c.der.clone(), c.made_at, c.validity));
        }
        if !delta
            && self.settings.delta_crl.is_some()
            && let Some(base) = self.fresh_base(scope, now).await?
        {
            // Every instance serves the one kept complete CRL while it is fresh, so the
            // deltas of every instance apply to it.
            let stale_at = base.this_update + self.settings.crl_refresh;
            let made = Made {
                crl: base,
                validity: self.settings.crl_validity,
            };
            let cached = made.cached(stale_at);
            let out = (cached.der.clone(), cached.made_at, cached.validity);
            crls.insert(key, cached);
            return Ok(out);
        }
        let (entries, stale_at) = self.entries(scope, now).await?;
        let made = if delta {
            let base = match self.fresh_base(scope, now).await? {
                Some(base) => base,
                None => {
                    // No complete CRL to be the base, or an old one: make it first.
                    let complete = self.make_complete(signer, scope, &entries, now).await?;
                    let refresh = complete.crl.this_update + self.settings.crl_refresh;
                    crls.insert((scope, false), complete.cached(refresh));
                    complete.crl
                }
            };
            self.make_delta(signer, scope, &base, &entries, now).await?
        } else {
            // A new base: deltas made against the old one go.
            crls.remove(&(scope, true));
            self.make_complete(signer, scope, &entries, now).await?
        };
        let stale_at = if delta {
            // Never served in the last half of its validity.
            stale_at.min(now + made.validity / 2)
        } else {
            stale_at
        };
        let cached = made.cached(stale_at);
        let out = (cached.der.clone(), cached.made_at, cached.validity);
        crls.insert(key, cached);
        Ok(out)
    }

    /// What a CRL of `scope` made at `now` lists, and when that changes by time alone (or
    /// the refresh period ends).
    async fn entries(
        &self,
        scope: CrlScope,
        now: UnixTime,
    ) -> Result<(Vec<RevokedEntry>, UnixTime), String> {
        let mut facts = self
            .store
            .facts_for_crl(scope.ca_id, now)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(part) = scope.part {
            let (from, to) = part.not_before_range();
            facts.retain(|f| from <= f.not_before && f.not_before < to);
        }
        let overlap = self.settings.overlap_secs;
        let stale_at = facts
            .iter()
            .filter_map(|f| changes_at(f, now, overlap))
            .fold(now + self.settings.crl_refresh, UnixTime::min);
        Ok((crl_entries(&facts, now, overlap), stale_at))
    }

    /// Signs the complete CRL of `scope`; with delta CRLs on, keeps it as their base.
    async fn make_complete(
        &self,
        signer: &CaSigner,
        scope: CrlScope,
        entries: &[RevokedEntry],
        now: UnixTime,
    ) -> Result<Made, String> {
        let public_url = &self.settings.public_url;
        let kind = CrlKind::Complete {
            delta_url: self.settings.delta_crl.map(|_| scope.url(public_url, true)),
        };
        if scope.part.is_none()
            && self.settings.partition_days.is_empty()
            && entries.len() > LARGE_CRL
        {
            tracing::warn!(
                ca = scope.ca_id,
                entries = entries.len(),
                "the CA's CRL is large: [revocation] crl_partition_days splits it for new certificates"
            );
        }
        let validity = self.settings.crl_validity;
        let made = self
            .sign(signer, scope, kind, entries.to_vec(), now, validity)
            .await?;
        if self.settings.delta_crl.is_none() {
            return Ok(made);
        }
        self.store
            .keep_crl_base(scope.ca_id, &scope.key(), &made.crl)
            .await
            .map_err(|e| e.to_string())?;
        self.forget_unserved_bases(scope.ca_id, now).await;
        // Another instance may have kept a later one meanwhile: that one is the base.
        Ok(match self.fresh_base(scope, now).await? {
            Some(kept) if kept.number > made.crl.number => Made {
                crl: kept,
                validity: made.validity,
            },
            _ => made,
        })
    }

    /// Drops the kept complete CRLs of parts no longer served (their certificates have all
    /// expired), so the store keeps one per live scope. A failure only leaves them for the
    /// next time.
    async fn forget_unserved_bases(&self, ca_id: i64, now: UnixTime) {
        let scopes = match self.store.crl_base_scopes(ca_id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the kept CRLs");
                return;
            }
        };
        for key in scopes {
            // A key is the complete CRL's file name (`CrlScope::key`).
            let served = CrlScope::parse(&key)
                .is_some_and(|(scope, _)| scope.ca_id == ca_id && self.serves(&scope, false, now));
            if !served && let Err(e) = self.store.forget_crl_base(ca_id, &key).await {
                tracing::warn!(error = %e, scope = %key, "cannot drop a kept CRL");
            }
        }
    }

    /// The kept complete CRL of `scope`, unless it is older than the refresh period.
    async fn fresh_base(&self, scope: CrlScope, now: UnixTime) -> Result<Option<CrlBase>, String> {
        let kept = self
            .store
            .crl_base(scope.ca_id, &scope.key())
            .await
            .map_err(|e| e.to_string())?;
        Ok(kept.filter(|b| now < b.this_update + self.settings.crl_refresh))
    }

    /// Signs the delta CRL of `scope` against `base`: what changed since.
    async fn make_delta(
        &self,
        signer: &CaSigner,
        scope: CrlScope,
        base: &CrlBase,
        entries: &[RevokedEntry],
        now: UnixTime,
    ) -> Result<Made, String> {
        let listed = crl::read_entries(&base.der).map_err(|e| e.to_string())?;
        let changes = crl::delta_entries(&listed, entries);
        let validity = self
            .settings
            .delta_crl
            .unwrap_or(self.settings.crl_validity);
        let kind = CrlKind::Delta { base: base.number };
        self.sign(signer, scope, kind, changes, now, validity).await
    }

    async fn sign(
        &self,
        signer: &CaSigner,
        scope: CrlScope,
        kind: CrlKind,
        revoked: Vec<RevokedEntry>,
        now: UnixTime,
        validity: i64,
    ) -> Result<Made, String> {
        let number = self
            .store
            .next_crl_number(scope.ca_id)
            .await
            .map_err(|e| e.to_string())?;
        let contents = CrlContents {
            number,
            this_update: now,
            next_update: now.saturating_add(validity),
            kind,
            part_url: scope
                .part
                .map(|_| scope.url(&self.settings.public_url, false)),
            revoked,
        };
        let authority = Arc::clone(&signer.authority);
        let der = tokio::task::spawn_blocking(move || authority.sign_crl(&contents))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(Made {
            crl: CrlBase {
                number,
                this_update: now,
                der,
            },
            validity,
        })
    }
}

/// A CRL just signed.
struct Made {
    crl: CrlBase,
    /// nextUpdate − thisUpdate.
    validity: i64,
}

impl Made {
    fn cached(&self, stale_at: UnixTime) -> CachedCrl {
        CachedCrl {
            der: Bytes::from(self.crl.der.clone()),
            made_at: self.crl.this_update,
            validity: self.validity,
            stale_at,
        }
    }
}
