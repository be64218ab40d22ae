//! Announcing certificate status changes: a broadcast channel per store, fed by this
//! instance after each commit and, on PostgreSQL, by a `LISTEN certgate_cert` task that
//! forwards the other instances' `pg_notify` calls.
//!
//! This file owns the channel and the listener task. It must not decide what changed: the
//! operations name the serials, and send `pg_notify` inside their own transactions
//! (see [`pg_notify!`]).

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

use super::{CertChange, StoreError};

/// The PostgreSQL channel on which every instance announces changed serials.
pub(crate) const CHANNEL: &str = "certgate_cert";

/// Enough for a burst of revocations; a slower receiver gets `Lagged` and resyncs.
const CAPACITY: usize = 1024;

/// Longest wait between two attempts to re-establish the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Inside a PostgreSQL transaction, announces each serial with `pg_notify`; PostgreSQL
/// delivers it to the listeners only if the transaction commits. A no-op on SQLite.
macro_rules! pg_notify {
    ($pg:expr, $tx:expr, $serials:expr) => {
        if $pg {
            for serial in $serials {
                sqlx::query("SELECT pg_notify('certgate_cert', $1)")
                    .bind(serial.as_str())
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    };
}
pub(crate) use pg_notify;

/// The broadcast side of a store, and the listener task it owns.
#[derive(Debug)]
pub(crate) struct Changes {
    tx: broadcast::Sender<CertChange>,
    listener: Option<AbortHandle>,
}

impl Changes {
    /// SQLite: this instance's announcements, plus a poller of the `cert_changes` log that
    /// the schema's triggers fill, for changes made by other processes on the same file
    /// (e.g. staff revoking from the command line while `serve` runs).
    pub(crate) fn with_sqlite_poller(pool: sqlx::SqlitePool) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        let task = tokio::spawn(poll_sqlite(pool, tx.clone()));
        Self {
            tx,
            listener: Some(task.abort_handle()),
        }
    }

    /// Starts listening on PostgreSQL before returning, so that no change committed after
    /// `connect` returns is missed; then forwards notifications from a background task.
    pub(crate) async fn with_pg_listener(url: &str) -> Result<Self, StoreError> {
        let (tx, _) = broadcast::channel(CAPACITY);
        let listener = listen(url).await.map_err(StoreError::Unavailable)?;
        let task = tokio::spawn(forward(listener, url.to_owned(), tx.clone()));
        Ok(Self {
            tx,
            listener: Some(task.abort_handle()),
        })
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<CertChange> {
        self.tx.subscribe()
    }

    pub(crate) fn announce(&self, serials: &[String]) {
        for serial in serials {
            // An error only means nobody is subscribed right now.
            let _ = self.tx.send(CertChange {
                serial: serial.clone(),
            });
        }
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        if let Some(task) = &self.listener {
            task.abort();
        }
    }
}

async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications until the store is dropped (which aborts this task). After any
/// loss of the connection it re-listens and announces [`CertChange::RESYNC`], since
/// notifications sent meanwhile are gone.
async fn forward(listener: PgListener, url: String, tx: broadcast::Sender<CertChange>) {
    let mut listener = Some(listener);
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(active) = listener.as_mut() else {
            match listen(&url).await {
                Ok(l) => {
                    tracing::info!("certificate change listener reconnected");
                    listener = Some(l);
                    backoff = Duration::from_millis(100);
                    let _ = tx.send(resync());
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "certificate change listener cannot connect");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        match active.try_recv().await {
            Ok(Some(n)) => {
                let _ = tx.send(CertChange {
                    serial: n.payload().to_owned(),
                });
            }
            // The connection was lost and has been re-established (eager reconnect).
            Ok(None) => {
                tracing::info!("certificate change listener reconnected");
                let _ = tx.send(resync());
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate change listener lost its connection");
                listener = None;
            }
        }
    }
}

/// How often SQLite's change log is read.
const SQLITE_POLL: Duration = Duration::from_millis(500);
/// Change-log rows older than this are deleted (every process has long read them).
const SQLITE_KEEP_SECS: i64 = 86_400;

async fn poll_sqlite(pool: sqlx::SqlitePool, tx: broadcast::Sender<CertChange>) {
    // Until the table exists (before `migrate`) there is nothing to read.
    let mut last: Option<i64> = None;
    let mut tick = tokio::time::interval(SQLITE_POLL);
    let mut rounds: u32 = 0;
    loop {
        tick.tick().await;
        rounds = rounds.wrapping_add(1);
        let Some(since) = last else {
            last = sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(seq), 0) FROM cert_changes")
                .fetch_one(&pool)
                .await
                .ok();
            continue;
        };
        let rows = sqlx::query_as::<_, (i64, String)>(
            "SELECT seq, serial FROM cert_changes WHERE seq > $1 ORDER BY seq LIMIT 1000",
        )
        .bind(since)
        .fetch_all(&pool)
        .await;
        match rows {
            Ok(rows) => {
                for (seq, serial) in rows {
                    last = Some(seq);
                    let _ = tx.send(CertChange { serial });
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the certificate change log");
                let _ = tx.send(resync());
            }
        }
        if rounds.is_multiple_of(7200) {
            let _ = sqlx::query("DELETE FROM cert_changes WHERE at < unixepoch() - $1")
                .bind(SQLITE_KEEP_SECS)
                .execute(&pool)
                .await;
        }
    }
}

fn resync() -> CertChange {
    CertChange {
        serial: CertChange::RESYNC.to_owned(),
    }
}
