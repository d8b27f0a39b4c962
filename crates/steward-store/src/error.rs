//! The store's one error type.

use steward_core::ErrorCode;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database was written by a newer Steward.
    #[error(
        "database schema version {found} is newer than this steward supports ({supported}); upgrade steward or restore a backup"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: i64,
        /// Highest version this build knows.
        supported: i64,
    },
    /// A uniqueness or state precondition failed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The record does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Stored data could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The URL names no supported backend.
    #[error("unsupported database url `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// The stable operator-facing code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::SchemaTooNew { .. } => ErrorCode::STORE_SCHEMA_TOO_NEW,
            Self::Unavailable(_)
            | Self::Conflict(_)
            | Self::NotFound(_)
            | Self::Corrupt(_)
            | Self::UnsupportedUrl(_) => ErrorCode::STORE_UNAVAILABLE,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => Self::NotFound("row".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::Conflict(db.message().to_owned())
            }
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Corrupt(e.to_string())
    }
}
