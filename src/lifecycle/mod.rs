//! The rules of the scheme ([`rules`], pure) and the service that applies them with the
//! store, the CA and the audit log ([`Lifecycle`]). Every way in (command line, pages, EST,
//! admin API) calls the same service, so a rule cannot be skipped by choosing the door;
//! every way to a certificate goes through [`Lifecycle::enroll`].

mod codes;
mod enroll;
mod error;
pub mod intents;
mod outcomes;
pub mod rules;
mod service;
mod staff;

pub use codes::{IssuanceCode, hash_code};
pub use enroll::Authorization;
pub use error::LifecycleError;
pub use outcomes::IssuanceOutcomes;
pub use rules::{Refusal, RenewalWindow};
pub use service::{Authorized, Lifecycle, LifecycleSettings, format_date, normalize_serial};
