//! The rules of the scheme ([`rules`], pure) and the service that applies them with the
//! store, the CA and the audit log ([`Lifecycle`]). Every way in (command line, pages, EST,
//! admin API) calls the same service, so a rule cannot be skipped by choosing the door;
//! every way to a certificate goes through [`Lifecycle::enroll`].

mod codes;
mod enroll;
mod error;
mod four_eyes;
pub mod intents;
mod outcomes;
mod registry;
pub mod rules;
mod service;
mod staff;

pub use codes::{IssuanceCode, hash_code};
pub use enroll::Authorization;
pub use error::LifecycleError;
pub use four_eyes::{
    APPROVAL_KINDS, ActionDone, ApprovalPolicy, Asked, DEFAULT_APPROVAL_KINDS, StaffAction,
    request_subject,
};
pub use outcomes::IssuanceOutcomes;
pub use registry::NewUser;
pub use rules::{Refusal, RenewalWindow};
pub use service::{Authorized, Lifecycle, LifecycleSettings, format_date, normalize_serial};
