//! What the PKCS#11 module and its tokens say about themselves, for `certgate hsm info`:
//! library, slots and tokens, and whether the token offers the mechanisms the CA needs for
//! each key algorithm, as data and as text for people. Needs no login and never sees the PIN.
//!
//! What this module must not do: open sessions, log in, or judge keys (see `attributes`).

use std::fmt::{self, Write};
use std::path::Path;

use cryptoki::error::RvError;
use cryptoki::mechanism::MechanismType;
use cryptoki::slot::Slot;

use super::HsmError;
use super::ckr::call;
use super::context::Context;
use super::mechanism::{self, EcdsaSigning};
use super::token;
use crate::config::EcdsaMechanism;
use crate::keys::KeyAlgorithm;

/// The module and every token it shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModuleInfo {
    pub module: String,
    pub cryptoki_version: String,
    pub manufacturer: String,
    pub description: String,
    pub library_version: String,
    pub tokens: Vec<TokenInfo>,
    /// Slots whose token information could not be read at all, with the reason.
    pub unreadable: Vec<String>,
}

// CK_TOKEN_INFO flags read here (PKCS#11 3.0).
const CKF_CLOCK_ON_TOKEN: u64 = 0x40;
const CKF_USER_PIN_INITIALIZED: u64 = 0x8;
const CKF_TOKEN_INITIALIZED: u64 = 0x400;
const CKF_USER_PIN_COUNT_LOW: u64 = 0x1_0000;
const CKF_USER_PIN_FINAL_TRY: u64 = 0x2_0000;
const CKF_USER_PIN_LOCKED: u64 = 0x4_0000;

/// One slot with a token. Fields the token does not state (or states in a form that
/// cannot be read) say "unavailable"; they never make the token unusable.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub slot_id: u64,
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial_number: String,
    pub initialized: bool,
    pub user_pin_initialized: bool,
    pub user_pin_count_low: bool,
    pub user_pin_final_try: bool,
    pub user_pin_locked: bool,
    /// Open sessions / the most the token allows, as the token reports them.
    pub sessions: String,
    /// Shortest and longest PIN the token accepts.
    pub pin_length: String,
    /// The token's clock (RFC 3339), "none", or "unavailable".
    pub clock: String,
    /// The `CKF_*` flags set, by name; unknown bits as hex.
    pub flags: Vec<String>,
    /// Mechanism support per CA key algorithm; filled for the configured token only.
    pub algorithms: Vec<AlgorithmSupport>,
    /// The private keys found on the configured token (filled when logged in).
    pub keys: Vec<KeyUri>,
}

/// One private key and the RFC 7512 URI that names it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyUri {
    pub label: String,
    pub uri: String,
    /// `CKA_ALWAYS_AUTHENTICATE`: the token wants a context-specific login per signature.
    pub always_authenticate: bool,
    /// Whether certgate makes that login for this key under `[hsm] context_login`.
    pub context_login: bool,
}

/// Whether a token can generate and sign with one kind of CA key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlgorithmSupport {
    pub algorithm: KeyAlgorithm,
    pub mechanisms: Vec<MechanismSupport>,
    /// True when every mechanism needed is present and allows the key size.
    pub usable: bool,
    /// The mechanism a key of this algorithm signs with on this token (EC: under `[hsm]
    /// ecdsa_mechanism`), or why none can.
    pub signing: Option<String>,
}

/// One mechanism the CA needs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MechanismSupport {
    pub name: String,
    /// What certgate uses it for.
    pub purpose: &'static str,
    pub present: bool,
    /// The key sizes the token reports for it (bits), when present.
    pub key_sizes: Option<(u64, u64)>,
    /// False when present but the needed size is outside `key_sizes` or the flag is missing.
    pub fits: bool,
}

/// The longest mechanism name `hsm info` lists (`CKM_RSA_PKCS_KEY_PAIR_GEN`): its column's
/// width.
const MECHANISM_WIDTH: usize = 25;

/// The mechanisms each algorithm needs: key pair generation, then signing. The EC signer
/// hashes in software and uses `CKM_ECDSA` unless the token offers (and `[hsm]
/// ecdsa_mechanism` allows) `CKM_ECDSA_SHA256`/`_SHA384`; see `AlgorithmSupport::signing`.
fn needs(algorithm: KeyAlgorithm) -> ([(MechanismType, &'static str); 2], u64) {
    match algorithm {
        KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => (
            [
                (MechanismType::ECC_KEY_PAIR_GEN, "generate the key"),
                (MechanismType::ECDSA, "sign (hash computed in software)"),
            ],
            if algorithm == KeyAlgorithm::EcP256 {
                256
            } else {
                384
            },
        ),
        KeyAlgorithm::Rsa2048
        | KeyAlgorithm::Rsa3072
        | KeyAlgorithm::Rsa2048Pss
        | KeyAlgorithm::Rsa3072Pss => (
            [
                (MechanismType::RSA_PKCS_KEY_PAIR_GEN, "generate the key"),
                (rsa_hashing_mechanism(algorithm), "sign"),
            ],
            if algorithm.key_type() == KeyAlgorithm::Rsa2048 {
                2048
            } else {
                3072
            },
        ),
    }
}

/// The RSA mechanism that hashes on the token, tried first by the signer.
fn rsa_hashing_mechanism(algorithm: KeyAlgorithm) -> MechanismType {
    if algorithm.is_pss() {
        MechanismType::SHA256_RSA_PKCS_PSS
    } else {
        MechanismType::SHA256_RSA_PKCS
    }
}

/// The signer's fallback when the token lacks `hashing`: the raw mechanism over a hash
/// computed in software (openCryptoki's soft token has no `CKM_SHA256_RSA_PKCS`).
fn rsa_fallback(hashing: MechanismType) -> Option<(MechanismType, &'static str)> {
    if hashing == MechanismType::SHA256_RSA_PKCS {
        Some((
            MechanismType::RSA_PKCS,
            "sign (hash and DigestInfo computed in software)",
        ))
    } else if hashing == MechanismType::SHA256_RSA_PKCS_PSS {
        Some((
            MechanismType::RSA_PKCS_PSS,
            "sign (hash computed in software)",
        ))
    } else {
        None
    }
}

/// Describes the module at `module`; mechanisms are listed for the token labelled
/// `token_label` (`TokenNotFound` when no token carries it), with the ECDSA mechanism
/// `ecdsa` leads to there. Blocking.
pub fn inspect(
    module: &Path,
    token_label: &str,
    ecdsa: EcdsaMechanism,
) -> Result<ModuleInfo, HsmError> {
    let ctx = Context::get(module)?;
    let live = ctx.read();
    let p = &live.pkcs11;
    let lib = call("C_GetInfo", p.get_library_info())?;
    let mut tokens = Vec::new();
    let mut unreadable = Vec::new();
    let mut found = false;
    for slot in call("C_GetSlotList", p.get_slots_with_token())? {
        // One token that cannot be read does not hide the others.
        let t = match token::read(ctx.module(), slot.id()) {
            Ok(t) => t,
            Err(e) => {
                unreadable.push(format!("slot {}: {}", slot.id(), HsmError::from(e)));
                continue;
            }
        };
        let mut info = TokenInfo {
            slot_id: slot.id(),
            initialized: t.flag(CKF_TOKEN_INITIALIZED),
            user_pin_initialized: t.flag(CKF_USER_PIN_INITIALIZED),
            user_pin_count_low: t.flag(CKF_USER_PIN_COUNT_LOW),
            user_pin_final_try: t.flag(CKF_USER_PIN_FINAL_TRY),
            user_pin_locked: t.flag(CKF_USER_PIN_LOCKED),
            sessions: format!("{} open, max {}", t.sessions, t.max_sessions),
            pin_length: format!("{}-{}", t.min_pin_len, t.max_pin_len),
            clock: match (&t.clock, t.flag(CKF_CLOCK_ON_TOKEN)) {
                (Some(time), _) => time.clone(),
                (None, true) => "unavailable (not in the standard's form)".into(),
                (None, false) => "none".into(),
            },
            flags: t.flag_names(),
            label: t.label,
            manufacturer: t.manufacturer,
            model: t.model,
            serial_number: t.serial_number,
            algorithms: Vec::new(),
            keys: Vec::new(),
        };
        if info.label == token_label {
            found = true;
            info.algorithms = algorithms(p, slot, ecdsa)?;
        }
        tokens.push(info);
    }
    if !found {
        return Err(HsmError::TokenNotFound(token_label.to_owned()));
    }
    Ok(ModuleInfo {
        module: module.display().to_string(),
        cryptoki_version: lib.cryptoki_version().to_string(),
        manufacturer: lib.manufacturer_id().to_owned(),
        description: lib.library_description().to_owned(),
        library_version: lib.library_version().to_string(),
        tokens,
        unreadable,
    })
}

impl ModuleInfo {
    /// The description as lines of text; the token labelled `configured` is marked.
    pub fn render(&self, configured: &str) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.write_text(&mut out, configured);
        out
    }

    fn write_text(&self, out: &mut impl Write, configured: &str) -> fmt::Result {
        writeln!(out, "module:       {}", self.module)?;
        writeln!(
            out,
            "library:      {} {} ({}), Cryptoki {}",
            self.manufacturer, self.description, self.library_version, self.cryptoki_version
        )?;
        writeln!(out, "tokens:")?;
        for t in &self.tokens {
            let mark = if t.label == configured {
                " (configured)"
            } else {
                ""
            };
            writeln!(
                out,
                "  slot {:<10} label {:?}{mark}; {} {} serial {}; sessions {}",
                t.slot_id, t.label, t.manufacturer, t.model, t.serial_number, t.sessions
            )?;
            writeln!(
                out,
                "    PIN length {}; clock {}; flags {}",
                t.pin_length,
                t.clock,
                t.flags.join(" ")
            )?;
            for k in &t.keys {
                writeln!(out, "    key {:?}: {}", k.label, k.uri)?;
                match (k.always_authenticate, k.context_login) {
                    (true, true) => writeln!(
                        out,
                        "      CKA_ALWAYS_AUTHENTICATE: a context-specific login before each signature"
                    )?,
                    (true, false) => writeln!(
                        out,
                        "      CKA_ALWAYS_AUTHENTICATE, no context-specific login ([hsm] context_login = \"never\")"
                    )?,
                    (false, true) => writeln!(
                        out,
                        "      a context-specific login before each signature ([hsm] context_login = \"always\")"
                    )?,
                    (false, false) => {}
                }
            }
            let warnings = t.pin_warnings();
            if !warnings.is_empty() {
                writeln!(out, "    warning: {}", warnings.join("; "))?;
            }
            // As wide as the longest name (`rsa-3072-pss`), so the verdicts line up.
            let width = KeyAlgorithm::ALL
                .iter()
                .map(|a| a.as_str().len())
                .max()
                .unwrap_or(0);
            for a in &t.algorithms {
                writeln!(
                    out,
                    "    {:<width$} {}",
                    a.algorithm.as_str(),
                    if a.usable { "usable" } else { "NOT usable" }
                )?;
                if let Some(signing) = &a.signing {
                    writeln!(out, "      signs with {signing}")?;
                }
                for mech in &a.mechanisms {
                    let sizes = mech
                        .key_sizes
                        .map(|(lo, hi)| format!(" key sizes {lo}-{hi}"))
                        .unwrap_or_default();
                    let state = match (mech.present, mech.fits) {
                        (false, _) => "missing",
                        (true, false) => "present but unfit",
                        (true, true) => "present",
                    };
                    writeln!(
                        out,
                        "      {:<MECHANISM_WIDTH$} {state}{sizes} ({})",
                        mech.name, mech.purpose
                    )?;
                }
            }
        }
        for u in &self.unreadable {
            writeln!(out, "  {u}: token information unreadable")?;
        }
        Ok(())
    }
}

impl TokenInfo {
    /// What an operator must know about the token and its user PIN before logging in.
    fn pin_warnings(&self) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if !self.initialized {
            warnings.push("token not initialised");
        }
        if !self.user_pin_initialized {
            warnings.push("user PIN not set");
        }
        if self.user_pin_count_low {
            warnings.push("a wrong user PIN was entered recently");
        }
        if self.user_pin_final_try {
            warnings.push("ONE user PIN try left");
        }
        if self.user_pin_locked {
            warnings.push("USER PIN LOCKED");
        }
        warnings
    }
}

fn algorithms(
    p: &cryptoki::context::Pkcs11,
    slot: Slot,
    ecdsa: EcdsaMechanism,
) -> Result<Vec<AlgorithmSupport>, HsmError> {
    let mut out = Vec::new();
    for algorithm in KeyAlgorithm::ALL {
        let (wanted, bits) = needs(algorithm);
        let mut mechanisms = Vec::new();
        for (i, (mut mech, mut purpose)) in wanted.into_iter().enumerate() {
            // Asked one by one rather than through C_GetMechanismList: cryptoki logs an
            // error for every vendor mechanism of a list it does not know.
            let mut info = mechanism_info(p, slot, mech)?;
            // The signer's fallback when the token cannot hash for RSA (openCryptoki).
            if info.is_none()
                && let Some((raw, why)) = rsa_fallback(mech)
            {
                mech = raw;
                purpose = why;
                info = mechanism_info(p, slot, mech)?;
            }
            let present = info.is_some();
            let (key_sizes, fits) = match info {
                Some(mi) => {
                    let (lo, hi) = (mi.min_key_size() as u64, mi.max_key_size() as u64);
                    let flag = if i == 0 {
                        mi.generate_key_pair()
                    } else {
                        mi.sign()
                    };
                    // Some modules report EC sizes in bytes, or 0 for "not stated": only a
                    // stated range that excludes the size counts against it.
                    let in_range =
                        hi == 0 || (lo..=hi).contains(&bits) || (lo..=hi).contains(&(bits / 8));
                    (Some((lo, hi)), flag && in_range)
                }
                None => (None, false),
            };
            mechanisms.push(MechanismSupport {
                name: mech.to_string(),
                purpose,
                present,
                key_sizes,
                fits,
            });
        }
        let mut usable = mechanisms.iter().all(|m| m.fits);
        // EC: the same decision the signer makes when it opens a key of this algorithm.
        let signing = match mechanism::hashing_mechanism(algorithm) {
            // RSA: the mechanism chosen above, the token's hashing one if present.
            None => mechanisms.get(1).map(|m| {
                if m.name == rsa_hashing_mechanism(algorithm).to_string() {
                    format!("{} (the token hashes)", m.name)
                } else {
                    format!("{} (hash computed in software)", m.name)
                }
            }),
            Some(hashing) => {
                let offered = ecdsa != EcdsaMechanism::Raw
                    && mechanism_info(p, slot, hashing)?.is_some_and(|mi| mi.sign());
                Some(match mechanism::choose_ecdsa(ecdsa, offered) {
                    Ok(choice) => {
                        // Signing through the token's hashing mechanism needs no raw ECDSA.
                        if choice == EcdsaSigning::TokenHashes {
                            usable = mechanisms.first().is_some_and(|m| m.fits);
                        }
                        mechanism::describe(algorithm, choice)
                    }
                    Err(reason) => {
                        usable = false;
                        format!("nothing: {reason}")
                    }
                })
            }
        };
        out.push(AlgorithmSupport {
            algorithm,
            mechanisms,
            usable,
            signing,
        });
    }
    Ok(out)
}

fn mechanism_info(
    p: &cryptoki::context::Pkcs11,
    slot: Slot,
    mech: MechanismType,
) -> Result<Option<cryptoki::mechanism::MechanismInfo>, HsmError> {
    match call("C_GetMechanismInfo", p.get_mechanism_info(slot, mech)) {
        Ok(mi) => Ok(Some(mi)),
        Err(e) if e.rv() == Some(RvError::MechanismInvalid) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_mechanism_fits_its_column() {
        for algorithm in KeyAlgorithm::ALL {
            let (needed, _) = needs(algorithm);
            for (mech, _) in needed {
                let mut names = vec![mech.to_string()];
                names.extend(rsa_fallback(mech).map(|(m, _)| m.to_string()));
                for name in names {
                    assert!(name.len() <= MECHANISM_WIDTH, "{name}");
                }
            }
        }
    }

    fn token(slot_id: u64, label: &str, algorithms: Vec<AlgorithmSupport>) -> TokenInfo {
        TokenInfo {
            slot_id,
            label: label.into(),
            manufacturer: "SoftHSM project".into(),
            model: "SoftHSM v2".into(),
            serial_number: "0badc0de".into(),
            initialized: true,
            user_pin_initialized: true,
            user_pin_count_low: false,
            user_pin_final_try: false,
            user_pin_locked: false,
            sessions: "0 open, max unlimited".into(),
            pin_length: "4-255".into(),
            clock: "none".into(),
            flags: vec!["RNG".into(), "TOKEN_INITIALIZED".into()],
            algorithms,
            keys: Vec::new(),
        }
    }

    #[test]
    fn the_text_marks_the_configured_token_warnings_and_each_mechanism() {
        let mut configured = token(
            5,
            "certgate",
            vec![AlgorithmSupport {
                algorithm: KeyAlgorithm::EcP256,
                mechanisms: vec![
                    MechanismSupport {
                        name: "CKM_EC_KEY_PAIR_GEN".into(),
                        purpose: "generate the key",
                        present: true,
                        key_sizes: Some((256, 521)),
                        fits: true,
                    },
                    MechanismSupport {
                        name: "CKM_ECDSA".into(),
                        purpose: "sign",
                        present: false,
                        key_sizes: None,
                        fits: false,
                    },
                ],
                usable: false,
                signing: Some("CKM_ECDSA (hash computed in software)".into()),
            }],
        );
        configured.user_pin_count_low = true;
        configured.keys.push(KeyUri {
            label: "certgate-ca".into(),
            uri: "pkcs11:token=certgate;object=certgate-ca;id=%01;type=private".into(),
            always_authenticate: false,
            context_login: false,
        });
        configured.keys.push(KeyUri {
            label: "signing".into(),
            uri: "pkcs11:token=certgate;object=signing;id=%02;type=private".into(),
            always_authenticate: true,
            context_login: true,
        });
        let mut other = token(7, "other", Vec::new());
        other.initialized = false;
        other.user_pin_locked = true;
        let info = ModuleInfo {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            cryptoki_version: "2.40".into(),
            manufacturer: "SoftHSM".into(),
            description: "Implementation of PKCS11".into(),
            library_version: "2.6".into(),
            tokens: vec![configured, other],
            unreadable: vec!["slot 9: PKCS#11 error in C_GetTokenInfo: CKR_ARGUMENTS_BAD".into()],
        };
        let expected = "\
module:       /usr/lib/softhsm/libsofthsm2.so
library:      SoftHSM Implementation of PKCS11 (2.6), Cryptoki 2.40
tokens:
  slot 5          label \"certgate\" (configured); SoftHSM project SoftHSM v2 serial 0badc0de; sessions 0 open, max unlimited
    PIN length 4-255; clock none; flags RNG TOKEN_INITIALIZED
    key \"certgate-ca\": pkcs11:token=certgate;object=certgate-ca;id=%01;type=private
    key \"signing\": pkcs11:token=certgate;object=signing;id=%02;type=private
      CKA_ALWAYS_AUTHENTICATE: a context-specific login before each signature
    warning: a wrong user PIN was entered recently
    ec-p256      NOT usable
      signs with CKM_ECDSA (hash computed in software)
      CKM_EC_KEY_PAIR_GEN       present key sizes 256-521 (generate the key)
      CKM_ECDSA                 missing (sign)
  slot 7          label \"other\"; SoftHSM project SoftHSM v2 serial 0badc0de; sessions 0 open, max unlimited
    PIN length 4-255; clock none; flags RNG TOKEN_INITIALIZED
    warning: token not initialised; USER PIN LOCKED
  slot 9: PKCS#11 error in C_GetTokenInfo: CKR_ARGUMENTS_BAD: token information unreadable
";
        assert_eq!(info.render("certgate"), expected);
    }
}
