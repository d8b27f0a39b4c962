//! Upstream OAuth 2.0 client credentials: fetch, cache and refresh before expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::runtime::{Runtime, RuntimeError};
use crate::service::{ServiceRuntime, ServiceSpec, UpstreamAuth};

/// Cached upstream tokens: (token, refresh-at ms) by service and grant (a service whose
/// token URL, client, secret or scope changes starts afresh), and one fetch at a time per
/// key, so a burst of calls at expiry costs the token endpoint one request.
#[derive(Default)]
pub struct UpstreamTokens {
    tokens: Mutex<HashMap<String, (Zeroizing<String>, i64)>>,
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamTokens(<redacted>)")
    }
}

impl UpstreamTokens {
    fn fresh(&self, key: &str, now_ms: i64) -> Option<Zeroizing<String>> {
        let map = self.tokens.lock().ok()?;
        map.get(key)
            .filter(|(_, refresh_at)| *refresh_at > now_ms)
            .map(|(token, _)| token.clone())
    }

    fn gate(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = crate::lock(&self.fetching);
        Arc::clone(map.entry(key.to_owned()).or_default())
    }

    /// Forgets `service`'s cached token (the upstream refused it), so the next call fetches
    /// a new one.
    pub fn forget(&self, service: &ServiceRuntime) {
        if let Some(key) = &service.oauth_key
            && let Ok(mut map) = self.tokens.lock()
        {
            map.remove(key);
        }
    }
}

/// The service's client-credentials grant, if it has one.
struct Grant<'s> {
    token_url: &'s str,
    client_id: &'s str,
    secret: &'s str,
    scope: Option<&'s str>,
}

fn grant(spec: &ServiceSpec) -> Option<Grant<'_>> {
    match &spec.auth {
        UpstreamAuth::Oauth2ClientCredentials {
            token_url,
            client_id,
            secret,
            scope,
        } => Some(Grant {
            token_url,
            client_id,
            secret,
            scope: scope.as_deref(),
        }),
        _ => None,
    }
}

/// The token cache key of a service with a client-credentials grant: its name and every
/// grant field, so a changed grant never reuses a token fetched for the old one. Computed
/// once per service definition ([`ServiceRuntime::oauth_key`]).
pub(crate) fn cache_key(spec: &ServiceSpec) -> Option<String> {
    let g = grant(spec)?;
    Some(format!(
        "{}\0{}\0{}\0{}\0{}",
        spec.name,
        g.token_url,
        g.client_id,
        g.secret,
        g.scope.unwrap_or_default()
    ))
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// A valid upstream access token for `service`, fetched with the client-credentials grant.
pub async fn access_token(
    rt: &Runtime,
    service: &ServiceRuntime,
) -> Result<Zeroizing<String>, RuntimeError> {
    let (
        Some(Grant {
            token_url,
            client_id,
            secret,
            scope,
        }),
        Some(key),
    ) = (grant(&service.spec), service.oauth_key.as_deref())
    else {
        return Err(RuntimeError::Invalid("service does not use oauth2".into()));
    };
    if let Some(token) = rt.upstream_tokens.fresh(key, rt.now_ms()) {
        return Ok(token);
    }
    let gate = rt.upstream_tokens.gate(key);
    let _one_fetch = gate.lock().await;
    // Another call may have fetched it while this one waited.
    if let Some(token) = rt.upstream_tokens.fresh(key, rt.now_ms()) {
        return Ok(token);
    }
    let requested_at = rt.now_ms();
    let (_, client_secret) = rt.secret_value(secret).await?;
    let secret_text = Zeroizing::new(
        String::from_utf8(client_secret.expose_secret().to_vec())
            .map_err(|_| RuntimeError::Invalid("client secret is not UTF-8".into()))?,
    );
    let mut form = vec![
        ("grant_type", "client_credentials".to_owned()),
        ("client_id", client_id.to_owned()),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope.to_owned()));
    }
    form.push(("client_secret", secret_text.to_string()));
    let body = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let body = Zeroizing::new(body);
    // The service's own client: the same egress policy and CA bundle, and its client
    // certificate when it has one (mutual-TLS client authentication, RFC 8705).
    let (client, _) = crate::http_proxy::service_client(rt, service).await?;
    use http_body_util::BodyExt;
    let req = http::Request::post(token_url)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(
            http_body_util::Full::new(bytes::Bytes::from(body.as_bytes().to_vec()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| RuntimeError::External(format!("oauth2 token endpoint unreachable: {e}")))?;
    if !resp.status().is_success() {
        return Err(RuntimeError::External(format!(
            "oauth2 token endpoint answered {}",
            resp.status()
        )));
    }
    let bytes = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|_| RuntimeError::External("oauth2 token response too large".into()))?
        .to_bytes();
    let parsed: TokenResponse = serde_json::from_slice(&bytes)
        .map_err(|_| RuntimeError::External("oauth2 token response malformed".into()))?;
    let lifetime_ms = parsed.expires_in.unwrap_or(300).clamp(10, 86_400) * 1000;
    // Refresh at 80% of the lifetime so no call carries a token about to expire.
    let refresh_at = requested_at + lifetime_ms * 8 / 10;
    let token = Zeroizing::new(parsed.access_token);
    if let Ok(mut map) = rt.upstream_tokens.tokens.lock() {
        map.insert(key.to_owned(), (token.clone(), refresh_at));
    }
    Ok(token)
}
