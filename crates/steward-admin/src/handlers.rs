//! Admin route handlers. Each mutation writes its audit record before changing anything.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use steward_audit::{Actor, ActorKind, AuditEvent, EventKind};
use steward_gateway::problem::Problem;
use steward_gateway::runtime::{Runtime, RuntimeError, new_id};
use steward_gateway::service::ServiceSpec;
use steward_store::models::{
    AdminToken, ApiKeyRecord, AuditQuery, Identity, PolicySetRecord, PolicyText, ServiceRecord,
};

use crate::auth::{AdminPrincipal, Role};

type R = Result<Json<Value>, Problem>;

fn p(e: impl Into<RuntimeError>) -> Problem {
    e.into().to_problem()
}

const KINDS: &[&str] = &[
    "ai_agent",
    "service_account",
    "bot",
    "ci_pipeline",
    "workload",
];

fn identity_json(i: &Identity) -> Value {
    serde_json::to_value(i).unwrap_or(Value::Null)
}

pub(crate) async fn load_identity(
    rt: &Runtime,
    who: &AdminPrincipal,
    id_or_name: &str,
) -> Result<Identity, Problem> {
    let found = match rt.store.identity_get(id_or_name).await.map_err(p)? {
        Some(i) => Some(i),
        None => rt
            .store
            .identity_by_name(&steward_core::name::normalize(id_or_name))
            .await
            .map_err(p)?,
    };
    let identity = found
        .ok_or_else(|| Problem::not_found(format!("identity `{id_or_name}` does not exist")))?;
    if who.role == Role::Owner && identity.owner != who.principal {
        // Owners cannot learn whether identities they do not own exist.
        return Err(Problem::not_found(format!(
            "identity `{id_or_name}` does not exist"
        )));
    }
    Ok(identity)
}

/// `GET /admin/v1/status`.
pub async fn status(State(rt): State<Arc<Runtime>>) -> R {
    let store_ok = rt.store.ping().await.is_ok();
    let now = rt.now_ms();
    let secrets = rt.store.secret_list().await.unwrap_or_default();
    let warnings: Vec<Value> = secrets
        .iter()
        .filter_map(|s| {
            let exp = s.expires_at?;
            (exp - now < 14 * 86_400_000)
                .then(|| json!({"secret": s.name, "expires_at": exp, "expired": exp <= now}))
        })
        .collect();
    let policy = rt.active_policy();
    Ok(Json(json!({
        "status": if store_ok && rt.audit_healthy.load(Ordering::Relaxed) { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "store": rt.store.backend().as_str(),
        "store_reachable": store_ok,
        "audit_writable": rt.audit_healthy.load(Ordering::Relaxed),
        "instance_id": rt.instance_id,
        "uptime_secs": rt.started.elapsed().as_secs(),
        "policy_version": policy.compiled.version(),
        "policy_last_error": policy.last_error,
        "audit_records": rt.audit.head().tree_size,
        "secret_expiry_warnings": warnings,
        "rotation_reminders": steward_gateway::rotation::reminders(&secrets, now),
        "monitoring": crate::incident::status_section(&rt).await,
    })))
}

/// `GET /healthz`: the process runs.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers and the audit log can be written.
pub async fn readyz(State(rt): State<Arc<Runtime>>) -> Response {
    let store_ok = rt.store.ping().await.is_ok();
    let audit_ok = rt.audit_healthy.load(Ordering::Relaxed);
    let code = if store_ok && audit_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({"store": store_ok, "audit": audit_ok}))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityInput {
    name: Option<String>,
    kind: Option<String>,
    owner: Option<String>,
    description: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    observe_only: Option<bool>,
}

/// `GET /admin/v1/identities`.
pub async fn identity_list(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
) -> R {
    let owner = (who.role == Role::Owner).then_some(who.principal.as_str());
    let items: Vec<Value> = rt
        .store
        .identity_list(owner)
        .await
        .map_err(p)?
        .iter()
        .map(identity_json)
        .collect();
    Ok(Json(json!({"items": items})))
}

fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), Problem> {
    for (k, v) in labels {
        let ok = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok || v.len() > 256 {
            return Err(Problem::bad_request(format!(
                "label `{k}` is invalid: keys are 1-63 of [A-Za-z0-9_.-], values at most 256 bytes"
            )));
        }
    }
    Ok(())
}

/// `POST /admin/v1/identities`.
pub async fn identity_create(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<IdentityInput>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let name = input
        .name
        .ok_or_else(|| Problem::bad_request("`name` is required"))?;
    let norm = steward_core::name::validate(&name)
        .map_err(|e| Problem::bad_request(format!("name `{name}`: {e}")))?;
    let kind = input.kind.unwrap_or_else(|| "ai_agent".into());
    if !KINDS.contains(&kind.as_str()) {
        return Err(Problem::bad_request(format!(
            "kind `{kind}` is not one of {}",
            KINDS.join(", ")
        )));
    }
    let owner = match who.role {
        Role::Owner => who.principal.clone(),
        _ => input.owner.unwrap_or_else(|| who.principal.clone()),
    };
    let labels = input.labels.unwrap_or_default();
    validate_labels(&labels)?;
    let now = rt.now_ms();
    let identity = Identity {
        id: new_id("idn"),
        name: name.trim().to_owned(),
        kind,
        owner,
        description: input.description.unwrap_or_default(),
        labels,
        status: "active".into(),
        status_reason: None,
        observe_only: input.observe_only.unwrap_or(false),
        tokens_valid_after: 0,
        created_at: now,
        updated_at: now,
        last_seen_at: None,
    };
    if rt.store.identity_by_name(&norm).await.map_err(p)?.is_some() {
        return Err(Problem::conflict(format!(
            "an identity named `{name}` already exists (names compare case- and width-insensitively)"
        )));
    }
    rt.audit_admin(
        &who.principal,
        "identity.create",
        &identity.id,
        json!({"name": identity.name, "kind": identity.kind, "owner": identity.owner}),
    )
    .await
    .map_err(p)?;
    rt.store
        .identity_insert(&identity, &norm)
        .await
        .map_err(p)?;
    if !identity.labels.is_empty() {
        let _ = rt.reload_policy().await;
    }
    Ok((StatusCode::CREATED, Json(identity_json(&identity))))
}

/// `GET /admin/v1/identities/{id}`.
pub async fn identity_show(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
) -> R {
    let identity = load_identity(&rt, &who, &id).await?;
    let keys = rt.store.api_key_list(&identity.id).await.map_err(p)?;
    let grants = rt.store.grant_list(Some(&identity.id)).await.map_err(p)?;
    let mut out = identity_json(&identity);
    set_field(
        &mut out,
        "keys",
        serde_json::to_value(keys).unwrap_or_default(),
    );
    set_field(
        &mut out,
        "grants",
        serde_json::to_value(grants).unwrap_or_default(),
    );
    set_field(
        &mut out,
        "risk_score",
        json!(rt.monitor.risk_score(&identity.id, rt.now_ms())),
    );
    Ok(Json(out))
}

/// `PATCH /admin/v1/identities/{id}`.
pub async fn identity_update(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    Json(input): Json<IdentityInput>,
) -> R {
    let mut identity = load_identity(&rt, &who, &id).await?;
    if let Some(name) = input.name {
        steward_core::name::validate(&name)
            .map_err(|e| Problem::bad_request(format!("name `{name}`: {e}")))?;
        identity.name = name.trim().to_owned();
    }
    if let Some(kind) = input.kind {
        if !KINDS.contains(&kind.as_str()) {
            return Err(Problem::bad_request(format!(
                "kind `{kind}` is not one of {}",
                KINDS.join(", ")
            )));
        }
        identity.kind = kind;
    }
    if let Some(owner) = input.owner {
        if who.role == Role::Owner {
            return Err(Problem::forbidden("owners cannot transfer identities"));
        }
        identity.owner = owner;
    }
    if let Some(d) = input.description {
        identity.description = d;
    }
    if let Some(labels) = input.labels {
        validate_labels(&labels)?;
        identity.labels = labels;
    }
    if let Some(o) = input.observe_only {
        identity.observe_only = o;
        rt.monitor.set_observe_only(&identity.id, o, rt.now_ms());
    }
    identity.updated_at = rt.now_ms();
    let norm = steward_core::name::normalize(&identity.name);
    rt.audit_admin(
        &who.principal,
        "identity.update",
        &identity.id,
        json!({"name": identity.name, "labels": identity.labels}),
    )
    .await
    .map_err(p)?;
    rt.store
        .identity_update(&identity, &norm)
        .await
        .map_err(p)?;
    rt.invalidate_identity(&identity.id);
    let _ = rt.reload_policy().await;
    Ok(Json(identity_json(&identity)))
}

#[derive(Deserialize, Default)]
pub struct ReasonInput {
    #[serde(default)]
    reason: Option<String>,
}

async fn set_status(
    rt: &Runtime,
    who: &AdminPrincipal,
    id: &str,
    status: &str,
    reason: Option<String>,
) -> R {
    let mut identity = load_identity(rt, who, id).await?;
    if identity.status == "revoked" && status != "revoked" {
        return Err(Problem::conflict("a revoked identity cannot change status"));
    }
    let now = rt.now_ms();
    let kind = match status {
        "active" => EventKind::Reinstatement,
        _ => EventKind::Suspension,
    };
    let mut event = AuditEvent::new(kind, Actor::new(ActorKind::Admin, who.principal.clone()));
    event.resource = Some(identity.id.clone());
    event.reason = reason.clone();
    event.detail = json!({"status": status, "previous": identity.status});
    rt.audit(event).await.map_err(p)?;
    identity.status = status.to_owned();
    identity.status_reason = reason;
    identity.updated_at = now;
    if status == "revoked" {
        identity.tokens_valid_after = now;
    }
    let norm = steward_core::name::normalize(&identity.name);
    rt.store
        .identity_update(&identity, &norm)
        .await
        .map_err(p)?;
    match status {
        "suspended" => {
            rt.tokens.suspend_identity(&identity.id);
            let _ = rt.store.approval_cancel_pending(&identity.id, now).await;
        }
        "revoked" => {
            rt.tokens.revoke_identity(&identity.id);
            rt.store
                .api_key_revoke(&identity.id, None, now)
                .await
                .map_err(p)?;
            let _ = rt.store.approval_cancel_pending(&identity.id, now).await;
        }
        _ => {
            rt.tokens.reinstate_identity(&identity.id);
            // A human decided: reset the risk score and re-arm the circuit breaker.
            rt.monitor.reinstate(&identity.id, now);
        }
    }
    rt.invalidate_identity(&identity.id);
    Ok(Json(identity_json(&identity)))
}

/// `POST /admin/v1/identities/{id}/suspend`.
pub async fn identity_suspend(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    body: Option<Json<ReasonInput>>,
) -> R {
    set_status(&rt, &who, &id, "suspended", body.and_then(|b| b.0.reason)).await
}

/// `POST /admin/v1/identities/{id}/reinstate`.
pub async fn identity_reinstate(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    body: Option<Json<ReasonInput>>,
) -> R {
    let reason = body
        .and_then(|b| b.0.reason)
        .filter(|r| !r.trim().is_empty());
    if reason.is_none() {
        return Err(Problem::bad_request("reinstating needs a `reason`"));
    }
    set_status(&rt, &who, &id, "active", reason).await
}

/// `POST /admin/v1/identities/{id}/revoke`.
pub async fn identity_revoke(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    body: Option<Json<ReasonInput>>,
) -> R {
    set_status(&rt, &who, &id, "revoked", body.and_then(|b| b.0.reason)).await
}

/// `GET /admin/v1/identities/{id}/keys`.
pub async fn key_list(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
) -> R {
    let identity = load_identity(&rt, &who, &id).await?;
    let keys = rt.store.api_key_list(&identity.id).await.map_err(p)?;
    Ok(Json(json!({"items": keys})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    #[serde(default)]
    expires_in_secs: Option<i64>,
}

/// `POST /admin/v1/identities/{id}/keys`: the key is returned once and never stored.
pub async fn key_create(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    body: Option<Json<KeyInput>>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let identity = load_identity(&rt, &who, &id).await?;
    if identity.status != "active" {
        return Err(Problem::conflict(format!(
            "identity is {}",
            identity.status
        )));
    }
    let now = rt.now_ms();
    let key = steward_token::api_key::generate_random()
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    use secrecy::ExposeSecret;
    let parsed = steward_token::api_key::parse(key.expose_secret())
        .map_err(|e| Problem::bad_request(e.to_string()))?;
    let expires_at = body
        .and_then(|b| b.0.expires_in_secs)
        .map(|s| now + s.max(1) * 1000);
    let record = ApiKeyRecord {
        id: new_id("key"),
        identity_id: identity.id.clone(),
        prefix: parsed.key_prefix(),
        created_at: now,
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    rt.audit_admin(
        &who.principal,
        "key.create",
        &identity.id,
        json!({"key_id": record.id, "prefix": record.prefix}),
    )
    .await
    .map_err(p)?;
    rt.store
        .api_key_insert(&record, &parsed.hash())
        .await
        .map_err(p)?;
    let mut out = serde_json::to_value(&record).unwrap_or_default();
    set_field(&mut out, "key", json!(key.expose_secret()));
    set_field(&mut out, "client_id", json!(identity.id));
    Ok((StatusCode::CREATED, Json(out)))
}

/// `DELETE /admin/v1/identities/{id}/keys/{key_id}`.
pub async fn key_revoke(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path((id, key_id)): Path<(String, String)>,
) -> R {
    let identity = load_identity(&rt, &who, &id).await?;
    rt.audit_admin(
        &who.principal,
        "key.revoke",
        &identity.id,
        json!({"key_id": key_id}),
    )
    .await
    .map_err(p)?;
    let n = rt
        .store
        .api_key_revoke(&identity.id, Some(&key_id), rt.now_ms())
        .await
        .map_err(p)?;
    if n == 0 {
        return Err(Problem::not_found(format!(
            "active key `{key_id}` not found"
        )));
    }
    Ok(Json(json!({"revoked": key_id})))
}

/// `POST /admin/v1/tokens/{token_id}/revoke`.
pub async fn token_revoke(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(token_id): Path<String>,
) -> R {
    let now = rt.now_ms();
    rt.audit_admin(&who.principal, "token.revoke", &token_id, Value::Null)
        .await
        .map_err(p)?;
    rt.store
        .token_revoke(
            &token_id,
            "",
            now + rt.settings.token_max_ttl_ms + 60_000,
            now,
        )
        .await
        .map_err(p)?;
    rt.tokens.revoke_token(&token_id, None);
    Ok(Json(json!({"revoked": token_id})))
}

/// `GET /admin/v1/admin-tokens`.
pub async fn admin_token_list(State(rt): State<Arc<Runtime>>) -> R {
    Ok(Json(
        json!({"items": rt.store.admin_token_list().await.map_err(p)?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenInput {
    name: String,
    role: String,
    principal: String,
    #[serde(default)]
    expires_in_secs: Option<i64>,
}

/// Creates an admin token and returns its value once.
pub async fn create_admin_token(
    rt: &Runtime,
    actor: &str,
    input: AdminTokenInput,
) -> Result<(AdminToken, String), RuntimeError> {
    if Role::parse(&input.role).is_none() {
        return Err(RuntimeError::Invalid(format!(
            "role `{}` is not one of admin, approver, auditor, owner",
            input.role
        )));
    }
    let now = rt.now_ms();
    let raw = format!(
        "stwa_{}",
        steward_core::id::base62_encode(&steward_gateway::runtime::random_bytes::<32>())
    );
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, raw.as_bytes());
    let token = AdminToken {
        id: new_id("adm"),
        name: input.name,
        role: input.role,
        principal: input.principal,
        created_at: now,
        expires_at: input.expires_in_secs.map(|s| now + s * 1000),
        revoked_at: None,
    };
    rt.audit_admin(
        actor,
        "admin_token.create",
        &token.id,
        json!({"role": token.role, "principal": token.principal}),
    )
    .await?;
    rt.store.admin_token_insert(&token, hash.as_ref()).await?;
    Ok((token, raw))
}

/// `POST /admin/v1/admin-tokens`.
pub async fn admin_token_create(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<AdminTokenInput>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let (token, raw) = create_admin_token(&rt, &who.principal, input)
        .await
        .map_err(p)?;
    let mut out = serde_json::to_value(token).unwrap_or_default();
    set_field(&mut out, "token", json!(raw));
    Ok((StatusCode::CREATED, Json(out)))
}

async fn secret_usage(rt: &Runtime) -> BTreeMap<String, Vec<String>> {
    let mut usage: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for svc in rt.service_table().iter() {
        if let Some(secret) = svc.spec.auth.secret_name() {
            usage
                .entry(secret.to_owned())
                .or_default()
                .push(svc.spec.name.clone());
        }
        if let Some(pg) = &svc.spec.postgres {
            usage
                .entry(pg.admin_dsn_secret.clone())
                .or_default()
                .push(svc.spec.name.clone());
        }
    }
    usage
}

/// `GET /admin/v1/secrets`: metadata only.
pub async fn secret_list(State(rt): State<Arc<Runtime>>) -> R {
    let usage = secret_usage(&rt).await;
    let items: Vec<Value> = rt
        .store
        .secret_list()
        .await
        .map_err(p)?
        .into_iter()
        .map(|s| {
            let mut v = serde_json::to_value(&s).unwrap_or_default();
            set_field(
                &mut v,
                "used_by",
                json!(usage.get(&s.name).cloned().unwrap_or_default()),
            );
            v
        })
        .collect();
    Ok(Json(json!({"items": items})))
}

/// `GET /admin/v1/secrets/{name}`: metadata and version history, never the value.
pub async fn secret_show(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> R {
    let s = rt
        .store
        .secret_by_name(&name)
        .await
        .map_err(p)?
        .ok_or_else(|| Problem::not_found(format!("secret `{name}` does not exist")))?;
    let versions: Vec<Value> = rt
        .store
        .secret_versions(&s.id)
        .await
        .map_err(p)?
        .iter()
        .map(|v| json!({"version": v.version, "key_version": v.key_version, "created_at": v.created_at, "retire_at": v.retire_at}))
        .collect();
    let mut out = serde_json::to_value(&s).unwrap_or_default();
    set_field(&mut out, "versions", json!(versions));
    set_field(
        &mut out,
        "used_by",
        json!(
            secret_usage(&rt)
                .await
                .get(&s.name)
                .cloned()
                .unwrap_or_default()
        ),
    );
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretInput {
    /// The value, base64-encoded (so binary values survive JSON).
    value_base64: String,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    rotation: Option<Value>,
    #[serde(default)]
    grace_secs: Option<i64>,
}

/// `PUT /admin/v1/secrets/{name}`.
pub async fn secret_set(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(name): Path<String>,
    Json(input): Json<SecretInput>,
) -> R {
    steward_core::name::validate(&name)
        .map_err(|e| Problem::bad_request(format!("secret name: {e}")))?;
    let value = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(input.value_base64.as_bytes())
            .map_err(|_| Problem::bad_request("`value_base64` is not valid base64"))?,
    );
    if value.is_empty() {
        return Err(Problem::bad_request("the secret value is empty"));
    }
    if let Some(rotation) = &input.rotation {
        steward_gateway::rotation::RotationPolicy::from_json(rotation).map_err(p)?;
    }
    rt.audit_admin(
        &who.principal,
        "secret.set",
        &name,
        json!({"fingerprint": steward_scan::fingerprint(&value)}),
    )
    .await
    .map_err(p)?;
    let record = rt
        .put_secret(
            &name,
            &value,
            input.rotation,
            input.expires_at,
            input.grace_secs.map(|s| s * 1000),
        )
        .await
        .map_err(p)?;
    Ok(Json(serde_json::to_value(record).unwrap_or_default()))
}

/// `GET /admin/v1/services`.
pub async fn service_list(State(rt): State<Arc<Runtime>>) -> R {
    let items: Vec<Value> = rt
        .store
        .service_list()
        .await
        .map_err(p)?
        .into_iter()
        .map(|s| {
            let ops = s.spec.get("operations").and_then(Value::as_array).map_or(0, Vec::len);
            json!({"name": s.name, "kind": s.kind, "base_url": s.spec.get("base_url"), "operations": ops, "updated_at": s.updated_at})
        })
        .collect();
    Ok(Json(json!({"items": items})))
}

/// `GET /admin/v1/services/{name}`.
pub async fn service_show(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> R {
    let s = rt
        .store
        .service_get(&name)
        .await
        .map_err(p)?
        .ok_or_else(|| Problem::not_found(format!("service `{name}` does not exist")))?;
    let mut spec = s.spec.clone();
    if let Some(obj) = spec.as_object_mut() {
        obj.remove("openapi");
    }
    Ok(Json(spec))
}

/// Validates and stores a service; returns whether anything changed.
pub async fn upsert_service(
    rt: &Runtime,
    actor: &str,
    spec: ServiceSpec,
    dry_run: bool,
) -> Result<(bool, Value), RuntimeError> {
    let spec = spec.validate()?;
    let value = serde_json::to_value(&spec).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    let existing = rt.store.service_get(&spec.name).await?;
    if existing.as_ref().is_some_and(|e| e.spec == value) {
        return Ok((false, value));
    }
    if dry_run {
        return Ok((true, value));
    }
    rt.audit_admin(
        actor,
        "service.put",
        &spec.name,
        json!({"base_url": spec.base_url, "operations": spec.operations.len()}),
    )
    .await?;
    let now = rt.now_ms();
    rt.store
        .service_upsert(&ServiceRecord {
            name: spec.name.clone(),
            kind: spec.kind.clone(),
            spec: value.clone(),
            created_at: existing.map_or(now, |e| e.created_at),
            updated_at: now,
        })
        .await?;
    rt.reload().await.ok();
    Ok((true, value))
}

/// `PUT /admin/v1/services/{name}`.
pub async fn service_put(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(name): Path<String>,
    Json(mut body): Json<Value>,
) -> R {
    if let Some(obj) = body.as_object_mut() {
        obj.entry("name").or_insert_with(|| json!(name.clone()));
    }
    let spec: ServiceSpec = serde_json::from_value(body)
        .map_err(|e| Problem::bad_request(format!("service definition: {e}")))?;
    if spec.name != name {
        return Err(Problem::bad_request(
            "the body's `name` differs from the path",
        ));
    }
    let (changed, value) = upsert_service(&rt, &who.principal, spec, false)
        .await
        .map_err(p)?;
    Ok(Json(json!({"changed": changed, "service": value})))
}

/// `DELETE /admin/v1/services/{name}`.
pub async fn service_remove(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(name): Path<String>,
) -> R {
    rt.audit_admin(&who.principal, "service.remove", &name, Value::Null)
        .await
        .map_err(p)?;
    rt.store.service_remove(&name).await.map_err(p)?;
    rt.reload().await.ok();
    Ok(Json(json!({"removed": name})))
}

/// `GET /admin/v1/policies`.
pub async fn policy_get(State(rt): State<Arc<Runtime>>) -> R {
    let active = rt.active_policy();
    Ok(Json(json!({
        "version": active.compiled.version(),
        "policies": active.record.as_ref().map(|r| r.policies.clone()).unwrap_or_default(),
        "last_error": active.last_error,
        "schema": rt.catalog().cedar_schema_text().ok(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    policies: Vec<PolicyText>,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    dry_run: bool,
}

/// Validates a whole set, then stores it as a new version and swaps it in.
pub async fn replace_policies(
    rt: &Runtime,
    actor: &str,
    mut policies: Vec<PolicyText>,
    comment: &str,
    dry_run: bool,
) -> Result<(bool, i64), RuntimeError> {
    policies.sort();
    let current = rt.store.policy_set_latest().await?;
    let next_version = current.as_ref().map_or(1, |c| c.version + 1);
    let sources: Vec<steward_policy::PolicySource> = policies
        .iter()
        .map(|p| steward_policy::PolicySource::new(p.id.clone(), p.text.clone()))
        .collect();
    // INVARIANT: nothing is stored unless it compiles against the current catalog.
    rt.compile_policies(&sources, u64::try_from(next_version).unwrap_or(0))
        .await?;
    if current.as_ref().is_some_and(|c| c.policies == policies) {
        return Ok((false, current.map_or(0, |c| c.version)));
    }
    if dry_run {
        return Ok((true, next_version));
    }
    let before: BTreeMap<String, String> = current
        .map(|c| c.policies.into_iter().map(|p| (p.id, p.text)).collect())
        .unwrap_or_default();
    let after: BTreeMap<&String, &String> = policies.iter().map(|p| (&p.id, &p.text)).collect();
    let added: Vec<&String> = after
        .keys()
        .filter(|k| !before.contains_key(**k))
        .copied()
        .collect();
    let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(k)).collect();
    let changed: Vec<Value> = after
        .iter()
        .filter_map(|(k, v)| {
            before
                .get(*k)
                .filter(|old| old != v)
                .map(|old| json!({"id": k, "before": old, "after": v}))
        })
        .collect();
    rt.audit_admin(
        actor,
        "policy.replace",
        &format!("policy-set:{next_version}"),
        json!({"added": added, "removed": removed, "changed": changed, "comment": comment}),
    )
    .await?;
    rt.store
        .policy_set_insert(&PolicySetRecord {
            version: next_version,
            policies,
            created_at: rt.now_ms(),
            created_by: actor.to_owned(),
            comment: comment.to_owned(),
        })
        .await?;
    rt.reload_policy().await?;
    Ok((true, next_version))
}

/// `PUT /admin/v1/policies`.
pub async fn policy_put(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<PolicyInput>,
) -> R {
    let (changed, version) = replace_policies(
        &rt,
        &who.principal,
        input.policies,
        &input.comment,
        input.dry_run,
    )
    .await
    .map_err(p)?;
    Ok(Json(
        json!({"changed": changed, "version": version, "dry_run": input.dry_run}),
    ))
}

/// `GET /admin/v1/policies/versions`.
pub async fn policy_versions(State(rt): State<Arc<Runtime>>) -> R {
    let items: Vec<Value> = rt
        .store
        .policy_set_history(1000)
        .await
        .map_err(p)?
        .into_iter()
        .map(|r| json!({"version": r.version, "policies": r.policies.len(), "created_at": r.created_at, "created_by": r.created_by, "comment": r.comment}))
        .collect();
    Ok(Json(json!({"items": items})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackInput {
    version: i64,
}

/// `POST /admin/v1/policies/rollback`: writes the old set as a new version.
pub async fn policy_rollback(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<RollbackInput>,
) -> R {
    let old = rt
        .store
        .policy_set_get(input.version)
        .await
        .map_err(p)?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "policy set version {} does not exist",
                input.version
            ))
        })?;
    let (changed, version) = replace_policies(
        &rt,
        &who.principal,
        old.policies,
        &format!("rollback to {}", input.version),
        false,
    )
    .await
    .map_err(p)?;
    Ok(Json(json!({"changed": changed, "version": version})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalInput {
    identity: String,
    operation: String,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    risk_score: Option<i64>,
}

/// `POST /admin/v1/policies/eval`: explains a decision without performing anything.
pub async fn policy_eval(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<EvalInput>,
) -> R {
    let identity = load_identity(&rt, &who, &input.identity).await?;
    let op: steward_core::OperationName = input.operation.parse().map_err(Problem::bad_request)?;
    let at = match &input.at {
        Some(t) => t
            .parse::<jiff::Timestamp>()
            .map_err(|e| Problem::bad_request(format!("`at` must be RFC 3339: {e}")))?,
        None => rt.clock.now(),
    };
    let active = rt.active_policy();
    let mut req = steward_policy::Request::new(
        steward_policy::IdentityAttrs {
            id: identity.id.clone(),
            kind: identity.kind.clone(),
            owner: identity.owner.clone(),
            labels: identity.labels.clone(),
        },
        op.clone(),
        active.compiled.catalog(),
        at,
    );
    req.args = input.args.unwrap_or_else(|| json!({}));
    req.tz = rt.settings.timezone.clone();
    req.risk_score = input
        .risk_score
        .unwrap_or_else(|| i64::from(rt.monitor.risk_score(&identity.id, at.as_millisecond())));
    req.rate = rt.rates.counts(
        &identity.id,
        &op.service,
        &op.operation,
        at.as_millisecond(),
    );
    let decision = steward_policy::authorize(&active.compiled, &req);
    Ok(Json(json!({
        "decision": decision.effect().as_str(),
        "determining_policies": decision.determining_policies(),
        "approval_reasons": decision.approval_reasons(),
        "errors": decision.errors(),
        "policy_version": decision.policy_version(),
        "explanation": steward_policy::explain(&decision, Some(&active.compiled)),
    })))
}

#[derive(Deserialize, Default)]
pub struct AuditParams {
    identity: Option<String>,
    operation: Option<String>,
    decision: Option<String>,
    kind: Option<String>,
    request_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
}

fn ts_param(v: &Option<String>) -> Result<Option<i64>, Problem> {
    v.as_ref()
        .map(|t| {
            t.parse::<jiff::Timestamp>()
                .map(|ts| ts.as_millisecond())
                .or_else(|_| t.parse::<i64>())
                .map_err(|_| {
                    Problem::bad_request(format!("`{t}` is neither RFC 3339 nor milliseconds"))
                })
        })
        .transpose()
}

/// `GET /admin/v1/audit`.
pub async fn audit_search(State(rt): State<Arc<Runtime>>, Query(q): Query<AuditParams>) -> R {
    let query = AuditQuery {
        instance_id: None,
        actor_id: q.identity,
        operation: q.operation,
        decision: q.decision,
        kind: q.kind,
        request_id: q.request_id,
        since_ms: ts_param(&q.since)?,
        until_ms: ts_param(&q.until)?,
        after_seq: None,
        limit: q.limit.unwrap_or(1000).clamp(1, 10_000),
    };
    let rows = rt.store.audit_search(&query).await.map_err(p)?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            let event: Value = serde_json::from_str(&r.event).unwrap_or(Value::Null);
            json!({"instance_id": r.instance_id, "seq": r.seq, "time_ms": r.time_ms, "hash": hex::encode(&r.hash), "event": event})
        })
        .collect();
    Ok(Json(json!({"items": items})))
}

/// `GET /admin/v1/audit/verify`: re-verifies every chain in the store.
pub async fn audit_verify(State(rt): State<Arc<Runtime>>) -> R {
    let mut chains = Vec::new();
    let mut ok = true;
    // Starts from each chain's archive anchor and compares the stored signed checkpoints.
    let public_key = match rt
        .store
        .meta_get(crate::audit::PUBLIC_KEY_META)
        .await
        .map_err(p)?
    {
        Some(k) => steward_audit::parse_public_key(&k)
            .map(|k| k.to_vec())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    for instance in rt.store.audit_instances().await.map_err(p)? {
        let report = steward_gateway::audit_sink::verify_chain(&rt.store, &instance, &public_key)
            .await
            .map_err(p)?;
        let chain_ok = report.is_ok();
        ok &= chain_ok;
        chains.push(json!({
            "instance_id": instance,
            "ok": chain_ok,
            "records": report.records_read,
            "verified": report.verified_records,
            "first_bad": report.first_bad.as_ref().map(|b| json!({"seq": b.seq, "position": b.position, "kind": format!("{:?}", b.kind), "message": b.to_string()})),
            "checkpoints": report.checkpoints.iter().map(|c| json!({"tree_size": c.tree_size, "status": format!("{:?}", c.status)})).collect::<Vec<_>>(),
            "root_hash": hex::encode(report.root_hash),
        }));
    }
    Ok(Json(json!({"ok": ok, "chains": chains})))
}

#[derive(Deserialize, Default)]
pub struct ApprovalParams {
    status: Option<String>,
}

/// `GET /admin/v1/approvals`.
pub async fn approval_list(State(rt): State<Arc<Runtime>>, Query(q): Query<ApprovalParams>) -> R {
    let now = rt.now_ms();
    // A pending request past its expiry is shown as expired even before the sweep runs.
    let stored = match q.status.as_deref() {
        Some("expired") => None,
        other => other,
    };
    let items: Vec<_> = rt
        .store
        .approval_list(stored, 1000)
        .await
        .map_err(p)?
        .into_iter()
        .map(|a| steward_gateway::approvals::present(a, now))
        .filter(|a| q.status.as_deref().is_none_or(|s| a.status == s))
        .collect();
    Ok(Json(json!({"items": items})))
}

/// `GET /admin/v1/approvals/{id}`.
pub async fn approval_show(State(rt): State<Arc<Runtime>>, Path(id): Path<String>) -> R {
    let a = rt
        .store
        .approval_get(&id)
        .await
        .map_err(p)?
        .ok_or_else(|| Problem::not_found(format!("approval `{id}` does not exist")))?;
    Ok(Json(
        serde_json::to_value(steward_gateway::approvals::present(a, rt.now_ms()))
            .unwrap_or_default(),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DecideInput {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    similar_for_secs: Option<i64>,
}

async fn decide(
    rt: &Runtime,
    who: &AdminPrincipal,
    id: &str,
    approve: bool,
    input: DecideInput,
) -> R {
    if input.reason.trim().is_empty() {
        return Err(Problem::bad_request("a `reason` is required"));
    }
    let record = steward_gateway::approvals::decide(
        rt,
        id,
        &who.principal,
        who.role.as_str(),
        steward_gateway::approvals::Verdict {
            approve,
            reason: input.reason,
            similar_for_secs: input.similar_for_secs,
        },
    )
    .await
    .map_err(p)?;
    Ok(Json(serde_json::to_value(record).unwrap_or_default()))
}

/// `POST /admin/v1/approvals/{id}/approve`.
pub async fn approval_approve(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    body: Option<Json<DecideInput>>,
) -> R {
    decide(&rt, &who, &id, true, body.map(|b| b.0).unwrap_or_default()).await
}

/// `POST /admin/v1/approvals/{id}/deny`.
pub async fn approval_deny(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    body: Option<Json<DecideInput>>,
) -> R {
    decide(&rt, &who, &id, false, body.map(|b| b.0).unwrap_or_default()).await
}

/// `GET /v1/approvals/{id}`: an agent polls its own approval with its Steward token.
pub async fn agent_approval_status(
    State(rt): State<Arc<Runtime>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> R {
    let caller = steward_gateway::pipeline::authenticate(&rt, &headers, None).await?;
    let a = rt
        .store
        .approval_get(&id)
        .await
        .map_err(p)?
        .filter(|a| a.identity_id == caller.identity.id);
    let a = a.ok_or_else(|| Problem::not_found(format!("approval `{id}` does not exist")))?;
    let a = steward_gateway::approvals::present(a, rt.now_ms());
    Ok(Json(
        json!({"id": a.id, "status": a.status, "operation": a.operation, "expires_at": a.expires_at, "quorum": a.quorum, "kind": a.body.get("kind"), "grant_id": a.body.get("grant_id")}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyInput {
    document: ApplyDocument,
    #[serde(default)]
    dry_run: bool,
}

/// A declarative document: services, identities and policies.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApplyDocument {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    services: Vec<ServiceSpec>,
    #[serde(default)]
    identities: Vec<ApplyIdentity>,
    #[serde(default)]
    policies: Option<Vec<PolicyText>>,
}

/// An identity in an apply document, keyed by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyIdentity {
    name: String,
    #[serde(default = "default_kind")]
    kind: String,
    owner: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn default_kind() -> String {
    "ai_agent".into()
}

fn field_diff(before: &Identity, after: &ApplyIdentity) -> Vec<Value> {
    let mut fields = Vec::new();
    if before.kind != after.kind {
        fields.push(json!({"field": "kind", "before": before.kind, "after": after.kind}));
    }
    if before.owner != after.owner {
        fields.push(json!({"field": "owner", "before": before.owner, "after": after.owner}));
    }
    if before.description != after.description {
        fields.push(json!({"field": "description", "before": before.description, "after": after.description}));
    }
    if before.labels != after.labels {
        fields.push(json!({"field": "labels", "before": before.labels, "after": after.labels}));
    }
    fields
}

/// `POST /admin/v1/apply`: idempotent; a second apply of the same document changes nothing.
/// With `dry_run` nothing is written and the changes (with field-level diffs) are returned;
/// policies are still validated, against the services and labels the document would create.
pub async fn apply(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<ApplyInput>,
) -> R {
    let doc = input.document;
    if doc.version.is_some_and(|v| v != 1) {
        return Err(Problem::bad_request("unsupported document version; use 1"));
    }
    let mut changes: Vec<Value> = Vec::new();
    let preview_specs: Vec<ServiceSpec> = if input.dry_run {
        doc.services.clone()
    } else {
        Vec::new()
    };
    for spec in doc.services {
        let name = spec.name.clone();
        let existing = rt.store.service_get(&name).await.map_err(p)?;
        let (changed, value) = upsert_service(&rt, &who.principal, spec, input.dry_run)
            .await
            .map_err(p)?;
        if changed {
            let mut change = json!({"kind": "service", "name": name, "action": if existing.is_some() { "update" } else { "create" }});
            if let Some(old) = existing.as_ref().and_then(|e| e.spec.as_object()) {
                let fields: Vec<Value> = value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| old.get(*k) != Some(*v) && k.as_str() != "openapi")
                    .map(|(k, v)| json!({"field": k, "before": old.get(k), "after": v}))
                    .collect();
                set_field(&mut change, "fields", json!(fields));
            }
            changes.push(change);
        }
    }
    let mut preview_labels: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for ident in doc.identities {
        if !KINDS.contains(&ident.kind.as_str()) {
            return Err(Problem::bad_request(format!(
                "identity `{}`: kind `{}` is invalid",
                ident.name, ident.kind
            )));
        }
        validate_labels(&ident.labels)?;
        preview_labels.extend(ident.labels.keys().cloned());
        let norm = steward_core::name::validate(&ident.name)
            .map_err(|e| Problem::bad_request(format!("identity `{}`: {e}", ident.name)))?;
        let now = rt.now_ms();
        match rt.store.identity_by_name(&norm).await.map_err(p)? {
            Some(mut existing) => {
                let fields = field_diff(&existing, &ident);
                if fields.is_empty() {
                    continue;
                }
                changes.push(json!({"kind": "identity", "name": ident.name, "action": "update", "fields": fields}));
                if input.dry_run {
                    continue;
                }
                existing.kind = ident.kind;
                existing.owner = ident.owner;
                existing.description = ident.description;
                existing.labels = ident.labels;
                existing.updated_at = now;
                rt.audit_admin(
                    &who.principal,
                    "identity.update",
                    &existing.id,
                    json!({"via": "apply", "fields": fields}),
                )
                .await
                .map_err(p)?;
                rt.store
                    .identity_update(&existing, &norm)
                    .await
                    .map_err(p)?;
                rt.invalidate_identity(&existing.id);
            }
            None => {
                changes.push(json!({"kind": "identity", "name": ident.name, "action": "create",
                    "fields": [{"field": "kind", "after": ident.kind}, {"field": "owner", "after": ident.owner}, {"field": "labels", "after": ident.labels}]}));
                if input.dry_run {
                    continue;
                }
                let identity = Identity {
                    id: new_id("idn"),
                    name: ident.name.trim().to_owned(),
                    kind: ident.kind,
                    owner: ident.owner,
                    description: ident.description,
                    labels: ident.labels,
                    status: "active".into(),
                    status_reason: None,
                    observe_only: false,
                    tokens_valid_after: 0,
                    created_at: now,
                    updated_at: now,
                    last_seen_at: None,
                };
                rt.audit_admin(
                    &who.principal,
                    "identity.create",
                    &identity.id,
                    json!({"via": "apply", "name": identity.name}),
                )
                .await
                .map_err(p)?;
                rt.store
                    .identity_insert(&identity, &norm)
                    .await
                    .map_err(p)?;
            }
        }
    }
    if !input.dry_run {
        let _ = rt.reload_policy().await;
    }
    if let Some(mut policies) = doc.policies {
        policies.sort();
        let current = rt.store.policy_set_latest().await.map_err(p)?;
        let before: BTreeMap<String, String> = current
            .as_ref()
            .map(|c| {
                c.policies
                    .iter()
                    .map(|p| (p.id.clone(), p.text.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let after: BTreeMap<String, String> = policies
            .iter()
            .map(|p| (p.id.clone(), p.text.clone()))
            .collect();
        let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
        let modified: Vec<&String> = after
            .iter()
            .filter(|(k, v)| before.get(*k).is_some_and(|old| old != *v))
            .map(|(k, _)| k)
            .collect();
        let diff = json!({"added": added, "removed": removed, "changed": modified});
        if input.dry_run {
            // Validate against the catalog the document would produce, without storing.
            let table = rt.service_table().preview(preview_specs).map_err(p)?;
            let mut catalog = table.catalog();
            let mut labels = preview_labels;
            for identity in rt.store.identity_list(None).await.map_err(p)? {
                labels.extend(identity.labels.keys().cloned());
            }
            catalog.identity_labels = labels.into_iter().collect();
            let grants = rt.active_grants().await.map_err(p)?;
            let sources: Vec<steward_policy::PolicySource> = policies
                .iter()
                .map(|p| steward_policy::PolicySource::new(p.id.clone(), p.text.clone()))
                .collect();
            steward_policy::compile_with_grants(&catalog, &sources, &grants, 0)
                .map_err(|e| Problem::bad_request(e.to_string()))?;
            if current.as_ref().is_none_or(|c| c.policies != policies) {
                let next = current.as_ref().map_or(1, |c| c.version + 1);
                changes.push(json!({"kind": "policies", "name": "policy-set", "action": "replace", "version": next, "diff": diff}));
            }
        } else {
            let (changed, version) =
                replace_policies(&rt, &who.principal, policies, "apply", false)
                    .await
                    .map_err(p)?;
            if changed {
                changes.push(json!({"kind": "policies", "name": "policy-set", "action": "replace", "version": version, "diff": diff}));
            }
        }
    }
    Ok(Json(json!({"dry_run": input.dry_run, "changes": changes})))
}

/// Creates the deployment's first admin token (role `admin`, principal `bootstrap`).
pub async fn bootstrap_admin_token(rt: &Runtime) -> Result<(AdminToken, String), RuntimeError> {
    create_admin_token(
        rt,
        "system",
        AdminTokenInput {
            name: "bootstrap".into(),
            role: "admin".into(),
            principal: "bootstrap-admin".into(),
            expires_in_secs: None,
        },
    )
    .await
}

/// `GET /admin/v1/signing-keys`: key ids and windows, never key material.
pub async fn signing_key_list(State(rt): State<Arc<Runtime>>) -> R {
    let items = steward_gateway::signing_keys::list(&rt.store, rt.settings.token_max_ttl_ms)
        .await
        .map_err(p)?;
    Ok(Json(json!({"items": items})))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateInput {
    /// How long the retired key still verifies; default: the maximum token lifetime.
    #[serde(default)]
    overlap_secs: Option<i64>,
}

/// `POST /admin/v1/signing-keys/rotate`: a new key signs from now on; the old one still
/// verifies during the overlap window, then stops.
pub async fn signing_key_rotate(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    body: Option<Json<RotateInput>>,
) -> R {
    let overlap_ms = match body.and_then(|b| b.0.overlap_secs) {
        Some(s) if s < 0 => {
            return Err(Problem::bad_request("`overlap_secs` must not be negative"));
        }
        Some(s) => s.saturating_mul(1000),
        None => rt.settings.token_max_ttl_ms,
    };
    rt.audit_admin(
        &who.principal,
        "signing_key.rotate",
        "token-signing",
        json!({"previous": rt.signer().key_id(), "overlap_ms": overlap_ms}),
    )
    .await
    .map_err(p)?;
    let rotation = steward_gateway::signing_keys::rotate(&rt, overlap_ms)
        .await
        .map_err(p)?;
    Ok(Json(serde_json::to_value(rotation).unwrap_or_default()))
}

/// Sets `key` on a JSON object (a no-op on anything else), without panicking indexing.
fn set_field(target: &mut Value, key: &str, value: impl Into<Value>) {
    if let Some(obj) = target.as_object_mut() {
        obj.insert(key.to_owned(), value.into());
    }
}
