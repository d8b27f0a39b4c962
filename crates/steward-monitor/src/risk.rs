//! The risk score: 0–100 per identity, raised by alerts and halving every half-life.
//!
//! Updating it is O(1): the score is stored with the time it was last touched and decayed
//! on read, `score(t) = min(100, score(t0) · 2^-((t - t0) / half_life))`.

use serde::{Deserialize, Serialize};

use crate::baseline::decay_factor;

/// A decaying risk score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RiskScore {
    value: f64,
    updated_ms: i64,
}

impl RiskScore {
    /// The score at `now_ms` as a float in [0, 100].
    pub fn value_at(&self, now_ms: i64, half_life_ms: i64) -> f64 {
        (self.value * decay_factor(now_ms - self.updated_ms, half_life_ms)).clamp(0.0, 100.0)
    }

    /// The score at `now_ms`, rounded to 0–100.
    pub fn at(&self, now_ms: i64, half_life_ms: i64) -> u8 {
        self.value_at(now_ms, half_life_ms).round() as u8
    }

    /// Decays to `now_ms` and adds `points` (capped at 100).
    pub fn add(&mut self, points: f64, now_ms: i64, half_life_ms: i64) {
        let current = self.value_at(now_ms, half_life_ms);
        self.value = (current + points.max(0.0)).min(100.0);
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    /// Sets the score to zero (after a human reinstated the identity).
    pub fn reset(&mut self, now_ms: i64) {
        self.value = 0.0;
        self.updated_ms = now_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_caps_and_decays() {
        let mut risk = RiskScore::default();
        risk.add(40.0, 1_000, 60_000);
        assert_eq!(risk.at(1_000, 60_000), 40);
        assert_eq!(risk.at(61_000, 60_000), 20);
        risk.add(90.0, 61_000, 60_000);
        assert_eq!(risk.at(61_000, 60_000), 100);
        assert_eq!(risk.at(181_000, 60_000), 25);
        risk.reset(181_000);
        assert_eq!(risk.at(181_000, 60_000), 0);
    }
}
