//! The customer's certificate lifecycle through the running gateway, against a SoftHSM2
//! token: EST with curl and strongSwan, codes that cannot be reused or guessed, the
//! re-issue rules of the admin API, revocation seen by the proxy, the CRL and OCSP, and
//! the renewal window.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use crate::fixture::{
    Db, Fixture, Running, call_app, curl, est_enroll, key_and_der_csr, pkcs7_to_pem, sh,
};

fn write(fx: &Fixture, name: &str, text: &str) -> PathBuf {
    let p = fx.path(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn serial_of(cert: &Path) -> String {
    let s = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert));
    s.trim().trim_start_matches("serial=").to_lowercase()
}

fn ocsp_status(run: &Running, cert: &Path) -> String {
    sh(Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&run.ca)
        .arg("-cert")
        .arg(cert)
        .args(["-url", &run.url("/ocsp"), "-CAfile"])
        .arg(&run.ca)
        .arg("-verify_other")
        .arg(&run.ca))
}

fn est_with_curl_and_strongswan(db: Db) {
    let Some(fx) = Fixture::new(db) else { return };
    fx.init_with_users();
    let run = fx.serve();

    assert_eq!(
        crate::fixture::http_status(run.admin, "/metrics"),
        Some(200)
    );

    // cacerts: the CA in a base64 PKCS#7 certs-only message.
    let (status, body) = curl(&run.ca, &[&run.url("/.well-known/est/cacerts")]);
    assert_eq!(status, 200, "{body}");
    let cacerts = pkcs7_to_pem(&fx, &body);
    assert!(cacerts.contains("certgate Test Customer CA"), "{cacerts}");

    // simpleenroll with curl; the certificate opens the app.
    let code = fx.authorize("carol");
    let (key, csr) = key_and_der_csr(&fx, "carol");
    let (status, pem) = est_enroll(&run, &fx, "carol", &code, &csr);
    assert_eq!(status, 200, "{pem}");
    let cert = write(&fx, "carol.pem", &pem);
    let (status, body) = call_app(&run, &cert, &key);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""x-certgate-user":"carol""#), "{body}");

    // A wrong code answers 401 with a Basic challenge, and the app is never reached.
    let (status, _) = est_enroll(&run, &fx, "bob", "AAAA-AAAA-AAAA-AAAA-AAAA", &csr);
    assert_eq!(status, 401);

    // strongSwan's EST client.
    let code = fx.authorize("bob");
    let (bob_key, bob_csr) = key_and_der_csr(&fx, "bob");
    let bob_cert = fx.path("bob.der");
    let out = Command::new("pki")
        .args(["--est", "--url", &run.url("/"), "--cacert"])
        .arg(&run.ca)
        .arg("--in")
        .arg(&bob_csr)
        .args(["--userpass", &format!("bob:{code}"), "--outform", "der"])
        .output()
        .expect("pki runs");
    std::fs::write(&bob_cert, &out.stdout).unwrap();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "pki --est failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bob_pem = fx.path("bob.pem");
    sh(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&bob_cert)
        .arg("-out")
        .arg(&bob_pem));
    let verify = sh(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&run.ca)
        .arg(&bob_pem));
    assert!(verify.contains("OK"), "{verify}");
    let (status, body) = call_app(&run, &bob_pem, &bob_key);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""x-certgate-user":"bob""#), "{body}");

    // Garbage to the OCSP responder: an OCSP error answer, counted as a refusal.
    let garbage = fx.path("garbage.ocsp");
    std::fs::write(&garbage, b"not an OCSP request").unwrap();
    let (status, _) = curl(
        &run.ca,
        &[
            "-H",
            "Content-Type: application/ocsp-request",
            "--data-binary",
            &format!("@{}", garbage.display()),
            &run.url("/ocsp"),
        ],
    );
    assert_eq!(status, 200, "OCSP errors travel in a 200 answer");

    // The two EST enrollments are on /metrics: two client signatures of CA 1, each timed,
    // and the outcomes of the three requests (bob's wrong code above included).
    let out = Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{}/metrics", run.admin)])
        .output()
        .expect("curl runs");
    let metrics = String::from_utf8_lossy(&out.stdout);
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} not in /metrics:\n{metrics}"))
    };
    assert_eq!(
        value(r#"certgate_ca_signatures_total{ca="1",kind="client"}"#),
        2.0
    );
    assert!(value("certgate_hsm_sign_duration_seconds_count") >= 2.0);
    assert!(value("certgate_hsm_sign_duration_seconds_sum") > 0.0);
    assert_eq!(value("certgate_hsm_sign_failures_total"), 0.0);
    assert_eq!(
        value(r#"certgate_issuance_requests_total{kind="obtain",outcome="issued"}"#),
        2.0
    );
    assert_eq!(
        value(r#"certgate_issuance_requests_total{kind="obtain",outcome="bad_code"}"#),
        1.0
    );
    // What the own paths refused, by surface and code: the OCSP garbage, and on EST the
    // wrong code (curl and strongSwan send their credentials with the first request).
    assert_eq!(
        value(r#"certgate_web_refusals_total{surface="ocsp",code="malformed_request"}"#),
        1.0
    );
    assert_eq!(
        value(r#"certgate_web_refusals_total{surface="est",code="unauthorized"}"#),
        1.0
    );
}

#[test]
fn est_sqlite() {
    est_with_curl_and_strongswan(Db::Sqlite);
}

#[test]
fn est_postgres() {
    est_with_curl_and_strongswan(Db::Postgres);
}

/// A code works once; a second key with it is refused; guessing locks it.
#[test]
fn codes_cannot_be_reused_or_guessed() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let code = fx.authorize("carol");
    let (_, csr) = key_and_der_csr(&fx, "carol");
    assert_eq!(est_enroll(&run, &fx, "carol", &code, &csr).0, 200);
    // The same request again (a lost answer) gets the same certificate...
    let (status, again) = est_enroll(&run, &fx, "carol", &code, &csr);
    assert_eq!(status, 200);
    // ... but another key with the used code is refused.
    let (_, other) = key_and_der_csr(&fx, "carol-other");
    // (Answered like a wrong code, so that nobody learns the state of a login ID; the
    // audit log has the reason.)
    let (status, body) = est_enroll(&run, &fx, "carol", &code, &other);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not correct"), "{body}");
    assert!(!again.is_empty());

    let code = fx.authorize("bob");
    let (_, csr) = key_and_der_csr(&fx, "bob");
    for guess in 0..4 {
        let (status, _) = est_enroll(
            &run,
            &fx,
            "bob",
            &format!("{guess:04}-0000-0000-0000-0000"),
            &csr,
        );
        assert_eq!(status, 401);
    }
    // The fifth wrong try locks the code.
    let (status, body) = est_enroll(&run, &fx, "bob", "0005-0000-0000-0000-0000", &csr);
    assert_eq!(status, 401, "{body}");
    let (status, body) = est_enroll(&run, &fx, "bob", &code, &csr);
    assert_eq!(
        status, 401,
        "the right code after 5 wrong ones must be locked: {body}"
    );
    let audit = fx.ok(&["audit", "export"]);
    assert!(
        audit.contains("code_locked") && audit.contains("code_used"),
        "{audit}"
    );
    assert!(audit.matches("code.refused").count() >= 6, "{audit}");
    fx.ok(&["audit", "verify"]);
}

fn api(run: &Running, cert: &Path, key: &Path, path: &str, extra: &[&str]) -> (u16, String) {
    let mut args = vec![
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-X",
        "POST",
    ];
    args.extend_from_slice(extra);
    let url = run.url(path);
    args.push(&url);
    curl(&run.ca, &args)
}

/// A JSON call as the administrator's page makes it (content type and double-submit token).
const JSON: [&str; 6] = [
    "-H",
    "Content-Type: application/json",
    crate::fixture::CSRF[0],
    crate::fixture::CSRF[1],
    crate::fixture::CSRF[2],
    crate::fixture::CSRF[3],
];

fn reissue_rules_and_revocation(db: Db) {
    let Some(fx) = Fixture::new(db) else { return };
    fx.init_with_users();
    let run = fx.serve();
    let (alice, alice_key) = fx.obtain("alice");
    let (carol, carol_key) = fx.obtain("carol");
    let (dave, dave_key) = fx.obtain("dave");
    assert_eq!(call_app(&run, &carol, &carol_key).0, 200);
    assert!(ocsp_status(&run, &carol).contains(": good"));

    // A general user may not re-issue anyone.
    let (status, body) = api(&run, &carol, &carol_key, "/api/v1/users/bob/reissue", &JSON);
    assert_eq!(status, 403, "{body}");
    // An admin may not re-issue itself, nor another contract's user.
    let (status, body) = api(
        &run,
        &alice,
        &alice_key,
        "/api/v1/users/alice/reissue",
        &JSON,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("self_reissue"), "{body}");
    let (status, body) = api(
        &run,
        &alice,
        &alice_key,
        "/api/v1/users/dave/reissue",
        &JSON,
    );
    assert_eq!(status, 403, "{body}");
    let (status, _) = api(&run, &dave, &dave_key, "/api/v1/users/carol/reissue", &JSON);
    assert_eq!(status, 403);
    // Cross-site requests are refused whoever sends them.
    let (status, body) = api(
        &run,
        &alice,
        &alice_key,
        "/api/v1/users/carol/reissue",
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Origin: https://evil.example",
        ],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross_site"), "{body}");
    let (status, _) = api(
        &run,
        &alice,
        &alice_key,
        "/api/v1/users/carol/reissue",
        &[
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
            "--data",
            "x=1",
        ],
    );
    assert_eq!(status, 403);
    // Same origin, JSON, but without the double-submit token: refused too.
    let (status, body) = api(
        &run,
        &alice,
        &alice_key,
        "/api/v1/users/carol/reissue",
        &["-H", "Content-Type: application/json"],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("cross_site"), "{body}");
    assert_eq!(
        call_app(&run, &carol, &carol_key).0,
        200,
        "refused calls changed nothing"
    );

    // The admin re-issues its own contract's general user: a new code, the old certificate
    // revoked — refused by the gateway, on the CRL, and revoked for OCSP.
    let (status, body) = api(
        &run,
        &alice,
        &alice_key,
        "/api/v1/users/carol/reissue",
        &JSON,
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let new_code = answer["code"].as_str().unwrap().to_owned();
    assert_eq!(
        answer["revoked_serial"].as_str().unwrap(),
        serial_of(&carol)
    );
    let (status, body) = call_app(&run, &carol, &carol_key);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("revoked"), "{body}");
    // The security log names the revoked certificate that was still used, and so does
    // the request's access line.
    let log = run.log();
    let carol_serial = serial_of(&carol);
    assert!(
        log.lines().any(|l| l.contains("certificate refused")
            && l.contains("revoked")
            && l.contains(&carol_serial)),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("certgate::access")
            && l.contains("status=403")
            && l.contains(&carol_serial)),
        "{log}"
    );
    // The audit log has it once: the same certificate's refusals within a minute are
    // counted, not written again.
    let (status, _) = call_app(&run, &carol, &carol_key);
    assert_eq!(status, 403);
    let refused_rows = || {
        fx.ok(&["audit", "export"])
            .lines()
            .filter(|l| {
                l.contains("\"action\":\"certificate.refused\"") && l.contains(&carol_serial)
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while refused_rows() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no certificate.refused row"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(refused_rows(), 1);
    // Renewing it is refused and named in the security log too.
    let named = |log: &str| {
        log.lines()
            .filter(|l| l.contains("certificate refused") && l.contains(&carol_serial))
            .count()
    };
    let before = named(&run.log());
    let (_, renewal_csr) = key_and_der_csr(&fx, "carol-revoked-renewal");
    let (status, body) = reenroll(&run, &fx, &carol, &carol_key, &renewal_csr);
    assert_eq!(status, 403, "{body}");
    assert!(named(&run.log()) > before, "{}", run.log());

    let crl = fx.path("ca.crl");
    let (status, _) = curl(
        &run.ca,
        &["-o", crl.to_str().unwrap(), &run.url("/crl/1.crl")],
    );
    assert_eq!(status, 200);
    let text = sh(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-CAfile"])
        .arg(&run.ca)
        .arg("-in")
        .arg(&crl));
    assert!(text.to_lowercase().contains(&serial_of(&carol)), "{text}");
    let verified = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-CAfile"])
        .arg(&run.ca)
        .arg("-in")
        .arg(&crl)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&verified.stderr).contains("verify OK"));
    assert!(ocsp_status(&run, &carol).contains(": revoked"));
    // The signed OCSP response itself is clean for pkilint.
    let resp = fx.path("ocsp.der");
    sh(Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&run.ca)
        .arg("-cert")
        .arg(&carol)
        .args(["-url", &run.url("/ocsp"), "-noverify", "-respout"])
        .arg(&resp));
    if Command::new("lint_ocsp_response")
        .arg("--help")
        .output()
        .is_ok()
    {
        let out = Command::new("lint_ocsp_response")
            .args(["lint", "-s", "WARNING"])
            .arg(&resp)
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim().is_empty(),
            "pkilint on the OCSP response:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if Command::new("lint_crl").arg("--help").output().is_err() {
        crate::fixture::missing("pkilint (lint_crl) is not installed");
    } else {
        let out = Command::new("lint_crl")
            .args(["lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING"])
            .arg(&crl)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Carol obtains again with the new code.
    let (key, csr) = fx.openssl_csr("carol-new", "ec:P-256");
    let pem = fx.ok(&[
        "cert",
        "sign",
        "carol",
        "--csr",
        csr.to_str().unwrap(),
        "--code",
        &new_code,
    ]);
    let fresh = write(&fx, "carol-new.pem", &pem);
    assert_eq!(call_app(&run, &fresh, &key).0, 200);

    // Staff re-issue the administrator: its certificate stops working too.
    fx.ok(&["issue", "reissue", "alice"]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(call_app(&run, &alice, &alice_key).0, 403);
}

#[test]
fn reissue_sqlite() {
    reissue_rules_and_revocation(Db::Sqlite);
}

#[test]
fn reissue_postgres() {
    reissue_rules_and_revocation(Db::Postgres);
}

/// EST re-enrollment with the current certificate: refused before the window opens (with
/// the date), accepted inside it; the new certificate works.
#[test]
fn renewal_window() {
    // 60-day certificates: a fresh one is 60 days from expiry, before the 30-day window.
    let Some(early) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 60");
    }) else {
        return;
    };
    early.init_with_users();
    let run = early.serve();
    let (cert, key) = early.obtain("carol");
    let (_, csr) = key_and_der_csr(&early, "carol-renew");
    let (status, body) = reenroll(&run, &early, &cert, &key, &csr);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("renewal opens on"), "{body}");
    drop(run);

    // 30-day certificates with a 30-day window: renewal is open from issuance.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
    }) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (cert, key) = fx.obtain("carol");
    let (status, body) = call_app(&run, &cert, &key);
    assert!(
        body.contains(r#""x-certgate-renewal-due":"true""#),
        "{status} {body}"
    );
    let (new_key, csr) = key_and_der_csr(&fx, "carol-renew");
    let (status, pem) = reenroll(&run, &fx, &cert, &key, &csr);
    assert_eq!(status, 200, "{pem}");
    let renewed = write(&fx, "carol-renewed.pem", &pem);
    assert_ne!(serial_of(&renewed), serial_of(&cert));
    // Before the new certificate is used, the old one is superseded and still logs in.
    let list = fx.ok(&["cert", "list", "--login", "carol"]);
    assert!(
        list.contains("\tsuperseded\t") && list.contains("\tcurrent\t"),
        "{list}"
    );
    assert_eq!(call_app(&run, &cert, &key).0, 200);
    // The new one's first use ends the overlap at once: the old one is revoked and no
    // longer logs in.
    assert_eq!(call_app(&run, &renewed, &new_key).0, 200);
    crate::faults::eventually(
        10,
        "the old certificate revoked at the new one's first use",
        || {
            fx.ok(&["cert", "list", "--login", "carol"])
                .contains("\trevoked\t")
        },
    );
    let list = fx.ok(&["cert", "list", "--login", "carol"]);
    assert!(list.contains("\tcurrent\t"), "{list}");
    crate::faults::eventually(10, "the old certificate refused", || {
        call_app(&run, &cert, &key).0 == 403
    });
    // Renewing the superseded certificate again is refused.
    let (_, csr2) = key_and_der_csr(&fx, "carol-renew2");
    let (status, _) = reenroll(&run, &fx, &cert, &key, &csr2);
    assert_ne!(status, 200);
}

fn reenroll(run: &Running, fx: &Fixture, cert: &Path, key: &Path, der_csr: &Path) -> (u16, String) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(der_csr).unwrap());
    let body = write(fx, "reenroll.b64", &b64);
    let (status, text) = curl(
        &run.ca,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", body.display()),
            &run.url("/.well-known/est/simplereenroll"),
        ],
    );
    if status == 200 {
        (status, pkcs7_to_pem(fx, &text))
    } else {
        (status, text)
    }
}

/// One key, one holder: a key certified for another login ID is refused, and so is a key
/// whose certificate was revoked as keyCompromise, for its own login ID too. A refusal
/// leaves the code usable.
fn a_key_is_certified_for_one_login_id_only(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    fx.init_with_users();
    let (carol, carol_key) = fx.obtain("carol");
    let csr_with = |name: &str, key: &Path| {
        let csr = fx.path(&format!("{name}.csr"));
        sh(Command::new("openssl")
            .args(["req", "-new", "-subj", &format!("/CN={name}"), "-key"])
            .arg(key)
            .arg("-out")
            .arg(&csr));
        csr
    };
    let sign = |login: &str, csr: &Path, code: &str| {
        fx.run(&[
            "cert",
            "sign",
            login,
            "--csr",
            csr.to_str().unwrap(),
            "--code",
            code,
        ])
    };

    // bob with carol's key: refused, and bob's code still works with a key of his own.
    let code = fx.authorize("bob");
    let out = sign("bob", &csr_with("bob-with-carols-key", &carol_key), &code);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let said = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(said.contains("certified for another login ID"), "{err}");
    // The answer does not name the other holder; the operators' security line does.
    assert!(
        !said.contains("carol"),
        "the other login ID is named: {said}"
    );
    assert!(err.contains("certgate::security"), "{err}");
    let (_, bob_csr) = fx.openssl_csr("bob", "ec:P-256");
    let out = sign("bob", &bob_csr, &code);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // carol's certificate revoked as keyCompromise: her key is not certified again, even
    // for her; a new key is.
    let serial = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&carol));
    let serial = serial.trim().trim_start_matches("serial=").to_owned();
    fx.ok(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    let code = fx.authorize("carol");
    let out = sign("carol", &csr_with("carol-again", &carol_key), &code);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("reported compromised"), "{err}");
    let (_, fresh) = fx.openssl_csr("carol-fresh", "ec:P-256");
    let out = sign("carol", &fresh, &code);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Both refusals are in the audit log, with their reasons.
    let audit = fx.ok(&["audit", "export"]);
    for code in ["key_in_use", "key_compromised"] {
        assert!(audit.contains(code), "{code} not audited:\n{audit}");
    }
}

#[test]
fn one_key_one_holder_sqlite() {
    a_key_is_certified_for_one_login_id_only(Db::Sqlite);
}

#[test]
fn one_key_one_holder_postgres() {
    a_key_is_certified_for_one_login_id_only(Db::Postgres);
}
