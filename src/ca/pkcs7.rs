//! PKCS#7 / CMS "certs-only" messages (RFC 5652 SignedData without signers), the form EST
//! (RFC 7030 §4.1.3) uses to return certificates.
//!
//! Built here rather than with `cms`'s `TryFrom<PkiPath>`: that one adds an empty CRL set
//! (`crls [1] {}`) to match OpenSSL, which strict EST clients log and strip. A certs-only
//! message carries certificates and nothing else.

use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use der::asn1::SetOfVec;
use der::{Any, Decode, Encode};

use super::CaError;

/// A certs-only SignedData ContentInfo holding `certs` (DER each), as DER.
pub fn certs_only(certs: &[&[u8]]) -> Result<Vec<u8>, CaError> {
    let mut set = CertificateSet(SetOfVec::default());
    for der in certs {
        let cert =
            x509_cert::Certificate::from_der(der).map_err(|e| CaError::CaCert(e.to_string()))?;
        set.0
            .insert(CertificateChoices::Certificate(cert))
            .map_err(encoding)?;
    }
    let signed = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::default(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: const_oid::db::rfc5911::ID_DATA,
            econtent: None,
        },
        certificates: Some(set),
        crls: None,
        signer_infos: SignerInfos(SetOfVec::default()),
    };
    let info = ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed).map_err(encoding)?,
    };
    info.to_der().map_err(encoding)
}

fn encoding(e: der::Error) -> CaError {
    CaError::Profile(format!("cannot encode PKCS#7: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_der(cn: &str) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn certs_only_has_the_certificates_and_no_crl_set() {
        let (a, b) = (cert_der("a"), cert_der("b"));
        let der = certs_only(&[&a, &b]).unwrap();
        let info = ContentInfo::from_der(&der).unwrap();
        assert_eq!(info.content_type, const_oid::db::rfc5911::ID_SIGNED_DATA);
        let sd: SignedData = info.content.decode_as().unwrap();
        assert!(sd.crls.is_none(), "a certs-only message carries no CRL set");
        assert!(sd.signer_infos.0.is_empty() && sd.digest_algorithms.is_empty());
        assert_eq!(
            sd.encap_content_info.econtent_type,
            const_oid::db::rfc5911::ID_DATA
        );
        assert!(sd.encap_content_info.econtent.is_none());
        let certs: Vec<Vec<u8>> = sd
            .certificates
            .unwrap()
            .0
            .iter()
            .map(|c| match c {
                CertificateChoices::Certificate(c) => c.to_der().unwrap(),
                CertificateChoices::Other(_) => panic!("not a certificate"),
            })
            .collect();
        assert_eq!(certs.len(), 2);
        assert!(certs.contains(&a) && certs.contains(&b));
    }

    #[test]
    fn a_certificate_that_is_not_der_is_refused() {
        assert!(certs_only(&[b"not a certificate"]).is_err());
    }
}
