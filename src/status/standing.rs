//! The one status rule: where a certificate stands, from the store's facts and the time.
//! The gateway's live check ([`super::decide`]), the OCSP responder and the CRL builder all
//! read it, so the three cannot give different answers. No I/O here.
//!
//! Validity dates are not part of a standing: RFC 6960 §2.2 lets a responder answer for an
//! expired certificate it issued (its revocation status stays true), and RFC 5280 §3.3 lets
//! a CRL drop a certificate once it has expired. Each consumer applies the dates itself
//! ([`super::decide`] refuses, [`on_crl`] drops).

use crate::ca::RevocationReason;
use crate::ca::crl::RevokedEntry;
use crate::clock::UnixTime;
use crate::store::{CertStatus, StatusFacts};

/// RFC 5280 §5.3.1 `certificateHold`: the one reason that is not final.
pub const CERTIFICATE_HOLD: u8 = 6;

/// What disabled a held certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldCause {
    User,
    Contract,
}

/// Where a certificate stands, dates aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not revoked: current, or superseded within its overlap.
    Good,
    /// Revoked for good, at `at`, for `reason`.
    Revoked {
        at: UnixTime,
        reason: RevocationReason,
    },
    /// Replaced by a renewal and past its overlap, not yet retired by the store: revoked
    /// with reason `superseded` since the overlap ended.
    Superseded { at: UnixTime },
    /// Its login ID or contract is disabled: `certificateHold` since then, `good` again
    /// once enabled.
    Held { since: UnixTime, cause: HoldCause },
}

impl Standing {
    /// As OCSP and the CRL give it: the revocation time and the CRLReason code, or `None`
    /// when not revoked. `unspecified` (0) is given as no reason (RFC 5280 §5.3.1).
    pub fn revocation(self) -> Option<(UnixTime, Option<u8>)> {
        match self {
            Self::Good => None,
            Self::Revoked { at, reason } => Some((
                at,
                (reason != RevocationReason::Unspecified).then(|| reason.code()),
            )),
            Self::Superseded { at } => Some((at, Some(RevocationReason::Superseded.code()))),
            Self::Held { since, .. } => Some((since, Some(CERTIFICATE_HOLD))),
        }
    }
}

/// Where the certificate `f` stands at `now`. A superseded certificate stays good while
/// `superseded_at + overlap_secs > now`. Final revocation wins over a hold: a revoked
/// certificate of a disabled user stays revoked with its own reason.
pub fn standing(f: &StatusFacts, now: UnixTime, overlap_secs: i64) -> Standing {
    match f.status {
        CertStatus::Revoked => {
            return Standing::Revoked {
                // The schema requires both; a row without them is still revoked.
                at: f.revoked_at.unwrap_or(f.created_at),
                reason: f
                    .revocation_reason
                    .as_deref()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(RevocationReason::Unspecified),
            };
        }
        CertStatus::Superseded => {
            let end = f
                .superseded_at
                .map(|at| at.saturating_add(overlap_secs))
                .unwrap_or(f.created_at);
            if end <= now {
                return Standing::Superseded { at: end };
            }
        }
        CertStatus::Current => {}
    }
    // Held since the earlier switch that is still off; a missing time (disabled before the
    // time was recorded) falls back to the certificate's creation.
    let since = |at: Option<UnixTime>| at.unwrap_or(f.created_at);
    match (f.contract_enabled, f.user_enabled) {
        (true, true) => Standing::Good,
        (false, true) => Standing::Held {
            since: since(f.contract_disabled_at),
            cause: HoldCause::Contract,
        },
        (true, false) => Standing::Held {
            since: since(f.user_disabled_at),
            cause: HoldCause::User,
        },
        (false, false) => Standing::Held {
            since: since(f.contract_disabled_at).min(since(f.user_disabled_at)),
            cause: HoldCause::Contract,
        },
    }
}

/// The next moment the standing of `f` changes by time alone (a superseded certificate's
/// overlap ending), if any: a cached answer must not be served past it.
pub fn changes_at(f: &StatusFacts, now: UnixTime, overlap_secs: i64) -> Option<UnixTime> {
    match (f.status, f.superseded_at) {
        (CertStatus::Superseded, Some(at)) => {
            Some(at.saturating_add(overlap_secs)).filter(|end| *end > now)
        }
        _ => None,
    }
}

/// Whether the full CRL made at `now` lists the certificate: revoked, superseded past its
/// overlap or held, and not yet expired (RFC 5280 §3.3: a CRL may drop expired entries).
pub fn on_crl(f: &StatusFacts, now: UnixTime, overlap_secs: i64) -> Option<(UnixTime, Option<u8>)> {
    if f.not_after <= now {
        return None;
    }
    standing(f, now, overlap_secs).revocation()
}

/// The entries of the full CRL made at `now` from the store's candidates
/// (`Store::facts_for_crl`), in order of revocation time then serial.
pub fn crl_entries(facts: &[StatusFacts], now: UnixTime, overlap_secs: i64) -> Vec<RevokedEntry> {
    let mut out: Vec<RevokedEntry> = facts
        .iter()
        .filter_map(|f| {
            on_crl(f, now, overlap_secs).map(|(revoked_at, reason_code)| RevokedEntry {
                serial: f.serial.clone(),
                revoked_at,
                reason_code,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.revoked_at, &a.serial).cmp(&(b.revoked_at, &b.serial)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(status: CertStatus) -> StatusFacts {
        crate::status::test_view("01", status).facts()
    }

    #[test]
    fn current_and_enabled_is_good_and_off_the_crl() {
        let f = facts(CertStatus::Current);
        assert_eq!(standing(&f, 500, 0), Standing::Good);
        assert_eq!(on_crl(&f, 500, 0), None);
    }

    #[test]
    fn revoked_keeps_its_time_and_reason_even_when_held() {
        let mut f = facts(CertStatus::Revoked);
        f.revoked_at = Some(300);
        f.revocation_reason = Some("keyCompromise".into());
        f.user_enabled = false;
        f.user_disabled_at = Some(200);
        assert_eq!(
            standing(&f, 500, 0),
            Standing::Revoked {
                at: 300,
                reason: RevocationReason::KeyCompromise
            }
        );
        assert_eq!(on_crl(&f, 500, 0), Some((300, Some(1))));
        f.revocation_reason = Some("unspecified".into());
        assert_eq!(on_crl(&f, 500, 0), Some((300, None)));
    }

    #[test]
    fn superseded_is_good_in_the_overlap_then_revoked_from_its_end() {
        let mut f = facts(CertStatus::Superseded);
        f.superseded_at = Some(400);
        assert_eq!(standing(&f, 449, 50), Standing::Good);
        assert_eq!(standing(&f, 450, 50), Standing::Superseded { at: 450 });
        assert_eq!(on_crl(&f, 460, 50), Some((450, Some(4))));
        assert_eq!(changes_at(&f, 449, 50), Some(450));
        assert_eq!(changes_at(&f, 450, 50), None);
    }

    #[test]
    fn a_disabled_user_or_contract_holds_from_the_switch() {
        let mut f = facts(CertStatus::Current);
        f.user_enabled = false;
        f.user_disabled_at = Some(300);
        assert_eq!(
            standing(&f, 500, 0),
            Standing::Held {
                since: 300,
                cause: HoldCause::User
            }
        );
        assert_eq!(on_crl(&f, 500, 0), Some((300, Some(CERTIFICATE_HOLD))));
        f.contract_enabled = false;
        f.contract_disabled_at = Some(250);
        assert_eq!(
            standing(&f, 500, 0),
            Standing::Held {
                since: 250,
                cause: HoldCause::Contract
            }
        );
        // Enabled again: good, and off the next CRL.
        f.user_enabled = true;
        f.user_disabled_at = None;
        f.contract_enabled = true;
        f.contract_disabled_at = None;
        assert_eq!(on_crl(&f, 500, 0), None);
    }

    #[test]
    fn crl_entries_list_only_what_is_revoked_or_held_in_time_order() {
        let good = facts(CertStatus::Current);
        let mut held = facts(CertStatus::Current);
        held.serial = "02".into();
        held.contract_enabled = false;
        held.contract_disabled_at = Some(350);
        let mut revoked = facts(CertStatus::Revoked);
        revoked.serial = "03".into();
        revoked.revoked_at = Some(300);
        revoked.revocation_reason = Some("cessationOfOperation".into());
        let entries = crl_entries(&[good, held, revoked], 500, 0);
        let listed: Vec<_> = entries
            .iter()
            .map(|e| (e.serial.as_str(), e.revoked_at, e.reason_code))
            .collect();
        assert_eq!(listed, [("03", 300, Some(5)), ("02", 350, Some(6))]);
    }

    #[test]
    fn expired_certificates_leave_the_crl_but_keep_their_standing() {
        let mut f = facts(CertStatus::Revoked);
        f.revoked_at = Some(300);
        f.revocation_reason = Some("superseded".into());
        assert_eq!(on_crl(&f, 999, 0), Some((300, Some(4))));
        assert_eq!(on_crl(&f, 1000, 0), None);
        assert!(matches!(
            standing(&f, 5000, 0),
            Standing::Revoked { at: 300, .. }
        ));
    }
}
