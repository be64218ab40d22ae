//! A token per test, of the kind `CERTGATE_TEST_TOKEN` names:
//!
//! - `softhsm2` (the default): a throwaway SoftHSM2 token in a temporary folder, initialised
//!   by label. `SOFTHSM2_CONF` is set for this process; subprocesses get [`TestToken::conf`]
//!   through `Command::env`.
//! - `opencryptoki`: openCryptoki's software token, which exists once per machine (slot
//!   daemon `pkcsslotd`), set up by scripts/setup-debian.sh with the label [`OCK_LABEL`] and
//!   PINs of at most 8 characters (its limit). Tests on it run one at a time (nextest profile
//!   `opencryptoki`); every object on it is deleted before and after each test, so the label
//!   must be one no real key lives under.
//!
//! When the token's software is missing the test fails if `CI=true`, and otherwise is
//! skipped with a message saying why.

use std::path::{Path, PathBuf};
use std::process::Command;

use certgate::config::{ContextLogin, EcdsaMechanism, RsaSignature, Secret};
use certgate::hsm::HsmSettings;
use certgate::keys::KeyAlgorithm;

/// The module Debian's `softhsm2` package installs.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The module Debian's `opencryptoki` package installs.
pub const OCK_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so";
/// The label scripts/setup-debian.sh gives openCryptoki's soft token. Tests wipe it.
pub const OCK_LABEL: &str = "certgate-test";
/// The user PIN of every test token (throwaway; 8 characters, openCryptoki's maximum).
pub const PIN: &str = "1234test";
/// The security officer PIN of every test token (throwaway).
pub const SO_PIN: &str = "5678test";

/// Which PKCS#11 implementation the tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SoftHsm2,
    OpenCryptoki,
}

/// The kind `CERTGATE_TEST_TOKEN` selects (`softhsm2` when unset).
pub fn kind() -> Kind {
    match std::env::var("CERTGATE_TEST_TOKEN").as_deref() {
        Ok("opencryptoki") => Kind::OpenCryptoki,
        Ok("" | "softhsm2") | Err(_) => Kind::SoftHsm2,
        Ok(other) => panic!("CERTGATE_TEST_TOKEN={other:?}: use softhsm2 or opencryptoki"),
    }
}

/// The module of the selected kind.
pub fn module() -> &'static str {
    match kind() {
        Kind::SoftHsm2 => SOFTHSM_MODULE,
        Kind::OpenCryptoki => OCK_MODULE,
    }
}

/// The key algorithm tests use when any will do: openCryptoki's soft token in Debian 12
/// offers no EC mechanism at all, so RSA there.
pub fn algorithm() -> KeyAlgorithm {
    match kind() {
        Kind::SoftHsm2 => KeyAlgorithm::EcP256,
        Kind::OpenCryptoki => KeyAlgorithm::Rsa2048,
    }
}

/// Whether the selected token can hold `algorithm`; says why not (the test then returns).
pub fn supports(algorithm: KeyAlgorithm) -> bool {
    let ec = matches!(algorithm, KeyAlgorithm::EcP256 | KeyAlgorithm::EcP384);
    if ec && kind() == Kind::OpenCryptoki {
        eprintln!("not applicable: openCryptoki's soft token has no EC mechanisms");
        return false;
    }
    true
}

/// The `pkcs11-tool --key-type` of the selected kind's default algorithm.
pub fn tool_key_type() -> &'static str {
    match kind() {
        Kind::SoftHsm2 => "EC:prime256v1",
        Kind::OpenCryptoki => "rsa:2048",
    }
}

/// A token that lives as long as this value.
pub struct TestToken {
    /// The token directory and config (SoftHSM2) or a scratch folder; removed on drop.
    _dir: tempfile::TempDir,
    /// The `softhsm2.conf` to pass to subprocesses as `SOFTHSM2_CONF` (an empty file for
    /// openCryptoki, which has no such file).
    pub conf: PathBuf,
    /// The token's label.
    pub label: String,
    pub kind: Kind,
}

impl TestToken {
    /// Settings to open this token with `sessions` pooled sessions.
    pub fn settings(&self, sessions: usize) -> HsmSettings {
        HsmSettings {
            module: module().into(),
            token_label: self.label.clone(),
            token_uri: None,
            pin: Secret::new(PIN.into()),
            sessions,
            keepalive_secs: 0,
            ecdsa_mechanism: EcdsaMechanism::Auto,
            rsa_signature: RsaSignature::Pkcs1,
            context_login: ContextLogin::Auto,
            key_always_authenticate: false,
        }
    }

    /// Runs `pkcs11-tool` on this token (logged in) with `args`; its stdout.
    pub fn pkcs11_tool(&self, args: &[&str]) -> String {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args([
                "--module",
                module(),
                "--token-label",
                &self.label,
                "--login",
                "--pin",
                PIN,
            ])
            .args(args)
            .output()
            .expect("run pkcs11-tool");
        assert!(
            out.status.success(),
            "pkcs11-tool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for TestToken {
    fn drop(&mut self) {
        if self.kind == Kind::OpenCryptoki {
            // This process holds the module initialised (certgate's context is process-wide),
            // so the clean-up runs in a child: this test binary, running only `wipe` below.
            let exe = std::env::current_exe().expect("the test binary");
            let status = Command::new(exe)
                .args([
                    "--exact",
                    "support::token::wipe_open_cryptoki_test_token",
                    "--ignored",
                    "--nocapture",
                ])
                .env("CERTGATE_TEST_TOKEN", "opencryptoki")
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                eprintln!("warning: could not delete the test's objects from {OCK_LABEL:?}");
            }
        }
    }
}

/// Creates a token labelled `label` (SoftHSM2), or prepares openCryptoki's one token (its
/// label is always [`OCK_LABEL`]); `None` (after saying why) when the software is missing
/// outside CI.
pub fn create(label: &str) -> Option<TestToken> {
    // Logs show with a failing test (nextest prints its output); RUST_LOG narrows them.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "certgate=debug".into()),
        )
        .with_test_writer()
        .try_init();
    match kind() {
        Kind::SoftHsm2 => create_softhsm(label),
        Kind::OpenCryptoki => create_open_cryptoki(),
    }
}

fn create_softhsm(label: &str) -> Option<TestToken> {
    if !softhsm_available() {
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).expect("token dir");
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .expect("write softhsm2.conf");
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            SO_PIN,
            "--pin",
            PIN,
        ])
        .output()
        .expect("run softhsm2-util");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SAFETY: nextest runs each test in its own process, and this runs before the test makes
    // any PKCS#11 call or starts a thread, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("SOFTHSM2_CONF", &conf) };
    Some(TestToken {
        _dir: dir,
        conf,
        label: label.to_owned(),
        kind: Kind::SoftHsm2,
    })
}

fn create_open_cryptoki() -> Option<TestToken> {
    if let Some(missing) = open_cryptoki_missing() {
        skip_or_fail(&format!("openCryptoki test skipped: {missing}"));
        return None;
    }
    // Before this test's first PKCS#11 call: the library is initialised and finalised here,
    // and certgate initialises it afresh afterwards.
    wipe();
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(&conf, "").expect("placeholder conf");
    Some(TestToken {
        _dir: dir,
        conf,
        label: OCK_LABEL.to_owned(),
        kind: Kind::OpenCryptoki,
    })
}

/// Deletes every object on openCryptoki's test token (it is the test token by its label:
/// a token with another label is never touched).
fn wipe() {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::session::UserType;
    use cryptoki::types::AuthPin;

    let p = Pkcs11::new(OCK_MODULE).expect("load openCryptoki");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = p
        .get_slots_with_token()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|s| {
            // cryptoki cannot parse this token's info (its clock field): read it raw.
            pkcs11_token_info::token_info(Path::new(OCK_MODULE).as_os_str(), s.id()).is_ok_and(
                |t| {
                    t.label.starts_with(OCK_LABEL.as_bytes())
                        && t.label[OCK_LABEL.len()..].iter().all(|b| *b == b' ')
                },
            )
        })
        .unwrap_or_else(|| {
            panic!("no openCryptoki token labelled {OCK_LABEL:?}: run scripts/setup-debian.sh")
        });
    let session = p.open_rw_session(slot).expect("C_OpenSession");
    session
        .login(UserType::User, Some(&AuthPin::from(PIN)))
        .expect("log in to the test token");
    for handle in session.find_objects(&[]).expect("C_FindObjects") {
        session.destroy_object(handle).expect("C_DestroyObject");
    }
    drop(session);
    p.finalize().expect("C_Finalize");
}

/// Run by [`TestToken`]'s drop in a child process; not a test of its own.
#[test]
#[ignore = "the openCryptoki clean-up step, run by the tests themselves"]
fn wipe_open_cryptoki_test_token() {
    if kind() == Kind::OpenCryptoki {
        wipe();
    }
}

/// Why openCryptoki's test token cannot be used, if it cannot.
fn open_cryptoki_missing() -> Option<String> {
    if !Path::new(OCK_MODULE).exists() {
        return Some(format!(
            "the module {OCK_MODULE} is not installed (Debian package opencryptoki)"
        ));
    }
    if Command::new("pkcs11-tool").arg("--help").output().is_err() {
        return Some("pkcs11-tool is not on PATH (Debian package opensc)".into());
    }
    let listed = Command::new("pkcs11-tool")
        .args(["--module", OCK_MODULE, "--list-token-slots"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !listed.contains(&format!("token label        : {OCK_LABEL}")) {
        return Some(format!(
            "no token labelled {OCK_LABEL:?} (is pkcsslotd running? scripts/setup-debian.sh sets it up)"
        ));
    }
    None
}

fn skip_or_fail(why: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} (CI=true: the token must be set up)");
    }
    eprintln!("{why}");
}

/// Whether SoftHSM2 and its tools are installed; if not, fails under `CI=true`, else says
/// why the test is skipped.
pub fn softhsm_available() -> bool {
    let Some(missing) = missing_tools() else {
        return true;
    };
    skip_or_fail(&format!("SoftHSM2 test skipped: {missing}"));
    false
}

fn missing_tools() -> Option<String> {
    if !Path::new(SOFTHSM_MODULE).exists() {
        return Some(format!(
            "the module {SOFTHSM_MODULE} is not installed (Debian package softhsm2)"
        ));
    }
    for tool in ["softhsm2-util", "pkcs11-tool"] {
        let found = Command::new(tool).arg("--help").output().is_ok();
        if !found {
            return Some(format!(
                "{tool} is not on PATH (Debian packages softhsm2, opensc)"
            ));
        }
    }
    None
}
