//! The gateway's connections to the apps (`[route.pool]`, `upstream_http2`), watched from the
//! app's side: real apps on loopback (plain, h2c and TLS with ALPN) that count the
//! connections they accepted, those still open, and the HTTP version of each request.

#[path = "support/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "support/gateway/mod.rs"]
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use support::Harness;
use support::client::Conn;
use support::pki::TestCa;

/// What an app saw.
#[derive(Default)]
struct Seen {
    accepted: AtomicUsize,
    open: AtomicUsize,
    versions: Mutex<Vec<String>>,
}

/// An app speaking HTTP/1.1 and HTTP/2 (prior knowledge in plain, ALPN over TLS). Each
/// request waits until `hold` requests have arrived, so that they are in flight together.
struct App {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl App {
    async fn start(tls: Option<(&str, &str)>, hold: usize) -> Self {
        let acceptor = tls.map(|(cert, key)| {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .unwrap();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            TlsAcceptor::from(Arc::new(config))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let arrived = Arc::new(watch::Sender::new(0usize));
        let s = seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                s.open.fetch_add(1, Ordering::SeqCst);
                let (s, arrived, acceptor) = (s.clone(), arrived.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let in_svc = s.clone();
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let version = format!("{:?}", req.version());
                        s_push(&in_svc, &version);
                        arrived.send_modify(|n| *n += 1);
                        let mut rx = arrived.subscribe();
                        async move {
                            let _ = rx.wait_for(|n| *n >= hold).await;
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(version))))
                        }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = match acceptor {
                        Some(a) => match a.accept(tcp).await {
                            Ok(tls) => builder.serve_connection(TokioIo::new(tls), svc).await,
                            Err(_) => Ok(()),
                        },
                        None => builder.serve_connection(TokioIo::new(tcp), svc).await,
                    };
                    s.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, seen }
    }

    fn accepted(&self) -> usize {
        self.seen.accepted.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.seen.open.load(Ordering::SeqCst)
    }

    fn versions(&self) -> Vec<String> {
        self.seen.versions.lock().unwrap().clone()
    }
}

fn s_push(s: &Seen, version: &str) {
    s.versions.lock().unwrap().push(version.to_string());
}

/// The gateway's worker threads (the test configuration leaves the default: one per CPU).
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Waits (up to 15 s) until `cond` holds; false if it never did.
async fn eventually(cond: impl Fn() -> bool) -> bool {
    for _ in 0..150 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cond()
}

/// `n` GETs of `path` at once, each on a client connection of its own; every one answered 200.
async fn concurrent_gets(h: &Harness, path: &str, n: usize) -> Vec<String> {
    let mut conns: Vec<Conn> = Vec::new();
    for _ in 0..n {
        conns.push(h.h1(None).await);
    }
    let answers = futures_util::future::join_all(conns.iter_mut().map(|c| c.get(path))).await;
    answers
        .into_iter()
        .map(|a| {
            let a = a.unwrap();
            assert_eq!(a.status, 200, "{}", a.body);
            a.body
        })
        .collect()
}

/// `upstream_http2 = true`: the app sees HTTP/2, over TLS (ALPN h2) and in plain text (h2c),
/// and concurrent requests share one connection per worker thread; the same TLS app on a
/// route without it sees HTTP/1.1. An app that does not choose h2 in ALPN gets no request:
/// 502, counted with reason `protocol`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstreams_get_http2_on_one_connection_per_worker() {
    let h = Harness::sqlite().await;
    let app_ca = TestCa::new("Bank App CA");
    let (cert, key, _) = app_ca.server();
    let n = workers() + 6;
    let tls_app = App::start(Some((&cert, &key)), 1).await;
    let h2c_app = App::start(None, n).await;
    let h1_only = support::tls_app::TlsApp::start(&cert, &key, None).await;
    std::fs::write(h.dir.path().join("app-ca.pem"), &app_ca.pem).unwrap();
    let routes = format!(
        r#"
[[route]]
prefix = "/h2tls"
upstream = "https://localhost:{tls}"
auth = "public"
upstream_http2 = true
[route.upstream_tls]
ca_file = "app-ca.pem"

[[route]]
prefix = "/h1tls"
upstream = "https://localhost:{tls}"
auth = "public"
[route.upstream_tls]
ca_file = "app-ca.pem"

[[route]]
prefix = "/h2c"
upstream = "http://127.0.0.1:{h2c}"
auth = "public"
upstream_http2 = true

[[route]]
prefix = "/h2c-to-h1-only"
upstream = "{echo}"
auth = "public"
upstream_http2 = true

[[route]]
prefix = "/h2-to-h1-only"
upstream = "https://localhost:{h1}"
auth = "public"
upstream_http2 = true
[route.upstream_tls]
ca_file = "app-ca.pem"
"#,
        tls = tls_app.addr.port(),
        h2c = h2c_app.addr.port(),
        h1 = h1_only.addr.port(),
        echo = h.upstream.url(),
    );
    h.add_routes(&routes, "/h2tls/ready", |s| s == 200).await;

    let mut conn = h.h1(None).await;
    assert_eq!(conn.get("/h2tls/a").await.unwrap().body, "HTTP/2.0");
    assert_eq!(conn.get("/h1tls/a").await.unwrap().body, "HTTP/1.1");
    assert!(tls_app.versions().contains(&"HTTP/2.0".to_string()));

    // The h2c app holds every request until all n arrived: they are in flight together,
    // yet share at most one connection per worker thread.
    let bodies = concurrent_gets(&h, "/h2c/x", n).await;
    assert!(bodies.iter().all(|b| b == "HTTP/2.0"), "{bodies:?}");
    assert_eq!(h2c_app.versions().len(), n);
    let accepted = h2c_app.accepted();
    assert!(
        (1..=workers()).contains(&accepted),
        "{n} concurrent requests took {accepted} connections"
    );

    let seen = h1_only.requests();
    assert_eq!(conn.get("/h2-to-h1-only/a").await.unwrap().status, 502);
    assert_eq!(
        h1_only.requests(),
        seen,
        "a request reached an app that declined h2"
    );
    let protocol = h
        .metric("certgate_upstream_failures_total{route=\"/h2-to-h1-only\",reason=\"protocol\"}")
        .await;
    assert!(protocol >= 1.0, "{protocol}");

    // Prior knowledge to an app that speaks only HTTP/1.1: a 502, never a hang.
    assert_eq!(conn.get("/h2c-to-h1-only/a").await.unwrap().status, 502);
    let exchange = h
        .metric("certgate_upstream_failures_total{route=\"/h2c-to-h1-only\",reason=\"exchange\"}")
        .await;
    assert!(exchange >= 1.0, "{exchange}");
    h.shutdown().await;
}

/// `[route.pool] idle_timeout_secs`: an idle connection to the app is closed by the sweep
/// after the timeout, with no request needed to notice it; a route with the default
/// timeout keeps its connection meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_are_closed_after_the_idle_timeout() {
    let h = Harness::sqlite().await;
    let short = App::start(None, 1).await;
    let long = App::start(None, 1).await;
    let routes = format!(
        r#"
[[route]]
prefix = "/short"
upstream = "http://127.0.0.1:{short}"
auth = "public"
[route.pool]
idle_timeout_secs = 1

[[route]]
prefix = "/long"
upstream = "http://127.0.0.1:{long}"
auth = "public"
"#,
        short = short.addr.port(),
        long = long.addr.port(),
    );
    h.add_routes(&routes, "/long/ready", |s| s == 200).await;
    let mut conn = h.h1(None).await;
    assert_eq!(conn.get("/short/a").await.unwrap().status, 200);
    assert_eq!(conn.get("/long/a").await.unwrap().status, 200);
    assert!(short.accepted() >= 1);

    assert!(
        eventually(|| short.open() == 0).await,
        "{} idle connections still open past the 1 s idle timeout",
        short.open()
    );
    assert!(
        long.open() >= 1,
        "the default 50 s timeout closed a connection early"
    );
    // The next request takes a new connection.
    let before = short.accepted();
    assert_eq!(conn.get("/short/b").await.unwrap().status, 200);
    assert_eq!(short.accepted(), before + 1);
    h.shutdown().await;
}

/// `[route.pool] max_idle_per_worker`: after a burst of concurrent requests, each on its
/// own connection to the app, only that many per worker thread stay open; the default
/// keeps them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_connections_are_bounded_per_worker() {
    let h = Harness::sqlite().await;
    let n = workers() + 6;
    let bounded = App::start(None, n).await;
    let unbounded = App::start(None, n).await;
    let routes = format!(
        r#"
[[route]]
prefix = "/bounded"
upstream = "http://127.0.0.1:{b}"
auth = "public"
[route.pool]
max_idle_per_worker = 1

[[route]]
prefix = "/unbounded"
upstream = "http://127.0.0.1:{u}"
auth = "public"

[[route]]
prefix = "/ready"
upstream = "{echo}"
auth = "public"
"#,
        b = bounded.addr.port(),
        u = unbounded.addr.port(),
        echo = h.upstream.url(),
    );
    // The readiness probe goes to the echo app: these apps hold requests until n arrived.
    h.add_routes(&routes, "/ready/x", |s| s == 200).await;

    concurrent_gets(&h, "/unbounded/x", n).await;
    assert_eq!(unbounded.accepted(), n, "the burst was not concurrent");
    concurrent_gets(&h, "/bounded/x", n).await;
    assert_eq!(bounded.accepted(), n, "the burst was not concurrent");
    assert!(
        eventually(|| bounded.open() <= workers()).await,
        "{} idle connections open, bound {} per worker",
        bounded.open(),
        1
    );
    assert_eq!(
        unbounded.open(),
        n,
        "the default bound of 64 closed connections"
    );
    h.shutdown().await;
}
