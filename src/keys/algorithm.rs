//! The kinds of key a CA key may be, and how each one's signatures are checked in software.
//!
//! What this module must not do: name a certificate builder's types (the CA maps these to
//! rcgen's in `ca::key`).

use std::fmt;

/// Key types the CA key may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256, signing with SHA-256 (the default).
    EcP256,
    /// ECDSA on NIST P-384, signing with SHA-384.
    EcP384,
    /// RSA 2048-bit, PKCS#1 v1.5 with SHA-256.
    // kebab-case alone gives "rsa2048" (no break before digits), not the documented name;
    // the alias keeps reading what was written that way.
    #[serde(rename = "rsa-2048", alias = "rsa2048")]
    Rsa2048,
    /// RSA 3072-bit, PKCS#1 v1.5 with SHA-256.
    #[serde(rename = "rsa-3072", alias = "rsa3072")]
    Rsa3072,
    /// RSA 2048-bit, RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt (RFC 4055).
    /// The key itself is an ordinary RSA key: its certificate says `rsaEncryption`.
    #[serde(rename = "rsa-2048-pss", alias = "rsa2048-pss")]
    Rsa2048Pss,
    /// RSA 3072-bit, RSASSA-PSS as [`KeyAlgorithm::Rsa2048Pss`].
    #[serde(rename = "rsa-3072-pss", alias = "rsa3072-pss")]
    Rsa3072Pss,
}

impl KeyAlgorithm {
    /// Every algorithm, in the order `hsm info` lists them.
    pub const ALL: [KeyAlgorithm; 6] = [
        Self::EcP256,
        Self::EcP384,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa2048Pss,
        Self::Rsa3072Pss,
    ];

    /// The name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcP256 => "ec-p256",
            Self::EcP384 => "ec-p384",
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa3072 => "rsa-3072",
            Self::Rsa2048Pss => "rsa-2048-pss",
            Self::Rsa3072Pss => "rsa-3072-pss",
        }
    }

    /// Whether the key is an RSA key (whichever padding it signs with).
    pub fn is_rsa(self) -> bool {
        !matches!(self, Self::EcP256 | Self::EcP384)
    }

    /// Whether it signs with RSASSA-PSS.
    pub fn is_pss(self) -> bool {
        matches!(self, Self::Rsa2048Pss | Self::Rsa3072Pss)
    }

    /// The same key signing with RSASSA-PSS; EC algorithms are returned unchanged.
    pub fn with_pss(self) -> Self {
        match self {
            Self::Rsa2048 => Self::Rsa2048Pss,
            Self::Rsa3072 => Self::Rsa3072Pss,
            other => other,
        }
    }

    /// The same key signing with PKCS#1 v1.5: the key type alone, as a token reports it.
    pub fn key_type(self) -> Self {
        match self {
            Self::Rsa2048Pss => Self::Rsa2048,
            Self::Rsa3072Pss => Self::Rsa3072,
            other => other,
        }
    }

    /// The aws-lc-rs verification algorithm for this key's signatures (DER `ECDSA-Sig-Value`
    /// for EC, PKCS#1 v1.5 or PSS for RSA), used to check every signature before it is
    /// released. aws-lc-rs's PSS check takes the salt length equal to the hash's (32).
    pub fn verification_algorithm(
        self,
    ) -> &'static dyn aws_lc_rs::signature::VerificationAlgorithm {
        match self {
            Self::EcP256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            Self::EcP384 => &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1,
            Self::Rsa2048 | Self::Rsa3072 => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Rsa2048Pss | Self::Rsa3072Pss => &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ec-p256" => Ok(Self::EcP256),
            "ec-p384" => Ok(Self::EcP384),
            "rsa-2048" => Ok(Self::Rsa2048),
            "rsa-3072" => Ok(Self::Rsa3072),
            "rsa-2048-pss" => Ok(Self::Rsa2048Pss),
            "rsa-3072-pss" => Ok(Self::Rsa3072Pss),
            other => Err(format!(
                "unknown key algorithm {other:?}: expected ec-p256, ec-p384, rsa-2048, rsa-3072, \
                 rsa-2048-pss or rsa-3072-pss"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_are_the_documented_ones() {
        for a in KeyAlgorithm::ALL {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(serde_json::from_str::<KeyAlgorithm>(&json).unwrap(), a);
        }
        let old: KeyAlgorithm = serde_json::from_str("\"rsa2048\"").unwrap();
        assert_eq!(old, KeyAlgorithm::Rsa2048);
    }

    #[test]
    fn names_round_trip() {
        for a in KeyAlgorithm::ALL {
            assert_eq!(a.as_str().parse::<KeyAlgorithm>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
        }
        assert!("ed25519".parse::<KeyAlgorithm>().is_err());
    }

    #[test]
    fn pss_is_the_same_key_type_signing_otherwise() {
        for a in KeyAlgorithm::ALL {
            assert_eq!(a.with_pss().key_type(), a.key_type());
            assert_eq!(a.with_pss().is_pss(), a.is_rsa());
            assert!(!a.key_type().is_pss());
        }
        assert_eq!(KeyAlgorithm::Rsa3072.with_pss(), KeyAlgorithm::Rsa3072Pss);
        assert_eq!(KeyAlgorithm::EcP384.with_pss(), KeyAlgorithm::EcP384);
    }
}
