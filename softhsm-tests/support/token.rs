//! A throwaway SoftHSM2 token per test: a temporary token directory, its `softhsm2.conf`,
//! and a token initialised by label. `SOFTHSM2_CONF` is set for this process; subprocesses
//! get [`TestToken::conf`] through `Command::env`.
//!
//! When SoftHSM2 is not installed the test fails if `CI=true`, and otherwise is skipped with
//! a message saying why.

use std::path::{Path, PathBuf};
use std::process::Command;

use certgate::config::Secret;
use certgate::hsm::HsmSettings;

/// The module Debian's `softhsm2` package installs.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN of every test token (throwaway).
pub const PIN: &str = "1234-test";
/// The security officer PIN of every test token (throwaway).
pub const SO_PIN: &str = "5678-test";

/// A token that lives as long as this value.
pub struct TestToken {
    /// The token directory and config live here; removed on drop.
    _dir: tempfile::TempDir,
    /// The `softhsm2.conf` to pass to subprocesses as `SOFTHSM2_CONF`.
    pub conf: PathBuf,
    /// The token's label.
    pub label: String,
}

impl TestToken {
    /// Settings to open this token with `sessions` pooled sessions.
    pub fn settings(&self, sessions: usize) -> HsmSettings {
        HsmSettings {
            module: MODULE.into(),
            token_label: self.label.clone(),
            pin: Secret::new(PIN.into()),
            sessions,
        }
    }

    /// Runs `pkcs11-tool` on this token (logged in) with `args`; its stdout.
    pub fn pkcs11_tool(&self, args: &[&str]) -> String {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args([
                "--module",
                MODULE,
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

/// Creates a token labelled `label`, or `None` (after saying why) when SoftHSM2 is missing
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
    })
}

/// Whether SoftHSM2 and its tools are installed; if not, fails under `CI=true`, else says
/// why the test is skipped.
pub fn softhsm_available() -> bool {
    let Some(missing) = missing_tools() else {
        return true;
    };
    let why = format!("SoftHSM2 test skipped: {missing}");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why} (CI=true: SoftHSM2 must be installed)");
    }
    eprintln!("{why}");
    false
}

fn missing_tools() -> Option<String> {
    if !Path::new(MODULE).exists() {
        return Some(format!(
            "the module {MODULE} is not installed (Debian package softhsm2)"
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
