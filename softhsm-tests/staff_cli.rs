//! Bank staff members through the real `certgate` binary and a SoftHSM2 token: adding,
//! listing, turning off and on and changing them, with bad input changing nothing; their
//! certificates (the staff subject and policy), refused on every customer way in (EST and
//! the app answer as for an unknown login ID or a foreign certificate), revoked and renewed
//! like customers'; the host's actor from the real uid; `[staff] cli_changes = false`.

use std::path::{Path, PathBuf};
use std::process::Command;

use certgate::ca::ClientProfile;

use crate::fixture::{Db, Fixture, call_app, curl, est_enroll, key_and_der_csr, last_line, sh};

/// The audit actor this process's real user is recorded as.
fn host_actor() -> String {
    let user = sh(Command::new("id").arg("-un"));
    format!("host:{}", user.trim())
}

/// `staff list --format json`, parsed.
fn staff_json(fx: &Fixture) -> serde_json::Value {
    serde_json::from_str(&fx.ok(&["staff", "list", "--format", "json"])).expect("JSON list")
}

/// The audit log's records, parsed (`detail`, exported as JSON text, too).
fn audit(fx: &Fixture) -> Vec<serde_json::Value> {
    fx.ok(&["audit", "export"])
        .lines()
        .map(|l| {
            let mut r: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            if let Some(text) = r["detail"].as_str() {
                r["detail"] = serde_json::from_str(text).expect("JSON detail");
            }
            r
        })
        .collect()
}

fn add(fx: &Fixture, name: &str, role: &str) {
    fx.ok(&[
        "staff",
        "add",
        name,
        "--role",
        role,
        "--email",
        &format!("{name}@bank.example"),
    ]);
}

/// Authorizes `name` and signs a fresh EC key's CSR with `staff cert sign`; the
/// certificate and key files.
fn staff_obtain(fx: &Fixture, name: &str) -> (PathBuf, PathBuf) {
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
    std::fs::write(&cert, pem).unwrap();
    (cert, key)
}

fn der_of(pem_file: &Path) -> Vec<u8> {
    let pem = std::fs::read(pem_file).unwrap();
    let (_, parsed) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
    parsed.contents
}

/// (CN, OU, O) of a certificate.
fn subject_of(der: &[u8]) -> (String, String, String) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("certificate");
    let subject = cert.subject();
    let one = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    (
        one(&mut subject.iter_common_name()),
        one(&mut subject.iter_organizational_unit()),
        one(&mut subject.iter_organization()),
    )
}

/// The obtain page's JSON call with its double-submit token; (status, body).
fn obtain_call(
    fx: &Fixture,
    run: &crate::fixture::Running,
    login: &str,
    code: &str,
    pem_csr: &Path,
) -> (u16, String) {
    let csr = std::fs::read_to_string(pem_csr).unwrap();
    let json = serde_json::json!({"login": login, "code": code, "csr": csr});
    let args = crate::fixture::obtain_call_args(fx, run, &json);
    curl(
        &run.ca,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

fn serial_of(cert: &Path) -> String {
    let s = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert));
    s.trim().trim_start_matches("serial=").to_lowercase()
}

fn staff_members_are_managed_and_bad_input_changes_nothing(db: Db) {
    let Some(fx) = Fixture::new(db) else { return };
    fx.init_with_users();
    add(&fx, "hanako", "operator");
    let listed = staff_json(&fx);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["name"], "hanako");
    assert_eq!(listed[0]["role"], "operator");
    assert_eq!(listed[0]["email"], "hanako@bank.example");
    assert_eq!(listed[0]["enabled"], true);
    let text = fx.ok(&["staff", "list"]);
    assert!(text.contains("hanako\toperator\tenabled"), "{text}");
    // The reserved contract is no customer contract.
    let contracts = fx.ok(&["contract", "list"]);
    assert!(!contracts.contains(":staff"), "{contracts}");

    // Bad input: each refused with a clear error, nothing changed.
    let before = fx.ok(&["audit", "export"]).lines().count();
    let dup = fx.fails(&[
        "staff",
        "add",
        "hanako",
        "--role",
        "auditor",
        "--email",
        "x@bank.example",
    ]);
    assert!(
        dup.contains("staff member \"hanako\" already exists"),
        "{dup}"
    );
    // A name that differs only in case is the same member.
    let folded = fx.fails(&[
        "staff",
        "add",
        "HanaKo",
        "--role",
        "supervisor",
        "--email",
        "x@bank.example",
    ]);
    assert!(
        folded.contains("staff member \"HanaKo\" already exists as \"hanako\""),
        "{folded}"
    );
    let role = fx.run(&[
        "staff",
        "add",
        "taro",
        "--role",
        "admin",
        "--email",
        "t@bank.example",
    ]);
    assert_eq!(role.status.code(), Some(2));
    let role_err = String::from_utf8_lossy(&role.stderr);
    assert!(
        role_err.contains("operator, supervisor or auditor"),
        "{role_err}"
    );
    for bad in ["ta ro", "staff:taro", "", "taro\u{e9}"] {
        let err = fx.fails(&[
            "staff",
            "add",
            bad,
            "--role",
            "operator",
            "--email",
            "t@bank.example",
        ]);
        assert!(
            err.contains("a staff member's name must be"),
            "{bad:?}: {err}"
        );
    }
    let email = fx.fails(&[
        "staff",
        "add",
        "taro",
        "--role",
        "operator",
        "--email",
        "not-an-address",
    ]);
    assert!(email.contains("not an e-mail address"), "{email}");
    let unknown = fx.fails(&["staff", "disable", "nobody"]);
    assert!(
        unknown.contains("staff member \"nobody\" not found"),
        "{unknown}"
    );
    let unknown = fx.fails(&["staff", "role", "nobody", "--role", "auditor"]);
    assert!(unknown.contains("not found"), "{unknown}");
    assert_eq!(staff_json(&fx), listed, "bad input changed the staff");
    // Each refusal is audited (the wrong role never ran: clap refused the command line).
    let records = audit(&fx);
    let refused: Vec<&serde_json::Value> = records[before..]
        .iter()
        .filter(|r| r["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), records.len() - before, "{refused:?}");
    assert!(
        refused
            .iter()
            .any(|r| r["detail"]["code"] == "staff_exists" && r["subject"] == "staff:hanako"),
        "{refused:?}"
    );

    // The customer commands keep off the staff namespace.
    let err = fx.fails(&[
        "user",
        "add",
        "mallory",
        "--contract",
        ":staff",
        "--role",
        "admin",
        "--email",
        "m@example.com",
    ]);
    assert!(err.contains("a contract ID must be"), "{err}");
    let err = fx.fails(&["user", "disable", "staff:hanako"]);
    assert!(err.contains("certgate staff disable"), "{err}");
    let err = fx.fails(&["contract", "disable", ":staff"]);
    assert!(err.contains("reserved for bank staff"), "{err}");
    let err = fx.fails(&["issue", "authorize", "staff:hanako"]);
    assert!(err.contains("is a staff member's"), "{err}");
    assert_eq!(staff_json(&fx), listed);

    // Role, disable, enable.
    let out = fx.ok(&["staff", "role", "hanako", "--role", "supervisor"]);
    assert!(out.contains("now supervisor"), "{out}");
    let out = fx.ok(&["staff", "disable", "hanako"]);
    assert!(out.contains("disabled"), "{out}");
    assert_eq!(staff_json(&fx)[0]["enabled"], false);
    assert_eq!(staff_json(&fx)[0]["role"], "supervisor");
    let out = fx.ok(&["staff", "disable", "hanako"]);
    assert!(out.contains("was already disabled"), "{out}");
    // A disabled member gets no code.
    let err = fx.fails(&["staff", "authorize", "hanako"]);
    assert!(err.contains("disabled"), "{err}");
    fx.ok(&["staff", "enable", "hanako"]);
    assert_eq!(staff_json(&fx)[0]["enabled"], true);

    // The trail names the host's real user; the four-eyes actions are break-glass.
    let records = audit(&fx);
    let actor = host_actor();
    let of = |action: &str| {
        records
            .iter()
            .find(|r| r["action"] == action && r["outcome"] == "ok")
            .unwrap_or_else(|| panic!("no {action} in {records:?}"))
            .clone()
    };
    for action in ["staff.add", "staff.role", "staff.disable", "staff.enable"] {
        let r = of(action);
        assert_eq!(r["actor"], actor.as_str(), "{r}");
        assert_eq!(r["subject"], "staff:hanako", "{r}");
    }
    assert_eq!(of("staff.add")["detail"]["break_glass"], true);
    assert_eq!(of("staff.role")["detail"]["break_glass"], true);
    assert_eq!(of("staff.disable")["detail"]["break_glass"], true);
    assert!(of("staff.enable")["detail"].get("break_glass").is_none());
    assert!(of("contract.add")["detail"].get("break_glass").is_none());
    assert_eq!(of("contract.add")["actor"], actor.as_str());
    // Nothing set in the environment can choose the actor.
    let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .arg("--config")
        .arg(&fx.config)
        .args(["contract", "add", "corp9", "--name", "Nine"])
        .env("USER", "someone-else")
        .env("SUDO_USER", "someone-else")
        .output()
        .expect("certgate runs");
    assert!(out.status.success());
    assert_eq!(of_last(&fx, "contract.add")["actor"], actor.as_str());
    fx.ok(&["audit", "verify"]);
}

fn of_last(fx: &Fixture, action: &str) -> serde_json::Value {
    audit(fx)
        .into_iter()
        .rev()
        .find(|r| r["action"] == action)
        .expect("recorded")
}

#[test]
fn staff_members_are_managed_and_bad_input_changes_nothing_sqlite() {
    staff_members_are_managed_and_bad_input_changes_nothing(Db::Sqlite);
}

#[test]
fn staff_members_are_managed_and_bad_input_changes_nothing_postgres() {
    staff_members_are_managed_and_bad_input_changes_nothing(Db::Postgres);
}

#[test]
fn a_staff_certificate_has_the_staff_profile_and_no_customer_way_in() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    add(&fx, "hanako", "operator");
    let run = fx.serve();

    // The staff code on the customers' EST: the same 401 as an unknown login ID, the code
    // not even counted; the audit has the real reason.
    let code = last_line(&fx.ok(&["staff", "authorize", "hanako"]));
    let (_, der) = key_and_der_csr(&fx, "hanako-est");
    let as_staff = est_enroll(&run, &fx, "staff:hanako", &code, &der);
    let as_unknown = est_enroll(&run, &fx, "nobody", &code, &der);
    assert_eq!(as_staff.0, 401, "{as_staff:?}");
    assert_eq!(as_staff, as_unknown);
    // (Basic credentials end the login ID at the first ':', so EST cannot even name a
    // staff login ID.) The obtain page's JSON call can: the same answer as unknown.
    let (_, pem_csr) = fx.openssl_csr("hanako-web", "ec:P-256");
    let as_staff = obtain_call(&fx, &run, "staff:hanako", &code, &pem_csr);
    let as_unknown = obtain_call(&fx, &run, "nobody", &code, &pem_csr);
    assert_eq!(as_staff.0, 401, "{as_staff:?}");
    assert_eq!(as_staff, as_unknown);
    let refused = of_last(&fx, "cert.obtain");
    assert_eq!(refused["detail"]["code"], "staff_login", "{refused}");
    assert_eq!(refused["subject"], "staff:hanako");
    // The customers' `cert sign` refuses it too, saying why (the host is bank staff).
    let (_, pem_csr) = fx.openssl_csr("hanako-cli", "ec:P-256");
    let err = fx.fails(&[
        "cert",
        "sign",
        "staff:hanako",
        "--csr",
        pem_csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    assert!(err.contains("staff member's"), "{err}");

    // The code still works where it belongs: `staff cert sign`.
    let (key, csr) = fx.openssl_csr("hanako", "ec:P-256");
    let pem = fx.ok(&[
        "staff",
        "cert",
        "sign",
        "hanako",
        "--csr",
        csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    let cert = fx.path("hanako.pem");
    std::fs::write(&cert, &pem).unwrap();
    let der = der_of(&cert);
    assert_eq!(
        subject_of(&der),
        (
            "hanako".to_owned(),
            "certgate staff".to_owned(),
            "Example Bank corporate customers".to_owned()
        )
    );
    assert_eq!(
        certgate::ca::profile_of_certificate(&der),
        Some(ClientProfile::Staff)
    );
    let text = sh(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert));
    assert!(
        text.contains(certgate::ca::policy::STAFF_POLICY),
        "openssl shows the staff policy:\n{text}"
    );
    // A customer's certificate has neither the staff unit nor the staff policy (nor, for
    // now, the customer policy: `ca::policy::CUSTOMER_POLICY_IN_CERTIFICATES`).
    let (carol, carol_key) = fx.obtain("carol");
    let carol_der = der_of(&carol);
    assert_eq!(subject_of(&carol_der).1, "corp1");
    let customer_policy =
        certgate::ca::policy::CUSTOMER_POLICY_IN_CERTIFICATES.then_some(ClientProfile::Customer);
    assert_eq!(
        certgate::ca::profile_of_certificate(&carol_der),
        customer_policy
    );
    // pkilint: nothing on the staff certificate but its decoder's 32-bit limit on OID arcs
    // (the UUID arc of the policy), which ends its look at that one extension.
    if Command::new("lint_pkix_cert")
        .arg("--help")
        .output()
        .is_ok()
    {
        let out = Command::new("lint_pkix_cert")
            .args(["lint", "-s", "NOTICE"])
            .arg(&cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let findings: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("    "))
            .map(str::trim)
            .collect();
        assert_eq!(findings.len(), 1, "{text}");
        assert!(
            findings[0].starts_with("itu.invalid_asn1_syntax (FATAL)")
                && findings[0].contains("CertificatePolicies")
                && findings[0].contains("larger than 32-bits"),
            "{text}"
        );
    }

    // The running gateway: the staff certificate opens no app route and no administrator
    // API; the customer's passes.
    let (status, body) = call_app(&run, &cert, &key);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("staff_certificate"), "{body}");
    assert_eq!(call_app(&run, &carol, &carol_key).0, 200);
    let (status, body) = curl(
        &run.ca,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-H",
            "Accept: application/json",
            &run.url("/api/v1/users"),
        ],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("staff_certificate"), "{body}");
    // Nor renewal on the customers' EST.
    let (_, renew_csr) = key_and_der_csr(&fx, "hanako-renew");
    let b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        std::fs::read(&renew_csr).unwrap(),
    );
    let body_file = fx.path("renew.b64");
    std::fs::write(&body_file, b64).unwrap();
    let (status, body) = curl(
        &run.ca,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", body_file.display()),
            &run.url("/.well-known/est/simplereenroll"),
        ],
    );
    assert_eq!(status, 403, "{body}");

    // Revoked like any certificate: OCSP and the CRL list it.
    let serial = serial_of(&cert);
    fx.ok(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    let revoke = of_last(&fx, "cert.revoke");
    assert_eq!(revoke["detail"]["break_glass"], true, "{revoke}");
    assert_eq!(revoke["actor"], host_actor().as_str());
    let ocsp = sh(Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&run.ca)
        .arg("-cert")
        .arg(&cert)
        .args(["-url", &run.url("/ocsp"), "-CAfile"])
        .arg(&run.ca)
        .arg("-verify_other")
        .arg(&run.ca));
    assert!(ocsp.contains(": revoked"), "{ocsp}");
    let crl = fx.path("now.crl");
    fx.ok(&["ca", "crl", "--out", crl.to_str().unwrap()]);
    let listed = sh(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&crl));
    assert!(
        listed.to_lowercase().contains(&serial),
        "{serial} not on the CRL:\n{listed}"
    );
    // After revocation, a new code and certificate.
    let (again, _) = staff_obtain(&fx, "hanako");
    assert_ne!(serial_of(&again), serial);
    fx.ok(&["audit", "verify"]);
}

/// Renewal with the current certificate, on a staff way in (the lifecycle, in process, as
/// the staff listener calls it): a staff certificate again, the old one superseded; a
/// customer way in refuses it.
#[test]
fn a_staff_certificate_renews_as_staff_only_on_a_staff_way_in() {
    use certgate::lifecycle::Authorization;
    use certgate::store::{Audience, CertStatus};

    // Renewal open from issuance: 30-day certificates, 30-day window.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
    }) else {
        return;
    };
    fx.init_with_users();
    add(&fx, "hanako", "operator");
    let (cert, _) = staff_obtain(&fx, "hanako");
    let serial = serial_of(&cert);
    // SAFETY: set before any thread is started or any PKCS#11 call made in this process
    // (one process per test under nextest), as `support::token` does.
    unsafe {
        std::env::set_var("SOFTHSM2_CONF", &fx.softhsm_conf);
        std::env::set_var("CERTGATE_HSM_PIN", fx.pin);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = certgate::app::open::load_config(&fx.config).expect("config");
        let lifecycle = certgate::app::open::open_all(cfg)
            .await
            .expect("opens")
            .lifecycle;
        let (_, csr) = fx.openssl_csr("hanako-next", "ec:P-256");
        let csr = std::fs::read(&csr).unwrap();
        let renew = Authorization::CurrentCertificate { serial: &serial };
        let refused = lifecycle
            .enroll(renew, &csr)
            .await
            .expect_err("a customer way in");
        assert_eq!(refused.code(), "wrong_audience");
        let renewed = lifecycle
            .enroll_for(Audience::Staff, renew, &csr)
            .await
            .expect("renewed");
        assert_eq!(renewed.login, "staff:hanako");
        assert_eq!(
            certgate::ca::profile_of_certificate(&renewed.der),
            Some(ClientProfile::Staff)
        );
        assert_eq!(subject_of(&renewed.der).1, "certgate staff");
        let old = lifecycle
            .store()
            .certificate(&serial)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(old.status, CertStatus::Superseded);
        // A customer's certificate does not renew on a staff way in.
        let (carol, _) = fx.obtain("carol");
        let carol_serial = serial_of(&carol);
        let (_, csr) = fx.openssl_csr("carol-next", "ec:P-256");
        let csr = std::fs::read(&csr).unwrap();
        let renew = Authorization::CurrentCertificate {
            serial: &carol_serial,
        };
        let refused = lifecycle
            .enroll_for(Audience::Staff, renew, &csr)
            .await
            .expect_err("a staff way in");
        assert_eq!(refused.code(), "wrong_audience");
    });
}

#[test]
fn cli_changes_off_refuses_changes_and_still_reads() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        t.push_str("\n[staff]\ncli_changes = false\n");
    }) else {
        return;
    };
    // The key ceremony keeps working.
    fx.ok(&["init"]);
    let changes: [&[&str]; 6] = [
        &["contract", "add", "corp1", "--name", "One"],
        &[
            "user",
            "add",
            "alice",
            "--contract",
            "corp1",
            "--role",
            "admin",
            "--email",
            "a@example.com",
        ],
        &[
            "staff",
            "add",
            "hanako",
            "--role",
            "operator",
            "--email",
            "h@bank.example",
        ],
        &["staff", "disable", "hanako"],
        &["issue", "authorize", "alice"],
        &["cert", "revoke", "0a0b", "--reason", "keyCompromise"],
    ];
    for args in changes {
        let out = fx.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cli_changes = false"), "{args:?}: {err}");
    }
    // Reading works, and nothing was changed.
    assert_eq!(fx.ok(&["contract", "list"]), "");
    assert_eq!(staff_json(&fx), serde_json::json!([]));
    // Each refusal is audited under the host's real user.
    let records = audit(&fx);
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r["detail"]["code"] == "cli_changes_off")
        .collect();
    assert_eq!(refused.len(), changes.len(), "{records:?}");
    for r in &refused {
        assert_eq!(r["outcome"], "refused");
        assert_eq!(r["actor"], host_actor().as_str());
    }
    let actions: Vec<&str> = refused
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "contract.add",
            "user.add",
            "staff.add",
            "staff.disable",
            "code.authorize",
            "cert.revoke"
        ]
    );
    fx.ok(&["audit", "verify"]);
}
