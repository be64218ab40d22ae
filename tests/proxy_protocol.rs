//! A listener behind a layer-4 load balancer: PROXY protocol v1 and v2 headers written by
//! the test over real TCP before a real TLS handshake; the echo app shows the client
//! address the gateway took from them.

#[path = "support/db.rs"]
#[allow(dead_code)]
mod db;
#[path = "support/gateway/mod.rs"]
#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use support::Harness;
use support::client::Conn;

fn header<'a>(seen: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    seen["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

/// Writes `parts` one after the other (each flushed on its own, so a header can arrive
/// split), then speaks TLS and HTTP/1.1 on the same connection.
async fn proxied(
    addr: SocketAddr,
    parts: &[&[u8]],
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<Conn> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            // Lets the gateway see the first part alone (not a timing assertion: the test
            // passes either way the bytes are coalesced).
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        tcp.write_all(p).await?;
        tcp.flush().await?;
    }
    let tls = TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(Conn::H1(send))
}

fn v2_ipv4(src: [u8; 4], sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    let mut block = src.to_vec();
    block.extend_from_slice(&[127, 0, 0, 1]);
    block.extend_from_slice(&sport.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    // A TLV (PP2_TYPE_AUTHORITY), which the gateway skips.
    block.extend_from_slice(&[0x02, 0x00, 0x04]);
    block.extend_from_slice(b"ib.x");
    h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&block);
    h
}

fn v2_ipv6(src: std::net::Ipv6Addr, sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x21".to_vec();
    let mut block = src.octets().to_vec();
    block.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    block.extend_from_slice(&sport.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&block);
    h
}

async fn forwarded_for(c: &mut Conn, path: &str) -> serde_json::Value {
    let a = c.send("GET", path, &[], "").await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_from_a_trusted_peer_name_the_client() {
    let h = Harness::sqlite().await;
    let cfg = h.client_config(Some(&h.alice));

    // v1, split inside the address: read whole, and the ClientHello after it reaches TLS.
    let parts: [&[u8]; 2] = [b"PROXY TCP4 192.0.2.7 127.0.", b"0.1 50000 443\r\n"];
    let mut c = proxied(h.proxied, &parts, cfg.clone()).await.unwrap();
    let seen = forwarded_for(&mut c, "/public/v1").await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["192.0.2.7"]);
    // The same connection keeps its address for its next request.
    let seen = forwarded_for(&mut c, "/public/again").await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["192.0.2.7"]);

    // v1 in one write with the whole header, then a certificate route: identity as usual.
    let line = b"PROXY TCP6 2001:db8::5 ::1 4000 443\r\n";
    let mut c = proxied(h.proxied, &[line], cfg.clone()).await.unwrap();
    let seen = forwarded_for(&mut c, "/ib/top").await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["2001:db8::5"]);
    assert_eq!(header(&seen, "x-certgate-user"), ["alice"]);

    // An IPv4 client written as IPv6 (`::ffff:a.b.c.d`) is one address, written one way
    // wherever it appears: the forwarding header and what certgate's own pages see.
    let line = b"PROXY TCP6 ::ffff:192.0.2.9 ::ffff:10.0.0.1 4001 443\r\n";
    let mut c = proxied(h.proxied, &[line], cfg.clone()).await.unwrap();
    let seen = forwarded_for(&mut c, "/public/mapped").await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["192.0.2.9"]);
    let local = forwarded_for(&mut c, "/certgate/x").await;
    assert_eq!(local["remote"], "192.0.2.9:4001");

    // v2 with a TLV.
    let v2 = v2_ipv4([198, 51, 100, 23], 61000);
    let mut c = proxied(h.proxied, &[&v2], cfg.clone()).await.unwrap();
    let seen = forwarded_for(&mut c, "/public/v2").await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["198.51.100.23"]);
    // certgate's own pages (which write the requester's address to the audit log) see it too.
    let local = forwarded_for(&mut c, "/certgate/x").await;
    assert_eq!(local["remote"], "198.51.100.23:61000");

    // v1 UNKNOWN and v2 LOCAL (a balancer's health check): the peer's own address stands.
    let mut c = proxied(h.proxied, &[b"PROXY UNKNOWN\r\n"], cfg.clone())
        .await
        .unwrap();
    let seen = forwarded_for(&mut c, "/public/unknown").await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let mut c = proxied(h.proxied, &[local], cfg).await.unwrap();
    let seen = forwarded_for(&mut c, "/public/local").await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_trusted_proxy_header_are_closed_before_tls() {
    let h = Harness::sqlite().await;
    let cfg = h.client_config(None);
    let failures =
        |reason: &str| format!("certgate_handshake_failures_total{{reason=\"{reason}\"}}");

    // From a peer outside trusted_proxies: closed, whatever the header says.
    for header in [
        &b"PROXY TCP4 192.0.2.7 127.0.0.1 50000 443\r\n"[..],
        &v2_ipv4([192, 0, 2, 7], 1),
    ] {
        assert!(
            proxied(h.proxied_untrusted, &[header], cfg.clone())
                .await
                .is_err()
        );
    }
    assert_eq!(h.metric(&failures("proxy_untrusted")).await, 2.0);
    // Closed before TLS: not a byte of a ServerHello comes back.
    let mut tcp = TcpStream::connect(h.proxied_untrusted).await.unwrap();
    let _ = tcp.write_all(b"PROXY UNKNOWN\r\n").await;
    let mut buf = [0u8; 64];
    assert!(matches!(tcp.read(&mut buf).await, Ok(0) | Err(_)));

    // A bare TLS connection on a PROXY listener: its ClientHello is not a header.
    assert!(proxied(h.proxied, &[], cfg.clone()).await.is_err());
    assert_eq!(h.metric(&failures("proxy_header_missing")).await, 1.0);

    // A malformed header: refused, and no TLS either.
    let bad = b"PROXY TCP4 192.0.2.7 127.0.0.1 99999 443\r\n";
    assert!(proxied(h.proxied, &[bad], cfg.clone()).await.is_err());
    assert_eq!(h.metric(&failures("proxy_header_malformed")).await, 1.0);

    // The plain listener is unaffected: a PROXY header there is just a bad handshake.
    assert!(
        proxied(h.optional, &[b"PROXY UNKNOWN\r\n"], cfg.clone())
            .await
            .is_err()
    );
    assert!(
        h.h1(None)
            .await
            .send("GET", "/public/x", &[], "")
            .await
            .is_ok()
    );
    h.shutdown().await;
}

/// `max_connections_per_address` (2 on this listener) counts the address the PROXY header
/// names: two connections from one client are served, a third is closed before TLS while
/// another client's still is, and the address gets its slot back when one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_count_the_address_of_the_proxy_header() {
    let h = Harness::sqlite().await;
    let cfg = h.client_config(None);
    let one = b"PROXY TCP4 192.0.2.50 127.0.0.1 50000 443\r\n";
    let other = b"PROXY TCP4 192.0.2.51 127.0.0.1 50000 443\r\n";
    let mut a = proxied(h.proxied, &[one], cfg.clone()).await.unwrap();
    let mut b = proxied(h.proxied, &[one], cfg.clone()).await.unwrap();
    forwarded_for(&mut a, "/public/a").await;
    forwarded_for(&mut b, "/public/b").await;
    assert!(proxied(h.proxied, &[one], cfg.clone()).await.is_err());
    let limit = "certgate_handshake_failures_total{reason=\"per_address_limit\"}";
    assert_eq!(h.metric(limit).await, 1.0);
    let mut c = proxied(h.proxied, &[other], cfg.clone()).await.unwrap();
    let seen = forwarded_for(&mut c, "/public/c").await;
    assert_eq!(header(&seen, "x-forwarded-for"), ["192.0.2.51"]);
    // Both still served.
    forwarded_for(&mut a, "/public/a2").await;
    forwarded_for(&mut b, "/public/b2").await;

    drop(a);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(mut d) = proxied(h.proxied, &[one], cfg.clone()).await
            && d.send("GET", "/public/d", &[], "").await.is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the address never got its slot back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_forwarded_sends_rfc7239_beside_x_forwarded() {
    let h = Harness::sqlite().await;
    let cfg = h.client_config(None);
    let v2 = v2_ipv6("2001:db8::7".parse().unwrap(), 5000);
    let mut c = proxied(h.proxied, &[&v2], cfg.clone()).await.unwrap();
    let spoofed = [
        ("Forwarded", "for=203.0.113.1;proto=http"),
        ("host", "localhost:8443"),
    ];
    let a = c.send("GET", "/forwarded/x", &spoofed, "").await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let seen = a.json();
    assert_eq!(
        header(&seen, "forwarded"),
        ["for=\"[2001:db8::7]\";proto=https;host=\"localhost:8443\""]
    );
    assert_eq!(header(&seen, "x-forwarded-for"), ["2001:db8::7"]);
    assert_eq!(header(&seen, "x-forwarded-proto"), ["https"]);

    // Other routes keep the default: X-Forwarded-* only, a client's Forwarded removed.
    let mut c = h.h1(None).await;
    let a = c.send("GET", "/public/x", &spoofed, "").await.unwrap();
    let seen = a.json();
    assert!(header(&seen, "forwarded").is_empty());
    assert_eq!(header(&seen, "x-forwarded-for"), ["127.0.0.1"]);
    h.shutdown().await;
}
