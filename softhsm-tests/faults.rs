//! Faults under the running gateway, against a real SoftHSM2 token and real databases:
//! SIGKILL in the middle of concurrent EST enrollments, the token vanishing and coming back,
//! PostgreSQL becoming unreachable (through a TCP forwarder this test owns, never the
//! machine's server), and a locked or read-only SQLite file.
//!
//! Also the launcher the hostile-input tests share: [`Gate`] runs `certgate serve` as a
//! child process that a test may SIGKILL and start again on the same ports.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::fixture::{Db, Fixture, LIMITS_OUT_OF_REACH, PIN, curl, free_port, sh};

/// `certgate serve` (and the sample upstream) as children, restartable on the same ports.
pub struct Gate {
    pub https: u16,
    pub admin: u16,
    pub ca: PathBuf,
    config: PathBuf,
    softhsm_conf: PathBuf,
    log: PathBuf,
    serve: Option<Child>,
    upstream: Option<Child>,
}

impl Gate {
    /// Issues a server certificate, writes a listener, a certificate route to the sample
    /// app, the admin listener and `extra` (whole TOML sections) into the configuration,
    /// then starts the app and `serve` and waits for `/readyz`. Call after `init`.
    pub fn start(fx: &Fixture, extra: &str) -> Self {
        let (https, admin, upstream) = (free_port(), free_port(), free_port());
        let cert = fx.path("server.pem");
        let key = fx.path("server.key");
        fx.issue_server(&cert, &key);
        let mut text = std::fs::read_to_string(&fx.config).unwrap();
        text.push_str(&format!(
            r#"
[[listener]]
addr = "127.0.0.1:{https}"
cert = "server.pem"
key = "server.key"
client_auth = "optional"
{extra}

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:{upstream}"
auth = "certificate"

[admin]
addr = "127.0.0.1:{admin}"
"#
        ));
        std::fs::write(&fx.config, text).unwrap();
        let app = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .args(["demo-upstream", "--addr", &format!("127.0.0.1:{upstream}")])
            .stderr(Stdio::null())
            .spawn()
            .expect("upstream starts");
        let mut gate = Self {
            https,
            admin,
            ca: fx.ca_pem(),
            config: fx.config.clone(),
            softhsm_conf: fx.softhsm_conf.clone(),
            log: fx.path("serve.log"),
            serve: None,
            upstream: Some(app),
        };
        gate.launch(true);
        gate
    }

    /// Starts `serve` (again); waits for `/readyz` 200 when `wait_ready`, else only for the
    /// admin listener to answer.
    pub fn launch(&mut self, wait_ready: bool) {
        assert!(self.serve.is_none(), "serve is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("CERTGATE_HSM_PIN", PIN)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("serve starts");
        self.serve = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match admin_get(self.admin, "/readyz") {
                Some((200, _)) => break,
                Some(_) if !wait_ready => break,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "serve did not become ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no drain, no destructors, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.serve.take() {
            c.kill().expect("SIGKILL serve");
            let status = c.wait().unwrap();
            assert!(!status.success());
        }
    }

    /// The pid of `serve`.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.serve.as_ref().expect("serve runs").id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/readyz`: (status, body).
    pub fn readyz(&self) -> (u16, String) {
        admin_get(self.admin, "/readyz").unwrap_or((0, String::new()))
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        for c in [self.serve.take(), self.upstream.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain HTTP GET on the admin listener: (status, body).
pub fn admin_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A P-256 key and its CSR as an EST body (base64 DER) in files named after `name`.
pub fn est_body(fx: &Fixture, name: &str) -> (PathBuf, PathBuf) {
    let (key, csr) = fx.openssl_csr(name, "ec:P-256");
    let der = fx.path(&format!("{name}.csr.der"));
    sh(Command::new("openssl")
        .args(["req", "-outform", "DER", "-in"])
        .arg(&csr)
        .arg("-out")
        .arg(&der));
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&der).unwrap());
    let body = fx.path(&format!("{name}.est"));
    std::fs::write(&body, b64).unwrap();
    (key, body)
}

/// EST `simpleenroll` with curl: (status, body as received).
pub fn enroll(gate: &Gate, login: &str, code: &str, body: &Path) -> (u16, String) {
    curl(
        &gate.ca,
        &[
            "--user",
            &format!("{login}:{code}"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", body.display()),
            &gate.url("/.well-known/est/simpleenroll"),
        ],
    )
}

/// The certificate in an EST answer (base64 PKCS#7), as PEM; and its serial, lowercase.
pub fn cert_of(fx: &Fixture, name: &str, b64: &str) -> (String, String) {
    let compact: String = b64.split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .expect("base64 PKCS#7");
    let p7 = fx.path(&format!("{name}.p7"));
    std::fs::write(&p7, der).unwrap();
    let printed = sh(Command::new("openssl")
        .args(["pkcs7", "-inform", "DER", "-print_certs", "-in"])
        .arg(&p7));
    // Only the PEM block (openssl prints subject and issuer lines before it).
    let pem = printed
        .find("-----BEGIN")
        .map_or(printed.as_str(), |i| &printed[i..])
        .to_owned();
    let file = fx.path(&format!("{name}.pem"));
    std::fs::write(&file, &pem).unwrap();
    let serial = sh(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&file));
    (
        pem,
        serial.trim().trim_start_matches("serial=").to_lowercase(),
    )
}

/// `cert list` rows: (serial, login, status).
pub fn cert_rows(fx: &Fixture) -> Vec<(String, String, String)> {
    fx.ok(&["cert", "list"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 4).then(|| (f[0].to_owned(), f[1].to_owned(), f[3].to_owned()))
        })
        .collect()
}

/// The sample app through the gateway with a client certificate: (status, body).
pub fn call_app(gate: &Gate, cert: &Path, key: &Path, accept: &str) -> (u16, String) {
    curl(
        &gate.ca,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-H",
            &format!("Accept: {accept}"),
            &gate.url("/"),
        ],
    )
}

/// Polls `f` every 200 ms until it returns true; fails after `secs` with `what`.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    eventually_seen(secs, what, || if f() { Ok(()) } else { Err(String::new()) });
}

/// As [`eventually`], with what the last poll saw in the failure.
pub fn eventually_seen(secs: u64, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let seen = match f() {
            Ok(()) => return,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "never happened: {what}; last seen: {seen}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------
// 1. SIGKILL during concurrent enrollments

/// What curl got: (status, body).
type Answer = (u16, String);

fn crash_during_enrollments(db: Db) {
    const CLIENTS: usize = 20;
    // Twenty clients enroll from one address at once: the limits stay out of reach.
    let Some(fx) = Fixture::with_config(db, |t| t.push_str(LIMITS_OUT_OF_REACH)) else {
        return;
    };
    fx.ok(&["init"]);
    fx.ok(&["contract", "add", "corp1", "--name", "Example Trading Co."]);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let login = format!("u{i:02}");
        fx.ok(&[
            "user",
            "add",
            &login,
            "--contract",
            "corp1",
            "--role",
            "general",
            "--email",
            &format!("{login}@example.com"),
        ]);
        let code = fx.authorize(&login);
        let (_, body) = est_body(&fx, &login);
        let (_, other) = est_body(&fx, &format!("{login}-other"));
        clients.push((login, code, body, other));
    }
    let mut gate = Gate::start(&fx, "");

    // All clients at once; SIGKILL as soon as the first certificate is out.
    let answers: Arc<Mutex<Vec<Option<Answer>>>> = Arc::new(Mutex::new(vec![None; CLIENTS]));
    let delivered = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (i, (login, code, body, _)) in clients.iter().cloned().enumerate() {
        let (answers, delivered, go) = (answers.clone(), delivered.clone(), go.clone());
        let (ca, url) = (gate.ca.clone(), gate.url("/.well-known/est/simpleenroll"));
        threads.push(std::thread::spawn(move || {
            while !go.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let got = curl(
                &ca,
                &[
                    "--user",
                    &format!("{login}:{code}"),
                    "-H",
                    "Content-Type: application/pkcs10",
                    "--data-binary",
                    &format!("@{}", body.display()),
                    &url,
                ],
            );
            if got.0 == 200 {
                delivered.fetch_add(1, Ordering::SeqCst);
            }
            answers.lock().unwrap()[i] = Some(got);
        }));
    }
    go.store(true, Ordering::SeqCst);
    eventually(60, "a first certificate", || {
        delivered.load(Ordering::SeqCst) > 0
    });
    gate.kill9();
    for t in threads {
        t.join().unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let received: Vec<Option<(String, String)>> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| match a {
            Some((200, body)) => Some(cert_of(&fx, &format!("got{i}"), body)),
            _ => None,
        })
        .collect();
    let got = received.iter().flatten().count();
    eprintln!("before SIGKILL: {got} of {CLIENTS} clients received a certificate");
    assert!(got >= 1);

    // Restart: every certificate a client received is in the store, as current.
    gate.launch(true);
    let rows = cert_rows(&fx);
    for (i, r) in received.iter().enumerate() {
        if let Some((pem, serial)) = r {
            let row = rows.iter().find(|(s, _, _)| s == serial);
            assert!(
                matches!(row, Some((_, login, status)) if *login == clients[i].0 && status == "current"),
                "certificate {serial} of {} is lost: {rows:?}",
                clients[i].0
            );
            let stored = fx.ok(&["cert", "show", serial]);
            assert_eq!(stored.trim(), pem.trim());
        }
    }

    // Every client repeats its enrollment: same code + same CSR gives the same certificate
    // to those who had it, and a certificate to those whose answer was lost.
    for (i, (login, code, body, other)) in clients.iter().enumerate() {
        let (status, text) = enroll(&gate, login, code, body);
        assert_eq!(status, 200, "{login} retry: {text}");
        let (pem, serial) = cert_of(&fx, &format!("retry{i}"), &text);
        if let Some((first_pem, first_serial)) = &received[i] {
            assert_eq!(&serial, first_serial, "{login} got another certificate");
            assert_eq!(pem.trim(), first_pem.trim());
        }
        // The used code with another key is refused, and issues nothing; the answer is the
        // one every refused code gets (no login-ID enumeration), the audit log says "used".
        let (status, text) = enroll(&gate, login, code, other);
        assert_eq!(status, 401, "{login} other CSR: {text}");
        assert!(text.contains("not correct"), "{text}");
    }

    let rows = cert_rows(&fx);
    let mut serials: Vec<&String> = rows.iter().map(|(s, _, _)| s).collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), rows.len(), "a serial repeats: {rows:?}");
    for (login, _, _, _) in &clients {
        let current = rows
            .iter()
            .filter(|(_, l, st)| l == login && st == "current")
            .count();
        assert_eq!(
            current, 1,
            "{login} has {current} current certificates: {rows:?}"
        );
    }
    // The audit chain survived the kill.
    fx.ok(&["audit", "verify"]);
}

#[test]
fn sigkill_during_enrollments_sqlite() {
    crash_during_enrollments(Db::Sqlite);
}

#[test]
fn sigkill_during_enrollments_postgres() {
    crash_during_enrollments(Db::Postgres);
}

// ---------------------------------------------------------------------------------------
// 2. The token goes away and comes back

#[test]
fn token_removed_while_serving_then_restored_without_restart() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    // carol's certificate is issued before the fault.
    let (carol_cert, carol_key) = fx.obtain("carol");
    // The code is made while the token is there (the command line opens the HSM too).
    let code = fx.authorize("bob");
    let (_, body) = est_body(&fx, "bob");
    let gate = Gate::start(&fx, "");
    assert_eq!(
        call_app(&gate, &carol_cert, &carol_key, "application/json").0,
        200
    );

    let tokens = fx.path("tokens");
    let away = fx.path("tokens.away");
    std::fs::rename(&tokens, &away).unwrap();
    std::fs::create_dir(&tokens).unwrap();

    // Issuance: 503 with a clear message; nothing stored.
    let before = cert_rows(&fx).len();
    eventually(30, "issuance answers 503 while the token is gone", || {
        let (status, text) = enroll(&gate, "bob", &code, &body);
        assert_ne!(status, 200, "signed without a token: {text}");
        status == 503 && text.contains("temporarily unavailable")
    });
    assert_eq!(cert_rows(&fx).len(), before);
    // The CRL: 503 (it has never been made, so nothing is cached).
    let (status, text) = curl(&gate.ca, &[&gate.url("/crl/1.crl")]);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("temporarily unavailable"), "{text}");
    // OCSP: tryLater (RFC 6960's 503).
    let ocsp = ocsp_response_status(&fx, &gate, &carol_cert);
    assert!(
        ocsp.contains("trylater") || ocsp.contains("try later"),
        "{ocsp}"
    );
    // /readyz names the HSM.
    let (status, ready) = gate.readyz();
    assert_eq!(status, 503, "{ready}");
    let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_ne!(v["checks"]["hsm"], "ok", "{ready}");
    assert_eq!(v["checks"]["store"], "ok", "{ready}");
    // Proxying for the certificate already issued goes on.
    let (status, text) = call_app(&gate, &carol_cert, &carol_key, "application/json");
    assert_eq!(status, 200, "{text}");

    // The token comes back: signing recovers with no restart.
    std::fs::remove_dir(&tokens).unwrap();
    std::fs::rename(&away, &tokens).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while gate.readyz().0 != 200 {
        let log = gate.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        assert!(
            Instant::now() < deadline,
            "/readyz never recovered: {:?}\n{}",
            gate.readyz(),
            tail.join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, text) = enroll(&gate, "bob", &code, &body);
    assert_eq!(status, 200, "{text}\n{}", gate.log());
    let (status, _) = curl(&gate.ca, &[&gate.url("/crl/1.crl")]);
    assert_eq!(status, 200);
    let ocsp = ocsp_response_status(&fx, &gate, &carol_cert);
    assert!(ocsp.contains(": good"), "{ocsp}");
    assert!(!gate.log().contains(PIN));
}

/// `openssl ocsp` against the running responder, with a nonce (never cached); its output.
fn ocsp_response_status(fx: &Fixture, gate: &Gate, cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&gate.ca)
        .arg("-cert")
        .arg(cert)
        .args(["-url", &gate.url("/ocsp"), "-CAfile"])
        .arg(&gate.ca)
        .arg("-resp_text")
        .current_dir(fx.dir.path())
        .output()
        .expect("openssl ocsp");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .to_lowercase()
}

// ---------------------------------------------------------------------------------------
// 3. The database goes away

/// A TCP forwarder to the machine's PostgreSQL that the test can cut and restore.
struct Forwarder {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Forwarder {
    fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (u, c, target) = (up.clone(), conns.clone(), target.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !u.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut list = c.lock().unwrap();
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        list.push(s);
                    }
                }
                drop(list);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Self { port, up, conns }
    }

    /// Cuts every open connection and refuses new ones.
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[test]
fn postgres_unreachable_fails_closed_then_recovers() {
    let admin = std::env::var("CERTGATE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    let Some(hostport) = admin
        .split_once("@")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(hp, _)| hp.to_owned())
    else {
        panic!("cannot read host:port from {admin}");
    };
    let fwd = Forwarder::start(&hostport);
    let port = fwd.port;
    let Some(fx) = Fixture::with_config(Db::Postgres, |text| {
        *text = text.replace(&hostport, &format!("127.0.0.1:{port}"));
    }) else {
        return;
    };
    assert!(
        std::fs::read_to_string(&fx.config)
            .unwrap()
            .contains(&port.to_string())
    );
    fx.init_with_users();
    let (carol_cert, carol_key) = fx.obtain("carol");
    let code = fx.authorize("bob");
    let (_, body) = est_body(&fx, "bob");
    let gate = Gate::start(
        &fx,
        "\n[gateway]\nstatus_max_age_secs = 1\nstatus_fail_closed_secs = 3\n",
    );
    assert_eq!(
        call_app(&gate, &carol_cert, &carol_key, "application/json").0,
        200
    );

    fwd.cut();
    // Within the cache's limit carol may still pass; past it every request is refused
    // with the page that says why — never let through unchecked.
    eventually(30, "status checks fail closed", || {
        let (status, text) = call_app(&gate, &carol_cert, &carol_key, "text/html");
        if status == 200 {
            return false;
        }
        assert_eq!(status, 503, "{text}");
        assert!(
            text.contains("cannot be checked right now") && text.contains("status_unavailable"),
            "{text}"
        );
        true
    });
    // Issuance refuses with a clear, retryable error.
    let (status, text) = enroll(&gate, "bob", &code, &body);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("temporarily unavailable"), "{text}");
    let (status, ready) = gate.readyz();
    assert_eq!(status, 503, "{ready}");
    let v: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_ne!(v["checks"]["store"], "ok", "{ready}");

    fwd.restore();
    eventually(60, "carol passes again", || {
        call_app(&gate, &carol_cert, &carol_key, "application/json").0 == 200
    });
    let (status, text) = enroll(&gate, "bob", &code, &body);
    assert_eq!(status, 200, "{text}");
    eventually(30, "/readyz recovers", || gate.readyz().0 == 200);
    fx.ok(&["audit", "verify"]);
}

#[test]
fn sqlite_locked_or_read_only_gives_a_clear_error_and_no_partial_record() {
    let Some(fx) = Fixture::new(Db::Sqlite) else {
        return;
    };
    fx.init_with_users();
    let (_, csr) = fx.openssl_csr("carol", "ec:P-256");
    let code = fx.authorize("carol");
    let db = fx.path("certgate.db");

    // Another process holds the write lock: the command waits its busy timeout, then says so.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut locker = rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::raw_sql("BEGIN EXCLUSIVE")
            .execute(&mut c)
            .await
            .unwrap();
        c
    });
    let err = fx.fails(&[
        "cert",
        "sign",
        "carol",
        "--csr",
        csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    assert!(
        err.to_lowercase().contains("locked") || err.contains("unavailable"),
        "{err}"
    );
    rt.block_on(async {
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut locker)
            .await
            .unwrap();
    });
    drop(locker);
    assert_eq!(cert_rows(&fx).len(), 0, "a certificate was half-issued");

    // A read-only (immutable) file: a clear error, the file unchanged.
    let before = std::fs::read(&db).unwrap();
    let immutable = Command::new("chattr").arg("+i").arg(&db).status();
    if !matches!(immutable, Ok(s) if s.success()) {
        crate::fixture::missing("chattr +i is not available on this file system");
        return;
    }
    let err = fx.fails(&[
        "cert",
        "sign",
        "carol",
        "--csr",
        csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    let _ = Command::new("chattr").arg("-i").arg(&db).status();
    let lower = err.to_lowercase();
    assert!(
        lower.contains("read-only") || lower.contains("readonly") || lower.contains("unavailable"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the read-only file changed"
    );

    // Back to normal: the same code still works, once; the audit chain is intact.
    fx.ok(&[
        "cert",
        "sign",
        "carol",
        "--csr",
        csr.to_str().unwrap(),
        "--code",
        &code,
    ]);
    let rows = cert_rows(&fx);
    assert_eq!(rows.len(), 1, "{rows:?}");
    fx.ok(&["audit", "verify"]);
    assert!(!fx.transcript().contains(PIN));
}
