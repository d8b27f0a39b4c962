//! Ed25519-signed checkpoints of the log (tree size, Merkle root, chain head, time) and
//! the policy deciding when one is due.
//!
//! The signature covers
//! `"steward.audit.checkpoint.v1" || 0x00 || canonical JSON of every field but signature`,
//! with hashes in lowercase hex. The JSON form (for a file or a witness POST) is:
//!
//! ```json
//! {"tree_size":42,"root_hash":"<hex>","chain_head":"<hex>","time_ms":1700000000000,
//!  "instance_id":"gw-1","key_id":"<16 hex>","signature":"<base64, 64 bytes>"}
//! ```
//!
//! `key_id` is the first 8 bytes of SHA-256 of the raw 32-byte public key, in hex.
//! `chain_head` is the hash of record `tree_size - 1` ([`crate::GENESIS_HASH`] for an
//! empty log).

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::canonical::to_canonical_vec;
use crate::error::AuditError;
use crate::event::{Hash, sha256};

/// Domain separation tag prefixed to the signed checkpoint bytes.
pub const CHECKPOINT_DOMAIN: &[u8] = b"steward.audit.checkpoint.v1\0";

/// A signed statement of the log's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Number of records covered (records `0..tree_size`).
    pub tree_size: u64,
    /// Merkle root over the first `tree_size` record hashes.
    #[serde(with = "crate::event::hex32")]
    pub root_hash: Hash,
    /// Hash of the last covered record.
    #[serde(with = "crate::event::hex32")]
    pub chain_head: Hash,
    /// When the checkpoint was made, ms since the Unix epoch.
    pub time_ms: i64,
    /// Instance that signed it.
    pub instance_id: String,
    /// Id of the signing key (see the module docs).
    pub key_id: String,
    /// Ed25519 signature, base64 in JSON.
    #[serde(with = "base64_sig")]
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(
            self.tree_size,
            &self.root_hash,
            &self.chain_head,
            self.time_ms,
            &self.instance_id,
            &self.key_id,
        )
    }

    /// Verifies the signature against a raw 32-byte Ed25519 public key, and that `key_id`
    /// names that key.
    pub fn verify(&self, public_key: &[u8]) -> Result<(), AuditError> {
        if public_key.len() != 32 {
            return Err(AuditError::InvalidKey(
                "ed25519 public key must be 32 bytes",
            ));
        }
        if self.key_id != key_id(public_key) {
            return Err(AuditError::BadSignature);
        }
        UnparsedPublicKey::new(&signature::ED25519, public_key)
            .verify(&self.signed_bytes(), &self.signature)
            .map_err(|_| AuditError::BadSignature)
    }

    /// Pretty JSON for a checkpoint file.
    pub fn to_json(&self) -> Result<String, AuditError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Self, AuditError> {
        serde_json::from_str(text).map_err(|err| AuditError::malformed("checkpoint", err))
    }
}

fn signed_bytes(
    tree_size: u64,
    root_hash: &Hash,
    chain_head: &Hash,
    time_ms: i64,
    instance_id: &str,
    key_id: &str,
) -> Vec<u8> {
    let body: Value = json!({
        "tree_size": tree_size,
        "root_hash": hex::encode(root_hash),
        "chain_head": hex::encode(chain_head),
        "time_ms": time_ms,
        "instance_id": instance_id,
        "key_id": key_id,
    });
    let mut out = CHECKPOINT_DOMAIN.to_vec();
    out.extend_from_slice(&to_canonical_vec(&body));
    out
}

/// `key_id` of a raw Ed25519 public key.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(sha256(public_key).get(..8).unwrap_or_default())
}

/// Parses a public key given as 64 hex characters or base64 of the 32 raw bytes.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], AuditError> {
    let text = text.trim();
    let mut out = [0u8; 32];
    if hex::decode_to_slice(text, &mut out).is_ok() {
        return Ok(out);
    }
    let bytes = BASE64
        .decode(text)
        .map_err(|_| AuditError::InvalidKey("public key is neither hex nor base64"))?;
    if bytes.len() != 32 {
        return Err(AuditError::InvalidKey(
            "ed25519 public key must be 32 bytes",
        ));
    }
    out.copy_from_slice(&bytes);
    Ok(out)
}

/// Signs checkpoints with an Ed25519 key derived from a 32-byte seed.
pub struct CheckpointSigner {
    // Kept so the key can be re-exported; zeroized on drop. aws-lc cleanses its own copy.
    _seed: Zeroizing<[u8; 32]>,
    key_pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id)
            .field("seed", &"<redacted>")
            .finish()
    }
}

impl CheckpointSigner {
    /// A signer from a 32-byte Ed25519 seed (the private key).
    pub fn from_seed(seed: &[u8]) -> Result<Self, AuditError> {
        let mut copy = Zeroizing::new([0u8; 32]);
        if seed.len() != 32 {
            return Err(AuditError::InvalidKey("ed25519 seed must be 32 bytes"));
        }
        copy.copy_from_slice(seed);
        let key_pair = Ed25519KeyPair::from_seed_unchecked(copy.as_slice())
            .map_err(|_| AuditError::InvalidKey("ed25519 seed rejected"))?;
        let key_id = key_id(key_pair.public_key().as_ref());
        Ok(Self {
            _seed: copy,
            key_pair,
            key_id,
        })
    }

    /// The raw 32-byte public key, for verifiers.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (slot, byte) in out.iter_mut().zip(self.key_pair.public_key().as_ref()) {
            *slot = *byte;
        }
        out
    }

    /// The key id written into checkpoints.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs a checkpoint of the log state.
    pub fn sign(
        &self,
        tree_size: u64,
        root_hash: Hash,
        chain_head: Hash,
        time_ms: i64,
        instance_id: &str,
    ) -> Checkpoint {
        let message = signed_bytes(
            tree_size,
            &root_hash,
            &chain_head,
            time_ms,
            instance_id,
            &self.key_id,
        );
        let signature = self.key_pair.sign(&message);
        let mut sig = [0u8; 64];
        for (slot, byte) in sig.iter_mut().zip(signature.as_ref()) {
            *slot = *byte;
        }
        Checkpoint {
            tree_size,
            root_hash,
            chain_head,
            time_ms,
            instance_id: instance_id.to_owned(),
            key_id: self.key_id.clone(),
            signature: sig,
        }
    }

    /// Signs the state reported by the writer.
    pub fn sign_head(
        &self,
        head: &crate::writer::WriterHead,
        time_ms: i64,
        instance_id: &str,
    ) -> Checkpoint {
        self.sign(
            head.tree_size,
            head.root_hash(),
            head.chain_head,
            time_ms,
            instance_id,
        )
    }
}

/// When to write a checkpoint: after `every_records` new records or `every_ms` since the
/// last one, whichever comes first, and only when records were added since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPolicy {
    /// Record count that makes a checkpoint due.
    pub every_records: u64,
    /// Time in ms that makes a checkpoint due.
    pub every_ms: i64,
}

impl CheckpointPolicy {
    /// Whether a checkpoint is due for a log of `tree_size` at `now_ms`, given the last
    /// checkpoint as `(tree_size, time_ms)` (`None` when none was written yet).
    pub fn is_due(&self, last: Option<(u64, i64)>, tree_size: u64, now_ms: i64) -> bool {
        let Some((last_size, last_time)) = last else {
            return tree_size > 0;
        };
        if tree_size <= last_size {
            return false;
        }
        tree_size - last_size >= self.every_records
            || now_ms.saturating_sub(last_time) >= self.every_ms
    }
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_records: 1000,
            every_ms: 60_000,
        }
    }
}

mod base64_sig {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(sig))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 64], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let bytes = BASE64
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        <[u8; 64]>::try_from(bytes.as_slice())
            .map_err(|_| serde::de::Error::custom("signature must be 64 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed(&[9u8; 32]).unwrap()
    }

    #[test]
    fn sign_verify_and_json_round_trip() {
        let s = signer();
        let cp = s.sign(10, [1u8; 32], [2u8; 32], 1234, "gw-1");
        cp.verify(&s.public_key()).unwrap();
        let json = cp.to_json().unwrap();
        assert!(json.contains(&hex::encode([1u8; 32])), "{json}");
        let back = Checkpoint::from_json(&json).unwrap();
        assert_eq!(back, cp);
        back.verify(&s.public_key()).unwrap();
    }

    #[test]
    fn every_tampered_field_fails_verification() {
        let s = signer();
        let cp = s.sign(10, [1u8; 32], [2u8; 32], 1234, "gw-1");
        let pk = s.public_key();
        let mut edits = Vec::new();
        let mut c = cp.clone();
        c.tree_size = 9;
        edits.push(c);
        let mut c = cp.clone();
        c.root_hash[0] ^= 1;
        edits.push(c);
        let mut c = cp.clone();
        c.chain_head[31] ^= 1;
        edits.push(c);
        let mut c = cp.clone();
        c.time_ms += 1;
        edits.push(c);
        let mut c = cp.clone();
        c.instance_id = "gw-2".to_owned();
        edits.push(c);
        let mut c = cp.clone();
        c.signature[5] ^= 1;
        edits.push(c);
        for edited in edits {
            assert!(
                matches!(edited.verify(&pk), Err(AuditError::BadSignature)),
                "{edited:?}"
            );
        }
        let other = CheckpointSigner::from_seed(&[8u8; 32]).unwrap();
        assert!(cp.verify(&other.public_key()).is_err());
        assert!(cp.verify(&pk[..31]).is_err());
    }

    #[test]
    fn known_seed_gives_rfc_8032_public_key() {
        // RFC 8032 §7.1 test 1.
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let s = CheckpointSigner::from_seed(&seed).unwrap();
        assert_eq!(
            hex::encode(s.public_key()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let shown = format!("{s:?}");
        assert!(!shown.contains("9d61b1"), "{shown}");
        assert!(shown.contains(s.key_id()));
    }

    #[test]
    fn public_key_parses_from_hex_and_base64() {
        let pk = signer().public_key();
        assert_eq!(parse_public_key(&hex::encode(pk)).unwrap(), pk);
        assert_eq!(parse_public_key(&BASE64.encode(pk)).unwrap(), pk);
        assert!(parse_public_key("abcd").is_err());
    }

    #[test]
    fn policy_is_due_on_count_or_time_whichever_first() {
        let policy = CheckpointPolicy {
            every_records: 100,
            every_ms: 10_000,
        };
        assert!(!policy.is_due(None, 0, 0));
        assert!(policy.is_due(None, 1, 0));
        assert!(!policy.is_due(Some((50, 1_000)), 149, 10_999));
        assert!(policy.is_due(Some((50, 1_000)), 150, 1_001));
        assert!(policy.is_due(Some((50, 1_000)), 51, 11_000));
        assert!(!policy.is_due(Some((50, 1_000)), 50, 99_000), "nothing new");
    }
}
