//! Just-in-time elevation routes: `POST /v1/elevations` (an agent, with its own token) and
//! `POST /admin/v1/identities/{id}/elevations` (an owner or admin, for an identity).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use steward_audit::{Actor, ActorKind};
use steward_gateway::elevation::{self, ElevationInput};
use steward_gateway::problem::Problem;
use steward_gateway::runtime::Runtime;
use steward_store::models::{ApprovalRecord, GrantRecord};

use crate::auth::AdminPrincipal;

fn created(approval: &ApprovalRecord, grant: &GrantRecord, new: bool) -> (StatusCode, Json<Value>) {
    let status = if new {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    (
        status,
        Json(json!({
            "approval_id": approval.id,
            "grant_id": grant.id,
            "status": approval.status,
            "coalesced": !new,
            "expires_at": approval.expires_at,
            "duration_secs": approval.body.get("duration_secs"),
            "poll_url": format!("/v1/approvals/{}", approval.id),
        })),
    )
}

/// `POST /v1/elevations`: the calling identity asks for a time-bound grant.
pub async fn agent_request(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    Json(input): Json<ElevationInput>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let caller = steward_gateway::pipeline::authenticate(&rt, &headers, None).await?;
    let (approval, grant, new) = elevation::request(&rt, &caller.identity, caller.actor(), &input)
        .await
        .map_err(|e| e.to_problem())?;
    Ok(created(&approval, &grant, new))
}

/// `POST /admin/v1/identities/{id}/elevations`: an owner (or admin) asks on an identity's behalf.
pub async fn owner_request(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path(id): Path<String>,
    Json(input): Json<ElevationInput>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let identity = crate::handlers::load_identity(&rt, &who, &id).await?;
    if identity.status != "active" {
        return Err(Problem::conflict(format!(
            "identity `{}` is {}",
            identity.name, identity.status
        )));
    }
    rt.audit_admin(
        &who.principal,
        "elevation.request",
        &identity.id,
        json!({"operations": input.operations, "services": input.services, "duration_secs": input.duration_secs, "justification": input.justification}),
    )
    .await
    .map_err(|e| e.to_problem())?;
    let (approval, grant, new) = elevation::request(
        &rt,
        &identity,
        Actor::new(ActorKind::Admin, who.principal.clone()),
        &input,
    )
    .await
    .map_err(|e| e.to_problem())?;
    Ok(created(&approval, &grant, new))
}
