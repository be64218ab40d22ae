//! The routing table: which `[[route]]` serves a (host, path). Longest prefix wins, on whole
//! path segments; at equal length a route bound to the host wins over one without a host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::forward::Upstream;
use crate::config::{ConfigError, IdentityFormatName, RouteConfig};
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
            let label = match &r.host {
                Some(h) => format!("{} {}", h.to_ascii_lowercase(), r.prefix),
                None => r.prefix.clone(),
            };
            out.push(Arc::new(Route {
                config: r.clone(),
                identity: r.identity_formats().into(),
                metrics: metrics.route(&label),
                upstream: Upstream::new(r, workers, metrics.upstream_failures(&label), resolve)?,
                label,
            }));
        }
        Ok(Self { routes: out })
    }

    /// The route for `host` (lower-case, without port) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| match (&r.config.host, host) {
                (None, _) => true,
                (Some(want), Some(h)) => want.eq_ignore_ascii_case(h),
                (Some(_), None) => false,
            })
            .filter(|r| prefix_matches(&r.config.prefix, path))
            .max_by_key(|r| (r.config.prefix.len(), r.config.host.is_some()))
            .cloned()
    }
}

/// Whether `prefix` covers `path` on segment boundaries.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix) || path == prefix.trim_end_matches('/');
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
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
        let up = |h: Option<&str>, p: &str| t.find(h, p).unwrap().config.upstream.clone();
        assert_eq!(up(None, "/x"), "http://127.0.0.1:1");
        assert_eq!(up(None, "/apple"), "http://127.0.0.1:1");
        assert_eq!(up(None, "/app/x"), "http://127.0.0.1:2");
        assert_eq!(up(Some("IB.example"), "/app"), "http://127.0.0.1:3");
        assert_eq!(up(Some("ib.example"), "/app/admin"), "http://127.0.0.1:4");
        assert_eq!(up(None, "/app/admin/y"), "http://127.0.0.1:4");
        let only_host = RouteTable::new(
            &[route("/", Some("a"), "http://127.0.0.1:1")],
            1,
            &Metrics::new(),
            &Path::to_path_buf,
        )
        .unwrap();
        assert!(only_host.find(Some("b"), "/").is_none());
    }
}
