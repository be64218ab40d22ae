//! The staff console against the real binary: staff certificates from `staff cert sign`,
//! the staff listener's live check, each role against each kind of call, four-eyes
//! requests (maker, checker, rejection, expiry), cross-site refusals and bad input; and on
//! PostgreSQL with two gateway instances, an approved revocation refused by both at once.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::faults::eventually;
use crate::fixture::{
    CSRF, Db, Fixture, Running, STAFF_CSRF, ServeAs, call_app, curl, free_port, last_line, missing,
};

/// A staff member's certificate and key files.
pub(crate) struct Staff {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// Adds `name` with `role` and gives them a certificate through `staff authorize` and
/// `staff cert sign`, as the security team does on the host.
pub(crate) fn staff_member(fx: &Fixture, name: &str, role: &str) -> Staff {
    fx.ok(&[
        "staff",
        "add",
        name,
        "--role",
        role,
        "--email",
        &format!("{name}@bank.example"),
    ]);
    let code = last_line(&fx.ok(&["staff", "authorize", name]));
    let (key, csr) = fx.openssl_csr(&format!("staff-{name}"), "ec:P-256");
    let pem = fx.ok(&[
        "staff",
        "cert",
        "sign",
        name,
        "--csr",
        csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    let cert = fx.path(&format!("staff-{name}.pem"));
    std::fs::write(&cert, pem).expect("write staff certificate");
    Staff { cert, key }
}

/// The `[staff]` section, given as the route settings of [`Fixture::serve_with`] so that
/// only that instance gets it (TOML: a new table after the route's keys).
pub(crate) fn staff_section(port: u16) -> String {
    format!(
        "\n[staff]\naddr = \"127.0.0.1:{port}\"\nhost = \"127.0.0.1\"\ncert = \"server.pem\"\nkey = \"server.key\"\n"
    )
}

/// One console call: `method` on `/staff/api/v1/<path>` with the pages' double-submit
/// token and a JSON body when given; (status, JSON body or `Null`).
fn call(
    run: &Running,
    port: u16,
    who: (&Path, &Path),
    method: &str,
    path: &str,
    body: Option<&str>,
    extra: &[&str],
) -> (u16, Value) {
    let url = format!("https://127.0.0.1:{port}/staff/api/v1/{path}");
    let mut args: Vec<&str> = vec![
        "--cert",
        who.0.to_str().unwrap(),
        "--key",
        who.1.to_str().unwrap(),
        "-X",
        method,
    ];
    args.extend(STAFF_CSRF);
    args.extend(extra);
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    args.push(&url);
    let (status, text) = curl(&run.ca, &args);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn serial_of(fx: &Fixture, login: &str) -> String {
    let out = fx.ok(&["cert", "list", "--login", login, "--format", "json"]);
    let rows: Value = serde_json::from_str(&out).expect("cert list json");
    rows.as_array()
        .and_then(|a| a.iter().find(|r| r["status"] == "current"))
        .and_then(|r| r["serial"].as_str())
        .expect("a current certificate")
        .to_owned()
}

#[test]
fn staff_console_roles_four_eyes_and_refusals() {
    // 30-day certificates: renewal is open from issuance on.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
    }) else {
        return;
    };
    fx.init_with_users();
    let sato = staff_member(&fx, "sato", "operator");
    let suzuki = staff_member(&fx, "suzuki", "supervisor");
    let tanaka = staff_member(&fx, "tanaka", "supervisor");
    let kato = staff_member(&fx, "kato", "auditor");
    let (carol, carol_key) = fx.obtain("carol");
    let (bob, bob_key) = fx.obtain("bob");
    let port = free_port();
    let run = fx.serve_with(&staff_section(port));
    let as_ = |s: &Staff| (s.cert.clone(), s.key.clone());
    let c = |who: &(PathBuf, PathBuf), method: &str, path: &str, body: Option<&str>| {
        call(&run, port, (&who.0, &who.1), method, path, body, &[])
    };
    let (op, sup, sup2, aud) = (as_(&sato), as_(&suzuki), as_(&tanaka), as_(&kato));

    // Who is calling, with the role the store gives.
    let (s, me) = c(&aud, "GET", "me", None);
    assert_eq!(
        (s, me["name"].as_str(), me["role"].as_str()),
        (200, Some("kato"), Some("auditor"))
    );

    // Each role against every call. Targets that do not exist (or a bad body) let an
    // allowed call fail after the role check without changing anything; a forbidden one
    // is refused first, as `role_forbidden`.
    for (who, role) in [(&op, "operator"), (&sup, "supervisor"), (&aud, "auditor")] {
        let reads = [
            "me",
            "contracts",
            "users?contract=corp1",
            "certificates?login=carol",
            "requests",
            "staff",
            "audit?limit=5",
        ];
        for path in reads {
            let (s, b) = c(who, "GET", path, None);
            let allowed = !(path.starts_with("audit") && role == "operator");
            assert_eq!(s, if allowed { 200 } else { 403 }, "{role} GET {path}: {b}");
        }
        let contract = format!(r#"{{"id":"role-{role}","name":"Role test"}}"#);
        let user = format!(
            r#"{{"login":"role-{role}","contract":"corp1","role":"general","email":"r@example.com"}}"#
        );
        let changes: [(&str, &str); 18] = [
            ("contracts", &contract),
            ("contracts/nosuch/disable", "{}"),
            ("contracts/nosuch/enable", "{}"),
            ("users", &user),
            ("users/nosuch/disable", "{}"),
            ("users/nosuch/enable", "{}"),
            ("users/nosuch/authorize", "{}"),
            ("users/nosuch/reissue", "{}"),
            ("certificates/0a0b/revoke", r#"{"reason":"unspecified"}"#),
            (
                "staff",
                r#"{"name":"x","role":"owner","email":"x@bank.example"}"#,
            ),
            ("staff/nosuch/role", r#"{"role":"auditor"}"#),
            ("staff/nosuch/disable", "{}"),
            ("staff/nosuch/enable", "{}"),
            ("staff/nosuch/authorize", "{}"),
            ("requests/999999/withdraw", "{}"),
            ("requests/999999/approve", "{}"),
            ("requests/999999/reject", "{}"),
            ("renew", r#"{"csr":"not a CSR"}"#),
        ];
        for (path, body) in changes {
            let (s, b) = c(who, "POST", path, Some(body));
            let allowed = match path {
                "renew" => true,
                p if p.ends_with("approve") || p.ends_with("reject") => role == "supervisor",
                _ => role != "auditor",
            };
            if allowed {
                assert_ne!(b["error"], "role_forbidden", "{role} POST {path}: {s} {b}");
                assert!(
                    s == 200 || (400..500).contains(&s),
                    "{role} POST {path}: {s} {b}"
                );
                assert_ne!(s, 202, "{role} POST {path} made a request: {b}");
            } else {
                assert_eq!(
                    (s, b["error"].as_str()),
                    (403, Some("role_forbidden")),
                    "{role} {path}"
                );
            }
        }
    }
    assert_eq!(
        c(&sup, "GET", "requests?state=pending", None).1["requests"],
        serde_json::json!([]),
        "a refused or failed call left a request"
    );
    let contracts = fx.ok(&["contract", "list", "--format", "json"]);
    assert!(contracts.contains("role-operator") && contracts.contains("role-supervisor"));
    assert!(
        !contracts.contains("role-auditor"),
        "an auditor changed something"
    );
    assert_eq!(call_app(&run, &carol, &carol_key).0, 200);

    // A customer certificate on the staff listener; a staff certificate on an app route.
    let customer = call(&run, port, (&carol, &carol_key), "GET", "me", None, &[]);
    assert_eq!(
        (customer.0, customer.1["error"].as_str()),
        (403, Some("not_staff"))
    );
    // Audited, but one row a minute per certificate: more tries add no rows.
    for _ in 0..3 {
        let again = call(&run, port, (&carol, &carol_key), "GET", "me", None, &[]);
        assert_eq!(again.0, 403);
    }
    let carol_now = serial_of(&fx, "carol");
    let (_, b) = c(
        &aud,
        "GET",
        &format!("audit?action=staff.access&subject={carol_now}"),
        None,
    );
    let refused: Vec<_> = b["entries"].as_array().expect("entries").iter().collect();
    assert_eq!(refused.len(), 1, "{b}");
    assert_eq!(refused[0]["outcome"], "refused");
    assert_eq!(refused[0]["detail"]["reason"], "not_staff", "{b}");
    // Every console request has its access log line: who, what, the answer.
    eventually(10, "access log lines of the console", || {
        let log = run.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("certgate::access") && l.contains("listener=\"staff_console\""))
            .collect();
        lines.iter().any(|l| {
            l.contains("status=200")
                && l.contains("staff=\"kato\"")
                && l.contains("path=\"/staff/api/v1/me\"")
        }) && lines
            .iter()
            .filter(|l| {
                l.contains("status=403")
                    && l.contains("reason=\"not_staff\"")
                    && l.contains(&format!("serial=\"{carol_now}\""))
            })
            .count()
            == 4
    });
    // The metric counts every one of the four.
    let out = std::process::Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{}/metrics", run.admin)])
        .output()
        .expect("curl runs");
    let metrics = String::from_utf8_lossy(&out.stdout);
    assert!(
        metrics.contains("certgate_staff_console_refusals_total{reason=\"not_staff\"} 4"),
        "{metrics}"
    );
    let (s, _) = call_app(&run, &sato.cert, &sato.key);
    assert_eq!(s, 403, "a staff certificate reached the app");

    // Cross-site posts are refused and change nothing.
    for (extra, what) in [
        (vec!["-H", "Origin: https://evil.example"], "foreign Origin"),
        (vec!["-H", "Sec-Fetch-Site: cross-site"], "cross-site fetch"),
    ] {
        let (s, b) = call(
            &run,
            port,
            (&op.0, &op.1),
            "POST",
            "contracts",
            Some(r#"{"id":"xsite","name":"X"}"#),
            &extra,
        );
        assert_eq!(
            (s, b["error"].as_str()),
            (403, Some("cross_site")),
            "{what}"
        );
    }
    let url = format!("https://127.0.0.1:{port}/staff/api/v1/contracts");
    let (s, _) = curl(
        &run.ca,
        &[
            "--cert",
            op.0.to_str().unwrap(),
            "--key",
            op.1.to_str().unwrap(),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"id":"xsite","name":"X"}"#,
            &url,
        ],
    );
    assert_eq!(s, 403, "a post without the page's token");
    assert!(!fx.ok(&["contract", "list"]).contains("xsite"));

    // Bad input: a clear error, nothing changed.
    let add_user = |login: &str, contract: &str, role: &str| {
        c(
            &op,
            "POST",
            "users",
            Some(&format!(
                r#"{{"login":"{login}","contract":"{contract}","role":"{role}","email":"{login}@example.com"}}"#
            )),
        )
    };
    let (s, b) = add_user("newbie", "no-such-contract", "general");
    assert_eq!((s, b["error"].as_str()), (404, Some("not_found")), "{b}");
    let (s, b) = add_user("carol", "corp1", "general");
    assert_eq!((s, b["error"].as_str()), (409, Some("login_exists")), "{b}");
    let (s, b) = add_user("newbie", "corp1", "owner");
    assert_eq!((s, b["error"].as_str()), (400, Some("bad_request")), "{b}");
    let (s, b) = add_user("new bie", "corp1", "general");
    assert_eq!(
        (s, b["error"].as_str()),
        (400, Some("bad_identifier")),
        "{b}"
    );
    assert!(
        !fx.ok(&["user", "list", "--contract", "corp1"])
            .contains("newbie")
    );

    // Four eyes: a revocation asked by the operator waits; nothing changes until approved.
    let carol_serial = serial_of(&fx, "carol");
    let revoke = format!("certificates/{carol_serial}/revoke");
    let (s, b) = c(&op, "POST", &revoke, Some(r#"{"reason":"keyCompromise"}"#));
    assert_eq!((s, b["state"].as_str()), (202, Some("pending")), "{b}");
    let r1 = b["request"].as_i64().expect("request id");
    assert_eq!(
        call_app(&run, &carol, &carol_key).0,
        200,
        "revoked before approval"
    );
    let (s, b) = c(&op, "POST", &format!("requests/{r1}/approve"), Some("{}"));
    assert_eq!((s, b["error"].as_str()), (403, Some("role_forbidden")));

    // A supervisor's own request: they cannot approve it; another supervisor rejects it.
    let (s, b) = c(&sup, "POST", &revoke, Some(r#"{"reason":"unspecified"}"#));
    assert_eq!(s, 202, "{b}");
    let r2 = b["request"].as_i64().expect("request id");
    let (s, b) = c(&sup, "POST", &format!("requests/{r2}/approve"), Some("{}"));
    assert_eq!((s, b["error"].as_str()), (403, Some("own_request")), "{b}");
    let (s, b) = c(&sup2, "POST", &format!("requests/{r2}/reject"), Some("{}"));
    assert_eq!((s, b["state"].as_str()), (200, Some("rejected")), "{b}");
    let (s, b) = c(&sup2, "POST", &format!("requests/{r2}/approve"), Some("{}"));
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("request_finished")),
        "{b}"
    );
    assert_eq!(
        call_app(&run, &carol, &carol_key).0,
        200,
        "a rejected request ran"
    );

    // The other supervisor approves the operator's request: it runs, refused at once.
    let (s, b) = c(&sup, "POST", &format!("requests/{r1}/approve"), Some("{}"));
    assert_eq!((s, b["state"].as_str()), (200, Some("done")), "{b}");
    assert_eq!(
        call_app(&run, &carol, &carol_key).0,
        403,
        "revoked certificate passed"
    );

    // An administrator's re-issue waits for approval; the approval answers the new code.
    let (s, b) = c(&op, "POST", "users/alice/reissue", Some("{}"));
    assert_eq!(s, 202, "{b}");
    let r3 = b["request"].as_i64().expect("request id");
    let (s, b) = c(&sup2, "POST", &format!("requests/{r3}/approve"), Some("{}"));
    assert_eq!(s, 200, "{b}");
    let code = b["code"].as_str().expect("the new issuance code");
    assert!(code.len() >= 20, "{code}");
    // An administrator's code waits too: one operator cannot add an administrator and take
    // its code alone. A general user's code waits as well (`cert.reissue.user`: such codes
    // are the contract administrator's to make); a general user's re-issue waits.
    let (s, b) = c(&op, "POST", "users/dave/authorize", Some("{}"));
    assert_eq!((s, b["state"].as_str()), (202, Some("pending")), "{b}");
    assert!(b["code"].is_null(), "{b}");
    let r4 = b["request"].as_i64().expect("request id");
    let (s, b) = c(&sup2, "POST", &format!("requests/{r4}/approve"), Some("{}"));
    assert_eq!(s, 200, "{b}");
    assert!(b["code"].as_str().is_some(), "{b}");
    let (s, b) = c(&op, "POST", "users/carol/authorize", Some("{}"));
    assert_eq!((s, b["state"].as_str()), (202, Some("pending")), "{b}");
    assert!(b["code"].is_null(), "{b}");
    let r5 = b["request"].as_i64().expect("request id");
    let (s, b) = c(&sup2, "POST", &format!("requests/{r5}/approve"), Some("{}"));
    assert_eq!(s, 200, "{b}");
    assert!(b["code"].as_str().is_some(), "{b}");
    let (s, b) = c(&op, "POST", "users/bob/reissue", Some("{}"));
    assert_eq!((s, b["state"].as_str()), (202, Some("pending")), "{b}");
    assert!(b["code"].is_null(), "{b}");

    // Switching a contract or a login ID either way waits: one operator can neither undo an
    // approved disabling nor disable a contract's login IDs one by one instead.
    for path in [
        "contracts/corp1/enable",
        "contracts/corp1/disable",
        "users/carol/disable",
        "users/carol/enable",
    ] {
        let (s, b) = c(&op, "POST", path, Some("{}"));
        assert_eq!(
            (s, b["state"].as_str()),
            (202, Some("pending")),
            "{path}: {b}"
        );
        let id = b["request"].as_i64().expect("request id");
        let (s, b) = c(&op, "POST", &format!("requests/{id}/withdraw"), Some("{}"));
        assert_eq!((s, b["state"].as_str()), (200, Some("withdrawn")), "{b}");
    }

    // Adding or changing staff waits for approval; nobody approves a change to themselves.
    let (s, b) = c(
        &op,
        "POST",
        "staff",
        Some(r#"{"name":"ito","role":"operator","email":"ito@bank.example"}"#),
    );
    assert_eq!(s, 202, "{b}");
    let add = b["request"].as_i64().expect("request id");
    let (s, b) = c(&sup, "POST", &format!("requests/{add}/approve"), Some("{}"));
    assert_eq!((s, b["state"].as_str()), (200, Some("done")), "{b}");
    let (_, b) = c(&aud, "GET", "staff", None);
    assert!(
        b["staff"]
            .as_array()
            .expect("staff")
            .iter()
            .any(|m| m["name"] == "ito"),
        "{b}"
    );
    let (s, b) = c(
        &sup,
        "POST",
        "staff/tanaka/role",
        Some(r#"{"role":"auditor"}"#),
    );
    assert_eq!(s, 202, "{b}");
    let demote = b["request"].as_i64().expect("request id");
    let (s, b) = c(
        &sup2,
        "POST",
        &format!("requests/{demote}/approve"),
        Some("{}"),
    );
    assert_eq!((s, b["error"].as_str()), (403, Some("own_request")), "{b}");
    let (s, b) = c(
        &sup,
        "POST",
        &format!("requests/{demote}/withdraw"),
        Some("{}"),
    );
    assert_eq!((s, b["state"].as_str()), (200, Some("withdrawn")), "{b}");

    // The audit log names both people on the revocation and on each step of the request.
    let (s, b) = c(&aud, "GET", &format!("audit?subject={carol_serial}"), None);
    assert_eq!(s, 200);
    let entries = b["entries"].as_array().expect("entries");
    let revoked = entries
        .iter()
        .find(|e| e["action"] == "cert.revoke" && e["outcome"] == "ok")
        .expect("the revocation's audit entry");
    let actor = revoked["actor"].as_str().unwrap_or_default();
    assert!(
        actor.contains("staff:suzuki") && actor.contains("staff:sato"),
        "{actor}"
    );
    let (_, b) = c(&aud, "GET", &format!("audit?subject=request:{r1}"), None);
    let steps: Vec<&str> = b["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for step in ["request.submit", "request.approve", "request.done"] {
        assert!(steps.contains(&step), "{step} missing from {steps:?}");
    }
    let (_, b) = c(&aud, "GET", "audit?action=staff.forbidden", None);
    assert!(
        !b["entries"].as_array().expect("entries").is_empty(),
        "refused role attempts are audited"
    );

    // A staff member renews their own certificate on the console (renewal opens at once
    // with 30-day certificates), then works with the new one.
    let (new_key, new_csr) = fx.openssl_csr("staff-sato-renewed", "ec:P-256");
    let csr_pem = std::fs::read_to_string(&new_csr).expect("csr");
    let body = serde_json::json!({ "csr": csr_pem }).to_string();
    let (s, b) = c(&op, "POST", "renew", Some(&body));
    assert_eq!(s, 200, "{b}");
    let renewed = fx.path("staff-sato-renewed.pem");
    std::fs::write(&renewed, b["certificate"].as_str().expect("certificate")).expect("write");
    let (s, me) = call(&run, port, (&renewed, &new_key), "GET", "me", None, &[]);
    assert_eq!((s, me["name"].as_str()), (200, Some("sato")), "{me}");
    let op = (renewed.clone(), new_key.clone());

    // The renew page: the customers' page, its call sent to the console's renew call.
    let renew_page = format!("https://127.0.0.1:{port}/staff/renew");
    let (s, page) = curl(
        &run.ca,
        &[
            "--cert",
            op.0.to_str().unwrap(),
            "--key",
            op.1.to_str().unwrap(),
            &renew_page,
        ],
    );
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("data-api=\"/staff/api/v1/renew\""), "{page}");
    assert!(page.contains("data-login=\"sato\""), "{page}");

    // A request nobody decides expires after [staff] request_ttl_hours (24 by default):
    // the gateway is started again a day ahead; the request is expired and changes nothing.
    let bob_serial = serial_of(&fx, "bob");
    let (s, b) = c(
        &op,
        "POST",
        &format!("certificates/{bob_serial}/revoke"),
        Some(r#"{"reason":"unspecified"}"#),
    );
    assert_eq!(s, 202, "{b}");
    let r4 = b["request"].as_i64().expect("request id");
    drop(run);
    let Some(ahead) = serve_ahead(&fx, port, "+25h") else {
        return;
    };
    let c2 = |who: &(PathBuf, PathBuf), method: &str, path: &str| {
        call(
            &ahead,
            port,
            (&who.0, &who.1),
            method,
            path,
            Some("{}"),
            &[],
        )
    };
    let (s, b) = c2(&sup, "POST", &format!("requests/{r4}/approve"));
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("request_finished")),
        "{b}"
    );
    let (_, b) = call(
        &ahead,
        port,
        (&aud.0, &aud.1),
        "GET",
        "requests?state=expired",
        None,
        &[],
    );
    let expired: Vec<i64> = b["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["request"].as_i64())
        .collect();
    assert!(expired.contains(&r4), "{b}");
    assert_eq!(
        call_app(&ahead, &bob, &bob_key).0,
        200,
        "an expired request ran"
    );
}

/// libfaketime as Debian's `faketime` package installs it.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// `serve` with the staff console, its clock `offset` ahead (libfaketime preloaded).
fn serve_ahead(fx: &Fixture, port: u16, offset: &str) -> Option<Running> {
    if !Path::new(LIBFAKETIME).exists() {
        missing("faketime is not installed (apt package faketime)")?;
    }
    let config = fx.path("ahead.toml");
    let base = std::fs::read_to_string(&fx.config).expect("config");
    let base = base.split("\n[[listener]]").next().unwrap_or_default();
    std::fs::write(&config, base).expect("config");
    let script =
        format!("exec env LD_PRELOAD={LIBFAKETIME} FAKETIME={offset} \"$1\" --config \"$0\" serve");
    Some(fx.start(
        &config,
        &staff_section(port),
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
    ))
}

#[test]
fn an_approved_revocation_is_refused_by_both_instances_on_postgres() {
    let Some(fx) = Fixture::new(Db::Postgres) else {
        return;
    };
    fx.init_with_users();
    let sato = staff_member(&fx, "sato", "operator");
    let suzuki = staff_member(&fx, "suzuki", "supervisor");
    let (carol, carol_key) = fx.obtain("carol");
    let port = free_port();
    let one = fx.serve_with(&staff_section(port));
    let two = fx.serve_another("second.toml");
    for run in [&one, &two] {
        assert_eq!(call_app(run, &carol, &carol_key).0, 200);
    }
    let serial = serial_of(&fx, "carol");
    let (s, b) = call(
        &one,
        port,
        (&sato.cert, &sato.key),
        "POST",
        &format!("certificates/{serial}/revoke"),
        Some(r#"{"reason":"keyCompromise"}"#),
        &[],
    );
    assert_eq!(s, 202, "{b}");
    let id = b["request"].as_i64().expect("request id");
    for run in [&one, &two] {
        assert_eq!(
            call_app(run, &carol, &carol_key).0,
            200,
            "revoked before approval"
        );
    }
    let (s, b) = call(
        &one,
        port,
        (&suzuki.cert, &suzuki.key),
        "POST",
        &format!("requests/{id}/approve"),
        Some("{}"),
        &[],
    );
    assert_eq!((s, b["state"].as_str()), (200, Some("done")), "{b}");
    assert_eq!(call_app(&one, &carol, &carol_key).0, 403);
    // The other instance hears of it through the database's change feed.
    eventually(
        5,
        "the second instance refuses the revoked certificate",
        || call_app(&two, &carol, &carol_key).0 == 403,
    );
}

/// `ito`, an operator, added and authorised, then `serve` with the console and the obtain
/// listener: the running gateway, the console's port, the obtain port and ito's code.
fn serve_with_obtain_listener(fx: &Fixture) -> (Running, u16, u16, String) {
    fx.ok(&[
        "staff",
        "add",
        "ito",
        "--role",
        "operator",
        "--email",
        "ito@bank.example",
    ]);
    let code = last_line(&fx.ok(&["staff", "authorize", "ito"]));
    let (port, obtain_port) = (free_port(), free_port());
    let run = fx.serve_with(&format!(
        "{}obtain_addr = \"127.0.0.1:{obtain_port}\"\n",
        staff_section(port)
    ));
    (run, port, obtain_port, code)
}

#[test]
fn a_staff_member_obtains_the_first_certificate_on_the_obtain_listener() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let customer_code = fx.authorize("carol");
    let (run, port, obtain_port, code) = serve_with_obtain_listener(&fx);
    let (key, csr) = fx.openssl_csr("ito", "ec:P-256");
    let csr_pem = std::fs::read_to_string(&csr).expect("csr");
    let url = format!("https://127.0.0.1:{obtain_port}/staff/api/v1/obtain");
    let post = |body: &serde_json::Value, token: bool| {
        let body = body.to_string();
        let mut args = vec!["-H", "Content-Type: application/json"];
        if token {
            args.extend(STAFF_CSRF);
        }
        args.extend(["--data-binary", body.as_str(), url.as_str()]);
        let (s, text) = curl(&run.ca, &args);
        (
            s,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        )
    };
    let ask =
        |name: &str, code: &str| serde_json::json!({"name": name, "code": code, "csr": csr_pem});

    // The same answer for a wrong code and for a customer's login ID and code.
    let (s, b) = post(&ask("ito", "AAAAA-AAAAA-AAAAA-AAAAA"), true);
    assert_eq!((s, b["error"].as_str()), (401, Some("bad_code")), "{b}");
    let (s, b) = post(&ask("carol", &customer_code), true);
    assert_eq!((s, b["error"].as_str()), (401, Some("bad_code")), "{b}");
    let (s, b) = post(&ask("ito", &code), false);
    assert_eq!((s, b["error"].as_str()), (403, Some("cross_site")), "{b}");
    // A customer page's token cookie is not the staff pages' one.
    let mut customer_token = vec!["-H", "Content-Type: application/json"];
    customer_token.extend(CSRF);
    let body = ask("ito", &code).to_string();
    customer_token.extend(["--data-binary", body.as_str(), url.as_str()]);
    let (s, text) = curl(&run.ca, &customer_token);
    assert_eq!(s, 403, "{text}");
    assert!(text.contains("cross_site"), "{text}");
    // The obtain page: the customers' page, its call sent to the staff obtain call.
    let page_url = format!("https://127.0.0.1:{obtain_port}/staff/obtain?lang=en");
    let (s, page) = curl(&run.ca, &["-D", "-", &page_url]);
    assert_eq!(s, 200, "{page}");
    assert!(page.contains("data-api=\"/staff/api/v1/obtain\""), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'self'"),
        "{page}"
    );
    assert!(
        lower.contains("set-cookie: __host-certgate_staff_csrf="),
        "{page}"
    );
    let script = format!("https://127.0.0.1:{obtain_port}/certgate/assets/certgate.js");
    assert_eq!(curl(&run.ca, &["-o", "/dev/null", &script]).0, 200);
    // Addressed to another name than [staff] host: misdirected.
    let host = format!("Host: console.evil.example:{obtain_port}");
    let u = format!("https://127.0.0.1:{obtain_port}/staff/obtain");
    assert_eq!(curl(&run.ca, &["-H", &host, &u]).0, 421);
    // The obtain listener serves nothing of the console.
    let (s, _) = curl(
        &run.ca,
        &[&format!("https://127.0.0.1:{obtain_port}/staff/api/v1/me")],
    );
    assert_eq!(s, 404);

    let (s, b) = post(&ask("ito", &code), true);
    assert_eq!(s, 200, "{b}");
    assert!(!b["chain"].as_array().expect("chain").is_empty(), "{b}");
    let cert = fx.path("ito.pem");
    std::fs::write(&cert, b["certificate"].as_str().expect("certificate")).expect("write");
    let (s, me) = call(&run, port, (&cert, &key), "GET", "me", None, &[]);
    assert_eq!(
        (s, me["name"].as_str(), me["role"].as_str()),
        (200, Some("ito"), Some("operator"))
    );
    // The console too answers only under its host name.
    let host = format!("Host: console.evil.example:{port}");
    let (s, b) = call(&run, port, (&cert, &key), "GET", "me", None, &["-H", &host]);
    assert_eq!((s, b["error"].as_str()), (421, Some("wrong_host")), "{b}");
    // The customer's code was not used up by the refused try.
    assert!(fx.ok(&["cert", "list", "--login", "carol"]).lines().count() <= 1);
}

#[test]
fn a_staff_certificate_gets_its_expiry_notice_with_the_consoles_renew_link() {
    let smtp = crate::sink::Sink::start();
    // 30-day certificates are inside the 30-day notice window from the moment they exist.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
        t.push_str(&format!(
            "\n[notify]\nsmtp_url = \"smtp://127.0.0.1:{}\"\nfrom = \"certgate@bank.example\"\ninterval_secs = 1\n",
            smtp.port
        ));
    }) else {
        return;
    };
    fx.init_with_users();
    staff_member(&fx, "sato", "operator");
    let port = free_port();
    let run = fx.serve_with(&staff_section(port));
    eventually(20, "the staff member's notice", || {
        smtp.messages()
            .iter()
            .any(|m| m.rcpt_to == vec!["sato@bank.example".to_owned()])
    });
    let mails = smtp.messages();
    let mail = mails
        .iter()
        .find(|m| m.rcpt_to == vec!["sato@bank.example".to_owned()])
        .expect("the notice");
    let link = format!("https://127.0.0.1:{port}/staff/renew");
    assert!(mail.body.contains(&link), "{}", mail.body);
    assert!(!mail.body.contains("/certgate/renew"), "{}", mail.body);
    drop(run);
}

/// The serial of the certificate a TLS server on `port` presents, as OpenSSL reads it.
fn presented_serial(port: u16) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername 127.0.0.1 </dev/null 2>/dev/null \
             | openssl x509 -noout -serial"
        ))
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A CA rollover and a renewed console certificate take effect on the running console at
/// the next reload: a staff member whose certificate comes from the new CA gets in (the
/// handshake knew only the old CA before), one of the old CA still does, and the console
/// presents the new server certificate, all without a restart.
#[test]
fn the_console_follows_a_ca_rollover_and_a_renewed_certificate_without_a_restart() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let sato = staff_member(&fx, "sato", "operator");
    let port = free_port();
    let run = fx.serve_with(&staff_section(port));
    let me = |s: &Staff| call(&run, port, (&s.cert, &s.key), "GET", "me", None, &[]);
    assert_eq!(me(&sato).0, 200);
    let served_before = presented_serial(port);
    assert!(served_before.starts_with("serial="), "{served_before}");

    fx.ok(&["ca", "rollover", "--key-label", "certgate-ca-2"]);
    // curl trusts both CAs for the console's own certificate from here on.
    let old_ca = std::fs::read_to_string(&run.ca).unwrap();
    std::fs::write(&run.ca, old_ca + &fx.ok(&["ca", "cert"])).unwrap();
    let kato = staff_member(&fx, "kato", "auditor");
    // A new console certificate, written over the configured files.
    let (cert, key) = (fx.path("server-2.pem"), fx.path("server-2.key"));
    fx.issue_server(&cert, &key);
    // Before the reload the console's handshake does not know the new CA.
    assert_ne!(me(&kato).0, 200, "the new CA was trusted before any reload");
    std::fs::copy(&key, fx.path("server.key")).unwrap();
    std::fs::copy(&cert, fx.path("server.pem")).unwrap();
    crate::fixture::sh(std::process::Command::new("kill").args(["-HUP", &run.pid().to_string()]));

    eventually(20, "the console trusts the new CA", || me(&kato).0 == 200);
    assert_eq!(me(&kato).1["name"], "kato");
    assert_eq!(
        me(&sato).0,
        200,
        "the old CA's staff certificate stopped working"
    );
    let served_after = presented_serial(port);
    assert!(served_after.starts_with("serial="), "{served_after}");
    assert_ne!(
        served_after, served_before,
        "the console still presents its old certificate"
    );
}

/// Codes tried on the staff obtain listener count against `[limits]` as the customers'
/// are: past the failed-code burst even the right code gets 429 with `Retry-After`, and
/// nothing is issued; the refusals are on `/metrics`.
#[test]
fn wrong_codes_on_the_staff_obtain_listener_are_rate_limited() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        t.push_str("\n[limits]\nfailed_codes = { per_minute = 1, burst = 3 }\n");
    }) else {
        return;
    };
    fx.init_with_users();
    let (run, _, obtain_port, code) = serve_with_obtain_listener(&fx);
    let (_, csr) = fx.openssl_csr("ito", "ec:P-256");
    let csr_pem = std::fs::read_to_string(&csr).expect("csr");
    let url = format!("https://127.0.0.1:{obtain_port}/staff/api/v1/obtain");
    let post = |code: &str| {
        let body = serde_json::json!({"name": "ito", "code": code, "csr": csr_pem}).to_string();
        let mut args = vec!["-D", "-", "-H", "Content-Type: application/json"];
        args.extend(STAFF_CSRF);
        args.extend(["--data-binary", body.as_str(), url.as_str()]);
        curl(&run.ca, &args)
    };
    for _ in 0..3 {
        let (s, text) = post("AAAAA-AAAAA-AAAAA-AAAAA");
        assert_eq!(s, 401, "{text}");
    }
    let (s, text) = post(&code);
    assert_eq!(s, 429, "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after:"), "{text}");
    assert!(text.contains("\"error\":\"rate_limited\""), "{text}");
    let listed = fx.ok(&["cert", "list", "--login", "staff:ito", "--format", "json"]);
    let listed: Value = serde_json::from_str(&listed).expect("cert list json");
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(0),
        "a certificate was issued: {listed}"
    );
    let (_, metrics) = curl(
        &run.ca,
        &[&format!("http://127.0.0.1:{}/metrics", run.admin)],
    );
    assert!(
        metrics.contains("certgate_rate_limited_total{surface=\"failed_codes\"} 1"),
        "{metrics}"
    );
}

/// `[staff] max_connections_per_address`: an address holding that many connections (here
/// idle TCP, no handshake) has its next one closed at once, before TLS, while a staff
/// member at another address gets in; the address gets its slots back when they close.
#[test]
fn one_address_cannot_hold_every_console_connection() {
    use std::io::Read;
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let sato = staff_member(&fx, "sato", "operator");
    let port = free_port();
    let run = fx.serve_with(&format!(
        "{}max_connections_per_address = 2\n",
        staff_section(port)
    ));
    let me = |extra: &[&str]| {
        call(
            &run,
            port,
            (&sato.cert, &sato.key),
            "GET",
            "me",
            None,
            extra,
        )
        .0
    };
    assert_eq!(me(&[]), 200);
    // Two idle connections hold the address's slots. The call above may still hold one
    // until the listener has seen it close, and then refuses an idle one: that one is
    // opened again until both are held.
    let open = |s: &std::net::TcpStream| {
        s.set_nonblocking(true).expect("nonblocking");
        let held =
            matches!(s.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        s.set_nonblocking(false).expect("blocking");
        held
    };
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut idle: Vec<std::net::TcpStream> = (0..2).map(|_| connect()).collect();
    let mut held_twice = 0;
    eventually(10, "two idle connections hold the slots", || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        for s in &mut idle {
            if !open(s) {
                *s = connect();
                held_twice = 0;
                return false;
            }
        }
        held_twice += 1;
        held_twice == 2
    });
    let mut third = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    // Closed at once (the handshake timeout is 10 s): EOF or a reset, well within 8 s even
    // on a machine busy with the rest of the suite.
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(8)))
        .unwrap();
    let mut buf = [0u8; 16];
    match third.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut => {}
        other => panic!("the third connection from one address stayed open: {other:?}"),
    }
    assert_ne!(
        me(&[]),
        200,
        "a third connection from the same address got in"
    );
    // Another address on the loopback network is not held up.
    assert_eq!(me(&["--interface", "127.0.0.2"]), 200);
    drop(idle);
    eventually(10, "the address gets its slots back", || me(&[]) == 200);
}

/// The gateway's request-head rules on both staff listeners, before any staff check:
/// CONNECT/TRACE/TRACK get 405 with `Allow`, a Host with user info 400, each counted by
/// reason; a staff member's ordinary call still passes.
#[test]
fn staff_listeners_refuse_tunnels_echoes_and_odd_hosts() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let sato = staff_member(&fx, "sato", "operator");
    let (run, port, obtain_port, _) = serve_with_obtain_listener(&fx);
    let console = format!("https://127.0.0.1:{port}/staff/api/v1/me");
    let obtain = format!("https://127.0.0.1:{obtain_port}/staff/obtain");
    let (cert, key) = (sato.cert.to_str().unwrap(), sato.key.to_str().unwrap());
    let with_cert = |extra: &[&str]| {
        let mut args = vec!["-D", "-", "--cert", cert, "--key", key];
        args.extend(extra);
        curl(&run.ca, &args)
    };
    for url in [console.as_str(), obtain.as_str()] {
        for method in ["TRACE", "TRACK"] {
            let (s, text) = with_cert(&["-X", method, url]);
            assert_eq!(s, 405, "{method} {url}: {text}");
            assert!(text.contains("\"method_refused\""), "{text}");
            assert!(
                text.to_ascii_lowercase().contains("allow: get, head, post"),
                "{text}"
            );
        }
        let (s, text) = with_cert(&["-H", "Host: sato@127.0.0.1", url]);
        assert_eq!(s, 400, "{url}: {text}");
        assert!(text.contains("\"host_refused\""), "{text}");
    }
    let (s, text) = with_cert(&[console.as_str()]);
    assert_eq!(s, 200, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );
    let (_, metrics) = curl(
        &run.ca,
        &[&format!("http://127.0.0.1:{}/metrics", run.admin)],
    );
    for line in [
        "certgate_staff_console_refusals_total{reason=\"method\"} 4",
        "certgate_staff_console_refusals_total{reason=\"invalid_host\"} 2",
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }
}

/// A supervisor who approves a new supervisor's authorization receives that code and could
/// obtain the certificate with a key of their own: the two are then perhaps one person, and
/// neither may approve the other's requests. Another supervisor still can.
#[test]
fn whoever_received_a_staff_code_cannot_decide_with_that_identity() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let op = staff_member(&fx, "sato", "operator");
    let sup1 = staff_member(&fx, "suzuki", "supervisor");
    let sup2 = staff_member(&fx, "takahashi", "supervisor");
    let (run, port, obtain_port, _) = serve_with_obtain_listener(&fx);
    let c = |who: &Staff, method: &str, path: &str, body: Option<&str>| {
        call(&run, port, (&who.cert, &who.key), method, path, body, &[])
    };
    let approve =
        |who: &Staff, id: i64| c(who, "POST", &format!("requests/{id}/approve"), Some("{}"));

    let (s, b) = c(
        &op,
        "POST",
        "staff",
        Some(r#"{"name":"kato","role":"supervisor","email":"kato@bank.example"}"#),
    );
    assert_eq!(s, 202, "{b}");
    let (s, b) = approve(&sup2, b["request"].as_i64().expect("request id"));
    assert_eq!(s, 200, "{b}");
    let (s, b) = c(&op, "POST", "staff/kato/authorize", Some("{}"));
    assert_eq!(s, 202, "{b}");
    // suzuki approves and so receives kato's code; he obtains kato's certificate himself.
    let (s, b) = approve(&sup1, b["request"].as_i64().expect("request id"));
    assert_eq!(s, 200, "{b}");
    let code = b["code"].as_str().expect("kato's code").to_owned();
    let (key, csr) = fx.openssl_csr("kato-by-suzuki", "ec:P-256");
    let body = serde_json::json!({
        "name": "kato",
        "code": code,
        "csr": std::fs::read_to_string(&csr).expect("csr"),
    })
    .to_string();
    let url = format!("https://127.0.0.1:{obtain_port}/staff/api/v1/obtain");
    let mut args = vec!["-H", "Content-Type: application/json"];
    args.extend(STAFF_CSRF);
    args.extend(["--data-binary", body.as_str(), url.as_str()]);
    let (s, text) = curl(&run.ca, &args);
    assert_eq!(s, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json");
    let cert = fx.path("kato-by-suzuki.pem");
    std::fs::write(&cert, answer["certificate"].as_str().expect("certificate")).expect("write");
    let kato = Staff { cert, key };

    // suzuki asks, "kato" approves; "kato" asks, suzuki approves: both refused.
    let (s, b) = c(&sup1, "POST", "contracts/corp2/disable", Some("{}"));
    assert_eq!(s, 202, "{b}");
    let by_suzuki = b["request"].as_i64().expect("request id");
    let (s, b) = approve(&kato, by_suzuki);
    assert_eq!((s, b["error"].as_str()), (403, Some("code_holder")), "{b}");
    let (s, b) = c(&kato, "POST", "contracts/corp1/disable", Some("{}"));
    assert_eq!(s, 202, "{b}");
    let by_kato = b["request"].as_i64().expect("request id");
    let (s, b) = approve(&sup1, by_kato);
    assert_eq!((s, b["error"].as_str()), (403, Some("code_holder")), "{b}");
    // Nothing ran; a third supervisor decides both.
    let contracts = fx.ok(&["contract", "list", "--format", "json"]);
    assert!(!contracts.contains("false"), "{contracts}");
    for id in [by_suzuki, by_kato] {
        let (s, b) = approve(&sup2, id);
        assert_eq!((s, b["state"].as_str()), (200, Some("done")), "{b}");
    }
}

/// A code or re-issue for a login ID that does not exist is refused when asked (404), and
/// one run alone checks the role again on the row it makes the code for: codes asked while
/// the same login ID is being added as an administrator never hand out a code without a
/// checker.
#[test]
fn a_code_asked_while_its_administrator_is_added_never_runs_alone() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let op = staff_member(&fx, "sato", "operator");
    let port = free_port();
    let run = fx.serve_with(&staff_section(port));
    let c = |path: &str, body: &str| {
        call(
            &run,
            port,
            (&op.cert, &op.key),
            "POST",
            path,
            Some(body),
            &[],
        )
    };
    for verb in ["authorize", "reissue"] {
        let (s, b) = c(&format!("users/nobody/{verb}"), "{}");
        assert_eq!((s, b["error"].as_str()), (404, Some("not_found")), "{b}");
    }
    for round in 0..8 {
        let login = format!("race{round}");
        let answers = std::thread::scope(|scope| {
            let askers: Vec<_> = (0..16)
                .map(|i| {
                    let (c, login) = (&c, &login);
                    let verb = if i % 8 == 0 { "reissue" } else { "authorize" };
                    scope.spawn(move || {
                        let mut seen = Vec::new();
                        for _ in 0..200 {
                            let (s, b) = c(&format!("users/{login}/{verb}"), "{}");
                            seen.push((s, b));
                            if s != 404 {
                                break;
                            }
                        }
                        seen
                    })
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(300));
            let (s, b) = c(
                "users",
                &format!(
                    r#"{{"login":"{login}","contract":"corp2","role":"admin","email":"{login}@example.com"}}"#
                ),
            );
            assert_eq!(s, 200, "{b}");
            askers
                .into_iter()
                .flat_map(|h| h.join().expect("asker"))
                .collect::<Vec<_>>()
        });
        for (s, b) in &answers {
            assert!(b["code"].is_null(), "a code ran without a checker: {s} {b}");
            assert!(matches!(s, 202 | 404 | 409), "{s} {b}");
        }
        assert!(answers.iter().any(|(s, _)| *s == 202), "{answers:?}");
    }
}

/// Obtains `name`'s staff certificate on the obtain listener with `code` and a new key, as
/// whoever holds the code could: the certificate and key files.
fn obtain_staff(fx: &Fixture, run: &Running, obtain_port: u16, name: &str, code: &str) -> Staff {
    let label = format!("{name}-obtained");
    let (key, csr) = fx.openssl_csr(&label, "ec:P-256");
    let body = serde_json::json!({
        "name": name,
        "code": code,
        "csr": std::fs::read_to_string(&csr).expect("csr"),
    })
    .to_string();
    let url = format!("https://127.0.0.1:{obtain_port}/staff/api/v1/obtain");
    let mut args = vec!["-H", "Content-Type: application/json"];
    args.extend(STAFF_CSRF);
    args.extend(["--data-binary", body.as_str(), url.as_str()]);
    let (s, text) = curl(&run.ca, &args);
    assert_eq!(s, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("json");
    let cert = fx.path(&format!("{label}.pem"));
    std::fs::write(&cert, answer["certificate"].as_str().expect("certificate")).expect("write");
    Staff { cert, key }
}

/// One supervisor who received two staff members' codes holds both: neither decides the
/// other's request, and he decides nothing about either (approve or reject). Nobody decides
/// a change to themselves or the revocation of their own staff certificate, rejecting
/// included. A maker disabled or moved to another role meanwhile has their pending request
/// fail when approved, audited, and nothing runs.
#[test]
fn one_person_holding_two_identities_decides_nothing_between_them() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let op = staff_member(&fx, "sato", "operator");
    let sup1 = staff_member(&fx, "suzuki", "supervisor");
    let sup2 = staff_member(&fx, "takahashi", "supervisor");
    let sup3 = staff_member(&fx, "yamada", "supervisor");
    let (run, port, obtain_port, _) = serve_with_obtain_listener(&fx);
    let c = |who: &Staff, path: &str| {
        call(
            &run,
            port,
            (&who.cert, &who.key),
            "POST",
            path,
            Some("{}"),
            &[],
        )
    };
    let ask = |who: &Staff, path: &str| {
        let (s, b) = c(who, path);
        assert_eq!(s, 202, "{path}: {b}");
        b["request"].as_i64().expect("request id")
    };
    let decide = |who: &Staff, id: i64, verb: &str| c(who, &format!("requests/{id}/{verb}"));
    let refused = |who: &Staff, id: i64, code: &str| {
        for verb in ["approve", "reject"] {
            let (s, b) = decide(who, id, verb);
            let status = if code == "request_finished" { 409 } else { 403 };
            assert_eq!(
                (s, b["error"].as_str()),
                (status, Some(code)),
                "{verb}: {b}"
            );
        }
    };

    // takahashi approves both new supervisors' codes and so receives both.
    let mut held = Vec::new();
    for name in ["newbie", "newbie2"] {
        let body =
            format!(r#"{{"name":"{name}","role":"supervisor","email":"{name}@bank.example"}}"#);
        let (s, b) = call(
            &run,
            port,
            (&op.cert, &op.key),
            "POST",
            "staff",
            Some(&body),
            &[],
        );
        assert_eq!(s, 202, "{b}");
        let (s, b) = decide(&sup3, b["request"].as_i64().expect("id"), "approve");
        assert_eq!(s, 200, "{b}");
        let id = ask(&op, &format!("staff/{name}/authorize"));
        let (s, b) = decide(&sup2, id, "approve");
        assert_eq!(s, 200, "{b}");
        let code = b["code"].as_str().expect("the code").to_owned();
        held.push(obtain_staff(&fx, &run, obtain_port, name, &code));
    }
    let (newbie, newbie2) = (&held[0], &held[1]);

    // "newbie" asks, "newbie2" decides: one person, refused either way.
    let by_newbie = ask(newbie, "contracts/corp2/disable");
    refused(newbie2, by_newbie, "code_holder");
    // takahashi decides nothing about a member whose code he received.
    let about_newbie = ask(&op, "staff/newbie/enable");
    refused(&sup2, about_newbie, "code_holder");
    let (s, b) = decide(&op, about_newbie, "withdraw");
    assert_eq!(s, 200, "{b}");

    // Nobody decides about themselves, nor the revocation of their own staff certificate.
    let about_suzuki = ask(&op, "staff/suzuki/disable");
    refused(&sup1, about_suzuki, "own_request");
    let suzuki_serial = serial_of(&fx, "staff:suzuki");
    let revoke = format!("certificates/{}/revoke", suzuki_serial.to_ascii_uppercase());
    let (s, b) = call(
        &run,
        port,
        (&op.cert, &op.key),
        "POST",
        &revoke,
        Some(r#"{"reason":"unspecified"}"#),
        &[],
    );
    assert_eq!(s, 202, "{b}");
    let revoke_suzuki = b["request"].as_i64().expect("id");
    refused(&sup1, revoke_suzuki, "own_request");
    for id in [about_suzuki, revoke_suzuki] {
        let (s, b) = decide(&op, id, "withdraw");
        assert_eq!(s, 200, "{b}");
    }

    // newbie is disabled meanwhile (on the host): his request fails when approved.
    fx.ok(&["staff", "disable", "newbie"]);
    let (s, b) = decide(&sup1, by_newbie, "approve");
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("maker_inactive")),
        "{b}"
    );
    refused(&sup3, by_newbie, "request_finished");
    // A maker moved to auditor likewise.
    let by_sato = ask(&op, "contracts/corp1/disable");
    fx.ok(&["staff", "role", "sato", "--role", "auditor"]);
    let (s, b) = decide(&sup1, by_sato, "approve");
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("maker_inactive")),
        "{b}"
    );
    let contracts = fx.ok(&["contract", "list", "--format", "json"]);
    assert!(!contracts.contains("false"), "a request ran: {contracts}");
    let (_, b) = call(
        &run,
        port,
        (&sup3.cert, &sup3.key),
        "GET",
        "requests?state=failed",
        None,
        &[],
    );
    let failed: Vec<(i64, &str)> = b["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| Some((r["request"].as_i64()?, r["result"]["error"].as_str()?)))
        .collect();
    assert!(failed.contains(&(by_newbie, "maker_inactive")), "{b}");
    assert!(failed.contains(&(by_sato, "maker_inactive")), "{b}");
    let (_, b) = call(
        &run,
        port,
        (&sup3.cert, &sup3.key),
        "GET",
        &format!("audit?subject=request:{by_sato}"),
        None,
        &[],
    );
    assert!(
        b["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "request.failed"),
        "{b}"
    );
}

/// A four-eyes request's input is checked as the direct action checks it before it is
/// stored, and its subject is canonical: bad staff names are 400 and leave no request; a
/// revocation asked with an uppercase, colon-separated serial is stored normalized.
#[test]
fn four_eyes_requests_are_checked_and_canonical_before_they_are_stored() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let op = staff_member(&fx, "sato", "operator");
    let (carol, _) = fx.obtain("carol");
    drop(carol);
    let port = free_port();
    let run = fx.serve_with(&staff_section(port));
    let c = |method: &str, path: &str, body: Option<&str>| {
        call(&run, port, (&op.cert, &op.key), method, path, body, &[])
    };
    let long = "a".repeat(60_000);
    for bad in ["", "\u{202e}sup1", "a\nb", long.as_str()] {
        let body =
            serde_json::json!({"name": bad, "role": "supervisor", "email": "x@bank.example"})
                .to_string();
        let (s, b) = c("POST", "staff", Some(&body));
        assert_eq!(
            (s, b["error"].as_str()),
            (400, Some("bad_identifier")),
            "{:?}: {b}",
            &bad[..bad.len().min(8)]
        );
    }
    // A name that differs from a member's only in case is refused when asked, not when a
    // supervisor approves it; so is a login ID that differs from a customer's so.
    let body = serde_json::json!({"name": "SATO", "role": "supervisor", "email": "x@bank.example"})
        .to_string();
    let (s, b) = c("POST", "staff", Some(&body));
    assert_eq!((s, b["error"].as_str()), (409, Some("staff_exists")), "{b}");
    let (_, b) = c("GET", "requests", None);
    assert_eq!(
        b["requests"],
        serde_json::json!([]),
        "a bad request was stored"
    );

    let serial = serial_of(&fx, "carol");
    let typed: String = serial
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let (s, b) = c(
        "POST",
        &format!("certificates/{typed}/revoke"),
        Some(r#"{"reason":"unspecified"}"#),
    );
    assert_eq!(
        (s, b["subject"].as_str()),
        (202, Some(serial.as_str())),
        "{b}"
    );
    let (_, b) = c("GET", "requests?state=pending", None);
    let stored = &b["requests"][0];
    assert_eq!(stored["subject"].as_str(), Some(serial.as_str()), "{b}");
    assert_eq!(
        stored["params"]["serial"].as_str(),
        Some(serial.as_str()),
        "{b}"
    );
    // The same revocation asked again, spelled the other way: refused, naming the request
    // that waits, and audited as refused; nothing more is stored.
    let id = stored["request"].as_i64().expect("request id");
    let (s, b) = c(
        "POST",
        &format!("certificates/{serial}/revoke"),
        Some(r#"{"reason":"unspecified"}"#),
    );
    assert_eq!(
        (s, b["error"].as_str()),
        (409, Some("request_pending")),
        "{b}"
    );
    assert!(
        b["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("request {id} "))),
        "{b}"
    );
    let (_, b) = c("GET", "requests?state=pending", None);
    assert_eq!(b["requests"].as_array().map(Vec::len), Some(1), "{b}");
    let audit = fx.ok(&["audit", "export"]);
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"action\":\"cert.revoke\"")
                && l.contains("\"outcome\":\"refused\"")
                && l.contains("request_pending")),
        "{audit}"
    );
    // Another reason is another request.
    let (s, b) = c(
        "POST",
        &format!("certificates/{serial}/revoke"),
        Some(r#"{"reason":"keyCompromise"}"#),
    );
    assert_eq!(s, 202, "{b}");
}

/// The cross-site check comes before the role check: a cross-site post in a staff member's
/// name is refused without a `staff.forbidden` row. Same-site role refusals make one row a
/// minute per certificate, however many there are.
#[test]
fn role_refusals_are_audited_once_a_minute_and_never_for_a_cross_site_post() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let kato = staff_member(&fx, "kato", "auditor");
    let port = free_port();
    let run = fx.serve_with(&staff_section(port));
    let c = |path: &str, extra: &[&str]| {
        let body = Some(r#"{"id":"x1","name":"X"}"#).filter(|_| path == "contracts");
        let method = if body.is_some() { "POST" } else { "GET" };
        call(
            &run,
            port,
            (&kato.cert, &kato.key),
            method,
            path,
            body,
            extra,
        )
    };
    let forbidden_rows = || {
        let (s, b) = c("audit?action=staff.forbidden", &[]);
        assert_eq!(s, 200, "{b}");
        b["entries"].as_array().expect("entries").len()
    };
    for _ in 0..5 {
        let (s, b) = c("contracts", &["-H", "Origin: https://evil.example"]);
        assert_eq!((s, b["error"].as_str()), (403, Some("cross_site")), "{b}");
    }
    assert_eq!(
        forbidden_rows(),
        0,
        "a cross-site post wrote a role-refusal row"
    );
    for _ in 0..5 {
        let (s, b) = c("contracts", &[]);
        assert_eq!(
            (s, b["error"].as_str()),
            (403, Some("role_forbidden")),
            "{b}"
        );
    }
    assert_eq!(forbidden_rows(), 1, "role refusals are one row a minute");
}

/// A revoked staff certificate is refused at the console's TLS handshake (the strict
/// verifier), so no request and no `staff.access` entry follow: the security log's line
/// for the refused handshake names the certificate's serial and the reason.
#[test]
fn a_revoked_staff_certificate_is_logged_with_its_serial_at_the_handshake() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let sato = staff_member(&fx, "sato", "operator");
    let port = free_port();
    let run = fx.serve_with(&staff_section(port));
    let me = || call(&run, port, (&sato.cert, &sato.key), "GET", "me", None, &[]).0;
    assert_eq!(me(), 200);
    let serial = serial_of(&fx, "staff:sato");
    fx.ok(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    eventually(20, "the handshake refuses the revoked certificate", || {
        me() != 200
            && run.log().lines().any(|l| {
                l.contains("certgate::security")
                    && l.contains("refused at the TLS handshake")
                    && l.contains(&format!("serial=\"{serial}\""))
                    && l.contains("reason=\"revoked\"")
            })
    });
}
