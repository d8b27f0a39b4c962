//! The `/mcp` endpoint (Streamable HTTP): POST carries one JSON-RPC message; DELETE ends a
//! handshake-era session; GET opens a session's standalone event stream, which carries the
//! upstreams' resource updates for the session's subscriptions and list-change
//! notifications (stateless requests have no session, so for them GET is 405).
//!
//! Order of checks on every request: Origin/Host (DNS-rebinding protection), then the
//! bearer token (identity comes only from it), then the message, then the era:
//! - **handshake era** (`initialize`, then `Mcp-Session-Id` on every request): the session
//!   must exist and belong to the caller's identity;
//! - **stateless era** (`2026-07-28`): every request carries `params._meta` with the
//!   protocol version and client capabilities, and the `Mcp-Protocol-Version`,
//!   `Mcp-Method` and (for `tools/call`) `Mcp-Name` headers must agree with the body.
//!
//! Responses are JSON, except a `tools/call` from a client that accepts
//! `text/event-stream` and asked for notifications: a `progressToken`, or log messages
//! (`logging/setLevel` in a session, the `io.modelcontextprotocol/logLevel` `_meta` key
//! in the stateless era). Such a call is answered with JSON if the result comes first, and
//! switches to an event stream as soon as there is something to say before it: the
//! upstream tool's progress (under the client's own token) and log messages, Steward's
//! own progress while the call is held for a human approval, or the upstream's elicitation
//! for a session that declared that capability (its answer comes back as a POSTed
//! response, audited before it is passed on).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::{Map, Value, json};
use steward_audit::{AuditEvent, EventKind};

use super::PendingAsk;
use super::jsonrpc::{self, Id, Message, RpcError};
use super::session::{self, SessionRejection};
use super::upstream::{Ask, Note, NoteRelay};
use super::{HANDSHAKE_VERSIONS, MODERN_VERSIONS, McpConfig, log_level_rank};
use super::{aggregate, content};
use crate::pipeline::{self, Caller};
use crate::problem::Problem;
use crate::runtime::{Runtime, random_bytes};

/// `_meta` key of the protocol version in the stateless envelope.
pub const PROTOCOL_VERSION_META_KEY: &str = "io.modelcontextprotocol/protocolVersion";
/// `_meta` key of the client capabilities in the stateless envelope.
pub const CLIENT_CAPABILITIES_META_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
/// `_meta` key of the server implementation on stateless results.
pub const SERVER_INFO_META_KEY: &str = "io.modelcontextprotocol/serverInfo";
/// Session header.
pub const SESSION_HEADER: &str = "mcp-session-id";
/// `_meta` key by which a stateless-era request opts in to log messages at that level.
pub const LOG_LEVEL_META_KEY: &str = "io.modelcontextprotocol/logLevel";
/// How long clients of the stateless era may cache a tool listing.
pub const TOOLS_TTL_MS: u64 = 30_000;

const INSTRUCTIONS: &str = "Tools from several upstream servers, named <service>__<tool>. Every call is governed by \
Steward: a denied call returns an error naming the reason; a call needing human approval returns an approval id.";

/// The `/mcp` handler for every method.
pub async fn handle(
    State(rt): State<Arc<Runtime>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let config = rt.mcp.config();
    if let Err(problem) = check_origin_and_host(&config, req.headers(), req.uri()) {
        return problem.into_response();
    }
    match *req.method() {
        Method::POST => post(rt, peer, req).await,
        Method::DELETE => delete(rt, peer, req).await,
        Method::GET => get(rt, peer, req).await,
        _ => Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "Method not allowed",
        )
        .into_response(),
    }
}

fn host_parts(value: &str) -> (String, Option<u16>) {
    let value = value.trim().to_ascii_lowercase();
    if let Some(rest) = value.strip_prefix('[')
        && let Some((host, tail)) = rest.split_once(']')
    {
        return (
            host.to_owned(),
            tail.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match value.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_owned(), port.parse().ok()),
        _ => (value, None),
    }
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// DNS-rebinding protection: the Host must name this server, and a browser Origin must be
/// same-origin loopback or explicitly allowed.
#[allow(clippy::result_large_err)] // `Problem` is the crate-wide error response type
pub fn check_origin_and_host(
    config: &McpConfig,
    headers: &HeaderMap,
    uri: &http::Uri,
) -> Result<(), Problem> {
    let listen = config.listen;
    let loopback_listener = listen.is_none_or(|l| l.ip().is_loopback());
    let port_ok =
        |port: Option<u16>| listen.is_none_or(|l| port.unwrap_or(80) == l.port() || port.is_none());
    let host_value = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .ok_or_else(|| Problem::bad_request("missing Host header"))?;
    let (host, port) = host_parts(&host_value);
    let allowed_by_config = config.allowed_hosts.iter().any(|h| {
        let (ah, ap) = host_parts(h);
        ah == host && (ap.is_none() || ap == port)
    });
    let host_ok = allowed_by_config
        || (loopback_listener && is_loopback_name(&host) && port_ok(port))
        || listen.is_some_and(|l| {
            !l.ip().is_loopback() && (config.allowed_hosts.is_empty() || host == l.ip().to_string())
        });
    if !host_ok {
        return Err(Problem::forbidden(format!(
            "Host `{}` is not served here",
            host_value.chars().take(100).collect::<String>()
        )));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin
            .to_str()
            .map_err(|_| Problem::forbidden("malformed Origin"))?
            .trim()
            .to_ascii_lowercase();
        let allowed = config
            .allowed_origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(&origin));
        let same_origin_loopback = url::Url::parse(&origin).ok().is_some_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| {
                    is_loopback_name(h.trim_start_matches('[').trim_end_matches(']'))
                })
                && loopback_listener
                && listen.is_none_or(|l| u.port_or_known_default() == Some(l.port()))
        });
        if !(allowed || same_origin_loopback) {
            return Err(Problem::forbidden(format!(
                "Origin `{}` is not allowed",
                origin.chars().take(100).collect::<String>()
            )));
        }
    }
    Ok(())
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn rpc_error(status: StatusCode, id: Option<&Id>, error: RpcError) -> Response {
    json_response(status, &jsonrpc::error_response(id, &error))
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, RpcError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(RpcError::new(
            jsonrpc::HEADER_MISMATCH,
            format!("the `{name}` header appears more than once"),
        ));
    }
    first.to_str().map(Some).map_err(|_| {
        RpcError::new(
            jsonrpc::HEADER_MISMATCH,
            format!("the `{name}` header is not ASCII"),
        )
    })
}

/// Decodes the `=?base64?…?=` form the stateless era uses for non-ASCII header values.
fn decode_header_value(value: &str) -> Option<String> {
    use base64::Engine;
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(payload) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(value.to_owned()),
    }
}

enum Era {
    Handshake,
    Modern,
}

/// The stateless-era validation ladder: envelope, header agreement, supported version.
fn classify(
    method: &str,
    params: &Map<String, Value>,
    headers: &HeaderMap,
) -> Result<Era, RpcError> {
    let version_header = header_text(headers, "mcp-protocol-version")?;
    let meta = params.get("_meta").and_then(Value::as_object);
    let envelope_version = meta.and_then(|m| m.get(PROTOCOL_VERSION_META_KEY));
    let modern = envelope_version.is_some()
        || method == "server/discover"
        || version_header.is_some_and(|v| MODERN_VERSIONS.contains(&v));
    if !modern {
        return Ok(Era::Handshake);
    }
    let meta = meta.ok_or_else(|| {
        RpcError::new(jsonrpc::INVALID_PARAMS, format!("params._meta must carry `{PROTOCOL_VERSION_META_KEY}` and `{CLIENT_CAPABILITIES_META_KEY}`"))
    })?;
    let missing: Vec<&str> = [PROTOCOL_VERSION_META_KEY, CLIENT_CAPABILITIES_META_KEY]
        .into_iter()
        .filter(|k| !meta.contains_key(*k))
        .collect();
    if !missing.is_empty() {
        return Err(RpcError::new(
            jsonrpc::INVALID_PARAMS,
            format!("params._meta is missing {}", missing.join(", ")),
        ));
    }
    let version = meta
        .get(PROTOCOL_VERSION_META_KEY)
        .cloned()
        .unwrap_or(Value::Null);
    if version_header.is_none_or(|h| Value::String(h.to_owned()) != version) {
        return Err(RpcError::new(
            jsonrpc::HEADER_MISMATCH,
            "the mcp-protocol-version header does not match the request envelope",
        ));
    }
    if header_text(headers, "mcp-method")? != Some(method) {
        return Err(RpcError::new(
            jsonrpc::HEADER_MISMATCH,
            "the mcp-method header does not match the request body's method",
        ));
    }
    let name_key = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(key) = name_key
        && let Some(body_value) = params.get(key).and_then(Value::as_str)
    {
        let header_value = header_text(headers, "mcp-name")?.and_then(decode_header_value);
        if header_value.as_deref() != Some(body_value) {
            return Err(RpcError::new(
                jsonrpc::HEADER_MISMATCH,
                format!("the mcp-name header does not match the request body's `{key}`"),
            ));
        }
    }
    let version = version.as_str().ok_or_else(|| {
        RpcError::new(
            jsonrpc::INVALID_PARAMS,
            "the protocol version must be a string",
        )
    })?;
    if !MODERN_VERSIONS.contains(&version) {
        return Err(RpcError::new(
            jsonrpc::UNSUPPORTED_PROTOCOL_VERSION,
            "unsupported protocol version",
        )
        .with_data(json!({"supported": all_versions(), "requested": version})));
    }
    Ok(Era::Modern)
}

fn all_versions() -> Vec<&'static str> {
    MODERN_VERSIONS
        .iter()
        .chain(HANDSHAKE_VERSIONS.iter())
        .copied()
        .collect()
}

fn status_for(code: i64) -> StatusCode {
    match code {
        jsonrpc::PARSE_ERROR
        | jsonrpc::INVALID_REQUEST
        | jsonrpc::INVALID_PARAMS
        | jsonrpc::HEADER_MISMATCH
        | jsonrpc::UNSUPPORTED_PROTOCOL_VERSION => StatusCode::BAD_REQUEST,
        jsonrpc::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

/// `ttlMs`/`cacheScope` of a cacheable stateless-era result: listings are per identity.
fn cache_hints(result: &mut Value) {
    if let Some(obj) = result.as_object_mut() {
        obj.insert("ttlMs".into(), json!(TOOLS_TTL_MS));
        obj.insert("cacheScope".into(), json!("private"));
    }
}

/// The gateway's capabilities. List changes are announced on a session's event stream, so
/// only the handshake era (`streams`) has them.
fn capabilities(streams: bool) -> Value {
    json!({
        "tools": {"listChanged": streams},
        "prompts": {"listChanged": streams},
        "resources": {"subscribe": true, "listChanged": streams},
        "completions": {},
    })
}

fn server_info() -> Value {
    json!({"name": "steward", "title": "Steward MCP gateway", "version": env!("CARGO_PKG_VERSION")})
}

async fn read_body(body: Body) -> Result<Bytes, Response> {
    Limited::new(body, jsonrpc::MAX_MESSAGE_BYTES)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| {
            rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                RpcError::new(
                    jsonrpc::INVALID_REQUEST,
                    format!("the message exceeds {} bytes", jsonrpc::MAX_MESSAGE_BYTES),
                ),
            )
        })
}

async fn session_rejected(rt: &Runtime, caller: &Caller, rejection: SessionRejection) -> Response {
    match rejection {
        SessionRejection::Unknown => {
            Problem::not_found("unknown or expired MCP session; initialize again").into_response()
        }
        SessionRejection::WrongIdentity => {
            tracing::warn!(identity.id = %caller.identity.id, "MCP session id presented by another identity; refused");
            let mut event = steward_audit::AuditEvent::new(
                steward_audit::EventKind::Other("mcp_session_rejected".into()),
                caller.actor(),
            );
            event.detail = json!({"reason": "session belongs to another identity"});
            let _ = rt.audit(event).await;
            Problem::forbidden("this MCP session belongs to another identity").into_response()
        }
    }
}

async fn post(rt: Arc<Runtime>, peer: SocketAddr, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let caller = match pipeline::authenticate(&rt, &parts.headers, Some(peer.ip())).await {
        Ok(c) => c,
        Err(problem) => return problem.into_response(),
    };
    let bytes = match read_body(body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let message = match jsonrpc::parse(&bytes) {
        Ok(m) => m,
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, None, e),
    };
    let headers = &parts.headers;
    let (id, method, params) = match message {
        // Answers to the upstreams' elicitations Steward relayed; others: acknowledged.
        Message::Response {
            id: Id::String(asked),
            result,
        } => return answer_ask(&rt, &caller, &asked, Ok(result)).await,
        Message::Error {
            id: Some(Id::String(asked)),
            error,
        } => return answer_ask(&rt, &caller, &asked, Err(error)).await,
        Message::Response { .. } | Message::Error { .. } => {
            return StatusCode::ACCEPTED.into_response();
        }
        Message::Notification { method, params } => {
            if let Ok(Era::Handshake) = classify(&method, &params, headers)
                && let Ok(Some(sid)) = header_text(headers, SESSION_HEADER)
                && let Err(r) = rt.mcp.sessions.check(sid, &caller.identity.id, rt.now_ms())
            {
                return session_rejected(&rt, &caller, r).await;
            }
            return StatusCode::ACCEPTED.into_response();
        }
        Message::Request { id, method, params } => (id, method, params),
    };

    if method == "initialize" {
        return initialize(&rt, &caller, &id, &params, headers);
    }
    let era = match classify(&method, &params, headers) {
        Ok(era) => era,
        Err(e) => return rpc_error(status_for(e.code), Some(&id), e),
    };
    let log_floor: Option<usize>;
    let mut elicitation = false;
    if let Era::Handshake = era {
        let sid = match header_text(headers, SESSION_HEADER) {
            Ok(Some(sid)) => sid,
            Ok(None) => {
                return rpc_error(
                    StatusCode::BAD_REQUEST,
                    Some(&id),
                    RpcError::new(
                        jsonrpc::INVALID_REQUEST,
                        "missing Mcp-Session-Id: send initialize first, or use the 2026-07-28 per-request envelope",
                    ),
                );
            }
            Err(e) => return rpc_error(StatusCode::BAD_REQUEST, Some(&id), e),
        };
        match rt.mcp.sessions.check(sid, &caller.identity.id, rt.now_ms()) {
            // Log messages are relayed once the session asked with `logging/setLevel`.
            Ok(info) => {
                log_floor = info.log_level;
                elicitation = info.elicitation;
            }
            Err(r) => return session_rejected(&rt, &caller, r).await,
        }
    } else {
        // Stateless era: log messages only for a request that opted in, at that level.
        log_floor = params
            .get("_meta")
            .and_then(|m| m.get(LOG_LEVEL_META_KEY))
            .and_then(Value::as_str)
            .and_then(log_level_rank);
    }
    let modern = matches!(era, Era::Modern);
    let finish = |mut result: Value| -> Value {
        if modern && let Some(obj) = result.as_object_mut() {
            obj.entry("resultType").or_insert(json!("complete"));
            let meta = obj.entry("_meta").or_insert_with(|| json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.insert(SERVER_INFO_META_KEY.into(), server_info());
            }
        }
        result
    };
    match method.as_str() {
        "ping" => json_response(StatusCode::OK, &jsonrpc::response(&id, finish(json!({})))),
        "server/discover" => {
            let result = json!({
                "supportedVersions": all_versions(),
                "capabilities": capabilities(false),
                "serverInfo": server_info(),
                "instructions": INSTRUCTIONS,
                "ttlMs": 0,
                "cacheScope": "private",
            });
            json_response(StatusCode::OK, &jsonrpc::response(&id, finish(result)))
        }
        "tools/list" => {
            let tools = aggregate::list_tools(&rt, &caller).await;
            let mut result = json!({"tools": tools});
            if modern {
                // Per-identity listing: cacheable only by this client.
                cache_hints(&mut result);
            }
            json_response(StatusCode::OK, &jsonrpc::response(&id, finish(result)))
        }
        "tools/call" => {
            let wants = Wants {
                modern,
                log_floor,
                sse: accepts_sse(&parts.headers),
                elicitation,
            };
            let peer = parts.extensions.get::<crate::peer::PeerSocket>().cloned();
            tools_call(rt, caller, id, params, &parts.headers, wants, peer).await
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            let session = match era {
                Era::Handshake => header_text(headers, SESSION_HEADER).ok().flatten(),
                Era::Modern => None,
            };
            let uri = params.get("uri").and_then(Value::as_str);
            let too_many = || {
                rpc_error(
                    StatusCode::OK,
                    Some(&id),
                    RpcError::new(
                        jsonrpc::INVALID_PARAMS,
                        format!(
                            "this session holds {} subscriptions, the most it may; unsubscribe from some first",
                            session::MAX_SUBSCRIPTIONS
                        ),
                    ),
                )
            };
            if method == "resources/subscribe"
                && let (Some(sid), Some(uri)) = (session, uri)
            {
                match rt
                    .mcp
                    .sessions
                    .has_room(sid, &caller.identity.id, uri, rt.now_ms())
                {
                    Ok(true) => {}
                    Ok(false) => return too_many(),
                    Err(r) => return session_rejected(&rt, &caller, r).await,
                }
            }
            if method == "resources/unsubscribe"
                && let (Some(sid), Some(uri)) = (session, uri)
                && let Err(r) =
                    rt.mcp
                        .sessions
                        .unsubscribe(sid, &caller.identity.id, uri, rt.now_ms())
            {
                return session_rejected(&rt, &caller, r).await;
            }
            let service = match aggregate::relay_subscription(&rt, &caller, &method, &params).await
            {
                Ok(service) => service,
                Err(e) => return rpc_error(status_for(e.code), Some(&id), e),
            };
            if method == "resources/subscribe"
                && let (Some(sid), Some(uri)) = (session, uri)
            {
                match rt.mcp.sessions.subscribe(
                    sid,
                    &caller.identity.id,
                    &service,
                    uri,
                    rt.now_ms(),
                ) {
                    Ok(true) => {}
                    Ok(false) => return too_many(),
                    Err(r) => return session_rejected(&rt, &caller, r).await,
                }
            }
            json_response(StatusCode::OK, &jsonrpc::response(&id, finish(json!({}))))
        }
        "logging/setLevel" => {
            let Some(level) = params
                .get("level")
                .and_then(Value::as_str)
                .and_then(log_level_rank)
            else {
                return rpc_error(
                    StatusCode::OK,
                    Some(&id),
                    RpcError::new(
                        jsonrpc::INVALID_PARAMS,
                        "`level` must be one of debug, info, notice, warning, error, critical, alert, emergency",
                    ),
                );
            };
            if let Ok(Some(sid)) = header_text(headers, SESSION_HEADER)
                && let Err(r) =
                    rt.mcp
                        .sessions
                        .set_log_level(sid, &caller.identity.id, level, rt.now_ms())
            {
                return session_rejected(&rt, &caller, r).await;
            }
            json_response(StatusCode::OK, &jsonrpc::response(&id, finish(json!({}))))
        }
        "resources/list" | "resources/templates/list" | "prompts/list" => {
            let mut result = content::list(&rt, &caller, &method).await;
            if modern {
                cache_hints(&mut result);
            }
            json_response(StatusCode::OK, &jsonrpc::response(&id, finish(result)))
        }
        "prompts/get" | "resources/read" | "completion/complete" => {
            let rid = pipeline::request_id();
            let name = params
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let meta = aggregate::call_meta(
                &params,
                &parts.headers,
                &rid,
                aggregate::default_wait_secs(&rt, name),
                rt.settings.max_approval_wait_ms,
            );
            // Errors here are answers about the prompt or resource (unknown, denied, held),
            // sent with 200 like an upstream server's, so clients see the JSON-RPC error.
            let answer = if method == "completion/complete" {
                content::complete(&rt, &caller, &params, &meta).await
            } else {
                content::get(&rt, &caller, &method, &params, &meta).await
            };
            let mut resp = match answer {
                Ok(result) => {
                    json_response(StatusCode::OK, &jsonrpc::response(&id, finish(result)))
                }
                Err(e) => rpc_error(StatusCode::OK, Some(&id), e),
            };
            if let Ok(v) = HeaderValue::from_str(&rid) {
                resp.headers_mut()
                    .insert(crate::http_proxy::REQUEST_ID_HEADER, v);
            }
            resp
        }
        other => rpc_error(
            StatusCode::NOT_FOUND,
            Some(&id),
            RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!(
                    "method `{}` is not supported by the gateway",
                    other.chars().take(100).collect::<String>()
                ),
            ),
        ),
    }
}

fn initialize(
    rt: &Runtime,
    caller: &Caller,
    id: &Id,
    params: &Map<String, Value>,
    headers: &HeaderMap,
) -> Response {
    if params
        .get("_meta")
        .and_then(|m| m.get(PROTOCOL_VERSION_META_KEY))
        .is_some()
    {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Some(id),
            RpcError::new(
                jsonrpc::INVALID_REQUEST,
                "initialize is not part of the 2026-07-28 protocol; use server/discover",
            ),
        );
    }
    if let Ok(Some(_)) = header_text(headers, SESSION_HEADER) {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            Some(id),
            RpcError::new(
                jsonrpc::INVALID_REQUEST,
                "initialize must not carry a session id",
            ),
        );
    }
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let version = if HANDSHAKE_VERSIONS.contains(&requested) {
        requested
    } else {
        HANDSHAKE_VERSIONS.first().copied().unwrap_or("2025-11-25")
    };
    let session = rt
        .mcp
        .sessions
        .create(&caller.identity.id, version, rt.now_ms());
    if params
        .get("capabilities")
        .and_then(|c| c.get("elicitation"))
        .is_some_and(Value::is_object)
    {
        rt.mcp.sessions.accept_elicitation(&session);
    }
    let result = json!({
        "protocolVersion": version,
        "capabilities": capabilities(true),
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    });
    let mut resp = json_response(StatusCode::OK, &jsonrpc::response(id, result));
    if let Ok(v) = HeaderValue::from_str(&session) {
        resp.headers_mut().insert(SESSION_HEADER, v);
    }
    resp
}

fn accepts_sse(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// What a `tools/call`'s client can take besides the result.
#[derive(Debug, Clone, Copy)]
struct Wants {
    /// A stateless-era request (its result carries `resultType`).
    modern: bool,
    /// The least severe log level to relay; `None`: no log messages.
    log_floor: Option<usize>,
    /// The client accepts `text/event-stream`.
    sse: bool,
    /// The client takes elicitation requests (declared in its session's `initialize`).
    elicitation: bool,
}

/// Turns the upstream's notifications and Steward's hold ticks into the client's
/// progress and log events, keeping its progress strictly increasing.
struct NoteShaper {
    /// The client's progress token; `None`: progress is not relayed.
    token: Option<Value>,
    log_floor: Option<usize>,
    /// Steward's own hold ticks sent so far; the upstream's progress is shifted by them.
    ticks: u64,
    offset: f64,
    upstream_progress: bool,
    last: f64,
}

impl NoteShaper {
    fn new(token: Option<Value>, log_floor: Option<usize>) -> Self {
        Self {
            token,
            log_floor,
            ticks: 0,
            offset: 0.0,
            upstream_progress: false,
            last: f64::NEG_INFINITY,
        }
    }

    /// Whether Steward should still send hold ticks (none once the upstream reports).
    fn ticking(&self) -> bool {
        self.token.is_some() && !self.upstream_progress
    }

    /// Steward's progress while a call is held.
    fn tick(&mut self) -> Option<Value> {
        let token = self.token.clone()?;
        self.ticks += 1;
        let progress = self.ticks as f64;
        self.last = progress;
        Some(
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                "progressToken": token, "progress": progress,
                "message": "held by Steward: waiting for a human approval or the upstream tool"
            }}),
        )
    }

    /// The client's event for one upstream notification, if it is relayed.
    fn shape(&mut self, (method, mut params): Note) -> Option<Value> {
        match method.as_str() {
            "notifications/progress" => {
                let token = self.token.clone()?;
                let progress = params.get("progress").and_then(Value::as_f64)?;
                if !self.upstream_progress {
                    self.upstream_progress = true;
                    self.offset = self.ticks as f64;
                }
                let shifted = self.offset + progress;
                if !shifted.is_finite() || shifted <= self.last {
                    return None;
                }
                self.last = shifted;
                params.insert("progressToken".into(), token);
                params.insert("progress".into(), json!(shifted));
                if let Some(total) = params.get("total").and_then(Value::as_f64) {
                    params.insert("total".into(), json!(self.offset + total));
                }
            }
            "notifications/message" => {
                let floor = self.log_floor?;
                let level = params
                    .get("level")
                    .and_then(Value::as_str)
                    .and_then(log_level_rank)?;
                if level < floor {
                    return None;
                }
            }
            _ => return None,
        }
        Some(json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }
}

/// What happens next in a call that may send notifications.
enum Step {
    /// An event for the client, before the result.
    Event(Value),
    /// An upstream's elicitation for the agent.
    Ask(Ask),
    /// The call's result.
    Done(Result<Value, RpcError>),
}

/// Waits for the next event to send or the call's result. Queued notifications go first:
/// the upstream sent them before its result. `call` must not be polled after `Done`.
async fn next_step<F>(
    notes: &mut tokio::sync::mpsc::Receiver<Note>,
    asks: &mut Option<tokio::sync::mpsc::Receiver<Ask>>,
    call: &mut std::pin::Pin<Box<F>>,
    interval: &mut Option<tokio::time::Interval>,
    shaper: &mut NoteShaper,
) -> Step
where
    F: std::future::Future<Output = Result<Value, RpcError>>,
{
    loop {
        tokio::select! {
            biased;
            Some(note) = notes.recv() => {
                if let Some(event) = shaper.shape(note) {
                    return Step::Event(event);
                }
            }
            Some(ask) = next_ask(asks) => return Step::Ask(ask),
            result = call.as_mut() => return Step::Done(result),
            _ = tick(interval), if shaper.ticking() => {
                if let Some(event) = shaper.tick() {
                    return Step::Event(event);
                }
            }
        }
    }
}

/// The next elicitation from the upstream; never, for a caller that takes none.
async fn next_ask(asks: &mut Option<tokio::sync::mpsc::Receiver<Ask>>) -> Option<Ask> {
    match asks {
        Some(asks) => asks.recv().await,
        None => std::future::pending().await,
    }
}

/// Whose call a relayed elicitation belongs to.
struct AskOwner {
    caller: Caller,
    request_id: String,
    service: String,
    tool: String,
}

impl AskOwner {
    /// `<service>:<tool>`, the call's operation.
    fn operation(&self) -> String {
        format!("{}:{}", self.service, self.tool)
    }
}

/// Registers an upstream's elicitation under a fresh id and returns the request to put
/// on the agent's stream. `None`: policy refused the question, or too many wait already;
/// the server gets an error.
async fn relay_ask(
    rt: &Runtime,
    owner: &AskOwner,
    ask: Ask,
    registered: &mut Vec<String>,
) -> Option<Value> {
    use base64::Engine;
    let id = format!(
        "steward-ask-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<16>())
    );
    // What the audit record keeps of the question: the message and the field names.
    let fields: Vec<&String> = ask
        .params
        .get("requestedSchema")
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    let message: String = ask
        .params
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    let asked = json!({"method": ask.method, "message": message, "fields": fields});
    // The question is an operation of the service, governed like its tools.
    let args = json!({"tool": owner.tool, "message": message, "fields": fields});
    if let Some(why) = aggregate::elicitation_refused(rt, &owner.caller, &owner.service, args) {
        let mut event = AuditEvent::new(EventKind::ServerRequest, owner.caller.actor());
        event.request_id = Some(owner.request_id.clone());
        event.operation = Some(owner.operation());
        event.detail = json!({"asked": asked, "action": "refused", "reason": why});
        if let Err(e) = rt.audit(event).await {
            tracing::warn!(error = %e, "could not audit a refused elicitation");
        }
        let _ = ask.reply.send(Err(RpcError::new(
            content::DENIED,
            format!("Denied by Steward: {why}."),
        )));
        return None;
    }
    let event = json!({"jsonrpc": "2.0", "id": id, "method": ask.method, "params": ask.params});
    let pending = PendingAsk {
        identity_id: owner.caller.identity.id.clone(),
        request_id: owner.request_id.clone(),
        operation: owner.operation(),
        asked,
        reply: ask.reply,
    };
    if !rt.mcp.register_ask(id.clone(), pending) {
        tracing::warn!("too many elicitations wait for their agents; refusing one");
        return None;
    }
    registered.push(id);
    Some(event)
}

/// An agent's answer to an elicitation Steward relayed: audited (what was asked, the
/// action and which fields were answered, never their values), then passed to the server.
/// An answer that cannot be audited is not passed on. Ids Steward did not give out, or
/// gave to another identity, are acknowledged and ignored.
async fn answer_ask(
    rt: &Runtime,
    caller: &Caller,
    id: &str,
    answer: Result<Value, RpcError>,
) -> Response {
    let Some(pending) = rt.mcp.take_ask(id, &caller.identity.id) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let (action, answered): (String, Vec<String>) = match &answer {
        Ok(v) => (
            v.get("action")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .chars()
                .take(32)
                .collect(),
            v.get("content")
                .and_then(Value::as_object)
                .map(|c| c.keys().take(100).cloned().collect())
                .unwrap_or_default(),
        ),
        Err(_) => ("error".to_owned(), Vec::new()),
    };
    let mut event = AuditEvent::new(EventKind::ServerRequest, caller.actor());
    event.request_id = Some(pending.request_id.clone());
    event.operation = Some(pending.operation.clone());
    event.detail = json!({"asked": pending.asked, "action": action, "answered_fields": answered});
    if let Err(e) = rt.audit(event).await {
        let _ = pending.reply.send(Err(RpcError::new(
            jsonrpc::INTERNAL_ERROR,
            "the answer could not be audited, so it was not passed on",
        )));
        return e.to_problem().into_response();
    }
    let _ = pending.reply.send(answer);
    StatusCode::ACCEPTED.into_response()
}

/// The next hold tick; never, without an interval.
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Puts `event` on an agent's stream unless it is full (then the event is dropped) or
/// closed (then `open` turns false and nothing more is sent).
fn offer(
    open: &mut bool,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>,
    event: &Value,
) {
    if *open
        && let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) =
            tx.try_send(Ok(sse_event(event)))
    {
        *open = false;
    }
}

pub(super) fn sse_event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

async fn tools_call(
    rt: Arc<Runtime>,
    caller: Caller,
    id: Id,
    params: Map<String, Value>,
    headers: &HeaderMap,
    wants: Wants,
    peer: Option<crate::peer::PeerSocket>,
) -> Response {
    let rid = pipeline::request_id();
    let tool_name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut meta = aggregate::call_meta(
        &params,
        headers,
        &rid,
        aggregate::default_wait_secs(&rt, &tool_name),
        rt.settings.max_approval_wait_ms,
    );
    meta.hangup = crate::peer::Hangup::new(peer);
    let progress_token = params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
        .cloned();
    let modern = wants.modern;
    let finish = move |result: Result<Value, RpcError>, id: &Id| -> Value {
        match result {
            Ok(mut value) => {
                if modern && let Some(obj) = value.as_object_mut() {
                    obj.entry("resultType").or_insert(json!("complete"));
                }
                jsonrpc::response(id, value)
            }
            Err(e) => jsonrpc::error_response(Some(id), &e),
        }
    };
    let json_answer = |result: Result<Value, RpcError>, id: &Id, rid: &str| -> Response {
        let status = match &result {
            Err(e) => status_for(e.code),
            Ok(_) => StatusCode::OK,
        };
        let mut resp = json_response(status, &finish(result, id));
        if let Ok(v) = HeaderValue::from_str(rid) {
            resp.headers_mut()
                .insert(crate::http_proxy::REQUEST_ID_HEADER, v);
        }
        resp
    };
    let log_floor = wants.log_floor;
    let takes_asks = wants.sse && wants.elicitation;
    let streamable = wants.sse && (progress_token.is_some() || log_floor.is_some() || takes_asks);
    if !streamable {
        let result = aggregate::call_tool(&rt, &caller, &params, &meta, None).await;
        return json_answer(result, &id, &rid);
    }

    // Notifications may come: run the call, answer with JSON if the result comes first,
    // switch to an event stream at the first thing to say before it.
    let (note_tx, mut notes) = tokio::sync::mpsc::channel::<Note>(64);
    let (ask_tx, mut asks) = if takes_asks {
        let (tx, rx) = tokio::sync::mpsc::channel::<Ask>(4);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let relay = NoteRelay {
        tx: note_tx,
        progress: progress_token.is_some(),
        asks: ask_tx,
    };
    let (service, tool) = tool_name
        .split_once(aggregate::SEPARATOR)
        .unwrap_or(("", tool_name.as_str()));
    let owner = AskOwner {
        caller: caller.clone(),
        request_id: rid.clone(),
        service: service.to_owned(),
        tool: tool.to_owned(),
    };
    let mut registered: Vec<String> = Vec::new();
    // The answer is streamed from a spawned task that outlives the agent's connection; a
    // hold listens for that stream being dropped too.
    let stream_closed = meta.hangup.watch_stream();
    let mut shaper = NoteShaper::new(progress_token, log_floor);
    // Hold ticks only for a call that may wait for a human.
    let mut interval = if meta.wait.is_some() {
        let mut interval = tokio::time::interval(Duration::from_secs(2));
        interval.tick().await;
        Some(interval)
    } else {
        None
    };
    let mut call = Box::pin({
        let rt = Arc::clone(&rt);
        async move { aggregate::call_tool(&rt, &caller, &params, &meta, Some(relay)).await }
    });
    let first = loop {
        match next_step(&mut notes, &mut asks, &mut call, &mut interval, &mut shaper).await {
            Step::Done(result) => return json_answer(result, &id, &rid),
            Step::Event(event) => break event,
            Step::Ask(ask) => {
                if let Some(event) = relay_ask(&rt, &owner, ask, &mut registered).await {
                    break event;
                }
            }
        }
    };
    let task_rt = Arc::clone(&rt);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        // The call is always driven to its end, so a call that reached the upstream gets
        // its outcome record even when the agent stops reading or goes away; a call still
        // held for a human ends there, refused, once told the stream is gone. Notifications
        // never wait for a slow agent: when its stream is full they are dropped.
        let mut open = true;
        offer(&mut open, &tx, &first);
        let mut watch_agent = true;
        let result = loop {
            tokio::select! {
                step = next_step(&mut notes, &mut asks, &mut call, &mut interval, &mut shaper) => match step {
                    Step::Event(event) => offer(&mut open, &tx, &event),
                    // Nobody is left to answer: dropped, so the server gets an error now.
                    Step::Ask(_) if !open => {}
                    Step::Ask(ask) => {
                        // A question must not be lost to a full stream: wait for room.
                        if let Some(event) = relay_ask(&task_rt, &owner, ask, &mut registered).await
                            && tx.send(Ok(sse_event(&event))).await.is_err()
                        {
                            open = false;
                            task_rt.mcp.forget_asks(&registered);
                        }
                    }
                    Step::Done(result) => break result,
                },
                () = tx.closed(), if watch_agent => {
                    watch_agent = false;
                    stream_closed.raise();
                    // Questions the agent can no longer answer fail at once upstream.
                    task_rt.mcp.forget_asks(&registered);
                }
            }
        };
        // Questions of a call that has ended can no longer be answered.
        task_rt.mcp.forget_asks(&registered);
        // What the upstream said before its result goes out before the result.
        while let Ok(note) = notes.try_recv() {
            if let Some(event) = shaper.shape(note) {
                offer(&mut open, &tx, &event);
            }
        }
        if open {
            let _ = tx.send(Ok(sse_event(&finish(result, &id)))).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = event_stream(Body::from_stream(stream));
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut()
            .insert(crate::http_proxy::REQUEST_ID_HEADER, v);
    }
    resp
}

/// How often an idle standalone event stream gets a keep-alive comment, and its holder's
/// token and identity are checked again.
const STREAM_RECHECK: Duration = Duration::from_secs(15);

/// GET `/mcp`: the standalone event stream of a handshake-era session, which carries the
/// resource updates the session subscribed to and list changes. It ends when the session ends, when another
/// GET replaces it, or at the first check (every [`STREAM_RECHECK`] and before each event)
/// that finds the token expired or revoked or the identity no longer active. Stateless
/// requests have no session and so no such stream (405).
async fn get(rt: Arc<Runtime>, peer: SocketAddr, req: Request<Body>) -> Response {
    let headers = req.headers();
    let sid = match header_text(headers, SESSION_HEADER) {
        Ok(Some(sid)) => sid.to_owned(),
        Ok(None) => {
            let mut resp = Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            )
            .detail("the standalone event stream belongs to a session: send initialize first")
            .into_response();
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            return resp;
        }
        Err(e) => return rpc_error(StatusCode::BAD_REQUEST, None, e),
    };
    let caller = match pipeline::authenticate(&rt, headers, Some(peer.ip())).await {
        Ok(c) => c,
        Err(problem) => return problem.into_response(),
    };
    if !accepts_sse(headers) {
        return Problem::new(
            StatusCode::NOT_ACCEPTABLE,
            "not_acceptable",
            "Not acceptable",
        )
        .detail("the standalone event stream needs `Accept: text/event-stream`")
        .into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    if let Err(r) = rt
        .mcp
        .sessions
        .open_stream(&sid, &caller.identity.id, tx, rt.now_ms())
    {
        return session_rejected(&rt, &caller, r).await;
    }
    let mut recheck = tokio::time::interval(STREAM_RECHECK);
    recheck.reset();
    let state = (rt, caller, rx, recheck);
    let stream =
        futures_util::stream::unfold(state, |(rt, caller, mut rx, mut recheck)| async move {
            let item = tokio::select! {
                event = rx.recv() => event?,
                _ = recheck.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            // The holder may have lost its right to listen since it opened the stream.
            if let Err(why) = still_allowed(&rt, &caller).await {
                tracing::debug!(identity.id = %caller.identity.id, why, "mcp event stream closed");
                return None;
            }
            Some((Ok::<_, Infallible>(item), (rt, caller, rx, recheck)))
        });
    event_stream(Body::from_stream(stream))
}

/// A `text/event-stream` response, not to be cached.
fn event_stream(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Whether a caller authenticated earlier may still receive: its token is live and not
/// revoked, and its identity is active.
async fn still_allowed(rt: &Runtime, caller: &Caller) -> Result<(), &'static str> {
    rt.tokens
        .recheck(&caller.token, rt.now_ms())
        .map_err(|_| "token expired or revoked")?;
    match rt.identity(&caller.identity.id).await {
        Ok(Some(identity)) if identity.status == "active" => Ok(()),
        Ok(_) => Err("identity no longer active"),
        Err(_) => Err("identity could not be checked"),
    }
}

async fn delete(rt: Arc<Runtime>, peer: SocketAddr, req: Request<Body>) -> Response {
    let caller = match pipeline::authenticate(&rt, req.headers(), Some(peer.ip())).await {
        Ok(c) => c,
        Err(problem) => return problem.into_response(),
    };
    let sid = match header_text(req.headers(), SESSION_HEADER) {
        Ok(Some(sid)) => sid.to_owned(),
        _ => return Problem::bad_request("missing Mcp-Session-Id").into_response(),
    };
    match rt
        .mcp
        .sessions
        .remove(&sid, &caller.identity.id, rt.now_ms())
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => session_rejected(&rt, &caller, r).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn dns_rebinding_is_refused() {
        let config = McpConfig {
            listen: Some("127.0.0.1:8080".parse().unwrap()),
            ..Default::default()
        };
        let uri: http::Uri = "/mcp".parse().unwrap();
        assert!(
            check_origin_and_host(&config, &headers(&[("host", "127.0.0.1:8080")]), &uri).is_ok()
        );
        assert!(
            check_origin_and_host(&config, &headers(&[("host", "localhost:8080")]), &uri).is_ok()
        );
        assert!(check_origin_and_host(&config, &headers(&[("host", "[::1]:8080")]), &uri).is_ok());
        assert!(
            check_origin_and_host(&config, &headers(&[("host", "evil.example:8080")]), &uri)
                .is_err()
        );
        assert!(
            check_origin_and_host(
                &config,
                &headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://evil.example")
                ]),
                &uri
            )
            .is_err()
        );
        assert!(
            check_origin_and_host(
                &config,
                &headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://localhost:8080")
                ]),
                &uri
            )
            .is_ok()
        );
        assert!(
            check_origin_and_host(
                &config,
                &headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
                &uri
            )
            .is_err()
        );
        let allowed = McpConfig {
            allowed_origins: vec!["https://app.example".into()],
            ..config
        };
        assert!(
            check_origin_and_host(
                &allowed,
                &headers(&[
                    ("host", "127.0.0.1:8080"),
                    ("origin", "https://app.example")
                ]),
                &uri
            )
            .is_ok()
        );
    }

    fn note(method: &str, params: Value) -> Note {
        (method.to_owned(), params.as_object().cloned().unwrap())
    }

    fn progress(value: f64, total: f64) -> Note {
        note(
            "notifications/progress",
            json!({"progressToken": "steward-9", "progress": value, "total": total}),
        )
    }

    #[test]
    fn relayed_progress_carries_the_clients_token_and_only_increases() {
        let mut shaper = NoteShaper::new(Some(json!("client-1")), None);
        let event = shaper.shape(progress(1.0, 3.0)).unwrap();
        assert_eq!(event["method"], "notifications/progress");
        assert_eq!(event["params"]["progressToken"], "client-1");
        assert_eq!(event["params"]["progress"], 1.0);
        assert_eq!(event["params"]["total"], 3.0);
        assert!(shaper.shape(progress(1.0, 3.0)).is_none(), "not increasing");
        assert!(shaper.shape(progress(0.5, 3.0)).is_none(), "going back");
        assert!(shaper.shape(progress(f64::NAN, 3.0)).is_none());
        assert_eq!(
            shaper.shape(progress(2.0, 3.0)).unwrap()["params"]["progress"],
            2.0
        );
        // No log floor: no log messages; unknown notifications are never relayed.
        let log = note(
            "notifications/message",
            json!({"level": "error", "data": "x"}),
        );
        assert!(shaper.shape(log).is_none());
        let other = note(
            "notifications/resources/updated",
            json!({"uri": "file:///x"}),
        );
        assert!(shaper.shape(other).is_none());
        // No token from the client: no progress, no hold ticks.
        let mut silent = NoteShaper::new(None, Some(0));
        assert!(silent.shape(progress(1.0, 3.0)).is_none());
        assert!(!silent.ticking());
        assert!(silent.tick().is_none());
    }

    #[test]
    fn upstream_progress_continues_after_hold_ticks_and_logs_respect_the_floor() {
        let mut shaper = NoteShaper::new(Some(json!(5)), Some(3));
        assert!(shaper.ticking());
        assert_eq!(shaper.tick().unwrap()["params"]["progress"], 1.0);
        assert_eq!(shaper.tick().unwrap()["params"]["progress"], 2.0);
        let event = shaper.shape(progress(1.0, 4.0)).unwrap();
        assert_eq!(event["params"]["progressToken"], 5);
        assert_eq!(event["params"]["progress"], 3.0, "shifted past the ticks");
        assert_eq!(event["params"]["total"], 6.0);
        assert!(!shaper.ticking(), "the upstream reports now");
        let log = |level: &str| {
            note(
                "notifications/message",
                json!({"level": level, "data": "d"}),
            )
        };
        assert!(shaper.shape(log("info")).is_none(), "below warning");
        assert!(shaper.shape(log("shout")).is_none(), "unknown level");
        assert_eq!(
            shaper.shape(log("warning")).unwrap()["params"]["level"],
            "warning"
        );
        assert!(shaper.shape(log("emergency")).is_some());
    }

    #[test]
    fn the_stateless_ladder_checks_envelope_and_headers() {
        let params: Map<String, Value> = serde_json::from_value(json!({"name": "a__b", "_meta": {
            PROTOCOL_VERSION_META_KEY: "2026-07-28", CLIENT_CAPABILITIES_META_KEY: {}
        }}))
        .unwrap();
        let good = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "a__b"),
        ]);
        assert!(matches!(
            classify("tools/call", &params, &good),
            Ok(Era::Modern)
        ));
        let bad_name = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "a__c"),
        ]);
        assert_eq!(
            classify("tools/call", &params, &bad_name)
                .err()
                .unwrap()
                .code,
            jsonrpc::HEADER_MISMATCH
        );
        let bad_method = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("mcp-name", "a__b"),
        ]);
        assert_eq!(
            classify("tools/call", &params, &bad_method)
                .err()
                .unwrap()
                .code,
            jsonrpc::HEADER_MISMATCH
        );
        let b64 = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?YV9fYg==?="),
        ]);
        assert!(classify("tools/call", &params, &b64).is_ok());
        let no_meta = Map::new();
        assert_eq!(
            classify("server/discover", &no_meta, &good)
                .err()
                .unwrap()
                .code,
            jsonrpc::INVALID_PARAMS
        );
        assert!(matches!(
            classify("tools/list", &no_meta, &HeaderMap::new()),
            Ok(Era::Handshake)
        ));
        let old: Map<String, Value> = serde_json::from_value(json!({"_meta": {PROTOCOL_VERSION_META_KEY: "2099-01-01", CLIENT_CAPABILITIES_META_KEY: {}}})).unwrap();
        let h = headers(&[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/list"),
        ]);
        assert_eq!(
            classify("tools/list", &old, &h).err().unwrap().code,
            jsonrpc::UNSUPPORTED_PROTOCOL_VERSION
        );
    }
}
