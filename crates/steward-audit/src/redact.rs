//! Redaction of sensitive argument fields by keyed HMAC-SHA256, as Vault's audit devices do.
//!
//! A sensitive value is replaced by `"hmac-sha256:<hex>"`, computed under a per-deployment
//! audit key. The same value always gives the same string, so an investigator who holds a
//! candidate value can ask the server for its HMAC ([`Redactor::hash_value`]) and search
//! the log for it, while the log itself never holds the value.
//!
//! What is hashed: a JSON string's UTF-8 bytes as they are (no quotes); any other JSON
//! value's canonical bytes ([`crate::canonical`]).
//!
//! Field paths are dot-separated: `body.password`, `headers.authorization`. A segment
//! `*` matches every member of an object or every element of an array, and a decimal
//! segment also selects that array element (`items.0.token`). Paths that match nothing are
//! ignored.

use aws_lc_rs::hmac;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::canonical::to_canonical_vec;
use crate::error::AuditError;

/// Prefix of every redacted value.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// Minimum audit key length in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// Replaces sensitive fields with their HMAC under the audit key.
pub struct Redactor {
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("key", &"<redacted>")
            .finish()
    }
}

impl Redactor {
    /// A redactor under `key` (at least 32 bytes). The key is copied into memory that is
    /// zeroized on drop.
    pub fn new(key: &[u8]) -> Result<Self, AuditError> {
        if key.len() < MIN_KEY_LEN {
            return Err(AuditError::InvalidKey(
                "audit key must be at least 32 bytes",
            ));
        }
        Ok(Self {
            key: Zeroizing::new(key.to_vec()),
        })
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.key)
    }

    /// `"hmac-sha256:<hex>"` of `value`: what a redacted field holds.
    pub fn hash_value(&self, value: &Value) -> String {
        hash_with(&self.hmac_key(), value)
    }

    /// `"hmac-sha256:<hex>"` of a string value.
    pub fn hash_str(&self, value: &str) -> String {
        hash_with(&self.hmac_key(), &Value::String(value.to_owned()))
    }

    /// Returns `args` with the values at `sensitive_paths` replaced by their HMAC.
    pub fn redact<S: AsRef<str>>(&self, args: &Value, sensitive_paths: &[S]) -> Value {
        let mut out = args.clone();
        self.redact_in_place(&mut out, sensitive_paths);
        out
    }

    /// Replaces the values at `sensitive_paths` in `args` by their HMAC.
    pub fn redact_in_place<S: AsRef<str>>(&self, args: &mut Value, sensitive_paths: &[S]) {
        if sensitive_paths.is_empty() {
            return;
        }
        let key = self.hmac_key();
        for path in sensitive_paths {
            let segments: Vec<&str> = path.as_ref().split('.').collect();
            redact_path(&key, args, &segments);
        }
    }
}

fn hash_with(key: &hmac::Key, value: &Value) -> String {
    let tag = match value {
        Value::String(text) => hmac::sign(key, text.as_bytes()),
        other => hmac::sign(key, &to_canonical_vec(other)),
    };
    format!("{HMAC_PREFIX}{}", hex::encode(tag.as_ref()))
}

fn redact_path(key: &hmac::Key, value: &mut Value, segments: &[&str]) {
    let Some((first, rest)) = segments.split_first() else {
        // Already redacted values are left alone, so redaction is idempotent.
        if !matches!(value, Value::String(text) if text.starts_with(HMAC_PREFIX)) {
            *value = Value::String(hash_with(key, value));
        }
        return;
    };
    match value {
        Value::Object(map) => {
            if *first == "*" {
                for child in map.values_mut() {
                    redact_path(key, child, rest);
                }
            } else if let Some(child) = map.get_mut(*first) {
                redact_path(key, child, rest);
            }
        }
        Value::Array(items) => {
            if *first == "*" {
                for child in items.iter_mut() {
                    redact_path(key, child, rest);
                }
            } else if let Some(child) = first
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get_mut(index))
            {
                redact_path(key, child, rest);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor() -> Redactor {
        Redactor::new(&[42u8; 32]).unwrap()
    }

    #[test]
    fn sensitive_fields_are_replaced_and_others_kept() {
        let args = json!({
            "title": "hello",
            "auth": {"token": "ghp_secretvalue", "user": "bob"},
            "items": [{"key": "k1"}, {"key": "k2"}],
            "pin": 1234
        });
        let out = redactor().redact(&args, &["auth.token", "items.*.key", "pin", "missing.path"]);
        let text = out.to_string();
        assert!(!text.contains("ghp_secretvalue"), "{text}");
        assert!(!text.contains("k1") && !text.contains("k2"), "{text}");
        assert!(!text.contains("1234"), "{text}");
        assert_eq!(out["title"], "hello");
        assert_eq!(out["auth"]["user"], "bob");
        let token = out["auth"]["token"].as_str().unwrap();
        assert!(
            token.starts_with("hmac-sha256:") && token.len() == 12 + 64,
            "{token}"
        );
        assert_ne!(out["items"][0]["key"], out["items"][1]["key"]);
    }

    #[test]
    fn same_value_gives_same_hmac_so_it_can_be_matched() {
        let r = redactor();
        let a = r.redact(&json!({"password": "hunter2"}), &["password"]);
        let b = r.redact(&json!({"nested": {"pw": "hunter2"}}), &["nested.pw"]);
        assert_eq!(a["password"], b["nested"]["pw"]);
        assert_eq!(a["password"], r.hash_str("hunter2"));
        assert_ne!(a["password"], r.hash_str("hunter3"));
    }

    #[test]
    fn different_keys_give_different_hmacs_and_match_rfc_4231() {
        let other = Redactor::new(&[7u8; 32]).unwrap();
        assert_ne!(redactor().hash_str("x"), other.hash_str("x"));
        // RFC 4231 test case 2 uses a short key, so compute through aws-lc directly with
        // our formatting to pin the construction: HMAC-SHA256 over the raw string bytes.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            hash_with(&key, &json!("what do ya want for nothing?")),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn redaction_is_idempotent_and_debug_hides_the_key() {
        let r = redactor();
        let once = r.redact(&json!({"a": "v"}), &["a"]);
        let twice = r.redact(&once, &["a"]);
        assert_eq!(once, twice);
        assert!(!format!("{r:?}").contains("42"));
        assert!(Redactor::new(&[1u8; 16]).is_err());
    }
}
