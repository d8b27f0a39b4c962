//! Canonical JSON: the deterministic bytes that record hashes and signatures cover.
//!
//! The form follows RFC 8785 (JSON Canonicalization Scheme) where it matters here:
//!
//! - no insignificant whitespace;
//! - object members sorted by their keys' UTF-16 code units (as RFC 8785 §3.2.3);
//! - strings escaped minimally: `"` and `\` escaped, `\b \f \n \r \t` as short escapes,
//!   other control characters as `\u00xx` (lowercase hex), everything else literal UTF-8;
//! - integers written in decimal.
//!
//! One deviation: non-integer numbers are written in serde_json's shortest round-trip
//! form (for example `1e21` where ECMAScript writes `1e+21`). Audit fields are integers;
//! only free-form `args` and `detail` may hold floats, and a verifier recomputes hashes
//! with this module, so the bytes stay reproducible.
//!
//! The map type inside `serde_json::Value` may keep insertion order when another crate
//! enables serde_json's `preserve_order` feature; this module sorts explicitly, so the
//! output does not depend on feature unification.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// Appends the canonical form of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
    }
}

/// The canonical form of `value` as bytes.
pub fn to_canonical_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

/// Serializes a `Value` with object members in canonical (UTF-16) key order, so that
/// serde_json's compact writer produces the canonical form without building a copy.
pub struct SortedValue<'a>(pub &'a Value);

impl Serialize for SortedValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&SortedValue(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
                let mut out = serializer.serialize_map(Some(entries.len()))?;
                for (key, item) in entries {
                    out.serialize_entry(key, &SortedValue(item))?;
                }
                out.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// `serialize_with` helper writing a `Value` through [`SortedValue`].
pub fn serialize_sorted<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    SortedValue(value).serialize(serializer)
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut start = 0;
    for (index, byte) in text.bytes().enumerate() {
        let escape: Option<&[u8]> = match byte {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x00..=0x1f => Some(b""),
            _ => None,
        };
        let Some(escape) = escape else { continue };
        out.extend_from_slice(text.as_bytes().get(start..index).unwrap_or_default());
        if escape.is_empty() {
            let high = HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
            let low = HEX.get(usize::from(byte & 0x0f)).copied().unwrap_or(b'0');
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', high, low]);
        } else {
            out.extend_from_slice(escape);
        }
        start = index + 1;
    }
    out.extend_from_slice(text.as_bytes().get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(value: &Value) -> String {
        String::from_utf8(to_canonical_vec(value)).unwrap()
    }

    #[test]
    fn keys_are_sorted_and_whitespace_removed() {
        let value = json!({"b": 1, "a": {"z": [1, 2, {"y": null, "x": true}], "c": "d"}});
        assert_eq!(
            canon(&value),
            r#"{"a":{"c":"d","z":[1,2,{"x":true,"y":null}]},"b":1}"#
        );
    }

    #[test]
    fn keys_sort_by_utf16_code_units_as_rfc_8785() {
        // RFC 8785 §3.2.3 example: U+1F600 (surrogates D83D DE00) sorts before U+FB33.
        let value = json!({"\u{fb33}": 1, "\u{1f600}": 2, "a": 3});
        assert_eq!(canon(&value), "{\"a\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}");
    }

    #[test]
    fn strings_escape_like_rfc_8785() {
        let value = json!("q\"b\\s/\u{1}\n\u{7f}é€");
        assert_eq!(canon(&value), "\"q\\\"b\\\\s/\\u0001\\n\u{7f}é€\"");
        // The output is valid JSON that parses back to the same value.
        let back: Value = serde_json::from_str(&canon(&value)).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn sorted_value_through_serde_json_equals_the_canonical_writer() {
        let value = json!({
            "\u{fb33}": [1, {"b": "\u{1}\n\"", "a": null}],
            "\u{1f600}": 2.5,
            "z": {"y": true, "x": -3},
            "a": "é/€\u{7f}"
        });
        let via_serde = serde_json::to_vec(&SortedValue(&value)).unwrap();
        assert_eq!(String::from_utf8(via_serde).unwrap(), canon(&value));
    }

    #[test]
    fn numbers_are_stable_through_a_round_trip() {
        let value = json!({"i": -42, "u": 18446744073709551615u64, "f": 1.5, "g": 1e21});
        let once = canon(&value);
        let back: Value = serde_json::from_str(&once).unwrap();
        assert_eq!(canon(&back), once);
        assert!(once.contains("\"u\":18446744073709551615"), "{once}");
    }
}
