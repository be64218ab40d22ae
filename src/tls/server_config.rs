//! The rustls `ServerConfig` of one listener: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1,
//! the server key pair, and the status-aware client verifier.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::CertificateDer;

use super::{ServerKeyPair, ServerNames, StatusAwareVerifier, TlsError};
use crate::config::ClientAuth;
use crate::status::StatusCache;

/// What a listener needs at each accept: the config for the handshake and the verifier to
/// judge the presented chain afterwards.
#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub server_config: Arc<ServerConfig>,
    pub verifier: Arc<StatusAwareVerifier>,
    pub client_auth: ClientAuth,
    /// The names the certificate is for: a request's `Host` must be one of them.
    pub names: Arc<ServerNames>,
}

/// Builds the TLS side of a listener. `expiry_grace_secs`: see [`StatusAwareVerifier::new`].
pub fn build_listener_tls(
    keys: &ServerKeyPair,
    client_auth: ClientAuth,
    anchors: &[CertificateDer<'static>],
    cache: Arc<StatusCache>,
    expiry_grace_secs: u64,
) -> Result<ListenerTls, TlsError> {
    let verifier = Arc::new(StatusAwareVerifier::new(
        anchors,
        cache,
        client_auth != ClientAuth::None,
        client_auth == ClientAuth::Required,
        expiry_grace_secs,
    )?);
    let mut config = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::Rustls)?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(keys.chain.clone(), keys.key.clone_key())
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption keeps the client chain; the live status is re-checked on every request, so
    // a resumed session cannot outlive a revocation or the certificate's expiry.
    let names = keys
        .chain
        .first()
        .map(|leaf| ServerNames::of_leaf(leaf.as_ref()))
        .unwrap_or_default();
    Ok(ListenerTls {
        server_config: Arc::new(config),
        verifier,
        client_auth,
        names: Arc::new(names),
    })
}
