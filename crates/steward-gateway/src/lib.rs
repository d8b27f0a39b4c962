//! The data plane: the HTTP proxy and the MCP gateway, sharing one phase pipeline.
//!
//! The pipeline's phases are documented in [`pipeline`]. [`runtime::Runtime`] holds the
//! wired services; [`router`] mounts the agent-facing routes.

#![deny(missing_docs)]

pub mod approvals;
pub mod audit_journal;
pub mod audit_sink;
pub mod elevation;
pub mod framing;
pub mod grants;
pub mod http_proxy;
pub mod leases;
pub mod mcp;
pub mod monitoring;
pub mod notify;
pub mod oauth;
pub mod oauth_client;
pub mod openapi;
pub mod path;
pub mod peer;
pub mod pg_roles;
pub mod pipeline;
pub mod problem;
pub mod rates;
pub mod rotation;
pub mod runtime;
pub mod service;
pub mod signing_keys;
pub mod ssrf;
pub mod stream;
pub mod upstream;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::routing::{any, post};

/// Locks `m`, also after a panic elsewhere poisoned it: the guarded maps and files stay
/// consistent between statements, so a poisoned lock carries no half-made state.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Agent-facing routes: the token endpoint and the HTTP gateway.
pub fn router(rt: Arc<runtime::Runtime>) -> Router {
    Router::new()
        .route("/oauth/token", post(oauth::token))
        .route("/gw/{*rest}", any(http_proxy::handle))
        .route("/mcp", any(mcp::server::handle))
        .route("/v1/leases", post(leases::create))
        .route("/v1/leases/{id}", axum::routing::delete(leases::revoke))
        .with_state(rt)
}
