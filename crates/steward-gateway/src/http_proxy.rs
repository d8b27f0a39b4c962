//! The HTTP adapter of the pipeline: `/gw/{service}/{path}` to the upstream REST API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};
use std::sync::Arc;
use steward_audit::Outcome;
use steward_core::OperationName;
use steward_policy::Permit;

use crate::openapi::{RequestBody, extract_args_from, parse_json_body};
use crate::path::{NormalizedPath, check_query};
use crate::pipeline::{self, CallMeta, Caller, ResolvedCall};
use crate::problem::Problem;
use crate::runtime::{Runtime, RuntimeError, sha256_hex};
use crate::service::{ServiceRuntime, UpstreamAuth};
use crate::upstream::UpstreamBody;

/// Response header naming the request.
pub const REQUEST_ID_HEADER: &str = "steward-request-id";

/// Request headers never forwarded: hop-by-hop (RFC 9110 §7.6.1), the agent's own
/// credentials, and identity headers a client could forge.
const STRIPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "cookie",
    "forwarded",
    "x-real-ip",
    "content-length",
];

fn is_stripped(name: &HeaderName, connection_listed: &[String]) -> bool {
    let n = name.as_str();
    STRIPPED.contains(&n)
        || n.starts_with("steward-")
        || n.starts_with("x-forwarded-")
        || connection_listed.iter().any(|c| c == n)
}

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Rejects request framings that let two parsers disagree about where a request ends.
fn check_framing(headers: &HeaderMap) -> Result<(), Problem> {
    let cls: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !cls.is_empty() && headers.contains_key(header::TRANSFER_ENCODING) {
        return Err(Problem::bad_request(
            "both Content-Length and Transfer-Encoding are present",
        ));
    }
    let mut seen: Option<&[u8]> = None;
    for v in &cls {
        let b = v.as_bytes();
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
            return Err(Problem::bad_request("malformed Content-Length"));
        }
        if seen.is_some_and(|s| s != b) {
            return Err(Problem::bad_request("conflicting Content-Length headers"));
        }
        seen = Some(b);
    }
    Ok(())
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(1024).collect())
}

fn prefer_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix("wait="))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .next()
}

/// Removes the agent's token from a query string; returns the cleaned query.
fn strip_token_from_query(query: &str, token: &str) -> String {
    query
        .split('&')
        .filter(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = crate::path::form_decode(v).unwrap_or_else(|_| v.to_owned());
            !(k.eq_ignore_ascii_case("access_token")
                || decoded.contains(token)
                || v.contains(token))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// After a malformed request (400) or an oversized body (413) the rest of the bytes on the
/// connection cannot be trusted to start a new request (request smuggling), so the
/// connection is closed after the response.
fn close_after_client_error(problem: Problem) -> Problem {
    if problem.status == 400 || problem.status == 413 {
        problem.header(header::CONNECTION, "close")
    } else {
        problem
    }
}

/// Removes every header whose value carries the caller's token (whatever its name), so the
/// token cannot reach the upstream through a header Steward does not know about.
fn strip_token_headers(headers: &mut HeaderMap, token: &str) {
    let carrying: Vec<HeaderName> = headers
        .iter()
        .filter(|(_, v)| memchr_find(v.as_bytes(), token.as_bytes()))
        .map(|(n, _)| n.clone())
        .collect();
    for name in carrying {
        headers.remove(&name);
    }
}

/// A request body read up to a limit: either all of it, or the chunks read so far and
/// the rest of the stream.
enum Prefetched {
    Complete(Bytes),
    Partial(Vec<Bytes>, Body),
}

fn body_too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "Body too large",
    )
    .detail(format!(
        "the body exceeds the {max}-byte limit for inspected requests"
    ))
}

/// Reads a body of unknown length up to `max` bytes. A malformed body (a bad chunk size,
/// a truncated stream) is a 400 before any upstream is contacted.
async fn prefetch(mut body: Body, max: usize) -> Result<Prefetched, Problem> {
    let mut chunks = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Problem::bad_request("malformed request body"))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            chunks.push(data);
            if total > max {
                return Ok(Prefetched::Partial(chunks, body));
            }
        }
    }
    let mut all = bytes::BytesMut::with_capacity(total);
    for c in chunks {
        all.extend_from_slice(&c);
    }
    Ok(Prefetched::Complete(all.freeze()))
}

fn with_request_id(mut resp: Response, rid: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(rid) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}

/// The `/gw/{service}/{*path}` handler.
pub async fn handle(
    State(rt): State<Arc<Runtime>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request<Body>,
) -> Response {
    let rid = req
        .extensions()
        .get::<pipeline::RequestId>()
        .map_or_else(pipeline::request_id, |r| r.0.clone());
    let resp = match proxy(&rt, peer, req, &rid).await {
        Ok(resp) => resp,
        Err(problem) => close_after_client_error(problem)
            .request_id(&rid)
            .into_response(),
    };
    with_request_id(resp, &rid)
}

async fn proxy(
    rt: &Arc<Runtime>,
    peer: SocketAddr,
    req: Request<Body>,
    rid: &str,
) -> Result<Response, Problem> {
    // The request span (opened by the listener) declares these fields; every later log
    // line of this request carries them.
    let span = tracing::Span::current();
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    check_framing(&parts.headers)?;
    // Authenticate before looking at the path, so probing reveals nothing.
    let caller = pipeline::authenticate(rt, &parts.headers, Some(peer.ip())).await?;
    span.record("identity.id", caller.identity.id.as_str());
    let token = pipeline::bearer(&parts.headers)?.to_owned();
    strip_token_headers(&mut parts.headers, &token);

    // Resolve: exact bytes in, ambiguity refused.
    let raw_path = parts.uri.path();
    let path = NormalizedPath::parse(raw_path)
        .map_err(|e| Problem::bad_request(format!("ambiguous or malformed path: {e}")))?;
    if memchr_find(raw_path.as_bytes(), token.as_bytes())
        || path.segments.iter().any(|s| s.contains(token.as_str()))
    {
        return Err(Problem::bad_request(
            "the path contains the caller's Steward token; refusing to forward it",
        ));
    }
    let query = parts
        .uri
        .query()
        .map(|q| strip_token_from_query(q, &token))
        .filter(|q| !q.is_empty());
    if let Some(q) = &query {
        check_query(q).map_err(|e| Problem::bad_request(format!("malformed query: {e}")))?;
    }
    let service = rt
        .service_table()
        .get(&path.service)
        .filter(|s| s.spec.kind == "http")
        .ok_or_else(|| Problem::not_found(format!("no HTTP service named `{}`", path.service)))?;

    let matched = service.catalog.match_request(parts.method.as_str(), &path);
    let (op_name, class, needs_body, sensitive) = match &matched {
        Some(m) => (
            m.operation.name.clone(),
            m.operation.class,
            m.operation.needs_body(),
            m.operation
                .sensitive_args()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        ),
        None if service.spec.allow_unmatched => (
            "unmatched".to_owned(),
            steward_core::OperationClass::from_http_method(parts.method.as_str()),
            false,
            Vec::new(),
        ),
        None => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "unknown_operation",
                "Unknown operation",
            )
            .detail(format!(
                "`{} {}` matches no operation of service `{}`, and unmatched requests are denied",
                parts.method, path.raw_rest, path.service
            )));
        }
    };
    span.record(
        "operation.name",
        format!("{}:{}", path.service, op_name).as_str(),
    );

    // Buffer the body only when policy needs it (or it is small enough to scan).
    let declared_len = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max = rt.settings.max_body_bytes;
    let chunked = declared_len.is_none() && parts.headers.contains_key(header::TRANSFER_ENCODING);
    let must_buffer = needs_body || declared_len.is_some_and(|l| l as usize <= max);
    let (body_bytes, streamed): (Option<Bytes>, Option<Body>) = if chunked {
        // Unknown length: read up to the limit first, so a small body is inspected like
        // any other and a malformed one is refused before the upstream is contacted.
        match prefetch(body, max).await? {
            Prefetched::Complete(bytes) => (Some(bytes), None),
            Prefetched::Partial(..) if needs_body => return Err(body_too_large(max)),
            Prefetched::Partial(prefix, rest) => (
                None,
                Some(Body::new(crate::stream::PrefixedBody::new(prefix, rest))),
            ),
        }
    } else if must_buffer {
        if declared_len.is_some_and(|l| l as usize > max) {
            return Err(body_too_large(max));
        }
        let collected = Limited::new(body, max).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                body_too_large(max)
            } else {
                Problem::bad_request("malformed request body")
            }
        })?;
        (Some(collected.to_bytes()), None)
    } else {
        (None, Some(body))
    };
    // A streamed body is cut before the caller's token could be forwarded.
    let streamed =
        streamed.map(|b| Body::new(crate::stream::TokenGuardBody::new(b, token.as_bytes())));
    if let Some(b) = &body_bytes {
        // The agent's token must never travel upstream, not even inside a body.
        if memchr_find(b, token.as_bytes()) {
            return Err(Problem::bad_request(
                "the request body contains the caller's Steward token; refusing to forward it",
            ));
        }
    }
    let args = match (&matched, &body_bytes) {
        (Some(m), body) => {
            let json_body;
            let form_text;
            let rb = match body {
                Some(b) if m.operation.needs_body() && !b.is_empty() => {
                    let ct = header_str(&parts.headers, "content-type")
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if ct.starts_with("application/x-www-form-urlencoded") {
                        form_text = String::from_utf8(b.to_vec())
                            .map_err(|_| Problem::bad_request("form body is not UTF-8"))?;
                        RequestBody::Form(&form_text)
                    } else {
                        json_body =
                            parse_json_body(b).map_err(|e| Problem::bad_request(e.to_string()))?;
                        RequestBody::Json(&json_body)
                    }
                }
                _ => RequestBody::None,
            };
            extract_args_from(m, query.as_deref(), rb)
                .map_err(|e| Problem::bad_request(format!("arguments: {e}")))?
        }
        (None, _) => json!({}),
    };
    let body_hash = body_bytes
        .as_ref()
        .map(|b| sha256_hex(b))
        .unwrap_or_else(|| "streamed".into());
    let digest = sha256_hex(
        format!(
            "{}\n/gw/{}{}\n{}\n{}",
            parts.method,
            path.service,
            path.raw_rest,
            query.as_deref().unwrap_or(""),
            body_hash
        )
        .as_bytes(),
    );
    let call = ResolvedCall {
        operation: OperationName::new(path.service.clone(), op_name),
        class,
        args,
        sensitive,
        digest,
    };
    let meta = CallMeta {
        request_id: rid.to_owned(),
        reason: header_str(&parts.headers, "steward-reason"),
        traceparent: header_str(&parts.headers, "traceparent"),
        approval_id: header_str(&parts.headers, "steward-approval"),
        wait: prefer_wait(&parts.headers),
        hangup: crate::peer::Hangup::new(
            parts.extensions.get::<crate::peer::PeerSocket>().cloned(),
        ),
    };

    // Authorize and write the durable decision record.
    let admitted = pipeline::admit(rt, &caller, &call, &meta).await?;

    // Inject and forward.
    let (upstream_req, secret_used) = build_upstream_request(
        rt,
        &admitted.permit,
        &service,
        &parts.method,
        &parts.headers,
        &path.raw_rest,
        query.as_deref(),
        body_bytes,
        streamed,
    )
    .await
    .map_err(|e| pipeline::credential_problem(&e, rid))?;
    // The outcome record of a call that got no upstream response; `unknown` when the
    // upstream may have acted anyway (a timeout).
    let no_response = |latency_ms: u64, unknown: bool, detail: Value| {
        let outcome = Outcome {
            status: None,
            bytes_in: 0,
            bytes_out: 0,
            latency_ms,
            outcome_unknown: unknown,
        };
        pipeline::audit_outcome(rt, &caller, &call, &meta, &admitted, outcome, detail)
    };
    let (client, client_cert) = match service_client(rt, &service).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "upstream client");
            // Fail closed, with the reason recorded: the intent is already durable.
            no_response(
                0,
                false,
                json!({"error": "upstream_client", "why": e.to_string()}),
            )
            .await
            .map_err(|e| outcome_problem(&e))?;
            return Err(match e {
                RuntimeError::Invalid(_) => Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "Upstream unavailable",
                )
                .detail("the upstream client could not be set up; see the server log"),
                other => pipeline::credential_problem(&other, rid),
            });
        }
    };
    let secret_used = match client_cert {
        Some(cert) => json!({"credential": secret_used, "client_cert": cert}),
        None => secret_used,
    };
    let timeout = Duration::from_millis(rt.settings.request_timeout_ms);
    let result = tokio::time::timeout(timeout, client.request(upstream_req)).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let upstream_resp = match result {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            let blocked = format!("{e:?}").contains("PermissionDenied");
            let error = if blocked {
                "egress_blocked"
            } else {
                "upstream_unreachable"
            };
            no_response(
                latency_ms,
                false,
                with_secret(json!({ "error": error }), &secret_used),
            )
            .await
            .map_err(|e| outcome_problem(&e))?;
            if blocked {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    "egress_blocked",
                    "Upstream address not allowed",
                )
                .detail("the upstream resolves to an address this service may not reach"));
            }
            tracing::warn!(error = %e, "upstream request failed");
            return Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "Upstream unavailable",
            ));
        }
        Err(_) => {
            // Timed out: the upstream may or may not have acted.
            no_response(
                latency_ms,
                true,
                with_secret(json!({"error": "timeout"}), &secret_used),
            )
            .await
            .map_err(|e| outcome_problem(&e))?;
            return Err(Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "Upstream timed out",
            ));
        }
    };
    if upstream_resp.status() == StatusCode::UNAUTHORIZED {
        // An upstream OAuth token refused before its expiry (revoked, keys rotated): the
        // next call fetches a new one instead of failing until the cached one expires.
        rt.upstream_tokens.forget(&service);
    }
    respond(
        rt,
        &caller,
        &call,
        &meta,
        &admitted,
        upstream_resp,
        latency_ms,
        &secret_used,
    )
    .await
}

/// The problem for a failed outcome record. The upstream has already been called, so the
/// generic "nothing was performed" would be untrue: say the response is withheld.
fn outcome_problem(e: &RuntimeError) -> Problem {
    match e {
        RuntimeError::Audit(_) => {
            let _ = e.to_problem(); // logs the cause once, like every audit failure
            Problem::unavailable(
                steward_core::ErrorCode::AUDIT_UNAVAILABLE,
                "the upstream was called but its outcome could not be recorded, so the response is withheld",
            )
        }
        other => other.to_problem(),
    }
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The service's pooled client. With a client certificate, the client is built for the
/// certificate secret's current version (read through the vault cache) and rebuilt after a
/// rotation; returns which secret version it presents, for the outcome record.
pub(crate) async fn service_client(
    rt: &Runtime,
    service: &ServiceRuntime,
) -> Result<(crate::upstream::UpstreamClient, Option<Value>), RuntimeError> {
    let Some(secret) = &service.spec.client_cert_secret else {
        return plain_client(rt, service)
            .map(|c| (c, None))
            .map_err(RuntimeError::Invalid);
    };
    let (_, value) = rt.secret_value(secret).await?;
    let used = json!({"name": secret, "version": value.version()});
    let cached = service.mtls_client.lock().ok().and_then(|slot| {
        slot.as_ref()
            .filter(|(v, _)| *v == value.version())
            .map(|(_, c)| c.clone())
    });
    if let Some(client) = cached {
        return Ok((client, Some(used)));
    }
    let client = rt
        .upstream
        .client_with_identity(
            service.spec.egress(),
            service.spec.ca_bundle.as_deref(),
            Some(value.expose_secret()),
        )
        .map_err(|e| RuntimeError::Invalid(format!("secret `{secret}`: {e}")))?;
    if let Ok(mut slot) = service.mtls_client.lock() {
        *slot = Some((value.version(), client.clone()));
    }
    Ok((client, Some(used)))
}

fn plain_client(
    rt: &Runtime,
    service: &ServiceRuntime,
) -> Result<crate::upstream::UpstreamClient, String> {
    if let Some(c) = service.client.get() {
        return Ok(c.clone());
    }
    let client = rt
        .upstream
        .client(service.spec.egress(), service.spec.ca_bundle.as_deref())?;
    let _ = service.client.set(client.clone());
    Ok(client)
}

#[allow(clippy::too_many_arguments)]
async fn build_upstream_request(
    rt: &Runtime,
    _permit: &Permit,
    service: &ServiceRuntime,
    method: &http::Method,
    headers: &HeaderMap,
    raw_rest: &str,
    query: Option<&str>,
    body_bytes: Option<Bytes>,
    streamed: Option<Body>,
) -> Result<(Request<UpstreamBody>, Value), RuntimeError> {
    // Which secret (name and version) this call read; recorded in its outcome audit record.
    let mut secret_used = Value::Null;
    let base = &service.base;
    let base_path = base.path().trim_end_matches('/');
    let mut query = query.map(str::to_owned);
    let mut out_headers = HeaderMap::new();
    let listed = connection_tokens(headers);
    for (name, value) in headers {
        if !is_stripped(name, &listed) {
            out_headers.append(name.clone(), value.clone());
        }
    }
    // Inject the upstream credential (phase 5). The permit proves authorization.
    match &service.spec.auth {
        UpstreamAuth::None => {}
        UpstreamAuth::Bearer { secret } => {
            let (_, value) = rt.secret_value(secret).await?;
            secret_used = json!({"name": secret, "version": value.version()});
            let v = secret_header(b"Bearer ", value.expose_secret())?;
            out_headers.insert(header::AUTHORIZATION, v);
        }
        UpstreamAuth::Basic { username, secret } => {
            let (_, value) = rt.secret_value(secret).await?;
            secret_used = json!({"name": secret, "version": value.version()});
            let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(
                username.len() + 1 + value.expose_secret().len(),
            ));
            raw.extend_from_slice(username.as_bytes());
            raw.push(b':');
            raw.extend_from_slice(value.expose_secret());
            let encoded =
                zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*raw));
            let v = secret_header(b"Basic ", encoded.as_bytes())?;
            out_headers.insert(header::AUTHORIZATION, v);
        }
        UpstreamAuth::Header {
            name,
            secret,
            prefix,
        } => {
            let (_, value) = rt.secret_value(secret).await?;
            secret_used = json!({"name": secret, "version": value.version()});
            let hname = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| RuntimeError::Invalid(format!("bad header name `{name}`")))?;
            out_headers.insert(
                hname,
                secret_header(prefix.as_bytes(), value.expose_secret())?,
            );
        }
        UpstreamAuth::Query { param, secret } => {
            let (_, value) = rt.secret_value(secret).await?;
            secret_used = json!({"name": secret, "version": value.version()});
            let v = String::from_utf8(value.expose_secret().to_vec())
                .map_err(|_| RuntimeError::Invalid("secret is not UTF-8".into()))?;
            let enc: String =
                percent_encoding::utf8_percent_encode(&v, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            let pair = format!("{param}={enc}");
            query = Some(match query {
                Some(q) => format!("{q}&{pair}"),
                None => pair,
            });
        }
        UpstreamAuth::Oauth2ClientCredentials { .. } => {
            let token = crate::oauth_client::access_token(rt, service).await?;
            secret_used = json!({"name": service.spec.auth.secret_name(), "via": "oauth2_client_credentials"});
            out_headers.insert(
                header::AUTHORIZATION,
                secret_header(b"Bearer ", token.as_bytes())?,
            );
        }
    }
    let mut target = format!(
        "{}://{}",
        base.scheme(),
        base.host_str().unwrap_or_default()
    );
    if let Some(port) = base.port() {
        target.push_str(&format!(":{port}"));
    }
    target.push_str(base_path);
    target.push_str(if raw_rest.is_empty() { "/" } else { raw_rest });
    if let Some(q) = &query {
        target.push('?');
        target.push_str(q);
    }
    let uri: Uri = target
        .parse()
        .map_err(|e| RuntimeError::Invalid(format!("upstream uri: {e}")))?;
    let body: UpstreamBody = match (body_bytes, streamed) {
        (Some(b), _) => {
            out_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
            Full::new(b).map_err(|never| match never {}).boxed_unsync()
        }
        (None, Some(body)) => {
            if let Some(cl) = headers.get(header::CONTENT_LENGTH) {
                out_headers.insert(header::CONTENT_LENGTH, cl.clone());
            }
            body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                .boxed_unsync()
        }
        (None, None) => Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync(),
    };
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(body)
        .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    *req.headers_mut() = out_headers;
    Ok((req, secret_used))
}

/// Adds the secret a call read (name and version, never the value) to an outcome detail.
fn with_secret(mut detail: Value, secret_used: &Value) -> Value {
    if secret_used.is_null() {
        return detail;
    }
    if !detail.is_object() {
        detail = json!({});
    }
    if let Some(map) = detail.as_object_mut() {
        map.insert("secret".into(), secret_used.clone());
    }
    detail
}

fn secret_header(prefix: &[u8], value: &[u8]) -> Result<HeaderValue, RuntimeError> {
    let mut raw = zeroize::Zeroizing::new(Vec::with_capacity(prefix.len() + value.len()));
    raw.extend_from_slice(prefix);
    raw.extend_from_slice(value);
    let mut v = HeaderValue::from_bytes(&raw)
        .map_err(|_| RuntimeError::Invalid("the secret is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// Small responses are buffered so the outcome record carries exact bytes; larger ones
/// stream, with the outcome written when headers arrive and a completion record after.
const BUFFER_RESPONSE_UP_TO: u64 = 256 * 1024;

#[allow(clippy::too_many_arguments)]
async fn respond(
    rt: &Arc<Runtime>,
    caller: &Caller,
    call: &ResolvedCall,
    meta: &CallMeta,
    admitted: &pipeline::Admitted,
    resp: http::Response<hyper::body::Incoming>,
    latency_ms: u64,
    secret_used: &Value,
) -> Result<Response, Problem> {
    let (parts, body) = resp.into_parts();
    let status = i64::from(parts.status.as_u16());
    let len = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut headers = HeaderMap::new();
    let listed = connection_tokens(&parts.headers);
    for (name, value) in &parts.headers {
        let n = name.as_str();
        if matches!(
            n,
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
                | "upgrade"
                | "trailer"
                | "te"
                | "set-cookie"
        ) || listed.iter().any(|c| c == n)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if len.is_some_and(|l| l <= BUFFER_RESPONSE_UP_TO) {
        let bytes = Limited::new(body, BUFFER_RESPONSE_UP_TO as usize)
            .collect()
            .await
            .map_err(|_| {
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "Upstream response failed",
                )
            })?
            .to_bytes();
        let outcome = Outcome {
            status: Some(status),
            bytes_in: 0,
            bytes_out: bytes.len() as u64,
            latency_ms,
            outcome_unknown: false,
        };
        pipeline::audit_outcome(
            rt,
            caller,
            call,
            meta,
            admitted,
            outcome,
            with_secret(Value::Null, secret_used),
        )
        .await
        .map_err(|e| outcome_problem(&e))?;
        let mut out = Response::new(Body::from(bytes));
        *out.status_mut() = parts.status;
        *out.headers_mut() = headers;
        return Ok(out);
    }
    let outcome = Outcome {
        status: Some(status),
        bytes_in: 0,
        bytes_out: len.unwrap_or(0),
        latency_ms,
        outcome_unknown: len.is_none(),
    };
    pipeline::audit_outcome(
        rt,
        caller,
        call,
        meta,
        admitted,
        outcome,
        with_secret(json!({"streamed": true}), secret_used),
    )
    .await
    .map_err(|e| outcome_problem(&e))?;
    let counted = crate::stream::CountingBody::new(body, {
        let rt = Arc::clone(rt);
        let caller = caller.clone();
        let call = call.clone();
        let rid = meta.request_id.clone();
        move |bytes, complete| {
            tokio::spawn(async move {
                let mut event = steward_audit::AuditEvent::new(
                    steward_audit::EventKind::Other("stream_end".into()),
                    caller.actor(),
                );
                event.request_id = Some(rid);
                event.operation = Some(call.operation.to_string());
                event.detail = json!({"bytes_out": bytes, "complete": complete});
                let _ = rt.audit(event).await;
            });
        }
    });
    let mut out = Response::new(Body::new(counted));
    *out.status_mut() = parts.status;
    *out.headers_mut() = headers;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_removed_from_queries() {
        assert_eq!(
            strip_token_from_query("a=1&access_token=x&b=2", "zzz"),
            "a=1&b=2"
        );
        assert_eq!(
            strip_token_from_query("a=1&t=stwt_abc&b=2", "stwt_abc"),
            "a=1&b=2"
        );
        assert_eq!(strip_token_from_query("t=pre%20stwt_abc", "stwt_abc"), "");
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        assert!(check_framing(&h).is_err());
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert!(check_framing(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("+5"));
        assert!(check_framing(&h).is_err());
    }

    #[test]
    fn hop_by_hop_and_identity_headers_are_stripped() {
        let listed = vec!["x-secret-hop".to_owned()];
        for h in [
            "authorization",
            "cookie",
            "steward-reason",
            "x-forwarded-for",
            "x-secret-hop",
            "connection",
        ] {
            assert!(is_stripped(&HeaderName::from_static(h), &listed), "{h}");
        }
        assert!(!is_stripped(&HeaderName::from_static("accept"), &listed));
    }
}
