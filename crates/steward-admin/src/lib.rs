//! The admin REST API (`/admin/v1`): roles, identities, keys, secrets, services,
//! policies, audit and approvals. Every mutation is audited before it is applied.

#![deny(missing_docs)]

mod audit;
mod auth;
mod elevations;
mod handlers;
mod incident;
mod mcp;
pub mod openapi;
mod rejection;
mod vault;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, post};
use steward_gateway::runtime::Runtime;

pub use audit::PUBLIC_KEY_META as AUDIT_PUBLIC_KEY_META;
pub use auth::{AdminPrincipal, ROUTES, Role, RouteAccess};

/// The admin routes, each behind the role check of its entry in [`ROUTES`].
pub fn router(rt: Arc<Runtime>) -> Router {
    use handlers::*;
    let api = Router::new()
        .route("/admin/v1/status", get(status))
        .route(
            "/admin/v1/identities",
            get(identity_list).post(identity_create),
        )
        .route(
            "/admin/v1/identities/{id}",
            get(identity_show).patch(identity_update),
        )
        .route("/admin/v1/identities/{id}/suspend", post(identity_suspend))
        .route(
            "/admin/v1/identities/{id}/reinstate",
            post(identity_reinstate),
        )
        .route("/admin/v1/identities/{id}/revoke", post(identity_revoke))
        .route(
            "/admin/v1/identities/{id}/keys",
            get(key_list).post(key_create),
        )
        .route(
            "/admin/v1/identities/{id}/keys/{key_id}",
            delete(key_revoke),
        )
        .route("/admin/v1/tokens/{token_id}/revoke", post(token_revoke))
        .route(
            "/admin/v1/admin-tokens",
            get(admin_token_list).post(admin_token_create),
        )
        .route(
            "/admin/v1/secrets",
            get(secret_list).post(vault::secret_import),
        )
        .route("/admin/v1/secrets/{name}", get(secret_show).put(secret_set))
        .route(
            "/admin/v1/secrets/{name}/reveal",
            post(vault::secret_reveal),
        )
        .route(
            "/admin/v1/secrets/{name}/rotate",
            post(vault::secret_rotate),
        )
        .route("/admin/v1/vault/reminders", get(vault::vault_reminders))
        .route("/admin/v1/services", get(service_list))
        .route(
            "/admin/v1/services/{name}",
            get(service_show).put(service_put).delete(service_remove),
        )
        .route("/admin/v1/policies", get(policy_get).put(policy_put))
        .route("/admin/v1/policies/versions", get(policy_versions))
        .route("/admin/v1/policies/rollback", post(policy_rollback))
        .route("/admin/v1/policies/eval", post(policy_eval))
        .route("/admin/v1/audit", get(audit_search))
        .route("/admin/v1/audit/verify", get(audit_verify))
        .route("/admin/v1/audit/checkpoints", get(audit::checkpoints))
        .route("/admin/v1/audit/public-key", get(audit::public_key))
        .route("/admin/v1/audit/{seq}/proof", get(audit::inclusion_proof))
        .route("/admin/v1/audit/consistency", get(audit::consistency_proof))
        .route("/admin/v1/audit/export", get(audit::export))
        .route("/admin/v1/audit/archive", post(audit::archive))
        .route("/admin/v1/approvals", get(approval_list))
        .route("/admin/v1/approvals/{id}", get(approval_show))
        .route("/admin/v1/approvals/{id}/approve", post(approval_approve))
        .route("/admin/v1/approvals/{id}/deny", post(approval_deny))
        .route(
            "/admin/v1/identities/{id}/elevations",
            post(elevations::owner_request),
        )
        .route("/admin/v1/apply", post(apply))
        .route("/admin/v1/mcp/tools", get(mcp::tool_list))
        .route(
            "/admin/v1/mcp/tools/{service}/{tool}/diff",
            get(mcp::tool_diff),
        )
        .route(
            "/admin/v1/mcp/tools/{service}/{tool}/approve",
            post(mcp::tool_approve),
        )
        .route(
            "/admin/v1/mcp/services/{name}/refresh",
            post(mcp::service_refresh),
        )
        .route("/admin/v1/signing-keys", get(signing_key_list))
        .route("/admin/v1/signing-keys/rotate", post(signing_key_rotate))
        .route("/admin/v1/alerts", get(incident::alert_list))
        .route("/admin/v1/alerts/{id}", get(incident::alert_show))
        .route(
            "/admin/v1/alerts/{id}/acknowledge",
            post(incident::alert_acknowledge),
        )
        .route("/admin/v1/alerts/{id}/close", post(incident::alert_close))
        .route("/admin/v1/incidents/quarantine", post(incident::quarantine))
        .route(
            "/admin/v1/discovered-credentials",
            get(incident::discovered_list).post(incident::discovered_report),
        )
        .layer(middleware::from_fn_with_state(
            Arc::clone(&rt),
            settle_audit,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&rt),
            auth::require_role,
        ));
    Router::new()
        .merge(api)
        .route("/admin/v1/openapi.json", get(openapi::document))
        .route("/v1/approvals/{id}", get(agent_approval_status))
        .route("/v1/elevations", post(elevations::agent_request))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(middleware::map_response(rejection::as_problem))
        .with_state(rt)
}

/// Before a route that reads the audit log back (search, export, proofs, verification,
/// incident timelines), waits until every record durable now is indexed, so a caller sees
/// its own calls' records. Fails closed with 503 when the index cannot catch up.
async fn settle_audit(
    axum::extract::State(rt): axum::extract::State<Arc<Runtime>>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let reads_audit = path.starts_with("/admin/v1/audit")
        || path.starts_with("/admin/v1/alerts")
        || path.starts_with("/admin/v1/incidents");
    if reads_audit && let Err(e) = rt.audit.settled().await {
        use axum::response::IntoResponse;
        return steward_gateway::problem::Problem::unavailable(
            steward_core::ErrorCode::AUDIT_UNAVAILABLE,
            format!("the audit log is not readable yet: {e}"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Creates the first admin token of a deployment; the caller prints it once.
pub async fn create_admin_token_for_bootstrap(
    rt: &steward_gateway::runtime::Runtime,
) -> Result<(steward_store::models::AdminToken, String), steward_gateway::runtime::RuntimeError> {
    handlers::bootstrap_admin_token(rt).await
}
