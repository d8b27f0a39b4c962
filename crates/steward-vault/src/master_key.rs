//! Master keys (the key-encryption keys) and the keyring of versions held at once.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, RandomizedNonceKey};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use crate::error::{Result, VaultError};

/// Length of a master key in bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

const CHECK_VALUE_LABEL: &[u8] = b"steward-vault/check-value/v1";
const FINGERPRINT_LABEL: &[u8] = b"steward-vault/fingerprint/v1";
const CHECK_VALUE_PREFIX: &str = "kcv1:";

/// A 256-bit master key with its version.
///
/// The raw bytes live in zeroizing heap memory; the expanded AES key schedule lives inside
/// aws-lc, which cleanses it when the key is dropped. `Debug` shows only the version and the
/// fingerprint.
pub struct MasterKey {
    version: u32,
    bytes: SecretBox<[u8; MASTER_KEY_LEN]>,
    // INVARIANT: `aead` is built from `bytes`; both are set only in `from_array`.
    aead: RandomizedNonceKey,
}

impl MasterKey {
    /// Generates a fresh random key with the given version.
    pub fn generate(version: u32) -> Result<Self> {
        let mut bytes = Box::new(Zeroizing::new([0u8; MASTER_KEY_LEN]));
        aws_lc_rs::rand::fill(bytes.as_mut_slice()).map_err(|_| VaultError::Crypto {
            what: "random generator failed while generating a master key",
        })?;
        Self::from_array(version, &bytes)
    }

    /// Builds a key from exactly 32 raw bytes.
    pub fn from_bytes(version: u32, bytes: &[u8]) -> Result<Self> {
        let array: &[u8; MASTER_KEY_LEN] = bytes.try_into().map_err(|_| {
            VaultError::malformed_key(
                "raw bytes",
                format!(
                    "a master key must be {MASTER_KEY_LEN} bytes, got {}",
                    bytes.len()
                ),
            )
        })?;
        Self::from_array(version, array)
    }

    /// Parses a standard-base64 (padded or not) encoding of 32 bytes.
    ///
    /// `source_name` names where the text came from (a path or variable) for error messages;
    /// the key text itself is never echoed.
    pub fn from_base64(version: u32, text: &str, source_name: &str) -> Result<Self> {
        let trimmed = text.trim();
        let mut buf = Zeroizing::new([0u8; 64]);
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let len = engine
            .decode_slice(trimmed.as_bytes(), buf.as_mut_slice())
            .map_err(|_| {
                VaultError::malformed_key(
                    source_name,
                    format!("expected standard base64 of {MASTER_KEY_LEN} bytes"),
                )
            })?;
        let decoded = buf.get(..len).unwrap_or_default();
        if decoded.len() != MASTER_KEY_LEN {
            return Err(VaultError::malformed_key(
                source_name,
                format!("a master key must be {MASTER_KEY_LEN} bytes, the base64 decodes to {len}"),
            ));
        }
        Self::from_bytes(version, decoded)
    }

    fn from_array(version: u32, array: &[u8; MASTER_KEY_LEN]) -> Result<Self> {
        let aead =
            RandomizedNonceKey::new(&AES_256_GCM, array).map_err(|_| VaultError::Crypto {
                what: "could not initialise the master key",
            })?;
        let mut boxed = Box::new([0u8; MASTER_KEY_LEN]);
        boxed.copy_from_slice(array);
        Ok(Self {
            version,
            bytes: SecretBox::new(boxed),
            aead,
        })
    }

    /// The key's version, as recorded in every value it wraps.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The key as standard base64, in zeroizing memory (for writing key files).
    pub fn to_base64(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(48));
        STANDARD.encode_string(self.bytes.expose_secret(), &mut out);
        out
    }

    /// A non-secret value derived with HMAC-SHA-256 from the key and its version.
    ///
    /// The server stores it beside the data. At startup it compares it with
    /// [`MasterKey::verify_check_value`] and refuses to start on a mismatch, rather than failing
    /// later on every decryption. Format: `kcv1:` followed by unpadded base64url of 32 bytes.
    pub fn check_value(&self) -> String {
        let tag = self.hmac_with_version(CHECK_VALUE_LABEL);
        let mut out = String::from(CHECK_VALUE_PREFIX);
        URL_SAFE_NO_PAD.encode_string(tag.as_ref(), &mut out);
        out
    }

    /// Checks a stored check value in constant time.
    ///
    /// Returns [`VaultError::MasterKeyWrong`] on a mismatch (including a malformed stored value).
    pub fn verify_check_value(&self, stored: &str) -> Result<()> {
        let expected = self.check_value();
        if steward_core::constant_time_eq(expected.as_bytes(), stored.trim().as_bytes()) {
            Ok(())
        } else {
            Err(VaultError::MasterKeyWrong {
                version: self.version,
            })
        }
    }

    /// A short non-secret identifier for logs and the CLI, e.g. `v2:1f9c0a7be3d25164`.
    pub fn fingerprint(&self) -> String {
        let tag = self.hmac_with_version(FINGERPRINT_LABEL);
        let mut out = format!("v{}:", self.version);
        for byte in tag.as_ref().iter().take(8) {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    fn hmac_with_version(&self, label: &[u8]) -> hmac::Tag {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.bytes.expose_secret());
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(label);
        ctx.update(&self.version.to_be_bytes());
        ctx.sign()
    }

    pub(crate) fn aead(&self) -> &RandomizedNonceKey {
        &self.aead
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("version", &self.version)
            .field("fingerprint", &self.fingerprint())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// The set of master keys loaded at once, by version.
///
/// New values are sealed under [`Keyring::current`], the highest version. Older versions stay
/// loaded so values wrapped under them still open until a rotation has rewrapped them.
pub struct Keyring {
    // INVARIANT: `current` has a higher version than every key in `older`.
    current: MasterKey,
    older: BTreeMap<u32, MasterKey>,
}

impl Keyring {
    /// Builds a keyring; fails when `keys` is empty or two keys share a version.
    pub fn new(keys: impl IntoIterator<Item = MasterKey>) -> Result<Self> {
        let mut map = BTreeMap::new();
        for key in keys {
            let version = key.version();
            if map.insert(version, key).is_some() {
                return Err(VaultError::InvalidKeyring {
                    reason: format!("master key version `{version}` appears twice"),
                });
            }
        }
        let (_, current) = map.pop_last().ok_or_else(|| VaultError::InvalidKeyring {
            reason: "no master key".to_owned(),
        })?;
        Ok(Self {
            current,
            older: map,
        })
    }

    /// A keyring holding one key.
    pub fn single(key: MasterKey) -> Self {
        Self {
            current: key,
            older: BTreeMap::new(),
        }
    }

    /// The key new values are sealed under (the highest version).
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// The key with this version, if loaded.
    pub fn get(&self, version: u32) -> Option<&MasterKey> {
        if version == self.current.version() {
            Some(&self.current)
        } else {
            self.older.get(&version)
        }
    }

    /// The key with this version, or [`VaultError::UnknownKeyVersion`].
    pub fn require(&self, version: u32) -> Result<&MasterKey> {
        self.get(version)
            .ok_or(VaultError::UnknownKeyVersion { version })
    }

    /// All loaded versions, ascending.
    pub fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys().map(MasterKey::version)
    }

    /// All loaded keys, ascending by version.
    pub fn keys(&self) -> impl Iterator<Item = &MasterKey> + '_ {
        self.older.values().chain(std::iter::once(&self.current))
    }

    /// Number of loaded versions (at least one).
    pub fn len(&self) -> usize {
        self.older.len() + 1
    }

    /// Always false: a keyring holds at least one key.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.version())
            .field("keys", &self.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = MasterKey::from_bytes(3, &[0xAB; 32]).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("version: 3"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let b64 = key.to_base64();
        assert!(!shown.contains(b64.as_str()), "{shown}");
        assert!(!shown.to_lowercase().contains("abab"), "{shown}");
        let ring = format!("{:?}", Keyring::single(key));
        assert!(!ring.contains(b64.as_str()), "{ring}");
    }

    #[test]
    fn check_value_detects_wrong_key_and_version() {
        let key = MasterKey::generate(1).unwrap();
        let stored = key.check_value();
        assert!(stored.starts_with("kcv1:"));
        key.verify_check_value(&stored).unwrap();

        let other = MasterKey::generate(1).unwrap();
        assert!(matches!(
            other.verify_check_value(&stored),
            Err(VaultError::MasterKeyWrong { version: 1 })
        ));

        // Same bytes, different version: different check value.
        let same_bytes_v2 = MasterKey::from_base64(2, &key.to_base64(), "test").unwrap();
        assert_ne!(same_bytes_v2.check_value(), stored);
        assert!(same_bytes_v2.verify_check_value(&stored).is_err());
        assert!(key.verify_check_value("garbage").is_err());
        assert!(key.verify_check_value("").is_err());
    }

    #[test]
    fn check_value_and_fingerprint_do_not_reveal_the_key() {
        let key = MasterKey::from_bytes(1, &[7u8; 32]).unwrap();
        let b64 = key.to_base64();
        assert!(!key.check_value().contains(b64.as_str()));
        let fp = key.fingerprint();
        assert!(fp.starts_with("v1:"), "{fp}");
        assert_eq!(fp.len(), 3 + 16);
        assert_ne!(
            fp,
            MasterKey::from_bytes(1, &[8u8; 32]).unwrap().fingerprint()
        );
        // Deterministic.
        assert_eq!(
            fp,
            MasterKey::from_bytes(1, &[7u8; 32]).unwrap().fingerprint()
        );
    }

    #[test]
    fn base64_round_trip_and_malformed_input_errors() {
        let key = MasterKey::generate(5).unwrap();
        let again = MasterKey::from_base64(5, &key.to_base64(), "t").unwrap();
        assert_eq!(key.check_value(), again.check_value());

        let unpadded = key.to_base64().trim_end_matches('=').to_owned();
        let again = MasterKey::from_base64(5, &unpadded, "t").unwrap();
        assert_eq!(key.check_value(), again.check_value());

        for bad in [
            "",
            "not base64!!",
            "AAAA",
            &STANDARD.encode([1u8; 31]),
            &STANDARD.encode([1u8; 33]),
            &STANDARD.encode([1u8; 200]),
        ] {
            let err = MasterKey::from_base64(1, bad, "STEWARD_MASTER_KEY").unwrap_err();
            assert!(
                matches!(err, VaultError::MalformedKey { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("`STEWARD_MASTER_KEY`"), "{err}");
        }
        assert!(MasterKey::from_bytes(1, &[0u8; 16]).is_err());
    }

    #[test]
    fn generated_keys_differ() {
        let a = MasterKey::generate(1).unwrap();
        let b = MasterKey::generate(1).unwrap();
        assert_ne!(a.to_base64().as_str(), b.to_base64().as_str());
    }

    #[test]
    fn keyring_current_is_highest_and_rejects_duplicates_and_empty() {
        let ring = Keyring::new([
            MasterKey::generate(2).unwrap(),
            MasterKey::generate(7).unwrap(),
            MasterKey::generate(3).unwrap(),
        ])
        .unwrap();
        assert_eq!(ring.current().version(), 7);
        assert_eq!(ring.versions().collect::<Vec<_>>(), vec![2, 3, 7]);
        assert!(ring.get(3).is_some());
        assert!(matches!(
            ring.require(4),
            Err(VaultError::UnknownKeyVersion { version: 4 })
        ));
        assert_eq!(ring.len(), 3);

        assert!(Keyring::new(Vec::new()).is_err());
        assert!(
            Keyring::new([
                MasterKey::generate(1).unwrap(),
                MasterKey::generate(1).unwrap()
            ])
            .is_err()
        );
    }
}
