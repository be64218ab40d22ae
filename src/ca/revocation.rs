//! RFC 5280 revocation reasons (§5.3.1), by the names operators type.

/// A reason code staff may revoke with. `certificateHold` and `removeFromCRL` are not
/// offered: revocation here is final. A hold follows only from disabling a login ID or a
/// contract (`status::standing`), and ends when it is enabled again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    const ALL: [Self; 7] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    /// The RFC 5280 name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::CaCompromise => "cACompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }

    /// The CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::PrivilegeWithdrawn => 9,
        }
    }
}

impl std::fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RevocationReason {
    type Err = String;
    /// Accepts the RFC name in any case, with or without `-`/`_` (`key-compromise`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = |x: &str| x.replace(['-', '_'], "").to_ascii_lowercase();
        let wanted = norm(s);
        Self::ALL
            .into_iter()
            .find(|r| norm(r.as_str()) == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "unknown revocation reason {s:?}; use one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Stored and sent by its RFC name (`keyCompromise`); any spelling `FromStr` takes is read.
impl serde::Serialize for RevocationReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RevocationReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_loosely_and_round_trips() {
        assert_eq!(
            "key-compromise".parse(),
            Ok(RevocationReason::KeyCompromise)
        );
        assert_eq!("SUPERSEDED".parse(), Ok(RevocationReason::Superseded));
        for r in RevocationReason::ALL {
            assert_eq!(r.as_str().parse(), Ok(r));
        }
        assert!("certificateHold".parse::<RevocationReason>().is_err());
    }
}
