//! Alerts: which detector fired for which identity, how severe it is, and the calls concerned.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How serious a finding is. Each severity adds a configurable number of risk points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth recording; barely moves the score.
    Info,
    /// Mildly unusual.
    Low,
    /// Unusual; a few together are suspicious.
    Medium,
    /// Suspicious on its own.
    High,
    /// Trips the circuit breaker when `breaker.on_critical` is set.
    Critical,
}

impl Severity {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The detectors. Their rules are documented in [`crate::detect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// A service the identity has never called.
    NewService,
    /// An operation the identity has never called.
    NewOperation,
    /// Activity in an hour of the week in which the identity is normally silent.
    OffHours,
    /// Call rate far above the identity's own learned peak.
    RateSpike,
    /// Many denied calls in a short window (probing for permissions).
    DenyBurst,
    /// Response bytes far above the identity's own learned peak (exfiltration).
    BytesSpike,
    /// A source network the identity has never used.
    NewNetwork,
    /// One credential used from two networks within a short window.
    ConcurrentCredential,
    /// Many approval requests in a short window.
    ApprovalFlood,
}

impl DetectorKind {
    /// Every detector, in documentation order.
    pub const ALL: [Self; 9] = [
        Self::NewService,
        Self::NewOperation,
        Self::OffHours,
        Self::RateSpike,
        Self::DenyBurst,
        Self::BytesSpike,
        Self::NewNetwork,
        Self::ConcurrentCredential,
        Self::ApprovalFlood,
    ];

    /// The snake_case name used in config, storage and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewService => "new_service",
            Self::NewOperation => "new_operation",
            Self::OffHours => "off_hours",
            Self::RateSpike => "rate_spike",
            Self::DenyBurst => "deny_burst",
            Self::BytesSpike => "bytes_spike",
            Self::NewNetwork => "new_network",
            Self::ConcurrentCredential => "concurrent_credential",
            Self::ApprovalFlood => "approval_flood",
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call cited as evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// The request id, when the gateway supplied one.
    pub request_id: Option<String>,
    /// When the call happened (ms since the Unix epoch).
    pub at_ms: i64,
    /// A short description, e.g. ``github:repos.get` denied, 512 B, from 203.0.113.0/24``.
    pub description: String,
}

/// A detector finding about one identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The identity concerned.
    pub identity_id: String,
    /// Which detector fired.
    pub detector: DetectorKind,
    /// How serious the finding is.
    pub severity: Severity,
    /// One line stating the rule that fired, with the measured and threshold values.
    pub summary: String,
    /// The calls concerned, newest first (at most 8).
    pub evidence: Vec<Evidence>,
    /// The identity's risk score (0–100) after this alert was counted.
    pub score: u8,
    /// When the alert was raised (the time of the call that raised it).
    pub at_ms: i64,
}
