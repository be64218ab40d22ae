//! The shape of a table of certgate's own paths and the one lookup that both ownership
//! ([`owns`], asked by the gateway on every request) and dispatch ([`resolve`]) use, so the
//! two cannot disagree. The table itself is declared in `routes.rs`; this module knows
//! nothing of the handlers, protocols or the gateway.
//!
//! A table is a short list of [`Mount`]s (path families such as `/certgate` or
//! `/.well-known/est/`), each with its routes. A request path is compared with the few mount
//! prefixes first, so a path that belongs to an upstream app costs a handful of byte
//! comparisons and no allocation.

use futures_util::future::BoxFuture;
use http::{HeaderValue, Method};

use super::request::WebRequest;
use super::respond::WebResponse;

/// Who may call an own path. What the gateway does for each is decided in `service.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a client certificate is used when present (the landing page's renewal
    /// notice).
    Public,
    /// A certificate holder renewing. The gateway lets callers without a certificate
    /// through so the protocol can refuse them in its own words (JSON for the pages, text
    /// for EST); the lifecycle judges the certificate (current, renewal window). Only here
    /// does an expired certificate within `grace_after_expiry_days` count as the caller.
    Renewal,
    /// Only with a verified, current customer certificate; the gateway refuses others.
    Customer,
    /// A customer certificate whose login ID is its contract's administrator. The gateway
    /// requires the certificate; the role is checked by each action's rule (in `lifecycle`,
    /// audited, answered 403 `not_admin`), so a refusal is recorded the same whichever way
    /// the action was asked for.
    ContractAdmin,
    // Staff (issue 17) goes here: a staff certificate, on the staff listener's own table.
}

/// A set of HTTP methods, as a bit set so a route declares several in a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods(u8);

impl Methods {
    pub const GET: Self = Self(1);
    pub const HEAD: Self = Self(1 << 1);
    pub const POST: Self = Self(1 << 2);
    pub const PUT: Self = Self(1 << 3);
    pub const PATCH: Self = Self(1 << 4);
    pub const DELETE: Self = Self(1 << 5);
    pub const NONE: Self = Self(0);

    const NAMES: [(Self, &'static str); 6] = [
        (Self::GET, "GET"),
        (Self::HEAD, "HEAD"),
        (Self::POST, "POST"),
        (Self::PUT, "PUT"),
        (Self::PATCH, "PATCH"),
        (Self::DELETE, "DELETE"),
    ];

    /// Both sets.
    pub const fn and(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether the two sets share a method.
    pub const fn overlaps(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether `method` is in the set (methods outside the six named never are).
    pub fn allows(self, method: &Method) -> bool {
        let bit = match *method {
            Method::GET => Self::GET,
            Method::HEAD => Self::HEAD,
            Method::POST => Self::POST,
            Method::PUT => Self::PUT,
            Method::PATCH => Self::PATCH,
            Method::DELETE => Self::DELETE,
            _ => return false,
        };
        // HEAD is GET without the body (RFC 9110 9.3.2): wherever GET is answered, so is
        // HEAD (the connection drops the body).
        self.overlaps(bit) || (bit == Self::HEAD && self.overlaps(Self::GET))
    }

    /// The value of an `Allow` header: `GET, POST`.
    pub fn allow_header(self) -> HeaderValue {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(m, _)| self.overlaps(*m) || (*m == Self::HEAD && self.overlaps(Self::GET)))
            .map(|(_, name)| *name)
            .collect();
        HeaderValue::from_str(&names.join(", ")).unwrap_or(HeaderValue::from_static(""))
    }
}

/// Which request paths a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathSpec {
    /// This path only.
    Exact(&'static str),
    /// Every path starting with this (which ends with `/`); the handler gets the rest.
    Prefix(&'static str),
    /// `before`, one segment of any text but `/`, then `after`: `/api/v1/users/{}/reissue`
    /// is `Template("/api/v1/users/", "/reissue")`. The handler gets the segment.
    Template(&'static str, &'static str),
}

impl PathSpec {
    /// The variable part of `path` (empty for an exact path), or `None` when it does not match.
    pub fn matches<'p>(&self, path: &'p str) -> Option<&'p str> {
        match *self {
            Self::Exact(p) => (path == p).then_some(""),
            Self::Prefix(p) => path.strip_prefix(p),
            Self::Template(before, after) => path
                .strip_prefix(before)?
                .strip_suffix(after)
                .filter(|segment| !segment.contains('/')),
        }
    }
}

impl std::fmt::Display for PathSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(p) => f.write_str(p),
            Self::Prefix(p) => write!(f, "{p}*"),
            Self::Template(before, after) => write!(f, "{before}{{}}{after}"),
        }
    }
}

/// A handler: the context (`C`, e.g. `Web`), the request, and the variable part of the path
/// ([`PathSpec::matches`]).
pub type Handler<C> = for<'a> fn(&'a C, &'a WebRequest, &'a str) -> BoxFuture<'a, WebResponse>;

/// One own path (or path family) for some methods.
pub struct OwnRoute<C: 'static> {
    pub methods: Methods,
    pub path: PathSpec,
    pub access: Access,
    pub handler: Handler<C>,
}

/// Declares a route (the table reads as one line per route).
pub const fn route<C>(
    methods: Methods,
    path: PathSpec,
    access: Access,
    handler: Handler<C>,
) -> OwnRoute<C> {
    OwnRoute {
        methods,
        path,
        access,
        handler,
    }
}

/// A family of own paths answering in one protocol's words.
pub struct Mount<C: 'static> {
    /// Paths starting with this are certgate's. Without a trailing `/`, the prefix itself
    /// and the paths under `prefix/` are (`/ocsp` owns `/ocsp/…` but not `/ocspx`).
    pub prefix: &'static str,
    /// Who may call a path under the prefix that no route declares (it gets `not_found`).
    pub unknown: Access,
    /// The answer for such a path.
    pub not_found: fn() -> WebResponse,
    /// The answer for a declared path asked with another method; `Allow` is added.
    pub not_allowed: fn() -> WebResponse,
    /// Tried in order; the first whose path matches decides the access.
    pub routes: &'static [OwnRoute<C>],
}

impl<C> Mount<C> {
    fn holds(&self, path: &str) -> bool {
        match path.strip_prefix(self.prefix) {
            None => false,
            Some(rest) => self.prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'),
        }
    }
}

/// What a request resolves to.
pub enum Resolved<'t, 'p, C: 'static> {
    /// Call this route's handler with the path's variable part.
    Route(&'t OwnRoute<C>, &'p str),
    /// A declared path, another method: answer `not_allowed` with `Allow: <methods>`.
    NotAllowed(&'t Mount<C>, Methods),
    /// Under a mount, but no route declares it: answer `not_found`.
    NotFound(&'t Mount<C>),
    /// Not an own path (the gateway sends it elsewhere).
    NotOurs,
}

fn mount_of<'t, C>(table: &'t [Mount<C>], path: &str) -> Option<&'t Mount<C>> {
    table.iter().find(|m| m.holds(path))
}

/// Whether `path` is an own path, and who may call it. Allocates nothing.
pub fn owns<C>(table: &[Mount<C>], path: &str) -> Option<Access> {
    let mount = mount_of(table, path)?;
    let access = mount
        .routes
        .iter()
        .find(|r| r.path.matches(path).is_some())
        .map_or(mount.unknown, |r| r.access);
    Some(access)
}

/// The route for `method` and `path`, or why there is none.
pub fn resolve<'t, 'p, C>(
    table: &'t [Mount<C>],
    method: &Method,
    path: &'p str,
) -> Resolved<'t, 'p, C> {
    let Some(mount) = mount_of(table, path) else {
        return Resolved::NotOurs;
    };
    let mut declared = Methods::NONE;
    for route in mount.routes {
        if let Some(rest) = route.path.matches(path) {
            if route.methods.allows(method) {
                return Resolved::Route(route, rest);
            }
            declared = declared.and(route.methods);
        }
    }
    if declared.is_empty() {
        Resolved::NotFound(mount)
    } else {
        Resolved::NotAllowed(mount, declared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_as_declared() {
        let t = PathSpec::Template("/api/v1/users/", "/reissue");
        assert_eq!(t.matches("/api/v1/users/bob/reissue"), Some("bob"));
        assert_eq!(t.matches("/api/v1/users//reissue"), Some(""));
        assert_eq!(t.matches("/api/v1/users/a/b/reissue"), None);
        assert_eq!(t.matches("/api/v1/users/bob/reissuex"), None);
        assert_eq!(t.to_string(), "/api/v1/users/{}/reissue");
        let p = PathSpec::Prefix("/crl/");
        assert_eq!(p.matches("/crl/1.crl"), Some("1.crl"));
        assert_eq!(p.matches("/crl"), None);
        assert_eq!(PathSpec::Exact("/ocsp").matches("/ocsp/"), None);
    }

    #[test]
    fn allow_lists_the_methods_in_a_fixed_order() {
        let m = Methods::POST.and(Methods::GET);
        // HEAD goes with GET.
        assert_eq!(m.allow_header(), "GET, HEAD, POST");
        assert!(m.allows(&Method::GET) && m.allows(&Method::HEAD) && !m.allows(&Method::PUT));
        assert_eq!(Methods::POST.allow_header(), "POST");
        assert!(!Methods::POST.allows(&Method::HEAD));
        assert!(!m.allows(&Method::from_bytes(b"BREW").unwrap()));
    }
}
