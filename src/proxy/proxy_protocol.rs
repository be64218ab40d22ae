//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a layer-4 load
//! balancer sends before the client's own bytes, naming the client's address.
//!
//! The header is read without consuming anything after it: those bytes are the client's
//! TLS ClientHello and must reach rustls untouched. So the socket is peeked, the bytes are
//! judged, and only those known to belong to the header are read off.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest v1 header, CRLF included (spec §2.1).
const V1_MAX: usize = 107;
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and protocol, length.
const V2_FIXED: usize = 16;
/// Largest v2 address block and TLVs accepted. The spec allows 64 KiB; load balancers send
/// a few hundred bytes at most, and a bound keeps what a peer can make us buffer small.
const V2_MAX_BLOCK: usize = 2048;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    #[error("the connection did not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("the connection closed inside the PROXY protocol header")]
    Eof,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

impl ProxyHeaderError {
    /// A short, stable reason (a metric label).
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "proxy_header_missing",
            Self::Malformed(_) => "proxy_header_malformed",
            Self::Eof => "eof",
            Self::Io(_) => "io",
        }
    }
}

/// What [`parse`] made of the bytes so far.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Every byte seen is part of a header that has not ended yet.
    Incomplete,
    /// The header is the first `len` bytes; `source` is the client's address, `None` when
    /// the header names none (v1 `UNKNOWN`, v2 `LOCAL`, or a family other than IPv4/IPv6):
    /// the connection's own peer address stands then.
    Done {
        len: usize,
        source: Option<SocketAddr>,
    },
}

/// Judges the first bytes of a connection.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(Parsed::Incomplete)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(ProxyHeaderError::Missing);
    }
    parse_v1(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let malformed = ProxyHeaderError::Malformed;
    let seen = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = seen.windows(2).position(|w| w == b"\r\n") else {
        // Only printable ASCII before the CRLF: refuse garbage without waiting for more.
        if seen
            .iter()
            .any(|&b| !(b == b'\r' || (0x20..0x7f).contains(&b)))
        {
            return Err(malformed("v1: not printable ASCII"));
        }
        return if buf.len() >= V1_MAX {
            Err(malformed("v1: longer than 107 bytes"))
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line =
        std::str::from_utf8(&buf[V1_PREFIX.len()..end]).map_err(|_| malformed("v1: not ASCII"))?;
    let len = end + 2;
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        // The spec lets UNKNOWN carry anything up to the CRLF; the receiver ignores it.
        ["UNKNOWN", ..] => None,
        [proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let (src, dst): (IpAddr, IpAddr) = match (src.parse(), dst.parse()) {
                (Ok(s), Ok(d)) => (s, d),
                _ => return Err(malformed("v1: bad address")),
            };
            let v4 = *proto == "TCP4";
            if src.is_ipv4() != v4 || dst.is_ipv4() != v4 {
                return Err(malformed("v1: address does not match the protocol"));
            }
            let sport = port(sport).ok_or(malformed("v1: bad port"))?;
            port(dport).ok_or(malformed("v1: bad port"))?;
            Some(SocketAddr::new(src, sport))
        }
        _ => {
            return Err(malformed(
                "v1: expected TCP4, TCP6 or UNKNOWN and four fields",
            ));
        }
    };
    Ok(Parsed::Done { len, source })
}

/// A decimal port without sign or leading zeros.
fn port(s: &str) -> Option<u16> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits && (s == "0" || !s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyHeaderError> {
    let malformed = ProxyHeaderError::Malformed;
    let Some(fixed) = buf.get(..V2_FIXED) else {
        return Ok(Parsed::Incomplete);
    };
    let (ver_cmd, fam, block) = (
        fixed[12],
        fixed[13],
        usize::from(u16::from_be_bytes([fixed[14], fixed[15]])),
    );
    if ver_cmd >> 4 != 2 {
        return Err(malformed("v2: version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(malformed("v2: unknown command")),
    };
    if block > V2_MAX_BLOCK {
        return Err(malformed("v2: address block and TLVs too long"));
    }
    let len = V2_FIXED + block;
    let Some(body) = buf.get(V2_FIXED..len) else {
        return Ok(Parsed::Incomplete);
    };
    // LOCAL: the balancer's own connection (health checks); the address block is ignored.
    if local {
        return Ok(Parsed::Done { len, source: None });
    }
    let (family, transport) = (fam >> 4, fam & 0x0f);
    let (source, addresses) = match family {
        // AF_UNSPEC, AF_UNIX: no client address the gateway can use.
        0 | 3 => return Ok(Parsed::Done { len, source: None }),
        1 | 2 if transport != 1 => return Err(malformed("v2: only TCP (STREAM) is served")),
        1 => {
            let a = body.get(..12).ok_or(malformed("v2: short IPv4 block"))?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            (
                SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])),
                12,
            )
        }
        2 => {
            let a = body.get(..36).ok_or(malformed("v2: short IPv6 block"))?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            (
                SocketAddr::new(ip.into(), u16::from_be_bytes([a[32], a[33]])),
                36,
            )
        }
        _ => return Err(malformed("v2: unknown address family")),
    };
    // Nothing in the TLVs is used, but they must fill the rest of the block exactly: a block
    // that does not parse is a header another reader would take differently (an IPv6 pair
    // sent with the IPv4 family byte, say).
    check_tlvs(&buf[..len], V2_FIXED + addresses)?;
    Ok(Parsed::Done {
        len,
        source: Some(source),
    })
}

/// PP2_TYPE_CRC32C: a checksum of the whole header, taken with its own value zeroed.
const TLV_CRC32C: u8 = 0x03;

/// The TLVs of `header` from `start` on: each whole, and a CRC32C one matching.
fn check_tlvs(header: &[u8], start: usize) -> Result<(), ProxyHeaderError> {
    let malformed = ProxyHeaderError::Malformed;
    let mut at = start;
    while at < header.len() {
        let Some(&[kind, hi, lo]) = header.get(at..at + 3) else {
            return Err(malformed("v2: a TLV is cut short"));
        };
        let value_at = at + 3;
        let end = value_at + usize::from(u16::from_be_bytes([hi, lo]));
        let value = header
            .get(value_at..end)
            .ok_or(malformed("v2: a TLV runs past the header"))?;
        if kind == TLV_CRC32C {
            let sent: [u8; 4] = value
                .try_into()
                .map_err(|_| malformed("v2: a CRC32C TLV is not 4 bytes"))?;
            let mut zeroed = header.to_vec();
            zeroed[value_at..end].fill(0);
            if crc32c(&zeroed) != u32::from_be_bytes(sent) {
                return Err(malformed("v2: the CRC32C TLV does not match the header"));
            }
        }
        at = end;
    }
    Ok(())
}

/// CRC-32C (Castagnoli), bit by bit: a header is a few hundred bytes at most.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Reads the PROXY header off `tcp`, leaving every byte after it in the socket. The caller
/// bounds the time this takes.
pub(crate) async fn read_header(
    tcp: &mut TcpStream,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut header = Vec::with_capacity(V1_MAX);
    let mut peeked = [0u8; 512];
    loop {
        let n = tcp.peek(&mut peeked).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Eof);
        }
        let before = header.len();
        header.extend_from_slice(&peeked[..n]);
        match parse(&header)? {
            Parsed::Done { len, source } => {
                consume(tcp, len - before).await?;
                return Ok(source);
            }
            // Everything peeked is header: take it off the socket so the next peek waits
            // for more instead of returning the same bytes.
            Parsed::Incomplete => consume(tcp, n).await?,
        }
    }
}

async fn consume(tcp: &mut TcpStream, n: usize) -> Result<(), ProxyHeaderError> {
    let mut sink = [0u8; 512];
    tcp.read_exact(&mut sink[..n]).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProxyHeaderError::Eof
        } else {
            ProxyHeaderError::Io(e)
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> (usize, Option<SocketAddr>) {
        match parse(buf) {
            Ok(Parsed::Done { len, source }) => (len, source),
            other => panic!("{other:?} for {buf:?}"),
        }
    }

    /// Every proper prefix of a header is `Incomplete`: the header may arrive in pieces.
    fn assert_prefixes_incomplete(header: &[u8]) {
        for cut in 1..header.len() {
            assert_eq!(
                parse(&header[..cut]).unwrap(),
                Parsed::Incomplete,
                "prefix of {cut} bytes"
            );
        }
    }

    fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(fam);
        h.extend_from_slice(&u16::try_from(block.len()).unwrap().to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    #[test]
    fn v1_headers_name_the_client_and_stop_at_crlf() {
        let mut buf = b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 443\r\n".to_vec();
        let header_len = buf.len();
        assert_prefixes_incomplete(&buf);
        buf.extend_from_slice(&[0x16, 0x03, 0x01]); // a ClientHello follows
        assert_eq!(
            done(&buf),
            (header_len, Some("192.0.2.7:50000".parse().unwrap()))
        );

        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n";
        assert_eq!(done(h), (h.len(), Some("[2001:db8::1]:1".parse().unwrap())));
        assert_eq!(done(b"PROXY UNKNOWN\r\n"), (15, None));
        let h = b"PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n";
        assert_eq!(done(h), (h.len(), None));
    }

    #[test]
    fn bad_v1_headers_are_refused() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 10.0.0.1 50000\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 65536 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 +1 443\r\n",
            b"PROXY TCP4 192.0.2.7 10.0.0.1 01 443\r\n",
            b"PROXY TCP4  192.0.2.7 10.0.0.1 1 443\r\n",
            b"PROXY UDP4 192.0.2.7 10.0.0.1 1 443\r\n",
            b"PROXY TCP4 192.0.2.7\x00",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyHeaderError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [&b"PROXY UNKNOWN "[..], &[b'a'; 100]].concat();
        assert!(matches!(parse(&long), Err(ProxyHeaderError::Malformed(_))));
    }

    #[test]
    fn anything_else_is_missing_at_the_first_wrong_byte() {
        // A TLS ClientHello, an HTTP request, a near miss.
        for bad in [
            &[0x16u8, 0x03, 0x01][..],
            b"GET / HTTP/1.1\r\n",
            b"PROXZ",
            b"\r\n\r\n\0\r\nQUIX",
        ] {
            assert!(matches!(parse(bad), Err(ProxyHeaderError::Missing)));
        }
    }

    #[test]
    fn v2_headers_name_the_client_and_skip_tlvs() {
        let mut block = vec![192, 0, 2, 7, 10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb];
        block.extend_from_slice(&[0x04, 0x00, 0x02, 0xaa, 0xbb]); // a TLV, skipped
        let mut buf = v2(1, 0x11, &block);
        let header_len = buf.len();
        assert_prefixes_incomplete(&buf);
        buf.extend_from_slice(&[0x16, 0x03, 0x01]);
        assert_eq!(
            done(&buf),
            (header_len, Some("192.0.2.7:50000".parse().unwrap()))
        );

        let mut block = vec![0x20, 0x01, 0x0d, 0xb8];
        block.extend_from_slice(&[0; 11]);
        block.push(1);
        block.extend_from_slice(&[0; 16]);
        block.extend_from_slice(&[0x00, 0x50, 0x01, 0xbb]);
        let h = v2(1, 0x21, &block);
        assert_eq!(
            done(&h),
            (h.len(), Some("[2001:db8::1]:80".parse().unwrap()))
        );

        // A CRC32C TLV that matches (HAProxy's `send-proxy-v2-ssl-cn crc32c` sends one).
        let mut block = vec![192, 0, 2, 7, 10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb];
        block.extend_from_slice(&[TLV_CRC32C, 0x00, 0x04, 0, 0, 0, 0]);
        let mut h = v2(1, 0x11, &block);
        let sum = crc32c(&h);
        let n = h.len();
        h[n - 4..].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(done(&h), (n, Some("192.0.2.7:50000".parse().unwrap())));

        // LOCAL (a health check) and AF_UNIX/UNSPEC keep the connection's own address.
        let h = v2(0, 0x00, &[]);
        assert_eq!(done(&h), (16, None));
        let h = v2(1, 0x31, &[0; 216]);
        assert_eq!(done(&h), (h.len(), None));
        let h = v2(1, 0x00, &[]);
        assert_eq!(done(&h), (16, None));
    }

    #[test]
    fn crc32c_is_castagnolis() {
        // The check value of CRC-32C (RFC 3720 B.4 lists the same polynomial).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn bad_v2_headers_are_refused() {
        let ipv4 = [192, 0, 2, 7, 10, 0, 0, 1, 0, 1, 0, 2];
        let mut wrong_version = v2(1, 0x11, &ipv4);
        wrong_version[12] = 0x11;
        for bad in [
            wrong_version,
            v2(2, 0x11, &ipv4),          // unknown command
            v2(1, 0x12, &ipv4),          // UDP
            v2(1, 0x11, &ipv4[..8]),     // short block
            v2(1, 0x21, &[0; 20]),       // short IPv6 block
            v2(1, 0x41, &ipv4),          // unknown family
            v2(1, 0x11, &vec![0; 2049]), // too long
        ] {
            assert!(
                matches!(parse(&bad), Err(ProxyHeaderError::Malformed(_))),
                "{bad:?}"
            );
        }
        // TLVs that do not fill the block exactly, and a checksum that does not match.
        let mut overrun = ipv4.to_vec();
        overrun.extend_from_slice(&[0x02, 0xff, 0xff, b'a', b'b', b'c']);
        let mut cut = ipv4.to_vec();
        cut.extend_from_slice(&[0x02, 0x00]);
        // An IPv6 pair (2001:db8::1 to 2001:db8::2, 50000 to 443) sent with the IPv4
        // family byte: its tail does not read as TLVs.
        let mut v6_as_v4 = vec![0x20, 0x01, 0x0d, 0xb8];
        v6_as_v4.extend_from_slice(&[0; 11]);
        v6_as_v4.push(1);
        v6_as_v4.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        v6_as_v4.extend_from_slice(&[0; 11]);
        v6_as_v4.push(2);
        v6_as_v4.extend_from_slice(&[0xc3, 0x50, 0x01, 0xbb]);
        let mut bad_crc = ipv4.to_vec();
        bad_crc.extend_from_slice(&[TLV_CRC32C, 0x00, 0x04, 1, 2, 3, 4]);
        for bad in [overrun, cut, v6_as_v4, bad_crc] {
            let h = v2(1, 0x11, &bad);
            assert!(
                matches!(parse(&h), Err(ProxyHeaderError::Malformed(_))),
                "{h:?}"
            );
        }
        // The length is judged before waiting for the block.
        let mut h = v2(1, 0x11, &[]);
        h[14..16].copy_from_slice(&60000u16.to_be_bytes());
        assert!(matches!(parse(&h), Err(ProxyHeaderError::Malformed(_))));
    }

    /// Over a real socket: a header arriving in pieces is read whole, and the bytes after
    /// it stay in the socket for TLS.
    #[tokio::test]
    async fn read_header_takes_the_header_only() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"PROXY TCP4 192.0.2.7 10.0.").await.unwrap();
            c.flush().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            c.write_all(b"0.1 50000 443\r\nHELLO").await.unwrap();
            c.shutdown().await.unwrap();
        });
        let (mut tcp, _) = listener.accept().await.unwrap();
        let source = read_header(&mut tcp).await.unwrap();
        assert_eq!(source, Some("192.0.2.7:50000".parse().unwrap()));
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"HELLO");
        client.await.unwrap();
    }
}
