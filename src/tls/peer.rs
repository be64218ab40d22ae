//! What a client presented at the handshake, read once per connection: the chain, the
//! serial as the store keys it, the SHA-256 of the end-entity DER, and the problem the
//! verifier found with it (if any).

use rustls_pki_types::CertificateDer;

use crate::status::{Refusal, serial_hex};

/// A client certificate chain as presented on one connection.
#[derive(Debug, Clone)]
pub struct PresentedCert {
    /// End-entity first, as sent.
    pub chain: Vec<CertificateDer<'static>>,
    /// Lowercase hex serial (the store's key).
    pub serial: String,
    /// Lowercase hex SHA-256 of the end-entity DER.
    pub sha256: String,
    /// RFC 4514-style subject of the end-entity certificate.
    pub subject: String,
    /// Why the chain is not acceptable, when it is not (checked against the current anchors
    /// after the handshake, so a resumed session is judged again too).
    pub problem: Option<Refusal>,
}

impl PresentedCert {
    /// Reads the end-entity certificate of `chain`; `None` when the chain is empty. An
    /// unparsable certificate yields `problem = InvalidCertificate`.
    pub fn inspect(chain: &[CertificateDer<'static>]) -> Option<Self> {
        let leaf = chain.first()?;
        let sha256 = hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            leaf.as_ref(),
        ));
        let (serial, subject, problem) = match x509_parser::parse_x509_certificate(leaf.as_ref()) {
            Ok((_, c)) => (serial_hex(c.raw_serial()), c.subject().to_string(), None),
            Err(_) => (
                String::new(),
                String::new(),
                Some(Refusal::InvalidCertificate),
            ),
        };
        Some(Self {
            chain: chain.to_vec(),
            serial,
            sha256,
            subject,
            problem,
        })
    }
}
