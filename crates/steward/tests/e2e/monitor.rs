//! Behavioural monitoring end to end against a real httpbin: the circuit breaker suspends a
//! probing identity (and the suspension survives a restart), a human reinstates it,
//! observe-only identities are reported but never suspended, alerts reach the webhook, the
//! audit log and `/metrics`, and `steward incident quarantine` revokes and writes the
//! forensic report.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

/// A tiny learning period so a test can leave it in a few calls, and a short deny-burst
/// window so the burst is compared with a quiet window rather than with the warm-up calls.
const CONFIG: &str = "version = 1\n\n[monitor]\nlearning_days = 0\nlearning_calls = 5\nsnapshot_interval_secs = 1\n\n[monitor.detectors.deny_burst]\nwindow_ms = 2000\n";

const POLICY: &str = "permit(principal, action in Action::\"read\", resource);\n\
permit(principal, action == Action::\"httpbin:refund\", resource);\n\
@approval(\"refunds above 100 need a human\")\n\
forbid(principal, action == Action::\"httpbin:refund\", resource) when { context.args has amount && context.args.amount > 100 };\n\
@id(\"risky\")\n\
forbid(principal, action, resource) when { principal.risk_score >= 40 && context.risk_score >= 40 };\n";

/// Records the JSON bodies POSTed to it (the notification webhook).
fn webhook_sink() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                sink.lock().unwrap().push(v);
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

struct Env {
    dir: tempfile::TempDir,
    port: u16,
    admin: String,
    base: String,
    _httpbin: Proc,
    steward: Option<Proc>,
    webhook: Arc<Mutex<Vec<Value>>>,
    webhook_port: u16,
}

impl Env {
    fn start() -> Option<Self> {
        if !httpbin_available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("steward.toml"), CONFIG).unwrap();
        let up_port = free_port();
        let httpbin = Proc(
            Command::new("python3")
                .args([
                    "-m",
                    "gunicorn",
                    "-w",
                    "2",
                    "-b",
                    &format!("127.0.0.1:{up_port}"),
                    "httpbin:app",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let (webhook_port, webhook) = webhook_sink();
        let port = free_port();
        let hook = format!("http://127.0.0.1:{webhook_port}/hook");
        let (steward, token) =
            start_steward(dir.path(), port, &[("STEWARD_NOTIFY_WEBHOOK", &hook)]);
        let admin = token.expect("first start prints a bootstrap token");
        wait_port(up_port);
        add_httpbin_service(port, &admin, up_port);
        let pol = dir.path().join("policies");
        std::fs::create_dir_all(&pol).unwrap();
        std::fs::write(pol.join("monitor.cedar"), POLICY).unwrap();
        ok(
            port,
            &admin,
            &["policy", "set", pol.to_str().unwrap()],
            None,
        );
        Some(Self {
            base: format!("http://127.0.0.1:{port}/gw/httpbin"),
            dir,
            port,
            admin,
            _httpbin: httpbin,
            steward: Some(steward),
            webhook,
            webhook_port,
        })
    }

    fn restart(&mut self) {
        drop(self.steward.take());
        let hook = format!("http://127.0.0.1:{}/hook", self.webhook_port);
        let (steward, _) = start_steward(
            self.dir.path(),
            self.port,
            &[("STEWARD_NOTIFY_WEBHOOK", &hook)],
        );
        self.steward = Some(steward);
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(self.port, &self.admin, args, None)
    }

    fn json(&self, args: &[&str]) -> Value {
        json(self.port, &self.admin, args)
    }

    /// Creates an identity with a key; returns (id, key, access token).
    fn agent(&self, name: &str) -> (String, String, String) {
        let id = self.json(&["identity", "create", name, "--owner", "alice"])["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = self.ok(&["identity", "key-create", &id]).trim().to_owned();
        let token = ok(
            self.port,
            &self.admin,
            &["token", "get", "--client-id", &id],
            Some(&key),
        )
        .trim()
        .to_owned();
        (id, key, token)
    }

    fn call(&self, token: &str, method: &str, path: &str) -> u16 {
        http(
            method,
            &format!("{}{path}", self.base),
            &[("Authorization", &format!("Bearer {token}"))],
            None,
        )
        .0
    }

    fn admin_get(&self, path: &str) -> Value {
        let (status, body) = http(
            "GET",
            &format!("http://127.0.0.1:{}{path}", self.port),
            &[("Authorization", &format!("Bearer {}", self.admin))],
            None,
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap_or("null")).unwrap()
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Leaves the learning period with normal reads (fewer than the rate-spike detector's
/// 30 calls a minute).
fn warm_up(env: &Env, token: &str) {
    for _ in 0..20 {
        assert_eq!(env.call(token, "GET", "/headers"), 200);
    }
}

/// Lets the short deny-burst window close on the warm-up calls.
fn quiet() {
    std::thread::sleep(Duration::from_millis(4500));
}

#[test]
fn breaker_suspends_a_probing_identity_survives_restart_and_a_human_reinstates() {
    let Some(mut env) = Env::start() else { return };

    // Observe-only: the same probing is reported as `would_suspend` and never suspends.
    let (watched, _, watched_token) = env.agent("rollout-bot");
    env.ok(&["identity", "update", &watched, "--observe-only", "true"]);
    let (id, key, token) = env.agent("prober");
    warm_up(&env, &watched_token);
    warm_up(&env, &token);
    quiet();
    for i in 0..60 {
        let status = env.call(&watched_token, "DELETE", &format!("/anything/w{i}"));
        assert_eq!(
            status, 403,
            "an observe-only identity must never be suspended (call {i})"
        );
    }
    wait_for("the would-suspend alert", || {
        env.json(&["alerts", "list", "--identity", &watched])["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["breaker"] == "would_suspend")
    });
    assert_eq!(
        env.json(&["identity", "show", &watched])["status"],
        "active"
    );

    // A probing identity: normal reads, then a burst of denied deletes.
    // A pending approval that the suspension must cancel.
    let (status, body) = http(
        "POST",
        &format!("{}/post", env.base),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Content-Type", "application/json"),
        ],
        Some(r#"{"amount":500,"currency":"EUR"}"#),
    );
    assert_eq!(status, 403, "{body}");
    let approval: Value = serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let approval_id = approval["approval_id"].as_str().unwrap().to_owned();

    let mut read_denied_by_risk = false;
    let mut suspended_after = None;
    for i in 0..80 {
        let status = env.call(&token, "DELETE", &format!("/anything/x{i}"));
        if status == 401 {
            suspended_after = Some(i);
            break;
        }
        assert_eq!(status, 403);
        // Reads are allowed by policy until the risk score reaches 40.
        if env.call(&token, "GET", "/headers") == 403 {
            read_denied_by_risk = true;
        }
    }
    let suspended_after =
        suspended_after.expect("the circuit breaker never suspended the probing identity");
    assert!(
        suspended_after >= 5,
        "suspended after only {suspended_after} denied calls"
    );
    assert!(
        read_denied_by_risk,
        "`principal.risk_score` / `context.risk_score` never reached policy"
    );
    // Tokens stop working at once, and the key no longer yields a token.
    assert_eq!(env.call(&token, "GET", "/headers"), 401);
    let (code, _, _) = cli(
        env.port,
        &env.admin,
        &["token", "get", "--client-id", &id],
        Some(&key),
    );
    assert_ne!(code, 0, "a suspended identity's key must not yield a token");
    wait_for("the stored suspension", || {
        env.json(&["identity", "show", &id])["status"] == "suspended"
    });
    let shown = env.json(&["identity", "show", &id]);
    assert!(
        shown["status_reason"]
            .as_str()
            .unwrap()
            .contains("circuit breaker"),
        "{shown}"
    );
    assert_ne!(
        env.json(&["approvals", "show", &approval_id])["status"],
        "pending",
        "pending approvals are cancelled"
    );

    // Alerts: stored, listed, audited, sent to the webhook, counted in /metrics and status.
    let alerts = env.json(&["alerts", "list", "--identity", "prober"]);
    let items = alerts["items"].as_array().unwrap().clone();
    assert!(!items.is_empty());
    let tripping = items
        .iter()
        .find(|a| a["breaker"] == "suspended")
        .expect("an alert records the suspension");
    assert!(tripping["time_to_suspend_ms"].as_i64().unwrap() >= 0);
    assert!(
        !tripping["evidence"].as_array().unwrap().is_empty(),
        "alerts carry the calls concerned"
    );
    let table = env.ok(&["alerts", "list", "--status", "open"]);
    assert!(
        table.contains(&id) && table.contains("deny_burst"),
        "{table}"
    );
    let audited = env.admin_get("/admin/v1/audit?kind=alert&limit=1000");
    assert!(
        audited["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"]["resource"] == id.as_str()),
        "alerts are audited"
    );
    let suspensions = env.admin_get("/admin/v1/audit?kind=suspension&limit=1000");
    assert!(
        suspensions["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"]["resource"] == id.as_str()
                && r["event"]["detail"]["by"] == "circuit_breaker")
    );
    wait_for("webhook notifications", || {
        let seen = env.webhook.lock().unwrap();
        seen.iter()
            .any(|v| v["type"] == "alert_raised" && v["identity_id"] == id.as_str())
            && seen
                .iter()
                .any(|v| v["type"] == "identity_suspended" && v["identity_id"] == id.as_str())
    });
    let (_, metrics) = http(
        "GET",
        &format!("http://127.0.0.1:{}/metrics", env.port),
        &[],
        None,
    );
    for name in [
        "steward_alerts_open",
        "steward_identities_suspended",
        "steward_monitor_time_to_detect_seconds",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    let status = env.json(&["status"]);
    assert!(
        status["monitoring"]["suspended_identities"]
            .as_u64()
            .unwrap()
            >= 1,
        "{status}"
    );
    assert!(
        status["monitoring"]["open_alerts"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert!(
        status["monitoring"]["time_to_suspend_ms"]["count"]
            .as_u64()
            .unwrap()
            >= 1,
        "{status}"
    );

    // Acknowledge then close one alert; closing is final and audited.
    let alert_id = items[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        env.json(&["alerts", "ack", &alert_id, "--note", "looking"])["status"],
        "acknowledged"
    );
    assert_eq!(
        env.json(&["alerts", "close", &alert_id, "--note", "handled"])["status"],
        "closed"
    );
    let (code, _, _) = cli(env.port, &env.admin, &["alerts", "ack", &alert_id], None);
    assert_ne!(code, 0, "a closed alert cannot be re-opened");
    let mutations = env.admin_get("/admin/v1/audit?kind=admin_mutation&limit=1000");
    assert!(
        mutations["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"]["operation"] == "alert.close"
                && r["event"]["resource"] == alert_id.as_str())
    );

    // The suspension and the learned baselines survive a restart; nothing was deleted.
    std::thread::sleep(Duration::from_millis(1500));
    env.restart();
    assert_eq!(env.json(&["identity", "show", &id])["status"], "suspended");
    assert_eq!(env.call(&token, "GET", "/headers"), 401);
    assert!(
        env.json(&["status"])["monitoring"]["monitored_identities"]
            .as_u64()
            .unwrap()
            >= 2,
        "baselines were not restored"
    );
    assert!(
        env.json(&["alerts", "list", "--identity", &id])["items"]
            .as_array()
            .unwrap()
            .len()
            >= items.len()
    );
    // Observe-only flags are loaded at startup: a fresh burst still never suspends.
    quiet();
    for i in 0..40 {
        let status = env.call(&watched_token, "DELETE", &format!("/anything/again{i}"));
        assert_eq!(
            status, 403,
            "observe-only was lost across the restart (call {i})"
        );
    }
    wait_for("a second would-suspend alert after the restart", || {
        env.json(&["alerts", "list", "--identity", &watched])["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["breaker"] == "would_suspend")
            .count()
            >= 2
    });

    // Reinstating is a human, audited action; it resets the risk score.
    let (code, _, err) = cli(env.port, &env.admin, &["identity", "reinstate", &id], None);
    assert_ne!(code, 0, "reinstate requires --reason: {err}");
    env.ok(&[
        "identity",
        "reinstate",
        &id,
        "--reason",
        "probing was a misconfigured test",
    ]);
    let reinstated = env.admin_get("/admin/v1/audit?kind=reinstatement&limit=1000");
    assert!(
        reinstated["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |r| r["event"]["resource"] == id.as_str() && r["event"]["actor"]["kind"] == "admin"
            )
    );
    assert_eq!(env.json(&["identity", "show", &id])["risk_score"], 0);
    let fresh = ok(
        env.port,
        &env.admin,
        &["token", "get", "--client-id", &id],
        Some(&key),
    )
    .trim()
    .to_owned();
    assert_eq!(env.call(&fresh, "GET", "/headers"), 200);
    assert_eq!(env.json(&["audit", "verify"])["ok"], true);
}

#[test]
fn quarantine_revokes_everything_and_writes_the_forensic_report() {
    let Some(env) = Env::start() else { return };
    let (id, key, token) = env.agent("compromised-bot");
    assert_eq!(env.call(&token, "GET", "/headers"), 200);
    assert_eq!(env.call(&token, "GET", "/anything/report"), 200);
    assert_eq!(env.call(&token, "DELETE", "/anything/backups"), 403);
    let out = env.dir.path().join("incident");
    let summary = env.ok(&[
        "incident",
        "quarantine",
        "compromised-bot",
        "--since",
        "1h",
        "--out",
        out.to_str().unwrap(),
        "--reason",
        "key leaked",
    ]);
    assert!(
        summary.contains("NEEDS MANUAL ROTATION") && summary.contains("httpbin-token"),
        "{summary}"
    );

    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("timeline.json")).unwrap()).unwrap();
    assert_eq!(report["identity"]["id"], id.as_str());
    assert_eq!(report["identity"]["status"], "suspended");
    assert_eq!(report["keys_revoked"], 1);
    let manual = report["secrets_needing_manual_rotation"]
        .as_array()
        .unwrap();
    assert!(
        manual.iter().any(|s| s["secret"] == "httpbin-token"),
        "{manual:?}"
    );
    let timeline = report["timeline"].as_array().unwrap();
    for op in [
        "httpbin:headers",
        "httpbin:anything.read",
        "httpbin:anything.delete",
    ] {
        assert!(
            timeline
                .iter()
                .any(|e| e["operation"] == op && e["actor"] == id.as_str()),
            "timeline lacks {op}"
        );
    }
    assert!(timeline.iter().any(|e| e["decision"] == "deny"));
    assert!(
        timeline.iter().any(|e| e["kind"] == "suspension"),
        "the quarantine itself is in the timeline"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.starts_with("<!DOCTYPE html>")
            && html.contains("compromised-bot")
            && html.contains("httpbin:anything.delete")
    );
    assert!(html.contains("NEEDS MANUAL ROTATION"));
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "the report is self-contained"
    );
    assert!(
        !html.contains(CANARY) && !report.to_string().contains(CANARY),
        "no secret value in the report"
    );

    // Tokens and keys stop working; nothing is deleted.
    assert_eq!(env.call(&token, "GET", "/headers"), 401);
    let (code, _, _) = cli(
        env.port,
        &env.admin,
        &["token", "get", "--client-id", &id],
        Some(&key),
    );
    assert_ne!(code, 0);
    let keys = env.json(&["identity", "key-list", &id]);
    assert!(
        keys["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| !k["revoked_at"].is_null())
    );
    let mutations = env.admin_get("/admin/v1/audit?kind=admin_mutation&limit=1000");
    assert!(
        mutations["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["event"]["operation"] == "incident.quarantine"
                && r["event"]["resource"] == id.as_str())
    );
    // Even after a reinstatement, tokens issued before the quarantine stay revoked.
    env.ok(&["identity", "reinstate", &id, "--reason", "investigated"]);
    assert_eq!(env.call(&token, "GET", "/headers"), 401);
    assert_eq!(env.json(&["audit", "verify"])["ok"], true);
}
