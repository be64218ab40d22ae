//! PKCS#7 / CMS "certs-only" messages (RFC 5652 SignedData without signers), the form EST
//! (RFC 7030) uses to return certificates.

use der::{Decode, Encode};

use super::CaError;

/// A certs-only SignedData ContentInfo holding `certs` (DER each), as DER.
pub fn certs_only(certs: &[&[u8]]) -> Result<Vec<u8>, CaError> {
    let mut path = Vec::with_capacity(certs.len());
    for der in certs {
        path.push(
            x509_cert::Certificate::from_der(der).map_err(|e| CaError::CaCert(e.to_string()))?,
        );
    }
    let info = cms::content_info::ContentInfo::try_from(path)
        .map_err(|e| CaError::Profile(format!("cannot encode PKCS#7: {e}")))?;
    info.to_der()
        .map_err(|e| CaError::Profile(format!("cannot encode PKCS#7: {e}")))
}
