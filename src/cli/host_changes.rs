//! `[staff] cli_changes`: whether the host's command line may change customer data and
//! staff. Every such command asks [`allowed`] before it changes anything; reading commands
//! and the key ceremony, rollover, CRL and checkpoint commands do not ask.

use anyhow::bail;

use crate::audit::{Actor, Audit, Outcome};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::Store;

/// The audited refusal code.
const CODE: &str = "cli_changes_off";

/// What the person at the command line is told (and the audit records).
const REASON: &str = "changes from the command line are turned off ([staff] cli_changes = false): \
     make them on the staff console";

/// Ok when the command line may make the change `action` on `subject`; otherwise the
/// refusal is audited (as `actor`) and returned as the command's error (exit status 1).
pub async fn allowed(
    cfg: &Config,
    store: &Store,
    actor: &Actor,
    action: &str,
    subject: &str,
) -> anyhow::Result<()> {
    if cfg.staff.cli_changes {
        return Ok(());
    }
    // A failed audit write is logged by `record`; the change is refused either way.
    let _ = Audit::new(store.clone())
        .record(
            SystemClock.now(),
            actor,
            action,
            subject,
            Outcome::Refused,
            serde_json::json!({"code": CODE, "reason": REASON}),
        )
        .await;
    bail!(REASON)
}
