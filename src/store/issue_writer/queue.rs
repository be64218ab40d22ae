//! The writer's queue, thread and event loop: jobs come in through a bounded channel, the
//! loop takes whatever has queued (up to [`MAX_BATCH`]), has `batch` commit it and answers
//! every job. It decides nothing about what a job writes.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::batch::{commit_pg, commit_pg_one_by_one, commit_sqlite, commit_sqlite_one_by_one};
use super::connection::WriterConn;
use super::job::{IssueWork, JobDone, Pending};
use crate::store::StoreError;
use crate::store::audit_chain::PreparedAudit;
use crate::store::backend::{Backend, PG_BEGIN_WRITE, SQLITE_BEGIN_WRITE, is_single_connection};

/// Most jobs committed together. Bounds the time one commit holds the write lock and the
/// work lost to a failed commit.
pub(crate) const MAX_BATCH: usize = 128;

/// Jobs waiting for the writer; a full queue makes submitters wait (back-pressure).
const QUEUE: usize = 1024;

/// The submitting side of a store's writer task. Dropping it (with the store) ends the task
/// once the queued jobs are committed.
#[derive(Debug)]
pub(crate) struct IssueWriter {
    tx: mpsc::Sender<Pending>,
}

impl IssueWriter {
    /// Starts the writer task for `backend` on a thread and event loop of its own.
    ///
    /// Every statement of a batch is a round trip (to sqlx's SQLite connection thread, or to
    /// PostgreSQL), and on the shared runtime each reply would wait its turn behind whatever
    /// the callers' tasks are doing (parsing and verifying CSRs). On SQLite with 64
    /// issuances at once a `SAVEPOINT` took ≈ 0.29 ms that way, 0.12 ms here, and a batch of
    /// 32 certificates 6.6 ms instead of 4.9 (bench/loadgen).
    pub(crate) fn spawn(backend: Backend) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(writer_not_started)?;
        std::thread::Builder::new()
            .name("certgate-issue-writer".into())
            .spawn(move || runtime.block_on(run(backend, rx)))
            .map_err(writer_not_started)?;
        Ok(Self { tx })
    }

    /// Queues a job and waits until the commit that holds it succeeded (or failed).
    pub(crate) async fn submit(
        &self,
        work: Option<IssueWork>,
        audit: Vec<PreparedAudit>,
    ) -> Result<JobDone, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Pending { work, audit, reply };
        // Either side gone means the writer task ended (runtime shutting down).
        if self.tx.send(job).await.is_err() {
            return Err(writer_gone());
        }
        answer.await.map_err(|_| writer_gone())?
    }
}

fn writer_not_started(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(sqlx::Error::Io(e))
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable(sqlx::Error::WorkerCrashed)
}

/// The database the writer commits to.
enum BatchTarget {
    Sqlite(WriterConn<sqlx::Sqlite>),
    SqliteInMemory(sqlx::sqlite::SqlitePool),
    Postgres(WriterConn<sqlx::Postgres>),
}

impl BatchTarget {
    fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite(pool) if is_single_connection(&pool) => Self::SqliteInMemory(pool),
            Backend::Sqlite(pool) => Self::Sqlite(WriterConn::new(
                (*pool.connect_options()).clone(),
                SQLITE_BEGIN_WRITE,
            )),
            Backend::Postgres(pool) => Self::Postgres(WriterConn::new(
                (*pool.connect_options()).clone(),
                PG_BEGIN_WRITE,
            )),
        }
    }

    async fn commit(
        &mut self,
        jobs: &[Pending],
        results: &mut [Option<Result<JobDone, StoreError>>],
        mode: Mode,
    ) -> Result<(), StoreError> {
        use Mode::{Batch, OneByOne};
        match (self, mode) {
            (Self::Sqlite(conn), Batch) => {
                let committed = commit_sqlite(conn, jobs, results).await;
                conn.settle(committed)
            }
            (Self::Sqlite(conn), OneByOne) => {
                let committed = commit_sqlite_one_by_one(conn, jobs, results).await;
                conn.settle(committed)
            }
            (Self::SqliteInMemory(pool), Batch) => commit_sqlite(pool, jobs, results).await,
            (Self::SqliteInMemory(pool), OneByOne) => {
                commit_sqlite_one_by_one(pool, jobs, results).await
            }
            (Self::Postgres(conn), Batch) => {
                let committed = commit_pg(conn, jobs, results).await;
                conn.settle(committed)
            }
            (Self::Postgres(conn), OneByOne) => {
                let committed = commit_pg_one_by_one(conn, jobs, results).await;
                conn.settle(committed)
            }
        }
    }
}

/// How a batch is committed.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// The set path, then each remaining job in a savepoint, audit rows at the end.
    Batch,
    /// Each job with its audit rows in its own savepoint: after the database refused a
    /// value, so that only the job that carried it fails.
    OneByOne,
}

async fn run(backend: Backend, mut rx: mpsc::Receiver<Pending>) {
    let mut target = BatchTarget::new(backend);
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    // Waits for at least one job, then takes every job already queued (up to the bound):
    // a lone caller is committed at once, a crowd shares one commit.
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut results: Vec<Option<Result<JobDone, StoreError>>> =
            batch.iter().map(|_| None).collect();
        let mut committed = target.commit(&batch, &mut results, Mode::Batch).await;
        if batch.len() > 1 && committed.as_ref().is_err_and(StoreError::is_invalid_value) {
            // Nothing was stored: run it again so that only the offending job fails.
            tracing::warn!(
                jobs = batch.len(),
                "the database refused a value in a group commit; committing its jobs one by one"
            );
            results.iter_mut().for_each(|r| *r = None);
            committed = target.commit(&batch, &mut results, Mode::OneByOne).await;
        }
        if let Err(e) = &committed {
            tracing::warn!(jobs = batch.len(), error = %e, "issuance group commit failed");
        }
        deliver(batch.drain(..), results, committed);
    }
}

/// Answers every job of a batch: its own result when the batch committed, the batch's error
/// otherwise (a job's own success means nothing when the commit failed).
fn deliver(
    jobs: impl ExactSizeIterator<Item = Pending>,
    results: Vec<Option<Result<JobDone, StoreError>>>,
    committed: Result<(), StoreError>,
) {
    match committed {
        Ok(()) => {
            for (job, result) in jobs.zip(results) {
                let result = result.unwrap_or_else(|| {
                    Err(StoreError::Corrupt(
                        "the group writer lost a job's result".into(),
                    ))
                });
                // The caller may have gone away (cancelled); its job is stored anyway.
                let _ = job.reply.send(result);
            }
        }
        Err(e) if jobs.len() == 1 => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.reply.send(Err(e));
            }
        }
        Err(e) => {
            let shared = Arc::new(e);
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Batch(shared.clone())));
            }
        }
    }
}
