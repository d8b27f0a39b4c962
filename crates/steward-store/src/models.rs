//! Records as stored: plain data, timestamps in milliseconds since the epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An admin API bearer token (the token itself is never stored, only its SHA-256).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdminToken {
    /// Token id, e.g. `adm_…`.
    pub id: String,
    /// Human-readable label.
    pub name: String,
    /// `admin`, `approver`, `auditor` or `owner`.
    pub role: String,
    /// The human or team this token acts as (used for ownership checks).
    pub principal: String,
    /// Creation time.
    pub created_at: i64,
    /// Optional expiry.
    pub expires_at: Option<i64>,
    /// Set once revoked.
    pub revoked_at: Option<i64>,
}

/// A non-human identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    /// Identity id, e.g. `idn_…`.
    pub id: String,
    /// Display name as given.
    pub name: String,
    /// `ai_agent`, `service_account`, `bot`, `ci_pipeline` or `workload`.
    pub kind: String,
    /// Owning human admin principal or team.
    pub owner: String,
    /// Free text.
    pub description: String,
    /// `key=value` labels, usable in policy.
    pub labels: BTreeMap<String, String>,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    /// Why the status last changed.
    pub status_reason: Option<String>,
    /// Monitoring reports but never suspends.
    pub observe_only: bool,
    /// Tokens issued before this instant are invalid.
    pub tokens_valid_after: i64,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// Last authenticated call.
    pub last_seen_at: Option<i64>,
}

/// An API key's metadata (the key itself is never stored, only its SHA-256).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: String,
    /// Owning identity.
    pub identity_id: String,
    /// Non-secret prefix for display.
    pub prefix: String,
    /// Creation time.
    pub created_at: i64,
    /// Optional expiry.
    pub expires_at: Option<i64>,
    /// Last successful use.
    pub last_used_at: Option<i64>,
    /// Set once revoked.
    pub revoked_at: Option<i64>,
}

/// A vault secret's metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecretRecord {
    /// Secret id.
    pub id: String,
    /// Unique name, e.g. `github-token`.
    pub name: String,
    /// The version the gateway uses.
    pub current_version: i64,
    /// Fingerprint of the current value (matches discovered credentials).
    pub fingerprint: String,
    /// Rotation policy, if any.
    pub rotation: Option<serde_json::Value>,
    /// Creation time.
    pub created_at: i64,
    /// Last rotation.
    pub rotated_at: Option<i64>,
    /// When the current value expires, if known.
    pub expires_at: Option<i64>,
    /// When the scheduler rotates next.
    pub next_rotation_at: Option<i64>,
    /// Last rotation failure, if the latest attempt failed.
    pub last_rotation_error: Option<String>,
}

/// One sealed version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    /// Owning secret.
    pub secret_id: String,
    /// Version number, from 1.
    pub version: i64,
    /// Master key version that wraps the data key.
    pub key_version: i64,
    /// The sealed envelope.
    pub sealed: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
    /// When an old version stops being served (rotation grace).
    pub retire_at: Option<i64>,
}

/// An upstream service and its operation catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceRecord {
    /// Unique name, used in `/gw/{name}/…` and in operation names.
    pub name: String,
    /// `http` or `mcp`.
    pub kind: String,
    /// The full service definition.
    pub spec: serde_json::Value,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// One policy's source text.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyText {
    /// Policy id, unique within a set.
    pub id: String,
    /// Cedar source.
    pub text: String,
}

/// A version of the whole policy set. Versions are append-only; rollback writes a new one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PolicySetRecord {
    /// Monotonic version.
    pub version: i64,
    /// All policies in force at this version.
    pub policies: Vec<PolicyText>,
    /// Creation time.
    pub created_at: i64,
    /// Who made the change.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// One audit log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Instance whose chain this record belongs to.
    pub instance_id: String,
    /// Sequence number within that chain, from 1, without gaps.
    pub seq: i64,
    /// Record time.
    pub time_ms: i64,
    /// Hash of the previous record.
    pub prev_hash: Vec<u8>,
    /// This record's chain hash.
    pub hash: Vec<u8>,
    /// Event kind, for search.
    pub kind: String,
    /// Actor id, for search.
    pub actor_id: Option<String>,
    /// Operation, for search.
    pub operation: Option<String>,
    /// Decision, for search.
    pub decision: Option<String>,
    /// Request id, for linking records of one call.
    pub request_id: Option<String>,
    /// The full event as canonical JSON.
    pub event: String,
}

impl AuditRow {
    /// The row's fields, borrowed.
    pub fn as_ref(&self) -> AuditRowRef<'_> {
        AuditRowRef {
            instance_id: &self.instance_id,
            seq: self.seq,
            time_ms: self.time_ms,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
            kind: &self.kind,
            actor_id: self.actor_id.as_deref(),
            operation: self.operation.as_deref(),
            decision: self.decision.as_deref(),
            request_id: self.request_id.as_deref(),
            event: self.event.as_bytes(),
        }
    }
}

/// One audit log row with every field borrowed: what the SQLite audit index binds, so
/// the indexer inserts records as the writer handed them over, with no copy per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRowRef<'a> {
    /// See [`AuditRow::instance_id`].
    pub instance_id: &'a str,
    /// See [`AuditRow::seq`].
    pub seq: i64,
    /// See [`AuditRow::time_ms`].
    pub time_ms: i64,
    /// See [`AuditRow::prev_hash`].
    pub prev_hash: &'a [u8],
    /// See [`AuditRow::hash`].
    pub hash: &'a [u8],
    /// See [`AuditRow::kind`].
    pub kind: &'a str,
    /// See [`AuditRow::actor_id`].
    pub actor_id: Option<&'a str>,
    /// See [`AuditRow::operation`].
    pub operation: Option<&'a str>,
    /// See [`AuditRow::decision`].
    pub decision: Option<&'a str>,
    /// See [`AuditRow::request_id`].
    pub request_id: Option<&'a str>,
    /// The event's canonical JSON, stored as text.
    ///
    /// INVARIANT: UTF-8. It is bound as text without being checked again: the bytes come
    /// from a `String` ([`AuditRow::as_ref`]) or are the audit writer's serde_json output
    /// (the journal's indexer).
    pub event: &'a [u8],
}

/// Filters for audit search; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this instance's chain.
    pub instance_id: Option<String>,
    /// Actor id.
    pub actor_id: Option<String>,
    /// Exact operation.
    pub operation: Option<String>,
    /// Decision.
    pub decision: Option<String>,
    /// Event kind.
    pub kind: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// From this time (inclusive).
    pub since_ms: Option<i64>,
    /// Until this time (exclusive).
    pub until_ms: Option<i64>,
    /// After this sequence number.
    pub after_seq: Option<i64>,
    /// Maximum rows.
    pub limit: i64,
}

/// A human approval request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApprovalRecord {
    /// Approval id.
    pub id: String,
    /// Requesting identity.
    pub identity_id: String,
    /// Operation, `service:operation`.
    pub operation: String,
    /// Digest of the exact request.
    pub digest: String,
    /// Everything else: redacted args, policy, reason, decisions.
    pub body: serde_json::Value,
    /// `pending`, `approved`, `denied`, `expired`, `used` or `cancelled`.
    pub status: String,
    /// Distinct approvers needed.
    pub quorum: i64,
    /// Creation time.
    pub requested_at: i64,
    /// Expiry.
    pub expires_at: i64,
    /// When decided.
    pub decided_at: Option<i64>,
    /// When consumed by the approved call.
    pub used_at: Option<i64>,
    /// Optimistic-concurrency counter.
    pub version: i64,
}

/// A time-bound grant (just-in-time elevation or "approve similar").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GrantRecord {
    /// Grant id.
    pub id: String,
    /// Identity it applies to.
    pub identity_id: String,
    /// What it grants.
    pub body: serde_json::Value,
    /// `pending`, `active`, `denied`, `expired` or `revoked`.
    pub status: String,
    /// Creation time.
    pub created_at: i64,
    /// Expiry.
    pub expires_at: i64,
}

/// A generic JSON record for low-volume kinds (alerts, leases, pins, cursors).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KvRecord {
    /// Record kind.
    pub kind: String,
    /// Id within the kind.
    pub id: String,
    /// Body.
    pub body: serde_json::Value,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}
