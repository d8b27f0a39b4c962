//! The environment-variable key provider: base64 master keys passed in by the process manager.

use std::env::VarError;

use zeroize::Zeroizing;

use crate::error::{Result, VaultError};
use crate::key_provider::KeyProvider;
use crate::master_key::{Keyring, MasterKey};

/// The variable read by default for the master key.
pub const DEFAULT_KEY_VAR: &str = "STEWARD_MASTER_KEY";
/// The variable read by default for the version of a single master key.
pub const DEFAULT_VERSION_VAR: &str = "STEWARD_MASTER_KEY_VERSION";

/// Reads master keys from an environment variable.
///
/// The key variable holds either
/// * one key: standard base64 of 32 bytes; its version comes from the version variable when
///   that is set, else it is 1; or
/// * several keys for a rotation: comma-separated `<version>:<base64>` entries, e.g.
///   `2:<new key>,1:<old key>` (the version variable must then be unset).
///
/// The process environment keeps its own copy of the key for the life of the process; prefer
/// the key file where that matters.
#[derive(Debug, Clone)]
pub struct EnvKeyProvider {
    key_var: String,
    version_var: Option<String>,
}

impl Default for EnvKeyProvider {
    fn default() -> Self {
        Self::new(DEFAULT_KEY_VAR).with_version_var(DEFAULT_VERSION_VAR)
    }
}

impl EnvKeyProvider {
    /// Reads the key from `key_var`; the version is fixed at 1 unless a version variable is set
    /// with [`EnvKeyProvider::with_version_var`].
    pub fn new(key_var: impl Into<String>) -> Self {
        Self {
            key_var: key_var.into(),
            version_var: None,
        }
    }

    /// Takes the version of a single key from `version_var` when it is set.
    #[must_use]
    pub fn with_version_var(mut self, version_var: impl Into<String>) -> Self {
        self.version_var = Some(version_var.into());
        self
    }

    /// The name of the key variable.
    pub fn key_var(&self) -> &str {
        &self.key_var
    }

    /// Parses the variables' values as [`KeyProvider::load`] would read them; `None` is unset.
    pub fn parse(&self, key_value: Option<&str>, version_value: Option<&str>) -> Result<Keyring> {
        let source = self.key_var.as_str();
        let Some(key_value) = key_value.map(str::trim).filter(|v| !v.is_empty()) else {
            return Err(VaultError::MasterKeyMissing {
                location: source.to_owned(),
                reason: "the environment variable is not set".to_owned(),
            });
        };
        if key_value.contains(':') || key_value.contains(',') {
            if version_value.is_some() {
                return Err(VaultError::malformed_key(
                    source,
                    format!(
                        "a versioned key list cannot be combined with `{}`",
                        self.version_var.as_deref().unwrap_or_default()
                    ),
                ));
            }
            let mut keys = Vec::new();
            for (index, entry) in key_value.split(',').enumerate() {
                let entry = entry.trim();
                let Some((version, key)) = entry.split_once(':') else {
                    return Err(VaultError::malformed_key(
                        source,
                        format!("entry {} is not `<version>:<base64 key>`", index + 1),
                    ));
                };
                let version = parse_version(version, source)?;
                keys.push(MasterKey::from_base64(version, key, source)?);
            }
            return Keyring::new(keys);
        }
        let version = match version_value {
            Some(text) => parse_version(text, self.version_var.as_deref().unwrap_or(source))?,
            None => 1,
        };
        Ok(Keyring::single(MasterKey::from_base64(
            version, key_value, source,
        )?))
    }
}

fn parse_version(text: &str, source: &str) -> Result<u32> {
    let text = text.trim();
    // Only the version text is echoed, never key material, and only when it is short.
    let shown = if text.len() <= 12 {
        text
    } else {
        "<long value>"
    };
    match text.parse::<u32>() {
        Ok(version) if version > 0 => Ok(version),
        _ => Err(VaultError::malformed_key(
            source,
            format!("key version `{shown}` is not a positive integer"),
        )),
    }
}

fn read_var(name: &str) -> Result<Option<Zeroizing<String>>> {
    match std::env::var(name) {
        Ok(value) => Ok(Some(Zeroizing::new(value))),
        Err(VarError::NotPresent) => Ok(None),
        Err(VarError::NotUnicode(_)) => Err(VaultError::malformed_key(
            name,
            "the environment variable is not valid unicode",
        )),
    }
}

impl KeyProvider for EnvKeyProvider {
    fn name(&self) -> &str {
        "env"
    }

    fn load(&self) -> Result<Keyring> {
        let key = read_var(&self.key_var)?;
        let version = match &self.version_var {
            Some(var) => read_var(var)?,
            None => None,
        };
        self.parse(
            key.as_deref().map(String::as_str),
            version.as_deref().map(String::as_str),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    fn b64(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    #[test]
    fn single_key_defaults_to_version_one() {
        let provider = EnvKeyProvider::default();
        let ring = provider.parse(Some(&b64(1)), None).unwrap();
        assert_eq!(ring.current().version(), 1);
        assert_eq!(ring.len(), 1);
        let expected = MasterKey::from_bytes(1, &[1; 32]).unwrap();
        assert_eq!(ring.current().check_value(), expected.check_value());
    }

    #[test]
    fn version_variable_sets_the_version() {
        let provider = EnvKeyProvider::default();
        let ring = provider.parse(Some(&b64(1)), Some(" 4 ")).unwrap();
        assert_eq!(ring.current().version(), 4);
        for bad in ["0", "-1", "x", "99999999999"] {
            let err = provider.parse(Some(&b64(1)), Some(bad)).unwrap_err();
            assert!(
                matches!(err, VaultError::MalformedKey { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn versioned_list_loads_all_versions() {
        let provider = EnvKeyProvider::new("K");
        let value = format!("2:{}, 1:{}", b64(2), b64(1));
        let ring = provider.parse(Some(&value), None).unwrap();
        assert_eq!(ring.current().version(), 2);
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![1, 2]);
        let duplicate = format!("1:{},1:{}", b64(2), b64(1));
        assert!(provider.parse(Some(&duplicate), None).is_err());
        assert!(provider.parse(Some(&value), Some("3")).is_err());
        assert!(provider.parse(Some("1:"), None).is_err());
        assert!(provider.parse(Some(&format!("{},", b64(1))), None).is_err());
    }

    #[test]
    fn missing_and_malformed_values_are_errors_that_hide_the_value() {
        let provider = EnvKeyProvider::new("STEWARD_MASTER_KEY");
        assert!(matches!(
            provider.parse(None, None),
            Err(VaultError::MasterKeyMissing { .. })
        ));
        assert!(matches!(
            provider.parse(Some("  "), None),
            Err(VaultError::MasterKeyMissing { .. })
        ));
        let secret_looking = "c2VjcmV0LWJ1dC10b28tc2hvcnQ=";
        let err = provider.parse(Some(secret_looking), None).unwrap_err();
        assert!(matches!(err, VaultError::MalformedKey { .. }));
        assert!(!err.to_string().contains(secret_looking), "{err}");
        let err = provider
            .parse(Some(&format!("{}:{}", "z".repeat(40), b64(1))), None)
            .unwrap_err();
        assert!(!err.to_string().contains(&"z".repeat(40)), "{err}");
    }

    #[test]
    fn load_reads_the_environment() {
        // PATH is set in any test environment and is not a key: a clear error, no panic.
        let err = EnvKeyProvider::new("PATH").load().unwrap_err();
        assert!(matches!(err, VaultError::MalformedKey { .. }), "{err}");
        let err = EnvKeyProvider::new("STEWARD_TEST_SURELY_UNSET_VARIABLE_7f3a")
            .load()
            .unwrap_err();
        assert_eq!(
            err.code(),
            steward_core::ErrorCode::VAULT_MASTER_KEY_MISSING
        );
        assert_eq!(EnvKeyProvider::default().name(), "env");
    }
}
