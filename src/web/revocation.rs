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
use crate::ca::crl::CrlScope;
use crate::ca::ocsp::{self, OcspIssuer, OcspStatus};
use crate::clock::{Clock, DAY, UnixTime};
use crate::config::Config;
use crate::status::{changes_at, standing};
use crate::store::Store;

use super::crl_point::CachedCrl;
use super::http_caching::{Reusable, ocsp_answer};
use super::limits::{ClientKeys, ErrorBody, Limits, Surface};
use super::ocsp_reservations::Reservations;
use super::request::WebRequest;
use super::respond::{WebResponse, text, with_type};

/// Longest an OCSP answer is served from cache without a change (at most half its
/// validity, so a relying party always gets most of it; sooner when the answer changes by
/// time alone, see `status::changes_at`).
const OCSP_CACHE: i64 = 600;
/// Most cached OCSP answers kept; the cache is emptied when full.
const OCSP_CACHE_MAX: usize = 100_000;

/// Validity of what is signed, and the overlap the status rule needs (`[revocation]`,
/// `[renewal] overlap_days`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSettings {
    /// CRL nextUpdate − thisUpdate, seconds.
    pub crl_validity: i64,
    /// A cached CRL is remade after this long even without a change.
    pub crl_refresh: i64,
    /// OCSP nextUpdate − thisUpdate, seconds.
    pub ocsp_validity: i64,
    /// How long a superseded certificate stays good.
    pub overlap_secs: i64,
    /// Delta CRLs are made, and their nextUpdate − thisUpdate (seconds).
    pub delta_crl: Option<i64>,
    /// The period lengths (days) whose CRL parts are served: the configured one and those
    /// kept from earlier settings.
    pub partition_days: Vec<u32>,
    /// A client certificate's validity: a part is served while its certificates can be
    /// valid.
    pub client_validity: i64,
    /// Where the CRLs are, as certificates name them (`[ca] status_url`, else `public_url`).
    pub public_url: String,
}

impl RevocationSettings {
    pub fn from_config(cfg: &Config) -> Self {
        let r = &cfg.revocation;
        let mut partition_days = r.crl_partition_days_before.clone();
        partition_days.push(r.crl_partition_days);
        partition_days.retain(|d| *d > 0);
        Self {
            crl_validity: i64::from(r.crl_validity_hours) * 3600,
            crl_refresh: i64::from(r.crl_refresh_secs),
            ocsp_validity: i64::from(r.ocsp_validity_secs),
            overlap_secs: i64::from(cfg.renewal.overlap_days) * DAY,
            delta_crl: r.delta_crl.then(|| i64::from(r.delta_crl_validity_secs)),
            partition_days,
            client_validity: i64::from(cfg.ca.validity_days) * DAY,
            public_url: cfg.ca.status_base().to_owned(),
        }
    }
}

/// One CA's signers for status information.
pub struct CaSigner {
    pub authority: Arc<Authority>,
    pub ocsp: Arc<OcspIssuer>,
}

/// A cached OCSP answer: the DER, when it was made, and when it goes stale.
type CachedOcsp = (Bytes, UnixTime, UnixTime);

/// Serves CRLs and OCSP answers for every CA in the store.
pub struct Revocation {
    pub(super) store: Store,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) cas: Vec<CaSigner>,
    pub(super) settings: RevocationSettings,
    pub(super) crls: Mutex<HashMap<(CrlScope, bool), CachedCrl>>,
    ocsp: std::sync::Mutex<HashMap<String, CachedOcsp>>,
    /// Counts invalidations: an OCSP answer read before one is not cached after it.
    generation: AtomicU64,
    /// OCSP signatures reserved in the store before they are made.
    reservations: Reservations,
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
            reservations: Reservations::default(),
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
        // With delta CRLs the change goes into the next delta; the complete CRL keeps its
        // refresh period (that is what deltas are for).
        let deltas_only = self.settings.delta_crl.is_some();
        self.crls
            .lock()
            .await
            .retain(|(_, delta), _| deltas_only && !*delta);
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
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "OCSP takes POST /ocsp, or GET /ocsp/<base64 request> (RFC 6960 A.1)",
                );
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
            return refused.response(ErrorBody::Text);
        }
        let now = self.clock.now();
        let cache_key = (parsed.nonce.is_none() && parsed.cert_ids.len() == 1).then(|| {
            format!(
                "{}:{}",
                hex::encode(&der),
                ocsp::serial_hex(&parsed.cert_ids[0])
            )
        });
        // Without a nonce the answer is the same for everyone who asks this question.
        let reusable = |signed_at: UnixTime, stale_at: UnixTime| {
            parsed.nonce.is_none().then_some(Reusable {
                signed_at,
                now,
                left: stale_at - now,
            })
        };
        let if_none_match = (req.method == Method::GET)
            .then(|| req.header("if-none-match"))
            .flatten();
        if let Some(key) = &cache_key
            && let Some((hit, signed_at, stale_at)) = self.ocsp_cached(key, now)
        {
            return ocsp_answer(hit, reusable(signed_at, stale_at), if_none_match);
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
        if let Err(e) = self
            .reservations
            .take(&self.store, signer.authority.ca_id())
            .await
        {
            tracing::warn!(error = %e, "cannot reserve an OCSP signature");
            return ocsp_error(OcspResponseStatus::TryLater);
        }
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
                ocsp_answer(der, reusable(now, stale_at), if_none_match)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot sign an OCSP response");
                ocsp_error(OcspResponseStatus::TryLater)
            }
        }
    }

    /// A cached answer still fresh at `now`: its bytes, when it was signed and when it goes
    /// stale.
    fn ocsp_cached(&self, key: &str, now: UnixTime) -> Option<(Bytes, UnixTime, UnixTime)> {
        let cache = self.ocsp.lock().ok()?;
        cache
            .get(key)
            .filter(|(_, _, stale_at)| now < *stale_at)
            .map(|(d, signed_at, stale_at)| (d.clone(), *signed_at, *stale_at))
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

fn ocsp_error(status: OcspResponseStatus) -> WebResponse {
    let mut r = with_type(
        StatusCode::OK,
        "application/ocsp-response",
        Bytes::from(ocsp::error_response(status)),
    );
    let code = match status {
        OcspResponseStatus::MalformedRequest => "malformed_request",
        OcspResponseStatus::InternalError => "internal_error",
        OcspResponseStatus::TryLater => "try_later",
        OcspResponseStatus::SigRequired => "sig_required",
        OcspResponseStatus::Unauthorized => "unauthorized",
        OcspResponseStatus::Successful => "successful",
    };
    r.extensions_mut()
        .insert(super::refusals::RefusalCode(code));
    r
}
