//! `[gateway] enroll_host`: certgate's pages and `/api/v1/` only on their own host name, so
//! that script on an app's origin cannot reach the contract administrator's API; the app
//! route is not served on that host; EST, CRL, OCSP and the pages' assets stay everywhere.
//! Against the real binary over real TLS: `localhost` is the enroll host, `127.0.0.1` the
//! app's host (the server certificate names both).

use std::path::Path;
use std::process::Command;

use crate::fixture::{CSRF, Db, Fixture, Running, curl};

fn fixture() -> Option<Fixture> {
    Fixture::with_config(Db::Sqlite, |text| {
        *text = text.replace(
            "public_url = \"https://127.0.0.1:8443\"",
            "public_url = \"https://localhost:8443\"",
        );
        text.push_str("\n[gateway]\nenroll_host = \"localhost\"\n");
    })
}

/// GET `path` on `host` (`localhost` is resolved to 127.0.0.1), with a certificate when
/// given; (status, body).
fn get(run: &Running, host: &str, path: &str, cert: Option<(&Path, &Path)>) -> (u16, String) {
    let resolve = format!("localhost:{}:127.0.0.1", run.https);
    let url = format!("https://{host}:{}{path}", run.https);
    let mut args = vec!["--resolve", &resolve, "-H", "Accept: application/json"];
    if let Some((c, k)) = cert {
        args.extend(["--cert", c.to_str().unwrap(), "--key", k.to_str().unwrap()]);
    }
    args.push(&url);
    curl(&run.ca, &args)
}

/// `config check` on the running configuration (a listener and an app route): valid
/// either way, with advice to set `enroll_host` only when it is missing.
fn advice_names_enroll_host_only_without_it(fx: &Fixture) {
    let with = std::fs::read_to_string(&fx.config).expect("config");
    let without = fx.path("without-enroll-host.toml");
    std::fs::write(&without, with.replace("enroll_host = \"localhost\"", "")).expect("config");
    for (config, advised) in [(&fx.config, false), (&without, true)] {
        let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .arg("--config")
            .arg(config)
            .args(["config", "check", "--format", "json"])
            .env("CERTGATE_HSM_PIN", fx.pin)
            .output()
            .expect("certgate runs");
        let check: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("one JSON document");
        assert_eq!(check["valid"], true, "{check}");
        let warnings = check["warnings"].as_array().expect("warnings");
        let names_it = warnings
            .iter()
            .any(|w| w.as_str().is_some_and(|w| w.contains("enroll_host")));
        assert_eq!(names_it, advised, "{}: {check}", config.display());
    }
}

#[test]
fn pages_and_admin_api_live_only_on_the_enroll_host() {
    let Some(fx) = fixture() else { return };
    fx.init_with_users();
    let (alice, alice_key) = fx.obtain("alice");
    let run = fx.serve();
    advice_names_enroll_host_only_without_it(&fx);
    let (cert, key) = (alice.as_path(), alice_key.as_path());
    let alice = Some((cert, key));

    // The app's host: no pages, no admin API, nor the renew page.
    for path in [
        "/certgate/",
        "/certgate/obtain",
        "/certgate/renew",
        "/certgate/admin",
        "/api/v1/users",
    ] {
        let (status, body) = get(&run, "127.0.0.1", path, alice);
        assert_eq!(status, 404, "{path}: {body}");
    }
    // The enroll host serves them.
    let (status, body) = get(&run, "localhost", "/certgate/", None);
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&run, "localhost", "/api/v1/users", alice);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("carol"), "{body}");

    // The app route is served on the app's host only.
    let (status, body) = get(&run, "127.0.0.1", "/", alice);
    assert_eq!(status, 200, "{body}");
    let (status, body) = get(&run, "localhost", "/", alice);
    assert_eq!(status, 404, "{body}");

    // What certificates and devices name, and the interstitial's assets, stay everywhere.
    for path in ["/.well-known/est/cacerts", "/certgate/assets/style.css"] {
        let (status, body) = get(&run, "127.0.0.1", path, None);
        assert_eq!(status, 200, "{path}: {body}");
    }

    // On the enroll host a state-changing call still needs the double-submit token.
    let resolve = format!("localhost:{}:127.0.0.1", run.https);
    let url = format!(
        "https://localhost:{}/api/v1/users/carol/authorize",
        run.https
    );
    let post = |extra: &[&str]| {
        let mut args = vec![
            "--resolve",
            &resolve,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-H",
            "Content-Type: application/json",
            "--data",
            "{}",
        ];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&run.ca, &args)
    };
    let (status, body) = post(&[]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross_site"), "{body}");
    let (status, body) = post(&CSRF);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"code\""), "{body}");
}

#[test]
fn config_check_explains_an_enroll_host_the_notices_cannot_reach() {
    let Some(fx) = fixture() else { return };
    let text = std::fs::read_to_string(&fx.config).expect("config");
    for (bad, says) in [
        (
            text.replace(
                "public_url = \"https://localhost:8443\"",
                "public_url = \"https://ib.bank.example\"",
            ),
            "public_url",
        ),
        (
            text.replace(
                "enroll_host = \"localhost\"",
                "enroll_host = \"https://localhost\"",
            ),
            "bare lower-case host name",
        ),
    ] {
        let path = fx.path("bad.toml");
        std::fs::write(&path, bad).expect("config");
        let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .arg("--config")
            .arg(&path)
            .args(["config", "check"])
            .env("CERTGATE_HSM_PIN", fx.pin)
            .output()
            .expect("certgate runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{says}: {stderr}");
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
    fx.ok(&["config", "check"]);
}
