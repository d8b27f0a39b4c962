//! Fuzzes `steward.toml` parsing and validation.
//!
//! The config module lives in the binary crate; it is compiled here from its source file
//! so the fuzzer exercises exactly the shipped code without the binary exposing a library.
//! Any input must yield a config or a located error, never a panic.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, missing_docs)]
#[path = "../../crates/steward/src/config.rs"]
mod config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(Path::new("fuzz.toml"), text) {
        Ok(raw) => assert_eq!(raw.version, config::CONFIG_VERSION),
        Err(e) => assert!(e.line >= 1 && e.column >= 1, "error without a location: {e}"),
    }
});
