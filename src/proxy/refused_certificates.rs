//! Refused uses of certificates certgate issued, in the audit log: a revoked certificate
//! still in use, one of a disabled login ID or contract, a staff certificate at the
//! customers' door, or one that chains to certgate's CA yet was never issued (which only
//! the CA key could make). Each is a security event an auditor must be able to find.
//!
//! Only refusals that need a certificate of certgate's CA get a row; anyone can make a
//! self-signed certificate, and those stay in the security log. The first refusal of a
//! certificate for a reason is recorded, the same ones within a minute are only counted,
//! and the next row carries how many (`audit::refusal_log`).

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::refusal_log::{Entry, RefusalLog};
use crate::audit::{Actor, Audit, Outcome};
use crate::clock::UnixTime;
use crate::status::Refusal;
use crate::tls::PresentedCert;

/// Writes `certificate.refused` entries for the gateway's listeners.
pub struct RefusedCertificates {
    audit: Audit,
    log: RefusalLog,
}

impl RefusedCertificates {
    pub fn new(audit: Audit) -> Arc<Self> {
        Arc::new(Self {
            audit,
            log: RefusalLog::default(),
        })
    }

    /// Records the refusal of `presented` when it is one that gets a row, in the
    /// background: the refusal is answered without waiting for the database.
    pub fn record(
        self: &Arc<Self>,
        now: UnixTime,
        remote: IpAddr,
        presented: &PresentedCert,
        refusal: Refusal,
    ) {
        if !audited(refusal) {
            return;
        }
        let repeated = match self.log.entry(&presented.serial, refusal.as_str(), now) {
            Entry::Counted => return,
            Entry::Record { repeated } => repeated,
        };
        let mut detail = serde_json::json!({
            "reason": refusal.as_str(),
            "sha256": presented.sha256,
            "certificate_subject": presented.subject,
        });
        if repeated > 0 {
            detail["repeated"] = repeated.into();
        }
        let this = Arc::clone(self);
        let serial = presented.serial.clone();
        tokio::spawn(async move {
            // A failure is logged by `record`; the request was refused either way.
            let _ = this
                .audit
                .record(
                    now,
                    &Actor::Anonymous(remote.to_string()),
                    "certificate.refused",
                    &serial,
                    Outcome::Refused,
                    detail,
                )
                .await;
        });
    }
}

/// Whether a refusal needs a certificate of certgate's CA, so that it cannot be made up in
/// numbers by anyone.
fn audited(refusal: Refusal) -> bool {
    matches!(
        refusal,
        Refusal::Revoked
            | Refusal::Unknown
            | Refusal::UserDisabled
            | Refusal::ContractDisabled
            | Refusal::StaffCertificate
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_of_certgates_own_certificates_get_rows() {
        for r in [
            Refusal::Revoked,
            Refusal::Unknown,
            Refusal::UserDisabled,
            Refusal::ContractDisabled,
            Refusal::StaffCertificate,
        ] {
            assert!(audited(r), "{r:?}");
        }
        // Anyone can present these (a self-signed certificate, or none), or they are the
        // ordinary course of a certificate's life.
        for r in [
            Refusal::NoCertificate,
            Refusal::ForeignCa,
            Refusal::InvalidCertificate,
            Refusal::Expired,
            Refusal::Superseded,
            Refusal::NotYetValid,
            Refusal::StatusUnavailable,
        ] {
            assert!(!audited(r), "{r:?}");
        }
    }
}
