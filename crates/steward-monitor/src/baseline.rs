//! Per-identity baselines, learned online with bounded memory.
//!
//! A [`Baseline`] holds what an identity normally does:
//! - the services, operations and source networks it uses: sorted sets of stable 64-bit
//!   hashes with a use count and last-use hour, capped (the least recently used entry is
//!   forgotten first), so lookups are a binary search and memory is fixed;
//! - an hour-of-week activity profile: 168 buckets of call counts that decay with a
//!   configurable half-life (decay is applied at most once a day, so it is amortised O(1));
//! - per active minute (a minute with at least one call): EWMA and variance of calls and of
//!   response bytes, plus a slowly decaying peak of each;
//! - per call: EWMAs of the deny ratio and approval ratio, and EWMA/variance of response bytes.
//!
//! With the default caps a baseline takes about 11 KiB ([`Baseline::approx_bytes`]); the hard
//! caps in [`crate::config`] keep it under 16 KiB whatever the configuration.

use serde::{Deserialize, Serialize};

use crate::config::{BaselineConfig, LearningConfig};
use crate::event::Outcome;

/// Hours in a week: the size of the activity profile.
pub const HOURS_PER_WEEK: usize = 168;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The hour of the week (0 = Monday 00:00–01:00 UTC) that `at_ms` falls in.
pub fn hour_of_week(at_ms: i64) -> usize {
    // 1970-01-01 was a Thursday: shift by three days so that bucket 0 is a Monday.
    let hours = at_ms.div_euclid(HOUR_MS) + 72;
    hours.rem_euclid(HOURS_PER_WEEK as i64) as usize
}

fn hour_stamp(at_ms: i64) -> u32 {
    at_ms.div_euclid(HOUR_MS).clamp(0, i64::from(u32::MAX)) as u32
}

/// One remembered key with its use count and last-use hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenEntry {
    /// The stable hash of the item (or the raw network key).
    pub key: u64,
    /// Calls seen with this item (saturating).
    pub count: u32,
    /// Hours since the Unix epoch of the last use.
    pub last_seen_hour: u32,
}

/// A capped set of keys.
// INVARIANT: `entries` is sorted by `key`, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundedSet {
    entries: Vec<SeenEntry>,
}

impl BoundedSet {
    /// The entry for `key`, if remembered.
    pub fn get(&self, key: u64) -> Option<&SeenEntry> {
        self.entries
            .binary_search_by_key(&key, |e| e.key)
            .ok()
            .and_then(|i| self.entries.get(i))
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Number of remembered keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records one use of `key` at `at_ms`; returns whether the key was new. When the set is
    /// full, the least recently used entry (ties: the least used) is forgotten first.
    pub fn record(&mut self, key: u64, at_ms: i64, cap: usize) -> bool {
        let hour = hour_stamp(at_ms);
        match self.entries.binary_search_by_key(&key, |e| e.key) {
            Ok(index) => {
                if let Some(entry) = self.entries.get_mut(index) {
                    entry.count = entry.count.saturating_add(1);
                    entry.last_seen_hour = entry.last_seen_hour.max(hour);
                }
                false
            }
            Err(_) => {
                while self.entries.len() >= cap.max(1) {
                    self.evict_one();
                }
                if self.entries.len() == self.entries.capacity() {
                    // Grow by doubling, but never beyond the cap, so capacity() is honest.
                    let target = (self.entries.len() * 2).max(4).min(cap.max(1));
                    self.entries
                        .reserve_exact(target.saturating_sub(self.entries.len()));
                }
                let index = self.entries.partition_point(|e| e.key < key);
                self.entries.insert(
                    index,
                    SeenEntry {
                        key,
                        count: 1,
                        last_seen_hour: hour,
                    },
                );
                true
            }
        }
    }

    fn evict_one(&mut self) {
        let victim = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| (e.last_seen_hour, e.count))
            .map(|(i, _)| i);
        if let Some(index) = victim {
            self.entries.remove(index);
        }
    }

    /// Restores the invariant after deserialising untrusted data and applies `cap`.
    fn normalize(&mut self, cap: usize) {
        self.entries.sort_by_key(|e| e.key);
        self.entries.dedup_by_key(|e| e.key);
        while self.entries.len() > cap.max(1) {
            self.evict_one();
        }
        self.entries.shrink_to(cap.max(1));
    }

    fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<SeenEntry>()
    }
}

/// Call counts per hour of the week, decayed over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourProfile {
    buckets: Vec<f32>,
    total: f32,
    /// The day (days since the epoch) up to which decay has been applied.
    decayed_day: i64,
}

impl Default for HourProfile {
    fn default() -> Self {
        Self {
            buckets: vec![0.0; HOURS_PER_WEEK],
            total: 0.0,
            decayed_day: i64::MIN,
        }
    }
}

impl HourProfile {
    fn record(&mut self, at_ms: i64, half_life_days: f64) {
        self.decay_to(at_ms.div_euclid(DAY_MS), half_life_days);
        if let Some(bucket) = self.buckets.get_mut(hour_of_week(at_ms)) {
            *bucket += 1.0;
            self.total += 1.0;
        }
    }

    fn decay_to(&mut self, day: i64, half_life_days: f64) {
        if self.decayed_day == i64::MIN {
            self.decayed_day = day;
            return;
        }
        if day <= self.decayed_day {
            return;
        }
        let factor = (-((day - self.decayed_day) as f64) / half_life_days).exp2() as f32;
        let mut total = 0.0;
        for bucket in &mut self.buckets {
            *bucket *= factor;
            total += *bucket;
        }
        self.total = total;
        self.decayed_day = day;
    }

    /// The decayed activity in `hour` and `neighbours` hours either side, and the total.
    pub fn mass_around(&self, hour: usize, neighbours: usize) -> (f64, f64) {
        let mut mass = 0.0;
        let width = neighbours * 2 + 1;
        for step in 0..width {
            let index = (hour + HOURS_PER_WEEK * 2 + step - neighbours) % HOURS_PER_WEEK;
            mass += f64::from(self.buckets.get(index).copied().unwrap_or(0.0));
        }
        (mass, f64::from(self.total))
    }

    fn normalize(&mut self) {
        self.buckets.resize(HOURS_PER_WEEK, 0.0);
        for bucket in &mut self.buckets {
            if !bucket.is_finite() || *bucket < 0.0 {
                *bucket = 0.0;
            }
        }
        self.total = self.buckets.iter().sum();
    }
}

/// An exponentially weighted mean and variance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    /// The weighted mean.
    pub mean: f64,
    /// The weighted variance.
    pub variance: f64,
    /// Samples folded in (saturating); the first samples use `1/n` as weight so the mean
    /// converges quickly.
    pub samples: u64,
}

impl Ewma {
    /// Folds in `value` with smoothing factor `alpha`.
    pub fn update(&mut self, value: f64, alpha: f64) {
        self.samples = self.samples.saturating_add(1);
        let weight = alpha.max(1.0 / self.samples as f64);
        let diff = value - self.mean;
        let increment = weight * diff;
        self.mean += increment;
        self.variance = (1.0 - weight) * (self.variance + diff * increment);
    }

    /// The standard deviation.
    pub fn std_dev(&self) -> f64 {
        self.variance.max(0.0).sqrt()
    }
}

/// Statistics of active minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MinuteStats {
    /// Calls per active minute.
    pub calls: Ewma,
    /// Response bytes per active minute.
    pub bytes: Ewma,
    /// The decayed maximum of calls in one minute.
    pub peak_calls: f64,
    /// The decayed maximum of response bytes in one minute.
    pub peak_bytes: f64,
    /// When the peaks were last decayed.
    pub peak_at_ms: i64,
}

/// What one identity normally does. Serialise it to persist a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The first call observed (ms since the epoch).
    pub first_seen_ms: i64,
    /// The latest call observed.
    pub last_seen_ms: i64,
    /// Calls observed (saturating).
    pub calls: u64,
    /// Services used.
    pub services: BoundedSet,
    /// Operations used (`service` + `operation`).
    pub operations: BoundedSet,
    /// Source networks used (/24 or /48, see [`crate::NetworkKey`]).
    pub networks: BoundedSet,
    /// Calls per hour of the week.
    pub hour_profile: HourProfile,
    /// Calls and bytes per active minute.
    pub minutes: MinuteStats,
    /// Response bytes per call.
    pub bytes_per_call: Ewma,
    /// EWMA of the share of calls denied.
    pub deny_ratio: f64,
    /// EWMA of the share of calls that required approval.
    pub approval_ratio: f64,
}

impl Baseline {
    /// An empty baseline for an identity first seen at `at_ms`.
    pub fn new(at_ms: i64) -> Self {
        Self {
            first_seen_ms: at_ms,
            last_seen_ms: at_ms,
            calls: 0,
            services: BoundedSet::default(),
            operations: BoundedSet::default(),
            networks: BoundedSet::default(),
            hour_profile: HourProfile::default(),
            minutes: MinuteStats {
                peak_at_ms: at_ms,
                ..MinuteStats::default()
            },
            bytes_per_call: Ewma::default(),
            deny_ratio: 0.0,
            approval_ratio: 0.0,
        }
    }

    /// Whether the identity is still in its learning period at `now_ms`.
    pub fn in_learning(&self, learning: &LearningConfig, now_ms: i64) -> bool {
        self.calls < learning.min_calls
            || now_ms.saturating_sub(self.first_seen_ms) < learning.period_ms
    }

    /// Folds one call into the per-call parts of the baseline. Set membership is recorded
    /// separately (the caller already holds the hashes).
    pub(crate) fn learn_call(
        &mut self,
        at_ms: i64,
        outcome: Outcome,
        response_bytes: u64,
        config: &BaselineConfig,
    ) {
        self.calls = self.calls.saturating_add(1);
        self.last_seen_ms = self.last_seen_ms.max(at_ms);
        self.hour_profile
            .record(at_ms, config.profile_half_life_days);
        let weight = config.call_alpha.max(1.0 / self.calls as f64);
        let denied = if outcome == Outcome::Denied { 1.0 } else { 0.0 };
        let approval = if outcome == Outcome::ApprovalRequired {
            1.0
        } else {
            0.0
        };
        self.deny_ratio += weight * (denied - self.deny_ratio);
        self.approval_ratio += weight * (approval - self.approval_ratio);
        self.bytes_per_call
            .update(response_bytes as f64, config.call_alpha);
    }

    /// The learned per-minute peaks decayed to `now_ms`: (calls, bytes).
    pub fn peaks_at(&self, now_ms: i64, config: &BaselineConfig) -> (f64, f64) {
        let factor = decay_factor(now_ms - self.minutes.peak_at_ms, config.peak_half_life_ms);
        (
            self.minutes.peak_calls * factor,
            self.minutes.peak_bytes * factor,
        )
    }

    /// Folds a closed active minute into the minute statistics. `caps` bounds how far one
    /// minute may raise the peaks (the current alert thresholds), so an attack burst cannot
    /// teach the baseline that bursts are normal.
    pub(crate) fn learn_minute(
        &mut self,
        at_ms: i64,
        calls: f64,
        bytes: f64,
        caps: (f64, f64),
        config: &BaselineConfig,
    ) {
        let (peak_calls, peak_bytes) = self.peaks_at(at_ms, config);
        self.minutes.peak_calls = peak_calls.max(calls.min(caps.0));
        self.minutes.peak_bytes = peak_bytes.max(bytes.min(caps.1));
        self.minutes.peak_at_ms = at_ms;
        self.minutes.calls.update(calls, config.minute_alpha);
        self.minutes.bytes.update(bytes, config.minute_alpha);
    }

    /// Restores invariants after deserialising (sorted sets, caps, profile length).
    pub fn normalize(&mut self, config: &BaselineConfig) {
        self.services.normalize(config.max_services);
        self.operations.normalize(config.max_operations);
        self.networks.normalize(config.max_networks);
        self.hour_profile.normalize();
        self.hour_profile.buckets.shrink_to_fit();
    }

    /// An estimate of the memory this baseline takes: the struct plus its heap allocations.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.services.heap_bytes()
            + self.operations.heap_bytes()
            + self.networks.heap_bytes()
            + self.hour_profile.buckets.capacity() * std::mem::size_of::<f32>()
    }
}

/// `2^(-elapsed / half_life)`, 1 for negative elapsed times.
pub(crate) fn decay_factor(elapsed_ms: i64, half_life_ms: i64) -> f64 {
    if elapsed_ms <= 0 || half_life_ms <= 0 {
        return 1.0;
    }
    (-(elapsed_ms as f64) / half_life_ms as f64).exp2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_of_week_starts_on_monday() {
        // 2024-01-01 was a Monday.
        let monday = 1_704_067_200_000;
        assert_eq!(hour_of_week(monday), 0);
        assert_eq!(hour_of_week(monday + 25 * HOUR_MS), 25);
        assert_eq!(hour_of_week(monday + 7 * DAY_MS + 3 * HOUR_MS), 3);
        assert_eq!(hour_of_week(monday - HOUR_MS), 167);
    }

    #[test]
    fn bounded_set_forgets_least_recently_used() {
        let mut set = BoundedSet::default();
        assert!(set.record(1, 0, 3));
        assert!(set.record(2, HOUR_MS, 3));
        assert!(set.record(3, 2 * HOUR_MS, 3));
        assert!(!set.record(1, 3 * HOUR_MS, 3)); // 1 is now the most recent
        assert!(set.record(4, 4 * HOUR_MS, 3)); // evicts 2
        assert!(set.contains(1) && set.contains(3) && set.contains(4));
        assert!(!set.contains(2));
        assert_eq!(set.len(), 3);
        assert_eq!(set.get(1).map(|e| e.count), Some(2));
    }

    #[test]
    fn memory_stays_bounded_under_many_distinct_items() {
        let config = BaselineConfig::default();
        let mut baseline = Baseline::new(0);
        for i in 0..20_000u64 {
            let at = i as i64 * 1000;
            baseline
                .services
                .record(i.wrapping_mul(7919), at, config.max_services);
            baseline
                .operations
                .record(i.wrapping_mul(104_729), at, config.max_operations);
            baseline.networks.record(i, at, config.max_networks);
            baseline.learn_call(at, Outcome::Allowed, i, &config);
        }
        assert_eq!(baseline.operations.len(), config.max_operations);
        assert_eq!(baseline.networks.len(), config.max_networks);
        let bytes = baseline.approx_bytes();
        assert!(bytes <= 16 * 1024, "baseline takes {bytes} bytes");
        // The hard caps also fit.
        let mut big = Baseline::new(0);
        for i in 0..5_000u64 {
            big.operations
                .record(i, 0, crate::config::MAX_OPERATIONS_LIMIT);
            big.services.record(i, 0, crate::config::MAX_SERVICES_LIMIT);
            big.networks.record(i, 0, crate::config::MAX_NETWORKS_LIMIT);
        }
        assert!(
            big.approx_bytes() <= 16 * 1024,
            "capped baseline takes {} bytes",
            big.approx_bytes()
        );
    }

    #[test]
    fn profile_decays_with_half_life() {
        let mut profile = HourProfile::default();
        for _ in 0..100 {
            profile.record(0, 7.0);
        }
        let (mass, total) = profile.mass_around(hour_of_week(0), 0);
        assert_eq!((mass, total), (100.0, 100.0));
        profile.record(7 * DAY_MS + 5 * HOUR_MS, 7.0);
        let (mass, total) = profile.mass_around(hour_of_week(0), 0);
        assert!((mass - 50.0).abs() < 0.01, "{mass}");
        assert!((total - 51.0).abs() < 0.01, "{total}");
    }

    #[test]
    fn ewma_tracks_mean_and_variance() {
        let mut ewma = Ewma::default();
        for i in 0..10_000 {
            ewma.update(if i % 2 == 0 { 90.0 } else { 110.0 }, 0.01);
        }
        assert!((ewma.mean - 100.0).abs() < 1.0, "{}", ewma.mean);
        assert!((ewma.std_dev() - 10.0).abs() < 1.0, "{}", ewma.std_dev());
    }

    #[test]
    fn ratios_and_peaks_are_learned() {
        let config = BaselineConfig::default();
        let mut baseline = Baseline::new(0);
        for i in 0..1_000 {
            let outcome = if i % 10 == 0 {
                Outcome::Denied
            } else {
                Outcome::Allowed
            };
            baseline.learn_call(i * 1000, outcome, 100, &config);
        }
        assert!(
            (baseline.deny_ratio - 0.1).abs() < 0.03,
            "{}",
            baseline.deny_ratio
        );
        assert!(baseline.approval_ratio < 0.001);
        baseline.learn_minute(0, 12.0, 1e6, (f64::MAX, f64::MAX), &config);
        baseline.learn_minute(60_000, 500.0, 1e9, (50.0, 2e6), &config);
        let (calls, bytes) = baseline.peaks_at(60_000, &config);
        assert_eq!((calls, bytes), (50.0, 2e6));
        let (later, _) = baseline.peaks_at(60_000 + config.peak_half_life_ms, &config);
        assert!((later - 25.0).abs() < 1e-9);
    }

    #[test]
    fn snapshot_round_trips_and_normalizes() {
        let config = BaselineConfig::default();
        let mut baseline = Baseline::new(5);
        baseline.operations.record(9, 5, 10);
        baseline.operations.record(3, 5, 10);
        baseline.learn_call(5, Outcome::Allowed, 10, &config);
        let json = serde_json::to_string(&baseline).unwrap();
        let mut back: Baseline = serde_json::from_str(&json).unwrap();
        back.normalize(&config);
        assert_eq!(back, baseline);
        // A tampered snapshot with unsorted keys is repaired.
        let tampered = json.replacen("\"key\":3", "\"key\":99", 1);
        let mut fixed: Baseline = serde_json::from_str(&tampered).unwrap();
        fixed.normalize(&config);
        assert!(fixed.operations.contains(99) && fixed.operations.contains(9));
    }
}
