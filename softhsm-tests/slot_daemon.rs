//! A token behind a slot daemon that goes away and comes back (issue 19): openCryptoki's
//! `pkcsslotd`, killed and started again under a running signer.
//!
//! What was found (openCryptoki 3.8, soft token): the library needs the daemon only in
//! `C_Initialize`. An initialised process keeps signing, opening sessions and logging in
//! while the daemon is down; a new process (or a re-initialisation) fails with
//! `CKR_FUNCTION_FAILED` and the library stays uninitialised. So certgate is hurt only when
//! it must re-initialise during the outage: it then answers "unavailable" (with a hint at the
//! daemon), counts it, and signs again once the daemon is back, without a restart.
//!
//! Only the openCryptoki pass applies (SoftHSM2 has no daemon): under SoftHSM2 the test says
//! so and returns.

use std::process::Command;
use std::time::{Duration, Instant};

use certgate::ca::{KeyAlgorithm, KeyBackend, SignError, verify_signature};
use certgate::hsm::{Hsm, HsmKey};

use crate::support::slot_daemon::SlotDaemon;
use crate::support::token::{self, Kind, OCK_LABEL, OCK_MODULE};

fn signs(key: &HsmKey, message: &[u8]) {
    let signature = key.sign(message).expect("sign");
    verify_signature(
        KeyAlgorithm::Rsa2048,
        key.public_key_der(),
        message,
        &signature,
    )
    .expect("the signature verifies");
}

fn recoveries(key: &HsmKey) -> u64 {
    key.sessions().expect("session use").recoveries
}

#[test]
fn signing_survives_the_slot_daemon_restarting() {
    if token::kind() != Kind::OpenCryptoki {
        eprintln!(
            "not applicable: SoftHSM2 has no slot daemon (runs in the openCryptoki pass, CERTGATE_TEST_TOKEN=opencryptoki)"
        );
        return;
    }
    let Some(tok) = token::create(OCK_LABEL) else {
        return;
    };
    let hsm = Hsm::open(&tok.settings(2)).expect("open the token");
    let key = hsm
        .generate_key("daemon-restart", KeyAlgorithm::Rsa2048)
        .expect("generate the key");
    signs(&key, b"before");
    let before = recoveries(&key);
    // Declared after the token: dropped first, so the daemon is back for the token's clean-up.
    let mut daemon = SlotDaemon::new();
    daemon.stop();

    // The running process does not notice: its sessions sign, nothing is recovered.
    signs(&key, b"daemon down");
    key.health().expect("healthy while the daemon is down");
    assert_eq!(recoveries(&key), before);
    // A new process cannot even initialise the library meanwhile.
    let out = Command::new("pkcs11-tool")
        .args(["--module", OCK_MODULE, "--list-token-slots"])
        .output()
        .expect("run pkcs11-tool");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("C_Initialize"),
        "a new process initialised the library without the daemon: {said}"
    );

    // Every session lost while the daemon is down (as on a device reset): re-initialising
    // fails, so signing fails as unavailable, says why, and counts.
    hsm.close_all_sessions_for_tests();
    match key.sign(b"sessions lost") {
        Err(SignError::Unavailable(why)) => assert!(why.contains("pkcsslotd"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(recoveries(&key) > before);
    // Later calls, held back by the re-initialisation backoff, still say why.
    match key.health() {
        Err(SignError::Unavailable(why)) => assert!(why.contains("pkcsslotd"), "{why}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }

    // The daemon is back: signing works again in this process, once the re-initialisation
    // backoff (at most 30 s) lets the next attempt through.
    daemon.start();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match key.sign(b"daemon back") {
            Ok(_) => break,
            Err(SignError::Unavailable(why)) if Instant::now() < deadline => {
                eprintln!("not yet: {why}");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("signing did not come back: {e}"),
        }
    }
    signs(&key, b"after");
    key.health().expect("healthy again");
    hsm.health().expect("the pool is whole again");
}
