//! Identifiers: prefixed, random, URL-safe strings such as `idn_3kf9…`.

/// Characters used for ids and keys: base62, no ambiguity with URL syntax.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes bytes as base62 (big-endian, no padding, leading zero bytes kept as `0`).
pub fn base62_encode(bytes: &[u8]) -> String {
    // Ids are 16 random bytes: one u128 division per digit instead of a byte-wise bignum.
    match <[u8; 16]>::try_from(bytes) {
        Ok(array) => base62_u128(array),
        Err(_) => base62_bignum(bytes),
    }
}

fn base62_bignum(bytes: &[u8]) -> String {
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 2);
    // Repeated division of a big-endian number by 62.
    let mut num: Vec<u8> = bytes.to_vec();
    while num.iter().any(|&b| b != 0) {
        let mut rem: u32 = 0;
        for byte in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        digits.push(BASE62.get(rem as usize).copied().unwrap_or(b'0'));
    }
    finish_base62(digits, bytes)
}

fn base62_u128(bytes: [u8; 16]) -> String {
    let mut num = u128::from_be_bytes(bytes);
    let mut digits: Vec<u8> = Vec::with_capacity(24);
    while num != 0 {
        let digit = usize::try_from(num % 62).unwrap_or(0);
        digits.push(BASE62.get(digit).copied().unwrap_or(b'0'));
        num /= 62;
    }
    finish_base62(digits, &bytes)
}

/// Least-significant-first `digits` of `bytes` to text: one `0` per leading zero byte,
/// most significant digit first.
fn finish_base62(mut digits: Vec<u8>, bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    digits.extend(std::iter::repeat_n(b'0', zeros));
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Builds a time-ordered id (as ULIDs are): the top 48 bits of a 128-bit number are the
/// Unix time in milliseconds and the other 80 bits are random. Ids made in later
/// milliseconds sort after earlier ones (same length for the next few thousand years), so
/// an index over them grows at its end instead of touching a random page per insert.
pub fn time_ordered(prefix: &str, unix_ms: u64, random: [u8; 10]) -> String {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&random);
    format!("{prefix}_{}", base62_u128(bytes))
}

/// Encodes a `u32` as fixed-width (6 characters) base62.
pub fn base62_u32_fixed(mut value: u32) -> String {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62.get((value % 62) as usize).copied().unwrap_or(b'0');
        value /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// Builds an id from a prefix and random bytes supplied by the caller.
pub fn from_random(prefix: &str, random: &[u8]) -> String {
    format!("{prefix}_{}", base62_encode(random))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_is_stable() {
        assert_eq!(base62_encode(&[0]), "0");
        assert_eq!(base62_encode(&[61]), "z");
        assert_eq!(base62_encode(&[1, 0]), "48");
        assert_eq!(base62_u32_fixed(0), "000000");
        assert_eq!(base62_u32_fixed(62), "000010");
        assert_eq!(from_random("idn", &[1, 0]), "idn_48");
    }

    #[test]
    fn time_ordered_ids_sort_by_time_and_keep_their_randomness() {
        let a = time_ordered("req", 1_795_000_000_000, [0xff; 10]);
        let b = time_ordered("req", 1_795_000_000_001, [0; 10]);
        let c = time_ordered("req", 1_795_000_000_001, [1; 10]);
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(a.len(), b.len());
        assert_ne!(b, c);
        assert!(a.starts_with("req_"));
    }

    /// The 16-byte fast path agrees with the general bignum encoding.
    #[test]
    fn u128_path_matches_the_general_one() {
        let samples: [[u8; 16]; 5] = [
            [0; 16],
            [255; 16],
            [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14],
            [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            [
                0x9f, 0x86, 0xd0, 0x81, 0x88, 0x4c, 0x7d, 0x65, 0x9a, 0x2f, 0xea, 0xa0, 0xc5, 0x5a,
                0xd0, 0x15,
            ],
        ];
        for bytes in samples {
            assert_eq!(base62_encode(&bytes), base62_bignum(&bytes), "{bytes:?}");
        }
    }
}
