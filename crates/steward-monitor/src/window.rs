//! Sliding-window counters in O(1): two aligned buckets, the older one weighted by how much
//! of it still lies inside the window.

/// Counters of one fixed-width window: `K` values per bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SlidingWindow<const K: usize> {
    bucket: i64,
    current: [f64; K],
    previous: [f64; K],
}

impl<const K: usize> Default for SlidingWindow<K> {
    fn default() -> Self {
        Self {
            bucket: i64::MIN,
            current: [0.0; K],
            previous: [0.0; K],
        }
    }
}

impl<const K: usize> SlidingWindow<K> {
    /// Moves the window to `now_ms`. Returns the bucket that just closed (its values and its
    /// start time), if one did and it was not empty. Out-of-order times count as the
    /// current bucket.
    pub(crate) fn advance(&mut self, now_ms: i64, width_ms: i64) -> Option<([f64; K], i64)> {
        let bucket = now_ms.div_euclid(width_ms);
        if self.bucket == i64::MIN {
            self.bucket = bucket;
            return None;
        }
        if bucket <= self.bucket {
            return None;
        }
        let closed = self.current;
        let closed_start = self.bucket.saturating_mul(width_ms);
        self.previous = if bucket == self.bucket + 1 {
            closed
        } else {
            [0.0; K]
        };
        self.current = [0.0; K];
        self.bucket = bucket;
        closed
            .iter()
            .any(|v| *v != 0.0)
            .then_some((closed, closed_start))
    }

    /// Adds `values` to the current bucket.
    pub(crate) fn add(&mut self, values: [f64; K]) {
        for (slot, value) in self.current.iter_mut().zip(values) {
            *slot += value;
        }
    }

    /// The estimated sums over the last `width_ms` ending at `now_ms`.
    pub(crate) fn estimate(&self, now_ms: i64, width_ms: i64) -> [f64; K] {
        let start = self.bucket.saturating_mul(width_ms);
        let elapsed = (now_ms - start).clamp(0, width_ms) as f64 / width_ms as f64;
        let mut out = self.current;
        for (slot, previous) in out.iter_mut().zip(self.previous) {
            *slot += previous * (1.0 - elapsed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_weights_previous_bucket() {
        let mut window = SlidingWindow::<1>::default();
        assert_eq!(window.advance(0, 1000), None);
        window.add([10.0]);
        let closed = window.advance(1000, 1000);
        assert_eq!(closed, Some(([10.0], 0)));
        window.add([4.0]);
        // Halfway through the second bucket: 4 + 10 * 0.5.
        assert_eq!(window.estimate(1500, 1000), [9.0]);
        // A gap of several buckets clears both.
        assert_eq!(window.advance(5000, 1000), Some(([4.0], 1000)));
        assert_eq!(window.estimate(5000, 1000), [0.0]);
        // Late events land in the current bucket.
        assert_eq!(window.advance(4000, 1000), None);
        window.add([1.0]);
        assert_eq!(window.estimate(5999, 1000), [1.0]);
    }
}
