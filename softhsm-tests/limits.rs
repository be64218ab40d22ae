//! Limits on the public surface through the running gateway: a flood of wrong codes gets
//! 429 with `Retry-After` and leaves a bounded audit trail (one `limit.refused` and one
//! `limit.refused_summary` per key), an OCSP nonce flood gets 429 while nonce-less OCSP
//! still answers, a body that does not arrive gets 408, and an idle HTTP/2 connection is
//! closed while a busy one is kept.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::fixture::{
    Db, Fixture, Running, curl, free_port, key_and_der_csr, obtain_call_args, sh,
};

/// Tight limits so that a short test reaches them.
const LIMITS: &str = r#"
[limits]
failed_codes = { per_minute = 1, burst = 3 }
ocsp_nonce = { per_minute = 1, burst = 2 }
admin_changes = { per_minute = 1, burst = 2 }
summary_window_secs = 2
body_read_timeout_secs = 4
"#;

fn est_post(run: &Running, fx: &Fixture, login: &str, code: &str, der: &Path) -> (u16, String) {
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(der).unwrap())
    };
    let body = fx.path("est-body.b64");
    std::fs::write(&body, b64).unwrap();
    curl(
        &run.ca,
        &[
            "-D",
            "-",
            "--user",
            &format!("{login}:{code}"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &format!("@{}", body.display()),
            &run.url("/.well-known/est/simpleenroll"),
        ],
    )
}

fn count(text: &str, action: &str) -> usize {
    text.matches(&format!("\"action\":\"{action}\"")).count()
}

#[test]
fn a_code_flood_gets_429_and_a_bounded_audit_trail() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| t.push_str(LIMITS)) else {
        return;
    };
    fx.init_with_users();
    let _code = fx.authorize("bob");
    let run = fx.serve();
    let (_, der) = key_and_der_csr(&fx, "flood");

    // The credential-less first request of an EST client (answered with the Basic
    // challenge) tries no code: more of them than the burst leave the failed codes intact.
    for _ in 0..5 {
        let (status, text) = curl(
            &run.ca,
            &[
                "-D",
                "-",
                "-H",
                "Content-Type: application/pkcs10",
                "--data-binary",
                "MIIB",
                &run.url("/.well-known/est/simpleenroll"),
            ],
        );
        assert_eq!(status, 401, "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("www-authenticate: basic"),
            "{text}"
        );
    }

    let mut statuses = Vec::new();
    for i in 0..30 {
        let (status, text) = est_post(
            &run,
            &fx,
            "bob",
            &format!("{i:04}-0000-0000-0000-0000"),
            &der,
        );
        if status == 429 {
            assert!(
                text.to_ascii_lowercase().contains("retry-after:"),
                "429 without Retry-After: {text}"
            );
        }
        statuses.push(status);
    }
    // The burst of failed codes is spent, then every further try is refused unchecked.
    assert_eq!(&statuses[..3], &[401, 401, 401], "{statuses:?}");
    assert!(statuses[3..].iter().all(|s| *s == 429), "{statuses:?}");
    // The pages' JSON call from the same address is refused as well, and in JSON: its
    // callers read `error` and `message` from every answer.
    let json = serde_json::json!({"login": "bob", "code": "0000-0000-0000-0000-0000", "csr": "x"});
    let call = obtain_call_args(&fx, &run, &json);
    let mut args = vec!["-D", "-"];
    args.extend(call.iter().map(String::as_str));
    let (status, text) = curl(&run.ca, &args);
    assert_eq!(status, 429, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/json") && lower.contains("retry-after:"),
        "{text}"
    );
    assert!(text.contains("\"error\":\"rate_limited\""), "{text}");

    // The summaries are written when the window ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let audit = loop {
        let audit = fx.ok(&["audit", "export"]);
        if count(&audit, "limit.refused_summary") >= 2 || std::time::Instant::now() > deadline {
            break audit;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Two keys (the address and the login ID): one refusal and one summary each, for 28
    // refused requests (27 over EST, one JSON call); the codes behind them were never
    // checked.
    assert_eq!(count(&audit, "limit.refused"), 2, "{audit}");
    assert_eq!(count(&audit, "limit.refused_summary"), 2, "{audit}");
    assert!(audit.contains(r#"\"refused\":27"#), "{audit}");
    assert_eq!(audit.matches("bad_code").count(), 3, "{audit}");
    fx.ok(&["audit", "verify"]);

    let (_, metrics) = curl(
        &run.ca,
        &[&format!("http://127.0.0.1:{}/metrics", run.admin)],
    );
    assert!(
        metrics.contains("certgate_rate_limited_total{surface=\"failed_codes\"} 28"),
        "{metrics}"
    );
}

/// A contract administrator's changes are bounded too: past the burst, 429 with
/// `Retry-After`, and the refused change is not made. Reading the list still answers.
#[test]
fn an_administrators_changes_get_429_past_their_burst() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| t.push_str(LIMITS)) else {
        return;
    };
    fx.init_with_users();
    let (alice, alice_key) = fx.obtain("alice");
    let run = fx.serve();
    let call = |method: &str, path: &str, body: &str| {
        curl(
            &run.ca,
            &[
                "-D",
                "-",
                "--cert",
                alice.to_str().unwrap(),
                "--key",
                alice_key.to_str().unwrap(),
                "-X",
                method,
                "-H",
                "Content-Type: application/json",
                crate::fixture::CSRF[0],
                crate::fixture::CSRF[1],
                crate::fixture::CSRF[2],
                crate::fixture::CSRF[3],
                "--data",
                body,
                &run.url(path),
            ],
        )
    };
    let add = |login: &str| {
        call(
            "POST",
            "/api/v1/users",
            &format!(r#"{{"login":"{login}","role":"general","email":"{login}@example.com"}}"#),
        )
    };
    for login in ["flood1", "flood2"] {
        let (status, text) = add(login);
        assert_eq!(status, 200, "{text}");
    }
    let (status, text) = add("flood3");
    assert_eq!(status, 429, "{text}");
    assert!(text.to_lowercase().contains("retry-after:"), "{text}");
    let users = fx.ok(&["user", "list", "--contract", "corp1"]);
    assert!(
        users.contains("flood2") && !users.contains("flood3"),
        "{users}"
    );
    // The list is a read: not limited.
    let (status, text) = curl(
        &run.ca,
        &[
            "--cert",
            alice.to_str().unwrap(),
            "--key",
            alice_key.to_str().unwrap(),
            &run.url("/api/v1/users"),
        ],
    );
    assert_eq!(status, 200, "{text}");
}

#[test]
fn an_ocsp_nonce_flood_gets_429_while_nonceless_ocsp_answers() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| t.push_str(LIMITS)) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();
    let (cert, _) = fx.obtain("carol");
    let request = |nonce: bool| {
        let out = fx.path("ocsp.req");
        let mut cmd = Command::new("openssl");
        cmd.args(["ocsp", "-issuer"])
            .arg(&run.ca)
            .arg("-cert")
            .arg(&cert)
            .arg("-reqout")
            .arg(&out);
        if !nonce {
            cmd.arg("-no_nonce");
        }
        sh(&mut cmd);
        out
    };
    let post = |file: &Path| {
        curl(
            &run.ca,
            &[
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                "Content-Type: application/ocsp-request",
                "--data-binary",
                &format!("@{}", file.display()),
                &run.url("/ocsp"),
            ],
        )
    };
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, head) = post(&request(true));
        if status == 429 {
            assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429]);
    for _ in 0..5 {
        assert_eq!(
            post(&request(false)).0,
            200,
            "nonce-less OCSP is not limited"
        );
    }
}

/// A TLS client for HTTP/2 against the gateway's second listener.
fn h2_tls(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA PEM") {
        roots.add(cert.expect("CA certificate")).expect("CA root");
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(tls)
}

type Chunks = tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::convert::Infallible>>;
type Sender = hyper::client::conn::http2::SendRequest<StreamBody<chunk_body::Stream>>;

/// A channel as a request body: the test decides when each chunk comes.
mod chunk_body {
    use super::*;
    pub struct Stream(pub Chunks);
    impl futures_util::Stream for Stream {
        type Item = Result<Frame<Bytes>, std::convert::Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
}

/// An HTTP/2 connection; the task ends when the gateway closes it.
async fn connect(
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
) -> (Sender, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let io = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

/// A POST to `/ocsp` whose body the returned sender feeds.
fn ocsp_post(
    send: &mut Sender,
) -> (
    tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>,
    impl std::future::Future<Output = u16> + use<>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let req = http::Request::builder()
        .method("POST")
        .uri("https://127.0.0.1/ocsp")
        .header("content-type", "application/ocsp-request")
        .body(StreamBody::new(chunk_body::Stream(rx)))
        .expect("request");
    let answer = send.send_request(req);
    (tx, async move {
        let resp = answer.await.expect("HTTP/2 answer");
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        status
    })
}

#[test]
fn slow_bodies_get_408_and_idle_http2_connections_are_closed_busy_ones_kept() {
    let Some(fx) = Fixture::with_config(Db::Sqlite, |t| t.push_str(LIMITS)) else {
        return;
    };
    fx.init_with_users();
    let h2_port = free_port();
    // A second listener with a short HTTP/2 idle timeout (same certificate).
    let run = fx.serve_with(&format!(
        "\n[[listener]]\naddr = \"127.0.0.1:{h2_port}\"\ncert = \"server.pem\"\n\
         key = \"server.key\"\nh2_idle_timeout_secs = 1\n"
    ));
    let tls = h2_tls(&run.ca);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // A body that stops arriving: 408 after body_read_timeout_secs.
        let (mut send, _conn) = connect(run.https, &tls).await;
        let (tx, answer) = ocsp_post(&mut send);
        tx.send(Ok(Frame::data(Bytes::from_static(b"\x30\x03"))))
            .await
            .expect("first bytes");
        let status = tokio::time::timeout(Duration::from_secs(60), answer)
            .await
            .expect("an answer while the body is still open");
        assert_eq!(status, 408);
        drop(tx);

        // An idle connection is closed by the gateway.
        let (mut send, idle_conn) = connect(h2_port, &tls).await;
        let (tx, answer) = ocsp_post(&mut send);
        drop(tx);
        assert_eq!(
            answer.await,
            200,
            "an OCSP error answer (malformed request)"
        );
        tokio::time::timeout(Duration::from_secs(60), idle_conn)
            .await
            .expect("the idle connection was closed")
            .expect("connection task");

        // A busy connection is kept: one request whose body trickles in over several idle
        // periods, then a second request on the same connection is still served.
        let (mut send, busy_conn) = connect(h2_port, &tls).await;
        let (tx, answer) = ocsp_post(&mut send);
        let answer = tokio::spawn(answer);
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"\x00"))))
                .await
                .expect("a chunk");
        }
        drop(tx);
        assert_eq!(answer.await.expect("answer task"), 200);
        assert!(!busy_conn.is_finished(), "the busy connection was closed");
        let (tx, again) = ocsp_post(&mut send);
        drop(tx);
        assert_eq!(
            again.await,
            200,
            "the kept connection serves another request"
        );
    });
}
