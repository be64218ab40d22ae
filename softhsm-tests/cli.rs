//! End to end through the real binary against a real SoftHSM2 token: `init`, issuance
//! through `cert sign`, refusals, revocation and staff re-issue, on SQLite and PostgreSQL.

use std::process::Command;

use crate::fixture::{Db, Fixture, PIN, last_line, sh};

fn openssl_text(cert: &std::path::Path) -> String {
    sh(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert))
}

/// `init` makes a CA whose private key the token reports sensitive and never extractable,
/// and whose certificate carries the token's public key. Running it again changes nothing.
fn init_makes_a_safe_key_and_matching_ca(db: Db) {
    let Some(fx) = Fixture::new(db) else { return };
    let first = fx.ok(&["init"]);
    assert!(first.contains("generated"), "{first}");
    let ca1 = fx.ok(&["ca", "cert"]);
    let again = fx.ok(&["init"]);
    assert!(
        again.contains("found") && again.contains("matches"),
        "{again}"
    );
    assert_eq!(fx.ok(&["ca", "cert"]), ca1, "init must be idempotent");
    let audit = fx.ok(&["audit", "export"]);
    assert_eq!(
        audit.matches("\"action\":\"hsm.keygen\"").count(),
        1,
        "{audit}"
    );
    assert_eq!(
        audit.matches("\"action\":\"ca.create\"").count(),
        1,
        "{audit}"
    );

    // The token itself describes the key.
    let objects = sh(Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &fx.softhsm_conf)
        .args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "certgate",
        ])
        .args(["--login", "--pin", PIN, "-O"]));
    let private = objects
        .split("Private Key Object")
        .nth(1)
        .expect("a private key object");
    assert!(private.contains("certgate-ca"), "{objects}");
    assert!(
        private.contains("sensitive, always sensitive, never extractable, local"),
        "{objects}"
    );

    // The CA certificate's public key is the token's public key.
    let pub_der = fx.path("token-pub.der");
    sh(Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &fx.softhsm_conf)
        .args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "certgate",
        ])
        .args([
            "--read-object",
            "--type",
            "pubkey",
            "--label",
            "certgate-ca",
            "-o",
        ])
        .arg(&pub_der));
    let ca = fx.ca_pem();
    let from_cert = sh(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&ca));
    let from_token = sh(Command::new("openssl")
        .args(["pkey", "-pubin", "-inform", "DER", "-in"])
        .arg(&pub_der));
    assert_eq!(from_cert, from_token);

    let text = openssl_text(&ca);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("Subject Key Identifier"), "{text}");
    assert!(!fx.transcript().contains(PIN), "the PIN leaked into output");
}

#[test]
fn init_sqlite() {
    init_makes_a_safe_key_and_matching_ca(Db::Sqlite);
}

#[test]
fn init_postgres() {
    init_makes_a_safe_key_and_matching_ca(Db::Postgres);
}

/// `cert sign` with a valid code: a certificate openssl accepts, with the CA's subject, the
/// profile's extensions, a long serial and 365 days; the code fails the second time; a CSR
/// with a broken signature is refused with an error that says so.
fn sign_follows_the_profile_and_the_code_rules(db: Db) {
    let Some(fx) = Fixture::new(db) else { return };
    fx.init_with_users();
    let ca = fx.ca_pem();

    // A broken signature is refused and does not consume the code.
    let code = fx.authorize("carol");
    let (_, good_csr) = fx.openssl_csr("carol", "ec:P-256");
    let out = Command::new("openssl")
        .args(["req", "-outform", "DER", "-in"])
        .arg(&good_csr)
        .output()
        .unwrap();
    let mut der = out.stdout;
    // Flip a bit inside the signature value at the end of the request.
    let n = der.len();
    der[n - 5] ^= 0x40;
    let broken = fx.path("broken.csr");
    std::fs::write(&broken, &der).unwrap();
    let err = fx.fails(&[
        "cert",
        "sign",
        "carol",
        "--csr",
        broken.to_str().unwrap(),
        "--code",
        &code,
    ]);
    assert!(err.contains("signature does not verify"), "{err}");

    // The code still works after that refusal.
    let pem = fx.ok(&[
        "cert",
        "sign",
        "carol",
        "--csr",
        good_csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    let cert = fx.path("carol.pem");
    std::fs::write(&cert, &pem).unwrap();
    let verify = sh(Command::new("openssl")
        .args(["verify", "-purpose", "sslclient", "-CAfile"])
        .arg(&ca)
        .arg(&cert));
    assert!(verify.contains(": OK"), "{verify}");

    let text = openssl_text(&cert);
    let subject = sh(Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
        .arg(&cert));
    assert_eq!(
        subject.trim(),
        "subject=CN=carol,OU=corp1,O=Example Bank corporate customers"
    );
    assert!(
        !text.contains("mallory") && !text.contains("evil.example"),
        "{text}"
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(
        text.contains("URI:https://127.0.0.1:8443/crl/1.crl"),
        "{text}"
    );
    assert!(
        text.contains("OCSP - URI:https://127.0.0.1:8443/ocsp"),
        "{text}"
    );
    assert!(text.contains("Authority Key Identifier") && text.contains("Subject Key Identifier"));

    let serial = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&cert));
    let serial = serial.trim().trim_start_matches("serial=");
    assert!(
        serial.len() * 4 >= 64,
        "serial {serial} has fewer than 64 bits"
    );

    let dates = sh(Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-startdate",
            "-enddate",
            "-dateopt",
            "iso_8601",
            "-in",
        ])
        .arg(&cert));
    let parse = |key: &str| {
        let line = dates.lines().find(|l| l.starts_with(key)).unwrap();
        let v = line.split_once('=').unwrap().1.trim();
        // openssl prints e.g. "2027-11-25 01:43:16Z".
        let format =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
        time::PrimitiveDateTime::parse(v, format).unwrap_or_else(|e| panic!("{v}: {e}"))
    };
    assert_eq!(
        (parse("notAfter") - parse("notBefore")).whole_days(),
        365,
        "{dates}"
    );

    // The same code again with the same CSR returns the same certificate (a retried
    // request whose answer was lost); with another key it is refused.
    let repeat = fx.ok(&[
        "cert",
        "sign",
        "carol",
        "--csr",
        good_csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    assert_eq!(repeat, pem);
    let (_, other_csr) = fx.openssl_csr("carol2", "ec:P-256");
    let err = fx.fails(&[
        "cert",
        "sign",
        "carol",
        "--csr",
        other_csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    assert!(err.contains("already been used"), "{err}");

    // The store lists it as carol's one current certificate.
    let list = fx.ok(&["cert", "list", "--login", "carol"]);
    assert_eq!(
        list.lines().filter(|l| l.contains("\tcurrent\t")).count(),
        1,
        "{list}"
    );
    assert!(
        list.to_lowercase().contains(&serial.to_lowercase()),
        "{list}"
    );
    assert!(!fx.transcript().contains(PIN), "the PIN leaked into output");
}

#[test]
fn sign_sqlite() {
    sign_follows_the_profile_and_the_code_rules(Db::Sqlite);
}

#[test]
fn sign_postgres() {
    sign_follows_the_profile_and_the_code_rules(Db::Postgres);
}

/// Keys the CA must not certify, and codes that must not work.
#[test]
fn refusals_change_nothing() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let code = fx.authorize("bob");

    for (name, newkey, expect) in [
        ("ed", "ed25519", "unsupported key type"),
        ("weak", "rsa:1024", "at least 2048 are required"),
    ] {
        let (_, csr) = fx.openssl_csr(name, newkey);
        let err = fx.fails(&[
            "cert",
            "sign",
            "bob",
            "--csr",
            csr.to_str().unwrap(),
            "--code",
            &code,
        ]);
        assert!(err.contains(expect), "{name}: {err}");
    }
    let junk = fx.path("junk.csr");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n",
    )
    .unwrap();
    let err = fx.fails(&[
        "cert",
        "sign",
        "bob",
        "--csr",
        junk.to_str().unwrap(),
        "--code",
        &code,
    ]);
    assert!(err.contains("not valid PEM or DER"), "{err}");

    // Unknown login IDs and wrong codes get the same answer.
    let (_, csr) = fx.openssl_csr("bob", "rsa:2048");
    let csr = csr.to_str().unwrap();
    let wrong = fx.fails(&[
        "cert",
        "sign",
        "bob",
        "--csr",
        csr,
        "--code",
        "AAAA-BBBB-CCCC-DDDD-EEEE",
    ]);
    let unknown = fx.fails(&["cert", "sign", "nobody", "--csr", csr, "--code", &code]);
    assert!(
        wrong.contains("login ID or the issuance code is not correct"),
        "{wrong}"
    );
    assert_eq!(wrong, unknown);
    assert!(
        fx.ok(&["cert", "list"]).lines().count() == 1,
        "nothing may have been issued"
    );

    // RSA-2048 is accepted with the right code.
    fx.ok(&["cert", "sign", "bob", "--csr", csr, "--code", &code]);
}

/// Five wrong tries lock the code; staff must authorize again.
#[test]
fn wrong_codes_lock() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let code = fx.authorize("bob");
    let (_, csr) = fx.openssl_csr("bob", "ec:P-384");
    let csr = csr.to_str().unwrap();
    for _ in 0..5 {
        fx.fails(&[
            "cert",
            "sign",
            "bob",
            "--csr",
            csr,
            "--code",
            "0000-0000-0000-0000-0000",
        ]);
    }
    let err = fx.fails(&["cert", "sign", "bob", "--csr", csr, "--code", &code]);
    assert!(err.contains("locked"), "{err}");
    let fresh = fx.authorize("bob");
    fx.ok(&["cert", "sign", "bob", "--csr", csr, "--code", &fresh]);
}

/// Revocation by the serial as openssl prints it, and the staff re-issue.
#[test]
fn revoke_and_reissue() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let code = fx.authorize("alice");
    let (_, csr) = fx.openssl_csr("alice", "ec:P-256");
    let pem = fx.ok(&[
        "cert",
        "sign",
        "alice",
        "--csr",
        csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    let cert = fx.path("alice.pem");
    std::fs::write(&cert, pem).unwrap();

    // A second authorize while a certificate is current is refused: that is a re-issue.
    let err = fx.fails(&["issue", "authorize", "alice"]);
    assert!(err.contains("issue reissue"), "{err}");

    let out = fx.ok(&["issue", "reissue", "alice"]);
    assert!(out.contains("revoked the previous certificate"), "{out}");
    let new_code = last_line(&out);
    assert_eq!(new_code.len(), 24, "{out}");
    let list = fx.ok(&["cert", "list", "--login", "alice"]);
    assert!(list.contains("\trevoked\t"), "{list}");

    let (_, csr2) = fx.openssl_csr("alice2", "ec:P-256");
    let pem2 = fx.ok(&[
        "cert",
        "sign",
        "alice",
        "--csr",
        csr2.to_str().unwrap(),
        "--code",
        &new_code,
    ]);
    let cert2 = fx.path("alice2.pem");
    std::fs::write(&cert2, pem2).unwrap();

    let serial = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&cert2));
    let serial = serial.trim().trim_start_matches("serial=");
    let colons: String = serial
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    let out = fx.ok(&["cert", "revoke", &colons, "--reason", "keyCompromise"]);
    assert!(out.contains("keyCompromise"), "{out}");
    let err = fx.fails(&["cert", "revoke", serial, "--reason", "keyCompromise"]);
    assert!(err.contains("already revoked"), "{err}");
    let err = fx.fails(&["cert", "revoke", "00ff", "--reason", "superseded"]);
    assert!(err.contains("not found"), "{err}");
    let err = fx.fails(&["cert", "revoke", serial, "--reason", "certificateHold"]);
    assert!(err.contains("unknown revocation reason"), "{err}");
}

/// pkilint finds nothing on the CA, client and server certificates down to NOTICE, and at
/// INFO only its note of which subject key identifier method is used (RFC 5280 method 1),
/// which it makes on every certificate that has the extension. `ca issue-server` refuses a
/// name pkilint calls invalid before anything is signed, and warns about `localhost`.
#[test]
fn pkilint_is_clean() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    if Command::new("lint_pkix_cert")
        .arg("--help")
        .output()
        .is_err()
    {
        crate::fixture::missing("pkilint (lint_pkix_cert) is not installed");
        return;
    }
    fx.init_with_users();
    let ca = fx.ca_pem();
    let code = fx.authorize("carol");
    let (_, csr) = fx.openssl_csr("carol", "ec:P-256");
    let cert = fx.path("carol.pem");
    std::fs::write(
        &cert,
        fx.ok(&[
            "cert",
            "sign",
            "carol",
            "--csr",
            csr.to_str().unwrap(),
            "--code",
            &code,
        ]),
    )
    .unwrap();
    let server = fx.path("server.pem");
    let server_key = fx.path("server.key");
    let issue_server = |name: &str, out: &std::path::Path| {
        fx.run(&[
            "ca",
            "issue-server",
            "--name",
            name,
            "--name",
            "127.0.0.1",
            "--cert-out",
            out.to_str().unwrap(),
            "--key-out",
            server_key.to_str().unwrap(),
        ])
    };
    let out = issue_server("gw.bank.example", &server);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the first certificate of the chain file is linted: the server's own.
    let server_pem = std::fs::read_to_string(&server).unwrap();
    let end = server_pem.find("-----END CERTIFICATE-----").unwrap() + 25;
    std::fs::write(&server, &server_pem[..end]).unwrap();

    let lint = |file: &std::path::Path, severity: &str| {
        let out = Command::new("lint_pkix_cert")
            .args(["lint", "-s", severity])
            .arg(file)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for file in [&ca, &cert, &server] {
        let (ok, text) = lint(file, "NOTICE");
        assert!(
            ok && text.trim().is_empty(),
            "pkilint on {}:\n{text}",
            file.display()
        );
        let (_, text) = lint(file, "INFO");
        let findings: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("    "))
            .map(str::trim)
            .collect();
        assert_eq!(
            findings,
            vec!["pkix.subject_key_identifier_method_1_identified (INFO)"],
            "pkilint at INFO on {}:\n{text}",
            file.display()
        );
    }

    // Names pkilint calls invalid are refused, and nothing is written.
    for bad in ["foo_bar.example", "*.bank.example", "gw.bank.example."] {
        let refused = fx.path("refused.pem");
        let out = issue_server(bad, &refused);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(err.contains(bad) && err.contains("DNS name"), "{err}");
        assert!(!refused.exists());
    }
    // localhost (single label) is issued for the demo and tests, with a warning.
    let local = fx.path("local.pem");
    let out = issue_server("localhost", &local);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pkix.invalid_domain_name_syntax"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Configuration errors are one clear sentence; the PIN comes only from env or file.
#[test]
fn config_errors_are_clear() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| t.push_str("\n[hsm2]\nx = 1\n")) else {
        return;
    };
    let err = fx.fails(&["init"]);
    assert!(err.contains("hsm2"), "{err}");
    let example = fx.ok(&["config", "example"]);
    assert!(example.contains("pin_env"));
    let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .args(["--config", "/nonexistent/certgate.toml", "init"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration file"));
}
