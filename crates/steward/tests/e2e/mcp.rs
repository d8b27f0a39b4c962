//! The MCP gateway with real peers: upstreams are a Python `mcp` SDK server (stdio) and
//! `@modelcontextprotocol/server-everything` (stdio and Streamable HTTP); the agent is the
//! Python `mcp` SDK client (which negotiates `2026-07-28`) plus raw JSON-RPC for the
//! session-based `2025-11-25` handshake.
//!
//! Peers are installed by `scripts/install-mcp-peers` (called from `scripts/test`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/mcp")
}

fn npm_dir() -> PathBuf {
    std::env::var_os("STEWARD_NPM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/steward-npm")
        })
}

fn everything_js() -> PathBuf {
    npm_dir().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// The Python interpreter that has the `mcp` SDK, if any.
fn python_with_mcp() -> Option<String> {
    let out = Command::new("python3")
        .args(["-c", "import mcp, httpx2, sys; print(sys.executable)"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn peers_available() -> Option<String> {
    let python = python_with_mcp();
    let node = everything_js().exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if python.is_none() || !node {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the MCP peers are missing (run scripts/install-mcp-peers)"
        );
        eprintln!("skipping: MCP peers not installed (scripts/install-mcp-peers)");
        return None;
    }
    python
}

/// `node` when the TypeScript SDK client is installed (skips locally, fails under CI=true).
fn ts_sdk_node() -> Option<&'static str> {
    if npm_dir()
        .join("node_modules/@modelcontextprotocol/sdk/dist/esm/client/index.js")
        .exists()
    {
        return Some("node");
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but @modelcontextprotocol/sdk is missing (run scripts/install-mcp-peers)"
    );
    eprintln!("skipping the TypeScript client: @modelcontextprotocol/sdk not installed");
    None
}

/// Runs a TypeScript SDK agent `script` of this directory against Steward on `port` as
/// the holder of `token`, with `args` after those; returns the JSON object it prints.
fn ts_agent(node: &str, script: &str, port: u16, token: &str, args: &[&str]) -> Value {
    let out = Command::new(node)
        .arg(here().join(script))
        .arg(npm_dir())
        .arg(format!("http://127.0.0.1:{port}/mcp"))
        .arg(token)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

/// Runs the Python SDK agent; returns its JSON output.
fn agent(python: &str, port: u16, token: &str, args: &[&str]) -> Value {
    let url = format!("http://127.0.0.1:{port}/mcp");
    let out = Command::new(python)
        .arg(here().join("agent.py"))
        .args([url.as_str(), token])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "agent {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("agent output {stdout:?}: {e}"))
}

fn tool_names(listing: &Value) -> Vec<String> {
    listing["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

fn call(
    python: &str,
    port: u16,
    token: &str,
    tool: &str,
    args: Value,
    meta: Option<Value>,
) -> Value {
    let args_text = args.to_string();
    let meta_text = meta.map(|m| m.to_string());
    let mut argv = vec!["call", tool, args_text.as_str()];
    if let Some(m) = &meta_text {
        argv.push(m.as_str());
    }
    agent(python, port, token, &argv)
}

/// `completion/complete` for a prompt or resource template (`kind`), through agent.py.
fn complete(
    python: &str,
    port: u16,
    token: &str,
    kind: &str,
    target: &str,
    argument: &str,
    context: Option<&str>,
) -> Value {
    let mut argv = vec!["complete", kind, target, argument];
    argv.extend(context);
    agent(python, port, token, &argv)
}

/// One JSON-RPC POST to `/mcp`; returns status, headers+body text, and the JSON body.
fn rpc(port: u16, headers: &[(&str, &str)], body: &Value) -> (u16, String, Value) {
    let mut all = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    let (status, text) = http(
        "POST",
        &format!("http://127.0.0.1:{port}/mcp"),
        &all,
        Some(&body.to_string()),
    );
    let json = text
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, text, json)
}

fn header_value(text: &str, name: &str) -> Option<String> {
    text.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// POSTs one MCP request on its own connection, reads up to the first event of its event
/// stream (which must be a progress notification) and hangs up: an agent that goes away.
fn post_and_leave(port: u16, headers: &[(&str, &str)], body: &Value) {
    let mut reader = post_streaming(port, headers, body);
    let event = next_event(&mut reader);
    assert_eq!(event["method"], "notifications/progress", "{event}");
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

const POLICY: &str = "permit(principal, action in Action::\"read\", resource);\n\
permit(principal, action == Action::\"tools:transfer\", resource);\n\
permit(principal, action == Action::\"tools:crash\", resource);\n\
@approval(\"transfers above 100 need a human\")\n\
forbid(principal, action == Action::\"tools:transfer\", resource) when { context.args.amount > 100 };\n";

fn services_yaml(python: &str, variant: &Path, http_port: u16) -> String {
    let server = here().join("tool_server.py");
    format!(
        r#"version: 1
services:
  - name: tools
    kind: mcp
    class_overrides: {{crash: write}}
    mcp:
      transport:
        type: stdio
        command: {python}
        args: ["{server}"]
        env: {{UPSTREAM_API_KEY: tools-api-key}}
        plain_env: {{TOOLS_VARIANT_FILE: "{variant}"}}
{tools2}{everything}  - name: everything_http
    kind: mcp
    allow_http: true
    allow_private: true
    auth: {{type: bearer, secret: tools-api-key}}
    mcp:
      transport:
        type: http
        url: "http://127.0.0.1:{http_port}/mcp"
"#,
        server = server.display(),
        variant = variant.display(),
        tools2 = tool_server_service("tools2", python),
        everything = everything_service(),
    )
}

/// An `apply` entry for an MCP server Steward spawns over stdio.
fn stdio_service(name: &str, command: &str, args: &[String]) -> String {
    format!(
        "  - name: {name}\n    kind: mcp\n    mcp:\n      transport:\n        type: stdio\n        command: {command}\n        args: {args:?}\n"
    )
}

/// server-everything over stdio, as the service `everything`.
fn everything_service() -> String {
    let script = everything_js().display().to_string();
    stdio_service("everything", "node", &[script, "stdio".into()])
}

/// The Python SDK tool server (no prompts or resources) as service `name`.
fn tool_server_service(name: &str, python: &str) -> String {
    let script = here().join("tool_server.py").display().to_string();
    stdio_service(name, python, &[script])
}

/// server-everything over Streamable HTTP, forced onto loopback by the preload; its port.
fn everything_http() -> (Proc, u16) {
    let port = free_port();
    let preload =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mcp/listen-loopback.cjs");
    let proc = Proc(
        Command::new("node")
            .arg("--require")
            .arg(&preload)
            .arg(everything_js())
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    (proc, port)
}

/// An `apply` entry for a Streamable HTTP MCP server on loopback.
fn http_service(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    kind: mcp\n    allow_http: true\n    allow_private: true\n    mcp:\n      transport:\n        type: http\n        url: \"http://127.0.0.1:{port}/mcp\"\n"
    )
}

/// A deployment for the MCP tests and a second agent's token; `None` (skip) when the peers
/// are not installed.
fn mcp_deployment() -> Option<(String, Deployment, String)> {
    let python = peers_available()?;
    let d = Deployment::start(None, None);
    let (_, _, other_token) = new_agent(d.port, &d.admin, "agent-two");
    Some((python, d, other_token))
}

#[test]
fn mcp_gateway_governs_real_mcp_peers() {
    let Some((python, d, other_token)) = mcp_deployment() else {
        return;
    };
    let port = d.port;
    let admin = d.admin.clone();
    let agent_token = d.agent.clone();

    let (_everything_http, http_port) = everything_http();
    // The preload bound it to loopback only.
    let ss = Command::new("ss")
        .args(["-ltnH"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if !ss.is_empty() {
        let line = ss
            .lines()
            .find(|l| l.contains(&format!(":{http_port} ")))
            .unwrap_or_default()
            .to_owned();
        assert!(
            line.contains(&format!("127.0.0.1:{http_port}")),
            "server-everything is not loopback-only: {line}"
        );
    }

    d.ok(&["secret", "set", "tools-api-key"], Some(CANARY));
    let variant = d.dir.path().join("variant.txt");
    std::fs::write(&variant, "").unwrap();
    let apply = d.dir.path().join("mcp-services.yaml");
    std::fs::write(&apply, services_yaml(&python, &variant, http_port)).unwrap();
    d.ok(&["apply", "--file", apply.to_str().unwrap()], None);

    // First listing pins every tool (also makes them policy operations).
    for service in ["tools", "tools2", "everything", "everything_http"] {
        let refreshed = json(port, &admin, &["mcp", "refresh", service]);
        assert!(
            refreshed["quarantined"].as_array().unwrap().is_empty(),
            "{refreshed}"
        );
        assert!(
            !refreshed["usable"].as_array().unwrap().is_empty(),
            "{refreshed}"
        );
    }
    let pins = json(
        port,
        &admin,
        &["mcp", "tools", "list", "--service", "tools"],
    );
    assert!(
        pins["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["status"] == "approved"),
        "{pins}"
    );
    d.policy(POLICY);

    // Listing (stateless 2026-07-28 through the Python SDK): namespaced, filtered by policy.
    let listing = agent(&python, port, &agent_token, &["list"]);
    assert_eq!(listing["protocol_version"], "2026-07-28", "{listing}");
    let names = tool_names(&listing);
    for expected in [
        "tools__echo",
        "tools__secret_digest",
        "tools__transfer",
        "tools2__echo",
        "everything__echo",
        "everything_http__echo",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.contains(&"tools__wipe".to_owned()),
        "a tool denied outright is listed: {names:?}"
    );
    assert!(
        listing["ttl_ms"].as_u64().is_some(),
        "ttlMs missing: {listing}"
    );

    // Calling: allowed read, and two servers' `echo` stay distinct.
    let r = call(
        &python,
        port,
        &agent_token,
        "tools__echo",
        json!({"message": "hello"}),
        None,
    );
    assert_eq!(
        (r["is_error"].as_bool(), r["text"].as_str()),
        (Some(false), Some("hello")),
        "{r}"
    );
    let r = call(
        &python,
        port,
        &agent_token,
        "tools2__echo",
        json!({"message": "second"}),
        None,
    );
    assert_eq!(r["text"], "second", "{r}");
    let r = call(
        &python,
        port,
        &agent_token,
        "everything__echo",
        json!({"message": "via stdio"}),
        None,
    );
    assert!(r["text"].as_str().unwrap().contains("via stdio"), "{r}");
    let r = call(
        &python,
        port,
        &agent_token,
        "everything_http__echo",
        json!({"message": "via http"}),
        None,
    );
    assert!(r["text"].as_str().unwrap().contains("via http"), "{r}");

    // Credential injection: the tool sees the vault secret; the agent never does.
    let r = call(
        &python,
        port,
        &agent_token,
        "tools__secret_digest",
        json!({}),
        None,
    );
    assert_eq!(
        r["text"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(CANARY.as_bytes())),
        "{r}"
    );
    assert!(!r.to_string().contains(CANARY));

    // Denial: a tool error naming the reason.
    let r = call(&python, port, &agent_token, "tools__wipe", json!({}), None);
    assert_eq!(r["is_error"], true, "{r}");
    assert!(
        r["text"].as_str().unwrap().contains("Denied by Steward"),
        "{r}"
    );
    assert!(
        !r["text"].as_str().unwrap().contains("forbid"),
        "policy internals leaked: {r}"
    );

    // Approval: the tool error names the approval id; the approved retry runs once.
    let r = call(
        &python,
        port,
        &agent_token,
        "tools__transfer",
        json!({"amount": 500, "to": "bob"}),
        None,
    );
    assert_eq!(r["is_error"], true, "{r}");
    let approval = r["meta"]["steward/approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(r["text"].as_str().unwrap().contains(&approval), "{r}");
    d.ok(
        &["approvals", "approve", &approval, "--reason", "checked"],
        None,
    );
    let other_args = call(
        &python,
        port,
        &agent_token,
        "tools__transfer",
        json!({"amount": 900, "to": "bob"}),
        Some(json!({"steward/approval": approval})),
    );
    assert_eq!(
        other_args["is_error"], true,
        "an approval must not cover other arguments: {other_args}"
    );
    let r = call(
        &python,
        port,
        &agent_token,
        "tools__transfer",
        json!({"amount": 500, "to": "bob"}),
        Some(json!({"steward/approval": approval})),
    );
    assert_eq!(
        (r["is_error"].as_bool(), r["text"].as_str()),
        (Some(false), Some("transferred 500 to bob")),
        "{r}"
    );
    let r = call(
        &python,
        port,
        &agent_token,
        "tools__transfer",
        json!({"amount": 50, "to": "bob"}),
        None,
    );
    assert_eq!(r["text"], "transferred 50 to bob", "{r}");

    // The TypeScript SDK client (session-based 2025-11-25): listing, calling, denial.
    if let Some(node) = ts_sdk_node() {
        let ts = ts_agent(
            node,
            "ts_agent.mjs",
            port,
            &agent_token,
            &[
                "tools2__echo",
                r#"{"message":"from typescript"}"#,
                "tools__wipe",
            ],
        );
        assert_eq!(ts["protocol_version"], "2025-11-25", "{ts}");
        assert_eq!(ts["session"], true, "{ts}");
        let names: Vec<&str> = ts["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            names.contains(&"tools2__echo") && names.contains(&"everything__echo"),
            "{ts}"
        );
        assert!(!names.contains(&"tools__wipe"), "{ts}");
        assert_eq!(
            (
                ts["allowed"]["is_error"].as_bool(),
                ts["allowed"]["text"].as_str()
            ),
            (Some(false), Some("from typescript")),
            "{ts}"
        );
        assert_eq!(ts["denied"]["is_error"], true, "{ts}");
        assert!(
            ts["denied"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Denied by Steward"),
            "{ts}"
        );
        assert_eq!(ts["denied"]["meta"]["steward/status"], "denied", "{ts}");
    }

    // Pinning: a changed description (with an invisible character) and a new tool are
    // quarantined; unchanged tools keep working.
    std::fs::write(&variant, "rugpull extra").unwrap();
    let refreshed = json(port, &admin, &["mcp", "refresh", "tools"]);
    let quarantined: Vec<&str> = refreshed["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        quarantined.contains(&"echo") && quarantined.contains(&"exfiltrate"),
        "{refreshed}"
    );
    let names = tool_names(&agent(&python, port, &agent_token, &["list"]));
    assert!(
        !names.contains(&"tools__echo".to_owned())
            && !names.contains(&"tools__exfiltrate".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"tools__secret_digest".to_owned())
            && names.contains(&"tools2__echo".to_owned()),
        "{names:?}"
    );
    let r = call(
        &python,
        port,
        &agent_token,
        "tools__echo",
        json!({"message": "x"}),
        None,
    );
    assert_eq!(r["is_error"], true, "{r}");
    assert!(r["text"].as_str().unwrap().contains("quarantined"), "{r}");
    let diff = ok(port, &admin, &["mcp", "tools", "diff", "tools__echo"], None);
    assert!(
        diff.contains("<U+200B>"),
        "invisible character not revealed: {diff}"
    );
    assert!(diff.contains("- ") && diff.contains("+ "), "{diff}");
    let (code, _, err) = cli(
        port,
        &admin,
        &["mcp", "tools", "approve", "tools__echo", "--hash", "0000"],
        None,
    );
    assert_ne!(
        code, 0,
        "approving a hash other than the pending one must fail"
    );
    assert!(err.contains("changed again"), "{err}");
    d.ok(
        &[
            "mcp",
            "tools",
            "approve",
            "tools__echo",
            "--reason",
            "reviewed",
        ],
        None,
    );
    let names = tool_names(&agent(&python, port, &agent_token, &["list"]));
    assert!(
        names.contains(&"tools__echo".to_owned()),
        "approved tool still hidden: {names:?}"
    );
    assert!(
        !names.contains(&"tools__exfiltrate".to_owned()),
        "{names:?}"
    );
    let r = call(
        &python,
        port,
        &agent_token,
        "tools__echo",
        json!({"message": "back"}),
        None,
    );
    assert_eq!(r["text"], "back", "{r}");

    // Session-based handshake (2025-11-25): the session is bound to the identity.
    let bearer = format!("Bearer {agent_token}");
    let other_bearer = format!("Bearer {other_token}");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}});
    let (status, text, body) = rpc(port, &[("Authorization", &bearer)], &init);
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["result"]["protocolVersion"], "2025-11-25");
    let session = header_value(&text, "mcp-session-id").expect("a session id");
    assert!(
        session.len() >= 22,
        "session id too short for 128 bits: {session}"
    );
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, _, body) = rpc(
        port,
        &[
            ("Authorization", &bearer),
            ("Mcp-Session-Id", &session),
            ("MCP-Protocol-Version", "2025-11-25"),
        ],
        &list,
    );
    assert_eq!(status, 200);
    assert!(
        body["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "tools__echo"),
        "{body}"
    );
    let (status, text, _) = rpc(
        port,
        &[
            ("Authorization", &other_bearer),
            ("Mcp-Session-Id", &session),
        ],
        &list,
    );
    assert_eq!(status, 403, "another identity replayed the session: {text}");
    let in_session = [
        ("Authorization", bearer.as_str()),
        ("Mcp-Session-Id", session.as_str()),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    // An unknown tool is a tool error the model can read, not a protocol failure.
    let unknown = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "nosuch__tool", "arguments": {}}});
    let (status, text, body) = rpc(port, &in_session, &unknown);
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert!(
        body["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Unknown tool `nosuch__tool`"),
        "{body}"
    );
    // Resource subscriptions are relayed to the upstream that accepts the URI.
    let subscribe = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/subscribe",
        "params": {"uri": "demo://resource/static/document/architecture.md"}});
    let (status, text, body) = rpc(port, &in_session, &subscribe);
    assert_eq!((status, &body["result"]), (200, &json!({})), "{text}");
    let no_uri =
        json!({"jsonrpc": "2.0", "id": 5, "method": "resources/unsubscribe", "params": {}});
    let (status, _, body) = rpc(port, &in_session, &no_uri);
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = rpc(port, &[("Mcp-Session-Id", &session)], &list);
    assert_eq!(status, 401, "a session id alone must not authenticate");
    let (status, _, _) = rpc(
        port,
        &[
            ("Authorization", &bearer),
            ("Mcp-Session-Id", "forged-session"),
        ],
        &list,
    );
    assert_eq!(status, 404);
    // DNS rebinding: foreign Origin and Host are refused.
    let (status, _, _) = rpc(
        port,
        &[
            ("Authorization", &bearer),
            ("Mcp-Session-Id", &session),
            ("Origin", "http://evil.example"),
        ],
        &list,
    );
    assert_eq!(status, 403);
    let (status, _) = http(
        "POST",
        &format!("http://127.0.0.1:{port}/mcp"),
        &[
            ("Authorization", &bearer),
            ("Host", "evil.example"),
            ("Content-Type", "application/json"),
        ],
        Some(&list.to_string()),
    );
    assert!(
        status == 403 || status == 400,
        "foreign Host accepted: {status}"
    );

    // The stdio server is restarted after a crash.
    let _ = call(&python, port, &agent_token, "tools__crash", json!({}), None);
    let started = Instant::now();
    loop {
        let r = call(
            &python,
            port,
            &agent_token,
            "tools__echo",
            json!({"message": "again"}),
            None,
        );
        if r["text"] == "again" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the crashed server never came back: {r}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Every call is audited, and the chain verifies.
    let verify = json(port, &admin, &["audit", "verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
    let log = audit_search(port, &admin, "tools2:echo", 10);
    assert!(
        !log["items"].as_array().unwrap().is_empty(),
        "tools2:echo not audited: {log}"
    );
    let log = audit_search(port, &admin, "tools:transfer", 100);
    let with_approval = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["event"]["approval_id"] == approval.as_str())
        .count();
    assert!(
        with_approval >= 2,
        "decision and outcome should carry the approval id: {log}"
    );

    let Deployment { dir, steward, .. } = d;
    drop(steward);
    // The credential never appears in plaintext at rest or in logs.
    let hits = all_files_contain(dir.path(), CANARY);
    assert!(hits.is_empty(), "credential found in {hits:?}");
}

/// Prompts and resources of real upstreams (server-everything over stdio, and the Python
/// SDK server without either): listed and fetched through Steward, governed by the
/// `prompts/get` and `resources/read` operations, and audited.
#[test]
fn mcp_gateway_relays_governed_prompts_and_resources() {
    let Some((python, d, other_token)) = mcp_deployment() else {
        return;
    };
    let port = d.port;
    let admin = d.admin.clone();
    let agent_token = d.agent.clone();
    let apply = d.dir.path().join("content-services.yaml");
    std::fs::write(
        &apply,
        format!(
            "version: 1\nservices:\n{}{}",
            everything_service(),
            tool_server_service("tools2", &python)
        ),
    )
    .unwrap();
    d.ok(&["apply", "--file", apply.to_str().unwrap()], None);
    for service in ["everything", "tools2"] {
        json(port, &admin, &["mcp", "refresh", service]);
    }
    // The content operations are policy operations like tools: the first agent may read
    // prompts and resources except dynamic blobs; the args prompt needs an approval; the
    // second agent may only call tools.
    d.policy(&format!(
        "permit(principal == Identity::\"{me}\", action in [Action::\"everything:prompts/get\", Action::\"everything:resources/read\"], resource);\n\
         forbid(principal, action == Action::\"everything:resources/read\", resource) when {{ context.args.uri like \"*/dynamic/blob/*\" }};\n\
         @approval(\"argument prompts are reviewed\")\n\
         forbid(principal, action == Action::\"everything:prompts/get\", resource) when {{ context.args.name == \"args-prompt\" }};\n",
        me = d.identity_id
    ));

    // Listings: namespaced prompts, resources and templates from the upstream that has them.
    let prompts = agent(&python, port, &agent_token, &["prompts"]);
    let names: Vec<&str> = prompts["prompts"]
        .as_array()
        .unwrap_or_else(|| panic!("{prompts}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        names.contains(&"everything__simple-prompt") && names.contains(&"everything__args-prompt"),
        "{prompts}"
    );
    assert!(
        names.iter().all(|n| n.starts_with("everything__")),
        "{prompts}"
    );
    let resources = agent(&python, port, &agent_token, &["resources"]);
    let uris: Vec<String> = resources["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{resources}"))
        .iter()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect();
    let document = uris
        .iter()
        .find(|u| u.starts_with("demo://resource/static/document/"))
        .unwrap_or_else(|| panic!("no static document listed: {resources}"))
        .clone();
    let templates = agent(&python, port, &agent_token, &["templates"]);
    assert!(
        templates["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "demo://resource/dynamic/text/{resourceId}"),
        "{templates}"
    );

    // Fetching: a prompt, a listed resource and a templated one.
    let prompt = agent(
        &python,
        port,
        &agent_token,
        &["prompt", "everything__simple-prompt", "{}"],
    );
    assert_eq!(
        prompt["messages"][0], "This is a simple prompt without arguments.",
        "{prompt}"
    );
    let read = agent(&python, port, &agent_token, &["read", &document]);
    assert_eq!(read["contents"][0]["uri"], document.as_str(), "{read}");
    assert!(
        !read["contents"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{read}"
    );
    let read = agent(
        &python,
        port,
        &agent_token,
        &["read", "demo://resource/dynamic/text/7"],
    );
    assert!(
        read["contents"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains('7'),
        "{read}"
    );

    // Denial by argument: a JSON-RPC error naming the reason, without policy internals.
    let denied = agent(
        &python,
        port,
        &agent_token,
        &["read", "demo://resource/dynamic/blob/7"],
    );
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    assert!(
        denied["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Denied by Steward"),
        "{denied}"
    );
    assert!(!denied.to_string().contains("forbid"), "{denied}");
    let unknown = agent(&python, port, &agent_token, &["read", "demo://nowhere/1"]);
    assert_eq!(unknown["error"]["code"], -32002, "{unknown}");

    // Approval: the error names the approval id; the approved repeat runs.
    let held = agent(
        &python,
        port,
        &agent_token,
        &["prompt", "everything__args-prompt", r#"{"city":"Berlin"}"#],
    );
    assert_eq!(
        held["error"]["data"]["steward/status"], "approval_required",
        "{held}"
    );
    let approval = held["error"]["data"]["steward/approval_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        held["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&approval),
        "{held}"
    );
    d.ok(
        &["approvals", "approve", &approval, "--reason", "checked"],
        None,
    );
    let meta = json!({"steward/approval": approval}).to_string();
    let approved = agent(
        &python,
        port,
        &agent_token,
        &[
            "prompt",
            "everything__args-prompt",
            r#"{"city":"Berlin"}"#,
            &meta,
        ],
    );
    assert_eq!(
        approved["messages"][0], "What's weather in Berlin?",
        "{approved}"
    );

    // Completions: relayed for a prompt (with the namespaced name rewritten, and context)
    // and a resource template, governed as the get or read they help with.
    let done = complete(
        &python,
        port,
        &agent_token,
        "prompt",
        "everything__completable-prompt",
        r#"{"name":"department","value":"Eng"}"#,
        None,
    );
    assert_eq!(done["values"], json!(["Engineering"]), "{done}");
    let done = complete(
        &python,
        port,
        &agent_token,
        "prompt",
        "everything__completable-prompt",
        r#"{"name":"name","value":""}"#,
        Some(r#"{"department":"Sales"}"#),
    );
    assert_eq!(done["values"], json!(["David", "Eve", "Frank"]), "{done}");
    let done = complete(
        &python,
        port,
        &agent_token,
        "resource",
        "demo://resource/dynamic/text/{resourceId}",
        r#"{"name":"resourceId","value":"1"}"#,
        None,
    );
    assert!(
        done["values"].is_array() && done.get("error").is_none(),
        "{done}"
    );
    // A denied template is not completed; an approval-required prompt is refused without
    // creating an approval (a keystroke must not page a human).
    let denied = complete(
        &python,
        port,
        &agent_token,
        "resource",
        "demo://resource/dynamic/blob/{resourceId}",
        r#"{"name":"resourceId","value":"1"}"#,
        None,
    );
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    let pending_before = json(port, &admin, &["approvals", "list"]).to_string();
    let held = complete(
        &python,
        port,
        &agent_token,
        "prompt",
        "everything__args-prompt",
        r#"{"name":"city","value":"B"}"#,
        None,
    );
    assert_eq!(held["error"]["code"], -32003, "{held}");
    assert!(
        held["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("human approval"),
        "{held}"
    );
    assert_eq!(
        json(port, &admin, &["approvals", "list"]).to_string(),
        pending_before,
        "a completion created an approval request"
    );
    let unknown = complete(
        &python,
        port,
        &agent_token,
        "resource",
        "demo://nowhere/{x}",
        r#"{"name":"x","value":""}"#,
        None,
    );
    assert_eq!(unknown["error"]["code"], -32002, "{unknown}");
    let log = audit_search(port, &admin, "everything:prompts/get", 100);
    assert!(
        log["items"].as_array().unwrap().iter().any(|i| {
            i["event"]["kind"] == "outcome"
                && i["event"]["detail"]["mcp"]["method"] == "completion/complete"
        }),
        "no completion outcome record: {log}"
    );

    // Another identity sees no prompts or resources, and cannot fetch them.
    let none = agent(&python, port, &other_token, &["prompts"]);
    assert_eq!(none["prompts"], json!([]), "{none}");
    let none = agent(&python, port, &other_token, &["resources"]);
    assert_eq!(none["resources"], json!([]), "{none}");
    let denied = agent(
        &python,
        port,
        &other_token,
        &["prompt", "everything__simple-prompt", "{}"],
    );
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    let denied = complete(
        &python,
        port,
        &other_token,
        "prompt",
        "everything__completable-prompt",
        r#"{"name":"department","value":""}"#,
        None,
    );
    assert_eq!(denied["error"]["code"], -32003, "{denied}");

    // Audited like tool calls: decision and outcome records, and the chain verifies.
    for operation in ["everything:prompts/get", "everything:resources/read"] {
        let log = audit_search(port, &admin, operation, 100);
        let kinds: Vec<&str> = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["event"]["kind"].as_str())
            .collect();
        assert!(
            kinds.contains(&"decision") && kinds.contains(&"outcome"),
            "{operation}: {log}"
        );
    }
    assert_eq!(json(port, &admin, &["audit", "verify"])["ok"], true);
}

/// The upstream tool's progress and log messages reach the agent while the call runs:
/// progress under the agent's own token (from stdio and Streamable HTTP servers), log
/// messages from the request's event stream only at or above the level the agent opted in
/// to, and nothing extra for an agent that asked for neither.
#[test]
fn upstream_progress_and_log_messages_are_relayed() {
    let Some((python, d, _)) = mcp_deployment() else {
        return;
    };
    let (_everything_http, everything_port) = everything_http();
    let tools_port = free_port();
    let _tools_http = Proc(
        Command::new(&python)
            .arg(here().join("tool_server.py"))
            .args(["http", &tools_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(tools_port);
    let apply = d.dir.path().join("mcp-progress.yaml");
    std::fs::write(
        &apply,
        format!(
            "version: 1\nservices:\n{}{}{}{}",
            everything_service(),
            http_service("everything_http", everything_port),
            http_service("tools_http", tools_port),
            tool_server_service("tools", &python),
        ),
    )
    .unwrap();
    d.ok(&["apply", "--file", apply.to_str().unwrap()], None);
    for service in ["everything", "everything_http", "tools_http", "tools"] {
        json(d.port, &d.admin, &["mcp", "refresh", service]);
    }
    d.policy("permit(principal, action, resource);\n");

    let progress = |tool: &str, args: Value, level: Option<&str>| {
        let args = args.to_string();
        let mut argv = vec!["progress", tool, args.as_str()];
        argv.extend(level);
        agent(&python, d.port, &d.agent, &argv)
    };
    for service in ["everything", "everything_http"] {
        let r = progress(
            &format!("{service}__trigger-long-running-operation"),
            json!({"duration": 0.6, "steps": 3}),
            None,
        );
        assert_eq!(r["is_error"], false, "{r}");
        assert!(
            r["text"].as_str().unwrap().contains("Steps: 3"),
            "{service}: {r}"
        );
        assert_eq!(
            r["progress"],
            json!([[1.0, 3.0, null], [2.0, 3.0, null], [3.0, 3.0, null]]),
            "{service}: the upstream's progress, under the agent's token, in order"
        );
    }

    // Log messages ride the request's event stream of a Streamable HTTP server; the
    // agent opted in at `info`, so the upstream's `debug` line is not relayed.
    let r = progress("tools_http__chatty", json!({}), Some("info"));
    assert_eq!(r["text"], "chatty done", "{r}");
    assert_eq!(
        r["progress"],
        json!([[1.0, 2.0, "first half"], [2.0, 2.0, "second half"]]),
        "{r}"
    );
    assert_eq!(
        r["logs"],
        json!([["info", "working"], ["warning", "almost done"]]),
        "{r}"
    );
    // Without the opt-in, no log messages (2026-07-28 makes them per-request).
    let r = progress("tools_http__chatty", json!({}), None);
    assert_eq!(r["logs"], json!([]), "{r}");
    assert_eq!(r["progress"].as_array().map(Vec::len), Some(2), "{r}");
    // Over stdio, log messages have no per-request channel: progress only.
    let r = progress("tools__chatty", json!({}), Some("debug"));
    assert_eq!(r["text"], "chatty done", "{r}");
    assert_eq!(r["progress"].as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(r["logs"], json!([]), "{r}");

    // A server that asks its client something mid-call (sampling, elicitation) gets a
    // prompt refusal on either transport, so the call ends instead of waiting out the
    // upstream timeout for an answer that never comes.
    for tool in ["tools__asks", "tools_http__asks"] {
        let started = std::time::Instant::now();
        let r = progress(tool, json!({}), None);
        let text = r["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("sampling refused") && text.contains("elicitation refused"),
            "{tool}: {r}"
        );
        assert!(
            text.contains("does not relay server requests"),
            "{tool}: {r}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{tool} took {:?}",
            started.elapsed()
        );
    }

    // An agent that asks for nothing gets the plain JSON answer.
    let (status, text, body) = rpc(
        d.port,
        &[
            ("Authorization", &format!("Bearer {}", d.agent)),
            ("Mcp-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "tools_http__chatty"),
        ],
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "tools_http__chatty", "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        }}),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        header_value(&text, "content-type").as_deref(),
        Some("application/json"),
        "{text}"
    );
    assert_eq!(
        body["result"]["content"][0]["text"], "chatty done",
        "{text}"
    );

    // Session era: `logging/setLevel` sets the session's floor; the answer becomes an
    // event stream with the relayed notifications, then the result.
    let bearer = format!("Bearer {}", d.agent);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}});
    let (_, text, _) = rpc(d.port, &[("Authorization", &bearer)], &init);
    let session = header_value(&text, "mcp-session-id").expect("a session id");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Mcp-Session-Id", session.as_str()),
        ("Mcp-Protocol-Version", "2025-11-25"),
    ];
    let set_level = |level: &str| {
        rpc(
            d.port,
            &headers,
            &json!({"jsonrpc": "2.0", "id": 2, "method": "logging/setLevel", "params": {"level": level}}),
        )
    };
    let chatty = || {
        let (status, text, _) = rpc(
            d.port,
            &headers,
            &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
                "name": "tools_http__chatty", "arguments": {}, "_meta": {"progressToken": "p-1"}}}),
        );
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            header_value(&text, "content-type").as_deref(),
            Some("text/event-stream"),
            "{text}"
        );
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        (text, events)
    };
    let methods = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .map(|e| e["method"].as_str().unwrap_or("(result)").to_owned())
            .collect()
    };
    // Before `logging/setLevel`: progress only.
    let (text, events) = chatty();
    assert_eq!(
        methods(&events),
        [
            "notifications/progress",
            "notifications/progress",
            "(result)"
        ],
        "{text}"
    );
    let (_, text, body) = set_level("loud");
    assert_eq!(body["error"]["code"], -32602, "{text}");
    let (_, text, body) = set_level("warning");
    assert!(body["result"].is_object(), "{text}");
    let (text, events) = chatty();
    assert_eq!(
        methods(&events),
        [
            "notifications/progress",
            "notifications/message",
            "notifications/progress",
            "(result)"
        ],
        "{text}"
    );
    assert!(
        events
            .iter()
            .filter(|e| e["method"] == "notifications/progress")
            .all(|e| e["params"]["progressToken"] == "p-1"),
        "the agent's own token, not Steward's upstream one: {text}"
    );
    assert_eq!(events[1]["params"]["data"], "almost done", "{text}");
    assert_eq!(
        events[3]["result"]["content"][0]["text"], "chatty done",
        "{text}"
    );

    // The `outcome` of every outcome record of `operation`.
    let outcomes = |operation: &str| -> Vec<Value> {
        let found = json(
            d.port,
            &d.admin,
            &["audit", "search", "--operation", operation],
        );
        found["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["event"]["kind"] == "outcome")
            .map(|i| i["event"]["outcome"].clone())
            .collect()
    };

    // An agent that goes away mid-call: the call still runs to its end upstream and gets
    // its outcome record.
    let operation = "everything_http:trigger-long-running-operation";
    let before = outcomes(operation).len();
    post_and_leave(
        d.port,
        &headers,
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "everything_http__trigger-long-running-operation",
            "arguments": {"duration": 3, "steps": 6}, "_meta": {"progressToken": 9}}}),
    );
    let start = Instant::now();
    loop {
        let found = outcomes(operation);
        if found.len() > before {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no outcome record for the abandoned call: {found:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The calls were governed and audited like any other.
    let found = json(
        d.port,
        &d.admin,
        &["audit", "search", "--operation", "tools_http:chatty"],
    );
    assert!(
        found["items"].as_array().is_some_and(|i| i.len() >= 10),
        "decision and outcome records for five calls: {found}"
    );
    // Outcome records carry the sizes of the messages exchanged with the upstream (over
    // Streamable HTTP and over stdio).
    for operation in ["tools_http:chatty", "tools:chatty"] {
        let found = outcomes(operation);
        assert!(!found.is_empty(), "{operation}: no outcome records");
        for outcome in found {
            assert!(
                outcome["bytes_in"].as_u64() > Some(40) && outcome["bytes_out"].as_u64() > Some(40),
                "{operation}: {outcome}"
            );
        }
    }

    // An upstream's JSON-RPC error reaches the agent as that error, and its outcome
    // record still carries the bytes exchanged.
    for (tool, operation) in [
        ("tools__echo", "tools:echo"),
        ("tools_http__echo", "tools_http:echo"),
    ] {
        let (_, text, body) = rpc(
            d.port,
            &headers,
            &json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {
                "name": tool, "arguments": {"message": "rpc-error"}}}),
        );
        assert_eq!(body["error"]["code"], -32602, "{tool}: {text}");
        let found = outcomes(operation);
        let outcome = found
            .iter()
            .find(|o| o["status"] == 502)
            .unwrap_or_else(|| panic!("{operation}: no outcome for the RPC error: {found:?}"));
        assert!(
            outcome["bytes_in"].as_u64() > Some(40) && outcome["bytes_out"].as_u64() > Some(40),
            "{operation}: {outcome}"
        );
    }

    // An agent that goes away while its call waits for a human: approving the request
    // afterwards runs nothing, and the approval still serves the agent's retry, once.
    d.policy(
        "permit(principal, action, resource);\n\
         @approval(\"echo needs a human\")\n\
         forbid(principal, action == Action::\"tools_http:echo\", resource);\n",
    );
    let echo_outcomes = || outcomes("tools_http:echo").len();
    let before = echo_outcomes();
    let arguments = json!({"message": "held then abandoned"});
    post_and_leave(
        d.port,
        &headers,
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "tools_http__echo", "arguments": arguments,
            "_meta": {"progressToken": 11, "steward/wait": 30}}}),
    );
    // Steward watches the held call's connection and notices the hang-up at once.
    std::thread::sleep(Duration::from_secs(1));
    let pending = json(
        d.port,
        &d.admin,
        &["approvals", "list", "--status", "pending"],
    );
    let approval = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["operation"] == "tools_http:echo")
        .unwrap_or_else(|| panic!("no pending approval for the held call: {pending}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    d.ok(
        &["approvals", "approve", &approval, "--reason", "checked"],
        None,
    );
    // Long enough for a held call still waiting to see the decision (it polls) and run.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        echo_outcomes(),
        before,
        "the abandoned held call ran after its approval"
    );
    let (status, text, body) = rpc(
        d.port,
        &headers,
        &json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {
            "name": "tools_http__echo", "arguments": arguments,
            "_meta": {"steward/approval": approval}}}),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        body["result"]["content"][0]["text"], "held then abandoned",
        "{text}"
    );
    assert_eq!(echo_outcomes(), before + 1, "the approved retry ran once");
}

/// An open GET `/mcp` event stream: what it has carried so far, read by a thread.
struct EventStream {
    status: u16,
    text: std::sync::Arc<std::sync::Mutex<String>>,
    ended: std::sync::Arc<std::sync::atomic::AtomicBool>,
    socket: std::net::TcpStream,
}

impl EventStream {
    fn open(port: u16, bearer: &str, session: &str) -> Self {
        use std::io::{BufRead, BufReader, Write};
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let request = format!(
            "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\nAuthorization: {bearer}\r\nMcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-11-25\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(socket.try_clone().unwrap());
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = std::sync::Arc::clone(&text);
        let ended = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let end = std::sync::Arc::clone(&ended);
        std::thread::spawn(move || {
            let mut line = String::new();
            while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                sink.lock().unwrap().push_str(&line);
                // The chunked encoding's terminating chunk: the server ended the stream.
                if line == "0\r\n" {
                    break;
                }
                line.clear();
            }
            end.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        Self {
            status,
            text,
            ended,
            socket,
        }
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits up to `limit` for the server to end the stream.
    fn wait_ended(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.ended.load(std::sync::atomic::Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Waits up to `limit` for `needle` in the stream.
    fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// A handshake-era session of the agent holding `bearer`; its id.
fn new_session(port: u16, bearer: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}});
    let (status, text, _) = rpc(port, &[("Authorization", bearer)], &init);
    assert_eq!(status, 200, "{text}");
    header_value(&text, "mcp-session-id").expect("a session id")
}

#[test]
fn resource_updates_reach_the_subscribed_session_and_no_other() {
    let Some((_python, d, other_token)) = mcp_deployment() else {
        return;
    };
    let port = d.port;
    let (_everything_http, http_port) = everything_http();
    const POLICY_ALL: &str = "permit(principal, action, resource);\n\
         forbid(principal, action, resource) when { context.args has uri && context.args.uri like \"*private*\" };\n";
    d.policy(POLICY_ALL);
    let bearer = format!("Bearer {}", d.agent);
    let other_bearer = format!("Bearer {other_token}");
    let uri = "demo://resource/static/document/architecture.md";
    // server-everything over stdio (updates on its output), then over Streamable HTTP
    // (updates on the standalone event stream that Steward opens upstream).
    for (service, entry) in [
        ("everything", everything_service()),
        ("evhttp", http_service("evhttp", http_port)),
    ] {
        let apply = d.dir.path().join(format!("{service}.yaml"));
        std::fs::write(&apply, format!("version: 1\nservices:\n{entry}")).unwrap();
        d.ok(&["apply", "--file", apply.to_str().unwrap()], None);
        json(port, &d.admin, &["mcp", "refresh", service]);

        let mine = new_session(port, &bearer);
        let theirs = new_session(port, &other_bearer);
        let quiet = new_session(port, &bearer);
        // A session's stream is its identity's only: another identity is refused.
        let stolen = EventStream::open(port, &other_bearer, &mine);
        assert_eq!(stolen.status, 403, "{service}: {}", stolen.text());
        let stream = EventStream::open(port, &bearer, &mine);
        assert_eq!(stream.status, 200, "{service}");
        let their_stream = EventStream::open(port, &other_bearer, &theirs);
        let quiet_stream = EventStream::open(port, &bearer, &quiet);
        assert_eq!((their_stream.status, quiet_stream.status), (200, 200));
        if service == "everything" {
            // A policy change may change what anyone may list: every open stream hears it.
            d.policy(&format!("{POLICY_ALL}// reloaded\n"));
            for s in [&stream, &their_stream, &quiet_stream] {
                assert!(
                    s.wait_for("notifications/tools/list_changed", Duration::from_secs(10)),
                    "no list change announced: {}",
                    s.text()
                );
            }
        }

        let in_session = [
            ("Authorization", bearer.as_str()),
            ("Mcp-Session-Id", mine.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
        ];
        // A session keeps what it subscribed to, so a URI's length is bounded.
        let long = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe",
            "params": {"uri": format!("demo://{}", "x".repeat(5000))}});
        let (_, text, body) = rpc(port, &in_session, &long);
        assert_eq!(body["error"]["code"], -32602, "{text}");
        // Only what the agent may read: a URI it may not read cannot be subscribed to.
        let private = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe",
            "params": {"uri": "demo://resource/private/ledger"}});
        let (_, text, body) = rpc(port, &in_session, &private);
        assert_eq!(body["error"]["code"], -32003, "{text}");
        let subscribe = json!({"jsonrpc": "2.0", "id": 2, "method": "resources/subscribe",
            "params": {"uri": uri}});
        let (status, text, body) = rpc(port, &in_session, &subscribe);
        assert_eq!((status, &body["result"]), (200, &json!({})), "{text}");
        // The tool that makes server-everything send updates for its subscriptions, at
        // once and then every 5 s; a governed call like any other.
        let toggle = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": format!("{service}__toggle-subscriber-updates"), "arguments": {}}});
        let (status, text, body) = rpc(port, &in_session, &toggle);
        assert_eq!(status, 200, "{text}");
        assert_ne!(body["result"]["isError"], true, "{body}");
        assert!(
            stream.wait_for("notifications/resources/updated", Duration::from_secs(20)),
            "{service}: no update reached the subscribed session: {}",
            stream.text()
        );
        assert!(stream.text().contains(uri), "{}", stream.text());
        // Give a second round of updates the time to arrive, then check the others.
        std::thread::sleep(Duration::from_millis(500));
        for (who, other) in [
            ("another identity", &their_stream),
            ("another session", &quiet_stream),
        ] {
            assert!(
                !other.text().contains("notifications/resources/updated"),
                "{service}: {who} received an update it did not subscribe to: {}",
                other.text()
            );
        }
        if service == "everything" {
            // A restarted stdio server is subscribed again: kill it, and once it is back
            // turn its updates on again; they still reach the session.
            let out = Command::new("pgrep")
                .args(["-P", &d.pid().to_string(), "node"])
                .output()
                .unwrap();
            let pids = String::from_utf8_lossy(&out.stdout).into_owned();
            let pid = pids
                .split_whitespace()
                .next()
                .expect("the stdio server's pid");
            assert!(
                Command::new("kill")
                    .args(["-9", pid])
                    .status()
                    .unwrap()
                    .success()
            );
            let seen = stream.text().len();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (status, _, body) = rpc(port, &in_session, &toggle);
                if status == 200 && body["result"]["isError"] != true {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the server did not come back: {body}"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stream.text()[seen..].contains("notifications/resources/updated") {
                assert!(
                    Instant::now() < deadline,
                    "no update after the restart: {}",
                    &stream.text()[seen..]
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if service == "evhttp" {
            // A suspended identity stops hearing: its stream ends at the next update.
            d.ok(
                &["identity", "suspend", &d.identity_id, "--reason", "e2e"],
                None,
            );
            assert!(
                stream.wait_ended(Duration::from_secs(20)),
                "the suspended identity's stream stayed open"
            );
            assert!(!their_stream.wait_ended(Duration::from_millis(10)));
            break;
        }
        let unsubscribe = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/unsubscribe",
            "params": {"uri": uri}});
        let (status, text, body) = rpc(port, &in_session, &unsubscribe);
        assert_eq!((status, &body["result"]), (200, &json!({})), "{text}");
        // Stop the upstream's updates before the next round.
        let (status, text, _) = rpc(port, &in_session, &toggle);
        assert_eq!(status, 200, "{text}");
        d.ok(&["service", "remove", service], None);
    }
}

/// POSTs one MCP request on its own connection and returns the reader of its answer (an
/// event stream, when the call has something to say before its result).
fn post_streaming(
    port: u16,
    headers: &[(&str, &str)],
    body: &Value,
) -> std::io::BufReader<std::net::TcpStream> {
    use std::io::Write;
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes()).unwrap();
    std::io::BufReader::new(stream)
}

/// The next JSON message on an event stream.
fn next_event(reader: &mut std::io::BufReader<std::net::TcpStream>) -> Value {
    use std::io::BufRead;
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the stream ended");
        if let Some(data) = line.strip_prefix("data: ") {
            return serde_json::from_str(data.trim()).unwrap();
        }
    }
}

#[test]
fn elicitations_reach_the_agent_and_its_answer_reaches_the_tool() {
    let Some((_python, d, other_token)) = mcp_deployment() else {
        return;
    };
    let port = d.port;
    let (_everything_http, http_port) = everything_http();
    let apply = d.dir.path().join("evhttp.yaml");
    std::fs::write(
        &apply,
        format!(
            "version: 1\nservices:\n{}",
            http_service("evhttp", http_port)
        ),
    )
    .unwrap();
    d.ok(&["apply", "--file", apply.to_str().unwrap()], None);
    json(port, &d.admin, &["mcp", "refresh", "evhttp"]);
    d.policy("permit(principal, action, resource);");
    let bearer = format!("Bearer {}", d.agent);
    let other_bearer = format!("Bearer {other_token}");

    // A client that takes elicitations says so in `initialize`.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "e2e", "version": "1"}}});
    let (status, text, _) = rpc(port, &[("Authorization", &bearer)], &init);
    assert_eq!(status, 200, "{text}");
    let session = header_value(&text, "mcp-session-id").unwrap();
    let in_session = [
        ("Authorization", bearer.as_str()),
        ("Mcp-Session-Id", session.as_str()),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "evhttp__trigger-elicitation-request", "arguments": {}}});
    let mut answer = post_streaming(port, &in_session, &call);
    let asked = next_event(&mut answer);
    assert_eq!(asked["method"], "elicitation/create", "{asked}");
    assert!(asked["params"]["requestedSchema"]["properties"]["name"].is_object());
    let ask_id = asked["id"].as_str().expect("a string id").to_owned();
    assert!(ask_id.starts_with("steward-ask-"), "{ask_id}");

    // Only the identity whose call it is may answer.
    let reply = |result: Value| json!({"jsonrpc": "2.0", "id": ask_id, "result": result});
    let forged = reply(json!({"action": "accept", "content": {"name": "Mallory"}}));
    let (status, _, _) = rpc(port, &[("Authorization", &other_bearer)], &forged);
    assert_eq!(status, 202);
    let real = reply(json!({"action": "accept",
        "content": {"name": "Ada Lovelace", "check": true, "email": "ada@example.com"}}));
    let (status, text, _) = rpc(port, &in_session, &real);
    assert_eq!(status, 202, "{text}");
    let result = next_event(&mut answer);
    let texts = result["result"]["content"].to_string();
    assert!(
        texts.contains("User provided the requested information") && texts.contains("Ada Lovelace"),
        "{result}"
    );
    assert!(
        !texts.contains("Mallory"),
        "another identity's answer got through: {result}"
    );

    // The audit trail has what was asked and how it was answered, never the answers.
    let elicitation_audit = || {
        d.ok(
            &[
                "-o",
                "json",
                "audit",
                "search",
                "--operation",
                "evhttp:trigger-elicitation-request",
            ],
            None,
        )
    };
    let audit = elicitation_audit();
    let records: Value = serde_json::from_str(&audit).unwrap();
    let asked_record = records["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["event"]["kind"] == "server_request")
        .unwrap_or_else(|| panic!("no server_request record: {audit}"));
    let detail = &asked_record["event"]["detail"];
    assert_eq!(detail["action"], "accept", "{detail}");
    assert_eq!(detail["asked"]["method"], "elicitation/create", "{detail}");
    assert!(
        detail["answered_fields"]
            .as_array()
            .unwrap()
            .contains(&json!("name")),
        "{detail}"
    );
    assert!(!audit.contains("Ada Lovelace") && !audit.contains("ada@example.com"));

    // The TypeScript SDK client answers through Steward like any elicitation it gets.
    if let Some(node) = ts_sdk_node() {
        let v = ts_agent(
            node,
            "ts_elicit.mjs",
            port,
            &d.agent,
            &[
                "evhttp__trigger-elicitation-request",
                "Grace from TypeScript",
            ],
        );
        assert_eq!(v["asked"].as_array().map(Vec::len), Some(1), "{v}");
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .contains("Grace from TypeScript"),
            "{v}"
        );
    }

    // A question is an operation of the service, governed like its tools: this one asks
    // for an email address, which policy forbids.
    d.policy(
        "permit(principal, action, resource);\n\
         forbid(principal, action == Action::\"evhttp:elicitation/create\", resource) when { context.args.fields.contains(\"email\") };\n",
    );
    let call3 = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "evhttp__trigger-elicitation-request", "arguments": {}}});
    let (status, text, body) = rpc(port, &in_session, &call3);
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("elicitation/create\",\"params"), "{text}");
    assert!(
        body["result"]["isError"] == true || body["error"].is_object(),
        "{body}"
    );
    let audit = elicitation_audit();
    assert!(
        serde_json::from_str::<Value>(&audit).unwrap()["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"]["kind"] == "server_request"
                && r["event"]["detail"]["action"] == "refused"),
        "no record of the refused question: {audit}"
    );
    d.policy("permit(principal, action, resource);\n");

    // A client that did not declare elicitation gets no question; the tool is refused one.
    let plain = new_session(port, &bearer);
    let plain_session = [
        ("Authorization", bearer.as_str()),
        ("Mcp-Session-Id", plain.as_str()),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    let (status, text, body) = rpc(port, &plain_session, &call);
    assert_eq!(status, 200, "{text}");
    assert!(!text.contains("elicitation/create"), "{text}");
    assert!(
        body["result"]["isError"] == true || body["error"].is_object(),
        "{body}"
    );
}
