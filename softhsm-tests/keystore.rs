//! The key seam on a real SoftHSM2 token: the key store built from `[hsm]` by
//! `hsm::open_key_store`, used as the commands use it (through `dyn KeyStore`): keys opened,
//! generated and described by name, each failure of the kind its remedy needs, the PIN in no
//! message.

use std::path::Path;
use std::sync::Arc;

use certgate::config::Config;
use certgate::keys::{KeyAlgorithm, KeyRef, KeyStore, KeyStoreError, verify_signature};

use crate::support::token::{self, Kind, PIN, TestToken};

/// A configuration whose `[hsm]` names `token_label` on the test module, with `pin` in a
/// file under `dir`.
fn config(dir: &Path, token_label: &str, pin: &str) -> Config {
    config_with(dir, &format!("token_label = \"{token_label}\""), pin)
}

/// Like [`config`], with `names` naming the token (and maybe the key) in `[hsm]`.
fn config_with(dir: &Path, names: &str, pin: &str) -> Config {
    std::fs::write(dir.join("hsm-pin"), pin).expect("write the PIN file");
    let module = token::module();
    let text = format!(
        r#"
[hsm]
module = "{module}"
{names}
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
    // A non-default algorithm: EC P-384 where the token has EC, else RSA 3072.
    let algorithm = match tok.kind {
        Kind::SoftHsm2 => KeyAlgorithm::EcP384,
        Kind::OpenCryptoki => KeyAlgorithm::Rsa3072,
    };
    let key = generator.generate(&ca, algorithm).expect("generate");
    assert_eq!(key.algorithm(), algorithm);
    let signature = key.sign(b"through the seam").expect("sign");
    verify_signature(
        algorithm,
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
    assert_eq!(opened.algorithm(), algorithm);

    let described = keys.describe_key(&ca).expect("describe the key");
    assert!(described.is_safe(), "{:?}", described.unsafe_reason);
    assert_eq!(described.key, ca);
    assert_eq!(described.algorithm, Some(algorithm));
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
        store
            .text
            .contains(&format!("label \"{}\" (configured)", tok.label)),
        "{}",
        store.text
    );
    // Each key on the token is named by its RFC 7512 URI.
    let uri = format!(
        "pkcs11:token={};object=ca-key;id=%{};type=private",
        tok.label,
        described
            .id_hex
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("%")
    );
    assert!(
        store.text.contains(&format!("key \"ca-key\": {uri}")),
        "{}",
        store.text
    );
    let token = store.details["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["label"] == tok.label.as_str())
        .expect("the configured token is listed")
        .clone();
    assert_eq!(token["keys"][0]["uri"], uri.as_str());
    let support = token["algorithms"]
        .as_array()
        .expect("algorithms")
        .iter()
        .find(|a| a["algorithm"] == algorithm.as_str())
        .expect("the algorithm is listed")
        .clone();
    assert_eq!(support["usable"], true, "{support}");
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
    let wrong = certgate::hsm::open_key_store(&config(dir.path(), &tok.label, "wrong-12"))
        .expect_err("wrong PIN");
    assert!(matches!(wrong, KeyStoreError::Unusable(_)), "{wrong}");
    let chain = format!("{:#}", anyhow::Error::new(wrong));
    assert!(chain.contains("refused the PIN"), "{chain}");
    assert!(!chain.contains("wrong-12"), "{chain}");
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

#[test]
fn a_key_uri_with_an_id_generates_under_that_id_and_opens_only_that_key() {
    let Some(tok) = token::create("by-uri") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let names = format!(
        "token = \"pkcs11:token={}\"\nkey = \"pkcs11:object=uri-key;id=%C0%FF%EE;type=private\"",
        tok.label
    );
    let cfg = config_with(dir.path(), &names, PIN);
    assert_eq!(cfg.hsm.key_label, "uri-key");
    let keys: Arc<dyn KeyStore> =
        Arc::new(certgate::hsm::open_key_store(&cfg).expect("opens by token URI"));
    let key_ref = KeyRef::label(&cfg.hsm.key_label);
    let generator = keys.generator().expect("may create keys");
    generator
        .generate(&key_ref, token::algorithm())
        .expect("generate");
    let described = keys.describe_key(&key_ref).expect("describe");
    assert_eq!(described.id_hex, "c0ffee", "the URI's id became the CKA_ID");
    keys.open(&key_ref).expect("opens with the id");

    // The same label with another id in the URI: that key is not there.
    let other = config_with(dir.path(), &names.replace("%C0%FF%EE", "%01"), PIN);
    let keys = certgate::hsm::open_key_store(&other).expect("opens");
    assert!(matches!(
        keys.open(&key_ref),
        Err(KeyStoreError::NotFound(_))
    ));

    // A token URI whose serial does not match finds no token.
    let wrong_serial = config_with(
        dir.path(),
        &format!(
            "token = \"pkcs11:token={};serial=no-such-serial\"",
            tok.label
        ),
        PIN,
    );
    let err = certgate::hsm::open_key_store(&wrong_serial).expect_err("no such token");
    assert!(matches!(err, KeyStoreError::Unavailable(_)), "{err}");
}
