//! Monitor configuration: every threshold, with serde defaults, and its validation.
//!
//! All durations are in milliseconds. Every struct accepts a partial document: missing
//! fields take the defaults below, unknown fields are rejected.

use serde::{Deserialize, Serialize};

use crate::alert::{DetectorKind, Severity};
use crate::error::MonitorError;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Hard caps on the bounded sets, so that a baseline always stays under about 16 KiB.
pub const MAX_OPERATIONS_LIMIT: usize = 640;
/// Hard cap on `baseline.max_services`.
pub const MAX_SERVICES_LIMIT: usize = 128;
/// Hard cap on `baseline.max_networks`.
pub const MAX_NETWORKS_LIMIT: usize = 128;

/// The whole monitor configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// The learning period during which an identity is only observed.
    pub learning: LearningConfig,
    /// Sizes and memory of the baseline.
    pub baseline: BaselineConfig,
    /// How alerts turn into a risk score.
    pub risk: RiskConfig,
    /// When the circuit breaker suspends an identity.
    pub breaker: BreakerConfig,
    /// Never-seen service.
    pub new_service: NoveltyConfig,
    /// Never-seen operation.
    pub new_operation: NewOperationConfig,
    /// Activity in normally silent hours.
    pub off_hours: OffHoursConfig,
    /// Request-rate spike.
    pub rate_spike: RateSpikeConfig,
    /// Response-bytes spike.
    pub bytes_spike: BytesSpikeConfig,
    /// Deny burst.
    pub deny_burst: DenyBurstConfig,
    /// Never-seen source network.
    pub new_network: NewNetworkConfig,
    /// One credential from two networks at once.
    pub concurrent_credential: ConcurrentCredentialConfig,
    /// Approval flood.
    pub approval_flood: ApprovalFloodConfig,
}

/// The learning period: an identity is only observed until both limits are passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LearningConfig {
    /// Minimum time since the identity's first call.
    pub period_ms: i64,
    /// Minimum number of calls observed.
    pub min_calls: u64,
}

impl Default for LearningConfig {
    fn default() -> Self {
        Self {
            period_ms: 7 * DAY_MS,
            min_calls: 100,
        }
    }
}

/// Sizes and memory of the per-identity baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    /// Operations remembered; the least recently used is forgotten beyond this.
    pub max_operations: usize,
    /// Services remembered.
    pub max_services: usize,
    /// Source networks remembered.
    pub max_networks: usize,
    /// Half-life of the hour-of-week activity profile, in days.
    pub profile_half_life_days: f64,
    /// Half-life of the learned per-minute peaks (calls and bytes).
    pub peak_half_life_ms: i64,
    /// Smoothing factor of the per-call EWMAs (deny ratio, approval ratio, bytes per call).
    pub call_alpha: f64,
    /// Smoothing factor of the per-active-minute EWMAs (calls and bytes per minute).
    pub minute_alpha: f64,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            max_operations: 512,
            max_services: 64,
            max_networks: 64,
            profile_half_life_days: 28.0,
            peak_half_life_ms: 14 * DAY_MS,
            call_alpha: 0.002,
            minute_alpha: 0.05,
        }
    }
}

/// Risk points per severity and how fast the score decays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// The score halves every `half_life_ms` without new alerts.
    pub half_life_ms: i64,
    /// Points added by an `info` alert.
    pub info_points: f64,
    /// Points added by a `low` alert.
    pub low_points: f64,
    /// Points added by a `medium` alert.
    pub medium_points: f64,
    /// Points added by a `high` alert.
    pub high_points: f64,
    /// Points added by a `critical` alert.
    pub critical_points: f64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            half_life_ms: HOUR_MS,
            info_points: 2.0,
            low_points: 8.0,
            medium_points: 25.0,
            high_points: 40.0,
            critical_points: 90.0,
        }
    }
}

impl RiskConfig {
    /// The points an alert of `severity` adds.
    pub fn points(&self, severity: Severity) -> f64 {
        match severity {
            Severity::Info => self.info_points,
            Severity::Low => self.low_points,
            Severity::Medium => self.medium_points,
            Severity::High => self.high_points,
            Severity::Critical => self.critical_points,
        }
    }
}

/// Circuit-breaker rules. Any rule that matches suspends the identity (or, in observe-only
/// mode, reports that it would have).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Master switch; when off the monitor never proposes a suspension.
    pub enabled: bool,
    /// Suspend when the risk score reaches this value (0–100).
    pub score_at_least: u8,
    /// Suspend on any alert of `critical` severity.
    pub on_critical: bool,
    /// Suspend on any alert from these detectors, whatever its severity.
    pub on_detectors: Vec<DetectorKind>,
    /// After tripping, the breaker re-arms only once the score has fallen below this value
    /// (or the identity is reinstated).
    pub rearm_below: u8,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            score_at_least: 90,
            on_critical: true,
            on_detectors: Vec::new(),
            rearm_below: 40,
        }
    }
}

/// A detector that fires on something never seen before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoveltyConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
}

impl Default for NoveltyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Medium,
        }
    }
}

/// The never-seen-operation detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewOperationConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Severity of a new operation of a known service.
    pub severity: Severity,
    /// Severity of a new operation of a service first seen less than `new_service_grace_ms`
    /// ago (the new-service alert already covered it).
    pub under_new_service_severity: Severity,
    /// See `under_new_service_severity`.
    pub new_service_grace_ms: i64,
}

impl Default for NewOperationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Low,
            under_new_service_severity: Severity::Info,
            new_service_grace_ms: HOUR_MS,
        }
    }
}

/// The off-hours detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OffHoursConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// An hour is silent when it and its neighbours hold less than this share of the
    /// identity's (decayed) activity.
    pub max_share: f64,
    /// How many neighbouring hours on each side count with the hour itself.
    pub neighbour_hours: usize,
    /// No opinion until the profile holds at least this much (decayed) activity.
    pub min_mass: f64,
    /// At most one alert per identity per this interval.
    pub cooldown_ms: i64,
}

impl Default for OffHoursConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Medium,
            max_share: 0.002,
            neighbour_hours: 1,
            min_mass: 100.0,
            cooldown_ms: HOUR_MS,
        }
    }
}

/// Declares a spike-detector config type; the two spike detectors share fields but not
/// defaults, and serde fills a partial document from the type's own `Default`.
macro_rules! spike_config {
    ($(#[$doc:meta])* $name:ident, $min_per_minute:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            /// Whether the detector runs.
            pub enabled: bool,
            /// Severity of its alerts below `critical_ratio`.
            pub severity: Severity,
            /// Fire when the last minute's sum exceeds `multiplier` × the learned peak minute.
            pub multiplier: f64,
            /// ...and at least this absolute amount.
            pub min_per_minute: f64,
            /// At `critical_ratio` × the threshold the alert is `critical`.
            pub critical_ratio: f64,
            /// Quiet period after an alert, unless the value grows by `escalation` × meanwhile.
            pub cooldown_ms: i64,
            /// See `cooldown_ms`.
            pub escalation: f64,
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    enabled: true,
                    severity: Severity::High,
                    multiplier: 4.0,
                    min_per_minute: $min_per_minute,
                    critical_ratio: 4.0,
                    cooldown_ms: 5 * MINUTE_MS,
                    escalation: 2.0,
                }
            }
        }

        impl $name {
            pub(crate) fn rule(&self) -> SpikeRule {
                SpikeRule {
                    enabled: self.enabled,
                    severity: self.severity,
                    multiplier: self.multiplier,
                    min_per_minute: self.min_per_minute,
                    critical_ratio: self.critical_ratio,
                    cooldown_ms: self.cooldown_ms,
                    escalation: self.escalation,
                }
            }
        }
    };
}

spike_config!(
    /// The rate-spike detector: calls in the last minute against the learned peak minute.
    RateSpikeConfig,
    30.0
);

spike_config!(
    /// The bytes-spike detector: response bytes in the last minute against the learned peak
    /// minute. `min_per_minute` is in bytes (default 16 MiB).
    BytesSpikeConfig,
    16.0 * 1024.0 * 1024.0
);

/// The shared shape of both spike configs, as the detector uses it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpikeRule {
    pub(crate) enabled: bool,
    pub(crate) severity: Severity,
    pub(crate) multiplier: f64,
    pub(crate) min_per_minute: f64,
    pub(crate) critical_ratio: f64,
    pub(crate) cooldown_ms: i64,
    pub(crate) escalation: f64,
}

/// The deny-burst detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DenyBurstConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Severity of its alerts below `critical_ratio`.
    pub severity: Severity,
    /// Length of the sliding window.
    pub window_ms: i64,
    /// Minimum denied calls in the window.
    pub min_denies: f64,
    /// The window's deny fraction must exceed the learned deny ratio by this much.
    pub min_excess_ratio: f64,
    /// At `critical_ratio` × `min_denies` the alert is `critical`.
    pub critical_ratio: f64,
    /// Quiet period after an alert, unless the count grows by `escalation` × meanwhile.
    pub cooldown_ms: i64,
    /// See `cooldown_ms`.
    pub escalation: f64,
}

impl Default for DenyBurstConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::High,
            window_ms: 5 * MINUTE_MS,
            min_denies: 10.0,
            min_excess_ratio: 0.4,
            critical_ratio: 4.0,
            cooldown_ms: 5 * MINUTE_MS,
            escalation: 2.0,
        }
    }
}

/// The new-network detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewNetworkConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Identities that already use this many networks (e.g. serverless egress) only get
    /// `info` alerts: a new network is normal for them.
    pub many_networks: usize,
}

impl Default for NewNetworkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Medium,
            many_networks: 24,
        }
    }
}

/// The one-credential-two-networks detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConcurrentCredentialConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Two uses closer than this count as simultaneous.
    pub window_ms: i64,
    /// Networks with at least this many calls in the baseline are established; two
    /// established networks in parallel (e.g. several runners) do not fire.
    pub established_min_calls: u32,
    /// At most one alert per identity per this interval.
    pub cooldown_ms: i64,
}

impl Default for ConcurrentCredentialConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::High,
            window_ms: 5 * MINUTE_MS,
            established_min_calls: 20,
            cooldown_ms: 15 * MINUTE_MS,
        }
    }
}

/// The approval-flood detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApprovalFloodConfig {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Severity of its alerts.
    pub severity: Severity,
    /// Length of the sliding window (shared with the deny burst: `deny_burst.window_ms`).
    pub min_approvals: f64,
    /// Fire when approvals exceed `multiplier` × the number the learned approval ratio predicts.
    pub multiplier: f64,
    /// At most one alert per identity per this interval, unless the count doubles.
    pub cooldown_ms: i64,
}

impl Default for ApprovalFloodConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            severity: Severity::Medium,
            min_approvals: 8.0,
            multiplier: 4.0,
            cooldown_ms: 10 * MINUTE_MS,
        }
    }
}

fn bad(field: &'static str, problem: &'static str) -> MonitorError {
    MonitorError::InvalidConfig { field, problem }
}

fn positive(value: f64, field: &'static str) -> Result<(), MonitorError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(bad(field, "must be a positive number"))
    }
}

fn positive_ms(value: i64, field: &'static str) -> Result<(), MonitorError> {
    if value > 0 {
        Ok(())
    } else {
        Err(bad(field, "must be a positive duration"))
    }
}

impl MonitorConfig {
    /// Checks every value is in range; invalid configuration is refused, never guessed.
    pub fn validate(&self) -> Result<(), MonitorError> {
        if self.learning.period_ms < 0 {
            return Err(bad("learning.period_ms", "must not be negative"));
        }
        let b = &self.baseline;
        if b.max_operations == 0 || b.max_operations > MAX_OPERATIONS_LIMIT {
            return Err(bad("baseline.max_operations", "must be between 1 and 640"));
        }
        if b.max_services == 0 || b.max_services > MAX_SERVICES_LIMIT {
            return Err(bad("baseline.max_services", "must be between 1 and 128"));
        }
        if b.max_networks == 0 || b.max_networks > MAX_NETWORKS_LIMIT {
            return Err(bad("baseline.max_networks", "must be between 1 and 128"));
        }
        positive(b.profile_half_life_days, "baseline.profile_half_life_days")?;
        positive_ms(b.peak_half_life_ms, "baseline.peak_half_life_ms")?;
        for (alpha, field) in [
            (b.call_alpha, "baseline.call_alpha"),
            (b.minute_alpha, "baseline.minute_alpha"),
        ] {
            if !(alpha > 0.0 && alpha <= 1.0) {
                return Err(bad(field, "must be in (0, 1]"));
            }
        }
        positive_ms(self.risk.half_life_ms, "risk.half_life_ms")?;
        for (points, field) in [
            (self.risk.info_points, "risk.info_points"),
            (self.risk.low_points, "risk.low_points"),
            (self.risk.medium_points, "risk.medium_points"),
            (self.risk.high_points, "risk.high_points"),
            (self.risk.critical_points, "risk.critical_points"),
        ] {
            if !(points.is_finite() && (0.0..=100.0).contains(&points)) {
                return Err(bad(field, "must be between 0 and 100"));
            }
        }
        if self.breaker.score_at_least > 100 {
            return Err(bad("breaker.score_at_least", "must be between 0 and 100"));
        }
        if self.breaker.rearm_below > self.breaker.score_at_least {
            return Err(bad(
                "breaker.rearm_below",
                "must not exceed `breaker.score_at_least`",
            ));
        }
        positive_ms(
            self.new_operation.new_service_grace_ms,
            "new_operation.new_service_grace_ms",
        )?;
        let o = &self.off_hours;
        if !(o.max_share.is_finite() && (0.0..1.0).contains(&o.max_share)) {
            return Err(bad("off_hours.max_share", "must be in [0, 1)"));
        }
        if o.neighbour_hours > 12 {
            return Err(bad("off_hours.neighbour_hours", "must be at most 12"));
        }
        positive(o.min_mass, "off_hours.min_mass")?;
        positive_ms(o.cooldown_ms, "off_hours.cooldown_ms")?;
        for (s, names) in [
            (
                self.rate_spike.rule(),
                [
                    "rate_spike.multiplier",
                    "rate_spike.min_per_minute",
                    "rate_spike.critical_ratio",
                    "rate_spike.cooldown_ms",
                    "rate_spike.escalation",
                ],
            ),
            (
                self.bytes_spike.rule(),
                [
                    "bytes_spike.multiplier",
                    "bytes_spike.min_per_minute",
                    "bytes_spike.critical_ratio",
                    "bytes_spike.cooldown_ms",
                    "bytes_spike.escalation",
                ],
            ),
        ] {
            let [m, min, crit, cool, esc] = names;
            positive(s.multiplier, m)?;
            positive(s.min_per_minute, min)?;
            if s.critical_ratio.is_nan() || s.critical_ratio < 1.0 {
                return Err(bad(crit, "must be at least 1"));
            }
            positive_ms(s.cooldown_ms, cool)?;
            if s.escalation.is_nan() || s.escalation <= 1.0 {
                return Err(bad(esc, "must be greater than 1"));
            }
        }
        let d = &self.deny_burst;
        positive_ms(d.window_ms, "deny_burst.window_ms")?;
        positive(d.min_denies, "deny_burst.min_denies")?;
        if !(d.min_excess_ratio.is_finite() && (0.0..=1.0).contains(&d.min_excess_ratio)) {
            return Err(bad("deny_burst.min_excess_ratio", "must be in [0, 1]"));
        }
        if d.critical_ratio.is_nan() || d.critical_ratio < 1.0 {
            return Err(bad("deny_burst.critical_ratio", "must be at least 1"));
        }
        positive_ms(d.cooldown_ms, "deny_burst.cooldown_ms")?;
        if d.escalation.is_nan() || d.escalation <= 1.0 {
            return Err(bad("deny_burst.escalation", "must be greater than 1"));
        }
        if self.new_network.many_networks == 0 {
            return Err(bad("new_network.many_networks", "must be at least 1"));
        }
        positive_ms(
            self.concurrent_credential.window_ms,
            "concurrent_credential.window_ms",
        )?;
        positive_ms(
            self.concurrent_credential.cooldown_ms,
            "concurrent_credential.cooldown_ms",
        )?;
        positive(
            self.approval_flood.min_approvals,
            "approval_flood.min_approvals",
        )?;
        positive(self.approval_flood.multiplier, "approval_flood.multiplier")?;
        positive_ms(
            self.approval_flood.cooldown_ms,
            "approval_flood.cooldown_ms",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        MonitorConfig::default().validate().unwrap();
    }

    #[test]
    fn partial_document_takes_defaults_and_unknown_fields_are_refused() {
        let config: MonitorConfig = serde_json::from_str(
            r#"{"rate_spike": {"multiplier": 6.0}, "breaker": {"score_at_least": 80}}"#,
        )
        .unwrap();
        assert_eq!(config.rate_spike.multiplier, 6.0);
        assert_eq!(config.rate_spike.min_per_minute, 30.0);
        assert_eq!(config.breaker.score_at_least, 80);
        assert_eq!(config.learning, LearningConfig::default());
        assert!(
            serde_json::from_str::<MonitorConfig>(r#"{"rate_spike": {"multipler": 6.0}}"#).is_err()
        );
        // A partial spike section keeps that detector's own defaults.
        let config: MonitorConfig =
            serde_json::from_str(r#"{"bytes_spike": {"multiplier": 5.0}}"#).unwrap();
        assert_eq!(
            config.bytes_spike.min_per_minute,
            BytesSpikeConfig::default().min_per_minute
        );
        assert!(config.bytes_spike.min_per_minute > 1e6);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut config = MonitorConfig::default();
        config.baseline.max_operations = 100_000;
        assert!(matches!(
            config.validate(),
            Err(MonitorError::InvalidConfig {
                field: "baseline.max_operations",
                ..
            })
        ));
        let mut config = MonitorConfig::default();
        config.bytes_spike.escalation = 1.0;
        assert!(matches!(
            config.validate(),
            Err(MonitorError::InvalidConfig {
                field: "bytes_spike.escalation",
                ..
            })
        ));
        let mut config = MonitorConfig::default();
        config.breaker.rearm_below = 95;
        assert!(config.validate().is_err());
    }
}
