//! A throw-away PKI for gateway tests, with software keys (rcgen): the customer CA, a
//! foreign CA, the server certificate, and client certificates.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA whose key is in memory.
pub struct TestCa {
    key: KeyPair,
    params: CertificateParams,
    pub der: CertificateDer<'static>,
    pub pem: String,
}

/// A client certificate with its key.
#[derive(Clone)]
pub struct ClientCert {
    pub der: CertificateDer<'static>,
    pub key_pkcs8: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
    /// Lowercase hex, as the store keeps it.
    pub serial: String,
    pub sha256: String,
    pub not_before: i64,
    pub not_after: i64,
}

impl ClientCert {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}

fn serial_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b[0] = (b[0] & 0x7f) | 0x40;
    b
}

impl TestCa {
    pub fn new(cn: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "Example Bank");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            der: cert.der().clone(),
            pem: cert.pem(),
            key,
            params,
        }
    }

    /// A client certificate for `login` in `contract`, valid from `not_before` to `not_after`.
    pub fn client(
        &self,
        login: &str,
        contract: &str,
        not_before: i64,
        not_after: i64,
    ) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, login);
        dn.push(DnType::OrganizationalUnitName, contract);
        params.distinguished_name = dn;
        let serial = serial_bytes();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::new(self.params.clone(), &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let der = cert.der().clone();
        ClientCert {
            sha256: hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der)),
            serial: hex::encode(serial),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            key_pkcs8: key.serialize_der(),
            der,
            not_before,
            not_after,
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1: (chain PEM, key PEM, DER).
    pub fn server(&self) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.serial_number = Some(SerialNumber::from_slice(&serial_bytes()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::new(self.params.clone(), &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }
}
