//! Audit events (what the server fills in) and audit records (events placed in the chain).
//!
//! # Record hash
//!
//! ```text
//! hash = SHA-256( "steward.audit.record.v1" || 0x00 || prev_hash || canonical )
//! canonical = canonical JSON of {"event": <event>, "seq": <seq>, "time_ms": <time_ms>}
//! ```
//!
//! where canonical JSON is defined in [`crate::canonical`] and `<event>` is the event's
//! serde form (fields that are `None`, empty or `null` are omitted). The first record's
//! `prev_hash` is [`GENESIS_HASH`] (32 zero bytes).
//!
//! The Merkle leaf data of a record is its 32-byte `hash` (so the leaf hash is
//! `SHA-256(0x00 || hash)`); see [`crate::merkle`].
//!
//! # JSONL
//!
//! An export holds one record a line: `{"seq":..,"time_ms":..,"prev_hash":"<hex>",
//! "hash":"<hex>","event":{..}}`. The verifier recomputes every hash from the parsed
//! fields, so the line's key order and spacing do not matter.

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::write_canonical;
use crate::error::AuditError;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first record.
pub const GENESIS_HASH: Hash = [0u8; 32];

/// Domain separation tag prefixed to every record hash input.
pub const RECORD_HASH_DOMAIN: &[u8] = b"steward.audit.record.v1\0";

/// What happened. Serialized in `snake_case`; unknown names from newer writers are kept
/// verbatim in [`EventKind::Other`], so records stay verifiable across versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A policy decision (allow, deny or approval required); the intent record.
    Decision,
    /// The outcome of a forwarded call.
    Outcome,
    /// A change made through the admin API.
    AdminMutation,
    /// A credential was injected into a call.
    SecretUse,
    /// A credential was rotated.
    SecretRotation,
    /// An approval was requested.
    ApprovalRequested,
    /// An approval was granted or refused.
    ApprovalDecision,
    /// An identity was suspended.
    Suspension,
    /// An identity was reinstated.
    Reinstatement,
    /// Monitoring raised an alert.
    Alert,
    /// A token was issued.
    TokenIssued,
    /// A credential lease was granted or ended.
    Lease,
    /// An upstream MCP server's request during a call (an elicitation) was relayed to the
    /// agent, and answered.
    ServerRequest,
    /// A kind this version does not know; kept as written.
    #[serde(untagged)]
    Other(String),
}

impl EventKind {
    /// The serialized name (`decision`, `admin_mutation`, ...; an unknown kind as written).
    pub fn name(&self) -> &str {
        match self {
            Self::Decision => "decision",
            Self::Outcome => "outcome",
            Self::AdminMutation => "admin_mutation",
            Self::SecretUse => "secret_use",
            Self::SecretRotation => "secret_rotation",
            Self::ApprovalRequested => "approval_requested",
            Self::ApprovalDecision => "approval_decision",
            Self::Suspension => "suspension",
            Self::Reinstatement => "reinstatement",
            Self::Alert => "alert",
            Self::TokenIssued => "token_issued",
            Self::Lease => "lease",
            Self::ServerRequest => "server_request",
            Self::Other(name) => name,
        }
    }
}

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A non-human identity (agent, bot, pipeline).
    Identity,
    /// A human administrator.
    Admin,
    /// Steward itself (schedulers, recovery, monitoring).
    System,
}

/// The actor of an event.
// INVARIANT: fields are declared in alphabetical order, so serde_json writes them in
// canonical order (see `canonical_bytes`); a test compares with the reference writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Delegation chain, from the original principal to the immediate caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegation_chain: Vec<String>,
    /// Stable id of the actor.
    pub id: String,
    /// Identity, admin or system.
    pub kind: ActorKind,
    /// Display name at the time of the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Actor {
    /// An actor of `kind` with `id` and no name or delegation.
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
            name: None,
            delegation_chain: Vec::new(),
        }
    }

    /// Steward itself.
    pub fn system() -> Self {
        Self::new(ActorKind::System, "steward")
    }
}

/// A policy decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The call may proceed.
    Allow,
    /// The call is refused.
    Deny,
    /// The call waits for a human approval.
    ApprovalRequired,
}

impl Decision {
    /// The serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::ApprovalRequired => "approval_required",
        }
    }
}

/// The outcome of a forwarded call.
// INVARIANT: fields in alphabetical order (see `Actor`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Bytes received from the agent and forwarded.
    #[serde(default)]
    pub bytes_in: u64,
    /// Bytes returned to the agent.
    #[serde(default)]
    pub bytes_out: u64,
    /// Time from forwarding to the last response byte.
    #[serde(default)]
    pub latency_ms: u64,
    /// Set by recovery for an intent whose outcome was never recorded (crash mid-call).
    #[serde(default, skip_serializing_if = "is_false")]
    pub outcome_unknown: bool,
    /// Upstream status (HTTP status, or a JSON-RPC error code for MCP); `None` when the
    /// call produced no status (connection failure, crash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i64>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One audited event, as the server fills it in. The writer adds sequence, time and hashes.
// INVARIANT: fields in alphabetical order (see `Actor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Who did it.
    pub actor: Actor,
    /// Approval this event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// Call arguments with sensitive fields replaced by [`Redactor`](crate::Redactor) HMACs.
    #[serde(
        default,
        skip_serializing_if = "Value::is_null",
        serialize_with = "crate::canonical::serialize_sorted"
    )]
    pub args: Value,
    /// Policy decision, when the event is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Free-form details (admin mutation diff, alert evidence, ...).
    #[serde(
        default,
        skip_serializing_if = "Value::is_null",
        serialize_with = "crate::canonical::serialize_sorted"
    )]
    pub detail: Value,
    /// Gateway instance that wrote the record.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
    /// What happened.
    pub kind: EventKind,
    /// Operation name, e.g. `github:issues.create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Outcome of a forwarded call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Ids of the policies that determined the decision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
    /// Version of the policy set that was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_set_version: Option<String>,
    /// The caller's stated reason (`Steward-Reason` header or MCP `_meta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hex SHA-256 of the canonical request (see [`request_digest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    /// Request id shared by the intent, outcome and secret-use records of one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Resource acted on, e.g. `repo:acme/api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// W3C `traceparent` of the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl AuditEvent {
    /// An event of `kind` by `actor` with every optional field empty.
    pub fn new(kind: EventKind, actor: Actor) -> Self {
        Self {
            kind,
            actor,
            instance_id: String::new(),
            request_id: None,
            operation: None,
            resource: None,
            decision: None,
            policy_ids: Vec::new(),
            policy_set_version: None,
            request_digest: None,
            args: Value::Null,
            reason: None,
            traceparent: None,
            outcome: None,
            approval_id: None,
            detail: Value::Null,
        }
    }
}

/// Hex SHA-256 of the canonical JSON form of a request description, for
/// [`AuditEvent::request_digest`]. The caller chooses what the description holds
/// (method, target, operation, arguments); it is canonicalized as [`crate::canonical`].
pub fn request_digest(request: &Value) -> String {
    let bytes = crate::canonical::to_canonical_vec(request);
    hex::encode(sha256(&bytes))
}

/// An event placed in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the log, from 0; also the Merkle leaf index.
    pub seq: u64,
    /// Milliseconds since the Unix epoch, as given to the writer.
    pub time_ms: i64,
    /// Hash of the previous record ([`GENESIS_HASH`] for seq 0).
    #[serde(with = "hex32")]
    pub prev_hash: Hash,
    /// This record's hash (see the module docs).
    #[serde(with = "hex32")]
    pub hash: Hash,
    /// The event.
    pub event: AuditEvent,
}

impl AuditRecord {
    /// Builds the record that follows `prev_hash`, computing its hash.
    pub fn chain(
        seq: u64,
        time_ms: i64,
        prev_hash: Hash,
        event: AuditEvent,
    ) -> Result<Self, AuditError> {
        let hash = record_hash(seq, time_ms, &prev_hash, &event)?;
        Ok(Self {
            seq,
            time_ms,
            prev_hash,
            hash,
            event,
        })
    }

    /// The canonical bytes covered by the hash (without domain tag and `prev_hash`).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, AuditError> {
        canonical_bytes(self.seq, self.time_ms, &self.event)
    }

    /// Recomputes the hash from `seq`, `time_ms`, `prev_hash` and `event`.
    pub fn compute_hash(&self) -> Result<Hash, AuditError> {
        record_hash(self.seq, self.time_ms, &self.prev_hash, &self.event)
    }

    /// One JSONL line (without the trailing newline).
    pub fn to_jsonl_line(&self) -> Result<String, AuditError> {
        Ok(serde_json::to_string(self)?)
    }

    /// Parses one JSONL line (surrounding whitespace is ignored).
    pub fn from_jsonl_line(line: &str) -> Result<Self, AuditError> {
        serde_json::from_str(line.trim()).map_err(|err| AuditError::malformed("audit record", err))
    }
}

/// The canonical bytes of (seq, time, event).
///
/// Written by serde_json directly: the envelope and every struct declare their fields in
/// alphabetical order and free-form values go through [`crate::canonical::SortedValue`],
/// which yields exactly the [`crate::canonical`] form (a test checks it against the
/// reference writer).
pub fn canonical_bytes(seq: u64, time_ms: i64, event: &AuditEvent) -> Result<Vec<u8>, AuditError> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        event: &'a AuditEvent,
        seq: u64,
        time_ms: i64,
    }
    let mut out = Vec::with_capacity(768);
    serde_json::to_writer(
        &mut out,
        &Envelope {
            event,
            seq,
            time_ms,
        },
    )?;
    Ok(out)
}

/// The canonical bytes computed through `serde_json::Value` and the reference writer;
/// slower, equal to [`canonical_bytes`].
pub fn canonical_bytes_reference(
    seq: u64,
    time_ms: i64,
    event: &AuditEvent,
) -> Result<Vec<u8>, AuditError> {
    let mut envelope = serde_json::Map::new();
    envelope.insert("event".to_owned(), serde_json::to_value(event)?);
    envelope.insert("seq".to_owned(), Value::from(seq));
    envelope.insert("time_ms".to_owned(), Value::from(time_ms));
    let mut out = Vec::with_capacity(512);
    write_canonical(&Value::Object(envelope), &mut out);
    Ok(out)
}

/// The canonical bytes of an event alone; with [`hash_with_event_bytes`] this lets the
/// expensive serialization happen before the sequence number is known.
pub fn canonical_event_bytes(event: &AuditEvent) -> Result<Vec<u8>, AuditError> {
    let mut out = Vec::with_capacity(768);
    serde_json::to_writer(&mut out, event)?;
    Ok(out)
}

/// The record hash from [`canonical_event_bytes`]: streams
/// `{"event":<event>,"seq":<seq>,"time_ms":<time>}` into the hash without copying, which
/// is byte for byte what [`canonical_bytes`] produces.
pub fn hash_with_event_bytes(seq: u64, time_ms: i64, prev_hash: &Hash, event_bytes: &[u8]) -> Hash {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(RECORD_HASH_DOMAIN);
    context.update(prev_hash);
    context.update(b"{\"event\":");
    context.update(event_bytes);
    context.update(format!(",\"seq\":{seq},\"time_ms\":{time_ms}}}").as_bytes());
    to_hash(context.finish().as_ref())
}

/// `SHA-256(RECORD_HASH_DOMAIN || prev_hash || canonical_bytes(seq, time, event))`.
pub fn record_hash(
    seq: u64,
    time_ms: i64,
    prev_hash: &Hash,
    event: &AuditEvent,
) -> Result<Hash, AuditError> {
    let canonical = canonical_bytes(seq, time_ms, event)?;
    Ok(hash_with_prev(prev_hash, &canonical))
}

/// `SHA-256(RECORD_HASH_DOMAIN || prev_hash || canonical)` for precomputed canonical bytes.
pub fn hash_with_prev(prev_hash: &Hash, canonical: &[u8]) -> Hash {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(RECORD_HASH_DOMAIN);
    context.update(prev_hash);
    context.update(canonical);
    to_hash(context.finish().as_ref())
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    to_hash(digest::digest(&digest::SHA256, data).as_ref())
}

pub(crate) fn to_hash(bytes: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    for (slot, byte) in out.iter_mut().zip(bytes) {
        *slot = *byte;
    }
    out
}

/// Parses a 64-character hex string into a [`Hash`].
pub fn parse_hash(text: &str) -> Result<Hash, AuditError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|err| AuditError::malformed("hash", err))?;
    Ok(out)
}

/// Serde helper: a 32-byte hash as lowercase hex.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as hex.
    pub fn serialize<S: Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(hash))
    }

    /// Deserializes from 64 hex characters.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests {

    #[test]
    fn kind_names_are_the_serialized_names() {
        let kinds = [
            EventKind::Decision,
            EventKind::Outcome,
            EventKind::AdminMutation,
            EventKind::SecretUse,
            EventKind::SecretRotation,
            EventKind::ApprovalRequested,
            EventKind::ApprovalDecision,
            EventKind::Suspension,
            EventKind::Reinstatement,
            EventKind::Alert,
            EventKind::TokenIssued,
            EventKind::Lease,
            EventKind::ServerRequest,
            EventKind::Other("custom_kind".to_owned()),
        ];
        for kind in kinds {
            let serialized = serde_json::to_value(&kind).unwrap();
            assert_eq!(serialized.as_str(), Some(kind.name()), "{kind:?}");
        }
    }

    use super::*;
    use serde_json::json;

    pub(crate) fn sample_event(n: u64) -> AuditEvent {
        let mut actor = Actor::new(ActorKind::Identity, format!("id_{n}"));
        actor.name = Some("ci-bot".to_owned());
        actor.delegation_chain = vec!["user:alice".to_owned()];
        let mut event = AuditEvent::new(EventKind::Decision, actor);
        event.instance_id = "gw-1".to_owned();
        event.request_id = Some(format!("req_{n}"));
        event.operation = Some("github:issues.create".to_owned());
        event.resource = Some("repo:acme/api".to_owned());
        event.decision = Some(Decision::Allow);
        event.policy_ids = vec!["p1".to_owned()];
        event.policy_set_version = Some("v7".to_owned());
        event.args = json!({"title": "bug", "n": n});
        event.reason = Some("triage".to_owned());
        event.traceparent =
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
        event
    }

    pub(crate) fn sample_chain(count: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH;
        (0..count)
            .map(|seq| {
                let record = AuditRecord::chain(
                    seq,
                    1_700_000_000_000 + seq as i64,
                    prev,
                    sample_event(seq),
                )
                .unwrap();
                prev = record.hash;
                record
            })
            .collect()
    }

    #[test]
    fn jsonl_round_trip_keeps_the_hash() {
        let mut event = sample_event(3);
        event.kind = EventKind::Other("future_kind".to_owned());
        event.outcome = Some(Outcome {
            status: Some(201),
            bytes_in: 10,
            bytes_out: 20,
            latency_ms: 5,
            outcome_unknown: true,
        });
        event.detail = json!({"f": 0.1, "nested": {"b": [1, "x"]}});
        let record = AuditRecord::chain(3, 99, [7u8; 32], event).unwrap();
        let line = record.to_jsonl_line().unwrap();
        assert!(!line.contains('\n'));
        let back = AuditRecord::from_jsonl_line(&line).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.compute_hash().unwrap(), record.hash);
        assert!(line.contains("\"kind\":\"future_kind\""), "{line}");
    }

    #[test]
    fn kinds_serialize_in_snake_case() {
        let value = serde_json::to_value(EventKind::ApprovalDecision).unwrap();
        assert_eq!(value, json!("approval_decision"));
        let kind: EventKind = serde_json::from_value(json!("secret_rotation")).unwrap();
        assert_eq!(kind, EventKind::SecretRotation);
        let kind: EventKind = serde_json::from_value(json!("brand_new")).unwrap();
        assert_eq!(kind, EventKind::Other("brand_new".to_owned()));
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = AuditRecord::chain(1, 5, GENESIS_HASH, sample_event(1)).unwrap();
        let mut edits: Vec<AuditRecord> = Vec::new();
        let mut r = base.clone();
        r.seq = 2;
        edits.push(r);
        let mut r = base.clone();
        r.time_ms = 6;
        edits.push(r);
        let mut r = base.clone();
        r.prev_hash = [1u8; 32];
        edits.push(r);
        let mut r = base.clone();
        r.event.decision = Some(Decision::Deny);
        edits.push(r);
        let mut r = base.clone();
        r.event.actor.delegation_chain.clear();
        edits.push(r);
        let mut r = base.clone();
        r.event.args = json!({"title": "bug", "n": 2});
        edits.push(r);
        for edited in edits {
            assert_ne!(edited.compute_hash().unwrap(), base.hash, "{edited:?}");
        }
        assert_eq!(base.compute_hash().unwrap(), base.hash);
    }

    #[test]
    fn canonical_bytes_have_sorted_keys() {
        let bytes = canonical_bytes(4, 8, &sample_event(4)).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("{\"event\":{\"actor\":{\"delegation_chain\""),
            "{text}"
        );
        assert!(text.ends_with(",\"seq\":4,\"time_ms\":8}"), "{text}");
    }

    #[test]
    fn fast_canonical_bytes_equal_the_reference_writer() {
        let mut full = sample_event(1);
        full.kind = EventKind::Other("zzz_new".to_owned());
        full.outcome = Some(Outcome {
            status: Some(503),
            bytes_in: 1,
            bytes_out: 2,
            latency_ms: 3,
            outcome_unknown: true,
        });
        full.approval_id = Some("apr_1".to_owned());
        full.request_digest = Some("ab".repeat(32));
        full.args = json!({"\u{fb33}": 1, "\u{1f600}": [{"b": 1, "a": "\u{1}"}], "A": 0.5});
        full.detail = json!({"z": null, "y": {"k": "v\n"}});
        let mut minimal = AuditEvent::new(EventKind::Alert, Actor::system());
        minimal.outcome = Some(Outcome::default());
        for event in [sample_event(0), full, minimal] {
            for (seq, time) in [(0u64, 0i64), (u64::MAX, -5)] {
                assert_eq!(
                    String::from_utf8(canonical_bytes(seq, time, &event).unwrap()).unwrap(),
                    String::from_utf8(canonical_bytes_reference(seq, time, &event).unwrap())
                        .unwrap()
                );
            }
        }
    }

    #[test]
    fn hash_from_event_bytes_equals_record_hash() {
        for (seq, time) in [(0u64, 0i64), (17, -3), (u64::MAX, i64::MIN)] {
            let event = sample_event(seq % 5);
            let bytes = canonical_event_bytes(&event).unwrap();
            assert_eq!(
                hash_with_event_bytes(seq, time, &[3u8; 32], &bytes),
                record_hash(seq, time, &[3u8; 32], &event).unwrap()
            );
        }
    }

    #[test]
    fn unknown_fields_are_rejected_not_dropped() {
        let record = AuditRecord::chain(0, 1, GENESIS_HASH, sample_event(0)).unwrap();
        let mut value = serde_json::to_value(&record).unwrap();
        value["event"]["extra"] = json!(1);
        let err = AuditRecord::from_jsonl_line(&value.to_string()).unwrap_err();
        assert!(err.to_string().contains("extra"), "{err}");
    }

    #[test]
    fn request_digest_ignores_key_order() {
        let a = request_digest(&json!({"method": "POST", "path": "/x"}));
        let b = request_digest(&serde_json::from_str(r#"{"path":"/x","method":"POST"}"#).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
    }
}
