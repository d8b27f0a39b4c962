//! The admin REST API (`/admin/v1`): roles, identities, keys, secrets, services,
//! policies, audit and approvals. Every mutation is audited before it is applied.

#![deny(missing_docs)]

mod auth;
mod handlers;
pub mod openapi;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{delete, get, post};
use steward_gateway::runtime::Runtime;

pub use auth::{AdminPrincipal, Role, ROUTES, RouteAccess};

/// The admin routes, each behind the role check of its entry in [`ROUTES`].
pub fn router(rt: Arc<Runtime>) -> Router {
    use handlers::*;
    let api = Router::new()
        .route("/admin/v1/status", get(status))
        .route("/admin/v1/identities", get(identity_list).post(identity_create))
        .route("/admin/v1/identities/{id}", get(identity_show).patch(identity_update))
        .route("/admin/v1/identities/{id}/suspend", post(identity_suspend))
        .route("/admin/v1/identities/{id}/reinstate", post(identity_reinstate))
        .route("/admin/v1/identities/{id}/revoke", post(identity_revoke))
        .route("/admin/v1/identities/{id}/keys", get(key_list).post(key_create))
        .route("/admin/v1/identities/{id}/keys/{key_id}", delete(key_revoke))
        .route("/admin/v1/tokens/{token_id}/revoke", post(token_revoke))
        .route("/admin/v1/admin-tokens", get(admin_token_list).post(admin_token_create))
        .route("/admin/v1/secrets", get(secret_list))
        .route("/admin/v1/secrets/{name}", get(secret_show).put(secret_set))
        .route("/admin/v1/services", get(service_list))
        .route("/admin/v1/services/{name}", get(service_show).put(service_put).delete(service_remove))
        .route("/admin/v1/policies", get(policy_get).put(policy_put))
        .route("/admin/v1/policies/versions", get(policy_versions))
        .route("/admin/v1/policies/rollback", post(policy_rollback))
        .route("/admin/v1/policies/eval", post(policy_eval))
        .route("/admin/v1/audit", get(audit_search))
        .route("/admin/v1/audit/verify", get(audit_verify))
        .route("/admin/v1/approvals", get(approval_list))
        .route("/admin/v1/approvals/{id}", get(approval_show))
        .route("/admin/v1/approvals/{id}/approve", post(approval_approve))
        .route("/admin/v1/approvals/{id}/deny", post(approval_deny))
        .route("/admin/v1/apply", post(apply))
        .layer(middleware::from_fn_with_state(Arc::clone(&rt), auth::require_role));
    Router::new()
        .merge(api)
        .route("/admin/v1/openapi.json", get(openapi::document))
        .route("/v1/approvals/{id}", get(agent_approval_status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(rt)
}

/// Creates the first admin token of a deployment; the caller prints it once.
pub async fn create_admin_token_for_bootstrap(
    rt: &steward_gateway::runtime::Runtime,
) -> Result<(steward_store::models::AdminToken, String), steward_gateway::runtime::RuntimeError> {
    handlers::bootstrap_admin_token(rt).await
}
