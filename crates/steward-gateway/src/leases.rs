//! Dynamic credentials: short-lived PostgreSQL login roles leased to identities
//! (`POST /v1/leases`, `DELETE /v1/leases/{id}`), and the sweep that ends expired leases.
//!
//! A lease request is authorized through the shared pipeline as operation
//! `<service>:connect`; the decision record is durable before any role exists. The lease is
//! stored (kv kind `lease`) *before* the role is created, so a crash can leave a record
//! without a role (harmless: the sweep drops nothing and deletes the record) but never a role
//! nobody will drop. The role also carries `VALID UNTIL`, so PostgreSQL itself refuses it
//! after expiry even if the sweep is late. Leases live in the store and survive restarts.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use steward_audit::{Actor, AuditEvent, EventKind};
use steward_core::{OperationClass, OperationName};

use crate::pipeline::{self, CallMeta, Caller, ResolvedCall};
use crate::problem::Problem;
use crate::runtime::{Runtime, RuntimeError, new_id, sha256_hex};
use crate::service::{LEASE_OPERATION, PostgresLeaseSpec};

/// The kv kind leases are stored under.
pub const LEASE_KIND: &str = "lease";

/// `POST /v1/leases` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    /// A service of kind `postgres`.
    pub service: String,
    /// Requested lifetime; the service's default when absent, never above its maximum.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

fn lease_audit(caller_actor: Actor, rid: Option<&str>, action: &str, detail: Value) -> AuditEvent {
    let mut event = AuditEvent::new(EventKind::Lease, caller_actor);
    event.request_id = rid.map(str::to_owned);
    event.operation = Some(format!("lease.{action}"));
    event.resource = detail
        .get("lease_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    event.detail = detail;
    event
}

fn pg_spec(rt: &Runtime, service: &str) -> Result<PostgresLeaseSpec, Problem> {
    rt.service_table()
        .get(service)
        .and_then(|s| s.spec.postgres.clone())
        .ok_or_else(|| {
            Problem::not_found(format!(
                "service `{service}` does not exist or does not issue leases"
            ))
        })
}

async fn admin_dsn(
    rt: &Runtime,
    spec: &PostgresLeaseSpec,
) -> Result<zeroize::Zeroizing<String>, RuntimeError> {
    let (_, value) = rt.secret_value(&spec.admin_dsn_secret).await?;
    let text = std::str::from_utf8(value.expose_secret()).map_err(|_| {
        RuntimeError::Invalid(format!(
            "secret `{}` is not a UTF-8 URL",
            spec.admin_dsn_secret
        ))
    })?;
    Ok(zeroize::Zeroizing::new(text.to_owned()))
}

/// `POST /v1/leases`: a short-lived PostgreSQL credential for the calling identity.
pub async fn create(
    State(rt): State<Arc<Runtime>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Json(input): Json<LeaseRequest>,
) -> Response {
    let rid = pipeline::request_id();
    match create_inner(&rt, peer, &headers, input, &rid).await {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(p) => p.request_id(&rid).into_response(),
    }
}

async fn create_inner(
    rt: &Runtime,
    peer: SocketAddr,
    headers: &HeaderMap,
    input: LeaseRequest,
    rid: &str,
) -> Result<Value, Problem> {
    let caller = pipeline::authenticate(rt, headers, Some(peer.ip())).await?;
    let spec = pg_spec(rt, &input.service)?;
    let ttl_secs = input.ttl_secs.unwrap_or(spec.default_ttl_secs);
    if ttl_secs == 0 || ttl_secs > spec.max_ttl_secs {
        return Err(Problem::bad_request(format!(
            "ttl_secs must be between 1 and {} for service `{}`",
            spec.max_ttl_secs, input.service
        )));
    }
    let call = ResolvedCall {
        operation: OperationName::new(input.service.clone(), LEASE_OPERATION.to_owned()),
        class: OperationClass::Write,
        args: json!({}),
        sensitive: Vec::new(),
        digest: sha256_hex(format!("lease\n{}\n{ttl_secs}", input.service).as_bytes()),
    };
    let meta = CallMeta {
        request_id: rid.to_owned(),
        reason: headers
            .get("steward-reason")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ..CallMeta::default()
    };
    // Phases 3-4: policy and the durable decision record.
    let _admitted = pipeline::admit(rt, &caller, &call, &meta).await?;
    issue(rt, &caller, &input.service, &spec, ttl_secs, rid)
        .await
        .map_err(|e| e.to_problem().request_id(rid))
}

async fn issue(
    rt: &Runtime,
    caller: &Caller,
    service: &str,
    spec: &PostgresLeaseSpec,
    ttl_secs: u64,
    rid: &str,
) -> Result<Value, RuntimeError> {
    let now = rt.now_ms();
    let ttl_ms = i64::try_from(ttl_secs)
        .unwrap_or(i64::MAX / 2000)
        .saturating_mul(1000);
    let expires_at = now.saturating_add(ttl_ms);
    let lease_id = new_id("lse");
    let username = format!(
        "stw_lease_{}",
        hex::encode(crate::runtime::random_bytes::<6>())
    );
    let password = crate::pg_roles::generate_password();
    let record = json!({
        "lease_id": lease_id,
        "service": service,
        "username": username,
        "identity_id": caller.identity.id,
        "created_at": now,
        "expires_at": expires_at,
    });
    let dsn = admin_dsn(rt, spec).await?;
    // Recorded first: whatever happens next, the sweep knows this role may exist.
    rt.store.kv_put(LEASE_KIND, &lease_id, &record, now).await?;
    if let Err(e) =
        crate::pg_roles::create_login_role(&dsn, &username, &password, expires_at, &spec.group_role)
            .await
    {
        let _ = rt.store.kv_delete(LEASE_KIND, &lease_id).await;
        let mut event = lease_audit(caller.actor(), Some(rid), "failed", record.clone());
        if let Some(detail) = event.detail.as_object_mut() {
            detail.insert("error".into(), json!(e.to_string()));
        }
        rt.audit(event).await?;
        return Err(e);
    }
    rt.audit(lease_audit(
        caller.actor(),
        Some(rid),
        "granted",
        record.clone(),
    ))
    .await?;
    metrics::counter!("steward_leases_total", "result" => "granted").increment(1);
    Ok(json!({
        "lease_id": lease_id,
        "service": service,
        "username": username,
        "password": password.as_str(),
        "expires_at": expires_at,
        "ttl_secs": ttl_secs,
    }))
}

/// `DELETE /v1/leases/{id}`: ends a lease of the calling identity now.
pub async fn revoke(
    State(rt): State<Arc<Runtime>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let rid = pipeline::request_id();
    let result = async {
        let caller = pipeline::authenticate(&rt, &headers, Some(peer.ip())).await?;
        let record = rt
            .store
            .kv_get(LEASE_KIND, &id)
            .await
            .map_err(|e| RuntimeError::from(e).to_problem())?
            .filter(|r| {
                r.body.get("identity_id").and_then(Value::as_str)
                    == Some(caller.identity.id.as_str())
            })
            .ok_or_else(|| Problem::not_found(format!("lease `{id}` does not exist")))?;
        end_lease(&rt, caller.actor(), Some(&rid), &record.body, "revoked")
            .await
            .map_err(|e| e.to_problem())?;
        Ok::<_, Problem>(json!({"lease_id": id, "status": "revoked"}))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(p) => p.request_id(&rid).into_response(),
    }
}

/// Drops the lease's role, then its record; audited before the role is dropped.
async fn end_lease(
    rt: &Runtime,
    actor: Actor,
    rid: Option<&str>,
    body: &Value,
    why: &str,
) -> Result<(), RuntimeError> {
    let lease_id = body
        .get("lease_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let username = body
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let service = body
        .get("service")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    rt.audit(lease_audit(actor, rid, why, body.clone())).await?;
    let spec = rt
        .service_table()
        .get(&service)
        .and_then(|s| s.spec.postgres.clone())
        .ok_or_else(|| {
            RuntimeError::NotFound(format!(
                "service `{service}` of lease `{lease_id}` no longer exists"
            ))
        })?;
    let dsn = admin_dsn(rt, &spec).await?;
    crate::pg_roles::drop_login_role(&dsn, &username).await?;
    rt.store.kv_delete(LEASE_KIND, &lease_id).await?;
    metrics::counter!("steward_leases_total", "result" => why.to_owned()).increment(1);
    Ok(())
}

/// Ends every lease whose time is up; returns how many ended. Failures stay recorded and are
/// retried on the next sweep.
pub async fn sweep_expired(rt: &Runtime) -> Result<usize, RuntimeError> {
    let now = rt.now_ms();
    let mut ended = 0;
    for record in rt.store.kv_list(LEASE_KIND, 10_000).await? {
        let expires_at = record
            .body
            .get("expires_at")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if expires_at > now {
            continue;
        }
        match end_lease(rt, Actor::system(), None, &record.body, "expired").await {
            Ok(()) => ended += 1,
            Err(e) => {
                tracing::warn!(lease.id = %record.id, error = %e, "could not end an expired lease; will retry")
            }
        }
    }
    metrics::gauge!("steward_leases_active")
        .set(rt.store.kv_list(LEASE_KIND, 10_000).await?.len() as f64);
    Ok(ended)
}
