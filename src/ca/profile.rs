//! Certificate profiles: every field of the CA certificate and of a client certificate,
//! decided here and nowhere else. A client certificate is a customer's
//! (`CN=<login>, OU=<contract>, O=<organization>`) or a staff member's
//! (`CN=<name>, OU=certgate staff, O=<organization>`, with certgate's staff policy OID,
//! [`super::policy`]).

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

use crate::ca::crl::CrlScope;
use crate::clock::{DAY, UnixTime};

/// Bytes of randomness in a serial number (128 bits; the CA/B Forum asks for 64).
const SERIAL_BYTES: usize = 16;

pub use super::policy::ClientProfile;

/// The organizational unit of every staff certificate. It holds a space, which no contract
/// ID can, so no customer subject can look like a staff one.
pub const STAFF_UNIT: &str = "certgate staff";

/// Who a client certificate is for. `profile` comes from the stored user, never the CSR.
#[derive(Debug, Clone)]
pub struct ClientSubject<'a> {
    /// The CN: a customer's login ID, or a staff member's name.
    pub login: &'a str,
    /// The customer's contract (the OU); not used for staff (OU [`STAFF_UNIT`]).
    pub contract_id: &'a str,
    pub organization: &'a str,
    pub profile: ClientProfile,
}

/// Where relying parties find status information for a CA's certificates.
#[derive(Debug, Clone)]
pub struct StatusUrls {
    public_url: String,
    ca_id: i64,
    crl_partition_days: u32,
    pub ocsp: String,
}

impl StatusUrls {
    /// The URLs under `public_url` for the CA with id `ca_id`, its CRL split into periods of
    /// `crl_partition_days` (0: not split).
    pub fn for_ca(public_url: &str, ca_id: i64, crl_partition_days: u32) -> Self {
        let base = public_url.trim_end_matches('/');
        Self {
            public_url: base.to_string(),
            ca_id,
            crl_partition_days,
            ocsp: format!("{base}/ocsp"),
        }
    }

    /// The complete CRL that lists a certificate issued at `not_before`.
    pub fn crl_for(&self, not_before: UnixTime) -> String {
        CrlScope::for_certificate(self.ca_id, not_before, self.crl_partition_days)
            .url(&self.public_url, false)
    }
}

/// A fresh random serial: positive, never starting with a zero byte, 128 bits.
pub fn random_serial() -> Result<(SerialNumber, String), crate::ca::CaError> {
    let mut bytes = [0u8; SERIAL_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| crate::ca::CaError::Random)?;
    // Clear the sign bit and make sure the first byte is not 0 so the DER INTEGER keeps
    // all 16 bytes and the hex form is stable.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok((SerialNumber::from_slice(&bytes), hex::encode(bytes)))
}

/// RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits, the identifier every
/// relying party and linter recognises.
pub fn key_identifier(spki_der: &[u8]) -> Vec<u8> {
    let bits = crate::ca::subject_public_key_bits(spki_der).unwrap_or(spki_der);
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bits)
        .as_ref()
        .to_vec()
}

fn at(t: UnixTime) -> Result<OffsetDateTime, crate::ca::CaError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|_| crate::ca::CaError::Time(t))
}

/// The self-signed CA certificate's parameters.
pub fn ca_params(
    spki_der: &[u8],
    subject: rcgen::DistinguishedName,
    now: UnixTime,
    validity_days: u32,
    serial: SerialNumber,
) -> Result<CertificateParams, crate::ca::CaError> {
    let mut p = CertificateParams::default();
    p.distinguished_name = subject;
    p.serial_number = Some(serial);
    p.not_before = at(now)?;
    p.not_after = at(now + i64::from(validity_days) * DAY)?;
    // Issues end-entity certificates only.
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key_identifier(spki_der));
    Ok(p)
}

/// A client certificate's parameters. The subject comes from the store, never from a CSR.
pub fn client_params(
    spki_der: &[u8],
    subject: &ClientSubject<'_>,
    urls: &StatusUrls,
    now: UnixTime,
    validity_days: u32,
    serial: SerialNumber,
) -> Result<CertificateParams, crate::ca::CaError> {
    let mut p = CertificateParams::default();
    // The default parameters carry a placeholder CN; start from an empty name.
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, subject.organization);
    let unit = match subject.profile {
        ClientProfile::Customer => subject.contract_id,
        ClientProfile::Staff => STAFF_UNIT,
    };
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, unit);
    p.distinguished_name.push(DnType::CommonName, subject.login);
    p.serial_number = Some(serial);
    p.not_before = at(now)?;
    p.not_after = at(now + i64::from(validity_days) * DAY)?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![urls.crl_for(now)],
    }];
    p.custom_extensions = vec![authority_info_access(&urls.ocsp)?];
    if subject.profile.policy_in_certificates() {
        // Not critical: relying parties that ignore policies still accept the certificate.
        p.custom_extensions.push(CustomExtension::from_oid_content(
            super::policy::CERTIFICATE_POLICIES_EXTENSION,
            subject.profile.certificate_policies_der(),
        ));
    }
    p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key_identifier(spki_der));
    Ok(p)
}

/// A TLS server certificate's parameters (for the gateway's own listener when no other CA
/// provides one, e.g. the demo and tests).
pub fn server_params(
    spki_der: &[u8],
    names: &[String],
    organization: &str,
    now: UnixTime,
    validity_days: u32,
    serial: SerialNumber,
) -> Result<CertificateParams, crate::ca::CaError> {
    let mut p = CertificateParams::new(names.to_vec()).map_err(crate::ca::CaError::Rcgen)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name
        .push(DnType::OrganizationName, organization);
    if let Some(first) = names.first() {
        p.distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    p.serial_number = Some(serial);
    p.not_before = at(now)?;
    p.not_after = at(now + i64::from(validity_days) * DAY)?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(key_identifier(spki_der));
    Ok(p)
}

/// authorityInfoAccess with one OCSP access description (RFC 5280 §4.2.2.1).
fn authority_info_access(ocsp_url: &str) -> Result<CustomExtension, crate::ca::CaError> {
    use der::Encode;
    use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax, name::GeneralName};
    let uri = der::asn1::Ia5String::new(ocsp_url)
        .map_err(|_| crate::ca::CaError::Profile("the OCSP URL is not ASCII".into()))?;
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: const_oid::db::rfc5280::ID_AD_OCSP,
        access_location: GeneralName::UniformResourceIdentifier(uri),
    }]);
    let der = aia
        .to_der()
        .map_err(|e| crate::ca::CaError::Profile(format!("cannot encode AIA: {e}")))?;
    Ok(CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        der,
    ))
}
