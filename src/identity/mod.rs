//! Who the caller is, told to an upstream: [`PeerIdentity`] (a caller whose certificate
//! passed the live check) and the identity formats, each one file implementing
//! [`IdentityFormat`]:
//!
//! | `[[route]] identity` | file          | headers                                        |
//! |----------------------|---------------|------------------------------------------------|
//! | `certgate`           | `certgate.rs` | `X-Certgate-*` (the whole namespace is owned)  |
//! | `rfc9440`            | `rfc9440.rs`  | `Client-Cert`, `Client-Cert-Chain`             |
//! | `xfcc`               | `xfcc.rs`     | `X-Forwarded-Client-Cert` (Envoy)              |
//! | `jwt`                | `jwt.rs`      | `[gateway] assertion_header` (ES256 JWT)       |
//!
//! Every format's names, plus the forwarding names, are stripped from every request
//! (`strip.rs`), whichever formats the route sends. Files import downwards only: `peer` ←
//! `format` ← `strip` and the formats ← this file. This module writes headers; it must not
//! decide whether a caller is allowed, nor import `proxy`, `web`, `admin` or `cli`.

mod certgate;
mod format;
mod jwt;
mod peer;
mod rfc9440;
mod staff;
mod strip;
mod xfcc;

pub use certgate::view_headers;
pub use format::{IdentityError, IdentityFormat, OwnedName, WriteContext};
pub use jwt::{AssertionError, AssertionSigner, JWKS_PATH};
pub use peer::{PeerIdentity, ViewHeaders};
pub use staff::StaffCaller;
pub use strip::ReservedNames;

use std::sync::Arc;

use http::HeaderMap;

use crate::config::IdentityFormatName;

/// Every identity format, built once at start, and the reserved names derived from them.
#[derive(Debug)]
pub struct IdentityFormats {
    /// At [`IdentityFormatName::index`].
    formats: [Box<dyn IdentityFormat>; IdentityFormatName::ALL.len()],
    reserved: ReservedNames,
}

impl IdentityFormats {
    /// Every format; `signer` signs the `jwt` one.
    pub fn new(signer: Arc<AssertionSigner>) -> Self {
        let formats = IdentityFormatName::ALL.map(|name| -> Box<dyn IdentityFormat> {
            match name {
                IdentityFormatName::Certgate => Box::new(certgate::Certgate),
                IdentityFormatName::Rfc9440 => Box::new(rfc9440::Rfc9440),
                IdentityFormatName::Xfcc => Box::new(xfcc::Xfcc),
                IdentityFormatName::Jwt => Box::new(jwt::Jwt::new(Arc::clone(&signer))),
            }
        });
        let reserved = ReservedNames::derive(formats.iter().flat_map(|f| f.owned_names()));
        Self { formats, reserved }
    }

    /// The names stripped from every request.
    pub fn reserved(&self) -> &ReservedNames {
        &self.reserved
    }

    /// Removes every header a client could use to pretend an identity.
    pub fn strip_reserved(&self, headers: &mut HeaderMap) {
        self.reserved.strip(headers);
    }

    /// Writes the headers of each format in `sends` (a route's
    /// [`crate::config::RouteConfig::identity_formats`]).
    pub fn write(
        &self,
        sends: &[IdentityFormatName],
        headers: &mut HeaderMap,
        cx: &WriteContext<'_>,
    ) -> Result<(), IdentityError> {
        for name in sends {
            self.formats[name.index()].write(headers, cx)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderName;

    use super::*;
    use crate::config::GatewayConfig;

    fn formats() -> IdentityFormats {
        let signer = AssertionSigner::from_config(&GatewayConfig::default(), None).unwrap();
        IdentityFormats::new(Arc::new(signer))
    }

    #[test]
    fn each_format_sits_at_its_index() {
        let f = formats();
        for name in IdentityFormatName::ALL {
            assert_eq!(f.formats[name.index()].name(), name);
        }
    }

    /// `name` in the spellings a client might use: case and `_` for `-`.
    fn variants(name: &str) -> Vec<String> {
        let upper = name.to_ascii_uppercase();
        let title: String = name
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-");
        let mut out = Vec::new();
        for n in [name.to_owned(), upper, title] {
            out.push(n.replace('-', "_"));
            // Only the first `-` as `_`.
            out.push(n.replacen('-', "_", 1));
            out.push(n);
        }
        out
    }

    #[test]
    fn every_owned_name_of_every_format_is_stripped_in_every_spelling() {
        let f = formats();
        let mut owned: Vec<String> = Vec::new();
        for format in &f.formats {
            let names = format.owned_names();
            assert!(!names.is_empty(), "{:?} owns no name", format.name());
            for n in names {
                owned.push(match n {
                    OwnedName::Exact(n) => n.into_owned(),
                    OwnedName::Prefix(p) => format!("{p}anything-at-all"),
                });
            }
        }
        // What the formats write, named independently of their declarations.
        for written in [
            "x-certgate-user",
            "x-certgate-renewal-due",
            "client-cert",
            "client-cert-chain",
            "x-forwarded-client-cert",
            "x-certgate-assertion",
            // Forwarding names.
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
            "x-client-cert",
        ] {
            owned.push(written.to_owned());
        }
        let mut h = HeaderMap::new();
        for name in &owned {
            for v in variants(name) {
                assert!(f.reserved().is_reserved(&v), "{v} is not reserved");
                h.append(
                    HeaderName::from_bytes(v.as_bytes()).unwrap(),
                    "mallory".parse().unwrap(),
                );
            }
        }
        h.insert("accept", "text/html".parse().unwrap());
        h.insert("x-app-thing", "1".parse().unwrap());
        h.insert("client-certificate-hint", "1".parse().unwrap());
        f.strip_reserved(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "client-certificate-hint", "x-app-thing"]);
        for near_miss in ["x-forwarder", "x-certgate", "client-certs", "forward"] {
            assert!(!f.reserved().is_reserved(near_miss), "{near_miss}");
        }
    }

    #[test]
    fn a_configured_assertion_header_is_stripped_even_outside_the_namespace() {
        let g = GatewayConfig {
            assertion_header: "Bank_Assertion".into(),
            ..GatewayConfig::default()
        };
        let f = IdentityFormats::new(Arc::new(AssertionSigner::from_config(&g, None).unwrap()));
        for v in ["bank-assertion", "bank_assertion", "BANK-Assertion"] {
            assert!(f.reserved().is_reserved(v), "{v}");
        }
    }
}
