//! Request IDs through a real `certgate serve` and the sample app: the app gets one, the
//! client gets the same one back, and the gateway's log lines of that request carry it, a
//! refused request's included. A client's own ID is not trusted on a default listener.

use std::path::Path;
use std::process::Command;

use crate::fixture::{Db, Fixture, Running};

/// GET `path` with curl: status, the `X-Request-Id` answered, and the body.
fn get(fx: &Fixture, run: &Running, path: &str, extra: &[&str]) -> (u16, String, String) {
    let headers = fx.path("headers.txt");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--path-as-is",
            "--max-time",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .arg("-D")
        .arg(&headers)
        .arg("--cacert")
        .arg(&run.ca)
        .args(extra)
        .arg(run.url(path))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    let id = answered_id(&headers);
    (code.trim().parse().unwrap_or(0), id, body.to_owned())
}

fn answered_id(headers: &Path) -> String {
    let text = std::fs::read_to_string(headers).expect("headers");
    let ids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v.trim())
        .collect();
    assert_eq!(ids.len(), 1, "one X-Request-Id answered: {text}");
    ids[0].to_owned()
}

/// Waits (bounded) until the gateway's log lines that carry `id` satisfy `ok`; panics
/// with the log otherwise.
fn wait_for_lines(run: &Running, id: &str, what: &str, ok: impl Fn(&[&str]) -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = run.log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(&format!("id={id}")))
            .collect();
        if ok(&lines) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} ({id}):\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_request_id_follows_each_request_to_the_app_and_back() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (cert, key) = fx.obtain("alice");
    let as_alice = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "-H",
        "Accept: application/json",
    ];

    // The app and the client see the same ID; the client's own is replaced.
    let mut with_own = as_alice.to_vec();
    with_own.extend(["-H", "X-Request-Id: chosen-by-the-client"]);
    let (status, id, body) = get(&fx, &run, "/ib/top", &with_own);
    assert_eq!(status, 200, "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("the sample app's JSON");
    assert_eq!(seen["identity"]["x-request-id"], id.as_str(), "{body}");
    assert_ne!(id, "chosen-by-the-client");
    wait_for_lines(&run, &id, "the access log line names the ID", |lines| {
        lines
            .iter()
            .any(|l| l.contains("status=200") && l.contains("user=\"alice\""))
    });
    let (_, next, _) = get(&fx, &run, "/ib/top", &as_alice);
    assert_ne!(next, id, "one ID per request");

    // A refused request has one too, in its answer and in the security warning.
    let (status, refused, _) = get(&fx, &run, "/ib/a%2fb", &as_alice);
    assert_eq!(status, 400);
    wait_for_lines(
        &run,
        &refused,
        "the refusal's log lines name the ID",
        |lines| {
            lines
                .iter()
                .any(|l| l.contains("WARN") && l.contains("request path refused"))
                && lines.iter().any(|l| l.contains("status=400"))
        },
    );
}
