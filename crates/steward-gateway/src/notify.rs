//! Outbound notifications (approval webhooks), delivered in the background with retries.

use steward_store::models::ApprovalRecord;

use crate::runtime::Runtime;

/// Queues the "new approval request" notification, if a webhook is configured.
pub fn approval_requested(rt: &Runtime, record: &ApprovalRecord) {
    if let Some(tx) = &rt.notifier {
        let _ = tx.try_send(serde_json::json!({
            "type": "approval_requested",
            "approval_id": record.id,
            "identity_id": record.identity_id,
            "operation": record.operation,
            "expires_at": record.expires_at,
            "quorum": record.quorum,
            "summary": record.body,
        }));
    }
}
