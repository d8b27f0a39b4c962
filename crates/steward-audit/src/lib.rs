//! Tamper-evident audit log: records, hash chain, Merkle tree, signed checkpoints,
//! offline verification, OCSF export and the group-commit writer.
//!
//! # How the pieces fit
//!
//! - [`AuditEvent`] is what the server fills in; the [`AuditWriter`] turns it into an
//!   [`AuditRecord`] by assigning the sequence number, time and chain hash, and hands
//!   batches of records to an [`AuditStore`] (one durable commit per batch).
//! - Each record's hash covers the previous record's hash and the record's canonical
//!   bytes ([`canonical`]), so editing, deleting or reordering a record breaks the chain.
//! - The record hashes are also the leaves of an RFC 6962/9162 Merkle tree ([`merkle`]).
//!   A [`Checkpoint`] signs (tree size, root, chain head, time) with Ed25519, so a log that
//!   was truncated, or rewritten and re-hashed, is caught against a checkpoint kept elsewhere.
//! - [`verify_log`] checks an exported log offline and names the first bad record.
//!
//! Sequence numbers start at 0 and equal the record's Merkle leaf index, so a tree of
//! size `n` covers records `0..n`. The first record's `prev_hash` is 32 zero bytes.
//!
//! Crypto comes from `aws-lc-rs` only (SHA-256, HMAC-SHA256, Ed25519).

#![deny(missing_docs)]

pub mod canonical;
pub mod checkpoint;
pub mod error;
pub mod event;
pub mod merkle;
pub mod ocsf;
pub mod pruned;
pub mod recovery;
pub mod redact;
pub mod verify;
pub mod writer;

pub use checkpoint::{Checkpoint, CheckpointPolicy, CheckpointSigner, parse_public_key};
pub use error::{AuditError, StoreError};
pub use event::{
    Actor, ActorKind, AuditEvent, AuditRecord, Decision, EventKind, GENESIS_HASH, Hash, Outcome,
    canonical_event_bytes, hash_with_event_bytes,
};
pub use merkle::MerkleFrontier;
pub use ocsf::to_ocsf;
pub use pruned::PrunedTree;
pub use redact::Redactor;
pub use verify::{
    BadRecord, BadRecordKind, CheckpointCheck, CheckpointStatus, LogVerifier, VerifyReport,
    verify_log,
};
pub use writer::{
    AppendReceipt, AuditStore, AuditWriter, BoxFuture, EncodedRecord, IndexColumns, MemoryStore,
    StoreHead, WriterConfig, WriterHead,
};
