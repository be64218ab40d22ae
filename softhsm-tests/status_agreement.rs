//! One answer everywhere: for each state a certificate can be in, the gateway, `openssl
//! ocsp` against the responder and `openssl verify -crl_check` against the distribution
//! point's CRL give the same verdict, on two `certgate serve` processes sharing one
//! database (SQLite file or PostgreSQL), while staff change states from the command line.
//!
//! Expiry is not a row here: a certificate the CA signed today cannot be expired without a
//! clock the processes share; the rule for it (OCSP keeps answering, the CRL drops it, the
//! gateway refuses) is covered by the unit tests of `status::standing` and `status::decide`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::faults::{eventually, eventually_seen};
use crate::fixture::{Db, Fixture, Running, call_app, curl, key_and_der_csr, pkcs7_to_pem};

/// What every channel must say about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Gateway lets it through, OCSP `good`, not on the CRL.
    Good,
    /// Refused by the gateway with `gateway` (its JSON `error`), revoked in OCSP with
    /// `ocsp` as reason, listed on the CRL with `crl` as reason.
    Refused {
        gateway: &'static str,
        ocsp: &'static str,
        crl: &'static str,
    },
}

const HELD_USER: Expect = Expect::Refused {
    gateway: "user_disabled",
    ocsp: "certificateHold",
    crl: "Certificate Hold",
};
const HELD_CONTRACT: Expect = Expect::Refused {
    gateway: "contract_disabled",
    ocsp: "certificateHold",
    crl: "Certificate Hold",
};
const SUPERSEDED: Expect = Expect::Refused {
    gateway: "superseded",
    ocsp: "superseded",
    crl: "Superseded",
};
const KEY_COMPROMISE: Expect = Expect::Refused {
    gateway: "revoked",
    ocsp: "keyCompromise",
    crl: "Key Compromise",
};

/// One row of the table.
struct Case {
    state: &'static str,
    cert: PathBuf,
    /// `None` for the server certificate: the gateway serves it, no client presents it.
    key: Option<PathBuf>,
    expect: Expect,
}

pub(crate) fn run_ok(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("command runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub(crate) fn serial_of(cert: &Path) -> String {
    let (ok, out) = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(cert),
    );
    assert!(ok, "{out}");
    out.trim()
        .trim_start_matches("serial=")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The gateway's verdict: `None` when it lets the certificate through, else its refusal code.
/// A certificate the gateway already knows to be revoked is refused in the handshake.
fn gateway_verdict(run: &Running, cert: &Path, key: &Path) -> Option<String> {
    let (status, body) = call_app(run, cert, key);
    match status {
        200 => None,
        0 => Some("revoked".into()),
        _ => Some(
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {status}: {body}")),
        ),
    }
}

/// `openssl ocsp`'s verdict: `None` for good, else the revocation reason it printed. The
/// response must verify against the CA. Without a nonce, so the responder may answer from
/// its cache: a stale cached answer after a change would fail the test.
fn ocsp_verdict(run: &Running, cert: &Path) -> Option<String> {
    let (ok, out) = run_ok(
        Command::new("openssl")
            .args(["ocsp", "-issuer"])
            .arg(&run.ca)
            .arg("-cert")
            .arg(cert)
            .args(["-no_nonce", "-url", &run.url("/ocsp"), "-CAfile"])
            .arg(&run.ca)
            .arg("-verify_other")
            .arg(&run.ca),
    );
    assert!(ok && out.contains("Response verify OK"), "{out}");
    if out.contains(": good") {
        return None;
    }
    assert!(out.contains(": revoked"), "{out}");
    Some(
        out.lines()
            .find_map(|l| l.trim().strip_prefix("Reason: "))
            .unwrap_or("(no reason)")
            .to_owned(),
    )
}

/// The CRL's verdict, fetched from the distribution point: `None` when `openssl verify
/// -crl_check` accepts the certificate, else the reason `openssl crl` lists for its serial.
fn crl_verdict(fx: &Fixture, run: &Running, cert: &Path) -> Option<String> {
    let name = format!("crl-{}", run.https);
    let (pem, _) = crate::crl_kinds::fetch_crl(fx, run, "/crl/1.crl", &name);
    crate::crl_kinds::verify(fx, run, cert, &[&pem])?;
    let (ok, text) = run_ok(
        Command::new("openssl")
            .args(["crl", "-noout", "-text", "-in"])
            .arg(&pem),
    );
    assert!(ok, "{text}");
    let serial = serial_of(cert);
    let after = text
        .split(&format!("Serial Number: {serial}"))
        .nth(1)
        .unwrap_or_default();
    let entry = after.split("Serial Number:").next().unwrap_or_default();
    Some(
        entry
            .lines()
            .skip_while(|l| !l.contains("CRL Reason Code"))
            .nth(1)
            .map(|l| l.trim().to_owned())
            .unwrap_or_else(|| "(no reason)".into()),
    )
}

/// Waits (bounded: the change reaches every process through the store's change feed) until
/// all three channels of `run` give `case` its expected verdict.
fn agree(fx: &Fixture, run: &Running, case: &Case) {
    let (want_gw, want_ocsp, want_crl) = match case.expect {
        Expect::Good => (None, None, None),
        Expect::Refused { gateway, ocsp, crl } => (Some(gateway), Some(ocsp), Some(crl)),
    };
    let mut last = String::new();
    eventually_seen(
        15,
        &format!("{} on :{}: one verdict everywhere", case.state, run.https),
        || {
            let gw = case
                .key
                .as_ref()
                .map(|key| gateway_verdict(run, &case.cert, key));
            let ocsp = ocsp_verdict(run, &case.cert);
            let crl = crl_verdict(fx, run, &case.cert);
            last = format!("gateway {gw:?}, OCSP {ocsp:?}, CRL {crl:?}");
            let gw_ok = gw.is_none_or(|g| g.as_deref() == want_gw);
            if gw_ok && ocsp.as_deref() == want_ocsp && crl.as_deref() == want_crl {
                Ok(())
            } else {
                Err(last.clone())
            }
        },
    );
    eprintln!("{} on :{}: agreed ({last})", case.state, run.https);
}

/// The database URL the fixture's configuration names.
pub(crate) fn database_url(fx: &Fixture) -> String {
    let text = std::fs::read_to_string(&fx.config).expect("config");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("url = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a [database] url")
        .to_owned()
}

/// Moves the supersession of `serial` `days` into the past, as if the overlap had passed,
/// and announces it on the store's change feed as every status change is.
fn age_supersession(fx: &Fixture, serial: &str, days: i64) {
    let url = database_url(fx);
    let serial = serial.to_ascii_lowercase();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let shift = days * 86_400;
        let update = "UPDATE certificates SET superseded_at = superseded_at - $2 \
                      WHERE serial = $1 AND status = 'superseded'";
        let done = if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            let n = sqlx::query(update)
                .bind(&serial)
                .bind(shift)
                .execute(&mut c)
                .await
                .expect("update")
                .rows_affected();
            sqlx::query("INSERT INTO cert_changes (serial) VALUES ($1)")
                .bind(&serial)
                .execute(&mut c)
                .await
                .expect("announce");
            n
        } else {
            let mut c = sqlx::PgConnection::connect(&url).await.expect("postgres");
            let n = sqlx::query(update)
                .bind(&serial)
                .bind(shift)
                .execute(&mut c)
                .await
                .expect("update")
                .rows_affected();
            sqlx::query("SELECT pg_notify('certgate_cert', $1)")
                .bind(&serial)
                .execute(&mut c)
                .await
                .expect("announce");
            n
        };
        assert_eq!(done, 1, "{serial} is a superseded certificate");
    });
}

/// Renews `cert` through EST `simplereenroll`; returns the new certificate and key.
fn renew(fx: &Fixture, run: &Running, name: &str, cert: &Path, key: &Path) -> (PathBuf, PathBuf) {
    use base64::Engine;
    let (new_key, csr) = key_and_der_csr(fx, name);
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).unwrap());
    let body = fx.path(&format!("{name}.b64"));
    std::fs::write(&body, b64).unwrap();
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
    assert_eq!(status, 200, "{text}");
    let renewed = fx.path(&format!("{name}.pem"));
    std::fs::write(&renewed, pkcs7_to_pem(fx, &text)).unwrap();
    (renewed, new_key)
}

/// pkilint (when installed; required under CI) finds nothing at WARNING on the CRL, which
/// now lists held, superseded and revoked entries, nor on any kind of OCSP answer: good
/// (with a nonce), held, superseded, unknown, and the unsigned malformedRequest.
fn pkilint_clean(fx: &Fixture, run: &Running, held: &Path, good: &Path, superseded: &Path) {
    if Command::new("lint_crl").arg("--help").output().is_err() {
        crate::fixture::missing("pkilint (lint_crl) is not installed");
        return;
    }
    let ask = |name: &str, what: &[&str], nonce: bool, expect: &str| {
        let resp = fx.path(&format!("{name}-ocsp.der"));
        let mut cmd = Command::new("openssl");
        cmd.args(["ocsp", "-issuer"]).arg(&run.ca).args(what);
        if !nonce {
            cmd.arg("-no_nonce");
        }
        let (ok, out) = run_ok(
            cmd.args(["-url", &run.url("/ocsp"), "-noverify", "-respout"])
                .arg(&resp),
        );
        assert!(ok && out.contains(expect), "{name}: {out}");
        resp
    };
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let mut answers = vec![
        ask(
            "held",
            &["-cert", &path(held)],
            false,
            "Reason: certificateHold",
        ),
        ask("good", &["-cert", &path(good)], true, ": good"),
        ask(
            "superseded",
            &["-cert", &path(superseded)],
            false,
            "Reason: superseded",
        ),
        ask(
            "unknown",
            &["-serial", "0x4000000000000000000000000000beef"],
            false,
            ": unknown",
        ),
    ];
    let malformed = fx.path("malformed-ocsp.der");
    let (status, _) = crate::fixture::curl(
        &run.ca,
        &[
            "-H",
            "Content-Type: application/ocsp-request",
            "--data-binary",
            "not DER",
            "-o",
            malformed.to_str().unwrap(),
            &run.url("/ocsp"),
        ],
    );
    assert_eq!(status, 200);
    answers.push(malformed);
    let crl = fx.path(&format!("crl-{}.der", run.https));
    let mut lints = vec![(
        "lint_crl",
        &["lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING"][..],
        crl,
    )];
    lints.extend(
        answers
            .into_iter()
            .map(|a| ("lint_ocsp_response", &["lint", "-s", "WARNING"][..], a)),
    );
    for (tool, args, file) in lints {
        let (ok, out) = run_ok(Command::new(tool).args(args).arg(&file));
        assert!(
            ok && out.trim().is_empty(),
            "{tool} {}:\n{out}",
            file.display()
        );
    }
}

fn check_all(fx: &Fixture, runs: &[&Running], cases: &[Case]) {
    for run in runs {
        for case in cases {
            agree(fx, run, case);
        }
    }
}

fn one_verdict_everywhere(db: Db) {
    // 30-day certificates with the 30-day renewal window: renewal is open from issuance.
    let Some(fx) = Fixture::with_config(db, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
    }) else {
        return;
    };
    fx.init_with_users();
    for login in ["erin", "frank", "grace"] {
        fx.ok(&[
            "user",
            "add",
            login,
            "--contract",
            "corp1",
            "--role",
            "general",
            "--email",
            &format!("{login}@example.com"),
        ]);
    }
    let a = fx.serve();
    let b = fx.serve_another("instance-b.toml");

    let (alice, alice_key) = fx.obtain("alice");
    let (bob_old, bob_old_key) = fx.obtain("bob");
    let (bob_new, bob_new_key) = renew(&fx, &a, "bob-renewed", &bob_old, &bob_old_key);
    let (erin_old, erin_old_key) = fx.obtain("erin");
    renew(&fx, &b, "erin-renewed", &erin_old, &erin_old_key);
    let (carol, carol_key) = fx.obtain("carol");
    let (dave, dave_key) = fx.obtain("dave");
    let (frank, frank_key) = fx.obtain("frank");
    let (grace, grace_key) = fx.obtain("grace");
    let server = fx.path("server.pem");

    // Staff change states from the command line (a third process).
    age_supersession(&fx, &serial_of(&erin_old), 8);
    fx.ok(&[
        "cert",
        "revoke",
        &serial_of(&carol),
        "--reason",
        "key-compromise",
    ]);
    fx.ok(&["user", "disable", "frank"]);
    fx.ok(&["contract", "disable", "corp2"]);
    fx.ok(&["user", "disable", "grace"]);
    fx.ok(&["user", "enable", "grace"]);

    let case = |state, cert: &PathBuf, key: &PathBuf, expect| Case {
        state,
        cert: cert.clone(),
        key: Some(key.clone()),
        expect,
    };
    let mut cases = vec![
        case("current", &alice, &alice_key, Expect::Good),
        case(
            "renewed within overlap",
            &bob_old,
            &bob_old_key,
            Expect::Good,
        ),
        case(
            "superseded past overlap",
            &erin_old,
            &erin_old_key,
            SUPERSEDED,
        ),
        case("revoked", &carol, &carol_key, KEY_COMPROMISE),
        case("disabled user", &frank, &frank_key, HELD_USER),
        case("disabled contract", &dave, &dave_key, HELD_CONTRACT),
        case("re-enabled", &grace, &grace_key, Expect::Good),
        Case {
            state: "server certificate",
            cert: server.clone(),
            key: None,
            expect: Expect::Good,
        },
    ];
    check_all(&fx, &[&a, &b], &cases);
    pkilint_clean(&fx, &a, &frank, &alice, &erin_old);

    // The renewal's first use ends bob's overlap at once: his old certificate is refused
    // everywhere from then (checked first, so that the old one is judged after it).
    cases.insert(0, case("the renewal", &bob_new, &bob_new_key, Expect::Good));
    // A hold is lifted: good again everywhere, and off the next CRL.
    fx.ok(&["user", "enable", "frank"]);
    fx.ok(&["contract", "enable", "corp2"]);
    // The server certificate is revoked like any other.
    fx.ok(&[
        "cert",
        "revoke",
        &serial_of(&server),
        "--reason",
        "cessation-of-operation",
    ]);
    for c in &mut cases {
        c.expect = match c.state {
            "disabled user" | "disabled contract" => Expect::Good,
            // Revoked by the store (reason superseded) at the renewal's first use.
            "renewed within overlap" => Expect::Refused {
                gateway: "revoked",
                ocsp: "superseded",
                crl: "Superseded",
            },
            "server certificate" => Expect::Refused {
                gateway: "",
                ocsp: "cessationOfOperation",
                crl: "Cessation Of Operation",
            },
            _ => c.expect,
        };
    }
    check_all(&fx, &[&a, &b], &cases);

    // /metrics counts the current certificates expiring soon: every client certificate
    // here is a 30-day one, none expires within a week. A third instance counts at start.
    let c = fx.serve_another("instance-c.toml");
    // The customer certificates by status, as the store lists them (none has expired).
    let listed: serde_json::Value =
        serde_json::from_str(&fx.ok(&["cert", "list", "--format", "json"])).expect("cert list");
    let count = |status: &str| {
        listed
            .as_array()
            .expect("a list")
            .iter()
            .filter(|c| c["status"] == status)
            .count() as i64
    };
    // The running instances may revoke a superseded certificate between the listing and
    // the count (its successor was used): those two are compared as one sum.
    let (current, retired) = (count("current"), count("superseded") + count("revoked"));
    assert!(retired > 0, "the cases include revoked certificates");
    let mut last = String::new();
    eventually(15, "the expiry gauges are on /metrics", || {
        let out = Command::new("curl")
            .args(["-sS", &format!("http://127.0.0.1:{}/metrics", c.admin)])
            .output()
            .expect("curl runs");
        last = String::from_utf8_lossy(&out.stdout).into_owned();
        let value = |labels: &str| {
            last.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("certgate_certificates_expiring{{{labels}}} "))
                })
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        let gauge = |name: &str| {
            last.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        value(r#"kind="client",within="30d""#).is_some_and(|n| n >= 5)
            && value(r#"kind="client",within="10d""#) == Some(0)
            && value(r#"kind="server",within="10d""#) == Some(0)
            && gauge(r#"certgate_certificates{status="current"}"#) == Some(current)
            && gauge(r#"certgate_certificates{status="expired"}"#) == Some(0)
            && gauge(r#"certgate_certificates{status="superseded"}"#)
                .zip(gauge(r#"certgate_certificates{status="revoked"}"#))
                .is_some_and(|(s, r)| s + r == retired)
            // The HSM's session pool is open and nothing had to be recovered.
            && gauge(r#"certgate_hsm_sessions{state="size"}"#).is_some_and(|n| n >= 1)
            && gauge(r#"certgate_hsm_sessions{state="idle"}"#).is_some_and(|n| n >= 1)
            && gauge("certgate_hsm_session_recoveries_total") == Some(0)
    });

    // Every issuance of a server certificate and every switch is in the audit chain.
    let log = fx.ok(&["audit", "export"]);
    for action in ["server_cert.issue", "server_cert.revoke", "user.disable"] {
        assert!(log.contains(action), "{action} missing from the audit log");
    }
    fx.ok(&["audit", "verify"]);
}

#[test]
fn one_verdict_everywhere_sqlite() {
    one_verdict_everywhere(Db::Sqlite);
}

#[test]
fn one_verdict_everywhere_postgres() {
    one_verdict_everywhere(Db::Postgres);
}
