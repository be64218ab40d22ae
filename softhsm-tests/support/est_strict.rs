//! A strict RFC 7030 client: it reads EST answers the way the least forgiving clients in
//! the field do (libest in routers and phones, OpenSSL's base64 BIO) and fails on anything
//! they would stumble over: header names not in their conventional case on HTTP/1.1, a
//! missing `Content-Type` or `Content-Transfer-Encoding`, base64 lines longer than 76
//! characters (64 expected) or not ended by CRLF, bodies that are not exactly DER, a PKCS#7
//! that is not certs-only, a 401 without `WWW-Authenticate`, a 405 without `Allow`, a
//! 503/429 without `Retry-After`.
//!
//! HTTP/1.1 is spoken by hand over TLS so the header names are seen as sent; HTTP/2 goes
//! through hyper's client (names are lower case on the wire there by definition).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sent with every request, as device clients and libraries do (RFC 9110 §10.1.5).
const USER_AGENT: &str = "certgate-est-strict/1";

/// The HTTP version to speak (chosen with ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

/// An answer as received: header names as sent, body bytes after transfer decoding.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The value of a header, its name compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where and how to connect.
pub struct Client {
    pub port: u16,
    pub version: Version,
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    /// A client trusting `ca` (PEM), optionally presenting `cert` and `key` (PEM files).
    pub fn new(port: u16, version: Version, ca: &Path, identity: Option<(&Path, &Path)>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).expect("CA PEM") {
            roots.add(cert.expect("CA certificate")).expect("CA root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots);
        let mut tls = match identity {
            Some((cert, key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .expect("client certificate PEM")
                    .map(|c| c.expect("client certificate"))
                    .collect();
                let key = PrivateKeyDer::from_pem_file(key).expect("client key PEM");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client identity")
            }
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![match version {
            Version::Http1 => b"http/1.1".to_vec(),
            Version::Http2 => b"h2".to_vec(),
        }];
        Self {
            port,
            version,
            tls: Arc::new(tls),
        }
    }

    /// Sends one request on a new connection and reads the whole answer.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .expect("connect");
            // An IP address as the server name: no SNI, as curl and device clients do.
            let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            match self.version {
                Version::Http1 => http1(tls, self.port, method, path, headers, body).await,
                Version::Http2 => http2(tls, method, path, headers, body).await,
            }
        })
    }
}

async fn http1<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {USER_AGENT}\r\nConnection: close\r\n"
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    io.write_all(head.as_bytes()).await.expect("write head");
    io.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    // The server closes after the answer (Connection: close); a TLS close without
    // close_notify still leaves what was read.
    let _ = io.read_to_end(&mut raw).await;
    parse_http1(&raw)
}

/// Parses a whole HTTP/1.1 answer, keeping header names as sent.
fn parse_http1(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = std::str::from_utf8(&raw[..end]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().expect("status code");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("a header line");
            (n.to_owned(), v.trim().to_owned())
        })
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    if let Some((_, len)) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        assert_eq!(
            len.parse::<usize>().ok(),
            Some(body.len()),
            "Content-Length"
        );
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

async fn http2<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>(
    io: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(io),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://127.0.0.1{path}"))
        .header("user-agent", USER_AGENT);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let req = req
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let resp = send.send_request(req).await.expect("HTTP/2 answer");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                v.to_str().expect("an ASCII header value").to_owned(),
            )
        })
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("HTTP/2 body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// Names whose registered spelling is not each word capitalised. libest finds the 401's
/// challenge only as `WWW-Authenticate`, byte for byte.
const REGISTERED_SPELLINGS: [&str; 2] = ["WWW-Authenticate", "ETag"];

/// `Content-Type`, `Content-Transfer-Encoding`: each word capitalised; `WWW-Authenticate`
/// and `ETag` exactly as registered.
fn conventional_case(name: &str) -> bool {
    if let Some(registered) = REGISTERED_SPELLINGS
        .iter()
        .find(|r| r.eq_ignore_ascii_case(name))
    {
        return name == *registered;
    }
    name.split('-').all(|word| {
        let mut chars = word.chars();
        chars.next().is_some_and(|c| c.is_ascii_uppercase())
            && chars.all(|c| !c.is_ascii_uppercase())
    })
}

/// The checks every answer gets, whatever its status.
pub fn check_headers(version: Version, reply: &Reply) {
    if version == Version::Http1 {
        for (name, _) in &reply.headers {
            assert!(
                conventional_case(name),
                "header name {name:?} is not in conventional case: {:?}",
                reply.headers
            );
        }
    }
    assert!(
        reply.header("content-type").is_some(),
        "no Content-Type: {:?}",
        reply.headers
    );
    let needs = match reply.status {
        401 => Some("www-authenticate"),
        405 => Some("allow"),
        429 | 503 => Some("retry-after"),
        _ => None,
    };
    if let Some(name) = needs {
        assert!(
            reply.header(name).is_some_and(|v| !v.is_empty()),
            "{} without {name}: {:?}",
            reply.status,
            reply.headers
        );
    }
}

/// A 200 EST body: the media type, base64 in lines of at most 76 characters (64 expected)
/// ended by CRLF, and the DER it decodes to (checked by `openssl asn1parse` as well).
pub fn check_base64_der(version: Version, reply: &Reply, media_type: &str, dir: &Path) -> Vec<u8> {
    check_headers(version, reply);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let ctype = reply.header("content-type").unwrap_or_default();
    let base = ctype.split(';').next().unwrap_or_default().trim();
    assert!(
        base.eq_ignore_ascii_case(media_type),
        "Content-Type {ctype}"
    );
    assert!(
        reply
            .header("content-transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("base64")),
        "Content-Transfer-Encoding: {:?}",
        reply.headers
    );
    let text = std::str::from_utf8(&reply.body).expect("an ASCII body");
    assert!(text.ends_with("\r\n"), "the last line is not ended by CRLF");
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    for (i, line) in lines.iter().enumerate() {
        assert!(line.len() <= 76, "line {i} has {} characters", line.len());
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "a bare line break in line {i}"
        );
        if i + 1 < lines.len() {
            assert_eq!(line.len(), 64, "line {i} is not folded at 64");
        }
    }
    let der = base64::engine::general_purpose::STANDARD
        .decode(lines.concat())
        .expect("the body is base64");
    asn1parse(&der, dir);
    der
}

/// `openssl asn1parse -inform DER` (a real process) reads every byte of `der`.
pub fn asn1parse(der: &[u8], dir: &Path) -> String {
    let file = dir.join("asn1parse.der");
    std::fs::write(&file, der).expect("write DER");
    let out = Command::new("openssl")
        .args(["asn1parse", "-inform", "DER", "-in"])
        .arg(&file)
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !text.contains("Error"),
        "openssl asn1parse refused the body:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A certs-only PKCS#7 (RFC 7030 §4.1.3): SignedData v1 of id-data without content, no
/// signers, no digest algorithms, no CRL set, at least one certificate. Returns them (DER).
pub fn certs_only(der: &[u8]) -> Vec<Vec<u8>> {
    let info = ContentInfo::from_der(der).expect("exactly one DER ContentInfo");
    assert_eq!(info.content_type, const_oid::db::rfc5911::ID_SIGNED_DATA);
    let sd: SignedData = info.content.decode_as().expect("SignedData");
    assert_eq!(sd.version, CmsVersion::V1);
    assert!(
        sd.digest_algorithms.is_empty(),
        "digest algorithms in certs-only"
    );
    assert!(sd.signer_infos.0.is_empty(), "signers in certs-only");
    assert!(sd.crls.is_none(), "a CRL set in certs-only");
    assert_eq!(
        sd.encap_content_info.econtent_type,
        const_oid::db::rfc5911::ID_DATA
    );
    assert!(sd.encap_content_info.econtent.is_none());
    let certs: Vec<Vec<u8>> = sd
        .certificates
        .expect("certificates")
        .0
        .iter()
        .map(|c| match c {
            CertificateChoices::Certificate(c) => c.to_der().expect("certificate DER"),
            CertificateChoices::Other(_) => panic!("a non-X.509 certificate choice"),
        })
        .collect();
    assert!(!certs.is_empty(), "no certificate");
    certs
}

/// The base64 body of a request folded at 64 with CRLF, as device clients send it.
pub fn folded(der: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::new();
    for line in flat.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push_str("\r\n");
    }
    out
}

/// A certificate as PEM (to hand to openssl or back to [`Client::new`]).
pub fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
