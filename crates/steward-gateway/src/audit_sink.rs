//! Bridges the audit writer to the SQL store: one transaction per group-commit batch.

use steward_audit::{AuditRecord, AuditStore, BoxFuture, StoreError as AuditStoreError, StoreHead};
use steward_store::Store;
use steward_store::models::AuditRow;

/// The audit chain of one instance, stored in the shared database.
#[derive(Debug, Clone)]
pub struct SqlAuditStore {
    store: Store,
    instance_id: String,
}

impl SqlAuditStore {
    /// The chain of `instance_id` in `store`.
    pub fn new(store: Store, instance_id: impl Into<String>) -> Self {
        Self { store, instance_id: instance_id.into() }
    }
}

/// Converts a record to its row form.
pub fn to_row(instance_id: &str, r: &AuditRecord) -> Result<AuditRow, serde_json::Error> {
    Ok(AuditRow {
        instance_id: instance_id.to_owned(),
        seq: i64::try_from(r.seq).unwrap_or(i64::MAX),
        time_ms: r.time_ms,
        prev_hash: r.prev_hash.to_vec(),
        hash: r.hash.to_vec(),
        kind: serde_json::to_value(&r.event.kind)?
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        actor_id: Some(r.event.actor.id.clone()),
        operation: r.event.operation.clone(),
        decision: r.event.decision.map(|d| d.as_str().to_owned()),
        request_id: r.event.request_id.clone(),
        event: serde_json::to_string(&r.event)?,
    })
}

/// Converts a stored row back to a record.
pub fn from_row(row: &AuditRow) -> Result<AuditRecord, String> {
    let hash = |v: &[u8]| -> Result<[u8; 32], String> {
        v.try_into().map_err(|_| format!("record {} has a malformed hash", row.seq))
    };
    Ok(AuditRecord {
        seq: u64::try_from(row.seq).map_err(|_| "negative sequence number".to_owned())?,
        time_ms: row.time_ms,
        prev_hash: hash(&row.prev_hash)?,
        hash: hash(&row.hash)?,
        event: serde_json::from_str(&row.event).map_err(|e| format!("record {}: {e}", row.seq))?,
    })
}

impl AuditStore for SqlAuditStore {
    fn append_batch<'a>(&'a self, records: &'a [AuditRecord]) -> BoxFuture<'a, Result<(), AuditStoreError>> {
        Box::pin(async move {
            let rows = records
                .iter()
                .map(|r| to_row(&self.instance_id, r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| AuditStoreError::new(e.to_string()))?;
            self.store
                .audit_append(&rows)
                .await
                .map_err(|e| AuditStoreError::new(e.to_string()))
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<StoreHead, AuditStoreError>> {
        Box::pin(async move {
            let hashes = self
                .store
                .audit_hashes(&self.instance_id, i64::MAX)
                .await
                .map_err(|e| AuditStoreError::new(e.to_string()))?;
            let mut head = StoreHead::genesis();
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
