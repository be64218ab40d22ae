//! The CRL distribution point and the OCSP responder, both signed in the HSM and cached.
//!
//! What both say comes from `status::standing`, the rule the gateway's live check reads, so
//! a certificate the gateway refuses is revoked (or on hold) here too. Caches are dropped
//! when a status changes (on this instance at once, on others through the store's change
//! feed, the same feed the gateway's status cache follows), so an answer is never older than
//! the change that made it wrong. OCSP requests with a nonce are signed fresh each time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::sync::Mutex;
use x509_ocsp::OcspResponseStatus;

use crate::ca::Authority;
use crate::ca::crl::CrlContents;
use crate::ca::ocsp::{self, OcspIssuer, OcspStatus};
use crate::clock::{Clock, DAY, UnixTime};
use crate::config::Config;
use crate::http_common::RETRY_AFTER_SECS;
use crate::status::{changes_at, crl_entries, standing};
use crate::store::Store;

use super::limits::{ClientKeys, Limits, Surface};
use super::request::WebRequest;
use super::respond::{WebResponse, text, with_type};

/// Longest an OCSP answer is served from cache without a change (at most half its
/// validity, so a relying party always gets most of it; sooner when the answer changes by
/// time alone, see `status::changes_at`).
const OCSP_CACHE: i64 = 600;
/// Most cached OCSP answers kept; the cache is emptied when full.
const OCSP_CACHE_MAX: usize = 100_000;
/// Longest a relying party's HTTP cache is told to keep an answer (never past nextUpdate).
const HTTP_MAX_AGE: i64 = 300;

/// Validity of what is signed, and the overlap the status rule needs (`[revocation]`,
/// `[renewal] overlap_days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevocationSettings {
    /// CRL nextUpdate − thisUpdate, seconds.
    pub crl_validity: i64,
    /// A cached CRL is remade after this long even without a change.
    pub crl_refresh: i64,
    /// OCSP nextUpdate − thisUpdate, seconds.
    pub ocsp_validity: i64,
    /// How long a superseded certificate stays good.
    pub overlap_secs: i64,
}

impl RevocationSettings {
    pub fn from_config(cfg: &Config) -> Self {
        let r = &cfg.revocation;
        Self {
            crl_validity: i64::from(r.crl_validity_hours) * 3600,
            crl_refresh: i64::from(r.crl_refresh_secs),
            ocsp_validity: i64::from(r.ocsp_validity_secs),
            overlap_secs: i64::from(cfg.renewal.overlap_days) * DAY,
        }
    }
}

/// One CA's signers for status information.
pub struct CaSigner {
    pub authority: Arc<Authority>,
    pub ocsp: Arc<OcspIssuer>,
}

struct CachedCrl {
    der: Bytes,
    made_at: UnixTime,
    /// Remade from then on: the refresh period, or sooner when a listed certificate's
    /// standing changes by time alone (an overlap ending).
    stale_at: UnixTime,
}

/// A cached OCSP answer: the DER, when it was made, and when it goes stale.
type CachedOcsp = (Bytes, UnixTime, UnixTime);

/// Serves CRLs and OCSP answers for every CA in the store.
pub struct Revocation {
    store: Store,
    clock: Arc<dyn Clock>,
    cas: Vec<CaSigner>,
    settings: RevocationSettings,
    crls: Mutex<HashMap<i64, CachedCrl>>,
    ocsp: std::sync::Mutex<HashMap<String, CachedOcsp>>,
    /// Counts invalidations: an OCSP answer read before one is not cached after it.
    generation: AtomicU64,
}

impl Revocation {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        cas: Vec<CaSigner>,
        settings: RevocationSettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            clock,
            cas,
            settings,
            crls: Mutex::new(HashMap::new()),
            ocsp: std::sync::Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// Drops cached answers for `serial` (`*`: all) and marks every CRL stale.
    pub async fn invalidate(&self, serial: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
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
            Ok((der, made_at)) => {
                let left = made_at + self.settings.crl_validity - self.clock.now();
                let mut r = with_type(StatusCode::OK, "application/pkix-crl", der);
                r.headers_mut()
                    .insert(http::header::CACHE_CONTROL, max_age("public, ", left));
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

    /// The CA's CRL and when it was made: the cached one unless a change or its age made
    /// it stale. Lists what `status::on_crl` says, held certificates included.
    async fn current_crl(&self, signer: &CaSigner) -> Result<(Bytes, UnixTime), String> {
        let ca_id = signer.authority.ca_id();
        let mut crls = self.crls.lock().await;
        let now = self.clock.now();
        if let Some(c) = crls.get(&ca_id)
            && now < c.stale_at
        {
            return Ok((c.der.clone(), c.made_at));
        }
        let facts = self
            .store
            .facts_for_crl(ca_id, now)
            .await
            .map_err(|e| e.to_string())?;
        let overlap = self.settings.overlap_secs;
        let revoked = crl_entries(&facts, now, overlap);
        let stale_at = facts
            .iter()
            .filter_map(|f| changes_at(f, now, overlap))
            .fold(now + self.settings.crl_refresh, UnixTime::min);
        let number = self
            .store
            .next_crl_number(ca_id)
            .await
            .map_err(|e| e.to_string())?;
        let contents = CrlContents::complete(number, now, self.settings.crl_validity, revoked);
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
                stale_at,
            },
        );
        Ok((der, now))
    }

    /// `POST /ocsp` (body DER) or `GET /ocsp/{base64 DER}`.
    /// A request with a nonce is signed fresh, so it costs a token of `limits`' OCSP bucket.
    pub async fn ocsp(&self, req: &WebRequest, limits: &Limits) -> WebResponse {
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
        if parsed.nonce.is_some()
            && let Err(refused) = limits
                .admit(Surface::OcspNonce, &ClientKeys::new(&req.remote, None))
                .await
        {
            return refused.response();
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
            && let Some((hit, stale_at)) = self.ocsp_cached(key, now)
        {
            return ocsp_ok(hit, stale_at - now);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let mut answers = Vec::with_capacity(parsed.cert_ids.len());
        // Served from cache until then at the latest.
        let mut stale_at = now + OCSP_CACHE.min(self.settings.ocsp_validity / 2);
        for id in &parsed.cert_ids {
            match self
                .status(signer.authority.ca_id(), &ocsp::serial_hex(id), now)
                .await
            {
                Ok((status, changes)) => {
                    answers.push((id.clone(), status));
                    stale_at = changes.map_or(stale_at, |t| stale_at.min(t));
                }
                Err(()) => return ocsp_error(OcspResponseStatus::TryLater),
            }
        }
        // The HSM blocks: sign off the event loop (gateway workers are single-threaded, so
        // `block_in_place` is not available there).
        let issuer = Arc::clone(&signer.ocsp);
        let nonce = parsed.nonce.clone();
        let validity = self.settings.ocsp_validity;
        let signed = tokio::task::spawn_blocking(move || {
            issuer.sign(&answers, nonce.as_ref(), now, now + validity)
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
                    self.ocsp_store(key, der.clone(), now, stale_at, generation);
                }
                ocsp_ok(der, stale_at - now)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign an OCSP response");
                ocsp_error(OcspResponseStatus::TryLater)
            }
        }
    }

    /// A cached answer still fresh at `now`, and when it goes stale.
    fn ocsp_cached(&self, key: &str, now: UnixTime) -> Option<(Bytes, UnixTime)> {
        let cache = self.ocsp.lock().ok()?;
        cache
            .get(key)
            .filter(|(_, _, stale_at)| now < *stale_at)
            .map(|(d, _, stale_at)| (d.clone(), *stale_at))
    }

    /// Caches an answer unless the caches were invalidated since its status was read
    /// (`generation` taken before): it may be stale already.
    fn ocsp_store(
        &self,
        key: String,
        der: Bytes,
        now: UnixTime,
        stale_at: UnixTime,
        generation: u64,
    ) {
        if let Ok(mut cache) = self.ocsp.lock() {
            if self.generation.load(Ordering::SeqCst) != generation {
                return;
            }
            if cache.len() >= OCSP_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key, (der, now, stale_at));
        }
    }

    /// The answer for one certificate of CA `ca_id`: `status::standing` of what the store
    /// knows (client or server certificate), `unknown` for a serial it never stored; and
    /// when that answer changes by time alone, if it does.
    async fn status(
        &self,
        ca_id: i64,
        serial: &str,
        now: UnixTime,
    ) -> Result<(OcspStatus, Option<UnixTime>), ()> {
        let facts = self.store.status_facts(serial).await.map_err(|e| {
            tracing::warn!(error = %e, "OCSP status lookup failed");
        })?;
        let overlap = self.settings.overlap_secs;
        Ok(match facts {
            Some(f) if f.ca_id == ca_id => {
                let status = match standing(&f, now, overlap).revocation() {
                    None => OcspStatus::Good,
                    Some((at, reason_code)) => OcspStatus::Revoked { at, reason_code },
                };
                (status, changes_at(&f, now, overlap))
            }
            _ => (OcspStatus::Unknown, None),
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

/// A signed answer, cacheable for at most `left` seconds (what remains until its
/// nextUpdate, RFC 5019 §6.2).
fn ocsp_ok(der: Bytes, left: i64) -> WebResponse {
    let mut r = with_type(StatusCode::OK, "application/ocsp-response", der);
    r.headers_mut()
        .insert(http::header::CACHE_CONTROL, max_age("", left));
    r
}

/// `Cache-Control` for something valid `left` more seconds: never past its nextUpdate.
fn max_age(prefix: &str, left: i64) -> http::HeaderValue {
    let secs = left.clamp(0, HTTP_MAX_AGE);
    http::HeaderValue::from_str(&format!("{prefix}max-age={secs}"))
        .unwrap_or(http::HeaderValue::from_static("no-cache"))
}

fn ocsp_error(status: OcspResponseStatus) -> WebResponse {
    with_type(
        StatusCode::OK,
        "application/ocsp-response",
        Bytes::from(ocsp::error_response(status)),
    )
}
