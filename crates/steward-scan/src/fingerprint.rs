//! Fingerprints and redacted previews: the only forms in which a secret leaves the scanner.

use aws_lc_rs::digest;

/// Domain separator so scan fingerprints never collide with other SHA-256 uses.
const FINGERPRINT_DOMAIN: &[u8] = b"steward.credential-fingerprint.v1\0";

/// Returns the fingerprint of a secret: the first 32 hex characters (128 bits) of
/// `SHA-256("steward.credential-fingerprint.v1\0" || secret)`.
///
/// The vault computes the same value over the plaintext of managed secrets, so a
/// discovered credential can be matched to a managed one without revealing either.
pub fn fingerprint(secret: &[u8]) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(FINGERPRINT_DOMAIN);
    context.update(secret);
    let full = context.finish();
    let bytes = full.as_ref();
    hex::encode(bytes.get(..16).unwrap_or(bytes))
}

/// Returns a preview that identifies a secret to a human without revealing it.
///
/// A known prefix (`ghp_`, `sk-ant-`, `AKIA`…) and at most two more characters are kept
/// for secrets of at least 20 characters; shorter secrets show nothing but their length.
pub fn redact(secret: &[u8]) -> String {
    let text = String::from_utf8_lossy(secret);
    let chars: Vec<char> = text.chars().collect();
    let total = chars.len();
    if total < 20 {
        return format!("****({total})");
    }
    // Keep a vendor prefix: everything up to the last `_`/`-` within the first 16 chars.
    let prefix_len = chars
        .iter()
        .take(16)
        .rposition(|c| *c == '_' || *c == '-')
        .map_or(2, |pos| pos + 3);
    let shown: String = chars.iter().take(prefix_len.min(total / 2)).collect();
    format!("{shown}…({total})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable_domain_separated_and_short() {
        let a = fingerprint(b"hunter2");
        assert_eq!(a.len(), 32);
        assert_eq!(a, fingerprint(b"hunter2"));
        assert_ne!(a, fingerprint(b"hunter3"));
        // Not the plain SHA-256 of the value.
        let plain = hex::encode(digest::digest(&digest::SHA256, b"hunter2").as_ref());
        assert!(!plain.starts_with(&a));
    }

    #[test]
    fn redaction_never_reveals_the_secret_body() {
        let token = "ghp_1234567890abcdefghijklmnopqrstuvwxyz";
        let preview = redact(token.as_bytes());
        assert!(preview.starts_with("ghp_"));
        assert!(!preview.contains("567890abcdef"));
        assert_eq!(redact(b"short-pass"), "****(10)");
    }
}
