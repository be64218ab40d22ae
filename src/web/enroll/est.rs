//! EST (RFC 7030) under `/.well-known/est/`: `cacerts`, `simpleenroll` (HTTP Basic: login ID
//! and issuance code), `simplereenroll` (the current client certificate) and `csrattrs`.
//! Bodies are base64 DER both ways (§4.1.3, §4.2.1); certificates go back as a PKCS#7
//! certs-only message. Which method reaches which operation is declared in `web/routes.rs`.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::audit::Actor;
use crate::ca::pkcs7;
use crate::lifecycle::{Authorization, Lifecycle, LifecycleError};

use crate::web::request::WebRequest;
use crate::web::respond::{WebResponse, status_of, text, with_type};

/// The path prefix EST lives under.
pub const PREFIX: &str = "/.well-known/est/";

const PKCS7: &str = "application/pkcs7-mime; smime-type=certs-only";

/// `GET cacerts`: the active CA certificate and its chain (DER).
pub fn cacerts(ca_chain: &[Vec<u8>]) -> WebResponse {
    let refs: Vec<&[u8]> = ca_chain.iter().map(Vec::as_slice).collect();
    certs_response(&refs)
}

/// An operation EST does not have, or certgate does not offer (`serverkeygen`).
pub fn unknown_operation() -> WebResponse {
    text(StatusCode::NOT_FOUND, "unknown EST operation")
}

/// An EST operation asked with the wrong method.
pub fn method_not_allowed() -> WebResponse {
    text(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed for this EST operation",
    )
}

fn certs_response(certs: &[&[u8]]) -> WebResponse {
    match pkcs7::certs_only(certs) {
        Ok(der) => base64_body(PKCS7, &der),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an EST response");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn base64_body(content_type: &'static str, der: &[u8]) -> WebResponse {
    let mut b64 = base64::engine::general_purpose::STANDARD.encode(der);
    b64.push('\n');
    let mut r = with_type(StatusCode::OK, content_type, Bytes::from(b64));
    r.headers_mut().insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    r
}

/// `GET csrattrs`: the attributes a client should use: an EC P-256 key signed with ECDSA-SHA256.
pub fn csrattrs() -> WebResponse {
    // SEQUENCE { OID ecdsa-with-SHA256, SEQUENCE { OID id-ecPublicKey, SET { OID P-256 } } }
    const ATTRS: &[u8] = &[
        0x30, 0x23, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x30, 0x17, 0x06,
        0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x31, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    base64_body("application/csrattrs", ATTRS)
}

/// The DER CSR from an EST body: base64 (line breaks allowed), `application/pkcs10`.
/// Public for the fuzz targets; the error is the response to send.
pub fn csr_from_body(req: &WebRequest) -> Result<Vec<u8>, WebResponse> {
    let ctype = req.header("content-type").unwrap_or_default();
    let base = ctype.split(';').next().unwrap_or_default().trim();
    if !base.eq_ignore_ascii_case("application/pkcs10") {
        return Err(text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "EST enrollment needs Content-Type: application/pkcs10 (base64 DER)",
        ));
    }
    let compact: Vec<u8> = req
        .body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| text(StatusCode::BAD_REQUEST, "the EST body is not base64"))
}

/// Login ID and code from `Authorization: Basic` (public for the fuzz targets).
pub fn basic_credentials(req: &WebRequest) -> Option<(String, String)> {
    let value = req.header("authorization")?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

fn unauthorized(message: &str) -> WebResponse {
    let mut r = text(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"certgate EST\", charset=\"UTF-8\""),
    );
    r
}

fn lifecycle_error(e: &LifecycleError) -> WebResponse {
    let status = status_of(e);
    if status == StatusCode::UNAUTHORIZED {
        return unauthorized(&e.to_string());
    }
    let mut r = text(status, &e.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    }
    r
}

/// `POST simpleenroll`: a first issuance with the login ID and issuance code as HTTP Basic
/// credentials.
pub async fn simpleenroll(lifecycle: &Lifecycle, req: &WebRequest) -> WebResponse {
    let Some((login, code)) = basic_credentials(req) else {
        return unauthorized(
            "EST enrollment needs HTTP Basic authentication: login ID and issuance code",
        );
    };
    let csr = match csr_from_body(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let requester = Actor::Anonymous(req.remote.clone());
    let authorization = Authorization::IssuanceCode {
        login: &login,
        code: &code,
        requester: &requester,
    };
    enroll(lifecycle, authorization, &csr).await
}

/// `POST simplereenroll`: a renewal authenticated by the current client certificate.
pub async fn simplereenroll(lifecycle: &Lifecycle, req: &WebRequest) -> WebResponse {
    let Some(peer) = &req.peer else {
        return text(
            StatusCode::FORBIDDEN,
            "re-enrollment needs the current client certificate at the TLS handshake",
        );
    };
    let csr = match csr_from_body(req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let authorization = Authorization::CurrentCertificate {
        serial: &peer.serial,
    };
    enroll(lifecycle, authorization, &csr).await
}

/// The new certificate alone (RFC 7030 §4.2.3), or the refusal as text.
async fn enroll(
    lifecycle: &Lifecycle,
    authorization: Authorization<'_>,
    csr: &[u8],
) -> WebResponse {
    match lifecycle.enroll(authorization, csr).await {
        Ok(cert) => certs_response(&[&cert.der]),
        Err(e) => lifecycle_error(&e),
    }
}
