//! Removing the headers a client could use to pretend an identity. The set is derived from
//! what the identity formats declare ([`super::IdentityFormat::owned_names`]) plus the
//! forwarding names, so a new format is stripped without an edit here. Names are compared
//! lower-cased with `_` read as `-`, as CGI-style apps read them.

use http::{HeaderMap, HeaderName};

use super::format::OwnedName;

/// Names no format writes but no client may set either: what proxies say about the
/// connection, and another common spelling of a forwarded client certificate.
const FORWARDING: [OwnedName; 4] = [
    OwnedName::Prefix("x-forwarded-"),
    OwnedName::Exact(std::borrow::Cow::Borrowed("forwarded")),
    OwnedName::Exact(std::borrow::Cow::Borrowed("x-real-ip")),
    OwnedName::Exact(std::borrow::Cow::Borrowed("x-client-cert")),
];

/// The header names stripped from every request.
#[derive(Debug, Clone)]
pub struct ReservedNames {
    /// Lower-case, `-` between words.
    prefixes: Box<[Box<str>]>,
    /// Lower-case, `-` between words; none covered by a prefix.
    exact: Box<[Box<str>]>,
}

impl ReservedNames {
    /// The formats' names plus the forwarding names.
    pub fn derive(owned: impl IntoIterator<Item = OwnedName>) -> Self {
        let mut prefixes: Vec<Box<str>> = Vec::new();
        let mut exact: Vec<Box<str>> = Vec::new();
        for name in owned.into_iter().chain(FORWARDING) {
            match name {
                OwnedName::Prefix(p) => prefixes.push(normalized(p)),
                OwnedName::Exact(n) => exact.push(normalized(&n)),
            }
        }
        prefixes.sort();
        prefixes.dedup();
        exact.sort();
        exact.dedup();
        // A name under a stripped prefix needs no comparison of its own.
        exact.retain(|n| !prefixes.iter().any(|p| n.starts_with(&**p)));
        Self {
            prefixes: prefixes.into(),
            exact: exact.into(),
        }
    }

    /// Whether `name`, read lower-case with `_` as `-`, is a name a client must never set.
    /// Compared without allocating: this runs for every header of every request.
    pub fn is_reserved(&self, name: &str) -> bool {
        let name = name.as_bytes();
        self.prefixes
            .iter()
            .any(|p| name.len() >= p.len() && same_name(&name[..p.len()], p))
            || self.exact.iter().any(|e| same_name(name, e))
    }

    /// Removes every reserved header from `headers`.
    pub fn strip(&self, headers: &mut HeaderMap) {
        if !headers.keys().any(|n| self.is_reserved(n.as_str())) {
            return;
        }
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| self.is_reserved(n.as_str()))
            .cloned()
            .collect();
        for n in doomed {
            headers.remove(&n);
        }
    }
}

/// `name` lower-cased with `_` as `-`, the form compared against.
fn normalized(name: &str) -> Box<str> {
    name.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// `presented == wanted` with ASCII case ignored and `_` in `presented` read as `-`;
/// `wanted` is already normalized.
fn same_name(presented: &[u8], wanted: &str) -> bool {
    presented.len() == wanted.len()
        && presented.iter().zip(wanted.bytes()).all(|(&p, w)| {
            let p = if p == b'_' { b'-' } else { p };
            p.eq_ignore_ascii_case(&w)
        })
}
