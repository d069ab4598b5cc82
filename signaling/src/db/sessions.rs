//! The tower-sessions store, on whichever database the URL names.
//!
//! tower-sessions-sqlx-store has one store type per database; this enum lets
//! the rest of the server use one type.

use anyhow::Context;
use async_trait::async_trait;
use sqlx::{PgPool, SqlitePool};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

/// Session records in the app's own database.
#[derive(Debug, Clone)]
pub enum SessionStore {
    /// Stored in the SQLite file.
    Sqlite(SqliteStore),
    /// Stored in PostgreSQL.
    Postgres(PostgresStore),
}

impl SessionStore {
    pub(super) async fn sqlite(pool: SqlitePool) -> anyhow::Result<Self> {
        let store = SqliteStore::new(pool);
        store
            .migrate()
            .await
            .context("creating the session table")?;
        Ok(Self::Sqlite(store))
    }

    pub(super) async fn postgres(pool: PgPool) -> anyhow::Result<Self> {
        let store = PostgresStore::new(pool);
        store
            .migrate()
            .await
            .context("creating the session table")?;
        Ok(Self::Postgres(store))
    }
}

#[async_trait]
impl session_store::SessionStore for SessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.create(record).await,
            Self::Postgres(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.save(record).await,
            Self::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Self::Sqlite(s) => s.load(id).await,
            Self::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.delete(id).await,
            Self::Postgres(s) => s.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for SessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            Self::Sqlite(s) => s.delete_expired().await,
            Self::Postgres(s) => s.delete_expired().await,
        }
    }
}
