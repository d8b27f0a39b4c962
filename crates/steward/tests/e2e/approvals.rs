//! Human approvals, segregation of duties, notifications and just-in-time elevation, through
//! the real binary's HTTP API and CLI.
//!
//! Time: expiry here uses short real durations (2-3 s), which an end-to-end test of a real
//! process cannot avoid; the same rules are unit-tested with a controlled clock in
//! `steward-gateway` (`approvals::tests`, `grants::tests`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::common::*;

const REFUND_POLICY: &str = "permit(principal, action in Action::\"read\", resource);\n\
permit(principal, action == Action::\"httpbin:refund\", resource);\n\
@approval(\"refunds above 100 need a human\")\n\
forbid(principal, action == Action::\"httpbin:refund\", resource) when { context.args has amount && context.args.amount > 100 && context.args.amount <= 1000 };\n\
@approval(\"refunds above 1000 need two humans\")\n\
@approvals(\"2\")\n\
forbid(principal, action == Action::\"httpbin:refund\", resource) when { context.args has amount && context.args.amount > 1000 };\n";

const READ_ONLY_POLICY: &str = "permit(principal, action in Action::\"read\", resource);\n";

/// One steward with httpbin (or a dead upstream), identity `billing-bot` owned by `alice`
/// and its access token.
struct Env {
    port: u16,
    admin: String,
    agent: String,
    identity_id: String,
    dir: tempfile::TempDir,
    _steward: Proc,
    _httpbin: Option<Proc>,
}

fn now_ms() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn body_of(raw: &str) -> Value {
    serde_json::from_str(raw.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap_or(Value::Null)
}

impl Env {
    /// `None` when httpbin is wanted but not installed (and CI is not set).
    fn start(config: &str, with_httpbin: bool, policy: &str, env: &[(&str, &str)]) -> Option<Self> {
        if with_httpbin && !httpbin_available() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("steward.toml"),
            format!("version = 1\n{config}"),
        )
        .unwrap();
        let up_port = free_port();
        let httpbin = with_httpbin.then(|| {
            Proc(
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
            )
        });
        let port = free_port();
        let (steward, admin) = start_fresh(dir.path(), port, env);
        if with_httpbin {
            wait_port(up_port);
        }
        let identity = json(
            port,
            &admin,
            &["identity", "create", "billing-bot", "--owner", "alice"],
        );
        let identity_id = identity["id"].as_str().unwrap().to_owned();
        let key = ok(
            port,
            &admin,
            &["identity", "key-create", &identity_id],
            None,
        )
        .trim()
        .to_owned();
        let agent = ok(
            port,
            &admin,
            &["token", "get", "--client-id", "billing-bot"],
            Some(&key),
        )
        .trim()
        .to_owned();
        add_httpbin_service(port, &admin, up_port);
        let env = Self {
            port,
            admin,
            agent,
            identity_id,
            dir,
            _steward: steward,
            _httpbin: httpbin,
        };
        env.policy(policy);
        Some(env)
    }

    fn policy(&self, text: &str) {
        let pol = self.dir.path().join(format!("policies-{}", free_port()));
        std::fs::create_dir_all(&pol).unwrap();
        std::fs::write(pol.join("suite.cedar"), text).unwrap();
        ok(
            self.port,
            &self.admin,
            &["policy", "set", pol.to_str().unwrap()],
            None,
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A new admin token with `role` for `principal`.
    fn admin_token(&self, role: &str, principal: &str) -> String {
        let bearer = format!("Bearer {}", self.admin);
        let body =
            json!({"name": format!("{role}-{principal}"), "role": role, "principal": principal})
                .to_string();
        let (status, raw) = http(
            "POST",
            &self.url("/admin/v1/admin-tokens"),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            Some(&body),
        );
        assert_eq!(status, 201, "{raw}");
        body_of(&raw)["token"].as_str().unwrap().to_owned()
    }

    /// The agent's refund call with `amount` (and optional extra JSON fields / headers).
    fn refund(&self, body: &str, headers: &[(&str, &str)]) -> (u16, Value, String) {
        let bearer = format!("Bearer {}", self.agent);
        let mut all = vec![
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        all.extend_from_slice(headers);
        let (status, raw) = http("POST", &self.url("/gw/httpbin/post"), &all, Some(body));
        (status, body_of(&raw), raw)
    }

    /// A refund that must need approval; returns the approval id.
    fn pending_refund(&self, body: &str) -> String {
        let (status, problem, raw) = self.refund(body, &[]);
        assert_eq!(status, 403, "{raw}");
        assert_eq!(
            problem["type"]
                .as_str()
                .map(|t| t.ends_with("approval_required")),
            Some(true),
            "{raw}"
        );
        problem["approval_id"].as_str().unwrap().to_owned()
    }

    /// Approves or denies through the admin API with `token`.
    fn decide(&self, token: &str, id: &str, approve: bool, reason: &str) -> (u16, Value) {
        let verb = if approve { "approve" } else { "deny" };
        let bearer = format!("Bearer {token}");
        let body = json!({"reason": reason}).to_string();
        let (status, raw) = http(
            "POST",
            &self.url(&format!("/admin/v1/approvals/{id}/{verb}")),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            Some(&body),
        );
        (status, body_of(&raw))
    }

    /// The id of the pending approval a held refund of `amount` created, once it exists.
    fn held_approval(&self, amount: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let pending = json(
                self.port,
                &self.admin,
                &["approvals", "list", "--status", "pending"],
            );
            if let Some(a) = pending["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["body"]["args"]["amount"] == amount)
            {
                return a["id"].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the held request never created an approval"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn approval(&self, id: &str) -> Value {
        json(self.port, &self.admin, &["approvals", "show", id])
    }

    /// Every audit event, oldest first.
    fn audit(&self) -> Vec<Value> {
        let bearer = format!("Bearer {}", self.admin);
        let (status, raw) = http(
            "GET",
            &self.url("/admin/v1/audit?limit=10000"),
            &[("Authorization", &bearer)],
            None,
        );
        assert_eq!(status, 200, "{raw}");
        let mut items: Vec<Value> = body_of(&raw)["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        items.sort_by_key(|i| i["seq"].as_i64());
        items.into_iter().map(|i| i["event"].clone()).collect()
    }

    fn audit_for(&self, approval_id: &str) -> Vec<Value> {
        self.audit()
            .into_iter()
            .filter(|e| e["approval_id"] == approval_id)
            .collect()
    }

    fn agent_get(&self, path: &str) -> (u16, Value) {
        let bearer = format!("Bearer {}", self.agent);
        let (status, raw) = http("GET", &self.url(path), &[("Authorization", &bearer)], None);
        (status, body_of(&raw))
    }

    fn agent_delete(&self) -> u16 {
        let bearer = format!("Bearer {}", self.agent);
        http(
            "DELETE",
            &self.url("/gw/httpbin/anything/x"),
            &[("Authorization", &bearer)],
            None,
        )
        .0
    }

    fn elevate(&self, body: &Value) -> (u16, Value) {
        let bearer = format!("Bearer {}", self.agent);
        let (status, raw) = http(
            "POST",
            &self.url("/v1/elevations"),
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            Some(&body.to_string()),
        );
        (status, body_of(&raw))
    }

    fn grant(&self, grant_id: &str) -> Value {
        let shown = json(
            self.port,
            &self.admin,
            &["identity", "show", &self.identity_id],
        );
        shown["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == grant_id)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// Starts steward on a fresh data directory and waits (up to 60 s, the machine may be busy)
/// for the bootstrap token it prints once.
fn start_fresh(dir: &Path, port: u16, env: &[(&str, &str)]) -> (Proc, String) {
    use std::io::BufRead;
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(format!("steward-{port}.log"))).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let token = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.trim().starts_with("stwa_") => break line.trim().to_owned(),
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                panic!(
                    "steward exited: {}",
                    std::fs::read_to_string(dir.join(format!("steward-{port}.log")))
                        .unwrap_or_default()
                )
            }
        }
        assert!(Instant::now() < deadline, "no bootstrap token within 60 s");
    };
    wait_port(port);
    (proc, token)
}

fn kinds(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["kind"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn concurrent_approvers_exactly_one_decision_wins() {
    let Some(env) = Env::start(
        "[approvals]\nmax_requests_per_hour = 1000\n",
        true,
        REFUND_POLICY,
        &[],
    ) else {
        return;
    };
    let bob = env.admin_token("approver", "bob");
    let env = Arc::new(env);
    let rounds = 24;
    let mut conflicts = 0;
    for round in 0..rounds {
        let id = env.pending_refund(&format!(r#"{{"amount":{},"currency":"EUR"}}"#, 101 + round));
        let barrier = Arc::new(Barrier::new(2));
        // Alternate who approves and who denies, so neither side wins by position.
        let approver_is_admin = round % 2 == 0;
        let spawn = |token: String, approve: bool| {
            let (env, barrier, id) = (Arc::clone(&env), Arc::clone(&barrier), id.clone());
            std::thread::spawn(move || {
                barrier.wait();
                (approve, env.decide(&token, &id, approve, "race"))
            })
        };
        let a = spawn(env.admin.clone(), approver_is_admin);
        let b = spawn(bob.clone(), !approver_is_admin);
        let results = [a.join().unwrap(), b.join().unwrap()];
        let mut statuses: Vec<u16> = results.iter().map(|(_, (s, _))| *s).collect();
        statuses.sort();
        assert_eq!(
            statuses,
            vec![200, 409],
            "round {round}: exactly one decision must win: {results:?}"
        );
        let (winner_approved, _) = results.iter().find(|(_, (s, _))| *s == 200).unwrap();
        let (_, (_, loser)) = results.iter().find(|(_, (s, _))| *s == 409).unwrap();
        assert!(
            loser["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("approval"),
            "a clear conflict error: {loser}"
        );
        let stored = env.approval(&id);
        assert_eq!(
            stored["status"],
            if *winner_approved {
                "approved"
            } else {
                "denied"
            },
            "round {round}"
        );
        assert_eq!(
            stored["body"]["decisions"].as_array().unwrap().len(),
            1,
            "only the winner's decision is stored"
        );
        if loser["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("concurrently")
        {
            conflicts += 1;
        }
    }
    eprintln!(
        "{rounds} rounds, {conflicts} lost at the compare-and-set (the rest saw the decision already made)"
    );
    assert_eq!(json(env.port, &env.admin, &["audit", "verify"])["ok"], true);
}

#[test]
fn segregation_of_duties_quorum_coalescing_flood_and_audit_links() {
    let Some(env) = Env::start(
        "[approvals]\nmax_requests_per_hour = 6\n",
        true,
        REFUND_POLICY,
        &[],
    ) else {
        return;
    };
    let bob = env.admin_token("approver", "bob");
    let alice = env.admin_token("approver", "alice");
    let eve = env.admin_token("auditor", "eve");
    let alice_owner = env.admin_token("owner", "alice");

    // Coalescing: the same pending request twice is one approval.
    let refund = r#"{"amount":500,"currency":"EUR","card":"4111-canary-card"}"#;
    let first = env.pending_refund(refund);
    assert_eq!(
        env.pending_refund(refund),
        first,
        "a duplicate of a pending request is coalesced"
    );
    let pending = json(
        env.port,
        &env.admin,
        &["approvals", "list", "--status", "pending"],
    );
    assert_eq!(
        pending["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["digest"] == env.approval(&first)["digest"])
            .count(),
        1
    );

    // Only approver/admin decide; an owner may not approve their identity's request. Each
    // refusal is audited, and nothing changes.
    for (token, who, why) in [
        (&eve, "eve", "role `auditor`"),
        (&alice_owner, "alice", "role `owner`"),
        (&alice, "alice", "owns the requesting identity"),
    ] {
        let (status, problem) = env.decide(token, &first, true, "let me");
        assert_eq!(status, 403, "{who}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{problem}"
        );
        let refused = env.audit_for(&first).into_iter().filter(|e| {
            e["kind"] == "approval_decision"
                && e["actor"]["id"] == who
                && e["detail"]["rejected"]
                    .as_str()
                    .is_some_and(|r| r.contains(why))
        });
        assert_eq!(
            refused.count(),
            1,
            "the refusal of {who} ({why}) is audited"
        );
    }
    assert_eq!(env.approval(&first)["status"], "pending");
    // Through the CLI: bob approves; the retry succeeds exactly once.
    ok(
        env.port,
        &bob,
        &[
            "approvals",
            "approve",
            &first,
            "--reason",
            "customer verified",
        ],
        None,
    );
    let with = [("Steward-Approval", first.as_str())];
    assert_eq!(env.refund(refund, &with).0, 200);
    assert_eq!(
        env.refund(refund, &with).0,
        403,
        "an approval is single-use"
    );
    assert_eq!(env.approval(&first)["status"], "used");

    // Quorum: two distinct approvers; the same approver twice is refused and audited.
    let big = r#"{"amount":5000,"currency":"EUR"}"#;
    let quorum = env.pending_refund(big);
    assert_eq!(env.approval(&quorum)["quorum"], 2);
    let (status, after_one) = env.decide(&bob, &quorum, true, "first");
    assert_eq!(
        (status, after_one["status"].as_str()),
        (200, Some("pending")),
        "{after_one}"
    );
    assert_eq!(
        env.refund(big, &[("Steward-Approval", quorum.as_str())]).0,
        403,
        "one approval is not a quorum of two"
    );
    let (status, problem) = env.decide(&bob, &quorum, true, "again");
    assert_eq!(status, 403, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("distinct"),
        "{problem}"
    );
    assert!(env.audit_for(&quorum).iter().any(|e| {
        e["actor"]["id"] == "bob"
            && e["detail"]["rejected"]
                .as_str()
                .is_some_and(|r| r.contains("distinct"))
    }));
    let (_, after_two) = env.decide(&env.admin, &quorum, true, "second");
    assert_eq!(after_two["status"], "approved");
    // (the consumed attempt above was rejected but did not burn the approval)
    assert_eq!(
        env.refund(big, &[("Steward-Approval", quorum.as_str())]).0,
        200
    );

    // The audit log links request, approval and execution by the approval id.
    let linked = env.audit_for(&quorum);
    let k = kinds(&linked);
    for kind in [
        "approval_requested",
        "approval_decision",
        "decision",
        "outcome",
    ] {
        assert!(
            k.contains(kind),
            "no `{kind}` record carries the approval id: {k:?}"
        );
    }
    assert!(
        linked
            .iter()
            .any(|e| e["kind"] == "decision" && e["decision"] == "approval_required"),
        "the first decision names the approval"
    );
    assert!(
        linked
            .iter()
            .any(|e| e["kind"] == "decision" && e["decision"] == "allow"),
        "the retry's decision names it"
    );
    let approvers: BTreeSet<&str> = linked
        .iter()
        .filter(|e| e["kind"] == "approval_decision" && e["detail"]["approve"] == true)
        .filter_map(|e| e["actor"]["id"].as_str())
        .collect();
    assert_eq!(approvers, BTreeSet::from(["bob", "bootstrap-admin"]));

    // Anti-flood: 6 new requests an hour (2 made so far); duplicates of pending ones still coalesce.
    let mut last = String::new();
    for amount in 201..205 {
        last = env.pending_refund(&format!(r#"{{"amount":{amount},"currency":"EUR"}}"#));
    }
    let (status, problem, raw) = env.refund(r#"{"amount":205,"currency":"EUR"}"#, &[]);
    assert_eq!(status, 429, "the 7th request in an hour is refused: {raw}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("too many approval requests"),
        "{problem}"
    );
    assert_eq!(
        env.pending_refund(r#"{"amount":204,"currency":"EUR"}"#),
        last,
        "a duplicate is not flooding"
    );
    assert!(env.audit().iter().any(|e| e["kind"] == "approval_requested" && e["detail"]["rejected"] == "rate_limited"));
    assert!(
        !serde_json::to_string(&env.audit())
            .unwrap()
            .contains("4111-canary-card"),
        "sensitive args are redacted"
    );
    assert_eq!(json(env.port, &env.admin, &["audit", "verify"])["ok"], true);
}

#[test]
fn owner_approval_when_configured_prefer_wait_and_approve_similar() {
    let Some(env) = Env::start(
        "[approvals]\nallow_owner_approval = true\n",
        true,
        REFUND_POLICY,
        &[],
    ) else {
        return;
    };
    let alice = env.admin_token("approver", "alice");
    let bob = env.admin_token("approver", "bob");

    // Configured: the owner may approve their own identity's request.
    let id = env.pending_refund(r#"{"amount":150,"currency":"EUR"}"#);
    let (status, approved) = env.decide(&alice, &id, true, "my bot, I checked");
    assert_eq!(
        (status, approved["status"].as_str()),
        (200, Some("approved")),
        "{approved}"
    );

    // Prefer: wait=N holds the call; an approval during the wait completes it.
    let waiting = {
        let (url, bearer) = (env.url("/gw/httpbin/post"), format!("Bearer {}", env.agent));
        std::thread::spawn(move || {
            let started = Instant::now();
            let headers = [
                ("Authorization", bearer.as_str()),
                ("Content-Type", "application/json"),
                ("Prefer", "wait=25"),
            ];
            let (status, raw) = http(
                "POST",
                &url,
                &headers,
                Some(r#"{"amount":700,"currency":"EUR"}"#),
            );
            (status, raw, started.elapsed())
        })
    };
    let held = env.held_approval(700);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiting.is_finished(),
        "the call is held while the approval is pending"
    );
    ok(
        env.port,
        &bob,
        &["approvals", "approve", &held, "--reason", "on call"],
        None,
    );
    let (status, raw, elapsed) = waiting.join().unwrap();
    assert_eq!(status, 200, "{raw}");
    assert!(
        elapsed < Duration::from_secs(20),
        "completed when approved, not at the end of the wait: {elapsed:?}"
    );
    assert_eq!(env.approval(&held)["status"], "used");

    // An agent that hangs up while its request is held: a later approval runs nothing
    // (the approval stays unused, for the agent's retry).
    let held = {
        use std::io::Write;
        let body = r#"{"amount":800,"currency":"EUR"}"#;
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", env.port)).unwrap();
        write!(
            conn,
            "POST /gw/httpbin/post HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nPrefer: wait=25\r\nContent-Length: {}\r\n\r\n{body}",
            env.agent,
            body.len()
        )
        .unwrap();
        let id = env.held_approval(800);
        drop(conn);
        id
    };
    std::thread::sleep(Duration::from_secs(2));
    ok(
        env.port,
        &bob,
        &["approvals", "approve", &held, "--reason", "late"],
        None,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        env.approval(&held)["status"],
        "approved",
        "an abandoned held request must not run when approved"
    );
    assert!(
        env.audit_for(&held).iter().all(|e| e["kind"] != "outcome"),
        "{:?}",
        env.audit_for(&held)
    );

    // Approve similar for T: a time-bound grant for the same identity, operation and arguments.
    let refund = r#"{"amount":300,"currency":"EUR","card":"c-1"}"#;
    let id = env.pending_refund(refund);
    ok(
        env.port,
        &bob,
        &[
            "approvals",
            "approve",
            &id,
            "--reason",
            "recurring",
            "--similar-for-secs",
            "120",
        ],
        None,
    );
    assert_eq!(
        env.refund(refund, &[("Steward-Approval", id.as_str())]).0,
        200
    );
    assert_eq!(
        env.refund(refund, &[]).0,
        200,
        "a matching request is pre-approved by the grant"
    );
    assert_eq!(
        env.refund(r#"{"amount":300,"currency":"EUR","card":"c-2"}"#, &[])
            .0,
        200,
        "sensitive args are not constraints"
    );
    for different in [
        r#"{"amount":301,"currency":"EUR"}"#,
        r#"{"amount":300,"currency":"USD"}"#,
    ] {
        let (status, problem, raw) = env.refund(different, &[]);
        assert_eq!(status, 403, "{raw}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .ends_with("approval_required"),
            "different arguments need a new approval: {raw}"
        );
    }
    let shown = json(
        env.port,
        &env.admin,
        &["identity", "show", &env.identity_id],
    );
    let grants = shown["grants"].as_array().unwrap();
    let grant = grants
        .iter()
        .find(|g| g["body"]["kind"] == "approve_similar")
        .expect("grant listed on the identity");
    assert_eq!(grant["status"], "active");
    assert_eq!(
        grant["body"]["arg_equals"],
        json!({"amount": 300, "currency": "EUR"})
    );
    let remaining = grant["expires_at"].as_i64().unwrap() - now_ms();
    assert!(
        remaining > 60_000 && remaining <= 120_000,
        "bound to 120 s: {remaining} ms left"
    );
    let audit = env.audit();
    assert!(
        audit
            .iter()
            .any(|e| e["kind"] == "grant_activated" && e["approval_id"] == id.as_str())
    );
    assert!(audit.iter().any(|e| e["kind"] == "decision"
        && e["detail"]["approval"] == "pre_approved"
        && e["detail"]["grant_id"] == grant["id"]));
}

#[test]
fn approval_requests_expire_after_the_configured_time() {
    let config = "[approvals]\ndefault_expiry_secs = 3\ngrant_cleanup_interval_secs = 1\nmax_elevation_secs = 60\n";
    let Some(env) = Env::start(config, false, REFUND_POLICY, &[]) else {
        return;
    };
    let bob = env.admin_token("approver", "bob");
    let id = env.pending_refund(r#"{"amount":150,"currency":"EUR"}"#);
    let shown = env.approval(&id);
    let lifetime = shown["expires_at"].as_i64().unwrap() - shown["requested_at"].as_i64().unwrap();
    assert_eq!(lifetime, 3_000, "default_expiry_secs applies");
    std::thread::sleep(Duration::from_millis(3_300));
    assert_eq!(env.approval(&id)["status"], "expired");
    assert_eq!(
        env.agent_get(&format!("/v1/approvals/{id}")).1["status"],
        "expired",
        "the agent sees it too"
    );
    let (status, problem) = env.decide(&bob, &id, true, "too late");
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("expired"));
    // The sweep writes the expiry down and audits it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !env
        .audit_for(&id)
        .iter()
        .any(|e| e["kind"] == "approval_expired")
    {
        assert!(Instant::now() < deadline, "the expiry was never audited");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Elevations end the same way: after their duration the sweep marks the grant expired,
    // audits it and takes it out of the policy set.
    let (status, filed) = env.elevate(&json!({"operations": ["httpbin:anything.delete"], "duration_secs": 2, "justification": "cleanup test"}));
    assert_eq!(status, 202, "{filed}");
    let (approval_id, grant_id) = (
        filed["approval_id"].as_str().unwrap().to_owned(),
        filed["grant_id"].as_str().unwrap().to_owned(),
    );
    ok(
        env.port,
        &bob,
        &["approvals", "approve", &approval_id, "--reason", "ok"],
        None,
    );
    assert_eq!(env.grant(&grant_id)["status"], "active");
    let deadline = Instant::now() + Duration::from_secs(10);
    while env.grant(&grant_id)["status"] != "expired" {
        assert!(
            Instant::now() < deadline,
            "the sweep never marked the grant: {}",
            env.grant(&grant_id)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let trail = kinds(
        &env.audit()
            .into_iter()
            .filter(|e| e["approval_id"] == approval_id.as_str())
            .collect::<Vec<_>>(),
    );
    for kind in [
        "approval_requested",
        "approval_decision",
        "grant_activated",
        "grant_expired",
    ] {
        assert!(
            trail.contains(kind),
            "elevation audited from request to expiry, missing `{kind}`: {trail:?}"
        );
    }
}

#[test]
fn elevation_is_denied_before_approval_allowed_after_and_denied_at_expiry_without_cleanup() {
    // The cleanup interval is an hour: nothing sweeps during this test.
    let config = "[approvals]\nmax_elevation_secs = 600\ngrant_cleanup_interval_secs = 3600\n";
    let Some(env) = Env::start(config, true, READ_ONLY_POLICY, &[]) else {
        return;
    };
    let bob = env.admin_token("approver", "bob");
    assert_eq!(env.agent_delete(), 403, "not permitted without elevation");

    for (bad, why) in [
        (
            json!({"operations": ["httpbin:anything.delete"], "duration_secs": 601, "justification": "x"}),
            "601",
        ),
        (
            json!({"operations": ["httpbin:nope"], "duration_secs": 60, "justification": "x"}),
            "unknown operation",
        ),
        (
            json!({"operations": [], "services": [], "duration_secs": 60, "justification": "x"}),
            "at least one",
        ),
    ] {
        let (status, problem) = env.elevate(&bad);
        assert_eq!(status, 400, "{bad}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(why),
            "{problem}"
        );
    }
    let (status, filed) = env.elevate(&json!({"operations": ["httpbin:anything.delete"], "duration_secs": 3, "justification": "incident 42: remove a poisoned item"}));
    assert_eq!(status, 202, "{filed}");
    let approval_id = filed["approval_id"].as_str().unwrap().to_owned();
    let grant_id = filed["grant_id"].as_str().unwrap().to_owned();
    assert_eq!(
        env.grant(&grant_id)["status"],
        "pending",
        "visible on the identity while pending"
    );
    assert_eq!(env.agent_delete(), 403, "denied before approval");
    let (status, polled) = env.agent_get(&format!("/v1/approvals/{approval_id}"));
    assert_eq!(
        (status, polled["status"].as_str(), polled["kind"].as_str()),
        (200, Some("pending"), Some("elevation")),
        "{polled}"
    );
    let listed = json(env.port, &env.admin, &["approvals", "show", &approval_id]);
    assert_eq!(
        listed["body"]["reason"],
        "incident 42: remove a poisoned item"
    );

    ok(
        env.port,
        &bob,
        &[
            "approvals",
            "approve",
            &approval_id,
            "--reason",
            "incident commander asked",
        ],
        None,
    );
    assert_eq!(env.agent_delete(), 200, "allowed after approval");
    let grant = env.grant(&grant_id);
    assert_eq!(grant["status"], "active");
    assert_eq!(grant["body"]["approved_by"], json!(["bob"]));
    let expires_at = grant["expires_at"].as_i64().unwrap();
    let left = expires_at - now_ms();
    assert!(
        left > 0 && left <= 3_000,
        "lasts its duration from approval: {left} ms left"
    );
    std::thread::sleep(Duration::from_millis(u64::try_from(left).unwrap() + 150));
    assert_eq!(env.agent_delete(), 403, "denied again at expiry");
    assert_eq!(
        env.grant(&grant_id)["status"],
        "active",
        "no cleanup ran: the policy's own expiry denied it"
    );

    let trail: Vec<Value> = env.audit();
    let of_grant = |e: &&Value| e["approval_id"] == approval_id.as_str();
    let k = kinds(&trail.iter().filter(of_grant).cloned().collect::<Vec<_>>());
    for kind in ["approval_requested", "approval_decision", "grant_activated"] {
        assert!(k.contains(kind), "missing `{kind}`: {k:?}");
    }
    let policy_id = format!("grant:{grant_id}");
    assert!(
        trail.iter().any(|e| e["kind"] == "decision"
            && e["decision"] == "allow"
            && e["policy_ids"]
                .as_array()
                .is_some_and(|p| p.contains(&json!(policy_id)))),
        "the allowed call names the grant's policy"
    );

    // An owner files an elevation through the CLI; they may not approve it themselves.
    let alice_owner = env.admin_token("owner", "alice");
    let alice = env.admin_token("approver", "alice");
    let filed = json(
        env.port,
        &alice_owner,
        &[
            "elevation",
            "request",
            "--identity",
            "billing-bot",
            "--service",
            "httpbin",
            "--duration-secs",
            "60",
            "--justification",
            "batch cleanup",
        ],
    );
    let by_owner = filed["approval_id"].as_str().unwrap().to_owned();
    let (code, _, err) = cli(
        env.port,
        &alice,
        &["approvals", "approve", &by_owner, "--reason", "mine"],
        None,
    );
    assert_ne!(
        code, 0,
        "the owner may not approve their identity's elevation"
    );
    assert!(err.contains("owns the requesting identity"), "{err}");
    ok(
        env.port,
        &bob,
        &["approvals", "approve", &by_owner, "--reason", "ok"],
        None,
    );
    assert_eq!(
        env.agent_delete(),
        200,
        "the service-wide grant allows the call"
    );
    assert!(env.audit().iter().any(|e| e["kind"] == "admin_mutation"
        && e["operation"] == "elevation.request"
        && e["actor"]["id"] == "alice"));
    // Owners cannot file for identities they do not own.
    let other = json(
        env.port,
        &env.admin,
        &["identity", "create", "other-bot", "--owner", "mallory"],
    );
    let (code, _, err) = cli(
        env.port,
        &alice_owner,
        &[
            "elevation",
            "request",
            "--identity",
            other["id"].as_str().unwrap(),
            "--service",
            "httpbin",
            "--duration-secs",
            "60",
            "--justification",
            "x",
        ],
        None,
    );
    assert_ne!(code, 0, "{err}");
}

/// A local HTTP receiver that records every request and answers 500 to the first.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<(String, Vec<u8>)>>>,
}

impl Receiver {
    fn start(fail_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<(String, Vec<u8>)>>> = Arc::default();
        let recorded = Arc::clone(&seen);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => break,
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                let _ = stream.read_exact(&mut body);
                let n = {
                    let mut all = recorded.lock().unwrap();
                    all.push((head, body));
                    all.len()
                };
                let status = if n <= fail_first {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let _ = stream.write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Self { port, seen }
    }

    fn wait_for(&self, n: usize) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} deliveries arrived",
                seen.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    hex::encode(aws_lc_rs::hmac::sign(&key, body).as_ref())
}

#[test]
fn webhook_deliveries_are_signed_retried_and_audited() {
    let key = "whsec-test-7d1e";
    let receiver = Receiver::start(1);
    let config = format!(
        "[approvals]\nwebhook_url = \"http://127.0.0.1:{}/hook\"\nwebhook_secret_env = \"STEWARD_TEST_WEBHOOK_KEY\"\nwebhook_initial_backoff_ms = 200\npublic_url = \"https://steward.example\"\n",
        receiver.port
    );
    let Some(env) = Env::start(
        &config,
        false,
        REFUND_POLICY,
        &[("STEWARD_TEST_WEBHOOK_KEY", key)],
    ) else {
        return;
    };
    let id = env.pending_refund(r#"{"amount":150,"currency":"EUR","card":"4111-canary-card"}"#);
    let deliveries = receiver.wait_for(2);
    let mut delivery = None;
    for (i, (head, body)) in deliveries.iter().enumerate() {
        let signature = header(head, "Steward-Signature").expect("signed");
        assert_eq!(
            signature,
            format!("sha256={}", hmac_hex(key.as_bytes(), body)),
            "delivery {i}: signature over the body"
        );
        assert_ne!(
            signature,
            format!("sha256={}", hmac_hex(b"another key", body))
        );
        let timestamp: i64 = header(head, "Steward-Timestamp")
            .expect("timestamp")
            .parse()
            .unwrap();
        assert!(
            (timestamp - now_ms() / 1000).abs() < 60,
            "a current timestamp"
        );
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(payload["approval_id"], id.as_str());
        assert_eq!(payload["type"], "approval_requested");
        assert_eq!(
            payload["sent_at"], timestamp,
            "the signed body carries the timestamp"
        );
        assert_eq!(
            payload["links"]["approve"],
            format!("https://steward.example/admin/v1/approvals/{id}/approve")
        );
        assert!(
            !String::from_utf8_lossy(body).contains("4111-canary-card"),
            "redacted arguments only"
        );
        delivery.get_or_insert(payload["delivery_id"].clone());
        assert_eq!(
            Some(&payload["delivery_id"]),
            delivery.as_ref(),
            "a retry is the same delivery"
        );
    }
    // Each attempt is audited: the first failed with 500, the retry was delivered.
    let deadline = Instant::now() + Duration::from_secs(10);
    let attempts = loop {
        let attempts: Vec<Value> = env
            .audit_for(&id)
            .into_iter()
            .filter(|e| e["kind"] == "notification")
            .collect();
        if attempts.len() >= 2 || Instant::now() > deadline {
            break attempts;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        (
            attempts[0]["detail"]["attempt"].as_i64(),
            attempts[0]["detail"]["delivered"].as_bool(),
            attempts[0]["detail"]["status"].as_i64()
        ),
        (Some(1), Some(false), Some(500))
    );
    assert_eq!(
        (
            attempts[1]["detail"]["attempt"].as_i64(),
            attempts[1]["detail"]["delivered"].as_bool()
        ),
        (Some(2), Some(true))
    );
    assert_eq!(
        attempts[1]["resource"], "127.0.0.1",
        "only the receiver's host is recorded"
    );
    drop(env);

    // The Slack-compatible format: text plus blocks with approve/deny link buttons.
    let slack = Receiver::start(0);
    let config = format!(
        "[approvals]\nwebhook_url = \"http://127.0.0.1:{}/slack\"\nwebhook_format = \"slack\"\npublic_url = \"https://steward.example/\"\n",
        slack.port
    );
    let env = Env::start(&config, false, REFUND_POLICY, &[]).unwrap();
    let id = env.pending_refund(r#"{"amount":150,"currency":"EUR"}"#);
    let (head, body) = slack.wait_for(1).remove(0);
    assert!(
        header(&head, "Steward-Signature").is_none(),
        "unsigned without a key"
    );
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        message["text"].as_str().unwrap().contains("httpbin:refund"),
        "{message}"
    );
    let buttons = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "actions")
        .unwrap()["elements"]
        .clone();
    assert_eq!(
        buttons[0]["url"],
        format!("https://steward.example/admin/v1/approvals/{id}/approve")
    );
    assert_eq!(
        buttons[1]["url"],
        format!("https://steward.example/admin/v1/approvals/{id}/deny")
    );

    // A configured key variable that is not set refuses to start.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("steward.toml"), "version = 1\n[approvals]\nwebhook_url = \"http://127.0.0.1:9/x\"\nwebhook_secret_env = \"STEWARD_TEST_UNSET_KEY\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .current_dir(dir.path())
        .env_remove("STEWARD_TEST_UNSET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("STEWARD_TEST_UNSET_KEY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
