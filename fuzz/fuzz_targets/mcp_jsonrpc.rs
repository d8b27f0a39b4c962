//! Fuzzes the MCP gateway's JSON-RPC parser with untrusted bytes.
//!
//! Beyond "never panics", checks that an accepted message survives a round trip (its JSON
//! form parses back to the same message) and that the canonical form used in request
//! digests is stable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_gateway::mcp::jsonrpc::{self, MAX_MESSAGE_BYTES, canonical};

fuzz_target!(|data: &[u8]| {
    match jsonrpc::parse(data) {
        Ok(message) => {
            assert!(data.len() <= MAX_MESSAGE_BYTES);
            let json = message.to_json();
            let again = jsonrpc::from_value(json.clone())
                .unwrap_or_else(|e| panic!("an accepted message must parse again: {}", e.message));
            assert_eq!(again, message);
            let text = canonical(&json);
            let reparsed: serde_json::Value =
                serde_json::from_str(&text).expect("canonical form is JSON");
            assert_eq!(canonical(&reparsed), text, "canonical form must be stable");
        }
        Err(error) => {
            assert!(error.code < 0, "error codes are negative");
            assert!(!error.message.is_empty());
        }
    }
});
