//! The configuration's audit entries around reloads a running `serve` hears of: a refused
//! reload is recorded with its reason (and nothing the file says), and a reload caused by a
//! certificate file alone names that file.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::fixture::{Db, Fixture, Running};

/// The audit records of `action`, as JSON with the detail parsed; read with the copy of
/// the configuration that stays valid (`good.toml`).
fn records(fx: &Fixture, action: &str) -> Vec<serde_json::Value> {
    let out = fx.run_with_config(&fx.path("good.toml"), &["audit", "export"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("an audit line"))
        .filter(|r| r["action"] == action)
        .map(|mut r| {
            let detail = r["detail"].as_str().unwrap_or("{}").to_owned();
            r["detail"] = serde_json::from_str(&detail).expect("detail is JSON");
            r
        })
        .collect()
}

/// Sends SIGHUP to `serve` and waits until `records(action)` has more than `before` rows.
fn reload_until(
    fx: &Fixture,
    run: &Running,
    before: usize,
    action: &str,
) -> Vec<serde_json::Value> {
    let status = Command::new("kill")
        .args(["-HUP", &run.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = records(fx, action);
        if found.len() > before {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no new {action} record after SIGHUP:\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn refused_and_file_only_reloads_are_audited(db: Db) {
    let Some(fx) = Fixture::new(db) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let good = std::fs::read_to_string(&fx.config).expect("config");
    std::fs::write(fx.path("good.toml"), &good).expect("good.toml");
    let started = records(&fx, "config.start");
    assert_eq!(started.len(), 1, "{started:?}");
    let in_force = started[0]["detail"]["sha256"].clone();

    // A line the TOML parser quotes in its error: the audit keeps the first line only.
    std::fs::write(&fx.config, format!("{good}\nnot toml reload-marker-7f3a\n")).expect("write");
    let reloads = reload_until(&fx, &run, 0, "config.reload");
    let refused = reloads.last().expect("one");
    assert_eq!(refused["outcome"], "refused", "{refused}");
    assert_eq!(refused["actor"], "system", "{refused}");
    assert_eq!(refused["detail"]["in_force_sha256"], in_force, "{refused}");
    assert_ne!(refused["detail"]["sha256"], in_force, "{refused}");
    let reason = refused["detail"]["reason"].as_str().expect("a reason");
    assert!(reason.contains("line"), "{refused}");
    assert!(
        !refused.to_string().contains("reload-marker-7f3a"),
        "the file's text is not in the audit log: {refused}"
    );
    assert!(run.log().contains("reload refused"), "{}", run.log());
    // Still serving the configuration in force.
    assert_eq!(crate::fixture::http_status(run.admin, "/readyz"), Some(200));

    // The file back as it was, and the listener's certificate file rewritten (a comment
    // after the PEM block): only the certificate changed.
    std::fs::write(&fx.config, &good).expect("write");
    let cert = fx.path("server.pem");
    let mut pem = std::fs::read_to_string(&cert).expect("server.pem");
    pem.push_str("\n# rotated\n");
    std::fs::write(&cert, &pem).expect("write");
    let reloads = reload_until(&fx, &run, reloads.len(), "config.reload");
    let ok = reloads.last().expect("one");
    assert_eq!(ok["outcome"], "ok", "{ok}");
    assert_eq!(ok["detail"]["sha256"], in_force, "{ok}");
    assert_eq!(ok["detail"]["changed"], serde_json::json!([]), "{ok}");
    let files = ok["detail"]["files_changed"].as_array().expect("files");
    assert_eq!(files.len(), 1, "{ok}");
    assert_eq!(files[0]["path"], cert.display().to_string(), "{ok}");
    let digest = crate::fixture::sh(Command::new("sha256sum").arg(&cert));
    let digest = digest.split_whitespace().next().unwrap_or_default();
    assert_eq!(files[0]["sha256"], digest, "{ok}");
}

#[test]
fn refused_and_file_only_reloads_are_audited_sqlite() {
    refused_and_file_only_reloads_are_audited(Db::Sqlite);
}

#[test]
fn refused_and_file_only_reloads_are_audited_postgres() {
    refused_and_file_only_reloads_are_audited(Db::Postgres);
}
