//! The PKCS#11 layer against a real SoftHSM2 token: key generation of every algorithm with
//! sign-then-verify (also by OpenSSL), key attributes as certgate and as `pkcs11-tool` see
//! them, refusals (label reuse, wrong PIN, missing token, unsafe keys), recovery after every
//! session was closed, and concurrent signing.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use certgate::ca::{KeyAlgorithm, KeyBackend, SignError, verify_signature};
use certgate::config::{ContextLogin, RsaSignature, Secret};
use certgate::hsm::{Hsm, HsmError, HsmKey};

use crate::fixture::{Db, Fixture, curl, sh};
use crate::support::token::{self, PIN, TestToken};

fn open(label: &str, sessions: usize) -> Option<(TestToken, Hsm)> {
    open_signing(label, sessions, RsaSignature::Pkcs1)
}

/// Like [`open`], with RSA keys signing as `rsa` says.
fn open_signing(label: &str, sessions: usize, rsa: RsaSignature) -> Option<(TestToken, Hsm)> {
    let tok = token::create(label)?;
    let mut settings = tok.settings(sessions);
    settings.rsa_signature = rsa;
    let hsm = Hsm::open(&settings).expect("open the token");
    Some((tok, hsm))
}

/// Signs, checks the signature with certgate's verifier and with OpenSSL, and checks that a
/// different message does not verify (so the checks can fail).
fn sign_and_verify(tok: &TestToken, key: &HsmKey, algorithm: KeyAlgorithm) {
    assert_eq!(key.algorithm(), algorithm);
    let message = format!("to be signed by {algorithm}").into_bytes();
    let signature = key.sign(&message).expect("sign");
    verify_signature(algorithm, key.public_key_der(), &message, &signature).expect("verifies");
    assert!(matches!(
        verify_signature(
            algorithm,
            key.public_key_der(),
            b"another message",
            &signature
        ),
        Err(SignError::BadSignature)
    ));
    openssl_verifies(tok, algorithm, key.public_key_der(), &message, &signature);
}

/// An independent check of the DER public key and the signature encoding.
fn openssl_verifies(
    tok: &TestToken,
    algorithm: KeyAlgorithm,
    spki: &[u8],
    message: &[u8],
    signature: &[u8],
) {
    let dir = tok.conf.parent().expect("token dir");
    let (pk, msg, sig) = (dir.join("pub.der"), dir.join("msg"), dir.join("sig"));
    std::fs::write(&pk, spki).unwrap();
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&sig, signature).unwrap();
    let digest = match algorithm {
        KeyAlgorithm::EcP384 => "-sha384",
        _ => "-sha256",
    };
    // PSS with the parameters certgate writes: MGF1 takes the digest's hash by default.
    let pss: &[&str] = if algorithm.is_pss() {
        &[
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
        ]
    } else {
        &[]
    };
    let out = Command::new("openssl")
        .args(["dgst", digest])
        .args(pss)
        .args(["-keyform", "DER", "-verify"])
        .arg(&pk)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK"),
        "openssl: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn generate_sign_verify(algorithm: KeyAlgorithm) {
    if !token::supports(algorithm) {
        return;
    }
    let rsa = if algorithm.is_pss() {
        RsaSignature::Pss
    } else {
        RsaSignature::Pkcs1
    };
    let Some((tok, hsm)) = open_signing("gen", 2, rsa) else {
        return;
    };
    let key = hsm.generate_key("ca-key", algorithm).expect("generate");
    assert_eq!(key.label(), "ca-key");
    sign_and_verify(&tok, &key, algorithm);
    // Opening the key again (as `serve` does) gives the same public key and signs too.
    let again = hsm.key("ca-key").expect("open the key");
    assert_eq!(again.public_key_der(), key.public_key_der());
    assert_eq!(again.id_hex(), key.id_hex());
    sign_and_verify(&tok, &again, algorithm);
}

#[test]
fn ec_p256_key_generates_and_signs() {
    generate_sign_verify(KeyAlgorithm::EcP256);
}

#[test]
fn ec_p384_key_generates_and_signs() {
    generate_sign_verify(KeyAlgorithm::EcP384);
}

#[test]
fn rsa_2048_key_generates_and_signs() {
    generate_sign_verify(KeyAlgorithm::Rsa2048);
}

#[test]
fn rsa_3072_key_generates_and_signs() {
    generate_sign_verify(KeyAlgorithm::Rsa3072);
}

#[test]
fn rsa_2048_pss_key_generates_and_signs() {
    generate_sign_verify(KeyAlgorithm::Rsa2048Pss);
}

#[test]
fn rsa_3072_pss_key_generates_and_signs() {
    generate_sign_verify(KeyAlgorithm::Rsa3072Pss);
}

/// The padding is the setting's, not the key's: the same RSA key opens as PKCS#1 v1.5 or
/// PSS, and each signature verifies only as what it is. A PSS key is not generated where
/// the setting says PKCS#1.
#[test]
fn an_rsa_key_signs_with_the_configured_padding() {
    let Some((tok, pss)) = open_signing("padding", 1, RsaSignature::Pss) else {
        return;
    };
    let key = pss
        .generate_key("ca-key", KeyAlgorithm::Rsa2048Pss)
        .expect("generate");
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa2048Pss);
    let signature = key.sign(b"padding").expect("sign");
    verify_signature(
        KeyAlgorithm::Rsa2048Pss,
        key.public_key_der(),
        b"padding",
        &signature,
    )
    .expect("a PSS signature");
    assert!(
        verify_signature(
            KeyAlgorithm::Rsa2048,
            key.public_key_der(),
            b"padding",
            &signature
        )
        .is_err()
    );
    // A token without CKM_SHA256_RSA_PKCS_PSS: CKM_RSA_PKCS_PSS over certgate's hash, the
    // same signature scheme (checked by OpenSSL too).
    key.hash_rsa_in_software_for_tests();
    sign_and_verify(&tok, &key, KeyAlgorithm::Rsa2048Pss);
    drop((key, pss));
    let mut settings = tok.settings(1);
    settings.rsa_signature = RsaSignature::Pkcs1;
    let pkcs1 = Hsm::open(&settings).expect("open again");
    let key = pkcs1.key("ca-key").expect("the same key");
    assert_eq!(key.algorithm(), KeyAlgorithm::Rsa2048);
    let signature = key.sign(b"padding").expect("sign");
    verify_signature(
        KeyAlgorithm::Rsa2048,
        key.public_key_der(),
        b"padding",
        &signature,
    )
    .expect("a PKCS#1 v1.5 signature");
    let refused = pkcs1
        .generate_key("other", KeyAlgorithm::Rsa3072Pss)
        .unwrap_err();
    assert!(refused.to_string().contains("rsa_signature"), "{refused}");
}

#[test]
fn generated_key_attributes_as_certgate_and_pkcs11_tool_see_them() {
    let Some((tok, hsm)) = open("attrs", 1) else {
        return;
    };
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    let a = hsm.key_attributes("ca-key").unwrap();
    assert_eq!(a.label, "ca-key");
    assert_eq!(a.id_hex, key.id_hex());
    assert_eq!(a.id_hex.len(), 32, "a 16-byte random CKA_ID");
    assert_eq!(a.algorithm, Some(token::algorithm()));
    assert!(a.token && a.private && a.sensitive && a.always_sensitive && a.local);
    assert!(!a.extractable && a.never_extractable);
    assert!(!a.decrypt && !a.unwrap && !a.derive);
    assert_eq!(a.unsafe_reason(), None);

    let listing = tok.pkcs11_tool(&["-O"]);
    let private = listing
        .split("Private Key Object")
        .nth(1)
        .expect("pkcs11-tool lists the private key");
    let private = private.split("Object;").next().unwrap_or(private);
    assert!(private.contains("label:      ca-key"), "{private}");
    assert!(
        private.contains("Access:     sensitive, always sensitive, never extractable, local"),
        "{private}"
    );
    let usage = private
        .lines()
        .find(|l| l.trim_start().starts_with("Usage:"))
        .expect("usage line");
    assert_eq!(usage.trim(), "Usage:      sign", "{private}");
    // The public key shares the CKA_ID.
    let public = listing
        .split("Public Key Object")
        .nth(1)
        .expect("public key listed");
    assert!(
        public.contains(&format!("ID:         {}", a.id_hex)),
        "{public}"
    );
}

#[test]
fn a_taken_label_is_refused() {
    let Some((_tok, hsm)) = open("reuse", 1) else {
        return;
    };
    let first = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    let err = hsm
        .generate_key("ca-key", KeyAlgorithm::Rsa3072)
        .unwrap_err();
    assert!(
        matches!(err, HsmError::KeyExists(ref l) if l == "ca-key"),
        "{err}"
    );
    // The existing key is untouched.
    let still = hsm.key("ca-key").unwrap();
    assert_eq!(still.public_key_der(), first.public_key_der());
    assert_eq!(still.algorithm(), token::algorithm());
}

#[test]
fn a_wrong_pin_is_refused_once_and_the_right_one_still_works() {
    let Some(tok) = token::create("pins") else {
        return;
    };
    let mut settings = tok.settings(2);
    // Of a length both tokens accept (openCryptoki: 4-8), so it is wrong, not malformed.
    settings.pin = Secret::new("wrong-12".into());
    let err = Hsm::open(&settings).unwrap_err();
    assert!(matches!(err, HsmError::PinIncorrect), "{err}");
    assert!(!err.to_string().contains("wrong-12"));
    // One wrong try did not lock the token.
    let hsm = Hsm::open(&tok.settings(2)).expect("the right PIN works");
    hsm.health().unwrap();
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    key.sign(b"after a wrong PIN").unwrap();
    assert!(
        !format!("{:?}", tok.settings(1)).contains(PIN),
        "settings redact the PIN"
    );
}

#[test]
fn a_missing_token_label_is_token_not_found() {
    let Some(tok) = token::create("present") else {
        return;
    };
    let mut settings = tok.settings(1);
    settings.token_label = "absent".into();
    let err = Hsm::open(&settings).unwrap_err();
    assert!(
        matches!(err, HsmError::TokenNotFound(ref l) if l == "absent"),
        "{err}"
    );
}

#[test]
fn a_missing_key_is_key_not_found() {
    let Some((_tok, hsm)) = open("nokey", 1) else {
        return;
    };
    assert!(matches!(hsm.key("nothing"), Err(HsmError::KeyNotFound(_))));
    assert!(matches!(
        hsm.key_attributes("nothing"),
        Err(HsmError::KeyNotFound(_))
    ));
}

#[test]
fn keys_that_can_leave_the_token_or_decrypt_are_refused() {
    let Some((tok, hsm)) = open("unsafe", 1) else {
        return;
    };
    // pkcs11-tool's defaults allow decrypt, unwrap and derive.
    tok.pkcs11_tool(&[
        "--keypairgen",
        "--key-type",
        token::tool_key_type(),
        "--label",
        "loose",
    ]);
    let err = hsm.key("loose").unwrap_err();
    match &err {
        HsmError::UnsafeKey { label, reason } => {
            assert_eq!(label, "loose");
            assert!(
                reason.contains("CKA_DECRYPT") || reason.contains("CKA_DERIVE"),
                "{reason}"
            );
        }
        other => panic!("expected UnsafeKey, got {other}"),
    }
    assert!(
        hsm.key_attributes("loose")
            .unwrap()
            .unsafe_reason()
            .is_some()
    );

    tok.pkcs11_tool(&[
        "--keypairgen",
        "--key-type",
        token::tool_key_type(),
        "--label",
        "exportable",
        "--usage-sign",
        "--extractable",
    ]);
    let attrs = hsm.key_attributes("exportable").unwrap();
    assert!(attrs.extractable);
    match hsm.key("exportable").unwrap_err() {
        HsmError::UnsafeKey { reason, .. } => {
            assert!(reason.contains("CKA_EXTRACTABLE"), "{reason}")
        }
        other => panic!("expected UnsafeKey, got {other}"),
    }
}

#[test]
fn signing_recovers_after_all_sessions_are_closed() {
    let Some((tok, hsm)) = open("recover", 3) else {
        return;
    };
    let algorithm = token::algorithm();
    let key = hsm.generate_key("ca-key", algorithm).unwrap();
    key.sign(b"before").unwrap();
    hsm.close_all_sessions_for_tests();
    // Every pooled session is dead now; the next signatures open new ones and log in again.
    for i in 0..6u8 {
        let msg = [b'm', i];
        let sig = key.sign(&msg).expect("sign after the sessions were closed");
        verify_signature(algorithm, key.public_key_der(), &msg, &sig).unwrap();
    }
    key.health().unwrap();
    // Twice in a row works too, and health recovers by itself.
    hsm.close_all_sessions_for_tests();
    hsm.health().unwrap();
    hsm.close_all_sessions_for_tests();
    sign_and_verify(&tok, &key, algorithm);
}

#[test]
fn eight_threads_sign_concurrently_and_every_signature_verifies() {
    let Some((_tok, hsm)) = open("threads", 4) else {
        return;
    };
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let key = key.clone();
            std::thread::spawn(move || {
                for i in 0..40u8 {
                    let msg = [b't', t, i];
                    let sig = key.sign(&msg).expect("sign");
                    verify_signature(key.algorithm(), key.public_key_der(), &msg, &sig)
                        .expect("every signature verifies");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("signing thread");
    }
}

#[test]
fn concurrent_signing_survives_sessions_closed_underneath() {
    let Some((_tok, hsm)) = open("chaos", 4) else {
        return;
    };
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let (key, stop) = (key.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let (mut ok, mut unavailable) = (0u32, 0u32);
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) || i < 20 {
                    let msg = [&[t][..], &i.to_be_bytes()].concat();
                    match key.sign(&msg) {
                        Ok(sig) => {
                            verify_signature(key.algorithm(), key.public_key_der(), &msg, &sig)
                                .expect("a released signature verifies");
                            ok += 1;
                        }
                        // A thread whose retry also met a reset may hear "unavailable".
                        Err(SignError::Unavailable(_)) => unavailable += 1,
                        Err(other) => panic!("thread {t}: {other}"),
                    }
                    i += 1;
                }
                (ok, unavailable)
            })
        })
        .collect();
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(30));
        hsm.close_all_sessions_for_tests();
    }
    stop.store(true, Ordering::Relaxed);
    let mut total_ok = 0;
    for h in handles {
        let (ok, _unavailable) = h.join().expect("signing thread");
        total_ok += ok;
    }
    assert!(
        total_ok >= 8 * 20 / 2,
        "most signatures succeed ({total_ok})"
    );
    // Afterwards everything works again.
    for i in 0..8u8 {
        key.sign(&[i]).expect("sign after the resets");
    }
}

#[test]
fn the_pool_never_has_more_sessions_open_than_configured() {
    let Some((_tok, hsm)) = open("cap", 2) else {
        return;
    };
    // Key generation's read-write session takes the place of an idle one.
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    assert_eq!(hsm.sessions_peak_for_tests(), 2);
    // Signing from six threads, with key generation, data objects (the audit anchor), the
    // readiness probe and the key listing of `hsm info` in between.
    let stop = Arc::new(AtomicBool::new(false));
    let signers: Vec<_> = (0..6u8)
        .map(|t| {
            let (key, stop) = (key.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) || i < 10 {
                    let msg = [&[t][..], &i.to_be_bytes()].concat();
                    let sig = key.sign(&msg).expect("sign");
                    verify_signature(key.algorithm(), key.public_key_der(), &msg, &sig).unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for round in 0..3 {
        hsm.generate_key(&format!("extra-{round}"), token::algorithm())
            .expect("key generation while signing");
        hsm.write_data("anchor", &[round]).expect("write data");
        assert_eq!(hsm.read_data("anchor").unwrap(), vec![vec![round]]);
        hsm.health().expect("readiness probe");
        assert!(hsm.private_keys().unwrap().len() >= 2);
    }
    stop.store(true, Ordering::Relaxed);
    for s in signers {
        s.join().expect("signing thread");
    }
    assert_eq!(
        hsm.sessions_peak_for_tests(),
        2,
        "never more than [hsm] sessions"
    );
    let usage = key.sessions().expect("session use");
    assert!(usage.open <= 2, "{usage:?}");
}

#[test]
fn keep_alive_replaces_idle_sessions_the_device_closed() {
    let Some((_tok, hsm)) = open("keepalive", 3) else {
        return;
    };
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    key.sign(b"before").unwrap();
    // Live sessions are only touched.
    assert_eq!(hsm.keep_alive_for_tests(), 0);
    let before = key.sessions().expect("session use");
    assert_eq!(before.open, 3, "the pool is full after a touch: {before:?}");
    // The device drops every session (as a YubiHSM 2 does after 30 s idle).
    hsm.close_all_sessions_for_tests();
    assert!(
        hsm.keep_alive_for_tests() >= 1,
        "the dead sessions are found"
    );
    let after = key.sessions().expect("session use");
    assert_eq!(after.recoveries, before.recoveries + 1, "{after:?}");
    assert_eq!(
        (after.open, after.idle),
        (3, 3),
        "replaced at once: {after:?}"
    );
    // The next signature finds a live session: it opens none. (The test's reset also
    // renumbers object handles, which a device dropping idle sessions does not: the key's
    // handle may be looked up once more, a recovery of its own.)
    let opened = hsm.sessions_opened_for_tests();
    let sig = key.sign(b"after").expect("sign after the keep-alive");
    verify_signature(key.algorithm(), key.public_key_der(), b"after", &sig).unwrap();
    assert_eq!(
        hsm.sessions_opened_for_tests(),
        opened,
        "no session opened to sign"
    );
    assert!(key.sessions().expect("use").recoveries <= after.recoveries + 1);
    assert_eq!(hsm.keep_alive_for_tests(), 0);
    assert!(hsm.sessions_peak_for_tests() <= 3);
}

#[test]
fn the_keep_alive_thread_touches_idle_sessions_every_keepalive_secs() {
    let Some(tok) = token::create("keepalive-thread") else {
        return;
    };
    let mut settings = tok.settings(2);
    settings.keepalive_secs = 1;
    let hsm = Hsm::open(&settings).expect("open the token");
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    let before = key.sessions().expect("session use").recoveries;
    hsm.close_all_sessions_for_tests();
    // Within a few ticks the thread has found the closed sessions and replaced them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        let usage = key.sessions().expect("session use");
        if usage.recoveries > before && usage.idle == 2 {
            break usage;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no keep-alive recovery: {usage:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let opened = hsm.sessions_opened_for_tests();
    key.sign(b"after").expect("sign");
    assert_eq!(
        hsm.sessions_opened_for_tests(),
        opened,
        "no session opened to sign"
    );
    assert_eq!(after.open, 2, "{after:?}");
    // The thread ends with the last handle (it holds none between ticks).
    drop(key);
    drop(hsm);
}

#[test]
fn setup_token_script_creates_a_usable_token_without_printing_the_pin() {
    if token::kind() != token::Kind::SoftHsm2 {
        eprintln!("not applicable: hsm-config/setup-token.sh creates SoftHSM2 tokens");
        return;
    }
    if !token::softhsm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/hsm-config/setup-token.sh");
    let run = || {
        Command::new("sh")
            .arg(script)
            .arg(dir.path().join("hsm"))
            .arg("scripted")
            .env("CERTGATE_HSM_PIN", "pin-4711")
            .env("CERTGATE_HSM_SO_PIN", "so-pin-0815")
            .output()
            .expect("run setup-token.sh")
    };
    let out = run();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    for secret in ["pin-4711", "so-pin-0815"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret));
    }
    let conf = stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("export SOFTHSM2_CONF="))
        .expect("the export line comes last");
    assert!(std::path::Path::new(conf).is_file());
    // Running it again keeps the token (and its keys).
    assert!(run().status.success());

    // SAFETY: this test's own process (nextest), before any PKCS#11 call or thread.
    unsafe { std::env::set_var("SOFTHSM2_CONF", conf) };
    let hsm = Hsm::open(&certgate::hsm::HsmSettings {
        module: token::SOFTHSM_MODULE.into(),
        token_label: "scripted".into(),
        token_uri: None,
        pin: Secret::new("pin-4711".into()),
        sessions: 1,
        keepalive_secs: 0,
        ecdsa_mechanism: certgate::config::EcdsaMechanism::Auto,
        rsa_signature: certgate::config::RsaSignature::Pkcs1,
        context_login: certgate::config::ContextLogin::Auto,
        key_always_authenticate: false,
    })
    .expect("the script's token opens with its PIN");
    let key = hsm.generate_key("ca-key", KeyAlgorithm::EcP256).unwrap();
    key.sign(b"scripted").unwrap();
}

#[test]
fn a_key_deleted_underneath_makes_signing_unusable_not_unavailable() {
    let Some((tok, hsm)) = open("deleted", 2) else {
        return;
    };
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    key.sign(b"before").unwrap();
    // Another process (an operator) deletes the private key; SoftHSM here re-reads the store.
    tok.pkcs11_tool(&["--delete-object", "--type", "privkey", "--label", "ca-key"]);
    for _ in 0..3 {
        match key.sign(b"after") {
            Err(SignError::Unusable(reason)) => assert!(reason.contains("ca-key"), "{reason}"),
            other => panic!("expected Unusable, got {other:?}"),
        }
    }
    // The sessions survived the stale handle: the token itself is healthy, the key is not.
    hsm.health().unwrap();
    assert!(matches!(key.health(), Err(SignError::Unusable(_))));
}

#[test]
fn token_information_is_read_whatever_the_token_puts_in_it() {
    let Some((tok, _hsm)) = open("facts", 1) else {
        return;
    };
    // The lookup by label above already read CK_TOKEN_INFO; `hsm info` reads all of it.
    let info = certgate::hsm::inspect(
        std::path::Path::new(token::module()),
        &tok.label,
        certgate::config::EcdsaMechanism::Auto,
    )
    .expect("the token is described");
    let t = info
        .tokens
        .iter()
        .find(|t| t.label == tok.label)
        .expect("the token is listed");
    assert!(t.initialized && t.user_pin_initialized, "{t:?}");
    assert!(t.flags.iter().any(|f| f == "TOKEN_INITIALIZED"), "{t:?}");
    assert!(!t.algorithms.is_empty());
    // Neither token offers CKM_ECDSA_SHA256/384 (`pkcs11-tool -M`): EC keys would sign with
    // raw CKM_ECDSA over a hash computed by certgate. Both offer CKM_SHA256_RSA_PKCS_PSS;
    // only SoftHSM2 offers CKM_SHA256_RSA_PKCS.
    let ock = tok.kind == token::Kind::OpenCryptoki;
    for a in &t.algorithms {
        let want = match a.algorithm {
            KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384 => "CKM_ECDSA (hash computed in software)",
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 if ock => {
                "CKM_RSA_PKCS (hash computed in software)"
            }
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
                "CKM_SHA256_RSA_PKCS (the token hashes)"
            }
            KeyAlgorithm::Rsa2048Pss | KeyAlgorithm::Rsa3072Pss => {
                "CKM_SHA256_RSA_PKCS_PSS (the token hashes)"
            }
        };
        assert_eq!(a.signing.as_deref(), Some(want), "{a:?}");
        // openCryptoki's soft token has no EC mechanisms at all.
        assert_eq!(a.usable, a.algorithm.is_rsa() || !ock, "{a:?}");
    }
    match tok.kind {
        token::Kind::OpenCryptoki => {
            // openCryptoki sets CKF_CLOCK_ON_TOKEN and writes hh:mm:ss into utcTime, which
            // is not the standard's YYYYMMDDhhmmss00: shown as unavailable, nothing refused.
            assert!(t.flags.iter().any(|f| f == "CLOCK_ON_TOKEN"), "{t:?}");
            assert!(t.clock.starts_with("unavailable"), "{t:?}");
            assert_eq!(t.manufacturer, "IBM Corp.");
            assert_eq!(t.pin_length, "4-8");
            // No CKM_SHA256_RSA_PKCS: RSA signs with CKM_RSA_PKCS and hashing in software.
            let rsa = t
                .algorithms
                .iter()
                .find(|a| a.algorithm == KeyAlgorithm::Rsa2048)
                .expect("rsa-2048 listed");
            assert!(rsa.usable, "{rsa:?}");
            assert!(
                rsa.mechanisms.iter().any(|m| m.name == "CKM_RSA_PKCS"),
                "{rsa:?}"
            );
        }
        token::Kind::SoftHsm2 => {
            assert_eq!(t.manufacturer, "SoftHSM project");
            assert_eq!(t.clock, "none");
        }
    }
    let text = info.render(&tok.label);
    assert!(text.contains(&format!("clock {}", t.clock)), "{text}");
}

/// Settings for `tok` with a context-login setting and key creation with or without
/// `CKA_ALWAYS_AUTHENTICATE`.
fn context_settings(
    tok: &TestToken,
    context_login: ContextLogin,
    key_always_authenticate: bool,
) -> certgate::hsm::HsmSettings {
    let mut settings = tok.settings(2);
    settings.context_login = context_login;
    settings.key_always_authenticate = key_always_authenticate;
    settings
}

/// The `Access:` line `pkcs11-tool -O` prints for the private key labelled `label`.
fn tool_access_line(tok: &TestToken, label: &str) -> String {
    let listing = tok.pkcs11_tool(&["-O", "--type", "privkey", "--label", label]);
    listing
        .lines()
        .find(|l| l.trim_start().starts_with("Access:"))
        .unwrap_or_else(|| panic!("no Access line: {listing}"))
        .to_owned()
}

/// SoftHSM2 honours `CKA_ALWAYS_AUTHENTICATE`; openCryptoki 3.8's soft token stores and
/// reports it but neither asks for nor accepts the login (see
/// `on_open_cryptoki_the_attribute_is_stored_not_enforced_and_never_signs`).
fn honours_always_authenticate() -> bool {
    if token::kind() == token::Kind::OpenCryptoki {
        eprintln!(
            "not applicable: openCryptoki's soft token does not enforce CKA_ALWAYS_AUTHENTICATE"
        );
        return false;
    }
    true
}

#[test]
fn a_key_with_always_authenticate_signs_after_a_context_login_each_time() {
    if !honours_always_authenticate() {
        return;
    }
    let Some(tok) = token::create("ctxauth") else {
        return;
    };
    let hsm = Hsm::open(&context_settings(&tok, ContextLogin::Auto, true)).expect("open");
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    // certgate and pkcs11-tool both read the attribute from the token.
    assert!(hsm.key_attributes("ca-key").unwrap().always_authenticate);
    let access = tool_access_line(&tok, "ca-key");
    assert!(access.contains("always authenticate"), "{access}");

    let before = hsm.context_logins_for_tests();
    for _ in 0..3 {
        sign_and_verify(&tok, &key, token::algorithm());
    }
    // One login per signature (a signature SoftHSMv2#901 spoils is made again, with its own).
    let logins = hsm.context_logins_for_tests() - before;
    assert!((3..=6).contains(&logins), "{logins} context logins");
    // Opened again as `serve` does, it still signs.
    let again = hsm.key("ca-key").unwrap();
    sign_and_verify(&tok, &again, token::algorithm());
    assert!(hsm.context_logins_for_tests() - before > logins);
}

#[test]
fn with_context_login_never_a_key_with_always_authenticate_is_refused_by_name() {
    if !honours_always_authenticate() {
        return;
    }
    let Some(tok) = token::create("ctxnever") else {
        return;
    };
    let auto = Hsm::open(&context_settings(&tok, ContextLogin::Auto, true)).expect("open");
    let key = auto.generate_key("ca-key", token::algorithm()).unwrap();
    let never = Hsm::open(&context_settings(&tok, ContextLogin::Never, false)).expect("open");
    match never.key("ca-key") {
        Err(HsmError::UnsupportedKey { label, reason }) => {
            assert_eq!(label, "ca-key");
            assert!(reason.contains("CKA_ALWAYS_AUTHENTICATE"), "{reason}");
            assert!(
                reason.contains("context_login = \"never\" turns off"),
                "{reason}"
            );
        }
        other => panic!("expected the key refused, got {other:?}"),
    }
    assert_eq!(never.context_logins_for_tests(), 0);
    // Refusing the key locked nothing: the token and the other handle still work.
    never.health().unwrap();
    key.sign(b"still signs with auto").unwrap();
}

#[test]
fn a_plain_key_makes_no_context_login() {
    let Some(tok) = token::create("ctxplain") else {
        return;
    };
    let hsm = Hsm::open(&context_settings(&tok, ContextLogin::Auto, false)).expect("open");
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    assert!(!hsm.key_attributes("ca-key").unwrap().always_authenticate);
    let access = tool_access_line(&tok, "ca-key");
    assert!(!access.contains("always authenticate"), "{access}");
    for _ in 0..3 {
        sign_and_verify(&tok, &key, token::algorithm());
    }
    assert_eq!(hsm.context_logins_for_tests(), 0);
}

#[test]
fn context_login_always_on_a_key_that_needs_none_is_refused_with_the_tokens_answer() {
    let Some(tok) = token::create("ctxalways") else {
        return;
    };
    let plain = Hsm::open(&context_settings(&tok, ContextLogin::Auto, false)).expect("open");
    let key = plain.generate_key("ca-key", token::algorithm()).unwrap();
    let always = Hsm::open(&context_settings(&tok, ContextLogin::Always, false)).expect("open");
    match always.key("ca-key") {
        Err(HsmError::UnsupportedKey { reason, .. }) => {
            assert!(
                reason.contains("refuses a context-specific login for it"),
                "{reason}"
            );
            assert!(
                reason.contains("does not report CKA_ALWAYS_AUTHENTICATE"),
                "{reason}"
            );
        }
        other => panic!("expected the key refused, got {other:?}"),
    }
    assert_eq!(always.context_logins_for_tests(), 1, "one try, no retry");
    // The session went back to the pool without a signing operation left open.
    always.health().unwrap();
    key.sign(b"the plain handle still signs").unwrap();
}

#[test]
fn on_open_cryptoki_the_attribute_is_stored_not_enforced_and_never_signs() {
    if token::kind() != token::Kind::OpenCryptoki {
        eprintln!("not applicable: SoftHSM2 enforces CKA_ALWAYS_AUTHENTICATE");
        return;
    }
    let Some(tok) = token::create("ctxock") else {
        return;
    };
    // The key is made with the attribute, but opening it with "auto" fails at the login:
    // the token answers CKR_USER_TYPE_INVALID to CKU_CONTEXT_SPECIFIC.
    let auto = Hsm::open(&context_settings(&tok, ContextLogin::Auto, true)).expect("open");
    match auto.generate_key("ca-key", token::algorithm()) {
        Err(HsmError::UnsupportedKey { reason, .. }) => {
            assert!(reason.contains("CKR_USER_TYPE_INVALID"), "{reason}");
            assert!(reason.contains("context_login = \"never\""), "{reason}");
        }
        other => panic!("expected the key refused, got {other:?}"),
    }
    assert!(auto.key_attributes("ca-key").unwrap().always_authenticate);
    // It signs without the login: "never" is the setting for this token.
    let never = Hsm::open(&context_settings(&tok, ContextLogin::Never, false)).expect("open");
    let key = never.key("ca-key").expect("opens with never");
    sign_and_verify(&tok, &key, token::algorithm());
    assert_eq!(never.context_logins_for_tests(), 0);
}

/// Through the binary: `init` with `key_always_authenticate` creates the CA key with the
/// attribute and self-signs the CA with a context login; `cert sign`, and `serve`'s CRL and
/// OCSP, sign with it; `hsm info` shows it (text and JSON); with `context_login = "never"` the
/// key is refused at its next use, naming the attribute. The PIN appears in no output.
#[test]
fn the_ca_signs_certificates_crls_and_ocsp_with_a_key_that_wants_a_login_per_signature() {
    if !honours_always_authenticate() {
        return;
    }
    let Some(fx) = Fixture::with_config(Db::Sqlite, |text| {
        *text = text.replace(
            "key_label = \"certgate-ca\"",
            "key_label = \"certgate-ca\"\nkey_always_authenticate = true",
        );
    }) else {
        return;
    };
    fx.init_with_users();

    let info = fx.ok(&["hsm", "info"]);
    assert!(
        info.contains("CKA_ALWAYS_AUTHENTICATE: a context-specific login before each signature"),
        "{info}"
    );
    assert!(info.contains("always_authenticate=true"), "{info}");
    let json: serde_json::Value =
        serde_json::from_str(&fx.ok(&["hsm", "info", "--format", "json"])).expect("json");
    assert_eq!(json["key"]["attributes"]["always_authenticate"], true);
    let listed = json["module"]["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .flat_map(|t| t["keys"].as_array().cloned().unwrap_or_default())
        .find(|k| k["label"] == "certgate-ca")
        .expect("the CA key is listed");
    assert_eq!(listed["always_authenticate"], true, "{listed}");
    assert_eq!(listed["context_login"], true, "{listed}");

    // A certificate, then its revocation in the CRL and OCSP, each signed by the key.
    let ca = fx.ca_pem();
    let (carol, _) = fx.obtain("carol");
    let verified = sh(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&ca)
        .arg(&carol));
    assert!(verified.contains(": OK"), "{verified}");
    let serial = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&carol));
    let serial = serial.trim().trim_start_matches("serial=").to_lowercase();
    fx.ok(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    let run = fx.serve();
    let crl = fx.path("ca.crl");
    let (status, _) = curl(
        &run.ca,
        &["-o", crl.to_str().unwrap(), &run.url("/crl/1.crl")],
    );
    assert_eq!(status, 200);
    let out = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-CAfile"])
        .arg(&run.ca)
        .arg("-in")
        .arg(&crl)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verify OK"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .to_lowercase()
            .contains(&serial),
        "the CRL lists the serial"
    );
    let ocsp = sh(Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&run.ca)
        .arg("-cert")
        .arg(&carol)
        .args(["-url", &run.url("/ocsp"), "-CAfile"])
        .arg(&run.ca)
        .arg("-verify_other")
        .arg(&run.ca));
    assert!(ocsp.contains(": revoked"), "{ocsp}");
    drop(run);

    // The same key with the login turned off: refused, by the attribute's name.
    let text = std::fs::read_to_string(&fx.config).unwrap().replace(
        "key_always_authenticate = true",
        "context_login = \"never\"",
    );
    std::fs::write(&fx.config, text).unwrap();
    // Opening the key (every signing command does, `issue authorize` too) signs the check
    // message, which the token refuses without the login.
    let err = fx.fails(&["issue", "authorize", "alice"]);
    assert!(err.contains("CKA_ALWAYS_AUTHENTICATE"), "{err}");
    assert!(err.contains("context_login = \"never\""), "{err}");

    // `hsm keygen --always-authenticate`: refused under "never", and under the default
    // ("auto") a key with the attribute, which signs (keygen opens it); without the flag none.
    let extra = [
        "hsm",
        "keygen",
        "--label",
        "extra",
        "--algorithm",
        "ec-p256",
        "--always-authenticate",
    ];
    let err = fx.fails(&extra);
    assert!(err.contains("context_login = \"never\" turns off"), "{err}");
    let text = std::fs::read_to_string(&fx.config)
        .unwrap()
        .replace("context_login = \"never\"", "");
    std::fs::write(&fx.config, text).unwrap();
    let out = fx.ok(&extra);
    assert!(out.contains("always_authenticate=true"), "{out}");
    let out = fx.ok(&[
        "hsm",
        "keygen",
        "--label",
        "plain",
        "--algorithm",
        "ec-p256",
    ]);
    assert!(out.contains("always_authenticate=false"), "{out}");
    assert!(!fx.transcript().contains(fx.pin), "the PIN was printed");
}

#[test]
fn a_refused_context_login_pin_is_not_tried_again() {
    if !honours_always_authenticate() {
        return;
    }
    let Some(tok) = token::create("ctxpin") else {
        return;
    };
    let hsm = Hsm::open(&context_settings(&tok, ContextLogin::Auto, true)).expect("open");
    let key = hsm.generate_key("ca-key", token::algorithm()).unwrap();
    key.sign(b"with the right PIN").unwrap();
    // The user PIN changes underneath (C_SetPIN in this process: SoftHSM2 keeps the PIN of
    // a process in memory): the sessions stay logged in, but the context-specific login
    // with certgate's PIN is refused.
    change_user_pin(&tok, "4321test");
    let before = hsm.context_logins_for_tests();
    match key.sign(b"after the change") {
        Err(SignError::Unusable(reason)) => assert!(reason.contains("refused the PIN"), "{reason}"),
        other => panic!("expected the PIN refused, got {other:?}"),
    }
    assert_eq!(hsm.context_logins_for_tests(), before + 1);
    // Latched: later signatures fail at once, without another login.
    for _ in 0..3 {
        assert!(matches!(key.sign(b"again"), Err(SignError::Unusable(_))));
    }
    assert_eq!(hsm.context_logins_for_tests(), before + 1);
}

/// `C_SetPIN` from the test's PIN to `new` on `tok`, through a second cryptoki handle on the
/// module certgate has initialised in this process (no `C_Finalize`: cryptoki's `Pkcs11`
/// does not finalise when dropped).
fn change_user_pin(tok: &TestToken, new: &str) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::types::AuthPin;

    let p = Pkcs11::new(token::module()).expect("load module");
    // Already initialised by certgate: CKR_CRYPTOKI_ALREADY_INITIALIZED is expected.
    let _ = p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = p
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| {
            p.get_token_info(*s)
                .map(|t| t.label() == tok.label)
                .unwrap_or(false)
        })
        .expect("token");
    let session = p.open_rw_session(slot).expect("session");
    session
        .set_pin(&AuthPin::new(PIN.into()), &AuthPin::new(new.into()))
        .expect("C_SetPIN");
}
