//! CRLs (RFC 5280 §5): the one place a CRL is assembled and signed, for the distribution
//! point (`web`) and the offline `certgate ca crl` alike. Signed by the CA key through the
//! same issuer as certificates.
//!
//! What a CRL says is a [`CrlContents`]: the caller reads the revoked entries and the next
//! CRL number from the store and chooses the validity; [`Authority::sign_crl`] turns it into
//! DER. Further kinds of CRL (a delta CRL, one partition of a large CRL) belong here too, as
//! further fields of [`CrlContents`].

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use super::{Authority, CaError};
use crate::clock::UnixTime;

/// One revoked certificate as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Lowercase hex serial.
    pub serial: String,
    pub revoked_at: UnixTime,
    /// The CRLReason code (RFC 5280 §5.3.1), `None` for no reason extension.
    pub reason_code: Option<u8>,
}

/// What a CRL says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlContents {
    /// The CRL number (RFC 5280 §5.2.3): increasing for each CRL of one CA, never reused.
    pub number: i64,
    /// thisUpdate: when the CRL is made.
    pub this_update: UnixTime,
    /// nextUpdate: the latest time the next CRL will be made.
    pub next_update: UnixTime,
    /// Every certificate listed, in the order given.
    pub revoked: Vec<RevokedEntry>,
}

impl CrlContents {
    /// A complete CRL numbered `number`, made at `now` and valid for `validity` seconds,
    /// listing `revoked`.
    pub fn complete(
        number: i64,
        now: UnixTime,
        validity: i64,
        revoked: impl IntoIterator<Item = RevokedEntry>,
    ) -> Self {
        Self {
            number,
            this_update: now,
            next_update: now.saturating_add(validity),
            revoked: revoked.into_iter().collect(),
        }
    }
}

fn rcgen_reason(code: Option<u8>) -> Result<Option<rcgen::RevocationReason>, CaError> {
    use rcgen::RevocationReason as R;
    // RFC 5280 §5.3.1: the reason code "unspecified" should be absent rather than listed.
    Ok(Some(match code {
        None | Some(0) => return Ok(None),
        Some(1) => R::KeyCompromise,
        Some(2) => R::CaCompromise,
        Some(3) => R::AffiliationChanged,
        Some(4) => R::Superseded,
        Some(5) => R::CessationOfOperation,
        Some(6) => R::CertificateHold,
        Some(9) => R::PrivilegeWithdrawn,
        Some(other) => {
            return Err(CaError::Profile(format!(
                "CRL reason code {other} is not one certgate gives"
            )));
        }
    }))
}

fn at(t: UnixTime) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|_| CaError::Time(t))
}

impl Authority {
    /// Signs the CRL `crl` says, as this CA. Returns the DER. Blocking (the key is in the
    /// HSM).
    pub fn sign_crl(&self, crl: &CrlContents) -> Result<Vec<u8>, CaError> {
        let mut revoked_certs = Vec::with_capacity(crl.revoked.len());
        for r in &crl.revoked {
            let bytes = hex::decode(&r.serial).map_err(|_| {
                CaError::Profile(format!("stored serial {:?} is not hex", r.serial))
            })?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: at(r.revoked_at)?,
                reason_code: rcgen_reason(r.reason_code)?,
                invalidity_date: None,
            });
        }
        let number = u64::try_from(crl.number)
            .map_err(|_| CaError::Profile(format!("CRL number {} is negative", crl.number)))?;
        let params = CertificateRevocationListParams {
            this_update: at(crl.this_update)?,
            next_update: at(crl.next_update)?,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.key_id.clone()),
        };
        let crl = params.signed_by(&self.issuer).map_err(CaError::Rcgen)?;
        self.tally.count(super::SignatureKind::Crl);
        Ok(crl.der().to_vec())
    }
}
