//! Time as a parameter: the `Clock` trait and its system and manual implementations.
//!
//! Nothing in Steward reads the wall clock directly; it asks a `Clock`, so tests can
//! set and advance time without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use jiff::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;

    /// The current instant in whole milliseconds since the Unix epoch.
    fn now_millis(&self) -> i64 {
        self.now().as_millisecond()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to. Cloning shares the same instant.
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis: Arc<AtomicI64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            millis: Arc::new(AtomicI64::new(start.as_millisecond())),
        }
    }

    /// Moves the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        self.millis.store(to.as_millisecond(), Ordering::SeqCst);
    }

    /// Moves the clock forward by `millis` milliseconds.
    pub fn advance_millis(&self, millis: i64) {
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }

    /// Moves the clock forward by `secs` seconds.
    pub fn advance_secs(&self, secs: i64) {
        self.advance_millis(secs.saturating_mul(1000));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let ms = self.millis.load(Ordering::SeqCst);
        Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// Converts milliseconds since the epoch to a timestamp, saturating at the epoch on overflow.
pub fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances_and_is_shared() {
        let clock = ManualClock::new(from_millis(1_000));
        let other = clock.clone();
        clock.advance_secs(2);
        assert_eq!(other.now_millis(), 3_000);
        other.set(from_millis(10));
        assert_eq!(clock.now_millis(), 10);
    }
}
