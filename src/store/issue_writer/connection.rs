//! Where the writer's batch transactions begin: the pool's one connection for an in-memory
//! SQLite database, otherwise a connection of the writer's own, kept from batch to batch,
//! checked after a pause and opened anew after a failed batch (a restarted server costs a
//! reconnect, not a failed batch). Nothing here knows what a batch writes.

use std::time::{Duration, Instant};

use sqlx::sqlite::SqlitePool;
use sqlx::{Connection, Transaction};

use crate::store::StoreError;
use crate::store::backend::WritePool;

/// Where the writer's batch transactions begin.
pub(super) trait BatchSource {
    type Db: sqlx::Database;
    async fn begin_batch(&mut self) -> Result<Transaction<'_, Self::Db>, sqlx::Error>;
}

/// An in-memory SQLite database lives in its pool's one connection: the writer borrows it
/// for each batch, as every other operation does.
impl BatchSource for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_batch(&mut self) -> Result<Transaction<'_, sqlx::Sqlite>, sqlx::Error> {
        self.begin_write().await
    }
}

/// How long the writer's connection may sit unused before it is checked (a ping) ahead of
/// the next batch: a server restarted meanwhile then costs a reconnect, not a failed batch.
const WRITER_IDLE_CHECK: Duration = Duration::from_secs(1);

/// The writer's own connection, opened with the pool's options on the writer's thread and
/// kept from batch to batch. Taking one from the pool and giving it back cost a round trip
/// each (sqlx pings a returned connection), and the next batch waited for it. After a
/// failed batch the connection is dropped (it may be broken) and the next one opens anew.
pub(super) struct WriterConn<DB: sqlx::Database> {
    options: <DB::Connection as Connection>::Options,
    /// As `WritePool::begin_write` begins.
    begin: &'static str,
    held: Option<DB::Connection>,
    last_used: Instant,
}

impl<DB: sqlx::Database> WriterConn<DB> {
    pub(super) fn new(
        options: <DB::Connection as Connection>::Options,
        begin: &'static str,
    ) -> Self {
        Self {
            options,
            begin,
            held: None,
            last_used: Instant::now(),
        }
    }

    /// After a batch: a failed one may have left the connection broken, so the next batch
    /// opens another.
    pub(super) fn settle(&mut self, committed: Result<(), StoreError>) -> Result<(), StoreError> {
        if committed.is_err() {
            self.held = None;
        }
        committed
    }
}

impl<DB: sqlx::Database> BatchSource for WriterConn<DB> {
    type Db = DB;
    async fn begin_batch(&mut self) -> Result<Transaction<'_, DB>, sqlx::Error> {
        let mut conn = match self.held.take() {
            Some(conn) => conn,
            None => DB::Connection::connect_with(&self.options).await?,
        };
        if self.last_used.elapsed() > WRITER_IDLE_CHECK && conn.ping().await.is_err() {
            conn = DB::Connection::connect_with(&self.options).await?;
        }
        self.last_used = Instant::now();
        self.held.insert(conn).begin_with(self.begin).await
    }
}
