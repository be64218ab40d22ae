//! The live status of client certificates, as the gateway sees it on every request.
//!
//! [`StatusSource`] is the narrow view of the store the gateway needs (status of a serial,
//! change announcements, trust anchors); [`Store`] implements it and [`MemorySource`] stands
//! in for it in tests. [`StatusCache`] keeps decisions in memory, drops them when the store
//! announces a change, re-reads them after a maximum age and fails closed when the store
//! cannot answer for too long. [`decide`] is the rule, without I/O.
//!
//! This module must not talk to the network or know about HTTP: refusals are values.

mod cache;
mod decision;
mod memory;
mod standing;

pub use crate::store::Audience;
pub use cache::{CacheOutcome, StatusCache, StatusCacheSettings};
pub use decision::{
    Refusal, Verdict, decide, decide_for, decide_for_renewal, next_decision_change,
};
pub use memory::MemorySource;
pub use standing::{
    CERTIFICATE_HOLD, HoldCause, Standing, changes_at, crl_entries, on_crl, standing,
};

use futures_util::future::BoxFuture;
use rustls_pki_types::CertificateDer;
use tokio::sync::broadcast;

use crate::clock::UnixTime;
use crate::store::{CertChange, CertStatusView, Store, StoreError};

/// What the gateway reads from the store. Object safe so tests can supply their own.
pub trait StatusSource: Send + Sync + 'static {
    /// The certificate with `serial` (lowercase hex) and its user's and contract's state.
    fn status<'a>(
        &'a self,
        serial: &'a str,
    ) -> BoxFuture<'a, Result<Option<CertStatusView>, StoreError>>;
    /// Announcements of status changes; a serial of `"*"` means "everything may have changed".
    fn changes(&self) -> broadcast::Receiver<CertChange>;
    /// Every CA certificate clients may chain to (several during a rollover).
    fn trust_anchors(&self) -> BoxFuture<'_, Result<Vec<CertificateDer<'static>>, StoreError>>;
    /// Records the first use of a certificate (ends its predecessor's overlap).
    fn mark_first_used<'a>(
        &'a self,
        serial: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// A cheap round trip, for readiness.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

impl StatusSource for Store {
    fn status<'a>(
        &'a self,
        serial: &'a str,
    ) -> BoxFuture<'a, Result<Option<CertStatusView>, StoreError>> {
        Box::pin(async move {
            if let Some(view) = self.certificate_status(serial).await? {
                return Ok(Some(view));
            }
            // Signed but discarded (never handed out): revoked here too, as OCSP and the
            // CRL answer it, not unknown. Asked only for serials the store does not hold.
            Ok(self
                .signature_intent(serial)
                .await?
                .and_then(|i| i.discarded_view()))
        })
    }
    fn changes(&self) -> broadcast::Receiver<CertChange> {
        self.subscribe_changes()
    }
    fn trust_anchors(&self) -> BoxFuture<'_, Result<Vec<CertificateDer<'static>>, StoreError>> {
        Box::pin(async move {
            let cas = self.cas().await?;
            Ok(cas
                .into_iter()
                .map(|ca| CertificateDer::from(ca.cert_der))
                .collect())
        })
    }
    fn mark_first_used<'a>(
        &'a self,
        serial: &'a str,
        now: UnixTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(Store::mark_first_used(self, serial, now))
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Store::ping(self))
    }
}

/// The serial of a DER certificate as the store keeps it: lowercase hex of the INTEGER's
/// magnitude, without the sign-padding zero byte and without separators.
pub fn serial_hex(raw_serial: &[u8]) -> String {
    let mut s = raw_serial;
    while s.len() > 1 && s[0] == 0 {
        s = &s[1..];
    }
    hex::encode(s)
}

/// A serial as an operator may type it (`0A:1B`, upper case) in the store's form.
pub fn normalize_serial(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = cleaned.trim_start_matches("00");
    if trimmed.is_empty() {
        "00".into()
    } else {
        trimmed.to_string()
    }
}

/// A current certificate's view for unit tests: valid from 100 to 1000, never used yet.
#[cfg(test)]
pub(crate) fn test_view(serial: &str, status: crate::store::CertStatus) -> CertStatusView {
    use crate::store::{CertRecord, Role};
    CertStatusView {
        cert: CertRecord {
            serial: serial.into(),
            login: format!("user-{serial}"),
            contract_id: "c1".into(),
            ca_id: 1,
            der: vec![],
            sha256: String::new(),
            spki_sha256: String::new(),
            not_before: 100,
            not_after: 1000,
            status,
            superseded_at: None,
            revoked_at: None,
            revocation_reason: None,
            first_used_at: None,
            created_at: 100,
        },
        role: Role::General,
        user_enabled: true,
        contract_enabled: true,
        user_disabled_at: None,
        contract_disabled_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_drop_sign_padding_only() {
        assert_eq!(serial_hex(&[0x00, 0x8a, 0x01]), "8a01");
        assert_eq!(serial_hex(&[0x0a, 0x01]), "0a01");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(normalize_serial("00:8A:01"), "8a01");
        assert_eq!(normalize_serial("0A01"), "0a01");
    }
}
