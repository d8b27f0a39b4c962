//! Fuzzes parsing of untrusted credentials: API keys and access tokens.
//!
//! Any input must yield `Ok` or `Err`, never a panic; random input must never verify.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use steward_token::access_token::{decode_unverified, verify};
use steward_token::{Restriction, SigningKey, VerifyingKeys, api_key, attenuate};
use zeroize::Zeroizing;

const AUDIENCE: &str = "steward.fuzz";
const NOW_MS: i64 = 1_800_000_000_000;

fn keys() -> &'static VerifyingKeys {
    static KEYS: OnceLock<VerifyingKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signing = SigningKey::from_seed("fuzz", &Zeroizing::new([7u8; 32]))
            .unwrap_or_else(|error| panic!("fixed fuzz key rejected: {error}"));
        VerifyingKeys::from_signing_key(&signing)
            .unwrap_or_else(|error| panic!("fixed fuzz key rejected: {error}"))
    })
}

fuzz_target!(|data: &[u8]| {
    // Reach the binary parser directly, without needing valid base64 from the fuzzer.
    if data.len() <= 6 * 1024 {
        let token = format!("stwt_{}", URL_SAFE_NO_PAD.encode(data));
        // Random bytes cannot carry a valid signature by the fuzz key.
        assert!(verify(&token, keys(), AUDIENCE, NOW_MS).is_err());
        let _ = decode_unverified(&token);
        let _ = attenuate(&token, &Restriction::default());
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = api_key::parse(text);
    assert!(verify(text, keys(), AUDIENCE, NOW_MS).is_err());
    let _ = decode_unverified(text);
    let _ = attenuate(text, &Restriction::default());
});
