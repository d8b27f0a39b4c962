//! The one error type of the monitoring crate.

use thiserror::Error;

/// Errors raised by the monitor: only configuration and snapshot problems; detections are values.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum MonitorError {
    /// A configuration value is out of range.
    #[error("invalid monitor configuration: `{field}` {problem}")]
    InvalidConfig {
        /// The dotted name of the offending field, e.g. `rate_spike.multiplier`.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A persisted snapshot could not be used.
    #[error("invalid baseline snapshot for `{identity}`: {problem}")]
    InvalidSnapshot {
        /// The identity the snapshot belongs to.
        identity: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}
