//! The console's calls: which method and path is which call, what role each needs, and
//! how each turns into a lifecycle operation and back into JSON.

use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::audit::Actor;
use crate::ca::RevocationReason;
use crate::ca::pem;
use crate::identity::StaffCaller;
use crate::lifecycle::{ActionDone, Asked, Authorization, LifecycleError, StaffAction};
use crate::store::{
    Audience, AuditQuery, CertFilter, RequestState, Role, STAFF_CONTRACT, StaffRequest, StaffRole,
    staff_login,
};

use super::super::json_call::parse;
use super::super::path_login;
use super::super::request::WebRequest;
use super::super::respond::{WebResponse, json_error, json_ok, status_of};
use super::Console;
use super::query;
use super::roles::Operation;

/// Where the API lives on the staff listener.
pub const PREFIX: &str = "/staff/api/v1/";

/// The obtain listener's one call: `{"name", "code", "csr"}` → the staff certificate.
pub const OBTAIN_PATH: &str = "/staff/api/v1/obtain";

/// The renew page's call: `{"csr"}` with the current staff certificate.
pub const RENEW_PATH: &str = "/staff/api/v1/renew";

/// Most rows one search answers.
const MAX_PAGE: i64 = 500;
const DEFAULT_PAGE: i64 = 50;

/// One console call, with what its path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Me,
    Contracts,
    AddContract,
    SwitchContract { id: String, enable: bool },
    Users,
    AddUser,
    SwitchUser { login: String, enable: bool },
    Authorize { login: String },
    Reissue { login: String },
    Certificates,
    Revoke { serial: String },
    Audit,
    Requests,
    Decide { id: i64, approve: bool },
    Withdraw { id: i64 },
    StaffList,
    AddStaff,
    StaffRole { name: String },
    SwitchStaff { name: String, enable: bool },
    AuthorizeStaff { name: String },
    Renew,
}

impl Call {
    /// What the role table checks.
    pub fn operation(&self) -> Operation {
        match self {
            Self::Me
            | Self::Contracts
            | Self::Users
            | Self::Certificates
            | Self::Requests
            | Self::StaffList => Operation::Read,
            Self::Audit => Operation::ReadAudit,
            Self::Renew => Operation::Own,
            Self::Decide { .. } => Operation::Decide,
            Self::Withdraw { .. } => Operation::Withdraw,
            Self::AddContract
            | Self::SwitchContract { .. }
            | Self::AddUser
            | Self::SwitchUser { .. }
            | Self::Authorize { .. }
            | Self::Reissue { .. }
            | Self::Revoke { .. }
            | Self::AddStaff
            | Self::StaffRole { .. }
            | Self::SwitchStaff { .. }
            | Self::AuthorizeStaff { .. } => Operation::Change,
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Me => "me",
            Self::Contracts => "list contracts",
            Self::AddContract => "add a contract",
            Self::SwitchContract { .. } => "disable or enable a contract",
            Self::Users => "list login IDs",
            Self::AddUser => "add a login ID",
            Self::SwitchUser { .. } => "disable or enable a login ID",
            Self::Authorize { .. } => "authorize issuance",
            Self::Reissue { .. } => "re-issue",
            Self::Certificates => "list certificates",
            Self::Revoke { .. } => "revoke",
            Self::Audit => "read the audit log",
            Self::Requests => "list requests",
            Self::Decide { .. } => "approve or reject a request",
            Self::Withdraw { .. } => "withdraw a request",
            Self::StaffList => "list staff",
            Self::AddStaff => "add a staff member",
            Self::StaffRole { .. } => "change a staff member's role",
            Self::SwitchStaff { .. } => "disable or enable a staff member",
            Self::AuthorizeStaff { .. } => "authorize a staff certificate",
            Self::Renew => "renew one's own certificate",
        }
    }
}

/// The call `method` and the path segments after [`PREFIX`] name, if any.
pub fn route(method: &Method, segments: &[&str]) -> Option<Call> {
    let get = method == Method::GET;
    let post = method == Method::POST;
    let login = |s: &str| path_login::decode(s);
    let id = |s: &str| {
        (!s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some(match segments {
        ["me"] if get => Call::Me,
        ["renew"] if post => Call::Renew,
        ["contracts"] if get => Call::Contracts,
        ["contracts"] if post => Call::AddContract,
        ["contracts", c, verb @ ("disable" | "enable")] if post => Call::SwitchContract {
            id: login(c)?,
            enable: *verb == "enable",
        },
        ["users"] if get => Call::Users,
        ["users"] if post => Call::AddUser,
        ["users", l, verb @ ("disable" | "enable")] if post => Call::SwitchUser {
            login: login(l)?,
            enable: *verb == "enable",
        },
        ["users", l, "authorize"] if post => Call::Authorize { login: login(l)? },
        ["users", l, "reissue"] if post => Call::Reissue { login: login(l)? },
        ["certificates"] if get => Call::Certificates,
        ["certificates", s, "revoke"] if post => Call::Revoke { serial: serial(s)? },
        ["audit"] if get => Call::Audit,
        ["requests"] if get => Call::Requests,
        ["requests", n, verb @ ("approve" | "reject")] if post => Call::Decide {
            id: id(n)?,
            approve: *verb == "approve",
        },
        ["requests", n, "withdraw"] if post => Call::Withdraw { id: id(n)? },
        ["staff"] if get => Call::StaffList,
        ["staff"] if post => Call::AddStaff,
        ["staff", n, "role"] if post => Call::StaffRole { name: login(n)? },
        ["staff", n, verb @ ("disable" | "enable")] if post => Call::SwitchStaff {
            name: login(n)?,
            enable: *verb == "enable",
        },
        ["staff", n, "authorize"] if post => Call::AuthorizeStaff { name: login(n)? },
        _ => return None,
    })
}

/// A serial as typed: hex digits, optionally with `:` separators.
fn serial(s: &str) -> Option<String> {
    let ok =
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    ok.then(|| s.to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractBody {
    id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    login: String,
    contract: String,
    role: Role,
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffBody {
    name: String,
    role: StaffRole,
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleBody {
    role: StaffRole,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObtainBody {
    /// `login` is what the obtain page's script sends.
    #[serde(alias = "login")]
    name: String,
    code: String,
    csr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewBody {
    csr: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: RevocationReason,
}

/// Runs `call` for `caller` (role and cross-site checks already passed).
pub async fn run(
    console: &Console,
    call: Call,
    req: &WebRequest,
    caller: &StaffCaller,
) -> WebResponse {
    match answer(console, call, req, caller).await {
        Ok(r) | Err(r) => r,
    }
}

async fn answer(
    console: &Console,
    call: Call,
    req: &WebRequest,
    caller: &StaffCaller,
) -> Result<WebResponse, WebResponse> {
    let lc = &console.lifecycle;
    let store = lc.store();
    let action = match call {
        Call::Me => {
            return Ok(json_ok(&json!({
                "name": caller.name,
                "role": caller.role.as_str(),
                "serial": caller.serial,
            })));
        }
        Call::Contracts => {
            let rows: Vec<_> = store
                .contracts()
                .await
                .map_err(|e| error(&e.into()))?
                .into_iter()
                .filter(|c| c.id != STAFF_CONTRACT)
                .map(|c| {
                    json!({"id": c.id, "name": c.name, "enabled": c.enabled,
                           "created_at": c.created_at})
                })
                .collect();
            return Ok(json_ok(&json!({ "contracts": rows })));
        }
        Call::Users => {
            let contract = query::text(req, "contract")?;
            let text = query::text(req, "q")?;
            let limit = page_size(req)?;
            let users = store
                .search_users(contract.as_deref(), text.as_deref(), limit)
                .await
                .map_err(|e| error(&e.into()))?;
            let rows: Vec<_> = users
                .iter()
                .map(|u| {
                    json!({"login": u.login, "contract": u.contract_id, "role": u.role.as_str(),
                           "email": u.email, "enabled": u.enabled, "created_at": u.created_at})
                })
                .collect();
            return Ok(json_ok(&json!({ "users": rows })));
        }
        Call::Certificates => {
            let Some(login) = query::text(req, "login")? else {
                return Err(json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_query",
                    "give the login ID: certificates?login=...",
                ));
            };
            let certs = store
                .certificates(&CertFilter {
                    login: Some(login),
                    status: None,
                })
                .await
                .map_err(|e| error(&e.into()))?;
            let now = lc.now();
            let rows: Vec<_> = certs
                .iter()
                .map(|c| {
                    json!({"serial": c.serial, "login": c.login, "contract": c.contract_id,
                           "status": c.status.as_str(), "expired": c.not_after < now,
                           "not_before": c.not_before, "not_after": c.not_after,
                           "revoked_at": c.revoked_at, "revocation_reason": c.revocation_reason})
                })
                .collect();
            return Ok(json_ok(&json!({ "certificates": rows })));
        }
        Call::StaffList => {
            let rows: Vec<_> = store
                .staff_members()
                .await
                .map_err(|e| error(&e.into()))?
                .iter()
                .map(|m| {
                    json!({"name": m.name, "role": m.role.as_str(), "email": m.email,
                           "enabled": m.enabled, "created_at": m.created_at})
                })
                .collect();
            return Ok(json_ok(&json!({ "staff": rows })));
        }
        Call::Audit => return audit(console, req).await,
        Call::Renew => {
            let b: RenewBody = parse(req)?;
            let authorization = Authorization::CurrentCertificate {
                serial: &caller.serial,
            };
            let cert = lc
                .enroll_for(Audience::Staff, authorization, b.csr.as_bytes())
                .await
                .map_err(|e| error(&e))?;
            return Ok(json_ok(&json!({
                "certificate": pem::certificate(&cert.der),
                "chain": console.chain_pem(),
                "serial": cert.serial,
                "not_after": cert.not_after,
            })));
        }
        Call::Requests => return requests(console, req).await,
        Call::Decide { id, approve } => return decide(console, caller, id, approve).await,
        Call::Withdraw { id } => {
            let r = lc
                .withdraw_request(&caller.name, id)
                .await
                .map_err(|e| error(&e))?;
            return Ok(json_ok(&request_json(&r)));
        }
        Call::AddContract => {
            let b: ContractBody = parse(req)?;
            StaffAction::AddContract {
                id: b.id,
                name: b.name,
            }
        }
        Call::SwitchContract { id, enable: true } => StaffAction::EnableContract { id },
        Call::SwitchContract { id, enable: false } => StaffAction::DisableContract { id },
        Call::AddUser => {
            let b: UserBody = parse(req)?;
            StaffAction::AddUser {
                login: b.login,
                contract: b.contract,
                role: b.role,
                email: b.email,
            }
        }
        Call::SwitchUser {
            login,
            enable: true,
        } => StaffAction::EnableUser { login },
        Call::SwitchUser {
            login,
            enable: false,
        } => StaffAction::DisableUser { login },
        Call::Authorize { login } => StaffAction::Authorize { login },
        Call::Reissue { login } => StaffAction::Reissue { login },
        Call::AddStaff => {
            let b: StaffBody = parse(req)?;
            StaffAction::AddStaff {
                name: b.name,
                role: b.role,
                email: b.email,
            }
        }
        Call::StaffRole { name } => {
            let b: RoleBody = parse(req)?;
            StaffAction::SetStaffRole { name, role: b.role }
        }
        Call::SwitchStaff { name, enable: true } => StaffAction::EnableStaff { name },
        Call::SwitchStaff {
            name,
            enable: false,
        } => StaffAction::DisableStaff { name },
        Call::AuthorizeStaff { name } => StaffAction::AuthorizeStaff { name },
        Call::Revoke { serial } => {
            let b: RevokeBody = parse(req)?;
            StaffAction::Revoke {
                serial,
                reason: b.reason,
            }
        }
    };
    let policy = console.policy();
    match lc.ask(&caller.name, &action, &policy).await {
        Ok(Asked::Done(done)) => Ok(json_ok(&done_json(None, &done))),
        Ok(Asked::Pending {
            id,
            expires_at,
            subject,
        }) => {
            let mut r = json_ok(&json!({
                "request": id,
                "state": "pending",
                "action": action.name(),
                "subject": subject,
                "expires_at": expires_at,
            }));
            *r.status_mut() = StatusCode::ACCEPTED;
            Ok(r)
        }
        Err(e) => Err(error(&e)),
    }
}

/// A staff member's first certificate, with the one-time code `staff authorize` printed.
/// Refusals are the customer obtain page's: one answer for an unknown name and a wrong
/// code (the audit log has the reason).
/// The staff login ID an obtain call names (for the limits), before it is parsed for use.
pub fn named_login(req: &WebRequest) -> Option<String> {
    let body: ObtainBody = serde_json::from_slice(&req.body).ok()?;
    Some(staff_login(body.name.trim()))
}

pub async fn obtain(console: &Console, req: &WebRequest) -> WebResponse {
    let body: ObtainBody = match parse(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let login = staff_login(body.name.trim());
    let requester = Actor::Anonymous(req.remote.clone());
    let authorization = Authorization::IssuanceCode {
        login: &login,
        code: &body.code,
        requester: &requester,
    };
    match console
        .lifecycle
        .enroll_for(Audience::Staff, authorization, body.csr.as_bytes())
        .await
    {
        Ok(cert) => json_ok(&json!({
            "certificate": pem::certificate(&cert.der),
            "chain": console.chain_pem(),
            "serial": cert.serial,
            "not_after": cert.not_after,
        })),
        Err(e) => error(&e),
    }
}

async fn decide(
    console: &Console,
    caller: &StaffCaller,
    id: i64,
    approve: bool,
) -> Result<WebResponse, WebResponse> {
    let lc = &console.lifecycle;
    if approve {
        let (req, done) = lc
            .approve_request(&caller.name, id)
            .await
            .map_err(|e| error(&e))?;
        let mut body = done_json(Some(&req), &done);
        body["request"] = json!(req.id);
        Ok(json_ok(&body))
    } else {
        let req = lc
            .reject_request(&caller.name, id)
            .await
            .map_err(|e| error(&e))?;
        Ok(json_ok(&request_json(&req)))
    }
}

async fn requests(console: &Console, req: &WebRequest) -> Result<WebResponse, WebResponse> {
    let lc = &console.lifecycle;
    // Expired requests are shown as expired, not as pending, whoever looks first.
    lc.expire_requests().await.map_err(|e| error(&e))?;
    let state = query::text(req, "state")?
        .map(|s| {
            s.parse::<RequestState>()
                .map_err(|m| json_error(StatusCode::BAD_REQUEST, "bad_query", &m))
        })
        .transpose()?;
    let before = query::number(req, "before")?;
    let rows = lc
        .store()
        .staff_requests(state, before, page_size(req)?)
        .await
        .map_err(|e| error(&e.into()))?;
    let list: Vec<_> = rows.iter().map(request_json).collect();
    Ok(json_ok(&json!({ "requests": list })))
}

async fn audit(console: &Console, req: &WebRequest) -> Result<WebResponse, WebResponse> {
    let q = AuditQuery {
        actor: query::text(req, "actor")?,
        action: query::text(req, "action")?,
        subject: query::text(req, "subject")?,
        since: query::number(req, "since")?,
        until: query::number(req, "until")?,
        before_seq: query::number(req, "before")?,
        limit: page_size(req)?,
    };
    let rows = console
        .lifecycle
        .store()
        .search_audit(&q)
        .await
        .map_err(|e| error(&e.into()))?;
    let next = (i64::try_from(rows.len()).unwrap_or(i64::MAX) == q.limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let entries: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({"seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action,
                   "subject": r.subject, "outcome": r.outcome,
                   "detail": serde_json::from_str::<serde_json::Value>(&r.detail)
                       .unwrap_or(serde_json::Value::Null)})
        })
        .collect();
    Ok(json_ok(&json!({ "entries": entries, "next_before": next })))
}

fn page_size(req: &WebRequest) -> Result<i64, WebResponse> {
    Ok(query::number(req, "limit")?
        .unwrap_or(DEFAULT_PAGE)
        .clamp(1, MAX_PAGE))
}

/// A finished action's answer: its result, and the code when it made one (shown only in
/// this answer; the store keeps its hash).
fn done_json(req: Option<&StaffRequest>, done: &ActionDone) -> serde_json::Value {
    let mut v = json!({
        "state": req.map_or("done", |r| r.state.as_str()),
        "result": done.summary,
    });
    if let Some(a) = &done.code {
        v["code"] = json!(a.code.reveal());
        v["code_expires_at"] = json!(a.expires_at);
    }
    v
}

fn request_json(r: &StaffRequest) -> serde_json::Value {
    json!({
        "request": r.id,
        "action": r.action,
        "subject": r.subject,
        "params": serde_json::from_str::<serde_json::Value>(&r.params)
            .unwrap_or(serde_json::Value::Null),
        "maker": r.maker,
        "checker": r.checker,
        "state": r.state.as_str(),
        "created_at": r.created_at,
        "expires_at": r.expires_at,
        "decided_at": r.decided_at,
        "result": r.result.as_deref()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()),
    })
}

/// A lifecycle error as the console answers it: bad input is 400, a state that moved on
/// 409, a rule 403; internals are logged, not shown.
fn error(e: &LifecycleError) -> WebResponse {
    let status = match e {
        LifecycleError::Refused(r) => match r.code {
            "bad_identifier" | "bad_email" | "bad_name" | "bad_csr" => StatusCode::BAD_REQUEST,
            "renewal_not_open" | "renewal_closed" | "same_key" => StatusCode::CONFLICT,
            "contract_exists" | "login_exists" | "staff_exists" | "request_finished"
            | "has_certificate" | "conflict" | "approval_required" | "maker_inactive"
            | "request_pending" => StatusCode::CONFLICT,
            _ => StatusCode::FORBIDDEN,
        },
        other => status_of(other),
    };
    let message = match e {
        LifecycleError::Internal(_) => {
            tracing::error!(error = %e, "staff console: internal error");
            "an internal error occurred; see the gateway's log".to_owned()
        }
        other => other.to_string(),
    };
    json_error(status, e.code(), &message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_calls_and_odd_spellings_to_none() {
        let post = Method::POST;
        assert_eq!(
            route(&post, &["users", "taro%40a", "reissue"]),
            Some(Call::Reissue {
                login: "taro@a".into()
            })
        );
        assert_eq!(
            route(&post, &["requests", "12", "approve"]),
            Some(Call::Decide {
                id: 12,
                approve: true
            })
        );
        assert_eq!(route(&Method::GET, &["users", "a", "reissue"]), None);
        assert_eq!(route(&post, &["users", "a%2Fb", "reissue"]), None);
        assert_eq!(route(&post, &["requests", "-1", "approve"]), None);
        assert_eq!(route(&post, &["requests", "1", "approve", ""]), None);
        assert_eq!(route(&post, &["certificates", "zz", "revoke"]), None);
        assert_eq!(route(&Method::GET, &["users", ""]), None);
    }
}
