//! The issuing CA: a CA certificate from the store and the key behind it.
//!
//! Issuance is synchronous because the key is (PKCS#11 blocks): async callers run it in
//! `spawn_blocking`. Nothing here writes to the store; the caller stores every certificate
//! before it releases it.

use std::sync::Arc;

use rcgen::Issuer;
use rustls_pki_types::CertificateDer;

use super::csr::{CheckedCsr, sha256_hex};
use super::profile::{self, ClientSubject, StatusUrls};
use super::{CaError, CaName, KeyBackend, RcgenKey, SignatureKind, SignatureTally};
use crate::clock::UnixTime;

/// A certificate just signed, with the facts the store keeps about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// Lowercase hex, no separators.
    pub serial: String,
    pub der: Vec<u8>,
    pub sha256: String,
    pub spki_sha256: String,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
}

/// What the CA writes into every client certificate besides the subject and key.
#[derive(Debug, Clone)]
pub struct IssuancePolicy {
    pub validity_days: u32,
    pub organization: String,
    /// Base URL of the CRL and OCSP endpoints the certificate names (`[ca] status_url`, else
    /// `public_url`).
    pub public_url: String,
    /// `[revocation] crl_partition_days`: which CRL a new certificate names.
    pub crl_partition_days: u32,
}

/// An issuing CA.
pub struct Authority {
    ca_id: i64,
    ca_der: Vec<u8>,
    /// The CA certificate's subject key identifier (the CRL's authority key identifier).
    pub(super) key_id: Vec<u8>,
    pub(super) issuer: Issuer<'static, RcgenKey>,
    key: Arc<dyn KeyBackend>,
    urls: StatusUrls,
    policy: IssuancePolicy,
    /// Every signature this CA's key makes through here, by kind.
    pub(super) tally: SignatureTally,
}

/// A serial drawn for a certificate before it is signed, so the intent naming it can be
/// recorded first (`lifecycle::intents`).
#[derive(Debug, Clone)]
pub struct PlannedSerial {
    serial: rcgen::SerialNumber,
    /// Lowercase hex, no separators: the serial as the store keeps it.
    pub hex: String,
}

impl PlannedSerial {
    /// A fresh random serial.
    pub fn draw() -> Result<Self, CaError> {
        let (serial, hex) = profile::random_serial()?;
        Ok(Self { serial, hex })
    }
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("ca_id", &self.ca_id)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Opens the CA `ca_id` whose certificate is `ca_der`, signing with `key`. Refuses when
    /// the certificate's public key is not the key's (wrong token, wrong label).
    pub fn new(
        ca_id: i64,
        ca_der: Vec<u8>,
        key: Arc<dyn KeyBackend>,
        policy: IssuancePolicy,
    ) -> Result<Self, CaError> {
        check_key_matches(&ca_der, key.as_ref())?;
        let issuer = Issuer::from_ca_cert_der(
            &CertificateDer::from(ca_der.as_slice()),
            RcgenKey(key.clone()),
        )
        .map_err(CaError::Rcgen)?;
        let urls = StatusUrls::for_ca(&policy.public_url, ca_id, policy.crl_partition_days);
        let key_id = subject_key_id(&ca_der)?;
        Ok(Self {
            ca_id,
            ca_der,
            key_id,
            issuer,
            key,
            urls,
            policy,
            tally: SignatureTally::default(),
        })
    }

    /// The store id of this CA.
    pub fn ca_id(&self) -> i64 {
        self.ca_id
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The signing key.
    pub fn key(&self) -> &Arc<dyn KeyBackend> {
        &self.key
    }

    /// The signatures counted for this CA (OCSP responders built for it share it).
    pub fn tally(&self) -> &SignatureTally {
        &self.tally
    }

    /// When a client certificate signed at `now` expires.
    pub fn client_not_after(&self, now: UnixTime) -> UnixTime {
        now + i64::from(self.policy.validity_days) * crate::clock::DAY
    }

    /// Signs a client certificate numbered `serial` for `subject` over the CSR's key, valid
    /// from `now`.
    pub fn issue_client(
        &self,
        serial: PlannedSerial,
        csr: &CheckedCsr,
        subject: &ClientSubject<'_>,
        now: UnixTime,
    ) -> Result<IssuedCert, CaError> {
        let PlannedSerial {
            serial,
            hex: serial_hex,
        } = serial;
        let params = profile::client_params(
            &csr.spki_der,
            subject,
            &self.urls,
            now,
            self.policy.validity_days,
            serial,
        )?;
        let public_key =
            rcgen::SubjectPublicKeyInfo::from_der(&csr.spki_der).map_err(CaError::Rcgen)?;
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(CaError::Rcgen)?;
        let der = super::pss::finish_certificate(cert.der().to_vec(), self.key.as_ref())?;
        self.tally.count(SignatureKind::Client);
        Ok(IssuedCert {
            serial: serial_hex,
            sha256: sha256_hex(&der),
            spki_sha256: csr.spki_sha256.clone(),
            not_before: params.not_before.unix_timestamp(),
            not_after: params.not_after.unix_timestamp(),
            der,
        })
    }
}

impl Authority {
    /// Signs a TLS server certificate numbered `serial` for `names` (DNS names or IP
    /// addresses, each passing [`super::server_name::check`]) over the DER
    /// SubjectPublicKeyInfo `spki_der`.
    pub fn issue_server(
        &self,
        serial: PlannedSerial,
        spki_der: &[u8],
        names: &[String],
        now: UnixTime,
        validity_days: u32,
    ) -> Result<IssuedCert, CaError> {
        for name in names {
            super::server_name::check(name)?;
        }
        let PlannedSerial {
            serial,
            hex: serial_hex,
        } = serial;
        let params = profile::server_params(
            spki_der,
            names,
            &self.policy.organization,
            now,
            validity_days,
            serial,
        )?;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(spki_der).map_err(CaError::Rcgen)?;
        let cert = params
            .signed_by(&public_key, &self.issuer)
            .map_err(CaError::Rcgen)?;
        let der = super::pss::finish_certificate(cert.der().to_vec(), self.key.as_ref())?;
        self.tally.count(SignatureKind::Server);
        Ok(IssuedCert {
            serial: serial_hex,
            sha256: sha256_hex(&der),
            spki_sha256: sha256_hex(spki_der),
            not_before: params.not_before.unix_timestamp(),
            not_after: params.not_after.unix_timestamp(),
            der,
        })
    }
}

/// Makes a self-signed CA certificate for `key` named `subject`. Returns the DER.
pub fn self_signed_ca(
    key: Arc<dyn KeyBackend>,
    subject: &CaName,
    now: UnixTime,
    validity_days: u32,
) -> Result<Vec<u8>, CaError> {
    let dn = subject.to_rcgen()?;
    let (serial, _) = profile::random_serial()?;
    let params = profile::ca_params(key.public_key_der(), dn, now, validity_days, serial)?;
    let signer = RcgenKey(key.clone());
    let cert = params.self_signed(&signer).map_err(CaError::Rcgen)?;
    let der = super::pss::finish_certificate(cert.der().to_vec(), key.as_ref())?;
    check_key_matches(&der, key.as_ref())?;
    Ok(der)
}

/// The subjectKeyIdentifier of a CA certificate.
fn subject_key_id(cert_der: &[u8]) -> Result<Vec<u8>, CaError> {
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| CaError::CaCert(e.to_string()))?;
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .ok_or_else(|| CaError::CaCert("the CA certificate has no subject key identifier".into()))
}

/// Checks that the certificate `cert_der` certifies the public key of `key`.
pub fn check_key_matches(cert_der: &[u8], key: &dyn KeyBackend) -> Result<(), CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| CaError::CaCert(e.to_string()))?;
    if cert.tbs_certificate.subject_pki.raw != key.public_key_der() {
        return Err(CaError::KeyMismatch);
    }
    Ok(())
}
