//! How issuance requests ended, counted for `/metrics`: obtained with a code or renewed
//! with the current certificate, issued or refused with the same stable code the API
//! answers (`LifecycleError::code`). Shared by every clone of the lifecycle service.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Outcomes so far: `((kind, outcome), count)`.
#[derive(Debug, Clone, Default)]
pub struct IssuanceOutcomes {
    counts: Arc<Mutex<BTreeMap<(&'static str, &'static str), u64>>>,
}

impl IssuanceOutcomes {
    /// One request of `kind` (`obtain`, `renew`) ended with `outcome` (`issued` or a refusal
    /// code).
    pub fn record(&self, kind: &'static str, outcome: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((kind, outcome)).or_default() += 1;
    }

    /// Every `(kind, outcome, count)` seen since start.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.iter().map(|((k, o), n)| (*k, *o, *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_count_together() {
        let a = IssuanceOutcomes::default();
        let b = a.clone();
        a.record("obtain", "issued");
        b.record("obtain", "issued");
        b.record("renew", "bad_csr");
        assert_eq!(
            a.snapshot(),
            [("obtain", "issued", 2), ("renew", "bad_csr", 1)]
        );
    }
}
