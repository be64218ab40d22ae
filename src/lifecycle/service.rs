//! The lifecycle service: applies the rules with the store, the CA and the audit log.
//! Every entry point (command line, web pages, EST, admin API) goes through here, so the
//! rules hold the same way everywhere. Issuing a certificate is in `enroll.rs`; this file
//! holds the service itself and the staff's and administrator's actions.

use std::sync::{Arc, PoisonError, RwLock};

use serde_json::json;

use crate::audit::{Actor, Audit, Outcome};
use crate::ca::{Authority, RevocationReason};
use crate::clock::{Clock, DAY};
use crate::store::{Audience, CertRecord, NewAudit, ServerCertRecord, Store, User};

use super::codes::IssuanceCode;
use super::enroll::check_audience;
use super::error::LifecycleError;
use super::rules::{self, Refusal};

/// The audited refusal code of a login ID held by another contract (never answered).
const TAKEN_ELSEWHERE: &str = "login_taken_elsewhere";

/// A last condition on the user row an issuance code is made for.
pub(super) type UserCheck<'a> = &'a (dyn Fn(&User) -> Result<(), LifecycleError> + Sync);

/// Settings of the lifecycle, from the configuration.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    pub code_ttl_days: u32,
    pub max_attempts: u32,
    pub renewal_window_days: u32,
    pub renewal_grace_days: u32,
    pub overlap_days: u32,
    pub allow_same_key: bool,
    pub organization: String,
}

impl LifecycleSettings {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self {
            code_ttl_days: cfg.issuance.code_ttl_days,
            max_attempts: cfg.issuance.max_attempts,
            renewal_window_days: cfg.renewal.window_days,
            renewal_grace_days: cfg.renewal.grace_after_expiry_days,
            overlap_days: cfg.renewal.overlap_days,
            allow_same_key: cfg.renewal.allow_same_key,
            organization: cfg.ca.organization.clone(),
        }
    }
}

/// A code just authorized: show it once.
#[derive(Debug)]
pub struct Authorized {
    pub login: String,
    pub code: IssuanceCode,
    pub expires_at: i64,
    /// The certificate revoked by a re-issue, if there was one.
    pub revoked_serial: Option<String>,
}

/// Applies the scheme's rules.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    store: Store,
    authority: Arc<Authority>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    /// Shared by every clone, so a configuration reload reaches all of them at once.
    settings: Arc<RwLock<Arc<LifecycleSettings>>>,
    /// How issuance requests ended (`/metrics`), shared by every clone.
    outcomes: super::IssuanceOutcomes,
}

impl Lifecycle {
    pub fn new(
        store: Store,
        authority: Arc<Authority>,
        clock: Arc<dyn Clock>,
        settings: LifecycleSettings,
    ) -> Self {
        Self {
            audit: Audit::new(store.clone()),
            store,
            authority,
            clock,
            settings: Arc::new(RwLock::new(Arc::new(settings))),
            outcomes: super::IssuanceOutcomes::default(),
        }
    }

    /// How issuance requests ended so far.
    pub fn outcomes(&self) -> &super::IssuanceOutcomes {
        &self.outcomes
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn authority(&self) -> &Arc<Authority> {
        &self.authority
    }

    /// The settings in force now (a snapshot: a reload does not change it under a caller).
    pub fn settings(&self) -> Arc<LifecycleSettings> {
        Arc::clone(&self.settings.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts reloaded settings in force for every later call (on every clone).
    pub fn replace_settings(&self, settings: LifecycleSettings) {
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(settings);
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub(super) async fn enabled_user(&self, login: &str) -> Result<User, LifecycleError> {
        let subject = self
            .store
            .issuance_subject(login)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(format!("login ID {login:?}")))?;
        check_enabled(&subject.user, subject.contract_enabled)?;
        Ok(subject.user)
    }

    pub(super) async fn refuse<T>(
        &self,
        actor: &Actor,
        action: &str,
        subject: &str,
        err: LifecycleError,
    ) -> Result<T, LifecycleError> {
        let _ = self
            .audit
            .record(
                self.now(),
                actor,
                action,
                subject,
                Outcome::Refused,
                json!({"code": err.code(), "reason": err.to_string()}),
            )
            .await;
        Err(err)
    }

    fn new_code(&self) -> Result<(IssuanceCode, i64), LifecycleError> {
        let code = IssuanceCode::generate()
            .map_err(|_| LifecycleError::Internal("the random number generator failed".into()))?;
        Ok((
            code,
            self.now() + i64::from(self.settings().code_ttl_days) * DAY,
        ))
    }

    /// Staff authorize a first issuance for the customer login ID `login`: a new one-time
    /// code. A staff member's code is [`Lifecycle::staff_authorize`]'s.
    pub async fn authorize(
        &self,
        actor: &Actor,
        login: &str,
    ) -> Result<Authorized, LifecycleError> {
        self.authorize_for(Audience::Customer, actor, login).await
    }

    /// [`Lifecycle::authorize`] for a login ID of `audience` (refused otherwise).
    pub(super) async fn authorize_for(
        &self,
        audience: Audience,
        actor: &Actor,
        login: &str,
    ) -> Result<Authorized, LifecycleError> {
        self.authorize_if(audience, actor, login, &|_| Ok(())).await
    }

    /// [`Lifecycle::authorize_for`], refused unless `check` accepts the user row the code is
    /// issued for. A login ID's role never changes, so what `check` saw still holds when the
    /// code is stored.
    pub(super) async fn authorize_if(
        &self,
        audience: Audience,
        actor: &Actor,
        login: &str,
        check: UserCheck<'_>,
    ) -> Result<Authorized, LifecycleError> {
        let result = async {
            let user = self.enabled_user(login).await?;
            check_audience(audience, &user)?;
            check(&user)?;
            if let Some(cert) = self.store.current_certificate(login).await? {
                let how = match audience {
                    Audience::Customer => "use `certgate issue reissue` to replace it",
                    Audience::Staff => "revoke it first (`certgate cert revoke`) to replace it",
                };
                return Err(Refusal::new(
                    "has_certificate",
                    format!(
                        "login ID {login:?} already has a current certificate (serial {}); {how}",
                        cert.serial
                    ),
                )
                .into());
            }
            let (code, expires_at) = self.new_code()?;
            // The code and its audit record commit together.
            let entry = self.ok_entry(
                actor,
                "code.authorize",
                login,
                json!({"expires_at": expires_at}),
            );
            self.store
                .set_code_audited(login, &code.hash(), self.now(), expires_at, &entry)
                .await?;
            Ok(Authorized {
                login: login.into(),
                code,
                expires_at,
                revoked_serial: None,
            })
        }
        .await;
        match result {
            Ok(a) => Ok(a),
            Err(e) => self.refuse(actor, "code.authorize", login, e).await,
        }
    }

    /// Staff re-issue (PC replaced, certificate lost): revokes the current certificate and
    /// authorizes a new code. The only way to re-issue an administrator's certificate.
    pub async fn staff_reissue(
        &self,
        actor: &Actor,
        login: &str,
        reason: RevocationReason,
    ) -> Result<Authorized, LifecycleError> {
        self.staff_reissue_if(actor, login, reason, &|_| Ok(()))
            .await
    }

    /// [`Lifecycle::staff_reissue`], refused unless `check` accepts the user row it reads
    /// (see [`Lifecycle::authorize_if`]).
    pub(super) async fn staff_reissue_if(
        &self,
        actor: &Actor,
        login: &str,
        reason: RevocationReason,
        check: UserCheck<'_>,
    ) -> Result<Authorized, LifecycleError> {
        let result = async {
            let user = self.enabled_user(login).await?;
            check_audience(Audience::Customer, &user)?;
            check(&user)?;
            self.reissue_unchecked(actor, login, reason).await
        }
        .await;
        self.finish_reissue(actor, login, result).await
    }

    /// A contract administrator re-issues an approver's or general user's certificate.
    pub async fn admin_reissue(
        &self,
        admin_login: &str,
        target_login: &str,
    ) -> Result<Authorized, LifecycleError> {
        let actor = Actor::User(admin_login.into());
        let result = async {
            let admin = self.enabled_user(admin_login).await?;
            let target = match self.store.user(target_login).await? {
                Some(t) => t,
                // Same answer as another contract's user: no probing of login IDs.
                None => {
                    return Err(Refusal::new(
                        "other_contract",
                        "that login ID is not in your contract",
                    )
                    .into());
                }
            };
            rules::may_admin_reissue(&admin, &target)?;
            self.reissue_unchecked(&actor, target_login, RevocationReason::Superseded)
                .await
        }
        .await;
        self.finish_reissue(&actor, target_login, result).await
    }

    /// A contract administrator adds an approver or general login ID to its contract.
    pub async fn admin_add_user(
        &self,
        admin_login: &str,
        login: &str,
        role: crate::store::Role,
        email: &str,
    ) -> Result<User, LifecycleError> {
        let actor = Actor::User(admin_login.into());
        let result = async {
            let admin = self.enabled_user(admin_login).await?;
            rules::may_admin_add_user(&admin, &admin.contract_id, role)?;
            rules::check_new_identifier("a login ID", login)?;
            rules::check_email(email)?;
            let user = User {
                login: login.into(),
                contract_id: admin.contract_id.clone(),
                role,
                email: email.into(),
                enabled: true,
                created_at: self.now(),
            };
            // The user and its audit record commit together.
            let entry = self.ok_entry(
                &actor,
                "user.add",
                login,
                json!({"contract": user.contract_id, "role": user.role.as_str()}),
            );
            match self.store.insert_user_audited(&user, Some(&entry)).await {
                Ok(()) => Ok(user),
                Err(crate::store::StoreError::Conflict(_)) => {
                    Err(self.taken(login, &admin.contract_id).await?)
                }
                Err(e) => Err(e.into()),
            }
        }
        .await;
        match result {
            Ok(u) => Ok(u),
            Err(e) => {
                // A login ID refused for its form is the caller's text, not a subject.
                let subject = rules::login_subject(login);
                let refused = self.refuse(&actor, "user.add", subject, e).await;
                refused.map_err(|e| match e {
                    // Audited as it is; answered as a plain refusal (see `taken`).
                    LifecycleError::Refused(r) if r.code == TAKEN_ELSEWHERE => Refusal::new(
                        "login_unavailable",
                        "that login ID cannot be used; please choose another",
                    )
                    .into(),
                    other => other,
                })
            }
        }
    }

    /// Why `login` could not be added to `contract`: taken in that contract (the
    /// administrator may list its own login IDs, so this is said), or in another one. Login
    /// IDs are unique across contracts; the other contract's ID is audited precisely but
    /// answered without saying it exists.
    async fn taken(&self, login: &str, contract: &str) -> Result<LifecycleError, LifecycleError> {
        let holder = self.store.user(login).await?;
        Ok(match holder {
            Some(u) if u.contract_id == contract => Refusal::new(
                "conflict",
                format!("login ID {login:?} already exists in your contract"),
            )
            .into(),
            _ => Refusal::new(
                TAKEN_ELSEWHERE,
                format!("login ID {login:?} is taken in another contract"),
            )
            .into(),
        })
    }

    /// A contract administrator authorizes the first issuance for an approver or general
    /// login ID of its contract.
    pub async fn admin_authorize(
        &self,
        admin_login: &str,
        target_login: &str,
    ) -> Result<Authorized, LifecycleError> {
        let admin = match self.enabled_user(admin_login).await {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(
                        &Actor::User(admin_login.into()),
                        "code.authorize",
                        target_login,
                        e,
                    )
                    .await;
            }
        };
        let target = self.store.user(target_login).await?;
        let allowed = match &target {
            Some(t) => rules::may_admin_reissue(&admin, t).map_err(LifecycleError::from),
            None => {
                Err(Refusal::new("other_contract", "that login ID is not in your contract").into())
            }
        };
        if let Err(e) = allowed {
            return self
                .refuse(
                    &Actor::User(admin_login.into()),
                    "code.authorize",
                    target_login,
                    e,
                )
                .await;
        }
        self.authorize(&Actor::User(admin_login.into()), target_login)
            .await
    }

    /// Revokes the current certificate (if any) and stores a new code; the `cert.reissue`
    /// audit record commits in the same transaction.
    async fn reissue_unchecked(
        &self,
        actor: &Actor,
        login: &str,
        reason: RevocationReason,
    ) -> Result<Authorized, LifecycleError> {
        let (code, expires_at) = self.new_code()?;
        let revoked = self
            .store
            .reissue_audited(
                login,
                reason.as_str(),
                &code.hash(),
                self.now(),
                expires_at,
                |revoked| {
                    self.ok_entry(
                        actor,
                        "cert.reissue",
                        login,
                        json!({"revoked": revoked.map(|c| c.serial.as_str()), "expires_at": expires_at}),
                    )
                },
            )
            .await?;
        Ok(Authorized {
            login: login.into(),
            code,
            expires_at,
            revoked_serial: revoked.map(|c| c.serial),
        })
    }

    /// Audits a refused re-issue; a done one was audited with its change.
    async fn finish_reissue(
        &self,
        actor: &Actor,
        login: &str,
        result: Result<Authorized, LifecycleError>,
    ) -> Result<Authorized, LifecycleError> {
        match result {
            Err(e) => self.refuse(actor, "cert.reissue", login, e).await,
            done => done,
        }
    }

    /// Revokes a certificate by serial (any hex form). The `cert.revoke` audit record
    /// commits in the same transaction as the revocation.
    pub async fn revoke(
        &self,
        actor: &Actor,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<CertRecord, LifecycleError> {
        let serial = normalize_serial(serial);
        match self
            .store
            .revoke_audited(&serial, reason.as_str(), self.now(), |cert| {
                self.ok_entry(
                    actor,
                    "cert.revoke",
                    &serial,
                    json!({"login": cert.login, "reason": reason.as_str()}),
                )
            })
            .await
        {
            Err(e) => self.refuse(actor, "cert.revoke", &serial, e.into()).await,
            Ok(cert) => Ok(cert),
        }
    }

    /// Revokes the server certificate `serial` (signed by `ca issue-server`), audited in the
    /// same transaction. OCSP and the CRL give it as revoked from then.
    pub async fn revoke_server(
        &self,
        actor: &Actor,
        serial: &str,
        reason: RevocationReason,
    ) -> Result<ServerCertRecord, LifecycleError> {
        let serial = normalize_serial(serial);
        match self
            .store
            .revoke_server_certificate_audited(&serial, reason.as_str(), self.now(), |cert| {
                self.ok_entry(
                    actor,
                    "server_cert.revoke",
                    &serial,
                    json!({"names": cert.names, "reason": reason.as_str()}),
                )
            })
            .await
        {
            Err(e) => {
                self.refuse(actor, "server_cert.revoke", &serial, e.into())
                    .await
            }
            Ok(cert) => Ok(cert),
        }
    }

    /// An `ok` audit entry, for operations that append it in their own transaction.
    pub(super) fn ok_entry(
        &self,
        actor: &Actor,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) -> NewAudit {
        crate::audit::entry(self.now(), actor, action, subject, Outcome::Ok, detail)
    }

    pub(super) async fn audit_ok(
        &self,
        actor: &Actor,
        action: &str,
        subject: &str,
        detail: serde_json::Value,
    ) {
        let _ = self
            .audit
            .record(self.now(), actor, action, subject, Outcome::Ok, detail)
            .await;
    }
}

/// A serial as the store keeps it: lowercase hex, no colons or spaces, no leading `0x`,
/// leading zero bytes as `openssl x509 -serial` prints them kept (they are part of the DER).
pub fn normalize_serial(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    s.chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase()
}

/// `YYYY-MM-DD` of a Unix time.
pub fn format_date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()))
        .unwrap_or_else(|_| t.to_string())
}

/// Refuses a disabled user or contract; a missing contract row is `NotFound`.
pub(super) fn check_enabled(
    user: &User,
    contract_enabled: Option<bool>,
) -> Result<(), LifecycleError> {
    let contract_enabled = contract_enabled
        .ok_or_else(|| LifecycleError::NotFound(format!("contract {:?}", user.contract_id)))?;
    if !user.enabled || !contract_enabled {
        return Err(Refusal::new(
            "user_disabled",
            format!("login ID {:?} is disabled", user.login),
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_normalize() {
        assert_eq!(normalize_serial("4A:0B:FF"), "4a0bff");
        assert_eq!(normalize_serial(" 0x4A0BFF "), "4a0bff");
        assert_eq!(format_date(0), "1970-01-01");
    }
}
