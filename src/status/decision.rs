//! The rule deciding whether a presented certificate may pass, as a plain function over the
//! store's view and the time. No I/O here.

use super::standing::{HoldCause, Standing, changes_at, standing};
use crate::clock::UnixTime;
use crate::store::{Audience, CertStatus, CertStatusView};

/// Why a certificate (or its absence) does not let a request through. The names are stable:
/// they appear in logs, metrics and JSON refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No client certificate was presented.
    NoCertificate,
    /// The chain does not lead to one of certgate's CAs.
    ForeignCa,
    /// The certificate could not be checked (bad signature, bad encoding, wrong usage).
    InvalidCertificate,
    /// Not a certificate certgate issued (unknown serial, or the DER differs).
    Unknown,
    /// Revoked.
    Revoked,
    /// Replaced by a renewal and past the overlap.
    Superseded,
    /// Past its `not_after`.
    Expired,
    /// Before its `not_before`.
    NotYetValid,
    /// The login ID is disabled.
    UserDisabled,
    /// The contract is disabled.
    ContractDisabled,
    /// The store could not answer and no recent enough answer is cached (fail closed).
    StatusUnavailable,
    /// A bank staff member's certificate, on a way in that serves customers.
    StaffCertificate,
    /// A customer's certificate, on a way in that serves bank staff.
    NotStaffCertificate,
}

impl Refusal {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::ForeignCa => "foreign_ca",
            Self::InvalidCertificate => "invalid_certificate",
            Self::Unknown => "unknown_certificate",
            Self::Revoked => "revoked",
            Self::Superseded => "superseded",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UserDisabled => "user_disabled",
            Self::ContractDisabled => "contract_disabled",
            Self::StatusUnavailable => "status_unavailable",
            Self::StaffCertificate => "staff_certificate",
            Self::NotStaffCertificate => "not_staff_certificate",
        }
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The certificate may pass.
    Allow,
    /// It may not, for this reason.
    Refuse(Refusal),
}

/// Decides on a certificate's live status on a way in that serves customers (the gateway's
/// listeners): [`decide_for`] with [`Audience::Customer`].
pub fn decide(view: Option<&CertStatusView>, now: UnixTime, overlap_secs: i64) -> Verdict {
    decide_for(Audience::Customer, view, now, overlap_secs)
}

/// Decides on a certificate's live status on a way in that serves `audience`. `view` is
/// `None` when the store does not know the serial. A certificate of the other audience is
/// refused first, whatever its status (the audience follows the stored contract, never the
/// certificate's contents). The standing comes from [`standing`], the rule OCSP and the CRL
/// read too; only the validity dates are added here. A superseded certificate passes while
/// `superseded_at + overlap_secs > now`.
pub fn decide_for(
    audience: Audience,
    view: Option<&CertStatusView>,
    now: UnixTime,
    overlap_secs: i64,
) -> Verdict {
    let Some(v) = view else {
        return Verdict::Refuse(Refusal::Unknown);
    };
    match (audience, Audience::of_contract(&v.cert.contract_id)) {
        (Audience::Customer, Audience::Staff) => {
            return Verdict::Refuse(Refusal::StaffCertificate);
        }
        (Audience::Staff, Audience::Customer) => {
            return Verdict::Refuse(Refusal::NotStaffCertificate);
        }
        _ => {}
    }
    let held = match standing(&v.facts(), now, overlap_secs) {
        Standing::Revoked { .. } => return Verdict::Refuse(Refusal::Revoked),
        Standing::Superseded { .. } => return Verdict::Refuse(Refusal::Superseded),
        Standing::Held { cause, .. } => Some(cause),
        Standing::Good => None,
    };
    let c = &v.cert;
    if now >= c.not_after {
        return Verdict::Refuse(Refusal::Expired);
    }
    if now < c.not_before {
        return Verdict::Refuse(Refusal::NotYetValid);
    }
    match held {
        Some(HoldCause::Contract) => Verdict::Refuse(Refusal::ContractDisabled),
        Some(HoldCause::User) => Verdict::Refuse(Refusal::UserDisabled),
        None => Verdict::Allow,
    }
}

/// The first moment after `now` at which [`decide`] may answer otherwise for `view` with
/// nothing changed in the store: its validity dates, or the end of a superseded
/// certificate's overlap. Whatever is open on the strength of a decision re-checks then.
pub fn next_decision_change(
    view: &CertStatusView,
    now: UnixTime,
    overlap_secs: i64,
) -> Option<UnixTime> {
    let c = &view.cert;
    [
        Some(c.not_before),
        Some(c.not_after),
        changes_at(&view.facts(), now, overlap_secs),
    ]
    .into_iter()
    .flatten()
    .filter(|t| *t > now)
    .min()
}

/// Decides whether a certificate may *renew itself*: as [`decide`], except that a
/// certificate expired less than `grace_secs` ago passes when it is still the current one
/// (not superseded, not revoked) of an enabled user of an enabled contract. Only the renewal
/// paths ask this; everything else uses [`decide_for`] and refuses the expired certificate.
pub fn decide_for_renewal(
    audience: Audience,
    view: Option<&CertStatusView>,
    now: UnixTime,
    overlap_secs: i64,
    grace_secs: i64,
) -> Verdict {
    let verdict = decide_for(audience, view, now, overlap_secs);
    let Some(v) = view else {
        return verdict;
    };
    let in_grace = now >= v.cert.not_after && now < v.cert.not_after.saturating_add(grace_secs);
    if verdict != Verdict::Refuse(Refusal::Expired) || !in_grace {
        return verdict;
    }
    if v.cert.status != CertStatus::Current {
        return Verdict::Refuse(Refusal::Superseded);
    }
    // The standing rule (hold by user or contract) applies as it does before expiry.
    decide_for(audience, view, v.cert.not_after - 1, overlap_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(status: CertStatus) -> CertStatusView {
        crate::status::test_view("01", status)
    }

    #[test]
    fn current_and_valid_passes() {
        assert_eq!(
            decide(Some(&view(CertStatus::Current)), 500, 0),
            Verdict::Allow
        );
    }

    #[test]
    fn each_problem_has_its_reason() {
        let r = |v: &CertStatusView, now| decide(Some(v), now, 50);
        assert_eq!(decide(None, 500, 0), Verdict::Refuse(Refusal::Unknown));
        assert_eq!(
            r(&view(CertStatus::Revoked), 500),
            Verdict::Refuse(Refusal::Revoked)
        );
        assert_eq!(
            r(&view(CertStatus::Current), 1000),
            Verdict::Refuse(Refusal::Expired)
        );
        assert_eq!(
            r(&view(CertStatus::Current), 99),
            Verdict::Refuse(Refusal::NotYetValid)
        );
        let mut u = view(CertStatus::Current);
        u.user_enabled = false;
        assert_eq!(r(&u, 500), Verdict::Refuse(Refusal::UserDisabled));
        u.contract_enabled = false;
        assert_eq!(r(&u, 500), Verdict::Refuse(Refusal::ContractDisabled));
    }

    #[test]
    fn each_audience_refuses_the_other_s_certificates_first() {
        let customer = view(CertStatus::Current);
        let mut staff = view(CertStatus::Current);
        staff.cert.contract_id = crate::store::STAFF_CONTRACT.into();
        assert_eq!(decide(Some(&customer), 500, 0), Verdict::Allow);
        assert_eq!(
            decide(Some(&staff), 500, 0),
            Verdict::Refuse(Refusal::StaffCertificate)
        );
        assert_eq!(
            decide_for(Audience::Staff, Some(&staff), 500, 0),
            Verdict::Allow
        );
        assert_eq!(
            decide_for(Audience::Staff, Some(&customer), 500, 0),
            Verdict::Refuse(Refusal::NotStaffCertificate)
        );
        // Before any other reason, so the answer never tells how it stands otherwise.
        staff.user_enabled = false;
        assert_eq!(
            decide(Some(&staff), 5000, 0),
            Verdict::Refuse(Refusal::StaffCertificate)
        );
        assert_eq!(
            decide_for(Audience::Staff, Some(&staff), 500, 0),
            Verdict::Refuse(Refusal::UserDisabled)
        );
        assert_eq!(
            decide_for_renewal(Audience::Customer, Some(&staff), 1050, 0, 100),
            Verdict::Refuse(Refusal::StaffCertificate)
        );
    }

    #[test]
    fn the_next_change_is_the_overlap_end_or_expiry() {
        let mut s = view(CertStatus::Superseded);
        s.cert.superseded_at = Some(400);
        assert_eq!(next_decision_change(&s, 420, 50), Some(450));
        assert_eq!(next_decision_change(&s, 450, 50), Some(1000));
        assert_eq!(next_decision_change(&s, 50, 50), Some(100));
        assert_eq!(next_decision_change(&s, 1000, 50), None);
        // The rule agrees: the verdict changes exactly then.
        assert_eq!(decide(Some(&s), 449, 50), Verdict::Allow);
        assert_ne!(decide(Some(&s), 450, 50), Verdict::Allow);
    }

    #[test]
    fn superseded_passes_only_during_the_overlap() {
        let mut s = view(CertStatus::Superseded);
        s.cert.superseded_at = Some(400);
        assert_eq!(decide(Some(&s), 449, 50), Verdict::Allow);
        assert_eq!(
            decide(Some(&s), 450, 50),
            Verdict::Refuse(Refusal::Superseded)
        );
        s.cert.superseded_at = None;
        assert_eq!(
            decide(Some(&s), 401, 50),
            Verdict::Refuse(Refusal::Superseded)
        );
    }

    #[test]
    fn renewal_passes_an_expired_current_certificate_only_within_the_grace() {
        let grace = 100;
        let r = |v: &CertStatusView, now| {
            decide_for_renewal(Audience::Customer, Some(v), now, 0, grace)
        };
        let current = view(CertStatus::Current);
        assert_eq!(r(&current, 500), Verdict::Allow);
        assert_eq!(r(&current, 1000), Verdict::Allow);
        assert_eq!(r(&current, 1099), Verdict::Allow);
        assert_eq!(r(&current, 1100), Verdict::Refuse(Refusal::Expired));
        assert_eq!(
            decide_for_renewal(Audience::Customer, Some(&current), 1000, 0, 0),
            Verdict::Refuse(Refusal::Expired)
        );
        assert_eq!(
            decide_for_renewal(Audience::Customer, None, 1000, 0, grace),
            Verdict::Refuse(Refusal::Unknown)
        );
        // The live check still refuses it.
        assert_eq!(
            decide(Some(&current), 1000, 0),
            Verdict::Refuse(Refusal::Expired)
        );
        let mut u = view(CertStatus::Current);
        u.user_enabled = false;
        assert_eq!(r(&u, 1050), Verdict::Refuse(Refusal::UserDisabled));
        let mut c = view(CertStatus::Current);
        c.contract_enabled = false;
        assert_eq!(r(&c, 1050), Verdict::Refuse(Refusal::ContractDisabled));
        assert_eq!(
            r(&view(CertStatus::Revoked), 1050),
            Verdict::Refuse(Refusal::Revoked)
        );
        // Superseded, even inside a long overlap: the renewal has already happened.
        let mut s = view(CertStatus::Superseded);
        s.cert.superseded_at = Some(990);
        assert_eq!(
            decide_for_renewal(Audience::Customer, Some(&s), 1050, 0, grace),
            Verdict::Refuse(Refusal::Superseded)
        );
        assert_eq!(
            decide_for_renewal(Audience::Customer, Some(&s), 1050, 1000, grace),
            Verdict::Refuse(Refusal::Superseded)
        );
        // Not yet valid stays refused.
        assert_eq!(r(&current, 99), Verdict::Refuse(Refusal::NotYetValid));
    }
}
