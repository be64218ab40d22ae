//! Certificate profiles: every field of the CA certificate and of a client certificate,
//! decided here and nowhere else.

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, CustomExtension, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

use crate::clock::{DAY, UnixTime};

/// Bytes of randomness in a serial number (128 bits; the CA/B Forum asks for 64).
const SERIAL_BYTES: usize = 16;

/// Who a client certificate is for.
#[derive(Debug, Clone)]
pub struct ClientSubject<'a> {
    pub login: &'a str,
    pub contract_id: &'a str,
    pub organization: &'a str,
}

/// Where relying parties find status information for a CA's certificates.
#[derive(Debug, Clone)]
pub struct StatusUrls {
    pub crl: String,
    pub ocsp: String,
}

impl StatusUrls {
    /// The URLs under `public_url` for the CA with id `ca_id`.
    pub fn for_ca(public_url: &str, ca_id: i64) -> Self {
        let base = public_url.trim_end_matches('/');
        Self {
            crl: format!("{base}/crl/{ca_id}.crl"),
            ocsp: format!("{base}/ocsp"),
        }
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

fn at(t: UnixTime) -> Result<OffsetDateTime, crate::ca::CaError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|_| crate::ca::CaError::Time(t))
}

/// The self-signed CA certificate's parameters.
pub fn ca_params(
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
    Ok(p)
}

/// A client certificate's parameters. The subject comes from the store, never from a CSR.
pub fn client_params(
    subject: &ClientSubject<'_>,
    urls: &StatusUrls,
    now: UnixTime,
    validity_days: u32,
    serial: SerialNumber,
) -> Result<CertificateParams, crate::ca::CaError> {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::OrganizationName, subject.organization);
    p.distinguished_name
        .push(DnType::OrganizationalUnitName, subject.contract_id);
    p.distinguished_name.push(DnType::CommonName, subject.login);
    p.serial_number = Some(serial);
    p.not_before = at(now)?;
    p.not_after = at(now + i64::from(validity_days) * DAY)?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    p.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![urls.crl.clone()],
    }];
    p.custom_extensions = vec![authority_info_access(&urls.ocsp)?];
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
