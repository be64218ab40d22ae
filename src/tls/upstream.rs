//! TLS towards the banking apps: whom the gateway trusts for an `https` upstream and, when
//! the app requires it, the certificate the gateway proves itself with. Built from the
//! route's `[route.upstream_tls]` at start and on every reload, so renewed files are used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::TlsError;
use crate::config::UpstreamTlsConfig;

/// What a connection to one `https` upstream needs.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub config: Arc<ClientConfig>,
    /// The name the app's certificate must carry.
    pub server_name: ServerName<'static>,
}

/// Builds the client side for an `https` upstream whose URL host is `host`; `resolve`
/// anchors relative file names at the configuration's folder.
pub fn upstream_tls(
    t: &UpstreamTlsConfig,
    host: &str,
    resolve: impl Fn(&Path) -> PathBuf,
) -> Result<UpstreamTls, TlsError> {
    let mut roots = RootCertStore::empty();
    if let Some(ca) = &t.ca_file {
        let path = resolve(ca);
        let name = path.display().to_string();
        let pem = std::fs::read(&path).map_err(|e| TlsError::Read(name.clone(), e))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(name.clone(), e))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate(name));
        }
        for c in certs {
            roots.add(c).map_err(|source| TlsError::UpstreamAnchor {
                file: name.clone(),
                source,
            })?;
        }
    }
    if t.system_roots {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a system root certificate could not be read");
        }
        // Unusable system roots are skipped, as every TLS client does.
        let (_added, _skipped) = roots.add_parsable_certificates(found.certs);
    }
    let builder = ClientConfig::builder_with_provider(super::provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_root_certificates(roots);
    let mut config = match (&t.client_cert, &t.client_key) {
        (Some(cert), Some(key)) => {
            let pair = super::load_server_key_pair(&resolve(cert), &resolve(key))?;
            builder
                .with_client_auth_cert(pair.chain, pair.key)
                .map_err(TlsError::Rustls)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The URL's host carries brackets around an IPv6 address.
    let wanted = t.server_name.clone().unwrap_or_else(|| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    let server_name =
        ServerName::try_from(wanted.clone()).map_err(|_| TlsError::ServerName(wanted))?;
    Ok(UpstreamTls {
        config: Arc::new(config),
        server_name,
    })
}
