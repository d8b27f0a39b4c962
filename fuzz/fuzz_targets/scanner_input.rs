//! Fuzzes the secret scanner with arbitrary file contents and names.
//!
//! Any bytes must scan without panicking; every finding must point inside the input.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use steward_scan::Scanner;

fn scanner() -> &'static Scanner {
    static SCANNER: OnceLock<Scanner> = OnceLock::new();
    SCANNER.get_or_init(|| Scanner::new().unwrap_or_else(|e| panic!("scanner rules rejected: {e}")))
}

fuzz_target!(|data: &[u8]| {
    let name = if data.first().is_some_and(|b| b % 2 == 0) { "config/.env" } else { "src/main.rs" };
    let findings = scanner().scan(name, data);
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    for finding in &findings {
        assert!(finding.line >= 1 && finding.line as usize <= lines, "finding outside the input: line {}", finding.line);
    }
});
