//! The `certgate` format: seven `X-Certgate-*` headers naming the login ID, contract, role
//! and certificate. Owns the whole `X-Certgate-*` namespace, so a client can set no name in
//! it. All values but `Renewal-Due` depend only on the status view and are made once per
//! view ([`view_headers`]).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::format::{IdentityError, IdentityFormat, OwnedName, WriteContext, header_value};
use super::peer::ViewHeaders;
use crate::config::IdentityFormatName;
use crate::store::CertStatusView;

pub const USER: &str = "x-certgate-user";
pub const CONTRACT: &str = "x-certgate-contract";
pub const ROLE: &str = "x-certgate-role";
pub const CERT_SERIAL: &str = "x-certgate-cert-serial";
pub const CERT_SHA256: &str = "x-certgate-cert-sha256";
pub const CERT_NOT_AFTER: &str = "x-certgate-cert-not-after";
pub const RENEWAL_DUE: &str = "x-certgate-renewal-due";

/// The namespace this format owns.
const PREFIX: &str = "x-certgate-";

/// Parsed once: inserting it parses and validates nothing per request.
const RENEWAL_DUE_NAME: HeaderName = HeaderName::from_static(RENEWAL_DUE);

/// The values of the headers that depend only on the view of one certificate.
pub fn view_headers(view: &CertStatusView) -> Result<ViewHeaders, IdentityError> {
    let c = &view.cert;
    let not_after = time::OffsetDateTime::from_unix_timestamp(c.not_after)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .ok_or(IdentityError::Value(CERT_NOT_AFTER))?;
    let pair =
        |name: &'static str, v: &str| Ok((HeaderName::from_static(name), header_value(name, v)?));
    Ok(ViewHeaders::new(Box::new([
        pair(USER, &c.login)?,
        pair(CONTRACT, &c.contract_id)?,
        pair(ROLE, view.role.as_str())?,
        pair(CERT_SERIAL, &c.serial)?,
        pair(CERT_SHA256, &c.sha256)?,
        pair(CERT_NOT_AFTER, &not_after)?,
    ])))
}

/// The `X-Certgate-*` headers.
#[derive(Debug)]
pub struct Certgate;

impl IdentityFormat for Certgate {
    fn name(&self) -> IdentityFormatName {
        IdentityFormatName::Certgate
    }

    fn owned_names(&self) -> Vec<OwnedName> {
        vec![OwnedName::Prefix(PREFIX)]
    }

    fn write(&self, headers: &mut HeaderMap, cx: &WriteContext<'_>) -> Result<(), IdentityError> {
        let pairs = cx.view_headers.pairs();
        headers.reserve(pairs.len() + 1);
        for (name, value) in pairs {
            headers.insert(name.clone(), value.clone());
        }
        headers.insert(
            RENEWAL_DUE_NAME,
            HeaderValue::from_static(if cx.identity.renewal_due {
                "true"
            } else {
                "false"
            }),
        );
        Ok(())
    }
}
