//! Fuzzes the audit journal's frame decoder, which replay runs over whatever a crash or a
//! damaged disk left in `audit.journal`.
//!
//! Checks that decoding never panics, that the valid prefix lies within the input, and
//! that decoding the valid prefix alone finds the same frames (replay cuts the file there).

#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_gateway::audit_journal::scan_frames;

fuzz_target!(|data: &[u8]| {
    let (frames, valid) = scan_frames(data);
    assert!(valid <= data.len());
    assert_eq!(scan_frames(&data[..valid]), (frames, valid));
});
