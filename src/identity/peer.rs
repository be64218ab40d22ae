//! Who the caller is, once the live check let the certificate pass: [`PeerIdentity`], and
//! the header values that depend only on the status view ([`ViewHeaders`]). Knows no header
//! format and decides nothing about access.

use std::sync::Arc;

use http::HeaderValue;

use crate::clock::{DAY, UnixTime};
use crate::store::{CertStatusView, Role};
use crate::tls::PresentedCert;

/// A caller whose certificate passed the live check. Its names are read from the status
/// view it was made from (no copies per request).
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// True from `window_days` before expiry.
    pub renewal_due: bool,
    pub presented: Arc<PresentedCert>,
    /// The status cache hands out the same view until it reads the store again, so header
    /// values made from it can be reused while it does.
    view: Arc<CertStatusView>,
}

impl PeerIdentity {
    /// The identity from the store's view of the presented certificate.
    pub fn new(
        view: Arc<CertStatusView>,
        presented: Arc<PresentedCert>,
        now: UnixTime,
        window_days: u32,
    ) -> Self {
        Self {
            renewal_due: now >= view.cert.not_after - i64::from(window_days) * DAY,
            presented,
            view,
        }
    }

    /// The login ID.
    pub fn login(&self) -> &str {
        &self.view.cert.login
    }

    /// The contract the login ID belongs to.
    pub fn contract(&self) -> &str {
        &self.view.cert.contract_id
    }

    /// The login ID's role in its contract.
    pub fn role(&self) -> Role {
        self.view.role
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> UnixTime {
        self.view.cert.not_after
    }

    /// The certificate's serial, lowercase hex as the store keeps it.
    pub fn serial(&self) -> &str {
        &self.view.cert.serial
    }

    /// Lowercase hex SHA-256 of the certificate DER.
    pub fn sha256(&self) -> &str {
        &self.view.cert.sha256
    }

    /// The status view this identity was made from.
    pub fn view(&self) -> &Arc<CertStatusView> {
        &self.view
    }
}

/// Headers whose values depend only on the status view (the `X-Certgate-*` ones but
/// `Renewal-Due`), made once per view and connection and cloned into each request (a
/// reference count, not a copy).
#[derive(Debug)]
pub struct ViewHeaders {
    /// In the order of the names the `certgate` format writes them under.
    values: [HeaderValue; VIEW_HEADERS],
}

/// How many header values depend only on the view.
pub(super) const VIEW_HEADERS: usize = 6;

impl ViewHeaders {
    pub(super) fn new(values: [HeaderValue; VIEW_HEADERS]) -> Self {
        Self { values }
    }

    /// The values, in the order they were made.
    pub(super) fn values(&self) -> &[HeaderValue; VIEW_HEADERS] {
        &self.values
    }
}
