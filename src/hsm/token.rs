//! A token's `CK_TOKEN_INFO`, read field by field so that no odd field can make the token
//! unusable. Used to find the token by label and for `hsm info`.
//!
//! cryptoki parses the structure as a whole and refuses it when one field is unexpected
//! (openCryptoki's soft token writes `hh:mm:ss` into `utcTime`, which the standard defines
//! as `YYYYMMDDhhmmss00`), so the bytes come from `pkcs11_token_info` and are read here:
//! text fields are blank- or NUL-padded and may hold invalid UTF-8, counters may be
//! `CK_UNAVAILABLE_INFORMATION`, flags may carry bits no standard names. What cannot be
//! read is "unavailable"; only the label is needed, and it is always readable.
//!
//! What this module must not do: open sessions, or refuse a token for anything but its
//! label.

use std::fmt;
use std::path::Path;

use cryptoki::context::Function;
use cryptoki::error::Rv;
use pkcs11_token_info::RawTokenInfo;

use super::HsmError;
use super::ckr::{CallError, call};

/// `CK_UNAVAILABLE_INFORMATION`: all bits set.
const UNAVAILABLE: u64 = !0;
/// `CK_EFFECTIVELY_INFINITE`.
const INFINITE: u64 = 0;

/// The flags the standard names (PKCS#11 3.0, `CK_TOKEN_INFO`), in bit order.
const FLAG_NAMES: [(u64, &str); 19] = [
    (0x1, "RNG"),
    (0x2, "WRITE_PROTECTED"),
    (0x4, "LOGIN_REQUIRED"),
    (0x8, "USER_PIN_INITIALIZED"),
    (0x20, "RESTORE_KEY_NOT_NEEDED"),
    (0x40, "CLOCK_ON_TOKEN"),
    (0x100, "PROTECTED_AUTHENTICATION_PATH"),
    (0x200, "DUAL_CRYPTO_OPERATIONS"),
    (0x400, "TOKEN_INITIALIZED"),
    (0x800, "SECONDARY_AUTHENTICATION"),
    (0x1_0000, "USER_PIN_COUNT_LOW"),
    (0x2_0000, "USER_PIN_FINAL_TRY"),
    (0x4_0000, "USER_PIN_LOCKED"),
    (0x8_0000, "USER_PIN_TO_BE_CHANGED"),
    (0x10_0000, "SO_PIN_COUNT_LOW"),
    (0x20_0000, "SO_PIN_FINAL_TRY"),
    (0x40_0000, "SO_PIN_LOCKED"),
    (0x80_0000, "SO_PIN_TO_BE_CHANGED"),
    (0x100_0000, "ERROR_STATE"),
];

/// A count the token may decline to state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Count {
    Known(u64),
    Unavailable,
}

/// A limit: stated, unlimited, or not stated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Limit {
    Max(u64),
    Unlimited,
    Unavailable,
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(n) => write!(f, "{n}"),
            Self::Unavailable => f.write_str("unavailable"),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Max(n) => write!(f, "{n}"),
            Self::Unlimited => f.write_str("unlimited"),
            Self::Unavailable => f.write_str("unavailable"),
        }
    }
}

/// What certgate reads of a token's `CK_TOKEN_INFO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenFacts {
    pub(crate) label: String,
    pub(crate) manufacturer: String,
    pub(crate) model: String,
    pub(crate) serial_number: String,
    pub(crate) flags: u64,
    pub(crate) sessions: Count,
    pub(crate) max_sessions: Limit,
    pub(crate) min_pin_len: Count,
    pub(crate) max_pin_len: Count,
    /// The token's clock as RFC 3339, when it has one and it reads as the standard says.
    pub(crate) clock: Option<String>,
}

impl TokenFacts {
    /// Reads the structure; never fails.
    pub(crate) fn from_raw(raw: &RawTokenInfo) -> Self {
        Self {
            label: text(&raw.label),
            manufacturer: text(&raw.manufacturer_id),
            model: text(&raw.model),
            serial_number: text(&raw.serial_number),
            flags: raw.flags,
            sessions: count(raw.session_count),
            max_sessions: limit(raw.max_session_count),
            min_pin_len: count(raw.min_pin_len),
            max_pin_len: count(raw.max_pin_len),
            clock: (raw.flags & 0x40 != 0)
                .then(|| utc_time(&raw.utc_time))
                .flatten(),
        }
    }

    pub(crate) fn flag(&self, bit: u64) -> bool {
        self.flags & bit != 0
    }

    /// The set flags by name; bits no standard names as one hex value.
    pub(crate) fn flag_names(&self) -> Vec<String> {
        let mut names: Vec<String> = FLAG_NAMES
            .iter()
            .filter(|(bit, _)| self.flag(*bit))
            .map(|(_, name)| (*name).to_owned())
            .collect();
        let unknown = FLAG_NAMES
            .iter()
            .fold(self.flags, |rest, (bit, _)| rest & !bit);
        if unknown != 0 {
            names.push(format!("unknown {unknown:#x}"));
        }
        names
    }
}

/// Which token to use: its label, and the manufacturer, model and serial a token URI adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenMatch {
    pub(crate) label: String,
    manufacturer: Option<String>,
    model: Option<String>,
    serial: Option<String>,
}

impl TokenMatch {
    pub(crate) fn new(label: &str, uri: Option<&crate::config::Pkcs11Uri>) -> Self {
        Self {
            label: label.to_owned(),
            manufacturer: uri.and_then(|u| u.manufacturer.clone()),
            model: uri.and_then(|u| u.model.clone()),
            serial: uri.and_then(|u| u.serial.clone()),
        }
    }

    /// Whether `facts` describe this token: every attribute given must match exactly.
    pub(crate) fn matches(&self, facts: &TokenFacts) -> bool {
        let same = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        facts.label == self.label
            && same(&self.manufacturer, &facts.manufacturer)
            && same(&self.model, &facts.model)
            && same(&self.serial, &facts.serial_number)
    }
}

/// Reads the token info of `slot` from the (initialised) module at `module`. Blocking.
pub(crate) fn read(module: &Path, slot: u64) -> Result<TokenFacts, ReadError> {
    match pkcs11_token_info::token_info(module.as_os_str(), slot) {
        Ok(raw) => Ok(TokenFacts::from_raw(&raw)),
        Err(pkcs11_token_info::Error::Rv(rv)) => {
            // Through `call`, so the code is classified and logged like every other.
            match call(
                "C_GetTokenInfo",
                Rv::from(rv).into_result(Function::GetTokenInfo),
            ) {
                Err(e) => Err(ReadError::Call(e)),
                Ok(()) => Err(ReadError::Hsm(HsmError::Pkcs11 {
                    function: "C_GetTokenInfo",
                    detail: "failed with CKR_OK".into(),
                })),
            }
        }
        Err(other) => Err(ReadError::Hsm(HsmError::Pkcs11 {
            function: "C_GetTokenInfo",
            detail: other.to_string(),
        })),
    }
}

/// Why the token info could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The module answered with a `CKR_*` code.
    Call(CallError),
    /// The module could not be reached at all.
    Hsm(HsmError),
}

impl From<ReadError> for HsmError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Call(e) => e.into(),
            ReadError::Hsm(e) => e,
        }
    }
}

/// A blank-padded text field: trailing blanks and NULs dropped (some modules pad with NUL),
/// invalid UTF-8 replaced rather than refused.
fn text(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ' && *b != 0)
        .map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn count(v: u64) -> Count {
    if v == UNAVAILABLE {
        Count::Unavailable
    } else {
        Count::Known(v)
    }
}

fn limit(v: u64) -> Limit {
    match v {
        UNAVAILABLE => Limit::Unavailable,
        INFINITE => Limit::Unlimited,
        n => Limit::Max(n),
    }
}

/// `YYYYMMDDhhmmss00` as RFC 3339; anything else (openCryptoki's `hh:mm:ss`, blanks) is None.
fn utc_time(bytes: &[u8; 16]) -> Option<String> {
    let digits = &bytes[..14];
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| -> u32 {
        digits[r]
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let (month, day, hour, minute, second) = (n(4..6), n(6..8), n(8..10), n(10..12), n(12..14));
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    Some(format!(
        "{:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z",
        n(0..4)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded<const N: usize>(s: &[u8], pad: u8) -> [u8; N] {
        let mut out = [pad; N];
        out[..s.len()].copy_from_slice(s);
        out
    }

    fn raw() -> RawTokenInfo {
        RawTokenInfo {
            label: padded(b"certgate", b' '),
            manufacturer_id: padded(b"IBM Corp.", b' '),
            model: padded(b"IBM SoftTok", b' '),
            serial_number: padded(b"123", b' '),
            flags: 0x44D,
            max_session_count: 0xFFFF_FFFF_FFFF_FFFE,
            session_count: 0,
            max_rw_session_count: UNAVAILABLE,
            rw_session_count: UNAVAILABLE,
            max_pin_len: 8,
            min_pin_len: 4,
            total_public_memory: UNAVAILABLE,
            free_public_memory: UNAVAILABLE,
            total_private_memory: UNAVAILABLE,
            free_private_memory: UNAVAILABLE,
            hardware_version: (1, 0),
            firmware_version: (1, 0),
            // What openCryptoki's soft token writes.
            utc_time: padded(b"18:19:59", b' '),
        }
    }

    #[test]
    fn open_cryptokis_clock_field_is_unavailable_and_the_label_still_reads() {
        let f = TokenFacts::from_raw(&raw());
        assert_eq!(f.label, "certgate");
        assert_eq!(f.manufacturer, "IBM Corp.");
        assert_eq!(f.clock, None);
        assert!(f.flag(0x40), "the clock flag stays visible");
        assert_eq!(f.min_pin_len, Count::Known(4));
        assert_eq!(f.max_sessions, Limit::Max(0xFFFF_FFFF_FFFF_FFFE));
        assert_eq!(
            f.flag_names(),
            [
                "RNG",
                "LOGIN_REQUIRED",
                "USER_PIN_INITIALIZED",
                "CLOCK_ON_TOKEN",
                "TOKEN_INITIALIZED"
            ]
        );
    }

    #[test]
    fn a_standard_clock_reads_and_a_bad_one_does_not() {
        let mut r = raw();
        r.utc_time = *b"2026120318195900";
        assert_eq!(
            TokenFacts::from_raw(&r).clock.as_deref(),
            Some("2026-12-03T18:19:59Z")
        );
        r.utc_time = *b"2026139918195900";
        assert_eq!(TokenFacts::from_raw(&r).clock, None, "month 13");
        // Without the flag the field means nothing, whatever it holds.
        r.utc_time = *b"2026120318195900";
        r.flags &= !0x40;
        assert_eq!(TokenFacts::from_raw(&r).clock, None);
    }

    #[test]
    fn nul_padding_invalid_utf8_unknown_flags_and_unavailable_counts_are_read() {
        let mut r = raw();
        r.label = padded(b"nul-padded", 0);
        r.model = padded(b"m\xffodel", b' ');
        r.flags = 0x400 | 0x8000_0000;
        r.session_count = UNAVAILABLE;
        r.max_session_count = INFINITE;
        r.min_pin_len = UNAVAILABLE;
        let f = TokenFacts::from_raw(&r);
        assert_eq!(f.label, "nul-padded");
        assert_eq!(f.model, "m\u{fffd}odel");
        assert_eq!(f.flag_names(), ["TOKEN_INITIALIZED", "unknown 0x80000000"]);
        assert_eq!(f.sessions, Count::Unavailable);
        assert_eq!(f.max_sessions, Limit::Unlimited);
        assert_eq!(f.min_pin_len.to_string(), "unavailable");
    }

    #[test]
    fn a_token_uri_must_match_in_every_attribute_it_gives() {
        let facts = TokenFacts::from_raw(&raw());
        let uri = |text: &str| crate::config::Pkcs11Uri::parse(text).unwrap();
        assert!(TokenMatch::new("certgate", None).matches(&facts));
        assert!(!TokenMatch::new("other", None).matches(&facts));
        let by_serial = uri("pkcs11:token=certgate;serial=123;model=IBM%20SoftTok");
        assert!(TokenMatch::new("certgate", Some(&by_serial)).matches(&facts));
        let wrong_serial = uri("pkcs11:token=certgate;serial=124");
        assert!(!TokenMatch::new("certgate", Some(&wrong_serial)).matches(&facts));
        let wrong_maker = uri("pkcs11:token=certgate;manufacturer=SoftHSM");
        assert!(!TokenMatch::new("certgate", Some(&wrong_maker)).matches(&facts));
    }

    #[test]
    fn an_all_blank_label_is_empty() {
        let mut r = raw();
        r.label = [b' '; 32];
        assert_eq!(TokenFacts::from_raw(&r).label, "");
    }
}
