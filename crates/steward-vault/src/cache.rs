//! A bounded, time-limited cache of decrypted secret values for the gateway's hot path.
//!
//! Values are held as `Arc<SecretBytes>`: zeroized when the last holder drops them, redacted
//! in `Debug`. Time is passed in (`now_ms`, Unix milliseconds), never read from a clock.
//!
//! Invalidation is race-free with respect to concurrent fills: take a [`FillTicket`] *before*
//! reading the sealed value from the store, and [`SecretCache::insert`] drops the value instead
//! of caching it if any invalidation happened since the ticket was taken. So a reader that
//! fetched version 1 just before an update to version 2 cannot re-populate the cache with
//! version 1 after the writer invalidated it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use secrecy::ExposeSecret as _;
use steward_core::SecretBytes;

/// A decrypted value shared out of the cache, with the secret version it came from.
#[derive(Clone)]
pub struct CachedSecret {
    version: u32,
    value: Arc<SecretBytes>,
}

impl CachedSecret {
    /// Wraps a value that is not (or not yet) cached.
    pub fn new(version: u32, value: SecretBytes) -> Self {
        Self {
            version,
            value: Arc::new(value),
        }
    }

    /// The secret version this value belongs to (to record in the audit trail).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The plaintext. Keep the borrow short; never log it.
    pub fn expose_secret(&self) -> &[u8] {
        self.value.expose_secret()
    }
}

impl fmt::Debug for CachedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedSecret")
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Proof of the cache's invalidation generation at the time a fill started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTicket(u64);

struct Entry {
    secret: CachedSecret,
    inserted_ms: i64,
    expires_ms: i64,
}

impl Entry {
    fn is_live(&self, now_ms: i64) -> bool {
        // A clock that went backwards past the insertion also expires the entry.
        now_ms >= self.inserted_ms && now_ms < self.expires_ms
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    generation: u64,
}

/// Decrypted values keyed by secret id, each kept at most `ttl_ms`, at most `max_entries`.
pub struct SecretCache {
    ttl_ms: i64,
    max_entries: usize,
    inner: Mutex<Inner>,
}

impl SecretCache {
    /// A cache keeping each value for `ttl_ms` milliseconds, holding at most `max_entries`.
    ///
    /// A non-positive TTL or zero capacity disables caching: every lookup misses.
    pub fn new(ttl_ms: i64, max_entries: usize) -> Self {
        Self {
            ttl_ms,
            max_entries,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A cache that never holds anything.
    pub fn disabled() -> Self {
        Self::new(0, 0)
    }

    /// Whether values are cached at all.
    pub fn is_enabled(&self) -> bool {
        self.ttl_ms > 0 && self.max_entries > 0
    }

    /// The cached value for `secret_id`, if present and not expired at `now_ms`.
    pub fn get(&self, secret_id: &str, now_ms: i64) -> Option<CachedSecret> {
        if !self.is_enabled() {
            return None;
        }
        let mut inner = self.lock();
        match inner.entries.get(secret_id) {
            Some(entry) if entry.is_live(now_ms) => Some(entry.secret.clone()),
            Some(_) => {
                inner.entries.remove(secret_id);
                None
            }
            None => None,
        }
    }

    /// Takes a ticket; call before reading the sealed value that will be inserted.
    pub fn ticket(&self) -> FillTicket {
        FillTicket(self.lock().generation)
    }

    /// Caches `value` as the current value of `secret_id` and returns it.
    ///
    /// Nothing is cached when the cache is disabled or an invalidation happened after `ticket`
    /// was taken; the value is returned either way.
    pub fn insert(
        &self,
        ticket: FillTicket,
        secret_id: &str,
        version: u32,
        value: SecretBytes,
        now_ms: i64,
    ) -> CachedSecret {
        let secret = CachedSecret::new(version, value);
        if !self.is_enabled() {
            return secret;
        }
        let mut inner = self.lock();
        if inner.generation != ticket.0 {
            return secret;
        }
        if !inner.entries.contains_key(secret_id) && inner.entries.len() >= self.max_entries {
            inner.entries.retain(|_, entry| entry.is_live(now_ms));
            if inner.entries.len() >= self.max_entries {
                let oldest = inner
                    .entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.expires_ms)
                    .map(|(id, _)| id.clone());
                if let Some(oldest) = oldest {
                    inner.entries.remove(&oldest);
                }
            }
        }
        inner.entries.insert(
            secret_id.to_owned(),
            Entry {
                secret: secret.clone(),
                inserted_ms: now_ms,
                expires_ms: now_ms.saturating_add(self.ttl_ms),
            },
        );
        secret
    }

    /// Returns the cached value, or calls `load` (which opens the sealed value and returns
    /// its version and plaintext) and caches the result.
    pub fn get_or_try_insert_with<E>(
        &self,
        secret_id: &str,
        now_ms: i64,
        load: impl FnOnce() -> Result<(u32, SecretBytes), E>,
    ) -> Result<CachedSecret, E> {
        if let Some(hit) = self.get(secret_id, now_ms) {
            return Ok(hit);
        }
        let ticket = self.ticket();
        let (version, value) = load()?;
        Ok(self.insert(ticket, secret_id, version, value, now_ms))
    }

    /// Drops the cached value of `secret_id`; call on every write, rotation or deletion of it.
    pub fn invalidate(&self, secret_id: &str) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.remove(secret_id);
    }

    /// Drops every cached value (e.g. after a master-key rotation or on shutdown).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.clear();
    }

    /// Drops expired values now rather than on their next lookup; returns how many.
    pub fn purge_expired(&self, now_ms: i64) -> usize {
        let mut inner = self.lock();
        let before = inner.entries.len();
        inner.entries.retain(|_, entry| entry.is_live(now_ms));
        before - inner.entries.len()
    }

    /// Number of entries held (expired ones included until purged or looked up).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The guarded map stays consistent even if a holder panicked.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for SecretCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretCache")
            .field("ttl_ms", &self.ttl_ms)
            .field("max_entries", &self.max_entries)
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steward_core::secret::secret_bytes;

    fn value(text: &str) -> SecretBytes {
        secret_bytes(text.as_bytes().to_vec())
    }

    fn put(cache: &SecretCache, id: &str, version: u32, text: &str, now: i64) {
        let ticket = cache.ticket();
        cache.insert(ticket, id, version, value(text), now);
    }

    #[test]
    fn hit_within_ttl_and_miss_after() {
        let cache = SecretCache::new(1_000, 10);
        put(&cache, "s", 3, "v3", 10_000);
        let hit = cache.get("s", 10_999).unwrap();
        assert_eq!(hit.version(), 3);
        assert_eq!(hit.expose_secret(), b"v3");
        assert!(cache.get("s", 11_000).is_none(), "expired exactly at ttl");
        assert_eq!(cache.len(), 0, "expired entry removed on lookup");
        assert!(cache.get("other", 10_000).is_none());
    }

    #[test]
    fn clock_going_backwards_expires() {
        let cache = SecretCache::new(1_000, 10);
        put(&cache, "s", 1, "v", 10_000);
        assert!(cache.get("s", 9_999).is_none());
    }

    #[test]
    fn invalidate_drops_only_that_secret() {
        let cache = SecretCache::new(60_000, 10);
        put(&cache, "a", 1, "va", 0);
        put(&cache, "b", 1, "vb", 0);
        cache.invalidate("a");
        assert!(cache.get("a", 1).is_none());
        assert_eq!(cache.get("b", 1).unwrap().expose_secret(), b"vb");
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn stale_fill_after_invalidation_is_not_cached() {
        let cache = SecretCache::new(60_000, 10);
        let ticket = cache.ticket(); // reader starts fetching version 1
        cache.invalidate("s"); // writer stores version 2 and invalidates
        let returned = cache.insert(ticket, "s", 1, value("old"), 5);
        assert_eq!(
            returned.expose_secret(),
            b"old",
            "the reader still gets its value"
        );
        assert!(
            cache.get("s", 6).is_none(),
            "but the stale value is not cached"
        );
        put(&cache, "s", 2, "new", 7);
        assert_eq!(cache.get("s", 8).unwrap().version(), 2);
    }

    #[test]
    fn bounded_entries_evict_expired_then_soonest_expiring() {
        let cache = SecretCache::new(1_000, 3);
        put(&cache, "a", 1, "a", 0);
        put(&cache, "b", 1, "b", 100);
        put(&cache, "c", 1, "c", 200);
        put(&cache, "d", 1, "d", 300); // full: evicts "a" (soonest expiring)
        assert_eq!(cache.len(), 3);
        assert!(cache.get("a", 400).is_none());
        assert!(cache.get("b", 400).is_some());
        // Replacing an existing key does not evict anything.
        put(&cache, "b", 2, "b2", 400);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("b", 401).unwrap().version(), 2);
        // At 1_250 "c" (expires 1_200) is expired and goes first, "d" stays.
        put(&cache, "e", 1, "e", 1_250);
        assert!(cache.get("d", 1_250).is_some());
        assert!(cache.get("e", 1_250).is_some());
        assert!(cache.len() <= 3);
    }

    #[test]
    fn purge_expired_counts() {
        let cache = SecretCache::new(100, 10);
        put(&cache, "a", 1, "a", 0);
        put(&cache, "b", 1, "b", 50);
        assert_eq!(cache.purge_expired(120), 1);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn disabled_cache_never_holds_values() {
        for cache in [
            SecretCache::disabled(),
            SecretCache::new(1_000, 0),
            SecretCache::new(-5, 10),
        ] {
            assert!(!cache.is_enabled());
            put(&cache, "s", 1, "v", 0);
            assert!(cache.get("s", 1).is_none());
            assert!(cache.is_empty());
        }
    }

    #[test]
    fn get_or_try_insert_with_loads_once_and_propagates_errors() {
        let cache = SecretCache::new(1_000, 10);
        let mut loads = 0;
        for now in [0, 10, 20] {
            let got = cache
                .get_or_try_insert_with::<()>("s", now, || {
                    loads += 1;
                    Ok((7, value("v7")))
                })
                .unwrap();
            assert_eq!(got.version(), 7);
        }
        assert_eq!(loads, 1);
        let err = cache.get_or_try_insert_with("t", 0, || Err::<(u32, SecretBytes), _>("boom"));
        assert_eq!(err.unwrap_err(), "boom");
        assert!(cache.get("t", 0).is_none());
    }

    #[test]
    fn debug_is_redacted() {
        let cache = SecretCache::new(1_000, 10);
        put(&cache, "s", 1, "hunter2-canary", 0);
        let hit = cache.get("s", 1).unwrap();
        assert!(!format!("{hit:?}").contains("hunter2"));
        assert!(!format!("{cache:?}").contains("hunter2"));
    }
}
