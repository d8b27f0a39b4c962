//! The crate's error type and the storage error that stores report to the writer.

use steward_core::ErrorCode;

/// Operator-facing code for a malformed or unverifiable record, checkpoint, proof or key.
pub const AUDIT_INVALID: ErrorCode = ErrorCode("AUD0002");

/// A failure reported by an [`AuditStore`](crate::AuditStore).
///
/// The writer fails every caller of the batch with it; the message is for logs, never
/// for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit store failed: {message}")]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// A store error with a message for the operator's log.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The message given when the error was made.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<std::io::Error> for StoreError {
    fn from(err: std::io::Error) -> Self {
        Self::new(err.to_string())
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The store could not make the batch durable; nothing of it was written.
    #[error("audit log unavailable: {0}")]
    Store(#[from] StoreError),
    /// The writer task has stopped (the server is shutting down).
    #[error("audit writer has stopped")]
    WriterClosed,
    /// A record, checkpoint or key could not be parsed.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being parsed, e.g. `audit record`.
        what: &'static str,
        /// Why it was rejected.
        detail: String,
    },
    /// A Merkle proof did not verify, or could not be produced.
    #[error("invalid merkle proof: {0}")]
    Proof(&'static str),
    /// A checkpoint signature did not verify.
    #[error("checkpoint signature does not verify")]
    BadSignature,
    /// Key material was rejected.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// Serialization failed.
    #[error("serialization failed: {0}")]
    Serialize(#[from] serde_json::Error),
}

impl AuditError {
    /// The stable operator-facing code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Store(_) | Self::WriterClosed => ErrorCode::AUDIT_UNAVAILABLE,
            Self::Malformed { .. }
            | Self::Proof(_)
            | Self::BadSignature
            | Self::InvalidKey(_)
            | Self::Serialize(_) => AUDIT_INVALID,
        }
    }

    pub(crate) fn malformed(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            detail: detail.to_string(),
        }
    }
}
