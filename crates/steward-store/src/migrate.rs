//! Schema migrations per backend, and the refusal of databases from newer versions.

use sqlx::Row;

use crate::{Backend, Store, StoreError};

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 2;

const SQLITE: &[&str] = &[
    include_str!("../migrations/sqlite/0001_init.sql"),
    include_str!("../migrations/sqlite/0002_audit_write_path.sql"),
];
const POSTGRES: &[&str] = &[
    include_str!("../migrations/postgres/0001_init.sql"),
    include_str!("../migrations/postgres/0002_audit_write_path.sql"),
];

impl Store {
    /// Applies pending migrations in order, each in its own transaction.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let steps = match self.backend {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        };
        let mut conn = self.pool.acquire().await?;
        if self.backend == Backend::Postgres {
            // Several instances may start at once: one migrates, the others wait.
            sqlx::query("SELECT pg_advisory_lock(7461626)")
                .execute(&mut *conn)
                .await?;
        }
        let result = async {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            let current = current_version(&mut conn).await?;
            if current > SCHEMA_VERSION {
                return Err(StoreError::SchemaTooNew {
                    found: current,
                    supported: SCHEMA_VERSION,
                });
            }
            for (index, sql) in steps.iter().enumerate() {
                let version = i64::try_from(index).unwrap_or(i64::MAX).saturating_add(1);
                if version <= current {
                    continue;
                }
                let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
                sqlx::raw_sql(*sql).execute(&mut *tx).await?;
                sqlx::query(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', $1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(version.to_string())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Ok(())
        }
        .await;
        if self.backend == Backend::Postgres {
            let _ = sqlx::query("SELECT pg_advisory_unlock(7461626)")
                .execute(&mut *conn)
                .await;
        }
        result
    }

    /// The schema version recorded in the database (0 for an empty database).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await?;
        current_version(&mut conn).await
    }
}

async fn current_version(conn: &mut sqlx::AnyConnection) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT value FROM meta WHERE key = 'schema_version'")
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        None => Ok(0),
        Some(row) => {
            let value: String = row.try_get(0)?;
            value
                .parse::<i64>()
                .map_err(|_| StoreError::Corrupt(format!("schema_version `{value}`")))
        }
    }
}
