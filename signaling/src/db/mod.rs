//! Storage: one connection pool for the app's own queries and the session
//! store, on SQLite or PostgreSQL chosen by the URL.
//!
//! App queries go through sqlx's `Any` driver and are written once in SQL that
//! both databases accept (`$1` placeholders, `RETURNING`, `ON CONFLICT`).
//! Schema migrations differ only where the dialects do (identity columns,
//! blobs), so each backend has its own directory of migrations.

mod chat;
mod meetings;
mod sessions;
mod users;

pub use chat::{ChatMessage, ChatPage, StoredChat};
pub use meetings::Meeting;
pub use sessions::SessionStore;
pub use users::{Avatar, NewUser, User};

use anyhow::Context;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database server is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Handle to the database: cheap to clone, shared by all handlers.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

/// What [`Database::connect`] returns: the app's handle and the session store
/// on the same database.
pub struct Connected {
    /// The app's handle.
    pub db: Database,
    /// The tower-sessions store.
    pub sessions: SessionStore,
}

impl Database {
    /// Connects to `url`, creating the SQLite file (and its directory) if
    /// needed, and applies all migrations, the session store's included.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Connected> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let sessions = match backend {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url)
                    .with_context(|| format!("invalid SQLite URL {url:?}"))?;
                if let Some(dir) = options.get_filename().parent()
                    && !dir.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("cannot create database directory {}", dir.display())
                    })?;
                }
                // WAL lets readers proceed while a writer commits; it is a
                // property of the file, so the `Any` pool below inherits it.
                let options = options
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .with_context(|| format!("cannot open SQLite database {url}"))?;
                SessionStore::sqlite(pool).await?
            }
            Backend::Postgres => {
                let pool = PgPoolOptions::new()
                    .max_connections(2.max(max_connections / 4))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await
                    .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
                SessionStore::postgres(pool).await?
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to {}", redact(url)))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Connected {
            db: Database { pool, backend },
            sessions,
        })
    }

    /// Which server this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database answers (for `/healthz`).
    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Closes every connection (used at shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Hides the password in a database URL before it is logged.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch: how every time is stored.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Formats a stored time as RFC 3339 (what the API returns).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Whether a database error is a violated unique constraint.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact("postgres://zync:secret@db:5432/zync"),
            "postgres://zync:***@db:5432/zync"
        );
        assert_eq!(redact("sqlite://data/zync.db"), "sqlite://data/zync.db");
    }

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_500), "1970-01-01T00:00:01.5Z");
    }
}
