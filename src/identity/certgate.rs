//! The `certgate` format: seven `X-Certgate-*` headers naming the login ID, contract, role
//! and certificate. Owns the whole `X-Certgate-*` namespace, so a client can set no name in
//! it. All values but `Renewal-Due` depend only on the status view and are made once per
//! view ([`view_headers`]).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::format::{IdentityError, IdentityFormat, OwnedName, WriteContext, header_value};
use super::peer::{VIEW_HEADERS, ViewHeaders};
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

/// Parsed at compile time: inserting them parses, validates and clones nothing per request.
const RENEWAL_DUE_NAME: HeaderName = HeaderName::from_static(RENEWAL_DUE);
/// The names of the values [`view_headers`] makes, in its order.
const VIEW_NAMES: [HeaderName; VIEW_HEADERS] = [
    HeaderName::from_static(USER),
    HeaderName::from_static(CONTRACT),
    HeaderName::from_static(ROLE),
    HeaderName::from_static(CERT_SERIAL),
    HeaderName::from_static(CERT_SHA256),
    HeaderName::from_static(CERT_NOT_AFTER),
];

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
    Ok(ViewHeaders::new([
        header_value(USER, &c.login)?,
        header_value(CONTRACT, &c.contract_id)?,
        header_value(ROLE, view.role.as_str())?,
        header_value(CERT_SERIAL, &c.serial)?,
        header_value(CERT_SHA256, &c.sha256)?,
        header_value(CERT_NOT_AFTER, &not_after)?,
    ]))
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
        let values = cx.view_headers.values();
        headers.reserve(VIEW_HEADERS + 1);
        for (name, value) in VIEW_NAMES.into_iter().zip(values) {
            headers.insert(name, value.clone());
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
