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

/// At most this many relayed elicitations wait for their agents' answers at once.
pub const MAX_PENDING_ASKS: usize = 10_000;

/// An upstream's elicitation relayed to an agent, waiting for the agent's answer.
#[derive(Debug)]
pub struct PendingAsk {
    /// The identity whose call it belongs to: only it may answer.
    pub identity_id: String,
    /// The call's request id and operation, for the audit record.
    pub request_id: String,
    /// `<service>:<tool>`.
    pub operation: String,
    /// What was asked: the method, the server's message and the requested field names
    /// (never values).
    pub asked: serde_json::Value,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<Result<serde_json::Value, jsonrpc::RpcError>>,
}

/// The MCP gateway's state: sessions and upstream connections.
#[derive(Debug, Default)]
pub struct McpHub {
    /// Handshake-era sessions.
    pub sessions: session::Sessions,
    config: RwLock<McpConfig>,
    services: Mutex<HashMap<String, Arc<aggregate::ServiceState>>>,
    /// Relayed elicitations by the id Steward gave them on the agent's stream.
    asks: Mutex<HashMap<String, PendingAsk>>,
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
        // The three events in one chunk: one pass over the sessions.
        let mut events = Vec::new();
        for method in upstream::LIST_CHANGED {
            events.extend_from_slice(&server::sse_event(
                &serde_json::json!({"jsonrpc": "2.0", "method": method}),
            ));
        }
        self.sessions.broadcast(&bytes::Bytes::from(events), now);
    }

    /// Registers a relayed elicitation under `id`; `false` (and the ask is dropped, so
    /// its server gets an error) when [`MAX_PENDING_ASKS`] are waiting already.
    pub fn register_ask(&self, id: String, ask: PendingAsk) -> bool {
        let mut asks = crate::lock(&self.asks);
        if asks.len() >= MAX_PENDING_ASKS {
            return false;
        }
        asks.insert(id, ask);
        true
    }

    /// Takes the relayed elicitation `id` if `identity_id` may answer it; another
    /// identity's answer leaves it waiting.
    pub fn take_ask(&self, id: &str, identity_id: &str) -> Option<PendingAsk> {
        let mut asks = crate::lock(&self.asks);
        if asks.get(id)?.identity_id != identity_id {
            return None;
        }
        asks.remove(id)
    }

    /// Forgets relayed elicitations whose call has ended.
    pub fn forget_asks(&self, ids: &[String]) {
        let mut asks = crate::lock(&self.asks);
        for id in ids {
            asks.remove(id);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(identity: &str) -> (PendingAsk, tokio::sync::oneshot::Receiver<AskAnswer>) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let ask = PendingAsk {
            identity_id: identity.to_owned(),
            request_id: "req_1".to_owned(),
            operation: "svc:tool".to_owned(),
            asked: serde_json::Value::Null,
            reply,
        };
        (ask, rx)
    }

    type AskAnswer = Result<serde_json::Value, jsonrpc::RpcError>;

    #[test]
    fn only_the_owner_takes_a_relayed_ask_and_ended_calls_forget_theirs() {
        let hub = McpHub::default();
        let (ask, mut rx) = pending("idn_a");
        assert!(hub.register_ask("ask-1".into(), ask));
        assert!(hub.take_ask("ask-1", "idn_b").is_none(), "another identity");
        assert!(hub.take_ask("ask-2", "idn_a").is_none(), "unknown id");
        let taken = hub.take_ask("ask-1", "idn_a").expect("the owner takes it");
        assert!(hub.take_ask("ask-1", "idn_a").is_none(), "answered once");
        taken
            .reply
            .send(Ok(serde_json::json!({"action": "decline"})))
            .unwrap();
        assert!(rx.try_recv().unwrap().is_ok());

        let (ask, mut rx) = pending("idn_a");
        assert!(hub.register_ask("ask-3".into(), ask));
        hub.forget_asks(&["ask-3".to_owned()]);
        assert!(hub.take_ask("ask-3", "idn_a").is_none());
        // Forgotten unanswered: the upstream side sees the answer channel closed.
        assert!(matches!(
            rx.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn pending_asks_are_bounded() {
        let hub = McpHub::default();
        for i in 0..MAX_PENDING_ASKS {
            assert!(hub.register_ask(format!("ask-{i}"), pending("idn_a").0));
        }
        assert!(!hub.register_ask("one-more".into(), pending("idn_a").0));
    }
}
