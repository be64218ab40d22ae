//! Reconciling the CA key's signatures with the records: `certgate audit signatures`.
//!
//! Certificates (client and server) have one intent each; every CRL takes a CRL number
//! before it is signed; every audit checkpoint signed with a CA key is stored, or recorded
//! as discarded when another was stored first; OCSP signatures are reserved in blocks
//! before they are made (`web::ocsp_reservations`), so the reservations bound them even when
//! a killed process lost its last in-memory counts. Every
//! counted signature must have its record (a record may have no counted signature: signing
//! failed, or the count is not flushed yet).
//! An intent still open after the stale age, whose certificate is not stored, is listed for
//! an operator to settle. This file only reads; settling is `lifecycle::intents`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ca::RESERVED_SUFFIX;
use crate::ca::SignatureKind;
use crate::clock::UnixTime;
use crate::store::{IntentFilter, IntentState, SignatureIntent, Store, StoreError};

/// One kind of signature: how many the key made (as counted) and what the records say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KindLine {
    pub kind: &'static str,
    /// Signatures counted (flushed to the store), all CAs together.
    pub signed: i64,
    /// Intents per state; `None` for the kinds that have no intents (CRL, OCSP).
    pub intents: Option<IntentCounts>,
    /// The records of the kinds without intents: CRL numbers handed out (`crl`), audit
    /// checkpoints stored or recorded as discarded (`checkpoint`), signatures reserved before
    /// they were made (`ocsp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<i64>,
    /// Counted signatures no intent accounts for (always 0 when all is well).
    pub unaccounted: i64,
}

/// Intents of one kind per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IntentCounts {
    pub open: i64,
    pub completed: i64,
    pub discarded: i64,
}

impl IntentCounts {
    pub fn total(self) -> i64 {
        self.open + self.completed + self.discarded
    }
}

/// The reconciliation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignatureReport {
    pub kinds: Vec<KindLine>,
    /// Open intents older than the stale age whose certificate is not stored.
    pub stale: Vec<SignatureIntent>,
    /// Signed certificates that were thrown away (each revoked in OCSP and the CRL).
    pub discarded: Vec<SignatureIntent>,
}

impl SignatureReport {
    /// True when every counted signature is accounted for and no intent is stale.
    pub fn balanced(&self) -> bool {
        self.stale.is_empty() && self.kinds.iter().all(|k| k.unaccounted == 0)
    }
}

/// Reads the counts and the intents; intents open since before `stale_before` are stale.
pub async fn reconcile(
    store: &Store,
    stale_before: UnixTime,
) -> Result<SignatureReport, StoreError> {
    let mut signed: BTreeMap<SignatureKind, i64> = BTreeMap::new();
    let mut reserved: BTreeMap<SignatureKind, i64> = BTreeMap::new();
    for row in store.signature_counts().await? {
        let (name, into) = match row.kind.strip_suffix(RESERVED_SUFFIX) {
            Some(name) => (name, &mut reserved),
            None => (row.kind.as_str(), &mut signed),
        };
        match name.parse::<SignatureKind>() {
            Ok(kind) => *into.entry(kind).or_default() += row.count,
            Err(e) => return Err(StoreError::Corrupt(e)),
        }
    }
    let mut intents: BTreeMap<SignatureKind, IntentCounts> = BTreeMap::new();
    for (kind, state, n) in store.intent_totals().await? {
        let kind = kind.parse::<SignatureKind>().map_err(StoreError::Corrupt)?;
        let state = IntentState::try_from(state).map_err(StoreError::Corrupt)?;
        let counts = intents.entry(kind).or_default();
        match state {
            IntentState::Open => counts.open += n,
            IntentState::Completed => counts.completed += n,
            IntentState::Discarded => counts.discarded += n,
        }
    }
    let crl_numbers = store.crl_numbers_handed_out().await?;
    let checkpoints = store.checkpoint_signature_records().await?;
    let kinds = SignatureKind::ALL
        .into_iter()
        .map(|kind| {
            let made = signed.get(&kind).copied().unwrap_or(0);
            let recorded = kind
                .has_intents()
                .then(|| intents.get(&kind).copied().unwrap_or_default());
            let other = match kind {
                SignatureKind::Crl => Some(crl_numbers),
                SignatureKind::Checkpoint => Some(checkpoints),
                SignatureKind::Ocsp => Some(reserved.get(&kind).copied().unwrap_or(0)),
                SignatureKind::Client | SignatureKind::Server => None,
            };
            let records = recorded.map(IntentCounts::total).or(other);
            KindLine {
                kind: kind.as_str(),
                signed: made,
                intents: recorded,
                records: other,
                unaccounted: records.map_or(0, |r| (made - r).max(0)),
            }
        })
        .collect();
    let stale = store
        .signature_intents(IntentFilter {
            open_before: Some(stale_before),
            ..IntentFilter::default()
        })
        .await?;
    let discarded = store
        .signature_intents(IntentFilter {
            discarded: true,
            ..IntentFilter::default()
        })
        .await?;
    Ok(SignatureReport {
        kinds,
        stale,
        discarded,
    })
}

/// The report as an operator reads it.
pub fn render_text(report: &SignatureReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<8} {:>10} {:>8} {:>10} {:>10} {:>12}",
        "kind", "signed", "open", "completed", "discarded", "unaccounted"
    );
    for k in &report.kinds {
        let cell = |f: fn(IntentCounts) -> i64| {
            k.intents
                .map_or_else(|| "-".to_string(), |c| f(c).to_string())
        };
        let _ = writeln!(
            out,
            "{:<8} {:>10} {:>8} {:>10} {:>10} {:>12}",
            k.kind,
            k.signed,
            cell(|c| c.open),
            cell(|c| c.completed),
            cell(|c| c.discarded),
            k.unaccounted
        );
    }
    for k in &report.kinds {
        let what = match k.kind {
            "crl" => "CRL numbers handed out (each CRL takes one before it is signed)",
            "checkpoint" => "checkpoints stored or recorded as discarded",
            "ocsp" => "OCSP signatures reserved before they were made (unused ones included)",
            _ => continue,
        };
        let _ = writeln!(out, "{what}: {}", k.records.unwrap_or(0));
    }
    for (title, list) in [
        (
            "stale intents (settle with `certgate audit settle-intent SERIAL --discarded`)",
            &report.stale,
        ),
        (
            "discarded certificates (revoked, cessationOfOperation)",
            &report.discarded,
        ),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}:");
        for i in list {
            let _ = writeln!(
                out,
                "  {} {} {} created {}{}",
                i.serial,
                i.kind,
                i.subject,
                i.created_at,
                i.reason
                    .as_deref()
                    .map(|r| format!(" reason {r}"))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        if report.balanced() {
            "every signature is accounted for"
        } else {
            "NOT BALANCED: see the unaccounted column and the stale intents"
        }
    );
    out
}
