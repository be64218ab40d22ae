//! Configuration of the gateway side: `[[listener]]`, `[[route]]`, `[admin]` and `[gateway]`.
//!
//! Every key has a default named by a function so the example and the code cannot drift.
//! This module only parses and checks; it must not open files or sockets.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Config, ConfigError};

/// `[[listener]]`: one TLS listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub addr: std::net::SocketAddr,
    /// Server certificate chain, PEM (end-entity first).
    pub cert: PathBuf,
    /// Server private key, PEM (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// `none | optional | required` (default `optional`). With `required` every certificate
    /// problem (none, foreign CA, expired, known revoked) fails the handshake; with
    /// `optional` the handshake lets such a certificate through and each request on a
    /// `certificate` route is refused with a page that explains the problem.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Seconds a client has to finish the TLS handshake (default 10).
    #[serde(default = "default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
    /// Seconds to receive a request's headers; for HTTP/1.1 also the idle time allowed
    /// between two requests on a kept-alive connection (default 30).
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Largest request head (request line and headers) accepted, in bytes (default 16384;
    /// at least 8192). Larger heads get 431. An HTTP/1.1 connection's read buffer grows to
    /// this size while it serves requests; an idle one gives it back.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Open connections served at once (default 4096). Further clients are answered 503
    /// (`overloaded`, with `Retry-After`) and closed, so the gateway sheds load instead of
    /// running out of memory or file descriptors.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 /64), counted from the
    /// PROXY header's address on a `proxy_protocol` listener; more from that address are
    /// closed at once, before TLS. 0 (the default): no such limit, because customers
    /// behind one NAT share an address; set it from the largest office's needs.
    #[serde(default)]
    pub max_connections_per_address: usize,
    /// Seconds between HTTP/2 keep-alive pings; an unanswered ping closes the connection
    /// (default 60).
    #[serde(default = "default_h2_keepalive_secs")]
    pub h2_keepalive_secs: u64,
    /// Seconds an HTTP/2 connection may stay without a request in flight before it is
    /// closed (GOAWAY); a connection with a request or response under way is kept
    /// (default 120).
    #[serde(default = "default_h2_idle_timeout_secs")]
    pub h2_idle_timeout_secs: u64,
    /// Expect a PROXY protocol header (v1 or v2) before TLS, as sent by a layer-4 load
    /// balancer; the client address is then taken from it (default false).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Peers allowed to send that header (CIDR blocks or single addresses); connections
    /// from any other peer are closed before TLS. Must not be empty with `proxy_protocol`.
    #[serde(default)]
    pub trusted_proxies: Vec<super::Cidr>,
    /// Keeps a client's own `X-Request-Id` (one short plain token) instead of making one:
    /// for a front end of the bank's that numbers requests itself. Off: every request gets
    /// an ID made here.
    #[serde(default)]
    pub trust_request_id: bool,
}

fn default_handshake_timeout_secs() -> u64 {
    10
}
fn default_header_read_timeout_secs() -> u64 {
    30
}
fn default_max_header_bytes() -> usize {
    16 * 1024
}
fn default_max_connections() -> usize {
    4096
}
fn default_h2_keepalive_secs() -> u64 {
    60
}
fn default_h2_idle_timeout_secs() -> u64 {
    120
}

/// Whether a listener asks for a client certificate at the handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    None,
    #[default]
    Optional,
    Required,
}

/// `[[route]]`: requests whose path starts with `prefix` (and whose host is `host`, when
/// set) go to `upstream`. The longest matching prefix wins; at equal length a route with a
/// host wins over one without. A prefix matches whole path segments: `/app` matches `/app`
/// and `/app/x`, not `/apple`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub prefix: String,
    /// `http://host:port[/base]` or `https://…` (then `[route.upstream_tls]` says whom to
    /// trust); the request path is appended to the base. A list of such URLs spreads the
    /// route over several endpoints (same scheme, same `[route.upstream_tls]`).
    pub upstream: UpstreamUrls,
    /// How requests are spread over several endpoints (default `round_robin`).
    #[serde(default)]
    pub lb: LbPolicy,
    /// Seconds an endpoint that failed to connect is left out (default 10).
    #[serde(default = "default_eject_secs")]
    pub eject_secs: u64,
    /// `[route.health]`: an active check of every endpoint.
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// TLS to an `https` upstream.
    #[serde(default)]
    pub upstream_tls: Option<UpstreamTlsConfig>,
    /// Speak HTTP/2 to the app (default false): over TLS when ALPN agrees on `h2`, to an
    /// `http` upstream with prior knowledge (h2c). One multiplexed connection per endpoint
    /// and worker thread; WebSocket upgrades still go over HTTP/1.1.
    #[serde(default)]
    pub upstream_http2: bool,
    /// `[route.pool]`: how many idle connections to the app are kept, and how long.
    #[serde(default)]
    pub pool: PoolConfig,
    /// `public | certificate` (default `certificate`).
    #[serde(default)]
    pub auth: RouteAuth,
    /// Only requests for this host name (without port, case-insensitive).
    #[serde(default)]
    pub host: Option<String>,
    /// Seconds to open a connection to the upstream (default 5).
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Seconds for the upstream to answer with its response head (default 60).
    #[serde(default = "default_response_timeout_secs")]
    pub response_timeout_secs: u64,
    /// Largest request body forwarded, in bytes (default 10 MiB). Larger bodies get 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// The identity formats sent to the upstream of a `certificate` route (default
    /// `["certgate"]`); see [`IdentityFormatName`]. Use [`RouteConfig::identity_formats`],
    /// which adds what the deprecated flags below ask for.
    #[serde(default = "default_identity")]
    pub identity: Vec<IdentityFormatName>,
    /// Deprecated spelling of adding `"rfc9440"` to `identity`.
    #[serde(default)]
    pub client_cert_header: bool,
    /// Deprecated spelling of adding `"xfcc"` to `identity`.
    #[serde(default)]
    pub xfcc: bool,
    /// Deprecated spelling of adding `"jwt"` to `identity`.
    #[serde(default)]
    pub assertion: bool,
    /// The keys of the `X-Forwarded-Client-Cert` element (default `["Hash", "Cert",
    /// "Subject"]`); always written in Envoy's order, whatever the order here.
    #[serde(default = "default_xfcc_fields")]
    pub xfcc_fields: Vec<XfccField>,
    /// The value of the XFCC `By` key (Envoy sends the URI SAN of its own certificate);
    /// needed when `xfcc_fields` lists `By`.
    #[serde(default)]
    pub xfcc_by: Option<String>,
    /// Refuse a login form naming another login ID than the certificate's.
    #[serde(default)]
    pub login_binding: Option<LoginBindingConfig>,
    /// From `[renewal] window_days` before expiry, show a "renew now / later" page before
    /// this route's pages, at most once a day (default false).
    #[serde(default)]
    pub renewal_interstitial: bool,
    /// What to do with `;` parameters on the last path segment (`/app/page;jsessionid=…`):
    /// `refuse` (default) or `pass` (forwarded; the route is still chosen by the path
    /// without them). Parameters anywhere else are always refused.
    #[serde(default)]
    pub path_params: PathParams,
    /// Further request header names removed before this route's upstream sees them, e.g.
    /// names an app once trusted behind another proxy. A trailing `*` removes every name
    /// with that prefix. Compared case-insensitively, punctuation (`_`, `.`, ...) read as `-`.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// The HTTP/1.1 `Upgrade` protocols tunnelled to the app (default `["websocket"]`); a
    /// request asking for any other is forwarded as a plain request, its `Upgrade`
    /// removed. `h2c` is never allowed: HTTP/2 inside the tunnel would carry requests the
    /// gateway never saw.
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
    /// Seconds a tunnel (an upgraded connection) may carry no byte either way before it
    /// is closed (default: `[gateway] tunnel_idle_secs`).
    #[serde(default)]
    pub tunnel_idle_secs: Option<u64>,
    /// Seconds a tunnel may stay open at most (default: `[gateway] tunnel_max_secs`).
    #[serde(default)]
    pub tunnel_max_secs: Option<u64>,
    /// How the gateway tells the app about the client: `"x-forwarded"` (`X-Forwarded-For`,
    /// `-Proto`, `-Host`) and/or `"forwarded"` (RFC 7239 `Forwarded: for=…;proto=https;
    /// host=…`). Default `["x-forwarded"]`. A client's own headers of either kind are
    /// always removed.
    #[serde(default = "default_forwarding")]
    pub forwarding: Vec<ForwardingFormat>,
}

/// `[route.pool]`: the keep-alive connections to each endpoint of a route.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Idle connections kept per endpoint and worker thread (default 64); a connection
    /// finishing its exchange beyond this is closed. 0 closes every connection after use.
    #[serde(default = "default_max_idle_per_worker")]
    pub max_idle_per_worker: usize,
    /// Seconds an idle connection is kept (default 50, below the 60 s or more apps commonly
    /// keep theirs); a sweep closes older ones.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_idle_per_worker: default_max_idle_per_worker(),
            idle_timeout_secs: default_idle_timeout_secs(),
        }
    }
}

fn default_max_idle_per_worker() -> usize {
    64
}
fn default_idle_timeout_secs() -> u64 {
    50
}

fn default_upgrades() -> Vec<String> {
    vec!["websocket".to_string()]
}

/// `[[route]] forwarding`: the headers that carry the client's address to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ForwardingFormat {
    #[serde(rename = "x-forwarded")]
    XForwarded,
    /// RFC 7239.
    #[serde(rename = "forwarded")]
    Forwarded,
}

fn default_forwarding() -> Vec<ForwardingFormat> {
    vec![ForwardingFormat::XForwarded]
}

/// `[[route]] upstream`: one URL, as configurations always had it, or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UpstreamUrls {
    One(String),
    Many(Vec<String>),
}

impl UpstreamUrls {
    /// Every endpoint's URL, in the configured order.
    pub fn urls(&self) -> &[String] {
        match self {
            Self::One(u) => std::slice::from_ref(u),
            Self::Many(v) => v,
        }
    }

    /// The first URL (the whole value for a single endpoint); names the upstream where
    /// one name is needed (the assertion's audience).
    pub fn first(&self) -> &str {
        self.urls().first().map_or("", String::as_str)
    }
}

/// `[[route]] lb`: which endpoint takes the next request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbPolicy {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The endpoint with the fewest requests waiting for their answer.
    LeastOutstanding,
}

fn default_eject_secs() -> u64 {
    10
}

/// `[route.health]`: every `interval_secs`, each endpoint gets `GET path` on a new
/// connection; an answer other than `expected_status` within `timeout_secs` leaves the
/// endpoint out, the right answer brings it back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Joined to the endpoint's base path, like a request's path.
    pub path: String,
    pub interval_secs: u64,
    /// Seconds for connecting and the answer's head (default 2).
    #[serde(default = "default_health_timeout_secs")]
    pub timeout_secs: u64,
    /// The status a healthy endpoint answers (default 200).
    #[serde(default = "default_expected_status")]
    pub expected_status: u16,
}

fn default_health_timeout_secs() -> u64 {
    2
}
fn default_expected_status() -> u16 {
    200
}

/// `[[route]] path_params`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathParams {
    /// A path with `;` parameters is answered 400.
    #[default]
    Refuse,
    /// Parameters on the last segment are forwarded (for apps that need `;jsessionid`).
    Pass,
}

/// `[route.upstream_tls]`: how the gateway checks an `https` app and, optionally, proves
/// itself to it. Files are read again on each reload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// PEM trust anchors for the app's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Trust the system's roots as well (default false: a bank's internal CA is the norm).
    #[serde(default)]
    pub system_roots: bool,
    /// The name the app's certificate must carry (default: the upstream URL's host).
    #[serde(default)]
    pub server_name: Option<String>,
    /// The gateway's own certificate chain (PEM) for apps that require mTLS.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// The key of `client_cert` (PEM).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

fn default_identity() -> Vec<IdentityFormatName> {
    vec![IdentityFormatName::Certgate]
}
fn default_xfcc_fields() -> Vec<XfccField> {
    vec![XfccField::Hash, XfccField::Cert, XfccField::Subject]
}
fn default_connect_timeout_secs() -> u64 {
    5
}

impl RouteConfig {
    /// Whether the route sends `format`, listed in `identity` or asked for by its
    /// deprecated flag.
    pub fn sends(&self, format: IdentityFormatName) -> bool {
        self.identity.contains(&format)
            || match format {
                IdentityFormatName::Certgate => false,
                IdentityFormatName::Rfc9440 => self.client_cert_header,
                IdentityFormatName::Xfcc => self.xfcc,
                IdentityFormatName::Jwt => self.assertion,
            }
    }

    /// The tunnel timeouts of this route: its own, else the gateway's.
    pub fn tunnel_limits(
        &self,
        gateway: &GatewayConfig,
    ) -> (std::time::Duration, std::time::Duration) {
        let secs = std::time::Duration::from_secs;
        (
            secs(self.tunnel_idle_secs.unwrap_or(gateway.tunnel_idle_secs)),
            secs(self.tunnel_max_secs.unwrap_or(gateway.tunnel_max_secs)),
        )
    }

    /// The formats the route sends, each once, in [`IdentityFormatName::ALL`] order.
    pub fn identity_formats(&self) -> Vec<IdentityFormatName> {
        IdentityFormatName::ALL
            .into_iter()
            .filter(|f| self.sends(*f))
            .collect()
    }
}

/// A way of telling an upstream who the caller is (`[[route]] identity`). Unknown names
/// are refused by the parser, which lists these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityFormatName {
    /// `X-Certgate-User`, `-Contract`, `-Role`, `-Cert-Serial`, `-Cert-Sha256`,
    /// `-Cert-Not-After`, `-Renewal-Due`.
    Certgate = 0,
    /// RFC 9440 `Client-Cert` and `Client-Cert-Chain`.
    Rfc9440 = 1,
    /// Envoy's `X-Forwarded-Client-Cert`.
    Xfcc = 2,
    /// A short-lived ES256 JWT in `[gateway] assertion_header`.
    Jwt = 3,
}

impl IdentityFormatName {
    /// Every format, in the order headers are written (the order of [`Self::index`]).
    pub const ALL: [Self; 4] = [Self::Certgate, Self::Rfc9440, Self::Xfcc, Self::Jwt];

    /// The name in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Certgate => "certgate",
            Self::Rfc9440 => "rfc9440",
            Self::Xfcc => "xfcc",
            Self::Jwt => "jwt",
        }
    }

    /// The position in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A key of Envoy's `X-Forwarded-Client-Cert` element, spelled as Envoy spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum XfccField {
    /// The URI SAN of the proxy's own certificate (here: `xfcc_by`).
    By,
    /// Lowercase hex SHA-256 of the client certificate.
    Hash,
    /// The client certificate, URL-encoded PEM.
    Cert,
    /// The presented chain, leaf first, URL-encoded PEM.
    Chain,
    /// The client certificate's subject (RFC 4514), always quoted.
    Subject,
    /// One pair per URI SAN of the client certificate.
    #[serde(rename = "URI")]
    Uri,
    /// One pair per DNS SAN of the client certificate.
    #[serde(rename = "DNS")]
    Dns,
}

impl XfccField {
    /// Every key, in the order Envoy writes them.
    pub const ALL: [Self; 7] = [
        Self::By,
        Self::Hash,
        Self::Cert,
        Self::Chain,
        Self::Subject,
        Self::Uri,
        Self::Dns,
    ];

    /// The key as written in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::By => "By",
            Self::Hash => "Hash",
            Self::Cert => "Cert",
            Self::Chain => "Chain",
            Self::Subject => "Subject",
            Self::Uri => "URI",
            Self::Dns => "DNS",
        }
    }
}
fn default_response_timeout_secs() -> u64 {
    60
}
fn default_max_body_bytes() -> u64 {
    10 * 1024 * 1024
}

/// `[route.login_binding]`: every request to `path` (any method) may name only the
/// certificate's login ID in `field`, in its query and in its body (urlencoded, multipart or
/// JSON); a body that cannot be read is refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBindingConfig {
    /// The path of the login form's target, e.g. `/ib/login`; compared with the canonical
    /// request path, ignoring ASCII case and a trailing `/`. Paths under it (`/ib/login/x`,
    /// `/ib/login.do`) are bound too.
    pub path: String,
    /// The field holding the login ID, e.g. `loginId` (compared ignoring ASCII case).
    pub field: String,
    /// Largest login form read, in bytes (default 65536).
    #[serde(default = "default_max_form_bytes")]
    pub max_form_bytes: usize,
}

fn default_max_form_bytes() -> usize {
    64 * 1024
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    Public,
    #[default]
    Certificate,
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Plain HTTP address of `/healthz`, `/readyz`, `/metrics`; keep it on a private network.
    pub addr: std::net::SocketAddr,
}

/// `[gateway]`: behaviour shared by all listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Seconds a cached certificate status is used before it is read again from the store
    /// (default 30). Changes announced by the store drop entries at once.
    #[serde(default = "default_status_max_age_secs")]
    pub status_max_age_secs: u64,
    /// Seconds an entry may still be used while the store cannot answer; past this the
    /// request is refused (fail closed; default 300).
    #[serde(default = "default_status_fail_closed_secs")]
    pub status_fail_closed_secs: u64,
    /// Seconds between checks of the configuration, certificate and key files for changes
    /// (default 2). SIGHUP reloads at once.
    #[serde(default = "default_reload_poll_secs")]
    pub reload_poll_secs: u64,
    /// Seconds between reads of the CA certificates (trust anchors) from the store
    /// (default 60).
    #[serde(default = "default_anchors_refresh_secs")]
    pub anchors_refresh_secs: u64,
    /// Seconds open connections get to finish at shutdown (default 30).
    #[serde(default = "default_drain_secs")]
    pub drain_secs: u64,
    /// Seconds a tunnel (WebSocket) may carry no byte either way before it is closed
    /// (default 300); a route may set its own.
    #[serde(default = "default_tunnel_idle_secs")]
    pub tunnel_idle_secs: u64,
    /// Seconds a tunnel may stay open at most, however busy (default 28800, 8 hours); a
    /// route may set its own.
    #[serde(default = "default_tunnel_max_secs")]
    pub tunnel_max_secs: u64,
    /// PKCS#8 PEM P-256 key signing the assertion JWTs. When absent, a key is made at start
    /// (fine for one instance; several instances need a shared key).
    #[serde(default)]
    pub assertion_key: Option<PathBuf>,
    /// Lifetime of an assertion JWT in seconds (default 60).
    #[serde(default = "default_assertion_ttl_secs")]
    pub assertion_ttl_secs: u64,
    /// Threads serving the listeners, each with its own event loop, connections and upstream
    /// connection pool (0, the default: one per CPU this process may run on).
    #[serde(default)]
    pub worker_threads: usize,
    /// Header carrying the assertion (default `X-Certgate-Assertion`).
    #[serde(default = "default_assertion_header")]
    pub assertion_header: String,
    /// `iss` of the assertion (default `certgate`).
    #[serde(default = "default_assertion_issuer")]
    pub assertion_issuer: String,
    /// The host name (lower case, no port) that alone serves certgate's pages
    /// (`/certgate/…`) and the contract administrator's `/api/v1/`, apart from the apps'
    /// origins (see [`is_issuance_surface`]). On that host only routes naming it in
    /// `host` are served. `None` (default): every host serves them.
    #[serde(default)]
    pub enroll_host: Option<String>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            status_max_age_secs: default_status_max_age_secs(),
            status_fail_closed_secs: default_status_fail_closed_secs(),
            reload_poll_secs: default_reload_poll_secs(),
            anchors_refresh_secs: default_anchors_refresh_secs(),
            drain_secs: default_drain_secs(),
            tunnel_idle_secs: default_tunnel_idle_secs(),
            tunnel_max_secs: default_tunnel_max_secs(),
            assertion_key: None,
            assertion_ttl_secs: default_assertion_ttl_secs(),
            worker_threads: 0,
            assertion_header: default_assertion_header(),
            assertion_issuer: default_assertion_issuer(),
            enroll_host: None,
        }
    }
}

/// Most worker threads accepted; more only adds context switches.
pub const MAX_WORKER_THREADS: usize = 256;

impl GatewayConfig {
    /// The number of worker threads to start: the configured number, or one per CPU this
    /// process may run on (its affinity and CPU quota count).
    pub fn effective_worker_threads(&self) -> usize {
        if self.worker_threads > 0 {
            return self.worker_threads;
        }
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    }
}

fn default_status_max_age_secs() -> u64 {
    30
}
fn default_status_fail_closed_secs() -> u64 {
    300
}
fn default_reload_poll_secs() -> u64 {
    2
}
fn default_anchors_refresh_secs() -> u64 {
    60
}
fn default_drain_secs() -> u64 {
    30
}
fn default_tunnel_idle_secs() -> u64 {
    300
}
fn default_tunnel_max_secs() -> u64 {
    28_800
}
fn default_assertion_ttl_secs() -> u64 {
    60
}
fn default_assertion_header() -> String {
    "X-Certgate-Assertion".into()
}
fn default_assertion_issuer() -> String {
    "certgate".into()
}

/// An `https` upstream needs trust anchors; TLS settings on a plain upstream, or half a
/// client key pair, are mistakes worth stopping for.
fn check_upstream_tls(r: &RouteConfig, https: bool) -> Result<(), ConfigError> {
    let invalid = |m: &str| Err(ConfigError::Invalid(format!("[[route]] {}: {m}", r.prefix)));
    let Some(t) = &r.upstream_tls else {
        return if https {
            invalid(
                "an https upstream needs [route.upstream_tls] with ca_file (or system_roots = true)",
            )
        } else {
            Ok(())
        };
    };
    if !https {
        return invalid("[route.upstream_tls] is set but the upstream is not https");
    }
    if t.ca_file.is_none() && !t.system_roots {
        return invalid(
            "[route.upstream_tls] needs ca_file, the CA that issued the app's certificate \
             (or system_roots = true)",
        );
    }
    if t.client_cert.is_some() != t.client_key.is_some() {
        return invalid("[route.upstream_tls] client_cert and client_key go together");
    }
    let bad_name = t
        .server_name
        .as_deref()
        .is_some_and(|n| rustls_pki_types::ServerName::try_from(n.to_string()).is_err());
    if bad_name {
        return invalid("[route.upstream_tls] server_name is not a DNS name or IP address");
    }
    Ok(())
}

/// Every endpoint an `http[s]://host:port[/base]` URL, all of one scheme (they share
/// `[route.upstream_tls]`), and at least one.
/// A port written after the host must be a number from 1 to 65535: `http::Uri` reads
/// `:99999` or a bare `:` as no port at all, which would connect to 80 or 443.
fn port_problem(authority: &http::uri::Authority) -> Option<String> {
    let text = authority.as_str();
    // An IPv6 literal's colons are inside its brackets.
    let after_host = match text.rfind(']') {
        Some(end) => &text[end + 1..],
        None => text,
    };
    if !after_host.contains(':') {
        return None;
    }
    let digits = authority
        .port()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    match authority.port_u16() {
        Some(0) => Some("port 0 cannot be connected to".into()),
        // `:023111` reaches port 23111, and the app reads the zero in the Host header.
        Some(_) if digits.starts_with('0') => {
            Some("the port must be written without leading zeros".into())
        }
        Some(_) => None,
        None => Some("the port must be a number from 1 to 65535".into()),
    }
}

/// What makes two upstream URLs the same endpoint: scheme, host (an IP literal in its
/// canonical form, a name ignoring case), the port as connected to, and the base path.
fn endpoint_key(uri: &http::Uri) -> Option<(bool, String, u16, String)> {
    let https = uri.scheme_str()? == "https";
    let host = uri.host()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let host = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => bare.to_ascii_lowercase(),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri.path().trim_end_matches('/').to_owned();
    Some((https, host, port, path))
}

fn check_upstream_urls(r: &RouteConfig) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(format!("[[route]] {}: {m}", r.prefix)));
    let urls = r.upstream.urls();
    if urls.is_empty() {
        return invalid("upstream lists no URL; give one URL or a list of them".into());
    }
    let mut scheme = None;
    for u in urls {
        let uri: http::Uri = u
            .parse()
            .map_err(|_| ConfigError::Invalid(format!("[[route]] upstream {u:?} is not a URL")))?;
        let s = uri.scheme_str();
        if !matches!(s, Some("http" | "https")) || uri.authority().is_none() {
            return invalid(format!(
                "upstream {u:?} must be http://host:port or https://host:port"
            ));
        }
        if uri.query().is_some() || u.contains('#') {
            return invalid(format!(
                "upstream {u:?} must not have a query or a fragment"
            ));
        }
        // The base path is joined to canonical request paths: it must be canonical too, or
        // the app would read `/a/../b` or `/a%2Fb` its own way.
        let base = uri.path();
        if base != "/"
            && !crate::http_common::canonical::canonicalize(base).is_ok_and(|c| c.is_unchanged())
        {
            return invalid(format!(
                "upstream {u:?}: its base path {base:?} is not a canonical path (no escapes, \
                 dot segments, //, ; or trailing dots)"
            ));
        }
        if let Some(authority) = uri.authority() {
            if authority.as_str().contains('@') {
                return invalid(format!(
                    "upstream {u:?} carries user information (user:password@): HTTP forbids \
                     sending it, and the app would read it as part of the Host header"
                ));
            }
            if let Some(problem) = port_problem(authority) {
                return invalid(format!("upstream {u:?}: {problem}"));
            }
        }
        let https = s == Some("https");
        match scheme {
            None => scheme = Some(https),
            Some(first) if first != https => {
                return invalid(format!(
                    "upstream mixes http and https endpoints ({u:?}); all endpoints of a route \
                     share one scheme and one [route.upstream_tls]"
                ));
            }
            Some(_) => {}
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for u in urls {
        let key = u
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| endpoint_key(&uri));
        if !seen.insert(key) {
            return invalid(format!(
                "upstream lists {u:?} twice; each endpoint once (a repeated one would take \
                 twice the share of requests)"
            ));
        }
    }
    if r.eject_secs == 0 {
        return invalid("eject_secs must be at least 1".into());
    }
    if let Some(h) = &r.health {
        let path_ok = h.path.starts_with('/') && h.path.parse::<http::uri::PathAndQuery>().is_ok();
        if !path_ok {
            return invalid(format!(
                "[route.health] path {:?} must start with /",
                h.path
            ));
        }
        if h.interval_secs == 0 || h.timeout_secs == 0 {
            return invalid(
                "[route.health] interval_secs and timeout_secs must be at least 1".into(),
            );
        }
        if !(100..=599).contains(&h.expected_status) {
            return invalid(
                "[route.health] expected_status must be an HTTP status (100-599)".into(),
            );
        }
    }
    check_upstream_tls(r, scheme == Some(true))
}

fn check_xfcc(r: &RouteConfig) -> Result<(), ConfigError> {
    let invalid = |m: &str| Err(ConfigError::Invalid(format!("[[route]] {}: {m}", r.prefix)));
    if r.xfcc_fields.is_empty() {
        return invalid("xfcc_fields must list at least one key");
    }
    match (&r.xfcc_by, r.xfcc_fields.contains(&XfccField::By)) {
        (None, true) => invalid("xfcc_fields lists \"By\" but xfcc_by is not set"),
        (Some(_), false) => invalid("xfcc_by is set but xfcc_fields does not list \"By\""),
        // Sent in a header: printable ASCII only.
        (Some(by), true) if by.is_empty() || !by.bytes().all(|b| (0x20..0x7f).contains(&b)) => {
            invalid("xfcc_by must be printable ASCII and not empty")
        }
        _ => Ok(()),
    }
}

pub(super) fn check(cfg: &Config) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    if cfg.gateway.worker_threads > MAX_WORKER_THREADS {
        return invalid(format!(
            "[gateway] worker_threads must be at most {MAX_WORKER_THREADS} (0 means one per CPU)"
        ));
    }
    if cfg.gateway.tunnel_idle_secs == 0 || cfg.gateway.tunnel_max_secs == 0 {
        return invalid("[gateway] tunnel timeouts must be at least 1 s".into());
    }
    if let Some(host) = &cfg.gateway.enroll_host {
        check_enroll_host(cfg, host).map_err(ConfigError::Invalid)?;
    }
    for l in &cfg.listeners {
        if l.max_header_bytes < 8192 {
            return invalid(format!(
                "[[listener]] {}: max_header_bytes must be at least 8192",
                l.addr
            ));
        }
        if l.max_connections == 0 {
            return invalid(format!(
                "[[listener]] {}: max_connections must be at least 1",
                l.addr
            ));
        }
        if l.handshake_timeout_secs == 0 || l.header_read_timeout_secs == 0 {
            return invalid(format!(
                "[[listener]] {}: timeouts must be at least 1 s",
                l.addr
            ));
        }
        match (l.proxy_protocol, l.trusted_proxies.is_empty()) {
            (true, true) => {
                return invalid(format!(
                    "[[listener]] {}: proxy_protocol = true needs trusted_proxies (the load \
                     balancers' addresses); without it every connection would be refused",
                    l.addr
                ));
            }
            (false, false) => {
                return invalid(format!(
                    "[[listener]] {}: trusted_proxies is set but proxy_protocol is not; \
                     the list would have no effect",
                    l.addr
                ));
            }
            _ => {}
        }
        // An entry inside another is a duplicate or a typo for a different block.
        for (i, a) in l.trusted_proxies.iter().enumerate() {
            if let Some(b) = l.trusted_proxies[..i]
                .iter()
                .find(|b| b.covers(a) || a.covers(b))
            {
                return invalid(format!(
                    "[[listener]] {}: trusted_proxies lists {a} and {b}, one inside the \
                     other; list each block once",
                    l.addr
                ));
            }
        }
    }
    for (i, a) in cfg.listeners.iter().enumerate() {
        // Port 0 (any free port, for tests) may appear several times.
        if a.addr.port() != 0 && cfg.listeners[..i].iter().any(|b| b.addr == a.addr) {
            return invalid(format!("[[listener]] {} is configured twice", a.addr));
        }
    }
    for r in &cfg.routes {
        if !r.prefix.starts_with('/') {
            return invalid(format!("[[route]] prefix {:?} must start with /", r.prefix));
        }
        check_upstream_urls(r)?;
        if r.connect_timeout_secs == 0 || r.response_timeout_secs == 0 {
            return invalid(format!(
                "[[route]] {}: timeouts must be at least 1 s",
                r.prefix
            ));
        }
        if r.pool.idle_timeout_secs == 0 {
            return invalid(format!(
                "[[route]] {}: [route.pool] idle_timeout_secs must be at least 1",
                r.prefix
            ));
        }
        check_xfcc(r)?;
        if r.tunnel_idle_secs == Some(0) || r.tunnel_max_secs == Some(0) {
            return invalid(format!(
                "[[route]] {}: tunnel timeouts must be at least 1 s",
                r.prefix
            ));
        }
        for token in &r.upgrades {
            if token.eq_ignore_ascii_case("h2c") {
                return invalid(format!(
                    "[[route]] {}: upgrades must not list h2c (HTTP/2 in a tunnel would pass \
                     requests the gateway never checked)",
                    r.prefix
                ));
            }
            let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&b);
            if token.is_empty() || !token.bytes().all(token_char) {
                return invalid(format!(
                    "[[route]] {}: upgrades {token:?} is not a protocol token",
                    r.prefix
                ));
            }
        }
        for name in &r.strip_headers {
            let bare = name.strip_suffix('*').unwrap_or(name);
            if bare.is_empty() || http::HeaderName::from_bytes(bare.as_bytes()).is_err() {
                return invalid(format!(
                    "[[route]] {}: strip_headers {name:?} is not a header name",
                    r.prefix
                ));
            }
        }
        if let Some(b) = &r.login_binding {
            if !b.path.starts_with('/') || b.field.is_empty() {
                return invalid(format!(
                    "[[route]] {}: login_binding needs a path starting with / and a field",
                    r.prefix
                ));
            }
            if r.auth != RouteAuth::Certificate {
                return invalid(format!(
                    "[[route]] {}: login_binding needs auth = \"certificate\"",
                    r.prefix
                ));
            }
        }
    }
    for (i, a) in cfg.routes.iter().enumerate() {
        let same = |b: &RouteConfig| {
            b.prefix == a.prefix
                && b.host.as_deref().map(str::to_ascii_lowercase)
                    == a.host.as_deref().map(str::to_ascii_lowercase)
        };
        if cfg.routes[..i].iter().any(same) {
            return invalid(format!("[[route]] {} is configured twice", a.prefix));
        }
    }
    let g = &cfg.gateway;
    if g.status_max_age_secs == 0 || g.reload_poll_secs == 0 || g.anchors_refresh_secs == 0 {
        return invalid("[gateway] intervals must be at least 1 s".into());
    }
    if g.status_fail_closed_secs < g.status_max_age_secs {
        return invalid(
            "[gateway] status_fail_closed_secs must not be shorter than status_max_age_secs".into(),
        );
    }
    if http::HeaderName::from_bytes(g.assertion_header.as_bytes()).is_err() {
        return invalid(format!(
            "[gateway] assertion_header {:?} is not a header name",
            g.assertion_header
        ));
    }
    if g.assertion_ttl_secs == 0 || g.assertion_ttl_secs > 3600 {
        return invalid("[gateway] assertion_ttl_secs must be between 1 and 3600".into());
    }
    Ok(())
}

/// Whether `path` (canonical) belongs to the issuance surface that `[gateway] enroll_host`
/// keeps on its own host: certgate's pages and the administrator's `/api/v1/`. Left on
/// every host: EST, CRL and OCSP (named in certificates and device configurations), the
/// pages' static assets and `/certgate/renew-later` (the renewal interstitial, shown on an
/// app's host, uses both; neither changes anything but a cookie on that host).
pub fn is_issuance_surface(path: &str) -> bool {
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/certgate/assets") || path == "/certgate/renew-later" {
        return false;
    }
    under("/certgate") || under("/api/v1")
}

/// `[gateway] enroll_host`: a bare host name, and the combinations that would break it.
fn check_enroll_host(cfg: &Config, host: &str) -> Result<(), String> {
    let bare = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.ends_with('.');
    if !bare {
        return Err(format!(
            "[gateway] enroll_host must be a bare lower-case host name such as \
             \"enroll.bank.example\" (no scheme, port or path), not {host:?}"
        ));
    }
    // Renewal notices link to `public_url`/certgate/renew: on any other host that is a 404.
    let public_host = url_host(&cfg.ca.public_url);
    if !public_host.eq_ignore_ascii_case(host) {
        return Err(format!(
            "[gateway] enroll_host = {host:?} serves certgate's pages on that host only, but \
             [ca] public_url {:?} names {public_host:?}: the renewal notices would link to a \
             page that answers 404. Set public_url to https://{host}",
            cfg.ca.public_url
        ));
    }
    for r in &cfg.routes {
        let on_enroll_host = r
            .host
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(host));
        if on_enroll_host && is_issuance_surface(&r.prefix) {
            return Err(format!(
                "[[route]] {} on host {host:?}: the prefix lies under certgate's own pages or \
                 /api/v1/, which certgate answers itself on that host; the route would never \
                 be used",
                r.prefix
            ));
        }
    }
    Ok(())
}

/// The host of an `http(s)://host[:port][/…]` URL, lower-cased.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::EXAMPLE;

    #[test]
    fn the_issuance_surface_is_the_pages_and_the_admin_api() {
        for p in [
            "/certgate",
            "/certgate/",
            "/certgate/admin",
            "/certgate/api/renew",
            "/api/v1/users",
        ] {
            assert!(is_issuance_surface(p), "{p}");
        }
        for p in [
            "/certgate/assets/style.css",
            "/certgate/renew-later",
            "/certgatex",
            "/api/v10",
            "/.well-known/est/simplereenroll",
            "/ocsp",
            "/crl/1.crl",
            "/ib/top",
        ] {
            assert!(!is_issuance_surface(p), "{p}");
        }
    }
    use IdentityFormatName::{Certgate, Jwt, Rfc9440, Xfcc};

    fn route(extra: &str) -> RouteConfig {
        let text = format!("prefix = \"/\"\nupstream = \"http://127.0.0.1:1\"\n{extra}");
        toml::from_str(&text).unwrap()
    }

    /// The example with its route's `identity` and `xfcc_fields` replaced by `lines`.
    fn example_with(lines: &str) -> Result<Config, ConfigError> {
        let (identity, fields) = (
            "identity = [\"certgate\"]\n",
            "xfcc_fields = [\"Hash\", \"Cert\", \"Subject\"]\n",
        );
        assert!(EXAMPLE.contains(identity) && EXAMPLE.contains(fields));
        let text = EXAMPLE
            .replace(identity, &format!("{lines}\n"))
            .replace(fields, "");
        Config::parse(&text, "t", Path::new("."))
    }

    #[test]
    fn tunnel_timeouts_come_from_the_route_else_the_gateway_and_are_never_zero() {
        let g = GatewayConfig::default();
        let secs = std::time::Duration::from_secs;
        assert_eq!(route("").tunnel_limits(&g), (secs(300), secs(28_800)));
        assert_eq!(
            route("tunnel_idle_secs = 5\ntunnel_max_secs = 60\n").tunnel_limits(&g),
            (secs(5), secs(60))
        );
        assert_eq!(
            route("tunnel_max_secs = 60\n").tunnel_limits(&g),
            (secs(300), secs(60))
        );
        assert!(example_with("tunnel_idle_secs = 0").is_err());
        assert!(example_with("tunnel_max_secs = 0").is_err());
        assert!(example_with("tunnel_idle_secs = 1").is_ok());
        let zero = EXAMPLE.replace("tunnel_max_secs = 28800", "tunnel_max_secs = 0");
        assert!(Config::parse(&zero, "t", Path::new(".")).is_err());
    }

    #[test]
    fn a_route_sends_the_certgate_headers_by_default() {
        assert_eq!(route("").identity_formats(), [Certgate]);
        let cfg = Config::parse(EXAMPLE, "example", Path::new(".")).unwrap();
        assert_eq!(cfg.routes[0].identity_formats(), [Certgate]);
        assert_eq!(
            cfg.routes[0].xfcc_fields,
            [XfccField::Hash, XfccField::Cert, XfccField::Subject]
        );
    }

    #[test]
    fn the_pool_settings_have_defaults_and_a_zero_idle_timeout_is_refused() {
        let r = route("");
        assert_eq!(
            (
                r.pool.max_idle_per_worker,
                r.pool.idle_timeout_secs,
                r.upstream_http2
            ),
            (64, 50, false)
        );
        let r = route(
            "upstream_http2 = true\n[pool]\nmax_idle_per_worker = 2\nidle_timeout_secs = 5\n",
        );
        assert_eq!(
            (r.pool.max_idle_per_worker, r.pool.idle_timeout_secs),
            (2, 5)
        );
        assert!(r.upstream_http2);
        let text = EXAMPLE.replace(
            "upstream_http2 = false\n",
            "upstream_http2 = false\n[route.pool]\nidle_timeout_secs = 0\n",
        );
        let err = Config::parse(&text, "t", Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("idle_timeout_secs"), "{err}");
    }

    #[test]
    fn the_old_flags_add_their_format() {
        let r = route("client_cert_header = true\nxfcc = true\nassertion = true\n");
        assert_eq!(r.identity_formats(), [Certgate, Rfc9440, Xfcc, Jwt]);
        assert_eq!(route("xfcc = true").identity_formats(), [Certgate, Xfcc]);
        // Added to a list that leaves the certgate headers out.
        let r = route("identity = [\"jwt\"]\nclient_cert_header = true\n");
        assert_eq!(r.identity_formats(), [Rfc9440, Jwt]);
        assert!(!r.sends(Certgate) && r.sends(Rfc9440) && r.sends(Jwt) && !r.sends(Xfcc));
    }

    #[test]
    fn the_list_is_sent_once_each_in_a_fixed_order() {
        let r = route("identity = [\"jwt\", \"xfcc\", \"certgate\", \"jwt\", \"rfc9440\"]");
        assert_eq!(r.identity_formats(), [Certgate, Rfc9440, Xfcc, Jwt]);
        assert!(route("identity = []").identity_formats().is_empty());
        let cfg = example_with("identity = [\"certgate\", \"xfcc\"]").unwrap();
        assert_eq!(cfg.routes[0].identity_formats(), [Certgate, Xfcc]);
    }

    #[test]
    fn an_unknown_format_is_refused_with_the_valid_names() {
        let err = example_with("identity = [\"certgate\", \"spiffe\"]")
            .unwrap_err()
            .to_string();
        for name in ["spiffe", "certgate", "rfc9440", "xfcc", "jwt"] {
            assert!(err.contains(name), "{name} not in {err}");
        }
        // Names are lower-case, as documented.
        assert!(example_with("identity = [\"XFCC\"]").is_err());
    }

    #[test]
    fn xfcc_fields_are_checked() {
        let r = route("xfcc_fields = [\"DNS\", \"By\", \"URI\", \"Chain\"]\nxfcc_by = \"x\"");
        assert_eq!(
            r.xfcc_fields,
            [
                XfccField::Dns,
                XfccField::By,
                XfccField::Uri,
                XfccField::Chain
            ]
        );
        let err = example_with("xfcc_fields = [\"Hash\", \"Serial\"]")
            .unwrap_err()
            .to_string();
        for name in [
            "Serial", "By", "Hash", "Cert", "Chain", "Subject", "URI", "DNS",
        ] {
            assert!(err.contains(name), "{name} not in {err}");
        }
        for (lines, says) in [
            ("xfcc_fields = [\"By\", \"Hash\"]", "xfcc_by is not set"),
            ("xfcc_by = \"spiffe://gw\"", "does not list \"By\""),
            ("xfcc_fields = []", "at least one"),
            (
                "xfcc_fields = [\"By\"]\nxfcc_by = \"a\\u0001b\"",
                "printable ASCII",
            ),
        ] {
            let err = example_with(lines).unwrap_err().to_string();
            assert!(err.contains(says), "{lines}: {err}");
        }
        let ok =
            example_with("xfcc_fields = [\"By\", \"Cert\"]\nxfcc_by = \"spiffe://gw\"").unwrap();
        assert_eq!(ok.routes[0].xfcc_by.as_deref(), Some("spiffe://gw"));
    }

    #[test]
    fn format_names_sit_at_their_index() {
        for (i, f) in IdentityFormatName::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i);
            let parsed: RouteConfig = route(&format!("identity = [\"{}\"]", f.as_str()));
            assert_eq!(parsed.identity, [f]);
        }
        for f in XfccField::ALL {
            let parsed = route(&format!("xfcc_fields = [\"{}\"]", f.as_str()));
            assert_eq!(parsed.xfcc_fields, [f]);
        }
    }
}
