//! Access tokens: `stwt_` + base64url of a chain of Ed25519-signed blocks that any holder
//! can extend offline with a [`Restriction`], in the manner of Biscuit and macaroons.
//!
//! # Format (version 1)
//!
//! ```text
//! token   = "stwt_" base64url-no-pad(version:u8=1  count:u8  block{count}  proof:[u8;32])
//! block   = payload_len:u16be  payload  next_public_key:[u8;32]  signature:[u8;64]
//! signed  = "steward-token/v1\0"  index:u8  previous_signature:[u8;64] (absent for block 0)
//!           payload_len:u32be  payload  next_public_key
//! ```
//!
//! - Block 0's payload is the JSON claims (with the key id `kid`), signed by the Steward key
//!   `kid`. Block *i > 0*'s payload is a JSON restriction, signed by the secret key whose public
//!   half block *i − 1* names as `next_public_key`.
//! - `proof` is the secret seed of the last block's next key. Whoever holds the token can
//!   therefore append a block (see [`attenuate`]), and nobody can drop one: after truncation
//!   the proof no longer matches the last block's next key, and the attacker lacks that seed.
//! - Each signature covers the previous block's signature, so blocks cannot be reordered
//!   or spliced between tokens.
//!
//! Verification costs one Ed25519 verify per block plus one key derivation for the proof.
//! Inputs longer than [`MAX_TOKEN_LEN`] or announcing more than [`MAX_BLOCKS`] blocks are
//! rejected before anything else is parsed.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use steward_core::OperationName;
use zeroize::Zeroizing;

use crate::CLOCK_SKEW_MS;
use crate::claims::{Claims, Restriction, VerifiedToken};
use crate::error::TokenError;
use crate::keys::{
    PUBLIC_KEY_LEN, SEED_LEN, SIGNATURE_LEN, SigningKey, VerifyingKeys, random_seed, sign_with,
};

/// The prefix every access token starts with.
pub const TOKEN_PREFIX: &str = "stwt_";
/// Longest accepted token text, prefix included: 8 KiB.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Most blocks in a token (block 0 plus 15 attenuations).
pub const MAX_BLOCKS: usize = 16;

const FORMAT_VERSION: u8 = 1;
const DOMAIN: &[u8] = b"steward-token/v1\0";

/// Mints a token for `claims`, signed by `key`; the key id is taken from `key`.
pub fn mint(key: &SigningKey, claims: &Claims) -> Result<String, TokenError> {
    claims.validate()?;
    let wire = ClaimsWire::new(claims, key.key_id());
    let payload = serde_json::to_vec(&wire)
        .map_err(|_| TokenError::InvalidClaims("claims cannot be encoded".into()))?;
    let (next_seed, next_key) = fresh_next_key()?;
    let message = signed_message(0, None, &payload, &next_key)?;
    let signature = key.sign(&message)?;
    let block = Block {
        payload: &payload,
        next_key,
        signature,
    };
    encode(&[block], &next_seed)
        .map_err(|_| TokenError::InvalidClaims(format!("token would exceed {MAX_TOKEN_LEN} bytes")))
}

/// Narrows a token offline: appends a block with `restriction`, signed with the token's
/// proof key, and returns the new token. No Steward key is needed.
///
/// The result can only do less than the input: its rights are the intersection of every
/// block's restrictions, and its expiry the earliest of every block's expiry. Hand the result
/// to a sub-agent; the sub-agent can narrow it further but never widen it. The input's
/// signatures are not checked here (that needs Steward's keys), only its structure and proof.
///
/// ```
/// use steward_token::{Claims, Restriction, SigningKey, VerifyingKeys, attenuate, mint, verify};
/// use steward_core::OperationName;
///
/// let (key, _seed) = SigningKey::generate("k1")?;
/// let token = mint(&key, &Claims::new("tok_1", "idn_1", "steward.example", 0, 900_000))?;
/// let narrowed = attenuate(
///     &token,
///     &Restriction::default().operations_from_strs(["github:issues.read"])?.expires_at_ms(60_000),
/// )?;
/// let keys = VerifyingKeys::from_signing_key(&key)?;
/// let verified = verify(&narrowed, &keys, "steward.example", 1_000)?;
/// assert!(verified.allows(&"github:issues.read".parse::<OperationName>()?));
/// assert!(!verified.allows(&"github:issues.create".parse::<OperationName>()?));
/// assert_eq!(verified.effective_expires_ms, 60_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attenuate(token: &str, restriction: &Restriction) -> Result<String, TokenError> {
    restriction
        .validate()
        .map_err(TokenError::InvalidRestriction)?;
    let bytes = decode_text(token)?;
    let parsed = parse_binary(&bytes)?;
    if parsed.blocks.len() >= MAX_BLOCKS {
        return Err(TokenError::TooManyBlocks {
            count: parsed.blocks.len().saturating_add(1),
            max: MAX_BLOCKS,
        });
    }
    let last = parsed
        .blocks
        .last()
        .ok_or(TokenError::Malformed("no blocks"))?;
    let proof_pair = Ed25519KeyPair::from_seed_and_public_key(&parsed.proof[..], &last.next_key)
        .map_err(|_| TokenError::BadSignature)?;
    let index =
        u8::try_from(parsed.blocks.len()).map_err(|_| TokenError::Malformed("too many blocks"))?;
    let payload = serde_json::to_vec(&RestrictionWire::from(restriction))
        .map_err(|_| TokenError::InvalidRestriction("restriction cannot be encoded".into()))?;
    let (next_seed, next_key) = fresh_next_key()?;
    let message = signed_message(index, Some(&last.signature), &payload, &next_key)?;
    let signature = sign_with(&proof_pair, &message)?;
    let mut blocks = parsed.blocks;
    blocks.push(Block {
        payload: &payload,
        next_key,
        signature,
    });
    encode(&blocks, &next_seed).map_err(|_| {
        TokenError::InvalidRestriction(format!("token would exceed {MAX_TOKEN_LEN} bytes"))
    })
}

/// Verifies a token from scratch: structure, every signature, the proof, the audience and
/// the validity period (with [`CLOCK_SKEW_MS`] tolerance). Revocation is not checked here;
/// [`crate::TokenVerifier`] does that, and caches the result.
pub fn verify(
    token: &str,
    keys: &VerifyingKeys,
    expected_audience: &str,
    now_ms: i64,
) -> Result<VerifiedToken, TokenError> {
    let bytes = decode_text(token)?;
    let parsed = parse_binary(&bytes)?;
    let first = parsed
        .blocks
        .first()
        .ok_or(TokenError::Malformed("no blocks"))?;
    let wire: ClaimsWire = serde_json::from_slice(first.payload)
        .map_err(|_| TokenError::Malformed("claims are not valid json"))?;

    // Signatures first: nothing in the payloads is trusted before they check out.
    let root = keys.usable(&wire.kid, now_ms)?;
    let message = signed_message(0, None, first.payload, &first.next_key)?;
    root.verify_sig(&message, &first.signature)
        .map_err(|_| TokenError::BadSignature)?;
    for ((index, previous), block) in parsed
        .blocks
        .iter()
        .enumerate()
        .zip(parsed.blocks.iter().skip(1))
    {
        let index = u8::try_from(index.saturating_add(1))
            .map_err(|_| TokenError::Malformed("too many blocks"))?;
        let message = signed_message(
            index,
            Some(&previous.signature),
            block.payload,
            &block.next_key,
        )?;
        UnparsedPublicKey::new(&ED25519, &previous.next_key)
            .verify(&message, &block.signature)
            .map_err(|_| TokenError::BadSignature)?;
    }
    let last = parsed
        .blocks
        .last()
        .ok_or(TokenError::Malformed("no blocks"))?;
    Ed25519KeyPair::from_seed_and_public_key(&parsed.proof[..], &last.next_key)
        .map_err(|_| TokenError::BadSignature)?;

    let key_id = wire.kid.clone();
    let claims = wire.into_claims()?;
    let restrictions = parsed
        .blocks
        .iter()
        .skip(1)
        .map(|block| {
            serde_json::from_slice::<RestrictionWire>(block.payload)
                .map_err(|_| TokenError::Malformed("restriction is not valid json"))
                .and_then(RestrictionWire::into_restriction)
        })
        .collect::<Result<Vec<_>, _>>()?;

    if claims.audience != expected_audience {
        return Err(TokenError::WrongAudience);
    }
    if claims.issued_at_ms > now_ms.saturating_add(CLOCK_SKEW_MS) {
        return Err(TokenError::NotYetValid);
    }
    let effective_expires_ms = std::iter::once(claims.expires_at_ms)
        .chain(claims.scope.expires_at_ms)
        .chain(restrictions.iter().filter_map(|r| r.expires_at_ms))
        .min()
        .unwrap_or(claims.expires_at_ms);
    if now_ms >= effective_expires_ms.saturating_add(CLOCK_SKEW_MS) {
        return Err(TokenError::Expired);
    }
    let delegated = !restrictions.is_empty() || !claims.actor_chain.is_empty();
    Ok(VerifiedToken {
        claims,
        key_id,
        effective_expires_ms,
        restrictions,
        delegated,
        token_hash: token_hash(token),
    })
}

/// The token's claims and restrictions WITHOUT checking any signature: for display only
/// (e.g. `steward token show`), never for authorization.
pub fn decode_unverified(token: &str) -> Result<(Claims, Vec<Restriction>), TokenError> {
    let bytes = decode_text(token)?;
    let parsed = parse_binary(&bytes)?;
    let first = parsed
        .blocks
        .first()
        .ok_or(TokenError::Malformed("no blocks"))?;
    let wire: ClaimsWire = serde_json::from_slice(first.payload)
        .map_err(|_| TokenError::Malformed("claims are not valid json"))?;
    let restrictions = parsed
        .blocks
        .iter()
        .skip(1)
        .map(|block| {
            serde_json::from_slice::<RestrictionWire>(block.payload)
                .map_err(|_| TokenError::Malformed("restriction is not valid json"))
                .and_then(RestrictionWire::into_restriction)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((wire.into_claims()?, restrictions))
}

/// The id of the Steward key that signed block 0, WITHOUT checking any signature: for
/// display only (e.g. `steward token inspect` after a key rotation), never for authorization.
pub fn key_id_unverified(token: &str) -> Result<String, TokenError> {
    let bytes = decode_text(token)?;
    let parsed = parse_binary(&bytes)?;
    let first = parsed
        .blocks
        .first()
        .ok_or(TokenError::Malformed("no blocks"))?;
    let wire: ClaimsWire = serde_json::from_slice(first.payload)
        .map_err(|_| TokenError::Malformed("claims are not valid json"))?;
    Ok(wire.kid)
}

/// SHA-256 of the token text: the cache key.
pub fn token_hash(token: &str) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// One block, borrowing its payload.
#[derive(Clone, Copy)]
struct Block<'a> {
    payload: &'a [u8],
    next_key: [u8; PUBLIC_KEY_LEN],
    signature: [u8; SIGNATURE_LEN],
}

struct ParsedToken<'a> {
    blocks: Vec<Block<'a>>,
    proof: Zeroizing<[u8; SEED_LEN]>,
}

/// Checks the size and prefix, then decodes the base64url body.
fn decode_text(token: &str) -> Result<Zeroizing<Vec<u8>>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    let body = token
        .strip_prefix(TOKEN_PREFIX)
        .ok_or(TokenError::Malformed("missing `stwt_` prefix"))?;
    URL_SAFE_NO_PAD
        .decode(body)
        .map(Zeroizing::new)
        .map_err(|_| TokenError::Malformed("not base64url"))
}

/// A cursor over untrusted bytes; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], TokenError> {
        let (head, tail) = self
            .rest
            .split_at_checked(len)
            .ok_or(TokenError::Malformed("truncated"))?;
        self.rest = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, TokenError> {
        self.take(1)?
            .first()
            .copied()
            .ok_or(TokenError::Malformed("truncated"))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TokenError> {
        self.take(N)?
            .try_into()
            .map_err(|_| TokenError::Malformed("truncated"))
    }
}

fn parse_binary(bytes: &[u8]) -> Result<ParsedToken<'_>, TokenError> {
    let mut reader = Reader { rest: bytes };
    if reader.byte()? != FORMAT_VERSION {
        return Err(TokenError::Malformed("unknown format version"));
    }
    let count = usize::from(reader.byte()?);
    if count > MAX_BLOCKS {
        return Err(TokenError::TooManyBlocks {
            count,
            max: MAX_BLOCKS,
        });
    }
    if count == 0 {
        return Err(TokenError::Malformed("no blocks"));
    }
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes(reader.array::<2>()?));
        let payload = reader.take(len)?;
        let next_key = reader.array::<PUBLIC_KEY_LEN>()?;
        let signature = reader.array::<SIGNATURE_LEN>()?;
        blocks.push(Block {
            payload,
            next_key,
            signature,
        });
    }
    let proof = Zeroizing::new(reader.array::<SEED_LEN>()?);
    if !reader.rest.is_empty() {
        return Err(TokenError::Malformed("trailing bytes"));
    }
    Ok(ParsedToken { blocks, proof })
}

/// Serializes blocks and proof; fails if the text would exceed [`MAX_TOKEN_LEN`].
fn encode(blocks: &[Block<'_>], proof: &Zeroizing<[u8; SEED_LEN]>) -> Result<String, TokenError> {
    let count = u8::try_from(blocks.len()).map_err(|_| TokenError::Malformed("too many blocks"))?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        blocks.iter().map(|b| b.payload.len() + 98).sum::<usize>() + 34,
    ));
    bytes.push(FORMAT_VERSION);
    bytes.push(count);
    for block in blocks {
        let len = u16::try_from(block.payload.len())
            .map_err(|_| TokenError::Malformed("block too large"))?;
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(block.payload);
        bytes.extend_from_slice(&block.next_key);
        bytes.extend_from_slice(&block.signature);
    }
    bytes.extend_from_slice(&proof[..]);
    let mut text = String::with_capacity(TOKEN_PREFIX.len() + bytes.len().div_ceil(3) * 4);
    text.push_str(TOKEN_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&bytes[..], &mut text);
    if text.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge {
            len: text.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    Ok(text)
}

/// The bytes block `index` signs; binds the previous signature, so the chain is fixed.
fn signed_message(
    index: u8,
    previous_signature: Option<&[u8; SIGNATURE_LEN]>,
    payload: &[u8],
    next_key: &[u8; PUBLIC_KEY_LEN],
) -> Result<Vec<u8>, TokenError> {
    let len = u32::try_from(payload.len()).map_err(|_| TokenError::Malformed("block too large"))?;
    let mut message =
        Vec::with_capacity(DOMAIN.len() + 1 + SIGNATURE_LEN + 4 + payload.len() + PUBLIC_KEY_LEN);
    message.extend_from_slice(DOMAIN);
    message.push(index);
    if let Some(previous) = previous_signature {
        message.extend_from_slice(previous);
    }
    message.extend_from_slice(&len.to_be_bytes());
    message.extend_from_slice(payload);
    message.extend_from_slice(next_key);
    Ok(message)
}

/// A fresh Ed25519 seed and its public key, for the next block.
fn fresh_next_key() -> Result<(Zeroizing<[u8; SEED_LEN]>, [u8; PUBLIC_KEY_LEN]), TokenError> {
    let seed = random_seed()?;
    let pair = Ed25519KeyPair::from_seed_unchecked(&seed[..])
        .map_err(|_| TokenError::Crypto("ed25519 key derivation failed"))?;
    let public: [u8; PUBLIC_KEY_LEN] = pair
        .public_key()
        .as_ref()
        .try_into()
        .map_err(|_| TokenError::Crypto("ed25519 public key has the wrong length"))?;
    Ok((seed, public))
}

/// Block 0 on the wire: short JWT-like names.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimsWire {
    tid: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    kid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    act: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<RestrictionWire>,
}

impl ClaimsWire {
    fn new(claims: &Claims, key_id: &str) -> Self {
        Self {
            tid: claims.token_id.clone(),
            sub: claims.identity_id.clone(),
            aud: claims.audience.clone(),
            iat: claims.issued_at_ms,
            exp: claims.expires_at_ms,
            kid: key_id.to_owned(),
            act: claims.actor_chain.clone(),
            scope: (!claims.scope.is_unrestricted()).then(|| RestrictionWire::from(&claims.scope)),
        }
    }

    fn into_claims(self) -> Result<Claims, TokenError> {
        let scope = match self.scope {
            Some(wire) => wire.into_restriction()?,
            None => Restriction::default(),
        };
        Ok(Claims {
            token_id: self.tid,
            identity_id: self.sub,
            audience: self.aud,
            issued_at_ms: self.iat,
            expires_at_ms: self.exp,
            actor_chain: self.act,
            scope,
        })
    }
}

/// A restriction on the wire; unknown fields are rejected, so an unknown kind of
/// restriction fails closed.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestrictionWire {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    svc: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ops: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

impl From<&Restriction> for RestrictionWire {
    fn from(restriction: &Restriction) -> Self {
        Self {
            svc: restriction
                .services
                .as_ref()
                .map(|s| s.iter().cloned().collect()),
            ops: restriction
                .operations
                .as_ref()
                .map(|ops| ops.iter().map(ToString::to_string).collect()),
            exp: restriction.expires_at_ms,
        }
    }
}

impl RestrictionWire {
    fn into_restriction(self) -> Result<Restriction, TokenError> {
        let operations = match self.ops {
            Some(ops) => Some(
                ops.iter()
                    .map(|op| op.parse::<OperationName>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| TokenError::Malformed("restriction names an invalid operation"))?,
            ),
            None => None,
        };
        let restriction = Restriction {
            services: self.svc.map(|s| s.into_iter().collect()),
            operations,
            expires_at_ms: self.exp,
        };
        restriction
            .validate()
            .map_err(|_| TokenError::Malformed("restriction is not valid"))?;
        Ok(restriction)
    }
}

#[cfg(test)]
mod tests;
