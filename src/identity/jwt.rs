//! The `jwt` format: a short-lived ES256 JWT (the identity assertion) an upstream can verify
//! against the gateway's JWKS ([`JWKS_PATH`]) to know the identity came from the gateway.
//! Owns the signing key; must not log it or the tokens.

use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use http::{HeaderMap, HeaderName};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use super::format::{IdentityError, IdentityFormat, OwnedName, WriteContext, header_value};
use super::peer::PeerIdentity;
use crate::clock::UnixTime;
use crate::config::{GatewayConfig, IdentityFormatName};

/// Where the JWKS of the assertion signer is published (gateway listeners and admin port).
pub const JWKS_PATH: &str = "/.well-known/certgate/jwks.json";

/// Why the assertion key cannot be used or a token not made.
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    #[error("cannot read the assertion key {0}")]
    Read(String, #[source] rustls_pki_types::pem::Error),
    #[error("the assertion key {0} is not a P-256 private key")]
    Key(String),
    #[error("cannot make an assertion key")]
    Generate,
    #[error("signing the assertion failed")]
    Sign,
}

/// Signs assertions with one P-256 key.
pub struct AssertionSigner {
    key: EcdsaKeyPair,
    kid: String,
    jwk: serde_json::Value,
    issuer: String,
    ttl: i64,
    header: HeaderName,
    rng: SystemRandom,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// The signer `[gateway]` describes; `key_path` is the resolved `assertion_key`.
    pub fn from_config(g: &GatewayConfig, key_path: Option<&Path>) -> Result<Self, AssertionError> {
        let key = match key_path {
            Some(path) => {
                let name = path.display().to_string();
                let der = PrivateKeyDer::from_pem_file(path)
                    .map_err(|e| AssertionError::Read(name.clone(), e))?;
                let parsed = match &der {
                    PrivateKeyDer::Pkcs8(k) => EcdsaKeyPair::from_pkcs8(
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        k.secret_pkcs8_der(),
                    ),
                    PrivateKeyDer::Sec1(k) => EcdsaKeyPair::from_private_key_der(
                        &ECDSA_P256_SHA256_FIXED_SIGNING,
                        k.secret_sec1_der(),
                    ),
                    _ => return Err(AssertionError::Key(name)),
                };
                parsed.map_err(|_| AssertionError::Key(name))?
            }
            None => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| AssertionError::Generate)?,
        };
        // An uncompressed point: 0x04 ‖ x ‖ y.
        let point = key.public_key().as_ref();
        if point.len() != 65 {
            return Err(AssertionError::Generate);
        }
        let (x, y) = (B64.encode(&point[1..33]), B64.encode(&point[33..]));
        // RFC 7638 thumbprint as the key id.
        let thumb_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            thumb_input.as_bytes(),
        ));
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "use": "sig", "alg": "ES256", "kid": kid,
        });
        let header = HeaderName::from_bytes(g.assertion_header.to_ascii_lowercase().as_bytes())
            .map_err(|_| AssertionError::Key(g.assertion_header.clone()))?;
        Ok(Self {
            key,
            kid,
            jwk,
            issuer: g.assertion_issuer.clone(),
            ttl: i64::try_from(g.assertion_ttl_secs).unwrap_or(60),
            header,
            rng: SystemRandom::new(),
        })
    }

    /// The header carrying the token.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// The JWKS document publishing the verification key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk.clone()] })
    }

    /// A token for `id`, addressed to `audience` (the route's upstream), valid `ttl` seconds.
    pub fn sign(
        &self,
        id: &PeerIdentity,
        audience: &str,
        now: UnixTime,
    ) -> Result<String, AssertionError> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| AssertionError::Sign)?;
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let x5t = hex::decode(id.sha256())
            .map(|raw| B64.encode(raw))
            .unwrap_or_default();
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": id.login(),
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": B64.encode(jti),
            "contract": id.contract(),
            "role": id.role().as_str(),
            "cert_serial": id.serial(),
            "renewal_due": id.renewal_due,
            "cnf": { "x5t#S256": x5t },
        });
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| AssertionError::Sign)?;
        Ok(format!("{signing_input}.{}", B64.encode(sig.as_ref())))
    }
}

/// The assertion in `[gateway] assertion_header`, addressed to the route's upstream.
#[derive(Debug)]
pub struct Jwt {
    signer: Arc<AssertionSigner>,
}

impl Jwt {
    pub fn new(signer: Arc<AssertionSigner>) -> Self {
        Self { signer }
    }
}

impl IdentityFormat for Jwt {
    fn name(&self) -> IdentityFormatName {
        IdentityFormatName::Jwt
    }

    fn owned_names(&self) -> Vec<OwnedName> {
        vec![OwnedName::Exact(
            self.signer.header().as_str().to_owned().into(),
        )]
    }

    fn write(&self, headers: &mut HeaderMap, cx: &WriteContext<'_>) -> Result<(), IdentityError> {
        let jwt = self
            .signer
            .sign(cx.identity, cx.route.upstream.first(), cx.now)
            .map_err(|e| IdentityError::Format {
                format: IdentityFormatName::Jwt.as_str(),
                source: Box::new(e),
            })?;
        headers.insert(
            self.signer.header().clone(),
            header_value("assertion", &jwt)?,
        );
        Ok(())
    }
}
