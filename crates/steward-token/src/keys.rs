//! Token signing keys: the Ed25519 [`SigningKey`] that mints, and the [`VerifyingKeys`] set
//! that verifies, keyed by key id so the signing key can rotate with an overlap window.

use std::collections::HashMap;
use std::fmt;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, ParsedPublicKey};
use zeroize::Zeroizing;

use crate::error::{TokenError, clip};

/// Length of an Ed25519 seed, public key and signature.
pub const SEED_LEN: usize = 32;
/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Longest accepted key id.
pub const MAX_KEY_ID_LEN: usize = 64;

/// The Ed25519 key Steward mints tokens with. `Debug` shows only the key id.
///
/// The seed is copied into aws-lc, which wipes it when the key is dropped; the caller's
/// copy stays in `Zeroizing` memory.
pub struct SigningKey {
    key_id: String,
    pair: Ed25519KeyPair,
}

impl SigningKey {
    /// Builds a signing key from a 32-byte seed (as kept in the vault) and its key id.
    pub fn from_seed(key_id: &str, seed: &Zeroizing<[u8; SEED_LEN]>) -> Result<Self, TokenError> {
        validate_key_id(key_id)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed[..])
            .map_err(|_| TokenError::InvalidKey("ed25519 seed rejected".into()))?;
        Ok(Self {
            key_id: key_id.to_owned(),
            pair,
        })
    }

    /// Generates a fresh key; returns it with its seed, which the caller stores in the vault.
    pub fn generate(key_id: &str) -> Result<(Self, Zeroizing<[u8; SEED_LEN]>), TokenError> {
        let seed = random_seed()?;
        let key = Self::from_seed(key_id, &seed)?;
        Ok((key, seed))
    }

    /// The key id written into every token this key mints.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The raw 32-byte public key, to publish in a [`VerifyingKeys`] set.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Result<[u8; SIGNATURE_LEN], TokenError> {
        sign_with(&self.pair, message)
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id)
            .field("seed", &"<redacted>")
            .finish()
    }
}

/// One public key of the set.
#[derive(Clone)]
struct VerifyingKey {
    parsed: ParsedPublicKey,
    raw: [u8; PUBLIC_KEY_LEN],
    retire_at_ms: Option<i64>,
}

/// The public keys tokens may be signed with, by key id: the current key plus the previous
/// ones during their rotation overlap.
///
/// A key added with a retirement time stops verifying at that instant (no skew is added),
/// so an overlap window is enforced even if the caller forgets to remove the old key.
/// Keep the overlap at least as long as the longest token TTL.
#[derive(Clone, Default)]
pub struct VerifyingKeys {
    keys: HashMap<String, VerifyingKey>,
}

impl VerifyingKeys {
    /// An empty set, which verifies nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a public key under `key_id`, valid until `retire_at_ms` if given.
    pub fn insert(
        &mut self,
        key_id: &str,
        public_key: &[u8; PUBLIC_KEY_LEN],
        retire_at_ms: Option<i64>,
    ) -> Result<(), TokenError> {
        validate_key_id(key_id)?;
        let parsed = ParsedPublicKey::new(&ED25519, public_key)
            .map_err(|_| TokenError::InvalidKey("ed25519 public key rejected".into()))?;
        self.keys.insert(
            key_id.to_owned(),
            VerifyingKey {
                parsed,
                raw: *public_key,
                retire_at_ms,
            },
        );
        Ok(())
    }

    /// Adds the public half of a signing key, with no retirement time.
    pub fn insert_signing_key(&mut self, key: &SigningKey) -> Result<(), TokenError> {
        self.insert(key.key_id(), &key.public_key(), None)
    }

    /// A set holding only the public half of `key`.
    pub fn from_signing_key(key: &SigningKey) -> Result<Self, TokenError> {
        let mut set = Self::new();
        set.insert_signing_key(key)?;
        Ok(set)
    }

    /// Sets or clears the retirement time of a key; false if the id is unknown.
    pub fn retire_at(&mut self, key_id: &str, retire_at_ms: Option<i64>) -> bool {
        match self.keys.get_mut(key_id) {
            Some(entry) => {
                entry.retire_at_ms = retire_at_ms;
                true
            }
            None => false,
        }
    }

    /// Removes a key; false if the id was unknown.
    pub fn remove(&mut self, key_id: &str) -> bool {
        self.keys.remove(key_id).is_some()
    }

    /// The raw public key of `key_id`, if present.
    pub fn public_key(&self, key_id: &str) -> Option<[u8; PUBLIC_KEY_LEN]> {
        self.keys.get(key_id).map(|entry| entry.raw)
    }

    /// The key ids in the set, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The parsed key for `key_id`, if known and not retired at `now_ms`.
    pub(crate) fn usable(&self, key_id: &str, now_ms: i64) -> Result<&ParsedPublicKey, TokenError> {
        let entry = self
            .keys
            .get(key_id)
            .ok_or_else(|| TokenError::UnknownKeyId(clip(key_id)))?;
        match entry.retire_at_ms {
            Some(retire) if now_ms >= retire => Err(TokenError::KeyRetired(clip(key_id))),
            _ => Ok(&entry.parsed),
        }
    }
}

impl fmt::Debug for VerifyingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKeys")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

/// Key ids: 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
fn validate_key_id(key_id: &str) -> Result<(), TokenError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID_LEN
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::InvalidKey(format!(
            "key id `{}` is not 1-64 characters of [A-Za-z0-9_.-]",
            clip(key_id)
        )))
    }
}

/// 32 bytes from the system's secure random generator.
pub(crate) fn random_seed() -> Result<Zeroizing<[u8; SEED_LEN]>, TokenError> {
    let mut seed = Zeroizing::new([0u8; SEED_LEN]);
    aws_lc_rs::rand::fill(&mut seed[..])
        .map_err(|_| TokenError::Crypto("random generator failed"))?;
    Ok(seed)
}

pub(crate) fn sign_with(
    pair: &Ed25519KeyPair,
    message: &[u8],
) -> Result<[u8; SIGNATURE_LEN], TokenError> {
    let signature = pair
        .try_sign(message)
        .map_err(|_| TokenError::Crypto("ed25519 signing failed"))?;
    let mut out = [0u8; SIGNATURE_LEN];
    if signature.as_ref().len() != SIGNATURE_LEN {
        return Err(TokenError::Crypto("ed25519 signature has the wrong length"));
    }
    out.copy_from_slice(signature.as_ref());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(byte: u8) -> Zeroizing<[u8; SEED_LEN]> {
        Zeroizing::new([byte; SEED_LEN])
    }

    #[test]
    fn signing_key_debug_is_redacted() {
        let key = SigningKey::from_seed("k1", &seed(0x42)).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("k1"));
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("42"), "{shown}");
    }

    #[test]
    fn same_seed_gives_same_public_key() {
        let a = SigningKey::from_seed("a", &seed(1)).unwrap();
        let b = SigningKey::from_seed("b", &seed(1)).unwrap();
        let c = SigningKey::from_seed("c", &seed(2)).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), c.public_key());
    }

    #[test]
    fn key_ids_are_validated() {
        assert!(SigningKey::from_seed("", &seed(1)).is_err());
        assert!(SigningKey::from_seed("has space", &seed(1)).is_err());
        assert!(SigningKey::from_seed(&"k".repeat(65), &seed(1)).is_err());
        assert!(SigningKey::from_seed("steward-2026.01_a", &seed(1)).is_ok());
    }

    #[test]
    fn generated_keys_differ() {
        let (a, seed_a) = SigningKey::generate("a").unwrap();
        let (b, _) = SigningKey::generate("b").unwrap();
        assert_ne!(a.public_key(), b.public_key());
        let again = SigningKey::from_seed("a", &seed_a).unwrap();
        assert_eq!(again.public_key(), a.public_key());
    }

    #[test]
    fn retired_and_unknown_keys_are_not_usable() {
        let key = SigningKey::from_seed("old", &seed(3)).unwrap();
        let mut set = VerifyingKeys::from_signing_key(&key).unwrap();
        assert!(set.usable("old", 0).is_ok());
        assert!(matches!(
            set.usable("new", 0),
            Err(TokenError::UnknownKeyId(_))
        ));
        assert!(set.retire_at("old", Some(1_000)));
        assert!(set.usable("old", 999).is_ok());
        assert!(matches!(
            set.usable("old", 1_000),
            Err(TokenError::KeyRetired(_))
        ));
        assert!(!set.retire_at("missing", None));
        assert!(set.remove("old"));
        assert!(set.is_empty());
    }

    #[test]
    fn signatures_verify_with_the_published_key() {
        let key = SigningKey::from_seed("k", &seed(5)).unwrap();
        let set = VerifyingKeys::from_signing_key(&key).unwrap();
        let sig = key.sign(b"message").unwrap();
        let parsed = set.usable("k", 0).unwrap();
        assert!(parsed.verify_sig(b"message", &sig).is_ok());
        assert!(parsed.verify_sig(b"messagf", &sig).is_err());
        assert_eq!(set.public_key("k"), Some(key.public_key()));
    }
}
