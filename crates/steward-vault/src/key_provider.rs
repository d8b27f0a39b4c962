//! Where master keys come from: the [`KeyProvider`] trait, its key-file and environment
//! implementations, and the crash-safe master-key rotation protocol.
//!
//! # Rotation protocol
//!
//! A master-key rotation moves every wrapped data key from the old master-key version to a new
//! one. It has three steps, and a crash (`kill -9`, power loss) at any point leaves every value
//! decryptable, because at every instant each row names a key version that is on disk:
//!
//! 1. **Add the new version durably.** [`KeyProvider::create_next_version`] writes version
//!    `N+1` beside the existing ones (for the file provider: write a temp file with mode 0600,
//!    fsync it, hard-link it to `master-v<N+1>.key` (never overwriting), unlink the temp name,
//!    fsync the directory) and only then returns. From now on [`Keyring::current`] is `N+1`
//!    and new values are sealed under it; old rows still open with version `N`.
//!    The caller stores the new version's [`MasterKey::check_value`] beside the data.
//!    *Crash before the call returns:* at most a hidden temp file is left (ignored by
//!    [`KeyProvider::load`]); no row refers to `N+1`, so nothing is lost.
//! 2. **Rewrap row by row.** For each row whose `key_version` is not the current one, call
//!    [`crate::rewrap`] and write the result with a compare-and-swap update (`... WHERE id = ?
//!    AND version = ? AND key_version = <old>`), one short transaction per row or small batch.
//!    *Crash at any point:* each row holds either its old or its new sealed value, both
//!    versions are loaded, so both open. Rerunning resumes where it stopped (select rows whose
//!    `key_version` differs from the current one).
//! 3. **Retire the old version.** Count the rows that still refer to it *after* every writer
//!    uses the new keyring, and pass that count to [`KeyProvider::retire_version`], which
//!    refuses unless it is zero and never retires the current version. The file provider
//!    unlinks the key file and fsyncs the directory. *Crash before the unlink:* the old key
//!    remains, unused; rerun step 3. *After:* no row refers to it.
//!
//! Every running server must load the new keyring before step 2 starts (restart, or reload
//! via [`KeyProvider::load`]); a server that meets [`crate::VaultError::UnknownKeyVersion`]
//! should reload its keyring once and retry. Database backups taken before step 3 need the
//! retired key: archive it offline first if those backups must stay readable.
//!
//! The environment provider cannot write keys: rotate by setting `STEWARD_MASTER_KEY` to a list
//! holding both versions (`2:<new>,1:<old>`), restarting, rewrapping, then dropping the old one.

use std::fmt;

use crate::error::{Result, VaultError};
use crate::master_key::Keyring;

mod env_var;
mod key_file;

pub use env_var::{DEFAULT_KEY_VAR, DEFAULT_VERSION_VAR, EnvKeyProvider};
pub use key_file::{FileKeyProvider, KEY_FILE_FORMAT};

/// A source of master keys. A KMS or Vault-transit provider implements this later.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// A short stable name for logs and errors, e.g. `file` or `env`.
    fn name(&self) -> &str;

    /// Loads every available master-key version.
    fn load(&self) -> Result<Keyring>;

    /// Durably adds a new master-key version, higher than every existing one, and returns the
    /// reloaded keyring whose current key is the new version (rotation step 1).
    fn create_next_version(&self) -> Result<Keyring> {
        Err(VaultError::OperationRefused {
            provider: self.name().to_owned(),
            reason: "this provider cannot create master keys".to_owned(),
        })
    }

    /// Removes a master-key version that no row uses any more (rotation step 3).
    ///
    /// `rows_still_using` is the caller's count of sealed values wrapped under `version`; the
    /// call is refused unless it is zero, and the current version is never retired.
    fn retire_version(&self, version: u32, rows_still_using: u64) -> Result<()> {
        let _ = (version, rows_still_using);
        Err(VaultError::OperationRefused {
            provider: self.name().to_owned(),
            reason: "this provider cannot retire master keys".to_owned(),
        })
    }
}
