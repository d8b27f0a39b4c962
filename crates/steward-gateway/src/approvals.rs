//! Human approvals: creation (coalesced, rate-limited), decisions (single-use, quorum,
//! segregation of duties) and consumption bound to the request digest.
//!
//! The rules themselves are pure functions of a record, the decider and `now`
//! ([`effective_status`], [`check_use`], [`apply_verdict`]), so they are tested with a
//! controlled clock; the async functions around them load, audit and compare-and-set.

use std::time::Duration;

use serde_json::{Value, json};
use steward_audit::{Actor, ActorKind, AuditEvent, EventKind};
use steward_policy::Decision;
use steward_store::StoreError;
use steward_store::models::ApprovalRecord;

use crate::pipeline::{CallMeta, Caller, ResolvedCall};
use crate::runtime::{Runtime, RuntimeError, new_id};

/// `body.kind` of an approval that guards a just-in-time elevation rather than one call.
pub const KIND_ELEVATION: &str = "elevation";

/// The audit kind written when a pending request passes its expiry.
pub const EVENT_APPROVAL_EXPIRED: &str = "approval_expired";

/// Creates (or coalesces into) a pending approval request and audits it.
pub async fn request(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    decision: &Decision,
) -> Result<ApprovalRecord, RuntimeError> {
    let now = rt.now_ms();
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
            "kind": "call",
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
    let (record, created) = create_or_coalesce(rt, candidate).await?;
    if created {
        let mut event = AuditEvent::new(EventKind::ApprovalRequested, caller.actor());
        event.request_id = Some(meta.request_id.clone());
        event.operation = Some(record.operation.clone());
        event.request_digest = Some(record.digest.clone());
        event.approval_id = Some(record.id.clone());
        event.detail =
            json!({"kind": "call", "quorum": record.quorum, "expires_at": record.expires_at});
        rt.audit(event).await?;
        crate::notify::approval_requested(rt, &record);
    }
    Ok(record)
}

/// Stores `candidate` unless a pending request for the same identity and digest exists
/// (then that one is returned, `false`). New requests count against the identity's
/// hourly limit; a duplicate of a pending request costs nothing and is never refused.
pub async fn create_or_coalesce(
    rt: &Runtime,
    candidate: ApprovalRecord,
) -> Result<(ApprovalRecord, bool), RuntimeError> {
    let now = candidate.requested_at;
    let hour_ago = now.saturating_sub(3_600_000);
    let recent = rt
        .store
        .approval_count_since(&candidate.identity_id, hour_ago)
        .await?;
    if recent < rt.settings.max_approval_requests_per_hour {
        return Ok(rt.store.approval_create_or_coalesce(&candidate).await?);
    }
    let existing = rt
        .store
        .approval_pending_for(&candidate.identity_id, &candidate.digest, now)
        .await?;
    match existing {
        Some(existing) => Ok((existing, false)),
        None => {
            // Flooding is itself worth a record: someone may be probing for a tired approver.
            let mut event = AuditEvent::new(
                EventKind::ApprovalRequested,
                Actor::new(ActorKind::Identity, candidate.identity_id.clone()),
            );
            event.operation = Some(candidate.operation.clone());
            event.request_digest = Some(candidate.digest.clone());
            event.detail = json!({"rejected": "rate_limited", "recent": recent, "limit": rt.settings.max_approval_requests_per_hour});
            rt.audit(event).await?;
            Err(RuntimeError::RateLimited(format!(
                "too many approval requests from this identity ({recent} in the last hour)"
            )))
        }
    }
}

/// The status of `record` at `now`: a pending request past its expiry is `expired` even
/// before the background sweep has written that down.
pub fn effective_status(record: &ApprovalRecord, now: i64) -> &str {
    if record.status == "pending" && record.expires_at <= now {
        "expired"
    } else {
        record.status.as_str()
    }
}

/// The record as callers should see it at `now` (status made effective).
pub fn present(mut record: ApprovalRecord, now: i64) -> ApprovalRecord {
    let status = effective_status(&record, now).to_owned();
    record.status = status;
    record
}

fn kind(record: &ApprovalRecord) -> &str {
    record
        .body
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("call")
}

/// Why an approval cannot be used for a request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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

/// Whether `record` may authorize the call of `identity_id` with `digest` at `now`.
pub fn check_use(
    record: &ApprovalRecord,
    identity_id: &str,
    digest: &str,
    now: i64,
) -> Result<(), ApprovalUseError> {
    if record.identity_id != identity_id {
        return Err(ApprovalUseError::WrongIdentity);
    }
    if kind(record) == KIND_ELEVATION {
        // An elevation is used through its grant, never presented on a call.
        return Err(ApprovalUseError::NotApproved(
            "an elevation, not a call approval".into(),
        ));
    }
    if !steward_core::constant_time_eq(record.digest.as_bytes(), digest.as_bytes()) {
        return Err(ApprovalUseError::DigestMismatch);
    }
    match effective_status(record, now) {
        "approved" => {}
        "used" => return Err(ApprovalUseError::AlreadyUsed),
        "expired" => return Err(ApprovalUseError::Expired),
        other => return Err(ApprovalUseError::NotApproved(other.to_owned())),
    }
    if record.expires_at <= now {
        return Err(ApprovalUseError::Expired);
    }
    Ok(())
}

/// Marks an approved request used, exactly once, if it matches identity and digest.
pub async fn consume(
    rt: &Runtime,
    id: &str,
    identity_id: &str,
    digest: &str,
) -> Result<(), ApprovalUseError> {
    let now = rt.now_ms();
    let mut record = rt
        .store
        .approval_get(id)
        .await
        .map_err(|_| ApprovalUseError::Store)?
        .ok_or(ApprovalUseError::NotFound)?;
    check_use(&record, identity_id, digest, now)?;
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
            let status = effective_status(&record, rt.now_ms());
            if status != "pending" {
                return Some(status.to_owned());
            }
        }
        // Other instances decide through the shared store: poll as well as listen.
        let step = tokio::time::sleep_until(
            deadline.min(tokio::time::Instant::now() + Duration::from_millis(500)),
        );
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

/// Why a verdict cannot be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictError {
    /// A segregation-of-duties rule forbids it; the attempt is audited.
    Violation(String),
    /// The request is no longer open (decided, used, expired).
    Closed(String),
}

/// Who decides, and what the deployment allows.
#[derive(Debug, Clone, Copy)]
pub struct Decider<'a> {
    /// The approver's principal (a human or team name).
    pub principal: &'a str,
    /// The approver's admin role.
    pub role: &'a str,
    /// Whether owners may approve requests of identities they own.
    pub allow_owner_approval: bool,
}

/// Applies a verdict to `record` at `now` under the segregation-of-duties rules:
/// only `admin` and `approver` decide; an owner may not approve requests of identities
/// they own unless allowed (denying is always allowed); a quorum counts distinct approvers; one denial denies.
/// Returns the updated record (status `approved` once the quorum is reached).
pub fn apply_verdict(
    record: &ApprovalRecord,
    who: Decider<'_>,
    verdict: &Verdict,
    now: i64,
) -> Result<ApprovalRecord, VerdictError> {
    if who.role != "admin" && who.role != "approver" {
        return Err(VerdictError::Violation(format!(
            "role `{}` may not decide approvals",
            who.role
        )));
    }
    match effective_status(record, now) {
        "pending" => {}
        "expired" => {
            return Err(VerdictError::Closed(format!(
                "approval `{}` has expired",
                record.id
            )));
        }
        other => {
            return Err(VerdictError::Closed(format!(
                "approval `{}` is already {other}",
                record.id
            )));
        }
    }
    let owner = record
        .body
        .get("owner")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Stopping one's own identity is always allowed; approving it is the conflict of interest.
    if verdict.approve && !who.allow_owner_approval && !owner.is_empty() && owner == who.principal {
        return Err(VerdictError::Violation(format!(
            "`{}` owns the requesting identity and may not approve its requests",
            who.principal
        )));
    }
    let mut decisions: Vec<Value> = record
        .body
        .get("decisions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if decisions
        .iter()
        .any(|d| d.get("by").and_then(Value::as_str) == Some(who.principal))
    {
        return Err(VerdictError::Violation(format!(
            "`{}` already decided; a quorum needs distinct approvers",
            who.principal
        )));
    }
    decisions.push(json!({"by": who.principal, "role": who.role, "approve": verdict.approve, "reason": verdict.reason, "at": now}));
    let approvals = decisions
        .iter()
        .filter(|d| d.get("approve") == Some(&Value::Bool(true)))
        .count();
    let mut next = record.clone();
    if !verdict.approve {
        next.status = "denied".into();
        next.decided_at = Some(now);
    } else if i64::try_from(approvals).unwrap_or(i64::MAX) >= record.quorum {
        next.status = "approved".into();
        next.decided_at = Some(now);
    }
    if let Some(obj) = next.body.as_object_mut() {
        obj.insert("decisions".into(), Value::Array(decisions));
    }
    Ok(next)
}

/// The approvers of a record so far.
pub fn approvers(record: &ApprovalRecord) -> Vec<String> {
    record
        .body
        .get("decisions")
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter(|d| d.get("approve") == Some(&Value::Bool(true)))
                .filter_map(|d| d.get("by").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Records a human decision. Exactly one of several concurrent deciders wins; quorum
/// needs distinct approvers; owners may not approve their own identities by default.
/// Rule violations are refused and audited.
pub async fn decide(
    rt: &Runtime,
    id: &str,
    approver: &str,
    approver_role: &str,
    verdict: Verdict,
) -> Result<ApprovalRecord, RuntimeError> {
    let now = rt.now_ms();
    let actor = Actor::new(ActorKind::Admin, approver);
    // The role rule comes first, so a role that may not decide learns nothing about the id.
    let record = if approver_role == "admin" || approver_role == "approver" {
        rt.store
            .approval_get(id)
            .await?
            .ok_or_else(|| RuntimeError::NotFound(format!("approval `{id}` does not exist")))?
    } else {
        ApprovalRecord {
            id: id.to_owned(),
            identity_id: String::new(),
            operation: String::new(),
            digest: String::new(),
            body: json!({}),
            status: "pending".into(),
            quorum: 1,
            requested_at: now,
            expires_at: i64::MAX,
            decided_at: None,
            used_at: None,
            version: 0,
        }
    };
    let who = Decider {
        principal: approver,
        role: approver_role,
        allow_owner_approval: rt.settings.allow_owner_approval,
    };
    let updated = match apply_verdict(&record, who, &verdict, now) {
        Ok(updated) => updated,
        Err(VerdictError::Closed(why)) => return Err(RuntimeError::Conflict(why)),
        Err(VerdictError::Violation(why)) => {
            let mut event = AuditEvent::new(EventKind::ApprovalDecision, actor);
            event.approval_id = Some(id.to_owned());
            if !record.operation.is_empty() {
                event.operation = Some(record.operation.clone());
            }
            event.reason = Some(verdict.reason.clone());
            event.detail =
                json!({"rejected": why, "approve": verdict.approve, "role": approver_role});
            rt.audit(event).await?;
            return Err(RuntimeError::Forbidden(why));
        }
    };
    // Audit first: a decision that cannot be audited is not taken.
    let mut event = AuditEvent::new(EventKind::ApprovalDecision, actor.clone());
    event.approval_id = Some(id.to_owned());
    event.operation = Some(record.operation.clone());
    event.request_digest = Some(record.digest.clone());
    event.reason = Some(verdict.reason.clone());
    event.detail = json!({"approve": verdict.approve, "status": updated.status, "role": approver_role, "similar_for_secs": verdict.similar_for_secs});
    rt.audit(event).await?;
    if let Err(e) = rt.store.approval_update_cas(&updated, record.version).await {
        if matches!(e, StoreError::Conflict(_)) {
            // The intent above was recorded; say that it did not take effect.
            let mut event = AuditEvent::new(EventKind::ApprovalDecision, actor);
            event.approval_id = Some(id.to_owned());
            event.detail = json!({"rejected": "conflict: decided concurrently by someone else; this decision was not applied"});
            rt.audit(event).await?;
            return Err(RuntimeError::Conflict(format!(
                "approval `{id}` was decided concurrently by someone else"
            )));
        }
        return Err(e.into());
    }
    let mut decided = updated;
    decided.version = record.version.saturating_add(1);
    if kind(&decided) == KIND_ELEVATION {
        match decided.status.as_str() {
            "approved" => {
                crate::elevation::activate(rt, &decided).await?;
            }
            "denied" => crate::elevation::refuse(rt, &decided, approver).await?,
            _ => {}
        }
    } else if let Some(secs) = verdict
        .similar_for_secs
        .filter(|s| *s > 0 && decided.status == "approved")
    {
        crate::grants::approve_similar(rt, &decided, approver, secs).await?;
    }
    let _ = rt.approval_events.send(decided.id.clone());
    Ok(decided)
}

/// Marks pending requests past their expiry `expired` (audited), and expires the pending
/// grants of expired elevation requests. Returns how many were marked.
pub async fn expire_due(rt: &Runtime) -> Result<usize, RuntimeError> {
    let now = rt.now_ms();
    let mut marked = 0;
    for record in rt.store.approval_list(Some("pending"), 1000).await? {
        if record.expires_at > now {
            continue;
        }
        let mut event = AuditEvent::new(
            EventKind::Other(EVENT_APPROVAL_EXPIRED.into()),
            Actor::system(),
        );
        event.approval_id = Some(record.id.clone());
        event.operation = Some(record.operation.clone());
        event.request_digest = Some(record.digest.clone());
        event.detail = json!({"expires_at": record.expires_at, "kind": kind(&record)});
        rt.audit(event).await?;
        let mut expired = record.clone();
        expired.status = "expired".into();
        expired.decided_at = Some(now);
        match rt.store.approval_update_cas(&expired, record.version).await {
            Ok(()) => {
                marked += 1;
                if kind(&expired) == KIND_ELEVATION {
                    crate::elevation::expire_pending(rt, &expired).await?;
                }
                let _ = rt.approval_events.send(expired.id.clone());
            }
            // Decided in the meantime: the decision stands.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use steward_core::{Clock, ManualClock};

    use super::*;

    fn pending(clock: &ManualClock, quorum: i64, owner: &str) -> ApprovalRecord {
        let now = clock.now_millis();
        ApprovalRecord {
            id: "apr_1".into(),
            identity_id: "idn_a".into(),
            operation: "s:o".into(),
            digest: "d1".into(),
            body: json!({"kind": "call", "owner": owner, "decisions": []}),
            status: "pending".into(),
            quorum,
            requested_at: now,
            expires_at: now + 3_600_000,
            decided_at: None,
            used_at: None,
            version: 0,
        }
    }

    fn approve(reason: &str) -> Verdict {
        Verdict {
            approve: true,
            reason: reason.into(),
            similar_for_secs: None,
        }
    }

    fn by<'a>(principal: &'a str, role: &'a str) -> Decider<'a> {
        Decider {
            principal,
            role,
            allow_owner_approval: false,
        }
    }

    fn clock() -> ManualClock {
        ManualClock::new("2026-03-01T09:00:00Z".parse().unwrap())
    }

    #[test]
    fn a_pending_request_expires_at_its_deadline_without_a_sweep() {
        let clock = clock();
        let record = pending(&clock, 1, "alice");
        clock.advance_millis(3_600_000 - 1);
        assert_eq!(effective_status(&record, clock.now_millis()), "pending");
        assert!(
            apply_verdict(
                &record,
                by("bob", "approver"),
                &approve("ok"),
                clock.now_millis()
            )
            .is_ok()
        );
        clock.advance_millis(1);
        assert_eq!(effective_status(&record, clock.now_millis()), "expired");
        let err = apply_verdict(
            &record,
            by("bob", "approver"),
            &approve("late"),
            clock.now_millis(),
        )
        .unwrap_err();
        assert!(
            matches!(err, VerdictError::Closed(ref m) if m.contains("expired")),
            "{err:?}"
        );
    }

    #[test]
    fn an_approval_is_usable_only_before_expiry_by_its_identity_and_digest() {
        let clock = clock();
        let mut record = pending(&clock, 1, "alice");
        let now = clock.now_millis();
        assert_eq!(
            check_use(&record, "idn_a", "d1", now),
            Err(ApprovalUseError::NotApproved("pending".into()))
        );
        record = apply_verdict(&record, by("bob", "approver"), &approve("ok"), now).unwrap();
        assert_eq!(record.status, "approved");
        assert_eq!(check_use(&record, "idn_a", "d1", now), Ok(()));
        assert_eq!(
            check_use(&record, "idn_b", "d1", now),
            Err(ApprovalUseError::WrongIdentity)
        );
        assert_eq!(
            check_use(&record, "idn_a", "d2", now),
            Err(ApprovalUseError::DigestMismatch)
        );
        clock.advance_secs(3600);
        assert_eq!(
            check_use(&record, "idn_a", "d1", clock.now_millis()),
            Err(ApprovalUseError::Expired)
        );
        record.status = "used".into();
        assert_eq!(
            check_use(&record, "idn_a", "d1", now),
            Err(ApprovalUseError::AlreadyUsed)
        );
    }

    #[test]
    fn only_approvers_and_admins_decide() {
        let clock = clock();
        let record = pending(&clock, 1, "alice");
        for role in ["auditor", "owner", "nobody"] {
            let err = apply_verdict(&record, by("eve", role), &approve("x"), clock.now_millis())
                .unwrap_err();
            assert!(matches!(err, VerdictError::Violation(_)), "{role}: {err:?}");
        }
        for role in ["approver", "admin"] {
            assert!(
                apply_verdict(&record, by("eve", role), &approve("x"), clock.now_millis()).is_ok(),
                "{role}"
            );
        }
    }

    #[test]
    fn owners_may_not_decide_for_their_identities_unless_allowed() {
        let clock = clock();
        let record = pending(&clock, 1, "alice");
        let now = clock.now_millis();
        assert!(matches!(
            apply_verdict(&record, by("alice", "admin"), &approve("mine"), now),
            Err(VerdictError::Violation(_))
        ));
        let allowed = Decider {
            allow_owner_approval: true,
            ..by("alice", "admin")
        };
        assert_eq!(
            apply_verdict(&record, allowed, &approve("mine"), now)
                .unwrap()
                .status,
            "approved"
        );
        // An identity without an owner is not "owned" by an empty principal.
        let deny = Verdict {
            approve: false,
            reason: "stop it".into(),
            similar_for_secs: None,
        };
        assert_eq!(
            apply_verdict(&record, by("alice", "admin"), &deny, now)
                .unwrap()
                .status,
            "denied",
            "owners may always deny"
        );
        let unowned = pending(&clock, 1, "");
        assert!(apply_verdict(&unowned, by("", "admin"), &approve("x"), now).is_ok());
    }

    #[test]
    fn a_quorum_needs_distinct_approvers_and_one_denial_denies() {
        let clock = clock();
        let record = pending(&clock, 2, "alice");
        let now = clock.now_millis();
        let once = apply_verdict(&record, by("bob", "approver"), &approve("1"), now).unwrap();
        assert_eq!(once.status, "pending");
        assert!(once.decided_at.is_none());
        let again = apply_verdict(&once, by("bob", "approver"), &approve("2"), now).unwrap_err();
        assert!(
            matches!(again, VerdictError::Violation(ref m) if m.contains("distinct")),
            "{again:?}"
        );
        clock.advance_secs(5);
        let twice = apply_verdict(
            &once,
            by("carol", "admin"),
            &approve("2"),
            clock.now_millis(),
        )
        .unwrap();
        assert_eq!(twice.status, "approved");
        assert_eq!(twice.decided_at, Some(clock.now_millis()));
        assert_eq!(
            approvers(&twice),
            vec!["bob".to_owned(), "carol".to_owned()]
        );
        let denied = apply_verdict(
            &once,
            by("carol", "admin"),
            &Verdict {
                approve: false,
                reason: "no".into(),
                similar_for_secs: None,
            },
            now,
        )
        .unwrap();
        assert_eq!(denied.status, "denied");
        assert!(matches!(
            apply_verdict(&denied, by("dave", "admin"), &approve("x"), now),
            Err(VerdictError::Closed(_))
        ));
    }

    #[test]
    fn elevation_approvals_cannot_be_presented_on_a_call() {
        let clock = clock();
        let mut record = pending(&clock, 1, "alice");
        record.body["kind"] = json!(KIND_ELEVATION);
        record.status = "approved".into();
        assert!(matches!(
            check_use(&record, "idn_a", "d1", clock.now_millis()),
            Err(ApprovalUseError::NotApproved(_))
        ));
    }
}
