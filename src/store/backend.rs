//! The two database backends behind one handle: connecting, migrating, write transactions,
//! and the macros that write each operation once for both pools.
//!
//! This file owns backend differences (connection options, how a write transaction begins,
//! the migrations of each). It must not hold operation logic: that lives in the topic files.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Postgres, SqlSafeStr, Sqlite, Transaction};

use super::StoreError;

/// One pool of either kind.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Expands one operation body for both pools. Inside the body, `$pool` is the concrete pool
/// and the constant `$pg` tells whether it is PostgreSQL (for the few statements that differ).
macro_rules! on_backend {
    ($store:expr, |$pool:ident, $pg:ident| $body:block) => {
        match &$store.inner.backend {
            $crate::store::backend::Backend::Sqlite($pool) => {
                #[allow(dead_code)]
                const $pg: bool = false;
                $body
            }
            $crate::store::backend::Backend::Postgres($pool) => {
                #[allow(dead_code)]
                const $pg: bool = true;
                $body
            }
        }
    };
}
pub(crate) use on_backend;

/// How a transaction that will write begins on each backend.
pub(crate) trait WritePool {
    type Db: sqlx::Database;
    /// The statement: [`SQLITE_BEGIN_WRITE`] or [`PG_BEGIN_WRITE`].
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
}

/// SQLite: the write lock is taken up front (a deferred transaction that later writes fails
/// with SQLITE_BUSY under concurrency instead of waiting).
pub(crate) const SQLITE_BEGIN_WRITE: &str = "BEGIN IMMEDIATE";
/// PostgreSQL: a plain `BEGIN`; operations lock the rows they decide on.
pub(crate) const PG_BEGIN_WRITE: &str = "BEGIN";

impl WritePool for SqlitePool {
    type Db = Sqlite;
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with(SQLITE_BEGIN_WRITE).await
    }
}

impl WritePool for PgPool {
    type Db = Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin_with(PG_BEGIN_WRITE).await
    }
}

/// How long a SQLite writer waits for the lock held by another.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a pool for `url`. SQLite: the file is created when absent; WAL, foreign keys on,
/// busy timeout, full fsync. PostgreSQL: a plain pool.
pub(crate) async fn connect(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            // A shared in-memory database lives as long as one connection does, and its
            // table locks do not honour busy_timeout: keep exactly one connection forever
            // (which is what `is_single_connection` recognises).
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(opts)
                .await
        } else {
            SqlitePoolOptions::new()
                .max_connections(8)
                // A local file does not drop connections the way a server does, and the
                // ping before every acquire is one more hop to sqlx's connection thread.
                .test_before_acquire(false)
                .connect_with(opts)
                .await
        }
        .map_err(StoreError::Unavailable)?;
        Ok(Backend::Sqlite(pool))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let opts = PgConnectOptions::from_str(url).map_err(StoreError::Unavailable)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(opts)
            .await
            .map_err(StoreError::Unavailable)?;
        Ok(Backend::Postgres(pool))
    } else {
        Err(StoreError::Unavailable(sqlx::Error::Configuration(
            "the database URL must start with sqlite: or postgres:".into(),
        )))
    }
}

/// Whether `pool` is the one-connection pool of an in-memory database (see [`connect`]):
/// everything, the issuance writer included, must share that connection.
pub(crate) fn is_single_connection(pool: &SqlitePool) -> bool {
    pool.options().get_max_connections() == 1
}

/// The migrations of one backend, compiled into the binary.
struct Source {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

const SQLITE_MIGRATIONS: &[Source] = &[
    Source {
        version: 1,
        description: "schema",
        sql: include_str!("migrations/sqlite/0001_schema.sql"),
    },
    Source {
        version: 2,
        description: "cert changes",
        sql: include_str!("migrations/sqlite/0002_cert_changes.sql"),
    },
    Source {
        version: 3,
        description: "notices",
        sql: include_str!("migrations/sqlite/0003_notices.sql"),
    },
    Source {
        version: 4,
        description: "audit checkpoints",
        sql: include_str!("migrations/sqlite/0004_audit_checkpoints.sql"),
    },
    Source {
        version: 5,
        description: "status sources",
        sql: include_str!("migrations/sqlite/0005_status_sources.sql"),
    },
    Source {
        version: 6,
        description: "chained checkpoints",
        sql: include_str!("migrations/sqlite/0006_chained_checkpoints.sql"),
    },
    Source {
        version: 7,
        description: "signature intents",
        sql: include_str!("migrations/sqlite/0007_signature_intents.sql"),
    },
    Source {
        version: 8,
        description: "crl bases",
        sql: include_str!("migrations/sqlite/0008_crl_bases.sql"),
    },
    Source {
        version: 9,
        description: "staff",
        sql: include_str!("migrations/sqlite/0009_staff.sql"),
    },
    Source {
        version: 10,
        description: "staff requests",
        sql: include_str!("migrations/sqlite/0010_staff_requests.sql"),
    },
    Source {
        version: 11,
        description: "audit by subject",
        sql: include_str!("migrations/sqlite/0011_audit_by_subject.sql"),
    },
    Source {
        version: 12,
        description: "certificates by key",
        sql: include_str!("migrations/sqlite/0012_certificates_by_key.sql"),
    },
    Source {
        version: 13,
        description: "restore checkpoints",
        sql: include_str!("migrations/sqlite/0013_restore_checkpoints.sql"),
    },
];

const POSTGRES_MIGRATIONS: &[Source] = &[
    Source {
        version: 1,
        description: "schema",
        sql: include_str!("migrations/postgres/0001_schema.sql"),
    },
    Source {
        version: 3,
        description: "notices",
        sql: include_str!("migrations/postgres/0003_notices.sql"),
    },
    Source {
        version: 4,
        description: "audit checkpoints",
        sql: include_str!("migrations/postgres/0004_audit_checkpoints.sql"),
    },
    Source {
        version: 5,
        description: "status sources",
        sql: include_str!("migrations/postgres/0005_status_sources.sql"),
    },
    Source {
        version: 6,
        description: "chained checkpoints",
        sql: include_str!("migrations/postgres/0006_chained_checkpoints.sql"),
    },
    Source {
        version: 7,
        description: "signature intents",
        sql: include_str!("migrations/postgres/0007_signature_intents.sql"),
    },
    Source {
        version: 8,
        description: "crl bases",
        sql: include_str!("migrations/postgres/0008_crl_bases.sql"),
    },
    Source {
        version: 9,
        description: "staff",
        sql: include_str!("migrations/postgres/0009_staff.sql"),
    },
    Source {
        version: 10,
        description: "staff requests",
        sql: include_str!("migrations/postgres/0010_staff_requests.sql"),
    },
    Source {
        version: 11,
        description: "audit by subject",
        sql: include_str!("migrations/postgres/0011_audit_by_subject.sql"),
    },
    Source {
        version: 12,
        description: "certificates by key",
        sql: include_str!("migrations/postgres/0012_certificates_by_key.sql"),
    },
    Source {
        version: 13,
        description: "restore checkpoints",
        sql: include_str!("migrations/postgres/0013_restore_checkpoints.sql"),
    },
];

fn migrator(sources: &[Source]) -> Migrator {
    Migrator::with_migrations(
        sources
            .iter()
            .map(|s| {
                Migration::new(
                    s.version,
                    Cow::Borrowed(s.description),
                    MigrationType::Simple,
                    s.sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// Applies pending migrations (idempotent; sqlx records what ran and locks concurrent runs).
pub(crate) async fn migrate(backend: &Backend) -> Result<(), StoreError> {
    match backend {
        Backend::Sqlite(pool) => migrator(SQLITE_MIGRATIONS).run(pool).await,
        Backend::Postgres(pool) => migrator(POSTGRES_MIGRATIONS).run(pool).await,
    }
    .map_err(StoreError::Migrate)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every migration file of a backend is applied, in the order of its number: a file
    /// left out of the list would never run (0011 once was).
    #[test]
    fn every_migration_file_is_in_its_list() {
        for (dir, sources) in [
            ("sqlite", SQLITE_MIGRATIONS),
            ("postgres", POSTGRES_MIGRATIONS),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/store/migrations")
                .join(dir);
            let mut files: Vec<(i64, String)> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .map(|name| (name[..4].parse().unwrap(), name))
                .collect();
            files.sort();
            let listed: Vec<i64> = sources.iter().map(|s| s.version).collect();
            let on_disk: Vec<i64> = files.iter().map(|(v, _)| *v).collect();
            assert_eq!(listed, on_disk, "{dir}: {files:?}");
            for ((_, name), source) in files.iter().zip(sources) {
                let text = std::fs::read_to_string(path.join(name)).unwrap();
                assert_eq!(text, source.sql, "{dir}/{name}");
            }
        }
    }
}
