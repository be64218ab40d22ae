//! The JSON calls behind certgate's obtain and renew pages: `POST /certgate/api/obtain`
//! (`{"login", "code", "csr"}`) and `POST /certgate/api/renew` (`{"csr"}`, with the current
//! client certificate). Both carry the pages' double-submit token; the certificate comes
//! back as PEM with the CA chain, its serial and expiry.

use serde::Deserialize;
use serde_json::json;

use crate::audit::Actor;
use crate::ca::pem;
use crate::lifecycle::{Authorization, Lifecycle};
use crate::store::CertRecord;

use crate::web::csrf;
use crate::web::json_call::{cross_site, need_peer, parse};
use crate::web::request::WebRequest;
use crate::web::respond::{WebResponse, json_ok, lifecycle_json};

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

/// `POST /certgate/api/obtain`: a first issuance with the login ID and issuance code.
pub async fn obtain(lifecycle: &Lifecycle, ca_chain: &[Vec<u8>], req: &WebRequest) -> WebResponse {
    if let Err(e) = csrf::check_page(req, csrf::Surface::Customer) {
        return cross_site(e);
    }
    let body: ObtainBody = match parse(req) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let requester = Actor::Anonymous(req.remote.clone());
    let authorization = Authorization::IssuanceCode {
        login: body.login.trim(),
        code: &body.code,
        requester: &requester,
    };
    enroll(lifecycle, ca_chain, authorization, &body.csr).await
}

/// The login ID an obtain call names, read leniently (for the per-login limits, before
/// the body is checked).
pub fn named_login(req: &WebRequest) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
    Some(value.get("login")?.as_str()?.trim().to_owned())
}

/// `POST /certgate/api/renew`: a renewal authenticated by the current client certificate.
pub async fn renew(lifecycle: &Lifecycle, ca_chain: &[Vec<u8>], req: &WebRequest) -> WebResponse {
    if let Err(e) = csrf::check_page(req, csrf::Surface::Customer) {
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
    let authorization = Authorization::CurrentCertificate {
        serial: &peer.serial,
    };
    enroll(lifecycle, ca_chain, authorization, &body.csr).await
}

async fn enroll(
    lifecycle: &Lifecycle,
    ca_chain: &[Vec<u8>],
    authorization: Authorization<'_>,
    csr_pem: &str,
) -> WebResponse {
    match lifecycle.enroll(authorization, csr_pem.as_bytes()).await {
        Ok(cert) => cert_answer(&cert, ca_chain),
        Err(e) => lifecycle_json(&e),
    }
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
