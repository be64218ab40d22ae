//! Which ECDSA mechanism an EC key signs with, decided once per key from what the token
//! offers and `[hsm] ecdsa_mechanism`: the token's hashing mechanism (`CKM_ECDSA_SHA256` for
//! P-256, `CKM_ECDSA_SHA384` for P-384), or raw `CKM_ECDSA` over a hash computed here.
//! Either way the signature is verified in software before it leaves (see `signer`).
//!
//! What this module must not do: call PKCS#11. The caller asks the token; this decides.

use cryptoki::mechanism::MechanismType;

use crate::config::EcdsaMechanism;
use crate::keys::KeyAlgorithm;

/// How an EC key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EcdsaSigning {
    /// `CKM_ECDSA` over a SHA-256/384 hash computed by certgate.
    Raw,
    /// `CKM_ECDSA_SHA256`/`_SHA384`: the token hashes the message itself.
    TokenHashes,
}

/// The hashing mechanism matching an EC algorithm's curve; `None` for RSA.
pub(crate) fn hashing_mechanism(algorithm: KeyAlgorithm) -> Option<MechanismType> {
    match algorithm {
        KeyAlgorithm::EcP256 => Some(MechanismType::ECDSA_SHA256),
        KeyAlgorithm::EcP384 => Some(MechanismType::ECDSA_SHA384),
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa2048Pss
        | KeyAlgorithm::Rsa3072Pss => None,
    }
}

/// The choice for an EC key, given whether the token offers the curve's hashing mechanism
/// for signing. `Err` (the reason) when `hashing` is required and the token lacks it.
pub(crate) fn choose_ecdsa(
    setting: EcdsaMechanism,
    token_offers_hashing: bool,
) -> Result<EcdsaSigning, &'static str> {
    match (setting, token_offers_hashing) {
        (EcdsaMechanism::Raw, _) | (EcdsaMechanism::Auto, false) => Ok(EcdsaSigning::Raw),
        (EcdsaMechanism::Auto | EcdsaMechanism::Hashing, true) => Ok(EcdsaSigning::TokenHashes),
        (EcdsaMechanism::Hashing, false) => Err(
            "[hsm] ecdsa_mechanism = \"hashing\", but the token does not offer the curve's \
             hashing ECDSA mechanism for signing (use \"auto\" or \"raw\")",
        ),
    }
}

/// How `hsm info` and the log name the choice for `algorithm`.
pub(crate) fn describe(algorithm: KeyAlgorithm, signing: EcdsaSigning) -> String {
    match (signing, hashing_mechanism(algorithm)) {
        (EcdsaSigning::TokenHashes, Some(m)) => format!("{m} (the token hashes)"),
        _ => format!("{} (hash computed in software)", MechanismType::ECDSA),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_uses_the_tokens_hashing_mechanism_only_when_offered() {
        assert_eq!(
            choose_ecdsa(EcdsaMechanism::Auto, true),
            Ok(EcdsaSigning::TokenHashes)
        );
        assert_eq!(
            choose_ecdsa(EcdsaMechanism::Auto, false),
            Ok(EcdsaSigning::Raw)
        );
    }

    #[test]
    fn raw_ignores_what_the_token_offers() {
        for offered in [true, false] {
            assert_eq!(
                choose_ecdsa(EcdsaMechanism::Raw, offered),
                Ok(EcdsaSigning::Raw)
            );
        }
    }

    #[test]
    fn hashing_on_a_token_without_it_is_refused_with_the_setting_named() {
        assert_eq!(
            choose_ecdsa(EcdsaMechanism::Hashing, true),
            Ok(EcdsaSigning::TokenHashes)
        );
        let why = choose_ecdsa(EcdsaMechanism::Hashing, false).unwrap_err();
        assert!(why.contains("ecdsa_mechanism = \"hashing\""), "{why}");
    }

    #[test]
    fn each_curve_has_its_hashing_mechanism_and_rsa_none() {
        assert_eq!(
            hashing_mechanism(KeyAlgorithm::EcP256),
            Some(MechanismType::ECDSA_SHA256)
        );
        assert_eq!(
            hashing_mechanism(KeyAlgorithm::EcP384),
            Some(MechanismType::ECDSA_SHA384)
        );
        assert_eq!(hashing_mechanism(KeyAlgorithm::Rsa2048), None);
        assert_eq!(
            describe(KeyAlgorithm::EcP384, EcdsaSigning::TokenHashes),
            "CKM_ECDSA_SHA384 (the token hashes)"
        );
        assert_eq!(
            describe(KeyAlgorithm::EcP256, EcdsaSigning::Raw),
            "CKM_ECDSA (hash computed in software)"
        );
    }
}
