//! The crate's single error type.

use std::path::PathBuf;

/// Errors raised while scanning. Detection itself never fails: only I/O and inputs do.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// A file or directory could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing the report failed.
    #[error("cannot write the report: {0}")]
    Output(#[source] std::io::Error),
    /// The `git` command failed or is missing.
    #[error("git history of `{path}` unavailable: {message}")]
    Git {
        /// The repository path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The baseline file is not a JSON report.
    #[error("baseline `{path}` is not a scan report: {message}")]
    Baseline {
        /// The baseline path.
        path: PathBuf,
        /// The parse error.
        message: String,
    },
    /// A built-in rule failed to compile (a bug).
    #[error("rule `{rule}` does not compile: {message}")]
    Rule {
        /// The rule id.
        rule: String,
        /// The compiler message.
        message: String,
    },
    /// Serialising the report failed.
    #[error("cannot serialise the report: {0}")]
    Serialise(#[from] serde_json::Error),
}
