//! Outbound notifications (approval webhooks): the queued event, its wire formats (plain
//! JSON or a Slack-compatible message with approve/deny links) and the HMAC signature.
//! Delivery (HTTP, retries, auditing of attempts) lives in the binary's background tasks.

use serde_json::{Value, json};
use steward_store::models::ApprovalRecord;

use crate::runtime::Runtime;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "Steward-Signature";
/// Header carrying the send time in Unix seconds (also inside the signed body as `sent_at`).
pub const TIMESTAMP_HEADER: &str = "Steward-Timestamp";

/// Queues the "new approval request" notification, if a webhook is configured.
pub fn approval_requested(rt: &Runtime, record: &ApprovalRecord) {
    if let Some(tx) = &rt.notifier {
        let _ = tx.try_send(event(record));
    }
}

/// Queues a monitoring alert notification, if a webhook is configured.
pub fn alert_raised(rt: &Runtime, record: &crate::monitoring::AlertRecord) {
    if let Some(tx) = &rt.notifier {
        let mut payload = serde_json::to_value(record).unwrap_or(Value::Null);
        if let Some(obj) = payload.as_object_mut() {
            obj.insert("type".into(), json!("alert_raised"));
        }
        let _ = tx.try_send(payload);
    }
}

/// Queues an "identity suspended by the circuit breaker" notification, if configured.
pub fn identity_suspended(rt: &Runtime, identity_id: &str, reason: &str, risk_score: u8) {
    if let Some(tx) = &rt.notifier {
        let _ = tx.try_send(json!({
            "type": "identity_suspended",
            "identity_id": identity_id,
            "reason": reason,
            "risk_score": risk_score,
        }));
    }
}

/// Plain JSON or a Slack-compatible message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The event as JSON, with links.
    #[default]
    Json,
    /// Slack incoming-webhook text and blocks.
    Slack,
}

/// Where and how notifications are delivered.
#[derive(Clone, Default)]
pub struct WebhookSettings {
    /// The receiver; `None` disables delivery. May itself be a secret (Slack URLs are).
    pub url: Option<String>,
    /// Payload format.
    pub format: WebhookFormat,
    /// HMAC key for `Steward-Signature`; unsigned when `None`.
    pub secret: Option<std::sync::Arc<zeroize::Zeroizing<Vec<u8>>>>,
    /// Public base URL of this Steward, for approve/deny links.
    pub links_base_url: String,
    /// Delivery attempts per notification (at least 1).
    pub max_attempts: u32,
    /// First retry delay; doubled after each failed attempt.
    pub initial_backoff_ms: u64,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url.as_ref().map(|_| "<redacted>"))
            .field("format", &self.format)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("links_base_url", &self.links_base_url)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff_ms", &self.initial_backoff_ms)
            .finish()
    }
}

/// The wire payload of `event` in `format`. Events other than approval requests are sent
/// as they are (Slack gets a one-line `text`).
pub fn payload(
    event: &Value,
    format: WebhookFormat,
    base_url: &str,
    delivery_id: &str,
    sent_at_secs: i64,
) -> Value {
    let is_approval = event.get("type").and_then(Value::as_str) == Some("approval_requested");
    match (format, is_approval) {
        (WebhookFormat::Json, true) => json_payload(event, base_url, delivery_id, sent_at_secs),
        (WebhookFormat::Slack, true) => slack_payload(event, base_url, delivery_id, sent_at_secs),
        (WebhookFormat::Json, false) => {
            let mut out = event.clone();
            if let Some(obj) = out.as_object_mut() {
                obj.insert("delivery_id".into(), json!(delivery_id));
                obj.insert("sent_at".into(), json!(sent_at_secs));
            }
            out
        }
        (WebhookFormat::Slack, false) => {
            let kind = text_of(event.get("type"));
            let who = text_of(event.get("identity_id"));
            json!({
                "text": slack_escape(&format!("Steward {kind}: {who} {}", text_of(event.get("reason")))),
                "steward": {"event": event, "delivery_id": delivery_id, "sent_at": sent_at_secs},
            })
        }
    }
}

/// The notification event for a new approval request (format-independent).
pub fn event(record: &ApprovalRecord) -> Value {
    let body = &record.body;
    json!({
        "type": "approval_requested",
        "approval_id": record.id,
        "kind": body.get("kind").cloned().unwrap_or(json!("call")),
        "identity_id": record.identity_id,
        "identity_name": body.get("identity_name"),
        "owner": body.get("owner"),
        "operation": record.operation,
        "requested_at": record.requested_at,
        "expires_at": record.expires_at,
        "quorum": record.quorum,
        "summary": {
            "args": body.get("args"),
            "policies": body.get("policies"),
            "reason": body.get("reason"),
            "operations": body.get("operations"),
            "services": body.get("services"),
            "duration_secs": body.get("duration_secs"),
        },
    })
}

/// Where a human acts on an approval: the admin API (approve and deny take a POST with an
/// approver token and a reason) and the agent's polling URL.
pub fn links(base_url: &str, approval_id: &str) -> Value {
    let base = base_url.trim_end_matches('/');
    json!({
        "show": format!("{base}/admin/v1/approvals/{approval_id}"),
        "approve": format!("{base}/admin/v1/approvals/{approval_id}/approve"),
        "deny": format!("{base}/admin/v1/approvals/{approval_id}/deny"),
        "poll": format!("{base}/v1/approvals/{approval_id}"),
    })
}

/// The plain JSON payload: the event, its links, a delivery id and the send time.
pub fn json_payload(event: &Value, base_url: &str, delivery_id: &str, sent_at_secs: i64) -> Value {
    let mut out = event.clone();
    let id = event
        .get("approval_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(obj) = out.as_object_mut() {
        obj.insert("links".into(), links(base_url, id));
        obj.insert("delivery_id".into(), json!(delivery_id));
        obj.insert("sent_at".into(), json!(sent_at_secs));
    }
    out
}

/// Escapes text for Slack `mrkdwn` (`&`, `<`, `>` are control characters there).
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A Slack-compatible message (incoming-webhook `text` + Block Kit `blocks`) with approve
/// and deny link buttons. `delivery_id` and `sent_at` ride along for the signature check.
pub fn slack_payload(event: &Value, base_url: &str, delivery_id: &str, sent_at_secs: i64) -> Value {
    let id = text_of(event.get("approval_id"));
    let links = links(base_url, &id);
    let summary = event.get("summary").cloned().unwrap_or(Value::Null);
    let what = if text_of(event.get("kind")) == "elevation" {
        format!(
            "elevation to {} {} for {} s",
            text_of(summary.get("operations")),
            text_of(summary.get("services")),
            text_of(summary.get("duration_secs"))
        )
    } else {
        format!("`{}`", text_of(event.get("operation")))
    };
    let identity = {
        let name = text_of(event.get("identity_name"));
        if name.is_empty() {
            text_of(event.get("identity_id"))
        } else {
            name
        }
    };
    let mut lines = vec![
        format!("*Approval requested* `{}`", slack_escape(&id)),
        format!(
            "*Identity:* {} (owner: {})",
            slack_escape(&identity),
            slack_escape(&text_of(event.get("owner")))
        ),
        format!("*Wants:* {}", slack_escape(&what)),
    ];
    let reason = text_of(summary.get("reason"));
    if !reason.is_empty() {
        lines.push(format!("*Reason:* {}", slack_escape(&reason)));
    }
    if let Some(args) = summary.get("args").filter(|a| !a.is_null()) {
        lines.push(format!(
            "*Arguments (redacted):* `{}`",
            slack_escape(&args.to_string())
        ));
    }
    let quorum = event.get("quorum").and_then(Value::as_i64).unwrap_or(1);
    if quorum > 1 {
        lines.push(format!("*Needs:* {quorum} distinct approvers"));
    }
    let expires_secs = event.get("expires_at").and_then(Value::as_i64).unwrap_or(0) / 1000;
    let headline = format!("Approval requested: {} by {} ({})", what, identity, id);
    json!({
        "text": slack_escape(&headline),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}},
            {"type": "actions", "block_id": format!("steward_{id}"), "elements": [
                {"type": "button", "action_id": "approve", "style": "primary", "text": {"type": "plain_text", "text": "Approve"}, "url": links.get("approve"), "value": id},
                {"type": "button", "action_id": "deny", "style": "danger", "text": {"type": "plain_text", "text": "Deny"}, "url": links.get("deny"), "value": id},
                {"type": "button", "action_id": "show", "text": {"type": "plain_text", "text": "Details"}, "url": links.get("show"), "value": id},
            ]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": format!("Expires <!date^{expires_secs}^{{date_short_pretty}} {{time}}|{expires_secs}>. CLI: `steward approvals approve {id} --reason …`")},
            ]},
        ],
        "steward": {"approval_id": id, "delivery_id": delivery_id, "sent_at": sent_at_secs, "links": links},
    })
}

/// The `Steward-Signature` value for `body`: `sha256=` and the hex HMAC-SHA256 under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    format!(
        "sha256={}",
        hex::encode(aws_lc_rs::hmac::sign(&key, body).as_ref())
    )
}

/// Checks a `Steward-Signature` value in constant time (for receivers and tests).
pub fn verify_signature(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_tag) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_tag) else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::verify(&key, body, &tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        event(&ApprovalRecord {
            id: "apr_1".into(),
            identity_id: "idn_1".into(),
            operation: "httpbin:refund".into(),
            digest: "d".into(),
            body: json!({"kind": "call", "identity_name": "billing-bot", "owner": "alice", "args": {"amount": 500}, "reason": "refund <script>", "decisions": []}),
            status: "pending".into(),
            quorum: 2,
            requested_at: 1_000,
            expires_at: 3_601_000,
            decided_at: None,
            used_at: None,
            version: 0,
        })
    }

    #[test]
    fn signatures_verify_only_for_the_same_key_and_body() {
        let sig = signature(b"k1", b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(verify_signature(b"k1", b"{\"a\":1}", &sig));
        assert!(!verify_signature(b"k2", b"{\"a\":1}", &sig));
        assert!(!verify_signature(b"k1", b"{\"a\":2}", &sig));
        assert!(!verify_signature(b"k1", b"{\"a\":1}", "md5=00"));
    }

    #[test]
    fn slack_payload_has_approve_and_deny_links_and_escapes_text() {
        let msg = slack_payload(&sample(), "https://steward.example/", "dlv_1", 1);
        let buttons = &msg["blocks"][1]["elements"];
        assert_eq!(
            buttons[0]["url"],
            "https://steward.example/admin/v1/approvals/apr_1/approve"
        );
        assert_eq!(
            buttons[1]["url"],
            "https://steward.example/admin/v1/approvals/apr_1/deny"
        );
        let section = msg["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            section.contains("&lt;script&gt;") && !section.contains("<script>"),
            "{section}"
        );
        assert!(section.contains("2 distinct approvers"), "{section}");
        assert!(msg["text"].as_str().unwrap().contains("httpbin:refund"));
    }

    #[test]
    fn json_payload_carries_links_and_delivery_metadata() {
        let msg = json_payload(&sample(), "http://127.0.0.1:8080", "dlv_9", 42);
        assert_eq!(msg["approval_id"], "apr_1");
        assert_eq!(
            msg["links"]["poll"],
            "http://127.0.0.1:8080/v1/approvals/apr_1"
        );
        assert_eq!(
            (msg["delivery_id"].as_str(), msg["sent_at"].as_i64()),
            (Some("dlv_9"), Some(42))
        );
    }
}
