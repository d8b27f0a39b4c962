//! Token-signing keys: loaded from the store (sealed by the vault), rotated with an overlap
//! window during which the retired key still verifies, and refreshed from the store so that
//! every instance sharing a database follows a rotation.

use serde::Serialize;
use steward_store::Store;
use steward_token::{SigningKey, VerifyingKeys};
use steward_vault::Keyring;
use zeroize::Zeroizing;

use crate::runtime::{Runtime, RuntimeError, new_id, open_internal};

/// The meta key holding the instant (ms) a retired key stops verifying.
fn verify_until_key(kid: &str) -> String {
    format!("signing_key.verify_until.{kid}")
}

fn vault_id(kid: &str) -> String {
    format!("token-signing:{kid}")
}

/// One signing key as the admin API shows it (never the secret half).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// Key id, carried in every token it signs.
    pub kid: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// When it stopped signing (ms), if retired.
    pub retired_at: Option<i64>,
    /// When it stops verifying (ms), if retired.
    pub verify_until: Option<i64>,
    /// Whether new tokens are signed with it.
    pub current: bool,
}

/// The signing keys in the store, newest first, with their verification windows.
/// A retired key without a recorded window verifies for `default_overlap_ms` after it retired.
pub async fn list(store: &Store, default_overlap_ms: i64) -> Result<Vec<KeyInfo>, RuntimeError> {
    let rows = store.signing_keys().await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut have_current = false;
    for (kid, _sealed, created_at, retired_at) in rows {
        let verify_until = match retired_at {
            Some(retired) => {
                let stored = store
                    .meta_get(&verify_until_key(&kid))
                    .await?
                    .and_then(|v| v.parse::<i64>().ok());
                Some(stored.unwrap_or_else(|| retired.saturating_add(default_overlap_ms)))
            }
            None => None,
        };
        // INVARIANT: the newest key that is not retired signs; older unretired keys (from
        // a start-up race between instances) only verify.
        let current = retired_at.is_none() && !have_current;
        have_current |= current;
        out.push(KeyInfo {
            kid,
            created_at,
            retired_at,
            verify_until,
            current,
        });
    }
    Ok(out)
}

/// Loads the current signing key and every key that still verifies. On an empty store a
/// first key is generated and stored sealed.
pub async fn load(
    store: &Store,
    keyring: &Keyring,
    now: i64,
    default_overlap_ms: i64,
) -> Result<(SigningKey, VerifyingKeys), RuntimeError> {
    if store.signing_keys().await?.is_empty() {
        insert_new(store, keyring, now).await?;
    }
    let infos = list(store, default_overlap_ms).await?;
    let sealed: std::collections::HashMap<String, Vec<u8>> = store
        .signing_keys()
        .await?
        .into_iter()
        .map(|(kid, sealed, _, _)| (kid, sealed))
        .collect();
    let mut verifying = VerifyingKeys::new();
    let mut current: Option<SigningKey> = None;
    for info in infos {
        let Some(sealed) = sealed.get(&info.kid) else {
            continue;
        };
        let seed = open_internal(keyring, &vault_id(&info.kid), sealed)?;
        let seed: Zeroizing<[u8; 32]> =
            Zeroizing::new(seed.as_slice().try_into().map_err(|_| {
                RuntimeError::Invalid(format!("signing key `{}` is malformed", info.kid))
            })?);
        let key = SigningKey::from_seed(&info.kid, &seed)?;
        verifying.insert(&info.kid, &key.public_key(), info.verify_until)?;
        if info.current {
            current = Some(key);
        }
    }
    let current =
        current.ok_or_else(|| RuntimeError::Invalid("no active token-signing key".into()))?;
    Ok((current, verifying))
}

async fn insert_new(store: &Store, keyring: &Keyring, now: i64) -> Result<String, RuntimeError> {
    let kid = new_id("kid");
    let (_key, seed) = SigningKey::generate(&kid)?;
    let sealed = steward_vault::seal(keyring.current(), &vault_id(&kid), 1, seed.as_slice())?;
    store
        .signing_key_insert(&kid, &sealed.to_bytes(), now)
        .await?;
    Ok(kid)
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    /// The new signing key.
    pub kid: String,
    /// Keys retired by this rotation.
    pub retired: Vec<String>,
    /// When the retired keys stop verifying (ms).
    pub verify_until: i64,
}

/// Rotates: stores a new key, retires every other active key with a verification window of
/// `overlap_ms`, and swaps the runtime's signer and verifying keys. The caller audits first.
pub async fn rotate(rt: &Runtime, overlap_ms: i64) -> Result<Rotation, RuntimeError> {
    let now = rt.now_ms();
    let overlap_ms = overlap_ms.max(0);
    let keyring = rt.keyring();
    let kid = insert_new(&rt.store, &keyring, now).await?;
    let verify_until = now.saturating_add(overlap_ms);
    let mut retired = Vec::new();
    for (old, _, _, retired_at) in rt.store.signing_keys().await? {
        if old == kid || retired_at.is_some() {
            continue;
        }
        // The window is recorded before the key is marked retired, so no instance ever
        // reads a retired key without its window.
        rt.store
            .meta_set(&verify_until_key(&old), &verify_until.to_string())
            .await?;
        rt.store.signing_key_retire(&old, now).await?;
        retired.push(old);
    }
    refresh(rt).await?;
    Ok(Rotation {
        kid,
        retired,
        verify_until,
    })
}

/// Reloads the keys from the store if they changed (another instance rotated).
pub async fn refresh(rt: &Runtime) -> Result<bool, RuntimeError> {
    let overlap = rt.settings.token_max_ttl_ms;
    let infos = list(&rt.store, overlap).await?;
    let current_kid = infos.iter().find(|i| i.current).map(|i| i.kid.clone());
    let mut stored: Vec<String> = infos.iter().map(|i| i.kid.clone()).collect();
    stored.sort();
    if current_kid.as_deref() == Some(rt.signer().key_id()) && stored == rt.tokens.keys().key_ids()
    {
        return Ok(false);
    }
    let (signer, verifying) = load(&rt.store, &rt.keyring(), rt.now_ms(), overlap).await?;
    // Verifiers learn the new key before the signer uses it.
    rt.tokens.replace_keys(verifying);
    if let Ok(mut guard) = rt.signer.write() {
        *guard = std::sync::Arc::new(signer);
    }
    tracing::info!(kid = %rt.signer().key_id(), "token-signing keys reloaded");
    Ok(true)
}
