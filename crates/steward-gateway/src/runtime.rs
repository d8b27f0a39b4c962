//! The wired runtime: every shared service the gateway and the admin API use, in one place.
//!
//! `Runtime` is built once by the binary's `serve` command and shared behind an `Arc`.
//! Hot-swappable parts (policy set, services, keys) sit behind `RwLock<Arc<_>>`, so a
//! request clones one `Arc` and then runs without holding a lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use steward_audit::{
    Actor, ActorKind, AppendReceipt, AuditError, AuditEvent, AuditWriter, EventKind, Redactor,
};
use steward_core::{Clock, ErrorCode};
use steward_policy::{Catalog, CompiledPolicies, Grant, PolicySource};
use steward_store::Store;
use steward_store::models::{PolicySetRecord, SecretRecord, SecretVersion};
use steward_token::{Claims, SigningKey, TokenVerifier};
use steward_vault::{CachedSecret, Keyring, Sealed, SecretCache};
use zeroize::Zeroizing;

use crate::problem::Problem;
use crate::rates::RateCounters;
use crate::service::ServiceTable;
use crate::upstream::Upstream;

/// Deployment settings the request path reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time zone for `context.time`.
    pub timezone: jiff::tz::TimeZone,
    /// Default access-token lifetime.
    pub token_ttl_ms: i64,
    /// Hard maximum token lifetime.
    pub token_max_ttl_ms: i64,
    /// Audience bound into tokens.
    pub audience: String,
    /// Largest body buffered for policy.
    pub max_body_bytes: usize,
    /// Upstream connect timeout.
    pub connect_timeout_ms: u64,
    /// Upstream total timeout.
    pub request_timeout_ms: u64,
    /// Default approval expiry.
    pub approval_expiry_ms: i64,
    /// Longest `Prefer: wait` honoured.
    pub max_approval_wait_ms: u64,
    /// Owners may approve their own identities' requests.
    pub allow_owner_approval: bool,
    /// Approval requests per identity per hour.
    pub max_approval_requests_per_hour: i64,
    /// Longest just-in-time elevation that may be requested.
    pub max_elevation_ms: i64,
    /// How often expired grants and approval requests are swept.
    pub grant_cleanup_interval_ms: u64,
    /// How long ended grants stay listed before their rows are deleted.
    pub grant_retention_ms: i64,
    /// Approval notifications (webhook sink).
    pub webhook: crate::notify::WebhookSettings,
    /// Admins may reveal secret plaintext.
    pub allow_reveal: bool,
    /// How long decrypted secrets stay cached.
    pub secret_cache_ttl_ms: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            timezone: jiff::tz::TimeZone::UTC,
            token_ttl_ms: 15 * 60 * 1000,
            token_max_ttl_ms: 60 * 60 * 1000,
            audience: "steward".into(),
            max_body_bytes: 1024 * 1024,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 60_000,
            approval_expiry_ms: 60 * 60 * 1000,
            max_approval_wait_ms: 120_000,
            allow_owner_approval: false,
            max_approval_requests_per_hour: 20,
            max_elevation_ms: 8 * 60 * 60 * 1000,
            grant_cleanup_interval_ms: 30_000,
            grant_retention_ms: 7 * 24 * 60 * 60 * 1000,
            webhook: crate::notify::WebhookSettings::default(),
            allow_reveal: false,
            secret_cache_ttl_ms: 30_000,
        }
    }
}

/// The policy set in force, with the catalog it was validated against.
#[derive(Debug)]
pub struct ActivePolicy {
    /// Compiled, validated policies.
    pub compiled: Arc<CompiledPolicies>,
    /// Source texts, as stored.
    pub record: Option<PolicySetRecord>,
    /// Set when the last reload failed and the previous set stayed in force.
    pub last_error: Option<String>,
}

/// Everything shared across requests.
#[derive(Debug)]
pub struct Runtime {
    /// Persistent state.
    pub store: Store,
    /// The clock every decision reads.
    pub clock: Arc<dyn Clock>,
    /// Settings.
    pub settings: Settings,
    /// This instance's audit chain id.
    pub instance_id: String,
    /// Master keys.
    pub keyring: RwLock<Arc<Keyring>>,
    /// Decrypted secrets, briefly.
    pub secret_cache: SecretCache,
    /// Token verification with in-memory revocation state.
    pub tokens: TokenVerifier,
    /// The current token-signing key.
    pub signer: RwLock<Arc<SigningKey>>,
    /// The policy set in force.
    pub policy: RwLock<Arc<ActivePolicy>>,
    /// Upstream services by name.
    pub services: RwLock<Arc<ServiceTable>>,
    /// The audit log writer.
    pub audit: AuditWriter,
    /// Keyed hashing of sensitive audit fields.
    pub redactor: Redactor,
    /// Per-identity call counters for `context.rate`.
    pub rates: RateCounters,
    /// The upstream HTTP client.
    pub upstream: Upstream,
    /// Behavioural monitoring.
    pub monitor: steward_monitor::Monitor,
    /// Process start, for uptime.
    pub started: Instant,
    /// False after an audit write failed, until one succeeds again.
    pub audit_healthy: AtomicBool,
    /// Wakes approval waiters.
    pub approval_events: tokio::sync::broadcast::Sender<String>,
    /// Identities by id, loaded on first use and dropped on change.
    pub identities: RwLock<std::collections::HashMap<String, Arc<steward_store::models::Identity>>>,
    /// Approval notifications to deliver.
    pub notifier: Option<tokio::sync::mpsc::Sender<serde_json::Value>>,
    /// Secret metadata by name, cached as briefly as the values.
    pub secret_meta: RwLock<std::collections::HashMap<String, (Arc<SecretRecord>, i64)>>,
    /// Failed `/oauth/token` attempts per client.
    pub oauth_failures: crate::oauth::FailureLimiter,
    /// Cached upstream OAuth2 tokens.
    pub upstream_tokens: crate::oauth_client::UpstreamTokens,
    /// Monitoring observations to persist (alerts, suspensions).
    pub monitor_events: Option<tokio::sync::mpsc::Sender<(String, steward_monitor::Observation)>>,
    /// Where the master keys come from, so the keyring can be reloaded after an offline
    /// master-key rotation; `None` keeps the keyring fixed.
    pub key_provider: Option<Arc<dyn steward_vault::KeyProvider>>,
    /// The MCP gateway: sessions and upstream MCP servers.
    pub mcp: crate::mcp::McpHub,
}

/// Why a runtime operation failed; mapped to HTTP in one place ([`RuntimeError::to_problem`]).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The audit log could not be written; nothing was performed.
    #[error("audit log unavailable: {0}")]
    Audit(#[from] AuditError),
    /// Storage failed.
    #[error("store: {0}")]
    Store(#[from] steward_store::StoreError),
    /// Vault failure (missing key, tampered ciphertext).
    #[error("vault: {0}")]
    Vault(#[from] steward_vault::VaultError),
    /// Bad input from the caller.
    #[error("{0}")]
    Invalid(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A conflicting change.
    #[error("{0}")]
    Conflict(String),
    /// Not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Policy compilation/validation failed.
    #[error("{0}")]
    Policy(String),
    /// Token minting failed.
    #[error("token: {0}")]
    Token(#[from] steward_token::TokenError),
    /// Too many requests of some kind (approval anti-flood).
    #[error("{0}")]
    RateLimited(String),
    /// An external system Steward administers (a rotation webhook, a PostgreSQL server)
    /// failed or refused.
    #[error("{0}")]
    External(String),
}

impl RuntimeError {
    /// The one mapping from runtime errors to problem responses. Internal details are
    /// logged, never returned.
    pub fn to_problem(&self) -> Problem {
        match self {
            Self::Audit(e) => {
                tracing::error!(error = %e, "audit write failed; refusing");
                Problem::unavailable(
                    ErrorCode::AUDIT_UNAVAILABLE,
                    "the audit log cannot be written, so nothing was performed",
                )
            }
            Self::Store(steward_store::StoreError::NotFound(what)) => {
                Problem::not_found(what.clone())
            }
            Self::Store(steward_store::StoreError::Conflict(what)) => {
                Problem::conflict(what.clone())
            }
            Self::Store(e) => {
                tracing::error!(error = %e, "store failure");
                Problem::unavailable(e.code(), "the store is unavailable")
            }
            Self::Vault(e) => {
                tracing::error!(error = %e, "vault failure");
                Problem::unavailable(e.code(), "a credential could not be decrypted")
            }
            Self::Invalid(msg) | Self::Policy(msg) => Problem::bad_request(msg.clone()),
            Self::NotFound(msg) => Problem::not_found(msg.clone()),
            Self::Conflict(msg) => Problem::conflict(msg.clone()),
            Self::Forbidden(msg) => Problem::forbidden(msg.clone()),
            Self::Token(e) => Problem::bad_request(e.to_string()),
            Self::RateLimited(msg) => Problem::new(
                http::StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "Too many requests",
            )
            .detail(msg.clone()),
            Self::External(msg) => {
                tracing::warn!(error = %msg, "external system failed");
                Problem::new(
                    http::StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "An external system failed",
                )
                .detail(msg.clone())
            }
        }
    }
}

/// Random bytes from the system generator.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // INVARIANT: aws-lc's generator does not fail on supported platforms; if it ever
    // did, the all-zero id would collide and the insert would fail closed.
    let _ = aws_lc_rs::rand::fill(&mut buf);
    buf
}

/// A new random id with a prefix, 128 bits of entropy.
pub fn new_id(prefix: &str) -> String {
    steward_core::id::from_random(prefix, &random_bytes::<16>())
}

/// Hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

impl Runtime {
    /// Milliseconds now.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_millis()
    }

    /// Appends an audit event and waits until it is durable. Marks the audit path
    /// unhealthy on failure, so readiness reports it.
    pub async fn audit(&self, mut event: AuditEvent) -> Result<AppendReceipt, RuntimeError> {
        if event.instance_id.is_empty() {
            event.instance_id = self.instance_id.clone();
        }
        match self.audit.append(event, self.now_ms()).await {
            Ok(receipt) => {
                self.audit_healthy.store(true, Ordering::Relaxed);
                Ok(receipt)
            }
            Err(e) => {
                self.audit_healthy.store(false, Ordering::Relaxed);
                metrics::counter!("steward_audit_failures_total").increment(1);
                Err(RuntimeError::Audit(e))
            }
        }
    }

    /// Audits an admin mutation before it is applied; if the record cannot be written
    /// the mutation must not happen.
    pub async fn audit_admin(
        &self,
        admin: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<AppendReceipt, RuntimeError> {
        let mut event = AuditEvent::new(
            EventKind::AdminMutation,
            Actor::new(ActorKind::Admin, admin),
        );
        event.operation = Some(action.to_owned());
        event.resource = Some(target.to_owned());
        event.detail = detail;
        self.audit(event).await
    }

    /// An identity by id, from memory when possible.
    pub async fn identity(
        &self,
        id: &str,
    ) -> Result<Option<Arc<steward_store::models::Identity>>, RuntimeError> {
        if let Some(found) = self.identities.read().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(Some(found));
        }
        let Some(identity) = self.store.identity_get(id).await? else {
            return Ok(None);
        };
        let identity = Arc::new(identity);
        if let Ok(mut map) = self.identities.write() {
            map.insert(id.to_owned(), Arc::clone(&identity));
        }
        Ok(Some(identity))
    }

    /// Forgets a cached identity after it changed.
    pub fn invalidate_identity(&self, id: &str) {
        if let Ok(mut map) = self.identities.write() {
            map.remove(id);
        }
    }

    /// The policy set in force.
    pub fn active_policy(&self) -> Arc<ActivePolicy> {
        self.policy
            .read()
            .map(|p| Arc::clone(&p))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// The services in force.
    pub fn service_table(&self) -> Arc<ServiceTable> {
        self.services
            .read()
            .map(|s| Arc::clone(&s))
            .unwrap_or_else(|s| Arc::clone(&s.into_inner()))
    }

    /// The master keyring.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring
            .read()
            .map(|k| Arc::clone(&k))
            .unwrap_or_else(|k| Arc::clone(&k.into_inner()))
    }

    /// The current signing key.
    pub fn signer(&self) -> Arc<SigningKey> {
        self.signer
            .read()
            .map(|k| Arc::clone(&k))
            .unwrap_or_else(|k| Arc::clone(&k.into_inner()))
    }

    /// Builds the catalog from the stored services.
    pub fn catalog(&self) -> Catalog {
        self.service_table().catalog()
    }

    /// Compiles `sources` with the current catalog and active grants, without installing.
    pub async fn compile_policies(
        &self,
        sources: &[PolicySource],
        version: u64,
    ) -> Result<CompiledPolicies, RuntimeError> {
        let mut catalog = self.catalog();
        let mut labels: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for identity in self.store.identity_list(None).await? {
            labels.extend(identity.labels.keys().cloned());
        }
        catalog.identity_labels = labels.into_iter().collect();
        let mut grants = self.active_grants().await?;
        loop {
            match steward_policy::compile_with_grants(&catalog, sources, &grants, version) {
                // A grant that no longer fits the catalog (a service changed) must not keep
                // the policy set from loading: leave it out and say so.
                Err(steward_policy::PolicyError::InvalidGrant { id, message })
                    if grants.iter().any(|g| g.id == id) =>
                {
                    tracing::warn!(grant = %id, error = %message, "leaving out a grant that does not compile");
                    grants.retain(|g| g.id != id);
                }
                other => return other.map_err(|e| RuntimeError::Policy(e.to_string())),
            }
        }
    }

    /// Grants (just-in-time elevation, approve-similar) that are active and unexpired.
    pub async fn active_grants(&self) -> Result<Vec<Grant>, RuntimeError> {
        let now = self.now_ms();
        let mut grants = Vec::new();
        for g in self.store.grant_list(None).await? {
            if g.status != "active" || g.expires_at <= now {
                continue;
            }
            match crate::grants::to_policy_grant(&g) {
                Ok(grant) => grants.push(grant),
                Err(e) => tracing::warn!(grant = %g.id, error = %e, "skipping malformed grant"),
            }
        }
        Ok(grants)
    }

    /// Reloads services and the latest policy set from the store and swaps them in
    /// atomically. If the new set does not compile, the last good set stays in force.
    pub async fn reload(&self) -> Result<(), RuntimeError> {
        let services = ServiceTable::load(&self.store).await?;
        if let Ok(mut guard) = self.services.write() {
            *guard = Arc::new(services);
        }
        self.reload_policy().await
    }

    /// Recompiles the latest stored policy set; keeps the last good set on failure.
    pub async fn reload_policy(&self) -> Result<(), RuntimeError> {
        let record = self.store.policy_set_latest().await?;
        let sources: Vec<PolicySource> = record
            .as_ref()
            .map(|r| {
                r.policies
                    .iter()
                    .map(|p| PolicySource::new(p.id.clone(), p.text.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let version = record
            .as_ref()
            .map(|r| u64::try_from(r.version).unwrap_or(0))
            .unwrap_or(0);
        match self.compile_policies(&sources, version).await {
            Ok(compiled) => {
                if let Ok(mut guard) = self.policy.write() {
                    *guard = Arc::new(ActivePolicy {
                        compiled: Arc::new(compiled),
                        record,
                        last_error: None,
                    });
                }
                // What each agent may list depends on the policy.
                self.mcp.lists_changed(self.now_ms());
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "policy reload failed; the last good set stays in force");
                let previous = self.active_policy();
                if let Ok(mut guard) = self.policy.write() {
                    *guard = Arc::new(ActivePolicy {
                        compiled: Arc::clone(&previous.compiled),
                        record: previous.record.clone(),
                        last_error: Some(e.to_string()),
                    });
                }
                Err(e)
            }
        }
    }

    /// Seals and stores a new secret or a new version of an existing one.
    pub async fn put_secret(
        &self,
        name: &str,
        value: &[u8],
        rotation: Option<serde_json::Value>,
        expires_at: Option<i64>,
        grace_ms: Option<i64>,
    ) -> Result<SecretRecord, RuntimeError> {
        let now = self.now_ms();
        // A master-key rotation may have started since this process loaded its keyring:
        // never seal new values under a version that is being retired.
        self.refresh_keyring_if_rotated().await?;
        let keyring = self.keyring();
        let master = keyring.current();
        let fingerprint = steward_scan::fingerprint(value);
        let next_rotation_at = rotation
            .as_ref()
            .and_then(|r| crate::rotation::next_rotation_at(r, now));
        match self.store.secret_by_name(name).await? {
            None => {
                let id = new_id("sec");
                let sealed = steward_vault::seal(master, &id, 1, value)?;
                let record = SecretRecord {
                    id: id.clone(),
                    name: name.to_owned(),
                    current_version: 1,
                    fingerprint,
                    rotation,
                    created_at: now,
                    rotated_at: None,
                    expires_at,
                    next_rotation_at,
                    last_rotation_error: None,
                };
                let version = SecretVersion {
                    secret_id: id,
                    version: 1,
                    key_version: i64::from(master.version()),
                    sealed: sealed.to_bytes(),
                    created_at: now,
                    retire_at: None,
                };
                self.store.secret_create(&record, &version).await?;
                Ok(record)
            }
            Some(mut record) => {
                let next = record.current_version.saturating_add(1);
                let next_u32 = u32::try_from(next)
                    .map_err(|_| RuntimeError::Invalid("too many versions".into()))?;
                let sealed = steward_vault::seal(master, &record.id, next_u32, value)?;
                record.current_version = next;
                record.fingerprint = fingerprint;
                record.rotated_at = Some(now);
                if rotation.is_some() {
                    record.rotation = rotation;
                }
                if let Some(policy) = &record.rotation {
                    record.next_rotation_at = crate::rotation::next_rotation_at(policy, now);
                }
                record.expires_at = expires_at;
                record.last_rotation_error = None;
                let version = SecretVersion {
                    secret_id: record.id.clone(),
                    version: next,
                    key_version: i64::from(master.version()),
                    sealed: sealed.to_bytes(),
                    created_at: now,
                    retire_at: None,
                };
                self.store
                    .secret_add_version(
                        &record,
                        &version,
                        Some(now.saturating_add(grace_ms.unwrap_or(0))),
                    )
                    .await?;
                self.secret_cache.invalidate(&record.id);
                self.forget_secret(name);
                Ok(record)
            }
        }
    }

    /// Decrypts the current version of a secret (cached briefly in zeroizing memory).
    pub async fn secret_value(
        &self,
        name: &str,
    ) -> Result<(Arc<SecretRecord>, CachedSecret), RuntimeError> {
        let now = self.now_ms();
        // The name -> current version lookup is cached as briefly as the value, so the hot
        // path does no database read; a rotation here invalidates it at once, one made by
        // another instance is seen within the cache TTL.
        let hit = self.secret_meta.read().ok().and_then(|m| {
            m.get(name)
                .filter(|(_, at)| now.saturating_sub(*at) < self.settings.secret_cache_ttl_ms)
                .map(|(r, _)| Arc::clone(r))
        });
        let record = match hit {
            Some(record) => record,
            None => {
                let record = Arc::new(self.store.secret_by_name(name).await?.ok_or_else(|| {
                    RuntimeError::NotFound(format!("secret `{name}` does not exist"))
                })?);
                if let Ok(mut m) = self.secret_meta.write() {
                    m.insert(name.to_owned(), (Arc::clone(&record), now));
                }
                record
            }
        };
        if let Some(cached) = self.secret_cache.get(&record.id, now)
            && i64::from(cached.version()) == record.current_version
        {
            return Ok((record, cached));
        }
        let ticket = self.secret_cache.ticket();
        let version = self
            .store
            .secret_version(&record.id, record.current_version)
            .await?
            .ok_or_else(|| {
                RuntimeError::NotFound(format!("secret `{name}` has no current version"))
            })?;
        let sealed = Sealed::from_bytes(&version.sealed)?;
        let v = u32::try_from(version.version)
            .map_err(|_| RuntimeError::Invalid("bad version".into()))?;
        let value = self.open_sealed(&record.id, v, &sealed)?;
        let cached = self.secret_cache.insert(ticket, &record.id, v, value, now);
        Ok((record, cached))
    }

    /// Drops cached metadata of a secret after it changed.
    pub fn forget_secret(&self, name: &str) {
        if let Ok(mut m) = self.secret_meta.write() {
            m.remove(name);
        }
    }

    /// Reloads every master-key version from the key provider and swaps the keyring in.
    /// Returns the new current version.
    pub fn reload_keyring(&self) -> Result<u32, RuntimeError> {
        let Some(provider) = &self.key_provider else {
            return Ok(self.keyring().current().version());
        };
        let keyring = provider.load()?;
        let current = keyring.current().version();
        if let Ok(mut guard) = self.keyring.write() {
            *guard = Arc::new(keyring);
        }
        tracing::info!(master_key.version = current, "master keyring reloaded");
        Ok(current)
    }

    /// Opens a sealed value. A value wrapped under a master-key version this process has not
    /// loaded (an offline rotation ran after start) triggers one keyring reload and a retry.
    pub fn open_sealed(
        &self,
        secret_id: &str,
        version: u32,
        sealed: &Sealed,
    ) -> Result<steward_core::SecretBytes, RuntimeError> {
        match steward_vault::open(&self.keyring(), secret_id, version, sealed) {
            Err(steward_vault::VaultError::UnknownKeyVersion { .. })
                if self.key_provider.is_some() =>
            {
                self.reload_keyring()?;
                Ok(steward_vault::open(
                    &self.keyring(),
                    secret_id,
                    version,
                    sealed,
                )?)
            }
            other => Ok(other?),
        }
    }

    /// Reloads the keyring when the stored check value names a newer master-key version than
    /// the one this process seals with (a rotation started elsewhere). Cheap; called before
    /// sealing and periodically.
    pub async fn refresh_keyring_if_rotated(&self) -> Result<(), RuntimeError> {
        let Some(check) = self.store.meta_get("vault.check_value").await? else {
            return Ok(());
        };
        let stored = check
            .split_once(':')
            .and_then(|(v, _)| v.parse::<u32>().ok())
            .unwrap_or(0);
        if stored > self.keyring().current().version() {
            self.reload_keyring()?;
        }
        Ok(())
    }

    /// Mints an access token for an identity.
    pub fn mint_token(
        &self,
        identity_id: &str,
        ttl_ms: Option<i64>,
        actor_chain: Vec<String>,
        scope: steward_token::Restriction,
    ) -> Result<(String, Claims), RuntimeError> {
        let now = self.now_ms();
        let ttl = ttl_ms
            .unwrap_or(self.settings.token_ttl_ms)
            .clamp(1_000, self.settings.token_max_ttl_ms);
        let mut claims = Claims::new(
            new_id("tok"),
            identity_id,
            self.settings.audience.clone(),
            now,
            now.saturating_add(ttl),
        );
        claims.actor_chain = actor_chain;
        claims.scope = scope;
        let token = steward_token::mint(&self.signer(), &claims)?;
        Ok((token, claims))
    }

    /// Loads revocation state (revoked tokens, suspended identities) into memory.
    pub async fn load_revocations(&self) -> Result<(), RuntimeError> {
        let now = self.now_ms();
        for (token_id, _identity) in self.store.token_revocations(now).await? {
            self.tokens.revoke_token(&token_id, None);
        }
        for identity in self.store.identity_list(None).await? {
            // Another instance may have changed it: drop a stale cached copy.
            let stale = self
                .identities
                .read()
                .ok()
                .and_then(|m| {
                    m.get(&identity.id).map(|cached| {
                        cached.updated_at != identity.updated_at || cached.status != identity.status
                    })
                })
                .unwrap_or(false);
            if stale {
                self.invalidate_identity(&identity.id);
            }
            match identity.status.as_str() {
                "suspended" => self.tokens.suspend_identity(&identity.id),
                "revoked" => self.tokens.revoke_identity(&identity.id),
                // A reinstatement made on another instance. Only a recent change is taken
                // as one, so a circuit-breaker suspension held in memory while it is being
                // persisted is not undone by a stale read.
                "active"
                    if now.saturating_sub(identity.updated_at) < 10_000
                        && self.tokens.revocations().identity_status(&identity.id)
                            == steward_token::IdentityStatus::Suspended =>
                {
                    self.tokens.reinstate_identity(&identity.id);
                }
                _ => {}
            }
            if identity.tokens_valid_after > 0 {
                self.tokens
                    .invalidate_tokens_issued_before(&identity.id, identity.tokens_valid_after);
            }
        }
        Ok(())
    }
}

/// Opens an internal sealed key with the keyring.
pub fn open_internal(
    keyring: &Keyring,
    id: &str,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, RuntimeError> {
    let sealed = Sealed::from_bytes(sealed)?;
    let value = steward_vault::open(keyring, id, 1, &sealed)?;
    use secrecy::ExposeSecret;
    Ok(Zeroizing::new(value.expose_secret().to_vec()))
}
