//! A CRL with 100,000 revoked entries: served whole and read by OpenSSL entry for entry, the
//! delta CRL after one more revocation lists that one alone, and the serving process's
//! peak memory stays bounded. Build times and sizes are measured by `bench/crl.sh`
//! (BENCHMARKS.md), not here.

use std::process::Command;

use crate::fixture::{Db, Fixture, curl};
use crate::status_agreement::{database_url, run_ok, serial_of};

const ENTRIES: i64 = 100_000;
/// Peak resident memory allowed to the serving process: the CRL is about 4 MB of DER, and
/// building it holds the rows, the entries and the encoding at once.
const PEAK_KIB: u64 = 512 * 1024;

/// Adds `ENTRIES` revoked certificates of alice (contract corp1) to the store, in one
/// statement. Serials start with 4 like the CA's own (positive, no leading zero).
fn seed_revoked(fx: &Fixture) {
    let url = database_url(fx);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let done = sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO certificates (serial, login, contract_id, ca_id, der, sha256, \
               spki_sha256, not_before, not_after, status, revoked_at, revocation_reason, \
               created_at) \
             SELECT printf('4%031x', i), 'alice', 'corp1', \
               (SELECT id FROM cas WHERE active), x'00', printf('%064x', i), \
               printf('%064x', i), $2 - 1000, $2 + 86400 * 300, 'revoked', $2 - 100, \
               'keyCompromise', $2 - 1000 FROM n",
        )
        .bind(ENTRIES)
        .bind(now)
        .execute(&mut c)
        .await
        .expect("seed")
        .rows_affected();
        assert_eq!(done, ENTRIES as u64);
    });
}

fn listed(fx: &Fixture, der: &[u8], name: &str) -> (usize, String) {
    let file = fx.path(name);
    std::fs::write(&file, der).unwrap();
    let (ok, text) = run_ok(
        Command::new("openssl")
            .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
            .arg(&file),
    );
    assert!(ok, "{}", &text[..text.len().min(2000)]);
    (text.matches("Serial Number:").count(), text)
}

fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[test]
fn a_crl_of_100_000_entries_is_served_and_its_delta_stays_small() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        t.push_str("\n[revocation]\ndelta_crl = true\n");
    }) else {
        return;
    };
    fx.init_with_users();
    let (carol, _) = fx.obtain("carol");
    seed_revoked(&fx);
    let run = fx.serve();

    let fetch = |path: &str| {
        let out = fx.path("fetched.der");
        let (status, text) = curl(&run.ca, &["-o", out.to_str().unwrap(), &run.url(path)]);
        assert_eq!(status, 200, "{path}: {text}");
        std::fs::read(&out).unwrap()
    };
    let whole = fetch("/crl/1.crl");
    let (count, _) = listed(&fx, &whole, "whole.der");
    assert_eq!(count, ENTRIES as usize);
    // Served again from the kept copy, byte for byte.
    assert_eq!(fetch("/crl/1.crl"), whole);

    fx.ok(&[
        "cert",
        "revoke",
        &serial_of(&carol),
        "--reason",
        "key-compromise",
    ]);
    let mut delta = Vec::new();
    crate::faults::eventually(15, "the delta lists the revocation", || {
        delta = fetch("/crl/1-delta.crl");
        listed(&fx, &delta, "delta.der").0 == 1
    });
    let (_, text) = listed(&fx, &delta, "delta.der");
    assert!(
        text.contains(&serial_of(&carol)) && text.contains("Key Compromise"),
        "{text}"
    );
    let peak = peak_kib(run.pid());
    eprintln!(
        "CRL of {ENTRIES} entries: {} bytes; delta {} bytes; serve peak {peak} KiB",
        whole.len(),
        delta.len()
    );
    assert!(peak < PEAK_KIB, "serve peaked at {peak} KiB");
}
