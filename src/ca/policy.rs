//! certgate's own certificate policy OIDs, the one place they are written.
//!
//! The arc is a UUID-derived OID (ITU-T X.667 / RFC 4122 §1: `2.25.<the UUID as one
//! decimal integer>`), so it needs no registration and no one else's arc:
//!
//! ```text
//! 2.25.119101982169995062425036852702198796305        certgate (UUID 599a3517-7de8-4bc9-a7cd-f7449a569011)
//! 2.25.119101982169995062425036852702198796305.1      certificate policies
//! 2.25.119101982169995062425036852702198796305.1.1    a customer's client certificate
//! 2.25.119101982169995062425036852702198796305.1.2    a bank staff member's certificate
//! ```
//!
//! A staff certificate carries the staff policy, so a relying party (and certgate's own
//! listeners) can tell it from a customer's without the database. The arc's 128-bit
//! component does not fit `const_oid` (32-bit arcs), so the DER is written here.
//!
//! Customer certificates do not carry theirs yet ([`CUSTOMER_POLICY_IN_CERTIFICATES`]):
//! some decoders refuse an OID arc wider than 32 bits (pkilint's DER decoder reports it as
//! a FATAL decoding failure; Go before 1.22 fails to parse the whole certificate), and the
//! customers' certificates reach relying parties certgate does not control (the banking
//! apps behind the gateway). Staff certificates are read by certgate only.

/// The UUID certgate's arc is derived from, as one integer.
pub const ARC_UUID: u128 = 0x599a_3517_7de8_4bc9_a7cd_f744_9a56_9011;

/// The customer policy, dotted.
pub const CUSTOMER_POLICY: &str = "2.25.119101982169995062425036852702198796305.1.1";

/// The staff policy, dotted.
pub const STAFF_POLICY: &str = "2.25.119101982169995062425036852702198796305.1.2";

/// Whether customer certificates carry [`CUSTOMER_POLICY`]. Off: see the module's note on
/// decoders that refuse the UUID arc.
pub const CUSTOMER_POLICY_IN_CERTIFICATES: bool = false;

/// `id-ce-certificatePolicies` (RFC 5280 §4.2.1.4).
pub const CERTIFICATE_POLICIES_EXTENSION: &[u64] = &[2, 5, 29, 32];

/// Whose certificate it is: decides the subject branch and the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProfile {
    /// A customer's login ID.
    Customer,
    /// A bank staff member.
    Staff,
}

impl ClientProfile {
    /// The last arc of this profile's policy under `<arc>.1`.
    fn leaf(self) -> u128 {
        match self {
            Self::Customer => 1,
            Self::Staff => 2,
        }
    }

    /// This profile's policy OID as DER content octets (without tag and length).
    pub fn policy_oid_content(self) -> Vec<u8> {
        // First two arcs 2.25 share one subidentifier: 2 * 40 + 25.
        let mut out = vec![2 * 40 + 25];
        for arc in [ARC_UUID, 1, self.leaf()] {
            push_base128(&mut out, arc);
        }
        out
    }

    /// The profile whose policy OID has these DER content octets, if any.
    pub fn from_policy_oid_content(content: &[u8]) -> Option<Self> {
        [Self::Customer, Self::Staff]
            .into_iter()
            .find(|p| p.policy_oid_content() == content)
    }

    /// Whether this profile's certificates carry its policy.
    pub fn policy_in_certificates(self) -> bool {
        match self {
            Self::Customer => CUSTOMER_POLICY_IN_CERTIFICATES,
            Self::Staff => true,
        }
    }

    /// The certificatePolicies extension value: one PolicyInformation with this policy and
    /// no qualifiers (`SEQUENCE { SEQUENCE { OID } }`).
    pub fn certificate_policies_der(self) -> Vec<u8> {
        let oid = tlv(0x06, &self.policy_oid_content());
        let info = tlv(0x30, &oid);
        tlv(0x30, &info)
    }
}

/// Appends `v` as an OID subidentifier: base 128, most significant group first, the high
/// bit set on every byte but the last.
fn push_base128(out: &mut Vec<u8>, v: u128) {
    let mut groups = vec![(v & 0x7f) as u8];
    let mut rest = v >> 7;
    while rest > 0 {
        groups.push(((rest & 0x7f) as u8) | 0x80);
        rest >>= 7;
    }
    out.extend(groups.iter().rev());
}

/// A DER tag-length-value; lengths here stay below 128 (one short-form byte).
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.extend([0x81, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// The profile a DER certificate's certificatePolicies name, if it names one of certgate's.
pub fn profile_of_certificate(der: &[u8]) -> Option<ClientProfile> {
    use x509_parser::extensions::ParsedExtension;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::CertificatePolicies(policies) => policies
                .iter()
                .find_map(|p| ClientProfile::from_policy_oid_content(p.policy_id.as_bytes())),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dotted text of DER OID content, decoded independently of the encoder.
    fn dotted(content: &[u8]) -> String {
        let mut arcs: Vec<u128> = Vec::new();
        let mut acc: u128 = 0;
        for b in content {
            acc = (acc << 7) | u128::from(b & 0x7f);
            if b & 0x80 == 0 {
                arcs.push(acc);
                acc = 0;
            }
        }
        let first = arcs.remove(0);
        let mut parts = vec![(first / 40).min(2), first - 40 * (first / 40).min(2)];
        parts.extend(arcs);
        parts
            .iter()
            .map(u128::to_string)
            .collect::<Vec<_>>()
            .join(".")
    }

    #[test]
    fn the_constants_say_what_is_encoded() {
        assert_eq!(
            ARC_UUID.to_string(),
            "119101982169995062425036852702198796305"
        );
        assert_eq!(
            dotted(&ClientProfile::Customer.policy_oid_content()),
            CUSTOMER_POLICY
        );
        assert_eq!(
            dotted(&ClientProfile::Staff.policy_oid_content()),
            STAFF_POLICY
        );
        assert_ne!(
            ClientProfile::Customer.policy_oid_content(),
            ClientProfile::Staff.policy_oid_content()
        );
    }

    #[test]
    fn policies_parse_back() {
        for p in [ClientProfile::Customer, ClientProfile::Staff] {
            assert_eq!(
                ClientProfile::from_policy_oid_content(&p.policy_oid_content()),
                Some(p)
            );
            let der = p.certificate_policies_der();
            assert_eq!(der[0], 0x30);
            assert_eq!(usize::from(der[1]), der.len() - 2);
        }
        assert_eq!(ClientProfile::from_policy_oid_content(&[0x2a, 0x03]), None);
    }
}
