//! Monitoring and incident response: alerts (list, acknowledge, close), the one-command
//! quarantine with its forensic timeline, and the inventory of discovered credentials.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use steward_audit::{Actor, ActorKind, AuditEvent, EventKind};
use steward_gateway::monitoring::{self, AlertRecord};
use steward_gateway::problem::Problem;
use steward_gateway::runtime::{Runtime, RuntimeError};
use steward_store::models::{AuditQuery, Identity};

use crate::auth::AdminPrincipal;

type R = Result<Json<Value>, Problem>;

fn p(e: impl Into<RuntimeError>) -> Problem {
    e.into().to_problem()
}

/// `kv_records` kind of discovered credentials.
pub const DISCOVERED_KIND: &str = "discovered";
/// Most timeline records returned by one quarantine.
const TIMELINE_LIMIT: i64 = 50_000;

/// Query of `GET /admin/v1/alerts`.
#[derive(Deserialize, Default)]
pub struct AlertParams {
    identity: Option<String>,
    status: Option<String>,
    limit: Option<usize>,
}

/// `GET /admin/v1/alerts`: newest first; `identity` (id or name) and `status` filter.
pub async fn alert_list(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Query(q): Query<AlertParams>,
) -> R {
    let identity = match &q.identity {
        Some(i) => Some(crate::handlers::load_identity(&rt, &who, i).await?.id),
        None => None,
    };
    if let Some(s) = &q.status
        && !monitoring::ALERT_STATUSES.contains(&s.as_str())
    {
        return Err(Problem::bad_request(format!(
            "status `{s}` is not one of {}",
            monitoring::ALERT_STATUSES.join(", ")
        )));
    }
    let mut items = monitoring::list_alerts(&rt, identity.as_deref(), q.status.as_deref())
        .await
        .map_err(p)?;
    items.truncate(q.limit.unwrap_or(1000).clamp(1, 100_000));
    Ok(Json(json!({"items": items})))
}

/// `GET /admin/v1/alerts/{id}`.
pub async fn alert_show(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> R {
    let record = monitoring::get_alert(&rt, &id).await.map_err(p)?;
    Ok(Json(serde_json::to_value(record).unwrap_or_default()))
}

/// Body of the alert status changes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertNote {
    #[serde(default)]
    note: Option<String>,
}

async fn alert_transition(
    rt: &Runtime,
    who: &AdminPrincipal,
    id: &str,
    status: &str,
    note: Option<String>,
) -> R {
    let current = monitoring::get_alert(rt, id).await.map_err(p)?;
    rt.audit_admin(
        &who.principal,
        &format!("alert.{}", if status == "closed" { "close" } else { "acknowledge" }),
        id,
        json!({"identity_id": current.alert.identity_id, "from": current.status, "to": status, "note": note}),
    )
    .await
    .map_err(p)?;
    let record = monitoring::set_alert_status(rt, id, status, &who.principal, note)
        .await
        .map_err(p)?;
    Ok(Json(serde_json::to_value(record).unwrap_or_default()))
}

/// `POST /admin/v1/alerts/{id}/acknowledge`.
pub async fn alert_acknowledge(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    body: Option<Json<AlertNote>>,
) -> R {
    alert_transition(&rt, &who, &id, "acknowledged", body.and_then(|b| b.0.note)).await
}

/// `POST /admin/v1/alerts/{id}/close`.
pub async fn alert_close(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    body: Option<Json<AlertNote>>,
) -> R {
    alert_transition(&rt, &who, &id, "closed", body.and_then(|b| b.0.note)).await
}

/// The monitoring part of `GET /admin/v1/status`.
pub async fn status_section(rt: &Runtime) -> Value {
    match monitoring::summary(rt).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "monitoring summary unavailable");
            Value::Null
        }
    }
}

/// Body of `POST /admin/v1/incidents/quarantine`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineInput {
    identity: String,
    /// Start of the forensic window: RFC 3339 or milliseconds (default 24 h ago).
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// The vault secrets the identity could use: those of services where policy does not
/// definitely deny every operation (a deny for a malformed probe request counts as usable,
/// erring towards rotating too much), plus those of every service it actually called.
async fn usable_secrets(
    rt: &Runtime,
    identity: &Identity,
    called_services: &BTreeSet<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let active = rt.active_policy();
    let table = rt.service_table();
    let now = rt.clock.now();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for service in table.iter() {
        let Some(secret) = service.spec.auth.secret_name() else {
            continue;
        };
        let name = &service.spec.name;
        let mut usable = called_services.contains(name);
        if !usable
            && let Some(def) = active
                .compiled
                .catalog()
                .services
                .iter()
                .find(|s| &s.name == name)
        {
            {
                for op in &def.operations {
                    let Ok(operation) =
                        format!("{name}:{}", op.name).parse::<steward_core::OperationName>()
                    else {
                        continue;
                    };
                    let mut req = steward_policy::Request::new(
                        steward_policy::IdentityAttrs {
                            id: identity.id.clone(),
                            kind: identity.kind.clone(),
                            owner: identity.owner.clone(),
                            labels: identity.labels.clone(),
                        },
                        operation,
                        active.compiled.catalog(),
                        now,
                    );
                    req.tz = rt.settings.timezone.clone();
                    let decision = steward_policy::authorize(&active.compiled, &req);
                    let definitely_denied = matches!(
                        decision.deny_reason(),
                        Some(
                            steward_policy::DenyReason::Forbidden
                                | steward_policy::DenyReason::NoPermit
                        )
                    );
                    if !definitely_denied {
                        usable = true;
                        break;
                    }
                }
            }
        }
        if usable {
            out.entry(secret.to_owned())
                .or_default()
                .insert(name.clone());
        }
    }
    out
}

fn parse_time(text: &str) -> Result<i64, Problem> {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .or_else(|_| text.parse::<i64>())
        .map_err(|_| Problem::bad_request(format!("`{text}` is neither RFC 3339 nor milliseconds")))
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The forensic timeline: every audit record the identity made, and every record about it
/// (alerts, suspensions, admin changes), in `[since, until)`, oldest first.
async fn timeline(
    rt: &Runtime,
    identity_id: &str,
    since: i64,
    until: i64,
) -> Result<Vec<Value>, RuntimeError> {
    // Include the records this request itself just wrote (the suspension, the revocations).
    rt.audit.settled().await.map_err(RuntimeError::Audit)?;
    let query = |actor: Option<String>| AuditQuery {
        instance_id: None,
        actor_id: actor,
        operation: None,
        decision: None,
        kind: None,
        request_id: None,
        since_ms: Some(since),
        until_ms: Some(until),
        after_seq: None,
        limit: TIMELINE_LIMIT,
    };
    let mut rows = rt
        .store
        .audit_search(&query(Some(identity_id.to_owned())))
        .await?;
    for row in rt.store.audit_search(&query(None)).await? {
        if row.actor_id.as_deref() == Some(identity_id) {
            continue;
        }
        let about = serde_json::from_str::<Value>(&row.event)
            .ok()
            .is_some_and(|e| e.get("resource").and_then(Value::as_str) == Some(identity_id));
        if about {
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| {
        (a.time_ms, &a.instance_id, a.seq).cmp(&(b.time_ms, &b.instance_id, b.seq))
    });
    Ok(rows
        .into_iter()
        .map(|r| {
            let event: Value = serde_json::from_str(&r.event).unwrap_or(Value::Null);
            json!({
                "time_ms": r.time_ms,
                "time": rfc3339(r.time_ms),
                "instance_id": r.instance_id,
                "seq": r.seq,
                "hash": hex::encode(&r.hash),
                "kind": r.kind,
                "actor": r.actor_id,
                "operation": r.operation,
                "decision": r.decision,
                "request_id": r.request_id,
                "status": event.pointer("/outcome/status").cloned().unwrap_or(Value::Null),
                "bytes_out": event.pointer("/outcome/bytes_out").cloned().unwrap_or(Value::Null),
                "reason": event.get("reason").cloned().unwrap_or(Value::Null),
                "event": event,
            })
        })
        .collect())
}

/// `POST /admin/v1/incidents/quarantine`: suspends the identity, revokes its keys and
/// tokens, cancels its approvals, rotates the secrets it could use where a provider exists,
/// and returns the forensic timeline of the window. Nothing is deleted.
pub async fn quarantine(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<QuarantineInput>,
) -> R {
    let mut identity = crate::handlers::load_identity(&rt, &who, &input.identity).await?;
    if identity.status == "revoked" {
        return Err(Problem::conflict(format!(
            "identity `{}` is revoked; nothing to quarantine",
            identity.id
        )));
    }
    let now = rt.now_ms();
    let since = match &input.since {
        Some(t) => parse_time(t)?,
        None => now - 24 * 3_600_000,
    };
    if since > now {
        return Err(Problem::bad_request("`since` is in the future"));
    }
    let reason = input
        .reason
        .clone()
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| "incident quarantine".into());
    // Audited before anything changes.
    rt.audit_admin(
        &who.principal,
        "incident.quarantine",
        &identity.id,
        json!({"since_ms": since, "reason": reason, "previous": identity.status}),
    )
    .await
    .map_err(p)?;
    let mut event = AuditEvent::new(
        EventKind::Suspension,
        Actor::new(ActorKind::Admin, who.principal.clone()),
    );
    event.resource = Some(identity.id.clone());
    event.reason = Some(reason.clone());
    event.detail = json!({"by": "quarantine", "status": "suspended", "previous": identity.status});
    rt.audit(event).await.map_err(p)?;

    let previous_status = identity.status.clone();
    identity.status = "suspended".into();
    identity.status_reason = Some(format!("quarantined: {reason}"));
    // Every token issued so far stays invalid even after a later reinstatement.
    identity.tokens_valid_after = now;
    identity.updated_at = now;
    let norm = steward_core::name::normalize(&identity.name);
    rt.store
        .identity_update(&identity, &norm)
        .await
        .map_err(p)?;
    rt.tokens.suspend_identity(&identity.id);
    rt.tokens.invalidate_tokens_issued_before(&identity.id, now);
    let keys_revoked = rt
        .store
        .api_key_revoke(&identity.id, None, now)
        .await
        .map_err(p)?;
    let approvals_cancelled = rt
        .store
        .approval_cancel_pending(&identity.id, now)
        .await
        .map_err(p)?;
    rt.invalidate_identity(&identity.id);

    // Until after the records written above, so the quarantine itself is in the timeline.
    let until = rt.now_ms().saturating_add(1);
    let events = timeline(&rt, &identity.id, since, until).await.map_err(p)?;
    let called: BTreeSet<String> = events
        .iter()
        .filter_map(|e| e["operation"].as_str())
        .filter_map(|op| op.split_once(':').map(|(s, _)| s.to_owned()))
        .collect();
    let mut rotated = Vec::new();
    let mut manual = Vec::new();
    for (secret, services) in usable_secrets(&rt, &identity, &called).await {
        let record = rt.store.secret_by_name(&secret).await.map_err(p)?;
        let provider = record
            .as_ref()
            .and_then(|r| r.rotation.as_ref())
            .and_then(|j| steward_gateway::rotation::RotationPolicy::from_json(j).ok())
            .map(|policy| policy.provider.kind());
        let services: Vec<String> = services.into_iter().collect();
        match provider {
            Some(kind) if kind != "manual" => {
                let actor = Actor::new(ActorKind::Admin, who.principal.clone());
                match steward_gateway::rotation::rotate_secret(&rt, &secret, actor).await {
                    Ok(updated) => rotated.push(json!({"secret": secret, "services": services, "provider": kind, "version": updated.current_version})),
                    Err(e) => manual.push(json!({"secret": secret, "services": services, "why": format!("rotation by `{kind}` failed: {e}")})),
                }
            }
            Some(_) => manual.push(json!({"secret": secret, "services": services, "why": "its rotation policy is manual"})),
            None if record.is_none() => manual.push(json!({"secret": secret, "services": services, "why": "the secret is not in the vault"})),
            None => manual.push(json!({"secret": secret, "services": services, "why": "no rotation provider is configured"})),
        }
    }
    let alerts: Vec<AlertRecord> = monitoring::list_alerts(&rt, Some(&identity.id), None)
        .await
        .map_err(p)?
        .into_iter()
        .filter(|a| a.alert.at_ms >= since)
        .collect();
    Ok(Json(json!({
        "identity": {"id": identity.id, "name": identity.name, "kind": identity.kind, "owner": identity.owner, "labels": identity.labels,
                     "status": identity.status, "previous_status": previous_status, "status_reason": identity.status_reason},
        "quarantined_at_ms": now,
        "quarantined_at": rfc3339(now),
        "quarantined_by": who.principal,
        "reason": reason,
        "window": {"since_ms": since, "until_ms": until, "since": rfc3339(since), "until": rfc3339(until)},
        "keys_revoked": keys_revoked,
        "tokens_invalid_before_ms": now,
        "approvals_cancelled": approvals_cancelled,
        "secrets_rotated": rotated,
        "secrets_needing_manual_rotation": manual,
        "alerts": alerts,
        "timeline": events,
    })))
}

/// One finding uploaded by `steward scan --report-to`: never the secret itself.
#[derive(Deserialize)]
pub struct DiscoveredFinding {
    path: String,
    #[serde(default)]
    line: u64,
    #[serde(default)]
    commit: Option<String>,
    rule_id: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    confidence: Option<Value>,
    fingerprint: String,
    #[serde(default)]
    redacted: String,
}

/// Body of `POST /admin/v1/discovered-credentials`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredInput {
    findings: Vec<DiscoveredFinding>,
    /// Where the scan ran (host name, repository URL); prefixed to locations.
    #[serde(default)]
    source: Option<String>,
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `POST /admin/v1/discovered-credentials`: records findings keyed by fingerprint and
/// location, keeping the first-seen time and updating the last-seen time.
pub async fn discovered_report(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<DiscoveredInput>,
) -> R {
    if input.findings.len() > 100_000 {
        return Err(Problem::bad_request("at most 100000 findings per upload"));
    }
    for f in &input.findings {
        if !is_fingerprint(&f.fingerprint) {
            return Err(Problem::bad_request(format!(
                "fingerprint `{}` is not 32 lowercase hex characters",
                f.fingerprint
            )));
        }
        // A preview longer than a few characters could be the raw secret: refuse it.
        if f.redacted.chars().count() > 40 {
            return Err(Problem::bad_request(
                "`redacted` is too long to be a redacted preview",
            ));
        }
    }
    let source = input.source.clone().unwrap_or_default();
    rt.audit_admin(
        &who.principal,
        "discovered.report",
        "discovered-credentials",
        json!({"findings": input.findings.len(), "source": source}),
    )
    .await
    .map_err(p)?;
    let now = rt.now_ms();
    let (mut created, mut updated) = (0u64, 0u64);
    for f in input.findings {
        let mut location = if source.is_empty() {
            f.path.clone()
        } else {
            format!("{source}:{}", f.path)
        };
        if f.line > 0 {
            location.push_str(&format!(":{}", f.line));
        }
        if let Some(commit) = &f.commit {
            location.push_str(&format!("@{commit}"));
        }
        let id = steward_gateway::runtime::sha256_hex(
            format!("{}\0{location}", f.fingerprint).as_bytes(),
        );
        let id = id.get(..32).unwrap_or(&id).to_owned();
        let first_seen = match rt.store.kv_get(DISCOVERED_KIND, &id).await.map_err(p)? {
            Some(existing) => {
                updated += 1;
                existing
                    .body
                    .get("first_seen_ms")
                    .and_then(Value::as_i64)
                    .unwrap_or(now)
            }
            None => {
                created += 1;
                now
            }
        };
        let body = json!({
            "id": id,
            "fingerprint": f.fingerprint,
            "location": location,
            "path": f.path,
            "line": f.line,
            "commit": f.commit,
            "source": source,
            "rule_id": f.rule_id,
            "provider": f.provider,
            "kind": f.kind,
            "confidence": f.confidence,
            "redacted": f.redacted,
            "first_seen_ms": first_seen,
            "last_seen_ms": now,
            "reported_by": who.principal,
        });
        rt.store
            .kv_put(DISCOVERED_KIND, &id, &body, now)
            .await
            .map_err(p)?;
    }
    Ok(Json(json!({"created": created, "updated": updated})))
}

/// Query of `GET /admin/v1/discovered-credentials`.
#[derive(Deserialize, Default)]
pub struct DiscoveredParams {
    /// `managed` or `unmanaged`.
    status: Option<String>,
}

/// `GET /admin/v1/discovered-credentials`: each with `managed` and, when managed, the vault
/// secret whose current value has the same fingerprint.
pub async fn discovered_list(
    State(rt): State<Arc<Runtime>>,
    Query(q): Query<DiscoveredParams>,
) -> R {
    let managed: BTreeMap<String, String> = rt
        .store
        .secret_list()
        .await
        .map_err(p)?
        .into_iter()
        .filter(|s| !s.fingerprint.is_empty())
        .map(|s| (s.fingerprint, s.name))
        .collect();
    let mut items = Vec::new();
    for row in rt
        .store
        .kv_list(DISCOVERED_KIND, 1_000_000)
        .await
        .map_err(p)?
    {
        let mut body = row.body;
        let secret = body
            .get("fingerprint")
            .and_then(Value::as_str)
            .and_then(|f| managed.get(f))
            .cloned();
        let is_managed = secret.is_some();
        match q.status.as_deref() {
            Some("managed") if !is_managed => continue,
            Some("unmanaged") if is_managed => continue,
            _ => {}
        }
        let first_seen = body
            .get("first_seen_ms")
            .and_then(Value::as_i64)
            .map(rfc3339);
        let last_seen = body
            .get("last_seen_ms")
            .and_then(Value::as_i64)
            .map(rfc3339);
        if let Some(obj) = body.as_object_mut() {
            obj.insert("managed".into(), json!(is_managed));
            obj.insert("managed_secret".into(), json!(secret));
            obj.insert("first_seen".into(), json!(first_seen));
            obj.insert("last_seen".into(), json!(last_seen));
        }
        items.push(body);
    }
    let key = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    items.sort_by(|a, b| {
        key(b, "last_seen_ms")
            .as_i64()
            .cmp(&key(a, "last_seen_ms").as_i64())
            .then_with(|| {
                key(a, "location")
                    .as_str()
                    .cmp(&key(b, "location").as_str())
            })
    });
    let unmanaged = items
        .iter()
        .filter(|i| i.get("managed") == Some(&Value::Bool(false)))
        .count();
    Ok(Json(
        json!({"items": items, "managed": items.len() - unmanaged, "unmanaged": unmanaged}),
    ))
}
