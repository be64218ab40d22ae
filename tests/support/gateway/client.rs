//! Real TLS clients for gateway tests: rustls (aws-lc-rs) under hyper, HTTP/1.1 or HTTP/2,
//! one connection per `Conn` so keep-alive behaviour can be observed.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::pki::ClientCert;

pub fn config(
    server_ca: &CertificateDer<'static>,
    cert: Option<&ClientCert>,
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(certgate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some(c) => builder
            .with_client_auth_cert(vec![c.der.clone()], c.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A TLS stream to the gateway, SNI `localhost`.
pub async fn tls(
    addr: SocketAddr,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// A TLS stream to the gateway without SNI (the server name is the address 127.0.0.1, which
/// a client does not send), as `curl -k https://127.0.0.1/` connects.
pub async fn tls_without_sni(
    addr: SocketAddr,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    TlsConnector::from(cfg)
        .connect(ServerName::IpAddress(ip.into()), tcp)
        .await
}

pub enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// A response, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

impl Conn {
    pub async fn h1(addr: SocketAddr, cfg: Arc<ClientConfig>) -> std::io::Result<Self> {
        let io = TokioIo::new(tls(addr, cfg).await?);
        let (send, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Self::H1(send))
    }

    pub async fn h2(addr: SocketAddr, cfg: Arc<ClientConfig>) -> std::io::Result<Self> {
        let stream = tls(addr, cfg).await?;
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(Self::H2(send))
    }

    /// Sends a request; `headers` are added as given (names may hold `_`).
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Answer, hyper::Error> {
        let uri = match self {
            Self::H1(_) => path.to_string(),
            Self::H2(_) => format!("https://localhost{path}"),
        };
        let mut b = Request::builder().method(method).uri(uri);
        let has_host = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host"));
        if let (Self::H1(_), false) = (&*self, has_host) {
            b = b.header("host", "localhost");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let resp = match self {
            Self::H1(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
            Self::H2(s) => {
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer, hyper::Error> {
        self.send("GET", path, &[], "").await
    }
}
