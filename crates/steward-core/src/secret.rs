//! Secret-holding types: zeroized on drop, redacted in `Debug`, compared in constant time.

use subtle::ConstantTimeEq;

pub use secrecy::{ExposeSecret, SecretBox, SecretString};

/// Secret bytes, zeroized on drop; `Debug` prints `SecretBox<[u8]>([REDACTED])`.
pub type SecretBytes = SecretBox<[u8]>;

/// Wraps bytes as a secret.
pub fn secret_bytes(bytes: Vec<u8>) -> SecretBytes {
    SecretBox::new(bytes.into_boxed_slice())
}

/// Compares two byte strings in time independent of where they differ.
///
/// The length is not hidden; callers compare fixed-length digests where that matters.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_plain_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = SecretString::from("hunter2-canary");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let b = secret_bytes(b"hunter2-canary".to_vec());
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
