//! Prompts and resources of upstream MCP servers: aggregated listings, and `prompts/get` and
//! `resources/read` governed like tool calls.
//!
//! Every MCP service has two policy operations besides its tools, `<service>:prompts/get`
//! (argument `name`) and `<service>:resources/read` (argument `uri`), both of class `read`
//! unless the service's `class_overrides` say otherwise. MCP tool names cannot contain `/`,
//! so they never collide with a tool (a pinned tool with such a name is not an operation).
//!
//! - `prompts/list` shows the prompts the caller is not denied outright (judged with the
//!   prompt's name as `name`), named `<service>__<prompt>` like tools.
//! - `resources/list` and `resources/templates/list` show the resources and templates the
//!   caller is not denied outright (judged with the URI, or the template text, as `uri`).
//!   URIs are kept as the upstream wrote them; a read goes to the first service, in name
//!   order, that lists the URI or has a template matching it (listings are reused for
//!   [`LISTING_TTL`]; a URI not found lists again, at most once per `MIN_REFRESH`).
//! - `prompts/get` and `resources/read` run through the shared phase pipeline: token,
//!   policy (with approvals), durable decision record, the upstream call, outcome record.
//!   A denial is a JSON-RPC error naming the reason (prompts and resources have no
//!   `isError` result); an approval requirement names the approval id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use steward_core::{OperationClass, OperationName};
use steward_policy::{ArgDef, ArgType, OperationDef};

use super::aggregate::{self, SEPARATOR, ServiceState};
use super::jsonrpc::{self, RpcError, canonical};
use super::upstream::UpstreamError;
use crate::pipeline::{self, CallMeta, Caller, ResolvedCall};
use crate::runtime::{Runtime, sha256_hex};
use crate::service::{ServiceRuntime, ServiceSpec};

/// The policy operation of `prompts/get` on every MCP service.
pub const PROMPTS_GET: &str = "prompts/get";
/// The policy operation of `resources/read` on every MCP service.
pub const RESOURCES_READ: &str = "resources/read";
/// How long a service's resource listing is reused to route reads.
pub const LISTING_TTL: Duration = Duration::from_secs(30);
/// A read of a URI missing from the listing lists again, unless the listing is this young.
const MIN_REFRESH: Duration = Duration::from_secs(5);
/// JSON-RPC error code of a call Steward denied (or holds for approval).
pub const DENIED: i64 = -32003;
/// Longest URI accepted for a read.
const MAX_URI_LEN: usize = 4096;
/// Work bound of matching one URI against one template.
const MAX_MATCH_STEPS: usize = 20_000;

/// Resources and templates of one service, as last listed.
#[derive(Debug)]
pub struct ResourceIndex {
    uris: Vec<String>,
    templates: Vec<String>,
    fetched: Instant,
}

/// The content operations every MCP service has besides its tools.
pub fn catalog_operations(spec: &ServiceSpec) -> Vec<OperationDef> {
    let class = |name: &str| content_class(spec, name);
    let arg = |name: &str| ArgDef {
        name: name.to_owned(),
        arg_type: ArgType::String,
        optional: false,
    };
    vec![
        OperationDef {
            name: PROMPTS_GET.to_owned(),
            class: class(PROMPTS_GET),
            args: vec![arg("name")],
        },
        OperationDef {
            name: RESOURCES_READ.to_owned(),
            class: class(RESOURCES_READ),
            args: vec![arg("uri")],
        },
        OperationDef {
            name: super::aggregate::ELICITATION.to_owned(),
            class: elicitation_class(spec),
            args: vec![
                arg("tool"),
                arg("message"),
                ArgDef {
                    name: "fields".to_owned(),
                    arg_type: ArgType::SetOfString,
                    optional: false,
                },
            ],
        },
    ]
}

/// Whether a tool name is reserved for a content operation.
pub fn is_reserved(name: &str) -> bool {
    name == PROMPTS_GET || name == RESOURCES_READ || name == super::aggregate::ELICITATION
}

/// The class of an upstream's question to the human during a tool call: the answer goes to
/// the tool, so `write`, unless the service's `class_overrides` say otherwise.
pub(super) fn elicitation_class(spec: &ServiceSpec) -> OperationClass {
    spec.class_overrides
        .get(super::aggregate::ELICITATION)
        .copied()
        .unwrap_or(OperationClass::Write)
}

/// A content operation's class: `read`, unless the service's `class_overrides` say otherwise.
pub(super) fn content_class(spec: &ServiceSpec, operation: &str) -> OperationClass {
    spec.class_overrides
        .get(operation)
        .copied()
        .unwrap_or(OperationClass::Read)
}

/// MCP services whose `operation` the caller's token allows, with their connections.
fn candidate_services(
    rt: &Arc<Runtime>,
    caller: &Caller,
    operation: &str,
) -> Vec<(Arc<ServiceRuntime>, Arc<ServiceState>)> {
    aggregate::mcp_services(rt)
        .into_iter()
        .filter(|service| {
            caller
                .token
                .allows(&OperationName::new(service.spec.name.clone(), operation))
        })
        .filter_map(|service| match aggregate::service_state(rt, &service) {
            Ok(state) => Some((service, state)),
            Err(e) => {
                tracing::warn!(mcp.service = %service.spec.name, error = %e, "MCP service unavailable; its content is not listed");
                None
            }
        })
        .collect()
}

/// `prompts/list`, `resources/list` or `resources/templates/list`, aggregated.
pub async fn list(rt: &Arc<Runtime>, caller: &Caller, method: &str) -> Value {
    let (operation, key) = match method {
        "prompts/list" => (PROMPTS_GET, "prompts"),
        "resources/templates/list" => (RESOURCES_READ, "resourceTemplates"),
        _ => (RESOURCES_READ, "resources"),
    };
    // Listed only if policy would not deny fetching it outright: a prompt by its name, a
    // resource by its URI, a template by its template text as the URI.
    let (arg, field) = match key {
        "prompts" => ("name", "name"),
        "resourceTemplates" => ("uri", "uriTemplate"),
        _ => ("uri", "uri"),
    };
    let mut out = Vec::new();
    for (service, state) in candidate_services(rt, caller, operation) {
        let op = OperationName::new(service.spec.name.clone(), operation);
        let class = content_class(&service.spec, operation);
        let items = match aggregate::list_all(rt, &state, method, key).await {
            Ok(items) => items,
            // A server without prompts or resources answers "method not found".
            Err(UpstreamError::Rpc(e, _)) if e.code == jsonrpc::METHOD_NOT_FOUND => continue,
            Err(e) => {
                tracing::warn!(mcp.service = %service.spec.name, error = %e, "MCP {method} failed");
                continue;
            }
        };
        for mut item in items {
            let Some(value) = item.get(field).and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            if aggregate::denied_outright_with(rt, caller, &op, class, json!({ arg: value })) {
                continue;
            }
            if key == "prompts" {
                let name = value;
                if let Some(obj) = item.as_object_mut() {
                    obj.insert(
                        "name".into(),
                        json!(format!("{}{SEPARATOR}{name}", service.spec.name)),
                    );
                }
            }
            out.push(item);
        }
    }
    json!({ key: out })
}

/// The service's resource index, listing the upstream again when stale or `refresh`.
async fn resource_index(
    rt: &Runtime,
    state: &ServiceState,
    refresh: bool,
) -> Option<Arc<ResourceIndex>> {
    // A forced refresh still reuses a listing younger than `MIN_REFRESH`, so reads of URIs
    // no upstream serves cannot make Steward list every upstream on every request.
    let max_age = if refresh { MIN_REFRESH } else { LISTING_TTL };
    if let Ok(slot) = state.resources.read()
        && let Some(index) = slot.as_ref()
        && index.fetched.elapsed() < max_age
    {
        return Some(Arc::clone(index));
    }
    let strings = |items: Vec<Value>, field: &str| -> Vec<String> {
        items
            .iter()
            .filter_map(|i| i.get(field).and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let uris = aggregate::list_all(rt, state, "resources/list", "resources").await;
    let templates =
        aggregate::list_all(rt, state, "resources/templates/list", "resourceTemplates").await;
    if uris.is_err() && templates.is_err() {
        return None;
    }
    let index = Arc::new(ResourceIndex {
        uris: strings(uris.unwrap_or_default(), "uri"),
        templates: strings(templates.unwrap_or_default(), "uriTemplate"),
        fetched: Instant::now(),
    });
    if let Ok(mut slot) = state.resources.write() {
        *slot = Some(Arc::clone(&index));
    }
    Some(index)
}

impl ResourceIndex {
    /// Whether a read of `uri` goes here: listed, or an expansion of a listed template.
    fn serves(&self, uri: &str) -> bool {
        self.uris.iter().any(|u| u == uri)
            || self.templates.iter().any(|t| template_matches(t, uri))
    }

    /// Whether `uri` is a listed resource or template, as written (completion references).
    fn lists(&self, uri: &str) -> bool {
        self.uris.iter().any(|u| u == uri) || self.templates.iter().any(|t| t == uri)
    }
}

/// Whether `uri` is an expansion of an RFC 6570 URI template. `{var}` matches one or more
/// characters other than `/`, `?`, `#` and `&`; any other expression (`{+var}`, `{?q}`, …)
/// matches any run of characters. Bounded work: a pathological pair does not match.
pub fn template_matches(template: &str, uri: &str) -> bool {
    #[derive(Debug)]
    enum Part<'a> {
        Literal(&'a str),
        Simple,
        Any,
    }
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find('{') {
            Some(0) => {
                let Some(end) = rest.find('}') else {
                    return false;
                };
                let expression = rest.get(1..end).unwrap_or_default();
                parts.push(if expression.starts_with(|c: char| "+#./;?&".contains(c)) {
                    Part::Any
                } else {
                    Part::Simple
                });
                rest = rest.get(end + 1..).unwrap_or_default();
            }
            Some(i) => {
                parts.push(Part::Literal(rest.get(..i).unwrap_or_default()));
                rest = rest.get(i..).unwrap_or_default();
            }
            None => {
                parts.push(Part::Literal(rest));
                rest = "";
            }
        }
    }
    fn go(parts: &[Part<'_>], uri: &str, steps: &mut usize) -> bool {
        *steps += 1;
        if *steps > MAX_MATCH_STEPS {
            return false;
        }
        let Some((first, tail)) = parts.split_first() else {
            return uri.is_empty();
        };
        match first {
            Part::Literal(text) => uri
                .strip_prefix(text)
                .is_some_and(|rest| go(tail, rest, steps)),
            Part::Simple | Part::Any => {
                let simple = matches!(first, Part::Simple);
                // At least one character: every end position after a character.
                for i in uri.char_indices().map(|(i, c)| i + c.len_utf8()) {
                    let taken = uri.get(..i).unwrap_or_default();
                    if simple && taken.contains(['/', '?', '#', '&']) {
                        break;
                    }
                    if go(tail, uri.get(i..).unwrap_or_default(), steps) {
                        return true;
                    }
                }
                false
            }
        }
    }
    go(&parts, uri, &mut 0)
}

/// `prompts/get` or `resources/read`: resolve the service, admit (authorize + durable
/// decision), forward, audit the outcome.
pub async fn get(
    rt: &Arc<Runtime>,
    caller: &Caller,
    method: &str,
    params: &Map<String, Value>,
    meta: &CallMeta,
) -> Result<Value, RpcError> {
    let (service, state, args) = if method == PROMPTS_GET {
        let (name, arguments) = aggregate::name_and_arguments(params)?;
        let Some((service, state, prompt)) = aggregate::resolve(rt, name)? else {
            return Err(unknown_prompt(name));
        };
        (
            service,
            state,
            json!({"name": prompt, "arguments": arguments}),
        )
    } else {
        let uri = params
            .get("uri")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty() && u.len() <= MAX_URI_LEN)
            .ok_or_else(|| {
                RpcError::new(jsonrpc::INVALID_PARAMS, "`uri` must be a non-empty string")
            })?;
        let (service, state) = route(rt, caller, uri, ResourceIndex::serves)
            .await
            .ok_or_else(|| resource_not_found(uri))?;
        (service, state, json!({"uri": uri}))
    };
    let call = content_call(&service, method, args, "mcp", None);
    let upstream = (state.as_ref(), method, call.args.clone());
    relay(
        rt,
        caller,
        &call,
        meta,
        pipeline::Approvals::Request,
        upstream,
    )
    .await
}

/// The pipeline's view of a content operation of `service`. The request digest (what an
/// approval is bound to) covers `scope`, the operation and `digested` (the arguments when
/// `None`).
fn content_call(
    service: &ServiceRuntime,
    method: &str,
    args: Value,
    scope: &str,
    digested: Option<&Value>,
) -> ResolvedCall {
    let operation = OperationName::new(service.spec.name.clone(), method);
    let digested = canonical(digested.unwrap_or(&args));
    ResolvedCall {
        digest: sha256_hex(format!("{scope}\n{operation}\n{digested}").as_bytes()),
        class: content_class(&service.spec, method),
        operation,
        args,
        sensitive: Vec::new(),
    }
}

fn unknown_prompt(name: &str) -> RpcError {
    RpcError::new(
        jsonrpc::INVALID_PARAMS,
        format!(
            "Unknown prompt `{}`: call prompts/list for the prompts available to you.",
            name.chars().take(200).collect::<String>()
        ),
    )
}

/// MCP's "resource not found".
fn resource_not_found(uri: &str) -> RpcError {
    RpcError::new(-32002, "Resource not found").with_data(json!({"uri": uri}))
}

/// Admits a content call (policy, durable decision record), sends it upstream and makes
/// its outcome durable; returns the upstream's answer or the JSON-RPC error the agent sees.
async fn relay(
    rt: &Arc<Runtime>,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    approvals: pipeline::Approvals,
    upstream: (&ServiceState, &str, Value),
) -> Result<Value, RpcError> {
    let rid = meta.request_id.as_str();
    let admitted = pipeline::admit_as(rt, caller, call, meta, approvals)
        .await
        .map_err(|problem| match aggregate::refusal(&problem, rid) {
            Ok((text, data)) => RpcError::new(DENIED, text).with_data(data),
            Err(e) => e,
        })?;
    match aggregate::forward(rt, caller, call, meta, &admitted, upstream, None).await? {
        Ok(value) => Ok(value),
        Err(UpstreamError::Rpc(e, _)) => Err(e),
        Err(_) => Err(RpcError::new(
            jsonrpc::INTERNAL_ERROR,
            "the upstream MCP server is unavailable; try again later",
        )
        .with_data(json!({"steward/request_id": rid}))),
    }
}

/// `completion/complete`: argument completion for a prompt (`ref/prompt`, by its
/// namespaced name) or a resource template (`ref/resource`, by its URI or template text).
///
/// Governed as the operation it helps to call (`<service>:prompts/get` with the prompt's
/// `name`, `<service>:resources/read` with the `uri`): policy must allow it outright (an
/// approval-required decision refuses it rather than page a human for a keystroke), and
/// the decision and outcome are audited like a get or read.
pub async fn complete(
    rt: &Arc<Runtime>,
    caller: &Caller,
    params: &Map<String, Value>,
    meta: &CallMeta,
) -> Result<Value, RpcError> {
    let invalid = |text: &str| RpcError::new(jsonrpc::INVALID_PARAMS, text);
    let reference = params
        .get("ref")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("`ref` must be an object"))?;
    if !params.get("argument").is_some_and(Value::is_object) {
        return Err(invalid("`argument` must be an object"));
    }
    let mut upstream: Map<String, Value> = params
        .iter()
        .filter(|(k, _)| k.as_str() != "_meta")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let text = |key: &str| {
        reference
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty() && v.len() <= MAX_URI_LEN)
            .ok_or_else(|| invalid(&format!("`ref.{key}` must be a non-empty string")))
    };
    let (service, state, method, args) = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            let name = text("name")?;
            let Some((service, state, prompt)) = aggregate::resolve(rt, name)? else {
                return Err(unknown_prompt(name));
            };
            let mut reference = reference.clone();
            reference.insert("name".into(), json!(prompt));
            upstream.insert("ref".into(), Value::Object(reference));
            (service, state, PROMPTS_GET, json!({ "name": prompt }))
        }
        Some("ref/resource") => {
            let uri = text("uri")?;
            let (service, state) = route(rt, caller, uri, ResourceIndex::lists)
                .await
                .ok_or_else(|| resource_not_found(uri))?;
            (service, state, RESOURCES_READ, json!({ "uri": uri }))
        }
        _ => return Err(invalid("`ref.type` must be `ref/prompt` or `ref/resource`")),
    };
    let upstream = Value::Object(upstream);
    let call = content_call(
        &service,
        method,
        args,
        "mcp\ncompletion/complete",
        Some(&upstream),
    );
    let request = (state.as_ref(), "completion/complete", upstream);
    relay(
        rt,
        caller,
        &call,
        meta,
        pipeline::Approvals::Refuse,
        request,
    )
    .await
}

/// The first service, in name order, whose resource index `matches` `uri`.
async fn route(
    rt: &Arc<Runtime>,
    caller: &Caller,
    uri: &str,
    matches: fn(&ResourceIndex, &str) -> bool,
) -> Option<(Arc<ServiceRuntime>, Arc<ServiceState>)> {
    let candidates = candidate_services(rt, caller, RESOURCES_READ);
    for refresh in [false, true] {
        for (service, state) in &candidates {
            if let Some(index) = resource_index(rt, state, refresh).await
                && matches(&index, uri)
            {
                return Some((Arc::clone(service), Arc::clone(state)));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_expansions_only() {
        let t = "demo://resource/dynamic/text/{resourceId}";
        assert!(template_matches(t, "demo://resource/dynamic/text/7"));
        assert!(template_matches(t, "demo://resource/dynamic/text/abc"));
        assert!(!template_matches(t, "demo://resource/dynamic/text/"));
        assert!(!template_matches(t, "demo://resource/dynamic/text/7/x"));
        assert!(!template_matches(t, "demo://resource/dynamic/blob/7"));
        assert!(template_matches("file:///{+path}", "file:///a/b/c.txt"));
        assert!(template_matches("x://{a}-{b}", "x://1-2"));
        assert!(!template_matches("x://{a}-{b}", "x://1"));
        assert!(template_matches("plain://exact", "plain://exact"));
        assert!(!template_matches("plain://exact", "plain://exactly"));
        assert!(!template_matches("broken://{oops", "broken://x"));
        let many = "{a}".repeat(40);
        assert!(template_matches(&many, &"x".repeat(200)));
        // Bounded work on a pathological pair (an exhaustive search would never finish).
        assert!(!template_matches(&format!("{many}y"), &"x".repeat(200)));
    }

    #[test]
    fn reserved_names_are_the_content_operations() {
        assert!(is_reserved(PROMPTS_GET) && is_reserved(RESOURCES_READ));
        assert!(!is_reserved("echo"));
    }
}
