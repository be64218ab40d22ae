//! What each staff role may do on the console. One table, read by the dispatcher before any
//! handler runs, so a new call cannot forget its check.

use crate::store::StaffRole;

/// A kind of console call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Contracts, login IDs, certificates, requests.
    Read,
    /// The audit log.
    ReadAudit,
    /// Register, switch, authorize, re-issue, revoke (directly or as a request).
    Change,
    /// Approve or reject someone else's request.
    Decide,
    /// Take back one's own request.
    Withdraw,
    /// Renew one's own certificate.
    Own,
}

/// Whether `role` may perform `op`.
pub fn allows(role: StaffRole, op: Operation) -> bool {
    use Operation::*;
    use StaffRole::*;
    matches!(
        (role, op),
        (_, Read | Own)
            | (Supervisor | Auditor, ReadAudit)
            | (Operator | Supervisor, Change | Withdraw)
            | (Supervisor, Decide)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auditors_only_read_operators_never_decide() {
        use Operation::*;
        for op in [Change, Decide, Withdraw] {
            assert!(!allows(StaffRole::Auditor, op), "{op:?}");
        }
        assert!(allows(StaffRole::Auditor, ReadAudit));
        assert!(!allows(StaffRole::Operator, Decide));
        assert!(!allows(StaffRole::Operator, ReadAudit));
        assert!(allows(StaffRole::Supervisor, Decide));
        assert!(allows(StaffRole::Supervisor, Change));
    }
}
