//! The client side of a connection: URL parsing, rustls client configuration (client
//! certificate, resumption off), and one trait object over plain TCP and TLS streams.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::TargetArgs;

/// A byte stream the generator reads and writes.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Everything needed to open a connection and send the request.
pub struct Target {
    pub addr: SocketAddr,
    pub tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// The request for a kept-alive connection, and the same with `Connection: close`.
    pub request: Vec<u8>,
    pub request_close: Vec<u8>,
}

impl Target {
    pub fn new(args: &TargetArgs) -> anyhow::Result<Self> {
        let (scheme, rest) = args
            .url
            .split_once("://")
            .context("the URL needs a scheme")?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = hostport
            .parse()
            .with_context(|| format!("{hostport} is not an IP:port"))?;
        if !addr.ip().is_loopback() {
            bail!("loopback addresses only");
        }
        let tls = match scheme {
            "http" => None,
            "https" => {
                let name = args
                    .server_name
                    .clone()
                    .unwrap_or_else(|| addr.ip().to_string());
                let server_name = ServerName::try_from(name)?;
                Some((
                    tokio_rustls::TlsConnector::from(Arc::new(client_config(args)?)),
                    server_name,
                ))
            }
            other => bail!("unknown scheme {other}"),
        };
        let body = match &args.body_file {
            Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
            None => Vec::new(),
        };
        let build = |close: bool| {
            let mut head = format!("{} {path} HTTP/1.1\r\nHost: {hostport}\r\n", args.method);
            for h in &args.headers {
                head.push_str(h);
                head.push_str("\r\n");
            }
            if !body.is_empty() || args.method != "GET" {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            if close {
                head.push_str("Connection: close\r\n");
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&body);
            bytes
        };
        Ok(Self {
            addr,
            tls,
            request: build(false),
            request_close: build(true),
        })
    }

    /// TCP connect and, for https, a full handshake.
    pub async fn connect(&self) -> anyhow::Result<Box<dyn Io>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => Box::new(connector.connect(name.clone(), tcp).await?),
        })
    }
}

/// A rustls client: the given roots, the client certificate, no session resumption (every
/// connection is a full handshake), no ALPN (HTTP/1.1).
fn client_config(args: &TargetArgs) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = &args.cacert {
        for c in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("cannot read {}", ca.display()))?
        {
            roots.add(c?)?;
        }
    }
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut cfg = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("cannot read {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("cannot read {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(cfg)
}
