//! Just-in-time elevation: an identity (or its owner) asks for operations or services for a
//! bounded time with a justification; a human approves through the approvals workflow; the
//! pending grant then becomes active as a policy that carries its own expiry.
//!
//! Lifecycle, each step audited: `approval_requested` (kind `elevation`) →
//! `approval_decision` → `grant_activated` → calls whose decision names `grant:<id>` →
//! `grant_expired` (background sweep) → row deleted after retention.

use serde::Deserialize;
use serde_json::{Value, json};
use steward_audit::{Actor, AuditEvent, EventKind};
use steward_core::OperationName;
use steward_policy::Catalog;
use steward_store::models::{ApprovalRecord, GrantRecord, Identity};

use crate::approvals::KIND_ELEVATION;
use crate::grants::GrantBody;
use crate::runtime::{Runtime, RuntimeError, new_id, sha256_hex};

/// The body of `POST /v1/elevations` (and of the owner's admin route).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElevationInput {
    /// Operations wanted, `service:operation`.
    #[serde(default)]
    pub operations: Vec<String>,
    /// Whole services wanted.
    #[serde(default)]
    pub services: Vec<String>,
    /// How long the grant lasts once approved, in seconds.
    pub duration_secs: i64,
    /// Why it is needed; shown to approvers.
    pub justification: String,
}

/// Checks an elevation request against the catalog and the configured maximum duration.
/// Returns the operations parsed.
pub fn validate(
    input: &ElevationInput,
    catalog: &Catalog,
    max_duration_ms: i64,
) -> Result<Vec<OperationName>, RuntimeError> {
    if input.operations.is_empty() && input.services.is_empty() {
        return Err(RuntimeError::Invalid(
            "an elevation names at least one operation or service".into(),
        ));
    }
    let max_secs = max_duration_ms / 1000;
    if input.duration_secs < 1 || input.duration_secs > max_secs {
        return Err(RuntimeError::Invalid(format!(
            "`duration_secs` must be between 1 and {max_secs} (the configured maximum), not {}",
            input.duration_secs
        )));
    }
    if input.justification.trim().is_empty() {
        return Err(RuntimeError::Invalid(
            "a `justification` is required".into(),
        ));
    }
    let mut operations = Vec::new();
    for op in &input.operations {
        let name: OperationName = op
            .parse()
            .map_err(|e: String| RuntimeError::Invalid(format!("operation `{op}`: {e}")))?;
        if catalog.operation(&name).is_none() {
            return Err(RuntimeError::Invalid(format!("unknown operation `{op}`")));
        }
        operations.push(name);
    }
    for service in &input.services {
        if !catalog.services.iter().any(|s| &s.name == service) {
            return Err(RuntimeError::Invalid(format!(
                "unknown service `{service}`"
            )));
        }
    }
    Ok(operations)
}

/// Files an elevation for `identity`: a pending grant plus an approval request of kind
/// `elevation`. `requested_by` is the audit actor (the identity itself, or an owner).
/// An identical pending request is coalesced.
pub async fn request(
    rt: &Runtime,
    identity: &Identity,
    requested_by: Actor,
    input: &ElevationInput,
) -> Result<(ApprovalRecord, GrantRecord, bool), RuntimeError> {
    validate(
        input,
        rt.active_policy().compiled.catalog(),
        rt.settings.max_elevation_ms,
    )?;
    let now = rt.now_ms();
    let mut operations = input.operations.clone();
    operations.sort();
    operations.dedup();
    let mut services = input.services.clone();
    services.sort();
    services.dedup();
    let digest = sha256_hex(
        json!({"elevation": identity.id, "operations": operations, "services": services,
               "duration_secs": input.duration_secs, "justification": input.justification})
        .to_string()
        .as_bytes(),
    );
    let grant_id = new_id("grt");
    let approval_id = new_id("apr");
    let candidate = ApprovalRecord {
        id: approval_id.clone(),
        identity_id: identity.id.clone(),
        operation: "steward:elevation".into(),
        digest,
        body: json!({
            "kind": KIND_ELEVATION,
            "grant_id": grant_id,
            "identity_name": identity.name,
            "owner": identity.owner,
            "operations": operations,
            "services": services,
            "duration_secs": input.duration_secs,
            "reason": input.justification,
            "requested_by": requested_by.id,
            "decisions": [],
        }),
        status: "pending".into(),
        quorum: 1,
        requested_at: now,
        expires_at: now.saturating_add(rt.settings.approval_expiry_ms),
        decided_at: None,
        used_at: None,
        version: 0,
    };
    let (record, created) = crate::approvals::create_or_coalesce(rt, candidate).await?;
    if !created {
        let existing_grant = record
            .body
            .get("grant_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let grant = rt.store.grant_get(&existing_grant).await?.ok_or_else(|| {
            RuntimeError::NotFound(format!("grant `{existing_grant}` does not exist"))
        })?;
        return Ok((record, grant, false));
    }
    let body = GrantBody {
        kind: crate::grants::KIND_ELEVATION.into(),
        operations,
        services,
        justification: input.justification.clone(),
        duration_secs: Some(input.duration_secs),
        approval_id: Some(record.id.clone()),
        requested_by: Some(requested_by.id.clone()),
        ..GrantBody::default()
    };
    // Pending until approved; the expiry is set on activation. Until then it is not compiled.
    let grant = GrantRecord {
        id: grant_id,
        identity_id: identity.id.clone(),
        body: serde_json::to_value(&body).unwrap_or(Value::Null),
        status: "pending".into(),
        created_at: now,
        expires_at: record.expires_at,
    };
    let mut event = AuditEvent::new(EventKind::ApprovalRequested, requested_by);
    event.approval_id = Some(record.id.clone());
    event.operation = Some(record.operation.clone());
    event.request_digest = Some(record.digest.clone());
    event.resource = Some(grant.id.clone());
    event.reason = Some(input.justification.clone());
    event.detail = json!({
        "kind": KIND_ELEVATION, "grant_id": grant.id, "identity_id": identity.id,
        "operations": body.operations, "services": body.services, "duration_secs": input.duration_secs,
        "quorum": record.quorum, "expires_at": record.expires_at,
    });
    rt.audit(event).await?;
    rt.store.grant_upsert(&grant).await?;
    crate::notify::approval_requested(rt, &record);
    Ok((record, grant, true))
}

fn grant_id_of(approval: &ApprovalRecord) -> Result<String, RuntimeError> {
    approval
        .body
        .get("grant_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| RuntimeError::NotFound(format!("approval `{}` names no grant", approval.id)))
}

/// Activates the grant of an approved elevation: it lasts `duration_secs` from now.
pub async fn activate(
    rt: &Runtime,
    approval: &ApprovalRecord,
) -> Result<GrantRecord, RuntimeError> {
    let grant_id = grant_id_of(approval)?;
    let mut grant = rt
        .store
        .grant_get(&grant_id)
        .await?
        .ok_or_else(|| RuntimeError::NotFound(format!("grant `{grant_id}` does not exist")))?;
    if grant.status != "pending" {
        return Err(RuntimeError::Conflict(format!(
            "grant `{grant_id}` is {}",
            grant.status
        )));
    }
    let approvers = crate::approvals::approvers(approval);
    let mut body: GrantBody = serde_json::from_value(grant.body.clone()).unwrap_or_default();
    let secs = body.duration_secs.unwrap_or(0).max(0);
    body.approved_by = approvers.clone();
    grant.body = serde_json::to_value(&body).unwrap_or(Value::Null);
    grant.status = "active".into();
    grant.expires_at = rt.now_ms().saturating_add(secs.saturating_mul(1000));
    let by = approvers.last().cloned().unwrap_or_default();
    crate::grants::activate_record(rt, grant, &by).await
}

/// Marks the grant of a denied elevation `denied`.
pub async fn refuse(
    rt: &Runtime,
    approval: &ApprovalRecord,
    _by: &str,
) -> Result<(), RuntimeError> {
    set_pending_status(rt, approval, "denied").await
}

/// Marks the grant of an elevation whose request expired undecided `expired`.
pub async fn expire_pending(rt: &Runtime, approval: &ApprovalRecord) -> Result<(), RuntimeError> {
    set_pending_status(rt, approval, "expired").await
}

async fn set_pending_status(
    rt: &Runtime,
    approval: &ApprovalRecord,
    status: &str,
) -> Result<(), RuntimeError> {
    let grant_id = grant_id_of(approval)?;
    if let Some(mut grant) = rt.store.grant_get(&grant_id).await?
        && grant.status == "pending"
    {
        grant.status = status.to_owned();
        grant.expires_at = rt.now_ms();
        rt.store.grant_upsert(&grant).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(ops: &[&str], services: &[&str], secs: i64) -> ElevationInput {
        ElevationInput {
            operations: ops.iter().map(|s| (*s).to_owned()).collect(),
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            duration_secs: secs,
            justification: "incident 42".into(),
        }
    }

    #[test]
    fn elevations_are_bounded_and_name_known_things() {
        let catalog = Catalog::from_yaml(
            "services: [{name: pay, operations: [{name: refund, class: write}]}]",
        )
        .unwrap();
        let max = 600_000;
        assert!(validate(&input(&["pay:refund"], &[], 600), &catalog, max).is_ok());
        assert!(validate(&input(&[], &["pay"], 1), &catalog, max).is_ok());
        for bad in [
            input(&["pay:refund"], &[], 601),
            input(&["pay:refund"], &[], 0),
            input(&[], &[], 60),
            input(&["pay:nope"], &[], 60),
            input(&[], &["nope"], 60),
            ElevationInput {
                justification: " ".into(),
                ..input(&["pay:refund"], &[], 60)
            },
        ] {
            assert!(validate(&bad, &catalog, max).is_err(), "{bad:?}");
        }
    }
}
