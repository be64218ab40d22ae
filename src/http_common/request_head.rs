//! The request head's method, authority and body framing, judged before anything routes
//! the request.
//!
//! A gateway and the app behind it must agree on which host a request names, and the
//! gateway is an origin server, never a proxy that opens tunnels or echoes requests:
//!
//! - `CONNECT` asks for a tunnel to an address of the client's choosing; an app that obeys
//!   it (a servlet container with a proxy module, a debugging endpoint) would carry bytes
//!   the gateway never checks. `TRACE` (and IIS's `TRACK`) echoes the request back, the
//!   identity headers the gateway adds included. All three are answered 405, as nginx does.
//! - The host: an HTTP/1.1 request needs exactly one `Host` line (RFC 9112 §3.2: a server
//!   answers 400 to none or several); an absolute-form target and an HTTP/2 `:authority`
//!   must name the same host as a `Host` line sent beside them (RFC 9113 §8.3.1), because
//!   readers differ on which one wins; the value is a host name or IP literal with an
//!   optional port, nothing else (no user info, no percent-encoding, no sub-delimiters that
//!   one reader drops and another keeps).
//! - The body's framing: a `Transfer-Encoding` other than one `chunked` is answered 501
//!   (RFC 9112 §6.1), as parsers disagree on lists such as `identity, chunked`.

use http::{HeaderMap, Method, Request, Version, header};

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadRefusal {
    #[error("method {0} is not served through the gateway")]
    Method(RefusedMethod),
    #[error("no Host header on an HTTP/1.1 request")]
    MissingHost,
    #[error("more than one Host header")]
    SeveralHosts,
    #[error("the Host header is not a host name with an optional port")]
    InvalidHost,
    #[error("the request target names another host than the Host header")]
    HostsDisagree,
    #[error("the request's Transfer-Encoding is not chunked alone")]
    TransferCoding,
}

/// The methods the gateway never forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedMethod {
    Connect,
    Trace,
    Track,
}

impl std::fmt::Display for RefusedMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connect => "CONNECT",
            Self::Trace => "TRACE",
            Self::Track => "TRACK",
        })
    }
}

impl HeadRefusal {
    /// The stable name of the reason, for the security log.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Method(_) => "method",
            Self::MissingHost => "missing_host",
            Self::SeveralHosts => "several_hosts",
            Self::InvalidHost => "invalid_host",
            Self::HostsDisagree => "hosts_disagree",
            Self::TransferCoding => "transfer_coding",
        }
    }
}

/// The methods a 405 from the gateway names in `Allow`: every standard method it forwards.
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH";

/// Checks the method and the host of `req`, and returns the authority the request names:
/// the target's (HTTP/2 `:authority`, an absolute-form target) or else `Host`; None only for
/// HTTP/1.0 without a host. Cheap on the common request: one `Host` line (or an HTTP/2
/// `:authority` alone) of plain characters, no allocation.
pub fn check<B>(req: &Request<B>) -> Result<Option<&str>, HeadRefusal> {
    if let Some(m) = refused_method(req.method()) {
        return Err(HeadRefusal::Method(m));
    }
    if req.headers().contains_key(header::TRANSFER_ENCODING) && !chunked_alone(req.headers()) {
        return Err(HeadRefusal::TransferCoding);
    }
    let host = single_host(req.headers())?;
    if let Some(h) = host {
        check_authority(h)?;
    }
    match (req.uri().authority(), host) {
        (Some(a), host) => {
            check_authority(a.as_str())?;
            if host.is_some_and(|h| !same_authority(a.as_str(), h)) {
                return Err(HeadRefusal::HostsDisagree);
            }
            Ok(Some(a.as_str()))
        }
        (None, Some(h)) => Ok(Some(h)),
        // HTTP/1.0 may omit the host; HTTP/1.1 and HTTP/2 must name it.
        (None, None) if matches!(req.version(), Version::HTTP_10 | Version::HTTP_09) => Ok(None),
        (None, None) => Err(HeadRefusal::MissingHost),
    }
}

/// Compared ignoring case: methods are case-sensitive (RFC 9110 §9.1), but some frameworks
/// (Werkzeug) upper-case the method they read, so `trace` would be TRACE to them.
fn refused_method(m: &Method) -> Option<RefusedMethod> {
    let m = m.as_str();
    if m.eq_ignore_ascii_case("CONNECT") {
        Some(RefusedMethod::Connect)
    } else if m.eq_ignore_ascii_case("TRACE") {
        Some(RefusedMethod::Trace)
    } else if m.eq_ignore_ascii_case("TRACK") {
        Some(RefusedMethod::Track)
    } else {
        None
    }
}

/// Whether `Transfer-Encoding` is exactly one `chunked` (any case), in a request or an app's
/// answer: the one coding the gateway decodes and the other side's hyper encodes again. `gzip, chunked` would reach the app as
/// plain `chunked` with gzip bytes inside; `identity, chunked` or `chunked, chunked` are read
/// differently by different parsers (RFC 9112 §6.1; gunicorn before 22 took the first).
pub fn chunked_alone(h: &HeaderMap) -> bool {
    let mut codings = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty());
    codings
        .next()
        .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"))
        && codings.next().is_none()
}

/// The one `Host` value, if any; several lines, or a value that is not visible ASCII,
/// are refused.
fn single_host(h: &HeaderMap) -> Result<Option<&str>, HeadRefusal> {
    let mut values = h.get_all(header::HOST).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HeadRefusal::SeveralHosts);
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| HeadRefusal::InvalidHost)
}

/// `host[:port]`, where host is a name of letters, digits, `-`, `_` and `.`, an IPv4
/// address, or an IPv6 literal in brackets, and port is 1 to 5 digits from 1 to 65535.
fn check_authority(a: &str) -> Result<(), HeadRefusal> {
    let (host, port) = split_authority(a).ok_or(HeadRefusal::InvalidHost)?;
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    // A port a TCP connection can have (1 to 65535): `:0` or `:99999` is no server's.
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n != 0)
    });
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(HeadRefusal::InvalidHost)
    }
}

/// Splits `host[:port]`; an IPv6 literal keeps its brackets. None when the brackets are
/// unbalanced or something follows them other than a port.
fn split_authority(a: &str) -> Option<(&str, Option<&str>)> {
    if a.starts_with('[') {
        let end = a.find(']')?;
        let (host, rest) = a.split_at(end + 1);
        return match rest {
            "" => Some((host, None)),
            _ => rest.strip_prefix(':').map(|p| (host, Some(p))),
        };
    }
    Some(match a.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (a, None),
    })
}

/// Whether two checked authorities name the same host and port, ignoring ASCII case.
fn same_authority(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, version: Version, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(uri).version(version);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    /// The check's verdict without the authority it returns.
    fn judge(r: &Request<()>) -> Result<(), HeadRefusal> {
        check(r).map(|_| ())
    }

    fn h11(uri: &str, hosts: &[&str]) -> Result<(), HeadRefusal> {
        judge(&req("GET", uri, Version::HTTP_11, hosts))
    }

    #[test]
    fn ordinary_heads_pass() {
        for host in [
            "ib.example",
            "IB.Example:8443",
            "127.0.0.1",
            "127.0.0.1:443",
            "[::1]",
            "[::1]:8443",
            "app_01.corp.internal",
            "ib.example.",
        ] {
            assert_eq!(h11("/ib/top", &[host]), Ok(()), "{host}");
        }
        // HTTP/2: `:authority` alone, or with the same host beside it.
        let h2 = req("GET", "https://ib.example/ib", Version::HTTP_2, &[]);
        assert_eq!(judge(&h2), Ok(()));
        let h2 = req(
            "GET",
            "https://ib.example/ib",
            Version::HTTP_2,
            &["IB.example"],
        );
        assert_eq!(judge(&h2), Ok(()));
        // HTTP/1.0 may come without a host.
        assert_eq!(judge(&req("GET", "/ib", Version::HTTP_10, &[])), Ok(()));
        // Other methods, standard or not, go to the app.
        for m in ["POST", "PATCH", "PROPFIND", "TRACES"] {
            assert_eq!(
                judge(&req(m, "/", Version::HTTP_11, &["ib.example"])),
                Ok(()),
                "{m}"
            );
        }
    }

    #[test]
    fn the_named_authority_is_the_targets_else_the_hosts() {
        let h1 = req("GET", "/ib", Version::HTTP_11, &["IB.example:8443"]);
        assert_eq!(check(&h1), Ok(Some("IB.example:8443")));
        let h2 = req(
            "GET",
            "https://ib.example/ib",
            Version::HTTP_2,
            &["IB.EXAMPLE"],
        );
        assert_eq!(check(&h2), Ok(Some("ib.example")));
        assert_eq!(check(&req("GET", "/ib", Version::HTTP_10, &[])), Ok(None));
    }

    #[test]
    fn tunnels_and_echoes_are_refused() {
        let connect = req(
            "CONNECT",
            "app.internal:22",
            Version::HTTP_11,
            &["app.internal:22"],
        );
        assert_eq!(
            judge(&connect),
            Err(HeadRefusal::Method(RefusedMethod::Connect))
        );
        for (m, r) in [
            ("TRACE", RefusedMethod::Trace),
            ("TRACK", RefusedMethod::Track),
        ] {
            let q = req(m, "/ib", Version::HTTP_11, &["ib.example"]);
            assert_eq!(judge(&q), Err(HeadRefusal::Method(r)), "{m}");
        }
    }

    #[test]
    fn a_body_is_chunked_alone_or_not_coded() {
        let with_te = |values: &[&str]| {
            let mut r = req("POST", "/ib", Version::HTTP_11, &["ib.example"]);
            for v in values {
                r.headers_mut()
                    .append(header::TRANSFER_ENCODING, v.parse().unwrap());
            }
            judge(&r)
        };
        for ok in [&["chunked"][..], &["Chunked"], &[" chunked "], &[]] {
            assert_eq!(with_te(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            &["identity, chunked"][..],
            &["gzip, chunked"],
            &["chunked, chunked"],
            &["chunked", "chunked"],
            &["chunked, identity"],
            &["identity"],
            &["xchunked"],
            &[""],
        ] {
            assert_eq!(with_te(bad), Err(HeadRefusal::TransferCoding), "{bad:?}");
        }
    }

    #[test]
    fn the_host_must_be_named_once() {
        assert_eq!(h11("/ib", &[]), Err(HeadRefusal::MissingHost));
        assert_eq!(
            h11("/ib", &["ib.example", "ib.example"]),
            Err(HeadRefusal::SeveralHosts)
        );
        assert_eq!(
            h11("/ib", &["ib.example", "other.example"]),
            Err(HeadRefusal::SeveralHosts)
        );
        assert_eq!(
            judge(&req("GET", "/ib", Version::HTTP_2, &[])),
            Err(HeadRefusal::MissingHost)
        );
    }

    #[test]
    fn a_host_is_a_name_or_address_and_a_port() {
        for bad in [
            "",
            ":443",
            "user@ib.example",
            "ib.example:",
            "ib.example:443:1",
            "ib.example:123456",
            "ib.example:99999",
            "ib.example:65536",
            "ib.example:0",
            "ib.example:00000",
            "ib.example:https",
            "ib%2eexample",
            "ib.example;x",
            "ib.example,other.example",
            "ib example",
            "[::1",
            "[::1]x",
            "[not-v6]:443",
            "ib.example/ib",
        ] {
            assert_eq!(h11("/ib", &[bad]), Err(HeadRefusal::InvalidHost), "{bad:?}");
        }
    }

    #[test]
    fn the_target_and_host_must_agree() {
        assert_eq!(
            h11("https://ib.example/ib", &["ib.example"]),
            Ok(()),
            "absolute form, same host"
        );
        assert_eq!(
            h11("https://other.example/ib", &["ib.example"]),
            Err(HeadRefusal::HostsDisagree)
        );
        assert_eq!(
            h11("https://ib.example:8443/ib", &["ib.example"]),
            Err(HeadRefusal::HostsDisagree),
            "the port counts"
        );
        let h2 = req(
            "GET",
            "https://ib.example/ib",
            Version::HTTP_2,
            &["other.example"],
        );
        assert_eq!(judge(&h2), Err(HeadRefusal::HostsDisagree));
        let h2 = req("GET", "https://user@ib.example/ib", Version::HTTP_2, &[]);
        assert_eq!(judge(&h2), Err(HeadRefusal::InvalidHost));
    }
}
