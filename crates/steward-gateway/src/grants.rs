//! Time-bound grants (just-in-time elevation, "approve similar") as policy inputs.
//!
//! A grant is stored as a row and compiled into the policy set as `grant:<id>`, a permit
//! whose condition carries its expiry (`context.now_ms < expiry`), so it stops matching at
//! expiry even if nothing cleans up. [`sweep`] later marks expired grants, audits that and
//! drops them from the compiled set; rows are deleted after a retention period.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steward_audit::{Actor, ActorKind, AuditEvent, EventKind};
use steward_core::OperationName;
use steward_policy::{ArgType, Catalog, Decision};
use steward_store::models::{ApprovalRecord, GrantRecord};

use crate::runtime::{Runtime, RuntimeError, new_id};

/// `kind` of a grant made by just-in-time elevation.
pub const KIND_ELEVATION: &str = "elevation";
/// `kind` of a grant made by "approve similar for T".
pub const KIND_APPROVE_SIMILAR: &str = "approve_similar";
/// Audit kind: a grant became active.
pub const EVENT_GRANT_ACTIVATED: &str = "grant_activated";
/// Audit kind: a grant passed its expiry and was taken out of the policy set.
pub const EVENT_GRANT_EXPIRED: &str = "grant_expired";
/// Audit kind: a call was pre-approved by an "approve similar" grant.
pub const EVENT_GRANT_USED: &str = "grant_used";

/// What a grant record's body holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GrantBody {
    /// `elevation` or `approve_similar`.
    #[serde(default)]
    pub kind: String,
    /// Operations granted, `service:operation`.
    #[serde(default)]
    pub operations: Vec<String>,
    /// Whole services granted.
    #[serde(default)]
    pub services: Vec<String>,
    /// Argument constraints (approve similar).
    #[serde(default)]
    pub arg_equals: BTreeMap<String, Value>,
    /// Why it was requested.
    #[serde(default)]
    pub justification: String,
    /// Who approved it.
    #[serde(default)]
    pub approved_by: Vec<String>,
    /// Requested length (elevation), applied from the moment of approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<i64>,
    /// The approval request that guards (or created) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// Who asked: the identity itself or an owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
}

/// Whether a grant is in force at `now`. The compiled policy enforces the same expiry on
/// its own; this is for listings and the sweep.
pub fn is_live(g: &GrantRecord, now: i64) -> bool {
    g.status == "active" && g.expires_at > now
}

/// Converts a stored grant into the policy engine's form; the expiry is embedded so an
/// expired grant stops matching even if nothing removes it.
pub fn to_policy_grant(g: &GrantRecord) -> Result<steward_policy::Grant, String> {
    let body: GrantBody = serde_json::from_value(g.body.clone()).map_err(|e| e.to_string())?;
    let operations = body
        .operations
        .iter()
        .map(|o| o.parse::<OperationName>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(steward_policy::Grant {
        id: g.id.clone(),
        identity_id: g.identity_id.clone(),
        operations,
        services: body.services,
        expires_at: steward_core::time::from_millis(g.expires_at),
        arg_equals: body.arg_equals,
    })
}

/// The argument constraints of an "approve similar" grant: every argument of the approved
/// request that the catalog declares as a string, long or bool, except redacted (sensitive)
/// values, which cannot be compared.
pub fn similar_constraints(
    catalog: &Catalog,
    operation: &OperationName,
    redacted_args: &Value,
) -> BTreeMap<String, Value> {
    let Some(def) = catalog.operation(operation) else {
        return BTreeMap::new();
    };
    let Some(args) = redacted_args.as_object() else {
        return BTreeMap::new();
    };
    args.iter()
        .filter(|(name, value)| {
            let declared = def
                .args
                .iter()
                .find(|a| &a.name == *name)
                .map(|a| a.arg_type);
            match (declared, value) {
                (Some(ArgType::String), Value::String(s)) => {
                    !s.starts_with(steward_audit::redact::HMAC_PREFIX)
                }
                (Some(ArgType::Long), Value::Number(n)) => n.is_i64(),
                (Some(ArgType::Bool), Value::Bool(_)) => true,
                _ => false,
            }
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Creates the "approve similar for `secs`" grant after `approval` was approved: same
/// identity, operation and comparable arguments, active at once.
pub async fn approve_similar(
    rt: &Runtime,
    approval: &ApprovalRecord,
    approver: &str,
    secs: i64,
) -> Result<GrantRecord, RuntimeError> {
    let now = rt.now_ms();
    let operation: OperationName = approval
        .operation
        .parse()
        .map_err(|e: String| RuntimeError::Invalid(e))?;
    let args = approval.body.get("args").cloned().unwrap_or(Value::Null);
    let arg_equals = similar_constraints(rt.active_policy().compiled.catalog(), &operation, &args);
    let body = GrantBody {
        kind: KIND_APPROVE_SIMILAR.into(),
        operations: vec![approval.operation.clone()],
        arg_equals,
        justification: format!("approve similar from {}", approval.id),
        approved_by: crate::approvals::approvers(approval),
        approval_id: Some(approval.id.clone()),
        requested_by: Some(approver.to_owned()),
        ..GrantBody::default()
    };
    let grant = GrantRecord {
        id: new_id("grt"),
        identity_id: approval.identity_id.clone(),
        body: serde_json::to_value(&body).unwrap_or(Value::Null),
        status: "active".into(),
        created_at: now,
        expires_at: now.saturating_add(secs.saturating_mul(1000)),
    };
    activate_record(rt, grant, approver).await
}

/// Audits, stores and compiles in an active grant.
pub(crate) async fn activate_record(
    rt: &Runtime,
    grant: GrantRecord,
    approver: &str,
) -> Result<GrantRecord, RuntimeError> {
    let body: GrantBody = serde_json::from_value(grant.body.clone()).unwrap_or_default();
    let mut event = AuditEvent::new(
        EventKind::Other(EVENT_GRANT_ACTIVATED.into()),
        Actor::new(ActorKind::Admin, approver),
    );
    event.resource = Some(grant.id.clone());
    event.approval_id = body.approval_id.clone();
    event.detail = json!({
        "grant_id": grant.id, "identity_id": grant.identity_id, "kind": body.kind,
        "operations": body.operations, "services": body.services, "arg_equals": body.arg_equals,
        "expires_at": grant.expires_at,
    });
    rt.audit(event).await?;
    rt.store.grant_upsert(&grant).await?;
    rt.reload_policy().await?;
    Ok(grant)
}

/// The "approve similar" grant that pre-approves an approval-required call, if one of the
/// matched permits is such a grant of this identity, active and unexpired at `now`.
/// Elevation grants never lift an `@approval` forbid: they add permissions, not consent.
pub async fn pre_approval(
    rt: &Runtime,
    identity_id: &str,
    decision: &Decision,
) -> Result<Option<GrantRecord>, RuntimeError> {
    let now = rt.now_ms();
    for policy_id in decision.matched_permits() {
        let Some(grant_id) = policy_id.strip_prefix("grant:") else {
            continue;
        };
        let Some(grant) = rt.store.grant_get(grant_id).await? else {
            continue;
        };
        let body: GrantBody = serde_json::from_value(grant.body.clone()).unwrap_or_default();
        if body.kind == KIND_APPROVE_SIMILAR
            && grant.identity_id == identity_id
            && is_live(&grant, now)
        {
            return Ok(Some(grant));
        }
    }
    Ok(None)
}

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Active grants marked expired.
    pub expired: usize,
    /// Rows deleted after the retention period.
    pub deleted: usize,
}

/// Marks active grants past their expiry `expired` (audited), recompiles the policy set
/// without them, and deletes grants that ended more than `retention_ms` ago.
pub async fn sweep(rt: &Runtime, retention_ms: i64) -> Result<SweepReport, RuntimeError> {
    let now = rt.now_ms();
    let mut report = SweepReport::default();
    for mut grant in rt.store.grant_list(None).await? {
        if grant.status == "active" && grant.expires_at <= now {
            let body: GrantBody = serde_json::from_value(grant.body.clone()).unwrap_or_default();
            let mut event = AuditEvent::new(
                EventKind::Other(EVENT_GRANT_EXPIRED.into()),
                Actor::system(),
            );
            event.resource = Some(grant.id.clone());
            event.approval_id = body.approval_id.clone();
            event.detail = json!({"grant_id": grant.id, "identity_id": grant.identity_id, "kind": body.kind, "expires_at": grant.expires_at});
            rt.audit(event).await?;
            grant.status = "expired".into();
            rt.store.grant_upsert(&grant).await?;
            report.expired += 1;
        } else if grant.status != "active"
            && grant.status != "pending"
            && grant.expires_at.saturating_add(retention_ms) <= now
        {
            rt.store.grant_delete(&grant.id).await?;
            report.deleted += 1;
        }
    }
    if report.expired > 0 {
        rt.reload_policy().await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use steward_core::{Clock, ManualClock};
    use steward_policy::{
        Effect, IdentityAttrs, PolicySource, Request, authorize, compile_with_grants,
    };

    use super::*;

    fn catalog() -> Catalog {
        Catalog::from_yaml(
            "services: [{name: pay, operations: [\
               {name: refund, class: write, args: [{name: amount, type: long}, {name: currency, type: string}, {name: card, type: string}, {name: ratio, type: decimal}]},\
               {name: read, class: read}]}]",
        )
        .unwrap()
    }

    fn request(catalog: &Catalog, at: &ManualClock, args: Value) -> Request {
        let mut r = Request::new(
            IdentityAttrs {
                id: "idn_a".into(),
                ..Default::default()
            },
            "pay:refund".parse().unwrap(),
            catalog,
            at.now(),
        );
        r.args = args;
        r
    }

    #[test]
    fn a_grant_stops_matching_at_its_expiry_with_no_cleanup() {
        let clock = ManualClock::new("2026-03-01T09:00:00Z".parse().unwrap());
        let catalog = catalog();
        let record = GrantRecord {
            id: "grt_1".into(),
            identity_id: "idn_a".into(),
            body: json!({"kind": KIND_ELEVATION, "operations": ["pay:refund"]}),
            status: "active".into(),
            created_at: clock.now_millis(),
            expires_at: clock.now_millis() + 3_000,
        };
        let grant = to_policy_grant(&record).unwrap();
        // Compiled once, as a reload would; nothing recompiles it afterwards.
        let set = compile_with_grants(
            &catalog,
            &[PolicySource::new(
                "read",
                "permit(principal, action == Action::\"pay:read\", resource);",
            )],
            &[grant],
            1,
        )
        .unwrap();
        let args = json!({"amount": 5, "currency": "EUR", "card": "c", "ratio": "1.0"});
        assert_eq!(
            authorize(&set, &request(&catalog, &clock, args.clone())).effect(),
            Effect::Allow
        );
        assert!(is_live(&record, clock.now_millis()));
        clock.advance_millis(2_999);
        assert_eq!(
            authorize(&set, &request(&catalog, &clock, args.clone())).effect(),
            Effect::Allow
        );
        clock.advance_millis(1);
        assert_eq!(
            authorize(&set, &request(&catalog, &clock, args)).effect(),
            Effect::Deny
        );
        assert!(!is_live(&record, clock.now_millis()));
    }

    #[test]
    fn similar_constraints_keep_comparable_unredacted_arguments() {
        let catalog = catalog();
        let op: OperationName = "pay:refund".parse().unwrap();
        let args = json!({"amount": 500, "currency": "EUR", "card": "hmac-sha256:abcd", "ratio": "1.5", "undeclared": "x"});
        let got = similar_constraints(&catalog, &op, &args);
        assert_eq!(
            got,
            BTreeMap::from([
                ("amount".to_owned(), json!(500)),
                ("currency".to_owned(), json!("EUR"))
            ])
        );
        assert!(similar_constraints(&catalog, &"pay:unknown".parse().unwrap(), &args).is_empty());
    }

    #[test]
    fn an_approve_similar_grant_matches_only_the_same_arguments() {
        let clock = ManualClock::new("2026-03-01T09:00:00Z".parse().unwrap());
        let catalog = catalog();
        let record = GrantRecord {
            id: "grt_2".into(),
            identity_id: "idn_a".into(),
            body: json!({"kind": KIND_APPROVE_SIMILAR, "operations": ["pay:refund"], "arg_equals": {"amount": 500, "currency": "EUR"}}),
            status: "active".into(),
            created_at: clock.now_millis(),
            expires_at: clock.now_millis() + 60_000,
        };
        let set =
            compile_with_grants(&catalog, &[], &[to_policy_grant(&record).unwrap()], 1).unwrap();
        let same = json!({"amount": 500, "currency": "EUR", "card": "other", "ratio": "1.0"});
        let more = json!({"amount": 501, "currency": "EUR", "card": "other", "ratio": "1.0"});
        assert_eq!(
            authorize(&set, &request(&catalog, &clock, same)).effect(),
            Effect::Allow
        );
        assert_eq!(
            authorize(&set, &request(&catalog, &clock, more)).effect(),
            Effect::Deny
        );
    }
}
