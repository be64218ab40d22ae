//! The contract administrator's JSON API under `/api/v1/`, authenticated by the caller's
//! client certificate. Every change is checked against cross-site requests; whether the
//! caller is the administrator, and of which contract, is the lifecycle rules' decision.
//! Which method and path reach which call is declared in `web/routes.rs`.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::lifecycle::Lifecycle;
use crate::locale::{self, Lang};
use crate::store::Role;

use super::csrf;
use super::json_call::{cross_site, need_peer, parse};
use super::request::{PeerCert, WebRequest};
use super::respond::{WebResponse, json_error, json_ok, lifecycle_json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddUserBody {
    login: String,
    role: Role,
    email: String,
}

/// A path under `/api/v1/` that is no call.
pub fn not_found() -> WebResponse {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such API")
}

/// A call asked with a method it does not take.
pub fn method_not_allowed() -> WebResponse {
    json_error(StatusCode::METHOD_NOT_ALLOWED, "method", "use POST")
}

/// The login ID of a `/api/v1/users/{login}/...` path, decoded (`%40` is `@`).
fn target_login(segment: &str) -> Result<String, WebResponse> {
    super::path_login::decode(segment).ok_or_else(|| {
        json_error(
            StatusCode::BAD_REQUEST,
            "bad_identifier",
            "the path does not name a login ID",
        )
    })
}

/// The certificate of a state-changing call that passed the cross-site checks, the pages'
/// double-submit token included: a script on an app's origin under the same site can set
/// `Origin`-less requests' cookies, but it cannot read the `HttpOnly` token cookie.
fn change_by(req: &WebRequest) -> Result<&PeerCert, WebResponse> {
    let peer = need_peer(req)?;
    csrf::check_page(req, csrf::Surface::Customer).map_err(cross_site)?;
    Ok(peer)
}

/// `GET /api/v1/users`: the contract's login IDs and their current certificates.
pub async fn users(lifecycle: &Lifecycle, req: &WebRequest) -> WebResponse {
    match need_peer(req) {
        Ok(peer) => {
            let lang = super::pages::stated_lang(req).unwrap_or(Lang::Ja);
            list_users(lifecycle, &peer.login, lang).await
        }
        Err(r) => r,
    }
}

/// `POST /api/v1/users/{login}/reissue`: revokes the user's certificate, answers a new code.
pub async fn reissue(lifecycle: &Lifecycle, req: &WebRequest, target: &str) -> WebResponse {
    let peer = match change_by(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let target = match target_login(target) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match lifecycle.admin_reissue(&peer.login, &target).await {
        Ok(a) => json_ok(&json!({
            "login": a.login,
            "code": a.code.reveal(),
            "expires_at": a.expires_at,
            "revoked_serial": a.revoked_serial,
        })),
        Err(e) => lifecycle_json(&e),
    }
}

/// `POST /api/v1/users/{login}/authorize`: a code for the user's first issuance.
pub async fn authorize(lifecycle: &Lifecycle, req: &WebRequest, target: &str) -> WebResponse {
    let peer = match change_by(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let target = match target_login(target) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match lifecycle.admin_authorize(&peer.login, &target).await {
        Ok(a) => {
            json_ok(&json!({"login": a.login, "code": a.code.reveal(), "expires_at": a.expires_at}))
        }
        Err(e) => lifecycle_json(&e),
    }
}

/// `POST /api/v1/users` `{"login", "role", "email"}`: a new login ID in the caller's contract.
pub async fn add_user(lifecycle: &Lifecycle, req: &WebRequest) -> WebResponse {
    let peer = match change_by(req) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let body: AddUserBody = match parse(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match lifecycle
        .admin_add_user(&peer.login, &body.login, body.role, &body.email)
        .await
    {
        Ok(u) => json_ok(&json!({"login": u.login, "role": u.role, "contract": u.contract_id})),
        Err(e) => lifecycle_json(&e),
    }
}

/// The contract's users; `not_after_text` is each expiry as the page shows dates (the
/// caller's language, the branding's time zone, the zone written).
async fn list_users(lifecycle: &Lifecycle, admin_login: &str, lang: Lang) -> WebResponse {
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
    let locale = locale::current();
    let tz = locale.brand().names(lang).tz();
    let mut out = Vec::with_capacity(users.len());
    for u in users {
        let cert = store.current_certificate(&u.login).await.ok().flatten();
        out.push(json!({
            "login": u.login,
            "role": u.role,
            "email": u.email,
            "enabled": u.enabled,
            "certificate": cert.map(|c| json!({
                "serial": c.serial,
                "not_after": c.not_after,
                "not_after_text": locale::format_date_time(c.not_after, lang, tz),
            })),
        }));
    }
    json_ok(&json!({"contract": admin.contract_id, "users": out}))
}
