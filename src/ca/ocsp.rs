//! OCSP (RFC 6960): request parsing and responses signed by the CA key itself (the CA is
//! its own responder, so relying parties need no delegated responder certificate).
//!
//! What this module must not do: answer for a certificate of an issuer it does not hold,
//! or sign without verifying (the key backend verifies every signature).

use der::asn1::{BitString, GeneralizedTime, Null, OctetString};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::CrlReason;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    OcspResponseStatus, ResponderId, ResponseBytes, ResponseData, RevokedInfo, SingleResponse,
    Version,
};

use super::{
    CaError, KeyAlgorithm, KeyBackend, SignatureKind, SignatureTally, subject_public_key_bits,
};
use crate::clock::UnixTime;

/// Largest request accepted. A request for one certificate is about 80 bytes.
pub const MAX_REQUEST_BYTES: usize = 4096;
/// Most certificates answered in one request.
pub const MAX_CERTS_PER_REQUEST: usize = 8;

const OID_SHA1: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_NONCE: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const OID_BASIC: der::oid::ObjectIdentifier =
    der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");

/// Why a request cannot be answered with status information.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspRequestError {
    #[error("the OCSP request is larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("the OCSP request is malformed: {0}")]
    Malformed(String),
    #[error("the OCSP request asks for no certificate, or more than {MAX_CERTS_PER_REQUEST}")]
    BadCount,
}

/// A parsed request: the certificates asked about and the nonce to echo.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub cert_ids: Vec<CertId>,
    /// The raw nonce extension value (echoed verbatim).
    pub nonce: Option<Extension>,
}

/// Parses a DER OCSPRequest.
pub fn parse_request(der: &[u8]) -> Result<ParsedRequest, OcspRequestError> {
    if der.len() > MAX_REQUEST_BYTES {
        return Err(OcspRequestError::TooLarge);
    }
    let req = OcspRequest::from_der(der).map_err(|e| OcspRequestError::Malformed(e.to_string()))?;
    let list = req.tbs_request.request_list;
    if list.is_empty() || list.len() > MAX_CERTS_PER_REQUEST {
        return Err(OcspRequestError::BadCount);
    }
    let extensions = req.tbs_request.request_extensions.unwrap_or_default();
    // RFC 6960 4.4: an unrecognised extension is ignored unless it is critical. The nonce is
    // the only one understood here, on the request or on one of its single requests.
    let critical_unknown = extensions
        .iter()
        .chain(
            list.iter()
                .flat_map(|r| r.single_request_extensions.iter().flatten()),
        )
        .find(|e| e.critical && e.extn_id != OID_NONCE);
    if let Some(e) = critical_unknown {
        return Err(OcspRequestError::Malformed(format!(
            "the request holds an unrecognised critical extension ({})",
            e.extn_id
        )));
    }
    let nonce = extensions.into_iter().find(|e| e.extn_id == OID_NONCE);
    if let Some(n) = &nonce {
        // RFC 8954: a nonce is 1 to 32 octets.
        let len = OctetString::from_der(n.extn_value.as_bytes()).map(|o| o.as_bytes().len());
        if !matches!(len, Ok(1..=32)) {
            return Err(OcspRequestError::Malformed(
                "the nonce must be 1 to 32 octets".into(),
            ));
        }
    }
    Ok(ParsedRequest {
        cert_ids: list.into_iter().map(|r| r.req_cert).collect(),
        nonce,
    })
}

/// What the responder knows about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OcspStatus {
    Good,
    Revoked {
        at: UnixTime,
        reason_code: Option<u8>,
    },
    Unknown,
}

/// One CA as an OCSP responder: the hashes a CertId is matched against, and the key.
pub struct OcspIssuer {
    pub ca_id: i64,
    name_sha1: Vec<u8>,
    key_sha1: Vec<u8>,
    name_sha256: Vec<u8>,
    key_sha256: Vec<u8>,
    key: std::sync::Arc<dyn KeyBackend>,
    /// Counts each signed response (the CA's tally, see [`OcspIssuer::with_tally`]).
    tally: SignatureTally,
}

impl std::fmt::Debug for OcspIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspIssuer")
            .field("ca_id", &self.ca_id)
            .finish_non_exhaustive()
    }
}

fn digest(alg: &'static aws_lc_rs::digest::Algorithm, data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
}

impl OcspIssuer {
    /// The responder for the CA certificate `ca_der`, signing with `key`.
    pub fn new(
        ca_id: i64,
        ca_der: &[u8],
        key: std::sync::Arc<dyn KeyBackend>,
    ) -> Result<Self, CaError> {
        let cert =
            x509_cert::Certificate::from_der(ca_der).map_err(|e| CaError::CaCert(e.to_string()))?;
        let name = cert
            .tbs_certificate
            .subject
            .to_der()
            .map_err(|e| CaError::CaCert(e.to_string()))?;
        let key_bits = subject_public_key_bits(key.public_key_der())
            .ok_or_else(|| CaError::CaCert("the CA public key cannot be parsed".into()))?
            .to_vec();
        use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY as SHA1, SHA256};
        Ok(Self {
            ca_id,
            name_sha1: digest(&SHA1, &name),
            key_sha1: digest(&SHA1, &key_bits),
            name_sha256: digest(&SHA256, &name),
            key_sha256: digest(&SHA256, &key_bits),
            key,
            tally: SignatureTally::default(),
        })
    }

    /// Counts signed responses into `tally` (the CA's, so one flush covers both).
    pub fn with_tally(mut self, tally: SignatureTally) -> Self {
        self.tally = tally;
        self
    }

    /// Whether `id` names a certificate of this CA. SHA-1 and SHA-256 CertIDs are accepted.
    pub fn issued(&self, id: &CertId) -> bool {
        let (name, key) = match id.hash_algorithm.oid {
            OID_SHA1 => (&self.name_sha1, &self.key_sha1),
            OID_SHA256 => (&self.name_sha256, &self.key_sha256),
            _ => return false,
        };
        id.issuer_name_hash.as_bytes() == name.as_slice()
            && id.issuer_key_hash.as_bytes() == key.as_slice()
    }

    /// Signs a successful response for `answers`, valid until `next_update`, echoing `nonce`.
    /// Blocking (the key is in the HSM).
    pub fn sign(
        &self,
        answers: &[(CertId, OcspStatus)],
        nonce: Option<&Extension>,
        now: UnixTime,
        next_update: UnixTime,
    ) -> Result<Vec<u8>, CaError> {
        let mut responses = Vec::with_capacity(answers.len());
        for (id, status) in answers {
            let cert_status = match *status {
                OcspStatus::Good => CertStatus::Good(Null),
                OcspStatus::Unknown => CertStatus::Unknown(Null),
                OcspStatus::Revoked { at, reason_code } => CertStatus::Revoked(RevokedInfo {
                    revocation_time: gen_time(at)?,
                    revocation_reason: reason_code.and_then(crl_reason),
                }),
            };
            responses.push(SingleResponse {
                cert_id: id.clone(),
                cert_status,
                this_update: gen_time(now)?,
                next_update: Some(gen_time(next_update)?),
                single_extensions: None,
            });
        }
        let tbs = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(
                OctetString::new(self.key_sha1.clone()).map_err(der_err)?,
            ),
            produced_at: gen_time(now)?,
            responses,
            response_extensions: nonce.map(|n| vec![n.clone()]),
        };
        let tbs_der = tbs.to_der().map_err(der_err)?;
        let signature = self.key.sign(&tbs_der)?;
        self.tally.count(SignatureKind::Ocsp);
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm: signature_algorithm(self.key.algorithm())?,
            signature: BitString::from_bytes(&signature).map_err(der_err)?,
            certs: None,
        };
        let response = OcspResponse {
            response_status: OcspResponseStatus::Successful,
            response_bytes: Some(ResponseBytes {
                response_type: OID_BASIC,
                response: OctetString::new(basic.to_der().map_err(der_err)?).map_err(der_err)?,
            }),
        };
        response.to_der().map_err(der_err)
    }
}

/// An unsigned error response (malformedRequest, internalError, tryLater, unauthorized).
pub fn error_response(status: OcspResponseStatus) -> Vec<u8> {
    OcspResponse {
        response_status: status,
        response_bytes: None,
    }
    .to_der()
    .unwrap_or_default()
}

/// The serial of a CertId as the store keeps it (lowercase hex).
pub fn serial_hex(id: &CertId) -> String {
    hex::encode(id.serial_number.as_bytes())
}

fn crl_reason(code: u8) -> Option<CrlReason> {
    Some(match code {
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        9 => CrlReason::PrivilegeWithdrawn,
        _ => return None,
    })
}

fn gen_time(t: UnixTime) -> Result<OcspGeneralizedTime, CaError> {
    let secs = u64::try_from(t).map_err(|_| CaError::Time(t))?;
    let dt = der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map_err(|_| CaError::Time(t))?;
    Ok(OcspGeneralizedTime(GeneralizedTime::from_date_time(dt)))
}

/// The AlgorithmIdentifier of a signature by a key of `alg`.
pub(super) fn signature_algorithm(alg: KeyAlgorithm) -> Result<AlgorithmIdentifierOwned, CaError> {
    use const_oid::db::rfc5912::{
        ECDSA_WITH_SHA_256, ECDSA_WITH_SHA_384, SHA_256_WITH_RSA_ENCRYPTION,
    };
    Ok(match alg {
        KeyAlgorithm::EcP256 => AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA_256,
            parameters: None,
        },
        KeyAlgorithm::EcP384 => AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA_384,
            parameters: None,
        },
        KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => AlgorithmIdentifierOwned {
            oid: SHA_256_WITH_RSA_ENCRYPTION,
            parameters: Some(der::asn1::Any::from(Null)),
        },
        KeyAlgorithm::Rsa2048Pss | KeyAlgorithm::Rsa3072Pss => super::pss::algorithm_identifier()?,
    })
}

fn der_err(e: der::Error) -> CaError {
    CaError::Profile(format!("DER encoding failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::asn1::{ObjectIdentifier, OctetString};
    use x509_ocsp::{Request, TbsRequest};

    fn request(extensions: Vec<Extension>, single: Vec<Extension>) -> Vec<u8> {
        let cert_id = CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: OID_SHA256,
                parameters: None,
            },
            issuer_name_hash: OctetString::new(vec![1; 32]).unwrap(),
            issuer_key_hash: OctetString::new(vec![2; 32]).unwrap(),
            serial_number: x509_cert::serial_number::SerialNumber::new(&[0x42]).unwrap(),
        };
        OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: vec![Request {
                    req_cert: cert_id,
                    single_request_extensions: (!single.is_empty()).then_some(single),
                }],
                request_extensions: (!extensions.is_empty()).then_some(extensions),
            },
            optional_signature: None,
        }
        .to_der()
        .unwrap()
    }

    fn extension(oid: &str, critical: bool, value: &[u8]) -> Extension {
        Extension {
            extn_id: ObjectIdentifier::new_unwrap(oid),
            critical,
            extn_value: OctetString::new(value.to_vec()).unwrap(),
        }
    }

    #[test]
    fn unrecognised_extensions_are_ignored_unless_critical() {
        let nonce = OctetString::new(vec![7; 16]).unwrap().to_der().unwrap();
        // The nonce, critical or not, is understood; another extension is ignored when it
        // is not critical.
        for critical in [false, true] {
            let der = request(
                vec![
                    extension("1.3.6.1.5.5.7.48.1.2", critical, &nonce),
                    extension("1.2.3.4", false, &[5, 0]),
                ],
                vec![extension("1.2.3.5", false, &[5, 0])],
            );
            let parsed = parse_request(&der).unwrap();
            assert_eq!(parsed.cert_ids.len(), 1);
            assert!(parsed.nonce.is_some());
        }
        // A critical one it does not know, on the request or on a single request, makes the
        // request malformed (RFC 6960 4.4).
        for (on_request, on_single) in [
            (vec![extension("1.2.3.4", true, &[5, 0])], vec![]),
            (vec![], vec![extension("1.2.3.4", true, &[5, 0])]),
        ] {
            let err = parse_request(&request(on_request, on_single)).unwrap_err();
            assert_eq!(
                err,
                OcspRequestError::Malformed(
                    "the request holds an unrecognised critical extension (1.2.3.4)".into()
                )
            );
        }
    }
}
