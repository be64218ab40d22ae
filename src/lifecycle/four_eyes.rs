//! Four-eyes control of staff actions (maker and checker). An action in the approval set
//! does not run when asked: it is stored as a pending request, and runs only when another
//! staff member approves it. Approval, rejection, withdrawal and expiry are conditional
//! state changes, each with its audit entry in the same transaction; the action itself is
//! audited by the operation it runs, with both people as the actor.
//!
//! Who may ask and who may decide (roles) is checked by the staff console before it calls
//! here; that the checker is not the maker is checked here, for every caller.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{Actor, Outcome};
use crate::ca::RevocationReason;
use crate::clock::UnixTime;
pub use crate::config::{APPROVAL_KINDS, DEFAULT_APPROVAL_KINDS};
use crate::store::{
    Audience, NewStaffRequest, RequestState, RequestTransition, Role, StaffRequest, StaffRole,
    Submitted, User,
};

use super::error::LifecycleError;
use super::registry::NewUser;
use super::rules::Refusal;
use super::service::{Authorized, Lifecycle};

/// A change staff can ask for. The tag is the action's name in requests and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", deny_unknown_fields)]
pub enum StaffAction {
    #[serde(rename = "contract.add")]
    AddContract { id: String, name: String },
    #[serde(rename = "contract.disable")]
    DisableContract { id: String },
    #[serde(rename = "contract.enable")]
    EnableContract { id: String },
    #[serde(rename = "user.add")]
    AddUser {
        login: String,
        contract: String,
        role: Role,
        email: String,
    },
    #[serde(rename = "user.disable")]
    DisableUser { login: String },
    #[serde(rename = "user.enable")]
    EnableUser { login: String },
    #[serde(rename = "code.authorize")]
    Authorize { login: String },
    #[serde(rename = "cert.reissue")]
    Reissue { login: String },
    #[serde(rename = "cert.revoke")]
    Revoke {
        serial: String,
        reason: RevocationReason,
    },
    #[serde(rename = "staff.add")]
    AddStaff {
        name: String,
        role: StaffRole,
        email: String,
    },
    #[serde(rename = "staff.role")]
    SetStaffRole { name: String, role: StaffRole },
    #[serde(rename = "staff.disable")]
    DisableStaff { name: String },
    #[serde(rename = "staff.enable")]
    EnableStaff { name: String },
    /// A one-time code for a staff member's certificate: a new way into the console.
    #[serde(rename = "staff.authorize")]
    AuthorizeStaff { name: String },
}

impl StaffAction {
    /// The action's name (the request's `action`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::AddContract { .. } => "contract.add",
            Self::DisableContract { .. } => "contract.disable",
            Self::EnableContract { .. } => "contract.enable",
            Self::AddUser { .. } => "user.add",
            Self::DisableUser { .. } => "user.disable",
            Self::EnableUser { .. } => "user.enable",
            Self::Authorize { .. } => "code.authorize",
            Self::Reissue { .. } => "cert.reissue",
            Self::Revoke { .. } => "cert.revoke",
            Self::AddStaff { .. } => "staff.add",
            Self::SetStaffRole { .. } => "staff.role",
            Self::DisableStaff { .. } => "staff.disable",
            Self::EnableStaff { .. } => "staff.enable",
            Self::AuthorizeStaff { .. } => "staff.authorize",
        }
    }

    /// The approval kind `[staff] four_eyes` names it by: its name, but every change to an
    /// existing staff member (role, on/off, a new certificate) is `staff.change`.
    pub fn approval_kind(&self) -> &'static str {
        match self {
            Self::SetStaffRole { .. }
            | Self::DisableStaff { .. }
            | Self::EnableStaff { .. }
            | Self::AuthorizeStaff { .. } => "staff.change",
            other => other.name(),
        }
    }

    /// The action as it runs and is stored: its input checked as the direct action checks
    /// it, and a serial in the store's form, so that a request's subject is canonical and
    /// nothing is stored that would be refused when it runs.
    pub fn canonical(&self) -> Result<StaffAction, Refusal> {
        use super::rules::{check_email, check_identifier, check_new_identifier};
        match self {
            Self::AddContract { id, name } => {
                check_new_identifier("a contract ID", id)?;
                super::registry::check_name(name)?;
            }
            Self::DisableContract { id } | Self::EnableContract { id } => {
                check_identifier("a contract ID", id)?;
            }
            Self::AddUser {
                login,
                contract,
                email,
                ..
            } => {
                check_new_identifier("a login ID", login)?;
                check_identifier("a contract ID", contract)?;
                check_email(email)?;
            }
            Self::DisableUser { login } | Self::EnableUser { login } => {
                check_identifier("a login ID", login)?;
            }
            Self::Revoke { serial, reason } => {
                return Ok(Self::Revoke {
                    serial: super::normalize_serial(serial),
                    reason: *reason,
                });
            }
            Self::AddStaff { name, email, .. } => {
                check_new_identifier("a staff member's name", name)?;
                check_email(email)?;
            }
            // Looked up by name when asked (unknown: 404); nothing else to check.
            Self::Authorize { .. }
            | Self::Reissue { .. }
            | Self::SetStaffRole { .. }
            | Self::DisableStaff { .. }
            | Self::EnableStaff { .. }
            | Self::AuthorizeStaff { .. } => {}
        }
        Ok(self.clone())
    }

    /// What it is about: a contract ID, login ID or serial.
    pub fn subject(&self) -> &str {
        match self {
            Self::AddContract { id, .. }
            | Self::DisableContract { id }
            | Self::EnableContract { id } => id,
            Self::AddUser { login, .. }
            | Self::DisableUser { login }
            | Self::EnableUser { login }
            | Self::Authorize { login }
            | Self::Reissue { login } => login,
            Self::Revoke { serial, .. } => serial,
            Self::AddStaff { name, .. }
            | Self::SetStaffRole { name, .. }
            | Self::DisableStaff { name }
            | Self::EnableStaff { name }
            | Self::AuthorizeStaff { name } => name,
        }
    }
}

/// Which actions need a second person, and for how long a request waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    /// Approval kinds: action names, plus `cert.reissue.admin` (the re-issue of a contract
    /// administrator's certificate, and an administrator's issuance code) and
    /// `cert.reissue.user` (the same for an approver or general login ID). A re-issue also
    /// waits whenever `cert.revoke` does.
    pub kinds: BTreeSet<String>,
    pub request_ttl_secs: i64,
}

impl ApprovalPolicy {
    /// Whether `kind` (an action name, `cert.reissue.admin` or `cert.reissue.user`) needs
    /// approval.
    pub fn covers(&self, kind: &str) -> bool {
        self.kinds.contains(kind)
    }
}

/// What an action did. `code` is shown once to whoever gets this answer and never stored.
#[derive(Debug)]
pub struct ActionDone {
    /// What it did, for the answer and the request's stored result (no secret).
    pub summary: serde_json::Value,
    pub code: Option<Authorized>,
}

/// What asking for an action led to.
#[derive(Debug)]
pub enum Asked {
    /// It ran.
    Done(ActionDone),
    /// It waits for approval as request `id`, about `subject` (in its canonical form).
    Pending {
        id: i64,
        expires_at: UnixTime,
        subject: String,
    },
}

impl Lifecycle {
    /// Asks for `action` as staff member `maker`: runs it, or stores it as a pending
    /// request when `policy` wants a second person for it.
    pub async fn ask(
        &self,
        maker: &str,
        action: &StaffAction,
        policy: &ApprovalPolicy,
    ) -> Result<Asked, LifecycleError> {
        let actor = Actor::Staff(maker.into());
        let action = &match action.canonical() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(&actor, action.name(), action.subject(), e.into())
                    .await;
            }
        };
        let needed = match self.needs_approval(action, policy).await {
            Ok(needed) => needed,
            Err(e) => {
                return self
                    .refuse(&actor, action.name(), action.subject(), e)
                    .await;
            }
        };
        if needed {
            // What would certainly be refused when it runs is refused now, not after a
            // supervisor spent a decision on it.
            if let Err(e) = self.check_subject(action).await {
                return self
                    .refuse(&actor, action.name(), action.subject(), e)
                    .await;
            }
            let (id, expires_at) = match self.submit_request(maker, action, policy).await {
                Ok(stored) => stored,
                Err(e @ LifecycleError::Refused(_)) => {
                    return self
                        .refuse(&actor, action.name(), action.subject(), e)
                        .await;
                }
                Err(e) => return Err(e),
            };
            return Ok(Asked::Pending {
                id,
                expires_at,
                subject: action.subject().to_owned(),
            });
        }
        Ok(Asked::Done(
            self.run_action(&actor, action, Run::Alone(policy)).await?,
        ))
    }

    /// Whether `action` waits for a checker. A code or re-issue for a login ID that does not
    /// exist is refused here: run alone, it could meet the login ID added meanwhile with a
    /// role whose codes wait.
    async fn needs_approval(
        &self,
        action: &StaffAction,
        policy: &ApprovalPolicy,
    ) -> Result<bool, LifecycleError> {
        let role = match action {
            StaffAction::Authorize { login } | StaffAction::Reissue { login } => {
                match self.store().user(login).await? {
                    Some(u) => Some(u.role),
                    None => return Err(LifecycleError::NotFound(format!("login ID {login:?}"))),
                }
            }
            _ => None,
        };
        Ok(approval_needed(action, role, policy))
    }

    /// The request's subject exists (or, for an addition, does not yet).
    async fn check_subject(&self, action: &StaffAction) -> Result<(), LifecycleError> {
        let store = self.store();
        let subject = action.subject();
        let (exists, noun) = match action {
            StaffAction::AddContract { .. }
            | StaffAction::DisableContract { .. }
            | StaffAction::EnableContract { .. } => {
                (store.contract(subject).await?.is_some(), "contract")
            }
            // A new login ID or staff name may not differ from one in use only in case.
            StaffAction::AddUser { .. } => (
                store.login_ignoring_case(subject).await?.is_some(),
                "login ID",
            ),
            StaffAction::AddStaff { .. } => (
                store
                    .login_ignoring_case(&crate::store::staff_login(subject))
                    .await?
                    .is_some(),
                "staff member",
            ),
            StaffAction::DisableUser { .. }
            | StaffAction::EnableUser { .. }
            | StaffAction::Authorize { .. }
            | StaffAction::Reissue { .. } => (store.user(subject).await?.is_some(), "login ID"),
            StaffAction::Revoke { serial, .. } => (
                store
                    .certificate(&super::normalize_serial(serial))
                    .await?
                    .is_some(),
                "certificate",
            ),
            StaffAction::SetStaffRole { .. }
            | StaffAction::DisableStaff { .. }
            | StaffAction::EnableStaff { .. }
            | StaffAction::AuthorizeStaff { .. } => {
                (store.staff_member(subject).await?.is_some(), "staff member")
            }
        };
        let adding = matches!(
            action,
            StaffAction::AddContract { .. }
                | StaffAction::AddUser { .. }
                | StaffAction::AddStaff { .. }
        );
        match (adding, exists) {
            (true, true) => Err(Refusal::new(
                match action {
                    StaffAction::AddContract { .. } => "contract_exists",
                    StaffAction::AddUser { .. } => "login_exists",
                    _ => "staff_exists",
                },
                format!("that {noun} exists"),
            )
            .into()),
            (false, false) => Err(LifecycleError::NotFound(format!("{noun} {subject:?}"))),
            _ => Ok(()),
        }
    }

    async fn submit_request(
        &self,
        maker: &str,
        action: &StaffAction,
        policy: &ApprovalPolicy,
    ) -> Result<(i64, UnixTime), LifecycleError> {
        // Asking twice for the same thing is refused, naming the request that waits: a
        // supervisor sees each change once.
        let params = serde_json::to_value(action)
            .map_err(|_| LifecycleError::Internal("a request cannot be serialized".into()))?;
        let now = self.now();
        let expires_at = now + policy.request_ttl_secs;
        let actor = Actor::Staff(maker.into());
        let submitted = self
            .store()
            .insert_staff_request_audited(
                &NewStaffRequest {
                    action: action.name(),
                    subject: action.subject(),
                    params: &params,
                    maker,
                    created_at: now,
                    expires_at,
                },
                |id| {
                    self.ok_entry(
                        &actor,
                        "request.submit",
                        &request_subject(id),
                        json!({"action": action.name(), "subject": action.subject(),
                               "params": params, "expires_at": expires_at}),
                    )
                },
            )
            .await?;
        match submitted {
            Submitted::Stored(id) => Ok((id, expires_at)),
            Submitted::AlreadyPending(id) => Err(Refusal::new(
                "request_pending",
                format!("request {id} already asks for this and waits for a supervisor's decision"),
            )
            .into()),
        }
    }

    /// Staff member `checker` approves request `id`: the action runs, audited with both
    /// names; its answer (e.g. a new issuance code) is returned. A maker cannot approve
    /// their own request, nor can anyone approve a request that is no longer pending.
    pub async fn approve_request(
        &self,
        checker: &str,
        id: i64,
    ) -> Result<(StaffRequest, ActionDone), LifecycleError> {
        let checker_actor = Actor::Staff(checker.into());
        let req = self
            .open_request(&checker_actor, "request.approve", id)
            .await?;
        if req.maker == checker {
            let e = Refusal::new("own_request", "a request must be approved by someone else");
            return self.refuse_approval(&checker_actor, id, e).await;
        }
        let action = stored_action(&req)?;
        if let Some(e) = self.checker_refusal(checker, &req, &action).await? {
            return self.refuse_approval(&checker_actor, id, e).await;
        }
        let claimed = self
            .move_request(
                &checker_actor,
                "request.approve",
                RequestTransition {
                    id,
                    from: &[RequestState::Pending],
                    to: RequestState::Approving,
                    by: Some(checker),
                    at: self.now(),
                    unexpired: true,
                    result: None,
                },
                json!({"maker": req.maker, "action": req.action, "subject": req.subject}),
            )
            .await?;
        if !claimed {
            return Err(self.moved_on(&checker_actor, "request.approve", id).await);
        }
        let actor = Actor::FourEyes {
            maker: req.maker.clone(),
            checker: checker.into(),
            request: id,
        };
        // The maker asked with the role they had then; one disabled or moved to another
        // role since cannot still have it done.
        let ran = match self.maker_may_still_ask(&req.maker).await {
            Ok(()) => self.run_action(&actor, &action, Run::Approved).await,
            Err(e) => {
                self.refuse(&actor, action.name(), action.subject(), e)
                    .await
            }
        };
        let (to, result, audit_action) = match &ran {
            Ok(done) => (RequestState::Done, done.summary.clone(), "request.done"),
            Err(e) => (
                RequestState::Failed,
                json!({"error": e.code(), "message": e.to_string()}),
                "request.failed",
            ),
        };
        // The action committed (or was refused) already; this records how it ended.
        self.move_request(
            &actor,
            audit_action,
            RequestTransition {
                id,
                from: &[RequestState::Approving],
                to,
                by: None,
                at: self.now(),
                unexpired: false,
                result: Some(&result),
            },
            json!({"maker": req.maker, "checker": checker, "result": result}),
        )
        .await?;
        let done = ran?;
        let stored = self
            .store()
            .staff_request(id)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(request_subject(id)))?;
        Ok((stored, done))
    }

    /// The maker is still an enabled operator or supervisor (who may ask for changes).
    async fn maker_may_still_ask(&self, maker: &str) -> Result<(), LifecycleError> {
        let member = self.store().staff_member(maker).await?;
        match member {
            Some(m)
                if m.enabled && matches!(m.role, StaffRole::Operator | StaffRole::Supervisor) =>
            {
                Ok(())
            }
            _ => Err(Refusal::new(
                "maker_inactive",
                format!(
                    "staff member {maker:?} who asked is no longer an enabled operator or \
                     supervisor; the request cannot run"
                ),
            )
            .into()),
        }
    }

    /// Refuses `checker`'s approval of request `id`, audited under the request.
    async fn refuse_approval<T>(
        &self,
        checker: &Actor,
        id: i64,
        e: Refusal,
    ) -> Result<T, LifecycleError> {
        self.refuse(checker, "request.approve", &request_subject(id), e.into())
            .await
    }

    /// Why `checker` may not decide (approve or reject) `req`, asking for `action`: the
    /// staff member it is about (a staff change, or the revocation of a staff certificate)
    /// is the checker or may be held by the same person, or so may the maker.
    async fn checker_refusal(
        &self,
        checker: &str,
        req: &StaffRequest,
        action: &StaffAction,
    ) -> Result<Option<Refusal>, LifecycleError> {
        let checker_holders = self.possible_holders(checker).await?;
        if let Some(about) = self.staff_subject(action).await? {
            if about == checker {
                return Ok(Some(Refusal::new(
                    "own_request",
                    "a change to a staff member or their certificate is decided by someone else",
                )));
            }
            if may_be_one_person(&self.possible_holders(&about).await?, &checker_holders) {
                return Ok(Some(held_by_one(&about, checker)));
            }
        }
        let maker_holders = self.possible_holders(&req.maker).await?;
        Ok(may_be_one_person(&maker_holders, &checker_holders)
            .then(|| held_by_one(&req.maker, checker)))
    }

    /// Who may hold the staff member `name`'s certificate: `name`, whoever received its
    /// latest code, whoever received that one's code, and so on. A chain, because one
    /// person can approve a code for an identity they already hold and so collect a
    /// third; bounded, as no real chain is long.
    async fn possible_holders(&self, name: &str) -> Result<Vec<String>, LifecycleError> {
        let mut chain = vec![name.to_owned()];
        while chain.len() < MAX_HOLDER_CHAIN {
            let Some(last) = chain.last() else { break };
            match self.code_receiver_of(last).await? {
                Some(next) if !chain.contains(&next) => chain.push(next),
                _ => break,
            }
        }
        Ok(chain)
    }

    /// Who received the staff member `name`'s latest issuance code on the console (asked for
    /// it and got it at once, or approved its request and got it in the answer), and so could
    /// have obtained that certificate with a key of their own.
    async fn code_receiver_of(&self, name: &str) -> Result<Option<String>, LifecycleError> {
        let actor = self
            .store()
            .latest_audit_actor("code.authorize", &crate::store::staff_login(name))
            .await?;
        Ok(actor.as_deref().and_then(code_receiver).map(str::to_owned))
    }

    /// The staff member `action` is about: the one a staff change names, or the holder of
    /// the staff certificate a revocation names.
    async fn staff_subject(&self, action: &StaffAction) -> Result<Option<String>, LifecycleError> {
        Ok(match action {
            StaffAction::Revoke { serial, .. } => self
                .store()
                .certificate(&super::normalize_serial(serial))
                .await?
                .and_then(|c| crate::store::staff_name(&c.login).map(str::to_owned)),
            other if other.approval_kind().starts_with("staff.") => {
                Some(other.subject().to_owned())
            }
            _ => None,
        })
    }

    /// Staff member `checker` rejects request `id`; nothing it asked for happens.
    pub async fn reject_request(
        &self,
        checker: &str,
        id: i64,
    ) -> Result<StaffRequest, LifecycleError> {
        let actor = Actor::Staff(checker.into());
        let req = self.open_request(&actor, "request.reject", id).await?;
        let refusal = if req.maker == checker {
            Some(Refusal::new(
                "own_request",
                "a request is rejected by someone else; withdraw your own instead",
            ))
        } else {
            // A veto is a decision too: the same people may not make it.
            self.checker_refusal(checker, &req, &stored_action(&req)?)
                .await?
        };
        if let Some(e) = refusal {
            return self
                .refuse(&actor, "request.reject", &request_subject(id), e.into())
                .await;
        }
        self.finish_request(
            &actor,
            "request.reject",
            &req,
            RequestState::Rejected,
            checker,
        )
        .await
    }

    /// The maker takes request `id` back.
    pub async fn withdraw_request(
        &self,
        maker: &str,
        id: i64,
    ) -> Result<StaffRequest, LifecycleError> {
        let actor = Actor::Staff(maker.into());
        let req = self.open_request(&actor, "request.withdraw", id).await?;
        if req.maker != maker {
            let e = Refusal::new(
                "not_your_request",
                "only the staff member who asked can withdraw a request",
            );
            return self
                .refuse(&actor, "request.withdraw", &request_subject(id), e.into())
                .await;
        }
        self.finish_request(
            &actor,
            "request.withdraw",
            &req,
            RequestState::Withdrawn,
            maker,
        )
        .await
    }

    /// Marks pending requests whose time ran out as expired; returns how many.
    pub async fn expire_requests(&self) -> Result<usize, LifecycleError> {
        let mut n = 0;
        for id in self.store().expired_staff_requests(self.now()).await? {
            let moved = self
                .move_request(
                    &Actor::System,
                    "request.expire",
                    RequestTransition {
                        id,
                        from: &[RequestState::Pending],
                        to: RequestState::Expired,
                        by: None,
                        at: self.now(),
                        unexpired: false,
                        result: None,
                    },
                    json!({}),
                )
                .await?;
            n += usize::from(moved);
        }
        Ok(n)
    }

    /// The request, or an audited refusal when it does not exist.
    async fn open_request(
        &self,
        actor: &Actor,
        action: &str,
        id: i64,
    ) -> Result<StaffRequest, LifecycleError> {
        match self.store().staff_request(id).await? {
            Some(r) => Ok(r),
            None => {
                let e = LifecycleError::NotFound(request_subject(id));
                self.refuse(actor, action, &request_subject(id), e).await
            }
        }
    }

    async fn finish_request(
        &self,
        actor: &Actor,
        audit_action: &str,
        req: &StaffRequest,
        to: RequestState,
        by: &str,
    ) -> Result<StaffRequest, LifecycleError> {
        let moved = self
            .move_request(
                actor,
                audit_action,
                RequestTransition {
                    id: req.id,
                    from: &[RequestState::Pending],
                    to,
                    by: Some(by),
                    at: self.now(),
                    unexpired: true,
                    result: None,
                },
                json!({"maker": req.maker, "action": req.action, "subject": req.subject}),
            )
            .await?;
        if !moved {
            return Err(self.moved_on(actor, audit_action, req.id).await);
        }
        self.store()
            .staff_request(req.id)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(request_subject(req.id)))
    }

    async fn move_request(
        &self,
        actor: &Actor,
        audit_action: &str,
        change: RequestTransition<'_>,
        detail: serde_json::Value,
    ) -> Result<bool, LifecycleError> {
        let entry = crate::audit::entry(
            change.at,
            actor,
            audit_action,
            &request_subject(change.id),
            Outcome::Ok,
            detail,
        );
        Ok(self
            .store()
            .transition_staff_request_audited(&change, &entry)
            .await?)
    }

    /// The refusal for a request that is no longer pending (decided, withdrawn or expired),
    /// audited. A pending request past its time is marked expired on the way.
    async fn moved_on(&self, actor: &Actor, audit_action: &str, id: i64) -> LifecycleError {
        if let Err(e) = self.expire_requests().await {
            tracing::warn!(error = %e, "cannot mark expired staff requests");
        }
        let state = match self.store().staff_request(id).await {
            Ok(Some(r)) => r.state.as_str(),
            Ok(None) => "gone",
            Err(e) => return LifecycleError::from(e),
        };
        let e = Refusal::new(
            "request_finished",
            format!("request {id} is no longer pending (it is {state})"),
        );
        match self
            .refuse::<()>(actor, audit_action, &request_subject(id), e.into())
            .await
        {
            Err(e) => e,
            Ok(()) => LifecycleError::Internal("a refusal was not returned".into()),
        }
    }

    /// Runs `action` now, audited as `actor`.
    async fn run_action(
        &self,
        actor: &Actor,
        action: &StaffAction,
        run: Run<'_>,
    ) -> Result<ActionDone, LifecycleError> {
        // Run alone, a code is made only for a login ID whose role needs no checker, judged
        // on the row the code is made for.
        let alone = |u: &User| match run {
            Run::Alone(policy) => alone_allowed(action, u, policy),
            Run::Approved => Ok(()),
        };
        let summary = |v| ActionDone {
            summary: v,
            code: None,
        };
        let switched =
            |changed: bool, enabled: bool| json!({"changed": changed, "enabled": enabled});
        Ok(match action {
            StaffAction::AddContract { id, name } => {
                let c = self.add_contract(actor, id, name).await?;
                summary(json!({"contract": c.id, "name": c.name}))
            }
            StaffAction::DisableContract { id } => summary(switched(
                self.set_contract_enabled(actor, id, false).await?,
                false,
            )),
            StaffAction::EnableContract { id } => summary(switched(
                self.set_contract_enabled(actor, id, true).await?,
                true,
            )),
            StaffAction::AddUser {
                login,
                contract,
                role,
                email,
            } => {
                let u = self
                    .add_user(
                        actor,
                        &NewUser {
                            login,
                            contract,
                            role: *role,
                            email,
                        },
                    )
                    .await?;
                summary(
                    json!({"login": u.login, "contract": u.contract_id, "role": u.role.as_str()}),
                )
            }
            StaffAction::DisableUser { login } => summary(switched(
                self.set_user_enabled(actor, login, false).await?,
                false,
            )),
            StaffAction::EnableUser { login } => summary(switched(
                self.set_user_enabled(actor, login, true).await?,
                true,
            )),
            StaffAction::Authorize { login } => coded(
                self.authorize_if(Audience::Customer, actor, login, &alone)
                    .await?,
            ),
            StaffAction::Reissue { login } => coded(
                self.staff_reissue_if(actor, login, RevocationReason::Superseded, &alone)
                    .await?,
            ),
            StaffAction::Revoke { serial, reason } => {
                let c = self.revoke(actor, serial, *reason).await?;
                summary(json!({"serial": c.serial, "login": c.login, "reason": reason.as_str()}))
            }
            StaffAction::AddStaff { name, role, email } => {
                let m = self.staff_add(actor, name, *role, email).await?;
                summary(json!({"name": m.name, "role": m.role.as_str()}))
            }
            StaffAction::SetStaffRole { name, role } => {
                self.staff_set_role(actor, name, *role).await?;
                summary(json!({"name": name, "role": role.as_str()}))
            }
            StaffAction::DisableStaff { name } => {
                self.staff_set_enabled(actor, name, false).await?;
                summary(json!({"name": name, "enabled": false}))
            }
            StaffAction::EnableStaff { name } => {
                self.staff_set_enabled(actor, name, true).await?;
                summary(json!({"name": name, "enabled": true}))
            }
            StaffAction::AuthorizeStaff { name } => coded(self.staff_authorize(actor, name).await?),
        })
    }
}

/// How an action runs: approved by a checker, or alone because `policy` wanted none.
#[derive(Debug, Clone, Copy)]
enum Run<'a> {
    Approved,
    Alone(&'a ApprovalPolicy),
}

/// The approval kind of a staff-made issuance code or re-issue for a login ID of `role`:
/// an administrator's, or an approver's or general user's (which DESIGN leaves to the
/// contract's administrator, so staff making one is the exception that waits).
pub fn code_kind(role: Role) -> &'static str {
    match role {
        Role::Admin => "cert.reissue.admin",
        Role::Approver | Role::General => "cert.reissue.user",
    }
}

/// Whether `action` waits for a checker under `policy`. `role`: the role of the login ID
/// a code or re-issue is for (unknown: judged as an administrator's).
fn approval_needed(action: &StaffAction, role: Option<Role>, policy: &ApprovalPolicy) -> bool {
    if policy.covers(action.approval_kind()) {
        return true;
    }
    match action {
        // A re-issue revokes the current certificate: it waits whenever a revocation
        // does, or a second request would undo what the first protects.
        StaffAction::Reissue { .. } if policy.covers("cert.revoke") => true,
        // A code is what a re-issue hands out: one kind per role covers both, so one
        // operator cannot add a login ID to a contract and take its code alone.
        StaffAction::Reissue { .. } | StaffAction::Authorize { .. } => {
            policy.covers(code_kind(role.unwrap_or(Role::Admin)))
        }
        _ => false,
    }
}

/// Refuses running `action` alone for `user` when its role wants a checker.
fn alone_allowed(
    action: &StaffAction,
    user: &User,
    policy: &ApprovalPolicy,
) -> Result<(), LifecycleError> {
    if approval_needed(action, Some(user.role), policy) {
        return Err(Refusal::new(
            "approval_required",
            format!(
                "{} for the {} login ID {:?} needs a supervisor's approval; ask again",
                action.name(),
                user.role.as_str(),
                user.login
            ),
        )
        .into());
    }
    Ok(())
}

/// A code's answer: when it expires and what it replaced, with the code kept aside.
fn coded(a: Authorized) -> ActionDone {
    ActionDone {
        summary: json!({
            "login": a.login,
            "code_expires_at": a.expires_at,
            "revoked_serial": a.revoked_serial,
        }),
        code: Some(a),
    }
}

/// The action a stored request asks for.
fn stored_action(req: &StaffRequest) -> Result<StaffAction, LifecycleError> {
    serde_json::from_str(&req.params).map_err(|_| {
        LifecycleError::Internal(format!(
            "request {} holds parameters of no known action",
            req.id
        ))
    })
}

/// How far `Lifecycle::possible_holders` follows codes received from one identity to the
/// next.
const MAX_HOLDER_CHAIN: usize = 16;

/// Whether one person may act as both identities, given who may hold each: the same name,
/// one received the other's code, one person received both, or a chain of such.
fn may_be_one_person(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| b.contains(x))
}

fn held_by_one(a: &str, checker: &str) -> Refusal {
    Refusal::new(
        "code_holder",
        format!(
            "staff members {a:?} and {checker:?} may be one person (one received the other's \
             issuance code, or one person received both); another supervisor must decide this \
             request"
        ),
    )
}

/// How a request is named in the audit log.
pub fn request_subject(id: i64) -> String {
    format!("request:{id}")
}

/// The staff member who saw the code in the answer of a `code.authorize` by `actor` (an
/// audit actor): the staff member who ran it, or the supervisor whose approval ran it. None
/// for the host's command line.
fn code_receiver(actor: &str) -> Option<&str> {
    let rest = actor.strip_prefix("staff:")?;
    Some(
        rest.split_once(" (approving request ")
            .map_or(rest, |(checker, _)| checker),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_goes_to_whoever_saw_the_answer() {
        assert_eq!(code_receiver("staff:ito"), Some("ito"));
        let approved = Actor::FourEyes {
            maker: "op1".into(),
            checker: "sup1".into(),
            request: 7,
        };
        assert_eq!(code_receiver(&approved.to_string()), Some("sup1"));
        assert_eq!(code_receiver("host:root"), None);
        assert_eq!(code_receiver("user:alice"), None);
    }

    #[test]
    fn identities_whose_codes_one_person_received_are_one() {
        let chain = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // Codes made on the host were seen by nobody on the console.
        assert!(!may_be_one_person(&chain(&["op"]), &chain(&["sup"])));
        assert!(may_be_one_person(&chain(&["op"]), &chain(&["op"])));
        // One received the other's code, either way round.
        assert!(may_be_one_person(&chain(&["new", "sup"]), &chain(&["sup"])));
        assert!(may_be_one_person(&chain(&["sup"]), &chain(&["new", "sup"])));
        // One supervisor received both codes.
        assert!(may_be_one_person(
            &chain(&["newbie", "sup2"]),
            &chain(&["newbie2", "sup2"])
        ));
        assert!(!may_be_one_person(
            &chain(&["newbie", "sup2"]),
            &chain(&["newbie2", "sup1"])
        ));
        // sup2 holds newbie, and as newbie received newbie3's code: newbie3 and sup2 are
        // one person too.
        assert!(may_be_one_person(
            &chain(&["newbie3", "newbie", "sup2"]),
            &chain(&["sup2"])
        ));
    }

    #[test]
    fn a_request_is_checked_and_made_canonical_before_it_is_stored() {
        let staff = |name: &str| StaffAction::AddStaff {
            name: name.into(),
            role: StaffRole::Supervisor,
            email: "a@bank.example".into(),
        };
        let long = "a".repeat(60_000);
        for bad in ["", "\u{202e}sup1", "a\nb", long.as_str()] {
            let e = staff(bad).canonical().unwrap_err();
            assert_eq!(e.code, "bad_identifier", "{bad:?}");
        }
        assert!(staff("sup1").canonical().is_ok());
        let revoke = StaffAction::Revoke {
            serial: "62:92:CC:0A".into(),
            reason: RevocationReason::Unspecified,
        };
        assert_eq!(revoke.canonical().unwrap().subject(), "6292cc0a");
        let contract = StaffAction::AddContract {
            id: "c9".into(),
            name: "x\u{7}".into(),
        };
        assert_eq!(contract.canonical().unwrap_err().code, "bad_name");
    }

    #[test]
    fn actions_round_trip_through_their_stored_form() {
        let a = StaffAction::Revoke {
            serial: "0a".into(),
            reason: RevocationReason::KeyCompromise,
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["action"], "cert.revoke");
        assert_eq!(a.name(), "cert.revoke");
        assert_eq!(serde_json::from_value::<StaffAction>(v).unwrap(), a);
        let unknown = json!({"action": "ca.rollover"});
        assert!(serde_json::from_value::<StaffAction>(unknown).is_err());
    }

    fn default_policy() -> ApprovalPolicy {
        ApprovalPolicy {
            kinds: DEFAULT_APPROVAL_KINDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            request_ttl_secs: 86_400,
        }
    }

    fn user(role: Role) -> User {
        User {
            login: "taro".into(),
            contract_id: "c1".into(),
            role,
            email: "taro@example.com".into(),
            enabled: true,
            created_at: 0,
        }
    }

    #[test]
    fn an_administrators_code_never_runs_alone() {
        let p = default_policy();
        let code = StaffAction::Authorize {
            login: "taro".into(),
        };
        assert!(approval_needed(&code, Some(Role::Admin), &p));
        // Unknown (refused before): judged as an administrator's, never as free.
        assert!(approval_needed(&code, None, &p));
        // Run alone, the row the code is made for is judged again.
        let e = alone_allowed(&code, &user(Role::Admin), &p).unwrap_err();
        assert_eq!(e.code(), "approval_required");
        let open = ApprovalPolicy {
            kinds: BTreeSet::new(),
            request_ttl_secs: 60,
        };
        assert!(alone_allowed(&code, &user(Role::Admin), &open).is_ok());
    }

    #[test]
    fn staff_codes_for_approvers_and_general_users_wait_unless_taken_out() {
        let p = default_policy();
        let code = StaffAction::Authorize {
            login: "taro".into(),
        };
        for role in [Role::Approver, Role::General] {
            assert_eq!(code_kind(role), "cert.reissue.user");
            assert!(approval_needed(&code, Some(role), &p), "{role:?}");
        }
        let mut bank = default_policy();
        bank.kinds.remove("cert.reissue.user");
        assert!(!approval_needed(&code, Some(Role::General), &bank));
        assert!(approval_needed(&code, Some(Role::Admin), &bank));
        assert!(alone_allowed(&code, &user(Role::General), &bank).is_ok());
    }

    #[test]
    fn the_default_policy_names_only_known_kinds() {
        for k in DEFAULT_APPROVAL_KINDS {
            assert!(APPROVAL_KINDS.contains(k), "{k}");
        }
        let p = ApprovalPolicy {
            kinds: DEFAULT_APPROVAL_KINDS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            request_ttl_secs: 86_400,
        };
        assert!(p.covers("cert.revoke"));
        assert!(!p.covers("cert.reissue"));
        assert!(!p.covers("code.authorize"));
        assert!(p.covers("cert.reissue.user"));
        // Switching contracts and login IDs either way: one person must not undo an
        // approved disabling, nor disable a contract's login IDs one by one instead.
        for kind in [
            "contract.disable",
            "contract.enable",
            "user.disable",
            "user.enable",
        ] {
            assert!(p.covers(kind), "{kind}");
        }
        let role = StaffAction::SetStaffRole {
            name: "sato".into(),
            role: StaffRole::Supervisor,
        };
        assert!(p.covers(role.approval_kind()));
    }
}
