//! Background tasks: approval webhooks, monitoring persistence, revocation refresh.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use steward_audit::{Actor, AuditEvent, EventKind};
use steward_gateway::runtime::Runtime;
use steward_monitor::{BreakerAction, Observation};

/// Starts the background tasks.
pub fn spawn(
    rt: Arc<Runtime>,
    mut notify_rx: tokio::sync::mpsc::Receiver<Value>,
    mut monitor_rx: tokio::sync::mpsc::Receiver<(String, Observation)>,
) {
    let webhook = std::env::var("STEWARD_APPROVAL_WEBHOOK").ok();
    tokio::spawn(async move {
        while let Some(payload) = notify_rx.recv().await {
            if let Some(url) = &webhook {
                let client = reqwest::Client::new();
                for attempt in 0..5u32 {
                    match client.post(url).json(&payload).send().await {
                        Ok(r) if r.status().is_success() => break,
                        _ => tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await,
                    }
                }
            }
        }
    });
    let monitor_rt = Arc::clone(&rt);
    tokio::spawn(async move {
        while let Some((identity_id, obs)) = monitor_rx.recv().await {
            persist_observation(&monitor_rt, &identity_id, obs).await;
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            // Other instances may have suspended or revoked: keep revocation state current.
            let _ = rt.load_revocations().await;
            rt.rates.prune(rt.now_ms());
        }
    });
}

async fn persist_observation(rt: &Runtime, identity_id: &str, obs: Observation) {
    let now = rt.now_ms();
    for alert in &obs.alerts {
        let id = steward_gateway::runtime::new_id("alr");
        let body = serde_json::to_value(alert).unwrap_or(Value::Null);
        let mut event = AuditEvent::new(EventKind::Alert, Actor::system());
        event.resource = Some(identity_id.to_owned());
        event.detail = body.clone();
        let _ = rt.audit(event).await;
        let _ = rt.store.kv_put("alert", &id, &body, now).await;
    }
    if let Some(BreakerAction::Suspend { reason }) = obs.breaker {
        if let Ok(Some(mut identity)) = rt.store.identity_get(identity_id).await {
            if identity.status == "active" {
                let mut event = AuditEvent::new(EventKind::Suspension, Actor::system());
                event.resource = Some(identity_id.to_owned());
                event.reason = Some(reason.clone());
                event.detail = json!({"by": "circuit_breaker", "risk_score": obs.risk_score});
                let _ = rt.audit(event).await;
                identity.status = "suspended".into();
                identity.status_reason = Some(format!("circuit breaker: {reason}"));
                identity.updated_at = now;
                let norm = steward_core::name::normalize(&identity.name);
                let _ = rt.store.identity_update(&identity, &norm).await;
                let _ = rt.store.approval_cancel_pending(identity_id, now).await;
                rt.invalidate_identity(identity_id);
            }
        }
    }
}
