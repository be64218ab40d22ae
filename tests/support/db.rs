//! Throw-away databases for store tests: a SQLite file in a temp dir, or a fresh PostgreSQL
//! database (`CERTGATE_TEST_PG_URL`, default `postgres://root@127.0.0.1:5432/test`) that is
//! dropped when the guard goes, also when the test panics.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection;

/// Which backend a test database runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// A database that exists for one test.
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDrop>,
}

struct PgDrop {
    admin_url: String,
    name: String,
}

impl TestDb {
    /// A SQLite file in a fresh temp dir (the file itself does not exist yet).
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("certgate.db").display());
        Self {
            kind: Kind::Sqlite,
            url,
            _dir: Some(dir),
            _pg: None,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a notice) when the server cannot be
    /// reached and `CI` is not `true`. Under `CI=true` an unreachable server fails the test.
    pub async fn postgres() -> Option<Self> {
        let admin_url = std::env::var("CERTGATE_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned());
        let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("PostgreSQL at CERTGATE_TEST_PG_URL is unreachable under CI: {e}");
                }
                eprintln!("SKIP: PostgreSQL is unreachable ({e}); set CERTGATE_TEST_PG_URL");
                return None;
            }
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "certgate_t_{}_{}_{}",
            std::process::id(),
            nanos,
            N.fetch_add(1, Ordering::SeqCst)
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        let url = replace_db_name(&admin_url, &name);
        Some(Self {
            kind: Kind::Postgres,
            url,
            _dir: None,
            _pg: Some(PgDrop { admin_url, name }),
        })
    }

    /// Runs one statement on a separate raw connection, bypassing the store.
    pub async fn raw(&self, sql: &'static str) -> Result<u64, sqlx::Error> {
        match self.kind {
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                let r = sqlx::query(sql).execute(&mut c).await;
                let _ = c.close().await;
                Ok(r?.rows_affected())
            }
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                let r = sqlx::query(sql).execute(&mut c).await;
                let _ = c.close().await;
                Ok(r?.rows_affected())
            }
        }
    }
}

/// `postgres://user@host:port/db?x` with `db` replaced by `name`.
fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for PgDrop {
    fn drop(&mut self) {
        // Drop is synchronous and may run while a runtime unwinds: use a thread of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}
