//! `steward serve`: the composition root. Opens the store, unlocks the vault, wires the
//! runtime and serves the gateway and admin API until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use steward_core::{Clock, SystemClock};
use steward_gateway::audit_sink::SqlAuditStore;
use steward_gateway::runtime::{Runtime, Settings, open_internal, random_bytes};
use steward_gateway::service::ServiceTable;
use steward_store::{Store, mask_url};
use steward_token::{SigningKey, TokenVerifier, VerifyingKeys};
use steward_vault::{EnvKeyProvider, FileKeyProvider, KeyProvider, Keyring, SecretCache};
use zeroize::Zeroizing;

/// Everything `serve` needs, after merging flags, environment and the config file.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// Database URL.
    pub database: String,
    /// TLS cert/key/client CA.
    pub tls: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
    /// Allow plain HTTP on non-loopback.
    pub insecure_no_tls: bool,
    /// Drain timeout.
    pub shutdown_grace: Duration,
    /// Longest time a client may take to send request headers.
    pub header_read_timeout: Duration,
    /// Instance id override.
    pub instance_id: Option<String>,
    /// Runtime settings.
    pub settings: Settings,
    /// Audit batch window.
    pub audit_batch_window: Duration,
    /// Audit journal in front of the database (`None`: on for SQLite only).
    pub audit_journal: Option<bool>,
    /// Checkpoints, witness, streaming sink.
    pub audit: crate::audit_tasks::AuditOptions,
    /// Behavioural monitoring thresholds.
    pub monitor: steward_monitor::MonitorConfig,
    /// How often learned baselines are saved.
    pub monitor_snapshot_interval: Duration,
}

fn prepare_data_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory `{}`", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    // Prove we can read and write it now, rather than failing on the first request.
    let probe = dir.join(".steward-write-test");
    std::fs::write(&probe, b"ok")
        .with_context(|| format!("data directory `{}` is not writable", dir.display()))?;
    std::fs::read(&probe)
        .with_context(|| format!("data directory `{}` is not readable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn instance_id(dir: &Path, configured: Option<String>) -> Result<String> {
    if let Some(id) = configured {
        return Ok(id);
    }
    let path = dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = steward_gateway::runtime::new_id("ins");
            std::fs::write(&path, &id)
                .with_context(|| format!("cannot write `{}`", path.display()))?;
            Ok(id)
        }
    }
}

/// Unlocks the vault: never generates a key over existing encrypted data, and refuses a
/// key that does not match the data.
pub(crate) async fn unlock_vault(
    store: &Store,
    data_dir: &Path,
) -> Result<(Keyring, Arc<dyn KeyProvider>)> {
    let stored_check = store.meta_get("vault.check_value").await?;
    let data_exists = stored_check.is_some();
    let (keyring, provider): (Keyring, Arc<dyn KeyProvider>) =
        if std::env::var_os(steward_vault::key_provider::DEFAULT_KEY_VAR).is_some() {
            let provider = EnvKeyProvider::default();
            (
                provider.load().map_err(|e| anyhow!("{e}"))?,
                Arc::new(provider),
            )
        } else {
            let provider = FileKeyProvider::new(data_dir.join("keys"));
            (
                provider
                    .create_if_missing(data_exists)
                    .map_err(|e| anyhow!("{e} ({})", e.code()))?,
                Arc::new(provider),
            )
        };
    match stored_check {
        Some(check) => {
            // The stored check value names the key version that wrote it.
            let (version, value) = check
                .split_once(':')
                .ok_or_else(|| anyhow!("corrupt vault check value"))?;
            let version: u32 = version
                .parse()
                .map_err(|_| anyhow!("corrupt vault check value"))?;
            let key = keyring.get(version).ok_or_else(|| {
                anyhow!("master key version {version} is missing: the encrypted data cannot be opened ({})", steward_core::ErrorCode::VAULT_MASTER_KEY_MISSING)
            })?;
            key.verify_check_value(value)
                .map_err(|e| anyhow!("the master key does not match the existing data: {e}"))?;
        }
        None => {
            let current = keyring.current();
            store
                .meta_set_if_absent(
                    "vault.check_value",
                    &format!("{}:{}", current.version(), current.check_value()),
                )
                .await?;
        }
    }
    Ok((keyring, provider))
}

/// Loads or creates a sealed internal key stored in meta.
async fn internal_key(store: &Store, keyring: &Keyring, name: &str) -> Result<Zeroizing<Vec<u8>>> {
    let meta_key = format!("key.{name}");
    if let Some(b64) = store.meta_get(&meta_key).await? {
        let sealed = base64_decode(&b64)?;
        return open_internal(keyring, name, &sealed)
            .map_err(|e| anyhow!("cannot open internal key `{name}`: {e}"));
    }
    let value = Zeroizing::new(random_bytes::<32>().to_vec());
    let sealed =
        steward_vault::seal(keyring.current(), name, 1, &value).map_err(|e| anyhow!("{e}"))?;
    if !store
        .meta_set_if_absent(&meta_key, &base64_encode(&sealed.to_bytes()))
        .await?
    {
        // Another instance won the race: use its key.
        return Box::pin(internal_key(store, keyring, name)).await;
    }
    Ok(value)
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn base64_decode(s: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .context("corrupt stored key")
}

async fn signing_keys(
    store: &Store,
    keyring: &Keyring,
    now: i64,
    overlap_ms: i64,
) -> Result<(SigningKey, VerifyingKeys)> {
    steward_gateway::signing_keys::load(store, keyring, now, overlap_ms)
        .await
        .map_err(|e| anyhow!("token-signing keys: {e}"))
}

/// Creates the first admin token once per deployment and prints it.
async fn bootstrap(rt: &Runtime, listen: &SocketAddr, tls: bool) -> Result<()> {
    if !rt.store.admin_token_list().await?.is_empty() {
        return Ok(());
    }
    if !rt.store.meta_set_if_absent("bootstrap.done", "1").await? {
        return Ok(());
    }
    let (_token, raw) = steward_admin::create_admin_token_for_bootstrap(rt)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    let scheme = if tls { "https" } else { "http" };
    println!(
        "\nSteward is initialised. This admin token is shown ONCE; store it now:\n\n    {raw}\n\nNext steps:\n  export STEWARD_SERVER={scheme}://{listen}\n  export STEWARD_TOKEN={raw}\n  steward status\n  steward identity create my-agent --kind ai_agent\n  steward service add httpbin --base-url http://127.0.0.1:8000 --allow-http --allow-private\n  steward policy validate examples/policies/read-only\n"
    );
    Ok(())
}

/// A comma-separated list from the environment (empty when unset).
fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the server until a shutdown signal.
pub async fn run(opts: ServeOptions) -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if !opts.listen.ip().is_loopback() && opts.tls.is_none() && !opts.insecure_no_tls {
        bail!(
            "refusing to listen on non-loopback address {} without TLS: tokens would cross the network in clear. Use --tls-cert/--tls-key, or --insecure-no-tls if a TLS terminator sits in front",
            opts.listen
        );
    }
    prepare_data_dir(&opts.data_dir)?;
    // First, so that what starting up records (the audit indexer's lag, lease and secret
    // gauges set by the background tasks) is already counted.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| anyhow!("metrics: {e}"))?;
    // Each connection holds two descriptors (the second lets a call held for a human
    // notice a hang-up), so take the hard limit rather than a soft default of 1024.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
    let tls_config = match &opts.tls {
        Some((cert, key, ca)) => Some(crate::tls::server_config(cert, key, ca.as_deref())?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow!(
                    "address {} is already in use; pick another with --listen",
                    opts.listen
                )
            } else {
                anyhow!("cannot listen on {}: {e}", opts.listen)
            }
        })?;
    let store = Store::open(&opts.database)
        .await
        .map_err(|e| anyhow!("database {}: {e}", mask_url(&opts.database)))?;
    let (keyring, key_provider) = unlock_vault(&store, &opts.data_dir).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now_millis();
    let instance_id = instance_id(&opts.data_dir, opts.instance_id.clone())?;
    let audit_key = internal_key(&store, &keyring, "audit-hmac").await?;
    let checkpoint_seed = internal_key(&store, &keyring, "audit-checkpoint").await?;
    let checkpoint_signer = steward_audit::CheckpointSigner::from_seed(&checkpoint_seed)
        .map_err(|e| anyhow!("audit checkpoint key: {e}"))?;
    store
        .meta_set(
            steward_admin::AUDIT_PUBLIC_KEY_META,
            &hex::encode(checkpoint_signer.public_key()),
        )
        .await?;
    let (signer, verifying) =
        signing_keys(&store, &keyring, now, opts.settings.token_max_ttl_ms).await?;
    let sql_audit = SqlAuditStore::new(store.clone(), instance_id.clone());
    let journal = opts
        .audit_journal
        .unwrap_or(store.backend() == steward_store::Backend::Sqlite);
    let audit_store: Arc<dyn steward_audit::AuditStore> = if journal {
        Arc::new(
            steward_gateway::audit_journal::JournaledAuditStore::open(
                sql_audit,
                &opts.data_dir.join("audit.journal"),
                steward_gateway::audit_journal::JournalConfig::default(),
            )
            .await
            .map_err(|e| anyhow!("{e}"))?,
        )
    } else {
        Arc::new(sql_audit)
    };
    let writer_config = steward_audit::WriterConfig {
        batch_window: opts.audit_batch_window,
        max_batch: 256,
        queue_capacity: 8192,
        instance_id: instance_id.clone(),
    };
    // The journal's writer gets its own thread (see `spawn_writer_thread`); the SQL store
    // stays on the main runtime, where its connection pool lives.
    let audit = if journal {
        let spawn = steward_gateway::audit_journal::spawn_writer_thread()
            .map_err(|e| anyhow!("audit writer thread: {e}"))?;
        steward_audit::AuditWriter::start_with(audit_store, writer_config, spawn).await
    } else {
        steward_audit::AuditWriter::start(audit_store, writer_config).await
    }
    .map_err(|e| anyhow!("audit log: {e}"))?;
    let (notify_tx, notify_rx) = tokio::sync::mpsc::channel(1024);
    let (monitor_tx, monitor_rx) = tokio::sync::mpsc::channel(1024);
    let settings = opts.settings.clone();
    let rt = Arc::new(Runtime {
        store: store.clone(),
        clock: Arc::clone(&clock),
        instance_id: instance_id.clone(),
        keyring: RwLock::new(Arc::new(keyring)),
        secret_cache: SecretCache::new(settings.secret_cache_ttl_ms, 1024),
        tokens: TokenVerifier::new(verifying, settings.audience.clone(), 10_000),
        signer: RwLock::new(Arc::new(signer)),
        policy: RwLock::new(Arc::new(steward_gateway::runtime::ActivePolicy {
            compiled: Arc::new(
                steward_policy::compile(
                    &steward_policy::Catalog {
                        version: 1,
                        ..Default::default()
                    },
                    &[],
                    0,
                )
                .map_err(|e| anyhow!("{e}"))?,
            ),
            record: None,
            last_error: None,
        })),
        services: RwLock::new(Arc::new(ServiceTable::default())),
        audit,
        redactor: steward_audit::Redactor::new(&audit_key).map_err(|e| anyhow!("{e}"))?,
        rates: Default::default(),
        upstream: steward_gateway::upstream::Upstream::new(Duration::from_millis(
            settings.connect_timeout_ms,
        )),
        monitor: steward_monitor::Monitor::new(opts.monitor.clone())
            .map_err(|e| anyhow!("monitor: {e}"))?,
        started: Instant::now(),
        audit_healthy: AtomicBool::new(true),
        approval_events: tokio::sync::broadcast::channel(256).0,
        identities: RwLock::new(Default::default()),
        notifier: Some(notify_tx),
        monitor_events: Some(monitor_tx),
        oauth_failures: Default::default(),
        secret_meta: RwLock::new(Default::default()),
        upstream_tokens: Default::default(),
        key_provider: Some(key_provider),
        mcp: Default::default(),
        settings,
    });
    rt.mcp.configure(steward_gateway::mcp::McpConfig {
        listen: Some(opts.listen),
        allowed_origins: env_list("STEWARD_MCP_ALLOWED_ORIGINS"),
        allowed_hosts: env_list("STEWARD_MCP_ALLOWED_HOSTS"),
    });
    if let Err(e) = rt.reload().await {
        tracing::error!(error = %e, "initial policy load failed; serving with deny-all until fixed");
    }
    rt.load_revocations().await.map_err(|e| anyhow!("{e}"))?;
    crate::background::restore_monitor(&rt)
        .await
        .map_err(|e| anyhow!("monitor state: {e}"))?;
    // Before serving: close the intents a crash left without an outcome.
    let recovered = steward_gateway::audit_sink::recover_open_intents(
        &rt.store,
        &rt.audit,
        &instance_id,
        rt.now_ms(),
    )
    .await
    .map_err(|e| anyhow!("audit recovery: {e}"))?;
    if recovered > 0 {
        tracing::warn!(
            count = recovered,
            "marked intents without an outcome as outcome_unknown"
        );
    }
    crate::audit_tasks::spawn(Arc::clone(&rt), checkpoint_signer, opts.audit.clone());
    crate::background::spawn(
        Arc::clone(&rt),
        notify_rx,
        monitor_rx,
        opts.monitor_snapshot_interval,
    );
    crate::background::spawn_vault(Arc::clone(&rt));
    bootstrap(&rt, &opts.listen, tls_config.is_some()).await?;

    let app = crate::http::app(Arc::clone(&rt), metrics);
    tracing::info!(listen = %opts.listen, store = rt.store.backend().as_str(), database = %mask_url(&opts.database), instance = %instance_id, tls = tls_config.is_some(), "steward serving");
    eprintln!(
        "steward listening on {}://{}",
        if tls_config.is_some() {
            "https"
        } else {
            "http"
        },
        opts.listen
    );
    let served = crate::http::serve(
        listener,
        app,
        tls_config,
        opts.shutdown_grace,
        opts.header_read_timeout,
    )
    .await;
    // Stop the stdio MCP servers Steward started, however serving ended.
    rt.mcp.shutdown();
    served?;
    crate::background::save_monitor(&rt).await;
    rt.store.close().await;
    Ok(())
}
