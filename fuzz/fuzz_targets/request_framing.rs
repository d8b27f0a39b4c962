//! Fuzzes the wire-level request framing that runs before hyper on every connection.
//!
//! Beyond "never panics", checks what the connection guard relies on: read sizes never
//! change the outcome, a passed stream is passed byte for byte, and a refusal passes only
//! a prefix of what was sent (nothing of the refused head).

#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_gateway::framing::{Fed, RequestFraming};

fn run(input: &[u8], step: usize) -> (Vec<u8>, bool) {
    let mut framing = RequestFraming::new();
    let mut out = Vec::new();
    for piece in input.chunks(step) {
        if let Fed::Refuse(_) = framing.feed(piece, &mut out) {
            return (out, true);
        }
    }
    framing.finish(&mut out);
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let whole = run(input, input.len().max(1));
    let split = run(input, usize::from(step % 32) + 1);
    assert_eq!(whole, split, "the read size changed the outcome");
    let (out, refused) = whole;
    if refused {
        assert!(input.starts_with(&out), "a refusal passed bytes out of order");
        assert!(out.len() < input.len(), "a refusal passed the whole input");
    } else {
        assert_eq!(out, input, "a passed stream was altered");
    }
});
