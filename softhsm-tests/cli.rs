//! End to end through the real binary against a real SoftHSM2 token: `init`, issuance
//! through `cert sign`, refusals, revocation and staff re-issue, on SQLite and PostgreSQL.

use std::path::Path;
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

// ---- Issue 20: the command line for scripts and people (docs/cli.md) ----

/// Runs a command that must succeed with `--format json`; returns its one JSON document.
fn json(fx: &Fixture, args: &[&str]) -> serde_json::Value {
    let mut with_format = args.to_vec();
    with_format.extend(["--format", "json"]);
    let out = fx.ok(&with_format);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("certgate {args:?}: {e}:\n{out}"))
}

/// The exit status of a finished command.
fn status(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The key algorithm the fixture's token offers (openCryptoki's soft token has no EC).
fn token_algorithm() -> &'static str {
    match crate::support::token::kind() {
        crate::support::token::Kind::OpenCryptoki => "rsa-2048",
        _ => "ec-p256",
    }
}

/// `--format json` of every list and show command, parsed with serde_json: the documented
/// field names, with values that match the text output and what was done. Text stays the
/// default and unchanged.
#[test]
fn format_json_parsed_for_every_list_and_show() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    let started = now();
    fx.init_with_users();
    fx.ok(&["contract", "disable", "corp2"]);

    let contracts = json(&fx, &["contract", "list"]);
    let contracts = contracts.as_array().expect("an array");
    assert_eq!(contracts.len(), 2, "{contracts:?}");
    let corp1 = contracts
        .iter()
        .find(|c| c["id"] == "corp1")
        .expect("corp1");
    assert_eq!(corp1["name"], "Example Trading Co.");
    assert_eq!(corp1["enabled"], true);
    let created = corp1["created_at"].as_i64().expect("unix seconds");
    assert!(created >= started - 1 && created <= now() + 1, "{corp1}");
    let corp2 = contracts
        .iter()
        .find(|c| c["id"] == "corp2")
        .expect("corp2");
    assert_eq!(corp2["enabled"], false);
    // The text is as before.
    let text = fx.ok(&["contract", "list"]);
    assert!(text.contains("corp2\tdisabled\tOther Corp"), "{text}");

    let users = json(&fx, &["user", "list", "--contract", "corp1"]);
    let users = users.as_array().expect("an array");
    assert_eq!(users.len(), 3, "{users:?}");
    let bob = users.iter().find(|u| u["login"] == "bob").expect("bob");
    assert_eq!(bob["role"], "approver");
    assert_eq!(bob["contract_id"], "corp1");
    assert_eq!(bob["email"], "bob@example.com");
    assert_eq!(bob["enabled"], true);

    let (cert, _) = fx.obtain("carol");
    let serial = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&cert));
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase();
    let certs = json(&fx, &["cert", "list", "--login", "carol"]);
    let certs = certs.as_array().expect("an array");
    assert_eq!(certs.len(), 1, "{certs:?}");
    let c = &certs[0];
    let listed_serial = c["serial"].as_str().expect("serial");
    assert_eq!(
        listed_serial.trim_start_matches('0'),
        serial.trim_start_matches('0'),
        "{c}"
    );
    assert_eq!(c["login"], "carol");
    assert_eq!(c["contract_id"], "corp1");
    assert_eq!(c["status"], "current");
    assert_eq!(c["ca_id"], 1);
    assert!(
        c["revoked_at"].is_null() && c["revocation_reason"].is_null(),
        "{c}"
    );
    let validity =
        c["not_after"].as_i64().expect("not_after") - c["not_before"].as_i64().expect("not_before");
    assert_eq!(validity, 365 * 86_400, "{c}");
    assert_eq!(
        json(&fx, &["cert", "list", "--status", "revoked"]),
        serde_json::json!([])
    );

    let shown = json(&fx, &["cert", "show", &serial]);
    assert_eq!(shown["serial"].as_str(), Some(listed_serial));
    assert_eq!(
        shown["pem"].as_str(),
        Some(fx.ok(&["cert", "show", &serial]).as_str())
    );
    assert_eq!(
        shown["pem"].as_str(),
        std::fs::read_to_string(&cert).ok().as_deref()
    );
    let subject = shown["subject"].as_str().expect("subject");
    assert!(subject.contains("CN=carol"), "{subject}");

    let cas = json(&fx, &["ca", "list"]);
    let cas = cas.as_array().expect("an array");
    assert_eq!(cas.len(), 1, "{cas:?}");
    assert_eq!(cas[0]["id"], 1);
    assert_eq!(cas[0]["active"], true);
    assert_eq!(cas[0]["key_label"], "certgate-ca");
    assert_eq!(cas[0]["issued_by"], "self");
    let ca_subject = cas[0]["subject"].as_str().expect("subject");
    assert!(
        ca_subject.contains("certgate Test Customer CA"),
        "{ca_subject}"
    );
    assert!(cas[0]["not_after"].as_i64().expect("not_after") > now());
    let ca = json(&fx, &["ca", "cert"]);
    assert_eq!(ca["pem"].as_str(), Some(fx.ok(&["ca", "cert"]).as_str()));
    assert_eq!(ca["chain_pem"], "");
    assert_eq!(ca["key_label"], "certgate-ca");

    let hsm = json(&fx, &["hsm", "info"]);
    assert_eq!(hsm["key"]["label"], "certgate-ca");
    assert_eq!(hsm["key"]["present"], true);
    assert_eq!(hsm["key"]["safe"], true);
    let err = fx.fails(&["hsm", "info", "--json", "--format", "json"]);
    assert!(err.contains("cannot be used with"), "{err}");

    let verified = json(&fx, &["audit", "verify"]);
    assert_eq!(verified["intact"], true, "{verified}");
    assert!(verified["problem"].is_null());
    let entries = verified["entries"].as_i64().expect("entries");
    // Two contracts, four users, a disable, the key, the CA and carol's code and certificate.
    assert!(entries >= 10, "{verified}");
    assert_eq!(verified["checkpoints"], 0);
    assert!(verified["last_checkpointed"].is_null());
    assert_eq!(verified["anchors"], serde_json::json!([]));
    fx.ok(&["audit", "checkpoint"]);
    let verified = json(&fx, &["audit", "verify"]);
    assert_eq!(verified["checkpoints"], 1, "{verified}");
    assert_eq!(verified["anchors"][0]["source"], "the HSM", "{verified}");
    assert_eq!(verified["anchors"][0]["seq"], verified["last_checkpointed"]);

    let signatures = json(&fx, &["audit", "signatures"]);
    assert_eq!(signatures["balanced"], true, "{signatures}");

    // The outbox is empty without [notify]: still one document, an empty array.
    assert_eq!(json(&fx, &["notify", "list"]), serde_json::json!([]));

    let check = json(&fx, &["config", "check"]);
    assert_eq!(check["valid"], true, "{check}");
    assert!(check["problem"].is_null());
    assert_eq!(check["config_file"].as_str(), fx.config.to_str());
    assert!(!fx.transcript().contains(PIN), "the PIN leaked into output");
}

/// `notify run` and `notify list` with `--format json` against a real SMTP sink, and the
/// plain progress lines of `notify run` on stderr (not a terminal).
#[test]
fn notify_run_and_list_in_json_with_progress_lines() {
    let smtp = crate::sink::Sink::start();
    // 30-day certificates are inside the 30-day notice window from the moment they exist.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
        t.push_str(&format!(
            "\n[notify]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"certgate@bank.example\"\n",
            smtp.port
        ));
    }) else {
        return;
    };
    fx.init_with_users();
    fx.obtain("carol");

    let out = fx.run(&["notify", "run", "--format", "json"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let pass: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(pass["scheduled"], 1, "{pass}");
    assert_eq!(pass["sent"], 1, "{pass}");
    assert_eq!(pass["failed"], 0, "{pass}");
    assert_eq!(pass["outbox"]["sent"], 1, "{pass}");
    assert_eq!(pass["outbox"]["pending"], 0, "{pass}");
    let err = stderr(&out);
    for line in [
        "notify run [1/2] opening the database and the relay settings",
        "notify run [2/2] queueing the notices due now and delivering the outbox (0 pending before the pass)",
        "notify run [2/2] pass ended: 1 queued, 1 sent, 0 to retry, 0 failed, 0 cancelled",
        "notify run done",
    ] {
        assert!(err.lines().any(|l| l == line), "{line:?} in:\n{err}");
    }
    assert!(
        !err.contains('\r'),
        "no terminal redraws in a pipe:\n{err:?}"
    );

    let rows = json(&fx, &["notify", "list"]);
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let r = &rows[0];
    assert_eq!(r["login"], "carol");
    assert_eq!(r["recipient"], "carol@example.com");
    assert_eq!(r["state"], "sent");
    assert_eq!(r["notice_days"], 30);
    assert_eq!(r["attempts"], 1);
    assert!(
        r["next_attempt_at"].is_null(),
        "only a pending row has one: {r}"
    );
    assert!(r["sent_at"].as_i64().is_some(), "{r}");
    assert!(r.get("body").is_none(), "the body is left out: {r}");
    assert_eq!(smtp.messages().len(), 1);

    // A second pass has nothing to do; the text summary is as before.
    let text = fx.ok(&["notify", "run"]);
    assert!(text.contains("scheduled 0 sent 0"), "{text}");
}

/// `init`, `hsm keygen` and `audit verify` report their steps on stderr, one plain line
/// each when stderr is not a terminal; stdout keeps the same text.
#[test]
fn long_commands_report_plain_progress_lines() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    let out = fx.run(&["init"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    // The token's label is the fixture's (openCryptoki's shared token has its own).
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("init [2/4] opening the token \"")),
        "{err}"
    );
    for line in [
        "init [1/4] preparing the database schema".to_owned(),
        "init [3/4] looking for the CA key \"certgate-ca\"".to_owned(),
        format!(
            "init [3/4] generating the {} CA key \"certgate-ca\"",
            token_algorithm()
        ),
        "init [4/4] checking the CA certificate".to_owned(),
        "init [4/4] making and signing the CA certificate".to_owned(),
        "init done".to_owned(),
    ] {
        assert!(lines.contains(&line.as_str()), "{line:?} in:\n{err}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("database schema ready"), "{stdout}");
    assert!(stdout.contains("generated"), "{stdout}");
    assert!(
        !stdout.contains("[1/4]"),
        "progress stays off stdout:\n{stdout}"
    );

    let out = fx.run(&[
        "hsm",
        "keygen",
        "--label",
        "ceremony-1",
        "--algorithm",
        token_algorithm(),
    ]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let generating = format!(
        "hsm keygen [3/4] generating the {} key \"ceremony-1\" in the token",
        token_algorithm()
    );
    for line in [
        "hsm keygen [1/4] opening the database",
        &generating,
        "hsm keygen [4/4] recording the key in the audit log",
        "hsm keygen done",
    ] {
        assert!(err.lines().any(|l| l == line), "{line:?} in:\n{err}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("BEGIN PUBLIC KEY"));

    let out = fx.run(&["audit", "verify"]);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    for line in [
        "audit verify [2/4] reading the public keys of 0 checkpoint key(s)",
        "audit verify [3/4] reading the audit anchors",
        "audit verify [4/4] walking the hash chain and the checkpoints",
        "audit verify done",
    ] {
        assert!(err.lines().any(|l| l == line), "{line:?} in:\n{err}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("audit chain intact"));
    assert!(!fx.transcript().contains(PIN), "the PIN leaked into output");
}

/// The documented exit statuses: 0 done, 1 error, 2 usage, 3 a check found a problem; a
/// failed `audit verify --format json` still prints its one document.
#[test]
fn exit_codes_tell_usage_errors_and_findings_apart() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();

    for usage in [
        &["contract", "lst"][..],
        &["contract", "list", "--format", "yaml"],
        &["user", "list"],
        &["completions", "tcsh"],
    ] {
        let out = fx.run(usage);
        assert_eq!(status(&out), 2, "{usage:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{usage:?}");
    }
    let help = fx.run(&["--help"]);
    assert_eq!(status(&help), 0);
    assert!(String::from_utf8_lossy(&help.stdout).contains("completions"));

    // An error: the command could not do its work.
    let out = fx.run(&["cert", "show", "00ff", "--format", "json"]);
    assert_eq!(status(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("no certificate with serial 00ff"));
    assert!(out.stdout.is_empty(), "nothing on stdout for an error");

    // A finding: the audit log was changed behind certgate's back.
    crate::ops::drop_triggers(&fx, Db::Sqlite);
    crate::ops::attacker_sql(
        &fx,
        "UPDATE audit_log SET subject = 'someone-else' WHERE seq = 3",
    );
    let out = fx.run(&["audit", "verify", "--format", "json"]);
    assert_eq!(status(&out), 3, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(report["intact"], false, "{report}");
    let problem = report["problem"].as_str().expect("problem");
    assert!(problem.contains("audit record 3 is broken"), "{problem}");
    assert!(report["entries"].is_null(), "{report}");
    assert!(
        stderr(&out).contains("audit record 3 is broken"),
        "{}",
        stderr(&out)
    );
    let out = fx.run(&["audit", "verify"]);
    assert_eq!(status(&out), 3, "{}", stderr(&out));

    // A refused configuration is a finding of `config check`, an error of other commands.
    let broken = fx.path("broken.toml");
    let text = std::fs::read_to_string(&fx.config).expect("config");
    std::fs::write(
        &broken,
        text.replace(
            "pin_env = \"CERTGATE_HSM_PIN\"",
            "pin_env = \"CERTGATE_NO_SUCH_PIN\"",
        ),
    )
    .expect("write");
    let run_with = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_certgate"))
            .arg("--config")
            .arg(&broken)
            .args(args)
            .env("SOFTHSM2_CONF", &fx.softhsm_conf)
            .env_remove("CERTGATE_NO_SUCH_PIN")
            .output()
            .expect("certgate runs")
    };
    let out = run_with(&["config", "check", "--format", "json"]);
    assert_eq!(status(&out), 3, "{}", stderr(&out));
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(check["valid"], false, "{check}");
    let problem = check["problem"].as_str().expect("problem");
    assert!(problem.contains("CERTGATE_NO_SUCH_PIN"), "{problem}");
    let out = run_with(&["hsm", "info"]);
    assert_eq!(status(&out), 1, "{}", stderr(&out));

    // A listener's certificate and key are read as `serve` would read them: `config check`
    // on the configuration with one more listener, and why it was refused.
    let refused_listener = |port: u16, cert: &Path, key: &Path| {
        let config = fx.path(&format!("listener-{port}.toml"));
        std::fs::write(
            &config,
            format!(
                "{text}\n[[listener]]\naddr = \"127.0.0.1:{port}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        )
        .expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .arg("--config")
            .arg(&config)
            .args(["config", "check", "--format", "json"])
            .env("SOFTHSM2_CONF", &fx.softhsm_conf)
            .env("CERTGATE_HSM_PIN", PIN)
            .output()
            .expect("certgate runs");
        assert_eq!(status(&out), 3, "{}", stderr(&out));
        let check: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("one JSON document");
        check["problem"].as_str().expect("problem").to_owned()
    };
    let problem = refused_listener(1, &fx.path("no-such.pem"), &fx.path("no-such.key"));
    assert!(
        problem.contains("[[listener]] 127.0.0.1:1") && problem.contains("no-such.pem"),
        "{problem}"
    );
    // An expired certificate: `serve` would start with it, and every client refuse it.
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("names");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    std::fs::write(fx.path("expired.pem"), cert.pem()).expect("write");
    std::fs::write(fx.path("expired.key"), key.serialize_pem()).expect("write");
    let problem = refused_listener(2, &fx.path("expired.pem"), &fx.path("expired.key"));
    assert!(
        problem.contains("[[listener]] 127.0.0.1:2") && problem.contains("expired on"),
        "{problem}"
    );
    // The same certificate as the gateway's own for an app that requires mTLS: the app
    // would refuse every connection.
    let config = fx.path("expired-upstream-client.toml");
    std::fs::write(
        &config,
        format!(
            "{text}\n[[route]]\nprefix = \"/app/\"\nupstream = \"https://127.0.0.1:9\"\n\
             auth = \"certificate\"\n[route.upstream_tls]\nca_file = \"{cert}\"\n\
             client_cert = \"{cert}\"\nclient_key = \"{key}\"\n",
            cert = fx.path("expired.pem").display(),
            key = fx.path("expired.key").display(),
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .arg("--config")
        .arg(&config)
        .args(["config", "check"])
        .env("SOFTHSM2_CONF", &fx.softhsm_conf)
        .env("CERTGATE_HSM_PIN", PIN)
        .output()
        .expect("certgate runs");
    assert_eq!(status(&out), 3, "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("[[route]] /app/: [route.upstream_tls] client_cert")
            && said.contains("expired on")
            && said.contains("the app would refuse it"),
        "{said}"
    );
}

/// Completion scripts and manual pages come from the clap grammar: they name the commands
/// and flags the binary has. No configuration is needed for them.
#[test]
fn completions_and_man_pages_come_from_the_grammar() {
    let certgate = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .args(args)
            .env("CERTGATE_CONFIG", "/nonexistent/certgate.toml")
            .output()
            .expect("certgate runs");
        assert_eq!(status(&out), 0, "{args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let bash = certgate(&["completions", "bash"]);
    assert!(bash.contains("complete -F _certgate"), "{bash}");
    for word in ["contract", "notify", "keygen", "--format", "completions"] {
        assert!(bash.contains(word), "{word} missing from the bash script");
    }
    // `bash -n` parses the script without running it.
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("certgate.bash");
    std::fs::write(&script, &bash).expect("write");
    sh(Command::new("bash").arg("-n").arg(&script));
    for shell in ["zsh", "fish"] {
        let text = certgate(&["completions", shell]);
        assert!(
            text.contains("certgate") && text.contains("verify"),
            "{shell}: {text}"
        );
    }

    let page = certgate(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH certgate"),
        "{page}"
    );
    assert!(page.contains("certgate"), "{page}");
    assert!(page.contains("contract"), "{page}");

    let out = dir.path().join("man");
    certgate(&["man", "--out", out.to_str().expect("utf-8 path")]);
    let top = std::fs::read_to_string(out.join("certgate.1")).expect("certgate.1");
    assert!(top.contains(".TH certgate"), "{top}");
    let list =
        std::fs::read_to_string(out.join("certgate-contract-list.1")).expect("contract list page");
    assert!(list.contains("format"), "{list}");
    assert!(out.join("certgate-audit-verify.1").exists());
    assert!(
        !out.join("certgate-demo-upstream.1").exists(),
        "hidden commands have no page"
    );
}
