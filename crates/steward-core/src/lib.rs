//! Shared vocabulary of Steward: ids, time, secrets, names, operations and error codes.
//!
//! This crate does no I/O. Every other crate depends on it, so it stays small.

#![deny(missing_docs)]

pub mod error;
pub mod id;
pub mod name;
pub mod operation;
pub mod secret;
pub mod time;

pub use error::ErrorCode;
pub use operation::{OperationClass, OperationName};
pub use secret::{SecretBytes, SecretString, constant_time_eq};
pub use time::{Clock, ManualClock, SystemClock};
