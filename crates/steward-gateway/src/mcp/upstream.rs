//! Clients for upstream MCP servers: a supervised stdio child process, and Streamable HTTP.
//!
//! **stdio**: Steward spawns the server with a cleared environment (only `PATH`, `HOME`,
//! locale and temp-dir variables pass through, so Steward's own configuration and master
//! key never reach it), plus the service's plain variables and its credentials decrypted
//! from the vault. A supervisor restarts a crashed child with exponential backoff (250 ms
//! doubling to 30 s, reset after a minute of healthy running) and kills it on shutdown.
//! Requests are multiplexed over the one child by JSON-RPC id.
//!
//! **Streamable HTTP**: requests go through the service's egress-checked client
//! ([`crate::upstream`]), so the SSRF guard applies; the credential is added as a header
//! from the vault; the `Host` header is the upstream's own; responses may be JSON or an SSE
//! stream, from which the matching response is taken.
//!
//! **Notifications about a request** reach the caller through a [`NoteRelay`] when it asks
//! for them: progress (Steward attaches its own progress token, `steward-<id>`, so tokens
//! of different agents sharing one stdio server never collide, and routes the server's
//! progress back by that token) and, from Streamable HTTP servers, the log messages sent on
//! the request's own event stream (stdio has no per-request channel for them, so they are
//! dropped there). The relay is bounded and lossy: a caller that does not keep up loses
//! notifications, never the result.
//!
//! **Notifications about no request** go to the service's [`Signals`]: a changed tool list
//! marks the listing stale, and list changes and `notifications/resources/updated` are
//! broadcast for the gateway to pass on to the agents' sessions. A stdio server sends them
//! on its output; a Streamable HTTP server on its standalone event stream (GET), which
//! Steward opens when it first uses the service ([`McpUpstream::listen`]) and reopens with
//! backoff while the service lives (a server without one answers 405, and is asked again
//! at the next subscription).
//!
//! **Elicitation** (`elicitation/create`) from a Streamable HTTP server, on a call's own
//! event stream, goes to the caller as an [`Ask`] when its relay takes asks (the agent's
//! client declared the capability), and the agent's answer goes back to the server.
//! Steward declares the `elicitation` capability to Streamable HTTP servers only: a stdio
//! server has no per-request channel, so its requests could not be told apart between the
//! agents sharing it. Every other server-to-client request (sampling, roots; elicitation
//! on stdio or for a caller that does not take asks) is answered at once with `method not
//! found`.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{oneshot, watch};

use super::jsonrpc::{self, Id, Message, RpcError};
use crate::lock;
use crate::runtime::Runtime;
use crate::service::{McpTransport, ServiceSpec, UpstreamAuth};

/// The protocol version Steward offers upstream servers in its `initialize`.
pub const UPSTREAM_PROTOCOL_VERSION: &str = "2025-06-18";
/// Environment variables a stdio server inherits from Steward; everything else is cleared.
const PASSTHROUGH_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TZ",
    "USER",
    "SYSTEMROOT",
];
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The server is not running or cannot be reached.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// No answer in time.
    #[error("upstream timed out")]
    Timeout,
    /// The server answered with a JSON-RPC error (and the bytes of that exchange).
    #[error("upstream error {}: {}", .0.code, .0.message)]
    Rpc(RpcError, Wire),
    /// The server's answer broke the protocol.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// The egress guard refused the address.
    #[error("upstream address not allowed")]
    EgressBlocked,
}

/// The bytes of one exchange with an upstream, for the outcome record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wire {
    /// Bytes of the request message sent.
    pub sent: u64,
    /// Bytes of the response message received.
    pub received: u64,
}

/// A notification an upstream sent about one request: method and parameters.
pub type Note = (String, Map<String, Value>);

/// A request an upstream server sent its client while a call ran (an elicitation), for
/// the agent to answer.
#[derive(Debug)]
pub struct Ask {
    /// The method (`elicitation/create`).
    pub method: String,
    /// Its parameters, as the server sent them.
    pub params: Map<String, Value>,
    /// Where the agent's answer goes; dropped unanswered, the server gets an error.
    pub reply: oneshot::Sender<Result<Value, RpcError>>,
}

/// Server-to-client requests relayed to an agent that takes them.
pub const RELAYED_ASKS: &[&str] = &["elicitation/create"];

/// Where an upstream's notifications about one request go while it runs.
#[derive(Debug, Clone)]
pub struct NoteRelay {
    /// Receives progress and log notifications; full means dropped (never waits).
    pub tx: tokio::sync::mpsc::Sender<Note>,
    /// Ask the upstream for progress: a progress token is attached to the request.
    pub progress: bool,
    /// Receives the server's elicitation requests; `None`: they are refused.
    pub asks: Option<tokio::sync::mpsc::Sender<Ask>>,
}

impl NoteRelay {
    fn offer(&self, method: String, params: Map<String, Value>) {
        // Lossy by design: a slow caller must not stall the upstream's reader.
        let _ = self.tx.try_send((method, params));
    }

    /// The agent's answer to a server request `method` with `params`, or `None` when
    /// this relay does not take it. Waits for the answer (the call's timeout bounds it).
    async fn ask(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Option<Result<Value, RpcError>> {
        let asks = self
            .asks
            .as_ref()
            .filter(|_| RELAYED_ASKS.contains(&method))?;
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            method: method.to_owned(),
            params,
            reply,
        };
        if asks.try_send(ask).is_err() {
            return Some(Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "the agent is not taking requests now",
            )));
        }
        Some(answer.await.unwrap_or_else(|_| {
            Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "the agent did not answer",
            ))
        }))
    }
}

/// The progress token Steward attaches to its request `id` upstream.
fn progress_token(id: i64) -> String {
    format!("steward-{id}")
}

/// Sets `_meta.progressToken` of `params` to `token`.
fn set_progress_token(params: &mut Map<String, Value>, token: &str) {
    let meta = params.entry("_meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("progressToken".into(), Value::String(token.to_owned()));
    }
}

/// The wire bytes of request `id`.
fn encode_request(
    id: i64,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Vec<u8>, UpstreamError> {
    jsonrpc::request_bytes(id, method, params)
        .map_err(|e| UpstreamError::Protocol(format!("request: {e}")))
}

fn progress_token_of(params: &Map<String, Value>) -> Option<&str> {
    params.get("progressToken").and_then(Value::as_str)
}

/// A notification from an upstream about no particular request, to pass on to agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// `notifications/resources/updated` for this URI.
    ResourceUpdated(String),
    /// `notifications/{tools,prompts,resources}/list_changed` (the method).
    ListChanged(&'static str),
}

/// The list-changed notifications passed on, by method.
pub const LIST_CHANGED: &[&str] = &[
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/resources/list_changed",
];

/// What an upstream's notifications about no particular request change.
#[derive(Debug)]
pub struct Signals {
    /// Set when the server said its tool list changed (or restarted).
    pub tools_stale: AtomicBool,
    /// Resource updates and list changes; lossy for a lagging receiver.
    pub events: tokio::sync::broadcast::Sender<UpstreamEvent>,
}

impl Signals {
    fn new() -> Self {
        Self {
            tools_stale: AtomicBool::new(true),
            events: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// Acts on a notification that is not about a request in flight. A send with no
    /// receiver (nobody listening) is not an error.
    fn notified(&self, method: &str, params: &Map<String, Value>) {
        if method == "notifications/tools/list_changed" {
            self.tools_stale.store(true, Ordering::Relaxed);
        }
        if let Some(known) = LIST_CHANGED.iter().find(|m| **m == method) {
            let _ = self.events.send(UpstreamEvent::ListChanged(known));
        } else if method == "notifications/resources/updated"
            && let Some(uri) = params.get("uri").and_then(Value::as_str)
            && uri.len() <= MAX_URI_BYTES
        {
            let _ = self
                .events
                .send(UpstreamEvent::ResourceUpdated(uri.to_owned()));
        }
    }
}

/// The longest resource URI subscribed to or passed on in an update notification.
pub const MAX_URI_BYTES: usize = 4096;

/// A connection to one upstream MCP server.
#[derive(Debug)]
pub struct McpUpstream {
    transport: UpstreamTransport,
    /// Tool-list staleness, list changes and resource updates, from the server's
    /// notifications.
    pub signals: Arc<Signals>,
}

#[derive(Debug)]
enum UpstreamTransport {
    Stdio(StdioHandle),
    Http(Arc<HttpConn>),
}

impl McpUpstream {
    /// Builds the client for a service; a stdio server is started in the background.
    pub fn start(rt: &Arc<Runtime>, spec: &ServiceSpec) -> Result<Self, UpstreamError> {
        let mcp = spec
            .mcp
            .as_ref()
            .ok_or_else(|| UpstreamError::Unavailable("the service has no `mcp` section".into()))?;
        let signals = Arc::new(Signals::new());
        let transport = match &mcp.transport {
            McpTransport::Stdio { .. } => UpstreamTransport::Stdio(StdioHandle::spawn(
                Arc::downgrade(rt),
                spec.clone(),
                Arc::clone(&signals),
            )),
            McpTransport::Http { url } => {
                let uri: http::Uri = url
                    .parse()
                    .map_err(|e| UpstreamError::Unavailable(format!("url: {e}")))?;
                let client = rt
                    .upstream
                    .client(spec.egress(), spec.ca_bundle.as_deref())
                    .map_err(UpstreamError::Unavailable)?;
                UpstreamTransport::Http(Arc::new(HttpConn {
                    rt: Arc::downgrade(rt),
                    uri,
                    client,
                    service: spec.name.clone(),
                    client_cert: spec.client_cert_secret.is_some(),
                    auth: spec.auth.clone(),
                    session: Mutex::new(None),
                    init: tokio::sync::Mutex::new(false),
                    next_id: AtomicI64::new(1),
                    signals: Arc::clone(&signals),
                    listening: AtomicBool::new(false),
                    shutdown: watch::channel(false).0,
                }))
            }
        };
        Ok(Self { transport, signals })
    }

    /// Makes sure the server's notifications about no request reach [`Signals`]: a stdio
    /// server's always do; for a Streamable HTTP server this opens its standalone event
    /// stream (once; it is reopened with backoff until the service stops).
    pub fn listen(&self) {
        if let UpstreamTransport::Http(conn) = &self.transport
            && !conn.listening.swap(true, Ordering::AcqRel)
        {
            tokio::spawn(listen_loop(Arc::downgrade(conn), conn.shutdown.subscribe()));
        }
    }

    /// Sends a request and waits for its result.
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, UpstreamError> {
        self.request_relayed(method, params, timeout, None)
            .await
            .map(|(value, _)| value)
    }

    /// Sends a request and waits for its result, passing the upstream's notifications
    /// about it (progress, log messages) to `relay` meanwhile; also returns the sizes of
    /// the request and response messages.
    pub async fn request_relayed(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        relay: Option<&NoteRelay>,
    ) -> Result<(Value, Wire), UpstreamError> {
        match &self.transport {
            UpstreamTransport::Stdio(h) => h.request(method, params, timeout, relay).await,
            UpstreamTransport::Http(c) => c.request(method, params, timeout, relay).await,
        }
    }

    /// Stops a stdio server (and keeps it stopped), or an HTTP server's event stream.
    pub fn shutdown(&self) {
        match &self.transport {
            UpstreamTransport::Stdio(h) => {
                let _ = h.shutdown.send(true);
            }
            UpstreamTransport::Http(c) => {
                let _ = c.shutdown.send(true);
            }
        }
    }

    /// How many times the stdio server was (re)started.
    pub fn starts(&self) -> u64 {
        match &self.transport {
            UpstreamTransport::Stdio(h) => h.starts.load(Ordering::Relaxed),
            UpstreamTransport::Http(_) => 0,
        }
    }
}

impl Drop for McpUpstream {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Steward's `initialize` to an upstream; `elicitation`: declare that capability (a
/// Streamable HTTP server, whose requests arrive on the call's own stream).
fn initialize_params(elicitation: bool) -> Value {
    let capabilities = if elicitation {
        json!({"elicitation": {}})
    } else {
        json!({})
    };
    json!({
        "protocolVersion": UPSTREAM_PROTOCOL_VERSION,
        "capabilities": capabilities,
        "clientInfo": {"name": "steward", "version": env!("CARGO_PKG_VERSION")},
    })
}

fn wire(sent: usize, received: usize) -> Wire {
    Wire {
        sent: sent as u64,
        received: received as u64,
    }
}

fn params_map(params: Value) -> Map<String, Value> {
    match params {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------------------
// stdio

#[derive(Debug)]
struct StdioHandle {
    conn: watch::Receiver<Option<Arc<StdioConn>>>,
    shutdown: watch::Sender<bool>,
    starts: Arc<AtomicU64>,
}

/// Requests in flight: the answer and the length of the line that carried it.
type Pending = Mutex<HashMap<i64, oneshot::Sender<(Result<Value, RpcError>, usize)>>>;

#[derive(Debug)]
struct StdioConn {
    stdin: tokio::sync::Mutex<ChildStdin>,
    pending: Pending,
    /// Requests in flight whose progress is relayed, by the token Steward attached.
    progress: Mutex<HashMap<String, NoteRelay>>,
    next_id: AtomicI64,
}

/// Unregisters a request's progress route however the request ends (even when the
/// caller's future is dropped mid-call).
struct ProgressRoute<'a> {
    conn: &'a StdioConn,
    token: Option<String>,
}

impl Drop for ProgressRoute<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            lock(&self.conn.progress).remove(&token);
        }
    }
}

impl StdioConn {
    /// Writes one message as a line; returns its length.
    async fn send(&self, message: &Value) -> Result<usize, UpstreamError> {
        self.send_line(message.to_string().into_bytes()).await
    }

    /// Writes one message (`line`, without its newline).
    async fn send_line(&self, mut line: Vec<u8>) -> Result<usize, UpstreamError> {
        line.push(b'\n');
        let mut stdin = self.stdin.lock().await;
        stdin
            .write_all(&line)
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("write: {e}")))?;
        stdin
            .flush()
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("write: {e}")))?;
        Ok(line.len())
    }

    async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        relay: Option<&NoteRelay>,
    ) -> Result<(Value, Wire), UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let mut route = ProgressRoute {
            conn: self,
            token: None,
        };
        let mut params = params_map(params);
        if let Some(relay) = relay.filter(|r| r.progress) {
            let token = progress_token(id);
            lock(&self.progress).insert(token.clone(), relay.clone());
            set_progress_token(&mut params, &token);
            route.token = Some(token);
        }
        let sent = match encode_request(id, method, &params) {
            Ok(line) => self.send_line(line).await,
            Err(e) => Err(e),
        };
        let sent = match sent {
            Ok(sent) => sent,
            Err(e) => {
                lock(&self.pending).remove(&id);
                return Err(e);
            }
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok((Ok(v), received))) => Ok((v, wire(sent, received))),
            Ok(Ok((Err(e), received))) => Err(UpstreamError::Rpc(e, wire(sent, received))),
            Ok(Err(_)) => Err(UpstreamError::Unavailable("the server exited".into())),
            Err(_) => {
                lock(&self.pending).remove(&id);
                let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}});
                let _ = self.send(&cancel).await;
                Err(UpstreamError::Timeout)
            }
        }
    }

    fn fail_all(&self) {
        lock(&self.pending).clear();
        lock(&self.progress).clear();
    }
}

impl StdioHandle {
    fn spawn(rt: Weak<Runtime>, spec: ServiceSpec, signals: Arc<Signals>) -> Self {
        let (conn_tx, conn_rx) = watch::channel(None);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let starts = Arc::new(AtomicU64::new(0));
        tokio::spawn(supervise(
            rt,
            spec,
            conn_tx,
            shutdown_rx,
            Arc::clone(&starts),
            signals,
        ));
        Self {
            conn: conn_rx,
            shutdown: shutdown_tx,
            starts,
        }
    }

    async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        relay: Option<&NoteRelay>,
    ) -> Result<(Value, Wire), UpstreamError> {
        let mut rx = self.conn.clone();
        let conn = match tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await {
            Ok(Ok(guard)) => guard.clone(),
            Ok(Err(_)) => return Err(UpstreamError::Unavailable("the server was stopped".into())),
            Err(_) => {
                return Err(UpstreamError::Unavailable(
                    "the server is not running (restarting)".into(),
                ));
            }
        };
        let conn =
            conn.ok_or_else(|| UpstreamError::Unavailable("the server is not running".into()))?;
        conn.request(method, params, timeout, relay).await
    }
}

async fn supervise(
    rt: Weak<Runtime>,
    spec: ServiceSpec,
    conn_tx: watch::Sender<Option<Arc<StdioConn>>>,
    mut shutdown: watch::Receiver<bool>,
    starts: Arc<AtomicU64>,
    signals: Arc<Signals>,
) {
    let mut backoff = Backoff::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let started = Instant::now();
        match spawn_child(&rt, &spec, Arc::clone(&signals)).await {
            Ok((mut child, conn)) => {
                starts.fetch_add(1, Ordering::Relaxed);
                let init = conn
                    .request(
                        "initialize",
                        initialize_params(false),
                        Duration::from_secs(30),
                        None,
                    )
                    .await;
                match init {
                    Ok(_) => {
                        let _ = conn
                            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
                            .await;
                        signals.tools_stale.store(true, Ordering::Relaxed);
                        resubscribe_stdio(&rt, &spec.name, &conn).await;
                        let _ = conn_tx.send(Some(Arc::clone(&conn)));
                        tracing::info!(mcp.service = %spec.name, "mcp server started");
                    }
                    Err(e) => {
                        tracing::warn!(mcp.service = %spec.name, error = %e, "mcp server failed to initialize")
                    }
                }
                tokio::select! {
                    status = child.wait() => {
                        tracing::warn!(mcp.service = %spec.name, status = ?status.ok(), "mcp server exited; restarting with backoff");
                    }
                    _ = shutdown.changed() => {
                        let _ = child.kill().await;
                        let _ = conn_tx.send(None);
                        conn.fail_all();
                        break;
                    }
                }
                let _ = conn_tx.send(None);
                conn.fail_all();
            }
            Err(e) => {
                tracing::warn!(mcp.service = %spec.name, error = %e, "mcp server could not be started")
            }
        }
        if !backoff.wait(started, &mut shutdown).await {
            break;
        }
    }
}

/// Exponential backoff between attempts: [`MIN_BACKOFF`] doubling to [`MAX_BACKOFF`],
/// back to the minimum after an attempt that lasted [`HEALTHY_AFTER`].
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(MIN_BACKOFF)
    }

    /// Waits before the next attempt (the last one began at `started`); `false` if
    /// `shutdown` changed meanwhile.
    async fn wait(&mut self, started: Instant, shutdown: &mut watch::Receiver<bool>) -> bool {
        if started.elapsed() >= HEALTHY_AFTER {
            self.0 = MIN_BACKOFF;
        }
        let slept = tokio::select! {
            _ = tokio::time::sleep(self.0) => true,
            _ = shutdown.changed() => false,
        };
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
        slept
    }
}

/// Subscribes a (re)started server to the resources the agents' sessions hold, which it
/// does not know about; a refusal is logged, not retried.
async fn resubscribe_stdio(rt: &Weak<Runtime>, service: &str, conn: &StdioConn) {
    let Some(rt) = rt.upgrade() else {
        return;
    };
    for uri in rt.mcp.sessions.subscribed_uris(service) {
        let subscribed = conn
            .request(
                "resources/subscribe",
                json!({"uri": uri}),
                Duration::from_secs(10),
                None,
            )
            .await;
        if let Err(e) = subscribed {
            tracing::warn!(mcp.service = %service, error = %e, "could not subscribe the restarted mcp server again");
        }
    }
}

async fn spawn_child(
    rt: &Weak<Runtime>,
    spec: &ServiceSpec,
    signals: Arc<Signals>,
) -> Result<(Child, Arc<StdioConn>), UpstreamError> {
    let Some(McpTransport::Stdio {
        command,
        args,
        env,
        plain_env,
        cwd,
    }) = spec.mcp.as_ref().map(|m| &m.transport)
    else {
        return Err(UpstreamError::Unavailable("not a stdio service".into()));
    };
    let rt = rt
        .upgrade()
        .ok_or_else(|| UpstreamError::Unavailable("shutting down".into()))?;
    let mut cmd = Command::new(command);
    cmd.args(args).env_clear();
    for name in PASSTHROUGH_ENV {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.envs(plain_env);
    for (var, secret) in env {
        // Phase 5 for stdio servers: the credential reaches the tool process, never the agent.
        let (_, value) = rt.secret_value(secret).await.map_err(|e| {
            UpstreamError::Unavailable(format!("credential `{secret}` for `{var}`: {e}"))
        })?;
        let text = std::str::from_utf8(value.expose_secret()).map_err(|_| {
            UpstreamError::Unavailable(format!("credential `{secret}` is not UTF-8"))
        })?;
        cmd.env(var, text);
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| UpstreamError::Unavailable(format!("spawn `{command}`: {e}")))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| UpstreamError::Unavailable("no stdin".into()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| UpstreamError::Unavailable("no stdout".into()))?;
    if let Some(stderr) = child.stderr.take() {
        let service = spec.name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let short: String = line.chars().take(512).collect();
                tracing::debug!(mcp.service = %service, "mcp server stderr: {short}");
            }
        });
    }
    let conn = Arc::new(StdioConn {
        stdin: tokio::sync::Mutex::new(stdin),
        pending: Mutex::new(HashMap::new()),
        progress: Mutex::new(HashMap::new()),
        next_id: AtomicI64::new(1),
    });
    let reader_conn = Arc::clone(&conn);
    let service = spec.name.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_bounded_line(&mut reader, &mut line).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(mcp.service = %service, error = %e, "mcp server output unreadable");
                    break;
                }
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match jsonrpc::parse(&line) {
                Ok(msg) => dispatch_from_server(&reader_conn, msg, line.len(), &signals).await,
                Err(e) => {
                    tracing::debug!(mcp.service = %service, error = %e.message, "ignoring a malformed line from the mcp server")
                }
            }
        }
        reader_conn.fail_all();
    });
    Ok((child, conn))
}

async fn read_bounded_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(out.len());
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        out.extend_from_slice(buf.get(..chunk).unwrap_or_default());
        reader.consume(chunk);
        if out.len() > jsonrpc::MAX_MESSAGE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "message too large",
            ));
        }
        if done {
            return Ok(out.len());
        }
    }
}

/// The gateway's answer to a request a server sends its client: `ping` is answered;
/// sampling, elicitation, roots and anything else get `method not found` at once, so a
/// server waiting on one carries on (or fails its call) instead of waiting out a timeout.
fn server_request_reply(id: &Id, method: &str) -> Value {
    if method == "ping" {
        jsonrpc::response(id, json!({}))
    } else {
        jsonrpc::error_response(
            Some(id),
            &RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                "the gateway does not relay server requests",
            ),
        )
    }
}

/// Handles one message from a stdio server; `len` is the length of its line.
async fn dispatch_from_server(conn: &StdioConn, msg: Message, len: usize, signals: &Signals) {
    match msg {
        Message::Response {
            id: Id::Number(n),
            result,
        } => {
            if let Some(tx) = lock(&conn.pending).remove(&n) {
                let _ = tx.send((Ok(result), len));
            }
        }
        Message::Error {
            id: Some(Id::Number(n)),
            error,
        } => {
            if let Some(tx) = lock(&conn.pending).remove(&n) {
                let _ = tx.send((Err(error), len));
            }
        }
        Message::Request { id, method, .. } => {
            let _ = conn.send(&server_request_reply(&id, &method)).await;
        }
        Message::Notification { method, params } if method == "notifications/progress" => {
            let relay = progress_token_of(&params)
                .and_then(|token| lock(&conn.progress).get(token).cloned());
            if let Some(relay) = relay {
                relay.offer(method, params);
            }
        }
        Message::Notification { method, params } => signals.notified(&method, &params),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// Streamable HTTP

struct HttpConn {
    rt: Weak<Runtime>,
    uri: http::Uri,
    client: crate::upstream::UpstreamClient,
    /// The service's name, to find its client-certificate client.
    service: String,
    /// Whether the service presents a client certificate (mutual TLS).
    client_cert: bool,
    auth: UpstreamAuth,
    session: Mutex<Option<String>>,
    init: tokio::sync::Mutex<bool>,
    next_id: AtomicI64,
    signals: Arc<Signals>,
    /// Whether the standalone event stream was asked for ([`McpUpstream::listen`]).
    listening: AtomicBool,
    /// Set when the service stops: ends the standalone event stream.
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for HttpConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConn")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

enum Posted {
    /// The answer, and the length of the message that carried it.
    Reply(Result<Value, RpcError>, usize),
    Accepted,
    SessionExpired,
}

impl HttpConn {
    async fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        relay: Option<&NoteRelay>,
    ) -> Result<(Value, Wire), UpstreamError> {
        let mut params = params_map(params);
        for _attempt in 0..2 {
            self.ensure_initialized(timeout).await?;
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let token = relay.filter(|r| r.progress).map(|_| progress_token(id));
            if let Some(token) = &token {
                set_progress_token(&mut params, token);
            }
            let relay = relay.map(|r| (r, token.as_deref()));
            let body = Bytes::from(encode_request(id, method, &params)?);
            let sent = body.len();
            match tokio::time::timeout(timeout, self.post(body, Some(id), relay)).await {
                Err(_) => return Err(UpstreamError::Timeout),
                Ok(Err(e)) => return Err(e),
                Ok(Ok(Posted::Reply(Ok(v), received))) => return Ok((v, wire(sent, received))),
                Ok(Ok(Posted::Reply(Err(e), received))) => {
                    return Err(UpstreamError::Rpc(e, wire(sent, received)));
                }
                Ok(Ok(Posted::Accepted)) => {
                    return Err(UpstreamError::Protocol(
                        "a request was answered with 202".into(),
                    ));
                }
                // The server forgot the session: initialize again, once.
                Ok(Ok(Posted::SessionExpired)) => self.forget_session().await,
            }
        }
        Err(UpstreamError::Unavailable(
            "the server keeps rejecting its session".into(),
        ))
    }

    async fn ensure_initialized(&self, timeout: Duration) -> Result<(), UpstreamError> {
        let mut done = self.init.lock().await;
        if *done {
            return Ok(());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = Message::Request {
            id: Id::Number(id),
            method: "initialize".into(),
            params: params_map(initialize_params(true)),
        };
        let body = Bytes::from(msg.to_json().to_string());
        match tokio::time::timeout(timeout, self.post(body, Some(id), None)).await {
            Err(_) => return Err(UpstreamError::Timeout),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Posted::Reply(Ok(_), _))) => {}
            Ok(Ok(Posted::Reply(Err(e), _))) => return Err(UpstreamError::Rpc(e, Wire::default())),
            Ok(Ok(_)) => {
                return Err(UpstreamError::Protocol(
                    "initialize was not answered".into(),
                ));
            }
        }
        let _ = self
            .post(
                Bytes::from(
                    json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
                ),
                None,
                None,
            )
            .await;
        *done = true;
        self.resubscribe(timeout).await;
        Ok(())
    }

    /// Subscribes a freshly initialized session to the resources the agents' sessions hold
    /// (none the first time; all of them after the server forgot Steward's session).
    async fn resubscribe(&self, timeout: Duration) {
        let Some(rt) = self.rt.upgrade() else {
            return;
        };
        for uri in rt.mcp.sessions.subscribed_uris(&self.service) {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let Ok(body) =
                encode_request(id, "resources/subscribe", &params_map(json!({"uri": uri})))
            else {
                continue;
            };
            let subscribed =
                tokio::time::timeout(timeout, self.post(Bytes::from(body), Some(id), None)).await;
            if !matches!(subscribed, Ok(Ok(Posted::Reply(Ok(_), _)))) {
                tracing::warn!(mcp.service = %self.service, "could not subscribe the mcp server's new session again");
            }
        }
    }

    /// The pooled client; with a client certificate, the service's client for the
    /// certificate secret's current version (rebuilt after a rotation).
    async fn http_client(&self) -> Result<crate::upstream::UpstreamClient, UpstreamError> {
        if !self.client_cert {
            return Ok(self.client.clone());
        }
        let rt = self
            .rt
            .upgrade()
            .ok_or_else(|| UpstreamError::Unavailable("shutting down".into()))?;
        let service = rt
            .service_table()
            .get(&self.service)
            .ok_or_else(|| UpstreamError::Unavailable("the service was removed".into()))?;
        crate::http_proxy::service_client(&rt, &service)
            .await
            .map(|(client, _)| client)
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))
    }

    /// POSTs one message. With `relay` (and the progress token attached, if any), the
    /// notifications on the answer's event stream are passed on: log messages, and
    /// progress carrying that token.
    async fn post(
        &self,
        bytes: Bytes,
        id: Option<i64>,
        relay: Option<(&NoteRelay, Option<&str>)>,
    ) -> Result<Posted, UpstreamError> {
        let (resp, _) = self
            .send(
                http::Method::POST,
                "application/json, text/event-stream",
                bytes,
            )
            .await?;
        let status = resp.status();
        if let Some(session) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            *lock(&self.session) = Some(session.to_owned());
        }
        if status == http::StatusCode::ACCEPTED {
            return Ok(Posted::Accepted);
        }
        if status == http::StatusCode::NOT_FOUND
            && self.session.lock().map(|s| s.is_some()).unwrap_or(false)
        {
            return Ok(Posted::SessionExpired);
        }
        let is_sse = is_event_stream(resp.headers());
        let body = resp.into_body();
        if !is_sse {
            let collected = http_body_util::Limited::new(body, jsonrpc::MAX_MESSAGE_BYTES)
                .collect()
                .await
                .map_err(|e| UpstreamError::Protocol(format!("response body: {e}")))?
                .to_bytes();
            if !status.is_success() && collected.is_empty() {
                return Err(UpstreamError::Unavailable(format!("http status {status}")));
            }
            return match jsonrpc::parse(&collected) {
                Ok(Message::Response { result, .. }) => {
                    Ok(Posted::Reply(Ok(result), collected.len()))
                }
                Ok(Message::Error { error, .. }) => Ok(Posted::Reply(Err(error), collected.len())),
                Ok(_) => Err(UpstreamError::Protocol(
                    "the answer is not a response".into(),
                )),
                Err(e) if status.is_success() => Err(UpstreamError::Protocol(e.message)),
                Err(_) => Err(UpstreamError::Unavailable(format!("http status {status}"))),
            };
        }
        // SSE: read events until the response with our id arrives.
        let mut events = SseReader::new(body, Some(jsonrpc::MAX_MESSAGE_BYTES * 4));
        while let Some(payload) = events.next().await? {
            match jsonrpc::parse(payload.as_bytes()) {
                Ok(Message::Response {
                    id: Id::Number(n),
                    result,
                }) if Some(n) == id => return Ok(Posted::Reply(Ok(result), payload.len())),
                Ok(Message::Error {
                    id: Some(Id::Number(n)),
                    error,
                }) if Some(n) == id => {
                    return Ok(Posted::Reply(Err(error), payload.len()));
                }
                Ok(Message::Request {
                    id: asked,
                    method,
                    params,
                }) => {
                    let relay = relay.map(|(relay, _)| relay);
                    Box::pin(self.answer_server_request(relay, &asked, &method, params)).await;
                }
                Ok(Message::Notification { method, params }) => {
                    if let Some((relay, token)) = relay {
                        let relayed = match method.as_str() {
                            "notifications/message" => true,
                            "notifications/progress" => {
                                token.is_some() && progress_token_of(&params) == token
                            }
                            _ => false,
                        };
                        if relayed {
                            relay.offer(method, params);
                            continue;
                        }
                    }
                    self.signals.notified(&method, &params);
                }
                _ => {}
            }
        }
        Err(UpstreamError::Protocol(
            "the event stream ended without a response".into(),
        ))
    }

    async fn inject(&self, headers: &mut http::HeaderMap) -> Result<(), UpstreamError> {
        let (name, prefix, secret) = match &self.auth {
            UpstreamAuth::None => return Ok(()),
            UpstreamAuth::Bearer { secret } => {
                (header::AUTHORIZATION, "Bearer ".to_owned(), secret)
            }
            UpstreamAuth::Header {
                name,
                secret,
                prefix,
            } => (
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| UpstreamError::Unavailable(format!("bad header name `{name}`")))?,
                prefix.clone(),
                secret,
            ),
            _ => {
                return Err(UpstreamError::Unavailable(
                    "MCP services support auth `none`, `bearer` and `header`".into(),
                ));
            }
        };
        let rt = self
            .rt
            .upgrade()
            .ok_or_else(|| UpstreamError::Unavailable("shutting down".into()))?;
        let (_, value) = rt
            .secret_value(secret)
            .await
            .map_err(|e| UpstreamError::Unavailable(format!("credential: {e}")))?;
        let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(
            prefix.len() + value.expose_secret().len(),
        ));
        raw.extend_from_slice(prefix.as_bytes());
        raw.extend_from_slice(value.expose_secret());
        let mut v = HeaderValue::from_bytes(&raw).map_err(|_| {
            UpstreamError::Unavailable("the credential is not a valid header value".into())
        })?;
        v.set_sensitive(true);
        headers.insert(name, v);
        Ok(())
    }
}

/// How one standalone event stream ended.
enum Listened {
    /// The server closed it, or forgot the session: open it again.
    Ended,
    /// The server offers no standalone stream (405): stop trying.
    Unsupported,
}

/// Keeps a Streamable HTTP server's standalone event stream open while the service lives,
/// passing its notifications to the service's [`Signals`].
async fn listen_loop(conn: Weak<HttpConn>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::new();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(c) = conn.upgrade() else {
            return;
        };
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = c.listen_once() => outcome,
            _ = shutdown.changed() => return,
        };
        match outcome {
            Ok(Listened::Ended) => {}
            Ok(Listened::Unsupported) => {
                tracing::debug!(mcp.service = %c.service, "the mcp server offers no standalone event stream");
                // A later subscription asks again.
                c.listening.store(false, Ordering::Release);
                return;
            }
            Err(e) => {
                tracing::debug!(mcp.service = %c.service, error = %e, "mcp server event stream failed; reopening with backoff");
            }
        }
        drop(c);
        if !backoff.wait(started, &mut shutdown).await {
            return;
        }
    }
}

impl HttpConn {
    /// Opens the standalone event stream (GET) and reads it to its end.
    async fn listen_once(&self) -> Result<Listened, UpstreamError> {
        self.ensure_initialized(Duration::from_secs(30)).await?;
        let (resp, session) = self
            .send(http::Method::GET, "text/event-stream", Bytes::new())
            .await?;
        let status = resp.status();
        if status == http::StatusCode::METHOD_NOT_ALLOWED {
            return Ok(Listened::Unsupported);
        }
        if status == http::StatusCode::NOT_FOUND && session.is_some() {
            // The server forgot the session: the next request or stream initializes again.
            self.forget_session().await;
            return Ok(Listened::Ended);
        }
        if !status.is_success() || !is_event_stream(resp.headers()) {
            return Err(UpstreamError::Unavailable(format!(
                "event stream: http status {status}"
            )));
        }
        // No question on this stream belongs to a call: none is relayed.
        let mut events = SseReader::new(resp.into_body(), None);
        while let Some(payload) = events.next().await? {
            match jsonrpc::parse(payload.as_bytes()) {
                Ok(Message::Notification { method, params }) => {
                    self.signals.notified(&method, &params);
                }
                Ok(Message::Request { id, method, params }) => {
                    self.answer_server_request(None, &id, &method, params).await;
                }
                _ => {}
            }
        }
        Ok(Listened::Ended)
    }

    /// Sends one request to the server, with Steward's session and the service's
    /// credential; returns the answer and the session id the request carried.
    async fn send(
        &self,
        method: http::Method,
        accept: &'static str,
        body: Bytes,
    ) -> Result<(http::Response<hyper::body::Incoming>, Option<String>), UpstreamError> {
        let mut builder = http::Request::builder()
            .method(method.clone())
            .uri(self.uri.clone())
            .header(header::ACCEPT, accept)
            .header("mcp-protocol-version", UPSTREAM_PROTOCOL_VERSION);
        if method == http::Method::POST {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        let mut req = builder
            .body(
                Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
        let session = lock(&self.session).clone();
        if let Some(session) = &session
            && let Ok(v) = HeaderValue::from_str(session)
        {
            req.headers_mut().insert("mcp-session-id", v);
        }
        self.inject(req.headers_mut()).await?;
        let resp = self.http_client().await?.request(req).await.map_err(|e| {
            if format!("{e:?}").contains("PermissionDenied") {
                UpstreamError::EgressBlocked
            } else {
                UpstreamError::Unavailable(e.to_string())
            }
        })?;
        Ok((resp, session))
    }

    /// Forgets a session the server no longer knows: the next request or event stream
    /// initializes again, and the tool list is listed again.
    async fn forget_session(&self) {
        *self.init.lock().await = false;
        *lock(&self.session) = None;
        self.signals.tools_stale.store(true, Ordering::Relaxed);
    }

    /// Answers, by POST as a client on Streamable HTTP does, a request the server sent:
    /// with the agent's answer when `relay` takes it (an elicitation during its call),
    /// else with [`server_request_reply`]. A failed answer leaves the server to time its
    /// request out.
    async fn answer_server_request(
        &self,
        relay: Option<&NoteRelay>,
        id: &Id,
        method: &str,
        params: Map<String, Value>,
    ) {
        let answer = match relay {
            Some(relay) => relay.ask(method, params).await,
            None => None,
        };
        let reply = match answer {
            Some(Ok(result)) => jsonrpc::response(id, result),
            Some(Err(e)) => jsonrpc::error_response(Some(id), &e),
            None => server_request_reply(id, method),
        };
        if let Err(e) = self.post(Bytes::from(reply.to_string()), None, None).await {
            tracing::debug!(error = %e, %method, "could not answer a server request");
        }
    }
}

/// Whether a response carries an event stream.
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/event-stream"))
}

/// The data of an event stream's events, one event at a time.
struct SseReader {
    body: hyper::body::Incoming,
    /// Bytes read and not yet split into events.
    buffer: Vec<u8>,
    /// Bytes read so far, and the most the whole stream may carry (`None`: no bound, for
    /// a stream that lives as long as the service).
    total: usize,
    limit: Option<usize>,
}

impl SseReader {
    fn new(body: hyper::body::Incoming, limit: Option<usize>) -> Self {
        Self {
            body,
            buffer: Vec::new(),
            total: 0,
            limit,
        }
    }

    /// The next event's (non-empty) data; `None` once the stream has ended.
    async fn next(&mut self) -> Result<Option<String>, UpstreamError> {
        loop {
            if let Some((event, rest)) = split_event(&self.buffer) {
                self.buffer = rest;
                let payload = sse_data(&event);
                if !payload.is_empty() {
                    return Ok(Some(payload));
                }
                continue;
            }
            // One event may not grow without bound.
            if self.buffer.len() > jsonrpc::MAX_MESSAGE_BYTES {
                return Err(UpstreamError::Protocol("event too large".into()));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|e| UpstreamError::Protocol(format!("event stream: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.total = self.total.saturating_add(data.len());
            if self.limit.is_some_and(|limit| self.total > limit) {
                return Err(UpstreamError::Protocol("event stream too large".into()));
            }
            self.buffer.extend_from_slice(&data);
        }
    }
}

/// Splits the first complete SSE event (terminated by a blank line) off `buffer`.
fn split_event(buffer: &[u8]) -> Option<(String, Vec<u8>)> {
    let text = buffer;
    for (i, w) in text.windows(2).enumerate() {
        if w == b"\n\n" {
            let event =
                String::from_utf8_lossy(text.get(..i).unwrap_or_default()).replace('\r', "");
            return Some((event, text.get(i + 2..).unwrap_or_default().to_vec()));
        }
    }
    for (i, w) in text.windows(4).enumerate() {
        if w == b"\r\n\r\n" {
            let event =
                String::from_utf8_lossy(text.get(..i).unwrap_or_default()).replace('\r', "");
            return Some((event, text.get(i + 4..).unwrap_or_default().to_vec()));
        }
    }
    None
}

fn sse_data(event: &str) -> String {
    event
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_about_no_request_become_events() {
        let signals = Signals::new();
        signals.tools_stale.store(false, Ordering::Relaxed);
        let mut events = signals.events.subscribe();
        let params = |v: Value| params_map(v);
        signals.notified("notifications/tools/list_changed", &params(json!({})));
        assert!(signals.tools_stale.load(Ordering::Relaxed));
        assert_eq!(
            events.try_recv().unwrap(),
            UpstreamEvent::ListChanged("notifications/tools/list_changed")
        );
        signals.notified(
            "notifications/resources/updated",
            &params(json!({"uri": "u://1"})),
        );
        assert_eq!(
            events.try_recv().unwrap(),
            UpstreamEvent::ResourceUpdated("u://1".into())
        );
        // Without a URI, with an overlong one, or of an unknown kind: nothing.
        signals.notified("notifications/resources/updated", &params(json!({})));
        let long = "u".repeat(MAX_URI_BYTES + 1);
        signals.notified(
            "notifications/resources/updated",
            &params(json!({"uri": long})),
        );
        signals.notified("notifications/whatever", &params(json!({})));
        assert!(events.try_recv().is_err());
    }

    #[test]
    fn sse_events_are_split_and_joined() {
        let buf = b"event: message\ndata: {\"a\":\ndata: 1}\n\nid: 2\ndata: x\n\npartial".to_vec();
        let (event, rest) = split_event(&buf).unwrap();
        assert_eq!(sse_data(&event), "{\"a\":\n1}");
        let (event, rest) = split_event(&rest).unwrap();
        assert_eq!(sse_data(&event), "x");
        assert!(split_event(&rest).is_none());
    }
}
