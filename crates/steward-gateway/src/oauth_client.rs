//! Upstream OAuth 2.0 client credentials: fetch, cache and refresh before expiry.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::runtime::{Runtime, RuntimeError};
use crate::service::{ServiceRuntime, UpstreamAuth};

/// Cached upstream tokens by service name: (token, refresh-at ms).
#[derive(Default)]
pub struct UpstreamTokens {
    tokens: Mutex<HashMap<String, (Zeroizing<String>, i64)>>,
}

impl std::fmt::Debug for UpstreamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamTokens(<redacted>)")
    }
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
    let UpstreamAuth::Oauth2ClientCredentials {
        token_url,
        client_id,
        secret,
        scope,
    } = &service.spec.auth
    else {
        return Err(RuntimeError::Invalid("service does not use oauth2".into()));
    };
    let now = rt.now_ms();
    if let Ok(map) = rt.upstream_tokens.tokens.lock()
        && let Some((token, refresh_at)) = map.get(&service.spec.name)
        && *refresh_at > now
    {
        return Ok(token.clone());
    }
    let (_, client_secret) = rt.secret_value(secret).await?;
    let secret_text = Zeroizing::new(
        String::from_utf8(client_secret.expose_secret().to_vec())
            .map_err(|_| RuntimeError::Invalid("client secret is not UTF-8".into()))?,
    );
    let mut form = vec![
        ("grant_type", "client_credentials".to_owned()),
        ("client_id", client_id.clone()),
    ];
    if let Some(scope) = scope {
        form.push(("scope", scope.clone()));
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
    let client = rt
        .upstream
        .client(service.spec.egress(), service.spec.ca_bundle.as_deref())
        .map_err(RuntimeError::Invalid)?;
    use http_body_util::BodyExt;
    let req = http::Request::post(token_url.as_str())
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
        .map_err(|e| RuntimeError::Invalid(format!("oauth2 token endpoint unreachable: {e}")))?;
    if !resp.status().is_success() {
        return Err(RuntimeError::Invalid(format!(
            "oauth2 token endpoint answered {}",
            resp.status()
        )));
    }
    let bytes = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|_| RuntimeError::Invalid("oauth2 token response too large".into()))?
        .to_bytes();
    let parsed: TokenResponse = serde_json::from_slice(&bytes)
        .map_err(|_| RuntimeError::Invalid("oauth2 token response malformed".into()))?;
    let lifetime_ms = parsed.expires_in.unwrap_or(300).clamp(10, 86_400) * 1000;
    // Refresh at 80% of the lifetime so no call carries a token about to expire.
    let refresh_at = now + lifetime_ms * 8 / 10;
    let token = Zeroizing::new(parsed.access_token);
    if let Ok(mut map) = rt.upstream_tokens.tokens.lock() {
        map.insert(service.spec.name.clone(), (token.clone(), refresh_at));
    }
    Ok(token)
}
