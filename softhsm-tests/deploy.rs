//! The shipped deployment files, run for real: the Kubernetes init container and start
//! command against files with the modes the kubelet gives them, logging as the file says,
//! and the systemd notification protocol of a `Type=notify` unit.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::fixture::{Db, Fixture, PIN, ServeAs, http_status};
use crate::support::private_pg::PrivatePg;

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The JSON array after `key` on the one line of `text` that has it and `marker`
/// (manifests and the Containerfile write commands in exec form, a JSON array).
fn exec_form(text: &str, key: &str, marker: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(key) && l.contains(marker))
        .collect();
    assert_eq!(lines.len(), 1, "one {key} line with {marker:?}: {lines:?}");
    let json = lines[0].trim_start()[key.len()..].trim();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// The pod's paths, mapped into a temp folder (longest first).
struct Pod {
    map: Vec<(String, PathBuf)>,
}

impl Pod {
    fn path(&self, s: &str) -> String {
        let mut s = s.to_owned();
        for (from, to) in &self.map {
            s = s.replace(from.as_str(), &to.display().to_string());
        }
        s
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Issue 20: the pgpass Secret as the kubelet mounts it (root:fsGroup, 0440) is ignored by
/// sqlx and the login fails; the init container's copy (0600) logs in, and the image's
/// ENTRYPOINT with the Deployment's args serves on the database with it.
#[test]
fn kubernetes_start_command_logs_in_with_the_mounted_pgpass() {
    let deployment = repo_file("deploy/kubernetes/deployment.yaml");
    let containerfile = repo_file("deploy/container/Containerfile");
    // The kubelet makes Secret files group-readable when fsGroup is set (0440 at least),
    // whatever defaultMode says; the test writes the Secret with that mode.
    assert!(
        deployment.contains("fsGroup: 10001"),
        "the pod sets fsGroup"
    );
    let secret_mode = 0o440;
    assert!(
        deployment.contains("name: PGPASSFILE\n              value: /run/certgate-db/pgpass"),
        "PGPASSFILE points at the init container's copy"
    );

    let Some(pg) = PrivatePg::start() else { return };
    let Some(fx) = Fixture::with_config(Db::Sqlite, |text| {
        let start = text.find("url = \"sqlite://").expect("sqlite url");
        let end = start + text[start..].find('\n').expect("line end");
        text.replace_range(start..end, &format!("url = \"{}\"", pg.url()));
    }) else {
        return;
    };
    let root = fx.path("pod");
    let pod = Pod {
        map: vec![
            ("/run/secrets/certgate-db".into(), root.join("secret-db")),
            ("/run/certgate-db".into(), root.join("db")),
            ("/etc/certgate/certgate.toml".into(), fx.config.clone()),
            (
                "/usr/local/bin/certgate".into(),
                env!("CARGO_BIN_EXE_certgate").into(),
            ),
        ],
    };
    std::fs::create_dir_all(root.join("secret-db")).expect("secret dir");
    std::fs::create_dir_all(root.join("db")).expect("emptyDir");
    let secret = root.join("secret-db/pgpass");
    std::fs::write(&secret, pg.pgpass_line()).expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(secret_mode)).expect("chmod");

    // The Secret file itself: sqlx skips it, PostgreSQL refuses the login.
    let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
        .arg("--config")
        .arg(&fx.config)
        .arg("init")
        .env("SOFTHSM2_CONF", &fx.softhsm_conf)
        .env("CERTGATE_HSM_PIN", PIN)
        .env("PGPASSFILE", &secret)
        .output()
        .expect("certgate runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 0440 pgpass must not log in");
    assert!(
        err.contains("password"),
        "the refusal is about the password: {err}"
    );

    // The init container's command, as the manifest writes it.
    let init = exec_form(&deployment, "command:", "pgpass");
    let init: Vec<String> = init.iter().map(|a| pod.path(a)).collect();
    let status = Command::new(&init[0])
        .args(&init[1..])
        .status()
        .expect("init container command runs");
    assert!(status.success(), "{init:?}");
    let copy = root.join("db/pgpass");
    assert_eq!(mode(&copy), 0o600, "the copy is for certgate alone");

    let fx = fx.with_env("PGPASSFILE", copy);
    fx.ok(&["init"]);

    // ENTRYPOINT + the Deployment's args (they replace CMD).
    let mut argv = exec_form(&containerfile, "ENTRYPOINT", "certgate");
    argv.extend(exec_form(&deployment, "args:", "serve"));
    let argv: Vec<OsString> = argv.iter().map(|a| pod.path(a).into()).collect();
    assert_eq!(
        argv[1..],
        [
            OsString::from("--config"),
            fx.config.clone().into(),
            "serve".into()
        ]
    );
    let run = fx.start(
        &fx.config,
        "",
        ServeAs {
            argv: Some(argv),
            env: Vec::new(),
            wait_ready: true,
        },
    );
    assert_eq!(
        http_status(run.admin, "/readyz"),
        Some(200),
        "{}",
        run.log()
    );
    assert!(
        !run.log().contains(crate::support::private_pg::PASSWORD),
        "the password is never logged"
    );
}

/// `[log] json = true` in the file, no environment: every line `serve` writes is a JSON
/// object, among them the listener's start and a request's access line, which carries the
/// request's ID (the `X-Request-Id` the client got) in its span.
#[test]
fn log_json_from_the_configuration_file() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |text| {
        text.push_str("\n[log]\njson = true\nlevel = \"info\"\n");
    }) else {
        return;
    };
    fx.ok(&["init"]);
    let run = fx.start(
        &fx.config,
        "",
        ServeAs {
            argv: None,
            env: Vec::new(),
            wait_ready: true,
        },
    );
    // One request to the landing page; its ID as the client got it.
    let headers = fx.path("landing.headers");
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--max-time", "20", "--cacert"])
        .arg(&run.ca)
        .arg("-D")
        .arg(&headers)
        .arg(run.url("/certgate/"))
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answered = std::fs::read_to_string(&headers).expect("headers");
    let id = answered
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("x-request-id")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("an X-Request-Id: {answered}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = run.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        let started = lines.iter().any(|v| {
            v["fields"]["message"] == "gateway listening"
                && v["level"] == "INFO"
                && v["fields"]["addr"].as_str().is_some()
        });
        let access = lines.iter().any(|v| {
            v["target"] == "certgate::access"
                && v["span"]["name"] == "request"
                && v["span"]["id"] == id.as_str()
                && v["fields"]["status"] == 200
                && v["fields"]["path"] == "/certgate/"
        });
        if started && access {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a JSON access line with the request ID {id}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `[log] level = "warn"` keeps `serve`'s info lines out; `RUST_LOG=info` brings them back.
#[test]
fn log_level_from_the_file_and_rust_log_over_it() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |text| {
        text.push_str("\n[log]\nlevel = \"warn\"\n");
    }) else {
        return;
    };
    fx.ok(&["init"]);
    let quiet = fx.start(
        &fx.config,
        "",
        ServeAs {
            argv: None,
            env: vec![("RUST_LOG", OsString::new())],
            wait_ready: true,
        },
    );
    assert!(
        !quiet.log().contains("gateway listening"),
        "{}",
        quiet.log()
    );
    drop(quiet);
    let config = fx.path("loud.toml");
    let base = std::fs::read_to_string(&fx.config).expect("config");
    let base = base.split("\n[[listener]]").next().unwrap_or_default();
    std::fs::write(&config, base).expect("config");
    let loud = fx.start(
        &config,
        "",
        ServeAs {
            argv: None,
            env: vec![("RUST_LOG", "info".into())],
            wait_ready: true,
        },
    );
    assert!(loud.log().contains("gateway listening"), "{}", loud.log());
}

/// Receives the next notification (waits up to `secs`).
fn next(sock: &UnixDatagram, secs: u64) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(secs)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification in time");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Waits for a notification with `line`, skipping watchdog pings.
fn until(sock: &UnixDatagram, line: &str) -> String {
    loop {
        let m = next(sock, 30);
        if m.lines().any(|l| l == line) {
            return m;
        }
        assert!(
            m == "WATCHDOG=1",
            "unexpected notification {m:?} before {line}"
        );
    }
}

fn kill(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {signal} {pid}");
}

/// `Type=notify`: READY=1 once the listeners accept connections, WATCHDOG=1 at half of
/// WATCHDOG_USEC, RELOADING=1 (with MONOTONIC_USEC) then READY=1 on SIGHUP, STOPPING=1 on
/// SIGTERM, all on a datagram socket bound here as systemd binds its own.
#[test]
fn systemd_notify_protocol() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.ok(&["init"]);
    let socket_path = fx.path("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let run = fx.start(
        &fx.config,
        "",
        ServeAs {
            argv: None,
            env: vec![
                ("NOTIFY_SOCKET", socket_path.clone().into()),
                ("WATCHDOG_USEC", "400000".into()),
            ],
            wait_ready: false,
        },
    );
    let ready = until(&sock, "READY=1");
    assert!(ready.contains("STATUS=serving"), "{ready}");
    // Ready means accepting: both listeners answer at once, without a retry.
    std::net::TcpStream::connect(("127.0.0.1", run.https)).expect("the gateway accepts");
    assert_eq!(http_status(run.admin, "/readyz"), Some(200));

    assert_eq!(next(&sock, 5), "WATCHDOG=1");

    kill(run.pid(), "-HUP");
    let reloading = until(&sock, "RELOADING=1");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .expect("MONOTONIC_USEC")
        .parse()
        .expect("a number");
    assert!(usec > 0);
    until(&sock, "READY=1");

    kill(run.pid(), "-TERM");
    until(&sock, "STOPPING=1");
}
