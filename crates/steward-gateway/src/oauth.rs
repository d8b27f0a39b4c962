//! `POST /oauth/token`: client credentials (RFC 6749 §4.4) and token exchange (RFC 8693).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use steward_audit::{Actor, ActorKind, AuditEvent, EventKind};
use steward_token::Restriction;

use crate::runtime::Runtime;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const MAX_FAILURES_PER_MINUTE: u32 = 10;

/// Failed authentications per client id, for rate limiting.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    failures: Mutex<HashMap<String, (i64, u32)>>,
}

impl FailureLimiter {
    fn blocked(&self, client: &str, now: i64) -> bool {
        let map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(client)
            .is_some_and(|(start, n)| now - start < 60_000 && *n >= MAX_FAILURES_PER_MINUTE)
    }

    fn fail(&self, client: &str, now: i64) {
        let mut map = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 100_000 {
            map.retain(|_, (start, _)| now - *start < 60_000);
        }
        let entry = map.entry(client.to_owned()).or_insert((now, 0));
        if now - entry.0 >= 60_000 {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"steward\""),
        );
    }
    resp
}

fn form_pairs(body: &[u8]) -> Result<HashMap<String, String>, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8")?;
    let mut out = HashMap::new();
    for (k, v) in crate::path::parse_query(text).map_err(|_| "malformed form body")? {
        if out.insert(k, v).is_some() {
            return Err("a parameter is repeated");
        }
    }
    Ok(out)
}

/// The token endpoint.
pub async fn token(
    State(rt): State<Arc<Runtime>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = match form_pairs(&body) {
        Ok(f) => f,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", e),
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => client_credentials(&rt, &headers, &form).await,
        Some(TOKEN_EXCHANGE) => token_exchange(&rt, &form).await,
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "supported: client_credentials, token-exchange",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        ),
    }
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    // RFC 6749 §2.3.1: both parts are form-url-encoded.
    Some((
        crate::path::form_decode(id).ok()?,
        crate::path::form_decode(secret).ok()?,
    ))
}

fn scope_restriction(scope: Option<&String>) -> Result<Restriction, String> {
    let mut r = Restriction::default();
    let Some(scope) = scope.filter(|s| !s.trim().is_empty()) else {
        return Ok(r);
    };
    let mut services = Vec::new();
    let mut ops = Vec::new();
    for item in scope.split_whitespace() {
        if item.contains(':') {
            ops.push(item);
        } else {
            services.push(item.to_owned());
        }
    }
    if !services.is_empty() {
        r = r.services(services);
    }
    if !ops.is_empty() {
        r = r.operations_from_strs(ops).map_err(|e| e.to_string())?;
    }
    Ok(r)
}

async fn client_credentials(
    rt: &Runtime,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Response {
    let now = rt.now_ms();
    let (client_id, secret) = match (
        basic_credentials(headers),
        form.get("client_id"),
        form.get("client_secret"),
    ) {
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
        (Some(_), _, _) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method",
            );
        }
        _ => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication required",
            );
        }
    };
    let secret = zeroize::Zeroizing::new(secret);
    let limiter_key = steward_core::name::normalize(&client_id);
    if rt.oauth_failures.blocked(&limiter_key, now) {
        return oauth_error(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "too many failed attempts for this client",
        );
    }
    let invalid = |why: &str| {
        rt.oauth_failures.fail(&limiter_key, now);
        tracing::info!(client = %limiter_key, why, "client authentication failed");
        oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
    };
    let Ok(key) = steward_token::api_key::parse(&secret) else {
        return invalid("malformed key");
    };
    let stored = match rt.store.api_key_by_hash(&key.hash()).await {
        Ok(Some(k)) => k,
        Ok(None) => return invalid("unknown key"),
        Err(e) => {
            return crate::runtime::RuntimeError::from(e)
                .to_problem()
                .into_response();
        }
    };
    let identity = match rt.identity(&stored.identity_id).await {
        Ok(Some(i)) => i,
        Ok(None) => return invalid("identity gone"),
        Err(e) => return e.to_problem().into_response(),
    };
    let id_matches =
        identity.id == client_id || steward_core::name::normalize(&identity.name) == limiter_key;
    if !id_matches {
        return invalid("client id does not own the key");
    }
    if stored.revoked_at.is_some() || stored.expires_at.is_some_and(|e| e <= now) {
        return invalid("key revoked or expired");
    }
    // The in-memory state is checked too: the circuit breaker suspends there first.
    if identity.status != "active"
        || rt.tokens.revocations().identity_status(&identity.id)
            != steward_token::IdentityStatus::Active
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the identity is not active",
        );
    }
    let scope = match scope_restriction(form.get("scope")) {
        Ok(s) => s,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &e),
    };
    let ttl = form
        .get("expires_in")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|s| s * 1000);
    issue(
        rt,
        &identity.id,
        ttl,
        Vec::new(),
        scope,
        Some(&stored.id),
        None,
    )
    .await
}

async fn token_exchange(rt: &Runtime, form: &HashMap<String, String>) -> Response {
    let now = rt.now_ms();
    let (Some(subject), Some(subject_type)) =
        (form.get("subject_token"), form.get("subject_token_type"))
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "subject_token and subject_token_type are required",
        );
    };
    if subject_type != ACCESS_TOKEN_TYPE {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unsupported subject_token_type",
        );
    }
    let subject = match rt.tokens.verify(subject, now) {
        Ok(t) => t,
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "subject_token is invalid",
            );
        }
    };
    let mut chain = subject.claims.actor_chain.clone();
    if let Some(actor) = form.get("actor_token") {
        let actor = match rt.tokens.verify(actor, now) {
            Ok(t) => t,
            Err(_) => {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "actor_token is invalid",
                );
            }
        };
        chain.push(actor.identity_id().to_owned());
    } else {
        chain.push(subject.identity_id().to_owned());
    }
    // The new token can only narrow: the subject's restrictions carry over as the scope,
    // and the requested scope narrows further.
    let mut scope = match scope_restriction(form.get("scope")) {
        Ok(s) => s,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &e),
    };
    for r in &subject.restrictions {
        scope = intersect(scope, r);
    }
    let remaining = subject.effective_expires_ms - now;
    let ttl = form
        .get("expires_in")
        .and_then(|v| v.parse::<i64>().ok())
        .map(|s| s * 1000)
        .unwrap_or(remaining)
        .min(remaining);
    if ttl <= 0 {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "subject_token has expired",
        );
    }
    issue(
        rt,
        subject.identity_id(),
        Some(ttl),
        chain,
        scope,
        None,
        Some(ACCESS_TOKEN_TYPE),
    )
    .await
}

fn intersect(mut a: Restriction, b: &Restriction) -> Restriction {
    a.services = match (a.services.take(), &b.services) {
        (Some(x), Some(y)) => Some(x.intersection(y).cloned().collect()),
        (x, None) => x,
        (None, Some(y)) => Some(y.clone()),
    };
    a.operations = match (a.operations.take(), &b.operations) {
        (Some(x), Some(y)) => Some(x.intersection(y).cloned().collect()),
        (x, None) => x,
        (None, Some(y)) => Some(y.clone()),
    };
    a.expires_at_ms = match (a.expires_at_ms, b.expires_at_ms) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    a
}

async fn issue(
    rt: &Runtime,
    identity_id: &str,
    ttl_ms: Option<i64>,
    chain: Vec<String>,
    scope: Restriction,
    key_id: Option<&str>,
    issued_type: Option<&str>,
) -> Response {
    let (token, claims) = match rt.mint_token(identity_id, ttl_ms, chain.clone(), scope) {
        Ok(t) => t,
        Err(e) => return e.to_problem().into_response(),
    };
    let mut event = AuditEvent::new(
        EventKind::TokenIssued,
        Actor::new(ActorKind::Identity, identity_id),
    );
    event.actor.delegation_chain = chain;
    event.detail = json!({"token_id": claims.token_id, "expires_at": claims.expires_at_ms, "api_key_id": key_id});
    if let Err(e) = rt.audit(event).await {
        return e.to_problem().into_response();
    }
    let now = rt.now_ms();
    if let Some(key_id) = key_id {
        let _ = rt.store.api_key_touch(key_id, now).await;
    }
    let _ = rt.store.identity_touch(identity_id, now).await;
    let mut body = json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": (claims.expires_at_ms - claims.issued_at_ms) / 1000,
    });
    if let Some(t) = issued_type
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert("issued_token_type".into(), json!(t));
    }
    let mut resp = (StatusCode::OK, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
