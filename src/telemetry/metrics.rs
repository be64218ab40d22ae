//! The gateway's Prometheus metrics, one registry per gateway. Other modules count through
//! the helpers here; only this file knows metric names and labels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: String,
    status: u16,
}

/// Which build is running, for `certgate_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Build {
    version: String,
    /// `release` or `debug`: a debug build in production is worth an alert.
    profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteReason {
    route: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteEndpoint {
    route: String,
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheResult {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Counters and histograms of one gateway.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    handshake_failures: Family<Reason, Counter>,
    upstream_latency: Family<RouteLabel, Histogram, fn() -> Histogram>,
    upstream_failures: Family<RouteReason, Counter>,
    endpoint_up: Family<RouteEndpoint, Gauge>,
    refusals: Family<Reason, Counter>,
    staff_refusals: Family<Reason, Counter>,
    reloads: Family<Outcome, Counter>,
    tunnels_open: Family<RouteLabel, Gauge>,
    tunnels_closed: Family<RouteReason, Counter>,
    connections: Gauge,
    parked: Gauge,
    /// The status cache's three series, resolved once (looked up on every request).
    status_hit: Counter,
    status_miss: Counter,
    status_stale: Counter,
}

/// One route's series, resolved when the route table is built, so that a request counts
/// without building label strings or looking them up.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    answered_ok: Counter,
    latency: Histogram,
}

impl RouteMetrics {
    /// Records the time until the upstream's response head.
    pub fn upstream_latency(&self, seconds: f64) {
        self.latency.observe(seconds);
    }
}

/// Why a request could not be sent to, or answered by, a route's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// No TCP connection (refused, unreachable, timed out).
    Connect,
    /// The TLS handshake with the app failed (its certificate not trusted, wrong name).
    Tls,
    /// The app did not answer in time.
    Timeout,
    /// The exchange broke off after the request was sent.
    Exchange,
    /// The app did not speak the protocol asked of it (no `h2` in ALPN, a broken HTTP/2
    /// preface or settings, an answer framed both by length and by transfer coding).
    Protocol,
}

impl UpstreamFailure {
    const ALL: [Self; 5] = [
        Self::Connect,
        Self::Tls,
        Self::Timeout,
        Self::Exchange,
        Self::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Exchange => "exchange",
            Self::Protocol => "protocol",
        }
    }
}

/// One route's upstream failure series, resolved when the route table is built.
#[derive(Debug, Clone)]
pub struct UpstreamFailures {
    by_reason: [Counter; 5],
}

impl UpstreamFailures {
    pub fn count(&self, failure: UpstreamFailure) {
        self.by_reason[failure as usize].inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("certgate");
        let requests = Family::<RouteStatus, Counter>::default();
        let handshake_failures = Family::<Reason, Counter>::default();
        let upstream_latency =
            Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let upstream_failures = Family::<RouteReason, Counter>::default();
        let endpoint_up = Family::<RouteEndpoint, Gauge>::default();
        let status_cache = Family::<CacheResult, Counter>::default();
        let refusals = Family::<Reason, Counter>::default();
        let staff_refusals = Family::<Reason, Counter>::default();
        let reloads = Family::<Outcome, Counter>::default();
        let tunnels_open = Family::<RouteLabel, Gauge>::default();
        let tunnels_closed = Family::<RouteReason, Counter>::default();
        let connections = Gauge::default();
        let parked = Gauge::default();
        let build = Family::<Build, Gauge>::default();
        build
            .get_or_create(&Build {
                version: env!("CARGO_PKG_VERSION").into(),
                profile: if cfg!(debug_assertions) {
                    "debug"
                } else {
                    "release"
                }
                .into(),
            })
            .set(1);
        registry.register(
            "build_info",
            "The running build (always 1), by version and profile",
            build,
        );
        registry.register(
            "requests",
            "Requests answered, by route and HTTP status",
            requests.clone(),
        );
        registry.register(
            "handshake_failures",
            "TLS handshakes that failed, by reason",
            handshake_failures.clone(),
        );
        registry.register(
            "upstream_duration_seconds",
            "Time until the upstream's response head, by route",
            upstream_latency.clone(),
        );
        registry.register(
            "upstream_failures",
            "Requests not sent to or not answered by the upstream, by route and reason \
             (connect, tls, timeout, exchange)",
            upstream_failures.clone(),
        );
        registry.register(
            "upstream_endpoint_up",
            "1 while a route's endpoint takes requests, 0 while it is left out after failing \
             to connect or its health check",
            endpoint_up.clone(),
        );
        registry.register(
            "status_cache_lookups",
            "Certificate status lookups, by result (hit, miss, stale)",
            status_cache.clone(),
        );
        registry.register(
            "refusals",
            "Requests refused by the gateway, by reason",
            refusals.clone(),
        );
        registry.register(
            "staff_console_refusals",
            "Staff console requests refused, by reason: every one, also those the audit log \
             only counts in its next entry for the same certificate and reason, and request \
             heads refused before the staff check (method, missing_host, several_hosts, \
             invalid_host, hosts_disagree)",
            staff_refusals.clone(),
        );
        registry.register(
            "reloads",
            "Configuration and certificate reloads, by outcome",
            reloads.clone(),
        );
        registry.register(
            "tunnels_open",
            "Upgraded connections (WebSocket tunnels) open now, by route",
            tunnels_open.clone(),
        );
        registry.register(
            "tunnels_closed",
            "Tunnels closed, by route and reason (client_closed, upstream_closed, idle, \
             max_age, status, shutdown)",
            tunnels_closed.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open now",
            connections.clone(),
        );
        registry.register(
            "parked_connections",
            "HTTP/1.1 connections waiting for a request with no HTTP buffers held",
            parked.clone(),
        );
        let status = |outcome: CacheOutcome| {
            status_cache
                .get_or_create(&CacheResult {
                    result: outcome.as_str().into(),
                })
                .clone()
        };
        let (status_hit, status_miss, status_stale) = (
            status(CacheOutcome::Hit),
            status(CacheOutcome::Miss),
            status(CacheOutcome::Stale),
        );
        Self {
            registry,
            requests,
            handshake_failures,
            upstream_latency,
            upstream_failures,
            endpoint_up,
            refusals,
            staff_refusals,
            reloads,
            tunnels_open,
            tunnels_closed,
            connections,
            parked,
            status_hit,
            status_miss,
            status_stale,
        }
    }

    /// The series of the route labelled `label` (made now if new).
    pub fn route(&self, label: &str) -> RouteMetrics {
        RouteMetrics {
            answered_ok: self
                .requests
                .get_or_create(&RouteStatus {
                    route: label.to_string(),
                    status: 200,
                })
                .clone(),
            latency: self
                .upstream_latency
                .get_or_create(&RouteLabel {
                    route: label.to_string(),
                })
                .clone(),
        }
    }

    /// The upstream failure series of the route labelled `label` (made now if new).
    pub fn upstream_failures(&self, label: &str) -> UpstreamFailures {
        UpstreamFailures {
            by_reason: UpstreamFailure::ALL.map(|f| {
                self.upstream_failures
                    .get_or_create(&RouteReason {
                        route: label.to_string(),
                        reason: f.as_str().to_string(),
                    })
                    .clone()
            }),
        }
    }

    /// The up/down gauge of `endpoint` (`host:port`) of the route labelled `label`.
    pub fn upstream_endpoint_up(&self, label: &str, endpoint: &str) -> Gauge {
        self.endpoint_up
            .get_or_create(&RouteEndpoint {
                route: label.to_string(),
                endpoint: endpoint.to_string(),
            })
            .clone()
    }

    /// Counts a request answered on the route labelled `label`, whose series are `route`.
    pub fn route_request(&self, route: &RouteMetrics, label: &str, status: u16) {
        if status == 200 {
            route.answered_ok.inc();
        } else {
            self.request(label, status);
        }
    }

    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RouteStatus {
                route: route.into(),
                status,
            })
            .inc();
    }

    /// The open-tunnels gauge of the route labelled `label`.
    pub fn tunnels_open(&self, label: &str) -> Gauge {
        self.tunnels_open
            .get_or_create(&RouteLabel {
                route: label.to_string(),
            })
            .clone()
    }

    /// Counts a tunnel of the route labelled `label` closed for `reason`.
    pub fn tunnel_closed(&self, label: &str, reason: &str) {
        self.tunnels_closed
            .get_or_create(&RouteReason {
                route: label.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn handshake_failure(&self, reason: &str) {
        self.handshake_failures
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn status_lookup(&self, outcome: CacheOutcome) {
        match outcome {
            CacheOutcome::Hit => self.status_hit.inc(),
            CacheOutcome::Miss => self.status_miss.inc(),
            CacheOutcome::Stale => self.status_stale.inc(),
        };
    }

    pub fn refusal(&self, reason: &str) {
        self.refusals
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn staff_refusal(&self, reason: &str) {
        self.staff_refusals
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    pub fn reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "refused" };
        self.reloads
            .get_or_create(&Outcome {
                outcome: outcome.into(),
            })
            .inc();
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    pub fn connection_parked(&self) {
        self.parked.inc();
    }

    pub fn connection_unparked(&self) {
        self.parked.dec();
    }

    /// The text exposition (OpenMetrics, which Prometheus reads).
    /// Adds a collector read at each scrape (e.g. the notice counters).
    pub fn register_collector(
        &mut self,
        collector: Box<dyn prometheus_client::collector::Collector>,
    ) {
        self.registry.register_collector(collector);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Where an answer came from, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A fresh entry.
    Hit,
    /// Read from the store.
    Miss,
    /// The store failed; an older entry was used (or none was, and the request is refused).
    Stale,
}

impl CacheOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
        }
    }
}
