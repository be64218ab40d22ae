//! The JSON API: the customer's obtain and renew calls (from certgate's pages) and the
//! contract administrator's calls (`/api/v1/`), each behind the cross-site checks.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::audit::Actor;
use crate::ca::pem;
use crate::lifecycle::Lifecycle;
use crate::store::{CertRecord, Role};

use super::csrf;
use super::request::WebRequest;
use super::respond::{WebResponse, json_error, json_ok, lifecycle_json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObtainBody {
    login: String,
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
struct AddUserBody {
    login: String,
    role: Role,
    email: String,
}

fn parse<T: for<'de> Deserialize<'de>>(req: &WebRequest) -> Result<T, WebResponse> {
    serde_json::from_slice(&req.body).map_err(|e| {
        json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("the request body is not valid: {e}"),
        )
    })
}

fn cross_site(e: csrf::CrossSite) -> WebResponse {
    json_error(StatusCode::FORBIDDEN, "cross_site", &e.to_string())
}

fn cert_answer(cert: &CertRecord, ca_chain: &[Vec<u8>]) -> WebResponse {
    let chain: Vec<String> = ca_chain.iter().map(|c| pem::certificate(c)).collect();
    json_ok(&json!({
        "certificate": pem::certificate(&cert.der),
        "chain": chain,
        "serial": cert.serial,
        "not_after": cert.not_after,
    }))
}

fn need_peer(req: &WebRequest) -> Result<&super::request::PeerCert, WebResponse> {
    req.peer.as_ref().ok_or_else(|| {
        json_error(
            StatusCode::UNAUTHORIZED,
            "certificate_required",
            "this call needs your current client certificate",
        )
    })
}

/// `POST /certgate/api/obtain`
pub async fn obtain(lifecycle: &Lifecycle, ca_chain: &[Vec<u8>], req: &WebRequest) -> WebResponse {
    if let Err(e) = csrf::check_page(req) {
        return cross_site(e);
    }
    let body: ObtainBody = match parse(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let actor = Actor::Anonymous(req.remote.clone());
    match lifecycle
        .obtain(&actor, body.login.trim(), &body.code, body.csr.as_bytes())
        .await
    {
        Ok(cert) => cert_answer(&cert, ca_chain),
        Err(e) => lifecycle_json(&e),
    }
}

/// `POST /certgate/api/renew`
pub async fn renew(lifecycle: &Lifecycle, ca_chain: &[Vec<u8>], req: &WebRequest) -> WebResponse {
    if let Err(e) = csrf::check_page(req) {
        return cross_site(e);
    }
    let peer = match need_peer(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body: RenewBody = match parse(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match lifecycle.renew(&peer.serial, body.csr.as_bytes()).await {
        Ok(cert) => cert_answer(&cert, ca_chain),
        Err(e) => lifecycle_json(&e),
    }
}

/// `/api/v1/...`: the contract administrator's calls.
pub async fn admin(lifecycle: &Lifecycle, req: &WebRequest) -> WebResponse {
    let peer = match need_peer(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let rest = req.path.strip_prefix("/api/v1/").unwrap_or_default();
    let parts: Vec<&str> = rest.split('/').collect();
    if req.method == http::Method::GET {
        return match parts.as_slice() {
            ["users"] => list_users(lifecycle, &peer.login).await,
            _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such API"),
        };
    }
    if req.method != http::Method::POST {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, "method", "use POST");
    }
    if let Err(e) = csrf::check_api(req) {
        return cross_site(e);
    }
    match parts.as_slice() {
        ["users", target, "reissue"] => match lifecycle.admin_reissue(&peer.login, target).await {
            Ok(a) => json_ok(&json!({
                "login": a.login,
                "code": a.code.reveal(),
                "expires_at": a.expires_at,
                "revoked_serial": a.revoked_serial,
            })),
            Err(e) => lifecycle_json(&e),
        },
        ["users", target, "authorize"] => {
            match lifecycle.admin_authorize(&peer.login, target).await {
                Ok(a) => json_ok(
                    &json!({"login": a.login, "code": a.code.reveal(), "expires_at": a.expires_at}),
                ),
                Err(e) => lifecycle_json(&e),
            }
        }
        ["users"] => {
            let body: AddUserBody = match parse(req) {
                Ok(b) => b,
                Err(r) => return r,
            };
            match lifecycle
                .admin_add_user(&peer.login, &body.login, body.role, &body.email)
                .await
            {
                Ok(u) => {
                    json_ok(&json!({"login": u.login, "role": u.role, "contract": u.contract_id}))
                }
                Err(e) => lifecycle_json(&e),
            }
        }
        _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such API"),
    }
}

async fn list_users(lifecycle: &Lifecycle, admin_login: &str) -> WebResponse {
    let store = lifecycle.store();
    let admin = match store.user(admin_login).await {
        Ok(Some(u)) if u.role == Role::Admin => u,
        Ok(_) => {
            return json_error(
                StatusCode::FORBIDDEN,
                "not_admin",
                "only the contract's administrator may list login IDs",
            );
        }
        Err(e) => return lifecycle_json(&e.into()),
    };
    let users = match store.users_of_contract(&admin.contract_id).await {
        Ok(u) => u,
        Err(e) => return lifecycle_json(&e.into()),
    };
    let mut out = Vec::with_capacity(users.len());
    for u in users {
        let cert = store.current_certificate(&u.login).await.ok().flatten();
        out.push(json!({
            "login": u.login,
            "role": u.role,
            "email": u.email,
            "enabled": u.enabled,
            "certificate": cert.map(|c| json!({"serial": c.serial, "not_after": c.not_after})),
        }));
    }
    json_ok(&json!({"contract": admin.contract_id, "users": out}))
}
