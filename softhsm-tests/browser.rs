//! The whole customer flow in a real browser (headless Chromium, driven by playwright-core
//! through `tests/browser/obtain-and-login.mjs`) against the running gateway: obtain on the
//! page with the issuance code, import the PKCS#12 into the browser's NSS store, log in
//! through the gateway and see the app, then renew from the renewal page.

use std::process::Command;

use crate::fixture::{Db, Fixture, missing};

#[test]
fn obtain_import_login_and_renew_in_chromium() {
    let harness = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/obtain-and-login.mjs"
    );
    let modules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/node_modules/playwright-core"
    );
    if !std::path::Path::new(modules).exists()
        || Command::new("chromium").arg("--version").output().is_err()
    {
        missing("the browser harness (tests/browser: npm ci) or chromium is not installed");
        return;
    }
    // Renewal opens at issuance with 30-day certificates and the default 30-day window.
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
    }) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let code = fx.authorize("carol");
    let out_dir = fx.path("browser");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = Command::new("node")
        .arg(harness)
        .args([
            "--base",
            &run.url(""),
            "--login",
            "carol",
            "--code",
            &code,
            "--ca-pem",
        ])
        .arg(&run.ca)
        .arg("--out")
        .arg(&out_dir)
        .arg("--renew")
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser flow failed:\n{stdout}\n{}\nserve log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        run.log()
    );
    let result: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("harness output is not JSON ({e}): {stdout}"));
    assert_eq!(result["status"], 200, "{result}");
    let body = result["body"].as_str().unwrap_or_default();
    assert!(
        body.contains(r#"<strong id="user">carol</strong>"#),
        "{body}"
    );

    // The store saw what the browser did: one obtain, one renewal.
    let list = fx.ok(&["cert", "list", "--login", "carol"]);
    assert!(
        list.contains("\tcurrent\t") && list.contains("\tsuperseded\t"),
        "{list}"
    );
    let audit = fx.ok(&["audit", "export"]);
    assert!(
        audit.contains("cert.obtain") && audit.contains("cert.renew"),
        "{audit}"
    );
}

/// The contract administrator's page in Chromium, with the administrator's certificate:
/// re-issue a general user's certificate (it stops working), add a user and make its code.
#[test]
fn contract_admin_page_in_chromium() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/admin-page.mjs");
    let modules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/node_modules/playwright-core"
    );
    if !std::path::Path::new(modules).exists()
        || Command::new("chromium").arg("--version").output().is_err()
    {
        missing("the browser harness (tests/browser: npm ci) or chromium is not installed");
        return;
    }
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let (alice, alice_key) = fx.obtain("alice");
    let (carol, carol_key) = fx.obtain("carol");
    let run = fx.serve();
    let pw = fx.path("p12-password");
    std::fs::write(&pw, "admin-test-pass").unwrap();
    let p12 = fx.path("alice.p12");
    crate::fixture::sh(
        Command::new("openssl")
            .args(["pkcs12", "-export", "-name", "alice", "-inkey"])
            .arg(&alice_key)
            .arg("-in")
            .arg(&alice)
            .arg("-certfile")
            .arg(&run.ca)
            .arg("-passout")
            .arg(format!("file:{}", pw.display()))
            .arg("-out")
            .arg(&p12),
    );
    let out_dir = fx.path("admin-browser");
    let out = Command::new("node")
        .arg(script)
        .args(["--base", &run.url(""), "--ca-pem"])
        .arg(&run.ca)
        .arg("--p12")
        .arg(&p12)
        .arg("--p12-password-file")
        .arg(&pw)
        .args(["--reissue", "carol", "--add", "erin", "--out"])
        .arg(&out_dir)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "admin page flow failed:\n{stdout}\n{}\nserve log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        run.log()
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
    let reissue_code = result["reissue_code"].as_str().unwrap_or_default();
    let added_code = result["added_code"].as_str().unwrap_or_default();
    assert_eq!(reissue_code.len(), 24, "{result}");
    assert_eq!(added_code.len(), 24, "{result}");

    // Carol's old certificate is revoked and refused; the new codes work.
    let (status, _) = crate::fixture::curl(
        &run.ca,
        &[
            "--cert",
            carol.to_str().unwrap(),
            "--key",
            carol_key.to_str().unwrap(),
            &run.url("/"),
        ],
    );
    assert_eq!(status, 403);
    let list = fx.ok(&["user", "list", "--contract", "corp1"]);
    assert!(list.contains("erin\tgeneral"), "{list}");
    for (login, code) in [("carol", reissue_code), ("erin", added_code)] {
        let (_, csr) = fx.openssl_csr(&format!("{login}-new"), "ec:P-256");
        fx.ok(&[
            "cert",
            "sign",
            login,
            "--csr",
            csr.to_str().unwrap(),
            "--code",
            code,
        ]);
    }
    let audit = fx.ok(&["audit", "export"]);
    assert!(
        audit.contains("\"actor\":\"user:alice\"") && audit.contains("user.add"),
        "{audit}"
    );
}

/// Every page of certgate and the gateway's refusal page, in Japanese and in English, in
/// headless Chromium with a `[branding]` (names, colour, logo, contact): each is
/// screenshotted and must show no message of the other language, its `lang` and title in
/// its language, the configured names and colour, the logo, and the renewal date in JST
/// (`tests/browser/pages-lang.mjs`).
#[test]
fn pages_in_both_languages_with_branding_in_chromium() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/pages-lang.mjs");
    let modules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/node_modules/playwright-core"
    );
    if !std::path::Path::new(modules).exists()
        || Command::new("chromium").arg("--version").output().is_err()
    {
        missing("the browser harness (tests/browser: npm ci) or chromium is not installed");
        return;
    }
    // Without a Japanese font the screenshots show boxes where the text should be.
    let fonts = Command::new("fc-list").arg(":lang=ja").output();
    if !fonts.is_ok_and(|o| !o.stdout.is_empty()) {
        missing("no Japanese font (apt-get install fonts-noto-cjk)");
        return;
    }
    let logo_dir = tempfile::tempdir().unwrap();
    let logo = logo_dir.path().join("logo.svg");
    std::fs::write(
        &logo,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="64" height="32" viewBox="0 0 64 32"><rect width="64" height="32" rx="4" fill="#1a5e20"/><circle cx="16" cy="16" r="9" fill="#f6c945"/></svg>"##,
    )
    .unwrap();
    // 30-day certificates: renewal is open at once, so the notice and its date show.
    let branding = format!(
        r##"
[branding]
logo = "{}"
primary_color = "#1a5e20"
[branding.ja]
name = "さくら信用金庫"
short_name = "当金庫"
support = "さくら信用金庫 IBヘルプデスク"
support_phone = "0120-000-123"
support_hours = "平日 9:00〜17:00"
[branding.en]
name = "Sakura Shinkin Bank"
short_name = "Sakura Shinkin Bank"
support = "the Sakura IB help desk"
support_phone = "+81 120-000-123"
"##,
        logo.display()
    );
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| {
        *t = t.replace("validity_days = 365", "validity_days = 30");
        t.push_str(&branding);
    }) else {
        return;
    };
    fx.init_with_users();
    let (alice, alice_key) = fx.obtain("alice");
    let run = fx.serve();
    let out_dir = std::env::var_os("CERTGATE_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| fx.path("pages-lang"));
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = Command::new("node")
        .arg(script)
        .args(["--base", &run.url(""), "--cert"])
        .arg(&alice)
        .arg("--key")
        .arg(&alice_key)
        .arg("--out")
        .arg(&out_dir)
        .args([
            "--name-ja",
            "さくら信用金庫",
            "--name-en",
            "Sakura Shinkin Bank",
            "--primary",
            "rgb(26, 94, 32)",
            "--refusal-path",
            "/",
        ])
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pages in both languages:\n{stdout}\n{}\nserve log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        run.log()
    );
    let result: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let pages = result["pages"].as_array().cloned().unwrap_or_default();
    assert_eq!(pages.len(), 10, "{result}");
    for p in &pages {
        let shot = p["screenshot"].as_str().unwrap_or_default();
        let size = std::fs::metadata(shot).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "screenshot {shot} is missing or blank ({size} bytes)"
        );
    }
}

/// `[branding]` follows a reload: a new name shows on the next page; a logo that fails its
/// check keeps the previous branding whole, with a warning in the log.
#[test]
fn branding_follows_a_reload_and_a_refused_logo_keeps_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let logo = dir.path().join("logo.svg");
    std::fs::write(
        &logo,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>"#,
    )
    .unwrap();
    let branding = format!(
        "\n[branding]\nlogo = \"{}\"\n[branding.ja]\nname = \"さくら信用金庫\"\n",
        logo.display()
    );
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| t.push_str(&branding)) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let page = || crate::fixture::curl(&run.ca, &[&run.url("/certgate/?lang=ja")]).1;
    assert!(page().contains("さくら信用金庫"), "{}", page());
    let rename = |from: &str, to: &str| {
        let text = std::fs::read_to_string(&fx.config).unwrap();
        std::fs::write(&fx.config, text.replace(from, to)).unwrap();
        crate::fixture::sh(Command::new("kill").args(["-HUP", &run.pid().to_string()]));
    };

    rename("さくら信用金庫", "もみじ信用金庫");
    crate::faults::eventually(30, "the new name after a reload", || {
        page().contains("もみじ信用金庫")
    });

    // A logo with a script is refused: the name changed with it does not apply either.
    std::fs::write(&logo, r#"<svg><script>alert(1)</script></svg>"#).unwrap();
    rename("もみじ信用金庫", "かえで信用金庫");
    crate::faults::eventually(30, "the refused branding in the log", || {
        run.log().contains("[branding] not reloaded")
    });
    let now = page();
    assert!(
        now.contains("もみじ信用金庫") && !now.contains("かえで信用金庫"),
        "{now}"
    );
    let (status, svg) = crate::fixture::curl(&run.ca, &[&run.url("/certgate/assets/logo")]);
    assert_eq!(status, 200);
    assert!(!svg.contains("script"), "{svg}");
    // `config check` reads the logo as `serve` does, and refuses it before any reload.
    let refused = fx.fails(&["config", "check"]);
    assert!(refused.contains("[branding]"), "{refused}");
}
