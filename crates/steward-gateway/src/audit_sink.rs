//! Bridges the audit writer to the SQL store: one transaction per group-commit batch, the
//! archive anchor of a chain whose oldest records were removed, the chain's leaves for
//! Merkle proofs, crash recovery of open intents, and online verification.
//!
//! # Archive anchor
//!
//! `steward audit archive` deletes the records of a chain before a cut. What is needed to
//! continue the chain and its Merkle tree (the frontier at the cut and the hash of the
//! last archived record) is stored in `meta` under `audit.archive.<instance>` in the same
//! transaction as the delete, so the head, online verification and proofs start from it.

use serde::{Deserialize, Serialize};
use steward_audit::{
    AuditRecord, AuditStore, BoxFuture, Checkpoint, EncodedRecord, Hash, LogVerifier,
    MerkleFrontier, StoreError as AuditStoreError, StoreHead, VerifyReport,
};
use steward_store::Store;
use steward_store::models::{AuditRow, AuditRowRef};

/// The audit chain of one instance, stored in the shared database.
#[derive(Debug, Clone)]
pub struct SqlAuditStore {
    store: Store,
    instance_id: String,
}

impl SqlAuditStore {
    /// The chain of `instance_id` in `store`.
    pub fn new(store: Store, instance_id: impl Into<String>) -> Self {
        Self {
            store,
            instance_id: instance_id.into(),
        }
    }

    /// The chain this store writes.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The underlying database.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Converts a record to its row form.
pub fn to_row(instance_id: &str, r: &AuditRecord) -> Result<AuditRow, steward_audit::AuditError> {
    Ok(encoded_row(instance_id, EncodedRecord::from_record(r)?))
}

/// Converts a record the writer handed over, with its canonical event bytes, to its row
/// form, moving the bytes and fields instead of copying them.
pub(crate) fn encoded_row(instance_id: &str, encoded: EncodedRecord) -> AuditRow {
    let EncodedRecord {
        seq,
        time_ms,
        prev_hash,
        hash,
        columns,
        event_bytes,
    } = encoded;
    // Canonical bytes are serde_json output, which is UTF-8. Were they not, the row keeps
    // a lossy copy, whose hash then fails verification: flagged, never silently changed.
    let event = String::from_utf8(event_bytes).unwrap_or_else(|e| {
        tracing::error!(seq, "audit event bytes are not UTF-8");
        String::from_utf8_lossy(e.as_bytes()).into_owned()
    });
    AuditRow {
        instance_id: instance_id.to_owned(),
        seq: i64::try_from(seq).unwrap_or(i64::MAX),
        time_ms,
        prev_hash: prev_hash.to_vec(),
        hash: hash.to_vec(),
        kind: columns.kind.name().to_owned(),
        actor_id: Some(columns.actor_id),
        operation: columns.operation,
        decision: columns.decision.map(|d| d.as_str().to_owned()),
        request_id: columns.request_id,
        event,
    }
}

/// The rows of `records`, borrowing every field: nothing is copied or allocated per row
/// (the borrowed twin of [`encoded_row`]).
pub(crate) fn encoded_row_refs<'a>(
    instance: &'a str,
    records: &'a [EncodedRecord],
) -> Vec<AuditRowRef<'a>> {
    records
        .iter()
        .map(|e| AuditRowRef {
            instance_id: instance,
            seq: i64::try_from(e.seq).unwrap_or(i64::MAX),
            time_ms: e.time_ms,
            prev_hash: &e.prev_hash,
            hash: &e.hash,
            kind: e.columns.kind.name(),
            actor_id: Some(&e.columns.actor_id),
            operation: e.columns.operation.as_deref(),
            decision: e.columns.decision.map(|d| d.as_str()),
            request_id: e.columns.request_id.as_deref(),
            // Queued records come from appends, whose canonical bytes are serde_json
            // output: UTF-8 (replay inserts its rows itself, through `frame_row`).
            event: &e.event_bytes,
        })
        .collect()
}

/// Converts a stored row back to a record.
pub fn from_row(row: &AuditRow) -> Result<AuditRecord, String> {
    let hash = |v: &[u8]| -> Result<[u8; 32], String> {
        v.try_into()
            .map_err(|_| format!("record {} has a malformed hash", row.seq))
    };
    Ok(AuditRecord {
        seq: u64::try_from(row.seq).map_err(|_| "negative sequence number".to_owned())?,
        time_ms: row.time_ms,
        prev_hash: hash(&row.prev_hash)?,
        hash: hash(&row.hash)?,
        event: serde_json::from_str(&row.event).map_err(|e| format!("record {}: {e}", row.seq))?,
    })
}

/// An audit store error from any displayable one.
pub(crate) fn store_err(e: impl std::fmt::Display) -> AuditStoreError {
    AuditStoreError::new(e.to_string())
}

impl AuditStore for SqlAuditStore {
    fn append_batch<'a>(
        &'a self,
        records: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), AuditStoreError>> {
        Box::pin(async move {
            let rows = records
                .iter()
                .map(|r| to_row(&self.instance_id, r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(store_err)?;
            self.store.audit_append(&rows).await.map_err(store_err)
        })
    }

    fn append_batch_encoded<'a>(
        &'a self,
        batch: Vec<EncodedRecord>,
        _after: &'a StoreHead,
    ) -> BoxFuture<'a, Result<(), AuditStoreError>> {
        Box::pin(async move {
            // The canonical event bytes are the event's JSON form: store them as they were
            // hashed instead of serializing the event again.
            let rows: Vec<AuditRow> = batch
                .into_iter()
                .map(|e| encoded_row(&self.instance_id, e))
                .collect();
            self.store.audit_append(&rows).await.map_err(store_err)
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<StoreHead, AuditStoreError>> {
        Box::pin(async move {
            let anchor = ArchiveAnchor::load(&self.store, &self.instance_id)
                .await
                .map_err(store_err)?;
            let (mut head, from) = match anchor {
                Some(a) => {
                    let from = a.cut();
                    (
                        StoreHead {
                            chain_head: a.chain_head,
                            frontier: a.frontier,
                        },
                        from,
                    )
                }
                None => (StoreHead::genesis(), 0),
            };
            let hashes = self
                .store
                .audit_hash_range(&self.instance_id, from, i64::MAX)
                .await
                .map_err(store_err)?;
            for h in hashes {
                let h: [u8; 32] = h
                    .as_slice()
                    .try_into()
                    .map_err(|_| AuditStoreError::new("malformed stored hash"))?;
                head.frontier.append(&h);
                head.chain_head = h;
            }
            Ok(head)
        })
    }
}

/// Where a chain continues after its oldest records were archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveAnchor {
    /// Merkle frontier over the archived records `0..cut`.
    pub frontier: MerkleFrontier,
    /// Hash of record `cut - 1`.
    #[serde(with = "hex_hash")]
    pub chain_head: Hash,
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &[u8; 32], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Why an audit helper failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditAccessError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] steward_store::StoreError),
    /// Stored audit data is malformed.
    #[error("corrupt audit data: {0}")]
    Corrupt(String),
}

impl From<AuditAccessError> for crate::runtime::RuntimeError {
    fn from(e: AuditAccessError) -> Self {
        match e {
            AuditAccessError::Store(e) => Self::Store(e),
            AuditAccessError::Corrupt(detail) => {
                Self::Store(steward_store::StoreError::Conflict(detail))
            }
        }
    }
}

impl ArchiveAnchor {
    /// The `meta` key of an instance's anchor.
    pub fn meta_key(instance_id: &str) -> String {
        format!("audit.archive.{instance_id}")
    }

    /// First sequence number still stored.
    pub fn cut(&self) -> i64 {
        i64::try_from(self.frontier.size()).unwrap_or(i64::MAX)
    }

    /// The anchor of `instance_id`, if records were archived.
    pub async fn load(store: &Store, instance_id: &str) -> Result<Option<Self>, AuditAccessError> {
        let Some(text) = store.meta_get(&Self::meta_key(instance_id)).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| AuditAccessError::Corrupt(format!("archive anchor: {e}")))
    }
}

/// Leaf hashes (`SHA-256(0x00 || record hash)`) of records `from..to` of a chain.
pub async fn leaf_hashes(
    store: &Store,
    instance_id: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, AuditAccessError> {
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    let to = i64::try_from(to).unwrap_or(i64::MAX);
    let rows = store.audit_hash_range(instance_id, from, to).await?;
    let mut out = Vec::with_capacity(rows.len());
    for h in &rows {
        let h: Hash = h
            .as_slice()
            .try_into()
            .map_err(|_| AuditAccessError::Corrupt("malformed stored hash".into()))?;
        out.push(steward_audit::merkle::leaf_hash(&h));
    }
    if i64::try_from(out.len()).ok() != to.checked_sub(from) {
        return Err(AuditAccessError::Corrupt(format!(
            "records {from}..{to} are not all stored"
        )));
    }
    Ok(out)
}

/// The signed checkpoints of a chain, oldest first.
pub async fn checkpoints(
    store: &Store,
    instance_id: &str,
) -> Result<Vec<Checkpoint>, AuditAccessError> {
    store
        .audit_checkpoints(instance_id)
        .await?
        .iter()
        .map(|(_, body)| {
            Checkpoint::from_json(body).map_err(|e| AuditAccessError::Corrupt(e.to_string()))
        })
        .collect()
}

/// Re-verifies a stored chain from its archive anchor (or genesis) against its stored
/// checkpoints signed by `public_key` (none are compared when it is empty).
pub async fn verify_chain(
    store: &Store,
    instance_id: &str,
    public_key: &[u8],
) -> Result<VerifyReport, AuditAccessError> {
    let anchor = ArchiveAnchor::load(store, instance_id).await?;
    let checkpoints = if public_key.is_empty() {
        Vec::new()
    } else {
        checkpoints(store, instance_id).await?
    };
    let (mut verifier, mut from) = match anchor {
        Some(a) => {
            let from = a.cut();
            (
                LogVerifier::from_frontier(&checkpoints, public_key, a.frontier, a.chain_head),
                from,
            )
        }
        None => (LogVerifier::new(&checkpoints, public_key), 0),
    };
    loop {
        let rows = store.audit_range(instance_id, from, 5000).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            match from_row(row) {
                Ok(record) => verifier.push(&record),
                Err(e) => verifier.push_unparseable(e),
            }
            from = row.seq.saturating_add(1);
        }
    }
    Ok(verifier.finish())
}

/// The `meta` key holding the sequence number up to which a chain's open intents were
/// already closed at an earlier start.
fn recovery_key(instance_id: &str) -> String {
    format!("audit.recovered_upto.{instance_id}")
}

/// Closes the intents a crashed process left open: every allowed decision record of this
/// chain written since the last start that has no outcome record gets an
/// `outcome_unknown` outcome record. Runs at startup, before any request is served, so
/// no call of this process can be in flight. Returns the number of records written.
pub async fn recover_open_intents(
    store: &Store,
    writer: &steward_audit::AuditWriter,
    instance_id: &str,
    now_ms: i64,
) -> Result<usize, crate::runtime::RuntimeError> {
    let start: i64 = store
        .meta_get(&recovery_key(instance_id))
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = match ArchiveAnchor::load(store, instance_id).await? {
        Some(anchor) => start.max(anchor.cut()),
        None => start,
    };
    let mut records = Vec::new();
    let mut from = start;
    loop {
        let rows = store.audit_range(instance_id, from, 5000).await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            records.push(from_row(row).map_err(AuditAccessError::Corrupt)?);
            from = row.seq.saturating_add(1);
        }
    }
    let open: Vec<steward_audit::AuditEvent> =
        steward_audit::recovery::intents_without_outcome(&records)
            .into_iter()
            .map(|record| steward_audit::recovery::outcome_unknown_event(&record.event))
            .collect();
    let count = open.len();
    for event in open {
        writer.append(event, now_ms).await?;
    }
    store
        .meta_set(
            &recovery_key(instance_id),
            &writer.head().tree_size.to_string(),
        )
        .await?;
    Ok(count)
}
