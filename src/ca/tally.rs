//! Counting the CA key's signatures by kind, in memory: OCSP responses are too frequent for
//! a database write each, so counts are added to the store from time to time (see
//! `app::tally_flush`) and at shutdown. Certificates also have an intent row each
//! (`lifecycle::intents`); the count lets `certgate audit signatures` compare the two.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The suffix of a reservation's stored kind (see [`SignatureKind::reserved_name`]).
pub const RESERVED_SUFFIX: &str = "_reserved";

/// What a signature of the CA key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignatureKind {
    /// A client certificate (issuance or renewal).
    Client,
    /// A server certificate (`ca issue-server`).
    Server,
    /// A CRL.
    Crl,
    /// An OCSP response.
    Ocsp,
    /// An audit checkpoint signed with this CA's key (`audit checkpoint`).
    Checkpoint,
}

impl SignatureKind {
    pub const ALL: [Self; 5] = [
        Self::Client,
        Self::Server,
        Self::Crl,
        Self::Ocsp,
        Self::Checkpoint,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
            Self::Crl => "crl",
            Self::Ocsp => "ocsp",
            Self::Checkpoint => "checkpoint",
        }
    }

    /// The stored name of signatures of this kind reserved before they are made (OCSP,
    /// `web::ocsp_reservations`).
    pub fn reserved_name(self) -> String {
        format!("{}{RESERVED_SUFFIX}", self.as_str())
    }

    /// Whether each signature of this kind has an intent row.
    pub fn has_intents(self) -> bool {
        matches!(self, Self::Client | Self::Server)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for SignatureKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown signature kind {s:?}"))
    }
}

impl TryFrom<String> for SignatureKind {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// Signatures one CA's key made since the last [`SignatureTally::take`]. Cheap to clone;
/// every clone counts into the same cells.
#[derive(Debug, Clone, Default)]
pub struct SignatureTally {
    counts: Arc<[AtomicU64; 5]>,
    /// Since the process started, never reset (the metrics' counters).
    totals: Arc<[AtomicU64; 5]>,
}

impl SignatureTally {
    /// Counts one signature of `kind`.
    pub fn count(&self, kind: SignatureKind) {
        self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
        self.totals[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Signatures of each kind since the process started.
    pub fn totals(&self) -> Vec<(SignatureKind, u64)> {
        SignatureKind::ALL
            .into_iter()
            .map(|k| (k, self.totals[k.index()].load(Ordering::Relaxed)))
            .collect()
    }

    /// The counts since the last call, per kind (zero counts left out), and resets them.
    pub fn take(&self) -> Vec<(SignatureKind, u64)> {
        SignatureKind::ALL
            .into_iter()
            .map(|k| (k, self.counts[k.index()].swap(0, Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Puts counts back (a flush that failed), so they are added by the next one.
    pub fn restore(&self, counts: &[(SignatureKind, u64)]) {
        for (k, n) in counts {
            self.counts[k.index()].fetch_add(*n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_drains_and_restore_puts_back() {
        let t = SignatureTally::default();
        let clone = t.clone();
        t.count(SignatureKind::Ocsp);
        clone.count(SignatureKind::Ocsp);
        t.count(SignatureKind::Crl);
        let taken = t.take();
        assert_eq!(
            taken,
            vec![(SignatureKind::Crl, 1), (SignatureKind::Ocsp, 2)]
        );
        assert!(t.take().is_empty());
        t.restore(&taken);
        assert_eq!(t.take(), taken);
    }
}
