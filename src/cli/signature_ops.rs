//! `certgate audit signatures` and `certgate audit settle-intent`: reconciling the CA key's
//! signatures with the records, and closing an intent that stayed open (a crash between
//! signing and storing). The reconciliation itself is [`crate::audit::signatures`].

use anyhow::Context;

use crate::audit::Actor;
use crate::audit::signatures::{reconcile, render_text};
use crate::clock::{Clock, SystemClock};
use crate::lifecycle::intents::{DiscardReason, discard_intent};
use crate::lifecycle::normalize_serial;
use crate::store::Store;

use super::args::Format;
use super::exit::Finding;

/// Prints the reconciliation; fails (exit status 3, a finding) when it does not balance,
/// so a cron job or a monitor notices.
pub async fn signatures(store: &Store, stale_minutes: u32, format: Format) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let report = reconcile(store, now - i64::from(stale_minutes) * 60).await?;
    match format {
        Format::Text => print!("{}", render_text(&report)),
        Format::Json => {
            let mut value = serde_json::to_value(&report)?;
            value["balanced"] = report.balanced().into();
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
    }
    if !report.balanced() {
        return Err(Finding::error(
            "the CA key's signatures and the records do not balance",
        ));
    }
    Ok(())
}

/// Marks the open intent `serial` discarded: its serial is revoked from then (OCSP and the
/// CRL). Refused when the certificate is stored (it was handed out: revoke it instead).
pub async fn settle_discarded(store: &Store, serial: &str) -> anyhow::Result<()> {
    let serial = normalize_serial(serial);
    let intent = discard_intent(
        store,
        &Actor::host()?,
        &serial,
        DiscardReason::Operator,
        None,
        SystemClock.now(),
    )
    .await
    .with_context(|| format!("cannot settle the signature intent {serial}"))?;
    println!(
        "signature intent {} ({} for {}) discarded; the serial is revoked (cessationOfOperation)",
        intent.serial, intent.kind, intent.subject
    );
    Ok(())
}
