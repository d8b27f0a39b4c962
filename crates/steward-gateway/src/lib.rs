//! The data plane: the HTTP proxy and the MCP gateway, sharing one phase pipeline.
//!
//! The pipeline's phases are documented in [`pipeline`]. [`runtime::Runtime`] holds the
//! wired services; [`router`] mounts the agent-facing routes.

#![deny(missing_docs)]

pub mod approvals;
pub mod audit_sink;
pub mod grants;
pub mod http_proxy;
pub mod monitoring;
pub mod notify;
pub mod oauth;
pub mod oauth_client;
pub mod openapi;
pub mod path;
pub mod pipeline;
pub mod problem;
pub mod rates;
pub mod runtime;
pub mod service;
pub mod ssrf;
pub mod stream;
pub mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, post};

/// Agent-facing routes: the token endpoint and the HTTP gateway.
pub fn router(rt: Arc<runtime::Runtime>) -> Router {
    Router::new()
        .route("/oauth/token", post(oauth::token))
        .route("/gw/{*rest}", any(http_proxy::handle))
        .with_state(rt)
}
