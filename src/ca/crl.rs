//! CRLs (RFC 5280 §5): the one place a CRL is assembled and signed, for the distribution
//! point (`web`) and the offline `certgate ca crl` alike. Signed by the CA key, counted in
//! the CA's signature tally like every other signature.
//!
//! What a CRL says is a [`CrlContents`]: the caller reads the revoked entries and the next
//! CRL number from the store and chooses the validity and the kind (complete or delta, the
//! whole CA or one part); [`Authority::sign_crl`] turns it into DER. Which CRL a URL names is
//! a [`CrlScope`], so certificates, the distribution point and the CRLs' own extensions
//! spell the same URLs.

use der::asn1::{BitString, GeneralizedTime, Ia5String, OctetString, Uint, UtcTime};
use der::{Decode, Encode};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::crl::dp::{DistributionPoint, IssuingDistributionPoint};
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber, CrlReason, FreshestCrl};
use x509_cert::ext::{Extension, pkix::crl::BaseCrlNumber};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use super::{Authority, CaError, SignatureKind};
use crate::clock::{DAY, UnixTime};

/// The CRLReason code of a delta CRL entry whose certificate left the CRL (released from
/// hold, or expired) since the base CRL (RFC 5280 §5.3.1).
pub const REMOVE_FROM_CRL: u8 = 8;

/// One revoked certificate as the CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Lowercase hex serial.
    pub serial: String,
    pub revoked_at: UnixTime,
    /// The CRLReason code (RFC 5280 §5.3.1), `None` for no reason extension.
    pub reason_code: Option<u8>,
}

/// Which CRL of a CA: the one for all its certificates, or one part of it, the part for
/// certificates issued in one period (`[revocation] crl_partition_days`). Each has a
/// complete CRL and, with `delta_crl`, a delta CRL beside it.
///
/// A part's name carries the period's length, so a certificate issued under one setting
/// never names a CRL whose contents another setting decides: at worst its URL is no longer
/// served (a relying party then fails closed), never answered with the wrong list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CrlScope {
    pub ca_id: i64,
    /// The issuance period, `None` for the whole CA.
    pub part: Option<CrlPart>,
}

/// An issuance period: certificates whose notBefore is in
/// `[index × days, (index + 1) × days)` (in days since 1970).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CrlPart {
    pub days: u32,
    pub index: i64,
}

impl CrlPart {
    /// The notBefore range `[from, to)` of the certificates in this part.
    pub fn not_before_range(&self) -> (UnixTime, UnixTime) {
        let period = i64::from(self.days) * DAY;
        let from = self.index.saturating_mul(period);
        (from, from.saturating_add(period))
    }
}

impl CrlScope {
    /// The whole CA's CRL.
    pub fn whole(ca_id: i64) -> Self {
        Self { ca_id, part: None }
    }

    /// The CRL that lists a certificate issued at `not_before`: its period's part when
    /// partitioning is on (`period_days` > 0), else the whole CA's.
    pub fn for_certificate(ca_id: i64, not_before: UnixTime, period_days: u32) -> Self {
        let period = i64::from(period_days) * DAY;
        Self {
            ca_id,
            part: (period > 0).then(|| CrlPart {
                days: period_days,
                index: not_before.div_euclid(period),
            }),
        }
    }

    /// The file name under `/crl/` of the complete CRL (`delta`: of the delta CRL).
    pub fn file_name(&self, delta: bool) -> String {
        let suffix = if delta { "-delta" } else { "" };
        match self.part {
            None => format!("{}{suffix}.crl", self.ca_id),
            Some(p) => format!("{}-{}d-{}{suffix}.crl", self.ca_id, p.days, p.index),
        }
    }

    /// The URL of the complete CRL (`delta`: of the delta CRL) under `public_url`.
    pub fn url(&self, public_url: &str, delta: bool) -> String {
        format!(
            "{}/crl/{}",
            public_url.trim_end_matches('/'),
            self.file_name(delta)
        )
    }

    /// Reads a file name written by [`Self::file_name`]; `None` for anything else. Strict:
    /// digits only, no sign and no leading zero, so one CRL has one spelling.
    pub fn parse(file_name: &str) -> Option<(Self, bool)> {
        let stem = file_name.strip_suffix(".crl")?;
        let (stem, delta) = match stem.strip_suffix("-delta") {
            Some(s) => (s, true),
            None => (stem, false),
        };
        let mut fields = stem.split('-');
        let ca_id = canonical_number(fields.next()?)?;
        let part = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => None,
            (Some(days), Some(index), None) => Some(CrlPart {
                days: u32::try_from(canonical_number(days.strip_suffix('d')?)?).ok()?,
                index: canonical_number(index)?,
            }),
            _ => return None,
        };
        if part.is_some_and(|p| p.days == 0) {
            return None;
        }
        Some((Self { ca_id, part }, delta))
    }

    /// The key under which the store keeps this scope's base CRL.
    pub fn key(&self) -> String {
        self.file_name(false)
    }
}

fn canonical_number(s: &str) -> Option<i64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Complete or delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrlKind {
    /// Lists every certificate of its scope that is revoked or on hold. `delta_url`: where
    /// its delta CRLs are (the FreshestCRL extension), when they are made.
    Complete { delta_url: Option<String> },
    /// Lists what changed since the complete CRL numbered `base` (the DeltaCRLIndicator).
    Delta { base: i64 },
}

/// What a CRL says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlContents {
    /// The CRL number (RFC 5280 §5.2.3): increasing for each CRL of one CA, complete and
    /// delta alike, never reused.
    pub number: i64,
    /// thisUpdate: when the CRL is made.
    pub this_update: UnixTime,
    /// nextUpdate: the latest time the next CRL will be made.
    pub next_update: UnixTime,
    pub kind: CrlKind,
    /// The URL of this part's complete CRL (the IssuingDistributionPoint), `None` for the
    /// whole CA's CRL.
    pub part_url: Option<String>,
    /// Every certificate listed, in the order given.
    pub revoked: Vec<RevokedEntry>,
}

impl CrlContents {
    /// A complete CRL of the whole CA numbered `number`, made at `now` and valid for
    /// `validity` seconds, listing `revoked`.
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
            kind: CrlKind::Complete { delta_url: None },
            part_url: None,
            revoked: revoked.into_iter().collect(),
        }
    }
}

/// The entries of a delta CRL: what `now` lists that `base` did not (or listed with
/// another reason), and, as `removeFromCRL`, what `base` listed that `now` does not. Both
/// lists are as [`RevokedEntry`]s of one scope; the result is in serial order.
pub fn delta_entries(base: &[RevokedEntry], now: &[RevokedEntry]) -> Vec<RevokedEntry> {
    use std::collections::HashMap;
    // Keyed by the serial's value: a CRL read back gives no leading zero bytes.
    let before: HashMap<&str, &RevokedEntry> =
        base.iter().map(|e| (serial_value(&e.serial), e)).collect();
    let current: HashMap<&str, &RevokedEntry> =
        now.iter().map(|e| (serial_value(&e.serial), e)).collect();
    let unchanged = |e: &RevokedEntry| {
        before
            .get(serial_value(&e.serial))
            .is_some_and(|b| b.revoked_at == e.revoked_at && b.reason_code == e.reason_code)
    };
    let mut out: Vec<RevokedEntry> = now.iter().filter(|e| !unchanged(e)).cloned().collect();
    out.extend(
        base.iter()
            .filter(|e| !current.contains_key(serial_value(&e.serial)))
            .map(|e| RevokedEntry {
                serial: e.serial.clone(),
                revoked_at: e.revoked_at,
                reason_code: Some(REMOVE_FROM_CRL),
            }),
    );
    out.sort_by(|a, b| a.serial.cmp(&b.serial));
    out
}

/// A hex serial without leading zero bytes.
fn serial_value(hex: &str) -> &str {
    let mut s = hex;
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    s
}

/// The entries of a CRL this CA signed (a stored base CRL), as [`RevokedEntry`]s.
pub fn read_entries(crl_der: &[u8]) -> Result<Vec<RevokedEntry>, CaError> {
    let list = CertificateList::from_der(crl_der)
        .map_err(|e| CaError::Profile(format!("a stored CRL cannot be read: {e}")))?;
    let mut out = Vec::new();
    for r in list.tbs_cert_list.revoked_certificates.unwrap_or_default() {
        let reason_code = r
            .crl_entry_extensions
            .unwrap_or_default()
            .iter()
            .find(|x| x.extn_id == const_oid::db::rfc5280::ID_CE_CRL_REASONS)
            .and_then(|x| CrlReason::from_der(x.extn_value.as_bytes()).ok())
            .map(|r| r as u8);
        // The INTEGER's content: a leading zero byte only keeps a high bit positive.
        let bytes = match r.serial_number.as_bytes() {
            [0, rest @ ..] if rest.first().is_some_and(|b| b & 0x80 != 0) => rest,
            all => all,
        };
        let secs = r.revocation_date.to_unix_duration().as_secs();
        out.push(RevokedEntry {
            serial: hex::encode(bytes),
            revoked_at: i64::try_from(secs)
                .map_err(|_| CaError::Profile("a stored CRL has a date out of range".into()))?,
            reason_code,
        });
    }
    Ok(out)
}

fn crl_reason(code: Option<u8>) -> Result<Option<CrlReason>, CaError> {
    use CrlReason as R;
    // RFC 5280 §5.3.1: the reason code "unspecified" should be absent rather than listed.
    Ok(Some(match code {
        None | Some(0) => return Ok(None),
        Some(1) => R::KeyCompromise,
        Some(2) => R::CaCompromise,
        Some(3) => R::AffiliationChanged,
        Some(4) => R::Superseded,
        Some(5) => R::CessationOfOperation,
        Some(6) => R::CertificateHold,
        Some(REMOVE_FROM_CRL) => R::RemoveFromCRL,
        Some(9) => R::PrivilegeWithdrawn,
        Some(other) => {
            return Err(CaError::Profile(format!(
                "CRL reason code {other} is not one certgate gives"
            )));
        }
    }))
}

/// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
fn crl_time(t: UnixTime) -> Result<Time, CaError> {
    let secs = u64::try_from(t).map_err(|_| CaError::Time(t))?;
    let d = std::time::Duration::from_secs(secs);
    const Y2050: u64 = 2_524_608_000;
    if secs < Y2050 {
        UtcTime::from_unix_duration(d)
            .map(Time::UtcTime)
            .map_err(|_| CaError::Time(t))
    } else {
        GeneralizedTime::from_unix_duration(d)
            .map(Time::GeneralTime)
            .map_err(|_| CaError::Time(t))
    }
}

fn der_err(e: der::Error) -> CaError {
    CaError::Profile(format!("DER encoding of the CRL failed: {e}"))
}

fn extension(
    oid: der::oid::ObjectIdentifier,
    critical: bool,
    value: &impl Encode,
) -> Result<Extension, CaError> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(der_err)?).map_err(der_err)?,
    })
}

fn uri_point(url: &str) -> Result<DistributionPointName, CaError> {
    let uri = Ia5String::new(url).map_err(der_err)?;
    Ok(DistributionPointName::FullName(vec![
        GeneralName::UniformResourceIdentifier(uri),
    ]))
}

fn number(n: i64) -> Result<Uint, CaError> {
    let n =
        u64::try_from(n).map_err(|_| CaError::Profile(format!("CRL number {n} is negative")))?;
    Uint::new(&n.to_be_bytes()).map_err(der_err)
}

impl Authority {
    /// Signs the CRL `crl` says, as this CA. Returns the DER. Blocking (the key is in the
    /// HSM).
    pub fn sign_crl(&self, crl: &CrlContents) -> Result<Vec<u8>, CaError> {
        use const_oid::db::rfc5280 as oid;
        let mut revoked = Vec::with_capacity(crl.revoked.len());
        for r in &crl.revoked {
            let bytes = hex::decode(&r.serial).map_err(|_| {
                CaError::Profile(format!("stored serial {:?} is not hex", r.serial))
            })?;
            let reason = crl_reason(r.reason_code)?
                .map(|reason| extension(oid::ID_CE_CRL_REASONS, false, &reason))
                .transpose()?;
            revoked.push(RevokedCert {
                serial_number: SerialNumber::new(&bytes).map_err(der_err)?,
                revocation_date: crl_time(r.revoked_at)?,
                crl_entry_extensions: reason.map(|r| vec![r]),
            });
        }
        let aki = AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(self.key_id.clone()).map_err(der_err)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        };
        let mut extensions = vec![
            extension(oid::ID_CE_AUTHORITY_KEY_IDENTIFIER, false, &aki)?,
            extension(
                oid::ID_CE_CRL_NUMBER,
                false,
                &CrlNumber(number(crl.number)?),
            )?,
        ];
        match &crl.kind {
            CrlKind::Delta { base } => extensions.push(extension(
                oid::ID_CE_DELTA_CRL_INDICATOR,
                true,
                &BaseCrlNumber(number(*base)?),
            )?),
            CrlKind::Complete {
                delta_url: Some(url),
            } => extensions.push(extension(
                oid::ID_CE_FRESHEST_CRL,
                false,
                &FreshestCrl(vec![DistributionPoint {
                    distribution_point: Some(uri_point(url)?),
                    reasons: None,
                    crl_issuer: None,
                }]),
            )?),
            CrlKind::Complete { delta_url: None } => {}
        }
        if let Some(url) = &crl.part_url {
            // Critical, as RFC 5280 §5.2.5 requires: a client that cannot read it must not
            // take a part for the whole.
            extensions.push(extension(
                oid::ID_CE_ISSUING_DISTRIBUTION_POINT,
                true,
                &IssuingDistributionPoint {
                    distribution_point: Some(uri_point(url)?),
                    only_contains_user_certs: false,
                    only_contains_ca_certs: false,
                    only_some_reasons: None,
                    indirect_crl: false,
                    only_contains_attribute_certs: false,
                },
            )?);
        }
        let ca = x509_cert::Certificate::from_der(self.ca_der())
            .map_err(|e| CaError::CaCert(e.to_string()))?;
        let algorithm = super::ocsp::signature_algorithm(self.key().algorithm())?;
        let tbs = TbsCertList {
            version: x509_cert::Version::V2,
            signature: algorithm.clone(),
            issuer: ca.tbs_certificate.subject,
            this_update: crl_time(crl.this_update)?,
            next_update: Some(crl_time(crl.next_update)?),
            // RFC 5280 §5.1.2.6: absent, not empty, when nothing is listed.
            revoked_certificates: (!revoked.is_empty()).then_some(revoked),
            crl_extensions: Some(extensions),
        };
        let tbs_der = tbs.to_der().map_err(der_err)?;
        let signature = self.key().sign(&tbs_der)?;
        self.tally.count(SignatureKind::Crl);
        CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: algorithm,
            signature: BitString::from_bytes(&signature).map_err(der_err)?,
        }
        .to_der()
        .map_err(der_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(serial: &str, at: i64, reason: Option<u8>) -> RevokedEntry {
        RevokedEntry {
            serial: serial.into(),
            revoked_at: at,
            reason_code: reason,
        }
    }

    #[test]
    fn scopes_have_one_spelling_each() {
        for (name, scope, delta) in [
            ("3.crl", CrlScope::whole(3), false),
            ("3-delta.crl", CrlScope::whole(3), true),
            ("3-7d-20.crl", part(3, 7, 20), false),
            ("3-30d-0-delta.crl", part(3, 30, 0), true),
        ] {
            assert_eq!(CrlScope::parse(name), Some((scope, delta)), "{name}");
            assert_eq!(scope.file_name(delta), name);
        }
        for bad in [
            "03.crl",
            "+3.crl",
            "3.CRL",
            "3-7d.crl",
            "3-7d-020.crl",
            "3-delta-delta.crl",
            "-1.crl",
            "3-7d--1.crl",
            "3 .crl",
            ".crl",
            "3-7d-2-3.crl",
            "3-0d-5.crl",
            "3-07d-5.crl",
            "3-7-5.crl",
            "99999999999999999999.crl",
            "3-7d-5.crl.crl",
            "3-delta-7d-5.crl",
        ] {
            assert_eq!(CrlScope::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_certificate_names_its_issuance_periods_part() {
        assert_eq!(CrlScope::for_certificate(1, 10 * DAY + 5, 0).part, None);
        assert_eq!(CrlScope::for_certificate(1, 10 * DAY + 5, 7), part(1, 7, 1));
        assert_eq!(CrlScope::for_certificate(1, 14 * DAY, 7), part(1, 7, 2));
        assert_eq!(
            part(1, 7, 2).part.map(|p| p.not_before_range()),
            Some((14 * DAY, 21 * DAY))
        );
        assert_eq!(
            CrlScope::for_certificate(1, 0, 30).url("https://pki.example/", true),
            "https://pki.example/crl/1-30d-0-delta.crl"
        );
    }

    fn part(ca_id: i64, days: u32, index: i64) -> CrlScope {
        CrlScope {
            ca_id,
            part: Some(CrlPart { days, index }),
        }
    }

    #[test]
    fn a_delta_lists_what_changed_and_removes_what_left() {
        let base = [
            entry("aa", 10, Some(1)),
            entry("bb", 20, Some(6)),
            entry("cc", 5, Some(4)),
        ];
        let now = [
            entry("aa", 10, Some(1)), // unchanged: not in the delta
            entry("bb", 20, Some(1)), // hold became a revocation
            entry("dd", 30, Some(6)), // new
        ];
        assert_eq!(
            delta_entries(&base, &now),
            vec![
                entry("bb", 20, Some(1)),
                entry("cc", 5, Some(REMOVE_FROM_CRL)),
                entry("dd", 30, Some(6)),
            ]
        );
        assert!(delta_entries(&now, &now).is_empty());
        // A serial read back from DER has no leading zero bytes; it is the same serial.
        assert!(delta_entries(&[entry("01ff", 7, None)], &[entry("0001ff", 7, None)]).is_empty());
    }

    #[test]
    fn times_switch_to_generalized_in_2050() {
        assert!(matches!(crl_time(2_524_607_999), Ok(Time::UtcTime(_))));
        assert!(matches!(crl_time(2_524_608_000), Ok(Time::GeneralTime(_))));
        assert!(crl_time(-1).is_err());
    }
}
