//! A small stand-in for a banking app behind the gateway: it shows the identity headers it
//! receives (and the request ID), so a newcomer sees what the apps behind certgate get. Not for
//! production.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use crate::http_common::escape;

/// Serves the sample app on `addr` until the process ends.
pub async fn serve(addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "sample banking app listening");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(|req| async move { Ok::<_, Infallible>(answer(&req)) });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let mut rows = String::new();
    let mut identity = serde_json::Map::new();
    for (name, value) in req.headers() {
        let n = name.as_str();
        if n.starts_with("x-certgate-")
            || n.starts_with("x-forwarded-")
            || n == "client-cert"
            || n == "x-request-id"
            || n == "traceparent"
        {
            let v = value.to_str().unwrap_or("<binary>");
            rows.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(n),
                escape(v)
            ));
            identity.insert(n.to_owned(), serde_json::Value::String(v.to_owned()));
        }
    }
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let (ctype, body) = if wants_json {
        let body = serde_json::json!({"path": req.uri().path(), "identity": identity});
        ("application/json", body.to_string())
    } else {
        let user = req
            .headers()
            .get("x-certgate-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("(none)");
        (
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sample banking app</title></head>\
                 <body><h1>Sample corporate banking app</h1><p>Logged in through certgate as <strong id=\"user\">{}</strong>.</p>\
                 <p>Path: {}</p><table border=\"1\">{rows}</table>\
                 <p><a href=\"/certgate/\">certgate login screen</a></p></body></html>",
                escape(user),
                escape(req.uri().path())
            ),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    resp
}
