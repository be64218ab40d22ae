//! The CRL distribution point and the OCSP responder, both signed in the HSM and cached.
//!
//! Caches are dropped when a certificate's status changes (on this instance at once, on
//! others through the store's change feed), so an answer is never older than the change
//! that made it wrong. OCSP requests with a nonce are signed fresh each time.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::sync::Mutex;
use x509_ocsp::OcspResponseStatus;

use crate::ca::crl::CrlContents;
use crate::ca::ocsp::{self, OcspIssuer, OcspStatus};
use crate::ca::{Authority, RevocationReason};
use crate::clock::{Clock, UnixTime};
use crate::http_common::RETRY_AFTER_SECS;
use crate::store::{CertStatus, Store};

use super::request::WebRequest;
use super::respond::{WebResponse, text, with_type};

/// How long a CRL is valid after it is made.
const CRL_VALIDITY: i64 = 24 * 3600;
/// A cached CRL is remade after this long even without a change (well before nextUpdate).
const CRL_REFRESH: i64 = 3600;
/// How long an OCSP answer is valid, and how long it may be served from cache.
const OCSP_VALIDITY: i64 = 3600;
const OCSP_CACHE: i64 = 600;
/// Most cached OCSP answers kept; the cache is emptied when full.
const OCSP_CACHE_MAX: usize = 100_000;

/// One CA's signers for status information.
pub struct CaSigner {
    pub authority: Arc<Authority>,
    pub ocsp: Arc<OcspIssuer>,
}

struct CachedCrl {
    der: Bytes,
    made_at: UnixTime,
}

/// Serves CRLs and OCSP answers for every CA in the store.
pub struct Revocation {
    store: Store,
    clock: Arc<dyn Clock>,
    cas: Vec<CaSigner>,
    crls: Mutex<HashMap<i64, CachedCrl>>,
    ocsp: std::sync::Mutex<HashMap<String, (Bytes, UnixTime)>>,
}

impl Revocation {
    pub fn new(store: Store, clock: Arc<dyn Clock>, cas: Vec<CaSigner>) -> Arc<Self> {
        Arc::new(Self {
            store,
            clock,
            cas,
            crls: Mutex::new(HashMap::new()),
            ocsp: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Drops cached answers for `serial` (`*`: all) and marks every CRL stale.
    pub async fn invalidate(&self, serial: &str) {
        if let Ok(mut cache) = self.ocsp.lock() {
            if serial == "*" {
                cache.clear();
            } else {
                cache.retain(|k, _| !k.ends_with(&format!(":{serial}")));
            }
        }
        self.crls.lock().await.clear();
    }

    /// Keeps the caches in step with the store's change feed until the feed closes.
    pub fn follow_changes(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let mut rx = self.store.subscribe_changes();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(change) => this.invalidate(&change.serial).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        this.invalidate("*").await
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    /// `GET /crl/{id}.crl`
    pub async fn crl(&self, req: &WebRequest) -> WebResponse {
        let id = req
            .path
            .strip_prefix("/crl/")
            .and_then(|p| p.strip_suffix(".crl"))
            .and_then(|id| id.parse::<i64>().ok());
        let Some(signer) = id.and_then(|id| self.cas.iter().find(|c| c.authority.ca_id() == id))
        else {
            return text(StatusCode::NOT_FOUND, "no such CRL");
        };
        match self.current_crl(signer).await {
            Ok(der) => {
                let mut r = with_type(StatusCode::OK, "application/pkix-crl", der);
                r.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    http::HeaderValue::from_static("public, max-age=300"),
                );
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot produce the CRL");
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

    async fn current_crl(&self, signer: &CaSigner) -> Result<Bytes, String> {
        let ca_id = signer.authority.ca_id();
        let mut crls = self.crls.lock().await;
        let now = self.clock.now();
        if let Some(c) = crls.get(&ca_id)
            && now - c.made_at < CRL_REFRESH
        {
            return Ok(c.der.clone());
        }
        let revoked = self
            .store
            .revoked_for_crl(ca_id, now)
            .await
            .map_err(|e| e.to_string())?;
        let number = self
            .store
            .next_crl_number(ca_id)
            .await
            .map_err(|e| e.to_string())?;
        let contents = CrlContents::complete(number, now, CRL_VALIDITY, revoked);
        let authority = signer.authority.clone();
        let der = tokio::task::spawn_blocking(move || authority.sign_crl(&contents))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let der = Bytes::from(der);
        crls.insert(
            ca_id,
            CachedCrl {
                der: der.clone(),
                made_at: now,
            },
        );
        Ok(der)
    }

    /// `POST /ocsp` (body DER) or `GET /ocsp/{base64 DER}`.
    pub async fn ocsp(&self, req: &WebRequest) -> WebResponse {
        let der = match (&req.method, req.path.strip_prefix("/ocsp")) {
            (&Method::POST, Some("" | "/")) => {
                let ctype = req.header("content-type").unwrap_or_default();
                if !ctype.eq_ignore_ascii_case("application/ocsp-request") {
                    return ocsp_error(OcspResponseStatus::MalformedRequest);
                }
                req.body.to_vec()
            }
            (&Method::GET, Some(rest)) if rest.len() > 1 => {
                match decode_get(rest.trim_start_matches('/')) {
                    Some(d) => d,
                    None => return ocsp_error(OcspResponseStatus::MalformedRequest),
                }
            }
            _ => {
                let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "OCSP takes GET or POST");
                r.headers_mut().insert(
                    http::header::ALLOW,
                    http::HeaderValue::from_static("GET, POST"),
                );
                return r;
            }
        };
        let parsed = match ocsp::parse_request(&der) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "malformed OCSP request");
                return ocsp_error(OcspResponseStatus::MalformedRequest);
            }
        };
        // One responder signs the whole answer: every certificate must be of one CA.
        let Some(signer) = self.cas.iter().find(|c| c.ocsp.issued(&parsed.cert_ids[0])) else {
            return ocsp_error(OcspResponseStatus::Unauthorized);
        };
        if !parsed.cert_ids.iter().all(|id| signer.ocsp.issued(id)) {
            return ocsp_error(OcspResponseStatus::Unauthorized);
        }
        let now = self.clock.now();
        let cache_key = (parsed.nonce.is_none() && parsed.cert_ids.len() == 1).then(|| {
            format!(
                "{}:{}",
                hex::encode(&der),
                ocsp::serial_hex(&parsed.cert_ids[0])
            )
        });
        if let Some(key) = &cache_key
            && let Some(hit) = self.ocsp_cached(key, now)
        {
            return ocsp_ok(hit);
        }
        let mut answers = Vec::with_capacity(parsed.cert_ids.len());
        for id in &parsed.cert_ids {
            match self
                .status(signer.authority.ca_id(), &ocsp::serial_hex(id))
                .await
            {
                Ok(status) => answers.push((id.clone(), status)),
                Err(()) => return ocsp_error(OcspResponseStatus::TryLater),
            }
        }
        // The HSM blocks: sign off the event loop (gateway workers are single-threaded, so
        // `block_in_place` is not available there).
        let issuer = Arc::clone(&signer.ocsp);
        let nonce = parsed.nonce.clone();
        let signed = tokio::task::spawn_blocking(move || {
            issuer.sign(&answers, nonce.as_ref(), now, now + OCSP_VALIDITY)
        })
        .await;
        let signed = match signed {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "the OCSP signing task failed");
                return ocsp_error(OcspResponseStatus::InternalError);
            }
        };
        match signed {
            Ok(der) => {
                let der = Bytes::from(der);
                if let Some(key) = cache_key {
                    self.ocsp_store(key, der.clone(), now);
                }
                ocsp_ok(der)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign an OCSP response");
                ocsp_error(OcspResponseStatus::TryLater)
            }
        }
    }

    fn ocsp_cached(&self, key: &str, now: UnixTime) -> Option<Bytes> {
        let cache = self.ocsp.lock().ok()?;
        cache
            .get(key)
            .filter(|(_, at)| now - at < OCSP_CACHE)
            .map(|(d, _)| d.clone())
    }

    fn ocsp_store(&self, key: String, der: Bytes, now: UnixTime) {
        if let Ok(mut cache) = self.ocsp.lock() {
            if cache.len() >= OCSP_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (der, now));
        }
    }

    async fn status(&self, ca_id: i64, serial: &str) -> Result<OcspStatus, ()> {
        let cert = self.store.certificate(serial).await.map_err(|e| {
            tracing::warn!(error = %e, "OCSP status lookup failed");
        })?;
        Ok(match cert {
            Some(c) if c.ca_id == ca_id => match c.status {
                CertStatus::Current | CertStatus::Superseded => OcspStatus::Good,
                CertStatus::Revoked => OcspStatus::Revoked {
                    at: c.revoked_at.unwrap_or(c.created_at),
                    reason_code: c
                        .revocation_reason
                        .as_deref()
                        .and_then(|r| r.parse::<RevocationReason>().ok())
                        .filter(|r| *r != RevocationReason::Unspecified)
                        .map(RevocationReason::code),
                },
            },
            _ => OcspStatus::Unknown,
        })
    }
}

/// The GET form: base64 of the DER request, URL-encoded (RFC 6960 Appendix A.1).
fn decode_get(s: &str) -> Option<Vec<u8>> {
    let mut unescaped = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            unescaped.push(char::from(u8::from_str_radix(hex, 16).ok()?));
            i += 3;
        } else {
            unescaped.push(char::from(bytes[i]));
            i += 1;
        }
    }
    base64::engine::general_purpose::STANDARD
        .decode(unescaped.as_bytes())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unescaped.as_bytes()))
        .ok()
}

fn ocsp_ok(der: Bytes) -> WebResponse {
    let mut r = with_type(StatusCode::OK, "application/ocsp-response", der);
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("max-age=300"),
    );
    r
}

fn ocsp_error(status: OcspResponseStatus) -> WebResponse {
    with_type(
        StatusCode::OK,
        "application/ocsp-response",
        Bytes::from(ocsp::error_response(status)),
    )
}
