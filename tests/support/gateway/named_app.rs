//! An app that answers every request with its own name, counts them, and can be stopped
//! (its listener and every connection closed, as when the process dies) and started again
//! on the same port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

pub struct NamedApp {
    pub addr: SocketAddr,
    name: &'static str,
    hits: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl NamedApp {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut app = Self {
            addr: listener.local_addr().unwrap(),
            name,
            hits: Arc::new(AtomicUsize::new(0)),
            task: None,
        };
        app.serve(listener);
        app
    }

    fn serve(&mut self, listener: TcpListener) {
        let (hits, name) = (self.hits.clone(), self.name);
        self.task = Some(tokio::spawn(async move {
            // Owned by this task: aborting it drops every connection with it.
            let mut conns = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let hits = hits.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |_req| {
                        hits.fetch_add(1, Ordering::SeqCst);
                        async move {
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(name))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        }));
    }

    /// Closes the listener and every open connection.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for NamedApp {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
