//! The crate's single error type, for failures to build a catalog or compile policies.
//!
//! Authorization itself never fails with an error: it returns a `Decision` (see `decision`).

use std::fmt;

use serde::Serialize;

/// Where a policy was rejected, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDiagnostic {
    /// The id of the rejected policy (or of its source when the source failed to parse).
    pub policy_id: String,
    /// The id of the source text the policy came from.
    pub source_id: String,
    /// 1-based line in the source text, when known.
    pub line: Option<usize>,
    /// 1-based column in the source text, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy `{}`", self.policy_id)?;
        if self.source_id != self.policy_id {
            write!(f, " (source `{}`)", self.source_id)?;
        }
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " at line {line} column {column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Joins diagnostics for the error message.
fn join(diagnostics: &[PolicyDiagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Everything that can go wrong building a catalog, compiling policies or reading a test file.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The catalog is inconsistent (bad names, duplicates, reserved names).
    #[error("invalid catalog: {0}")]
    InvalidCatalog(String),
    /// The generated schema was refused by Cedar (a bug or a catalog Cedar cannot express).
    #[error("schema rejected: {0}")]
    Schema(String),
    /// One or more policies failed to parse or validate; each diagnostic names policy, line and column.
    #[error("policies rejected: {}", join(.0))]
    Rejected(Vec<PolicyDiagnostic>),
    /// A time-bound grant cannot be turned into a policy.
    #[error("invalid grant `{id}`: {message}")]
    InvalidGrant {
        /// The grant's id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// A policy test file could not be read.
    #[error("invalid test file: {0}")]
    TestFile(String),
    /// A catalog file could not be parsed.
    #[error("invalid catalog file: {0}")]
    CatalogFile(String),
}

impl PolicyError {
    /// The diagnostics of a rejection; empty for other errors.
    pub fn diagnostics(&self) -> &[PolicyDiagnostic] {
        match self {
            Self::Rejected(diagnostics) => diagnostics,
            Self::InvalidCatalog(_)
            | Self::Schema(_)
            | Self::InvalidGrant { .. }
            | Self::TestFile(_)
            | Self::CatalogFile(_) => &[],
        }
    }
}
