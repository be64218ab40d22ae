//! What the gateway passes between a client and an app besides the request line and the
//! identity: trailers, transfer codings, lengths, cookies and the request ID, each in the
//! one form every reader understands alike. Real apps on loopback: one that records what it
//! received (HTTP/1.1 and h2c), and one that answers with hand-written, badly framed bytes.

#[path = "support/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "support/gateway/mod.rs"]
#[allow(dead_code)]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::Harness;
use support::client;

/// One request as the recording app received it.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    trailers: Option<Vec<(String, String)>>,
}

impl Received {
    fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// An app speaking HTTP/1.1 and h2c (prior knowledge) that keeps every request it got.
struct RecordingApp {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Received>>>,
}

impl RecordingApp {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let keep = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let keep = Arc::clone(&keep);
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let keep = Arc::clone(&keep);
                        async move {
                            let (parts, body) = req.into_parts();
                            let collected = body.collect().await?;
                            let trailers = collected.trailers().map(pairs);
                            keep.lock().unwrap().push(Received {
                                path: parts.uri.path().to_owned(),
                                headers: pairs(&parts.headers),
                                body: String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
                                trailers,
                            });
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self { addr, seen }
    }

    fn last(&self, path: &str) -> Option<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|r| r.path == path)
            .cloned()
    }

    fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

/// An app that answers each request with bytes chosen by its path, framed as written.
async fn raw_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end + 4);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                    let answer: &[u8] = match path.as_str() {
                        "/raw/both" => b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                        "/raw/gzip" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                        "/raw/list" => b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
                        "/raw/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                        "/raw/hsts" => b"HTTP/1.1 200 OK\r\nStrict-Transport-Security: max-age=0\r\nContent-Length: 2\r\n\r\nok",
                        // Answers to HEAD: the head a GET would get, and no body.
                        "/raw/head-chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                        "/raw/head-length" => b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
                        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                    };
                    if tcp.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The harness with routes `/h1` (HTTP/1.1) and `/h2` (h2c) to a recording app and `/raw`
/// to the hand-written one, all public.
async fn start() -> (Harness, RecordingApp) {
    let h = Harness::sqlite().await;
    let app = RecordingApp::start().await;
    let raw = raw_app().await;
    let routes = format!(
        r#"
[[route]]
prefix = "/h1"
upstream = "http://{app}"
auth = "public"

[[route]]
prefix = "/h2"
upstream = "http://{app}"
auth = "public"
upstream_http2 = true

[[route]]
prefix = "/raw"
upstream = "http://{raw}"
auth = "public"
"#,
        app = app.addr,
    );
    h.add_routes(&routes, "/raw/ready", |s| s == 200).await;
    (h, app)
}

/// Sends `request` as written over a fresh TLS connection to the optional listener and
/// reads the answer until the gateway closes it.
async fn raw_send(h: &Harness, request: &str) -> String {
    let mut s = client::tls(h.optional, h.client_config(None))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the gateway kept the connection open");
    String::from_utf8_lossy(&out).into_owned()
}

/// An HTTP/2 request to the optional listener whose body ends with `trailers`.
async fn h2_with_trailers(
    h: &Harness,
    path: &str,
    headers: &[(&str, &str)],
    trailers: HeaderMap,
) -> u16 {
    let cfg = client::config(&h.server_ca.der, None, &[b"h2"]);
    let tls = client::tls(h.optional, cfg).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(b"hello"))),
        Ok(Frame::trailers(trailers)),
    ];
    let mut b = Request::builder()
        .method("POST")
        .uri(format!("https://localhost{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    status
}

fn forged_trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("x-certgate-user", HeaderValue::from_static("bob"));
    t.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
    t.insert("x-original-url", HeaderValue::from_static("/admin"));
    t
}

/// Trailers are a second header section the gateway does not judge: a client's, over
/// HTTP/2 or HTTP/1.1 chunked, never reaches an app, also one that speaks HTTP/2 and would
/// read them; the body itself arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_trailers_never_reach_the_app() {
    let (h, app) = start().await;
    assert_eq!(
        h2_with_trailers(&h, "/h2/t", &[], forged_trailers()).await,
        200
    );
    assert_eq!(
        h2_with_trailers(&h, "/h1/t", &[], forged_trailers()).await,
        200
    );
    let chunked = "POST /h2/c HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nTrailer: X-Certgate-User\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Certgate-User: bob\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
    let answer = raw_send(&h, chunked).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for path in ["/h2/t", "/h1/t", "/h2/c"] {
        let got = app
            .last(path)
            .unwrap_or_else(|| panic!("{path} never arrived"));
        assert_eq!(got.body, "hello", "{path}");
        assert!(
            got.trailers.as_ref().is_none_or(Vec::is_empty),
            "{path}: trailers reached the app: {:?}",
            got.trailers
        );
        assert!(
            got.headers
                .iter()
                .all(|(k, v)| k != "x-certgate-user" && v != "10.0.0.1"),
            "{path}: {:?}",
            got.headers
        );
    }
    h.shutdown().await;
}

/// A request's framing and the headers around it reach the app in one plain form:
/// `Transfer-Encoding` as the gateway's own chunking, codings other than `chunked` alone
/// refused with 501, a `Content-Length` as one plain number, HTTP/2 cookie fields as one
/// `Cookie` line, the request ID kept whatever `Connection` names, and identity names
/// spelt with other punctuation stripped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_and_cookies_reach_the_app_in_one_plain_form() {
    let (h, app) = start().await;
    let chunked = |te: &str, path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\n{te}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
    };
    let answer = raw_send(&h, &chunked("Transfer-Encoding: Chunked", "/h1/te")).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = app.last("/h1/te").expect("the chunked request arrived");
    assert_eq!(got.body, "hello");
    assert_eq!(got.values("transfer-encoding"), ["chunked"]);
    for te in [
        "Transfer-Encoding: identity, chunked",
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    ] {
        let answer = raw_send(&h, &chunked(te, "/h1/refused")).await;
        assert!(answer.starts_with("HTTP/1.1 501"), "{te}: {answer}");
        assert!(
            answer.contains("\"error\":\"transfer_coding_refused\""),
            "{answer}"
        );
    }
    assert_eq!(app.count("/h1/refused"), 0);

    let answer = raw_send(
        &h,
        "POST /h1/cl HTTP/1.1\r\nHost: localhost\r\nContent-Length: 005\r\nConnection: x-request-id, close\r\nX.Certgate.User: bob\r\nX~Forwarded~For: 10.0.0.1\r\nx+original+url: /admin\r\n\r\nhello",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let got = app.last("/h1/cl").expect("the request arrived");
    assert_eq!(got.values("content-length"), ["5"]);
    assert_eq!(got.values("x-request-id").len(), 1, "{:?}", got.headers);
    for (k, v) in &got.headers {
        assert!(
            !v.contains("bob") && !v.contains("10.0.0.1") && !v.contains("/admin"),
            "{k}: {v}"
        );
    }

    let mut conn = client::Conn::h2(h.optional, client::config(&h.server_ca.der, None, &[b"h2"]))
        .await
        .unwrap();
    let a = conn
        .send(
            "GET",
            "/h1/cookies",
            &[("cookie", "JSESSIONID=abc"), ("cookie", "lang=ja")],
            "",
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let got = app.last("/h1/cookies").expect("the request arrived");
    assert_eq!(got.values("cookie"), ["JSESSIONID=abc; lang=ja"]);
    h.shutdown().await;
}

/// An app's answer framed both by length and by chunking, or in a coding the gateway cannot
/// pass on, is a 502 counted as a protocol failure, never a dropped connection or a length
/// the body does not have; the client's connection goes on serving. A length list of equal
/// values reaches the client as one number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_framed_two_ways_is_a_502_on_a_living_connection() {
    let (h, _app) = start().await;
    for version in ["h1", "h2"] {
        let mut conn = if version == "h1" {
            h.h1(None).await
        } else {
            client::Conn::h2(h.optional, client::config(&h.server_ca.der, None, &[b"h2"]))
                .await
                .unwrap()
        };
        for path in ["/raw/both", "/raw/gzip"] {
            let a = conn.get(path).await.unwrap();
            assert_eq!(a.status, 502, "{version} {path}: {}", a.body);
            assert_eq!(a.json()["error"], "upstream_failed");
        }
        let a = conn.get("/raw/list").await.unwrap();
        assert_eq!(a.status, 200, "{version}");
        assert_eq!(a.body, "ok");
        let lengths: Vec<_> = a.headers.get_all("content-length").iter().collect();
        assert_eq!(lengths, ["2"], "{version}");
        let a = conn.get("/raw/chunked").await.unwrap();
        assert_eq!(
            (a.status.as_u16(), a.body.as_str()),
            (200, "ok"),
            "{version}"
        );
        // Every answer carries HSTS (a refusal too); an app's own is kept as it is.
        assert_eq!(a.headers["strict-transport-security"], "max-age=31536000");
        let a = conn.get("/raw/both").await.unwrap();
        assert_eq!(a.headers["strict-transport-security"], "max-age=31536000");
        let a = conn.get("/raw/hsts").await.unwrap();
        let hsts: Vec<_> = a
            .headers
            .get_all("strict-transport-security")
            .iter()
            .collect();
        assert_eq!(hsts, ["max-age=0"], "{version}");
    }
    let protocol = h
        .metric("certgate_upstream_failures_total{route=\"/raw\",reason=\"protocol\"}")
        .await;
    assert_eq!(protocol, 6.0);
    h.shutdown().await;
}

/// An app's answer to `HEAD` describes the body a `GET` would get. Passed on, it must not
/// claim a length the app never gave (a chunked answer is not `Content-Length: 0`), it keeps
/// a length the app gave, and it carries no body: the next answer on the same connection
/// starts right after its head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_head_keep_their_framing_and_carry_no_body() {
    let (h, _app) = start().await;
    let answer = raw_send(
        &h,
        "HEAD /raw/head-chunked HTTP/1.1\r\nHost: localhost\r\n\r\n\
         HEAD /raw/head-length HTTP/1.1\r\nHost: localhost\r\n\r\n\
         GET /raw/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    let heads: Vec<&str> = answer.split("\r\n\r\n").collect();
    // Three heads, then the last answer's body "ok" and nothing else.
    assert_eq!(heads.len(), 4, "{answer}");
    assert_eq!(heads[3], "ok", "{answer}");
    let lines = |head: &str| -> Vec<String> {
        head.lines()
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
    };
    let chunked = lines(heads[0]);
    assert!(chunked[0].starts_with("http/1.1 200"), "{answer}");
    assert!(
        !chunked.iter().any(|l| l.starts_with("content-length")),
        "a chunked answer to HEAD got a length: {answer}"
    );
    let length = lines(heads[1]);
    assert!(length[0].starts_with("http/1.1 200"), "{answer}");
    assert!(
        length.iter().any(|l| l == "content-length: 1234"),
        "the app's length was lost: {answer}"
    );
    assert!(
        !length.iter().any(|l| l.starts_with("transfer-encoding")),
        "{answer}"
    );
    assert!(lines(heads[2])[0].starts_with("http/1.1 200"), "{answer}");
    h.shutdown().await;
}
