//! Fuzzes gateway path normalisation and query parsing.
//!
//! Beyond "never panics", checks the invariant the gateway relies on: an accepted path
//! has no segment that any server could read as a traversal or separator, and parsing is
//! stable (the forwarded bytes parse back to the same segments).

#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_gateway::path::{NormalizedPath, check_query, parse_query};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    if let Ok(normalized) = NormalizedPath::parse(path) {
        assert!(normalized.raw_rest.is_empty() || normalized.raw_rest.starts_with('/'));
        assert!(!normalized.raw_rest.contains("//"));
        for segment in &normalized.segments {
            assert!(
                segment != "." && segment != "..",
                "dot segment accepted: {path:?}"
            );
            assert!(!segment.contains('/'), "slash inside a segment: {path:?}");
            assert!(!segment.contains('\\'), "backslash accepted: {path:?}");
            assert!(!segment.contains(';'), "semicolon accepted: {path:?}");
            assert!(
                !segment.chars().any(char::is_control),
                "control accepted: {path:?}"
            );
        }
        let again = NormalizedPath::from_parts(&normalized.service, &normalized.raw_rest)
            .unwrap_or_else(|error| panic!("accepted rest must parse again: {error}"));
        assert_eq!(again, normalized);
        assert_eq!(
            format!("/gw/{}{}", normalized.service, normalized.raw_rest),
            path,
            "forwarded bytes must be the received bytes"
        );
    }
    if let Ok(pairs) = parse_query(query) {
        assert!(
            check_query(query).is_ok(),
            "parsed a query that fails the check"
        );
        for (key, value) in pairs {
            assert!(!key.contains('\0') && !value.contains('\0'));
        }
    }
});
