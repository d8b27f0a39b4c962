//! Connecting to SQLite or PostgreSQL and configuring each for durability.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::StoreError;
use crate::audit_index::SqliteAuditIndex;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite in WAL mode with `synchronous=FULL`.
    Sqlite,
    /// PostgreSQL; several Steward instances may share it.
    Postgres,
}

impl Backend {
    /// The backend a URL names.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl(mask_url(url)))
        }
    }

    /// A short name for logs and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The file an `sqlite:` URL names, or `None` for an in-memory database or another backend.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let file = options.get_filename();
    let memory = url.starts_with("sqlite::memory:")
        || url.contains("mode=memory")
        || file.to_string_lossy().starts_with("file:sqlx-in-memory");
    (!memory && Backend::from_url(url).ok() == Some(Backend::Sqlite)).then(|| file.to_path_buf())
}

/// Hides the password of a database URL for logs: `postgres://u:***@h/db`.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// The handle every part of Steward uses to reach its database.
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    pub(crate) backend: Backend,
    /// The SQLite database file, when the store is one (not in-memory).
    sqlite_file: Option<PathBuf>,
}

impl Store {
    /// Connects, configures the connection for durability and applies migrations.
    ///
    /// Refuses a database written by a newer schema version.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", mask_url(url))))?;
        let max = match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // First: the page size only takes effect on a file with no pages
                        // yet (a new database), before WAL mode writes the header.
                        conn.execute(sqlx::AssertSqlSafe(format!(
                            "PRAGMA page_size={}",
                            crate::audit_index::PAGE_SIZE
                        )))
                        .await?;
                        // INVARIANT: WAL with FULL sync, as on the audit indexer's own
                        // connection (see `CONNECTION_PRAGMAS`).
                        for pragma in crate::audit_index::CONNECTION_PRAGMAS {
                            conn.execute(*pragma).await?;
                        }
                        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
                            .fetch_one(&mut *conn)
                            .await?;
                        conn.execute(sqlx::AssertSqlSafe(format!(
                            "PRAGMA wal_autocheckpoint={}",
                            crate::audit_index::wal_autocheckpoint_pages(page_size)
                        )))
                        .await?;
                        conn.execute("PRAGMA foreign_keys=ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", mask_url(url))))?;
        Ok(Self {
            pool,
            backend,
            sqlite_file: sqlite_file(url),
        })
    }

    /// A dedicated bulk writer for the audit index, when the store is an SQLite file
    /// (an in-memory database is only reachable through the pool).
    pub fn sqlite_audit_index(&self) -> Option<SqliteAuditIndex> {
        self.sqlite_file.clone().map(SqliteAuditIndex::new)
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads first and writes later fails
    /// with `SQLITE_BUSY`, without waiting, whenever another connection (the audit indexer,
    /// say) committed in between; an immediate one waits its turn under `busy_timeout`.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// The statement [`Store::begin_write`] starts a transaction with.
    pub(crate) fn begin_write_sql(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// Whether generated multi-row statements use anonymous `?` placeholders (SQLite)
    /// instead of numbered ones (see `multi_row_insert`).
    pub(crate) fn anonymous_placeholders(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes all connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Store {
    /// Runs a statement that takes no parameters (administrative DDL only, never user input).
    pub async fn raw_execute(&self, sql: &str) -> Result<(), StoreError> {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Reads a SQLite pragma as text (diagnostics and tests).
    pub async fn pragma(&self, name: &str) -> Result<String, StoreError> {
        if !name.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
            return Err(StoreError::Conflict(format!("invalid pragma `{name}`")));
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA {name}")))
            .fetch_one(&self.pool)
            .await?;
        use sqlx::Row;
        if let Ok(v) = row.try_get::<String, _>(0) {
            return Ok(v);
        }
        Ok(row.try_get::<i64, _>(0)?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_backends_and_mask_passwords() {
        assert_eq!(
            Backend::from_url("sqlite://x.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::from_url("postgres://u:p@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::from_url("mysql://x").is_err());
        assert_eq!(
            mask_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(mask_url("sqlite://a.db"), "sqlite://a.db");
    }
}
