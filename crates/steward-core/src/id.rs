//! Identifiers: prefixed, random, URL-safe strings such as `idn_3kf9…`.

/// Characters used for ids and keys: base62, no ambiguity with URL syntax.
pub const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Encodes bytes as base62 (big-endian, no padding, leading zero bytes kept as `0`).
pub fn base62_encode(bytes: &[u8]) -> String {
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
    for _ in bytes.iter().take_while(|&&b| b == 0) {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
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
}
