//! The raw signing rate of the token: per thread one logged-in session, SHA-256 in software
//! then C_Sign(CKM_ECDSA) on the CA key, in a loop; no verification, no DER conversion.
//! This is the ceiling issuance is compared against.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
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
        if pkcs11.get_token_info(s)?.label() == args.token_label {
            slot = Some(s);
        }
    }
    let Some(slot) = slot else {
        bail!("no token labelled {}", args.token_label);
    };
    let pin = AuthPin::from(pin.as_str());
    let mut results = Vec::new();
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
            let (stop, count, ready) = (stop.clone(), count.clone(), ready.clone());
            handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
                ready.wait();
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let msg = i.to_le_bytes();
                    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &msg);
                    session.sign(&Mechanism::Ecdsa, key, digest.as_ref())?;
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
    Ok(json!({"kind": "hsm_raw", "results": results}))
}
