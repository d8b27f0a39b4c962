//! Persistent state of Steward on SQLite (default) or PostgreSQL.
//!
//! One SQL dialect subset serves both backends through sqlx's `Any` driver: statements
//! use `$N` placeholders, integers for timestamps (milliseconds since the epoch) and
//! no boolean columns. Each backend has its own migrations under `migrations/`. Only the
//! binary and tests name a concrete backend, by URL. The one exception is
//! [`audit_index`]: the SQLite audit indexer's bulk inserts run on their own connection.

#![deny(missing_docs)]

pub mod audit_index;
mod backend;
mod error;
mod migrate;
pub mod models;
mod queries;

pub use backend::{Backend, Store, mask_url};
pub use error::StoreError;
pub use migrate::SCHEMA_VERSION;
