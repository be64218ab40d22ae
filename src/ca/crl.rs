//! CRLs (RFC 5280 §5), signed by the CA key through the same issuer as certificates.

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use super::{Authority, CaError, RevocationReason};
use crate::clock::UnixTime;

/// One revoked certificate as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Lowercase hex serial.
    pub serial: String,
    pub revoked_at: UnixTime,
    /// RFC 5280 reason name as stored.
    pub reason: String,
}

fn rcgen_reason(name: &str) -> Option<rcgen::RevocationReason> {
    use rcgen::RevocationReason as R;
    // RFC 5280 §5.3.1: the reason code "unspecified" should be absent rather than listed.
    match name.parse::<RevocationReason>().ok()? {
        RevocationReason::Unspecified => None,
        RevocationReason::KeyCompromise => Some(R::KeyCompromise),
        RevocationReason::CaCompromise => Some(R::CaCompromise),
        RevocationReason::AffiliationChanged => Some(R::AffiliationChanged),
        RevocationReason::Superseded => Some(R::Superseded),
        RevocationReason::CessationOfOperation => Some(R::CessationOfOperation),
        RevocationReason::PrivilegeWithdrawn => Some(R::PrivilegeWithdrawn),
    }
}

fn at(t: UnixTime) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(t).map_err(|_| CaError::Time(t))
}

impl Authority {
    /// Signs a CRL numbered `number` listing `revoked`, valid from `now` to `next_update`.
    /// Blocking (the key is in the HSM).
    pub fn sign_crl(
        &self,
        revoked: &[RevokedEntry],
        number: i64,
        now: UnixTime,
        next_update: UnixTime,
    ) -> Result<Vec<u8>, CaError> {
        let mut revoked_certs = Vec::with_capacity(revoked.len());
        for r in revoked {
            let bytes = hex::decode(&r.serial).map_err(|_| {
                CaError::Profile(format!("stored serial {:?} is not hex", r.serial))
            })?;
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                revocation_time: at(r.revoked_at)?,
                reason_code: rcgen_reason(&r.reason),
                invalidity_date: None,
            });
        }
        let number = u64::try_from(number)
            .map_err(|_| CaError::Profile(format!("CRL number {number} is negative")))?;
        let params = CertificateRevocationListParams {
            this_update: at(now)?,
            next_update: at(next_update)?,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.key_id.clone()),
        };
        let crl = params.signed_by(&self.issuer).map_err(CaError::Rcgen)?;
        Ok(crl.der().to_vec())
    }
}
