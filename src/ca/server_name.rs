//! The names `ca issue-server` may put in a server certificate: IP addresses, and DNS names
//! in the preferred name syntax (RFC 1034 §3.5, RFC 5280 §4.2.1.6) with at least two labels,
//! which is what pkilint and browsers accept. One exception is let through, named: a
//! single-label name such as `localhost`, which the demo and local tests connect to;
//! pkilint reports it as `pkix.invalid_domain_name_syntax`, so it does not belong in a
//! production certificate.

use std::net::IpAddr;

/// What a checked name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerName {
    Ip,
    Dns,
    /// A name of one label (`localhost`): for the demo and tests only.
    SingleLabel,
}

/// Why a name cannot be in a server certificate. The message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a DNS name a server certificate may carry: {why}")]
pub struct ServerNameError {
    pub name: String,
    pub why: &'static str,
}

/// Checks one `--name` of `ca issue-server`.
pub fn check(name: &str) -> Result<ServerName, ServerNameError> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(ServerName::Ip);
    }
    let refuse = |why| {
        Err(ServerNameError {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() || name.len() > 253 {
        return refuse("a DNS name has 1 to 253 characters");
    }
    if name.contains('*') {
        return refuse("wildcards are not issued");
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return refuse("each label has 1 to 63 characters (no empty label, no final dot)");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return refuse("labels hold letters, digits and hyphens only (IDNs in A-label form)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return refuse("a label does not start or end with a hyphen");
        }
    }
    match labels.last() {
        Some(tld) if labels.len() > 1 => {
            if tld.len() < 2 || tld.bytes().all(|b| b.is_ascii_digit()) {
                return refuse(
                    "the last label is a top-level domain of at least 2 characters, not all digits",
                );
            }
            Ok(ServerName::Dns)
        }
        _ => Ok(ServerName::SingleLabel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_and_preferred_syntax_names_pass() {
        assert_eq!(check("127.0.0.1"), Ok(ServerName::Ip));
        assert_eq!(check("::1"), Ok(ServerName::Ip));
        for ok in [
            "gw.example",
            "ib.bank.example",
            "xn--bcher-kva.example",
            "a-b.c-d.jp",
        ] {
            assert_eq!(check(ok), Ok(ServerName::Dns), "{ok}");
        }
        assert_eq!(check("localhost"), Ok(ServerName::SingleLabel));
    }

    #[test]
    fn names_pkilint_calls_invalid_are_refused() {
        for bad in [
            "",
            "*.example.com",
            "foo_bar.example",
            "a.b",
            "x.123",
            "example.",
            ".example",
            "a..example",
            "-a.example",
            "a-.example",
            "bad name.example",
            "bücher.example",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        let e = check("foo_bar.example").unwrap_err().to_string();
        assert!(
            e.contains("foo_bar.example") && e.contains("letters, digits and hyphens"),
            "{e}"
        );
    }
}
