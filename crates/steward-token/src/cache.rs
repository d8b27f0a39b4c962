//! The request-path verifier: a bounded cache of verified tokens keyed by the SHA-256 of the
//! token text, and in-memory revocation state checked on every use, so a cached hit costs
//! a hash and a few map lookups, with no database round trip.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::CLOCK_SKEW_MS;
use crate::access_token::{MAX_TOKEN_LEN, token_hash, verify};
use crate::claims::VerifiedToken;
use crate::error::TokenError;
use crate::keys::VerifyingKeys;

const SHARDS: usize = 16;

type Shard = RwLock<HashMap<[u8; 32], Arc<VerifiedToken>>>;

/// Verified tokens by token hash, kept until their effective expiry.
///
/// Bounded: split into 16 shards, each holding at most `capacity / 16` entries (at least
/// one). When a shard is full, expired entries go first, then the entry closest to expiry.
/// Thread-safe; hits take only a shard read lock.
pub struct TokenCache {
    shards: Vec<Shard>,
    per_shard: usize,
}

impl TokenCache {
    /// A cache holding about `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, hash: &[u8; 32]) -> Option<&Shard> {
        let first = usize::from(hash.first().copied().unwrap_or(0));
        self.shards.get(first % SHARDS)
    }

    /// The cached token with this hash, if any (expired entries are returned too; the caller
    /// checks liveness so it can report `expired`).
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<VerifiedToken>> {
        let shard = self.shard(hash)?;
        let map = shard.read().unwrap_or_else(PoisonError::into_inner);
        map.get(hash).cloned()
    }

    /// Caches a verified token under its `token_hash`.
    pub fn insert(&self, token: Arc<VerifiedToken>, now_ms: i64) {
        let Some(shard) = self.shard(&token.token_hash) else {
            return;
        };
        let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.per_shard && !map.contains_key(&token.token_hash) {
            map.retain(|_, cached| cached.is_live_at(now_ms));
            if map.len() >= self.per_shard {
                let soonest = map
                    .iter()
                    .min_by_key(|(_, cached)| cached.effective_expires_ms)
                    .map(|(hash, _)| *hash);
                if let Some(hash) = soonest {
                    map.remove(&hash);
                }
            }
        }
        map.insert(token.token_hash, token);
    }

    /// Drops the entry with this hash.
    pub fn remove(&self, hash: &[u8; 32]) {
        if let Some(shard) = self.shard(hash) {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(hash);
        }
    }

    /// Drops every entry for which `predicate` holds; returns how many were dropped.
    pub fn remove_where(&self, predicate: impl Fn(&VerifiedToken) -> bool) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = shard.write().unwrap_or_else(PoisonError::into_inner);
            let before = map.len();
            map.retain(|_, cached| !predicate(cached));
            removed += before - map.len();
        }
        removed
    }

    /// Drops entries past their expiry (plus skew); returns how many were dropped.
    pub fn purge_expired(&self, now_ms: i64) -> usize {
        self.remove_where(|cached| !cached.is_live_at(now_ms))
    }

    /// Drops everything.
    pub fn clear(&self) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.len())
            .field("capacity", &(self.per_shard * SHARDS))
            .finish()
    }
}

/// The lifecycle state of an identity, as far as its tokens are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentityStatus {
    /// Tokens are accepted.
    Active,
    /// Tokens are rejected until the identity is reinstated.
    Suspended,
    /// Tokens are rejected for good.
    Revoked,
}

#[derive(Debug, Default)]
struct RevocationSets {
    /// Revoked token ids, with the token's expiry when known (for pruning).
    tokens: HashMap<String, Option<i64>>,
    /// Identities that are not active.
    identities: HashMap<String, IdentityStatus>,
    /// Per identity: tokens issued before this instant (ms) are invalid.
    cutoffs: HashMap<String, i64>,
}

/// Revocation state held in memory and kept current by the server (load it from the store
/// at startup, then apply each admin change): revoked token ids, suspended or revoked
/// identities, and per-identity "issued before" cutoffs. Checked on every verification.
#[derive(Debug, Default)]
pub struct RevocationState {
    sets: RwLock<RevocationSets>,
}

impl RevocationState {
    /// Empty state: nothing revoked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revokes a token id (and so every attenuated copy). Give its expiry if known, so
    /// [`Self::prune`] can forget the entry once the token could no longer verify anyway.
    pub fn revoke_token(&self, token_id: &str, expires_at_ms: Option<i64>) {
        self.write()
            .tokens
            .insert(token_id.to_owned(), expires_at_ms);
    }

    /// Whether a token id is revoked.
    pub fn is_token_revoked(&self, token_id: &str) -> bool {
        self.read().tokens.contains_key(token_id)
    }

    /// Sets an identity's status; `Active` clears any suspension or revocation.
    pub fn set_identity_status(&self, identity_id: &str, status: IdentityStatus) {
        let mut sets = self.write();
        match status {
            IdentityStatus::Active => {
                sets.identities.remove(identity_id);
            }
            IdentityStatus::Suspended | IdentityStatus::Revoked => {
                sets.identities.insert(identity_id.to_owned(), status);
            }
        }
    }

    /// The status recorded for an identity (`Active` unless suspended or revoked).
    pub fn identity_status(&self, identity_id: &str) -> IdentityStatus {
        self.read()
            .identities
            .get(identity_id)
            .copied()
            .unwrap_or(IdentityStatus::Active)
    }

    /// Makes every token issued to `identity_id` before `cutoff_ms` invalid. A later cutoff
    /// replaces an earlier one; an earlier one is ignored.
    pub fn invalidate_tokens_issued_before(&self, identity_id: &str, cutoff_ms: i64) {
        let mut sets = self.write();
        let entry = sets
            .cutoffs
            .entry(identity_id.to_owned())
            .or_insert(cutoff_ms);
        *entry = (*entry).max(cutoff_ms);
    }

    /// Forgets revoked token ids whose tokens have expired (plus skew) at `now_ms`.
    pub fn prune(&self, now_ms: i64) {
        self.write().tokens.retain(|_, expiry| {
            expiry.is_none_or(|exp| now_ms < exp.saturating_add(CLOCK_SKEW_MS))
        });
    }

    /// Rejects the token if its id is revoked, or if its identity or any actor in its
    /// delegation chain is suspended, revoked, or cut off after the token was issued.
    pub fn check(&self, token: &VerifiedToken) -> Result<(), TokenError> {
        let sets = self.read();
        if sets.tokens.contains_key(&token.claims.token_id) {
            return Err(TokenError::Revoked(token.claims.token_id.clone()));
        }
        if sets.identities.is_empty() && sets.cutoffs.is_empty() {
            return Ok(());
        }
        let involved =
            std::iter::once(&token.claims.identity_id).chain(token.claims.actor_chain.iter());
        for identity in involved {
            match sets.identities.get(identity) {
                Some(IdentityStatus::Suspended) => {
                    return Err(TokenError::IdentitySuspended(identity.clone()));
                }
                Some(IdentityStatus::Revoked) => {
                    return Err(TokenError::IdentityRevoked(identity.clone()));
                }
                Some(IdentityStatus::Active) | None => {}
            }
            if let Some(&cutoff) = sets.cutoffs.get(identity)
                && token.claims.issued_at_ms < cutoff
            {
                return Err(TokenError::IssuedBeforeCutoff(identity.clone()));
            }
        }
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RevocationSets> {
        self.sets.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RevocationSets> {
        self.sets.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Verifies bearer tokens for one deployment: full verification on first use, then cached
/// hits that still check the key set and the revocation state every time.
#[derive(Debug)]
pub struct TokenVerifier {
    keys: RwLock<Arc<VerifyingKeys>>,
    audience: String,
    cache: TokenCache,
    revocations: Arc<RevocationState>,
}

impl TokenVerifier {
    /// A verifier with its own, empty revocation state.
    pub fn new(keys: VerifyingKeys, audience: impl Into<String>, cache_capacity: usize) -> Self {
        Self::with_revocations(
            keys,
            audience,
            cache_capacity,
            Arc::new(RevocationState::new()),
        )
    }

    /// A verifier sharing revocation state with other components.
    pub fn with_revocations(
        keys: VerifyingKeys,
        audience: impl Into<String>,
        cache_capacity: usize,
        revocations: Arc<RevocationState>,
    ) -> Self {
        Self {
            keys: RwLock::new(Arc::new(keys)),
            audience: audience.into(),
            cache: TokenCache::new(cache_capacity),
            revocations,
        }
    }

    /// Verifies `token` at `now_ms`: a cache hit if seen before, else a full verification
    /// whose result is cached. Revocation state is checked on both paths.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Arc<VerifiedToken>, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        let hash = token_hash(token);
        if let Some(hit) = self.cache.get(&hash) {
            if !hit.is_live_at(now_ms) {
                self.cache.remove(&hash);
                return Err(TokenError::Expired);
            }
            if hit.claims.issued_at_ms > now_ms.saturating_add(CLOCK_SKEW_MS) {
                return Err(TokenError::NotYetValid);
            }
            // The key may have been removed or retired since the token was cached.
            if let Err(error) = self.keys().usable(&hit.key_id, now_ms) {
                self.cache.remove(&hash);
                return Err(error);
            }
            self.revocations.check(&hit)?;
            return Ok(hit);
        }
        let keys = self.keys();
        let verified = verify(token, &keys, &self.audience, now_ms)?;
        self.revocations.check(&verified)?;
        let verified = Arc::new(verified);
        self.cache.insert(Arc::clone(&verified), now_ms);
        Ok(verified)
    }

    /// Checks again, at `now_ms`, a token verified earlier and held since (by a long-lived
    /// stream): still within its lifetime, its key still usable, not revoked.
    pub fn recheck(&self, verified: &VerifiedToken, now_ms: i64) -> Result<(), TokenError> {
        if !verified.is_live_at(now_ms) {
            return Err(TokenError::Expired);
        }
        self.keys().usable(&verified.key_id, now_ms)?;
        self.revocations.check(verified)
    }

    /// The shared revocation state.
    pub fn revocations(&self) -> &Arc<RevocationState> {
        &self.revocations
    }

    /// Revokes a token id and drops its cached copies.
    pub fn revoke_token(&self, token_id: &str, expires_at_ms: Option<i64>) {
        self.revocations.revoke_token(token_id, expires_at_ms);
        self.cache
            .remove_where(|cached| cached.claims.token_id == token_id);
    }

    /// Suspends an identity: its tokens fail from the next request on.
    pub fn suspend_identity(&self, identity_id: &str) {
        self.revocations
            .set_identity_status(identity_id, IdentityStatus::Suspended);
    }

    /// Revokes an identity: its tokens fail from the next request on.
    pub fn revoke_identity(&self, identity_id: &str) {
        self.revocations
            .set_identity_status(identity_id, IdentityStatus::Revoked);
    }

    /// Reinstates a suspended identity: its unexpired tokens work again.
    pub fn reinstate_identity(&self, identity_id: &str) {
        self.revocations
            .set_identity_status(identity_id, IdentityStatus::Active);
    }

    /// Invalidates every token issued to `identity_id` before `cutoff_ms`.
    pub fn invalidate_tokens_issued_before(&self, identity_id: &str, cutoff_ms: i64) {
        self.revocations
            .invalidate_tokens_issued_before(identity_id, cutoff_ms);
    }

    /// Replaces the verifying key set (rotation) and empties the cache.
    pub fn replace_keys(&self, keys: VerifyingKeys) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
        self.cache.clear();
    }

    /// The current verifying key set.
    pub fn keys(&self) -> Arc<VerifyingKeys> {
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The audience tokens must carry.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The cache, for metrics and periodic [`TokenCache::purge_expired`].
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_token::{attenuate, mint};
    use crate::claims::{Claims, Restriction};
    use crate::keys::SigningKey;
    use zeroize::Zeroizing;

    const AUD: &str = "steward.test";
    const NOW: i64 = 1_800_000_000_000;
    const TTL: i64 = 900_000;

    fn signing(byte: u8) -> SigningKey {
        SigningKey::from_seed(&format!("k{byte}"), &Zeroizing::new([byte; 32])).unwrap()
    }

    fn fixture() -> (SigningKey, TokenVerifier) {
        let key = signing(1);
        let verifier = TokenVerifier::new(VerifyingKeys::from_signing_key(&key).unwrap(), AUD, 64);
        (key, verifier)
    }

    fn token_for(key: &SigningKey, token_id: &str, identity: &str, issued_at: i64) -> String {
        mint(
            key,
            &Claims::new(token_id, identity, AUD, issued_at, issued_at + TTL),
        )
        .unwrap()
    }

    #[test]
    fn second_use_is_served_from_the_cache() {
        let (key, verifier) = fixture();
        let token = token_for(&key, "tok_1", "idn_1", NOW);
        let first = verifier.verify(&token, NOW).unwrap();
        assert_eq!(verifier.cache().len(), 1);
        let second = verifier.verify(&token, NOW + 1).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn failures_are_not_cached() {
        let (key, verifier) = fixture();
        let token = token_for(&key, "tok_1", "idn_1", NOW);
        assert_eq!(
            verifier.verify(&token, NOW + TTL + CLOCK_SKEW_MS),
            Err(TokenError::Expired)
        );
        assert!(verifier.cache().is_empty());
        assert!(verifier.verify("stwt_garbage", NOW).is_err());
        assert!(verifier.cache().is_empty());
    }

    #[test]
    fn cached_tokens_still_expire() {
        let (key, verifier) = fixture();
        let token = token_for(&key, "tok_1", "idn_1", NOW);
        verifier.verify(&token, NOW).unwrap();
        assert_eq!(
            verifier.verify(&token, NOW + TTL + CLOCK_SKEW_MS),
            Err(TokenError::Expired)
        );
        assert!(verifier.cache().is_empty());
    }

    #[test]
    fn revoking_a_token_id_rejects_it_and_its_attenuations() {
        let (key, verifier) = fixture();
        let token = token_for(&key, "tok_1", "idn_1", NOW);
        let narrowed = attenuate(&token, &Restriction::default().services(["github"])).unwrap();
        let other = token_for(&key, "tok_2", "idn_1", NOW);
        verifier.verify(&token, NOW).unwrap();
        verifier.verify(&narrowed, NOW).unwrap();
        verifier.revoke_token("tok_1", Some(NOW + TTL));
        assert_eq!(
            verifier.verify(&token, NOW),
            Err(TokenError::Revoked("tok_1".into()))
        );
        assert_eq!(
            verifier.verify(&narrowed, NOW),
            Err(TokenError::Revoked("tok_1".into()))
        );
        assert!(verifier.verify(&other, NOW).is_ok());
    }

    #[test]
    fn a_held_token_is_rechecked_for_expiry_and_revocation() {
        let (key, verifier) = fixture();
        let token = token_for(&key, "tok_1", "idn_1", NOW);
        let held = verifier.verify(&token, NOW).unwrap();
        assert_eq!(verifier.recheck(&held, NOW + 1), Ok(()));
        assert_eq!(
            verifier.recheck(&held, NOW + TTL + CLOCK_SKEW_MS),
            Err(TokenError::Expired)
        );
        verifier.revoke_token("tok_1", Some(NOW + TTL));
        assert_eq!(
            verifier.recheck(&held, NOW + 1),
            Err(TokenError::Revoked("tok_1".into()))
        );
    }

    #[test]
    fn revocation_in_shared_state_applies_to_cached_hits() {
        let (key, verifier) = fixture();
        let token = token_for(&key, "tok_1", "idn_1", NOW);
        verifier.verify(&token, NOW).unwrap();
        // Revoked through the shared state only: the cached entry is still there.
        verifier.revocations().revoke_token("tok_1", None);
        assert_eq!(verifier.cache().len(), 1);
        assert!(matches!(
            verifier.verify(&token, NOW),
            Err(TokenError::Revoked(_))
        ));
    }

    #[test]
    fn suspending_and_reinstating_an_identity() {
        let (key, verifier) = fixture();
        let token = token_for(&key, "tok_1", "idn_1", NOW);
        verifier.verify(&token, NOW).unwrap();
        verifier.suspend_identity("idn_1");
        assert_eq!(
            verifier.verify(&token, NOW),
            Err(TokenError::IdentitySuspended("idn_1".into()))
        );
        verifier.reinstate_identity("idn_1");
        assert!(verifier.verify(&token, NOW).is_ok());
        verifier.revoke_identity("idn_1");
        assert_eq!(
            verifier.verify(&token, NOW),
            Err(TokenError::IdentityRevoked("idn_1".into()))
        );
        assert_eq!(
            verifier.revocations().identity_status("idn_1"),
            IdentityStatus::Revoked
        );
    }

    #[test]
    fn suspending_an_actor_rejects_delegated_tokens() {
        let (key, verifier) = fixture();
        let mut claims = Claims::new("tok_d", "idn_user", AUD, NOW, NOW + TTL);
        claims.actor_chain = vec!["idn_agent".into()];
        let token = mint(&key, &claims).unwrap();
        verifier.verify(&token, NOW).unwrap();
        verifier.suspend_identity("idn_agent");
        assert_eq!(
            verifier.verify(&token, NOW),
            Err(TokenError::IdentitySuspended("idn_agent".into()))
        );
    }

    #[test]
    fn cutoff_rejects_only_earlier_tokens() {
        let (key, verifier) = fixture();
        let old = token_for(&key, "tok_old", "idn_1", NOW);
        let new = token_for(&key, "tok_new", "idn_1", NOW + 10);
        verifier.verify(&old, NOW + 20).unwrap();
        verifier.invalidate_tokens_issued_before("idn_1", NOW + 5);
        verifier.invalidate_tokens_issued_before("idn_1", NOW + 1);
        assert_eq!(
            verifier.verify(&old, NOW + 20),
            Err(TokenError::IssuedBeforeCutoff("idn_1".into()))
        );
        assert!(verifier.verify(&new, NOW + 20).is_ok());
    }

    #[test]
    fn replacing_keys_drops_tokens_of_removed_keys() {
        let (old_key, verifier) = fixture();
        let new_key = signing(2);
        let old_token = token_for(&old_key, "tok_1", "idn_1", NOW);
        verifier.verify(&old_token, NOW).unwrap();
        verifier.replace_keys(VerifyingKeys::from_signing_key(&new_key).unwrap());
        assert!(verifier.cache().is_empty());
        assert!(matches!(
            verifier.verify(&old_token, NOW),
            Err(TokenError::UnknownKeyId(_))
        ));
        let new_token = token_for(&new_key, "tok_2", "idn_1", NOW);
        assert!(verifier.verify(&new_token, NOW).is_ok());
    }

    #[test]
    fn cached_hits_respect_key_retirement() {
        let (key, verifier) = fixture();
        let token = token_for(&key, "tok_1", "idn_1", NOW);
        verifier.verify(&token, NOW).unwrap();
        // Simulate a retirement that a racing insert could have missed.
        let mut keys = (*verifier.keys()).clone();
        keys.retire_at("k1", Some(NOW + 100));
        *verifier.keys.write().unwrap() = Arc::new(keys);
        assert!(verifier.verify(&token, NOW + 99).is_ok());
        assert!(matches!(
            verifier.verify(&token, NOW + 100),
            Err(TokenError::KeyRetired(_))
        ));
    }

    #[test]
    fn cache_is_bounded_and_evicts_soonest_expiry() {
        let key = signing(1);
        let verifier = TokenVerifier::new(VerifyingKeys::from_signing_key(&key).unwrap(), AUD, 16);
        let mut tokens = Vec::new();
        for i in 0..200 {
            let token = token_for(&key, &format!("tok_{i}"), "idn_1", NOW + i);
            verifier.verify(&token, NOW + 200).unwrap();
            tokens.push(token);
        }
        assert!(
            verifier.cache().len() <= 16,
            "len {}",
            verifier.cache().len()
        );
        // The newest token (latest expiry) survives in its shard.
        let newest = token_hash(tokens.last().unwrap());
        assert!(verifier.cache().get(&newest).is_some());
        let cached = verifier.cache().len();
        assert_eq!(verifier.cache().purge_expired(NOW + 10 * TTL), cached);
        assert!(verifier.cache().is_empty());
    }

    #[test]
    fn pruning_forgets_only_expired_revocations() {
        let state = RevocationState::new();
        state.revoke_token("a", Some(NOW));
        state.revoke_token("b", None);
        state.revoke_token("c", Some(NOW + TTL));
        state.prune(NOW + CLOCK_SKEW_MS);
        assert!(!state.is_token_revoked("a"));
        assert!(state.is_token_revoked("b"));
        assert!(state.is_token_revoked("c"));
    }

    #[test]
    fn verifier_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TokenVerifier>();
    }

    #[test]
    fn concurrent_verification_and_revocation() {
        let (key, verifier) = fixture();
        let verifier = Arc::new(verifier);
        let token = token_for(&key, "tok_1", "idn_1", NOW);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let verifier = Arc::clone(&verifier);
                let token = token.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _ = verifier.verify(&token, NOW);
                    }
                })
            })
            .collect();
        verifier.revoke_token("tok_1", None);
        for handle in handles {
            handle.join().unwrap();
        }
        assert!(matches!(
            verifier.verify(&token, NOW),
            Err(TokenError::Revoked(_))
        ));
    }
}
