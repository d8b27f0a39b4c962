//! `steward mcp …`: the CLI side of the MCP gateway's tool pinning (list, diff, approve).

// Reading a `serde_json::Value` with `v["key"]` yields `Null` for a missing key and never
// panics; this module only renders API responses, so the lint's concern does not apply.
#![allow(clippy::indexing_slicing)]

use anyhow::{Result, anyhow};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Client, OutputFormat, print, print_object, query, seg};

/// `steward mcp …`.
#[derive(Debug, Subcommand)]
pub enum McpCmd {
    /// Pinned tools of MCP services and their quarantined changes.
    #[command(subcommand)]
    Tools(McpToolsCmd),
    /// List an MCP service's tools now (pins every tool on the first listing).
    Refresh { service: String },
}

/// `steward mcp tools …`.
#[derive(Debug, Subcommand)]
pub enum McpToolsCmd {
    /// List pinned tools with their status (approved, changed, new).
    List {
        #[arg(long)]
        service: Option<String>,
        /// Only `approved`, `changed`, `new` or `quarantined`.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show a quarantined tool's change, invisible characters shown as `<U+XXXX>`.
    /// Without a tool, every quarantined tool's change.
    Diff {
        /// `<service>__<tool>`.
        tool: Option<String>,
    },
    /// Approve a quarantined tool's new definition.
    Approve {
        /// `<service>__<tool>`.
        tool: String,
        /// The pending hash you reviewed (from `diff`); refused if the tool changed again.
        #[arg(long)]
        hash: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
}

fn split(tool: &str) -> Result<(&str, &str)> {
    tool.split_once("__")
        .ok_or_else(|| anyhow!("tool `{tool}` is not of the form <service>__<tool>"))
}

fn print_diff(v: &Value) {
    let t = &v["tool"];
    println!(
        "{} ({}): {} -> {}",
        t["name"].as_str().unwrap_or(""),
        t["status"].as_str().unwrap_or(""),
        t["approved_hash"].as_str().unwrap_or("(none: new tool)"),
        t["pending_hash"].as_str().unwrap_or("(no pending change)")
    );
    print!("{}", v["diff"].as_str().unwrap_or(""));
    println!();
}

/// Runs `steward mcp …`.
pub async fn mcp(c: &Client, out: OutputFormat, cmd: &McpCmd) -> Result<()> {
    match cmd {
        McpCmd::Refresh { service } => {
            print_object(
                out,
                &c.post(
                    &format!("/admin/v1/mcp/services/{}/refresh", seg(service)),
                    &json!({}),
                )
                .await?,
            );
        }
        McpCmd::Tools(McpToolsCmd::List { service, status }) => {
            let path = format!(
                "/admin/v1/mcp/tools{}",
                query(&[("service", service.clone()), ("status", status.clone())])
            );
            print(
                out,
                &c.get(&path).await?,
                &[
                    ("name", "name"),
                    ("status", "status"),
                    ("approved hash", "approved_hash"),
                    ("pending hash", "pending_hash"),
                    ("approved by", "approved_by"),
                ],
            );
        }
        McpCmd::Tools(McpToolsCmd::Diff { tool }) => {
            let targets: Vec<(String, String)> = match tool {
                Some(t) => {
                    let (s, n) = split(t)?;
                    vec![(s.to_owned(), n.to_owned())]
                }
                None => c.get("/admin/v1/mcp/tools?status=quarantined").await?["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|i| {
                        (
                            i["service"].as_str().unwrap_or("").to_owned(),
                            i["tool"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect(),
            };
            let mut all = Vec::new();
            for (service, name) in targets {
                let v = c
                    .get(&format!(
                        "/admin/v1/mcp/tools/{}/{}/diff",
                        seg(&service),
                        seg(&name)
                    ))
                    .await?;
                match out {
                    OutputFormat::Json => all.push(v),
                    OutputFormat::Table => print_diff(&v),
                }
            }
            if matches!(out, OutputFormat::Json) {
                print_object(out, &json!({"items": all}));
            }
        }
        McpCmd::Tools(McpToolsCmd::Approve { tool, hash, reason }) => {
            let (s, n) = split(tool)?;
            let v = c
                .post(
                    &format!("/admin/v1/mcp/tools/{}/{}/approve", seg(s), seg(n)),
                    &json!({"hash": hash, "reason": reason}),
                )
                .await?;
            print_object(out, &v);
        }
    }
    Ok(())
}
