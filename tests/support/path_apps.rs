//! Upstream apps that read request paths the way real servers do, recording what they
//! would serve: Tomcat (each segment's `;` parameters stripped, then decoded once, `..`
//! resolved, so `/public/..;/ib/top` is `/ib/top`) and IIS (decoded twice, `\` read as `/`,
//! trailing dots and spaces dropped, case ignored). A test asserts the app never serves a
//! protected path to a caller the gateway should have refused.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// One request as received and as each server would read its path.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The request target as it arrived (path and query).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub tomcat: String,
    pub iis: String,
}

impl Hit {
    /// Whether Tomcat or IIS would serve this request from under `prefix`.
    pub fn served_under(&self, prefix: &str) -> bool {
        let under = |p: &str, prefix: &str| p == prefix || p.starts_with(&format!("{prefix}/"));
        under(&self.tomcat, prefix) || under(&self.iis, &prefix.to_ascii_lowercase())
    }
}

/// A recording app on 127.0.0.1.
#[derive(Clone)]
pub struct PathApp {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl PathApp {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let log = hits.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let target = req
                                .uri()
                                .path_and_query()
                                .map_or_else(String::new, |p| p.as_str().to_owned());
                            let path = req.uri().path().to_owned();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.as_str().to_owned(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect();
                            let body = match req.into_body().collect().await {
                                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                                Err(_) => "<cut off>".into(),
                            };
                            log.lock().unwrap().push(Hit {
                                tomcat: tomcat_view(&path),
                                iis: iis_view(&path),
                                target,
                                headers,
                                body,
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
        Self { addr, hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

/// Tomcat: `;` parameters stripped from each segment, decoded once, dot segments resolved.
pub fn tomcat_view(path: &str) -> String {
    let stripped: Vec<&str> = path
        .split('/')
        .map(|s| s.split(';').next().unwrap_or_default())
        .collect();
    let decoded = decode(&stripped.join("/"));
    resolve(&decoded, false)
}

/// IIS: decoded twice, `\` as `/`, trailing dots and spaces dropped, lower-cased.
pub fn iis_view(path: &str) -> String {
    let decoded = decode(&decode(path)).replace('\\', "/");
    resolve(&decoded, true).to_lowercase()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| char::from(c).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap());
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Dot segments resolved (clamped at the root, as servlet containers and IIS do), empty
/// segments merged.
fn resolve(path: &str, trim_dots: bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        let seg = if trim_dots && seg != "." && seg != ".." {
            seg.trim_end_matches(['.', ' '])
        } else {
            seg
        };
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[test]
fn the_views_read_paths_as_those_servers_do() {
    assert_eq!(tomcat_view("/public/..;/ib/top"), "/ib/top");
    assert_eq!(tomcat_view("/ib;x/top"), "/ib/top");
    assert_eq!(tomcat_view("//ib/top"), "/ib/top");
    assert_eq!(iis_view("/IB./top"), "/ib/top");
    assert_eq!(iis_view("/public/%252e%252e/ib"), "/ib");
    assert_eq!(iis_view("/public\\..\\ib"), "/ib");
}
