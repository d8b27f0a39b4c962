//! Human approvals: creation (coalesced, rate-limited), decisions (single-use, quorum,
//! segregation of duties) and consumption bound to the request digest.

use std::time::Duration;

use serde_json::{Value, json};
use steward_audit::{Actor, ActorKind, AuditEvent, EventKind};
use steward_policy::Decision;
use steward_store::StoreError;
use steward_store::models::ApprovalRecord;

use crate::pipeline::{CallMeta, Caller, ResolvedCall};
use crate::runtime::{Runtime, RuntimeError, new_id};

/// Creates (or coalesces into) a pending approval request and audits it.
pub async fn request(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    decision: &Decision,
) -> Result<ApprovalRecord, RuntimeError> {
    let now = rt.now_ms();
    let hour_ago = now.saturating_sub(3_600_000);
    let recent = rt.store.approval_count_since(&caller.identity.id, hour_ago).await?;
    let reasons: Vec<Value> = decision
        .approval_requirements()
        .iter()
        .map(|r| json!({"policy_id": r.policy_id, "reason": r.reason, "approvals": r.approvals}))
        .collect();
    let candidate = ApprovalRecord {
        id: new_id("apr"),
        identity_id: caller.identity.id.clone(),
        operation: call.operation.to_string(),
        digest: call.digest.clone(),
        body: json!({
            "identity_name": caller.identity.name,
            "owner": caller.identity.owner,
            "args": rt.redactor.redact(&call.args, &call.sensitive),
            "policies": reasons,
            "reason": meta.reason,
            "request_id": meta.request_id,
            "decisions": [],
        }),
        status: "pending".into(),
        quorum: i64::from(decision.required_approvals().max(1)),
        requested_at: now,
        expires_at: now.saturating_add(rt.settings.approval_expiry_ms),
        decided_at: None,
        used_at: None,
        version: 0,
    };
    // Coalesce first: a duplicate of a pending request costs nothing and is not flooding.
    let (record, created) = if recent >= rt.settings.max_approval_requests_per_hour {
        match rt.store.approval_list(Some("pending"), 1000).await?.into_iter().find(|a| {
            a.identity_id == candidate.identity_id && a.digest == candidate.digest && a.expires_at > now
        }) {
            Some(existing) => (existing, false),
            None => {
                return Err(RuntimeError::Forbidden(format!(
                    "too many approval requests from this identity ({recent} in the last hour)"
                )));
            }
        }
    } else {
        rt.store.approval_create_or_coalesce(&candidate).await?
    };
    if created {
        let mut event = AuditEvent::new(EventKind::ApprovalRequested, caller.actor());
        event.request_id = Some(meta.request_id.clone());
        event.operation = Some(record.operation.clone());
        event.request_digest = Some(record.digest.clone());
        event.approval_id = Some(record.id.clone());
        event.detail = json!({"quorum": record.quorum, "expires_at": record.expires_at});
        rt.audit(event).await?;
        crate::notify::approval_requested(rt, &record);
    }
    Ok(record)
}

/// Why an approval cannot be used for a request.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalUseError {
    /// No such approval.
    #[error("approval not found")]
    NotFound,
    /// It belongs to another identity.
    #[error("the approval belongs to another identity")]
    WrongIdentity,
    /// It was granted for a different request.
    #[error("the approval was granted for a different request (digest mismatch)")]
    DigestMismatch,
    /// Not approved (pending, denied, expired…).
    #[error("the approval is {0}")]
    NotApproved(String),
    /// Already used.
    #[error("the approval was already used")]
    AlreadyUsed,
    /// Past its expiry.
    #[error("the approval has expired")]
    Expired,
    /// Storage failed.
    #[error("store unavailable")]
    Store,
}

/// Marks an approved request used, exactly once, if it matches identity and digest.
pub async fn consume(rt: &Runtime, id: &str, identity_id: &str, digest: &str) -> Result<(), ApprovalUseError> {
    let now = rt.now_ms();
    let mut record = rt
        .store
        .approval_get(id)
        .await
        .map_err(|_| ApprovalUseError::Store)?
        .ok_or(ApprovalUseError::NotFound)?;
    if record.identity_id != identity_id {
        return Err(ApprovalUseError::WrongIdentity);
    }
    if !steward_core::constant_time_eq(record.digest.as_bytes(), digest.as_bytes()) {
        return Err(ApprovalUseError::DigestMismatch);
    }
    match record.status.as_str() {
        "approved" => {}
        "used" => return Err(ApprovalUseError::AlreadyUsed),
        other => return Err(ApprovalUseError::NotApproved(other.to_owned())),
    }
    if record.expires_at <= now {
        return Err(ApprovalUseError::Expired);
    }
    let expected = record.version;
    record.status = "used".into();
    record.used_at = Some(now);
    // INVARIANT: compare-and-set on the version makes use single: a concurrent retry loses.
    match rt.store.approval_update_cas(&record, expected).await {
        Ok(()) => {
            let _ = rt.approval_events.send(record.id.clone());
            Ok(())
        }
        Err(StoreError::Conflict(_)) => Err(ApprovalUseError::AlreadyUsed),
        Err(_) => Err(ApprovalUseError::Store),
    }
}

/// Waits up to `wait` for a decision; returns the final status if one was reached.
pub async fn wait_for_decision(rt: &Runtime, id: &str, wait: Duration) -> Option<String> {
    let mut events = rt.approval_events.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Ok(Some(record)) = rt.store.approval_get(id).await {
            if record.status != "pending" {
                return Some(record.status);
            }
        }
        // Other instances decide through the shared store: poll as well as listen.
        let step = tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + Duration::from_millis(500)));
        tokio::select! {
            _ = events.recv() => {}
            _ = step => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
    }
}

/// A human's verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Approve or deny.
    pub approve: bool,
    /// Why.
    pub reason: String,
    /// Also grant "approve similar" for this many seconds.
    pub similar_for_secs: Option<i64>,
}

/// Records a human decision. Exactly one of several concurrent deciders wins; quorum
/// needs distinct approvers; owners may not approve their own identities by default.
pub async fn decide(
    rt: &Runtime,
    id: &str,
    approver: &str,
    approver_role: &str,
    verdict: Verdict,
) -> Result<ApprovalRecord, RuntimeError> {
    let now = rt.now_ms();
    let mut record = rt
        .store
        .approval_get(id)
        .await?
        .ok_or_else(|| RuntimeError::NotFound(format!("approval `{id}` does not exist")))?;
    let violation = |why: String| async move {
        let mut event = AuditEvent::new(EventKind::ApprovalDecision, Actor::new(ActorKind::Admin, approver));
        event.approval_id = Some(id.to_owned());
        event.detail = json!({"rejected": why});
        rt.audit(event).await?;
        Err::<ApprovalRecord, RuntimeError>(RuntimeError::Forbidden(why))
    };
    if approver_role != "admin" && approver_role != "approver" {
        return violation(format!("role `{approver_role}` may not decide approvals")).await;
    }
    if record.status != "pending" {
        return Err(RuntimeError::Conflict(format!("approval `{id}` is already {}", record.status)));
    }
    if record.expires_at <= now {
        return Err(RuntimeError::Conflict(format!("approval `{id}` has expired")));
    }
    let owner = record.body.get("owner").and_then(Value::as_str).unwrap_or_default().to_owned();
    if !rt.settings.allow_owner_approval && owner == approver {
        return violation(format!("`{approver}` owns the requesting identity and may not approve its requests")).await;
    }
    let mut decisions: Vec<Value> = record
        .body
        .get("decisions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if decisions.iter().any(|d| d.get("by").and_then(Value::as_str) == Some(approver)) {
        return violation(format!("`{approver}` already decided; a quorum needs distinct approvers")).await;
    }
    decisions.push(json!({"by": approver, "approve": verdict.approve, "reason": verdict.reason, "at": now}));
    let approvals = decisions.iter().filter(|d| d.get("approve") == Some(&Value::Bool(true))).count();
    let expected = record.version;
    if !verdict.approve {
        record.status = "denied".into();
        record.decided_at = Some(now);
    } else if i64::try_from(approvals).unwrap_or(i64::MAX) >= record.quorum {
        record.status = "approved".into();
        record.decided_at = Some(now);
    }
    if let Some(obj) = record.body.as_object_mut() {
        obj.insert("decisions".into(), Value::Array(decisions));
    }
    // Audit first: a decision that cannot be audited is not taken.
    let mut event = AuditEvent::new(EventKind::ApprovalDecision, Actor::new(ActorKind::Admin, approver));
    event.approval_id = Some(id.to_owned());
    event.operation = Some(record.operation.clone());
    event.request_digest = Some(record.digest.clone());
    event.reason = Some(verdict.reason.clone());
    event.detail = json!({"approve": verdict.approve, "status": record.status, "similar_for_secs": verdict.similar_for_secs});
    rt.audit(event).await?;
    rt.store.approval_update_cas(&record, expected).await.map_err(|e| match e {
        StoreError::Conflict(_) => RuntimeError::Conflict(format!("approval `{id}` was decided concurrently by someone else")),
        other => other.into(),
    })?;
    record.version = expected + 1;
    if verdict.approve && record.status == "approved" {
        if let Some(secs) = verdict.similar_for_secs.filter(|s| *s > 0) {
            let args = record.body.get("args").cloned().unwrap_or(Value::Null);
            let arg_equals: serde_json::Map<String, Value> = args
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| {
                            matches!(v, Value::String(s) if !s.starts_with("hmac-sha256:")) || v.is_i64() || v.is_boolean()
                        })
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let grant = steward_store::models::GrantRecord {
                id: new_id("grt"),
                identity_id: record.identity_id.clone(),
                body: json!({"operations": [record.operation], "arg_equals": arg_equals, "justification": format!("approve similar from {id}"), "approved_by": [approver], "kind": "approve_similar"}),
                status: "active".into(),
                created_at: now,
                expires_at: now.saturating_add(secs.saturating_mul(1000)),
            };
            rt.store.grant_upsert(&grant).await?;
            let _ = rt.reload_policy().await;
        }
    }
    let _ = rt.approval_events.send(record.id.clone());
    Ok(record)
}
