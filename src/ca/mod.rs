//! The certificate authority: the CA certificate, client certificate profiles, CSR checks,
//! CA names (`name`), CRLs (`crl`, the one builder the web and the CLI share), OCSP answers,
//! and the checks a rollover to a new key passes (`rollover`).
//!
//! Keys are reached only through [`KeyBackend`] (the seam in [`crate::keys`], re-exported
//! here); this module never touches PKCS#11 or any other key store. It
//! decides every field of an issued certificate itself: nothing of a CSR but its public key
//! reaches a certificate.

mod authority;
pub mod crl;
pub mod csr;
pub mod csrattrs;
pub mod intermediate;
mod key;
pub mod name;
pub mod ocsp;
pub mod pem;
pub mod pkcs7;
pub mod policy;
pub mod profile;
pub mod pss;
mod revocation;
pub mod rollover;
pub mod server_name;
mod tally;

pub use crate::keys::{
    KeyAlgorithm, KeyBackend, SignError, subject_public_key_bits, verify_signature,
};
pub use authority::{
    Authority, IssuancePolicy, IssuedCert, PlannedSerial, check_key_matches, self_signed_ca,
};
pub use csr::{CheckedCsr, ClientKeyKind, CsrError};
pub use key::{RcgenKey, rcgen_signature_algorithm};
pub use name::{CaName, NameError};
pub use policy::{ClientProfile, profile_of_certificate};
pub use profile::ClientSubject;
pub use revocation::RevocationReason;
pub use tally::{RESERVED_SUFFIX, SignatureKind, SignatureTally};

/// Why the CA could not produce a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The key could not sign.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// rcgen refused the parameters or the signature failed (see the key backend's log).
    #[error("certificate generation failed: {0}")]
    Rcgen(#[source] rcgen::Error),
    /// The CA certificate does not certify the key in the HSM.
    #[error("the CA certificate's public key is not the HSM key's public key")]
    KeyMismatch,
    /// The CA certificate cannot be parsed.
    #[error("the CA certificate cannot be parsed: {0}")]
    CaCert(String),
    /// The system random generator failed.
    #[error("the random number generator failed")]
    Random,
    /// A time outside what certificates can carry.
    #[error("time {0} cannot be encoded in a certificate")]
    Time(i64),
    /// A profile value cannot be encoded.
    #[error("{0}")]
    Profile(String),
    /// The CA name cannot be written.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A server certificate name that is neither an IP address nor a valid DNS name.
    #[error(transparent)]
    ServerName(#[from] server_name::ServerNameError),
}
