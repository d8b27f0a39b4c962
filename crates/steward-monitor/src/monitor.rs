//! The thread-safe [`Monitor`]: per-identity state in sharded maps, one `observe` per call.
//!
//! `observe` takes one shard lock, then does O(1) work (plus binary searches in the
//! bounded sets): it updates the sliding windows, runs the detectors against the baseline
//! (unless the identity is still learning), learns the call, adds the alerts' points to the
//! risk score and applies the circuit-breaker rules.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, DetectorKind, Evidence, Severity};
use crate::baseline::Baseline;
use crate::config::MonitorConfig;
use crate::detect::{self, Cite, Finding, Gate, Sighting};
use crate::error::MonitorError;
use crate::event::{CallEvent, NetworkKey, Outcome};
use crate::hash::stable_hash;
use crate::risk::RiskScore;
use crate::window::SlidingWindow;

const SHARDS: usize = 64;
const MINUTE_MS: i64 = 60_000;
const RECENT_CALLS: usize = 8;
const MAX_SIGHTINGS: usize = 16;
const RECENT_NEW_SERVICES: usize = 4;

/// What the circuit breaker decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BreakerAction {
    /// Suspend the identity now: revoke its tokens and keys, cancel pending approvals.
    Suspend {
        /// Why, for the audit record and the notification.
        reason: String,
    },
    /// The identity is in observe-only mode: this is what would have happened.
    WouldSuspend {
        /// Why the breaker would have tripped.
        reason: String,
    },
}

/// The monitor's verdict on one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The identity's risk score (0–100) after this call.
    pub risk_score: u8,
    /// Whether the identity is still in its learning period (no detectors ran).
    pub learning: bool,
    /// Alerts raised by this call (usually none).
    pub alerts: Vec<Alert>,
    /// Set when the circuit breaker trips on this call.
    pub breaker: Option<BreakerAction>,
}

/// The persistent part of an identity's monitoring state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentitySnapshot {
    /// What the identity normally does.
    pub baseline: Baseline,
    /// The risk score and when it was last updated.
    pub risk: RiskScore,
    /// Whether the breaker only reports (rollout mode).
    pub observe_only: bool,
}

#[derive(Debug, Clone, Default)]
struct RecentCall {
    request_id: Option<String>,
    name: String,
    outcome: Option<Outcome>,
    bytes: u64,
    network: Option<NetworkKey>,
    at_ms: i64,
}

impl RecentCall {
    fn fill(&mut self, event: &CallEvent, network: Option<NetworkKey>) {
        // Reuse the string buffers: no allocation in the steady state.
        match (&mut self.request_id, &event.request_id) {
            (Some(mine), Some(theirs)) => {
                mine.clear();
                mine.push_str(theirs);
            }
            (slot, theirs) => slot.clone_from(theirs),
        }
        self.name.clear();
        self.name.push_str(&event.service);
        self.name.push(':');
        self.name.push_str(&event.operation);
        self.outcome = Some(event.outcome);
        self.bytes = event.response_bytes;
        self.network = network;
        self.at_ms = event.at_ms;
    }

    fn evidence(&self) -> Evidence {
        let outcome = self.outcome.map_or("unknown", Outcome::as_str);
        let description = match self.network {
            Some(network) => format!(
                "`{}` {outcome}, {} B, from {network}",
                self.name, self.bytes
            ),
            None => format!("`{}` {outcome}, {} B", self.name, self.bytes),
        };
        Evidence {
            request_id: self.request_id.clone(),
            at_ms: self.at_ms,
            description,
        }
    }
}

/// Everything the monitor keeps about one identity.
#[derive(Debug, Clone)]
struct IdentityState {
    baseline: Baseline,
    risk: RiskScore,
    observe_only: bool,
    tripped: bool,
    /// calls, bytes per minute.
    minute: SlidingWindow<2>,
    /// calls, denies, approvals per `deny_burst.window_ms`.
    burst: SlidingWindow<3>,
    gates: Gates,
    recent: Vec<RecentCall>,
    recent_next: usize,
    sightings: Vec<Sighting>,
    new_services: [(u64, i64); RECENT_NEW_SERVICES],
    new_services_next: usize,
}

impl IdentityState {
    fn new(at_ms: i64) -> Self {
        Self {
            baseline: Baseline::new(at_ms),
            risk: RiskScore::default(),
            observe_only: false,
            tripped: false,
            minute: SlidingWindow::default(),
            burst: SlidingWindow::default(),
            gates: Gates::default(),
            recent: Vec::new(),
            recent_next: 0,
            sightings: Vec::new(),
            new_services: [(0, i64::MIN); RECENT_NEW_SERVICES],
            new_services_next: 0,
        }
    }

    fn remember_call(&mut self, event: &CallEvent, network: Option<NetworkKey>) {
        if self.recent.len() < RECENT_CALLS {
            let mut call = RecentCall::default();
            call.fill(event, network);
            self.recent.push(call);
            self.recent_next = self.recent.len() % RECENT_CALLS;
        } else {
            if let Some(slot) = self.recent.get_mut(self.recent_next) {
                slot.fill(event, network);
            }
            self.recent_next = (self.recent_next + 1) % RECENT_CALLS;
        }
    }

    /// The remembered calls, newest first.
    fn recent_newest_first(&self) -> impl Iterator<Item = &RecentCall> {
        let len = self.recent.len();
        (1..=len).filter_map(move |back| {
            self.recent
                .get((self.recent_next + len * 2 - back) % len.max(1))
        })
    }

    fn service_new_since(&self, service_key: u64) -> Option<i64> {
        self.new_services
            .iter()
            .find(|(key, at)| *key == service_key && *at != i64::MIN)
            .map(|(_, at)| *at)
    }

    fn note_new_service(&mut self, service_key: u64, at_ms: i64) {
        if let Some(slot) = self.new_services.get_mut(self.new_services_next) {
            *slot = (service_key, at_ms);
        }
        self.new_services_next = (self.new_services_next + 1) % RECENT_NEW_SERVICES;
    }

    fn record_sighting(&mut self, credential: u64, network: NetworkKey, at_ms: i64, flagged: bool) {
        if let Some(s) = self
            .sightings
            .iter_mut()
            .find(|s| s.credential == credential && s.network == network)
        {
            s.last_ms = s.last_ms.max(at_ms);
            s.flagged |= flagged;
            return;
        }
        if self.sightings.len() >= MAX_SIGHTINGS
            && let Some(oldest) = self
                .sightings
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.last_ms)
                .map(|(i, _)| i)
        {
            self.sightings.swap_remove(oldest);
        }
        self.sightings.push(Sighting {
            credential,
            network,
            last_ms: at_ms,
            flagged,
        });
    }

    fn cite(&self, cite: Cite, event: &CallEvent) -> Vec<Evidence> {
        let current = || self.recent_newest_first().next().map(RecentCall::evidence);
        match cite {
            Cite::Current => current().into_iter().collect(),
            Cite::Recent => self
                .recent_newest_first()
                .map(RecentCall::evidence)
                .collect(),
            Cite::RecentDenied => self
                .recent_newest_first()
                .filter(|c| c.outcome == Some(Outcome::Denied))
                .map(RecentCall::evidence)
                .collect(),
            Cite::RecentApprovals => self
                .recent_newest_first()
                .filter(|c| c.outcome == Some(Outcome::ApprovalRequired))
                .map(RecentCall::evidence)
                .collect(),
            Cite::CurrentAnd { at_ms, description } => {
                let mut out: Vec<Evidence> = current().into_iter().collect();
                out.push(Evidence {
                    request_id: None,
                    at_ms,
                    description,
                });
                let _ = event;
                out
            }
        }
    }

    fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.baseline.approx_bytes() - std::mem::size_of::<Baseline>()
            + self.sightings.capacity() * std::mem::size_of::<Sighting>()
            + self.recent.capacity() * std::mem::size_of::<RecentCall>()
            + self
                .recent
                .iter()
                .map(|c| c.name.capacity() + c.request_id.as_ref().map_or(0, String::capacity))
                .sum::<usize>()
    }
}

/// The rate-limiting gates of the detectors that have one.
#[derive(Debug, Clone, Copy, Default)]
struct Gates {
    off_hours: Gate,
    rate_spike: Gate,
    bytes_spike: Gate,
    deny_burst: Gate,
    approval_flood: Gate,
    concurrent_credential: Gate,
}

/// Behavioural monitoring for all identities. Cheap to share: wrap it in an `Arc`.
#[derive(Debug)]
pub struct Monitor {
    config: MonitorConfig,
    shards: Vec<Mutex<HashMap<String, IdentityState>>>,
}

impl Monitor {
    /// A monitor with `config`, which must be valid.
    pub fn new(config: MonitorConfig) -> Result<Self, MonitorError> {
        config.validate()?;
        Ok(Self {
            config,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    fn shard(&self, identity: &str) -> MutexGuard<'_, HashMap<String, IdentityState>> {
        let index = (stable_hash(&[identity]) % SHARDS as u64) as usize;
        let shard = match self.shards.get(index) {
            Some(shard) => shard,
            None => self.shards.first().unwrap_or_else(|| unreachable_shard()),
        };
        // A panic while holding the lock leaves plain data behind; keep monitoring.
        shard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Scores one call: updates the identity's baseline, runs the detectors, the risk score
    /// and the circuit breaker. Call it once per call, after the policy decision.
    pub fn observe(&self, event: &CallEvent) -> Observation {
        let mut shard = self.shard(&event.identity_id);
        let state = match shard.get_mut(event.identity_id.as_str()) {
            Some(state) => state,
            None => shard
                .entry(event.identity_id.clone())
                .or_insert_with(|| IdentityState::new(event.at_ms)),
        };
        observe_state(&self.config, state, event)
    }

    /// The identity's risk score at `now_ms` (0 for an unknown identity), for policy
    /// (`context.risk_score`).
    pub fn risk_score(&self, identity: &str, now_ms: i64) -> u8 {
        self.shard(identity).get(identity).map_or(0, |state| {
            state.risk.at(now_ms, self.config.risk.half_life_ms)
        })
    }

    /// Whether the identity is still learning at `now_ms` (true for an unknown identity).
    pub fn is_learning(&self, identity: &str, now_ms: i64) -> bool {
        self.shard(identity)
            .get(identity)
            .is_none_or(|state| state.baseline.in_learning(&self.config.learning, now_ms))
    }

    /// Puts the identity in or out of observe-only mode: the breaker then reports
    /// [`BreakerAction::WouldSuspend`] instead of [`BreakerAction::Suspend`].
    pub fn set_observe_only(&self, identity: &str, observe_only: bool, now_ms: i64) {
        self.shard(identity)
            .entry(identity.to_owned())
            .or_insert_with(|| IdentityState::new(now_ms))
            .observe_only = observe_only;
    }

    /// Whether the identity is in observe-only mode.
    pub fn is_observe_only(&self, identity: &str) -> bool {
        self.shard(identity)
            .get(identity)
            .is_some_and(|state| state.observe_only)
    }

    /// A human reinstated the identity: resets its risk score and re-arms the breaker. The
    /// baseline is kept. Returns whether the identity was known.
    pub fn reinstate(&self, identity: &str, now_ms: i64) -> bool {
        match self.shard(identity).get_mut(identity) {
            Some(state) => {
                state.risk.reset(now_ms);
                state.tripped = false;
                state.gates = Gates::default();
                true
            }
            None => false,
        }
    }

    /// The persistent state of one identity, to save.
    pub fn snapshot(&self, identity: &str) -> Option<IdentitySnapshot> {
        self.shard(identity)
            .get(identity)
            .map(|state| IdentitySnapshot {
                baseline: state.baseline.clone(),
                risk: state.risk,
                observe_only: state.observe_only,
            })
    }

    /// Every identity's persistent state (e.g. on shutdown or periodically).
    pub fn snapshots(&self) -> Vec<(String, IdentitySnapshot)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            out.extend(shard.iter().map(|(id, state)| {
                (
                    id.clone(),
                    IdentitySnapshot {
                        baseline: state.baseline.clone(),
                        risk: state.risk,
                        observe_only: state.observe_only,
                    },
                )
            }));
        }
        out
    }

    /// Restores a saved state (e.g. at startup), replacing what the monitor holds.
    pub fn restore(&self, identity: &str, snapshot: IdentitySnapshot) -> Result<(), MonitorError> {
        let IdentitySnapshot {
            mut baseline,
            risk,
            observe_only,
        } = snapshot;
        if baseline.last_seen_ms < baseline.first_seen_ms {
            return Err(MonitorError::InvalidSnapshot {
                identity: identity.to_owned(),
                problem: "last call precedes first call",
            });
        }
        baseline.normalize(&self.config.baseline);
        let mut state = IdentityState::new(baseline.first_seen_ms);
        state.baseline = baseline;
        state.risk = risk;
        state.observe_only = observe_only;
        self.shard(identity).insert(identity.to_owned(), state);
        Ok(())
    }

    /// Drops an identity's state (e.g. when it is deleted).
    pub fn forget(&self, identity: &str) -> bool {
        self.shard(identity).remove(identity).is_some()
    }

    /// Number of identities with state.
    pub fn identity_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// An estimate of the memory one identity's state takes (baseline and runtime state).
    pub fn approx_identity_bytes(&self, identity: &str) -> Option<usize> {
        self.shard(identity)
            .get(identity)
            .map(IdentityState::approx_bytes)
    }
}

fn unreachable_shard() -> &'static Mutex<HashMap<String, IdentityState>> {
    static EMPTY: std::sync::OnceLock<Mutex<HashMap<String, IdentityState>>> =
        std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Mutex::new(HashMap::new()))
}

fn observe_state(
    config: &MonitorConfig,
    state: &mut IdentityState,
    event: &CallEvent,
) -> Observation {
    let now = event.at_ms;
    let service_key = stable_hash(&[&event.service]);
    let operation_key = stable_hash(&[&event.service, &event.operation]);
    let credential_key = stable_hash(&[&event.credential_id]);
    let network = event.source_ip.map(NetworkKey::of);
    let denied = event.outcome == Outcome::Denied;
    let approval = event.outcome == Outcome::ApprovalRequired;
    let bytes = event.response_bytes as f64;
    let learning = state.baseline.in_learning(&config.learning, now);

    state.remember_call(event, network);

    // Sliding windows; a closed minute feeds the per-minute baseline, capped at the
    // thresholds in force so a burst does not teach that bursts are normal.
    if let Some(([calls, minute_bytes], start)) = state.minute.advance(now, MINUTE_MS) {
        let caps = if learning {
            (f64::MAX, f64::MAX)
        } else {
            let (peak_calls, peak_bytes) = state.baseline.peaks_at(start, &config.baseline);
            (
                detect::spike_threshold(config.rate_spike.rule(), peak_calls),
                detect::spike_threshold(config.bytes_spike.rule(), peak_bytes),
            )
        };
        state
            .baseline
            .learn_minute(start, calls, minute_bytes, caps, &config.baseline);
    }
    state.minute.add([1.0, bytes]);
    state.burst.advance(now, config.deny_burst.window_ms);
    state.burst.add([
        1.0,
        f64::from(u8::from(denied)),
        f64::from(u8::from(approval)),
    ]);

    let mut findings: Vec<Finding> = Vec::new();
    let service_is_new = !state.baseline.services.contains(service_key);
    if !learning {
        let baseline = &state.baseline;
        findings.extend(detect::new_service(
            &config.new_service,
            baseline,
            service_key,
            &event.service,
        ));
        findings.extend(detect::new_operation(
            &config.new_operation,
            baseline,
            operation_key,
            service_is_new,
            state.service_new_since(service_key),
            now,
            (&event.service, &event.operation),
        ));
        if let Some(network) = network {
            findings.extend(detect::new_network(&config.new_network, baseline, network));
        }
        let (peak_calls, peak_bytes) = state.baseline.peaks_at(now, &config.baseline);
        let [minute_calls, minute_bytes] = state.minute.estimate(now, MINUTE_MS);
        let [window_calls, window_denies, window_approvals] =
            state.burst.estimate(now, config.deny_burst.window_ms);

        findings.extend(detect::off_hours(
            &config.off_hours,
            &state.baseline,
            now,
            &mut state.gates.off_hours,
        ));

        findings.extend(detect::spike(
            config.rate_spike.rule(),
            DetectorKind::RateSpike,
            minute_calls,
            peak_calls,
            now,
            &mut state.gates.rate_spike,
        ));

        if bytes > 0.0 {
            findings.extend(detect::spike(
                config.bytes_spike.rule(),
                DetectorKind::BytesSpike,
                minute_bytes,
                peak_bytes,
                now,
                &mut state.gates.bytes_spike,
            ));
        }
        if denied {
            findings.extend(detect::deny_burst(
                &config.deny_burst,
                &state.baseline,
                window_calls,
                window_denies,
                now,
                &mut state.gates.deny_burst,
            ));
        }
        if approval {
            findings.extend(detect::approval_flood(
                &config.approval_flood,
                &state.baseline,
                window_calls,
                window_approvals,
                now,
                &mut state.gates.approval_flood,
            ));
        }
        if let Some(network) = network {
            findings.extend(detect::concurrent_credential(
                &config.concurrent_credential,
                &state.baseline,
                &state.sightings,
                credential_key,
                network,
                now,
                &mut state.gates.concurrent_credential,
            ));
        }
    }

    // Learn the call (after detection, so the call is compared with the past only).
    let b = &config.baseline;
    if state
        .baseline
        .services
        .record(service_key, now, b.max_services)
        && state.baseline.calls > 0
    {
        state.note_new_service(service_key, now);
    }
    state
        .baseline
        .operations
        .record(operation_key, now, b.max_operations);
    if let Some(network) = network {
        state
            .baseline
            .networks
            .record(network.as_u64(), now, b.max_networks);
        let flagged = findings
            .iter()
            .any(|f| f.detector == DetectorKind::ConcurrentCredential);
        state.record_sighting(credential_key, network, now, flagged);
    }
    if state.baseline.calls == 0 {
        state.baseline.first_seen_ms = now;
    }
    state
        .baseline
        .learn_call(now, event.outcome, event.response_bytes, b);

    let half_life = config.risk.half_life_ms;
    let mut alerts = Vec::new();
    for finding in findings {
        state
            .risk
            .add(config.risk.points(finding.severity), now, half_life);
        alerts.push(Alert {
            identity_id: event.identity_id.clone(),
            detector: finding.detector,
            severity: finding.severity,
            evidence: state.cite(finding.cite, event),
            summary: finding.summary,
            score: state.risk.at(now, half_life),
            at_ms: now,
        });
    }
    let risk_score = state.risk.at(now, half_life);
    let breaker = breaker_decision(config, state, risk_score, &alerts);
    Observation {
        risk_score,
        learning,
        alerts,
        breaker,
    }
}

fn breaker_decision(
    config: &MonitorConfig,
    state: &mut IdentityState,
    score: u8,
    alerts: &[Alert],
) -> Option<BreakerAction> {
    let rules = &config.breaker;
    if !rules.enabled {
        return None;
    }
    if state.tripped && score < rules.rearm_below {
        state.tripped = false;
    }
    if state.tripped {
        return None;
    }
    let detectors = || {
        alerts
            .iter()
            .map(|a| format!("`{}`", a.detector))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reason = if score >= rules.score_at_least && !alerts.is_empty() {
        format!(
            "risk score {score} reached {} after {}",
            rules.score_at_least,
            detectors()
        )
    } else if let Some(alert) = alerts
        .iter()
        .find(|a| rules.on_critical && a.severity == Severity::Critical)
    {
        format!("critical `{}` alert: {}", alert.detector, alert.summary)
    } else if let Some(alert) = alerts
        .iter()
        .find(|a| rules.on_detectors.contains(&a.detector))
    {
        format!("`{}` alert: {}", alert.detector, alert.summary)
    } else {
        return None;
    };
    state.tripped = true;
    Some(if state.observe_only {
        BreakerAction::WouldSuspend { reason }
    } else {
        BreakerAction::Suspend { reason }
    })
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;

    const MIN: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MIN;

    fn event(identity: &str, at_ms: i64, op: &str, outcome: Outcome, bytes: u64) -> CallEvent {
        CallEvent {
            request_id: Some(format!("r{at_ms}")),
            identity_id: identity.into(),
            credential_id: "k".into(),
            service: "svc".into(),
            operation: op.into(),
            source_ip: Some("192.0.2.1".parse::<IpAddr>().unwrap()),
            outcome,
            response_bytes: bytes,
            at_ms,
        }
    }

    /// 24/7 identity, one call a minute for `days` days.
    fn warm(monitor: &Monitor, identity: &str, days: i64) -> i64 {
        let end = days * DAY;
        let mut t = 0;
        while t < end {
            let obs = monitor.observe(&event(identity, t, "read", Outcome::Allowed, 1000));
            assert!(obs.alerts.is_empty());
            t += MIN;
        }
        end
    }

    fn exfiltrate(monitor: &Monitor, identity: &str, start: i64) -> Vec<Observation> {
        (0..60)
            .map(|i| {
                monitor.observe(&event(
                    identity,
                    start + i * 1000,
                    "read",
                    Outcome::Allowed,
                    20 << 20,
                ))
            })
            .collect()
    }

    #[test]
    fn breaker_suspends_once_then_rearms_after_reinstatement() {
        let monitor = Monitor::new(MonitorConfig::default()).unwrap();
        let t = warm(&monitor, "a", 8);
        let observations = exfiltrate(&monitor, "a", t);
        let trips: Vec<_> = observations
            .iter()
            .filter_map(|o| o.breaker.clone())
            .collect();
        assert_eq!(trips.len(), 1, "{trips:?}");
        assert!(
            matches!(&trips[0], BreakerAction::Suspend { reason } if reason.contains("bytes_spike"))
        );
        assert!(monitor.risk_score("a", t + 60_000) >= 90);
        // Decays with the half-life.
        let later = monitor.risk_score("a", t + 60_000 + 2 * 3_600_000);
        assert!((20..=30).contains(&later), "{later}");
        assert!(monitor.reinstate("a", t + 120_000));
        assert_eq!(monitor.risk_score("a", t + 120_000), 0);
        let again = exfiltrate(&monitor, "a", t + 10 * MIN);
        assert!(
            again.iter().any(|o| o.breaker.is_some()),
            "re-armed after reinstatement"
        );
    }

    #[test]
    fn observe_only_reports_what_would_have_happened() {
        let monitor = Monitor::new(MonitorConfig::default()).unwrap();
        let t = warm(&monitor, "b", 8);
        monitor.set_observe_only("b", true, t);
        assert!(monitor.is_observe_only("b"));
        let observations = exfiltrate(&monitor, "b", t);
        let trips: Vec<_> = observations
            .iter()
            .filter_map(|o| o.breaker.clone())
            .collect();
        assert_eq!(trips.len(), 1);
        assert!(matches!(trips[0], BreakerAction::WouldSuspend { .. }));
    }

    #[test]
    fn score_rule_alone_trips_the_breaker() {
        let mut config = MonitorConfig::default();
        config.breaker.on_critical = false;
        config.breaker.score_at_least = 50;
        let monitor = Monitor::new(config).unwrap();
        let t = warm(&monitor, "c", 8);
        // Two new operations (low, 8 points each) stay below 50...
        for (i, op) in ["x1", "x2"].iter().enumerate() {
            let obs = monitor.observe(&event("c", t + i as i64 * 1000, op, Outcome::Allowed, 1000));
            assert_eq!(obs.alerts.len(), 1);
            assert!(obs.breaker.is_none());
        }
        // ...a deny burst (high, 40) on top crosses it.
        let mut tripped = None;
        for i in 0..12 {
            let obs = monitor.observe(&event("c", t + 5000 + i * 1000, "read", Outcome::Denied, 0));
            if obs.breaker.is_some() {
                tripped = Some((i, obs.risk_score));
            }
        }
        let (i, score) = tripped.expect("breaker did not trip");
        assert_eq!(i, 9);
        assert!(score >= 50);
    }

    #[test]
    fn disabled_breaker_never_acts() {
        let mut config = MonitorConfig::default();
        config.breaker.enabled = false;
        let monitor = Monitor::new(config).unwrap();
        let t = warm(&monitor, "d", 8);
        assert!(
            exfiltrate(&monitor, "d", t)
                .iter()
                .all(|o| o.breaker.is_none())
        );
        assert!(monitor.risk_score("d", t + 60_000) >= 90);
    }

    #[test]
    fn snapshot_restore_keeps_baseline_and_score() {
        let monitor = Monitor::new(MonitorConfig::default()).unwrap();
        let t = warm(&monitor, "e", 8);
        exfiltrate(&monitor, "e", t);
        let snapshot = monitor.snapshot("e").unwrap();
        let json = serde_json::to_string(&snapshot).unwrap();
        let restored = Monitor::new(MonitorConfig::default()).unwrap();
        restored
            .restore("e", serde_json::from_str(&json).unwrap())
            .unwrap();
        assert_eq!(
            restored.risk_score("e", t + 60_000),
            monitor.risk_score("e", t + 60_000)
        );
        assert!(!restored.is_learning("e", t + 60_000));
        // The restored baseline knows the operation: no new-operation alert.
        let obs = restored.observe(&event("e", t + 2 * DAY, "read", Outcome::Allowed, 1000));
        assert!(obs.alerts.is_empty(), "{:?}", obs.alerts);
        let obs = restored.observe(&event(
            "e",
            t + 2 * DAY + 1000,
            "write",
            Outcome::Allowed,
            1000,
        ));
        assert_eq!(obs.alerts.len(), 1);
        assert_eq!(restored.snapshots().len(), 1);
        assert!(restored.forget("e"));
        assert_eq!(restored.identity_count(), 0);
    }

    #[test]
    fn identity_state_stays_under_16_kib() {
        let monitor = Monitor::new(MonitorConfig::default()).unwrap();
        for i in 0..20_000i64 {
            let mut ev = event("f", i * 1000, &format!("op-{i}"), Outcome::Allowed, 10);
            ev.service = format!("svc-{}", i % 500);
            ev.source_ip = Some(IpAddr::from([10, (i >> 8) as u8, i as u8, 1]));
            ev.credential_id = format!("cred-{i}");
            ev.request_id = Some(format!("a-rather-long-request-identifier-{i:012}"));
            monitor.observe(&ev);
        }
        let bytes = monitor.approx_identity_bytes("f").unwrap();
        assert!(bytes <= 16 * 1024, "identity state takes {bytes} bytes");
        let snapshot = monitor.snapshot("f").unwrap();
        assert_eq!(snapshot.baseline.operations.len(), 512);
        assert_eq!(snapshot.baseline.networks.len(), 64);
    }

    #[test]
    fn identities_are_independent_and_thread_safe() {
        let monitor = Arc::new(Monitor::new(MonitorConfig::default()).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let monitor = Arc::clone(&monitor);
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        monitor.observe(&event(
                            &format!("id-{n}-{}", i % 10),
                            i * 1000,
                            "read",
                            Outcome::Allowed,
                            10,
                        ));
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(monitor.identity_count(), 40);
        assert_eq!(monitor.risk_score("unknown", 0), 0);
        assert!(!monitor.reinstate("unknown", 0));
    }
}
