//! A throwaway certgate installation for end-to-end tests: a SoftHSM2 token in a temp
//! folder, a configuration file, a database (SQLite file or a fresh PostgreSQL database),
//! and the real `certgate` binary run as bank staff would run it.
//!
//! Every command's output is kept so a test can check that the PIN never appears in it.

use std::path::{Path, PathBuf};

use base64::Engine;
use std::process::{Command, Output};
use std::sync::Mutex;

use crate::support::token::{self, TestToken};

pub const PIN: &str = "4821-pin-sentinel-7391";
const SO_PIN: &str = "so-secret-5550";

/// Which database a fixture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// True when running in CI: missing services are failures, not skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Skips (outside CI) or fails (in CI) for a missing prerequisite.
pub fn missing(what: &str) -> Option<std::convert::Infallible> {
    assert!(!in_ci(), "CI=true but {what}");
    eprintln!("SKIPPED: {what}");
    None
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub softhsm_conf: PathBuf,
    /// The user PIN of the token (openCryptoki's is at most 8 characters).
    pub pin: &'static str,
    /// openCryptoki's shared token, cleaned when the fixture ends (CERTGATE_TEST_TOKEN).
    _ock: Option<TestToken>,
    pg: Option<PgDatabase>,
    transcript: Mutex<String>,
    /// Set for every command and `serve` this fixture runs (e.g. `PGPASSFILE`).
    env: Vec<(String, PathBuf)>,
}

impl Fixture {
    /// A fresh installation (not yet `init`ed). None when a prerequisite is missing outside CI.
    pub fn new(db: Db) -> Option<Self> {
        Self::with_config(db, |_| {})
    }

    /// Like [`Fixture::new`], letting the test edit the configuration text.
    pub fn with_config(db: Db, edit: impl FnOnce(&mut String)) -> Option<Self> {
        if token::kind() == token::Kind::OpenCryptoki {
            return Self::on_open_cryptoki(db, edit);
        }
        if Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_err()
        {
            missing("softhsm2-util is not installed")?;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).expect("token dir");
        let softhsm_conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &softhsm_conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("softhsm conf");
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .args([
                "--init-token",
                "--free",
                "--label",
                "certgate",
                "--so-pin",
                SO_PIN,
                "--pin",
                PIN,
            ])
            .output()
            .expect("softhsm2-util runs");
        assert!(
            out.status.success(),
            "init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        Self::finish(db, edit, dir, softhsm_conf, None)
    }

    /// The same installation on openCryptoki's soft token: its one token, an RSA CA key (the
    /// token has no EC), its short PIN.
    fn on_open_cryptoki(db: Db, edit: impl FnOnce(&mut String)) -> Option<Self> {
        let tok = token::create("certgate")?;
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = tok.conf.clone();
        let label = tok.label.clone();
        Self::finish(
            db,
            |text| {
                *text = text
                    .replace(
                        "module = \"/usr/lib/softhsm/libsofthsm2.so\"",
                        &format!(
                            "module = \"{}\"\nkey_algorithm = \"rsa-2048\"",
                            token::OCK_MODULE
                        ),
                    )
                    .replace(
                        "token_label = \"certgate\"",
                        &format!("token_label = \"{label}\""),
                    );
                edit(text);
            },
            dir,
            conf,
            Some(tok),
        )
    }

    fn finish(
        db: Db,
        edit: impl FnOnce(&mut String),
        dir: tempfile::TempDir,
        softhsm_conf: PathBuf,
        ock: Option<TestToken>,
    ) -> Option<Self> {
        let pin = if ock.is_some() { token::PIN } else { PIN };
        let (db_url, pg) = match db {
            Db::Sqlite => (
                format!("sqlite://{}", dir.path().join("certgate.db").display()),
                None,
            ),
            Db::Postgres => {
                let pg = PgDatabase::create()?;
                (pg.url.clone(), Some(pg))
            }
        };
        let mut text = format!(
            r#"
[database]
url = "{db_url}"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "certgate"
pin_env = "CERTGATE_HSM_PIN"
key_label = "certgate-ca"

[ca]
subject = "CN=certgate Test Customer CA,O=Example Bank"
validity_days = 365
public_url = "https://127.0.0.1:8443"
organization = "Example Bank corporate customers"
"#
        );
        edit(&mut text);
        let config = dir.path().join("certgate.toml");
        std::fs::write(&config, text).expect("config");
        Some(Self {
            dir,
            config,
            softhsm_conf,
            pin,
            _ock: ock,
            pg,
            transcript: Mutex::new(String::new()),
            env: Vec::new(),
        })
    }

    /// Sets `name` to `path` for every command and `serve` run from now on.
    pub fn with_env(mut self, name: &str, path: PathBuf) -> Self {
        self.env.push((name.to_owned(), path));
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `certgate --config <cfg> args...` with the PIN in the environment.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_config(&self.config, args)
    }

    /// [`Fixture::run`] with another configuration file (e.g. while the fixture's own is
    /// being made invalid for a running `serve`).
    pub fn run_with_config(&self, config: &std::path::Path, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .arg("--config")
            .arg(config)
            .args(args)
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("CERTGATE_HSM_PIN", self.pin)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .output()
            .expect("certgate runs");
        let mut t = self.transcript.lock().expect("transcript");
        t.push_str(&String::from_utf8_lossy(&out.stdout));
        t.push_str(&String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "certgate {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "certgate {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Everything every command printed so far.
    pub fn transcript(&self) -> String {
        self.transcript.lock().expect("transcript").clone()
    }

    /// `init`, one contract and one user of each role; returns nothing.
    pub fn init_with_users(&self) {
        self.ok(&["init"]);
        self.ok(&["contract", "add", "corp1", "--name", "Example Trading Co."]);
        self.ok(&["contract", "add", "corp2", "--name", "Other Corp"]);
        for (login, contract, role) in [
            ("alice", "corp1", "admin"),
            ("bob", "corp1", "approver"),
            ("carol", "corp1", "general"),
            ("dave", "corp2", "admin"),
        ] {
            self.ok(&[
                "user",
                "add",
                login,
                "--contract",
                contract,
                "--role",
                role,
                "--email",
                &format!("{login}@example.com"),
            ]);
        }
    }

    /// The code printed on the last line of `issue authorize|reissue`.
    pub fn authorize(&self, login: &str) -> String {
        last_line(&self.ok(&["issue", "authorize", login]))
    }

    /// Authorizes `login`, makes an EC P-256 key and CSR with openssl and signs it with
    /// `cert sign`; returns the certificate and key files.
    pub fn obtain(&self, login: &str) -> (PathBuf, PathBuf) {
        let code = self.authorize(login);
        let (key, csr) = self.openssl_csr(login, "ec:P-256");
        let pem = self.ok(&[
            "cert",
            "sign",
            login,
            "--csr",
            csr.to_str().unwrap(),
            "--code",
            &code,
        ]);
        let cert = self.path(&format!("{login}.pem"));
        std::fs::write(&cert, pem).expect("write certificate");
        (cert, key)
    }

    /// A server certificate for `localhost` and `127.0.0.1` from the active CA, written to
    /// `cert` and `key` (`ca issue-server`).
    pub fn issue_server(&self, cert: &std::path::Path, key: &std::path::Path) {
        self.ok(&[
            "ca",
            "issue-server",
            "--name",
            "localhost",
            "--name",
            "127.0.0.1",
            "--cert-out",
            cert.to_str().unwrap(),
            "--key-out",
            key.to_str().unwrap(),
        ]);
    }

    /// Writes the CA certificate PEM to a file and returns its path.
    pub fn ca_pem(&self) -> PathBuf {
        let p = self.path("ca.pem");
        std::fs::write(&p, self.ok(&["ca", "cert"])).expect("write ca");
        p
    }

    /// A key and CSR made by openssl. `key` is an `openssl req -newkey` argument such as
    /// `ec:P-256`, `rsa:2048`, `ed25519`. The CSR asks for a foreign subject on purpose.
    pub fn openssl_csr(&self, name: &str, newkey: &str) -> (PathBuf, PathBuf) {
        let key = self.path(&format!("{name}.key"));
        let csr = self.path(&format!("{name}.csr"));
        let mut cmd = Command::new("openssl");
        cmd.args(["req", "-new", "-nodes", "-subj", "/CN=mallory/O=Evil Corp"]);
        cmd.args([
            "-addext",
            "subjectAltName=DNS:evil.example",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ]);
        match newkey.split_once(':') {
            Some(("ec", curve)) => {
                let out = Command::new("openssl")
                    .args([
                        "ecparam",
                        "-genkey",
                        "-name",
                        &curve
                            .replace("P-256", "prime256v1")
                            .replace("P-384", "secp384r1"),
                        "-out",
                    ])
                    .arg(&key)
                    .output()
                    .expect("openssl ecparam");
                assert!(out.status.success());
                cmd.arg("-key").arg(&key);
            }
            _ => {
                cmd.args(["-newkey", newkey, "-keyout"]).arg(&key);
            }
        }
        let out = cmd.arg("-out").arg(&csr).output().expect("openssl req");
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (key, csr)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.pg.take());
    }
}

pub fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_owned()
}

/// Runs a command and returns stdout, asserting success.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct PgDatabase {
    pub url: String,
    admin: String,
    name: String,
}

impl PgDatabase {
    pub fn create() -> Option<Self> {
        let admin = std::env::var("CERTGATE_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
        let mut rnd = [0u8; 6];
        getrandom(&mut rnd);
        let name = format!("certgate_t_{}", hex::encode(rnd));
        let (base, _) = admin.rsplit_once('/')?;
        let url = format!("{base}/{name}");
        match psql(&admin, &format!("CREATE DATABASE {name}")) {
            Ok(()) => Some(Self { url, admin, name }),
            Err(e) => {
                missing(&format!("PostgreSQL at {admin} is not usable: {e}"))?;
                None
            }
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn getrandom(buf: &mut [u8]) {
    aws_lc_rs::rand::fill(buf).expect("random");
}

/// A `[limits]` section far above what a test sends, for tests that hammer codes or
/// enrollments from one address on purpose (the limits have their own tests).
pub const LIMITS_OUT_OF_REACH: &str = r#"
[limits]
obtain = { per_minute = 100000, burst = 100000 }
reenroll = { per_minute = 100000, burst = 100000 }
ocsp_nonce = { per_minute = 100000, burst = 100000 }
failed_codes = { per_minute = 100000, burst = 100000 }
"#;

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `certgate serve` and the sample upstream app, running as child processes.
pub struct Running {
    pub https: u16,
    pub admin: u16,
    pub ca: PathBuf,
    children: Vec<std::process::Child>,
    log: PathBuf,
}

/// How [`Fixture::start`] runs `serve`.
pub struct ServeAs<'a> {
    /// The program and its arguments; `None` runs `certgate --config <file> serve`.
    pub argv: Option<Vec<std::ffi::OsString>>,
    /// More environment (beside the fixture's), e.g. `NOTIFY_SOCKET`.
    pub env: Vec<(&'a str, std::ffi::OsString)>,
    /// Wait until `/readyz` answers 200 before returning.
    pub wait_ready: bool,
}

impl Running {
    /// `https://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https)
    }

    /// What `serve` logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id of `serve`.
    pub fn pid(&self) -> u32 {
        self.children[0].id()
    }

    /// Waits up to 30 s for `/readyz` to answer 200.
    pub fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if http_status(self.admin, "/readyz") == Some(200) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not become ready:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Fixture {
    /// Issues a server certificate, adds a listener, a route to the sample upstream and an
    /// admin listener to the configuration, starts both processes and waits until
    /// `/readyz` answers 200. Call after `init`.
    pub fn serve(&self) -> Running {
        self.serve_with("")
    }

    /// [`Fixture::serve`] with extra settings for the `[[route]]` to the sample app.
    pub fn serve_with(&self, route_settings: &str) -> Running {
        self.start_instance(&self.config, route_settings)
    }

    /// Another `serve` process on the same database and token, with its own configuration
    /// file `name` (the base configuration plus its own ports) — a second gateway instance.
    pub fn serve_another(&self, name: &str) -> Running {
        self.serve_another_with(name, "")
    }

    /// [`Fixture::serve_another`] with extra settings for its `[[route]]` to the sample app.
    pub fn serve_another_with(&self, name: &str, route_settings: &str) -> Running {
        let config = self.path(name);
        let base = std::fs::read_to_string(&self.config).expect("config");
        let base = base.split("\n[[listener]]").next().unwrap_or_default();
        std::fs::write(&config, base).expect("config");
        self.start_instance(&config, route_settings)
    }

    fn start_instance(&self, config: &std::path::Path, route_settings: &str) -> Running {
        self.start(
            config,
            route_settings,
            ServeAs {
                argv: None,
                env: Vec::new(),
                wait_ready: true,
            },
        )
    }

    /// Like [`Fixture::serve`], running `serve` as `how` says.
    pub fn start(
        &self,
        config: &std::path::Path,
        route_settings: &str,
        how: ServeAs<'_>,
    ) -> Running {
        let (https, admin, upstream) = (free_port(), free_port(), free_port());
        let cert = self.path("server.pem");
        let key = self.path("server.key");
        if !cert.exists() {
            self.issue_server(&cert, &key);
        }
        let mut text = std::fs::read_to_string(config).expect("config");
        text.push_str(&format!(
            r#"
[[listener]]
addr = "127.0.0.1:{https}"
cert = "server.pem"
key = "server.key"
client_auth = "optional"

[[route]]
prefix = "/"
upstream = "http://127.0.0.1:{upstream}"
auth = "certificate"
{route_settings}

[admin]
addr = "127.0.0.1:{admin}"
"#
        ));
        std::fs::write(config, text).expect("config");
        let log = config.with_extension("log");
        let upstream_child = Command::new(env!("CARGO_BIN_EXE_certgate"))
            .args(["demo-upstream", "--addr", &format!("127.0.0.1:{upstream}")])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("upstream starts");
        let argv = match how.argv {
            Some(argv) => argv,
            None => vec![
                env!("CARGO_BIN_EXE_certgate").into(),
                "--config".into(),
                config.into(),
                "serve".into(),
            ],
        };
        let serve_child = Command::new(&argv[0])
            .args(&argv[1..])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_os_str())))
            .envs(how.env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .env("SOFTHSM2_CONF", &self.softhsm_conf)
            .env("CERTGATE_HSM_PIN", self.pin)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("serve starts");
        let running = Running {
            https,
            admin,
            ca: self.ca_pem(),
            children: vec![serve_child, upstream_child],
            log,
        };
        if how.wait_ready {
            running.wait_ready();
        }
        running
    }
}

/// The status of a plain HTTP GET on 127.0.0.1 (the admin listener).
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// curl with the test CA; returns (status, body). `args` are extra curl arguments.
pub fn curl(ca: &std::path::Path, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca)
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code: u16 = code.trim().parse().unwrap_or(0);
    if code == 0 {
        // No HTTP answer at all: curl's own message says why (refused, TLS, timeout).
        let why = String::from_utf8_lossy(&out.stderr).into_owned();
        return (0, format!("{body}{why}"));
    }
    (code, body.to_owned())
}

// --- Helpers for tests against a running gateway

/// curl arguments carrying the double-submit token as certgate's pages send it: the
/// `__Host-certgate_csrf` cookie and the same value in `X-CSRF-Token` (the pages' JSON calls and
/// every state-changing `/api/v1/` call need it).
pub const CSRF: [&str; 4] = [
    "-H",
    "Cookie: __Host-certgate_csrf=5d0c4b9a8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b",
    "-H",
    "X-CSRF-Token: 5d0c4b9a8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b",
];

/// curl arguments for the obtain page's JSON call (`/certgate/api/obtain`) with its
/// double-submit token; `body` is written to `obtain.json` in the fixture's folder.
pub fn obtain_call_args(fx: &Fixture, run: &Running, body: &serde_json::Value) -> Vec<String> {
    let file = fx.path("obtain.json");
    std::fs::write(&file, body.to_string()).expect("write the call's body");
    let mut args: Vec<String> = ["-H", "Content-Type: application/json"]
        .iter()
        .chain(CSRF.iter())
        .map(|a| (*a).to_owned())
        .collect();
    args.extend([
        "--data-binary".to_owned(),
        format!("@{}", file.display()),
        run.url("/certgate/api/obtain"),
    ]);
    args
}

/// [`CSRF`] for the staff console's calls: its pages keep their token in a cookie of their own.
pub const STAFF_CSRF: [&str; 4] = [
    "-H",
    "Cookie: __Host-certgate_staff_csrf=5d0c4b9a8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b",
    "-H",
    "X-CSRF-Token: 5d0c4b9a8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b",
];

/// An EC P-256 key and a DER CSR for it (subject chosen by the test; the CA ignores it).
pub fn key_and_der_csr(fx: &Fixture, name: &str) -> (PathBuf, PathBuf) {
    let (key, csr) = fx.openssl_csr(name, "ec:P-256");
    let der = fx.path(&format!("{name}.csr.der"));
    sh(Command::new("openssl")
        .args(["req", "-outform", "DER", "-in"])
        .arg(&csr)
        .arg("-out")
        .arg(&der));
    (key, der)
}

/// Enrolls through EST `simpleenroll` with curl; returns (status, PEM of the certificate).
pub fn est_enroll(
    run: &Running,
    fx: &Fixture,
    login: &str,
    code: &str,
    der_csr: &Path,
) -> (u16, String) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(der_csr).unwrap());
    let body = fx.path("est-body.b64");
    std::fs::write(&body, b64).unwrap();
    let (status, text) = curl(
        &run.ca,
        &[
            "--user",
            &format!("{login}:{code}"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", body.display()),
            &run.url("/.well-known/est/simpleenroll"),
        ],
    );
    if status != 200 {
        return (status, text);
    }
    (status, pkcs7_to_pem(fx, &text))
}

pub fn pkcs7_to_pem(fx: &Fixture, b64: &str) -> String {
    let compact: String = b64.split_whitespace().collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .expect("base64 PKCS#7");
    let p7 = fx.path("resp.p7");
    std::fs::write(&p7, der).unwrap();
    sh(Command::new("openssl")
        .args(["pkcs7", "-inform", "DER", "-print_certs", "-in"])
        .arg(&p7))
}

/// The app behind the gateway, called with a client certificate; (status, body).
pub fn call_app(run: &Running, cert: &Path, key: &Path) -> (u16, String) {
    curl(
        &run.ca,
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-H",
            "Accept: application/json",
            &run.url("/"),
        ],
    )
}
