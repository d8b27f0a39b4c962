//! Background tasks: notification webhooks, monitoring persistence (alerts, breaker
//! suspensions, baselines), revocation refresh.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use steward_gateway::monitoring;
use steward_gateway::runtime::{Runtime, RuntimeError};
use steward_monitor::Observation;

/// The notification webhook: `STEWARD_NOTIFY_WEBHOOK`, or the older `STEWARD_APPROVAL_WEBHOOK`.
fn webhook_url() -> Option<String> {
    std::env::var("STEWARD_NOTIFY_WEBHOOK")
        .ok()
        .or_else(|| std::env::var("STEWARD_APPROVAL_WEBHOOK").ok())
        .filter(|u| !u.trim().is_empty())
}

/// Starts the background tasks.
pub fn spawn(
    rt: Arc<Runtime>,
    mut notify_rx: tokio::sync::mpsc::Receiver<Value>,
    mut monitor_rx: tokio::sync::mpsc::Receiver<(String, Observation)>,
    snapshot_interval: Duration,
) {
    let webhook = webhook_url();
    let notify_rt = Arc::clone(&rt);
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        while let Some(payload) = notify_rx.recv().await {
            // Each delivery retries on its own, so one slow receiver does not hold up the rest.
            let (rt, client, fallback) = (Arc::clone(&notify_rt), client.clone(), webhook.clone());
            tokio::spawn(async move {
                crate::webhook::deliver(&rt, &client, &payload, fallback.as_deref()).await
            });
        }
    });
    let sweep_rt = Arc::clone(&rt);
    tokio::spawn(async move {
        // Expired grants stop matching on their own (their policy carries the expiry); this
        // marks them, audits it, drops them from the compiled set and later deletes them.
        let mut tick = tokio::time::interval(Duration::from_millis(
            sweep_rt.settings.grant_cleanup_interval_ms.max(100),
        ));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = steward_gateway::approvals::expire_due(&sweep_rt).await {
                tracing::warn!(error = %e, "approval expiry sweep failed");
            }
            if let Err(e) =
                steward_gateway::grants::sweep(&sweep_rt, sweep_rt.settings.grant_retention_ms)
                    .await
            {
                tracing::warn!(error = %e, "grant sweep failed");
            }
        }
    });
    let monitor_rt = Arc::clone(&rt);
    tokio::spawn(async move {
        while let Some((identity_id, obs)) = monitor_rx.recv().await {
            monitoring::persist_observation(&monitor_rt, &identity_id, obs).await;
        }
    });
    let snapshot_rt = Arc::clone(&rt);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(snapshot_interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let saved = monitoring::save_baselines(&snapshot_rt).await;
            tracing::debug!(saved, "monitor baselines saved");
            monitoring::refresh_gauges(&snapshot_rt).await;
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            // Other instances may have suspended or revoked: keep revocation state current.
            let _ = rt.load_revocations().await;
            // ... and may have rotated the token-signing key.
            if let Err(e) = steward_gateway::signing_keys::refresh(&rt).await {
                tracing::warn!(error = %e, "signing-key refresh failed");
            }
            rt.rates.prune(rt.now_ms());
        }
    });
}

/// Restores saved baselines and observe-only flags before serving.
pub async fn restore_monitor(rt: &Runtime) -> Result<(), RuntimeError> {
    let restored = monitoring::restore(rt).await?;
    tracing::info!(restored, "monitor baselines restored");
    Ok(())
}

/// Saves baselines on shutdown.
pub async fn save_monitor(rt: &Runtime) {
    let saved = monitoring::save_baselines(rt).await;
    tracing::info!(saved, "monitor baselines saved on shutdown");
}

/// Vault housekeeping: due secret rotations (retried with backoff, failures recorded on the
/// secret), expired lease cleanup, keyring reload after an offline master-key rotation, and
/// the rotation/expiry gauges. One task, so a slow PostgreSQL never runs two sweeps at once.
pub fn spawn_vault(rt: Arc<Runtime>) {
    let interval = std::env::var("STEWARD_VAULT_TICK_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1_000)
        .max(100);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(interval));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = rt.refresh_keyring_if_rotated().await {
                tracing::warn!(error = %e, "master keyring refresh failed");
            }
            match steward_gateway::leases::sweep_expired(&rt).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(ended = n, "expired leases ended"),
                Err(e) => tracing::warn!(error = %e, "lease sweep failed"),
            }
            if let Err(e) = steward_gateway::rotation::run_due(&rt).await {
                tracing::warn!(error = %e, "rotation scheduler failed");
            }
            if let Err(e) = steward_gateway::rotation::publish_gauges(&rt).await {
                tracing::warn!(error = %e, "vault gauges failed");
            }
        }
    });
}
