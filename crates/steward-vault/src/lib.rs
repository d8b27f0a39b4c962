//! The Steward credential vault: envelope encryption, master keys and their providers, and a
//! bounded cache of decrypted values.
//!
//! * [`envelope`]: [`seal`], [`open`] and [`rewrap`] with AES-256-GCM (aws-lc), one random
//!   data key per secret version, wrapped by a versioned [`MasterKey`].
//! * [`master_key`]: [`MasterKey`] (with a stored check value) and [`Keyring`].
//! * [`key_provider`]: the [`KeyProvider`] trait, the key file and the environment variable
//!   providers, and the crash-safe master-key rotation protocol.
//! * [`cache`]: [`SecretCache`], decrypted values held in zeroizing memory for a bounded time.
//!
//! This crate does no network I/O; the file provider touches only its key directory.

#![deny(missing_docs)]

pub mod cache;
pub mod envelope;
pub mod error;
pub mod key_provider;
pub mod master_key;

pub use cache::{CachedSecret, FillTicket, SecretCache};
pub use envelope::{Sealed, open, rewrap, seal};
pub use error::{Result, VaultError};
pub use key_provider::{EnvKeyProvider, FileKeyProvider, KeyProvider};
pub use master_key::{Keyring, MasterKey};

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn shared_types_are_send_and_sync() {
        assert_send_sync::<Keyring>();
        assert_send_sync::<MasterKey>();
        assert_send_sync::<SecretCache>();
        assert_send_sync::<CachedSecret>();
        assert_send_sync::<Box<dyn KeyProvider>>();
    }
}
