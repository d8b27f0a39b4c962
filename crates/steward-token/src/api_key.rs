//! Long-lived API keys: `stw_` + 43 base62 characters of 256 random bits + a 6-character
//! base62 CRC32 checksum. Only the SHA-256 of a key is stored.
//!
//! The checksum is the CRC32 of the 43-character random part as ASCII, so a secret scanner
//! can confirm a leaked Steward key, and a typo (one changed character, or two adjacent
//! characters swapped) is rejected offline, before any lookup.

use std::fmt;

use aws_lc_rs::digest;
use secrecy::ExposeSecret;
use steward_core::id::{BASE62, base62_u32_fixed};
use steward_core::{SecretString, constant_time_eq};
use zeroize::Zeroizing;

use crate::error::TokenError;

/// The prefix every API key starts with.
pub const PREFIX: &str = "stw_";
/// Length of the base62 random part: the smallest width that holds any 256-bit number.
pub const RANDOM_CHARS: usize = 43;
/// Length of the base62 checksum.
pub const CHECKSUM_CHARS: usize = 6;
/// Total length of a key.
pub const KEY_LEN: usize = PREFIX.len() + RANDOM_CHARS + CHECKSUM_CHARS;
/// How many characters of the random part [`ApiKey::key_prefix`] shows.
pub const DISPLAY_CHARS: usize = 8;

/// A syntactically valid API key whose checksum matched. `Debug` shows only its prefix.
pub struct ApiKey {
    secret: SecretString,
}

impl ApiKey {
    /// The full key, for hashing or handing to the user once.
    pub fn expose_secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// A short, non-secret label for lists and logs: `stw_` and the first 8 random characters.
    pub fn key_prefix(&self) -> String {
        key_prefix_of(self.secret.expose_secret())
    }

    /// The SHA-256 of the key, as stored.
    pub fn hash(&self) -> [u8; 32] {
        hash(self.secret.expose_secret())
    }

    /// Whether this key matches a stored hash, compared in constant time.
    pub fn matches_hash(&self, stored: &[u8; 32]) -> bool {
        constant_time_eq(&self.hash(), stored)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.key_prefix())
    }
}

/// Builds a key from 32 random bytes supplied by the caller.
pub fn generate(random: &[u8; 32]) -> SecretString {
    let body = encode_fixed(random);
    let mut key = Zeroizing::new(String::with_capacity(KEY_LEN));
    key.push_str(PREFIX);
    // INVARIANT: `encode_fixed` yields only base62 ASCII, so every byte is a char.
    key.extend(body.iter().map(|&b| char::from(b)));
    key.push_str(&checksum(body.as_slice()));
    SecretString::from(key.as_str())
}

/// Builds a key from the system's secure random generator.
pub fn generate_random() -> Result<SecretString, TokenError> {
    let mut random = Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(&mut random[..])
        .map_err(|_| TokenError::Crypto("random generator failed"))?;
    Ok(generate(&random))
}

/// Checks prefix, length, characters and checksum, without any lookup.
pub fn parse(input: &str) -> Result<ApiKey, TokenError> {
    let rest = input
        .strip_prefix(PREFIX)
        .ok_or(TokenError::MalformedApiKey("missing `stw_` prefix"))?;
    if input.len() != KEY_LEN {
        return Err(TokenError::MalformedApiKey("wrong length"));
    }
    if !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TokenError::MalformedApiKey("characters outside base62"));
    }
    // Both splits are on ASCII boundaries: the length and charset were checked above.
    let (body, sum) = rest
        .split_at_checked(RANDOM_CHARS)
        .ok_or(TokenError::MalformedApiKey("wrong length"))?;
    if !constant_time_eq(checksum(body.as_bytes()).as_bytes(), sum.as_bytes()) {
        return Err(TokenError::ApiKeyChecksum);
    }
    Ok(ApiKey {
        secret: SecretString::from(input),
    })
}

/// The SHA-256 of a key's full text (prefix included), for storage and lookup.
pub fn hash(key: &str) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn key_prefix_of(key: &str) -> String {
    let shown: String = key
        .strip_prefix(PREFIX)
        .unwrap_or(key)
        .chars()
        .take(DISPLAY_CHARS)
        .collect();
    format!("{PREFIX}{shown}")
}

fn checksum(body: &[u8]) -> String {
    base62_u32_fixed(crc32fast::hash(body))
}

/// Big-endian base62 of a 256-bit number, left-padded with `0` to [`RANDOM_CHARS`].
fn encode_fixed(bytes: &[u8; 32]) -> Zeroizing<[u8; RANDOM_CHARS]> {
    let mut out = Zeroizing::new([b'0'; RANDOM_CHARS]);
    let mut num = Zeroizing::new(*bytes);
    for slot in out.iter_mut().rev() {
        let mut rem: u32 = 0;
        for byte in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            // acc < 62 * 256, so the quotient fits in a byte.
            *byte = u8::try_from(acc / 62).unwrap_or(0);
            rem = acc % 62;
        }
        *slot = BASE62.get(rem as usize).copied().unwrap_or(b'0');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key_from(random: [u8; 32]) -> String {
        generate(&random).expose_secret().to_owned()
    }

    #[test]
    fn generated_keys_have_fixed_width_and_parse() {
        for random in [[0u8; 32], [0xff; 32], [7u8; 32]] {
            let key = key_from(random);
            assert_eq!(key.len(), KEY_LEN, "{key}");
            assert!(key.starts_with("stw_"));
            let parsed = parse(&key).unwrap();
            assert_eq!(parsed.expose_secret(), key);
        }
        // Zero pads fully; the all-ones value needs every one of the 43 digits.
        let zero = key_from([0u8; 32]);
        assert!(zero[4..4 + RANDOM_CHARS].bytes().all(|b| b == b'0'));
        let max = key_from([0xff; 32]);
        assert_ne!(&max[4..5], "0");
    }

    #[test]
    fn encoding_matches_core_base62_for_values_without_leading_zero_bytes() {
        let mut random = [0u8; 32];
        for (i, b) in random.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(200);
        }
        let ours = String::from_utf8(encode_fixed(&random).to_vec()).unwrap();
        let core = steward_core::id::base62_encode(&random);
        let padded = format!("{core:0>43}");
        assert_eq!(ours, padded);
    }

    #[test]
    fn generate_random_gives_distinct_valid_keys() {
        let a = generate_random().unwrap();
        let b = generate_random().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        parse(a.expose_secret()).unwrap();
    }

    #[test]
    fn wrong_prefix_length_and_charset_are_rejected() {
        let key = key_from([42u8; 32]);
        let body = &key[4..];
        assert!(matches!(
            parse(&format!("stx_{body}")),
            Err(TokenError::MalformedApiKey(_))
        ));
        assert!(matches!(
            parse(&key[..key.len() - 1]),
            Err(TokenError::MalformedApiKey(_))
        ));
        assert!(matches!(
            parse(&format!("{key}0")),
            Err(TokenError::MalformedApiKey(_))
        ));
        let mut bad = key.clone().into_bytes();
        bad[10] = b'-';
        let bad = String::from_utf8(bad).unwrap();
        assert!(matches!(parse(&bad), Err(TokenError::MalformedApiKey(_))));
        assert!(parse("").is_err());
        assert!(parse("stw_").is_err());
    }

    #[test]
    fn every_single_character_typo_is_rejected() {
        let key = key_from([0x5a; 32]);
        for index in PREFIX.len()..key.len() {
            for &replacement in BASE62.iter() {
                let mut typo = key.clone().into_bytes();
                if typo[index] == replacement {
                    continue;
                }
                typo[index] = replacement;
                let typo = String::from_utf8(typo).unwrap();
                assert!(parse(&typo).is_err(), "typo at {index} accepted: {typo}");
            }
        }
    }

    #[test]
    fn hash_is_sha256_of_the_full_key() {
        let key = parse(&key_from([1u8; 32])).unwrap();
        let hashed = key.hash();
        assert_eq!(hashed, hash(key.expose_secret()));
        assert!(key.matches_hash(&hashed));
        let other = parse(&key_from([2u8; 32])).unwrap();
        assert!(!other.matches_hash(&hashed));
        // Known answer: SHA-256("abc").
        assert_eq!(hash("abc")[..4], [0xba, 0x78, 0x16, 0xbf]);
    }

    #[test]
    fn prefix_and_debug_do_not_reveal_the_secret() {
        let text = key_from([9u8; 32]);
        let key = parse(&text).unwrap();
        assert_eq!(key.key_prefix(), &text[..12]);
        let shown = format!("{key:?}");
        assert!(!shown.contains(&text[12..]), "{shown}");
        assert!(shown.contains(&key.key_prefix()));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,80}") {
            let _ = parse(&s);
        }

        #[test]
        fn adjacent_swaps_are_rejected(random in any::<[u8; 32]>(), at in 4usize..KEY_LEN - 1) {
            let key = key_from(random);
            let mut swapped = key.clone().into_bytes();
            swapped.swap(at, at + 1);
            let swapped = String::from_utf8(swapped).unwrap();
            prop_assume!(swapped != key);
            prop_assert!(parse(&swapped).is_err());
        }

        #[test]
        fn generated_keys_always_parse(random in any::<[u8; 32]>()) {
            let key = key_from(random);
            prop_assert_eq!(key.len(), KEY_LEN);
            prop_assert!(parse(&key).is_ok());
        }
    }
}
