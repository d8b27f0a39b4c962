//! Behavioural monitoring: per-identity baselines, anomaly detectors, a decaying risk score
//! and circuit-breaker decisions.
//!
//! The gateway hands every call to [`Monitor::observe`] as a [`CallEvent`] and gets back an
//! [`Observation`]: the identity's risk score, any [`Alert`]s, and possibly a
//! [`BreakerAction`]. Policy reads [`Monitor::risk_score`]. Storage persists
//! [`IdentitySnapshot`]s. This crate does no I/O and never reads the clock: every time is a
//! parameter (milliseconds since the Unix epoch). Detector rules are documented in [`detect`].

#![deny(missing_docs)]

pub mod alert;
pub mod baseline;
pub mod config;
pub mod detect;
pub mod error;
pub mod event;
mod hash;
pub mod monitor;
pub mod risk;
mod window;

pub use alert::{Alert, DetectorKind, Evidence, Severity};
pub use baseline::Baseline;
pub use config::MonitorConfig;
pub use error::MonitorError;
pub use event::{CallEvent, NetworkKey, Outcome};
pub use monitor::{BreakerAction, IdentitySnapshot, Monitor, Observation};
pub use risk::RiskScore;
