//! Envelope encryption: a fresh data key per secret version, wrapped by a master key.
//!
//! # Construction (format 1)
//!
//! For every `(secret_id, version)` that is sealed:
//!
//! 1. A random 256-bit data key (DEK) is drawn from the aws-lc random generator.
//! 2. The value is sealed with AES-256-GCM under the DEK, with a random 96-bit nonce and the
//!    *value AAD*: `"steward-vault/v1/value\0" || format || len(secret_id) || secret_id ||
//!    version` (integers are big-endian `u32`).
//! 3. The DEK is sealed with AES-256-GCM under the master key, with a random nonce and the
//!    *DEK AAD*: `"steward-vault/v1/dek\0" || format || len(secret_id) || secret_id || version ||
//!    key_version`.
//!
//! The master-key version is bound through the DEK: changing it (or the secret id, or the
//! version) makes the DEK unwrap fail, and without the DEK the value cannot be opened. The value
//! AAD deliberately leaves out the master-key version so that [`rewrap`] can move a value to a
//! new master key without touching the value ciphertext. A DEK is used for exactly one
//! encryption, so its nonce can never repeat; master-key nonces are random, which keeps the
//! collision risk negligible below 2^32 wraps per master-key version (rotate long before).
//!
//! Plaintext DEKs only ever live in `Zeroizing` buffers; the AES key schedules live inside
//! aws-lc, which cleanses them when the key object is dropped.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretBox;
use steward_core::SecretBytes;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Result, VaultError};
use crate::master_key::{Keyring, MasterKey};

/// The format byte of the current serialization.
pub const SEALED_FORMAT_V1: u8 = 1;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Data-key length (AES-256).
pub const DEK_LEN: usize = 32;
/// Length of a wrapped data key: ciphertext plus tag.
pub const WRAPPED_DEK_LEN: usize = DEK_LEN + TAG_LEN;
/// Bytes added to a plaintext by sealing (header, wrapped DEK, nonces and tag).
pub const SEALED_OVERHEAD: usize = HEADER_LEN + TAG_LEN;

// Layout of format 1:
//   [0]        format byte (1)
//   [1..5]     key_version, u32 big-endian
//   [5..17]    DEK nonce
//   [17..65]   wrapped DEK (ciphertext || tag)
//   [65..77]   value nonce
//   [77..]     value ciphertext || tag (at least 16 bytes)
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN + WRAPPED_DEK_LEN + NONCE_LEN;

const VALUE_LABEL: &[u8] = b"steward-vault/v1/value\0";
const DEK_LABEL: &[u8] = b"steward-vault/v1/dek\0";

/// A sealed secret value: what the store keeps in a row, beside `secret_id` and `version`.
///
/// Nothing in it is secret, but it only opens for the same `secret_id` and `version` it was
/// sealed for. Serialize with [`Sealed::to_bytes`] / [`Sealed::to_base64`]; the first byte is a
/// format number so the layout can evolve.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    key_version: u32,
    dek_nonce: [u8; NONCE_LEN],
    wrapped_dek: [u8; WRAPPED_DEK_LEN],
    value_nonce: [u8; NONCE_LEN],
    // INVARIANT: at least TAG_LEN bytes (ciphertext || tag).
    value_ciphertext: Vec<u8>,
}

impl Sealed {
    /// The master-key version that wraps this value's data key.
    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    /// The length of the sealed plaintext.
    pub fn plaintext_len(&self) -> usize {
        self.value_ciphertext.len().saturating_sub(TAG_LEN)
    }

    /// The serialized length of this value.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.value_ciphertext.len()
    }

    /// Serializes to the versioned binary form (format 1, see the module docs).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.push(SEALED_FORMAT_V1);
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out.extend_from_slice(&self.dek_nonce);
        out.extend_from_slice(&self.wrapped_dek);
        out.extend_from_slice(&self.value_nonce);
        out.extend_from_slice(&self.value_ciphertext);
        out
    }

    /// Parses the binary form; rejects unknown formats and truncated input.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (&format, rest) = bytes
            .split_first()
            .ok_or_else(|| malformed("empty input"))?;
        if format != SEALED_FORMAT_V1 {
            return Err(malformed(format!("unsupported format `{format}`")));
        }
        if bytes.len() < SEALED_OVERHEAD {
            return Err(malformed(format!(
                "{} bytes is shorter than the minimum {SEALED_OVERHEAD}",
                bytes.len()
            )));
        }
        let (key_version, rest) = take::<4>(rest)?;
        let (dek_nonce, rest) = take::<NONCE_LEN>(rest)?;
        let (wrapped_dek, rest) = take::<WRAPPED_DEK_LEN>(rest)?;
        let (value_nonce, rest) = take::<NONCE_LEN>(rest)?;
        if rest.len() < TAG_LEN {
            return Err(malformed("value ciphertext shorter than a tag"));
        }
        Ok(Self {
            key_version: u32::from_be_bytes(key_version),
            dek_nonce,
            wrapped_dek,
            value_nonce,
            value_ciphertext: rest.to_vec(),
        })
    }

    /// Serializes to standard padded base64 of [`Sealed::to_bytes`] (for text columns).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.to_bytes())
    }

    /// Parses the base64 form.
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| malformed("not standard base64"))?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("format", &SEALED_FORMAT_V1)
            .field("key_version", &self.key_version)
            .field("ciphertext_len", &self.value_ciphertext.len())
            .finish_non_exhaustive()
    }
}

fn malformed(reason: impl Into<String>) -> VaultError {
    VaultError::MalformedSealed {
        reason: reason.into(),
    }
}

fn take<const N: usize>(input: &[u8]) -> Result<([u8; N], &[u8])> {
    let (head, rest) = input
        .split_first_chunk::<N>()
        .ok_or_else(|| malformed("truncated header"))?;
    Ok((*head, rest))
}

/// Seals `plaintext` as version `version` of `secret_id` under `master_key`.
pub fn seal(
    master_key: &MasterKey,
    secret_id: &str,
    version: u32,
    plaintext: &[u8],
) -> Result<Sealed> {
    let mut dek = Zeroizing::new([0u8; DEK_LEN]);
    aws_lc_rs::rand::fill(dek.as_mut_slice()).map_err(|_| VaultError::Crypto {
        what: "random generator failed while drawing a data key",
    })?;
    let dek_key = data_key(&dek)?;

    let mut value_ciphertext = Vec::with_capacity(plaintext.len() + TAG_LEN);
    value_ciphertext.extend_from_slice(plaintext);
    let value_aad = value_aad(secret_id, version)?;
    let (value_nonce, value_tag) =
        match dek_key.seal_in_place_separate_tag(Aad::from(&value_aad), &mut value_ciphertext) {
            Ok(sealed) => sealed,
            Err(_) => {
                value_ciphertext.zeroize();
                return Err(VaultError::Crypto {
                    what: "sealing the value failed",
                });
            }
        };
    value_ciphertext.extend_from_slice(value_tag.as_ref());

    let (dek_nonce, wrapped_dek) = wrap_dek(master_key, &dek, secret_id, version)?;
    Ok(Sealed {
        key_version: master_key.version(),
        dek_nonce,
        wrapped_dek,
        value_nonce: *value_nonce.as_ref(),
        value_ciphertext,
    })
}

/// Opens `sealed`, which must have been sealed as version `version` of `secret_id` under a key
/// in `keyring`.
///
/// Fails with [`VaultError::UnknownKeyVersion`] when the keyring lacks the key version, and
/// with [`VaultError::DecryptFailed`] on any authentication failure.
pub fn open(
    keyring: &Keyring,
    secret_id: &str,
    version: u32,
    sealed: &Sealed,
) -> Result<SecretBytes> {
    let dek = unwrap_dek(keyring, secret_id, version, sealed)?;
    let mut work = Zeroizing::new(sealed.value_ciphertext.clone());
    let plaintext = open_value(&dek, secret_id, version, sealed, &mut work)?;
    // `Box::from` allocates exactly the plaintext length, so no reallocation leaves a copy
    // behind; `work` is zeroized when it drops.
    Ok(SecretBox::new(Box::from(plaintext)))
}

/// Re-wraps the data key of `sealed` under `new_key`, leaving the value ciphertext unchanged.
///
/// The old key comes from `keyring`. The value is authenticated (into a buffer that is
/// zeroized at once) before the new wrapping is produced, so a rotation never rewraps a row
/// that could not be opened.
pub fn rewrap(
    keyring: &Keyring,
    new_key: &MasterKey,
    secret_id: &str,
    version: u32,
    sealed: &Sealed,
) -> Result<Sealed> {
    let dek = unwrap_dek(keyring, secret_id, version, sealed)?;
    {
        let mut work = Zeroizing::new(sealed.value_ciphertext.clone());
        open_value(&dek, secret_id, version, sealed, &mut work)?;
    }
    let (dek_nonce, wrapped_dek) = wrap_dek(new_key, &dek, secret_id, version)?;
    Ok(Sealed {
        key_version: new_key.version(),
        dek_nonce,
        wrapped_dek,
        value_nonce: sealed.value_nonce,
        value_ciphertext: sealed.value_ciphertext.clone(),
    })
}

fn data_key(dek: &[u8; DEK_LEN]) -> Result<RandomizedNonceKey> {
    RandomizedNonceKey::new(&AES_256_GCM, dek).map_err(|_| VaultError::Crypto {
        what: "could not initialise a data key",
    })
}

fn wrap_dek(
    master_key: &MasterKey,
    dek: &[u8; DEK_LEN],
    secret_id: &str,
    version: u32,
) -> Result<([u8; NONCE_LEN], [u8; WRAPPED_DEK_LEN])> {
    let aad = dek_aad(secret_id, version, master_key.version())?;
    // Encrypted in place: plaintext DEK bytes on input, ciphertext on success.
    let mut buf = Zeroizing::new([0u8; WRAPPED_DEK_LEN]);
    let (body, tag_out) = buf.split_at_mut(DEK_LEN);
    body.copy_from_slice(dek);
    let (nonce, tag) = master_key
        .aead()
        .seal_in_place_separate_tag(Aad::from(&aad), body)
        .map_err(|_| VaultError::Crypto {
            what: "wrapping the data key failed",
        })?;
    let tag = tag.as_ref();
    if tag.len() != TAG_LEN {
        return Err(VaultError::Crypto {
            what: "unexpected tag length",
        });
    }
    tag_out.copy_from_slice(tag);
    Ok((*nonce.as_ref(), *buf))
}

fn unwrap_dek(
    keyring: &Keyring,
    secret_id: &str,
    version: u32,
    sealed: &Sealed,
) -> Result<Zeroizing<[u8; DEK_LEN]>> {
    let master_key = keyring.require(sealed.key_version)?;
    let aad = dek_aad(secret_id, version, sealed.key_version)?;
    let mut buf = Zeroizing::new(sealed.wrapped_dek);
    let opened = master_key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.dek_nonce),
            Aad::from(&aad),
            buf.as_mut_slice(),
        )
        .map_err(|_| VaultError::DecryptFailed)?;
    let mut dek = Zeroizing::new([0u8; DEK_LEN]);
    let opened: &[u8; DEK_LEN] = (&*opened)
        .try_into()
        .map_err(|_| VaultError::DecryptFailed)?;
    dek.copy_from_slice(opened);
    Ok(dek)
}

fn open_value<'work>(
    dek: &[u8; DEK_LEN],
    secret_id: &str,
    version: u32,
    sealed: &Sealed,
    work: &'work mut [u8],
) -> Result<&'work [u8]> {
    let dek_key = data_key(dek)?;
    let aad = value_aad(secret_id, version)?;
    let plaintext = dek_key
        .open_in_place(
            Nonce::assume_unique_for_key(sealed.value_nonce),
            Aad::from(&aad),
            work,
        )
        .map_err(|_| VaultError::DecryptFailed)?;
    Ok(plaintext)
}

fn id_len(secret_id: &str) -> Result<[u8; 4]> {
    u32::try_from(secret_id.len())
        .map(u32::to_be_bytes)
        .map_err(|_| VaultError::MalformedSealed {
            reason: "secret id longer than 4 GiB".to_owned(),
        })
}

fn value_aad(secret_id: &str, version: u32) -> Result<Vec<u8>> {
    let mut aad = Vec::with_capacity(VALUE_LABEL.len() + 9 + secret_id.len());
    aad.extend_from_slice(VALUE_LABEL);
    aad.push(SEALED_FORMAT_V1);
    aad.extend_from_slice(&id_len(secret_id)?);
    aad.extend_from_slice(secret_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    Ok(aad)
}

fn dek_aad(secret_id: &str, version: u32, key_version: u32) -> Result<Vec<u8>> {
    let mut aad = Vec::with_capacity(DEK_LABEL.len() + 13 + secret_id.len());
    aad.extend_from_slice(DEK_LABEL);
    aad.push(SEALED_FORMAT_V1);
    aad.extend_from_slice(&id_len(secret_id)?);
    aad.extend_from_slice(secret_id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(&key_version.to_be_bytes());
    Ok(aad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const PLAINTEXT: &[u8] = b"ghp_canary-token-value-0123456789";

    fn ring_v1() -> Keyring {
        Keyring::single(MasterKey::generate(1).unwrap())
    }

    #[test]
    fn round_trip() {
        let ring = ring_v1();
        let sealed = seal(ring.current(), "sec_github", 1, PLAINTEXT).unwrap();
        assert_eq!(sealed.key_version(), 1);
        assert_eq!(sealed.plaintext_len(), PLAINTEXT.len());
        let opened = open(&ring, "sec_github", 1, &sealed).unwrap();
        assert_eq!(opened.expose_secret(), PLAINTEXT);
    }

    #[test]
    fn empty_and_large_values_round_trip() {
        let ring = ring_v1();
        for len in [0usize, 1, 15, 16, 17, 1024, 1 << 20] {
            let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = seal(ring.current(), "s", 9, &value).unwrap();
            let bytes = sealed.to_bytes();
            assert_eq!(bytes.len(), len + SEALED_OVERHEAD);
            let parsed = Sealed::from_bytes(&bytes).unwrap();
            assert_eq!(
                open(&ring, "s", 9, &parsed).unwrap().expose_secret(),
                &value[..]
            );
        }
    }

    #[test]
    fn ciphertext_does_not_contain_plaintext_and_is_randomised() {
        let ring = ring_v1();
        let a = seal(ring.current(), "s", 1, PLAINTEXT).unwrap().to_bytes();
        let b = seal(ring.current(), "s", 1, PLAINTEXT).unwrap().to_bytes();
        assert_ne!(a, b);
        assert!(!a.windows(8).any(|w| PLAINTEXT.windows(8).any(|p| p == w)));
    }

    #[test]
    fn copied_to_another_secret_id_fails() {
        let ring = ring_v1();
        let sealed = seal(ring.current(), "sec_a", 1, PLAINTEXT).unwrap();
        for other in ["sec_b", "sec_a ", "", "sec_", "sec_aa"] {
            assert!(
                matches!(
                    open(&ring, other, 1, &sealed),
                    Err(VaultError::DecryptFailed)
                ),
                "{other}"
            );
        }
    }

    #[test]
    fn copied_to_another_version_fails() {
        let ring = ring_v1();
        let sealed = seal(ring.current(), "sec_a", 2, PLAINTEXT).unwrap();
        for other in [0, 1, 3, u32::MAX] {
            assert!(matches!(
                open(&ring, "sec_a", other, &sealed),
                Err(VaultError::DecryptFailed)
            ));
        }
        open(&ring, "sec_a", 2, &sealed).unwrap();
    }

    #[test]
    fn length_prefix_prevents_id_version_ambiguity() {
        // Without a length prefix, id "a\0\0\0" + version 1 could collide with other splits.
        let ring = ring_v1();
        let sealed = seal(ring.current(), "a", 0x0000_0001, PLAINTEXT).unwrap();
        assert!(open(&ring, "a\0\0\0", 1, &sealed).is_err());
    }

    #[test]
    fn every_flipped_bit_fails() {
        let ring = ring_v1();
        let sealed = seal(ring.current(), "sec_a", 1, b"short value").unwrap();
        let bytes = sealed.to_bytes();
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut tampered = bytes.clone();
                tampered[byte] ^= 1 << bit;
                let result =
                    Sealed::from_bytes(&tampered).and_then(|s| open(&ring, "sec_a", 1, &s));
                assert!(
                    result.is_err(),
                    "flip of byte {byte} bit {bit} was accepted"
                );
            }
        }
    }

    #[test]
    fn truncated_or_extended_input_fails() {
        let ring = ring_v1();
        let bytes = seal(ring.current(), "s", 1, PLAINTEXT).unwrap().to_bytes();
        for cut in 0..bytes.len() {
            let result = Sealed::from_bytes(&bytes[..cut]).and_then(|s| open(&ring, "s", 1, &s));
            assert!(result.is_err(), "truncation to {cut} accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let parsed = Sealed::from_bytes(&longer).unwrap();
        assert!(matches!(
            open(&ring, "s", 1, &parsed),
            Err(VaultError::DecryptFailed)
        ));
    }

    #[test]
    fn changed_key_version_fails_even_with_identical_key_bytes() {
        // Two versions holding the same bytes: only the AAD binding can catch the change.
        let v1 = MasterKey::generate(1).unwrap();
        let v2 = MasterKey::from_base64(2, &v1.to_base64(), "test").unwrap();
        let ring = Keyring::new([v1, v2]).unwrap();
        let sealed = seal(ring.get(1).unwrap(), "s", 1, PLAINTEXT).unwrap();
        let mut bytes = sealed.to_bytes();
        bytes[1..5].copy_from_slice(&2u32.to_be_bytes());
        let moved = Sealed::from_bytes(&bytes).unwrap();
        assert_eq!(moved.key_version(), 2);
        assert!(matches!(
            open(&ring, "s", 1, &moved),
            Err(VaultError::DecryptFailed)
        ));

        // A version the keyring does not hold is reported as such.
        bytes[1..5].copy_from_slice(&9u32.to_be_bytes());
        let unknown = Sealed::from_bytes(&bytes).unwrap();
        assert!(matches!(
            open(&ring, "s", 1, &unknown),
            Err(VaultError::UnknownKeyVersion { version: 9 })
        ));
    }

    #[test]
    fn wrong_master_key_fails() {
        let ring = ring_v1();
        let sealed = seal(ring.current(), "s", 1, PLAINTEXT).unwrap();
        let impostor = ring_v1(); // same version, different bytes
        assert!(matches!(
            open(&impostor, "s", 1, &sealed),
            Err(VaultError::DecryptFailed)
        ));
    }

    #[test]
    fn swapping_wrapped_deks_between_rows_fails() {
        let ring = ring_v1();
        let a = seal(ring.current(), "s", 1, b"value a").unwrap();
        let b = seal(ring.current(), "s", 2, b"value b").unwrap();
        let mut mixed = b.clone();
        mixed.value_nonce = a.value_nonce;
        mixed.value_ciphertext = a.value_ciphertext.clone();
        assert!(open(&ring, "s", 2, &mixed).is_err());
        assert!(open(&ring, "s", 1, &mixed).is_err());
    }

    #[test]
    fn rewrap_changes_only_the_wrapping() {
        let old = MasterKey::generate(1).unwrap();
        let sealed = seal(&old, "s", 4, PLAINTEXT).unwrap();
        let new = MasterKey::generate(2).unwrap();
        let old_ring = Keyring::single(old);
        let rewrapped = rewrap(&old_ring, &new, "s", 4, &sealed).unwrap();
        assert_eq!(rewrapped.key_version(), 2);
        assert_eq!(rewrapped.value_ciphertext, sealed.value_ciphertext);
        assert_eq!(rewrapped.value_nonce, sealed.value_nonce);
        assert_ne!(rewrapped.wrapped_dek, sealed.wrapped_dek);

        // Opens with only the new key; no longer with only the old key.
        let new_ring = Keyring::single(new);
        assert_eq!(
            open(&new_ring, "s", 4, &rewrapped).unwrap().expose_secret(),
            PLAINTEXT
        );
        assert!(matches!(
            open(&old_ring, "s", 4, &rewrapped),
            Err(VaultError::UnknownKeyVersion { version: 2 })
        ));
        // Rewrap is idempotent in effect: rewrapping again under the new key still opens.
        let again = rewrap(&new_ring, new_ring.current(), "s", 4, &rewrapped).unwrap();
        assert_eq!(
            open(&new_ring, "s", 4, &again).unwrap().expose_secret(),
            PLAINTEXT
        );
    }

    #[test]
    fn rewrap_refuses_wrong_row_and_tampered_value() {
        let ring = ring_v1();
        let new = MasterKey::generate(2).unwrap();
        let sealed = seal(ring.current(), "s", 1, PLAINTEXT).unwrap();
        assert!(rewrap(&ring, &new, "t", 1, &sealed).is_err());
        assert!(rewrap(&ring, &new, "s", 2, &sealed).is_err());
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.value_ciphertext.last_mut() {
            *last ^= 1;
        }
        assert!(matches!(
            rewrap(&ring, &new, "s", 1, &tampered),
            Err(VaultError::DecryptFailed)
        ));
    }

    #[test]
    fn serialization_is_stable_and_versioned() {
        let ring = ring_v1();
        let sealed = seal(ring.current(), "s", 1, PLAINTEXT).unwrap();
        let bytes = sealed.to_bytes();
        assert_eq!(bytes[0], SEALED_FORMAT_V1);
        assert_eq!(&bytes[1..5], &1u32.to_be_bytes());
        assert_eq!(Sealed::from_bytes(&bytes).unwrap(), sealed);
        assert_eq!(Sealed::from_base64(&sealed.to_base64()).unwrap(), sealed);

        let mut future = bytes.clone();
        future[0] = 2;
        assert!(matches!(
            Sealed::from_bytes(&future),
            Err(VaultError::MalformedSealed { .. })
        ));
        assert!(Sealed::from_bytes(&[]).is_err());
        assert!(Sealed::from_base64("%%%").is_err());
    }

    #[test]
    fn debug_of_sealed_shows_no_ciphertext() {
        let ring = ring_v1();
        let sealed = seal(ring.current(), "s", 1, PLAINTEXT).unwrap();
        let shown = format!("{sealed:?}");
        assert!(shown.contains("key_version: 1"), "{shown}");
        assert!(!shown.contains(&sealed.to_base64()[10..30]), "{shown}");
    }
}
