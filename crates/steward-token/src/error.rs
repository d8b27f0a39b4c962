//! The crate's single error type, shared by API keys, tokens and the verifier.

use thiserror::Error;

/// Why an API key or token was rejected, or why minting failed.
///
/// Every variant from parsing or verification (all except [`TokenError::InvalidClaims`],
/// [`TokenError::InvalidRestriction`], [`TokenError::InvalidKey`] and [`TokenError::Crypto`])
/// is a client error: HTTP 401 with `error="invalid_token"`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// The input is longer than the accepted maximum; rejected before parsing.
    #[error("token is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Length of the input in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token has more blocks than allowed; rejected before parsing the blocks.
    #[error("token has {count} blocks, more than the limit of {max}")]
    TooManyBlocks {
        /// Number of blocks announced by the token.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The token is not well formed; the reason is fixed text, never user input.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// A block signature or the proof of possession does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// The token, or one of its attenuation blocks, has expired.
    #[error("token has expired")]
    Expired,
    /// The token was issued in the future, beyond the clock-skew tolerance.
    #[error("token is not yet valid")]
    NotYetValid,
    /// The token was issued for another deployment.
    #[error("token audience does not match")]
    WrongAudience,
    /// The token names a signing key that is not in the verifying key set.
    #[error("unknown signing key id `{0}`")]
    UnknownKeyId(String),
    /// The token's signing key was retired at the end of its rotation overlap.
    #[error("signing key `{0}` is retired")]
    KeyRetired(String),
    /// The token id was revoked.
    #[error("token `{0}` is revoked")]
    Revoked(String),
    /// The token's identity, or an actor in its delegation chain, is suspended.
    #[error("identity `{0}` is suspended")]
    IdentitySuspended(String),
    /// The token's identity, or an actor in its delegation chain, is revoked.
    #[error("identity `{0}` is revoked")]
    IdentityRevoked(String),
    /// The token was issued before the identity's "invalidate earlier tokens" cutoff.
    #[error("token was issued before the cutoff of identity `{0}`")]
    IssuedBeforeCutoff(String),
    /// The API key has the wrong prefix, length or characters.
    #[error("malformed api key: {0}")]
    MalformedApiKey(&'static str),
    /// The API key's checksum does not match: most likely a typo.
    #[error("api key checksum does not match")]
    ApiKeyChecksum,
    /// Claims given to [`crate::mint`] are not acceptable.
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
    /// A restriction given to [`crate::attenuate`] is not acceptable.
    #[error("invalid restriction: {0}")]
    InvalidRestriction(String),
    /// A signing or verifying key is not acceptable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The random generator or the signer failed.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

/// Shortens attacker-controlled text before it goes into an error message.
pub(crate) fn clip(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(MAX_CHARS).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_quote_input() {
        let e = TokenError::UnknownKeyId("k9".into());
        assert_eq!(e.to_string(), "unknown signing key id `k9`");
        assert!(TokenError::Expired.to_string().starts_with("token"));
    }

    #[test]
    fn clip_shortens_long_input() {
        assert_eq!(clip("abc"), "abc");
        let long = "x".repeat(500);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), 65);
        assert!(clipped.ends_with('…'));
    }
}
