//! Admin routes of the MCP gateway: tool pins, their quarantined changes, and approval.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};
use steward_gateway::mcp::{aggregate, pins};
use steward_gateway::problem::Problem;
use steward_gateway::runtime::{Runtime, RuntimeError};

use crate::auth::AdminPrincipal;

type R = Result<Json<Value>, Problem>;

fn p(e: impl Into<RuntimeError>) -> Problem {
    e.into().to_problem()
}

/// Filter of `GET /admin/v1/mcp/tools`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolQuery {
    #[serde(default)]
    service: Option<String>,
    /// `approved`, `changed`, `new` or `quarantined` (changed + new).
    #[serde(default)]
    status: Option<String>,
}

fn summary(pin: &pins::PinRecord) -> Value {
    json!({
        "name": format!("{}{}{}", pin.service, aggregate::SEPARATOR, pin.tool),
        "service": pin.service,
        "tool": pin.tool,
        "status": pin.status(),
        "approved_hash": pin.approved.as_ref().map(|v| v.hash.clone()),
        "pending_hash": pin.pending.as_ref().map(|v| v.hash.clone()),
        "approved_by": pin.approved_by,
        "approved_at": pin.approved_at,
    })
}

/// `GET /admin/v1/mcp/tools`: every pinned tool and its status.
pub async fn tool_list(State(rt): State<Arc<Runtime>>, Query(q): Query<ToolQuery>) -> R {
    let all = pins::load(&rt.store, q.service.as_deref())
        .await
        .map_err(p)?;
    let items: Vec<Value> = all
        .values()
        .filter(|pin| match q.status.as_deref() {
            None => true,
            Some("quarantined") => pin.status() != "approved",
            Some(s) => pin.status() == s,
        })
        .map(summary)
        .collect();
    Ok(Json(json!({"items": items})))
}

async fn pin_of(rt: &Runtime, service: &str, tool: &str) -> Result<pins::PinRecord, Problem> {
    pins::load(&rt.store, Some(service))
        .await
        .map_err(p)?
        .remove(&(service.to_owned(), tool.to_owned()))
        .ok_or_else(|| {
            Problem::not_found(format!("no pinned tool `{tool}` in service `{service}`"))
        })
}

/// `GET /admin/v1/mcp/tools/{service}/{tool}/diff`: the pending change, invisible
/// characters made visible.
pub async fn tool_diff(
    State(rt): State<Arc<Runtime>>,
    Path((service, tool)): Path<(String, String)>,
) -> R {
    let pin = pin_of(&rt, &service, &tool).await?;
    let diff = match &pin.pending {
        Some(pending) => pins::diff_text(
            pin.approved.as_ref().map(|v| &v.definition),
            Some(&pending.definition),
        ),
        None => String::new(),
    };
    Ok(Json(json!({
        "tool": summary(&pin),
        "diff": diff,
        "approved": pin.approved.as_ref().map(|v| v.definition.clone()),
        "pending": pin.pending.as_ref().map(|v| v.definition.clone()),
    })))
}

/// Body of the approve route.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ApproveInput {
    /// The pending hash the admin reviewed; a later change is refused.
    #[serde(default)]
    hash: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /admin/v1/mcp/tools/{service}/{tool}/approve`: accept the pending definition.
pub async fn tool_approve(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Path((service, tool)): Path<(String, String)>,
    body: Option<Json<ApproveInput>>,
) -> R {
    let input = body.map(|Json(b)| b).unwrap_or_default();
    let pin = pin_of(&rt, &service, &tool).await?;
    let pending = pin.pending.as_ref().ok_or_else(|| {
        Problem::conflict(format!(
            "tool `{service}__{tool}` has no change awaiting approval"
        ))
    })?;
    if input.hash.as_deref().is_some_and(|h| h != pending.hash) {
        return Err(Problem::conflict(format!(
            "tool `{service}__{tool}` changed again since it was reviewed (now {})",
            pending.hash
        )));
    }
    rt.audit_admin(
        &who.principal,
        "mcp.tool.approve",
        &format!("{service}__{tool}"),
        json!({"from": pin.approved.as_ref().map(|v| v.hash.clone()), "to": pending.hash, "reason": input.reason}),
    )
    .await
    .map_err(p)?;
    let updated = pins::approve(
        &rt.store,
        &service,
        &tool,
        &who.principal,
        Some(&pending.hash),
        rt.now_ms(),
    )
    .await
    .map_err(p)?;
    // The approved definition is a (new) policy operation; cached listings see the new table.
    rt.reload().await.ok();
    Ok(Json(json!({"tool": summary(&updated)})))
}

/// `POST /admin/v1/mcp/services/{name}/refresh`: list the upstream's tools now, pinning
/// on first sight and quarantining changes.
pub async fn service_refresh(State(rt): State<Arc<Runtime>>, Path(name): Path<String>) -> R {
    let service = rt
        .service_table()
        .get(&name)
        .filter(|s| s.spec.kind == "mcp")
        .ok_or_else(|| Problem::not_found(format!("no MCP service named `{name}`")))?;
    let state = aggregate::service_state(&rt, &service)
        .map_err(|e| Problem::bad_request(format!("cannot reach `{name}`: {e}")))?;
    state
        .upstream
        .signals
        .tools_stale
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let view = aggregate::tools(&rt, &state).await.map_err(|e| {
        Problem::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "upstream_error",
            "Upstream unavailable",
        )
        .detail(format!("`{name}`: {e}"))
    })?;
    Ok(Json(json!({
        "service": name,
        "usable": view.usable.keys().collect::<Vec<_>>(),
        "quarantined": view.quarantined,
    })))
}
