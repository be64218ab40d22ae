//! Span export over OTLP/HTTP from a real `certgate serve` (and a `cert sign` command) to a
//! small receiver in this test: one trace per request with its status check, routing and
//! upstream call, the app given the upstream span as its parent (`traceparent`), the TLS
//! handshake, and an EST issuance with its steps down to the HSM's signature.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::{Db, Fixture, est_enroll, key_and_der_csr};

/// An OTLP/HTTP receiver: every `POST /v1/traces` body, parsed, with the path it came to.
struct Receiver {
    port: u16,
    posts: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("addr").port();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&posts);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let kept = Arc::clone(&kept);
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &kept);
                });
            }
        });
        Self { port, posts }
    }

    /// Every span received, with its service name.
    fn spans(&self) -> Vec<(String, Value)> {
        let posts = self.posts.lock().expect("posts");
        let mut out = Vec::new();
        for (path, body) in posts.iter() {
            assert_eq!(path, "/v1/traces");
            for rs in body["resourceSpans"].as_array().into_iter().flatten() {
                let service = rs["resource"]["attributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|a| a["key"] == "service.name")
                    .and_then(|a| a["value"]["stringValue"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for span in ss["spans"].as_array().into_iter().flatten() {
                        out.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }

    /// Waits (bounded) until `ok` holds for the spans received; panics with them otherwise.
    fn wait_for(&self, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Value> = self.spans().into_iter().map(|(_, s)| s).collect();
            if ok(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "{what}: {spans:#?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn serve_one(
    stream: std::net::TcpStream,
    kept: &Mutex<Vec<(String, Value)>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut length = 0usize;
    let mut json = false;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => json = value.trim() == "application/json",
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let mut stream = stream;
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if json => {
            kept.lock().expect("posts").push((path, v));
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        }
        _ => stream.write_all(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        ),
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

/// The names of the spans under `root` (by parent links), in no order.
fn descendants(spans: &[Value], root: &Value) -> Vec<String> {
    let by_id: HashMap<&str, &Value> = spans
        .iter()
        .filter_map(|s| Some((s["spanId"].as_str()?, s)))
        .collect();
    let root_id = root["spanId"].as_str().unwrap_or_default();
    spans
        .iter()
        .filter(|s| {
            let mut cur = *s;
            for _ in 0..16 {
                let Some(parent) = cur["parentSpanId"].as_str() else {
                    return false;
                };
                if parent == root_id {
                    return true;
                }
                match by_id.get(parent) {
                    Some(p) => cur = p,
                    None => return false,
                }
            }
            false
        })
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn spans_reach_an_otlp_receiver_and_the_app_joins_the_trace() {
    let receiver = Receiver::start();
    let Some(fx) = Fixture::with_config(Db::Sqlite, |cfg| {
        cfg.push_str(&format!(
            "\n[trace]\notlp_endpoint = \"http://127.0.0.1:{}\"\nservice_name = \"gate-a\"\n",
            receiver.port
        ));
    }) else {
        return;
    };
    fx.init_with_users();
    let run = fx.serve();

    // `cert sign` at the command line: its issuance spans leave before the command ends.
    let (cert, key) = fx.obtain("alice");
    let spans = receiver.wait_for("the command's issuance trace", |s| {
        !named(s, "issuance").is_empty()
    });
    let cli_issuance = named(&spans, "issuance")[0];
    let under = descendants(&spans, cli_issuance);
    for step in [
        "csr.check",
        "code.claim",
        "certificate.sign",
        "hsm.sign",
        "store.write",
    ] {
        assert!(
            under.iter().any(|n| n == step),
            "{step} under issuance: {under:?}"
        );
    }

    // A request through the gateway to the sample app.
    let (status, body) = crate::fixture::call_app(&run, &cert, &key);
    assert_eq!(status, 200, "{body}");
    let seen: Value = serde_json::from_str(&body).expect("the sample app's JSON");
    let parent = seen["identity"]["traceparent"]
        .as_str()
        .unwrap_or_else(|| panic!("the app got a traceparent: {body}"))
        .to_owned();
    let parts: Vec<&str> = parent.split('-').collect();
    assert_eq!(parts.len(), 4, "{parent}");
    assert_eq!((parts[0], parts[3]), ("00", "01"), "{parent}");
    let (trace_id, upstream_id) = (parts[1].to_owned(), parts[2].to_owned());
    assert_eq!(trace_id.len(), 32);
    let spans = receiver.wait_for("the request's trace", |s| {
        s.iter()
            .any(|x| x["name"] == "request" && x["traceId"] == trace_id.as_str())
    });
    let trace: Vec<Value> = spans
        .iter()
        .filter(|s| s["traceId"] == trace_id.as_str())
        .cloned()
        .collect();
    let request = named(&trace, "request")[0];
    assert_eq!(request["kind"], 2, "the request is the server span");
    assert!(request.get("parentSpanId").is_none(), "{request}");
    let upstream = named(&trace, "upstream")[0];
    assert_eq!(
        upstream["spanId"],
        upstream_id.as_str(),
        "the app's parent is the upstream call"
    );
    assert_eq!(upstream["kind"], 3, "the upstream call is a client span");
    assert_eq!(
        attr(upstream, "status").and_then(|v| v["intValue"].as_str()),
        Some("200")
    );
    let under = descendants(&trace, request);
    for step in ["status.check", "route", "upstream"] {
        assert!(
            under.iter().any(|n| n == step),
            "{step} under request: {under:?}"
        );
    }
    // Times are nanoseconds since the epoch, end after start.
    let start: u128 = request["startTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: u128 = request["endTimeUnixNano"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        start > 1_600_000_000_000_000_000 && end >= start,
        "{request}"
    );

    // The connection's handshake is a trace of its own and says a certificate was shown.
    let handshakes = named(&spans, "tls.handshake");
    assert!(
        handshakes.iter().any(|h| attr(h, "client_certificate")
            == Some(&serde_json::json!({"boolValue": true}))),
        "{handshakes:#?}"
    );

    // An EST enrollment in `serve`: issued, with its steps down to the HSM; a wrong code
    // is an issuance span with the error status.
    let code = fx.authorize("bob");
    let (_k, der) = key_and_der_csr(&fx, "bob");
    let (status, _) = est_enroll(&run, &fx, "bob", "WRONG-CODE-0000", &der);
    assert_eq!(status, 401);
    let (status, pem) = est_enroll(&run, &fx, "bob", &code, &der);
    assert_eq!(status, 200, "{pem}");
    let spans = receiver.wait_for("the EST issuances", |s| named(s, "issuance").len() >= 3);
    let issued: Vec<&Value> = named(&spans, "issuance")
        .into_iter()
        .filter(|s| attr(s, "outcome") == Some(&serde_json::json!({"stringValue": "issued"})))
        .collect();
    assert_eq!(issued.len(), 2, "the command's and EST's");
    let est = issued
        .iter()
        .find(|s| s["parentSpanId"].is_string())
        .expect("EST's issuance runs under its request span");
    let under = descendants(&spans, est);
    assert!(under.iter().any(|n| n == "hsm.sign"), "{under:?}");
    let refused = named(&spans, "issuance")
        .into_iter()
        .find(|s| s["status"]["code"] == 2)
        .expect("the wrong code's issuance span is an error");
    assert_eq!(
        attr(refused, "outcome"),
        Some(&serde_json::json!({"stringValue": "bad_code"})),
        "{refused}"
    );
    // Every span carries the configured service name.
    assert!(
        receiver
            .spans()
            .iter()
            .all(|(service, _)| service == "gate-a")
    );
}
