//! `steward.toml`: raw user-facing structs, validated into typed configuration.
//!
//! Precedence, highest first: command-line flags, `STEWARD_*` environment variables,
//! the config file, built-in defaults. Flags and environment variables are merged by
//! clap before the file is consulted, so a value set in either wins over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

/// The config file format version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// `steward.toml` as written by users.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Config format version; must be 1.
    pub version: u32,
    /// Listener, storage and TLS.
    #[serde(default)]
    pub server: RawServer,
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
    /// Agent access tokens.
    #[serde(default)]
    pub tokens: RawTokens,
    /// Policy evaluation.
    #[serde(default)]
    pub policy: RawPolicy,
    /// HTTP gateway behaviour.
    #[serde(default)]
    pub gateway: RawGateway,
    /// Audit log.
    #[serde(default)]
    pub audit: RawAudit,
    /// Human approvals.
    #[serde(default)]
    pub approvals: RawApprovals,
    /// Vault.
    #[serde(default)]
    pub vault: RawVault,
    /// Behavioural monitoring and the circuit breaker.
    #[serde(default)]
    pub monitor: RawMonitor,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address for the gateway and admin API, e.g. `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Data directory (SQLite database, master key file).
    pub data_dir: Option<PathBuf>,
    /// Database URL: `sqlite://PATH` or `postgres://…`.
    pub database: Option<String>,
    /// Serve without TLS on a non-loopback address (tokens would cross the network in clear).
    pub insecure_no_tls: Option<bool>,
    /// Seconds to drain in-flight requests on shutdown.
    pub shutdown_grace_secs: Option<u64>,
    /// TLS for the listener.
    pub tls: Option<RawTls>,
    /// Identifier of this instance in audit chains (default: generated once and stored).
    pub instance_id: Option<String>,
    /// Seconds a client may take to send a request's headers before the connection is
    /// closed (30); bounds slow-loris clients.
    pub header_read_timeout_secs: Option<u64>,
}

/// `[server.tls]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate signed by it (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// A tracing filter such as `info` or `steward=debug`.
    pub level: Option<String>,
}

/// `[tokens]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    /// Default access-token lifetime in seconds (900).
    pub ttl_secs: Option<u64>,
    /// Hard maximum lifetime in seconds (3600).
    pub max_ttl_secs: Option<u64>,
    /// Audience bound into tokens (default: `steward:<instance family>`).
    pub audience: Option<String>,
}

/// `[policy]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// IANA time zone for `context.time`, e.g. `Europe/Berlin` (default UTC).
    pub timezone: Option<String>,
}

/// `[gateway]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Largest request body buffered for policy, in bytes (1 MiB).
    pub max_body_bytes: Option<usize>,
    /// Upstream connect timeout in milliseconds (5000).
    pub connect_timeout_ms: Option<u64>,
    /// Upstream total timeout in milliseconds (60000).
    pub request_timeout_ms: Option<u64>,
    /// Longest `Prefer: wait=N` honoured, in seconds (120).
    pub max_approval_wait_secs: Option<u64>,
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Extra milliseconds the group-commit writer waits to grow a batch (0, the default:
    /// appends that queue while a commit is in flight already share the next one).
    pub batch_window_ms: Option<u64>,
    /// Make records durable in an append-only journal file in the data directory (one
    /// `fdatasync` per batch) and index them into the database in the background. Default:
    /// on for SQLite; off for PostgreSQL, where each instance commits to the shared
    /// database directly so that no record depends on one instance's local disk.
    pub journal: Option<bool>,
    /// Sign a checkpoint after this many new records (1000), or after
    /// `checkpoint_every_secs`, whichever comes first.
    pub checkpoint_every_records: Option<u64>,
    /// Sign a checkpoint after this many seconds if records were added (60).
    pub checkpoint_every_secs: Option<u64>,
    /// Also append every checkpoint as a JSON line to this file (keep it on other storage).
    pub checkpoint_file: Option<PathBuf>,
    /// Also POST every checkpoint as JSON to this witness URL (retried with backoff).
    pub witness_url: Option<String>,
    /// Deliver every record at least once to this webhook (POST, JSON lines).
    pub sink_url: Option<String>,
    /// Deliver every record at least once to this syslog collector, as RFC 5424 messages:
    /// `tls://HOST:PORT` (TLS, RFC 5425), `tcp://HOST:PORT` (octet-counted frames,
    /// RFC 6587), `udp://HOST:PORT` or `HOST:PORT` (UDP, no acknowledgement).
    pub syslog_addr: Option<String>,
    /// PEM CA certificates that sign a `tls://` syslog collector's certificate (default:
    /// the system's trust roots).
    pub syslog_ca_file: Option<PathBuf>,
    /// PEM certificate (chain) Steward presents to a `tls://` syslog collector that
    /// authenticates its senders; needs `syslog_client_key_file`.
    pub syslog_client_cert_file: Option<PathBuf>,
    /// PEM private key of `syslog_client_cert_file`.
    pub syslog_client_key_file: Option<PathBuf>,
}

/// `[approvals]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    /// Default expiry of an approval request in seconds (3600).
    pub default_expiry_secs: Option<u64>,
    /// Let an owner approve requests from identities they own (false).
    pub allow_owner_approval: Option<bool>,
    /// Maximum approval requests per identity per hour (20).
    pub max_requests_per_hour: Option<u32>,
    /// Longest just-in-time elevation (`POST /v1/elevations`) in seconds (28800).
    pub max_elevation_secs: Option<u64>,
    /// Seconds between sweeps that mark expired grants and requests (30). Expired grants
    /// stop working at their expiry regardless: their policy carries it.
    pub grant_cleanup_interval_secs: Option<u64>,
    /// Days ended grants stay listed before they are deleted (7).
    pub grant_retention_days: Option<u64>,
    /// POST each new approval request to this URL.
    pub webhook_url: Option<String>,
    /// Name of the environment variable holding the webhook's HMAC key; deliveries are then
    /// signed with `Steward-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub webhook_secret_env: Option<String>,
    /// `json` (default) or `slack` (a Slack-compatible message with approve/deny links).
    pub webhook_format: Option<String>,
    /// Delivery attempts per notification, with exponential backoff (5).
    pub webhook_max_attempts: Option<u32>,
    /// First retry delay in milliseconds, doubled after each failure (500).
    pub webhook_initial_backoff_ms: Option<u64>,
    /// Public URL of this Steward for the links in notifications (default: the listen address).
    pub public_url: Option<String>,
}

/// `[vault]`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    /// Allow admins to reveal secret plaintext (false). Every reveal is audited.
    pub allow_reveal: Option<bool>,
}

/// `[monitor]`: the common knobs of behavioural monitoring. Every other threshold can be set
/// in `[monitor.detectors]`, which takes the monitor's full configuration (durations in
/// milliseconds, see the steward-monitor crate); the keys here override it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    /// Days an identity is only observed after its first call (7). Fractions are allowed.
    pub learning_days: Option<f64>,
    /// Calls an identity must have made before detectors run (100).
    pub learning_calls: Option<u64>,
    /// Whether the circuit breaker may suspend identities at all (true).
    pub breaker_enabled: Option<bool>,
    /// Suspend when the risk score reaches this value, 0-100 (90).
    pub breaker_score: Option<u8>,
    /// Suspend on any critical alert (true).
    pub breaker_on_critical: Option<bool>,
    /// Hours for the risk score to halve without new alerts (1).
    pub risk_half_life_hours: Option<f64>,
    /// Seconds between saves of the learned baselines (60). They are also saved on shutdown.
    pub snapshot_interval_secs: Option<u64>,
    /// The monitor's full configuration, for thresholds not named above.
    #[schemars(with = "Option<serde_json::Value>")]
    pub detectors: Option<steward_monitor::MonitorConfig>,
}

impl RawMonitor {
    /// The monitor configuration these settings describe, validated.
    pub fn to_monitor_config(&self) -> Result<steward_monitor::MonitorConfig, String> {
        const HOUR_MS: f64 = 3_600_000.0;
        let mut config = self.detectors.clone().unwrap_or_default();
        if let Some(days) = self.learning_days {
            if !(days.is_finite() && days >= 0.0) {
                return Err(format!("learning_days `{days}` must be zero or more"));
            }
            config.learning.period_ms = (days * 24.0 * HOUR_MS).round() as i64;
        }
        if let Some(calls) = self.learning_calls {
            config.learning.min_calls = calls;
        }
        if let Some(enabled) = self.breaker_enabled {
            config.breaker.enabled = enabled;
        }
        if let Some(score) = self.breaker_score {
            config.breaker.score_at_least = score;
            config.breaker.rearm_below = config.breaker.rearm_below.min(score);
        }
        if let Some(on) = self.breaker_on_critical {
            config.breaker.on_critical = on;
        }
        if let Some(hours) = self.risk_half_life_hours {
            if !(hours.is_finite() && hours > 0.0) {
                return Err(format!("risk_half_life_hours `{hours}` must be positive"));
            }
            config.risk.half_life_ms = (hours * HOUR_MS).round().max(1.0) as i64;
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// A config problem, located in the file where possible.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}:{column}: {message}")]
pub struct ConfigError {
    /// File name.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses `steward.toml` text; errors carry file, line and column.
pub fn parse(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        ConfigError {
            path: path.display().to_string(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })?;
    let locate = |key: &str, message: String| {
        let (line, column) = find_key(text, key);
        ConfigError {
            path: path.display().to_string(),
            line,
            column,
            message,
        }
    };
    if raw.version != CONFIG_VERSION {
        return Err(locate(
            "version",
            format!(
                "unsupported config version `{}`; this steward reads version {CONFIG_VERSION}",
                raw.version
            ),
        ));
    }
    if let Some(listen) = &raw.server.listen {
        listen.parse::<SocketAddr>().map_err(|_| {
            locate(
                "listen",
                format!("invalid listen address `{listen}`; expected IP:PORT"),
            )
        })?;
    }
    if let Some(tz) = &raw.policy.timezone {
        jiff::tz::TimeZone::get(tz)
            .map_err(|_| locate("timezone", format!("unknown time zone `{tz}`")))?;
    }
    if let Some(format) = &raw.log.format
        && format != "text"
        && format != "json"
    {
        return Err(locate(
            "format",
            format!("log format `{format}` is neither `text` nor `json`"),
        ));
    }
    if let Some(format) = &raw.approvals.webhook_format
        && format != "json"
        && format != "slack"
    {
        return Err(locate(
            "webhook_format",
            format!("webhook format `{format}` is neither `json` nor `slack`"),
        ));
    }
    for (key, value) in [
        ("webhook_url", &raw.approvals.webhook_url),
        ("public_url", &raw.approvals.public_url),
        ("witness_url", &raw.audit.witness_url),
        ("sink_url", &raw.audit.sink_url),
    ] {
        if let Some(text) = value {
            let ok =
                url::Url::parse(text).is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https");
            if !ok {
                return Err(locate(key, format!("`{key}` is not an http(s) URL")));
            }
        }
    }
    let syslog = match &raw.audit.syslog_addr {
        Some(addr) => Some(
            crate::audit_tasks::SyslogTarget::parse(addr).map_err(|e| locate("syslog_addr", e))?,
        ),
        None => None,
    };
    let syslog_tls = syslog
        .as_ref()
        .is_some_and(|t| t.transport == crate::audit_tasks::SyslogTransport::Tls);
    for (key, set) in [
        ("syslog_ca_file", raw.audit.syslog_ca_file.is_some()),
        (
            "syslog_client_cert_file",
            raw.audit.syslog_client_cert_file.is_some(),
        ),
        (
            "syslog_client_key_file",
            raw.audit.syslog_client_key_file.is_some(),
        ),
    ] {
        if set && !syslog_tls {
            return Err(locate(key, format!("`{key}` needs a `tls://` syslog_addr")));
        }
    }
    if raw.audit.syslog_client_cert_file.is_some() != raw.audit.syslog_client_key_file.is_some() {
        let key = if raw.audit.syslog_client_cert_file.is_some() {
            "syslog_client_cert_file"
        } else {
            "syslog_client_key_file"
        };
        return Err(locate(
            key,
            "`syslog_client_cert_file` and `syslog_client_key_file` go together".to_owned(),
        ));
    }
    if raw.approvals.webhook_secret_env.is_some() && raw.approvals.webhook_url.is_none() {
        return Err(locate(
            "webhook_secret_env",
            "`webhook_secret_env` needs `webhook_url`".into(),
        ));
    }
    if let Some(db) = &raw.server.database {
        steward_store::Backend::from_url(db).map_err(|e| locate("database", e.to_string()))?;
    }
    if let Err(message) = raw.monitor.to_monitor_config() {
        return Err(locate("monitor", message));
    }
    if let (Some(ttl), Some(max)) = (raw.tokens.ttl_secs, raw.tokens.max_ttl_secs)
        && ttl > max
    {
        return Err(locate(
            "ttl_secs",
            format!("ttl_secs {ttl} exceeds max_ttl_secs {max}"),
        ));
    }
    Ok(raw)
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: path.display().to_string(),
        line: 0,
        column: 0,
        message: format!("cannot read config file: {e}"),
    })?;
    parse(path, &text)
}

/// The JSON schema of `steward.toml`.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawConfig)).unwrap_or_default()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

fn find_key(text: &str, key: &str) -> (usize, usize) {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return (i + 1, line.len() - trimmed.len() + 1);
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_and_unknown_field_errors_carry_line_and_column() {
        let e = parse(Path::new("s.toml"), "version = 1\n[server]\nlisten = \n").unwrap_err();
        assert_eq!((e.line, e.path.as_str()), (3, "s.toml"));
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[server]\nlistne = \"x\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn audit_sink_settings_are_checked() {
        let ok = "version = 1\n[audit]\nsink_url = \"https://siem.example/in\"\nsyslog_addr = \"tcp://127.0.0.1:601\"\n";
        assert!(parse(Path::new("s.toml"), ok).is_ok());
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[audit]\nsyslog_addr = \"relp://logs:2514\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("not `udp`, `tcp` or `tls`"), "{e}");
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[audit]\nsyslog_addr = \"logs\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("HOST:PORT"), "{e}");
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[audit]\nwitness_url = \"ftp://w/x\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("witness_url"), "{e}");
        // A client certificate is for a TLS collector, and comes with its key.
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[audit]\nsyslog_addr = \"tcp://logs:601\"\nsyslog_client_cert_file = \"c.pem\"\nsyslog_client_key_file = \"c.key\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("needs a `tls://`"), "{e}");
        assert_eq!(e.line, 4, "{e}");
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[audit]\nsyslog_addr = \"tls://logs:6514\"\nsyslog_client_cert_file = \"c.pem\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("go together"), "{e}");
        let both = "version = 1\n[audit]\nsyslog_addr = \"tls://logs:6514\"\nsyslog_client_cert_file = \"c.pem\"\nsyslog_client_key_file = \"c.key\"\n";
        assert!(parse(Path::new("s.toml"), both).is_ok());
    }

    #[test]
    fn approval_webhook_settings_are_checked() {
        let ok = "version = 1\n[approvals]\nwebhook_url = \"https://hooks.example/x\"\nwebhook_secret_env = \"K\"\nwebhook_format = \"slack\"\n";
        assert!(parse(Path::new("s.toml"), ok).is_ok());
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[approvals]\nwebhook_url = \"https://h/x\"\nwebhook_format = \"teams\"\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[approvals]\nwebhook_secret_env = \"K\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("needs `webhook_url`"), "{e}");
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[approvals]\nwebhook_url = \"ftp://h/x\"\n",
        )
        .unwrap_err();
        assert!(e.message.contains("http(s)"), "{e}");
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n\n[policy]\n  timezone = \"Mars/Base\"\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (4, 3));
        assert!(e.message.contains("Mars/Base"));
        let e = parse(Path::new("s.toml"), "version = 2\n").unwrap_err();
        assert!(e.message.contains("unsupported config version"));
        assert!(
            parse(Path::new("s.toml"), "").is_err(),
            "version is required"
        );
    }

    #[test]
    fn monitor_section_maps_to_the_monitor_config() {
        let raw = parse(
            Path::new("s.toml"),
            "version = 1\n[monitor]\nlearning_days = 0\nlearning_calls = 5\nbreaker_score = 60\n[monitor.detectors.deny_burst]\nmin_denies = 4\n",
        )
        .unwrap();
        let config = raw.monitor.to_monitor_config().unwrap();
        assert_eq!(
            (config.learning.period_ms, config.learning.min_calls),
            (0, 5)
        );
        assert_eq!(config.breaker.score_at_least, 60);
        assert!(config.breaker.rearm_below <= 60);
        assert_eq!(config.deny_burst.min_denies, 4.0);
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[monitor]\nbreaker_score = 200\n",
        )
        .unwrap_err();
        assert!(e.message.contains("score"), "{}", e.message);
        let e = parse(
            Path::new("s.toml"),
            "version = 1\n[monitor]\nlearning_dayz = 1\n",
        )
        .unwrap_err();
        assert!(e.message.contains("unknown field"), "{}", e.message);
    }

    #[test]
    fn every_example_config_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                load(&path).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 1, "no example configs found in {}", dir.display());
    }

    #[test]
    fn committed_schema_is_current() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/steward.toml.schema.json");
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            committed,
            json_schema(),
            "run `steward config schema > docs/steward.toml.schema.json`"
        );
    }
}
