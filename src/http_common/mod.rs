//! What every HTTP surface of certgate shares (the gateway, certgate's own pages, the admin
//! listener, the demo app): the one body type, HTML escaping, the stop signal that ends
//! accept loops, the request-head rules every TLS listener applies (`request_head`), and the
//! one canonical form of a request path (`canonical`), which the configuration's paths are
//! held to as well.
//!
//! A leaf: it imports nothing else of the crate. It must not route, authenticate or decide.

pub mod address_slots;
pub mod body;
pub mod canonical;
pub mod header_case;
pub mod request_head;

use tokio::sync::watch;

/// `Strict-Transport-Security` of every answer on a TLS listener that carries none: a year,
/// this host only (other hosts of the bank's domain are not certgate's to decide). An app
/// that sends its own, `max-age=0` included, keeps it.
pub const HSTS: http::HeaderValue = http::HeaderValue::from_static("max-age=31536000");

/// Adds [`HSTS`] unless the answer has its own.
pub fn add_hsts(h: &mut http::HeaderMap) {
    h.entry(http::header::STRICT_TRANSPORT_SECURITY)
        .or_insert(HSTS);
}

/// A dual-stack socket (or a PROXY header's TCP6 line) shows an IPv4 client as
/// `::ffff:a.b.c.d`: read as the IPv4 address, so the access log, the audit log, the
/// forwarding headers and the limits all name a client one way.
pub fn unmapped(a: std::net::SocketAddr) -> std::net::SocketAddr {
    match a.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, |v4| {
            std::net::SocketAddr::new(std::net::IpAddr::V4(v4), a.port())
        }),
        std::net::IpAddr::V4(_) => a,
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The `WWW-Authenticate` challenge of a 401 that asks for a client certificate. HTTP
/// requires a challenge on every 401 (RFC 9110 §15.5.2) and has no registered scheme for
/// TLS client authentication; clients skip a scheme they do not know, and strict ones
/// (libest) stop complaining that the header is missing.
pub const CLIENT_CERTIFICATE_CHALLENGE: &str = "ClientCertificate realm=\"certgate\"";

/// How many seconds a client is asked to wait after a 503 or 429 (`Retry-After`).
pub const RETRY_AFTER_SECS: &str = "30";

/// Completes when `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
