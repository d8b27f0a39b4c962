//! Steward's policy engine on Cedar: allow, deny or approval required, per operation.
//!
//! - [`Catalog`] describes services, operations and argument types; [`Catalog::cedar_schema`]
//!   generates the Cedar schema (conventions in [`catalog`]).
//! - [`compile`] / [`compile_with_grants`] validate policy sources (strictly) and time-bound
//!   [`Grant`]s into [`CompiledPolicies`], indexed by action and identity.
//! - [`authorize`] turns a [`Request`] into a [`Decision`], a value; [`Decision::permit`] yields
//!   the [`Permit`] that forwarding code must be given.
//! - [`explain`] and [`run_test_file`] serve `steward policy eval` and `steward policy test`.

#![deny(missing_docs)]

pub mod authorize;
pub mod catalog;
pub mod compile;
pub mod decision;
pub mod error;
pub mod explain;
mod fast_path;
mod needs;
pub mod request;
pub mod testfile;

pub use authorize::{authorize, authorize_full_scan};
pub use catalog::{ArgDef, ArgType, Catalog, OperationDef, ServiceDef};
pub use compile::{
    CompiledPolicies, Grant, PolicyEffect, PolicyInfo, PolicySource, compile, compile_with_grants,
};
pub use decision::{ApprovalRequirement, Decision, DenyReason, Effect, Permit};
pub use error::{PolicyDiagnostic, PolicyError};
pub use explain::explain;
pub use request::{IdentityAttrs, RateCounts, Request};
pub use testfile::{TestFailure, TestReport, run_test_file};
