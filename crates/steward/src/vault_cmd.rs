//! `steward vault`: master-key rotation and verification, run against the data directory and
//! database directly (the same `--data-dir`, `--database` and `--config` as `serve`).
//!
//! `rotate-master-key` follows the crash-safe protocol of `steward_vault::key_provider`:
//!
//! 1. add master key `N+1` durably (the file provider fsyncs file and directory), then record
//!    its check value in `vault.check_value` (compare-and-swap), so every server that starts
//!    or seals from now on uses `N+1`;
//! 2. re-wrap every sealed value (secret versions, token-signing keys, the sealed internal
//!    keys in `meta`) with compare-and-swap writes, secret versions in batches of one
//!    transaction each;
//! 3. retire each older version once no row uses it.
//!
//! A `kill -9` anywhere leaves each row under a version whose key file exists. Running it
//! again resumes: while older key files remain, it does not start a new version but finishes
//! the rotation in progress. Running servers reload their keyring when they meet an unknown
//! key version, before sealing, and every few seconds when `vault.check_value` changes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use steward_store::{Store, mask_url};
use steward_vault::{Keyring, Sealed};

use crate::client::{OutputFormat, print_object};

/// The sealed internal keys kept in `meta` as `key.<name>` (vault id `<name>`, version 1).
pub const INTERNAL_META_KEYS: &[&str] = &["audit-hmac", "audit-checkpoint"];
const CHECK_VALUE_KEY: &str = "vault.check_value";

/// Where the vault lives.
#[derive(Debug, Clone)]
pub struct VaultTarget {
    /// The data directory (key files live in `<data dir>/keys`).
    pub data_dir: PathBuf,
    /// The database URL.
    pub database: String,
}

async fn open(
    target: &VaultTarget,
) -> Result<(
    Store,
    Keyring,
    std::sync::Arc<dyn steward_vault::KeyProvider>,
)> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let store = Store::open(&target.database)
        .await
        .map_err(|e| anyhow!("database {}: {e}", mask_url(&target.database)))?;
    let (keyring, provider) = crate::serve::unlock_vault(&store, &target.data_dir).await?;
    Ok((store, keyring, provider))
}

fn signing_vault_id(kid: &str) -> String {
    format!("token-signing:{kid}")
}

/// Runs (or resumes) a master-key rotation; returns the exit code.
pub async fn rotate_master_key(
    target: &VaultTarget,
    batch: usize,
    out: OutputFormat,
) -> Result<u8> {
    let (store, keyring, provider) = open(target).await?;
    let batch = i64::try_from(batch.clamp(1, 10_000)).unwrap_or(500);

    // Step 1: a new version, unless a rotation is already in progress (older keys remain).
    let newest = keyring.current().version();
    let in_progress = keyring.versions().any(|v| v < newest);
    let keyring = if in_progress {
        eprintln!("resuming the rotation to master key version {newest}");
        keyring
    } else {
        let next = provider
            .create_next_version()
            .map_err(|e| anyhow!("{e} ({})", e.code()))?;
        eprintln!("created master key version {}", next.current().version());
        next
    };
    let current = keyring.current();
    let current_version = current.version();
    let check = format!("{current_version}:{}", current.check_value());
    let stored = store
        .meta_get(CHECK_VALUE_KEY)
        .await?
        .ok_or_else(|| anyhow!("the vault check value is missing"))?;
    if stored != check {
        let stored_version: u32 = stored
            .split_once(':')
            .and_then(|(v, _)| v.parse().ok())
            .ok_or_else(|| anyhow!("corrupt vault check value"))?;
        if stored_version > current_version {
            bail!(
                "the database names master key version {stored_version}, newer than the newest key file ({current_version})"
            );
        }
        if !store.meta_cas(CHECK_VALUE_KEY, &stored, &check).await? {
            bail!("the vault check value changed concurrently; is another rotation running?");
        }
    }

    // Step 2: re-wrap. Secret versions first, in batches (one transaction each).
    let new_version = i64::from(current_version);
    let mut rewrapped = 0u64;
    loop {
        let rows = store
            .secret_versions_not_wrapped_by(new_version, batch)
            .await?;
        if rows.is_empty() {
            break;
        }
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let version = u32::try_from(row.version)
                .map_err(|_| anyhow!("secret {} has a bad version", row.secret_id))?;
            let sealed = Sealed::from_bytes(&row.sealed)
                .map_err(|e| anyhow!("secret {} v{}: {e}", row.secret_id, row.version))?;
            // `rewrap` authenticates the value first: a row that cannot be opened stops the run,
            // and nothing is retired.
            let new = steward_vault::rewrap(&keyring, current, &row.secret_id, version, &sealed)
                .map_err(|e| {
                    anyhow!(
                        "secret {} v{} cannot be re-wrapped: {e} ({})",
                        row.secret_id,
                        row.version,
                        e.code()
                    )
                })?;
            items.push((
                row.secret_id.clone(),
                row.version,
                row.key_version,
                new_version,
                new.to_bytes(),
            ));
        }
        rewrapped += store.secret_version_rewrap_batch(&items).await?;
    }
    // Token-signing keys and the internal keys in meta, each with its own compare-and-swap.
    let mut internal = 0u64;
    for (kid, sealed_bytes, _, _) in store.signing_keys().await? {
        let sealed =
            Sealed::from_bytes(&sealed_bytes).map_err(|e| anyhow!("signing key {kid}: {e}"))?;
        if sealed.key_version() == current_version {
            continue;
        }
        let new = steward_vault::rewrap(&keyring, current, &signing_vault_id(&kid), 1, &sealed)
            .map_err(|e| anyhow!("signing key {kid}: {e}"))?;
        if store
            .signing_key_rewrap(&kid, &sealed_bytes, &new.to_bytes())
            .await?
        {
            internal += 1;
        }
    }
    for name in INTERNAL_META_KEYS {
        let meta_key = format!("key.{name}");
        let Some(b64) = store.meta_get(&meta_key).await? else {
            continue;
        };
        let bytes = STANDARD
            .decode(b64.trim())
            .context("corrupt internal key")?;
        let sealed = Sealed::from_bytes(&bytes).map_err(|e| anyhow!("internal key {name}: {e}"))?;
        if sealed.key_version() == current_version {
            continue;
        }
        let new = steward_vault::rewrap(&keyring, current, name, 1, &sealed)
            .map_err(|e| anyhow!("internal key {name}: {e}"))?;
        if store
            .meta_cas(&meta_key, &b64, &STANDARD.encode(new.to_bytes()))
            .await?
        {
            internal += 1;
        }
    }

    // Step 3: retire every older version no row uses.
    let usage = key_version_usage(&store).await?;
    let mut retired = Vec::new();
    let mut kept = Vec::new();
    for version in keyring
        .versions()
        .filter(|v| *v < current_version)
        .collect::<Vec<_>>()
    {
        let using = usage.get(&version).copied().unwrap_or(0);
        match provider.retire_version(version, using) {
            Ok(()) => retired.push(version),
            Err(e) => {
                eprintln!("master key version {version} kept: {e}");
                kept.push(version);
            }
        }
    }
    store.close().await;
    let report = json!({
        "master_key_version": current_version,
        "rewrapped_secret_versions": rewrapped,
        "rewrapped_internal_keys": internal,
        "retired_versions": retired,
        "kept_versions": kept,
    });
    match out {
        OutputFormat::Json => print_object(out, &report),
        OutputFormat::Table => println!(
            "master key is now version {current_version}: re-wrapped {rewrapped} secret versions and {internal} internal keys; retired {retired:?}"
        ),
    }
    Ok(if kept.is_empty() { 0 } else { 1 })
}

/// Rows per master-key version: secret versions, signing keys and internal keys.
async fn key_version_usage(store: &Store) -> Result<BTreeMap<u32, u64>> {
    let mut usage: BTreeMap<u32, u64> = BTreeMap::new();
    for (version, n) in store.secret_key_versions().await? {
        let v = u32::try_from(version).unwrap_or(u32::MAX);
        *usage.entry(v).or_default() += u64::try_from(n).unwrap_or(0);
    }
    for (_, sealed, _, _) in store.signing_keys().await? {
        if let Ok(s) = Sealed::from_bytes(&sealed) {
            *usage.entry(s.key_version()).or_default() += 1;
        }
    }
    for name in INTERNAL_META_KEYS {
        if let Some(b64) = store.meta_get(&format!("key.{name}")).await?
            && let Some(s) = STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| Sealed::from_bytes(&b).ok())
        {
            *usage.entry(s.key_version()).or_default() += 1;
        }
    }
    Ok(usage)
}

/// Opens every sealed value and reports failures; returns the exit code (1 on any failure).
pub async fn verify(target: &VaultTarget, out: OutputFormat) -> Result<u8> {
    let (store, keyring, _) = open(target).await?;
    let names: BTreeMap<String, String> = store
        .secret_list()
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let mut failures: Vec<Value> = Vec::new();
    let mut checked = 0u64;
    let mut by_key_version: BTreeMap<u32, u64> = BTreeMap::new();
    let (mut after_id, mut after_version) = (String::new(), -1i64);
    loop {
        let rows = store
            .secret_versions_page(&after_id, after_version, 1000)
            .await?;
        let Some(last) = rows.last() else { break };
        after_id = last.secret_id.clone();
        after_version = last.version;
        for row in &rows {
            checked += 1;
            let result = Sealed::from_bytes(&row.sealed).and_then(|sealed| {
                *by_key_version.entry(sealed.key_version()).or_default() += 1;
                let version = u32::try_from(row.version).unwrap_or(u32::MAX);
                steward_vault::open(&keyring, &row.secret_id, version, &sealed).map(drop)
            });
            if let Err(e) = result {
                failures.push(json!({
                    "secret": names.get(&row.secret_id).cloned().unwrap_or_else(|| row.secret_id.clone()),
                    "version": row.version,
                    "key_version": row.key_version,
                    "error": e.to_string(),
                    "code": e.code().to_string(),
                }));
            }
        }
    }
    let mut internal = 0u64;
    for (kid, sealed, _, _) in store.signing_keys().await? {
        internal += 1;
        if let Err(e) =
            steward_gateway::runtime::open_internal(&keyring, &signing_vault_id(&kid), &sealed)
        {
            failures
                .push(json!({"internal": format!("signing key {kid}"), "error": e.to_string()}));
        }
    }
    for name in INTERNAL_META_KEYS {
        let Some(b64) = store.meta_get(&format!("key.{name}")).await? else {
            continue;
        };
        internal += 1;
        let opened = STANDARD
            .decode(b64.trim())
            .map_err(|e| e.to_string())
            .and_then(|b| {
                steward_gateway::runtime::open_internal(&keyring, name, &b)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = opened {
            failures.push(json!({"internal": format!("key.{name}"), "error": e}));
        }
    }
    store.close().await;
    let report = json!({
        "ok": failures.is_empty(),
        "checked_secret_versions": checked,
        "checked_internal_keys": internal,
        "by_key_version": by_key_version.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "master_key_versions": keyring.versions().collect::<Vec<_>>(),
        "failures": failures,
    });
    match out {
        OutputFormat::Json => print_object(out, &report),
        OutputFormat::Table => {
            println!(
                "checked {checked} secret versions and {internal} internal keys: {} failures",
                failures.len()
            );
            for f in &failures {
                println!("FAILED {f}");
            }
        }
    }
    Ok(if failures.is_empty() { 0 } else { 1 })
}
