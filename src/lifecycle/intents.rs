//! Every signature accounted for: before the CA key signs a certificate, an intent naming
//! its serial, subject and public key is recorded with its audit entry; after, the intent is
//! completed (the certificate was stored) or discarded with the reason (then OCSP and the
//! CRL give the serial as revoked, so no copy of the thrown-away certificate can pass).
//!
//! Free functions over the store, so `ca issue-server` uses them as the lifecycle does.
//! Whether a certificate may be signed at all is decided before, by the callers.

use serde_json::json;

use crate::audit::{Actor, Outcome};
use crate::ca::{Authority, PlannedSerial, SignatureKind};
use crate::clock::UnixTime;
use crate::store::{SignatureIntent, Store, StoreError};

use super::error::LifecycleError;

/// Why a signed (or possibly signed) certificate was thrown away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardReason {
    /// A concurrent request redeemed the same code first; its certificate was handed out.
    LostRedemptionRace,
    /// The store did not take the certificate.
    StoreFailed,
    /// The key or the profile failed: the certificate may not exist, the serial is barred
    /// all the same.
    SigningFailed,
    /// An operator settled a stale intent (`certgate audit settle-intent --discarded`).
    Operator,
}

impl DiscardReason {
    /// The stored and audited name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LostRedemptionRace => "lost_redemption_race",
            Self::StoreFailed => "store_failed",
            Self::SigningFailed => "signing_failed",
            Self::Operator => "settled_by_operator",
        }
    }
}

/// What a certificate about to be signed is: recorded in the intent and its audit entry.
#[derive(Debug, Clone, Copy)]
pub struct IntentFor<'a> {
    pub kind: SignatureKind,
    /// The login ID (client) or the names, comma-separated (server).
    pub subject: &'a str,
    pub spki_sha256: &'a str,
    /// The planned expiry (the CRL lists a discarded certificate until then).
    pub not_after: UnixTime,
}

/// Draws a serial and records the open intent for it with its `signature.intent` audit
/// entry, in one transaction. Sign only after this returned.
pub async fn open_intent(
    store: &Store,
    authority: &Authority,
    actor: &Actor,
    what: IntentFor<'_>,
    now: UnixTime,
) -> Result<PlannedSerial, LifecycleError> {
    let planned = PlannedSerial::draw()?;
    let intent = SignatureIntent::open(
        &planned.hex,
        authority.ca_id(),
        what.kind.as_str(),
        what.subject,
        what.spki_sha256,
        now,
        what.not_after,
    );
    let audit = crate::audit::entry(
        now,
        actor,
        "signature.intent",
        &planned.hex,
        Outcome::Ok,
        json!({
            "kind": what.kind.as_str(),
            "subject": what.subject,
            "spki_sha256": what.spki_sha256,
            "ca_id": authority.ca_id(),
        }),
    );
    store.record_intent_audited(&intent, &audit).await?;
    Ok(planned)
}

/// Completes the intent `serial` once its certificate is stored, for certificates stored
/// outside the group writer (`ca issue-server`): a client certificate's intent is completed
/// in the transaction that stores it. A failure is logged, not
/// returned: the certificate is stored, and `audit signatures` counts a stored certificate
/// as accounted for even while its intent is open.
pub async fn complete_intent(store: &Store, serial: &str, now: UnixTime) {
    match store.complete_intent(serial, now).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(serial, "the signature intent was not open"),
        Err(e) => tracing::warn!(serial, error = %e, "cannot complete the signature intent"),
    }
}

/// Discards the intent `serial` for `reason` (with the signed validity, when known) and
/// audits it as `signature.discard`, in one transaction. From then the serial is revoked.
pub async fn discard_intent(
    store: &Store,
    actor: &Actor,
    serial: &str,
    reason: DiscardReason,
    validity: Option<(UnixTime, UnixTime)>,
    now: UnixTime,
) -> Result<SignatureIntent, StoreError> {
    let audit = crate::audit::entry(
        now,
        actor,
        "signature.discard",
        serial,
        Outcome::Ok,
        json!({"reason": reason.as_str()}),
    );
    store
        .discard_intent_audited(serial, reason.as_str(), validity, now, &audit)
        .await
}

/// [`discard_intent`] on a path that already fails or answers otherwise: a failure is
/// logged (the intent stays open and `audit signatures` lists it as stale).
pub async fn discard_logged(
    store: &Store,
    actor: &Actor,
    serial: &str,
    reason: DiscardReason,
    validity: Option<(UnixTime, UnixTime)>,
    now: UnixTime,
) {
    match discard_intent(store, actor, serial, reason, validity, now).await {
        Ok(_) => tracing::info!(
            serial,
            reason = reason.as_str(),
            "signed certificate discarded and revoked"
        ),
        Err(e) => tracing::error!(
            serial,
            reason = reason.as_str(),
            error = %e,
            "cannot discard the signature intent; `certgate audit signatures` will list it"
        ),
    }
}
