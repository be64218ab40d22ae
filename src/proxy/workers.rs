//! Thread-per-core serving: each worker thread runs its own single-threaded event loop that
//! accepts on every listener (the same sockets, shared), serves the connections it accepted
//! and keeps its own upstream connections. A request therefore never crosses threads: no
//! cross-thread wake-ups or task stealing on the hot path, as with nginx's worker processes.
//! Everything else (admin port, reloads, status-change invalidation, notices) stays on the
//! main runtime.

use std::cell::Cell;
use std::sync::Arc;
use std::thread::JoinHandle;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::server::ListenerSlots;
use super::{Shared, server};

thread_local! {
    /// The index of the worker running on this thread (0 elsewhere).
    static WORKER_INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread the caller runs on; 0 outside worker threads.
pub(crate) fn current_index() -> usize {
    WORKER_INDEX.with(Cell::get)
}

/// The running worker threads of one gateway.
pub(crate) struct Workers {
    threads: Vec<JoinHandle<()>>,
    /// Closed when every worker has stopped accepting and dropped its share of `graceful`.
    accepting: mpsc::Receiver<()>,
    /// Turns true when the drain is over; workers then drop their remaining connections.
    release: watch::Sender<bool>,
}

/// What each worker needs to serve.
pub(crate) struct WorkerSetup {
    pub shared: Arc<Shared>,
    pub listeners: Vec<std::net::TcpListener>,
    /// One per listener, same order: limits shared by all workers.
    pub slots: Vec<ListenerSlots>,
    pub stop: watch::Receiver<bool>,
    pub graceful: Arc<GracefulShutdown>,
}

impl Workers {
    /// Starts `count` worker threads (at least one). Fails when no thread could be started.
    pub(crate) fn start(count: usize, setup: WorkerSetup) -> std::io::Result<Self> {
        let (accepting_tx, accepting) = mpsc::channel(1);
        let (release, release_rx) = watch::channel(false);
        let mut threads = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let mut listeners = Vec::with_capacity(setup.listeners.len());
            for l in &setup.listeners {
                listeners.push(l.try_clone()?);
            }
            let worker = Worker {
                index,
                shared: Arc::clone(&setup.shared),
                listeners,
                slots: setup.slots.clone(),
                stop: setup.stop.clone(),
                graceful: Arc::clone(&setup.graceful),
                accepting: accepting_tx.clone(),
                release: release_rx.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("certgate-worker-{index}"))
                .spawn(move || worker.run());
            match spawned {
                Ok(t) => threads.push(t),
                // Serve with the workers that did start; none at all is an error.
                Err(e) if !threads.is_empty() => {
                    tracing::error!(index, error = %e, "cannot start a worker thread");
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(workers = threads.len(), "gateway worker threads started");
        Ok(Self {
            threads,
            accepting,
            release,
        })
    }

    /// Waits until every worker has stopped accepting (after `stop` turned true).
    pub(crate) async fn stopped_accepting(&mut self) {
        while self.accepting.recv().await.is_some() {}
    }

    /// Ends the workers (open connections are dropped) and waits for their threads.
    pub(crate) async fn finish(self) {
        let _ = self.release.send(true);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

struct Worker {
    index: usize,
    shared: Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
    slots: Vec<ListenerSlots>,
    stop: watch::Receiver<bool>,
    graceful: Arc<GracefulShutdown>,
    accepting: mpsc::Sender<()>,
    release: watch::Receiver<bool>,
}

impl Worker {
    fn run(self) {
        WORKER_INDEX.with(|w| w.set(self.index));
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(index = self.index, error = %e, "cannot start a worker's event loop");
                return;
            }
        };
        let Self {
            index,
            shared,
            listeners,
            slots,
            stop,
            graceful,
            accepting,
            mut release,
        } = self;
        runtime.block_on(async move {
            let mut loops = tokio::task::JoinSet::new();
            for (i, (l, limits)) in listeners.into_iter().zip(slots).enumerate() {
                let listener = match TcpListener::from_std(l) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(index, listener = i, error = %e, "a worker cannot use a listener");
                        continue;
                    }
                };
                let g = Arc::clone(&graceful);
                loops.spawn(server::accept_loop(
                    Arc::clone(&shared),
                    i,
                    listener,
                    limits,
                    stop.clone(),
                    move || g.watcher(),
                ));
            }
            while loops.join_next().await.is_some() {}
            // Only the connections keep `graceful` alive now, so the drain can start.
            drop(graceful);
            drop(accepting);
            super::stopped(&mut release).await;
        });
        // Dropping the runtime here cancels the connections still open after the drain.
    }
}
