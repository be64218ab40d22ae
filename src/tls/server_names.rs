//! The names a listener answers to: the DNS names and IP addresses its certificate names
//! (subjectAltName). A request whose `Host` is none of them reached the listener by a name
//! no browser would have accepted the certificate for; forwarding it would let the client
//! choose the `X-Forwarded-Host` (and `Forwarded: host=`) an app builds its links from.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;

/// The server names of one listener certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerNames {
    /// Lower-case DNS names; `*.example` covers one label under `example`.
    dns: Box<[Box<str>]>,
    ips: Box<[IpAddr]>,
    /// `ips` as written in their usual form: a host spelt so is matched without parsing.
    ip_text: Box<[Box<str>]>,
}

impl ServerNames {
    /// The names of the leaf certificate `der`; none when it names none (or cannot be read):
    /// such a listener answers to any host, as before names were checked.
    pub fn of_leaf(der: &[u8]) -> Self {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return Self::default();
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return Self::default();
        };
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => {
                    dns.push(n.trim_end_matches('.').to_ascii_lowercase().into());
                }
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        ips.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
        Self {
            dns: dns.into(),
            ip_text: ips.iter().map(|ip| ip.to_string().into()).collect(),
            ips: ips.into(),
        }
    }

    /// Whether the certificate names no server at all (nothing to check against).
    pub fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.ips.is_empty()
    }

    /// Whether `host` (lower-case, without port or trailing dot; an IPv6 address without
    /// brackets) is one of the names, as a client verifying the certificate would match it.
    pub fn covers(&self, host: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        // Every request asks: the usual spelling of a name or an address first.
        if self
            .dns
            .iter()
            .chain(self.ip_text.iter())
            .any(|n| **n == *host)
        {
            return true;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.ips.contains(&ip);
        }
        self.dns.iter().any(|name| match name.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sans: &[&str]) -> ServerNames {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        ServerNames::of_leaf(cert.der())
    }

    #[test]
    fn names_and_addresses_of_the_certificate_are_covered() {
        let n = names(&["IB.Bank.Example", "*.apps.bank.example", "127.0.0.1", "::1"]);
        for host in ["ib.bank.example", "x.apps.bank.example", "127.0.0.1", "::1"] {
            assert!(n.covers(host), "{host}");
        }
        for host in [
            "evil.example",
            "bank.example",
            "apps.bank.example",
            "a.b.apps.bank.example",
            ".apps.bank.example",
            "127.0.0.2",
            "::2",
            "ib.bank.example.evil",
        ] {
            assert!(!n.covers(host), "{host}");
        }
    }

    #[test]
    fn a_certificate_without_names_restricts_nothing() {
        let n = ServerNames::of_leaf(b"not a certificate");
        assert!(n.is_empty() && n.covers("anything.example"));
    }
}
