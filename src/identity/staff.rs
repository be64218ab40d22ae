//! A bank staff member whose certificate passed the staff console's live check, with the
//! role the store gives them at this request (a role change applies at once).

use crate::store::StaffRole;

/// The verified staff member behind a request to the staff console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffCaller {
    /// The staff name (not the `staff:` login).
    pub name: String,
    pub role: StaffRole,
    /// The certificate's serial, lowercase hex as the store keeps it.
    pub serial: String,
}
