//! Hostile clients against the gateway, in-process over real TLS with a real SQLite store:
//! request smuggling, identity spoofing in headers and trailers, slow clients, junk on the
//! TLS port, oversized heads and bodies, load shedding past `max_connections`; and the fuzz
//! corpus replayed through the fuzz checks. Each case checks the refusal, that the gateway
//! keeps serving others, and what the app behind it saw (a recording upstream).

#[path = "support/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "../fuzz/src/lib.rs"]
mod fuzz_checks;
#[path = "support/gateway/mod.rs"]
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use certgate::app::{Server, ServerDeps};
use certgate::clock::{DAY, SystemClock};
use certgate::proxy::NoLocalService;
use certgate::store::{CertRecord, CertStatus, Contract, Role, Store, User};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use support::client::{self, Conn};
use support::now;
use support::pki::{ClientCert, TestCa};

/// What the app behind the gateway received in one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    trailers: Vec<(String, String)>,
    body_len: usize,
}

/// An app that records every request it gets, trailers included.
#[derive(Clone)]
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().to_string();
                            let headers = pairs(req.headers());
                            let collected = req.into_body().collect().await;
                            let (body_len, trailers) = match collected {
                                Ok(c) => {
                                    let t = c.trailers().map(pairs).unwrap_or_default();
                                    (c.to_bytes().len(), t)
                                }
                                // A body cut off by the gateway still counts as a hit.
                                Err(_) => (usize::MAX, Vec::new()),
                            };
                            log.lock().unwrap().push(Seen {
                                method,
                                path,
                                headers,
                                trailers,
                                body_len,
                            });
                            Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(
                                "app",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn pairs(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// A gateway with one `optional` listener whose limits the test chooses.
struct Gw {
    _dir: tempfile::TempDir,
    _db: db::TestDb,
    server_ca: TestCa,
    app: Recorder,
    addr: SocketAddr,
    admin: SocketAddr,
    alice: ClientCert,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Gw {
    /// `listener` is extra `[[listener]]` keys, e.g. `max_connections = 20`.
    async fn start(listener: &str) -> Self {
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
        store
            .insert_user(&User {
                login: "alice".into(),
                contract_id: "c1".into(),
                role: Role::General,
                email: "alice@example.com".into(),
                enabled: true,
                created_at: t,
            })
            .await
            .unwrap();
        let alice = ca.client("alice", "c1", t - 60, t + 365 * DAY);
        register(&store, ca_id, &alice, "alice").await;
        let (cert_pem, key_pem, _) = server_ca.server();
        std::fs::write(dir.path().join("server.pem"), cert_pem).unwrap();
        std::fs::write(dir.path().join("server.key"), key_pem).unwrap();
        let app = Recorder::start().await;
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
{listener}

[[route]]
prefix = "/"
upstream = "http://{app}"
auth = "certificate"
max_body_bytes = 1000

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
        let admin = gateway.admin_addr().unwrap();
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
            admin,
            alice,
            stop: Some(tx),
            task: Some(task),
        }
    }

    fn tls_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        client::config(&self.server_ca.der, Some(&self.alice), alpn)
    }

    /// A TLS connection with alice's certificate, HTTP/1.1 by ALPN.
    async fn raw(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        client::tls(self.addr, self.tls_config(&[b"http/1.1"]))
            .await
            .unwrap()
    }

    /// A fresh request as alice: the gateway still serves (status of `GET path`).
    async fn alice_gets(&self, path: &str) -> u16 {
        let mut c = Conn::h1(self.addr, self.tls_config(&[b"http/1.1"]))
            .await
            .unwrap();
        c.get(path).await.unwrap().status.as_u16()
    }

    async fn metrics(&self) -> String {
        let mut s = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
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

/// Writes `bytes` and reads until the gateway closes (or 15 s pass): what came back.
async fn exchange<S>(stream: &mut S, bytes: &[u8]) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    read_until_closed(stream).await
}

async fn read_until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the gateway kept the connection open; so far: {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn status_lines(resp: &str) -> Vec<&str> {
    resp.lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_never_reach_the_app_as_a_second_request() {
    let gw = Gw::start("").await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // Framing the gateway refuses outright: 400, connection closed, the app sees nothing.
    let refused = [
        // Two different lengths.
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nContent-Length: 45\r\n\r\n{smuggled}"
        ),
        // A length that is not a number.
        format!("POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: +45\r\n\r\n{smuggled}"),
        format!("POST /a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0, 45\r\n\r\n{smuggled}"),
        // Transfer codings that do not end in chunked.
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // A space before the colon, and an obsolete line fold hiding the header.
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // Transfer-Encoding in HTTP/1.0.
        format!(
            "POST /a HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        // A bad chunk size.
        format!(
            "POST /a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n{smuggled}"
        ),
    ];
    for attempt in &refused {
        let mut s = gw.raw().await;
        let resp = exchange(&mut s, attempt.as_bytes()).await;
        let lines = status_lines(&resp);
        assert!(
            lines.iter().all(|l| l.starts_with("HTTP/1.1 400")),
            "{attempt:?} answered {resp}"
        );
        assert!(lines.len() <= 1, "a second answer came back: {resp}");
    }
    // The chunked body was refused: some refusals happen once the app already has the head,
    // but the app must never have seen a second, smuggled request.
    let seen = gw.app.seen();
    assert!(
        seen.iter().all(|s| !s.path.contains("smuggled")),
        "{seen:?}"
    );

    // Content-Length and chunked together: RFC 9112 §6.1 — chunked wins, the length is
    // dropped and the connection closes after the answer, so the bytes after the empty
    // chunked body are never read as a request.
    let before = gw.app.seen().len();
    for order in [
        format!(
            "POST /cl-te HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /te-cl HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggled}"
        ),
    ] {
        let mut s = gw.raw().await;
        let resp = exchange(&mut s, order.as_bytes()).await;
        assert_eq!(status_lines(&resp).len(), 1, "{resp}");
    }
    let seen = gw.app.seen();
    let new: Vec<&Seen> = seen[before..].iter().collect();
    assert!(new.len() <= 2, "{new:?}");
    for s in &new {
        assert!(s.path == "/cl-te" || s.path == "/te-cl", "{s:?}");
        assert_eq!(s.method, "POST");
        assert_eq!(s.body_len, 0, "{s:?}");
        assert!(
            !s.headers.iter().any(|(k, _)| k == "content-length"),
            "the app got both framings: {s:?}"
        );
    }
    assert!(seen.iter().all(|s| !s.path.contains("smuggled")));
    assert_eq!(gw.alice_gets("/after").await, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_in_headers_and_trailers_never_reaches_the_app() {
    let gw = Gw::start("").await;
    let mut s = gw.raw().await;
    let req = "POST /spoof HTTP/1.1\r\nHost: localhost\r\n\
        X-Certgate-User: mallory\r\nx_certgate_user: mallory\r\nX-CERTGATE-ROLE: admin\r\n\
        X-Certgate-User: mallory2\r\nx-certgate_contract: other\r\nX-Forwarded-For: 10.0.0.1\r\n\
        Forwarded: for=10.0.0.1\r\nClient-Cert: :AAAA:\r\nx-real-ip: 10.0.0.1\r\n\
        X-Certgate-Assertion: e30.e30.x\r\nRemote-User: mallory\r\nSM_USER: mallory\r\n\
        X-Auth-Request-User: mallory\r\nX-Amzn-Oidc-Identity: mallory\r\nProxy: http://mallory\r\n\
        Trailer: X-Certgate-User, X-Certgate-Role\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
        3\r\nabc\r\n0\r\nX-Certgate-User: mallory\r\nX-Certgate-Role: admin\r\n\r\n";
    let resp = exchange(&mut s, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = gw.app.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let got = &seen[0];
    let users: Vec<&str> = got
        .headers
        .iter()
        .filter(|(k, _)| k == "x-certgate-user")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(users, ["alice"], "{got:?}");
    let role: Vec<&str> = got
        .headers
        .iter()
        .filter(|(k, _)| k == "x-certgate-role")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(role, ["general"], "{got:?}");
    for (k, v) in &got.headers {
        let n = k.replace('_', "-");
        assert!(
            !v.contains("mallory") && !v.contains("10.0.0.1:"),
            "{k}: {v}"
        );
        assert!(
            !(n.starts_with("x-certgate-") && v == "other"),
            "spoofed contract: {got:?}"
        );
        assert!(
            n != "client-cert" && n != "x-real-ip" && n != "x-certgate-assertion" && n != "proxy",
            "{k} passed"
        );
    }
    assert!(
        got.trailers.is_empty(),
        "trailers reached the app: {:?}",
        got.trailers
    );
    assert_eq!(got.body_len, 3);

    // The same over HTTP/2, where names arrive lower-cased.
    let mut h2 = Conn::h2(gw.addr, gw.tls_config(&[b"h2"])).await.unwrap();
    let a = h2
        .send(
            "GET",
            "/spoof-h2",
            &[
                ("x-certgate-user", "mallory"),
                ("x_certgate_user", "mallory"),
            ],
            "",
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let seen = gw.app.seen();
    let got = seen.last().unwrap();
    assert!(
        got.headers
            .iter()
            .all(|(k, v)| !(k.replace('_', "-") == "x-certgate-user" && v != "alice")),
        "{got:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_others_are_served_meanwhile() {
    let gw = Gw::start("header_read_timeout_secs = 2\nhandshake_timeout_secs = 2").await;
    // Slowloris: 30 connections each sending a head one byte at a time, never finishing.
    let mut slow = Vec::new();
    for i in 0..30 {
        let mut s = gw.raw().await;
        slow.push(tokio::spawn(async move {
            let head = format!("GET /slow{i} HTTP/1.1\r\nHost: localhost\r\nX-Pad: ");
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.flush().await;
            // Dribble until the gateway closes; give up (fail) after 60 s.
            for _ in 0..120 {
                if s.write_all(b"a").await.is_err() || s.flush().await.is_err() {
                    return true;
                }
                let mut b = [0u8; 512];
                match tokio::time::timeout(Duration::from_millis(500), s.read(&mut b)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return true,
                    // A 408 answer, then the close.
                    Ok(Ok(_)) => {}
                    Err(_) => {}
                }
            }
            false
        }));
    }
    // Clients that never even finish the handshake: the TCP connection is simply held.
    let mut idle_tcp = Vec::new();
    for _ in 0..10 {
        idle_tcp.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    // Meanwhile alice is served.
    assert_eq!(gw.alice_gets("/while-slow").await, 200);
    for t in slow {
        assert!(t.await.unwrap(), "a slow client was never cut off");
    }
    for mut t in idle_tcp {
        let got = read_until_closed(&mut t).await;
        assert!(got.is_empty(), "{got}");
    }
    let seen = gw.app.seen();
    assert!(
        seen.iter().all(|s| !s.path.starts_with("/slow")),
        "{seen:?}"
    );
    assert_eq!(gw.alice_gets("/after-slow").await, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_the_tls_port_is_dropped_and_the_gateway_keeps_serving() {
    let gw = Gw::start("handshake_timeout_secs = 2").await;
    let mut random = [0u8; 4096];
    aws_lc_rs::rand::fill(&mut random).unwrap();
    // A TLS record header announcing a huge ClientHello, then garbage.
    let mut fake_hello = vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00, 0xff, 0xfb];
    fake_hello.extend_from_slice(&random[..512]);
    let attempts: Vec<Vec<u8>> = vec![
        random.to_vec(),
        b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Certgate-User: mallory\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        fake_hello,
        vec![0u8; 100_000],
        vec![0x16, 0x03, 0x01],
    ];
    for junk in &attempts {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let got = exchange(&mut s, junk).await;
        // At most a TLS alert comes back, never HTTP.
        assert!(!got.contains("HTTP/"), "{got}");
    }
    assert!(gw.app.seen().is_empty());
    let m = gw.metrics().await;
    let failures: f64 = m
        .lines()
        .filter(|l| l.starts_with("certgate_handshake_failures_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(failures >= attempts.len() as f64, "{m}");
    assert_eq!(gw.alice_gets("/after-junk").await, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_and_bodies_are_refused_before_the_app() {
    let gw = Gw::start("max_header_bytes = 8192").await;
    // One long header, and many small ones.
    let long = format!(
        "GET /big HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let many: String = (0..2000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /many HTTP/1.1\r\nHost: localhost\r\n{many}\r\n");
    for req in [long, many] {
        let mut s = gw.raw().await;
        let resp = exchange(&mut s, req.as_bytes()).await;
        // 431, or the connection closed before an answer could be read.
        assert!(
            resp.is_empty() || resp.starts_with("HTTP/1.1 431"),
            "{resp}"
        );
    }
    // A declared body over the route's max_body_bytes (1000): 413 before the app.
    let mut s = gw.raw().await;
    let body = "x".repeat(5000);
    let req = format!(
        "POST /body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n{body}"
    );
    let resp = exchange(&mut s, req.as_bytes()).await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 413"),
        "{resp}"
    );
    assert!(gw.app.seen().is_empty(), "{:?}", gw.app.seen());
    // A chunked body over the limit: cut off; the app never gets a complete body.
    let mut s = gw.raw().await;
    let chunk = format!("{:x}\r\n{}\r\n", 600, "y".repeat(600));
    let req = format!(
        "POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}{chunk}{chunk}0\r\n\r\n"
    );
    let resp = exchange(&mut s, req.as_bytes()).await;
    assert!(!resp.starts_with("HTTP/1.1 200"), "{resp}");
    for seen in gw.app.seen() {
        assert!(
            seen.body_len <= 1000 || seen.body_len == usize::MAX,
            "{seen:?}"
        );
    }
    assert_eq!(gw.alice_gets("/after-big").await, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_clients_get_503_and_the_gateway_recovers() {
    let gw = Gw::start("max_connections = 20").await;
    // Twenty idle, established connections fill the listener.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(gw.raw().await);
    }
    // Make sure each of them counts (the gateway has accepted and handshaken all).
    for s in held.iter_mut() {
        s.write_all(b"GET /held HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut b = [0u8; 1024];
        let n = s.read(&mut b).await.unwrap();
        assert!(b[..n].starts_with(b"HTTP/1.1 200"));
    }
    // More clients are shed with a clear 503, not left hanging or reset.
    for _ in 0..5 {
        let mut s = tokio::time::timeout(Duration::from_secs(15), gw.raw())
            .await
            .expect("a client past max_connections waited for a handshake");
        let resp = exchange(
            &mut s,
            b"GET /extra HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n",
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
        assert!(
            resp.to_ascii_lowercase().contains("retry-after: 5"),
            "{resp}"
        );
        assert!(resp.contains("\"overloaded\""), "{resp}");
    }
    assert!(gw.app.seen().iter().all(|s| s.path != "/extra"));
    // Once the held connections go, new clients are served again.
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = gw.alice_gets("/after-overload").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.shutdown().await;
}

/// The committed fuzz corpus through the same checks the fuzz targets run, so every test
/// run replays it even where cargo-fuzz is not installed.
#[test]
fn fuzz_corpus_replays_without_findings() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 5] = [
        ("csr", fuzz_checks::csr),
        ("est_body", fuzz_checks::est_body),
        ("ocsp_request", fuzz_checks::ocsp_request),
        ("identity_headers", fuzz_checks::identity_headers),
        ("canonical_path", fuzz_checks::canonical_path),
    ];
    for (name, check) in targets {
        let dir = root.join(name);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            check(&data);
            // Cheap mutations of each seed too: truncations and single bit flips.
            for cut in [0, 1, data.len() / 2, data.len().saturating_sub(1)] {
                check(&data[..cut.min(data.len())]);
            }
            for i in (0..data.len()).step_by(7) {
                let mut m = data.clone();
                m[i] ^= 1 << (i % 8);
                check(&m);
            }
            n += 1;
        }
        assert!(n >= 2, "the {name} corpus is nearly empty");
    }
    // The seeds exercise what they are named for.
    let csr = |f: &str| std::fs::read(root.join("csr").join(f)).unwrap();
    assert!(certgate::ca::csr::check(&csr("ec.der")).is_ok());
    assert!(certgate::ca::csr::check(&csr("p384.der")).is_ok());
    assert!(certgate::ca::csr::check(&csr("rsa2048_odd_ext.der")).is_ok());
    use certgate::ca::CsrError;
    assert_eq!(
        certgate::ca::csr::check(&csr("ec_badsig.der")),
        Err(CsrError::BadSignature)
    );
    assert!(matches!(
        certgate::ca::csr::check(&csr("rsa1024.der")),
        Err(CsrError::WeakKey(1024))
    ));
    for f in ["ed25519.der", "secp256k1.der"] {
        assert!(
            matches!(
                certgate::ca::csr::check(&csr(f)),
                Err(CsrError::UnsupportedKey(_))
            ),
            "{f}"
        );
    }
    // The path seeds hold both canonical paths and the refused spellings.
    let path = |f: &str| std::fs::read_to_string(root.join("canonical_path").join(f)).unwrap();
    use certgate::proxy::canonical::canonicalize;
    assert!(canonicalize(&path("seed01")).is_ok_and(|c| c.is_unchanged()));
    assert!(canonicalize(&path("seed02")).is_err());
    assert_eq!(canonicalize(&path("seed06")).unwrap().path(), "/ib/top");
    let ocsp = |f: &str| std::fs::read(root.join("ocsp_request").join(f)).unwrap();
    assert!(certgate::ca::ocsp::parse_request(&ocsp("one.der")).is_ok());
    assert!(certgate::ca::ocsp::parse_request(&ocsp("one_nonce.der")).is_ok());
    assert_eq!(
        certgate::ca::ocsp::parse_request(&ocsp("nine.der")).unwrap_err(),
        certgate::ca::ocsp::OcspRequestError::BadCount
    );
}
