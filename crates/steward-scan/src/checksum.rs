//! Structural and checksum validators for token formats that carry one.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use steward_core::id::{BASE62, base62_u32_fixed};

/// Base64 (standard alphabet) that accepts missing or present padding.
pub(crate) const B64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Base64url that accepts missing or present padding.
pub(crate) const B64URL_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Checks the GitHub-style checksum used by `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` and
/// `npm_` tokens: the last 6 characters are the base62 CRC32 of the random part.
pub fn crc32_base62_suffix_ok(token: &[u8]) -> bool {
    let Some(body) = token
        .iter()
        .position(|b| *b == b'_')
        .and_then(|i| token.get(i + 1..))
    else {
        return false;
    };
    if body.len() <= 6 {
        return false;
    }
    let (random, check) = body.split_at(body.len() - 6);
    base62_u32_fixed(crc32fast::hash(random)).as_bytes() == check
}

/// Checks a Steward API key: `stw_` + 43 base62 characters + the 6-character base62 CRC32
/// of those 43 characters as ASCII text. The format is owned by `steward_token::api_key`,
/// so the scanner calls its parser rather than restating the rule.
pub fn steward_key_ok(token: &[u8]) -> bool {
    std::str::from_utf8(token).is_ok_and(|text| steward_token::api_key::parse(text).is_ok())
}

/// Decodes base62 digits into a 32-byte big-endian number; `None` on overflow or bad digit.
#[cfg(test)]
pub(crate) fn base62_decode_fixed32(digits: &[u8]) -> Option<[u8; 32]> {
    let mut number = [0u8; 32];
    for digit in digits {
        let value = BASE62.iter().position(|c| c == digit)?;
        let mut carry = value as u32;
        for byte in number.iter_mut().rev() {
            let acc = u32::from(*byte) * 62 + carry;
            *byte = (acc & 0xff) as u8;
            carry = acc >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(number)
}

/// Encodes 32 bytes as fixed-width (43 characters) base62, the inverse of
/// [`base62_decode_fixed32`]. Used to build test keys.
pub fn base62_encode_fixed32(bytes: &[u8; 32]) -> String {
    let mut number = *bytes;
    let mut digits = [b'0'; 43];
    for slot in digits.iter_mut().rev() {
        let mut rem: u32 = 0;
        for byte in number.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        *slot = BASE62.get(rem as usize).copied().unwrap_or(b'0');
    }
    String::from_utf8_lossy(&digits).into_owned()
}

/// A JWT is reported only when header and payload are base64url JSON objects, the
/// header names an `alg`, and the token is not the well-known jwt.io example.
pub fn jwt_ok(token: &[u8]) -> bool {
    let mut parts = token.split(|b| *b == b'.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let decode_object = |part: &[u8]| -> Option<serde_json::Map<String, serde_json::Value>> {
        let bytes = B64URL_LENIENT.decode(part).ok()?;
        match serde_json::from_slice(&bytes).ok()? {
            serde_json::Value::Object(map) => Some(map),
            _ => None,
        }
    };
    let (Some(header), Some(payload)) = (decode_object(header), decode_object(payload)) else {
        return false;
    };
    let Some(alg) = header.get("alg").and_then(|v| v.as_str()) else {
        return false;
    };
    let is_jwt_io_example = payload.get("sub").and_then(|v| v.as_str()) == Some("1234567890")
        && payload.get("name").and_then(|v| v.as_str()) == Some("John Doe");
    if is_jwt_io_example {
        return false;
    }
    alg.eq_ignore_ascii_case("none") || signature.len() >= 16
}

/// A PyPI token is a macaroon whose binary v2 serialisation names `pypi.org`.
pub fn pypi_ok(token: &[u8]) -> bool {
    let Some(body) = token.strip_prefix(b"pypi-") else {
        return false;
    };
    match B64URL_LENIENT.decode(body) {
        Ok(bytes) => bytes.starts_with(b"\x02\x01\x08pypi.org") && bytes.len() >= 48,
        Err(_) => false,
    }
}

/// Decodes the base64 body of a PEM block (header lines such as `Proc-Type:` skipped).
pub(crate) fn pem_body(block: &[u8]) -> Option<Vec<u8>> {
    // Keys inside JSON strings carry escaped newlines.
    let text = std::str::from_utf8(block).ok()?.replace("\\n", "\n");
    let mut body = String::new();
    for line in text.lines() {
        let line = line
            .trim()
            .trim_matches(|c| c == '"' || c == '\'' || c == ',');
        if line.starts_with("-----") || line.contains(':') || line.is_empty() {
            continue;
        }
        body.push_str(line);
    }
    B64_LENIENT.decode(body.as_bytes()).ok()
}

/// A private key block must decode to a plausible key (at least 64 bytes; OpenSSH keys
/// must carry the `openssh-key-v1` magic).
pub fn private_key_ok(block: &[u8]) -> bool {
    let Some(body) = pem_body(block) else {
        return false;
    };
    if block.windows(15).any(|w| w == b"OPENSSH PRIVATE") {
        return body.starts_with(b"openssh-key-v1\0");
    }
    if block.windows(11).any(|w| w == b"PGP PRIVATE") {
        return body.len() >= 64;
    }
    // DER: a SEQUENCE with a long-form length.
    body.len() >= 64 && body.first() == Some(&0x30)
}

/// Shannon entropy of a byte string, in bits per symbol.
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for byte in data {
        if let Some(slot) = counts.get_mut(usize::from(*byte)) {
            *slot += 1;
        }
    }
    let len = data.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
pub(crate) mod test_tokens {
    //! Builders for synthetic tokens with valid checksums.
    use super::*;

    /// A GitHub/npm style token with a valid checksum.
    pub fn crc_token(prefix: &str, random: &str) -> String {
        format!(
            "{prefix}{random}{}",
            base62_u32_fixed(crc32fast::hash(random.as_bytes()))
        )
    }

    /// A Steward key with a valid checksum (CRC32 over the 43-character text).
    pub fn steward_key(random: &[u8; 32]) -> String {
        let body = base62_encode_fixed32(random);
        format!(
            "stw_{body}{}",
            base62_u32_fixed(crc32fast::hash(body.as_bytes()))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_tokens::*;
    use super::*;

    #[test]
    fn github_and_npm_checksums_validate_and_reject_tampering() {
        let token = crc_token("ghp_", "R7fX2kq9LmZpT4vB8nW1cY6dH3sJ0a");
        assert_eq!(token.len(), 40);
        assert!(crc32_base62_suffix_ok(token.as_bytes()));
        let mut tampered = token.clone().into_bytes();
        if let Some(byte) = tampered.get_mut(10) {
            *byte = if *byte == b'A' { b'B' } else { b'A' };
        }
        assert!(!crc32_base62_suffix_ok(&tampered));
        let npm = crc_token("npm_", "Q2w3E4r5T6y7U8i9O0pAsDfGhJkLzX");
        assert!(crc32_base62_suffix_ok(npm.as_bytes()));
        assert!(!crc32_base62_suffix_ok(
            b"npm_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
    }

    #[test]
    fn steward_key_round_trips_through_fixed_base62() {
        let random = [0xA5u8; 32];
        let key = steward_key(&random);
        assert_eq!(key.len(), 4 + 43 + 6);
        assert_eq!(
            base62_decode_fixed32(key.as_bytes().get(4..47).unwrap_or_default()),
            Some(random)
        );
        assert!(steward_key_ok(key.as_bytes()));
        let zero = steward_key(&[0u8; 32]);
        assert!(steward_key_ok(zero.as_bytes()));
        let mut bad = key.into_bytes();
        if let Some(last) = bad.last_mut() {
            *last = if *last == b'0' { b'1' } else { b'0' };
        }
        assert!(!steward_key_ok(&bad));
        // 43 'z' digits overflow 256 bits.
        assert!(base62_decode_fixed32(&[b'z'; 43]).is_none());
    }

    #[test]
    fn keys_minted_by_steward_token_validate() {
        use secrecy::ExposeSecret as _;
        for random in [[0u8; 32], [0xA5u8; 32], [0xFFu8; 32]] {
            let minted = steward_token::api_key::generate(&random);
            assert_eq!(minted.expose_secret(), steward_key(&random));
            assert!(steward_key_ok(minted.expose_secret().as_bytes()));
        }
        let minted = steward_token::api_key::generate_random().unwrap();
        let key = minted.expose_secret().as_bytes().to_vec();
        assert!(steward_key_ok(&key));
        // Swapping two adjacent characters of the random part breaks the checksum.
        let mut swapped = key.clone();
        swapped.swap(10, 11);
        assert!(swapped == key || !steward_key_ok(&swapped));
    }

    #[test]
    fn jwt_structure_is_required_and_jwt_io_example_rejected() {
        let header = B64URL_LENIENT.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = B64URL_LENIENT.encode(br#"{"sub":"svc-billing","iat":1700000000}"#);
        let token = format!("{header}.{payload}.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMTIzNA");
        assert!(jwt_ok(token.as_bytes()));
        let example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert!(!jwt_ok(example.as_bytes()));
        let not_json = format!("{header}.bm90LWpzb24tYXQtYWxs.c2lnbmF0dXJlLWJ5dGVzLWhlcmU");
        assert!(!jwt_ok(not_json.as_bytes()));
    }

    #[test]
    fn entropy_orders_random_above_repetitive() {
        assert!(shannon_entropy(b"aaaaaaaaaaaa") < 0.1);
        assert!(shannon_entropy(b"Xk9#mQ2$vL8pRt") > 3.5);
    }
}
