//! RSASSA-PSS signatures on certificates and requests: rcgen (0.14) knows no PSS, so for a
//! PSS key it builds a draft (PKCS#1 algorithm, no signature, see [`super::RcgenKey`]) and
//! this module puts the RSASSA-PSS AlgorithmIdentifier into it and has the key sign it.
//! CRLs and OCSP responses are built here already and take [`algorithm_identifier`] directly.
//!
//! What this module must not do: release a draft unsigned, or write PSS parameters other
//! than the ones the key signs with (SHA-256, MGF1-SHA-256, salt 32; `hsm::signer`).

use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::der::asn1::BitString;
use x509_cert::request::CertReq;

use super::{CaError, KeyBackend};

/// `id-RSASSA-PSS` (1.2.840.113549.1.1.10) with SHA-256, MGF1 with SHA-256 and saltLength
/// 32 (RFC 4055 §3.1). trailerField is 1, its DEFAULT, which DER leaves out; hash and MGF
/// hash carry NULL parameters. These are byte for byte the parameters rustls/webpki accept
/// (they compare the encoding), taken from the constant they compare against.
pub fn algorithm_identifier() -> Result<AlgorithmIdentifierOwned, CaError> {
    let content = rustls_pki_types::alg_id::RSA_PSS_SHA256;
    let content: &[u8] = content.as_ref();
    let len = u8::try_from(content.len())
        .ok()
        .filter(|l| *l < 0x80)
        .ok_or_else(|| CaError::Profile("the RSASSA-PSS identifier is too long".into()))?;
    let mut der = vec![0x30, len];
    der.extend_from_slice(content);
    AlgorithmIdentifierOwned::from_der(&der).map_err(der_err)
}

/// The certificate `draft` (DER, from rcgen) as `key` signs it: unchanged unless `key`
/// signs with PSS, else with the PSS identifier in both places and a new signature.
pub fn finish_certificate(draft: Vec<u8>, key: &dyn KeyBackend) -> Result<Vec<u8>, CaError> {
    if !key.algorithm().is_pss() {
        return Ok(draft);
    }
    let mut cert = Certificate::from_der(&draft).map_err(der_err)?;
    let algorithm = algorithm_identifier()?;
    cert.tbs_certificate.signature = algorithm.clone();
    let tbs = cert.tbs_certificate.to_der().map_err(der_err)?;
    let signature = key.sign(&tbs)?;
    Certificate {
        tbs_certificate: cert.tbs_certificate,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature).map_err(der_err)?,
    }
    .to_der()
    .map_err(der_err)
}

/// The PKCS#10 request `draft` (DER, from rcgen) as `key` signs it; see
/// [`finish_certificate`].
pub fn finish_request(draft: Vec<u8>, key: &dyn KeyBackend) -> Result<Vec<u8>, CaError> {
    if !key.algorithm().is_pss() {
        return Ok(draft);
    }
    let request = CertReq::from_der(&draft).map_err(der_err)?;
    let info = request.info.to_der().map_err(der_err)?;
    let signature = key.sign(&info)?;
    CertReq {
        info: request.info,
        algorithm: algorithm_identifier()?,
        signature: BitString::from_bytes(&signature).map_err(der_err)?,
    }
    .to_der()
    .map_err(der_err)
}

fn der_err(e: der::Error) -> CaError {
    CaError::Profile(format!("DER encoding failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::FromDer;
    use x509_parser::signature_algorithm::SignatureAlgorithm;

    #[test]
    fn the_identifier_states_sha256_mgf1_sha256_salt_32_trailer_1() {
        let der = algorithm_identifier().unwrap().to_der().unwrap();
        let (rest, id) = x509_parser::x509::AlgorithmIdentifier::from_der(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(id.algorithm.to_id_string(), "1.2.840.113549.1.1.10");
        let SignatureAlgorithm::RSASSA_PSS(params) = SignatureAlgorithm::try_from(&id).unwrap()
        else {
            panic!("not RSASSA-PSS");
        };
        let sha256 = "2.16.840.1.101.3.4.2.1";
        assert_eq!(params.hash_algorithm_oid().to_id_string(), sha256);
        let mgf = params.mask_gen_algorithm().unwrap();
        assert_eq!(mgf.mgf.to_id_string(), "1.2.840.113549.1.1.8");
        assert_eq!(mgf.hash.to_id_string(), sha256);
        assert_eq!(params.salt_length(), 32);
        assert_eq!(params.trailer_field(), 1);
    }

    /// A software RSA key signing as `algorithm` says (the HSM's stand-in here).
    #[derive(Debug)]
    struct SoftRsa {
        pair: aws_lc_rs::rsa::KeyPair,
        spki: Vec<u8>,
        algorithm: crate::keys::KeyAlgorithm,
    }

    impl SoftRsa {
        fn new(algorithm: crate::keys::KeyAlgorithm) -> std::sync::Arc<Self> {
            use aws_lc_rs::encoding::AsDer;
            use aws_lc_rs::signature::KeyPair;
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let spki = pair.public_key().as_der().unwrap().as_ref().to_vec();
            std::sync::Arc::new(Self {
                pair,
                spki,
                algorithm,
            })
        }
    }

    impl KeyBackend for SoftRsa {
        fn algorithm(&self) -> crate::keys::KeyAlgorithm {
            self.algorithm
        }
        fn public_key_der(&self) -> &[u8] {
            &self.spki
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, crate::keys::SignError> {
            use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaEncoding};
            let padding: &'static dyn RsaEncoding = if self.algorithm.is_pss() {
                &RSA_PSS_SHA256
            } else {
                &RSA_PKCS1_SHA256
            };
            let mut signature = vec![0; self.pair.public_modulus_len()];
            self.pair
                .sign(
                    padding,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(|_| crate::keys::SignError::BadSignature)?;
            Ok(signature)
        }
        fn health(&self) -> Result<(), crate::keys::SignError> {
            Ok(())
        }
    }

    fn self_signed(key: std::sync::Arc<SoftRsa>) -> Vec<u8> {
        let name = super::super::CaName::parse("CN=PSS Test CA,O=Example Bank").unwrap();
        super::super::self_signed_ca(key, &name, 1_800_000_000, 365).unwrap()
    }

    #[test]
    fn a_pss_ca_certificate_names_pss_twice_and_its_signature_verifies() {
        let key = SoftRsa::new(crate::keys::KeyAlgorithm::Rsa2048Pss);
        let der = self_signed(key.clone());
        let cert = Certificate::from_der(&der).unwrap();
        let pss = algorithm_identifier().unwrap();
        assert_eq!(cert.signature_algorithm, pss);
        assert_eq!(cert.tbs_certificate.signature, pss);
        let tbs = cert.tbs_certificate.to_der().unwrap();
        let signature = cert.signature.raw_bytes();
        crate::keys::verify_signature(key.algorithm, &key.spki, &tbs, signature).unwrap();
        // A PKCS#1 v1.5 check of the same bytes fails: the signature really is PSS.
        assert!(
            crate::keys::verify_signature(
                crate::keys::KeyAlgorithm::Rsa2048,
                &key.spki,
                &tbs,
                signature
            )
            .is_err()
        );
        // The key is an ordinary RSA key: rsaEncryption.
        assert_eq!(
            cert.tbs_certificate
                .subject_public_key_info
                .algorithm
                .oid
                .to_string(),
            "1.2.840.113549.1.1.1"
        );
    }

    /// `ca import` checks chains with the same code: a PSS-signed certificate verifies, and
    /// one whose signature was changed does not.
    #[test]
    fn an_imported_chain_may_be_signed_with_pss() {
        let der = self_signed(SoftRsa::new(crate::keys::KeyAlgorithm::Rsa2048Pss));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        super::super::intermediate::signed_by(&cert, &cert).unwrap();
        let mut bad = der.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (_, cert) = x509_parser::parse_x509_certificate(&bad).unwrap();
        assert!(super::super::intermediate::signed_by(&cert, &cert).is_err());
    }

    #[test]
    fn a_pkcs1_key_leaves_rcgens_certificate_as_it_is() {
        let key = SoftRsa::new(crate::keys::KeyAlgorithm::Rsa2048);
        let der = self_signed(key.clone());
        let cert = Certificate::from_der(&der).unwrap();
        assert_eq!(
            cert.signature_algorithm.oid.to_string(),
            "1.2.840.113549.1.1.11"
        );
        let tbs = cert.tbs_certificate.to_der().unwrap();
        crate::keys::verify_signature(key.algorithm, &key.spki, &tbs, cert.signature.raw_bytes())
            .unwrap();
    }

    #[test]
    fn a_pss_request_is_signed_with_pss() {
        let key = SoftRsa::new(crate::keys::KeyAlgorithm::Rsa2048Pss);
        let name = super::super::CaName::parse("CN=PSS Sub CA").unwrap();
        let pem = super::super::intermediate::request_pem(key.clone(), &name).unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let request = CertReq::from_der(&block.contents).unwrap();
        assert_eq!(request.algorithm, algorithm_identifier().unwrap());
        let info = request.info.to_der().unwrap();
        crate::keys::verify_signature(
            key.algorithm,
            &key.spki,
            &info,
            request.signature.raw_bytes(),
        )
        .unwrap();
    }
}
