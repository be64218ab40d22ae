//! Two `certgate serve` processes on one PostgreSQL database behave as one gateway: a
//! re-issue made through one is enforced by the other (LISTEN/NOTIFY), a code works once
//! across both, and each expiry notice is sent once although both run the scheduler.

use std::path::Path;
use std::process::Command;

use crate::fixture::{Db, Fixture, Running, call_app, curl, est_enroll, key_and_der_csr, sh};

use crate::sink;

fn app(run: &Running, cert: &Path, key: &Path) -> u16 {
    call_app(run, cert, key).0
}

fn est(run: &Running, fx: &Fixture, login: &str, code: &str, name: &str) -> u16 {
    let (_, csr) = key_and_der_csr(fx, name);
    est_enroll(run, fx, login, code, &csr).0
}

#[test]
fn two_gateway_processes_on_postgres_act_as_one() {
    let smtp = sink::Sink::start();
    // 30-day certificates: the 30-day notice is due at once.
    let Some(fx) = Fixture::with_config(Db::Postgres, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
        t.push_str(&format!(
            "\n[notify]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"certgate@bank.example\"\ninterval_secs = 1\n",
            smtp.port
        ));
    }) else {
        return;
    };
    fx.init_with_users();
    let a = fx.serve();
    let b = fx.serve_another("instance-b.toml");
    let (alice, alice_key) = fx.obtain("alice");
    let (carol, carol_key) = fx.obtain("carol");
    assert_eq!(app(&a, &carol, &carol_key), 200);
    assert_eq!(app(&b, &carol, &carol_key), 200);

    // Both instances run the scheduler every second: each certificate's notice goes out once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while smtp.messages().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "notices did not arrive:\n{}",
            a.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let mut to: Vec<String> = smtp
        .messages()
        .iter()
        .flat_map(|m| m.rcpt_to.clone())
        .collect();
    to.sort();
    assert_eq!(
        to,
        vec![
            "alice@example.com".to_owned(),
            "carol@example.com".to_owned()
        ]
    );

    // A code redeemed through A cannot be redeemed again (another key) through B.
    let code = fx.authorize("bob");
    assert_eq!(est(&a, &fx, "bob", &code, "bob-a"), 200);
    // (Answered like a wrong code: the answer does not tell a used code apart.)
    assert_eq!(est(&b, &fx, "bob", &code, "bob-b"), 401);

    // The contract admin re-issues carol through A; B refuses carol's old certificate
    // within a second (its cache learns of the change through NOTIFY; its own cache
    // entry would otherwise live 30 s).
    let (status, body) = curl(
        &a.ca,
        &[
            "--cert",
            alice.to_str().unwrap(),
            "--key",
            alice_key.to_str().unwrap(),
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            crate::fixture::CSRF[0],
            crate::fixture::CSRF[1],
            crate::fixture::CSRF[2],
            crate::fixture::CSRF[3],
            &a.url("/api/v1/users/carol/reissue"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(
        app(&b, &carol, &carol_key),
        403,
        "instance B still lets the re-issued certificate through"
    );
    assert_eq!(app(&a, &carol, &carol_key), 403);
    assert_eq!(app(&b, &alice, &alice_key), 200);
}

/// After a CA rollover the gateway accepts certificates of the old CA and of the new one,
/// and answers OCSP for both.
#[test]
fn rollover_keeps_old_and_new_certificates_working() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let (old_cert, old_key) = fx.obtain("carol");
    let old_ca = fx.ca_pem();
    let old_ca_copy = fx.path("ca-1.pem");
    std::fs::copy(&old_ca, &old_ca_copy).unwrap();
    fx.ok(&["ca", "rollover", "--key-label", "certgate-ca-2"]);
    let (new_cert, new_key) = fx.obtain("bob");
    let new_ca = fx.path("ca-2.pem");
    std::fs::write(&new_ca, fx.ok(&["ca", "cert"])).unwrap();
    let issuer_of = |cert: &Path| {
        sh(Command::new("openssl")
            .args(["x509", "-noout", "-issuer", "-in"])
            .arg(cert))
    };
    assert_ne!(
        issuer_of(&old_cert),
        issuer_of(&new_cert),
        "bob's certificate must come from the new CA"
    );

    let run = fx.serve();
    assert_eq!(app(&run, &old_cert, &old_key), 200);
    assert_eq!(app(&run, &new_cert, &new_key), 200);
    for (cert, ca) in [(&old_cert, &old_ca_copy), (&new_cert, &new_ca)] {
        let out = sh(Command::new("openssl")
            .args(["ocsp", "-issuer"])
            .arg(ca)
            .arg("-cert")
            .arg(cert)
            .args(["-url", &run.url("/ocsp"), "-CAfile"])
            .arg(ca)
            .arg("-verify_other")
            .arg(ca));
        assert!(out.contains(": good"), "{out}");
    }
}
