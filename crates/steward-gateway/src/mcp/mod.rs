//! The MCP gateway: Steward as one MCP server (`/mcp`, Streamable HTTP) that aggregates
//! upstream MCP servers and governs every tool call through the shared phase pipeline.
//!
//! Modules: [`jsonrpc`] (strict message parsing), [`session`] (handshake-era sessions
//! bound to the identity), [`upstream`] (stdio and Streamable HTTP clients), [`pins`]
//! (rug-pull defence), [`aggregate`] (namespacing, listing, governed calls) and
//! [`server`] (the HTTP endpoint).
//!
//! **Why not `rmcp`.** The gateway relays arbitrary JSON-RPC between two protocol eras at
//! once: the session-based handshake (`2025-11-25`, `2025-06-18`, `2025-03-26`) and the
//! stateless per-request envelope of `2026-07-28` (`server/discover`, `_meta`
//! envelope, `Mcp-Method`/`Mcp-Name` header checks, `ttlMs`/`cacheScope`). A typed SDK
//! would have to be kept in step with both eras (rmcp shipped three majors in 2026) and
//! would still need a relay layer around it, so the gateway speaks the wire itself: a
//! small JSON-RPC layer over axum and serde_json, with its own limits and fuzz target.

pub mod aggregate;
pub mod content;
pub mod jsonrpc;
pub mod pins;
pub mod server;
pub mod session;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

/// Protocol versions served with the `initialize` handshake, newest first.
pub const HANDSHAKE_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
/// Protocol versions served statelessly (per-request `_meta` envelope).
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];

/// MCP log levels (RFC 5424 severities), least severe first.
pub const LOG_LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// The index of a log level in [`LOG_LEVELS`].
pub fn log_level_rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

/// DNS-rebinding protection settings for `/mcp`.
#[derive(Debug, Clone, Default)]
pub struct McpConfig {
    /// The address Steward listens on.
    pub listen: Option<SocketAddr>,
    /// Browser origins allowed besides same-origin loopback, e.g. `https://app.example.com`.
    pub allowed_origins: Vec<String>,
    /// Host names (with or without port) accepted besides the listen address and, on a
    /// loopback listener, the loopback names.
    pub allowed_hosts: Vec<String>,
}

/// The MCP gateway's state: sessions and upstream connections.
#[derive(Debug, Default)]
pub struct McpHub {
    /// Handshake-era sessions.
    pub sessions: session::Sessions,
    config: RwLock<McpConfig>,
    services: Mutex<HashMap<String, Arc<aggregate::ServiceState>>>,
}

impl McpHub {
    /// Sets the DNS-rebinding protection settings.
    pub fn configure(&self, config: McpConfig) {
        if let Ok(mut c) = self.config.write() {
            *c = config;
        }
    }

    /// The DNS-rebinding protection settings.
    pub fn config(&self) -> McpConfig {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Tells every session with an open event stream that the tool, prompt and resource
    /// lists may have changed (a service, a pin or the policy changed), so its agent lists
    /// them again. On PostgreSQL only this instance's sessions hear it.
    pub fn lists_changed(&self, now: i64) {
        for method in [
            "notifications/tools/list_changed",
            "notifications/prompts/list_changed",
            "notifications/resources/list_changed",
        ] {
            let event = server::sse_event(&serde_json::json!({"jsonrpc": "2.0", "method": method}));
            self.sessions.broadcast(&event, now);
        }
    }

    /// Stops every stdio server.
    pub fn shutdown(&self) {
        let services: Vec<_> = self
            .services
            .lock()
            .map(|mut m| m.drain().map(|(_, v)| v).collect())
            .unwrap_or_default();
        for state in services {
            state.upstream.shutdown();
        }
    }
}
