//! Credentials of non-human identities: API keys and short-lived, attenuable access tokens.
//!
//! - [`api_key`]: long-lived `stw_…` keys with an offline checksum; only their SHA-256 is stored.
//! - [`access_token`]: `stwt_…` tokens signed with Ed25519 that any holder can narrow offline
//!   ([`access_token::attenuate`]) before handing them to a sub-agent.
//! - [`cache`]: the request-path verifier, which caches verified tokens and checks in-memory
//!   revocation state on every use.
//!
//! The crate does no I/O and reads no clock: callers pass `now_ms` (milliseconds since the
//! Unix epoch) and, for key generation, either supply randomness or use the `*_random` helpers.

#![deny(missing_docs)]

pub mod access_token;
pub mod api_key;
pub mod cache;
pub mod claims;
pub mod error;
pub mod keys;

pub use access_token::{attenuate, mint, verify};
pub use api_key::ApiKey;
pub use cache::{IdentityStatus, RevocationState, TokenCache, TokenVerifier};
pub use claims::{Claims, Restriction, VerifiedToken};
pub use error::TokenError;
pub use keys::{SigningKey, VerifyingKeys};

/// The largest clock difference tolerated between Steward and a token's issuer, in
/// milliseconds: 30 seconds.
pub const CLOCK_SKEW_MS: i64 = 30_000;
