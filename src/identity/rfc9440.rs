//! The `rfc9440` format: `Client-Cert` (the client certificate) and `Client-Cert-Chain`
//! (the rest of the presented chain), each certificate an RFC 8941 byte sequence
//! (`:base64 DER:`), as RFC 9440 defines them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderName};
use rustls_pki_types::CertificateDer;

use super::format::{IdentityError, IdentityFormat, OwnedName, WriteContext, header_value};
use crate::config::IdentityFormatName;

pub const CLIENT_CERT: &str = "client-cert";
pub const CLIENT_CERT_CHAIN: &str = "client-cert-chain";

/// RFC 9440's two headers.
#[derive(Debug)]
pub struct Rfc9440;

impl IdentityFormat for Rfc9440 {
    fn name(&self) -> IdentityFormatName {
        IdentityFormatName::Rfc9440
    }

    fn owned_names(&self) -> Vec<OwnedName> {
        vec![
            OwnedName::Exact(CLIENT_CERT.into()),
            OwnedName::Exact(CLIENT_CERT_CHAIN.into()),
        ]
    }

    fn write(&self, headers: &mut HeaderMap, cx: &WriteContext<'_>) -> Result<(), IdentityError> {
        let chain = &cx.identity.presented.chain;
        if let Some(leaf) = chain.first() {
            headers.insert(
                HeaderName::from_static(CLIENT_CERT),
                header_value(CLIENT_CERT, &sf_binary(leaf))?,
            );
        }
        if chain.len() > 1 {
            let list: Vec<String> = chain[1..].iter().map(sf_binary).collect();
            headers.insert(
                HeaderName::from_static(CLIENT_CERT_CHAIN),
                header_value(CLIENT_CERT_CHAIN, &list.join(", "))?,
            );
        }
        Ok(())
    }
}

/// RFC 8941 byte sequence: `:base64:`.
fn sf_binary(der: &CertificateDer<'_>) -> String {
    format!(":{}:", STANDARD.encode(der.as_ref()))
}
