//! The staff console's pages in two headless Chromium browsers against the real gateway
//! (`tests/browser/staff-console.mjs`): an operator and a supervisor, each with a staff
//! certificate from `staff cert sign` imported into their browser's NSS store. The operator
//! registers a contract and its administrator and reads the issuance code, asks for a
//! revocation (pending); the supervisor approves it in the other browser; the revoked
//! certificate is then refused by the gateway, and the code obtains a certificate.

use std::path::Path;
use std::process::Command;

use crate::fixture::{Db, Fixture, call_app, free_port, missing, sh};
use crate::staff_console::{Staff, staff_member, staff_section};

/// A PKCS#12 of `who` for pk12util, protected with the password in `pw`.
fn pkcs12(fx: &Fixture, name: &str, who: &Staff, ca: &Path, pw: &Path) -> std::path::PathBuf {
    let p12 = fx.path(&format!("{name}.p12"));
    sh(Command::new("openssl")
        .args(["pkcs12", "-export", "-name", name, "-inkey"])
        .arg(&who.key)
        .arg("-in")
        .arg(&who.cert)
        .arg("-certfile")
        .arg(ca)
        .arg("-passout")
        .arg(format!("file:{}", pw.display()))
        .arg("-out")
        .arg(&p12));
    p12
}

#[test]
fn staff_console_maker_and_checker_in_two_chromium_browsers() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/staff-console.mjs"
    );
    let modules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/node_modules/playwright-core"
    );
    if !Path::new(modules).exists() || Command::new("chromium").arg("--version").output().is_err() {
        missing("the browser harness (tests/browser: npm ci) or chromium is not installed");
        return;
    }
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let sato = staff_member(&fx, "sato", "operator");
    let suzuki = staff_member(&fx, "suzuki", "supervisor");
    let (carol, carol_key) = fx.obtain("carol");
    let port = free_port();
    // The flow has the operator read a new administrator's code on the spot, as a bank that
    // leaves codes out of four eyes configures it; the default (the code waits for a
    // supervisor) is `staff_console::staff_console_roles_four_eyes_and_refusals`.
    let run = fx.serve_with(&format!(
        "{}four_eyes = [\"cert.revoke\", \"contract.disable\", \"staff.add\", \"staff.change\"]\n",
        staff_section(port)
    ));
    assert_eq!(call_app(&run, &carol, &carol_key).0, 200);

    let pw = fx.path("p12-password");
    std::fs::write(&pw, "staff-test-pass").expect("password file");
    let op_p12 = pkcs12(&fx, "sato", &sato, &run.ca, &pw);
    let sup_p12 = pkcs12(&fx, "suzuki", &suzuki, &run.ca, &pw);
    let out_dir = std::env::var_os("CERTGATE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| fx.path("staff-browser"));
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let out = Command::new("node")
        .arg(script)
        .args(["--base", &format!("https://127.0.0.1:{port}"), "--ca-pem"])
        .arg(&run.ca)
        .arg("--operator-p12")
        .arg(&op_p12)
        .arg("--supervisor-p12")
        .arg(&sup_p12)
        .arg("--p12-password-file")
        .arg(&pw)
        .args([
            "--operator",
            "sato",
            "--supervisor",
            "suzuki",
            "--contract",
            "corp9",
            "--admin",
            "corp9-admin",
            "--revoke",
            "carol",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "staff console flow failed:\n{stdout}\n{}\nserve log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        run.log()
    );
    let result: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("harness output is not JSON ({e}): {stdout}"));

    // The supervisor's approval revoked carol's certificate: the gateway refuses it now.
    assert_eq!(
        call_app(&run, &carol, &carol_key).0,
        403,
        "the revoked certificate still passes"
    );
    // The registration happened, and the code the page showed obtains a certificate.
    let users = fx.ok(&["user", "list", "--contract", "corp9"]);
    assert!(users.contains("corp9-admin\tadmin"), "{users}");
    let code = result["code"].as_str().expect("the code the page showed");
    let (_, csr) = fx.openssl_csr("corp9-admin", "ec:P-256");
    let pem = fx.ok(&[
        "cert",
        "sign",
        "corp9-admin",
        "--csr",
        csr.to_str().expect("path"),
        "--code",
        code,
    ]);
    assert!(pem.contains("BEGIN CERTIFICATE"), "{pem}");

    // The trail names both people on the revocation.
    let audit = fx.ok(&["audit", "export"]);
    let revoked = audit
        .lines()
        .find(|l| l.contains("\"action\":\"cert.revoke\"") && l.contains("\"outcome\":\"ok\""))
        .unwrap_or_else(|| panic!("no revocation in the audit log:\n{audit}"));
    assert!(
        revoked.contains("staff:sato") && revoked.contains("staff:suzuki"),
        "{revoked}"
    );

    // Screenshots of both browsers in both languages, none blank.
    let shots = result["screenshots"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(shots.len() >= 10, "{result}");
    for lang in ["-ja-", "-en-"] {
        for who in ["operator", "supervisor"] {
            assert!(
                shots.iter().any(|s| {
                    let s = s.as_str().unwrap_or_default();
                    s.contains(who) && s.contains(lang)
                }),
                "no {who}{lang} screenshot: {result}"
            );
        }
    }
    for s in &shots {
        let shot = s.as_str().unwrap_or_default();
        let size = std::fs::metadata(shot).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "screenshot {shot} is missing or blank ({size} bytes)"
        );
    }
}
