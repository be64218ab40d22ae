//! The routing table: which `[[route]]` serves a (host, canonical path). Longest prefix
//! wins, on whole path segments; at equal length a route bound to the host wins over one
//! without a host. Prefixes and hosts are compared ignoring ASCII case, so `/IB/top` is the
//! `/ib` route's, as case-insensitive apps (IIS) would read it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::canonical::canonicalize;
use super::forward::Upstream;
use crate::config::{ConfigError, IdentityFormatName, RouteConfig};
use crate::identity::ReservedNames;
use crate::telemetry::{Metrics, RouteMetrics};

/// One configured route with its upstream client.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    /// The identity formats it sends ([`RouteConfig::identity_formats`], resolved once).
    pub identity: Box<[IdentityFormatName]>,
    /// The label in metrics and logs: `prefix` or `host prefix`.
    pub label: String,
    pub upstream: Upstream,
    /// Its request counter and latency histogram.
    pub metrics: RouteMetrics,
    /// The route's own `strip_headers`.
    pub strip: ReservedNames,
}

/// All routes of the running configuration.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Builds the table (and the upstream clients, one pool per worker thread) from the
    /// configuration; `resolve` anchors the routes' file names (upstream TLS).
    pub fn new(
        routes: &[RouteConfig],
        workers: usize,
        metrics: &Metrics,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<Self, ConfigError> {
        let mut out = Vec::with_capacity(routes.len());
        for r in routes {
            let paths = std::iter::once(&r.prefix).chain(r.login_binding.as_ref().map(|b| &b.path));
            for p in paths {
                // A prefix that is not canonical would never match a canonical path.
                if !canonicalize(p).is_ok_and(|c| c.is_unchanged()) {
                    return Err(ConfigError::Invalid(format!(
                        "[[route]] {}: {p:?} is not a canonical path (no escapes, dot \
                         segments, //, ; or trailing dots)",
                        r.prefix
                    )));
                }
            }
            let label = match &r.host {
                Some(h) => format!("{} {}", h.to_ascii_lowercase(), r.prefix),
                None => r.prefix.clone(),
            };
            out.push(Arc::new(Route {
                config: r.clone(),
                identity: r.identity_formats().into(),
                metrics: metrics.route(&label),
                upstream: Upstream::new(r, workers, metrics, &label, resolve)?,
                label,
                strip: ReservedNames::from_list(&r.strip_headers),
            }));
        }
        Ok(Self { routes: out })
    }

    /// The route for `host` (lower-case, without port) and `path`. With `named_only`, only
    /// routes naming `host` are candidates (the `[gateway] enroll_host` serves no app that
    /// did not ask for it).
    pub fn find(&self, host: Option<&str>, path: &str, named_only: bool) -> Option<Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| match (&r.config.host, host) {
                (None, _) => !named_only,
                (Some(want), Some(h)) => want.eq_ignore_ascii_case(h),
                (Some(_), None) => false,
            })
            .filter(|r| prefix_matches(&r.config.prefix, path))
            .max_by_key(|r| (r.config.prefix.len(), r.config.host.is_some()))
            .cloned()
    }
}

/// Whether `prefix` covers `path` on segment boundaries, ignoring ASCII case.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    let (prefix, path) = (prefix.as_bytes(), path.as_bytes());
    let starts = |p: &[u8]| path.len() >= p.len() && path[..p.len()].eq_ignore_ascii_case(p);
    if let Some(dir) = prefix.strip_suffix(b"/") {
        return starts(prefix) || path.eq_ignore_ascii_case(dir);
    }
    starts(prefix) && path.get(prefix.len()).is_none_or(|b| *b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(prefix: &str, host: Option<&str>, upstream: &str) -> RouteConfig {
        let text = format!("prefix = {prefix:?}\nupstream = {upstream:?}\n");
        let mut r: RouteConfig = toml::from_str(&text).unwrap();
        r.host = host.map(str::to_string);
        r
    }

    #[tokio::test]
    async fn longest_prefix_then_host_wins() {
        let t = RouteTable::new(
            &[
                route("/", None, "http://127.0.0.1:1"),
                route("/app", None, "http://127.0.0.1:2"),
                route("/app", Some("ib.example"), "http://127.0.0.1:3"),
                route("/app/admin/", None, "http://127.0.0.1:4"),
            ],
            1,
            &Metrics::new(),
            &Path::to_path_buf,
        )
        .unwrap();
        let up = |h: Option<&str>, p: &str| {
            t.find(h, p, false)
                .unwrap()
                .config
                .upstream
                .first()
                .to_string()
        };
        assert_eq!(up(None, "/x"), "http://127.0.0.1:1");
        assert_eq!(up(None, "/apple"), "http://127.0.0.1:1");
        assert_eq!(up(None, "/app/x"), "http://127.0.0.1:2");
        assert_eq!(up(Some("IB.example"), "/app"), "http://127.0.0.1:3");
        assert_eq!(up(Some("ib.example"), "/app/admin"), "http://127.0.0.1:4");
        assert_eq!(up(None, "/app/admin/y"), "http://127.0.0.1:4");
        assert_eq!(up(None, "/APP/x"), "http://127.0.0.1:2");
        assert_eq!(up(None, "/App/ADMIN"), "http://127.0.0.1:4");
        assert_eq!(up(Some("IB.EXAMPLE"), "/aPp"), "http://127.0.0.1:3");
        assert_eq!(up(None, "/APPLE"), "http://127.0.0.1:1");
        let only_host = RouteTable::new(
            &[route("/", Some("a"), "http://127.0.0.1:1")],
            1,
            &Metrics::new(),
            &Path::to_path_buf,
        )
        .unwrap();
        assert!(only_host.find(Some("b"), "/", false).is_none());
        assert!(only_host.find(Some("a"), "/", true).is_some());
    }

    #[test]
    fn a_prefix_that_is_not_canonical_is_refused() {
        for p in ["/a/../b", "/%61", "/a;b", "//a", "/a."] {
            let r = RouteTable::new(
                &[route(p, None, "http://127.0.0.1:1")],
                1,
                &Metrics::new(),
                &Path::to_path_buf,
            );
            assert!(r.is_err(), "{p}");
        }
    }
}
