//! `C_GetTokenInfo` without interpretation, and single-part `C_Sign` after a separate
//! `C_SignInit`.
//!
//! cryptoki's `Pkcs11::get_token_info` turns `CK_TOKEN_INFO` into typed fields and fails as a
//! whole when one of them is unexpected: openCryptoki's software token sets
//! `CKF_CLOCK_ON_TOKEN` and fills `utcTime` with `hh:mm:ss`, not `YYYYMMDDhhmmss00`, so the
//! token could not even be found by its label. This crate only copies the structure out of
//! the module; certgate reads it field by field (in safe code) and reports what it cannot
//! read as unavailable.
//!
//! [`sign`] exists because cryptoki's `Session::sign` runs `C_SignInit` and `C_Sign` in one
//! call: a key with `CKA_ALWAYS_AUTHENTICATE` needs `C_Login(CKU_CONTEXT_SPECIFIC)` between
//! the two, which certgate makes through cryptoki (`sign_init`, then `login`); only the
//! closing `C_Sign` on that session is called here.
//!
//! It is a crate of its own because certgate forbids `unsafe`; these are its only FFI calls
//! beyond cryptoki.
//!
//! What this crate must not do: initialise or finalise the module (the caller's cryptoki
//! context owns that), keep the library loaded beyond one call, or see a PIN.

use std::ffi::OsStr;
use std::fmt;
use std::ptr;

use cryptoki_sys::{
    CK_FUNCTION_LIST, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID, CK_TOKEN_INFO, CK_ULONG, CKR_OK,
};

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
    /// A length does not fit the platform's `CK_ULONG` or `usize`.
    TooLong,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Load(e) => write!(f, "cannot load the PKCS#11 module: {e}"),
            Self::NoFunctionList => f.write_str("the module gives no function list"),
            Self::Rv(rv) => write!(f, "the module returned {rv:#x}"),
            Self::TooLong => f.write_str("a length does not fit the platform's integer types"),
        }
    }
}

impl std::error::Error for Error {}

/// The module, loaded once more (the caller's cryptoki context has it loaded and
/// initialised already: the dynamic loader counts references and does not load it twice),
/// with its function list. Unloaded (the reference dropped) when this is dropped.
struct Module {
    _lib: cryptoki_sys::Pkcs11,
    list: ptr::NonNull<CK_FUNCTION_LIST>,
}

impl Module {
    fn load(module: &OsStr) -> Result<Self, Error> {
        // SAFETY: loading runs the module's initialisers. It is the same module the caller's
        // cryptoki context already loaded, so they ran already and this only takes a
        // reference.
        let lib =
            unsafe { cryptoki_sys::Pkcs11::new(module) }.map_err(|e| Error::Load(e.to_string()))?;
        if lib.C_GetFunctionList.is_err() {
            return Err(Error::Load("no C_GetFunctionList symbol".into()));
        }
        let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: C_GetFunctionList takes a valid pointer to a pointer and writes the
        // module's static function list into it; `list` lives on this stack frame.
        let rv = unsafe { lib.C_GetFunctionList(&mut list) };
        if rv != CKR_OK {
            return Err(Error::Rv(rv));
        }
        let list = ptr::NonNull::new(list).ok_or(Error::NoFunctionList)?;
        Ok(Self { _lib: lib, list })
    }

    /// The function list, borrowed no longer than the module stays loaded by `self`.
    fn functions(&self) -> &CK_FUNCTION_LIST {
        // SAFETY: C_GetFunctionList returned this non-null pointer to a CK_FUNCTION_LIST
        // owned by the module, valid while the module is loaded, which `_lib` ensures for
        // as long as `self`, and so the borrow, lives.
        unsafe { self.list.as_ref() }
    }
}

/// Calls `C_GetTokenInfo(slot)` of the module at `module`, which the caller has already
/// loaded and initialised through cryptoki. Blocking.
pub fn token_info(module: &OsStr, slot: u64) -> Result<RawTokenInfo, Error> {
    let module = Module::load(module)?;
    let Some(get_token_info) = module.functions().C_GetTokenInfo else {
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
    drop(module);
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

/// Calls single-part `C_Sign` on `session`, whose signing operation the caller started
/// (`C_SignInit`, and for a `CKA_ALWAYS_AUTHENTICATE` key `C_Login(CKU_CONTEXT_SPECIFIC)`)
/// through its cryptoki context on the module at `module`: first for the length, then for
/// the signature. Ends the operation (except when the module answers the length query
/// itself with an error, after which the module ends it too, as PKCS#11 says). Blocking.
pub fn sign(module: &OsStr, session: CK_SESSION_HANDLE, data: &[u8]) -> Result<Vec<u8>, Error> {
    let module = Module::load(module)?;
    let Some(c_sign) = module.functions().C_Sign else {
        return Err(Error::NoFunctionList);
    };
    let data_len = CK_ULONG::try_from(data.len()).map_err(|_| Error::TooLong)?;
    let mut len: CK_ULONG = 0;
    // SAFETY: C_Sign reads `data_len` bytes from `data` (the pointer is `*mut` in the C
    // signature only; PKCS#11 never writes the input) and, with a null output pointer, writes
    // only the signature length into `len`. The session handle is the caller's live session;
    // a stale one is answered with CKR_SESSION_HANDLE_INVALID, not undefined behaviour.
    let rv = unsafe {
        c_sign(
            session,
            data.as_ptr().cast_mut(),
            data_len,
            ptr::null_mut(),
            &mut len,
        )
    };
    if rv != CKR_OK {
        return Err(Error::Rv(rv));
    }
    let mut signature = vec![0u8; usize::try_from(len).map_err(|_| Error::TooLong)?];
    // SAFETY: as above; now the module writes at most `len` bytes (the buffer's size, which
    // it just asked for) into `signature` and the length it wrote into `len`.
    let rv = unsafe {
        c_sign(
            session,
            data.as_ptr().cast_mut(),
            data_len,
            signature.as_mut_ptr(),
            &mut len,
        )
    };
    drop(module);
    if rv != CKR_OK {
        return Err(Error::Rv(rv));
    }
    signature.truncate(usize::try_from(len).map_err(|_| Error::TooLong)?);
    Ok(signature)
}
