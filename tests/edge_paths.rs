//! The edge against path, spelling and header tricks, over real TLS with a real SQLite
//! store: a public route beside a certificate route on the same app, whose upstream reads
//! paths as Tomcat and IIS do (`support/path_apps.rs`). For each spelling the test asserts
//! the refusal and that the app never served a protected path to a caller without the
//! certificate, never saw a login request naming another login ID, and never saw a header
//! a client could use to pretend something.

#[path = "support/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "support/path_apps.rs"]
mod path_apps;
#[path = "support/gateway/mod.rs"]
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use certgate::app::{Server, ServerDeps};
use certgate::clock::{DAY, SystemClock};
use certgate::proxy::NoLocalService;
use certgate::store::{CertRecord, CertStatus, Contract, Role, Store, User};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use path_apps::PathApp;
use support::client;
use support::now;
use support::pki::{ClientCert, TestCa};

/// A gateway with public `/` and `/public`, certificate `/ib` (login binding, extra
/// stripped headers) and certificate `/jsess` (path parameters passed), all to one app.
struct Edge {
    _dir: tempfile::TempDir,
    _db: db::TestDb,
    server_ca: TestCa,
    app: PathApp,
    addr: SocketAddr,
    alice: ClientCert,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Edge {
    async fn start() -> Self {
        certgate::tls::install_default_provider();
        let dir = tempfile::tempdir().unwrap();
        let database = db::TestDb::sqlite();
        let store = Store::connect(&database.url).await.unwrap();
        store.migrate().await.unwrap();
        let ca = TestCa::new("certgate Test Customer CA");
        let server_ca = TestCa::new("certgate Test Server CA");
        let t = now();
        let ca_id = store
            .insert_ca("test-ca", &ca.der, "", true, t)
            .await
            .unwrap()
            .id;
        store
            .insert_contract(&Contract {
                id: "c1".into(),
                name: "Example Trading KK".into(),
                enabled: true,
                created_at: t,
            })
            .await
            .unwrap();
        for login in ["alice", "bob"] {
            store
                .insert_user(&User {
                    login: login.into(),
                    contract_id: "c1".into(),
                    role: Role::General,
                    email: format!("{login}@example.com"),
                    enabled: true,
                    created_at: t,
                })
                .await
                .unwrap();
        }
        let alice = ca.client("alice", "c1", t - 60, t + 365 * DAY);
        register(&store, ca_id, &alice, "alice").await;
        let (cert_pem, key_pem, _) = server_ca.server();
        std::fs::write(dir.path().join("server.pem"), cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), key_pem).unwrap();
        let app = PathApp::start().await;
        let config = dir.path().join("certgate.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[hsm]
token_label = "unused-by-the-gateway"

[ca]
subject = "CN=certgate Test Customer CA,O=Example Bank"
public_url = "https://127.0.0.1:8443"

[[listener]]
addr = "127.0.0.1:0"
cert = "server.pem"
key = "server.key"
client_auth = "optional"

[[route]]
prefix = "/"
upstream = "http://{app}"
auth = "public"

[[route]]
prefix = "/public"
upstream = "http://{app}"
auth = "public"

[[route]]
prefix = "/ib"
upstream = "http://{app}"
auth = "certificate"
strip_headers = ["X-Legacy-User", "X-Sso-*"]
[route.login_binding]
path = "/ib/login"
field = "loginId"
max_form_bytes = 1024

[[route]]
prefix = "/jsess"
upstream = "http://{app}"
auth = "certificate"
path_params = "pass"

[admin]
addr = "127.0.0.1:0"
"#,
                app = app.addr
            ),
        )
        .unwrap();
        let deps = ServerDeps::new(
            config,
            store,
            Arc::new(NoLocalService),
            Arc::new(SystemClock),
        );
        let gateway = Server::bind(deps).await.unwrap();
        let addr = gateway.listener_addrs()[0];
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gateway
                .serve(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            _dir: dir,
            _db: database,
            server_ca,
            app,
            addr,
            alice,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Sends `head` (request line and headers, without the final empty line; the test adds
    /// `Host` and `Connection: close`) and `body` on a fresh TLS connection, with alice's
    /// certificate or none; returns the status and the whole answer.
    async fn send(&self, cert: bool, head: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{head}\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        self.send_raw(cert, &req).await
    }

    /// Sends `request` exactly as given on a fresh TLS connection and reads until the
    /// gateway closes it; the status of the answer's first line (0 when there is none).
    async fn send_raw(&self, cert: bool, request: &str) -> (u16, String) {
        let s = client::tls(self.addr, self.raw_config(cert)).await.unwrap();
        Self::exchange(s, request).await
    }

    /// [`Edge::send_raw`] on a connection without SNI.
    async fn send_raw_without_sni(&self, cert: bool, request: &str) -> (u16, String) {
        let s = client::tls_without_sni(self.addr, self.raw_config(cert))
            .await
            .unwrap();
        Self::exchange(s, request).await
    }

    /// HTTP/1.1 only, with alice's certificate when `cert`.
    fn raw_config(&self, cert: bool) -> Arc<rustls::ClientConfig> {
        client::config(
            &self.server_ca.der,
            cert.then_some(&self.alice),
            &[b"http/1.1"],
        )
    }

    async fn exchange(
        mut s: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        request: &str,
    ) -> (u16, String) {
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the gateway kept the connection open");
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .strip_prefix("HTTP/1.")
            .and_then(|r| r.get(2..5))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, text)
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

async fn register(store: &Store, ca_id: i64, cert: &ClientCert, login: &str) {
    let t = now();
    let code_hash = format!("test-code-{}", cert.serial);
    store.set_code(login, &code_hash, t, t + DAY).await.unwrap();
    let rec = CertRecord {
        serial: cert.serial.clone(),
        login: login.into(),
        contract_id: "c1".into(),
        ca_id,
        der: cert.der.to_vec(),
        sha256: cert.sha256.clone(),
        spki_sha256: format!("spki-{}", cert.serial),
        not_before: cert.not_before,
        not_after: cert.not_after,
        status: CertStatus::Current,
        superseded_at: None,
        revoked_at: None,
        revocation_reason: None,
        first_used_at: None,
        created_at: t,
    };
    store.complete_issue(&code_hash, &rec, t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_reaches_the_certificate_route_without_a_certificate() {
    let edge = Edge::start().await;
    // Positive control: the public route is served, and the views see what they should.
    let (status, _) = edge.send(false, "GET /public/x HTTP/1.1", "").await;
    assert_eq!(status, 200);
    assert_eq!(edge.app.hits().len(), 1);

    // (spelling, what the gateway answers): 400 where the path cannot be made canonical,
    // 401 where its canonical form is the certificate route's.
    let spellings: &[(&str, u16)] = &[
        ("/public/..;/ib/top", 400),
        ("/public/..;x/ib/top", 400),
        ("/public/%2e%2e;/ib/top", 400),
        ("//ib/top", 400),
        ("/public//../ib/top", 400),
        ("/ib;x/top", 400),
        ("/ib;jsessionid=1/top", 400),
        ("/IB/top", 401),
        ("/Ib/TOP", 401),
        ("/%69b/top", 401),
        ("/%49%42/top", 401),
        ("/public/%2e%2e/ib/top", 401),
        ("/public/.%2E/ib/top", 401),
        ("/public/../ib/top", 401),
        ("/public/./../ib", 401),
        ("/public%2F..%2Fib/top", 400),
        ("/public/..%2fib/top", 400),
        ("/public/..%5Cib/top", 400),
        ("/public/..%5cib/top", 400),
        ("/public\\..\\ib/top", 400),
        ("/public/%252e%252e/ib/top", 400),
        ("/public/%25%32%65%25%32%65/ib/top", 400),
        ("/public/..%00/ib/top", 400),
        ("/ib%00/top", 400),
        ("/public/%2e%2e%3B/ib/top", 400),
        ("/public/..%c0%af../ib/top", 400),
        ("/ib./top", 400),
        ("/ib%2e/top", 400),
        ("/IB%2E%2E%2E/top", 400),
        ("/public/%09/../../ib/top", 400),
        ("/public/%0d%0a/../../ib/top", 400),
        ("/public/%7f/../../ib/top", 400),
        ("/..", 400),
        ("/public/../../ib", 400),
    ];
    let before = edge.app.hits().len();
    for (path, want) in spellings {
        let (status, text) = edge.send(false, &format!("GET {path} HTTP/1.1"), "").await;
        assert_eq!(status, *want, "{path}: {text}");
    }
    let hits = edge.app.hits();
    assert_eq!(
        hits.len(),
        before,
        "the app was reached: {:?}",
        &hits[before..]
    );

    // The refusal says why, as a page for browsers and JSON otherwise.
    let (_, text) = edge
        .send(
            false,
            "GET /public/..;/ib/top HTTP/1.1\r\nAccept: text/html",
            "",
        )
        .await;
    assert!(
        text.contains("text/html") && text.contains("Code: path_refused"),
        "{text}"
    );
    let (_, text) = edge.send(false, "GET //ib/top HTTP/1.1", "").await;
    assert!(text.contains("\"error\":\"path_refused\""), "{text}");

    // Raw control bytes never get as far as routing.
    let (status, _) = edge
        .send(false, "GET /public/\u{1}/../ib/top HTTP/1.1", "")
        .await;
    assert_eq!(status, 400);

    // `/ib/%2e%2e/` is `/`, the public root: the app gets `/`, not `/ib/`.
    let (status, _) = edge.send(false, "GET /ib/%2e%2e/ HTTP/1.1", "").await;
    assert_eq!(status, 200);
    let hits = edge.app.hits();
    let last = hits.last().unwrap();
    assert_eq!(last.target, "/");
    assert!(hits.iter().all(|h| !h.served_under("/ib")), "{hits:?}");

    // With the certificate, the canonical path is what the app receives.
    for (path, forwarded) in [
        ("/IB/top", "/IB/top"),
        ("/%69b/%74op?a=%2F", "/ib/top?a=%2F"),
        ("/public/../ib/./top", "/ib/top"),
        ("/ib/x%3f", "/ib/x%3F"),
    ] {
        let (status, text) = edge.send(true, &format!("GET {path} HTTP/1.1"), "").await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_eq!(edge.app.hits().last().unwrap().target, forwarded, "{path}");
    }
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_parameters_pass_only_on_a_route_that_allows_them() {
    let edge = Edge::start().await;
    let (status, text) = edge
        .send(
            true,
            "GET /jsess/page;jsessionid=AB12.node1?x=1 HTTP/1.1",
            "",
        )
        .await;
    assert_eq!(status, 200, "{text}");
    let hits = edge.app.hits();
    assert_eq!(
        hits.last().unwrap().target,
        "/jsess/page;jsessionid=AB12.node1?x=1"
    );
    // Routed without them: `/JSESS/%70age;…` is the same route, forwarded canonical.
    let (status, _) = edge
        .send(true, "GET /JSESS/%70age;jsessionid=AB HTTP/1.1", "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        edge.app.hits().last().unwrap().target,
        "/JSESS/page;jsessionid=AB"
    );
    let before = edge.app.hits().len();
    for path in [
        "/jsess;jsessionid=AB/page",
        "/jsess/..;/page",
        "/jsess/page;a%2Fb",
        "/jsess/page;a/..",
        "/public/..;/jsess/page",
    ] {
        let (status, text) = edge.send(true, &format!("GET {path} HTTP/1.1"), "").await;
        assert_eq!(status, 400, "{path}: {text}");
    }
    // Without a certificate the parameters do not open the route either.
    let (status, _) = edge
        .send(false, "GET /jsess/page;jsessionid=AB HTTP/1.1", "")
        .await;
    assert_eq!(status, 401);
    assert_eq!(edge.app.hits().len(), before);
    edge.shutdown().await;
}

const FORM: &str = "Content-Type: application/x-www-form-urlencoded";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alices_certificate_never_logs_in_as_bob() {
    let edge = Edge::start().await;
    let multipart = |name: &str, value: &str| {
        format!(
            "--B0und\r\nContent-Disposition: form-data; name=\"pw\"\r\n\r\nsecret\r\n\
             --B0und\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n--B0und--\r\n"
        )
    };
    let mp_type = "Content-Type: multipart/form-data; boundary=B0und";
    let big = format!("loginId=alice&pad={}", "x".repeat(2000));
    // (request line, extra header line or "", body, status)
    let attempts: Vec<(&str, &str, String, u16)> = vec![
        (
            "POST /ib/login HTTP/1.1",
            FORM,
            "loginId=bob&pw=x".into(),
            403,
        ),
        ("POST /ib/login;x HTTP/1.1", FORM, "loginId=bob".into(), 400),
        ("POST /ib//login HTTP/1.1", FORM, "loginId=bob".into(), 400),
        ("POST /ib/login/ HTTP/1.1", FORM, "loginId=bob".into(), 403),
        ("POST /ib/%6cogin HTTP/1.1", FORM, "loginId=bob".into(), 403),
        ("POST /IB/LOGIN HTTP/1.1", FORM, "loginId=bob".into(), 403),
        (
            "POST /ib/x/../login HTTP/1.1",
            FORM,
            "loginId=bob".into(),
            403,
        ),
        ("POST /ib/login HTTP/1.1", FORM, "LOGINID=bob".into(), 403),
        ("POST /ib/login HTTP/1.1", FORM, "loginid=bob".into(), 403),
        ("POST /ib/login HTTP/1.1", FORM, "loginId=%62ob".into(), 403),
        ("POST /ib/login HTTP/1.1", FORM, "loginId[]=bob".into(), 403),
        // Names as Express's qs and body-parser read them: a leading bracket, a nested
        // field, a byte order mark before the first name (raw or encoded).
        ("POST /ib/login HTTP/1.1", FORM, "[loginId]=bob".into(), 403),
        (
            "POST /ib/login?%5BloginId%5D=bob HTTP/1.1",
            FORM,
            "pw=x".into(),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            FORM,
            "user[loginId]=bob".into(),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            FORM,
            "\u{feff}loginId=bob".into(),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            FORM,
            "%EF%BB%BFloginId=bob&loginId=alice".into(),
            403,
        ),
        // Under the login path: a servlet mapped to /ib/login/* or a suffix pattern.
        ("POST /ib/login/x HTTP/1.1", FORM, "loginId=bob".into(), 403),
        (
            "POST /ib/login.do HTTP/1.1",
            FORM,
            "loginId=bob".into(),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            FORM,
            "loginId=alice&loginId=bob".into(),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            FORM,
            "loginId=alice&loginId=alice".into(),
            403,
        ),
        (
            "POST /ib/login?loginId=bob HTTP/1.1",
            FORM,
            "loginId=alice".into(),
            403,
        ),
        (
            "POST /ib/login?LoginId=bob HTTP/1.1",
            "",
            String::new(),
            403,
        ),
        ("GET /ib/login?loginId=bob HTTP/1.1", "", String::new(), 403),
        ("PUT /ib/login HTTP/1.1", FORM, "loginId=bob".into(), 403),
        ("GET /ib/login HTTP/1.1", FORM, "loginId=bob".into(), 403),
        (
            "POST /ib/login HTTP/1.1",
            "Content-Type: application/json",
            r#"{"loginId":"bob"}"#.into(),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            "Content-Type: application/json; charset=utf-8",
            r#"{"user":{"LoginID":"bob"}}"#.into(),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            "Content-Type: application/json",
            r#"{"loginId":"alice","loginId":"bob"}"#.into(),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            mp_type,
            multipart("loginId", "bob"),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            mp_type,
            multipart("LOGINID", "bob"),
            403,
        ),
        // Django trims multipart field names.
        (
            "POST /ib/login HTTP/1.1",
            mp_type,
            multipart(" loginId\t", "bob"),
            403,
        ),
        (
            "POST /ib/login HTTP/1.1",
            FORM,
            "user.loginId=bob".into(),
            403,
        ),
        // Bodies the gateway cannot read are refused, not passed.
        (
            "POST /ib/login HTTP/1.1",
            "Content-Type: text/plain",
            "loginId=bob".into(),
            415,
        ),
        ("POST /ib/login HTTP/1.1", "", "loginId=bob".into(), 415),
        (
            "POST /ib/login HTTP/1.1",
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Encoding: gzip",
            "loginId=bob".into(),
            415,
        ),
        (
            "POST /ib/login HTTP/1.1",
            "Content-Type: application/json",
            r#"{"loginId":"bob""#.into(),
            415,
        ),
        (
            "POST /ib/login HTTP/1.1",
            "Content-Type: application/json; charset=utf-16",
            r#"{"loginId":"alice"}"#.into(),
            415,
        ),
        (
            "POST /ib/login HTTP/1.1",
            mp_type,
            format!("junk\r\n{}", multipart("loginId", "bob")),
            415,
        ),
        ("POST /ib/login HTTP/1.1", FORM, big, 413),
    ];
    for (head, header, body, want) in &attempts {
        let head = if header.is_empty() {
            (*head).to_owned()
        } else {
            format!("{head}\r\n{header}")
        };
        let (status, text) = edge.send(true, &head, body).await;
        assert_eq!(status, *want, "{head} {body}: {text}");
    }
    let hits = edge.app.hits();
    assert!(hits.is_empty(), "the app saw a login: {hits:?}");

    // Alice as alice passes, unchanged, in each form.
    for (head, header, body) in [
        (
            "POST /ib/login HTTP/1.1",
            FORM,
            "loginId=alice&pw=x".to_owned(),
        ),
        ("GET /ib/login?loginId=alice HTTP/1.1", "", String::new()),
        (
            "POST /ib/login HTTP/1.1",
            "Content-Type: application/json",
            r#"{"loginId":"alice","pw":"x"}"#.to_owned(),
        ),
        (
            "POST /ib/login HTTP/1.1",
            mp_type,
            multipart("loginId", "alice"),
        ),
    ] {
        let head = if header.is_empty() {
            head.to_owned()
        } else {
            format!("{head}\r\n{header}")
        };
        let (status, text) = edge.send(true, &head, &body).await;
        assert_eq!(status, 200, "{head}: {text}");
        assert_eq!(edge.app.hits().last().unwrap().body, body);
    }
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_certificate_headers_from_clients_never_reach_the_app() {
    let edge = Edge::start().await;
    let spoofed = [
        "X-Original-URL: /ib/admin",
        "X-Rewrite-URL: /ib/admin",
        "X-Original-URI: /ib/admin",
        "X-SSL-Client-Cert: -----BEGIN%20CERTIFICATE-----",
        "X-SSL-Client-Verify: SUCCESS",
        "X-SSL-Client-S-DN: CN=bob",
        "X_SSL_Client_Verify: SUCCESS",
        "SSL_CLIENT_CERT: x",
        "X-Client-Verify: SUCCESS",
        "X-Client-Cert: x",
        "X-Client-DN: CN=bob",
        "X-Amzn-Mtls-Clientcert: x",
        "X-Amzn-Mtls-Clientcert-Subject: CN=bob",
        "X-ARR-ClientCert: x",
        "X-Legacy-User: bob",
        "X-Sso-Role: admin",
        "x_sso_user: bob",
    ];
    let head = format!("GET /ib/top HTTP/1.1\r\n{}", spoofed.join("\r\n"));
    let (status, text) = edge.send(true, &head, "").await;
    assert_eq!(status, 200, "{text}");
    // And on the public route the same (the route's own list aside).
    let head = format!("GET /public/x HTTP/1.1\r\n{}", spoofed.join("\r\n"));
    let (status, _) = edge.send(false, &head, "").await;
    assert_eq!(status, 200);
    let hits = edge.app.hits();
    assert_eq!(hits.len(), 2);
    for (i, hit) in hits.iter().enumerate() {
        for (k, v) in &hit.headers {
            let n = k.to_ascii_lowercase().replace('_', "-");
            let spoofable = n.starts_with("x-original-")
                || n.starts_with("x-rewrite-")
                || n.starts_with("x-ssl-")
                || n.starts_with("ssl-client-")
                || n.starts_with("x-client-")
                || n.starts_with("x-amzn-mtls-")
                || n == "x-arr-clientcert";
            assert!(!spoofable, "{k}: {v} reached the app");
            if i == 0 {
                assert!(
                    !n.starts_with("x-legacy-") && !n.starts_with("x-sso-"),
                    "{k}"
                );
            }
        }
        assert!(hit.headers.iter().all(|(_, v)| !v.contains("bob")) || i == 1);
    }
    // The public route does not carry the /ib route's extra list.
    assert!(hits[1].headers.iter().any(|(k, _)| k == "x-legacy-user"));
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_spellings_over_http2_are_refused_alike() {
    let edge = Edge::start().await;
    let cfg =
        |cert: bool| client::config(&edge.server_ca.der, cert.then_some(&edge.alice), &[b"h2"]);
    let mut anon = client::Conn::h2(edge.addr, cfg(false)).await.unwrap();
    for (path, want) in [
        ("/public/..;/ib/top", 400),
        ("//ib/top", 400),
        ("/ib;x/top", 400),
        ("/public/..%2Fib/top", 400),
        ("/public/%252e%252e/ib/top", 400),
        ("/IB/top", 401),
        ("/%69b/top", 401),
        ("/public/%2e%2e/ib/top", 401),
    ] {
        let a = anon.get(path).await.unwrap();
        assert_eq!(a.status.as_u16(), want, "{path}: {}", a.body);
    }
    assert!(edge.app.hits().is_empty(), "{:?}", edge.app.hits());
    let mut alice = client::Conn::h2(edge.addr, cfg(true)).await.unwrap();
    let a = alice
        .send(
            "POST",
            "/IB/%6Cogin/",
            &[("content-type", "application/json")],
            r#"{"LOGINID":"bob"}"#,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 403);
    let a = alice.get("/%69b/./top").await.unwrap();
    assert_eq!(a.status, 200);
    let hits = edge.app.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].target, "/ib/top");
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_the_certificate_is_not_for_never_reaches_the_app() {
    let edge = Edge::start().await;
    for cert in [false, true] {
        for (host, want, code) in [
            ("evil.example", 421, Some("misdirected_request")),
            ("127.0.0.2", 421, Some("misdirected_request")),
            ("[::1]", 421, Some("misdirected_request")),
            ("localhost.evil.example", 421, Some("misdirected_request")),
            ("localhost:0", 400, Some("host_refused")),
            ("localhost:99999", 400, Some("host_refused")),
            ("localhost", 200, None),
            ("LOCALHOST.:8443", 200, None),
            ("127.0.0.1:8443", 200, None),
        ] {
            let before = edge.app.hits().len();
            let (status, text) = edge
                .send_raw_without_sni(
                    cert,
                    &format!("GET /public/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
                )
                .await;
            assert_eq!(status, want, "{host:?}: {text}");
            match code {
                Some(code) => {
                    assert!(
                        text.contains(&format!("\"error\":\"{code}\"")),
                        "{host:?}: {text}"
                    );
                    assert_eq!(edge.app.hits().len(), before, "{host:?} reached the app");
                }
                None => assert_eq!(edge.app.hits().len(), before + 1, "{host:?}"),
            }
        }
    }
    edge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_echoes_and_ambiguous_hosts_are_refused_before_the_app() {
    let edge = Edge::start().await;
    let refused = [
        (
            "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22",
            405,
            "method_refused",
        ),
        (
            "TRACE /ib/top HTTP/1.1\r\nHost: localhost",
            405,
            "method_refused",
        ),
        (
            "TRACK /public/x HTTP/1.1\r\nHost: localhost",
            405,
            "method_refused",
        ),
        ("GET /public/x HTTP/1.1", 400, "host_refused"),
        ("GET /public/x HTTP/1.1\r\nHost:", 400, "host_refused"),
        (
            "GET /public/x HTTP/1.1\r\nHost: localhost\r\nHost: other.example",
            400,
            "host_refused",
        ),
        (
            "GET /public/x HTTP/1.1\r\nHost: localhost\r\nhost: localhost",
            400,
            "host_refused",
        ),
        (
            "GET /public/x HTTP/1.1\r\nHost: alice@localhost",
            400,
            "host_refused",
        ),
        (
            "GET /public/x HTTP/1.1\r\nHost: localhost/ib",
            400,
            "host_refused",
        ),
        (
            "GET /public/x HTTP/1.1\r\nHost: localhost, other.example",
            400,
            "host_refused",
        ),
        (
            "GET /public/x HTTP/1.1\r\nHost: localhost:8443:1",
            400,
            "host_refused",
        ),
        (
            "GET https://other.example/ib/top HTTP/1.1\r\nHost: localhost",
            400,
            "host_refused",
        ),
        (
            "GET http://localhost:80/public/x HTTP/1.1\r\nHost: localhost",
            400,
            "host_refused",
        ),
    ];
    for (head, want, code) in refused {
        for cert in [false, true] {
            let (status, text) = edge
                .send_raw(cert, &format!("{head}\r\nConnection: close\r\n\r\n"))
                .await;
            assert_eq!(status, want, "{head:?}: {text}");
            assert!(
                text.contains(&format!("\"error\":\"{code}\"")),
                "{head:?}: {text}"
            );
            if want == 405 {
                let allow = text
                    .lines()
                    .find_map(|l| {
                        l.split_once(": ")
                            .filter(|(k, _)| k.eq_ignore_ascii_case("allow"))
                    })
                    .map(|(_, v)| v)
                    .unwrap_or_default();
                assert!(allow.contains("GET") && !allow.contains("TRACE"), "{text}");
            }
        }
    }
    assert!(edge.app.hits().is_empty(), "{:?}", edge.app.hits());
    // What a strict reading still lets through: HTTP/1.0 without a host, an absolute-form
    // target naming the Host's own host, a method the gateway does not know.
    for (request, target) in [
        ("GET /public/a HTTP/1.0\r\n\r\n", "/public/a"),
        (
            "GET https://LOCALHOST/public/b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            "/public/b",
        ),
        (
            "PROPFIND /public/c HTTP/1.1\r\nHost: localhost:443\r\nConnection: close\r\n\r\n",
            "/public/c",
        ),
    ] {
        let (status, text) = edge.send_raw(false, request).await;
        assert_eq!(status, 200, "{request:?}: {text}");
        assert_eq!(
            edge.app.hits().last().map(|h| h.target.clone()),
            Some(target.to_string())
        );
    }
    // HTTP/2: the same methods, and a `host` beside `:authority` that names another server.
    let cfg = client::config(&edge.server_ca.der, Some(&edge.alice), &[b"h2"]);
    let mut h2 = client::Conn::h2(edge.addr, cfg).await.unwrap();
    for method in ["TRACE", "TRACK"] {
        let a = h2.send(method, "/ib/top", &[], "").await.unwrap();
        assert_eq!(a.status, 405, "{method}: {}", a.body);
        assert!(a.headers.contains_key("allow"));
    }
    let a = h2
        .send("GET", "/ib/top", &[("host", "other.example")], "")
        .await
        .unwrap();
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"], "host_refused");
    let a = h2
        .send("GET", "/ib/top", &[("host", "LocalHost")], "")
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let hits = edge.app.hits();
    assert_eq!(hits.len(), 4, "{hits:?}");
    assert_eq!(hits[3].target, "/ib/top");
    edge.shutdown().await;
}
