//! Reading the server certificate chain and key from PEM files, checked to belong together.
//! Errors name the files, never their contents.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// A server certificate chain with its private key, known to match.
#[derive(Debug)]
pub struct ServerKeyPair {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for ServerKeyPair {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Reads `cert` (chain, end-entity first) and `key` and checks the key fits the certificate.
pub fn load_server_key_pair(cert: &Path, key: &Path) -> Result<ServerKeyPair, TlsError> {
    let cert_name = cert.display().to_string();
    let key_name = key.display().to_string();
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError::Read(cert_name.clone(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError::Read(key_name.clone(), e))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(cert_name.clone(), e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_name));
    }
    let key_der =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem(key_name.clone(), e))?;
    let provider = super::provider();
    rustls::sign::CertifiedKey::from_der(chain.clone(), key_der.clone_key(), &provider).map_err(
        |source| TlsError::KeyMismatch {
            cert: cert_name,
            key: key_name,
            source,
        },
    )?;
    Ok(ServerKeyPair {
        chain,
        key: key_der,
    })
}
