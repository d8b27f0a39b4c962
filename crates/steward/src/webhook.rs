//! Webhook delivery of notifications: signs each payload (`Steward-Signature`,
//! `Steward-Timestamp`), retries with exponential backoff, and audits every attempt.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use steward_audit::{Actor, AuditEvent, EventKind};
use steward_gateway::notify::{self, WebhookFormat, WebhookSettings};
use steward_gateway::runtime::{Runtime, Settings, new_id};
use zeroize::Zeroizing;

/// Audit kind of one delivery attempt.
pub const EVENT_NOTIFICATION: &str = "notification";

/// The receiver's host, for audit records and logs: the full URL may carry a secret.
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "<invalid url>".into())
}

/// Delivers one queued event to the configured webhook, if any. `fallback_url` is used when
/// steward.toml names none (the older environment variables).
pub async fn deliver(
    rt: &Runtime,
    client: &reqwest::Client,
    event: &Value,
    fallback_url: Option<&str>,
) {
    let settings: &WebhookSettings = &rt.settings.webhook;
    let Some(url) = settings.url.as_deref().or(fallback_url) else {
        return;
    };
    let delivery_id = new_id("dlv");
    let approval_id = event
        .get("approval_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("event")
        .to_owned();
    let attempts = settings.max_attempts.max(1);
    let mut backoff = Duration::from_millis(settings.initial_backoff_ms.max(1));
    for attempt in 1..=attempts {
        let sent_at = rt.now_ms() / 1000;
        let payload = notify::payload(
            event,
            settings.format,
            &settings.links_base_url,
            &delivery_id,
            sent_at,
        );
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let mut request = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(notify::TIMESTAMP_HEADER, sent_at.to_string())
            .header("Steward-Delivery", delivery_id.as_str())
            .timeout(Duration::from_secs(10));
        if let Some(key) = &settings.secret {
            request = request.header(notify::SIGNATURE_HEADER, notify::signature(key, &body));
        }
        let result = request.body(body).send().await;
        let (delivered, status, error) = match &result {
            Ok(r) if r.status().is_success() => (true, Some(r.status().as_u16()), None),
            Ok(r) => (false, Some(r.status().as_u16()), None),
            // The error text may contain the URL: keep only its kind.
            Err(e) => (
                false,
                None,
                Some(if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                }),
            ),
        };
        let mut audit =
            AuditEvent::new(EventKind::Other(EVENT_NOTIFICATION.into()), Actor::system());
        audit.approval_id = approval_id.clone();
        audit.resource = Some(host_of(url));
        audit.detail = json!({
            "delivery_id": delivery_id, "event": kind, "attempt": attempt, "max_attempts": attempts,
            "delivered": delivered, "status": status, "error": error, "signed": settings.secret.is_some(),
        });
        if let Err(e) = rt.audit(audit).await {
            tracing::warn!(error = %e, "notification attempt could not be audited");
        }
        if delivered {
            return;
        }
        tracing::warn!(delivery = %delivery_id, attempt, status = ?status, error = ?error, "webhook delivery failed");
        if attempt < attempts {
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
    }
}

/// Applies `[approvals]` settings beyond the basic ones: elevation bounds, the grant sweep
/// and the webhook sink. The HMAC key is read from the named environment variable now, so a
/// missing key fails at start rather than sending unsigned payloads.
pub fn configure(
    raw: &crate::config::RawApprovals,
    settings: &mut Settings,
    default_public_url: &str,
) -> anyhow::Result<()> {
    let secs_to_ms = |v: u64| {
        i64::try_from(v)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000)
    };
    if let Some(v) = raw.max_elevation_secs {
        settings.max_elevation_ms = secs_to_ms(v.max(1));
    }
    if let Some(v) = raw.grant_cleanup_interval_secs {
        settings.grant_cleanup_interval_ms = v.max(1).saturating_mul(1000);
    }
    if let Some(v) = raw.grant_retention_days {
        settings.grant_retention_ms = secs_to_ms(v.saturating_mul(86_400));
    }
    let mut hook = WebhookSettings {
        url: raw.webhook_url.clone(),
        format: match raw.webhook_format.as_deref() {
            Some("slack") => WebhookFormat::Slack,
            Some("json") | None => WebhookFormat::Json,
            Some(other) => {
                anyhow::bail!("[approvals] webhook_format `{other}` is neither `json` nor `slack`")
            }
        },
        secret: None,
        links_base_url: raw
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url.to_owned()),
        max_attempts: raw.webhook_max_attempts.unwrap_or(5).max(1),
        initial_backoff_ms: raw.webhook_initial_backoff_ms.unwrap_or(500),
    };
    if let Some(var) = &raw.webhook_secret_env {
        let value = std::env::var(var).map_err(|_| {
            anyhow::anyhow!("[approvals] webhook_secret_env names `{var}`, which is not set")
        })?;
        if value.is_empty() {
            anyhow::bail!("[approvals] webhook_secret_env names `{var}`, which is empty");
        }
        hook.secret = Some(Arc::new(Zeroizing::new(value.into_bytes())));
    }
    settings.webhook = hook;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_host_of_a_webhook_url_is_recorded() {
        assert_eq!(
            host_of("https://hooks.example.com/services/T000/B000/SECRET"),
            "hooks.example.com"
        );
        assert_eq!(host_of("not a url"), "<invalid url>");
    }
}
