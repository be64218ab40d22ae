//! Delta CRLs and CRLs split by issuance period, read by OpenSSL as a relying party reads
//! them: each certificate names its period's CRL and that CRL's issuing distribution point
//! matches it, the complete CRL names its delta, both instances serve the same complete CRL,
//! and `openssl verify -crl_check -use_deltas` combines a complete CRL from one instance
//! with a delta CRL from the other.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::faults::eventually;
use crate::fixture::{Db, Fixture, Running, curl};
use crate::status_agreement::{run_ok, serial_of};

/// Fetches `path` from `run` as DER and returns it converted to PEM, with the DER bytes.
pub(crate) fn fetch_crl(fx: &Fixture, run: &Running, path: &str, name: &str) -> (PathBuf, Vec<u8>) {
    let der = fx.path(&format!("{name}.der"));
    let pem = fx.path(&format!("{name}.pem"));
    let (status, text) = curl(&run.ca, &["-o", der.to_str().unwrap(), &run.url(path)]);
    assert_eq!(status, 200, "{path}: {text}");
    let (ok, out) = run_ok(
        Command::new("openssl")
            .args(["crl", "-inform", "DER", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem),
    );
    assert!(ok, "{path}: {out}");
    (pem, std::fs::read(&der).unwrap())
}

fn crl_text(pem: &Path) -> String {
    let (ok, text) = run_ok(
        Command::new("openssl")
            .args(["crl", "-noout", "-text", "-in"])
            .arg(pem),
    );
    assert!(ok, "{text}");
    text
}

/// The value printed on the line after `heading` (an extension's contents).
fn after<'a>(text: &'a str, heading: &str) -> Option<&'a str> {
    let mut lines = text.lines();
    lines.find(|l| l.contains(heading))?;
    lines.next().map(str::trim)
}

/// The reason the CRL in `text` gives for `serial`, if it lists it.
fn listed_reason(text: &str, serial: &str) -> Option<String> {
    let entry = text
        .split(&format!("Serial Number: {serial}"))
        .nth(1)?
        .split("Serial Number:")
        .next()?;
    Some(
        after(entry, "CRL Reason Code")
            .unwrap_or("(no reason)")
            .to_owned(),
    )
}

/// The path of the CRL distribution point the certificate names, under the public URL.
fn distribution_point(cert: &Path) -> String {
    let (ok, out) = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-ext", "crlDistributionPoints", "-in"])
            .arg(cert),
    );
    assert!(ok, "{out}");
    let uri = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("URI:"))
        .unwrap_or_else(|| panic!("no distribution point in {}: {out}", cert.display()));
    uri.strip_prefix("https://127.0.0.1:8443")
        .unwrap_or_else(|| panic!("{uri} is not under the public URL"))
        .to_owned()
}

/// `openssl verify -crl_check` of `cert` against the CRLs in `crls` (with `-use_deltas`
/// when a delta is among them): `None` when accepted, else OpenSSL's refusal.
pub(crate) fn verify(fx: &Fixture, run: &Running, cert: &Path, crls: &[&Path]) -> Option<String> {
    let bundle = fx.path("crls.pem");
    let text: String = crls
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    std::fs::write(&bundle, text).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args(["verify", "-crl_check"]);
    if crls.len() > 1 {
        cmd.arg("-use_deltas");
    }
    let (ok, out) = run_ok(
        cmd.arg("-CAfile")
            .arg(&run.ca)
            .arg("-CRLfile")
            .arg(&bundle)
            .arg(cert),
    );
    if ok {
        assert!(out.contains(": OK"), "{out}");
        return None;
    }
    assert!(out.contains("certificate revoked"), "{out}");
    Some(out)
}

fn pkilint_clean(crls: &[&Path]) {
    if Command::new("lint_crl").arg("--help").output().is_err() {
        crate::fixture::missing("pkilint (lint_crl) is not installed");
        return;
    }
    for pem in crls {
        let (ok, out) = run_ok(
            Command::new("lint_crl")
                .args(["lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING"])
                .arg(pem),
        );
        assert!(ok && out.trim().is_empty(), "{}:\n{out}", pem.display());
    }
}

/// Runs `sql` (binding `scope`) on the fixture's database; returns the `scope` column of
/// what it selects, if anything.
fn on_db(fx: &Fixture, sql: &'static str, scope: &str) -> Vec<String> {
    let url = crate::status_agreement::database_url(fx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            sqlx::query_scalar(sql)
                .bind(scope)
                .fetch_all(&mut c)
                .await
                .expect("query")
        } else {
            let mut c = sqlx::PgConnection::connect(&url).await.expect("postgres");
            sqlx::query_scalar(sql)
                .bind(scope)
                .fetch_all(&mut c)
                .await
                .expect("query")
        }
    })
}

fn kept_scopes(fx: &Fixture) -> Vec<String> {
    on_db(
        fx,
        "SELECT scope FROM crl_bases WHERE scope <> $1 ORDER BY scope",
        "",
    )
}

fn delta_and_partitioned_crls(db: Db) {
    let Some(fx) = Fixture::with_config(db, |t| {
        t.push_str("\n[revocation]\ndelta_crl = true\ncrl_partition_days = 7\n");
    }) else {
        return;
    };
    fx.init_with_users();
    let a = fx.serve();
    let b = fx.serve_another("instance-b.toml");
    let (alice, _) = fx.obtain("alice");
    let (bob, _) = fx.obtain("bob");
    let (carol, _) = fx.obtain("carol");
    let (bob_serial, carol_serial) = (serial_of(&bob), serial_of(&carol));

    // Each certificate names the CRL of its 7-day issuance period (the three were issued
    // within seconds: a period boundary in between would be a 1 in 10^5 event).
    let part = distribution_point(&alice);
    let rest = part.strip_prefix("/crl/1-7d-").expect("a 7-day part");
    assert!(
        rest.strip_suffix(".crl")
            .is_some_and(|n| n.parse::<i64>().is_ok()),
        "{part}"
    );
    assert_eq!(distribution_point(&bob), part);
    assert_eq!(distribution_point(&carol), part);
    let delta = part.replace(".crl", "-delta.crl");

    // A complete CRL kept for a part long expired (as a store a year old has them): it goes
    // when the next complete CRL is kept.
    on_db(
        &fx,
        "INSERT INTO crl_bases (ca_id, scope, number, this_update, der) \
         VALUES (1, $1, 0, 0, '') RETURNING scope",
        "1-7d-0.crl",
    );
    assert_eq!(kept_scopes(&fx), ["1-7d-0.crl"]);

    // Bob is on hold before the first CRL is made, so the complete CRL lists him.
    fx.ok(&["user", "disable", "bob"]);
    let (full_a, full_der) = fetch_crl(&fx, &a, &part, "full-a");
    let text = crl_text(&full_a);
    assert_eq!(
        after(&text, "Issuing Distribution Point"),
        Some("Full Name:"),
        "{text}"
    );
    assert!(
        text.contains(&format!("URI:https://127.0.0.1:8443{part}")),
        "the part names itself: {text}"
    );
    assert!(
        text.contains(&format!("URI:https://127.0.0.1:8443{delta}")),
        "the complete CRL names its delta: {text}"
    );
    assert_eq!(
        listed_reason(&text, &bob_serial).as_deref(),
        Some("Certificate Hold")
    );
    let base_number = after(&text, "X509v3 CRL Number")
        .expect("a CRL number")
        .to_owned();
    assert_eq!(
        kept_scopes(&fx),
        [&part["/crl/".len()..]],
        "the live part's complete CRL is kept, the old part's gone"
    );
    // The other instance serves the same complete CRL: a delta from either applies to it.
    let (_, full_b_der) = fetch_crl(&fx, &b, &part, "full-b");
    assert_eq!(
        full_b_der, full_der,
        "both instances serve the kept complete CRL"
    );
    assert_eq!(verify(&fx, &a, &alice, &[&full_a]), None);
    assert!(verify(&fx, &a, &bob, &[&full_a]).is_some());

    // Changes after it go into the delta CRL, whichever instance makes it.
    fx.ok(&["user", "enable", "bob"]);
    fx.ok(&[
        "cert",
        "revoke",
        &carol_serial,
        "--reason",
        "key-compromise",
    ]);
    let mut delta_text = String::new();
    let mut delta_b = PathBuf::new();
    eventually(15, "the delta CRL lists both changes", || {
        delta_b = fetch_crl(&fx, &b, &delta, "delta-b").0;
        delta_text = crl_text(&delta_b);
        listed_reason(&delta_text, &carol_serial).as_deref() == Some("Key Compromise")
            && listed_reason(&delta_text, &bob_serial).as_deref() == Some("Remove From CRL")
    });
    assert_eq!(
        after(&delta_text, "Delta CRL Indicator"),
        Some(base_number.as_str()),
        "{delta_text}"
    );
    assert!(
        delta_text.contains("Issuing Distribution Point") && delta_text.contains(&part),
        "the delta covers the same part: {delta_text}"
    );
    assert_eq!(listed_reason(&delta_text, &serial_of(&alice)), None);

    // The complete CRL waits for its refresh period (that is what deltas are for) ...
    let (_, again) = fetch_crl(&fx, &a, &part, "full-a-again");
    assert_eq!(again, full_der);
    assert_eq!(verify(&fx, &a, &carol, &[&full_a]), None);
    // ... and OpenSSL, given both, knows the current state: carol revoked, bob released.
    assert_eq!(verify(&fx, &a, &alice, &[&full_a, &delta_b]), None);
    assert_eq!(verify(&fx, &a, &bob, &[&full_a, &delta_b]), None);
    assert!(verify(&fx, &a, &carol, &[&full_a, &delta_b]).is_some());

    // The whole CA's CRL goes on listing every certificate.
    let (whole, _) = fetch_crl(&fx, &a, "/crl/1.crl", "whole");
    let whole_text = crl_text(&whole);
    assert!(
        !whole_text.contains("Issuing Distribution Point"),
        "{whole_text}"
    );
    assert_eq!(
        listed_reason(&whole_text, &carol_serial).as_deref(),
        Some("Key Compromise")
    );
    let (whole_delta, _) = fetch_crl(&fx, &a, "/crl/1-delta.crl", "whole-delta");
    pkilint_clean(&[&full_a, &delta_b, &whole, &whole_delta]);

    // CRLs no certificate can name are not signed: a period long past, a period length
    // never configured, a second spelling.
    let this_period: i64 = rest.trim_end_matches(".crl").parse().unwrap();
    for path in [
        "/crl/1-7d-0.crl".to_owned(),
        format!("/crl/1-30d-{}.crl", this_period / 4),
        format!("/crl/1-7d-{}.crl", this_period + 2),
        format!("/crl/01-7d-{this_period}.crl"),
        "/crl/2.crl".to_owned(),
    ] {
        let (status, _) = curl(&a.ca, &[&a.url(&path)]);
        assert_eq!(status, 404, "{path}");
    }
}

#[test]
fn delta_and_partitioned_crls_sqlite() {
    delta_and_partitioned_crls(Db::Sqlite);
}

#[test]
fn delta_and_partitioned_crls_postgres() {
    delta_and_partitioned_crls(Db::Postgres);
}
