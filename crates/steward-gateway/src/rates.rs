//! Per-identity call counters for `context.rate`: sliding-window estimates, O(1) per call.
//!
//! Each counter keeps the current and previous fixed window and estimates the sliding
//! count as `current + previous × (1 − elapsed/window)`, the approach most rate limiters
//! use. Counts are per instance: with several instances on PostgreSQL each sees its own
//! share of the traffic (see the architecture doc).

use std::collections::HashMap;
use std::sync::Mutex;

use steward_policy::RateCounts;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: i64,
    current: u64,
    previous: u64,
}

impl Window {
    fn roll(&mut self, now: i64, len: i64) {
        let start = now - now.rem_euclid(len);
        if start == self.start {
            return;
        }
        self.previous = if start - self.start == len {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.start = start;
    }

    fn estimate(&self, now: i64, len: i64) -> u64 {
        let elapsed = (now - self.start).clamp(0, len);
        let weight = (len - elapsed) as f64 / len as f64;
        self.current + (self.previous as f64 * weight).round() as u64
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    minute: Window,
    hour: Window,
    day: Window,
    last_ms: i64,
}

impl Counter {
    fn read(&mut self, now: i64) -> (u64, u64, u64) {
        self.minute.roll(now, MINUTE);
        self.hour.roll(now, HOUR);
        self.day.roll(now, DAY);
        (
            self.minute.estimate(now, MINUTE),
            self.hour.estimate(now, HOUR),
            self.day.estimate(now, DAY),
        )
    }

    fn add(&mut self, now: i64) {
        let _ = self.read(now);
        self.minute.current += 1;
        self.hour.current += 1;
        self.day.current += 1;
        self.last_ms = now;
    }
}

/// One identity's counters for one service: the service as a whole and each operation.
#[derive(Debug, Default)]
struct ServiceCounters {
    total: Counter,
    operations: HashMap<String, Counter>,
}

/// Counters keyed by identity, then service, then operation. Lookups borrow the caller's
/// strings, so the request path allocates only the first time a key is seen.
#[derive(Debug, Default)]
pub struct RateCounters {
    counters: Mutex<HashMap<String, HashMap<String, ServiceCounters>>>,
}

/// The entry for `key`, inserting a default one (and allocating the key) only if missing.
fn slot<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> Option<&'a mut V> {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key)
}

impl RateCounters {
    /// The counts before this call, for the policy context.
    pub fn counts(&self, identity: &str, service: &str, operation: &str, now: i64) -> RateCounts {
        let mut map = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(svc) = map.get_mut(identity).and_then(|s| s.get_mut(service)) else {
            return RateCounts::default();
        };
        let (s_m, s_h, s_d) = svc.total.read(now);
        let (op_m, op_h, op_d) = svc
            .operations
            .get_mut(operation)
            .map(|c| c.read(now))
            .unwrap_or_default();
        RateCounts {
            op_per_minute: op_m,
            op_per_hour: op_h,
            op_per_day: op_d,
            service_per_minute: s_m,
            service_per_hour: s_h,
            service_per_day: s_d,
        }
    }

    /// Counts a performed call.
    pub fn record(&self, identity: &str, service: &str, operation: &str, now: i64) {
        let mut map = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(svc) = slot(&mut map, identity).and_then(|s| slot(s, service)) else {
            return;
        };
        svc.total.add(now);
        if let Some(op) = slot(&mut svc.operations, operation) {
            op.add(now);
        }
    }

    /// Drops counters idle for more than two days.
    pub fn prune(&self, now: i64) {
        let mut map = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for services in map.values_mut() {
            for svc in services.values_mut() {
                svc.operations.retain(|_, c| now - c.last_ms < 2 * DAY);
            }
            services.retain(|_, svc| now - svc.total.last_ms < 2 * DAY);
        }
        map.retain(|_, services| !services.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_across_windows() {
        let r = RateCounters::default();
        let t0 = 10 * DAY;
        for i in 0..10 {
            r.record("i", "svc", "op", t0 + i);
        }
        let c = r.counts("i", "svc", "op", t0 + 10);
        assert_eq!((c.op_per_minute, c.op_per_hour, c.op_per_day), (10, 10, 10));
        assert_eq!(c.service_per_day, 10);
        // Half a minute into the next window: half of the previous minute still counts.
        let c = r.counts("i", "svc", "op", t0 + MINUTE + MINUTE / 2);
        assert_eq!(c.op_per_minute, 5);
        assert_eq!(c.op_per_day, 10);
        // Two days later nothing counts.
        assert_eq!(r.counts("i", "svc", "op", t0 + 2 * DAY + 1).op_per_day, 0);
        assert_eq!(r.counts("other", "svc", "op", t0).op_per_day, 0);
    }
}
