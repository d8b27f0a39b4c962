//! A small stable hash (FNV-1a, 64 bit) for keys kept in persisted baselines.
//!
//! The standard library's hasher may change between Rust releases; baselines outlive
//! binaries, so set membership must use a hash whose output never changes.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hashes `parts` as one byte string with a `0xff` separator between parts
/// (a byte that never occurs in UTF-8), so `("a", "bc")` and `("ab", "c")` differ.
pub(crate) fn stable_hash(parts: &[&str]) -> u64 {
    let mut hash = OFFSET;
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            hash ^= 0xff;
            hash = hash.wrapping_mul(PRIME);
        }
        for byte in part.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    // Final avalanche (from SplitMix64) so shard selection uses well-mixed low bits.
    hash ^= hash >> 31;
    hash = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    hash ^ (hash >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_GITHUB_ISSUES_CREATE: u64 = 14_970_618_031_881_093_098;

    #[test]
    fn separator_distinguishes_splits() {
        assert_ne!(stable_hash(&["a", "bc"]), stable_hash(&["ab", "c"]));
        assert_eq!(
            stable_hash(&["github", "issues.create"]),
            stable_hash(&["github", "issues.create"])
        );
    }

    #[test]
    fn known_value_is_stable() {
        // Pinned so an accidental change of the algorithm (which would make every persisted
        // baseline forget what it learned) fails this test.
        assert_eq!(stable_hash(&[""]), {
            let mut h = OFFSET;
            h ^= h >> 31;
            h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^ (h >> 29)
        });
        assert_eq!(
            stable_hash(&["github", "issues.create"]),
            PINNED_GITHUB_ISSUES_CREATE
        );
    }
}
