//! The endpoints of one route and which of them takes the next request: each in turn
//! (round-robin) or the one with the fewest requests waiting for their answer. An endpoint
//! that could not be connected to is left out for `eject_secs` (passive health); with
//! `[route.health]`, a background check per endpoint leaves out one that fails and brings
//! back one that answers (active health). When every endpoint is out, they are tried
//! anyway: a request is never held waiting for an endpoint to come back.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request};
use prometheus_client::metrics::gauge::Gauge;

use super::upstream_pool::UpstreamPool;
use crate::config::{HealthConfig, LbPolicy};

/// One endpoint: where it is, how the request line and Host header name it, its pool.
#[derive(Debug)]
pub struct Endpoint {
    pub authority: Authority,
    /// The Host header sent to it, made once.
    pub host: HeaderValue,
    pub base_path: String,
    pub pool: UpstreamPool,
    /// Milliseconds after the set's epoch until which it is left out; 0 while it is in.
    out_until: AtomicU64,
    /// Requests sent to it whose answer's head has not come yet (`least_outstanding`).
    outstanding: AtomicUsize,
    up: Gauge,
}

impl Endpoint {
    pub fn new(
        authority: Authority,
        host: HeaderValue,
        base_path: String,
        pool: UpstreamPool,
        up: Gauge,
    ) -> Self {
        up.set(1);
        Self {
            authority,
            host,
            base_path,
            pool,
            out_until: AtomicU64::new(0),
            outstanding: AtomicUsize::new(0),
            up,
        }
    }

    /// The request target on this endpoint: its base path, then the client's path.
    pub fn target(&self, pq: Option<&PathAndQuery>) -> Option<PathAndQuery> {
        match pq {
            // The common case: no base path, the client's path and query as they are.
            Some(pq) if self.base_path.is_empty() => Some(pq.clone()),
            pq => {
                let pq = pq.map_or("/", PathAndQuery::as_str);
                format!("{}{}", self.base_path, pq).parse().ok()
            }
        }
    }
}

/// Counts a request as outstanding on its endpoint until dropped.
pub struct Outstanding<'a>(Option<&'a AtomicUsize>);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.0 {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The endpoints of one route.
#[derive(Debug)]
pub struct Endpoints {
    list: Box<[Endpoint]>,
    lb: LbPolicy,
    next: AtomicUsize,
    eject: Duration,
    epoch: Instant,
}

impl Endpoints {
    /// `list` must not be empty (the configuration check sees to it).
    pub fn new(list: Vec<Endpoint>, lb: LbPolicy, eject: Duration) -> Self {
        Self {
            list: list.into(),
            lb,
            next: AtomicUsize::new(0),
            eject,
            epoch: Instant::now(),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn get(&self, i: usize) -> &Endpoint {
        &self.list[i]
    }

    fn now_ms(&self) -> u64 {
        // At least 1, so that 0 keeps meaning "in".
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn is_in(&self, i: usize, now: u64) -> bool {
        self.list[i].out_until.load(Ordering::Relaxed) <= now
    }

    /// The endpoint for the next request, other than `not` when there is another. Left-out
    /// endpoints are passed over unless all are out.
    pub fn pick(&self, not: Option<usize>) -> usize {
        let n = self.list.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let candidates = (0..n).map(|k| (start + k) % n).filter(|&i| Some(i) != not);
        let chosen = match self.lb {
            LbPolicy::RoundRobin => candidates.clone().find(|&i| self.is_in(i, now)),
            LbPolicy::LeastOutstanding => candidates
                .clone()
                .filter(|&i| self.is_in(i, now))
                .min_by_key(|&i| self.list[i].outstanding.load(Ordering::Relaxed)),
        };
        // Every other endpoint is out: try one anyway rather than refuse outright.
        chosen
            .or_else(|| candidates.clone().next())
            .unwrap_or(start % n)
    }

    /// Marks a request as sent to `i` until the guard is dropped (only counted where the
    /// policy reads it).
    pub fn start(&self, i: usize) -> Outstanding<'_> {
        if self.lb != LbPolicy::LeastOutstanding {
            return Outstanding(None);
        }
        let n = &self.list[i].outstanding;
        n.fetch_add(1, Ordering::Relaxed);
        Outstanding(Some(n))
    }

    /// Leaves `i` out for `eject_secs` after it could not be connected to or failed its
    /// health check.
    pub fn eject(&self, i: usize, why: &str) {
        let e = &self.list[i];
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(self.eject.as_millis()).unwrap_or(u64::MAX));
        let was = e.out_until.swap(until, Ordering::Relaxed);
        if was == 0 {
            tracing::warn!(endpoint = %e.authority, reason = why, secs = self.eject.as_secs(), "upstream endpoint left out");
        }
        e.up.set(0);
    }

    /// Brings `i` back after it answered. One relaxed load when it was never out.
    pub fn restore(&self, i: usize) {
        let e = &self.list[i];
        if e.out_until.load(Ordering::Relaxed) != 0 && e.out_until.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!(endpoint = %e.authority, "upstream endpoint back");
            e.up.set(1);
        }
    }

    /// Starts the active health check of every endpoint on the current Tokio runtime. Each
    /// check holds only a weak reference: it ends when the route table it belongs to is
    /// replaced by a reload or dropped at shutdown.
    pub fn spawn_health(self: &Arc<Self>, cfg: &HealthConfig) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime to run upstream health checks on");
            return;
        };
        for i in 0..self.list.len() {
            rt.spawn(health_loop(Arc::downgrade(self), i, cfg.clone()));
        }
    }

    /// Starts the sweep that closes every endpoint's expired idle connections, on the
    /// current Tokio runtime; like the health checks, it ends with the route table.
    pub fn spawn_sweep(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(every) = self.list.iter().map(|e| e.pool.sweep_interval()).min() else {
            return;
        };
        rt.spawn(sweep_loop(Arc::downgrade(self), every));
    }
}

async fn sweep_loop(set: Weak<Endpoints>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(set) = set.upgrade() else {
            return;
        };
        for e in &set.list {
            let closed = e.pool.sweep();
            if closed > 0 {
                tracing::debug!(endpoint = %e.authority, closed, "idle upstream connections closed");
            }
        }
    }
}

async fn health_loop(set: Weak<Endpoints>, i: usize, cfg: HealthConfig) {
    let mut tick = tokio::time::interval(Duration::from_secs(cfg.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let Ok(path) = cfg.path.parse::<PathAndQuery>() else {
        return;
    };
    loop {
        tick.tick().await;
        let Some(set) = set.upgrade() else {
            return;
        };
        let e = set.get(i);
        let Some(req) = probe_request(e, &path) else {
            return;
        };
        let outcome = tokio::time::timeout(timeout, e.pool.probe(req)).await;
        match outcome {
            Ok(Ok(status)) if status.as_u16() == cfg.expected_status => set.restore(i),
            Ok(Ok(status)) => {
                tracing::debug!(endpoint = %e.authority, %status, "health check answered otherwise");
                set.eject(i, "health check status");
            }
            Ok(Err(err)) => {
                tracing::debug!(endpoint = %e.authority, error = %crate::telemetry::error_chain(&err), "health check failed");
                set.eject(i, "health check failed");
            }
            Err(_) => set.eject(i, "health check timed out"),
        }
    }
}

fn probe_request(
    e: &Endpoint,
    path: &PathAndQuery,
) -> Option<Request<crate::http_common::body::ProxyBody>> {
    let target = e.target(Some(path))?;
    Request::builder()
        .method(Method::GET)
        .uri(target)
        .header(header::HOST, e.host.clone())
        .header(header::CONNECTION, "close")
        .header(header::USER_AGENT, "certgate-health-check")
        .body(crate::http_common::body::empty())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::upstream_pool::PoolSettings;

    fn set(n: u16, lb: LbPolicy) -> Endpoints {
        let list = (0..n)
            .map(|i| {
                let addr = format!("127.0.0.1:{}", 1 + i);
                let pool = UpstreamPool::new(
                    PoolSettings {
                        addr: addr.clone(),
                        connect_timeout: Duration::from_secs(1),
                        idle_timeout: Duration::from_secs(1),
                        max_idle_per_worker: 1,
                        tls: None,
                        http2: false,
                    },
                    1,
                );
                Endpoint::new(
                    addr.parse().unwrap(),
                    HeaderValue::from_str(&addr).unwrap(),
                    String::new(),
                    pool,
                    Gauge::default(),
                )
            })
            .collect();
        Endpoints::new(list, lb, Duration::from_secs(60))
    }

    #[test]
    fn round_robin_passes_over_a_left_out_endpoint_and_tries_all_when_all_are_out() {
        let s = set(3, LbPolicy::RoundRobin);
        let picks: Vec<usize> = (0..6).map(|_| s.pick(None)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        s.eject(1, "test");
        assert_eq!(s.get(1).up.get(), 0);
        assert!((0..6).all(|_| s.pick(None) != 1));
        assert_eq!(s.pick(Some(0)), 2);
        s.eject(0, "test");
        s.eject(2, "test");
        // Every one out: still an answer, and not the one just tried.
        assert_ne!(s.pick(Some(2)), 2);
        s.restore(1);
        assert_eq!(s.get(1).up.get(), 1);
        assert!((0..3).all(|_| s.pick(None) == 1));
    }

    #[test]
    fn least_outstanding_takes_the_least_busy() {
        let s = set(2, LbPolicy::LeastOutstanding);
        let busy = s.start(0);
        assert!((0..4).all(|_| s.pick(None) == 1));
        drop(busy);
        let _other = s.start(1);
        assert_eq!(s.pick(None), 0);
        assert_eq!(
            s.pick(Some(0)),
            1,
            "a retry goes elsewhere even to a busier one"
        );
    }

    #[test]
    fn a_single_endpoint_is_always_chosen() {
        let s = set(1, LbPolicy::RoundRobin);
        s.eject(0, "test");
        assert_eq!(s.pick(None), 0);
        assert_eq!(s.pick(Some(0)), 0);
    }
}
