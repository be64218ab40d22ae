//! The client-certificate verifier: webpki chain validation against certgate's CAs, plus a
//! memory-only look at the status cache so a serial known to be revoked fails at once.
//!
//! Two modes. *Strict* (`client_auth = required`): every problem fails the handshake.
//! *Lenient* (`optional`): the handshake only proves possession of the key; the chain is
//! judged again after the handshake ([`StatusAwareVerifier::judge`]) and a problem becomes
//! a page on each request. Either way the live status is checked per request elsewhere.
//!
//! Expiry is judged with `[renewal] grace_after_expiry_days`: a chain whose leaf expired
//! less than that ago still completes the handshake (so its holder can renew), while the
//! per-request live check refuses it everywhere but on the renewal paths.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::TlsError;
use crate::status::{Refusal, StatusCache, serial_hex};

tokio::task_local! {
    /// Set by a listener around a handshake, to learn which certificate a strict verifier
    /// refused in it (rustls's error does not say).
    static REFUSED_LEAF: Arc<Mutex<Option<RefusedLeaf>>>;
}

/// The client certificate a strict handshake refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedLeaf {
    /// Its serial as the store keeps it (`unreadable` when it does not parse).
    pub serial: String,
    pub refusal: Refusal,
}

/// Runs `handshake` (a TLS accept with a strict [`StatusAwareVerifier`]), and returns with
/// its result the certificate the verifier refused in it, if any.
pub async fn noting_refused_leaf<F: Future>(handshake: F) -> (F::Output, Option<RefusedLeaf>) {
    let cell = Arc::new(Mutex::new(None));
    let out = REFUSED_LEAF.scope(Arc::clone(&cell), handshake).await;
    let refused = cell.lock().unwrap_or_else(PoisonError::into_inner).take();
    (out, refused)
}

/// Notes `leaf`'s refusal for [`noting_refused_leaf`]; nothing outside it.
fn note_refused(leaf: &CertificateDer<'_>, e: &Error) {
    let _ = REFUSED_LEAF.try_with(|cell| {
        let serial = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map(|(_, c)| serial_hex(c.raw_serial()))
            .unwrap_or_else(|_| "unreadable".to_owned());
        *cell.lock().unwrap_or_else(PoisonError::into_inner) = Some(RefusedLeaf {
            serial,
            refusal: classify(e),
        });
    });
}

/// Wraps webpki's verifier; see the module documentation for the two modes.
#[derive(Debug)]
pub struct StatusAwareVerifier {
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
    cache: Arc<StatusCache>,
    offer: bool,
    strict: bool,
    hints: Vec<DistinguishedName>,
    /// Seconds after its `notAfter` an expired leaf still passes the chain check.
    expiry_grace_secs: u64,
}

impl StatusAwareVerifier {
    /// A verifier over `anchors`. `offer = false` does not ask for certificates at all.
    /// Strict mode needs at least one anchor. A leaf expired less than `expiry_grace_secs`
    /// ago is judged as on its last valid second.
    pub fn new(
        anchors: &[CertificateDer<'static>],
        cache: Arc<StatusCache>,
        offer: bool,
        strict: bool,
        expiry_grace_secs: u64,
    ) -> Result<Self, TlsError> {
        let provider = super::provider();
        let mut roots = RootCertStore::empty();
        for a in anchors {
            // One unusable CA record must not disable the others; it is logged.
            if let Err(e) = roots.add(a.clone()) {
                tracing::warn!(error = %e, "a CA certificate from the store is not a usable trust anchor");
            }
        }
        let webpki = if roots.is_empty() {
            if offer && strict {
                return Err(TlsError::NoTrustAnchors);
            }
            None
        } else {
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(TlsError::Anchors)?;
            Some(v)
        };
        let hints = webpki
            .as_ref()
            .map(|v| v.root_hint_subjects().to_vec())
            .unwrap_or_default();
        Ok(Self {
            webpki,
            provider,
            cache,
            offer,
            strict,
            hints,
            expiry_grace_secs,
        })
    }

    /// Judges a presented chain now: `None` when acceptable, else the reason. Runs webpki
    /// against the current anchors and looks at the cache for a known revocation.
    pub fn judge(&self, chain: &[CertificateDer<'static>]) -> Option<Refusal> {
        let (leaf, rest) = chain.split_first()?;
        match self.check_chain(leaf, rest, UnixTime::now()) {
            Ok(()) => None,
            Err(e) => Some(classify(&e)),
        }
    }

    fn check_chain(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Error> {
        let Some(webpki) = &self.webpki else {
            return Err(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        };
        let (serial, not_after) = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map(|(_, c)| {
                (
                    serial_hex(c.raw_serial()),
                    c.validity().not_after.timestamp(),
                )
            })
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        match webpki.verify_client_cert(leaf, intermediates, now) {
            Ok(_) => {}
            Err(e) if is_expiry(&e) => {
                // Within the grace days the chain is judged as on the leaf's last valid
                // second (not at now minus the grace: a leaf younger than the grace would
                // then be "not yet valid").
                // Less than the grace, as the renewal decision counts it
                // (`status::decide_for_renewal`): both refuse from `notAfter + grace` on.
                let last_valid = u64::try_from(not_after)
                    .ok()
                    .filter(|end| now.as_secs().saturating_sub(*end) < self.expiry_grace_secs);
                let Some(last_valid) = last_valid else {
                    return Err(e);
                };
                webpki.verify_client_cert(
                    leaf,
                    intermediates,
                    UnixTime::since_unix_epoch(std::time::Duration::from_secs(last_valid)),
                )?;
            }
            Err(e) => return Err(e),
        }
        if self.cache.known_revoked(&serial) {
            return Err(Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(())
    }
}

fn is_expiry(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. }
        )
    )
}

/// Maps a rustls verification error to the refusal shown to the customer.
pub(crate) fn classify(e: &Error) -> Refusal {
    match e {
        Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => Refusal::ForeignCa,
            CertificateError::Revoked => Refusal::Revoked,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Refusal::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Refusal::NotYetValid
            }
            _ => Refusal::InvalidCertificate,
        },
        Error::NoCertificatesPresented => Refusal::NoCertificate,
        _ => Refusal::InvalidCertificate,
    }
}

impl ClientCertVerifier for StatusAwareVerifier {
    fn offer_client_auth(&self) -> bool {
        self.offer
    }

    fn client_auth_mandatory(&self) -> bool {
        self.offer && self.strict
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self.check_chain(end_entity, intermediates, now) {
            Ok(()) => Ok(ClientCertVerified::assertion()),
            Err(e) if self.strict => {
                note_refused(end_entity, &e);
                Err(e)
            }
            // Lenient: judged again after the handshake, refused per request with a page.
            Err(_) => Ok(ClientCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::status::{MemorySource, StatusCacheSettings, StatusSource};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    use std::time::Duration;

    const NOT_AFTER: i64 = 1_900_000_000;
    const GRACE: u64 = 86_400;

    /// A leaf valid until [`NOT_AFTER`] and the CA that signed it.
    fn chain() -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "Grace Test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, "login-1");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf.not_before =
            time::OffsetDateTime::from_unix_timestamp(NOT_AFTER - 400 * 86_400).unwrap();
        leaf.not_after = time::OffsetDateTime::from_unix_timestamp(NOT_AFTER).unwrap();
        let leaf = leaf.signed_by(&key, &issuer).unwrap();
        (leaf.der().clone(), ca_cert.der().clone())
    }

    fn at(secs: i64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(secs).unwrap()))
    }

    #[test]
    fn the_grace_ends_on_the_second_the_renewal_decision_ends_it() {
        let (leaf, ca) = chain();
        let source: Arc<dyn StatusSource> = Arc::new(MemorySource::default());
        let cache = StatusCache::new(
            source,
            ManualClock::new(500),
            StatusCacheSettings {
                max_age: Duration::from_secs(30),
                fail_closed_after: Duration::from_secs(300),
                overlap_secs: 0,
            },
        );
        let v = StatusAwareVerifier::new(&[ca], cache, true, true, GRACE).unwrap();
        let grace = i64::try_from(GRACE).unwrap();
        for (now, passes) in [
            (NOT_AFTER, true),
            (NOT_AFTER + 1, true),
            (NOT_AFTER + grace - 1, true),
            (NOT_AFTER + grace, false),
            (NOT_AFTER + grace + 1, false),
        ] {
            let judged = v.check_chain(&leaf, &[], at(now));
            assert_eq!(
                judged.is_ok(),
                passes,
                "at notAfter + {}: {judged:?}",
                now - NOT_AFTER
            );
            if !passes {
                assert_eq!(classify(&judged.unwrap_err()), Refusal::Expired);
            }
        }
        // The decision on the renewal paths draws the same line (its clock counts a
        // certificate expired from its notAfter second, the chain check one second later).
        let mut view = crate::status::test_view("01", crate::store::CertStatus::Current);
        view.cert.not_after = NOT_AFTER;
        let renew = |now| {
            crate::status::decide_for_renewal(
                crate::status::Audience::Customer,
                Some(&view),
                now,
                0,
                grace,
            )
        };
        assert_eq!(renew(NOT_AFTER + grace - 1), crate::status::Verdict::Allow);
        assert_ne!(renew(NOT_AFTER + grace), crate::status::Verdict::Allow);
    }
}
