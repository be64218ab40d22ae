//! EST (RFC 7030) under `/.well-known/est/`: `cacerts`, `simpleenroll` (HTTP Basic: login ID
//! and issuance code), `simplereenroll` (the current client certificate) and `csrattrs`.
//! Bodies are base64 DER both ways (§4.1.3, §4.2.1); certificates go back as a PKCS#7
//! certs-only message. Which method reaches which operation is declared in `web/routes.rs`.

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::audit::Actor;
use crate::ca::csrattrs::csr_attributes;
use crate::ca::pkcs7;
use crate::http_common::RETRY_AFTER_SECS;
use crate::lifecycle::{Authorization, Lifecycle, LifecycleError};

use crate::web::request::WebRequest;
use crate::web::respond::{WebResponse, status_of, text, with_type};

/// The path prefix EST lives under.
pub const PREFIX: &str = "/.well-known/est/";

const PKCS7: &str = "application/pkcs7-mime; smime-type=certs-only";

/// `GET cacerts`: the active CA certificate and its chain (DER).
pub fn cacerts(ca_chain: &[Vec<u8>], req: &WebRequest) -> WebResponse {
    let refs: Vec<&[u8]> = ca_chain.iter().map(Vec::as_slice).collect();
    certs_response(&refs, Lines::for_client(req))
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

fn certs_response(certs: &[&[u8]], lines: Lines) -> WebResponse {
    match pkcs7::certs_only(certs) {
        Ok(der) => base64_body(PKCS7, &der, lines),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an EST response");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// base64 lines are folded at this many characters (RFC 7030 §4.1.3 points to MIME, whose
/// limit is 76): OpenSSL's base64 BIO, which libest reads bodies with, stops at long lines.
const BASE64_LINE: usize = 64;

/// How a response's base64 is laid out for the client that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Lines of [`BASE64_LINE`] characters ended by CRLF: MIME's form, for every client
    /// that identifies itself.
    Folded,
    /// One line: for strongSwan's `pki --est`, whose decoder takes no line break.
    Single,
}

impl Lines {
    /// Folded, unless the request carries neither `User-Agent` nor `Accept`. That is how
    /// strongSwan's `pki --est` asks (it sends Host, Authorization, Content-Type and
    /// Content-Length only) and it reads base64 in groups of four characters without
    /// skipping line breaks; libest, curl, browsers and HTTP libraries send at least one
    /// of the two and get the folded form OpenSSL's base64 BIO needs.
    pub fn for_client(req: &WebRequest) -> Self {
        if req.header("user-agent").is_none() && req.header("accept").is_none() {
            Self::Single
        } else {
            Self::Folded
        }
    }
}

fn base64_body(content_type: &'static str, der: &[u8], lines: Lines) -> WebResponse {
    let body = match lines {
        Lines::Folded => folded_base64(der),
        Lines::Single => {
            let mut flat = base64::engine::general_purpose::STANDARD.encode(der);
            flat.push_str("\r\n");
            flat
        }
    };
    let mut r = with_type(StatusCode::OK, content_type, Bytes::from(body));
    r.headers_mut().insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    r
}

/// base64 of `der` in lines of [`BASE64_LINE`] characters, each ended by CRLF.
pub fn folded_base64(der: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(flat.len() + flat.len() / BASE64_LINE * 2 + 2);
    // base64 output is ASCII, so byte chunks are whole characters.
    for line in flat.as_bytes().chunks(BASE64_LINE) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push_str("\r\n");
    }
    out
}

/// `GET csrattrs`: what the CA prefers (see `ca::csrattrs`).
pub fn csrattrs(req: &WebRequest) -> WebResponse {
    match csr_attributes() {
        Ok(der) => base64_body("application/csrattrs", &der, Lines::for_client(req)),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode the CSR attributes");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// The DER CSR from an EST body: base64, in one line or folded (any line breaks and
/// whitespace are ignored), `application/pkcs10`.
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
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
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
    enroll(lifecycle, authorization, &csr, Lines::for_client(req)).await
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
    enroll(lifecycle, authorization, &csr, Lines::for_client(req)).await
}

/// The new certificate alone (RFC 7030 §4.2.3), or the refusal as text.
async fn enroll(
    lifecycle: &Lifecycle,
    authorization: Authorization<'_>,
    csr: &[u8],
    lines: Lines,
) -> WebResponse {
    match lifecycle.enroll(authorization, csr).await {
        Ok(cert) => certs_response(&[&cert.der], lines),
        Err(e) => lifecycle_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_folded_at_64_with_crlf_and_decode_back() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let body = folded_base64(&der);
        assert!(body.ends_with("\r\n"));
        let lines: Vec<&str> = body.split_terminator("\r\n").collect();
        assert!(
            lines
                .iter()
                .all(|l| l.len() <= BASE64_LINE && !l.contains('\n'))
        );
        assert!(
            lines[..lines.len() - 1]
                .iter()
                .all(|l| l.len() == BASE64_LINE)
        );
        let joined: String = lines.concat();
        let back = base64::engine::general_purpose::STANDARD
            .decode(joined)
            .unwrap();
        assert_eq!(back, der);
    }

    #[test]
    fn clients_that_identify_themselves_get_folded_lines() {
        let mut req = est_post(b"");
        assert_eq!(Lines::for_client(&req), Lines::Single);
        req.headers
            .insert(header::USER_AGENT, HeaderValue::from_static("libest 3.2"));
        assert_eq!(Lines::for_client(&req), Lines::Folded);
        req.headers.remove(header::USER_AGENT);
        req.headers
            .insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        assert_eq!(Lines::for_client(&req), Lines::Folded);
        let one = base64_body("application/csrattrs", &[7u8; 200], Lines::Single);
        let text = std::str::from_utf8(one.body()).unwrap();
        assert_eq!(text.matches("\r\n").count(), 1);
        assert!(text.ends_with("\r\n"));
    }

    fn est_post(body: &[u8]) -> WebRequest {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/pkcs10"),
        );
        WebRequest {
            method: http::Method::POST,
            path: "/.well-known/est/simpleenroll".into(),
            query: None,
            headers,
            body: Bytes::copy_from_slice(body),
            peer: None,
            remote: "127.0.0.1:1".into(),
            origin: "https://127.0.0.1".into(),
        }
    }

    #[test]
    fn csr_bodies_are_taken_folded_or_in_one_line() {
        let der: Vec<u8> = (0..200u8).collect();
        let flat = base64::engine::general_purpose::STANDARD.encode(&der);
        let crlf = folded_base64(&der);
        let lf = crlf.replace("\r\n", "\n");
        for body in [flat.as_str(), crlf.as_str(), lf.as_str()] {
            assert_eq!(
                csr_from_body(&est_post(body.as_bytes())).ok(),
                Some(der.clone())
            );
        }
        let refused = csr_from_body(&est_post(b"not*base64"))
            .err()
            .map(|r| r.status());
        assert_eq!(refused, Some(StatusCode::BAD_REQUEST));
    }
}
