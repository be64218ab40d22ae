//! Who is calling the staff console: the presented certificate checked live, as the gateway
//! checks a customer's (status cache, every request), then required to be a current staff
//! certificate of an enabled staff member, whose role is read from the store.

use std::sync::Arc;

use crate::identity::StaffCaller;
use crate::status::{Refusal, StatusCache, Verdict};
use crate::store::{Audience, STAFF_CONTRACT, Store, staff_name};
use crate::tls::PresentedCert;

/// Why a request to the staff console is refused before any handler runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerRefusal {
    /// The certificate itself does not pass (revoked, expired, unknown, disabled...).
    #[error("the client certificate is not accepted ({})", .0.as_str())]
    Certificate(Refusal),
    /// A valid certificate, but not a staff member's (e.g. a customer's).
    #[error("this console is for bank staff; the client certificate is not a staff certificate")]
    NotStaff,
    /// The store cannot say who this is now.
    #[error("the staff directory is temporarily unavailable")]
    Unavailable,
}

impl CallerRefusal {
    /// The stable code in the JSON answer and the audit log.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Certificate(r) => r.as_str(),
            Self::NotStaff => "not_staff",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The staff member behind `presented`, decided now.
pub async fn resolve(
    cache: &Arc<StatusCache>,
    store: &Store,
    presented: Option<&PresentedCert>,
) -> Result<StaffCaller, CallerRefusal> {
    let presented = presented.ok_or(CallerRefusal::Certificate(Refusal::NoCertificate))?;
    if let Some(p) = presented.problem {
        return Err(CallerRefusal::Certificate(p));
    }
    let (verdict, view, _) = cache.check_for(Audience::Staff, &presented.serial).await;
    match verdict {
        Verdict::Refuse(Refusal::NotStaffCertificate) => return Err(CallerRefusal::NotStaff),
        Verdict::Refuse(r) => return Err(CallerRefusal::Certificate(r)),
        Verdict::Allow => {}
    }
    let view = view.ok_or(CallerRefusal::Certificate(Refusal::Unknown))?;
    if !view.cert.sha256.eq_ignore_ascii_case(&presented.sha256) {
        return Err(CallerRefusal::Certificate(Refusal::Unknown));
    }
    if view.cert.contract_id != STAFF_CONTRACT {
        return Err(CallerRefusal::NotStaff);
    }
    let name = staff_name(&view.cert.login).ok_or(CallerRefusal::NotStaff)?;
    let member = store
        .staff_member(name)
        .await
        .map_err(|_| CallerRefusal::Unavailable)?
        .ok_or(CallerRefusal::NotStaff)?;
    if !member.enabled {
        return Err(CallerRefusal::Certificate(Refusal::UserDisabled));
    }
    Ok(StaffCaller {
        name: member.name,
        role: member.role,
        serial: view.cert.serial.clone(),
    })
}
