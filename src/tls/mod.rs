//! TLS for the gateway's listeners (rustls on aws-lc-rs): server certificate files, the
//! client-certificate verifier that knows about live status, and the per-listener
//! `ServerConfig`.
//!
//! Owns: which protocol versions and ALPN ids are offered, how a presented chain is judged
//! at the handshake and again per connection. Must not: read the store (it gets anchors and
//! the status cache from its caller) nor speak HTTP.

mod files;
mod peer;
mod server_config;
mod server_names;
mod upstream;
mod verifier;

pub use files::{ServerKeyPair, load_server_key_pair};
pub use peer::PresentedCert;
pub use server_config::{ListenerTls, build_listener_tls};
pub use server_names::ServerNames;
pub use upstream::{UpstreamTls, upstream_tls};
pub(crate) use verifier::classify;
pub use verifier::{RefusedLeaf, StatusAwareVerifier, noting_refused_leaf};

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// Why TLS material cannot be used. Names the file, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}")]
    Read(String, #[source] std::io::Error),
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    #[error("{0} is not a usable PEM file")]
    Pem(String, #[source] rustls_pki_types::pem::Error),
    #[error("the server key in {key} does not fit the certificate in {cert}")]
    KeyMismatch {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
    #[error("client authentication is required but the store holds no CA certificate")]
    NoTrustAnchors,
    #[error("the CA certificates cannot be used as trust anchors")]
    Anchors(#[source] rustls::server::VerifierBuilderError),
    #[error("cannot build the TLS configuration")]
    Rustls(#[source] rustls::Error),
    #[error("a certificate in {file} cannot be used as a trust anchor for the app")]
    UpstreamAnchor {
        file: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{0:?} is not a name the app's certificate can be checked against")]
    ServerName(String),
}

/// The crypto provider every TLS object of certgate uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs aws-lc-rs as the process-wide rustls provider. Idempotent; call once at start
/// (a second provider compiled in by a dependency would otherwise make builders panic).
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
