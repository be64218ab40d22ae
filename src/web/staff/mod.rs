//! The staff console's JSON API under `/staff/api/v1/`, served on the staff listener only.
//! The caller is a verified staff member (the listener checked the certificate and read the
//! role); here every call is checked against the role table ([`roles`]) and, for changes,
//! against cross-site requests, then handed to the lifecycle: directly, or as a four-eyes
//! request when the approval policy names the action.

mod api;
mod pages;
mod query;
pub mod roles;

use std::sync::{Arc, PoisonError, RwLock};

use http::{Method, StatusCode};

use crate::audit::refusal_log::{Entry, RefusalLog};
use crate::audit::{Actor, Audit, Outcome};
use crate::identity::StaffCaller;
use crate::lifecycle::{ApprovalPolicy, Lifecycle};

use super::limits::{ClientKeys, ErrorBody, Limits};
use super::request::WebRequest;
use super::respond::{WebResponse, json_error};

/// The console and what its calls need.
pub struct Console {
    lifecycle: Lifecycle,
    /// `[staff] host`: the only host name requests may be addressed to.
    host: Option<String>,
    /// The active CA certificate, then its chain (DER), sent with issued certificates.
    ca_chain: Vec<Vec<u8>>,
    audit: Audit,
    policy: RwLock<Arc<ApprovalPolicy>>,
    /// `[limits]`, shared with the customers' side: a code tried on the obtain listener
    /// costs what it costs there.
    limits: Option<Arc<Limits>>,
    /// Calls refused by the role table: one audit row a minute per certificate.
    forbidden: RefusalLog,
}

impl Console {
    pub fn new(lifecycle: Lifecycle, policy: ApprovalPolicy) -> Self {
        Self {
            audit: Audit::new(lifecycle.store().clone()),
            lifecycle,
            host: None,
            ca_chain: Vec::new(),
            policy: RwLock::new(Arc::new(policy)),
            limits: None,
            forbidden: RefusalLog::default(),
        }
    }

    /// Codes tried on the obtain listener count against `limits` (`obtain` and
    /// `failed_codes`, per client address and login ID).
    pub fn with_limits(mut self, limits: Arc<Limits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Answers only requests addressed to `host` (`[staff] host`); others get 421.
    pub fn with_host(mut self, host: Option<String>) -> Self {
        self.host = host.map(|h| h.to_ascii_lowercase());
        self
    }

    /// A request addressed to another host name than `[staff] host`: 421, so a name that
    /// merely resolves to the console (or a stray proxy) gets no page and no call.
    fn misdirected(&self, req: &WebRequest) -> Option<WebResponse> {
        let want = self.host.as_deref()?;
        let sent = req.header("host").unwrap_or_default();
        let name = match sent.rsplit_once(':') {
            Some((n, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => sent,
        };
        (!name.eq_ignore_ascii_case(want)).then(|| {
            json_error(
                StatusCode::MISDIRECTED_REQUEST,
                "wrong_host",
                "this console answers only under its configured host name",
            )
        })
    }

    /// Sends `ca_chain` (DER, the issuing CA first) with the certificates it issues.
    pub fn with_ca_chain(mut self, ca_chain: Vec<Vec<u8>>) -> Self {
        self.ca_chain = ca_chain;
        self
    }

    /// The CA chain as PEM, for answers that carry a certificate.
    fn chain_pem(&self) -> Vec<String> {
        self.ca_chain
            .iter()
            .map(|c| crate::ca::pem::certificate(c))
            .collect()
    }

    /// Puts a reloaded approval policy in force for the next call.
    pub fn replace_policy(&self, policy: ApprovalPolicy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
    }

    /// Answers a request on the obtain listener: the obtain call only.
    pub async fn handle_public(&self, req: &WebRequest) -> WebResponse {
        if let Some(r) = self.misdirected(req) {
            return r;
        }
        if req.method == Method::POST && req.path == api::OBTAIN_PATH {
            if let Err(e) = super::csrf::check_page(req, super::csrf::Surface::Staff) {
                return super::json_call::cross_site(e);
            }
            return match &self.limits {
                Some(limits) => {
                    let keys = ClientKeys::new(&req.remote, api::named_login(req).as_deref());
                    limits
                        .code_attempt(keys, ErrorBody::Json, api::obtain(self, req))
                        .await
                }
                None => api::obtain(self, req).await,
            };
        }
        if req.path.starts_with(api::PREFIX) {
            return json_error(StatusCode::NOT_FOUND, "not_found", "no such API");
        }
        pages::serve_obtain(req)
    }

    /// Marks pending requests past their time as expired.
    pub async fn expire_requests(&self) -> Result<usize, crate::lifecycle::LifecycleError> {
        self.lifecycle.expire_requests().await
    }

    fn policy(&self) -> Arc<ApprovalPolicy> {
        Arc::clone(&self.policy.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Answers one request of `caller`.
    pub async fn handle(&self, req: &WebRequest, caller: &StaffCaller) -> WebResponse {
        if let Some(r) = self.misdirected(req) {
            return r;
        }
        let Some(rest) = req.path.strip_prefix(api::PREFIX) else {
            // The console's page and its assets; the listener already checked the caller.
            return pages::serve(req, caller);
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let Some(call) = api::route(&req.method, &segments) else {
            return json_error(StatusCode::NOT_FOUND, "not_found", "no such API");
        };
        // Cross-site first: a page elsewhere must not make audit rows in a staff member's name.
        if req.method != Method::GET
            && let Err(e) = super::csrf::check_page(req, super::csrf::Surface::Staff)
        {
            return super::json_call::cross_site(e);
        }
        let op = call.operation();
        if !roles::allows(caller.role, op) {
            self.record_forbidden(req, caller, &call).await;
            return json_error(
                StatusCode::FORBIDDEN,
                "role_forbidden",
                &format!(
                    "the {} role may not do this ({})",
                    caller.role.as_str(),
                    call.name()
                ),
            );
        }
        api::run(self, call, req, caller).await
    }

    /// A staff member trying what their role does not allow: a security event, recorded
    /// once a minute per certificate (the next row says how many were only counted).
    async fn record_forbidden(&self, req: &WebRequest, caller: &StaffCaller, call: &api::Call) {
        let now = self.lifecycle.now();
        let Entry::Record { repeated } =
            self.forbidden.entry(&caller.serial, "role_forbidden", now)
        else {
            tracing::debug!(staff = %caller.name, path = %req.path,
                "staff console: role refusal counted, not recorded");
            return;
        };
        let mut detail = serde_json::json!({"role": caller.role.as_str(), "call": call.name()});
        if repeated > 0 {
            detail["repeated"] = repeated.into();
        }
        let _ = self
            .audit
            .record(
                now,
                &Actor::Staff(caller.name.clone()),
                "staff.forbidden",
                &req.path,
                Outcome::Refused,
                detail,
            )
            .await;
    }
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}
