//! `steward alerts`, `steward incident quarantine`, `steward discovered` and the upload of
//! `steward scan --report-to`: the CLI side of monitoring and credential discovery.

// Reading a `serde_json::Value` with `v["key"]` yields `Null` for a missing key and never
// panics; this module only renders API responses, so the lint's concern does not apply.
#![allow(clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, OutputFormat, print, print_object, query, seg};

/// `steward alerts …`.
#[derive(Debug, Subcommand)]
pub enum AlertsCmd {
    /// List monitoring alerts, newest first.
    List {
        /// Only this identity's (id or name).
        #[arg(long)]
        identity: Option<String>,
        /// `open`, `acknowledged` or `closed`.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one alert with its evidence.
    Show { id: String },
    /// Acknowledge an alert (someone is looking at it).
    Ack {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Close an alert.
    Close {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
}

/// `steward incident …`.
#[derive(Debug, Subcommand)]
pub enum IncidentCmd {
    /// Suspend an identity, revoke its keys and tokens, rotate the secrets it could use, and
    /// write a forensic timeline (JSON and HTML) of what it did.
    Quarantine {
        /// Identity id or name.
        identity: String,
        /// Start of the forensic window: a duration back from now (`24h`, `90m`, `7d`) or
        /// an RFC 3339 time.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Directory for `timeline.json` and `report.html` (default `quarantine-<identity>-<time>`).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `steward discovered …`.
#[derive(Debug, Subcommand)]
pub enum DiscoveredCmd {
    /// Discovered credentials, and whether each is managed in the vault.
    List {
        /// `managed` or `unmanaged`.
        #[arg(long, value_parser = ["managed", "unmanaged"])]
        status: Option<String>,
    },
}

/// Runs `steward alerts …`.
pub async fn alerts(c: &Client, out: OutputFormat, cmd: &AlertsCmd) -> Result<()> {
    match cmd {
        AlertsCmd::List {
            identity,
            status,
            limit,
        } => {
            let v = c
                .get(&format!(
                    "/admin/v1/alerts{}",
                    query(&[
                        ("identity", identity.clone()),
                        ("status", status.clone()),
                        ("limit", Some(limit.to_string()))
                    ])
                ))
                .await?;
            let rows: Vec<Value> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    json!({"id": a["id"], "time": a["at_ms"].as_i64().map(rfc3339), "identity": a["identity_id"], "detector": a["detector"],
                           "severity": a["severity"], "score": a["score"], "status": a["status"], "breaker": a["breaker"], "summary": a["summary"]})
                })
                .collect();
            match out {
                OutputFormat::Json => print_object(out, &v),
                OutputFormat::Table => print(
                    out,
                    &Value::Array(rows),
                    &[
                        ("id", "id"),
                        ("time", "time"),
                        ("identity", "identity"),
                        ("detector", "detector"),
                        ("severity", "severity"),
                        ("score", "score"),
                        ("status", "status"),
                        ("breaker", "breaker"),
                        ("summary", "summary"),
                    ],
                ),
            }
        }
        AlertsCmd::Show { id } => {
            print_object(out, &c.get(&format!("/admin/v1/alerts/{}", seg(id))).await?)
        }
        AlertsCmd::Ack { id, note } => print_object(
            out,
            &c.post(
                &format!("/admin/v1/alerts/{}/acknowledge", seg(id)),
                &json!({"note": note}),
            )
            .await?,
        ),
        AlertsCmd::Close { id, note } => print_object(
            out,
            &c.post(
                &format!("/admin/v1/alerts/{}/close", seg(id)),
                &json!({"note": note}),
            )
            .await?,
        ),
    }
    Ok(())
}

/// Runs `steward discovered …`.
pub async fn discovered(c: &Client, out: OutputFormat, cmd: &DiscoveredCmd) -> Result<()> {
    match cmd {
        DiscoveredCmd::List { status } => {
            let v = c
                .get(&format!(
                    "/admin/v1/discovered-credentials{}",
                    query(&[("status", status.clone())])
                ))
                .await?;
            match out {
                OutputFormat::Json => print_object(out, &v),
                OutputFormat::Table => {
                    let rows: Vec<Value> = v["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|i| {
                            json!({"managed": if i["managed"] == true { format!("managed ({})", i["managed_secret"].as_str().unwrap_or("")) } else { "UNMANAGED".into() },
                                   "location": i["location"], "provider": i["provider"], "rule": i["rule_id"], "preview": i["redacted"],
                                   "fingerprint": i["fingerprint"], "first seen": i["first_seen"], "last seen": i["last_seen"]})
                        })
                        .collect();
                    print(
                        out,
                        &Value::Array(rows),
                        &[
                            ("status", "managed"),
                            ("location", "location"),
                            ("provider", "provider"),
                            ("rule", "rule"),
                            ("preview", "preview"),
                            ("fingerprint", "fingerprint"),
                            ("first seen", "first seen"),
                            ("last seen", "last seen"),
                        ],
                    );
                    println!("{} managed, {} unmanaged", v["managed"], v["unmanaged"]);
                }
            }
        }
    }
    Ok(())
}

/// Uploads a scan's findings (fingerprints and redacted previews only) to a Steward.
pub async fn report_findings(
    server: &str,
    token: Option<String>,
    report: &steward_scan::Report,
    source: Option<String>,
) -> Result<Value> {
    if token.is_none() {
        bail!("--report-to needs an admin token: set STEWARD_TOKEN or --token");
    }
    let findings: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            // INVARIANT: only these fields leave the machine; `Finding` holds no raw secret.
            json!({"path": f.path, "line": f.line, "column": f.column, "end_line": f.end_line, "commit": f.commit, "rule_id": f.rule_id,
                   "provider": f.provider, "kind": f.kind, "confidence": f.confidence, "fingerprint": f.fingerprint, "redacted": f.redacted})
        })
        .collect();
    let source = source.or_else(host_name);
    Client::new(server, token)?
        .post(
            "/admin/v1/discovered-credentials",
            &json!({"findings": findings, "source": source}),
        )
        .await
}

fn host_name() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// `24h`, `90m`, `7d`, `30s` → milliseconds.
fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().ok()?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

fn since_param(since: &str) -> Result<String> {
    if let Some(ms) = parse_duration_ms(since) {
        return Ok((jiff::Timestamp::now().as_millisecond() - ms).to_string());
    }
    let ts: jiff::Timestamp = since.parse().map_err(|_| {
        anyhow!("--since `{since}` is neither a duration (24h, 90m, 7d) nor RFC 3339")
    })?;
    Ok(ts.as_millisecond().to_string())
}

/// Runs `steward incident …`.
pub async fn incident(c: &Client, out: OutputFormat, cmd: &IncidentCmd) -> Result<u8> {
    match cmd {
        IncidentCmd::Quarantine {
            identity,
            since,
            out: dir,
            reason,
        } => {
            let since = since_param(since)?;
            let v = c
                .post(
                    "/admin/v1/incidents/quarantine",
                    &json!({"identity": identity, "since": since, "reason": reason}),
                )
                .await?;
            let dir = dir.clone().unwrap_or_else(|| {
                let stamp = jiff::Timestamp::now()
                    .strftime("%Y%m%dT%H%M%SZ")
                    .to_string();
                let who: String = identity
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                PathBuf::from(format!("quarantine-{who}-{stamp}"))
            });
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating `{}`", dir.display()))?;
            let json_path = dir.join("timeline.json");
            let html_path = dir.join("report.html");
            std::fs::write(&json_path, serde_json::to_vec_pretty(&v)?)
                .with_context(|| format!("writing `{}`", json_path.display()))?;
            std::fs::write(&html_path, render_html(&v))
                .with_context(|| format!("writing `{}`", html_path.display()))?;
            match out {
                OutputFormat::Json => print_object(
                    out,
                    &json!({"result": v, "timeline_json": json_path, "report_html": html_path}),
                ),
                OutputFormat::Table => print_summary(&v, &json_path, &html_path),
            }
        }
    }
    Ok(0)
}

fn print_summary(v: &Value, json_path: &Path, html_path: &Path) {
    println!(
        "quarantined {} ({})",
        v["identity"]["name"].as_str().unwrap_or(""),
        v["identity"]["id"].as_str().unwrap_or("")
    );
    println!(
        "  status: {} (was {})",
        v["identity"]["status"].as_str().unwrap_or(""),
        v["identity"]["previous_status"].as_str().unwrap_or("")
    );
    println!("  API keys revoked: {}", v["keys_revoked"]);
    println!("  tokens issued before now: invalid");
    println!(
        "  pending approvals cancelled: {}",
        v["approvals_cancelled"]
    );
    for s in v["secrets_rotated"].as_array().into_iter().flatten() {
        println!(
            "  rotated: {} (by {}, now version {})",
            s["secret"].as_str().unwrap_or(""),
            s["provider"].as_str().unwrap_or(""),
            s["version"]
        );
    }
    let manual = v["secrets_needing_manual_rotation"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !manual.is_empty() {
        println!("  NEEDS MANUAL ROTATION:");
        for s in &manual {
            println!(
                "    {}: {}",
                s["secret"].as_str().unwrap_or(""),
                s["why"].as_str().unwrap_or("")
            );
        }
    }
    println!(
        "  timeline: {} records",
        v["timeline"].as_array().map_or(0, Vec::len)
    );
    println!("  wrote {}", json_path.display());
    println!("  wrote {}", html_path.display());
}

/// Escapes text for HTML element content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A readable, self-contained (no scripts, no external assets) HTML incident report.
pub fn render_html(v: &Value) -> String {
    let mut h = String::new();
    let id = &v["identity"];
    let title = format!("Quarantine of {}", text(&id["name"]));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}table{{border-collapse:collapse;width:100%;font-size:.85rem}}\
th,td{{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}}th{{background:#f0f0f0}}\
.deny{{color:#a00}}.warn{{background:#fff3cd}}code{{font-size:.8rem}}dt{{font-weight:bold}}</style></head><body>\n",
        esc(&title)
    );
    let _ = write!(h, "<h1>{}</h1>\n<dl>", esc(&title));
    for (label, value) in [
        (
            "Identity",
            format!("{} ({})", text(&id["name"]), text(&id["id"])),
        ),
        (
            "Kind / owner",
            format!("{} / {}", text(&id["kind"]), text(&id["owner"])),
        ),
        (
            "Status",
            format!(
                "{} (was {}): {}",
                text(&id["status"]),
                text(&id["previous_status"]),
                text(&id["status_reason"])
            ),
        ),
        (
            "Quarantined",
            format!(
                "{} by {}",
                text(&v["quarantined_at"]),
                text(&v["quarantined_by"])
            ),
        ),
        ("Reason", text(&v["reason"])),
        (
            "Window",
            format!(
                "{} to {}",
                text(&v["window"]["since"]),
                text(&v["window"]["until"])
            ),
        ),
        ("API keys revoked", text(&v["keys_revoked"])),
        (
            "Pending approvals cancelled",
            text(&v["approvals_cancelled"]),
        ),
    ] {
        let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(label), esc(&value));
    }
    h.push_str("</dl>\n<h2>Secrets</h2>\n<table><tr><th>Secret</th><th>Services</th><th>Action</th></tr>\n");
    for s in v["secrets_rotated"].as_array().into_iter().flatten() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>rotated by {} (version {})</td></tr>",
            esc(&text(&s["secret"])),
            esc(&text(&s["services"])),
            esc(&text(&s["provider"])),
            esc(&text(&s["version"]))
        );
    }
    for s in v["secrets_needing_manual_rotation"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            h,
            "<tr class=\"warn\"><td>{}</td><td>{}</td><td>NEEDS MANUAL ROTATION: {}</td></tr>",
            esc(&text(&s["secret"])),
            esc(&text(&s["services"])),
            esc(&text(&s["why"]))
        );
    }
    h.push_str("</table>\n<h2>Alerts</h2>\n<table><tr><th>Time</th><th>Detector</th><th>Severity</th><th>Score</th><th>Summary</th><th>Breaker</th></tr>\n");
    for a in v["alerts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a["at_ms"].as_i64().map(rfc3339).unwrap_or_default()),
            esc(&text(&a["detector"])),
            esc(&text(&a["severity"])),
            esc(&text(&a["score"])),
            esc(&text(&a["summary"])),
            esc(&text(&a["breaker"]))
        );
    }
    let events = v["timeline"].as_array().cloned().unwrap_or_default();
    let _ = write!(
        h,
        "</table>\n<h2>Timeline ({} records)</h2>\n<table><tr><th>Time</th><th>Kind</th><th>Actor</th><th>Operation</th><th>Decision</th><th>Status</th><th>Bytes</th><th>Request</th><th>Reason</th></tr>\n",
        events.len()
    );
    for e in &events {
        let decision = text(&e["decision"]);
        let class = if decision == "deny" {
            " class=\"deny\""
        } else {
            ""
        };
        let _ = writeln!(
            h,
            "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&text(&e["time"])),
            esc(&text(&e["kind"])),
            esc(&text(&e["actor"])),
            esc(&text(&e["operation"])),
            esc(&decision),
            esc(&text(&e["status"])),
            esc(&text(&e["bytes_out"])),
            esc(&text(&e["request_id"])),
            esc(&text(&e["reason"]))
        );
    }
    h.push_str("</table>\n<p>Each record is in the tamper-evident audit log; verify with <code>steward audit verify</code>.</p>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_escaping() {
        assert_eq!(parse_duration_ms("24h"), Some(86_400_000));
        assert_eq!(parse_duration_ms("90m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("2026-01-01T00:00:00Z"), None);
        assert_eq!(esc("<script>\"&'"), "&lt;script&gt;&quot;&amp;&#39;");
        let html = render_html(
            &json!({"identity": {"name": "<b>x</b>"}, "timeline": [{"operation": "a<b"}]}),
        );
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;") && !html.contains("<b>x"));
        assert!(!html.contains("<script"));
    }
}
