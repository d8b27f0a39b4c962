//! Command definitions and dispatch.

// Reading a `serde_json::Value` with `v["key"]` yields `Null` for a missing key and never
// panics; this module only renders API responses, so the lint's concern does not apply.
#![allow(clippy::indexing_slicing)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::client::{Client, OutputFormat, print, print_object, query, seg};
use crate::config;

/// Steward: a governance gateway for non-human identities.
#[derive(Debug, Parser)]
#[command(name = "steward", version, about)]
pub struct Cli {
    /// Admin API of a running Steward.
    #[arg(
        long,
        env = "STEWARD_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// Admin bearer token.
    #[arg(long, env = "STEWARD_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    output: OutputFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway and admin API.
    Serve(ServeArgs),
    /// Check or describe configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Health, version, store and uptime of a running Steward.
    Status,
    /// Manage non-human identities.
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// Access tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Vault secrets (values are read from stdin or a file, never argv).
    #[command(subcommand)]
    Secret(SecretCmd),
    /// The vault itself: master-key rotation and verification (run against the data
    /// directory and database, like `serve`).
    #[command(subcommand)]
    Vault(VaultCmd),
    /// Upstream services.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Policies.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Human approvals.
    #[command(subcommand)]
    Approvals(ApprovalCmd),
    /// Just-in-time elevation: time-bound grants approved by a human.
    #[command(subcommand)]
    Elevation(ElevationCmd),
    /// Apply a declarative file of services, identities and policies.
    Apply(ApplyArgs),
    /// Find secrets in files, repositories and dumps.
    Scan(ScanCmd),
    /// Monitoring alerts.
    #[command(subcommand)]
    Alerts(crate::incident_cli::AlertsCmd),
    /// Incident response.
    #[command(subcommand)]
    Incident(crate::incident_cli::IncidentCmd),
    /// Credentials found by `steward scan --report-to`.
    #[command(subcommand)]
    Discovered(crate::incident_cli::DiscoveredCmd),
    /// The MCP gateway: tool pins, quarantined changes and their approval.
    #[command(subcommand)]
    Mcp(crate::mcp_cli::McpCmd),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Config file (default `./steward.toml` if it exists).
    #[arg(long, env = "STEWARD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "STEWARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address.
    #[arg(long, env = "STEWARD_LISTEN")]
    listen: Option<String>,
    /// Database URL (`sqlite://…` or `postgres://…`).
    #[arg(long, env = "STEWARD_DATABASE", hide_env_values = true)]
    database: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "STEWARD_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "STEWARD_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mTLS).
    #[arg(long, env = "STEWARD_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long, env = "STEWARD_INSECURE_NO_TLS")]
    insecure_no_tls: bool,
    /// Log as JSON lines.
    #[arg(long, env = "STEWARD_LOG_JSON")]
    log_json: bool,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Validate a steward.toml; errors name file, line and column.
    Check { file: PathBuf },
    /// Print the JSON schema of steward.toml.
    Schema,
}

#[derive(Debug, Subcommand)]
enum IdentityCmd {
    /// Create an identity.
    Create {
        name: String,
        #[arg(long, default_value = "ai_agent")]
        kind: String,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// `key=value`, repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// List identities.
    List,
    /// Show one identity (with keys and grants).
    Show { id: String },
    /// Update an identity.
    Update {
        id: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long)]
        observe_only: Option<bool>,
    },
    /// Suspend: all its tokens stop working at once.
    Suspend {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reinstate a suspended identity (a human, audited action).
    Reinstate {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Revoke for good: tokens and keys stop working.
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Create an API key (shown once).
    KeyCreate {
        id: String,
        #[arg(long)]
        expires_in_secs: Option<i64>,
    },
    /// List API keys.
    KeyList { id: String },
    /// Revoke an API key.
    KeyRevoke { id: String, key_id: String },
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Exchange an API key for an access token (client credentials).
    Get {
        /// Identity id or name.
        #[arg(long)]
        client_id: String,
        /// File holding the API key (`-` for stdin).
        #[arg(long, default_value = "-")]
        key_file: String,
        /// Space-separated services or `service:operation`s to restrict the token to.
        #[arg(long)]
        scope: Option<String>,
    },
    /// Narrow a token offline before handing it to a sub-agent.
    Attenuate {
        /// File holding the token (`-` for stdin).
        #[arg(long, default_value = "-")]
        token_file: String,
        /// Allowed services (repeatable).
        #[arg(long = "service")]
        services: Vec<String>,
        /// Allowed operations `service:operation` (repeatable).
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// Shorter lifetime in seconds from now.
        #[arg(long)]
        ttl_secs: Option<i64>,
    },
    /// Revoke one token by id.
    Revoke { token_id: String },
    /// Decode a token WITHOUT verifying it and print its claims (never its proof key).
    Inspect {
        /// File holding the token (`-` for stdin).
        #[arg(long, default_value = "-")]
        token_file: String,
    },
    /// Rotate the token-signing key; the old key still verifies during the overlap window.
    RotateSigningKey {
        /// How long the old key keeps verifying (default: the maximum token lifetime).
        #[arg(long)]
        overlap_secs: Option<i64>,
    },
    /// List token-signing key ids and their overlap windows.
    SigningKeys,
}

#[derive(Debug, Subcommand)]
enum SecretCmd {
    /// Set a secret's value from stdin or `--file` (never from argv).
    Set {
        name: String,
        #[arg(long)]
        file: Option<PathBuf>,
        /// Expiry (RFC 3339) for reminders.
        #[arg(long)]
        expires_at: Option<String>,
        /// Rotation policy as JSON, e.g. `{"interval_secs": 86400, "grace_secs": 300,
        /// "provider": {"webhook": {"url": "https://…", "hmac_secret": "NAME"}}}`.
        #[arg(long)]
        rotation: Option<String>,
        /// Seconds the previous version stays readable.
        #[arg(long)]
        grace_secs: Option<i64>,
    },
    /// List secrets (metadata only).
    List,
    /// Show a secret's metadata.
    Show { name: String },
    /// Print a secret's value (only when the server sets `[vault] allow_reveal`; audited).
    Reveal { name: String },
    /// Rotate a secret now with its rotation provider.
    Rotate { name: String },
    /// Import many secrets from a file of JSON lines `{"name": "…", "value": "…"}` (or
    /// `value_base64`), `-` for stdin.
    Import { file: String },
    /// Secrets due for rotation, failing rotation or expiring.
    Reminders,
}

#[derive(Debug, Args)]
struct VaultArgs {
    /// Config file (default `./steward.toml` if it exists).
    #[arg(long, env = "STEWARD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "STEWARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (`sqlite://…` or `postgres://…`).
    #[arg(long, env = "STEWARD_DATABASE", hide_env_values = true)]
    database: Option<String>,
}

#[derive(Debug, Subcommand)]
enum VaultCmd {
    /// Re-wrap every data key under a new master key (crash-safe; rerun to resume).
    RotateMasterKey {
        #[command(flatten)]
        target: VaultArgs,
        /// Secret versions re-wrapped per transaction.
        #[arg(long, default_value_t = 200)]
        batch: usize,
    },
    /// Open every sealed value and report any that fail.
    Verify {
        #[command(flatten)]
        target: VaultArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ServiceCmd {
    /// Add an HTTP service.
    Add(ServiceArgs),
    /// Update an HTTP service (replaces its definition).
    Update(ServiceArgs),
    /// List services.
    List,
    /// Show a service.
    Show { name: String },
    /// Remove a service.
    Remove { name: String },
    /// Import operations from an OpenAPI 3.0/3.1 file (JSON or YAML).
    ImportOpenapi { name: String, file: PathBuf },
}

#[derive(Debug, Args)]
struct ServiceArgs {
    name: String,
    #[arg(long)]
    base_url: String,
    /// `none`, `bearer`, `basic`, `header`, `query`, `oauth2` (client credentials).
    #[arg(long, default_value = "none")]
    auth: String,
    /// Vault secret for the credential (for `oauth2`: the client secret).
    #[arg(long)]
    secret: Option<String>,
    /// `oauth2`: the token endpoint Steward fetches upstream tokens from.
    #[arg(long)]
    token_url: Option<String>,
    /// `oauth2`: the client id.
    #[arg(long)]
    client_id: Option<String>,
    /// `oauth2`: the scope to request.
    #[arg(long)]
    scope: Option<String>,
    /// Header name (`header`), parameter (`query`) or user name (`basic`).
    #[arg(long)]
    auth_param: Option<String>,
    #[arg(long)]
    allow_http: bool,
    #[arg(long)]
    allow_private: bool,
    /// Forward requests that match no operation instead of denying them.
    #[arg(long)]
    allow_unmatched: bool,
    /// OpenAPI file to import.
    #[arg(long)]
    openapi: Option<PathBuf>,
    /// PEM file of CA certificates to verify the upstream with, instead of the system roots.
    #[arg(long)]
    ca_bundle: Option<PathBuf>,
    /// Vault secret holding a PEM client certificate chain and its private key, presented
    /// to the upstream (mutual TLS).
    #[arg(long)]
    client_cert_secret: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Validate a directory of `.cedar` files against its `catalog.yaml`.
    Validate { dir: PathBuf },
    /// Run a YAML file of test cases; non-zero exit on failure.
    Test {
        file: PathBuf,
        /// Policy directory (default: the test file's directory).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Explain a decision on the running server.
    Eval {
        #[arg(long)]
        identity: String,
        #[arg(long)]
        operation: String,
        #[arg(long)]
        args: Option<String>,
        #[arg(long)]
        at: Option<String>,
    },
    /// Replace the server's policy set with the `.cedar` files of a directory.
    Set {
        dir: PathBuf,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// Show the policy set in force.
    Get,
    /// Policy set versions.
    History,
    /// Roll back to a version.
    Rollback { version: i64 },
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Search the log.
    Search {
        #[arg(long)]
        identity: Option<String>,
        #[arg(long)]
        operation: Option<String>,
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Verify the hash chain (online, against the stored checkpoints), or exports offline
    /// with --file (several files are read in order, e.g. archives then the latest export).
    Verify {
        #[arg(long)]
        file: Vec<PathBuf>,
        /// A checkpoint (JSON), or a checkpoint file of JSON lines; repeatable.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// Ed25519 public key (hex or base64) that signed the checkpoints.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Signed checkpoints of a chain.
    Checkpoints {
        #[arg(long)]
        instance: Option<String>,
    },
    /// The public key that verifies checkpoints (hex).
    PublicKey,
    /// Merkle inclusion proof of a record (in the latest checkpoint's tree by default).
    Proof {
        seq: u64,
        #[arg(long)]
        tree_size: Option<u64>,
        #[arg(long)]
        instance: Option<String>,
    },
    /// Merkle consistency proof between two tree sizes.
    Consistency {
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: Option<u64>,
        #[arg(long)]
        instance: Option<String>,
    },
    /// Export the chain as JSON lines (verifiable offline) or OCSF, to stdout or --out.
    Export {
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "ocsf"])]
        format: String,
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        instance: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Export this instance's records before SEQ to FILE, then delete them from the store.
    Archive {
        #[arg(long)]
        before: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ElevationCmd {
    /// Ask, on an identity's behalf, for operations or services for a limited time; an
    /// approver decides with `steward approvals approve|deny`.
    Request {
        /// The identity (id or name).
        #[arg(long)]
        identity: String,
        /// `service:operation`, repeatable.
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// A whole service, repeatable.
        #[arg(long = "service")]
        services: Vec<String>,
        /// How long the grant lasts once approved.
        #[arg(long)]
        duration_secs: i64,
        /// Why it is needed (shown to approvers).
        #[arg(long)]
        justification: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApprovalCmd {
    /// List approval requests.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one.
    Show { id: String },
    /// Approve.
    Approve {
        id: String,
        #[arg(long)]
        reason: String,
        /// Also pre-approve similar requests for this many seconds.
        #[arg(long)]
        similar_for_secs: Option<i64>,
    },
    /// Deny.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Args)]
struct ApplyArgs {
    /// YAML or TOML file.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Show what would change.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct ScanCmd {
    #[command(flatten)]
    args: steward_scan::ScanArgs,
    /// Upload the findings (fingerprints and redacted previews, never secrets) to this
    /// Steward's inventory of discovered credentials; uses STEWARD_TOKEN.
    #[arg(long, value_name = "SERVER")]
    report_to: Option<String>,
    /// Name of this machine or repository in uploaded locations (default: the host name).
    #[arg(long, value_name = "NAME", requires = "report_to")]
    report_source: Option<String>,
}

fn client(cli: &Cli) -> Result<Client> {
    Client::new(&cli.server, cli.token.clone())
}

fn read_input(source: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    if source == "-" {
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
    } else {
        std::fs::File::open(source)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .with_context(|| format!("reading `{source}`"))?;
    }
    // A trailing newline from `echo` or an editor is not part of a secret.
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(buf)
}

fn labels(items: &[String]) -> Result<serde_json::Map<String, Value>> {
    let mut map = serde_json::Map::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| anyhow!("label `{item}` is not key=value"))?;
        map.insert(k.to_owned(), json!(v));
    }
    Ok(map)
}

/// Loads `.cedar` files and the catalog from a directory.
fn load_policy_dir(
    dir: &std::path::Path,
) -> Result<(steward_policy::Catalog, Vec<steward_policy::PolicySource>)> {
    let catalog_path = dir.join("catalog.yaml");
    let catalog = match std::fs::read_to_string(&catalog_path) {
        Ok(text) => steward_policy::Catalog::from_yaml(&text)
            .map_err(|e| anyhow!("{}: {e}", catalog_path.display()))?,
        Err(_) => steward_policy::Catalog {
            version: 1,
            ..Default::default()
        },
    };
    let mut sources = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading `{}`", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        let id = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        sources.push(steward_policy::PolicySource::new(id, text));
    }
    Ok((catalog, sources))
}

/// `steward.toml` from `--config`, else `./steward.toml` if it exists, else defaults.
fn load_raw_config(config: Option<&PathBuf>) -> Result<config::RawConfig> {
    let path = config.cloned().or_else(|| {
        let default = PathBuf::from("steward.toml");
        default.exists().then_some(default)
    });
    match &path {
        Some(path) => config::load(path).map_err(|e| anyhow!("{e}")),
        None => Ok(config::RawConfig {
            version: config::CONFIG_VERSION,
            ..Default::default()
        }),
    }
}

/// The data directory and database URL: flag or environment, then the file, then defaults
/// (`./steward-data` holding `steward.db`).
fn storage_location(
    data_dir: Option<&PathBuf>,
    database: Option<&String>,
    raw: &config::RawConfig,
) -> Result<(PathBuf, String)> {
    let data_dir = data_dir
        .cloned()
        .or(raw.server.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("steward-data"));
    let database = database
        .cloned()
        .or(raw.server.database.clone())
        .unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("steward.db").display()
            )
        });
    steward_store::Backend::from_url(&database).map_err(|e| anyhow!("{e}"))?;
    Ok((data_dir, database))
}

/// The data directory and database of `steward vault`, resolved like `serve` does.
fn vault_target(args: &VaultArgs) -> Result<crate::vault_cmd::VaultTarget> {
    let raw = load_raw_config(args.config.as_ref())?;
    let (data_dir, database) =
        storage_location(args.data_dir.as_ref(), args.database.as_ref(), &raw)?;
    Ok(crate::vault_cmd::VaultTarget { data_dir, database })
}

fn serve_options(args: &ServeArgs) -> Result<crate::serve::ServeOptions> {
    let raw = load_raw_config(args.config.as_ref())?;
    let (data_dir, database) =
        storage_location(args.data_dir.as_ref(), args.database.as_ref(), &raw)?;
    let listen_text = args
        .listen
        .clone()
        .or(raw.server.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen: SocketAddr = listen_text
        .parse()
        .map_err(|_| anyhow!("invalid listen address `{listen_text}`; expected IP:PORT"))?;
    let tls = match (
        args.tls_cert.clone(),
        args.tls_key.clone(),
        raw.server.tls.as_ref(),
    ) {
        (Some(c), Some(k), _) => Some((c, k, args.tls_client_ca.clone())),
        (None, None, Some(t)) => Some((
            t.cert.clone(),
            t.key.clone(),
            args.tls_client_ca.clone().or(t.client_ca.clone()),
        )),
        (None, None, None) => None,
        _ => bail!("--tls-cert and --tls-key must be given together"),
    };
    let mut settings = steward_gateway::runtime::Settings::default();
    if let Some(tz) = &raw.policy.timezone {
        settings.timezone =
            jiff::tz::TimeZone::get(tz).map_err(|_| anyhow!("unknown time zone `{tz}`"))?;
    }
    if let Some(v) = raw.tokens.ttl_secs {
        settings.token_ttl_ms = i64::try_from(v).unwrap_or(i64::MAX / 2) * 1000;
    }
    if let Some(v) = raw.tokens.max_ttl_secs {
        settings.token_max_ttl_ms = i64::try_from(v).unwrap_or(i64::MAX / 2) * 1000;
    }
    if let Some(a) = &raw.tokens.audience {
        settings.audience = a.clone();
    }
    if let Some(v) = raw.gateway.max_body_bytes {
        settings.max_body_bytes = v;
    }
    if let Some(v) = raw.gateway.connect_timeout_ms {
        settings.connect_timeout_ms = v;
    }
    if let Some(v) = raw.gateway.request_timeout_ms {
        settings.request_timeout_ms = v;
    }
    if let Some(v) = raw.gateway.max_approval_wait_secs {
        settings.max_approval_wait_ms = v * 1000;
    }
    if let Some(v) = raw.approvals.default_expiry_secs {
        settings.approval_expiry_ms = i64::try_from(v).unwrap_or(3600) * 1000;
    }
    if let Some(v) = raw.approvals.allow_owner_approval {
        settings.allow_owner_approval = v;
    }
    if let Some(v) = raw.approvals.max_requests_per_hour {
        settings.max_approval_requests_per_hour = i64::from(v);
    }
    let default_public_url = format!(
        "{}://{listen}",
        if tls.is_some() { "https" } else { "http" }
    );
    crate::webhook::configure(&raw.approvals, &mut settings, &default_public_url)?;
    if let Some(v) = raw.vault.allow_reveal {
        settings.allow_reveal = v;
    }
    let syslog = raw
        .audit
        .syslog_addr
        .as_deref()
        .map(crate::audit_tasks::SyslogTarget::parse)
        .transpose()
        .map_err(|e| anyhow!("[audit] syslog_addr: {e}"))?;
    let log_json = args.log_json || raw.log.format.as_deref() == Some("json");
    crate::logging::init(log_json, raw.log.level.as_deref().unwrap_or("info"));
    Ok(crate::serve::ServeOptions {
        data_dir,
        listen,
        database,
        tls,
        insecure_no_tls: args.insecure_no_tls || raw.server.insecure_no_tls.unwrap_or(false),
        shutdown_grace: Duration::from_secs(raw.server.shutdown_grace_secs.unwrap_or(30)),
        header_read_timeout: Duration::from_secs(
            raw.server.header_read_timeout_secs.unwrap_or(30).max(1),
        ),
        instance_id: raw.server.instance_id.clone(),
        settings,
        audit_batch_window: Duration::from_millis(raw.audit.batch_window_ms.unwrap_or(0)),
        audit_journal: raw.audit.journal,
        audit: crate::audit_tasks::AuditOptions {
            policy: steward_audit::CheckpointPolicy {
                every_records: raw.audit.checkpoint_every_records.unwrap_or(1000).max(1),
                every_ms: i64::try_from(raw.audit.checkpoint_every_secs.unwrap_or(60).max(1))
                    .unwrap_or(60)
                    .saturating_mul(1000),
            },
            checkpoint_file: raw.audit.checkpoint_file.clone(),
            witness_url: raw.audit.witness_url.clone(),
            sink_url: raw.audit.sink_url.clone(),
            syslog_tls: match &syslog {
                Some(target) if target.transport == crate::audit_tasks::SyslogTransport::Tls => {
                    Some(
                        crate::tls::syslog_client_config(
                            raw.audit.syslog_ca_file.as_deref(),
                            raw.audit
                                .syslog_client_cert_file
                                .as_deref()
                                .zip(raw.audit.syslog_client_key_file.as_deref()),
                        )
                        .context("[audit] syslog TLS settings")?,
                    )
                }
                _ => None,
            },
            syslog,
        },
        monitor: raw
            .monitor
            .to_monitor_config()
            .map_err(|e| anyhow!("[monitor]: {e}"))?,
        monitor_snapshot_interval: Duration::from_secs(
            raw.monitor.snapshot_interval_secs.unwrap_or(60).max(1),
        ),
    })
}

/// Runs a command; returns the process exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    let out = cli.output;
    match &cli.command {
        Command::Serve(args) => {
            let opts = serve_options(args)?;
            crate::serve::run(opts).await?;
        }
        Command::Config(ConfigCmd::Check { file }) => match config::load(file) {
            Ok(_) => println!("{}: ok", file.display()),
            Err(e) => {
                eprintln!("{e}");
                return Ok(1);
            }
        },
        Command::Config(ConfigCmd::Schema) => {
            println!("{}", serde_json::to_string_pretty(&config::json_schema())?);
        }
        Command::Status => {
            let v = client(&cli)?.get("/admin/v1/status").await?;
            print_object(out, &v);
        }
        Command::Identity(cmd) => identity(&cli, cmd).await?,
        Command::Token(cmd) => return token(&cli, cmd).await,
        Command::Secret(cmd) => secret(&cli, cmd).await?,
        Command::Vault(VaultCmd::RotateMasterKey { target, batch }) => {
            return crate::vault_cmd::rotate_master_key(&vault_target(target)?, *batch, out).await;
        }
        Command::Vault(VaultCmd::Verify { target }) => {
            return crate::vault_cmd::verify(&vault_target(target)?, out).await;
        }
        Command::Service(cmd) => service(&cli, cmd).await?,
        Command::Policy(cmd) => return policy(&cli, cmd).await,
        Command::Audit(cmd) => return audit(&cli, cmd).await,
        Command::Approvals(cmd) => approvals(&cli, cmd).await?,
        Command::Elevation(ElevationCmd::Request {
            identity,
            operations,
            services,
            duration_secs,
            justification,
        }) => {
            let body = json!({"operations": operations, "services": services, "duration_secs": duration_secs, "justification": justification});
            let v = client(&cli)?
                .post(
                    &format!("/admin/v1/identities/{}/elevations", seg(identity)),
                    &body,
                )
                .await?;
            print_object(out, &v);
        }
        Command::Apply(args) => {
            let text = std::fs::read_to_string(&args.file)
                .with_context(|| format!("reading `{}`", args.file.display()))?;
            let document: Value = if args.file.extension().is_some_and(|e| e == "toml") {
                toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", args.file.display()))?
            } else {
                serde_yaml_ng::from_str(&text)
                    .map_err(|e| anyhow!("{}: {e}", args.file.display()))?
            };
            let v = client(&cli)?
                .post(
                    "/admin/v1/apply",
                    &json!({"document": document, "dry_run": args.dry_run}),
                )
                .await?;
            match out {
                OutputFormat::Json => print_object(out, &v),
                OutputFormat::Table => {
                    let changes = v["changes"].as_array().cloned().unwrap_or_default();
                    if changes.is_empty() {
                        println!("no changes");
                    }
                    for c in changes {
                        let verb = c["action"].as_str().unwrap_or("change");
                        let sign = match verb {
                            "create" => "+",
                            "update" | "replace" => "~",
                            _ => "-",
                        };
                        println!(
                            "{sign} {} {}{}",
                            c["kind"].as_str().unwrap_or(""),
                            c["name"].as_str().unwrap_or(""),
                            if args.dry_run { " (dry run)" } else { "" }
                        );
                        for f in c["fields"].as_array().into_iter().flatten() {
                            match f.get("before") {
                                Some(before) => println!(
                                    "    {}: {} -> {}",
                                    f["field"].as_str().unwrap_or(""),
                                    before,
                                    f["after"]
                                ),
                                None => println!(
                                    "    {}: {}",
                                    f["field"].as_str().unwrap_or(""),
                                    f["after"]
                                ),
                            }
                        }
                        for (what, mark) in [("added", "+"), ("removed", "-"), ("changed", "~")] {
                            for id in c["diff"][what].as_array().into_iter().flatten() {
                                println!("    {mark} policy {}", id.as_str().unwrap_or(""));
                            }
                        }
                    }
                }
            }
        }
        Command::Alerts(cmd) => crate::incident_cli::alerts(&client(&cli)?, out, cmd).await?,
        Command::Incident(cmd) => {
            return crate::incident_cli::incident(&client(&cli)?, out, cmd).await;
        }
        Command::Discovered(cmd) => {
            crate::incident_cli::discovered(&client(&cli)?, out, cmd).await?
        }
        Command::Mcp(cmd) => crate::mcp_cli::mcp(&client(&cli)?, out, cmd).await?,
        Command::Scan(cmd) => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            let outcome = steward_scan::run(&cmd.args, &mut lock).map_err(|e| anyhow!("{e}"))?;
            for w in &outcome.warnings {
                eprintln!("warning: {w}");
            }
            if let Some(server) = &cmd.report_to {
                let v = crate::incident_cli::report_findings(
                    server,
                    cli.token.clone(),
                    &outcome.report,
                    cmd.report_source.clone(),
                )
                .await?;
                eprintln!(
                    "reported {} findings to {server}: {} new, {} seen before",
                    outcome.report.findings.len(),
                    v["created"],
                    v["updated"]
                );
            }
            return Ok(u8::try_from(outcome.exit_code).unwrap_or(1));
        }
    }
    Ok(0)
}

async fn identity(cli: &Cli, cmd: &IdentityCmd) -> Result<()> {
    let c = client(cli)?;
    let out = cli.output;
    let cols = [
        ("id", "id"),
        ("name", "name"),
        ("kind", "kind"),
        ("owner", "owner"),
        ("status", "status"),
        ("labels", "labels"),
    ];
    match cmd {
        IdentityCmd::Create {
            name,
            kind,
            owner,
            description,
            labels: l,
        } => {
            let v = c
                .post("/admin/v1/identities", &json!({"name": name, "kind": kind, "owner": owner, "description": description, "labels": labels(l)?}))
                .await?;
            print_object(out, &v);
        }
        IdentityCmd::List => print(out, &c.get("/admin/v1/identities").await?, &cols),
        IdentityCmd::Show { id } => print_object(
            out,
            &c.get(&format!("/admin/v1/identities/{}", seg(id))).await?,
        ),
        IdentityCmd::Update {
            id,
            description,
            owner,
            labels: l,
            observe_only,
        } => {
            let mut body = json!({});
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(o) = owner {
                body["owner"] = json!(o);
            }
            if !l.is_empty() {
                body["labels"] = Value::Object(labels(l)?);
            }
            if let Some(o) = observe_only {
                body["observe_only"] = json!(o);
            }
            print_object(
                out,
                &c.patch(&format!("/admin/v1/identities/{}", seg(id)), &body)
                    .await?,
            );
        }
        IdentityCmd::Suspend { id, reason } => print_object(
            out,
            &c.post(
                &format!("/admin/v1/identities/{}/suspend", seg(id)),
                &json!({"reason": reason}),
            )
            .await?,
        ),
        IdentityCmd::Reinstate { id, reason } => print_object(
            out,
            &c.post(
                &format!("/admin/v1/identities/{}/reinstate", seg(id)),
                &json!({"reason": reason}),
            )
            .await?,
        ),
        IdentityCmd::Revoke { id, reason } => print_object(
            out,
            &c.post(
                &format!("/admin/v1/identities/{}/revoke", seg(id)),
                &json!({"reason": reason}),
            )
            .await?,
        ),
        IdentityCmd::KeyCreate {
            id,
            expires_in_secs,
        } => {
            let v = c
                .post(
                    &format!("/admin/v1/identities/{}/keys", seg(id)),
                    &json!({"expires_in_secs": expires_in_secs}),
                )
                .await?;
            match out {
                OutputFormat::Json => print_object(out, &v),
                OutputFormat::Table => {
                    eprintln!(
                        "API key for {} (shown once; store it now):",
                        v["client_id"].as_str().unwrap_or("")
                    );
                    println!("{}", v["key"].as_str().unwrap_or(""));
                }
            }
        }
        IdentityCmd::KeyList { id } => print(
            out,
            &c.get(&format!("/admin/v1/identities/{}/keys", seg(id)))
                .await?,
            &[
                ("id", "id"),
                ("prefix", "prefix"),
                ("created", "created_at"),
                ("expires", "expires_at"),
                ("last used", "last_used_at"),
                ("revoked", "revoked_at"),
            ],
        ),
        IdentityCmd::KeyRevoke { id, key_id } => print_object(
            out,
            &c.delete(&format!(
                "/admin/v1/identities/{}/keys/{}",
                seg(id),
                seg(key_id)
            ))
            .await?,
        ),
    }
    Ok(())
}

async fn token(cli: &Cli, cmd: &TokenCmd) -> Result<u8> {
    match cmd {
        TokenCmd::Get {
            client_id,
            key_file,
            scope,
        } => {
            let key = read_input(key_file)?;
            let key = String::from_utf8(key.to_vec()).context("the key is not UTF-8")?;
            let mut form = vec![
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", client_id.clone()),
                ("client_secret", key),
            ];
            if let Some(s) = scope {
                form.push(("scope", s.clone()));
            }
            let body: String = form
                .iter()
                .map(|(k, v)| format!("{k}={}", crate::client::seg(v)))
                .collect::<Vec<_>>()
                .join("&");
            let resp = reqwest::Client::new()
                .post(format!("{}/oauth/token", cli.server.trim_end_matches('/')))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .context("cannot reach steward")?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!(
                    "{}: {}",
                    v["error"].as_str().unwrap_or("error"),
                    v["error_description"].as_str().unwrap_or("")
                );
            }
            match cli.output {
                OutputFormat::Json => print_object(cli.output, &v),
                OutputFormat::Table => println!("{}", v["access_token"].as_str().unwrap_or("")),
            }
        }
        TokenCmd::Attenuate {
            token_file,
            services,
            operations,
            ttl_secs,
        } => {
            let token = read_input(token_file)?;
            let token = String::from_utf8(token.to_vec()).context("the token is not UTF-8")?;
            let mut r = steward_token::Restriction::default();
            if !services.is_empty() {
                r = r.services(services.clone());
            }
            if !operations.is_empty() {
                r = r
                    .operations_from_strs(operations.iter().map(String::as_str))
                    .map_err(|e| anyhow!("{e}"))?;
            }
            if let Some(ttl) = ttl_secs {
                r = r.expires_at_ms(jiff::Timestamp::now().as_millisecond() + ttl * 1000);
            }
            let narrowed =
                steward_token::attenuate(token.trim(), &r).map_err(|e| anyhow!("{e}"))?;
            println!("{narrowed}");
        }
        TokenCmd::Revoke { token_id } => {
            let v = client(cli)?
                .post(
                    &format!("/admin/v1/tokens/{}/revoke", seg(token_id)),
                    &json!({}),
                )
                .await?;
            print_object(cli.output, &v);
        }
        TokenCmd::Inspect { token_file } => {
            let token = read_input(token_file)?;
            let token = String::from_utf8(token.to_vec()).context("the token is not UTF-8")?;
            let token = token.trim();
            let (claims, restrictions) = steward_token::access_token::decode_unverified(token)
                .map_err(|e| anyhow!("{e}"))?;
            let kid = steward_token::access_token::key_id_unverified(token)
                .map_err(|e| anyhow!("{e}"))?;
            // Claims and restrictions only: the proof seed that allows attenuation is never printed.
            let show = |r: &steward_token::Restriction| {
                json!({
                    "services": r.services,
                    "operations": r.operations.as_ref().map(|ops| ops.iter().map(ToString::to_string).collect::<Vec<_>>()),
                    "expires_at_ms": r.expires_at_ms,
                })
            };
            let restrictions: Vec<Value> = restrictions.iter().map(show).collect();
            let v = json!({
                "verified": false,
                "token_id": claims.token_id,
                "identity_id": claims.identity_id,
                "audience": claims.audience,
                "issued_at_ms": claims.issued_at_ms,
                "expires_at_ms": claims.expires_at_ms,
                "key_id": kid,
                "actor_chain": claims.actor_chain,
                "scope": show(&claims.scope),
                "restrictions": restrictions,
            });
            print_object(cli.output, &v);
        }
        TokenCmd::RotateSigningKey { overlap_secs } => {
            let v = client(cli)?
                .post(
                    "/admin/v1/signing-keys/rotate",
                    &json!({"overlap_secs": overlap_secs}),
                )
                .await?;
            print_object(cli.output, &v);
        }
        TokenCmd::SigningKeys => print(
            cli.output,
            &client(cli)?.get("/admin/v1/signing-keys").await?,
            &[
                ("kid", "kid"),
                ("current", "current"),
                ("created", "created_at"),
                ("retired", "retired_at"),
                ("verifies until", "verify_until"),
            ],
        ),
    }
    Ok(0)
}

async fn secret(cli: &Cli, cmd: &SecretCmd) -> Result<()> {
    use base64::Engine;
    let c = client(cli)?;
    let out = cli.output;
    match cmd {
        SecretCmd::Set {
            name,
            file,
            expires_at,
            rotation,
            grace_secs,
        } => {
            let source = file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "-".into());
            let value = read_input(&source)?;
            if value.is_empty() {
                bail!("the secret value is empty");
            }
            let b64 =
                zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*value));
            let expires = expires_at
                .as_ref()
                .map(|t| t.parse::<jiff::Timestamp>().map(|t| t.as_millisecond()))
                .transpose()
                .map_err(|e| anyhow!("--expires-at: {e}"))?;
            let rotation: Option<Value> = rotation
                .as_ref()
                .map(|r| serde_json::from_str(r))
                .transpose()
                .context("--rotation is not JSON")?;
            let v = c
                .put(
                    &format!("/admin/v1/secrets/{}", seg(name)),
                    &json!({"value_base64": *b64, "expires_at": expires, "rotation": rotation, "grace_secs": grace_secs}),
                )
                .await?;
            print_object(out, &v);
        }
        SecretCmd::Reveal { name } => {
            let v = c
                .post(
                    &format!("/admin/v1/secrets/{}/reveal", seg(name)),
                    &json!({}),
                )
                .await?;
            match out {
                OutputFormat::Json => print_object(out, &v),
                OutputFormat::Table => {
                    let value = zeroize::Zeroizing::new(
                        base64::engine::general_purpose::STANDARD
                            .decode(v["value_base64"].as_str().unwrap_or_default())
                            .context("the server sent a malformed value")?,
                    );
                    use std::io::Write;
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&value)?;
                    stdout.write_all(b"\n")?;
                }
            }
        }
        SecretCmd::Rotate { name } => print_object(
            out,
            &c.post(
                &format!("/admin/v1/secrets/{}/rotate", seg(name)),
                &json!({}),
            )
            .await?,
        ),
        SecretCmd::Reminders => print_object(out, &c.get("/admin/v1/vault/reminders").await?),
        SecretCmd::Import { file } => {
            let text = read_input(file)?;
            let text = std::str::from_utf8(&text).context("the import file is not UTF-8")?;
            let mut items = Vec::new();
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let item: Value = serde_json::from_str(line)
                    .with_context(|| format!("{file}:{}: not a JSON object", i + 1))?;
                let name = item["name"]
                    .as_str()
                    .ok_or_else(|| anyhow!("{file}:{}: missing `name`", i + 1))?;
                let b64 = match (item["value"].as_str(), item["value_base64"].as_str()) {
                    (Some(v), None) => {
                        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(v))
                    }
                    (None, Some(b)) => zeroize::Zeroizing::new(b.to_owned()),
                    _ => bail!(
                        "{file}:{}: give exactly one of `value` and `value_base64`",
                        i + 1
                    ),
                };
                let mut entry = json!({"name": name, "value_base64": *b64});
                for key in ["rotation", "expires_at"] {
                    if !item[key].is_null() {
                        entry[key] = item[key].clone();
                    }
                }
                items.push(entry);
            }
            let (mut created, mut updated) = (0u64, 0u64);
            for chunk in items.chunks(2000) {
                let v = c
                    .post("/admin/v1/secrets", &json!({"items": chunk}))
                    .await?;
                created += v["created"].as_u64().unwrap_or(0);
                updated += v["updated"].as_u64().unwrap_or(0);
            }
            print_object(out, &json!({"created": created, "updated": updated}));
        }
        SecretCmd::List => print(
            out,
            &c.get("/admin/v1/secrets").await?,
            &[
                ("name", "name"),
                ("version", "current_version"),
                ("created", "created_at"),
                ("rotated", "rotated_at"),
                ("expires", "expires_at"),
                ("used by", "used_by"),
            ],
        ),
        SecretCmd::Show { name } => print_object(
            out,
            &c.get(&format!("/admin/v1/secrets/{}", seg(name))).await?,
        ),
    }
    Ok(())
}

fn service_body(args: &ServiceArgs) -> Result<Value> {
    let secret = || {
        args.secret
            .clone()
            .ok_or_else(|| anyhow!("--auth {} needs --secret", args.auth))
    };
    let auth = match args.auth.as_str() {
        "none" => json!({"type": "none"}),
        "bearer" => json!({"type": "bearer", "secret": secret()?}),
        "basic" => {
            json!({"type": "basic", "secret": secret()?, "username": args.auth_param.clone().ok_or_else(|| anyhow!("--auth basic needs --auth-param USER"))?})
        }
        "header" => {
            json!({"type": "header", "secret": secret()?, "name": args.auth_param.clone().ok_or_else(|| anyhow!("--auth header needs --auth-param NAME"))?})
        }
        "query" => {
            json!({"type": "query", "secret": secret()?, "param": args.auth_param.clone().ok_or_else(|| anyhow!("--auth query needs --auth-param NAME"))?})
        }
        "oauth2" => json!({
            "type": "oauth2_client_credentials",
            "secret": secret()?,
            "token_url": args.token_url.clone().ok_or_else(|| anyhow!("--auth oauth2 needs --token-url"))?,
            "client_id": args.client_id.clone().ok_or_else(|| anyhow!("--auth oauth2 needs --client-id"))?,
            "scope": args.scope,
        }),
        other => bail!("unknown --auth `{other}`"),
    };
    let openapi = args
        .openapi
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading `{}`", p.display())))
        .transpose()?;
    let ca_bundle = args
        .ca_bundle
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("reading `{}`", p.display())))
        .transpose()?;
    Ok(json!({
        "name": args.name,
        "kind": "http",
        "base_url": args.base_url,
        "auth": auth,
        "allow_http": args.allow_http,
        "allow_private": args.allow_private,
        "allow_unmatched": args.allow_unmatched,
        "openapi": openapi,
        "ca_bundle": ca_bundle,
        "client_cert_secret": args.client_cert_secret,
    }))
}

async fn service(cli: &Cli, cmd: &ServiceCmd) -> Result<()> {
    let c = client(cli)?;
    let out = cli.output;
    match cmd {
        ServiceCmd::Add(args) | ServiceCmd::Update(args) => {
            let v = c
                .put(
                    &format!("/admin/v1/services/{}", seg(&args.name)),
                    &service_body(args)?,
                )
                .await?;
            print_object(out, &json!({"name": args.name, "changed": v["changed"]}));
        }
        ServiceCmd::List => print(
            out,
            &c.get("/admin/v1/services").await?,
            &[
                ("name", "name"),
                ("kind", "kind"),
                ("base url", "base_url"),
                ("operations", "operations"),
            ],
        ),
        ServiceCmd::Show { name } => print_object(
            out,
            &c.get(&format!("/admin/v1/services/{}", seg(name))).await?,
        ),
        ServiceCmd::Remove { name } => print_object(
            out,
            &c.delete(&format!("/admin/v1/services/{}", seg(name)))
                .await?,
        ),
        ServiceCmd::ImportOpenapi { name, file } => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading `{}`", file.display()))?;
            let mut spec = c.get(&format!("/admin/v1/services/{}", seg(name))).await?;
            spec["openapi"] = json!(text);
            spec["operations"] = json!([]);
            let v = c
                .put(&format!("/admin/v1/services/{}", seg(name)), &spec)
                .await?;
            let ops = v["service"]["operations"].as_array().map_or(0, Vec::len);
            println!("imported {ops} operations into `{name}`");
        }
    }
    Ok(())
}

async fn policy(cli: &Cli, cmd: &PolicyCmd) -> Result<u8> {
    let out = cli.output;
    match cmd {
        PolicyCmd::Validate { dir } => {
            let (catalog, sources) = load_policy_dir(dir)?;
            match steward_policy::compile(&catalog, &sources, 0) {
                Ok(set) => println!("{}: {} policies valid", dir.display(), set.len()),
                Err(e) => {
                    eprintln!("{}: {e}", dir.display());
                    return Ok(1);
                }
            }
        }
        PolicyCmd::Test { file, policies } => {
            let dir = policies
                .clone()
                .or_else(|| file.parent().map(std::path::Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from("."));
            let (catalog, sources) = load_policy_dir(&dir)?;
            let set = steward_policy::compile(&catalog, &sources, 0)
                .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading `{}`", file.display()))?;
            let report = steward_policy::run_test_file(&set, &text)
                .map_err(|e| anyhow!("{}: {e}", file.display()))?;
            for name in &report.passed {
                println!("ok    {name}");
            }
            for failure in &report.failures {
                println!("FAIL  {failure:?}");
            }
            println!(
                "{} passed, {} failed",
                report.passed.len(),
                report.failures.len()
            );
            if !report.is_success() {
                return Ok(1);
            }
        }
        PolicyCmd::Eval {
            identity,
            operation,
            args,
            at,
        } => {
            let args: Option<Value> = args
                .as_ref()
                .map(|a| serde_json::from_str(a))
                .transpose()
                .context("--args is not JSON")?;
            let v = client(cli)?
                .post(
                    "/admin/v1/policies/eval",
                    &json!({"identity": identity, "operation": operation, "args": args, "at": at}),
                )
                .await?;
            match out {
                OutputFormat::Json => print_object(out, &v),
                OutputFormat::Table => {
                    println!("decision: {}", v["decision"].as_str().unwrap_or(""));
                    println!("{}", v["explanation"].as_str().unwrap_or(""));
                }
            }
            if v["decision"] != "allow" {
                return Ok(1);
            }
        }
        PolicyCmd::Set {
            dir,
            comment,
            dry_run,
        } => {
            let (_, sources) = load_policy_dir(dir)?;
            let policies: Vec<Value> = sources
                .iter()
                .map(|s| json!({"id": s.id, "text": s.text}))
                .collect();
            let v = client(cli)?
                .put(
                    "/admin/v1/policies",
                    &json!({"policies": policies, "comment": comment, "dry_run": dry_run}),
                )
                .await?;
            print_object(out, &v);
        }
        PolicyCmd::Get => print_object(out, &client(cli)?.get("/admin/v1/policies").await?),
        PolicyCmd::History => print(
            out,
            &client(cli)?.get("/admin/v1/policies/versions").await?,
            &[
                ("version", "version"),
                ("policies", "policies"),
                ("created", "created_at"),
                ("by", "created_by"),
                ("comment", "comment"),
            ],
        ),
        PolicyCmd::Rollback { version } => print_object(
            out,
            &client(cli)?
                .post("/admin/v1/policies/rollback", &json!({"version": version}))
                .await?,
        ),
    }
    Ok(0)
}

async fn audit(cli: &Cli, cmd: &AuditCmd) -> Result<u8> {
    let out = cli.output;
    match cmd {
        AuditCmd::Search {
            identity,
            operation,
            decision,
            since,
            until,
            limit,
        } => {
            let q = query(&[
                ("identity", identity.clone()),
                ("operation", operation.clone()),
                ("decision", decision.clone()),
                ("since", since.clone()),
                ("until", until.clone()),
                ("limit", Some(limit.to_string())),
            ]);
            let v = client(cli)?.get(&format!("/admin/v1/audit{q}")).await?;
            let rows: Vec<Value> = v["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|i| {
                    json!({"seq": i["seq"], "time": i["time_ms"], "kind": i["event"]["kind"], "actor": i["event"]["actor"]["id"],
                        "operation": i["event"]["operation"], "decision": i["event"]["decision"], "request": i["event"]["request_id"]})
                })
                .collect();
            match out {
                OutputFormat::Json => print_object(out, &v),
                OutputFormat::Table => print(
                    out,
                    &Value::Array(rows),
                    &[
                        ("seq", "seq"),
                        ("time", "time"),
                        ("kind", "kind"),
                        ("actor", "actor"),
                        ("operation", "operation"),
                        ("decision", "decision"),
                        ("request", "request"),
                    ],
                ),
            }
        }
        AuditCmd::Verify {
            file,
            checkpoint,
            public_key,
        } if !file.is_empty() => {
            return crate::audit_cli::verify_files(file, checkpoint, public_key.as_deref());
        }
        AuditCmd::Checkpoints { instance } => {
            let v = client(cli)?
                .get(&format!(
                    "/admin/v1/audit/checkpoints{}",
                    query(&[("instance", instance.clone())])
                ))
                .await?;
            print(
                out,
                &v["items"],
                &[
                    ("tree_size", "tree_size"),
                    ("time", "time_ms"),
                    ("root", "root_hash"),
                    ("key", "key_id"),
                ],
            );
        }
        AuditCmd::PublicKey => {
            let v = client(cli)?.get("/admin/v1/audit/public-key").await?;
            match out {
                OutputFormat::Json => print_object(out, &v),
                OutputFormat::Table => println!("{}", v["public_key"].as_str().unwrap_or_default()),
            }
        }
        AuditCmd::Proof {
            seq,
            tree_size,
            instance,
        } => {
            let q = query(&[
                ("tree_size", tree_size.map(|t| t.to_string())),
                ("instance", instance.clone()),
            ]);
            let v = client(cli)?
                .get(&format!("/admin/v1/audit/{seq}/proof{q}"))
                .await?;
            return Ok(crate::audit_cli::print_inclusion(out, &v));
        }
        AuditCmd::Consistency { from, to, instance } => {
            let q = query(&[
                ("from", Some(from.to_string())),
                ("to", to.map(|t| t.to_string())),
                ("instance", instance.clone()),
            ]);
            let v = client(cli)?
                .get(&format!("/admin/v1/audit/consistency{q}"))
                .await?;
            return Ok(crate::audit_cli::print_consistency(out, &v));
        }
        AuditCmd::Export {
            format,
            since,
            until,
            instance,
            out: file,
        } => {
            let q = query(&[
                ("format", Some(format.clone())),
                ("since", since.clone()),
                ("until", until.clone()),
                ("instance", instance.clone()),
            ]);
            crate::audit_cli::export(
                &client(cli)?,
                &format!("/admin/v1/audit/export{q}"),
                file.as_deref(),
            )
            .await?;
        }
        AuditCmd::Archive { before, out: file } => {
            return crate::audit_cli::archive(&client(cli)?, *before, file).await;
        }
        AuditCmd::Verify { .. } => {
            let v = client(cli)?.get("/admin/v1/audit/verify").await?;
            print_object(out, &v);
            if v["ok"] != true {
                return Ok(1);
            }
        }
    }
    Ok(0)
}

async fn approvals(cli: &Cli, cmd: &ApprovalCmd) -> Result<()> {
    let c = client(cli)?;
    let out = cli.output;
    match cmd {
        ApprovalCmd::List { status } => print(
            out,
            &c.get(&format!(
                "/admin/v1/approvals{}",
                query(&[("status", status.clone())])
            ))
            .await?,
            &[
                ("id", "id"),
                ("identity", "identity_id"),
                ("operation", "operation"),
                ("status", "status"),
                ("quorum", "quorum"),
                ("requested", "requested_at"),
                ("expires", "expires_at"),
            ],
        ),
        ApprovalCmd::Show { id } => print_object(
            out,
            &c.get(&format!("/admin/v1/approvals/{}", seg(id))).await?,
        ),
        ApprovalCmd::Approve {
            id,
            reason,
            similar_for_secs,
        } => print_object(
            out,
            &c.post(
                &format!("/admin/v1/approvals/{}/approve", seg(id)),
                &json!({"reason": reason, "similar_for_secs": similar_for_secs}),
            )
            .await?,
        ),
        ApprovalCmd::Deny { id, reason } => print_object(
            out,
            &c.post(
                &format!("/admin/v1/approvals/{}/deny", seg(id)),
                &json!({"reason": reason}),
            )
            .await?,
        ),
    }
    Ok(())
}
