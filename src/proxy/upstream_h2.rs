//! HTTP/2 to the app (`upstream_http2 = true`): one multiplexed connection per endpoint and
//! worker thread, shared by every request of that thread, made again when it closed. Over
//! TLS the app must choose `h2` in ALPN; a plain upstream gets the HTTP/2 preface at once
//! (prior knowledge, h2c).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header;
use http::uri::{Authority, Scheme};
use http::{Request, Uri, Version};
use hyper::client::conn::http2::SendRequest;
use tokio::sync::Mutex;

use crate::http_common::body::ProxyBody;
use crate::tls::UpstreamTls;

/// The one connection of a worker thread and when a request last went on it.
struct Shared {
    sender: SendRequest<ProxyBody>,
    last_used: Instant,
}

/// The HTTP/2 connections of one endpoint, one slot per worker thread.
pub(super) struct H2Slots {
    /// An async lock: a request waiting while its thread's connection is being made takes
    /// that connection instead of making another.
    slots: Box<[Mutex<Option<Shared>>]>,
    scheme: Scheme,
    /// The endpoint's TLS settings offering only `h2` in ALPN.
    tls: Option<UpstreamTls>,
}

impl H2Slots {
    pub(super) fn new(workers: usize, tls: Option<&UpstreamTls>) -> Self {
        let tls = tls.map(|t| {
            let mut config = (*t.config).clone();
            config.alpn_protocols = vec![b"h2".to_vec()];
            UpstreamTls {
                config: Arc::new(config),
                server_name: t.server_name.clone(),
            }
        });
        let scheme = if tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        Self {
            slots: (0..workers.max(1)).map(|_| Mutex::new(None)).collect(),
            scheme,
            tls,
        }
    }

    pub(super) fn tls(&self) -> Option<&UpstreamTls> {
        self.tls.as_ref()
    }

    fn slot(&self) -> &Mutex<Option<Shared>> {
        &self.slots[super::workers::current_index() % self.slots.len()]
    }

    /// This thread's live connection, or one made by `connect` and kept for the next
    /// requests; with `fresh`, a new one in any case (the kept one refused a request).
    /// `connect`'s error is handed back as it is.
    pub(super) async fn sender<F, Fut, E>(
        &self,
        fresh: bool,
        connect: F,
    ) -> Result<SendRequest<ProxyBody>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<SendRequest<ProxyBody>, E>>,
    {
        let mut slot = self.slot().lock().await;
        if let Some(shared) = slot.as_mut()
            && !fresh
            && !shared.sender.is_closed()
        {
            shared.last_used = Instant::now();
            return Ok(shared.sender.clone());
        }
        *slot = None;
        let sender = connect().await?;
        *slot = Some(Shared {
            sender: sender.clone(),
            last_used: Instant::now(),
        });
        Ok(sender)
    }

    /// Drops every connection no request used for `idle_timeout`; hyper closes it once its
    /// last answer is read. A slot busy making a connection is left for the next sweep.
    pub(super) fn sweep(&self, idle_timeout: Duration, now: Instant) -> usize {
        let mut closed = 0;
        for slot in &self.slots {
            let Ok(mut slot) = slot.try_lock() else {
                continue;
            };
            if slot.as_ref().is_some_and(|s| {
                s.sender.is_closed() || now.duration_since(s.last_used) > idle_timeout
            }) {
                *slot = None;
                closed += 1;
            }
        }
        closed
    }

    /// `req` (origin form, Host set) as HTTP/2 wants it: the scheme and authority in the
    /// URI (the `:scheme` and `:authority` pseudo-headers), no Host header.
    pub(super) fn request(&self, mut req: Request<ProxyBody>, addr: &str) -> Request<ProxyBody> {
        let authority = req
            .headers_mut()
            .remove(header::HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            .or_else(|| Authority::try_from(addr).ok());
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = authority;
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
        *req.version_mut() = Version::HTTP_2;
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_scheme_and_authority_not_host() {
        let slots = H2Slots::new(1, None);
        let req = Request::builder()
            .uri("/app/x?y=1")
            .header(header::HOST, "app.internal:8080")
            .body(crate::http_common::body::empty())
            .unwrap();
        let req = slots.request(req, "10.0.0.1:8080");
        assert_eq!(req.uri(), "http://app.internal:8080/app/x?y=1");
        assert_eq!(req.version(), Version::HTTP_2);
        assert!(!req.headers().contains_key(header::HOST));

        // Without a Host header, the endpoint's address names it.
        let req = Request::builder()
            .uri("/")
            .body(crate::http_common::body::empty())
            .unwrap();
        assert_eq!(
            slots.request(req, "10.0.0.1:8080").uri(),
            "http://10.0.0.1:8080/"
        );
    }
}
