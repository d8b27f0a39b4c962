//! The detectors and their rules. Each runs only after the identity's learning period,
//! compares the current call with the identity's own [`Baseline`] (before the call is learned)
//! and has its thresholds in [`crate::config`].
//!
//! | Detector | Rule (defaults) | Severity |
//! |---|---|---|
//! | `new_service` | the call's service is not in the baseline's service set | medium |
//! | `new_operation` | the operation is not in the operation set, its service is known; an operation of a service first seen less than `new_service_grace_ms` (1 h) ago only rates `info`, a brand-new service raises `new_service` alone | low |
//! | `off_hours` | the profile holds ≥ `min_mass` (100) decayed calls and the call's hour of week plus `neighbour_hours` (1) either side hold < `max_share` (0.2 %) of them; at most one alert per `cooldown_ms` (1 h) | medium |
//! | `rate_spike` | calls in the sliding last minute ≥ max(`min_per_minute` (30), `multiplier` (4) × learned peak calls per minute) | high; critical at `critical_ratio` (4) × the threshold |
//! | `bytes_spike` | response bytes in the sliding last minute ≥ max(`min_per_minute` (16 MiB), `multiplier` (4) × learned peak bytes per minute) | high; critical at 4 × the threshold |
//! | `deny_burst` | on a denied call: denies in the sliding `window_ms` (5 min) ≥ `min_denies` (10) and the window's deny fraction ≥ min(0.95, learned deny ratio + `min_excess_ratio` (0.4)) | high; critical at `critical_ratio` (4) × `min_denies` |
//! | `new_network` | the source /24 (IPv4) or /48 (IPv6) is not in the network set | medium; info once the identity uses ≥ `many_networks` (24) networks |
//! | `concurrent_credential` | the call's credential was used from another network less than `window_ms` (5 min) ago, and the two networks are not both established (≥ `established_min_calls` (20) calls each in the baseline); each (credential, network) pair is cited at most once, and at most one alert per `cooldown_ms` (15 min) | high |
//! | `approval_flood` | on an approval-required call: approvals in the sliding 5-min window ≥ `min_approvals` (8) and ≥ `multiplier` (4) × (learned approval ratio × calls in the window) | medium |
//!
//! The burst detectors (`rate_spike`, `bytes_spike`, `deny_burst`, `approval_flood`) are
//! rate-limited by a gate: after an alert they stay quiet for `cooldown_ms` unless the
//! measured value grows by `escalation` (2×) meanwhile, so a burst that keeps growing keeps
//! adding risk while a plateau does not. Minutes above the spike thresholds raise the learned
//! peaks only up to the threshold, so a burst does not teach the baseline that bursts are normal.

use crate::alert::{DetectorKind, Severity};
use crate::baseline::{Baseline, hour_of_week};
use crate::config::{
    ApprovalFloodConfig, ConcurrentCredentialConfig, DenyBurstConfig, NewNetworkConfig,
    NewOperationConfig, NoveltyConfig, OffHoursConfig, SpikeRule,
};
use crate::event::NetworkKey;

/// Which calls an alert cites.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cite {
    /// The call that raised the alert.
    Current,
    /// The most recent calls (the current one first).
    Recent,
    /// The most recent denied calls.
    RecentDenied,
    /// The most recent approval-required calls.
    RecentApprovals,
    /// The current call, plus a described earlier call.
    CurrentAnd { at_ms: i64, description: String },
}

/// A detector's verdict before it becomes an [`crate::Alert`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub(crate) detector: DetectorKind,
    pub(crate) severity: Severity,
    pub(crate) summary: String,
    pub(crate) cite: Cite,
}

/// Rate-limits a detector: quiet for a cooldown after firing, unless the value escalates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Gate {
    last_ms: i64,
    last_value: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            last_ms: i64::MIN,
            last_value: 0.0,
        }
    }
}

impl Gate {
    fn open(&self, value: f64, now_ms: i64, cooldown_ms: i64, escalation: f64) -> bool {
        self.last_ms == i64::MIN
            || now_ms.saturating_sub(self.last_ms) >= cooldown_ms
            || value >= self.last_value * escalation
    }

    fn fire(&mut self, value: f64, now_ms: i64) {
        self.last_ms = now_ms;
        self.last_value = value;
    }
}

pub(crate) fn new_service(
    config: &NoveltyConfig,
    baseline: &Baseline,
    service_key: u64,
    service: &str,
) -> Option<Finding> {
    if !config.enabled || baseline.services.contains(service_key) {
        return None;
    }
    Some(Finding {
        detector: DetectorKind::NewService,
        severity: config.severity,
        summary: format!(
            "first call to service `{service}` (the identity used {} services before)",
            baseline.services.len()
        ),
        cite: Cite::Current,
    })
}

pub(crate) fn new_operation(
    config: &NewOperationConfig,
    baseline: &Baseline,
    operation_key: u64,
    service_is_new: bool,
    service_new_since_ms: Option<i64>,
    now_ms: i64,
    name: (&str, &str),
) -> Option<Finding> {
    if !config.enabled || service_is_new || baseline.operations.contains(operation_key) {
        return None;
    }
    let under_new_service = service_new_since_ms
        .is_some_and(|since| now_ms.saturating_sub(since) < config.new_service_grace_ms);
    let severity = if under_new_service {
        config.under_new_service_severity
    } else {
        config.severity
    };
    Some(Finding {
        detector: DetectorKind::NewOperation,
        severity,
        summary: format!(
            "first call to operation `{}:{}` (the identity used {} operations before)",
            name.0,
            name.1,
            baseline.operations.len()
        ),
        cite: Cite::Current,
    })
}

pub(crate) fn off_hours(
    config: &OffHoursConfig,
    baseline: &Baseline,
    now_ms: i64,
    gate: &mut Gate,
) -> Option<Finding> {
    if !config.enabled {
        return None;
    }
    let hour = hour_of_week(now_ms);
    let (mass, total) = baseline
        .hour_profile
        .mass_around(hour, config.neighbour_hours);
    if total < config.min_mass || mass >= config.max_share * total {
        return None;
    }
    if !gate.open(0.0, now_ms, config.cooldown_ms, f64::INFINITY) {
        return None;
    }
    gate.fire(0.0, now_ms);
    let day = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ]
    .get(hour / 24)
    .copied()
    .unwrap_or("?");
    Some(Finding {
        detector: DetectorKind::OffHours,
        severity: config.severity,
        summary: format!(
            "activity on {day} {:02}:00 UTC, when the identity is normally silent ({:.2}% of its activity within ±{} h, threshold {:.2}%)",
            hour % 24,
            100.0 * mass / total,
            config.neighbour_hours,
            100.0 * config.max_share
        ),
        cite: Cite::Current,
    })
}

/// Shared by `rate_spike` and `bytes_spike`: `value` is the sliding-minute sum.
pub(crate) fn spike(
    rule: SpikeRule,
    detector: DetectorKind,
    value: f64,
    learned_peak: f64,
    now_ms: i64,
    gate: &mut Gate,
) -> Option<Finding> {
    if !rule.enabled {
        return None;
    }
    let threshold = spike_threshold(rule, learned_peak);
    if value < threshold || !gate.open(value, now_ms, rule.cooldown_ms, rule.escalation) {
        return None;
    }
    gate.fire(value, now_ms);
    let severity = if value >= threshold * rule.critical_ratio {
        Severity::Critical
    } else {
        rule.severity
    };
    let what = if detector == DetectorKind::BytesSpike {
        "response bytes"
    } else {
        "calls"
    };
    Some(Finding {
        detector,
        severity,
        summary: format!(
            "{value:.0} {what} in the last minute, {:.1}× the learned peak minute of {learned_peak:.0} (threshold {threshold:.0})",
            value / learned_peak.max(1.0)
        ),
        cite: Cite::Recent,
    })
}

/// The value at which a spike detector fires.
pub(crate) fn spike_threshold(rule: SpikeRule, learned_peak: f64) -> f64 {
    (rule.multiplier * learned_peak).max(rule.min_per_minute)
}

pub(crate) fn deny_burst(
    config: &DenyBurstConfig,
    baseline: &Baseline,
    calls: f64,
    denies: f64,
    now_ms: i64,
    gate: &mut Gate,
) -> Option<Finding> {
    if !config.enabled || denies < config.min_denies {
        return None;
    }
    let fraction = denies / calls.max(1.0);
    let required = (baseline.deny_ratio + config.min_excess_ratio).min(0.95);
    if fraction < required || !gate.open(denies, now_ms, config.cooldown_ms, config.escalation) {
        return None;
    }
    gate.fire(denies, now_ms);
    let severity = if denies >= config.min_denies * config.critical_ratio {
        Severity::Critical
    } else {
        config.severity
    };
    Some(Finding {
        detector: DetectorKind::DenyBurst,
        severity,
        summary: format!(
            "{denies:.0} denied calls in {} s ({:.0}% of calls; learned deny ratio {:.1}%)",
            config.window_ms / 1000,
            100.0 * fraction,
            100.0 * baseline.deny_ratio
        ),
        cite: Cite::RecentDenied,
    })
}

pub(crate) fn approval_flood(
    config: &ApprovalFloodConfig,
    baseline: &Baseline,
    calls: f64,
    approvals: f64,
    now_ms: i64,
    gate: &mut Gate,
) -> Option<Finding> {
    if !config.enabled || approvals < config.min_approvals {
        return None;
    }
    let expected = baseline.approval_ratio * calls;
    if approvals < config.multiplier * expected
        || !gate.open(approvals, now_ms, config.cooldown_ms, 2.0)
    {
        return None;
    }
    gate.fire(approvals, now_ms);
    Some(Finding {
        detector: DetectorKind::ApprovalFlood,
        severity: config.severity,
        summary: format!(
            "{approvals:.0} approval requests in the window, {expected:.1} expected from the learned ratio"
        ),
        cite: Cite::RecentApprovals,
    })
}

pub(crate) fn new_network(
    config: &NewNetworkConfig,
    baseline: &Baseline,
    network: NetworkKey,
) -> Option<Finding> {
    if !config.enabled || baseline.networks.contains(network.as_u64()) {
        return None;
    }
    let known = baseline.networks.len();
    let severity = if known >= config.many_networks {
        Severity::Info
    } else {
        config.severity
    };
    Some(Finding {
        detector: DetectorKind::NewNetwork,
        severity,
        summary: format!(
            "first call from network {network} (the identity used {known} networks before)"
        ),
        cite: Cite::Current,
    })
}

/// Where a credential was last used from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sighting {
    pub(crate) credential: u64,
    pub(crate) network: NetworkKey,
    pub(crate) last_ms: i64,
    /// A concurrent-use alert already cited this credential on this network.
    pub(crate) flagged: bool,
}

pub(crate) fn concurrent_credential(
    config: &ConcurrentCredentialConfig,
    baseline: &Baseline,
    sightings: &[Sighting],
    credential: u64,
    network: NetworkKey,
    now_ms: i64,
    gate: &mut Gate,
) -> Option<Finding> {
    if !config.enabled {
        return None;
    }
    let established = |n: NetworkKey| {
        baseline
            .networks
            .get(n.as_u64())
            .is_some_and(|e| e.count >= config.established_min_calls)
    };
    let already_flagged = sightings
        .iter()
        .any(|s| s.credential == credential && s.network == network && s.flagged);
    if already_flagged {
        return None;
    }
    let other = sightings.iter().filter(|s| {
        s.credential == credential
            && s.network != network
            && !s.flagged
            && now_ms.saturating_sub(s.last_ms) <= config.window_ms
            && !(established(s.network) && established(network))
    });
    let other = other.max_by_key(|s| s.last_ms)?;
    if !gate.open(0.0, now_ms, config.cooldown_ms, f64::INFINITY) {
        return None;
    }
    gate.fire(0.0, now_ms);
    let gap_s = now_ms.saturating_sub(other.last_ms) / 1000;
    Some(Finding {
        detector: DetectorKind::ConcurrentCredential,
        severity: config.severity,
        summary: format!(
            "one credential used from {network} and from {} within {gap_s} s",
            other.network
        ),
        cite: Cite::CurrentAnd {
            at_ms: other.last_ms,
            description: format!("same credential, last call from {}", other.network),
        },
    })
}

#[cfg(test)]
mod tests {
    //! One behavioural test per detector, through the public [`Monitor`] API, plus a test
    //! that the same traffic does not fire (so each test can fail).
    use std::net::IpAddr;

    use crate::alert::{DetectorKind, Severity};
    use crate::config::MonitorConfig;
    use crate::event::{CallEvent, Outcome};
    use crate::monitor::{Monitor, Observation};

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    /// 2024-01-01, a Monday, 00:00 UTC.
    const MONDAY: i64 = 1_704_067_200_000;

    fn call(at_ms: i64, op: &str, ip: &str, outcome: Outcome, bytes: u64) -> CallEvent {
        let (service, operation) = op.split_once(':').unwrap();
        CallEvent {
            request_id: Some(format!("req-{at_ms}")),
            identity_id: "idn_bot".into(),
            credential_id: "key_1".into(),
            service: service.into(),
            operation: operation.into(),
            source_ip: Some(ip.parse::<IpAddr>().unwrap()),
            outcome,
            response_bytes: bytes,
            at_ms,
        }
    }

    /// A business-hours bot: weekdays 09:00–17:00, one call every 2 minutes, two services,
    /// 4 KiB responses, 2% denies, from one network, for `weeks` weeks. Returns the monitor
    /// and the first instant after training.
    fn trained(weeks: i64) -> (Monitor, i64) {
        let monitor = Monitor::new(MonitorConfig::default()).unwrap();
        let ops = [
            "github:repos.get",
            "github:issues.list",
            "github:issues.create",
            "jira:issue.get",
        ];
        let mut n = 0u64;
        for day in 0..weeks * 7 {
            if day % 7 >= 5 {
                continue;
            }
            let mut t = MONDAY + day * DAY + 9 * HOUR;
            while t < MONDAY + day * DAY + 17 * HOUR {
                n += 1;
                let op = ops[(n % 4) as usize];
                let outcome = if n.is_multiple_of(50) {
                    Outcome::Denied
                } else {
                    Outcome::Allowed
                };
                let obs = monitor.observe(&call(t, op, "198.51.100.20", outcome, 4096));
                assert!(obs.alerts.is_empty(), "training raised {:?}", obs.alerts);
                t += 2 * MIN;
            }
        }
        (monitor, MONDAY + weeks * 7 * DAY)
    }

    fn fired(obs: &Observation, detector: DetectorKind) -> bool {
        obs.alerts.iter().any(|a| a.detector == detector)
    }

    /// Tuesday 10:00 of the week after training: a normal working hour.
    fn work_hour(after: i64) -> i64 {
        after + DAY + 10 * HOUR
    }

    #[test]
    fn normal_traffic_after_learning_raises_nothing() {
        let (monitor, after) = trained(3);
        let t = work_hour(after);
        for i in 0..60 {
            let obs = monitor.observe(&call(
                t + i * 2 * MIN,
                "github:repos.get",
                "198.51.100.9",
                Outcome::Allowed,
                4000,
            ));
            assert!(obs.alerts.is_empty(), "{:?}", obs.alerts);
            assert_eq!(obs.risk_score, 0);
            assert!(obs.breaker.is_none());
        }
    }

    #[test]
    fn learning_period_only_observes() {
        let monitor = Monitor::new(MonitorConfig::default()).unwrap();
        // Wild behaviour on day one: new services every call, bursts, denies, night, many networks.
        for i in 0..500 {
            let ev = call(
                MONDAY + 3 * HOUR + i * 100,
                &format!("svc{i}:op"),
                &format!("10.0.{}.1", i % 200),
                Outcome::Denied,
                50_000_000,
            );
            let obs = monitor.observe(&ev);
            assert!(obs.learning);
            assert!(obs.alerts.is_empty() && obs.breaker.is_none());
        }
        assert!(monitor.is_learning("idn_bot", MONDAY + DAY));
        assert!(!monitor.is_learning("idn_bot", MONDAY + 8 * DAY));
    }

    #[test]
    fn new_service_and_new_operation() {
        let (monitor, after) = trained(2);
        let t = work_hour(after);
        let obs = monitor.observe(&call(
            t,
            "github:repos.delete",
            "198.51.100.20",
            Outcome::Allowed,
            10,
        ));
        assert!(fired(&obs, DetectorKind::NewOperation));
        assert_eq!(obs.alerts[0].severity, Severity::Low);
        let obs = monitor.observe(&call(
            t + MIN,
            "github:repos.delete",
            "198.51.100.20",
            Outcome::Allowed,
            10,
        ));
        assert!(obs.alerts.is_empty(), "learned after first sight");
        let obs = monitor.observe(&call(
            t + 2 * MIN,
            "vault:secrets.read",
            "198.51.100.20",
            Outcome::Allowed,
            10,
        ));
        assert!(fired(&obs, DetectorKind::NewService));
        assert!(
            !fired(&obs, DetectorKind::NewOperation),
            "the new-service alert covers its first operation"
        );
        // A second operation of the just-discovered service only rates info.
        let obs = monitor.observe(&call(
            t + 3 * MIN,
            "vault:secrets.list",
            "198.51.100.20",
            Outcome::Allowed,
            10,
        ));
        assert_eq!(obs.alerts.len(), 1);
        assert_eq!(
            (obs.alerts[0].detector, obs.alerts[0].severity),
            (DetectorKind::NewOperation, Severity::Info)
        );
        assert_eq!(
            obs.alerts[0].evidence[0].request_id.as_deref(),
            Some(format!("req-{}", t + 3 * MIN).as_str())
        );
    }

    #[test]
    fn off_hours() {
        let (monitor, after) = trained(2);
        // Wednesday 03:00.
        let night = after + 2 * DAY + 3 * HOUR;
        let obs = monitor.observe(&call(
            night,
            "github:repos.get",
            "198.51.100.20",
            Outcome::Allowed,
            4096,
        ));
        assert!(fired(&obs, DetectorKind::OffHours), "{:?}", obs.alerts);
        assert!(obs.alerts[0].summary.contains("Wednesday 03:00"));
        // Cooldown: the next call in the same hour does not repeat the alert.
        let obs = monitor.observe(&call(
            night + MIN,
            "github:repos.get",
            "198.51.100.20",
            Outcome::Allowed,
            4096,
        ));
        assert!(!fired(&obs, DetectorKind::OffHours));
        // The edge of the working day is not off-hours (neighbouring hours are active).
        let obs = monitor.observe(&call(
            work_hour(after) + 7 * HOUR + 30 * MIN,
            "github:repos.get",
            "198.51.100.20",
            Outcome::Allowed,
            4096,
        ));
        assert!(!fired(&obs, DetectorKind::OffHours), "{:?}", obs.alerts);
    }

    #[test]
    fn rate_spike() {
        let (monitor, after) = trained(2);
        let t = work_hour(after);
        let mut first = None;
        let mut critical = false;
        for i in 0..600 {
            let obs = monitor.observe(&call(
                t + i * 100,
                "github:repos.get",
                "198.51.100.20",
                Outcome::Allowed,
                100,
            ));
            if fired(&obs, DetectorKind::RateSpike) && first.is_none() {
                first = Some(i);
            }
            critical |= obs
                .alerts
                .iter()
                .any(|a| a.detector == DetectorKind::RateSpike && a.severity == Severity::Critical);
        }
        // The learned peak is 1 call per minute, so the 30-call floor decides.
        let first = first.expect("rate spike not detected");
        assert!((29..=31).contains(&first), "fired at call {first}");
        assert!(critical, "600 calls a minute is 20x the threshold");
    }

    #[test]
    fn bytes_spike() {
        let (monitor, after) = trained(2);
        let t = work_hour(after);
        let mut detections = Vec::new();
        for i in 0..20 {
            let obs = monitor.observe(&call(
                t + i * 3000,
                "github:repos.get",
                "198.51.100.20",
                Outcome::Allowed,
                4 * 1024 * 1024,
            ));
            if let Some(a) = obs
                .alerts
                .iter()
                .find(|a| a.detector == DetectorKind::BytesSpike)
            {
                detections.push((i, a.severity, a.evidence.len()));
            }
        }
        // 16 MiB floor: the 4th 4-MiB response crosses it; escalation fires again at 32 MiB.
        assert_eq!(detections.first().map(|d| d.0), Some(3), "{detections:?}");
        assert_eq!(detections.first().map(|d| d.1), Some(Severity::High));
        assert!(detections.len() >= 2, "{detections:?}");
        assert!(detections[0].2 >= 4, "evidence cites the recent calls");
    }

    #[test]
    fn deny_burst() {
        let (monitor, after) = trained(2);
        let t = work_hour(after);
        let mut first = None;
        for i in 0..40 {
            let obs = monitor.observe(&call(
                t + i * 2000,
                &format!("github:admin.op{}", i % 3),
                "198.51.100.20",
                Outcome::Denied,
                0,
            ));
            if let Some(a) = obs
                .alerts
                .iter()
                .find(|a| a.detector == DetectorKind::DenyBurst)
            {
                first.get_or_insert((
                    i,
                    a.evidence.iter().all(|e| e.description.contains("denied")),
                ));
            }
        }
        assert_eq!(first, Some((9, true)));
    }

    #[test]
    fn deny_burst_ignores_scattered_denies() {
        let (monitor, after) = trained(2);
        let t = work_hour(after);
        for i in 0..200 {
            let outcome = if i % 5 == 0 {
                Outcome::Denied
            } else {
                Outcome::Allowed
            };
            let obs = monitor.observe(&call(
                t + i * 1500,
                "github:repos.get",
                "198.51.100.20",
                outcome,
                100,
            ));
            assert!(!fired(&obs, DetectorKind::DenyBurst));
        }
    }

    #[test]
    fn new_network_and_concurrent_credential() {
        let (monitor, after) = trained(2);
        let t = work_hour(after);
        monitor.observe(&call(
            t,
            "github:repos.get",
            "198.51.100.20",
            Outcome::Allowed,
            10,
        ));
        let obs = monitor.observe(&call(
            t + 30_000,
            "github:repos.get",
            "203.0.113.66",
            Outcome::Allowed,
            10,
        ));
        assert!(fired(&obs, DetectorKind::NewNetwork));
        assert!(
            fired(&obs, DetectorKind::ConcurrentCredential),
            "{:?}",
            obs.alerts
        );
        let concurrent = obs
            .alerts
            .iter()
            .find(|a| a.detector == DetectorKind::ConcurrentCredential)
            .unwrap();
        assert_eq!(concurrent.evidence.len(), 2);
        assert!(concurrent.summary.contains("198.51.100.0/24"));
        // Same network, another host: nothing.
        let obs = monitor.observe(&call(
            t + 60_000,
            "github:repos.get",
            "203.0.113.67",
            Outcome::Allowed,
            10,
        ));
        assert!(obs.alerts.is_empty(), "{:?}", obs.alerts);
        // After the cooldown the same pair is not cited again (no compounding on one finding)...
        monitor.observe(&call(
            t + 20 * MIN,
            "github:repos.get",
            "198.51.100.20",
            Outcome::Allowed,
            10,
        ));
        let obs = monitor.observe(&call(
            t + 21 * MIN,
            "github:repos.get",
            "203.0.113.66",
            Outcome::Allowed,
            10,
        ));
        assert!(
            !fired(&obs, DetectorKind::ConcurrentCredential),
            "{:?}",
            obs.alerts
        );
        // ...but a further network is.
        let obs = monitor.observe(&call(
            t + 22 * MIN,
            "github:repos.get",
            "192.0.2.7",
            Outcome::Allowed,
            10,
        ));
        assert!(
            fired(&obs, DetectorKind::ConcurrentCredential),
            "{:?}",
            obs.alerts
        );
    }

    #[test]
    fn two_established_networks_in_parallel_are_normal() {
        let monitor = Monitor::new(MonitorConfig::default()).unwrap();
        for i in 0..(9 * 24 * 60) {
            let ip = if i % 2 == 0 {
                "192.0.2.10"
            } else {
                "198.51.100.10"
            };
            let obs = monitor.observe(&call(
                MONDAY + i * MIN,
                "ci:build.run",
                ip,
                Outcome::Allowed,
                1000,
            ));
            if i > 8 * 24 * 60 {
                assert!(obs.alerts.is_empty(), "{:?}", obs.alerts);
            }
        }
    }

    #[test]
    fn approval_flood() {
        let (monitor, after) = trained(2);
        let t = work_hour(after);
        let mut first = None;
        for i in 0..30 {
            let obs = monitor.observe(&call(
                t + i * 5000,
                "github:issues.create",
                "198.51.100.20",
                Outcome::ApprovalRequired,
                0,
            ));
            if fired(&obs, DetectorKind::ApprovalFlood) {
                first.get_or_insert(i);
            }
        }
        assert_eq!(first, Some(7));
    }
}
