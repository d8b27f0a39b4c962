//! Acting on monitoring: the circuit breaker, stored alerts, baseline persistence and the
//! time-to-detect figures.
//!
//! The request path calls [`handle`], which suspends in memory at once and queues the
//! observation; the binary's background task calls [`persist_observation`], which stores,
//! audits and notifies. Alerts are `kv_records` of kind [`ALERT_KIND`]; learned baselines
//! are kind [`BASELINE_KIND`], one per identity.
//!
//! **Time to detect.** The monitor does not know when an attack began. We approximate the
//! start as the first call of the window that raised the alert: the earliest call cited in
//! its evidence (the monitor cites at most its last 8 calls, so for long bursts the figure is
//! a lower bound). Time to alert is `alert.at_ms - start`; time to suspend is the
//! suspension time minus the earliest start among the identity's open alerts of the last
//! [`SUSPENSION_LOOKBACK_MS`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use steward_audit::{Actor, AuditEvent, EventKind};
use steward_monitor::{Alert, BreakerAction, IdentitySnapshot, Observation};
use steward_store::models::Identity;

use crate::runtime::{Runtime, RuntimeError, new_id};

/// `kv_records` kind of stored alerts.
pub const ALERT_KIND: &str = "alert";
/// `kv_records` kind of saved per-identity baselines.
pub const BASELINE_KIND: &str = "monitor_baseline";
/// How far back open alerts count towards a suspension's attack start.
pub const SUSPENSION_LOOKBACK_MS: i64 = 6 * 60 * 60 * 1000;
/// Most alerts read back from the store at once.
const ALERT_SCAN_LIMIT: i64 = 100_000;

/// Alert statuses, in their only allowed order.
pub const ALERT_STATUSES: &[&str] = &["open", "acknowledged", "closed"];

/// A stored alert: the monitor's [`Alert`] plus its handling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Alert id, `alr_…`.
    #[serde(default)]
    pub id: String,
    /// What the monitor reported.
    #[serde(flatten)]
    pub alert: Alert,
    /// `open`, `acknowledged` or `closed`.
    #[serde(default = "open")]
    pub status: String,
    /// `suspended` or `would_suspend` when the circuit breaker tripped on this alert's call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<String>,
    /// Why the breaker tripped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker_reason: Option<String>,
    /// Approximate attack start: the earliest call cited as evidence.
    #[serde(default)]
    pub attack_started_ms: i64,
    /// `at_ms - attack_started_ms`.
    #[serde(default)]
    pub time_to_alert_ms: i64,
    /// Suspension time minus the earliest attack start of the identity's recent open alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_suspend_ms: Option<i64>,
    /// Who last changed the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_by: Option<String>,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<i64>,
    /// Why (acknowledge / close note).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn open() -> String {
    "open".into()
}

impl AlertRecord {
    fn from_alert(alert: Alert) -> Self {
        let started = alert
            .evidence
            .iter()
            .map(|e| e.at_ms)
            .min()
            .unwrap_or(alert.at_ms)
            .min(alert.at_ms);
        Self {
            id: new_id("alr"),
            time_to_alert_ms: alert.at_ms.saturating_sub(started),
            attack_started_ms: started,
            alert,
            status: open(),
            breaker: None,
            breaker_reason: None,
            time_to_suspend_ms: None,
            updated_by: None,
            updated_at: None,
            note: None,
        }
    }
}

/// Applies an observation: the breaker suspends at once in memory (so the very next
/// request is refused); persistence, alerts and auditing follow in the background.
pub fn handle(rt: &Runtime, identity: &Arc<Identity>, observation: Observation) {
    if observation.alerts.is_empty() && observation.breaker.is_none() {
        return;
    }
    if let Some(BreakerAction::Suspend { .. }) = &observation.breaker {
        rt.tokens.suspend_identity(&identity.id);
        rt.invalidate_identity(&identity.id);
    }
    if let Some(tx) = &rt.monitor_events
        && tx.try_send((identity.id.clone(), observation)).is_err()
    {
        metrics::counter!("steward_monitor_events_dropped_total").increment(1);
    }
}

/// Stores, audits and notifies one observation's alerts; persists a breaker suspension
/// (status, cancelled approvals) so it survives a restart. Nothing is deleted.
pub async fn persist_observation(rt: &Runtime, identity_id: &str, obs: Observation) {
    let now = rt.now_ms();
    let mut records: Vec<AlertRecord> = obs
        .alerts
        .into_iter()
        .map(AlertRecord::from_alert)
        .collect();
    let (action, reason) = match &obs.breaker {
        Some(BreakerAction::Suspend { reason }) => (Some("suspended"), Some(reason.clone())),
        Some(BreakerAction::WouldSuspend { reason }) => {
            (Some("would_suspend"), Some(reason.clone()))
        }
        None => (None, None),
    };
    if let Some(action) = action {
        let started = earliest_open_attack_start(rt, identity_id, now, &records).await;
        for record in &mut records {
            record.breaker = Some(action.to_owned());
            record.breaker_reason = reason.clone();
            record.time_to_suspend_ms = Some(now.saturating_sub(started));
        }
        if action == "suspended" {
            metrics::histogram!("steward_monitor_time_to_detect_seconds", "stage" => "suspension")
                .record(now.saturating_sub(started) as f64 / 1000.0);
        }
        metrics::counter!("steward_breaker_trips_total", "action" => action).increment(1);
    }
    for record in &records {
        let body = serde_json::to_value(record).unwrap_or(Value::Null);
        let mut event = AuditEvent::new(EventKind::Alert, Actor::system());
        event.resource = Some(identity_id.to_owned());
        event.operation = Some(format!("monitor:{}", record.alert.detector.as_str()));
        event.detail = body.clone();
        if let Err(e) = rt.audit(event).await {
            tracing::error!(error = %e, identity.id = %identity_id, "alert could not be audited");
        }
        if let Err(e) = rt.store.kv_put(ALERT_KIND, &record.id, &body, now).await {
            tracing::error!(error = %e, identity.id = %identity_id, "alert could not be stored");
        }
        metrics::counter!("steward_alerts_total", "detector" => record.alert.detector.as_str())
            .increment(1);
        metrics::histogram!("steward_monitor_time_to_detect_seconds", "stage" => "alert")
            .record(record.time_to_alert_ms as f64 / 1000.0);
        crate::notify::alert_raised(rt, record);
    }
    if let Some(BreakerAction::Suspend { reason }) = obs.breaker {
        suspend_by_breaker(rt, identity_id, &reason, obs.risk_score, now).await;
    }
    refresh_gauges(rt).await;
}

async fn suspend_by_breaker(
    rt: &Runtime,
    identity_id: &str,
    reason: &str,
    risk_score: u8,
    now: i64,
) {
    let Ok(Some(mut identity)) = rt.store.identity_get(identity_id).await else {
        return;
    };
    if identity.status != "active" {
        return;
    }
    let mut event = AuditEvent::new(EventKind::Suspension, Actor::system());
    event.resource = Some(identity_id.to_owned());
    event.reason = Some(reason.to_owned());
    event.detail = json!({"by": "circuit_breaker", "risk_score": risk_score, "status": "suspended", "previous": identity.status});
    if let Err(e) = rt.audit(event).await {
        // The in-memory suspension stays in force; the store is updated regardless, failing closed.
        tracing::error!(error = %e, identity.id = %identity_id, "breaker suspension could not be audited");
    }
    identity.status = "suspended".into();
    identity.status_reason = Some(format!("circuit breaker: {reason}"));
    identity.updated_at = now;
    let norm = steward_core::name::normalize(&identity.name);
    if let Err(e) = rt.store.identity_update(&identity, &norm).await {
        tracing::error!(error = %e, identity.id = %identity_id, "breaker suspension could not be stored");
    }
    let _ = rt.store.approval_cancel_pending(identity_id, now).await;
    rt.invalidate_identity(identity_id);
    crate::notify::identity_suspended(rt, identity_id, reason, risk_score);
}

async fn earliest_open_attack_start(
    rt: &Runtime,
    identity_id: &str,
    now: i64,
    fresh: &[AlertRecord],
) -> i64 {
    let mut started = fresh
        .iter()
        .map(|r| r.attack_started_ms)
        .min()
        .unwrap_or(now);
    if let Ok(stored) = list_alerts(rt, Some(identity_id), Some("open")).await {
        for record in stored {
            if record.alert.at_ms >= now.saturating_sub(SUSPENSION_LOOKBACK_MS) {
                started = started.min(record.attack_started_ms);
            }
        }
    }
    started
}

/// Stored alerts, newest first, optionally only one identity's or one status.
pub async fn list_alerts(
    rt: &Runtime,
    identity_id: Option<&str>,
    status: Option<&str>,
) -> Result<Vec<AlertRecord>, RuntimeError> {
    let mut out = Vec::new();
    for row in rt.store.kv_list(ALERT_KIND, ALERT_SCAN_LIMIT).await? {
        let Ok(mut record) = serde_json::from_value::<AlertRecord>(row.body) else {
            continue;
        };
        if record.id.is_empty() {
            record.id = row.id;
        }
        if identity_id.is_some_and(|i| i != record.alert.identity_id)
            || status.is_some_and(|s| s != record.status)
        {
            continue;
        }
        out.push(record);
    }
    out.sort_by(|a, b| {
        b.alert
            .at_ms
            .cmp(&a.alert.at_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    Ok(out)
}

/// One stored alert.
pub async fn get_alert(rt: &Runtime, id: &str) -> Result<AlertRecord, RuntimeError> {
    let row = rt
        .store
        .kv_get(ALERT_KIND, id)
        .await?
        .ok_or_else(|| RuntimeError::NotFound(format!("alert `{id}` does not exist")))?;
    let mut record: AlertRecord = serde_json::from_value(row.body)
        .map_err(|e| RuntimeError::Invalid(format!("alert `{id}` is unreadable: {e}")))?;
    record.id = row.id;
    Ok(record)
}

/// Moves an alert forward (`open` → `acknowledged` → `closed`); never backwards. The caller
/// audits before calling.
pub async fn set_alert_status(
    rt: &Runtime,
    id: &str,
    status: &str,
    by: &str,
    note: Option<String>,
) -> Result<AlertRecord, RuntimeError> {
    let rank = |s: &str| ALERT_STATUSES.iter().position(|x| *x == s);
    let target = rank(status).ok_or_else(|| {
        RuntimeError::Invalid(format!(
            "alert status `{status}` is not one of {}",
            ALERT_STATUSES.join(", ")
        ))
    })?;
    let mut record = get_alert(rt, id).await?;
    let current = rank(&record.status).unwrap_or(0);
    if target < current {
        return Err(RuntimeError::Conflict(format!(
            "alert `{id}` is {} and cannot become {status}",
            record.status
        )));
    }
    let now = rt.now_ms();
    record.status = status.to_owned();
    record.updated_by = Some(by.to_owned());
    record.updated_at = Some(now);
    if note.is_some() {
        record.note = note;
    }
    let body = serde_json::to_value(&record).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    rt.store.kv_put(ALERT_KIND, id, &body, now).await?;
    refresh_gauges(rt).await;
    Ok(record)
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// Open alerts, suspended identities and time-to-detect figures, for `steward status`.
pub async fn summary(rt: &Runtime) -> Result<Value, RuntimeError> {
    let alerts = list_alerts(rt, None, None).await?;
    let open_alerts = alerts.iter().filter(|a| a.status == "open").count();
    let suspended = rt
        .store
        .identity_list(None)
        .await?
        .iter()
        .filter(|i| i.status == "suspended")
        .count();
    let mut to_alert: Vec<i64> = alerts.iter().map(|a| a.time_to_alert_ms).collect();
    to_alert.sort_unstable();
    // One figure per suspension: the alerts of one tripping call share it.
    let mut to_suspend: Vec<(String, i64, i64)> = alerts
        .iter()
        .filter(|a| a.breaker.as_deref() == Some("suspended"))
        .filter_map(|a| {
            a.time_to_suspend_ms
                .map(|t| (a.alert.identity_id.clone(), a.alert.at_ms, t))
        })
        .collect();
    to_suspend.sort();
    to_suspend.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let mut to_suspend: Vec<i64> = to_suspend.into_iter().map(|(_, _, t)| t).collect();
    to_suspend.sort_unstable();
    Ok(json!({
        "open_alerts": open_alerts,
        "alerts_total": alerts.len(),
        "suspended_identities": suspended,
        "monitored_identities": rt.monitor.identity_count(),
        "time_to_alert_ms": {"median": percentile(&to_alert, 0.5), "p95": percentile(&to_alert, 0.95), "count": to_alert.len()},
        "time_to_suspend_ms": {"median": percentile(&to_suspend, 0.5), "p95": percentile(&to_suspend, 0.95), "count": to_suspend.len()},
    }))
}

/// Updates the `/metrics` gauges of open alerts and suspended identities.
pub async fn refresh_gauges(rt: &Runtime) {
    if let Ok(s) = summary(rt).await {
        let number = |key: &str| s.get(key).and_then(Value::as_f64).unwrap_or(0.0);
        metrics::gauge!("steward_alerts_open").set(number("open_alerts"));
        metrics::gauge!("steward_identities_suspended").set(number("suspended_identities"));
        metrics::gauge!("steward_monitored_identities").set(number("monitored_identities"));
    }
}

/// Saves every identity's learned baseline; returns how many were saved.
pub async fn save_baselines(rt: &Runtime) -> usize {
    let now = rt.now_ms();
    let mut saved = 0;
    for (identity_id, snapshot) in rt.monitor.snapshots() {
        let Ok(body) = serde_json::to_value(&snapshot) else {
            continue;
        };
        match rt
            .store
            .kv_put(BASELINE_KIND, &identity_id, &body, now)
            .await
        {
            Ok(()) => saved += 1,
            Err(e) => tracing::warn!(error = %e, identity.id = %identity_id, "baseline not saved"),
        }
    }
    saved
}

/// Restores saved baselines and applies each identity's observe-only flag (the identity
/// table is authoritative for the flag). Returns how many baselines were restored.
pub async fn restore(rt: &Runtime) -> Result<usize, RuntimeError> {
    let mut restored = 0;
    for row in rt.store.kv_list(BASELINE_KIND, 1_000_000).await? {
        match serde_json::from_value::<IdentitySnapshot>(row.body) {
            Ok(snapshot) => match rt.monitor.restore(&row.id, snapshot) {
                Ok(()) => restored += 1,
                Err(e) => {
                    tracing::warn!(error = %e, identity.id = %row.id, "saved baseline refused; learning again")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, identity.id = %row.id, "saved baseline unreadable; learning again")
            }
        }
    }
    let now = rt.now_ms();
    for identity in rt.store.identity_list(None).await? {
        if identity.observe_only || rt.monitor.is_observe_only(&identity.id) {
            rt.monitor
                .set_observe_only(&identity.id, identity.observe_only, now);
        }
    }
    refresh_gauges(rt).await;
    Ok(restored)
}
