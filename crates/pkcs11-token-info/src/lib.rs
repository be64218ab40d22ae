//! `C_GetTokenInfo` without interpretation.
//!
//! cryptoki's `Pkcs11::get_token_info` turns `CK_TOKEN_INFO` into typed fields and fails as a
//! whole when one of them is unexpected: openCryptoki's software token sets
//! `CKF_CLOCK_ON_TOKEN` and fills `utcTime` with `hh:mm:ss`, not `YYYYMMDDhhmmss00`, so the
//! token could not even be found by its label. This crate only copies the structure out of
//! the module; certgate reads it field by field (in safe code) and reports what it cannot
//! read as unavailable.
//!
//! It is a crate of its own because certgate forbids `unsafe`; this is its one FFI call
//! beyond cryptoki.
//!
//! What this crate must not do: initialise or finalise the module (the caller's cryptoki
//! context owns that), or keep the library loaded.

use std::ffi::OsStr;
use std::fmt;
use std::ptr;

use cryptoki_sys::{CK_FUNCTION_LIST, CK_RV, CK_SLOT_ID, CK_TOKEN_INFO, CKR_OK};

/// `CK_TOKEN_INFO` as the module filled it, with its fields as plain integers and bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RawTokenInfo {
    pub label: [u8; 32],
    pub manufacturer_id: [u8; 32],
    pub model: [u8; 16],
    pub serial_number: [u8; 16],
    pub flags: u64,
    pub max_session_count: u64,
    pub session_count: u64,
    pub max_rw_session_count: u64,
    pub rw_session_count: u64,
    pub max_pin_len: u64,
    pub min_pin_len: u64,
    pub total_public_memory: u64,
    pub free_public_memory: u64,
    pub total_private_memory: u64,
    pub free_private_memory: u64,
    /// (major, minor)
    pub hardware_version: (u8, u8),
    pub firmware_version: (u8, u8),
    pub utc_time: [u8; 16],
}

impl fmt::Debug for RawTokenInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawTokenInfo")
            .field("label", &String::from_utf8_lossy(&self.label))
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish_non_exhaustive()
    }
}

/// Why the structure could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The module could not be loaded or lacks `C_GetFunctionList`.
    Load(String),
    /// `C_GetFunctionList` returned no list.
    NoFunctionList,
    /// The call returned this `CKR_*` code.
    Rv(CK_RV),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Load(e) => write!(f, "cannot load the PKCS#11 module: {e}"),
            Self::NoFunctionList => f.write_str("the module gives no function list"),
            Self::Rv(rv) => write!(f, "the module returned {rv:#x}"),
        }
    }
}

impl std::error::Error for Error {}

/// Calls `C_GetTokenInfo(slot)` of the module at `module`, which the caller has already
/// loaded and initialised through cryptoki (loading the same path again yields the same,
/// initialised library: the dynamic loader counts references and does not load it twice).
/// Blocking.
pub fn token_info(module: &OsStr, slot: u64) -> Result<RawTokenInfo, Error> {
    // SAFETY: loading runs the module's initialisers. It is the same module the caller's
    // cryptoki context already loaded, so they ran already and this only takes a reference.
    let lib =
        unsafe { cryptoki_sys::Pkcs11::new(module) }.map_err(|e| Error::Load(e.to_string()))?;
    if lib.C_GetFunctionList.is_err() {
        return Err(Error::Load("no C_GetFunctionList symbol".into()));
    }
    let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
    // SAFETY: C_GetFunctionList takes a valid pointer to a pointer and writes the module's
    // static function list into it; `list` lives on this stack frame.
    let rv = unsafe { lib.C_GetFunctionList(&mut list) };
    if rv != CKR_OK {
        return Err(Error::Rv(rv));
    }
    // SAFETY: a non-null list returned by C_GetFunctionList points to a CK_FUNCTION_LIST
    // owned by the module, valid while the module stays loaded (`lib` keeps it so).
    let Some(get_token_info) = (unsafe { list.as_ref() }).and_then(|l| l.C_GetTokenInfo) else {
        return Err(Error::NoFunctionList);
    };
    let mut raw = std::mem::MaybeUninit::<CK_TOKEN_INFO>::zeroed();
    let slot_id: CK_SLOT_ID = slot;
    // SAFETY: C_GetTokenInfo writes one CK_TOKEN_INFO (layout from cryptoki-sys, checked
    // there against the platform's C headers) into the buffer we pass; nothing else.
    let rv = unsafe { get_token_info(slot_id, raw.as_mut_ptr()) };
    if rv != CKR_OK {
        return Err(Error::Rv(rv));
    }
    // SAFETY: zero-initialised, and on CKR_OK completely written by the module; every bit
    // pattern is a valid CK_TOKEN_INFO (only integers and byte arrays).
    let t = unsafe { raw.assume_init() };
    drop(lib);
    Ok(RawTokenInfo {
        label: t.label,
        manufacturer_id: t.manufacturerID,
        model: t.model,
        serial_number: t.serialNumber,
        flags: t.flags,
        max_session_count: t.ulMaxSessionCount,
        session_count: t.ulSessionCount,
        max_rw_session_count: t.ulMaxRwSessionCount,
        rw_session_count: t.ulRwSessionCount,
        max_pin_len: t.ulMaxPinLen,
        min_pin_len: t.ulMinPinLen,
        total_public_memory: t.ulTotalPublicMemory,
        free_public_memory: t.ulFreePublicMemory,
        total_private_memory: t.ulTotalPrivateMemory,
        free_private_memory: t.ulFreePrivateMemory,
        hardware_version: (t.hardwareVersion.major, t.hardwareVersion.minor),
        firmware_version: (t.firmwareVersion.major, t.firmwareVersion.minor),
        utc_time: t.utcTime,
    })
}
