//! The vault's error type and the stable operator codes it maps to.

use std::path::PathBuf;

use steward_core::ErrorCode;

/// Stable error codes owned by the vault, beyond those declared in `steward_core`.
pub mod codes {
    use steward_core::ErrorCode;

    /// A sealed value names a master-key version the keyring does not hold.
    pub const VAULT_KEY_VERSION_UNKNOWN: ErrorCode = ErrorCode("VLT0004");
    /// Key material (file or environment variable) is malformed.
    pub const VAULT_KEY_MALFORMED: ErrorCode = ErrorCode("VLT0005");
    /// The key file is readable or writable by group or others.
    pub const VAULT_KEY_FILE_INSECURE: ErrorCode = ErrorCode("VLT0006");
    /// A sealed value is not in a format this build understands.
    pub const VAULT_SEALED_MALFORMED: ErrorCode = ErrorCode("VLT0007");
    /// Reading or writing key files failed.
    pub const VAULT_KEY_IO: ErrorCode = ErrorCode("VLT0008");
    /// The crypto library or the random generator failed.
    pub const VAULT_CRYPTO: ErrorCode = ErrorCode("VLT0009");
    /// The requested key operation is not supported or not allowed.
    pub const VAULT_KEY_OPERATION_REFUSED: ErrorCode = ErrorCode("VLT0010");
}

/// Everything that can go wrong in the vault.
///
/// No variant ever carries plaintext, key bytes or ciphertext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// Authentication of a sealed value failed: wrong key, wrong row, or tampering.
    ///
    /// Deliberately says nothing about which part failed.
    #[error("decryption failed: wrong key, wrong secret id or version, or tampered ciphertext")]
    DecryptFailed,

    /// The keyring holds no master key with this version.
    #[error("master key version `{version}` is not loaded")]
    UnknownKeyVersion {
        /// The version named by the sealed value.
        version: u32,
    },

    /// No master key was found where one is required.
    #[error("master key missing at `{location}`: {reason}")]
    MasterKeyMissing {
        /// Where the key was looked for (path or variable name).
        location: String,
        /// Why this is an error.
        reason: String,
    },

    /// A master key does not match the check value stored with the data.
    #[error("master key version `{version}` does not match the stored check value")]
    MasterKeyWrong {
        /// The key version that failed the check.
        version: u32,
    },

    /// Key material could not be parsed.
    #[error("malformed master key in `{source_name}`: {reason}")]
    MalformedKey {
        /// The file path or variable name the key came from.
        source_name: String,
        /// What is wrong, without echoing the key.
        reason: String,
    },

    /// The key file's permissions let group or others read or write it.
    #[error(
        "key file `{path}` has mode {mode:o}; it must not be accessible to group or others (chmod 600)"
    )]
    InsecureKeyFile {
        /// The offending file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The keyring is inconsistent (empty, duplicate versions, ...).
    #[error("invalid keyring: {reason}")]
    InvalidKeyring {
        /// What is wrong.
        reason: String,
    },

    /// A sealed value could not be parsed.
    #[error("malformed sealed value: {reason}")]
    MalformedSealed {
        /// What is wrong.
        reason: String,
    },

    /// A key operation was refused (unsupported by the provider, or unsafe).
    #[error("key operation refused by provider `{provider}`: {reason}")]
    OperationRefused {
        /// The provider's name.
        provider: String,
        /// Why.
        reason: String,
    },

    /// File-system failure while handling key files.
    #[error("key file i/o failed at `{path}`")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The crypto library or random generator reported a failure.
    #[error("crypto failure: {what}")]
    Crypto {
        /// Which step failed.
        what: &'static str,
    },
}

impl VaultError {
    /// The stable operator-facing code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::DecryptFailed => ErrorCode::VAULT_DECRYPT_FAILED,
            Self::UnknownKeyVersion { .. } => codes::VAULT_KEY_VERSION_UNKNOWN,
            Self::MasterKeyMissing { .. } => ErrorCode::VAULT_MASTER_KEY_MISSING,
            Self::MasterKeyWrong { .. } => ErrorCode::VAULT_MASTER_KEY_WRONG,
            Self::MalformedKey { .. } | Self::InvalidKeyring { .. } => codes::VAULT_KEY_MALFORMED,
            Self::InsecureKeyFile { .. } => codes::VAULT_KEY_FILE_INSECURE,
            Self::MalformedSealed { .. } => codes::VAULT_SEALED_MALFORMED,
            Self::OperationRefused { .. } => codes::VAULT_KEY_OPERATION_REFUSED,
            Self::Io { .. } => codes::VAULT_KEY_IO,
            Self::Crypto { .. } => codes::VAULT_CRYPTO,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed_key(source_name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::MalformedKey {
            source_name: source_name.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias for the vault.
pub type Result<T> = std::result::Result<T, VaultError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_distinct_where_it_matters() {
        assert_eq!(VaultError::DecryptFailed.code().0, "VLT0003");
        assert_eq!(
            VaultError::MasterKeyWrong { version: 1 }.code().0,
            "VLT0002"
        );
        assert_eq!(
            VaultError::MasterKeyMissing {
                location: "x".into(),
                reason: "y".into()
            }
            .code()
            .0,
            "VLT0001"
        );
        assert_ne!(
            VaultError::UnknownKeyVersion { version: 2 }.code(),
            VaultError::DecryptFailed.code()
        );
    }

    #[test]
    fn messages_are_lowercase_and_quote_input() {
        let e = VaultError::UnknownKeyVersion { version: 7 };
        let msg = e.to_string();
        assert!(msg.starts_with(char::is_lowercase), "{msg}");
        assert!(msg.contains("`7`"), "{msg}");
    }
}
