//! The receiver's address, from `[trace] otlp_endpoint`: `http://host:port[/base]`, to which
//! `/v1/traces` is appended as OTLP/HTTP's base-URL rule says.

use std::fmt;

/// A parsed endpoint; see the module comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    base: String,
}

impl Endpoint {
    /// Only `http://`: the receiver is a local agent or collector, which forwards over its
    /// own protected link. Credentials in the URL are refused: they would end up in logs.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("must start with http:// (a local OTLP collector or agent)")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err("must not hold credentials".into());
        }
        if path.contains(['?', '#']) {
            return Err("must not have a query or fragment".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| "bad port")?,
                None if after.is_empty() => 4318,
                None => return Err("bad host".into()),
            };
            (format!("[{h}]"), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| "bad port")?),
                None => (authority.to_owned(), 4318),
            }
        };
        if host.is_empty() || host == "[]" {
            return Err("has no host".into());
        }
        Ok(Self {
            host,
            port,
            base: path.trim_end_matches('/').to_owned(),
        })
    }

    pub(super) fn connect_to(&self) -> (String, u16) {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        (h.to_owned(), self.port)
    }

    pub(super) fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub(super) fn traces_path(&self) -> String {
        format!("{}/v1/traces", self.base)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_the_default_port_and_base_path() {
        let e = Endpoint::parse("http://127.0.0.1:4318").expect("plain");
        assert_eq!(e.traces_path(), "/v1/traces");
        assert_eq!(e.connect_to(), ("127.0.0.1".into(), 4318));
        let e = Endpoint::parse("http://collector/otlp/").expect("base");
        assert_eq!(e.traces_path(), "/otlp/v1/traces");
        assert_eq!(e.authority(), "collector:4318");
        let e = Endpoint::parse("http://[::1]:9000").expect("v6");
        assert_eq!(e.connect_to(), ("::1".into(), 9000));
        assert_eq!(e.authority(), "[::1]:9000");
    }

    #[test]
    fn wrong_endpoints_are_refused() {
        for bad in [
            "https://c:4318",
            "c:4318",
            "http://user:pw@c:4318",
            "http://c:port",
            "http://:4318",
            "http://c/v1?x=1",
            "http://[::1",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
