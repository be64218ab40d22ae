//! Renewal within `[renewal] grace_after_expiry_days`, against the real binary run some days
//! ahead of the clock with `faketime`: an expired certificate within its grace days renews
//! on the page's JSON call and by EST `simplereenroll`, and nothing else — the app route
//! refuses it; after the grace days, and for a disabled user, renewal is refused too.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use crate::fixture::{
    CSRF, Db, Fixture, Running, ServeAs, call_app, curl, key_and_der_csr, missing, pkcs7_to_pem,
};

/// Certificates valid for 30 days, renewable for 10 days after expiry.
fn fixture() -> Option<Fixture> {
    if Command::new("faketime").arg("--version").output().is_err()
        || !Path::new(LIBFAKETIME).exists()
    {
        missing("faketime is not installed (apt package faketime)")?;
    }
    Fixture::with_config(Db::Sqlite, |text| {
        *text = text.replace("validity_days = 365", "validity_days = 30");
        text.push_str("\n[renewal]\ngrace_after_expiry_days = 10\n");
    })
}

/// libfaketime as Debian's `faketime` package installs it.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// `certgate serve` with its clock `offset` ahead (a `faketime -f` offset such as `+32d`),
/// on a configuration file of its own (the fixture's base plus its listener and route).
fn serve_ahead(fx: &Fixture, offset: &str) -> Running {
    serve_ahead_as(fx, offset, "optional")
}

/// [`serve_ahead`] with the listener's `client_auth` set to `client_auth`.
fn serve_ahead_as(fx: &Fixture, offset: &str, client_auth: &str) -> Running {
    let config = fx.path(&format!("ahead{offset}-{client_auth}.toml"));
    let base = std::fs::read_to_string(&fx.config).expect("config");
    let base = base.split("\n[[listener]]").next().unwrap_or_default();
    std::fs::write(&config, base).expect("config");
    // `start` appends an `optional` listener to the file just before running the command,
    // so the command sets the listener's mode first, then runs `serve` with its clock moved.
    // libfaketime is preloaded into `serve` itself rather than through the `faketime`
    // program, which forks: ending the program would leave `serve` running after the test.
    let script = format!(
        "sed -i 's/^client_auth = \"optional\"$/client_auth = \"{client_auth}\"/' \"$0\" \
         && exec env LD_PRELOAD={LIBFAKETIME} FAKETIME={offset} \"$1\" --config \"$0\" serve"
    );
    fx.start(
        &config,
        "",
        ServeAs {
            argv: Some(vec![
                "sh".into(),
                "-c".into(),
                script.into(),
                config.clone().into(),
                env!("CARGO_BIN_EXE_certgate").into(),
            ]),
            env: Vec::new(),
            wait_ready: true,
        },
    )
}

fn with_cert<'a>(cert: &'a Path, key: &'a Path) -> [&'a str; 4] {
    [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]
}

/// `POST /certgate/api/renew` as the renew page sends it (JSON, double-submit token);
/// (status, body).
fn renew_on_page(
    fx: &Fixture,
    run: &Running,
    cert: &Path,
    key: &Path,
    name: &str,
) -> (u16, String) {
    let (_, csr) = fx.openssl_csr(name, "ec:P-256");
    let csr = std::fs::read_to_string(csr).expect("csr");
    let body = fx.path(&format!("{name}.json"));
    std::fs::write(&body, serde_json::json!({ "csr": csr }).to_string()).expect("body");
    let mut args = with_cert(cert, key).to_vec();
    let data = format!("@{}", body.display());
    let url = run.url("/certgate/api/renew");
    args.extend(CSRF);
    args.extend([
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &data,
        &url,
    ]);
    curl(&run.ca, &args)
}

/// EST `simplereenroll` with `cert`; (status, the new certificate's PEM or the refusal).
fn renew_by_est(fx: &Fixture, run: &Running, cert: &Path, key: &Path, name: &str) -> (u16, String) {
    let (_, csr) = key_and_der_csr(fx, name);
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).unwrap());
    let body = fx.path(&format!("{name}.b64"));
    std::fs::write(&body, b64).unwrap();
    let mut args = with_cert(cert, key).to_vec();
    let data = format!("@{}", body.display());
    let url = run.url("/.well-known/est/simplereenroll");
    args.extend([
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        &data,
        &url,
    ]);
    let (status, text) = curl(&run.ca, &args);
    if status != 200 {
        return (status, text);
    }
    (status, pkcs7_to_pem(fx, &text))
}

/// The certificate (PEM) of a successful page renewal, written to `name.pem`.
fn certificate_of(fx: &Fixture, answer: &str, name: &str) -> PathBuf {
    let v: serde_json::Value = serde_json::from_str(answer).expect("JSON answer");
    let pem = v["certificate"]
        .as_str()
        .expect("certificate in the answer");
    let path = fx.path(&format!("{name}.pem"));
    std::fs::write(&path, pem).expect("write");
    path
}

/// The state of the certificates of `login`, as `cert list` prints them.
fn cert_rows(fx: &Fixture, login: &str) -> String {
    fx.ok(&["cert", "list", "--login", login])
}

#[test]
fn expired_within_grace_renews_by_page_and_est_and_never_reaches_the_app() {
    let Some(fx) = fixture() else { return };
    fx.init_with_users();
    let (carol, carol_key) = fx.obtain("carol");
    let (bob, bob_key) = fx.obtain("bob");
    let (dave, dave_key) = fx.obtain("dave");
    fx.ok(&["user", "disable", "dave"]);
    // 32 days on: every certificate expired two days ago, within the 10 grace days.
    let run = serve_ahead(&fx, "+32d");

    // The handshake completes, but the app route refuses the expired certificate.
    for (cert, key) in [(&carol, &carol_key), (&bob, &bob_key)] {
        let (status, body) = call_app(&run, cert, key);
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("expired"), "{body}");
    }

    // The renew page's call renews carol's expired certificate.
    let (status, answer) = renew_on_page(&fx, &run, &carol, &carol_key, "carol-new");
    assert_eq!(status, 200, "{answer}");
    let renewed = certificate_of(&fx, &answer, "carol-renewed");
    let new_key = fx.path("carol-new.key");
    // The new certificate reaches the app; the old one still does not.
    let (status, body) = call_app(&run, &renewed, &new_key);
    assert_eq!(status, 200, "{body}");
    let (status, body) = call_app(&run, &carol, &carol_key);
    assert_eq!(status, 403, "{body}");
    // The old one is superseded now: it cannot renew a second time, by either way.
    let (status, answer) = renew_on_page(&fx, &run, &carol, &carol_key, "carol-again");
    assert_ne!(status, 200, "{answer}");
    let (status, answer) = renew_by_est(&fx, &run, &carol, &carol_key, "carol-est");
    assert_ne!(status, 200, "{answer}");

    // EST simplereenroll renews bob's expired certificate.
    let (status, pem) = renew_by_est(&fx, &run, &bob, &bob_key, "bob-new");
    assert_eq!(status, 200, "{pem}");
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");

    // A disabled user's expired certificate renews by neither way.
    let (status, answer) = renew_on_page(&fx, &run, &dave, &dave_key, "dave-new");
    assert_ne!(status, 200, "{answer}");
    let (status, answer) = renew_by_est(&fx, &run, &dave, &dave_key, "dave-est");
    assert_ne!(status, 200, "{answer}");

    // carol's new certificate was used: the old one was revoked then, not at the next
    // retirement pass.
    let rows = cert_rows(&fx, "carol");
    assert!(
        rows.contains("revoked") && rows.contains("current") && !rows.contains("superseded"),
        "{rows}"
    );
    let rows = cert_rows(&fx, "dave");
    assert!(!rows.contains("superseded"), "{rows}");
}

#[test]
fn after_the_grace_days_renewal_is_refused() {
    let Some(fx) = fixture() else { return };
    fx.init_with_users();
    let (carol, carol_key) = fx.obtain("carol");
    // 45 days on: expired 15 days ago, past the 10 grace days.
    let run = serve_ahead(&fx, "+45d");
    // The certificate no longer counts as the caller, as if none had been presented.
    let (status, answer) = renew_on_page(&fx, &run, &carol, &carol_key, "carol-new");
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("certificate_required"), "{answer}");
    let (status, answer) = renew_by_est(&fx, &run, &carol, &carol_key, "carol-est");
    assert_eq!(status, 403, "{answer}");
    let (status, body) = call_app(&run, &carol, &carol_key);
    assert_eq!(status, 403, "{body}");
    let rows = cert_rows(&fx, "carol");
    assert!(!rows.contains("superseded"), "{rows}");
}

#[test]
fn with_client_auth_required_the_expired_certificate_completes_the_handshake_only_to_renew() {
    let Some(fx) = fixture() else { return };
    fx.init_with_users();
    let (carol, carol_key) = fx.obtain("carol");
    let run = serve_ahead_as(&fx, "+32d", "required");
    assert!(
        std::fs::read_to_string(fx.path("ahead+32d-required.toml"))
            .expect("config")
            .contains("client_auth = \"required\""),
        "the listener runs in required mode"
    );
    // The handshake completes (an HTTP answer, not a TLS failure), the app refuses it.
    let (status, body) = call_app(&run, &carol, &carol_key);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
    let (status, pem) = renew_by_est(&fx, &run, &carol, &carol_key, "carol-new");
    assert_eq!(status, 200, "{pem}");
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");
    drop(run);

    // Past the grace days the handshake itself fails: no HTTP answer at all.
    let (dave, dave_key) = fx.obtain("dave");
    let run = serve_ahead_as(&fx, "+45d", "required");
    let (status, body) = renew_by_est(&fx, &run, &dave, &dave_key, "dave-new");
    assert_eq!(status, 0, "{body}");
}
