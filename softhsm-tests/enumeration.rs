//! No login-ID enumeration through the running gateway: the public obtain call and EST
//! `simpleenroll` answer an unknown login ID, a wrong, used, expired or locked code and a
//! disabled user or contract with the same status, headers and body, while the audit log
//! keeps each precise reason; the contract administrator's `user add` does not say that a
//! login ID exists in another contract. Also login IDs with `@` through the admin API.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use crate::fixture::{
    Db, Fixture, LIMITS_OUT_OF_REACH, Running, curl, key_and_der_csr, obtain_call_args, sh,
};

/// Status, headers (lower-case names, sorted, without `date` and the request ID's value) and
/// body of one answer.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: Vec<String>,
    body: String,
}

/// Runs curl with `args`, keeping the answer's headers (for comparing whole answers).
fn answer(fx: &Fixture, run: &Running, args: &[&str]) -> Answer {
    let head = fx.path("answer.head");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .arg("-D")
        .arg(&head)
        .arg("--cacert")
        .arg(&run.ca)
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let raw = std::fs::read_to_string(&head).unwrap_or_default();
    let mut headers: Vec<String> = raw
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| format!("{}: {}", n.trim().to_ascii_lowercase(), v.trim()))
        .filter(|h| !h.starts_with("date:"))
        // Every answer has one, different each time by design (a per-process counter).
        .map(|h| {
            if h.starts_with("x-request-id:") {
                "x-request-id: (one per request)".to_owned()
            } else {
                h
            }
        })
        .collect();
    headers.sort();
    Answer {
        status: status.trim().parse().unwrap_or(0),
        headers,
        body: body.to_owned(),
    }
}

fn est(fx: &Fixture, run: &Running, login: &str, code: &str, der_csr: &Path) -> Answer {
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(der_csr).unwrap());
    let body = fx.path("est-body.b64");
    std::fs::write(&body, b64).unwrap();
    answer(
        fx,
        run,
        &[
            "--user",
            &format!("{login}:{code}"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", body.display()),
            &run.url("/.well-known/est/simpleenroll"),
        ],
    )
}

/// The obtain page's JSON call, with its double-submit token.
fn web(fx: &Fixture, run: &Running, login: &str, code: &str, pem_csr: &Path) -> Answer {
    let csr = std::fs::read_to_string(pem_csr).unwrap();
    let json = serde_json::json!({"login": login, "code": code, "csr": csr});
    let args = obtain_call_args(fx, run, &json);
    answer(
        fx,
        run,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// A fresh key's CSR, DER and PEM.
fn csr(fx: &Fixture, name: &str) -> (PathBuf, PathBuf) {
    let (_, der) = key_and_der_csr(fx, name);
    (der, fx.path(&format!("{name}.csr")))
}

fn add_user(fx: &Fixture, login: &str, contract: &str) {
    fx.ok(&[
        "user",
        "add",
        login,
        "--contract",
        contract,
        "--role",
        "general",
        "--email",
        "someone@example.com",
    ]);
}

#[test]
fn obtain_answers_do_not_tell_login_ids_apart() {
    // Many refused codes from one address on purpose: the limits stay out of the way.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| t.push_str(LIMITS_OUT_OF_REACH)) else {
        return;
    };
    fx.init_with_users();
    for login in ["erin", "frank", "gina"] {
        add_user(&fx, login, "corp1");
    }
    let run = fx.serve();

    // A used code: carol obtains, then another key comes with the same code.
    let carol_code = fx.authorize("carol");
    let (der, _) = csr(&fx, "carol");
    assert_eq!(est(&fx, &run, "carol", &carol_code, &der).status, 200);
    // A wrong code for a login ID with a live one.
    let _bob_code = fx.authorize("bob");
    // An expired code (its expiry moved into the past, as time passing would).
    let erin_code = fx.authorize("erin");
    sh(Command::new("sqlite3")
        .arg(fx.path("certgate.db"))
        .arg("UPDATE issuance_codes SET expires_at = created_at - 1 WHERE login = 'erin'"));
    // A locked code: five wrong tries, then the right one.
    let frank_code = fx.authorize("frank");
    let (der, _) = csr(&fx, "frank-guess");
    for guess in 0..5 {
        let wrong = format!("{guess:04}-0000-0000-0000-0000");
        assert_eq!(est(&fx, &run, "frank", &wrong, &der).status, 401);
    }
    // A disabled user and a disabled contract, each with a live code.
    let gina_code = fx.authorize("gina");
    fx.ok(&["user", "disable", "gina"]);
    let dave_code = fx.authorize("dave");
    fx.ok(&["contract", "disable", "corp2"]);

    let cases = [
        ("unknown login ID", "nobody", carol_code.as_str()),
        ("unknown login ID with @", "nobody@example.com", "ABCD-EFGH"),
        ("not a login ID", "evil<script>\u{202e}", "ABCD-EFGH"),
        ("wrong code", "bob", "0000-0000-0000-0000-0000"),
        ("used code", "carol", carol_code.as_str()),
        ("expired code", "erin", erin_code.as_str()),
        ("locked code", "frank", frank_code.as_str()),
        ("disabled user", "gina", gina_code.as_str()),
        ("disabled contract", "dave", dave_code.as_str()),
    ];
    let mut est_first: Option<Answer> = None;
    let mut web_first: Option<Answer> = None;
    for (i, (what, login, code)) in cases.iter().enumerate() {
        let (der, pem) = csr(&fx, &format!("case{i}"));
        let e = est(&fx, &run, login, code, &der);
        assert_eq!(e.status, 401, "EST, {what}: {e:?}");
        match &est_first {
            None => est_first = Some(e),
            Some(first) => assert_eq!(&e, first, "EST, {what}"),
        }
        let w = web(&fx, &run, login, code, &pem);
        assert_eq!(w.status, 401, "web, {what}: {w:?}");
        match &web_first {
            None => web_first = Some(w),
            Some(first) => assert_eq!(&w, first, "web, {what}"),
        }
    }
    let web_first = web_first.unwrap();
    assert!(web_first.body.contains("\"bad_code\""), "{web_first:?}");
    assert!(
        !web_first.body.contains("nobody"),
        "the answer repeats no login ID: {web_first:?}"
    );

    // The audit log keeps each precise reason.
    let audit = fx.ok(&["audit", "export"]);
    for reason in [
        "code_used",
        "code_expired",
        "code_locked",
        "user_disabled",
        "bad_code",
    ] {
        assert!(audit.contains(reason), "{reason} not audited:\n{audit}");
    }
    // What no login ID can be is audited by a placeholder, not as the caller wrote it.
    assert!(audit.contains("(not a login ID)"), "{audit}");
    assert!(!audit.contains("evil"), "{audit}");
    fx.ok(&["audit", "verify"]);
    // Staff at the command line still see the reason.
    let (_, pem) = csr(&fx, "staff");
    let out = fx.fails(&[
        "cert",
        "sign",
        "erin",
        "--csr",
        pem.to_str().unwrap(),
        "--code",
        &erin_code,
    ]);
    assert!(out.contains("expired"), "{out}");
}

/// A POST to the admin API with the caller's certificate.
fn admin_post(run: &Running, cert: &Path, key: &Path, path: &str, json: &str) -> (u16, String) {
    curl(
        &run.ca,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-H",
            "Content-Type: application/json",
            crate::fixture::CSRF[0],
            crate::fixture::CSRF[1],
            crate::fixture::CSRF[2],
            crate::fixture::CSRF[3],
            "--data-binary",
            json,
            &run.url(path),
        ],
    )
}

/// A contract administrator adds login IDs with a NUL byte, a bidi override and 60,000
/// characters: each is refused and audited under a placeholder, the log holds nothing raw
/// or unbounded, and (on PostgreSQL too) the service and the log go on working.
fn hostile_login_ids_are_audited_safely(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (alice, alice_key) = fx.obtain("alice");
    let add = |login: &str| {
        let body = serde_json::json!({"login": login, "role": "general", "email": "x@example.com"});
        admin_post(&run, &alice, &alice_key, "/api/v1/users", &body.to_string())
    };
    let long = "L".repeat(60_000);
    for hostile in ["nul\u{0}x", "evil\u{202e}gpj", "cr\r\nlf", long.as_str()] {
        let (status, body) = add(hostile);
        assert_eq!(status, 403, "{body}");
    }
    let (status, body) = add("after-hostile");
    assert_eq!(status, 200, "{body}");

    let audit = fx.ok(&["audit", "export"]);
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("an audit line"))
        .collect();
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r["action"] == "user.add" && r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 4, "{audit:.2000}");
    for r in &refused {
        assert_eq!(r["subject"], "(not a login ID)", "{r}");
    }
    for r in &records {
        for field in ["actor", "subject", "detail"] {
            let text = r[field].as_str().unwrap_or_default();
            assert!(text.chars().count() <= 2048, "{field} of {r:.300}");
            assert!(
                !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{field} of {r}"
            );
        }
    }
    assert!(audit.contains("after-hostile"), "{audit:.2000}");
    fx.ok(&["audit", "verify"]);
}

#[test]
fn hostile_login_ids_are_audited_safely_sqlite() {
    hostile_login_ids_are_audited_safely(Db::Sqlite);
}

#[test]
fn hostile_login_ids_are_audited_safely_postgres() {
    hostile_login_ids_are_audited_safely(Db::Postgres);
}

#[test]
fn user_add_hides_other_contracts_and_at_signs_work() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (alice, alice_key) = fx.obtain("alice");
    let add = |login: &str| {
        let body = serde_json::json!({"login": login, "role": "general", "email": "x@example.com"});
        admin_post(&run, &alice, &alice_key, "/api/v1/users", &body.to_string())
    };

    // dave is corp2's: refused like any other refusal, without saying it exists.
    let (status, taken) = add("dave");
    assert_eq!(status, 403, "{taken}");
    assert!(taken.contains("login_unavailable"), "{taken}");
    assert!(
        !taken.contains("exist") && !taken.contains("dave"),
        "{taken}"
    );
    // A refusal for another reason has the same status.
    let (status, bad) = add("bad name");
    assert_eq!(status, 403, "{bad}");
    // bob is alice's own contract's (which she can list anyway): said plainly.
    let (status, own) = add("bob");
    assert_eq!(status, 409, "{own}");
    assert!(own.contains("already exists"), "{own}");
    let audit = fx.ok(&["audit", "export"]);
    assert!(audit.contains("login_taken_elsewhere"), "{audit}");

    // A login ID with @, added, authorized through the escaped path the page builds, and
    // enrolled with the code.
    let (status, body) = add("zed@corp1.example");
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin_post(
        &run,
        &alice,
        &alice_key,
        "/api/v1/users/zed%40corp1.example/authorize",
        "{}",
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["login"], "zed@corp1.example");
    let code = v["code"].as_str().unwrap().to_owned();
    let (der, _) = csr(&fx, "zed");
    let e = est(&fx, &run, "zed@corp1.example", &code, &der);
    assert_eq!(e.status, 200, "{e:?}");
    // The plain spelling reaches the same login ID; a bad escape is refused.
    let (status, body) = admin_post(
        &run,
        &alice,
        &alice_key,
        "/api/v1/users/zed@corp1.example/reissue",
        "{}",
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = admin_post(
        &run,
        &alice,
        &alice_key,
        "/api/v1/users/zed%3Fcorp1.example/reissue",
        "{}",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_identifier"), "{body}");
}
