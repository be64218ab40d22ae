//! The key seam on a real SoftHSM2 token: the key store built from `[hsm]` by
//! `hsm::open_key_store`, used as the commands use it (through `dyn KeyStore`): keys opened,
//! generated and described by name, each failure of the kind its remedy needs, the PIN in no
//! message.

use std::path::Path;
use std::sync::Arc;

use certgate::config::Config;
use certgate::keys::{KeyAlgorithm, KeyRef, KeyStore, KeyStoreError, verify_signature};

use crate::support::token::{self, MODULE, PIN, TestToken};

/// A configuration whose `[hsm]` names `token_label` on the test module, with `pin` in a
/// file under `dir`.
fn config(dir: &Path, token_label: &str, pin: &str) -> Config {
    std::fs::write(dir.join("hsm-pin"), pin).expect("write the PIN file");
    let text = format!(
        r#"
[hsm]
module = "{MODULE}"
token_label = "{token_label}"
pin_file = "hsm-pin"
sessions = 2

[ca]
subject = "CN=certgate Test Customer CA,O=Example Bank"
validity_days = 365
public_url = "https://127.0.0.1:8443"
organization = "Example Bank corporate customers"
"#
    );
    Config::parse(&text, "keystore test", dir).expect("the test configuration parses")
}

fn open(tok: &TestToken, dir: &Path) -> Arc<dyn KeyStore> {
    Arc::new(certgate::hsm::open_key_store(&config(dir, &tok.label, PIN)).expect("opens"))
}

#[test]
fn the_token_opens_generates_and_describes_keys_by_name() {
    let Some(tok) = token::create("seam") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = open(&tok, dir.path());
    keys.health().expect("the store answers");
    let ca = KeyRef::label("ca-key");
    assert!(matches!(keys.open(&ca), Err(KeyStoreError::NotFound(_))));
    assert!(matches!(
        keys.describe_key(&ca),
        Err(KeyStoreError::NotFound(_))
    ));

    let generator = keys
        .generator()
        .expect("certgate may create keys in a token");
    let key = generator
        .generate(&ca, KeyAlgorithm::EcP384)
        .expect("generate");
    assert_eq!(key.algorithm(), KeyAlgorithm::EcP384);
    let signature = key.sign(b"through the seam").expect("sign");
    verify_signature(
        KeyAlgorithm::EcP384,
        key.public_key_der(),
        b"through the seam",
        &signature,
    )
    .expect("verifies");
    let taken = generator
        .generate(&ca, KeyAlgorithm::EcP256)
        .expect_err("a label is never reused");
    assert!(matches!(taken, KeyStoreError::AlreadyExists(_)), "{taken}");
    assert!(taken.to_string().contains("ca-key"), "{taken}");
    let opened = keys.open(&ca).expect("open");
    assert_eq!(opened.public_key_der(), key.public_key_der());
    assert_eq!(opened.algorithm(), KeyAlgorithm::EcP384);

    let described = keys.describe_key(&ca).expect("describe the key");
    assert!(described.is_safe(), "{:?}", described.unsafe_reason);
    assert_eq!(described.key, ca);
    assert_eq!(described.algorithm, Some(KeyAlgorithm::EcP384));
    assert_eq!(described.id_hex.len(), 32, "a 16-byte random CKA_ID");
    for (name, value) in [
        ("sensitive", true),
        ("extractable", false),
        ("decrypt", false),
    ] {
        assert!(
            described.properties.contains(&(name, value)),
            "{name}={value} in {:?}",
            described.properties
        );
    }
    assert_eq!(described.details["never_extractable"], true);
    assert_eq!(described.details["id_hex"], described.id_hex.as_str());

    let store = keys.describe().expect("describe the store");
    assert!(
        store.text.contains("label \"seam\" (configured)"),
        "{}",
        store.text
    );
    let token = store.details["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["label"] == "seam")
        .expect("the configured token is listed")
        .clone();
    let p384 = token["algorithms"]
        .as_array()
        .expect("algorithms")
        .iter()
        .find(|a| a["algorithm"] == "ec-p384")
        .expect("ec-p384")
        .clone();
    assert_eq!(p384["usable"], true, "{p384}");
}

#[test]
fn failures_to_open_have_the_kind_their_remedy_needs() {
    let Some(tok) = token::create("kinds") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // A token that is not there may be plugged in: unavailable.
    let absent = certgate::hsm::open_key_store(&config(dir.path(), "absent", PIN))
        .expect_err("no such token");
    assert!(matches!(absent, KeyStoreError::Unavailable(_)), "{absent}");
    assert_eq!(absent.to_string(), "cannot open the HSM");
    let cause = std::error::Error::source(&absent).map(ToString::to_string);
    assert_eq!(
        cause.as_deref(),
        Some("no token labelled \"absent\" is present")
    );
    // A wrong PIN needs an operator, and is never shown.
    let wrong = certgate::hsm::open_key_store(&config(dir.path(), &tok.label, "not-the-pin"))
        .expect_err("wrong PIN");
    assert!(matches!(wrong, KeyStoreError::Unusable(_)), "{wrong}");
    let chain = format!("{:#}", anyhow::Error::new(wrong));
    assert!(chain.contains("refused the PIN"), "{chain}");
    assert!(!chain.contains("not-the-pin"), "{chain}");
    // A PIN file that is gone: unusable, and the message says where it looked.
    let cfg = config(dir.path(), &tok.label, PIN);
    std::fs::remove_file(dir.path().join("hsm-pin")).expect("remove the PIN file");
    let unread = certgate::hsm::open_key_store(&cfg).expect_err("no PIN");
    assert!(matches!(unread, KeyStoreError::Unusable(_)), "{unread}");
    assert!(
        unread.to_string().contains("cannot read the HSM PIN"),
        "{unread}"
    );
    // The right PIN still works: one wrong try locked nothing.
    open(&tok, dir.path())
        .health()
        .expect("the right PIN opens");
}
