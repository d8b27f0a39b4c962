//! Aggregation and governance: upstream tools namespaced `<service>__<tool>`, listings
//! filtered by policy and pins, and tool calls run through the shared phase pipeline.
//!
//! `tools/list` shows an identity the approved tools that its token allows and that policy
//! does not deny outright. "Outright" is judged with empty arguments: a tool is hidden when
//! a `forbid` fires or no `permit` matches; a tool whose decision depends on arguments it
//! was not given (missing required argument, evaluation error) stays listed, and its calls
//! are decided with their real arguments.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use steward_audit::{Decision as AuditDecision, Outcome};
use steward_core::OperationName;
use steward_policy::{DenyReason, Effect, IdentityAttrs, Request};

use super::jsonrpc::{self, RpcError, canonical};
use super::pins;
use super::upstream::{McpUpstream, NoteRelay, Signals, UpstreamError, UpstreamEvent, Wire};
use crate::lock;
use crate::pipeline::{self, CallMeta, Caller, ResolvedCall};
use crate::problem::Problem;
use crate::runtime::{Runtime, RuntimeError, sha256_hex};
use crate::service::{ServiceRuntime, ServiceSpec};

/// Separator between service and tool names.
pub const SEPARATOR: &str = "__";
/// How long a tool listing is reused before the upstream is asked again.
pub const TOOLS_TTL: Duration = Duration::from_secs(60);
pub(super) const MAX_LIST_PAGES: usize = 50;

/// One upstream service's connection and its current, pin-checked tools.
#[derive(Debug)]
pub struct ServiceState {
    spec: ServiceSpec,
    /// The connection.
    pub upstream: McpUpstream,
    refresh: tokio::sync::Mutex<()>,
    view: RwLock<Option<Arc<ToolView>>>,
    /// Resources and templates as last listed, to route `resources/read`.
    pub(super) resources: RwLock<Option<Arc<super::content::ResourceIndex>>>,
}

/// Tools of one service as last listed.
#[derive(Debug)]
pub struct ToolView {
    /// Usable tools by upstream name (current definition == approved pin).
    pub usable: BTreeMap<String, Value>,
    /// Quarantined tools (new or changed).
    pub quarantined: Vec<String>,
    fetched: Instant,
    table: usize,
}

fn table_marker(rt: &Runtime) -> usize {
    Arc::as_ptr(&rt.service_table()) as usize
}

/// The state of an MCP service, (re)connecting when its definition changed.
pub fn service_state(
    rt: &Arc<Runtime>,
    service: &ServiceRuntime,
) -> Result<Arc<ServiceState>, UpstreamError> {
    let mut map = lock(&rt.mcp.services);
    if let Some(state) = map.get(&service.spec.name)
        && state.spec == service.spec
    {
        return Ok(Arc::clone(state));
    }
    let state = Arc::new(ServiceState {
        spec: service.spec.clone(),
        upstream: McpUpstream::start(rt, &service.spec)?,
        refresh: tokio::sync::Mutex::new(()),
        view: RwLock::new(None),
        resources: RwLock::new(None),
    });
    if let Some(old) = map.insert(service.spec.name.clone(), Arc::clone(&state)) {
        old.upstream.shutdown();
    }
    drop(map);
    pass_on_notifications(rt, &service.spec.name, &state.upstream.signals);
    state.upstream.listen();
    // A new or changed service changes what agents may list. Told with the service map
    // released: every other MCP request waits on that lock.
    rt.mcp.lists_changed(rt.now_ms());
    Ok(state)
}

/// Passes a service's notifications about no request on to the agents' sessions, for as
/// long as the service's connection lives: a resource update to the sessions subscribed to
/// it, a list change to every session (it names no item, and the agent lists again).
fn pass_on_notifications(rt: &Arc<Runtime>, service: &str, signals: &Signals) {
    let mut events = signals.events.subscribe();
    let rt = Arc::downgrade(rt);
    let service = service.to_owned();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(UpstreamEvent::ResourceUpdated(uri)) => {
                    let Some(rt) = rt.upgrade() else {
                        return;
                    };
                    let event = super::server::sse_event(&json!({
                        "jsonrpc": "2.0",
                        "method": "notifications/resources/updated",
                        "params": {"uri": uri},
                    }));
                    let delivered =
                        rt.mcp
                            .sessions
                            .resource_updated(&service, &uri, &event, rt.now_ms());
                    tracing::debug!(mcp.service = %service, delivered, "resource update passed on");
                }
                Ok(UpstreamEvent::ListChanged(method)) => {
                    let Some(rt) = rt.upgrade() else {
                        return;
                    };
                    let event =
                        super::server::sse_event(&json!({"jsonrpc": "2.0", "method": method}));
                    let delivered = rt.mcp.sessions.broadcast(&event, rt.now_ms());
                    tracing::debug!(mcp.service = %service, delivered, %method, "list change passed on");
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(mcp.service = %service, missed, "upstream notifications arrived faster than they could be passed on; some were dropped");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

pub(super) fn timeout(rt: &Runtime) -> Duration {
    Duration::from_millis(rt.settings.request_timeout_ms)
}

/// Every page of an upstream listing (`key` is the result's array member).
pub(super) async fn list_all(
    rt: &Runtime,
    state: &ServiceState,
    method: &str,
    key: &str,
) -> Result<Vec<Value>, UpstreamError> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let page = state.upstream.request(method, params, timeout(rt)).await?;
        if let Some(list) = page.get(key).and_then(Value::as_array) {
            items.extend(list.iter().cloned());
        }
        cursor = page
            .get("nextCursor")
            .and_then(Value::as_str)
            .map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    Ok(items)
}

/// The service's tools, listing the upstream again when stale.
pub async fn tools(
    rt: &Arc<Runtime>,
    state: &ServiceState,
) -> Result<Arc<ToolView>, UpstreamError> {
    let fresh = |view: &ToolView| {
        view.fetched.elapsed() < TOOLS_TTL
            && view.table == table_marker(rt)
            && !state.upstream.signals.tools_stale.load(Ordering::Relaxed)
    };
    if let Some(view) = state
        .view
        .read()
        .ok()
        .and_then(|v| v.clone())
        .filter(|v| fresh(v))
    {
        return Ok(view);
    }
    let _guard = state.refresh.lock().await;
    if let Some(view) = state
        .view
        .read()
        .ok()
        .and_then(|v| v.clone())
        .filter(|v| fresh(v))
    {
        return Ok(view);
    }
    state
        .upstream
        .signals
        .tools_stale
        .store(false, Ordering::Relaxed);
    let all: Vec<Value> = list_all(rt, state, "tools/list", "tools")
        .await
        .inspect_err(|_| {
            state
                .upstream
                .signals
                .tools_stale
                .store(true, Ordering::Relaxed);
        })?
        .into_iter()
        .filter(|t| t.get("name").and_then(Value::as_str).is_some())
        .collect();
    let observed = pins::observe(&rt.store, &state.spec.name, &all, rt.now_ms())
        .await
        .map_err(|e| UpstreamError::Unavailable(format!("pins: {e}")))?;
    if observed.changed {
        // New pins are new policy operations: rebuild the catalog before deciding anything.
        if let Err(e) = rt.reload().await {
            tracing::error!(error = %e, "reload after pinning MCP tools failed");
        }
    }
    let view = Arc::new(ToolView {
        // A tool may not take a content operation's name (see `content`).
        usable: observed
            .usable
            .into_iter()
            .filter(|(name, _)| !super::content::is_reserved(name))
            .collect(),
        quarantined: observed.quarantined,
        fetched: Instant::now(),
        table: table_marker(rt),
    });
    if let Ok(mut slot) = state.view.write() {
        *slot = Some(Arc::clone(&view));
    }
    Ok(view)
}

pub(super) fn mcp_services(rt: &Runtime) -> Vec<Arc<ServiceRuntime>> {
    let table = rt.service_table();
    let mut services: Vec<_> = table
        .iter()
        .filter(|s| s.spec.kind == "mcp")
        .cloned()
        .collect();
    services.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    services
}

/// Whether policy denies the operation outright (see the module docs).
fn denied_outright(
    rt: &Runtime,
    caller: &Caller,
    operation: &OperationName,
    class: steward_core::OperationClass,
) -> bool {
    denied_outright_with(rt, caller, operation, class, Value::Object(Map::new()))
}

/// Whether policy denies the operation with these arguments outright: a `forbid` fires or no
/// `permit` matches (an error or a missing argument is not "outright").
pub(super) fn denied_outright_with(
    rt: &Runtime,
    caller: &Caller,
    operation: &OperationName,
    class: steward_core::OperationClass,
    args: Value,
) -> bool {
    if !caller.token.allows(operation) {
        return true;
    }
    let decision = evaluate(rt, caller, operation, class, args);
    decision.effect() == Effect::Deny
        && matches!(
            decision.deny_reason(),
            Some(DenyReason::Forbidden | DenyReason::NoPermit) | None
        )
}

/// The policy operation of an upstream's elicitation during a call, on every MCP service.
pub const ELICITATION: &str = "elicitation/create";

/// Whether policy lets an upstream put this question (an elicitation during a tool call)
/// to the caller's human: operation `<service>:elicitation/create`, class `write` (the
/// answer goes to the tool) unless the service's `class_overrides` say otherwise, with
/// `context.args` = `{tool, message, fields}`. Only `allow` lets it through: a denial, an
/// approval requirement (the answer is the human's consent already) or an evaluation error
/// refuses it. Returns the refusal's reason.
pub(super) fn elicitation_refused(
    rt: &Runtime,
    caller: &Caller,
    service: &str,
    args: Value,
) -> Option<String> {
    let operation = OperationName::new(service.to_owned(), ELICITATION);
    if !caller.token.allows(&operation) {
        return Some("the agent's token does not cover it".to_owned());
    }
    let class = rt
        .service_table()
        .get(service)
        .map_or(steward_core::OperationClass::Write, |s| {
            super::content::elicitation_class(&s.spec)
        });
    let decision = evaluate(rt, caller, &operation, class, args);
    match decision.effect() {
        Effect::Allow => None,
        Effect::ApprovalRequired => Some("policy requires an approval for it".to_owned()),
        Effect::Deny => Some(match decision.deny_reason() {
            Some(DenyReason::NoPermit) => format!("no policy permits `{operation}`"),
            _ => "policy denies it".to_owned(),
        }),
    }
}

/// The policy decision for `operation` with `args`, for the caller, now.
fn evaluate(
    rt: &Runtime,
    caller: &Caller,
    operation: &OperationName,
    class: steward_core::OperationClass,
    args: Value,
) -> steward_policy::Decision {
    let policy = rt.active_policy();
    let identity = &caller.identity;
    let now = rt.now_ms();
    let mut request = Request::new(
        IdentityAttrs {
            id: identity.id.clone(),
            kind: identity.kind.clone(),
            owner: identity.owner.clone(),
            labels: identity.labels.clone(),
        },
        operation.clone(),
        policy.compiled.catalog(),
        steward_core::time::from_millis(now),
    );
    request.class = class;
    request.args = args;
    request.tz = rt.settings.timezone.clone();
    request.source_ip = caller.source_ip;
    request.rate = rt
        .rates
        .counts(&identity.id, &operation.service, &operation.operation, now);
    request.risk_score = i64::from(rt.monitor.risk_score(&identity.id, now));
    request.delegated = caller.token.delegated;
    steward_policy::authorize(&policy.compiled, &request)
}

/// `tools/list`: every usable tool of every MCP service this caller is not denied outright.
pub async fn list_tools(rt: &Arc<Runtime>, caller: &Caller) -> Vec<Value> {
    let mut out = Vec::new();
    for service in mcp_services(rt) {
        let view = match service_state(rt, &service) {
            Ok(state) => tools(rt, &state).await,
            Err(e) => Err(e),
        };
        let view = match view {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(mcp.service = %service.spec.name, error = %e, "MCP service unavailable; its tools are not listed");
                continue;
            }
        };
        for (name, tool) in &view.usable {
            let operation = OperationName::new(service.spec.name.clone(), name.clone());
            let class = pins::class_of(tool, &service.spec.class_overrides);
            if denied_outright(rt, caller, &operation, class) {
                continue;
            }
            let mut listed = tool.clone();
            if let Some(obj) = listed.as_object_mut() {
                obj.insert(
                    "name".into(),
                    json!(format!("{}{SEPARATOR}{name}", service.spec.name)),
                );
            }
            out.push(listed);
        }
    }
    out
}

/// A tool result reporting an error to the model (`isError: true`).
pub fn tool_error(text: &str, meta: Value) -> Value {
    let mut result = json!({"content": [{"type": "text", "text": text}], "isError": true});
    if let (Some(obj), Value::Object(m)) = (result.as_object_mut(), meta)
        && !m.is_empty()
    {
        obj.insert("_meta".into(), Value::Object(m));
    }
    result
}

/// How a call Steward refused is told to the agent: the text and its `steward/*` metadata
/// (status, request id, approval id). `Err` when nothing may run at all (audit unavailable).
pub(super) fn refusal(problem: &Problem, rid: &str) -> Result<(String, Value), RpcError> {
    if problem.status == 503 {
        // Audit unavailable: nothing was performed and nothing may be.
        return Err(RpcError::new(
            jsonrpc::INTERNAL_ERROR,
            problem
                .detail
                .clone()
                .unwrap_or_else(|| problem.title.clone()),
        )
        .with_data(json!({"request_id": rid})));
    }
    if problem.kind.ends_with("/approval_required") {
        let id = problem
            .extra
            .get("approval_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let operation = problem.detail.as_deref().unwrap_or_default();
        let text = format!(
            "Approval required: a human must approve this call before it runs. Approval id: {id}. {operation} \
             Once approved, repeat the same call with _meta {{\"steward/approval\": \"{id}\"}}."
        );
        return Ok((
            text,
            json!({"steward/approval_id": id, "steward/request_id": rid, "steward/status": "approval_required"}),
        ));
    }
    let mut meta = serde_json::Map::new();
    meta.insert("steward/request_id".into(), json!(rid));
    meta.insert("steward/status".into(), json!("denied"));
    if let Some(id) = problem.extra.get("approval_id") {
        meta.insert("steward/approval_id".into(), id.clone());
    }
    let text = format!(
        "Denied by Steward: {}",
        problem
            .detail
            .clone()
            .unwrap_or_else(|| problem.title.clone())
    );
    Ok((text, Value::Object(meta)))
}

/// The JSON-RPC error of a call whose audit record could not be written.
pub(super) fn audit_failed(e: &RuntimeError) -> RpcError {
    RpcError::new(
        jsonrpc::INTERNAL_ERROR,
        e.to_problem().detail.unwrap_or_default(),
    )
}

/// `params.name` and `params.arguments` (an object; empty when absent) of a tool call or
/// prompt request.
pub(super) fn name_and_arguments(params: &Map<String, Value>) -> Result<(&str, Value), RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(jsonrpc::INVALID_PARAMS, "`name` must be a string"))?;
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(m)) => Value::Object(m.clone()),
        Some(_) => {
            return Err(RpcError::new(
                jsonrpc::INVALID_PARAMS,
                "`arguments` must be an object",
            ));
        }
    };
    Ok((name, arguments))
}

/// An MCP service, its connection and an item's name on that upstream.
pub(super) type Resolved<'n> = (Arc<ServiceRuntime>, Arc<ServiceState>, &'n str);

/// What a namespaced `<service>__<item>` name points at; `None` when no MCP service has that
/// name.
pub(super) fn resolve<'n>(
    rt: &Arc<Runtime>,
    name: &'n str,
) -> Result<Option<Resolved<'n>>, RpcError> {
    let Some((service_name, item)) = name.split_once(SEPARATOR) else {
        return Ok(None);
    };
    let Some(service) = rt
        .service_table()
        .get(service_name)
        .filter(|s| s.spec.kind == "mcp")
    else {
        return Ok(None);
    };
    let state = service_state(rt, &service).map_err(|e| {
        tracing::warn!(error = %e, "MCP upstream");
        RpcError::new(
            jsonrpc::INTERNAL_ERROR,
            "the upstream MCP server is unavailable",
        )
    })?;
    Ok(Some((service, state, item)))
}

/// Sends an admitted call upstream and makes its outcome record durable; returns the
/// upstream's answer for the caller to present. `Err` only when the record could not be
/// written: the agent then gets no answer. The upstream's notifications about the call
/// go to `relay`, if given.
pub(super) async fn forward(
    rt: &Runtime,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    admitted: &pipeline::Admitted,
    (state, method, params): (&ServiceState, &str, Value),
    relay: Option<&NoteRelay>,
) -> Result<Result<Value, UpstreamError>, RpcError> {
    let started = Instant::now();
    let result = state
        .upstream
        .request_relayed(method, params, timeout(rt), relay)
        .await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let wire = match &result {
        Ok((_, wire)) | Err(UpstreamError::Rpc(_, wire)) => *wire,
        Err(_) => Wire::default(),
    };
    let result = result.map(|(value, _)| value);
    let outcome = |status: Option<i64>, outcome_unknown: bool| Outcome {
        status,
        bytes_in: wire.sent,
        bytes_out: wire.received,
        latency_ms,
        outcome_unknown,
    };
    let (outcome, detail) = match &result {
        Ok(value) => {
            let is_error = value.get("isError").and_then(Value::as_bool) == Some(true);
            let status = if is_error { 500 } else { 200 };
            (
                outcome(Some(status), false),
                json!({"mcp": {"method": method, "is_error": is_error}}),
            )
        }
        Err(UpstreamError::Rpc(e, _)) => (
            outcome(Some(502), false),
            json!({"mcp": {"method": method, "rpc_error": e.code}}),
        ),
        Err(UpstreamError::Timeout) => (outcome(None, true), json!({"error": "timeout"})),
        Err(e) => {
            tracing::warn!(error = %e, "MCP upstream call failed");
            let blocked = matches!(e, UpstreamError::EgressBlocked);
            (
                outcome(None, false),
                json!({"error": if blocked { "egress_blocked" } else { "upstream_unreachable" }}),
            )
        }
    };
    pipeline::audit_outcome(rt, caller, call, meta, admitted, outcome, detail)
        .await
        .map_err(|e| audit_failed(&e))?;
    Ok(result)
}

/// Request metadata from a `tools/call`'s `_meta` (falling back to HTTP headers).
pub fn call_meta(
    params: &Map<String, Value>,
    headers: &http::HeaderMap,
    rid: &str,
    default_wait_secs: u64,
    max_wait_ms: u64,
) -> CallMeta {
    let meta = params.get("_meta").and_then(Value::as_object);
    let text = |key: &str, header: &str| -> Option<String> {
        meta.and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                headers
                    .get(header)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .map(|s| s.chars().take(1024).collect())
    };
    let wait_secs = meta
        .and_then(|m| m.get("steward/wait"))
        .and_then(Value::as_u64)
        .unwrap_or(default_wait_secs);
    CallMeta {
        request_id: rid.to_owned(),
        reason: text("steward/reason", "steward-reason"),
        traceparent: text("traceparent", "traceparent"),
        approval_id: text("steward/approval", "steward-approval"),
        wait: (wait_secs > 0)
            .then(|| Duration::from_secs(wait_secs).min(Duration::from_millis(max_wait_ms))),
        hangup: crate::peer::Hangup::default(),
    }
}

/// The service's default approval wait, in seconds.
pub fn default_wait_secs(rt: &Runtime, tool_name: &str) -> u64 {
    let Some((service, _)) = tool_name.split_once(SEPARATOR) else {
        return 0;
    };
    rt.service_table()
        .get(service)
        .and_then(|s| s.spec.mcp.as_ref().map(|m| m.approval_wait_secs))
        .unwrap_or(0)
}

fn sensitive_args(tool: &Value) -> Vec<String> {
    tool.get("inputSchema")
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .filter(|(_, p)| {
                    p.get("writeOnly").and_then(Value::as_bool) == Some(true)
                        || p.get("format").and_then(Value::as_str) == Some("password")
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// `tools/call`: resolve, admit (authorize + durable decision), forward, audit the outcome.
/// The upstream's progress and log notifications about the call go to `relay`, if given.
pub async fn call_tool(
    rt: &Arc<Runtime>,
    caller: &Caller,
    params: &Map<String, Value>,
    meta: &CallMeta,
    relay: Option<NoteRelay>,
) -> Result<Value, RpcError> {
    let rid = meta.request_id.as_str();
    // An unknown tool is a tool error (as the reference SDK servers answer), so the model
    // sees it and can pick another tool.
    let unknown = |name: &str| {
        tool_error(
            &format!(
                "Unknown tool `{}`: call tools/list for the tools available to you.",
                name.chars().take(200).collect::<String>()
            ),
            json!({"steward/request_id": rid, "steward/status": "unknown_tool"}),
        )
    };
    let (name, arguments) = name_and_arguments(params)?;
    let Some((service, state, tool_name)) = resolve(rt, name)? else {
        return Ok(unknown(name));
    };
    let service_name = service.spec.name.as_str();
    let view = match tools(rt, &state).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(mcp.service = %service_name, error = %e, "MCP upstream unavailable");
            return Ok(tool_error(
                "The upstream MCP server is unavailable; try again later.",
                json!({"steward/request_id": rid}),
            ));
        }
    };
    let operation = OperationName::new(service_name, tool_name);
    let digest = sha256_hex(format!("mcp\n{operation}\n{}", canonical(&arguments)).as_bytes());
    if view.quarantined.iter().any(|t| t == tool_name) {
        // Blocked before policy: its definition is not the one an admin approved.
        let call = ResolvedCall {
            operation: operation.clone(),
            class: steward_core::OperationClass::Write,
            args: arguments,
            sensitive: Vec::new(),
            digest,
        };
        let mut event = pipeline::decision_event(rt, caller, &call, meta, None);
        event.decision = Some(AuditDecision::Deny);
        event.detail = json!({"reason": "mcp_tool_quarantined"});
        rt.audit(event).await.map_err(|e| audit_failed(&e))?;
        return Ok(tool_error(
            &format!(
                "Denied by Steward: tool `{name}` is quarantined because its definition changed or it is new; an administrator must review and approve it."
            ),
            json!({"steward/request_id": rid, "steward/status": "quarantined"}),
        ));
    }
    let Some(tool) = view.usable.get(tool_name) else {
        return Ok(unknown(name));
    };
    let call = ResolvedCall {
        operation,
        class: pins::class_of(tool, &service.spec.class_overrides),
        args: arguments.clone(),
        sensitive: sensitive_args(tool),
        digest,
    };
    let admitted = match pipeline::admit(rt, caller, &call, meta).await {
        Ok(a) => a,
        Err(problem) => {
            return refusal(&problem, rid).map(|(text, meta)| tool_error(&text, meta));
        }
    };
    let upstream = (
        state.as_ref(),
        "tools/call",
        json!({"name": tool_name, "arguments": arguments}),
    );
    Ok(
        match forward(rt, caller, &call, meta, &admitted, upstream, relay.as_ref()).await? {
            Ok(value) => value,
            Err(UpstreamError::Rpc(e, _)) => return Err(e),
            Err(UpstreamError::Timeout) => tool_error(
                "The upstream tool timed out; whether it ran is unknown.",
                json!({"steward/request_id": rid}),
            ),
            Err(_) => tool_error(
                "The upstream MCP server is unavailable; try again later.",
                json!({"steward/request_id": rid}),
            ),
        },
    )
}

/// `resources/subscribe` and `resources/unsubscribe`: relayed, in name order, to the
/// upstream servers of which the caller can see at least one tool, until one accepts the
/// URI; returns the service that accepted it. A subscription returns no data, so it is not
/// a policy decision of its own and writes no audit record, but it is refused where policy
/// denies reading the URI outright (`resources/read` with that `uri`). The service's
/// update notifications are listened for (see [`McpUpstream::listen`]); the caller records
/// the subscription in its session, whose event stream receives them. Upstreams are shared
/// by all agents, so an unsubscription is relayed only once no session holds the
/// subscription any more.
pub async fn relay_subscription(
    rt: &Arc<Runtime>,
    caller: &Caller,
    method: &str,
    params: &Map<String, Value>,
) -> Result<String, RpcError> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(jsonrpc::INVALID_PARAMS, "`uri` must be a string"))?;
    // Sessions keep what they subscribed to: a bound on the URI bounds their memory.
    if uri.len() > super::upstream::MAX_URI_BYTES {
        return Err(RpcError::new(
            jsonrpc::INVALID_PARAMS,
            format!(
                "`uri` is longer than {} bytes",
                super::upstream::MAX_URI_BYTES
            ),
        ));
    }
    let mut last = RpcError::new(
        jsonrpc::INVALID_PARAMS,
        "no upstream MCP server serves this resource",
    );
    for service in mcp_services(rt) {
        let Ok(state) = service_state(rt, &service) else {
            continue;
        };
        let Ok(view) = tools(rt, &state).await else {
            continue;
        };
        let visible = view.usable.iter().any(|(name, tool)| {
            let operation = OperationName::new(service.spec.name.clone(), name.clone());
            !denied_outright(
                rt,
                caller,
                &operation,
                pins::class_of(tool, &service.spec.class_overrides),
            )
        });
        if !visible {
            continue;
        }
        if method == "resources/subscribe" {
            // Hearing when a resource changes is a little of reading it: an agent that may
            // not read the URI may not subscribe to it either.
            let read = super::content::RESOURCES_READ;
            let operation = OperationName::new(service.spec.name.clone(), read);
            let class = super::content::content_class(&service.spec, read);
            if denied_outright_with(rt, caller, &operation, class, json!({"uri": uri})) {
                last = RpcError::new(
                    super::content::DENIED,
                    "Denied by Steward: policy does not let you read this resource, so you cannot subscribe to it.",
                );
                continue;
            }
        }
        if method == "resources/unsubscribe" && rt.mcp.sessions.subscribed(&service.spec.name, uri)
        {
            // Another session still wants its updates.
            return Ok(service.spec.name.clone());
        }
        match state
            .upstream
            .request(method, json!({"uri": uri}), timeout(rt))
            .await
        {
            Ok(_) => {
                if method == "resources/subscribe" {
                    state.upstream.listen();
                }
                return Ok(service.spec.name.clone());
            }
            Err(UpstreamError::Rpc(e, _)) => last = e,
            Err(e) => {
                tracing::debug!(mcp.service = %service.spec.name, error = %e, "resource subscription not relayed");
            }
        }
    }
    Err(last)
}
