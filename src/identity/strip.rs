//! Removing the headers a client could use to pretend an identity. The set is derived from
//! what the identity formats declare ([`super::IdentityFormat::owned_names`]) plus the
//! forwarding names, so a new format is stripped without an edit here. Names are compared
//! lower-cased with every character other than a letter or digit read as `-`: CGI-style
//! readers (lighttpd's environment, PHP's variable names) turn `_`, `.` and the rest into
//! one and the same `_`, so `X.Certgate.User` would arrive as `X_CERTGATE_USER`.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName};

use super::format::OwnedName;

/// Names no format writes but no client may set either: what proxies say about the
/// connection, the client's address and the URL (`X-Original-URL` is read by IIS URL Rewrite and some Java
/// frameworks as the path to serve), and the client-certificate headers of nginx, Apache,
/// AWS and others. Apps moving from those proxies may still trust them.
const FORWARDING: [OwnedName; 76] = [
    OwnedName::Prefix("x-forwarded-"),
    OwnedName::Exact(Cow::Borrowed("x-forwarded")),
    OwnedName::Exact(Cow::Borrowed("forwarded")),
    OwnedName::Exact(Cow::Borrowed("forwarded-for")),
    // `X-Real-IP`, and `-Port` beside it.
    OwnedName::Prefix("x-real-"),
    // What other proxies and CDNs name the client by, read by the "real IP" helpers of
    // web frameworks.
    // `X-Client-IP`, `-IP-Address`, and `X-Client-Port`.
    OwnedName::Prefix("x-client-ip"),
    OwnedName::Exact(Cow::Borrowed("x-client-port")),
    OwnedName::Exact(Cow::Borrowed("http-client-ip")),
    OwnedName::Exact(Cow::Borrowed("origin-ip")),
    OwnedName::Exact(Cow::Borrowed("true-client-ip")),
    OwnedName::Exact(Cow::Borrowed("cf-connecting-ip")),
    OwnedName::Exact(Cow::Borrowed("x-cluster-client-ip")),
    OwnedName::Exact(Cow::Borrowed("cluster-client-ip")),
    OwnedName::Exact(Cow::Borrowed("x-true-ip")),
    // A misspelling some helpers read all the same.
    OwnedName::Prefix("x-forward-"),
    OwnedName::Prefix("x-forwarder-"),
    OwnedName::Exact(Cow::Borrowed("client-ip")),
    OwnedName::Exact(Cow::Borrowed("x-originating-ip")),
    OwnedName::Exact(Cow::Borrowed("x-remote-ip")),
    OwnedName::Exact(Cow::Borrowed("x-remote-addr")),
    OwnedName::Exact(Cow::Borrowed("x-proxyuser-ip")),
    OwnedName::Exact(Cow::Borrowed("fastly-client-ip")),
    OwnedName::Exact(Cow::Borrowed("akamai-client-ip")),
    OwnedName::Exact(Cow::Borrowed("x-azure-clientip")),
    OwnedName::Exact(Cow::Borrowed("x-azure-socketip")),
    OwnedName::Exact(Cow::Borrowed("x-appengine-user-ip")),
    // Envoy's own (`x-envoy-external-address` names the client to an Envoy consumer).
    OwnedName::Prefix("x-envoy-"),
    // Host overrides, read by some frameworks to build absolute URLs.
    OwnedName::Exact(Cow::Borrowed("x-host")),
    // The original request as a proxy in front says it: URL, URI, host, method, path,
    // scheme, forwarded-for.
    OwnedName::Prefix("x-original-"),
    OwnedName::Exact(Cow::Borrowed("x-rewrite-url")),
    // The client certificate and its fields as proxies pass them on (`X-Client-Cert`,
    // `-Certificate`, `-Cert-Dn`; nginx's and HAProxy's `X-SSL-*`, `X-TLS-*`; Apache's
    // `SSL_CLIENT_*` and `SSL_*` variables as headers; `X-Cert-Subject`).
    OwnedName::Prefix("x-client-cert"),
    // RFC 9440's names are a format's own; fields beside them (`Client-Cert-Serial`) are not.
    OwnedName::Prefix("client-cert-"),
    OwnedName::Exact(Cow::Borrowed("x-client-verify")),
    OwnedName::Prefix("x-client-dn"),
    OwnedName::Prefix("x-ssl-"),
    OwnedName::Prefix("ssl-"),
    OwnedName::Prefix("x-tls-"),
    OwnedName::Prefix("x-cert-"),
    // AWS ALB mutual TLS (`X-Amzn-Mtls-Clientcert`, `-Clientcert-Subject`, ...).
    OwnedName::Prefix("x-amzn-mtls-"),
    OwnedName::Exact(Cow::Borrowed("x-arr-clientcert")),
    // The authenticated user as other gateways and identity proxies pass it (web servers'
    // REMOTE_USER, oauth2-proxy, Grafana's auth proxy, SiteMinder, AWS ALB OIDC, Azure App
    // Service): an app moved from behind one of them may still trust these.
    // Kubernetes' authenticating proxy (`X-Remote-User`, `-Group`, `-Extra-*`), Google IAP,
    // Cloudflare Access, Pomerium, Kong, mod_auth_openidc, Azure App Service's tokens.
    // `Remote-User`, and Authelia's and Authentik's `Remote-Groups`, `-Email`, `-Name`.
    OwnedName::Prefix("remote-"),
    OwnedName::Prefix("x-remote-"),
    OwnedName::Exact(Cow::Borrowed("auth-user")),
    OwnedName::Exact(Cow::Borrowed("x-proxy-user")),
    OwnedName::Prefix("x-jwt-"),
    OwnedName::Exact(Cow::Borrowed("x-user")),
    OwnedName::Exact(Cow::Borrowed("x-auth-user")),
    OwnedName::Exact(Cow::Borrowed("x-auth-username")),
    OwnedName::Exact(Cow::Borrowed("x-authenticated-user")),
    OwnedName::Exact(Cow::Borrowed("x-authenticated-userid")),
    OwnedName::Prefix("x-webauth-"),
    OwnedName::Prefix("x-auth-request-"),
    OwnedName::Exact(Cow::Borrowed("sm-user")),
    OwnedName::Exact(Cow::Borrowed("sm-userdn")),
    OwnedName::Exact(Cow::Borrowed("sm-universalid")),
    OwnedName::Prefix("x-amzn-oidc-"),
    OwnedName::Prefix("x-ms-client-principal"),
    OwnedName::Prefix("x-ms-token-"),
    OwnedName::Prefix("x-goog-authenticated-user-"),
    OwnedName::Exact(Cow::Borrowed("x-goog-iap-jwt-assertion")),
    OwnedName::Prefix("cf-access-"),
    OwnedName::Prefix("x-pomerium-"),
    OwnedName::Prefix("x-consumer-"),
    OwnedName::Exact(Cow::Borrowed("x-id-token")),
    OwnedName::Exact(Cow::Borrowed("x-userinfo")),
    OwnedName::Prefix("oidc-"),
    // The scheme as other proxies say it, read by frameworks to build absolute URLs.
    OwnedName::Exact(Cow::Borrowed("front-end-https")),
    OwnedName::Exact(Cow::Borrowed("x-url-scheme")),
    OwnedName::Exact(Cow::Borrowed("x-scheme")),
    OwnedName::Exact(Cow::Borrowed("x-https")),
    OwnedName::Exact(Cow::Borrowed("https")),
    OwnedName::Exact(Cow::Borrowed("x-arr-ssl")),
    // Method overrides: an app honouring one would run another method than the gateway
    // judged (a TRACE the gateway refuses, a DELETE behind a GET).
    OwnedName::Exact(Cow::Borrowed("x-http-method-override")),
    OwnedName::Exact(Cow::Borrowed("x-http-method")),
    OwnedName::Exact(Cow::Borrowed("x-method-override")),
    // `Proxy` becomes HTTP_PROXY to a CGI app, which its HTTP client reads as the proxy to
    // send outgoing requests through ("httpoxy").
    OwnedName::Exact(Cow::Borrowed("proxy")),
];

/// The header names stripped from every request.
#[derive(Debug, Clone)]
pub struct ReservedNames {
    /// The names (lower-case, `-` between words) by their first and third bytes
    /// ([`bucket`]): a request header is compared only with the few that share both
    /// (`x-request-id` with `x-real-ip` and `x-remote-`, not with every `x-` name), and most
    /// headers of a request find an empty bucket. A name shorter than three bytes is in
    /// every bucket of its first byte.
    buckets: Box<[Box<[Reserved]>]>,
    /// An empty prefix (a route's `strip_headers = ["*"]`) reserves every name.
    all: bool,
    /// How many names in all.
    count: usize,
}

/// One reserved name or prefix.
#[derive(Debug, Clone)]
struct Reserved {
    name: Box<str>,
    prefix: bool,
}

impl Reserved {
    fn new(name: Box<str>, prefix: bool) -> Self {
        Self { name, prefix }
    }

    /// Whether `name` (as sent) is this name or under this prefix.
    fn covers(&self, name: &[u8]) -> bool {
        let len = self.name.len();
        let long_enough = if self.prefix {
            name.len() >= len
        } else {
            name.len() == len
        };
        long_enough && same_name(&name[..len], &self.name)
    }
}

/// Symbols a folded byte can be: none (past the name's end), a digit, a letter, `-`.
const SYMBOLS: usize = 38;

/// The index of a folded byte among [`SYMBOLS`] (`None`: past the end).
fn symbol(b: Option<u8>) -> usize {
    match b {
        None => 0,
        Some(b @ b'0'..=b'9') => 1 + usize::from(b - b'0'),
        Some(b @ b'a'..=b'z') => 11 + usize::from(b - b'a'),
        Some(_) => 37,
    }
}

/// The bucket of a name whose folded first and third bytes are `first` and `third`.
fn bucket(first: u8, third: Option<u8>) -> usize {
    symbol(Some(first)) * SYMBOLS + symbol(third)
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
        Self::new(prefixes, exact)
    }

    fn new(prefixes: Vec<Box<str>>, exact: Vec<Box<str>>) -> Self {
        let count = prefixes.len() + exact.len();
        let all = prefixes.iter().any(|p| p.is_empty());
        let mut buckets: Vec<Vec<Reserved>> = vec![Vec::new(); SYMBOLS * SYMBOLS];
        let tagged = prefixes
            .into_iter()
            .map(|name| Reserved::new(name, true))
            .chain(exact.into_iter().map(|name| Reserved::new(name, false)));
        for r in tagged {
            let bytes = r.name.as_bytes();
            let Some(&first) = bytes.first() else {
                continue;
            };
            match bytes.get(2) {
                Some(&third) => buckets[bucket(first, Some(third))].push(r),
                // Shorter than three bytes: whatever a header's third byte is.
                None => {
                    let start = bucket(first, None);
                    for b in &mut buckets[start..start + SYMBOLS] {
                        b.push(r.clone());
                    }
                }
            }
        }
        Self {
            buckets: buckets.into_iter().map(Vec::into_boxed_slice).collect(),
            all,
            count,
        }
    }

    /// A route's own extra names (`[[route]] strip_headers`): a trailing `*` makes a prefix.
    pub fn from_list(names: &[String]) -> Self {
        let mut prefixes: Vec<Box<str>> = Vec::new();
        let mut exact: Vec<Box<str>> = Vec::new();
        for n in names {
            match n.strip_suffix('*') {
                Some(p) => prefixes.push(normalized(p)),
                None => exact.push(normalized(n)),
            }
        }
        Self::new(prefixes, exact)
    }

    /// Whether there is no name to strip.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether `name`, read lower-case with punctuation as `-`, is a name a client must never
    /// set.
    /// Compared without allocating: this runs for every header of every request.
    pub fn is_reserved(&self, name: &str) -> bool {
        if self.all {
            return true;
        }
        let name = name.as_bytes();
        let Some(&first) = name.first() else {
            return false;
        };
        let third = name.get(2).map(|b| folded(*b));
        self.buckets[bucket(folded(first), third)]
            .iter()
            .any(|r| r.covers(name))
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

/// One byte of a name as compared: letters lower-cased, digits kept, anything else `-`.
fn folded(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// `name` folded byte by byte ([`folded`]), the form compared against.
fn normalized(name: &str) -> Box<str> {
    name.bytes().map(|b| char::from(folded(b))).collect()
}

/// `presented == wanted` with `presented` folded ([`folded`]); `wanted` is already
/// normalized.
fn same_name(presented: &[u8], wanted: &str) -> bool {
    presented.len() == wanted.len()
        && presented
            .iter()
            .zip(wanted.bytes())
            .all(|(&p, w)| folded(p) == w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_and_client_certificate_names_are_reserved() {
        let r = ReservedNames::derive([]);
        for n in [
            "X-Original-URL",
            "x_original_url",
            "X-Rewrite-URL",
            "X-SSL-Client-Cert",
            "X-SSL-Client-Verify",
            "x-ssl-client-s-dn",
            "SSL_CLIENT_CERT",
            "X-Client-Verify",
            "X-Client-Cert",
            "X-Amzn-Mtls-Clientcert",
            "x-amzn-mtls-clientcert-subject",
            "X-ARR-ClientCert",
            "X-Client-IP",
            "True-Client-IP",
            "CF-Connecting-IP",
            "X-Cluster-Client-IP",
            "Forwarded-For",
            "X-Forwarded",
            "X-Original-Forwarded-For",
            "Client-IP",
            "client_ip",
            "X-Originating-IP",
            "Fastly-Client-IP",
            "X-Envoy-External-Address",
            "X-Azure-ClientIP",
            "X-Original-Host",
            "Remote-User",
            "REMOTE_USER",
            "X-Remote-User",
            "X-User",
            "X-Auth-User",
            "X-Authenticated-User",
            "X-WEBAUTH-USER",
            "X-Auth-Request-User",
            "X-Auth-Request-Email",
            "SM_USER",
            "sm-universalid",
            "X-Amzn-Oidc-Identity",
            "X-Amzn-Oidc-Data",
            "X-MS-CLIENT-PRINCIPAL",
            "X-MS-CLIENT-PRINCIPAL-NAME",
            "Front-End-Https",
            "X-Url-Scheme",
            "X-Scheme",
            "Proxy",
            "X-Remote-Group",
            "X-Remote-Extra-Scopes",
            "X-Webauth-Email",
            "X-Goog-Authenticated-User-Email",
            "X-Goog-IAP-JWT-Assertion",
            "Cf-Access-Authenticated-User-Email",
            "Cf-Access-Jwt-Assertion",
            "X-Pomerium-Jwt-Assertion",
            "X-MS-TOKEN-AAD-ID-TOKEN",
            "X-Consumer-Username",
            "X-Authenticated-Userid",
            "X-Auth-Username",
            "X-Ssl-User",
            "X-Id-Token",
            "X-Userinfo",
            "OIDC_CLAIM_email",
            "X-Https",
            "HTTPS",
            "X-ARR-SSL",
            "Remote-Groups",
            "Remote-Email",
            "Remote-Name",
            "Auth-User",
            "X-Proxy-User",
            "X-Jwt-Assertion",
            "X-Ssl-Subject",
            "Ssl-Subject",
            "X-Ssl-Issuer",
            "X-Tls-Client-Cert",
            "X-Client-Certificate",
            "X-Client-Cert-Dn",
            "X-Client-Cert-Serial",
            "X-Cert-Subject",
            "X-Original-Method",
            "X-Original-Path",
            "X-Original-Proto",
            "X-Original-URI",
            "X-True-IP",
            "X-Forward-For",
            "Cluster-Client-IP",
            "X-HTTP-Method-Override",
            "X-HTTP-Method",
            "X-Method-Override",
            "Client-Cert-Serial",
            "X-Forwarder-For",
            "X-Client-Ip-Address",
            "Http-Client-Ip",
            "Origin-Ip",
            "X-Real-Port",
            "X-Client-Port",
            "Remote-Addr",
            "X-Original-Remote-Addr",
        ] {
            assert!(r.is_reserved(n), "{n}");
        }
        assert!(!r.is_reserved("x-request-id") && !r.is_reserved("x-ssl"));
        for n in [
            "Proxy-Authorization",
            "X-Users",
            "User-Agent",
            "Priority",
            "Referer",
        ] {
            assert!(!r.is_reserved(n), "{n}");
        }
    }

    #[test]
    fn any_punctuation_between_words_reads_as_a_dash() {
        let r = ReservedNames::derive([]);
        for n in [
            "X.Original.URL",
            "x+ssl+client+cert",
            "X~Forwarded~For",
            "x.forwarded.for",
            "x-forwarded.host",
            "X!Real#IP",
            "x'arr'clientcert",
        ] {
            assert!(r.is_reserved(n), "{n}");
        }
        assert!(!r.is_reserved("xoriginalurl") && !r.is_reserved("x.request.id"));
        let route = ReservedNames::from_list(&["X-Legacy-User".into()]);
        assert!(route.is_reserved("X.Legacy.User") && route.is_reserved("x|legacy|user"));
    }

    #[test]
    fn a_routes_list_takes_exact_names_and_prefixes() {
        let r = ReservedNames::from_list(&["X-Legacy-User".into(), "X-Sso-*".into()]);
        assert!(r.is_reserved("x_legacy_user") && r.is_reserved("X-SSO-Role"));
        assert!(!r.is_reserved("x-legacy-user-agent") && !r.is_reserved("x-ss"));
        // A bare `*` is an empty prefix: every name.
        let all = ReservedNames::from_list(&["*".into()]);
        assert!(all.is_reserved("host") && all.is_reserved("accept"));
        assert!(ReservedNames::from_list(&[]).is_empty());
        // Prefixes and names of one or two bytes (no third byte to look at first).
        let short = ReservedNames::from_list(&["X-*".into(), "Q".into(), "ab".into()]);
        assert!(short.is_reserved("x-anything") && short.is_reserved("X_Y"));
        assert!(short.is_reserved("q") && short.is_reserved("AB"));
        assert!(!short.is_reserved("xy") && !short.is_reserved("qq") && !short.is_reserved("abc"));
    }
}
