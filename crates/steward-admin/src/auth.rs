//! Admin authentication and the role table: which role may call which route.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use steward_gateway::pipeline::bearer;
use steward_gateway::problem::Problem;
use steward_gateway::runtime::Runtime;

/// An admin role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Decides approvals; reads what that needs.
    Approver,
    /// Read-only, including the audit log.
    Auditor,
    /// Manages only the identities they own.
    Owner,
}

impl Role {
    /// Parses a stored role name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "approver" => Some(Self::Approver),
            "auditor" => Some(Self::Auditor),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Approver => "approver",
            Self::Auditor => "auditor",
            Self::Owner => "owner",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAccess {
    /// Admins only.
    Admin,
    /// Admins and approvers.
    Approve,
    /// Admins, auditors and approvers (reads).
    Read,
    /// Admins and owners (owners are further limited to their identities in the handler).
    Owner,
    /// Any authenticated admin principal.
    Any,
}

impl RouteAccess {
    /// Whether `role` passes this gate.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Self::Admin => role == Role::Admin,
            Self::Approve => matches!(role, Role::Admin | Role::Approver),
            Self::Read => matches!(role, Role::Admin | Role::Auditor | Role::Approver),
            Self::Owner => matches!(role, Role::Admin | Role::Owner),
            Self::Any => true,
        }
    }
}

/// Every admin route: method, path template, access. The router, the role check and the
/// OpenAPI document all derive from this table.
pub const ROUTES: &[(&str, &str, RouteAccess, &str)] = &[
    (
        "GET",
        "/admin/v1/status",
        RouteAccess::Any,
        "Health, version, store, uptime and warnings",
    ),
    (
        "GET",
        "/admin/v1/identities",
        RouteAccess::Owner,
        "List identities (owners see their own)",
    ),
    (
        "POST",
        "/admin/v1/identities",
        RouteAccess::Owner,
        "Create an identity",
    ),
    (
        "GET",
        "/admin/v1/identities/{id}",
        RouteAccess::Owner,
        "Show an identity",
    ),
    (
        "PATCH",
        "/admin/v1/identities/{id}",
        RouteAccess::Owner,
        "Update an identity",
    ),
    (
        "POST",
        "/admin/v1/identities/{id}/suspend",
        RouteAccess::Owner,
        "Suspend an identity",
    ),
    (
        "POST",
        "/admin/v1/identities/{id}/reinstate",
        RouteAccess::Admin,
        "Reinstate a suspended identity",
    ),
    (
        "POST",
        "/admin/v1/identities/{id}/revoke",
        RouteAccess::Owner,
        "Revoke an identity for good",
    ),
    (
        "GET",
        "/admin/v1/identities/{id}/keys",
        RouteAccess::Owner,
        "List an identity's API keys",
    ),
    (
        "POST",
        "/admin/v1/identities/{id}/keys",
        RouteAccess::Owner,
        "Create an API key (shown once)",
    ),
    (
        "DELETE",
        "/admin/v1/identities/{id}/keys/{key_id}",
        RouteAccess::Owner,
        "Revoke an API key",
    ),
    (
        "POST",
        "/admin/v1/tokens/{token_id}/revoke",
        RouteAccess::Admin,
        "Revoke one access token",
    ),
    (
        "GET",
        "/admin/v1/admin-tokens",
        RouteAccess::Admin,
        "List admin tokens",
    ),
    (
        "POST",
        "/admin/v1/admin-tokens",
        RouteAccess::Admin,
        "Create an admin token (shown once)",
    ),
    (
        "GET",
        "/admin/v1/secrets",
        RouteAccess::Read,
        "List secrets (metadata only)",
    ),
    (
        "GET",
        "/admin/v1/secrets/{name}",
        RouteAccess::Read,
        "Show a secret's metadata",
    ),
    (
        "PUT",
        "/admin/v1/secrets/{name}",
        RouteAccess::Admin,
        "Set a secret's value (new version)",
    ),
    (
        "POST",
        "/admin/v1/secrets",
        RouteAccess::Admin,
        "Import many secrets at once",
    ),
    (
        "POST",
        "/admin/v1/secrets/{name}/reveal",
        RouteAccess::Admin,
        "Reveal a secret's value (off unless `[vault] allow_reveal`; audited first)",
    ),
    (
        "POST",
        "/admin/v1/secrets/{name}/rotate",
        RouteAccess::Admin,
        "Rotate a secret now with its rotation provider",
    ),
    (
        "GET",
        "/admin/v1/vault/reminders",
        RouteAccess::Read,
        "Secrets due for rotation, failing rotation or expiring",
    ),
    (
        "GET",
        "/admin/v1/services",
        RouteAccess::Read,
        "List services",
    ),
    (
        "GET",
        "/admin/v1/services/{name}",
        RouteAccess::Read,
        "Show a service",
    ),
    (
        "PUT",
        "/admin/v1/services/{name}",
        RouteAccess::Admin,
        "Create or replace a service",
    ),
    (
        "DELETE",
        "/admin/v1/services/{name}",
        RouteAccess::Admin,
        "Remove a service",
    ),
    (
        "GET",
        "/admin/v1/policies",
        RouteAccess::Read,
        "The policy set in force",
    ),
    (
        "PUT",
        "/admin/v1/policies",
        RouteAccess::Admin,
        "Replace the policy set (validated first)",
    ),
    (
        "GET",
        "/admin/v1/policies/versions",
        RouteAccess::Read,
        "Policy set history",
    ),
    (
        "POST",
        "/admin/v1/policies/rollback",
        RouteAccess::Admin,
        "Roll back to a version",
    ),
    (
        "POST",
        "/admin/v1/policies/eval",
        RouteAccess::Read,
        "Explain a decision",
    ),
    (
        "GET",
        "/admin/v1/audit",
        RouteAccess::Read,
        "Search the audit log",
    ),
    (
        "GET",
        "/admin/v1/audit/verify",
        RouteAccess::Read,
        "Verify the audit chain",
    ),
    (
        "GET",
        "/admin/v1/audit/checkpoints",
        RouteAccess::Read,
        "Signed audit checkpoints of a chain",
    ),
    (
        "GET",
        "/admin/v1/audit/public-key",
        RouteAccess::Read,
        "Public key that verifies audit checkpoints",
    ),
    (
        "GET",
        "/admin/v1/audit/{seq}/proof",
        RouteAccess::Read,
        "Merkle inclusion proof of an audit record",
    ),
    (
        "GET",
        "/admin/v1/audit/consistency",
        RouteAccess::Read,
        "Merkle consistency proof between two tree sizes",
    ),
    (
        "GET",
        "/admin/v1/audit/export",
        RouteAccess::Read,
        "Export the audit chain (JSONL or OCSF), streamed",
    ),
    (
        "POST",
        "/admin/v1/audit/archive",
        RouteAccess::Admin,
        "Delete records before a sequence number after export",
    ),
    (
        "GET",
        "/admin/v1/approvals",
        RouteAccess::Approve,
        "List approval requests",
    ),
    (
        "GET",
        "/admin/v1/approvals/{id}",
        RouteAccess::Approve,
        "Show an approval request",
    ),
    // Deciding is open to every role at the gate so that the handler can refuse AND audit
    // attempts by roles other than admin and approver (segregation of duties).
    (
        "POST",
        "/admin/v1/approvals/{id}/approve",
        RouteAccess::Any,
        "Approve (admin or approver; others are refused and audited)",
    ),
    (
        "POST",
        "/admin/v1/approvals/{id}/deny",
        RouteAccess::Any,
        "Deny (admin or approver; others are refused and audited)",
    ),
    (
        "POST",
        "/admin/v1/identities/{id}/elevations",
        RouteAccess::Owner,
        "Request a just-in-time elevation for an identity",
    ),
    (
        "POST",
        "/admin/v1/apply",
        RouteAccess::Admin,
        "Apply a declarative document",
    ),
    (
        "GET",
        "/admin/v1/mcp/tools",
        RouteAccess::Read,
        "MCP tool pins and their status (approved, changed, new)",
    ),
    (
        "GET",
        "/admin/v1/mcp/tools/{service}/{tool}/diff",
        RouteAccess::Read,
        "A quarantined MCP tool's change, invisible characters made visible",
    ),
    (
        "POST",
        "/admin/v1/mcp/tools/{service}/{tool}/approve",
        RouteAccess::Admin,
        "Approve a quarantined MCP tool's definition",
    ),
    (
        "POST",
        "/admin/v1/mcp/services/{name}/refresh",
        RouteAccess::Admin,
        "List an MCP service's tools now (pins on first sight)",
    ),
    (
        "GET",
        "/admin/v1/signing-keys",
        RouteAccess::Read,
        "Token-signing key ids and overlap windows",
    ),
    (
        "POST",
        "/admin/v1/signing-keys/rotate",
        RouteAccess::Admin,
        "Rotate the token-signing key (the old key verifies during an overlap window)",
    ),
    (
        "GET",
        "/admin/v1/alerts",
        RouteAccess::Read,
        "Monitoring alerts, newest first (filter by identity, status)",
    ),
    (
        "GET",
        "/admin/v1/alerts/{id}",
        RouteAccess::Read,
        "Show a monitoring alert with its evidence",
    ),
    (
        "POST",
        "/admin/v1/alerts/{id}/acknowledge",
        RouteAccess::Approve,
        "Acknowledge an alert",
    ),
    (
        "POST",
        "/admin/v1/alerts/{id}/close",
        RouteAccess::Approve,
        "Close an alert",
    ),
    (
        "POST",
        "/admin/v1/incidents/quarantine",
        RouteAccess::Admin,
        "Quarantine an identity: suspend, revoke keys and tokens, rotate its secrets, forensic timeline",
    ),
    (
        "GET",
        "/admin/v1/discovered-credentials",
        RouteAccess::Read,
        "Discovered credentials, managed (in the vault) or unmanaged",
    ),
    (
        "POST",
        "/admin/v1/discovered-credentials",
        RouteAccess::Admin,
        "Upload scan findings (fingerprints and redacted previews only)",
    ),
];

/// The authenticated admin principal, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct AdminPrincipal {
    /// Token id.
    pub token_id: String,
    /// Who (human or team).
    pub principal: String,
    /// Role.
    pub role: Role,
}

/// Authenticates the admin token and checks the route's role.
pub async fn require_role(
    State(rt): State<Arc<Runtime>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = match bearer(req.headers()) {
        Ok(t) => t.to_owned(),
        Err(p) => return p.into_response(),
    };
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let record = match rt.store.admin_token_by_hash(hash.as_ref()).await {
        Ok(Some(r)) => r,
        Ok(None) => return Problem::invalid_token("unknown admin token").into_response(),
        Err(e) => {
            return steward_gateway::runtime::RuntimeError::from(e)
                .to_problem()
                .into_response();
        }
    };
    let now = rt.now_ms();
    if record.revoked_at.is_some() || record.expires_at.is_some_and(|e| e <= now) {
        return Problem::invalid_token("admin token revoked or expired").into_response();
    }
    let Some(role) = Role::parse(&record.role) else {
        return Problem::forbidden("unknown role").into_response();
    };
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let method = req.method().clone();
    let access = ROUTES
        .iter()
        .find(|(m, p, _, _)| {
            *p == path && Method::from_bytes(m.as_bytes()).ok().as_ref() == Some(&method)
        })
        .map(|(_, _, a, _)| *a);
    // INVARIANT: a route missing from the table is admin-only, so forgetting an entry
    // fails closed.
    let access = access.unwrap_or(RouteAccess::Admin);
    if !access.allows(role) {
        return Problem::forbidden(format!(
            "role `{}` may not call {method} {path}",
            role.as_str()
        ))
        .into_response();
    }
    req.extensions_mut().insert(AdminPrincipal {
        token_id: record.id,
        principal: record.principal,
        role,
    });
    next.run(req).await
}
