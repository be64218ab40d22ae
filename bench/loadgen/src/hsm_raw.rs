//! The raw signing rate of the token: per thread one logged-in session, C_Sign on the CA key
//! in a loop with the mechanism certgate uses for it; no verification, no DER conversion.
//! This is the ceiling issuance is compared against.
//!
//! EC keys: SHA-256 in software, then `CKM_ECDSA`. RSA keys: `CKM_SHA256_RSA_PKCS`, or, on a
//! token without it (openCryptoki's soft token), SHA-256 and the DigestInfo in software, then
//! `CKM_RSA_PKCS`, as certgate does. The token is found by its raw `CK_TOKEN_INFO` label:
//! cryptoki refuses openCryptoki's token information (its clock field).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use serde_json::json;

#[derive(clap::Args, Debug)]
pub struct HsmRawArgs {
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    module: String,
    #[arg(long)]
    token_label: String,
    #[arg(long, default_value = "certgate-ca")]
    key_label: String,
    /// Environment variable holding the user PIN.
    #[arg(long, default_value = "CERTGATE_HSM_PIN")]
    pin_env: String,
    /// Seconds per thread count.
    #[arg(long, default_value_t = 3.0)]
    secs: f64,
    /// Thread counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
}

pub fn run(args: &HsmRawArgs) -> anyhow::Result<serde_json::Value> {
    let pin =
        std::env::var(&args.pin_env).with_context(|| format!("{} is not set", args.pin_env))?;
    let pkcs11 = Arc::new(Pkcs11::new(&args.module)?);
    pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let mut slot = None;
    for s in pkcs11.get_slots_with_token()? {
        let info = pkcs11_token_info::token_info(std::ffi::OsStr::new(&args.module), s.id())
            .map_err(|e| anyhow::anyhow!("C_GetTokenInfo of slot {}: {e}", s.id()))?;
        let label = String::from_utf8_lossy(&info.label);
        if label.trim_end_matches([' ', '\0']) == args.token_label {
            slot = Some(s);
        }
    }
    let Some(slot) = slot else {
        bail!("no token labelled {}", args.token_label);
    };
    let pin = AuthPin::from(pin.as_str());
    let mut results = Vec::new();
    let mut signing = None;
    for &threads in &args.threads {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        let ready = Arc::new(std::sync::Barrier::new(threads + 1));
        for t in 0..threads {
            let session = pkcs11.open_ro_session(slot)?;
            if t == 0 {
                match session.login(UserType::User, Some(&pin)) {
                    Ok(()) => {}
                    Err(cryptoki::error::Error::Pkcs11(
                        cryptoki::error::RvError::UserAlreadyLoggedIn,
                        _,
                    )) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let key = *session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Label(args.key_label.as_bytes().to_vec()),
                ])?
                .first()
                .context("CA key not found")?;
            let how = match signing {
                Some(how) => how,
                None => *signing.insert(Signing::for_key(&session, key)?),
            };
            let (stop, count, ready) = (stop.clone(), count.clone(), ready.clone());
            handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
                ready.wait();
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    how.sign(&session, key, &i.to_le_bytes())?;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }));
        }
        ready.wait();
        let t0 = Instant::now();
        let cpu0 = crate::procstat::cpu(std::process::id());
        std::thread::sleep(Duration::from_secs_f64(args.secs));
        let n = count.load(Ordering::Relaxed);
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (crate::procstat::cpu(std::process::id()) - cpu0).as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??;
        }
        results.push(
            json!({"threads": threads, "signatures": n, "secs": secs, "per_sec": n as f64 / secs,
                "cpu_us_per_op": cpu * 1e6 / (n.max(1) as f64)}),
        );
    }
    let mechanism = signing.map_or("none", Signing::describe);
    Ok(json!({"kind": "hsm_raw", "mechanism": mechanism, "results": results}))
}

/// How the key signs, decided once from its type and the token's answer.
#[derive(Debug, Clone, Copy)]
enum Signing {
    /// SHA-256 in software, `CKM_ECDSA`.
    Ecdsa,
    /// `CKM_SHA256_RSA_PKCS`: the token hashes.
    RsaTokenHashes,
    /// SHA-256 and DigestInfo in software, `CKM_RSA_PKCS`.
    RsaDigestInfo,
}

/// DER of `DigestInfo { sha256, NULL }` up to the 32 hash bytes (RFC 8017, section 9.2).
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

impl Signing {
    fn for_key(session: &Session, key: ObjectHandle) -> anyhow::Result<Self> {
        let attrs = session.get_attributes(key, &[AttributeType::KeyType])?;
        let Some(Attribute::KeyType(kind)) = attrs.first() else {
            bail!("the CA key has no CKA_KEY_TYPE");
        };
        if *kind == KeyType::EC {
            return Ok(Self::Ecdsa);
        }
        if *kind != KeyType::RSA {
            bail!("the CA key is neither EC nor RSA");
        }
        match session.sign(&Mechanism::Sha256RsaPkcs, key, b"probe") {
            Ok(_) => Ok(Self::RsaTokenHashes),
            Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => Ok(Self::RsaDigestInfo),
            Err(e) => Err(e.into()),
        }
    }

    fn sign(self, session: &Session, key: ObjectHandle, message: &[u8]) -> anyhow::Result<()> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
        match self {
            Self::Ecdsa => session.sign(&Mechanism::Ecdsa, key, digest.as_ref())?,
            Self::RsaTokenHashes => session.sign(&Mechanism::Sha256RsaPkcs, key, message)?,
            Self::RsaDigestInfo => {
                let mut info = SHA256_DIGEST_INFO_PREFIX.to_vec();
                info.extend_from_slice(digest.as_ref());
                session.sign(&Mechanism::RsaPkcs, key, &info)?
            }
        };
        Ok(())
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Ecdsa => "SHA-256 in software, CKM_ECDSA",
            Self::RsaTokenHashes => "CKM_SHA256_RSA_PKCS",
            Self::RsaDigestInfo => "SHA-256 and DigestInfo in software, CKM_RSA_PKCS",
        }
    }
}
