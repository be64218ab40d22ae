//! Enrollment protocols, one file each, as thin adapters over
//! [`Lifecycle::enroll`](crate::lifecycle::Lifecycle::enroll): each reads its protocol's
//! request into an [`Authorization`](crate::lifecycle::Authorization) and a CSR, and writes
//! the certificate (or the refusal) back in its protocol's format. No adapter decides
//! anything about issuance.
//!
//! - [`browser`]: the JSON calls of certgate's obtain and renew pages;
//! - [`est`]: EST (RFC 7030).
//!
//! A new protocol (SCEP: its challenge password is the issuance code) is one more file
//! here, plus its lines in the table of own paths (`web/routes.rs`).

pub mod browser;
pub mod est;
