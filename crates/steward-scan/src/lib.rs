//! Credential discovery for Steward: finds secrets in files, archives, git history and
//! system dumps, and reports them as fingerprints and redacted previews, never raw values.
//!
//! The `steward scan` subcommand mounts [`ScanArgs`] and calls [`run`]. Library users can
//! build a [`Scanner`] and call [`Scanner::scan`] on buffers directly.

#![deny(missing_docs)]

mod checksum;
mod cli;
mod engine;
mod error;
mod fingerprint;
mod inputs;
mod rules;
mod suppress;

pub mod report;

pub use checksum::{base62_encode_fixed32, crc32_base62_suffix_ok, steward_key_ok};
pub use cli::{Outcome, ScanArgs, run, scan};
pub use engine::{ALLOW_MARKER, Scanner};
pub use error::ScanError;
pub use fingerprint::{fingerprint, redact};
pub use report::{Finding, Format, Report, Stats};
pub use rules::Confidence;
pub use suppress::STEWARDIGNORE;
