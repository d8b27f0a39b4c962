//! The vault's lifecycle through the CLI and HTTP: crash-safe master-key rotation under
//! `kill -9`, reveal, rotation policies (webhook, manual, PostgreSQL role), dynamic PostgreSQL
//! credentials (leases) and the plaintext canary.
//!
//! The PostgreSQL stories start a private PostgreSQL (initdb in a temp dir, password auth
//! over TCP), because the shared test server trusts every local connection and would accept
//! any password. Without PostgreSQL binaries they skip locally and fail under `CI=true`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

const HTTPBIN_SPEC: &str = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths:\n  /headers:\n    get: {operationId: headers}\n  /status/{code}:\n    get:\n      operationId: status\n      parameters:\n        - {name: code, in: path, required: true, schema: {type: integer}}\n";

/// A tiny deterministic generator, so a failing run can be replayed from its printed seed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("STEWARD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

fn vault_cmd(data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["-o", "json", "vault"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--database")
        .arg(format!(
            "sqlite://{}?mode=rwc",
            data.join("steward.db").display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn vault_verify(data: &Path) -> (i32, Value) {
    let out = vault_cmd(data, &["verify"]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), v)
}

fn key_files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("master-v"))
        .collect();
    names.sort();
    names
}

fn gateway_header_of(port: u16, agent: &str, service: &str) -> (u16, String) {
    http(
        "GET",
        &format!("http://127.0.0.1:{port}/gw/{service}/headers"),
        &[("Authorization", &format!("Bearer {agent}"))],
        None,
    )
}

fn admin_http(
    port: u16,
    admin: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let body_text = body.map(Value::to_string);
    let (status, text) = http(
        method,
        &format!("http://127.0.0.1:{port}{path}"),
        &[
            ("Authorization", &format!("Bearer {admin}")),
            ("Content-Type", "application/json"),
        ],
        body_text.as_deref(),
    );
    let json_part = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    // Chunked bodies: take the first JSON-looking line.
    let v = serde_json::from_str(json_part)
        .or_else(|_| {
            json_part
                .lines()
                .find(|l| l.starts_with('{'))
                .map(serde_json::from_str)
                .unwrap_or(Ok(Value::Null))
        })
        .unwrap_or(Value::Null);
    (status, v)
}

/// The number of secrets of the kill test: the issue asks for 10,000.
fn rotation_secret_count() -> usize {
    std::env::var("STEWARD_VAULT_TEST_SECRETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn master_key_rotation_survives_kill_9_at_random_points() {
    if !httpbin_available() {
        return;
    }
    let seed = seed();
    eprintln!("seed {seed} (replay with STEWARD_TEST_SEED={seed})");
    let mut rng = Lcg(seed);
    let d = Deployment::start(None, None);
    let data = d.dir.path().join("data");
    let (_httpbin, up_port, _) = start_httpbin(d.dir.path());

    // 10k secrets through the documented bulk import.
    let n = rotation_secret_count();
    let mut lines = String::new();
    for i in 0..n {
        lines.push_str(
            &json!({"name": format!("s-{i:05}"), "value": format!("value-{i:05}-{seed:x}")})
                .to_string(),
        );
        lines.push('\n');
    }
    let import_file = d.dir.path().join("import.jsonl");
    std::fs::write(&import_file, &lines).unwrap();
    let started = Instant::now();
    let imported = json(
        d.port,
        &d.admin,
        &["secret", "import", import_file.to_str().unwrap()],
    );
    eprintln!("imported {n} secrets in {:?}", started.elapsed());
    assert_eq!(imported["created"], json!(n), "{imported}");

    d.service(
        "hb",
        &format!("http://127.0.0.1:{up_port}"),
        HTTPBIN_SPEC,
        &["--auth", "bearer", "--secret", "s-00000"],
    );
    d.policy("permit(principal, action, resource);");
    // Restart with the periodic keyring refresh effectively off: after an offline rotation
    // only the reload-on-unknown-key-version path (and sealing) can bring the server along.
    let Deployment {
        dir,
        port,
        admin,
        agent,
        steward,
        ..
    } = d;
    drop(steward);
    let (steward, _) = start_steward(dir.path(), port, &[("STEWARD_VAULT_TICK_MS", "3600000")]);
    let spec_path = dir.path().join("hb.openapi.yaml");
    let check_sample = |rng: &mut Lcg, why: &str| {
        // Point the service at a random secret: the server has never decrypted it, so this
        // really opens the row as it is on disk now.
        let i = rng.below(n as u64);
        let name = format!("s-{i:05}");
        ok(
            port,
            &admin,
            &[
                "service",
                "update",
                "hb",
                "--base-url",
                &format!("http://127.0.0.1:{up_port}"),
                "--allow-http",
                "--allow-private",
                "--openapi",
                spec_path.to_str().unwrap(),
                "--auth",
                "bearer",
                "--secret",
                &name,
            ],
            None,
        );
        let (status, body) = gateway_header_of(port, &agent, "hb");
        assert_eq!(status, 200, "{why}: gateway call with {name}: {body}");
        assert!(
            body.contains(&format!("Bearer value-{i:05}-{seed:x}")),
            "{why}: wrong credential for {name}: {body}"
        );
    };
    check_sample(&mut rng, "before rotation");

    // One uninterrupted rotation: measures how long a full run takes.
    let started = Instant::now();
    let out = vault_cmd(&data, &["rotate-master-key"]).output().unwrap();
    let full_run = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("full rotation of {n} secret versions: {full_run:?} ({report})");
    assert_eq!(report["rewrapped_secret_versions"], json!(n));
    assert_eq!(report["retired_versions"], json!([1]));
    assert_eq!(key_files(&data), vec!["master-v2.key".to_owned()]);
    // The running server started with version 1 only: it must reload, not break.
    check_sample(&mut rng, "after a full rotation");
    let log = wait_for_log(dir.path(), port, "master keyring reloaded");
    assert!(
        log.contains("master keyring reloaded"),
        "the server did not reload its keyring"
    );

    // Kill -9 at random points, verify everything after every kill, resume.
    let iterations = 8;
    let mut mid_rewrap_kills = 0;
    for round in 0..iterations {
        let delay = Duration::from_millis(
            rng.below(u64::try_from(full_run.as_millis()).unwrap_or(1000) * 11 / 10 + 1),
        );
        let mut child = vault_cmd(&data, &["rotate-master-key", "--batch", "100"])
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let (code, v) = vault_verify(&data);
        assert_eq!(
            code, 0,
            "round {round}: verify after kill at {delay:?} failed: {v}"
        );
        assert_eq!(v["failures"], json!([]), "round {round}: {v}");
        // Every imported secret plus one written in each earlier round.
        assert_eq!(
            v["checked_secret_versions"],
            json!(n + round),
            "round {round}: {v}"
        );
        let versions = v["by_key_version"].as_object().map_or(0, |m| m.len());
        if versions > 1 {
            mid_rewrap_kills += 1;
        }
        eprintln!(
            "round {round}: killed after {delay:?} (finished first: {finished}); rows by key version {}; key files {:?}",
            v["by_key_version"],
            key_files(&data)
        );
        check_sample(&mut rng, &format!("round {round}"));
        // A value written while a rotation is unfinished is sealed under the newest key.
        ok(
            port,
            &admin,
            &["secret", "set", &format!("during-{round}")],
            Some(&format!("written-during-{round}")),
        );
    }
    // Finish: rerunning resumes the rotation in progress (or starts and completes a new one).
    let out = vault_cmd(&data, &["rotate-master-key"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = key_files(&data);
    assert_eq!(files.len(), 1, "old key versions left behind: {files:?}");
    let (code, v) = vault_verify(&data);
    assert_eq!(code, 0, "{v}");
    let by_version = v["by_key_version"].as_object().unwrap();
    assert_eq!(by_version.len(), 1, "{v}");
    let only = by_version.keys().next().unwrap();
    assert_eq!(files[0], format!("master-v{only}.key"));
    assert!(
        mid_rewrap_kills >= 1,
        "no kill landed in the middle of re-wrapping; the test proved nothing"
    );
    eprintln!("{mid_rewrap_kills} of {iterations} kills interrupted re-wrapping");

    // A restarted server unlocks with the rotated key and serves.
    drop(steward);
    let (_steward, _) = start_steward(dir.path(), port, &[]);
    let (status, body) = gateway_header_of(port, &agent, "hb");
    assert_eq!(status, 200, "{body}");
    let shown = json(port, &admin, &["secret", "show", "during-0"]);
    assert_eq!(
        shown["versions"][0]["key_version"]
            .as_i64()
            .unwrap()
            .to_string(),
        *only
    );
}

#[test]
fn reveal_is_off_by_default_admin_only_and_audited_first() {
    let d = Deployment::start(None, None);
    d.ok(
        &["secret", "set", "reveal-me"],
        Some("the-revealed-value-91"),
    );
    let (code, out, err) = cli(d.port, &d.admin, &["secret", "reveal", "reveal-me"], None);
    assert_ne!(code, 0);
    assert!(err.contains("403") || err.contains("disabled"), "{err}");
    assert!(!out.contains("the-revealed-value-91") && !err.contains("the-revealed-value-91"));
    let (status, _) = admin_http(
        d.port,
        &d.admin,
        "POST",
        "/admin/v1/secrets/reveal-me/reveal",
        Some(&json!({})),
    );
    assert_eq!(status, 403);

    let on = Deployment::start(Some("version = 1\n[vault]\nallow_reveal = true\n"), None);
    on.ok(
        &["secret", "set", "reveal-me"],
        Some("the-revealed-value-92"),
    );
    let before = json(on.port, &on.admin, &["audit", "search", "--limit", "1000"]);
    let shown = on.ok(&["secret", "reveal", "reveal-me"], None);
    assert_eq!(shown.trim(), "the-revealed-value-92");
    let after = json(on.port, &on.admin, &["audit", "search", "--limit", "1000"]);
    let reveals: Vec<&Value> = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["event"]["operation"] == "secret.reveal")
        .collect();
    assert_eq!(reveals.len(), 1, "{after}");
    assert_eq!(reveals[0]["event"]["kind"], "secret_use");
    assert_eq!(reveals[0]["event"]["resource"], "reveal-me");
    assert!(
        !after.to_string().contains("the-revealed-value-92"),
        "plaintext in the audit log"
    );
    assert!(
        before["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["event"]["operation"] != "secret.reveal")
    );

    // Non-admin roles may not reveal, even when it is enabled.
    let (status, created) = admin_http(
        on.port,
        &on.admin,
        "POST",
        "/admin/v1/admin-tokens",
        Some(&json!({"name": "aud", "role": "auditor", "principal": "carol"})),
    );
    assert!(status == 200 || status == 201, "{created}");
    let auditor = created["token"].as_str().unwrap().to_owned();
    let (status, v) = admin_http(
        on.port,
        &auditor,
        "POST",
        "/admin/v1/secrets/reveal-me/reveal",
        Some(&json!({})),
    );
    assert_eq!(status, 403, "{v}");
    assert!(!v.to_string().contains("the-revealed-value-92"));
}

/// A webhook that returns `{"value": "rotated-<n>"}` when the HMAC signature checks out, and
/// 401 otherwise; or always 500 when `fail` is set. Returns (port, log of (valid, body)).
fn start_webhook(
    key: &'static [u8],
    fail: bool,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<(bool, String)>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log2 = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                headers.push(line.trim_end().to_owned());
            }
            let len: usize = headers
                .iter()
                .find_map(|h| {
                    h.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let sig = headers.iter().find_map(|h| {
                h.to_ascii_lowercase()
                    .strip_prefix("steward-signature:")
                    .map(|v| v.trim().to_owned())
            });
            let mac = aws_lc_rs::hmac::sign(
                &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
                &body,
            );
            let valid = sig == Some(format!("sha256={}", hex::encode(mac.as_ref())));
            let n = {
                let mut l = log2.lock().unwrap();
                l.push((valid, String::from_utf8_lossy(&body).into_owned()));
                l.len()
            };
            let (status, reply) = if fail {
                ("500 Internal Server Error", "{}".to_owned())
            } else if valid {
                (
                    "200 OK",
                    json!({"value": format!("rotated-{n}")}).to_string(),
                )
            } else {
                ("401 Unauthorized", "{}".to_owned())
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (port, log)
}

#[test]
fn webhook_and_manual_rotation_policies_scheduler_and_reminders() {
    let d = Deployment::start(Some("version = 1\n[vault]\nallow_reveal = true\n"), None);
    let (hook_port, hook_log) = start_webhook(b"hook-hmac-key-1", false);
    let (bad_port, bad_log) = start_webhook(b"unused", true);
    d.ok(&["secret", "set", "hook-key"], Some("hook-hmac-key-1"));

    // Rotate on demand.
    let policy = json!({"interval_secs": 3600, "grace_secs": 30, "provider": {"webhook": {"url": format!("http://127.0.0.1:{hook_port}/rotate"), "hmac_secret": "hook-key"}}});
    d.ok(
        &[
            "secret",
            "set",
            "api-token",
            "--rotation",
            &policy.to_string(),
        ],
        Some("initial-api-token"),
    );
    let rotated = json(d.port, &d.admin, &["secret", "rotate", "api-token"]);
    assert_eq!(rotated["current_version"], 2, "{rotated}");
    assert_eq!(
        d.ok(&["secret", "reveal", "api-token"], None).trim(),
        "rotated-1"
    );
    {
        let log = hook_log.lock().unwrap();
        assert_eq!(log.len(), 1);
        assert!(log[0].0, "the webhook request was not signed correctly");
        assert!(
            log[0].1.contains("\"secret\":\"api-token\""),
            "{}",
            log[0].1
        );
        assert!(
            !log[0].1.contains("initial-api-token"),
            "the old value was sent to the webhook"
        );
    }
    // The previous version stays readable for the grace window.
    let shown = json(d.port, &d.admin, &["secret", "show", "api-token"]);
    let v1_retire = shown["versions"][0]["retire_at"].as_i64().unwrap();
    let created_v2 = shown["versions"][1]["created_at"].as_i64().unwrap();
    assert!(
        (29_000..=31_000).contains(&(v1_retire - created_v2)),
        "{shown}"
    );

    // The scheduler rotates a due secret by itself, and audits each rotation.
    let fast = json!({"interval_secs": 2, "provider": {"webhook": {"url": format!("http://127.0.0.1:{hook_port}/rotate"), "hmac_secret": "hook-key"}}});
    d.ok(
        &[
            "secret",
            "set",
            "fast-token",
            "--rotation",
            &fast.to_string(),
        ],
        Some("fast-initial"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = json(d.port, &d.admin, &["secret", "show", "fast-token"]);
        if v["current_version"].as_i64().unwrap() >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler did not rotate: {v}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let audit = json(d.port, &d.admin, &["audit", "search", "--limit", "1000"]);
    let rotations: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["event"]["kind"] == "secret_rotation")
        .collect();
    assert!(
        rotations
            .iter()
            .any(|r| r["event"]["resource"] == "fast-token"
                && r["event"]["detail"]["phase"] == "done"
                && r["event"]["actor"]["kind"] == "system"),
        "{rotations:?}"
    );
    assert!(
        rotations.iter().any(
            |r| r["event"]["resource"] == "api-token" && r["event"]["actor"]["kind"] == "admin"
        )
    );

    // A failing provider: the error is recorded and reported, and retries back off.
    let failing = json!({"interval_secs": 1, "provider": {"webhook": {"url": format!("http://127.0.0.1:{bad_port}/rotate"), "hmac_secret": "hook-key"}}});
    d.ok(
        &[
            "secret",
            "set",
            "broken-token",
            "--rotation",
            &failing.to_string(),
        ],
        Some("broken-initial"),
    );
    std::thread::sleep(Duration::from_secs(9));
    let v = json(d.port, &d.admin, &["secret", "show", "broken-token"]);
    assert!(
        v["last_rotation_error"]
            .as_str()
            .unwrap_or_default()
            .contains("500"),
        "{v}"
    );
    assert_eq!(
        v["current_version"], 1,
        "a failed rotation must not change the value"
    );
    let attempts = bad_log.lock().unwrap().len();
    // Backoff 2s, 4s, 8s…: about 3 attempts in 9 s, not 9.
    assert!((2..=5).contains(&attempts), "attempts in 9 s: {attempts}");
    let (code, _, err) = cli(
        d.port,
        &d.admin,
        &["secret", "rotate", "broken-token"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("500"), "{err}");

    // Manual: reminders in status, the admin API and metrics.
    let manual =
        json!({"interval_secs": 600, "provider": {"manual": {"remind_before_secs": 3600}}});
    d.ok(
        &[
            "secret",
            "set",
            "hand-rotated",
            "--rotation",
            &manual.to_string(),
        ],
        Some("manual-value"),
    );
    let quiet = json!({"interval_secs": 86400, "provider": {"manual": {"remind_before_secs": 60}}});
    d.ok(
        &[
            "secret",
            "set",
            "not-yet-due",
            "--rotation",
            &quiet.to_string(),
        ],
        Some("manual-value-2"),
    );
    let status = json(d.port, &d.admin, &["status"]);
    let names: Vec<&str> = status["rotation_reminders"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["secret"].as_str())
        .collect();
    assert!(names.contains(&"hand-rotated"), "{status}");
    assert!(
        names.contains(&"broken-token"),
        "failing rotations are reported: {status}"
    );
    assert!(!names.contains(&"not-yet-due"), "{status}");
    let reminders = json(d.port, &d.admin, &["secret", "reminders"]);
    assert!(
        reminders["rotation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["secret"] == "hand-rotated" && r["provider"] == "manual"),
        "{reminders}"
    );
    let (code, _, err) = cli(
        d.port,
        &d.admin,
        &["secret", "rotate", "hand-rotated"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("manually"), "{err}");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, metrics) = http(
        "GET",
        &format!("http://127.0.0.1:{}/metrics", d.port),
        &[],
        None,
    );
    assert!(
        metrics.contains("steward_secret_rotation_due_seconds{secret=\"hand-rotated\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("steward_secret_rotation_failing{secret=\"broken-token\"} 1"),
        "{metrics}"
    );

    // A malformed or unsafe policy is refused.
    let (code, _, err) = cli(
        d.port,
        &d.admin,
        &[
            "secret",
            "set",
            "x",
            "--rotation",
            r#"{"interval_secs": 5, "provider": {"postgres_role": {"role": "a", "dsn": "postgres://u:pw@h/db"}}}"#,
        ],
        Some("v"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("must not contain a password"), "{err}");
}

/// A private PostgreSQL with password (SCRAM) authentication on TCP.
struct PrivatePg {
    port: u16,
    data: PathBuf,
    bin: PathBuf,
    as_postgres_user: bool,
    _dir: tempfile::TempDir,
}

const PG_ADMIN_PASSWORD: &str = "pg-admin-pw-3c1e";

impl PrivatePg {
    fn start() -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .max()
        });
        let Some(bin) = bin
            .or_else(|| {
                Command::new("pg_config")
                    .arg("--bindir")
                    .output()
                    .ok()
                    .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            })
            .filter(|p| p.join("initdb").exists())
        else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but PostgreSQL server binaries (initdb) are missing"
            );
            eprintln!("skipping: PostgreSQL server binaries not found");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let as_postgres_user = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let data = dir.path().join("pgdata");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PG_ADMIN_PASSWORD).unwrap();
        if as_postgres_user {
            // initdb refuses to run as root.
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres"])
                    .arg(dir.path())
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let pg = Self {
            port: free_port(),
            data,
            bin,
            as_postgres_user,
            _dir: dir,
        };
        let init = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args(["-A", "scram-sha-256", "-U", "postgres", "--no-sync"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let start = pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&pg.data)
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                pg.port,
                pg.data.display()
            ))
            .arg("-l")
            .arg(pg.data.join("server.log"))
            .args(["-w", "start"])
            .output()
            .unwrap();
        assert!(
            start.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&start.stderr)
        );
        Some(pg)
    }

    fn command(&self, tool: &str) -> Command {
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        }
    }

    fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// Runs SQL with a user and password over TCP; returns (success, stdout+stderr).
    fn psql(&self, user: &str, password: &str, sql: &str) -> (bool, String) {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                user,
                "-d",
                "postgres",
                "-tA",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn admin_sql(&self, sql: &str) -> String {
        let (ok, out) = self.psql("postgres", PG_ADMIN_PASSWORD, sql);
        assert!(ok, "{sql}: {out}");
        out
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[test]
fn postgres_role_password_rotation_against_real_postgres() {
    let Some(pg) = PrivatePg::start() else { return };
    pg.admin_sql("CREATE ROLE app_user LOGIN PASSWORD 'first-app-password'");
    assert!(pg.psql("app_user", "first-app-password", "SELECT 1").0);
    assert!(
        !pg.psql("app_user", "wrong-password", "SELECT 1").0,
        "the private server must check passwords"
    );

    let d = Deployment::start(Some("version = 1\n[vault]\nallow_reveal = true\n"), None);
    d.ok(&["secret", "set", "pg-admin"], Some(&pg.admin_url()));
    let policy = json!({"interval_secs": 3600, "grace_secs": 1, "provider": {"postgres_role": {"url_secret": "pg-admin", "role": "app_user"}}});
    d.ok(
        &[
            "secret",
            "set",
            "app-password",
            "--rotation",
            &policy.to_string(),
        ],
        Some("first-app-password"),
    );
    let rotated = json(d.port, &d.admin, &["secret", "rotate", "app-password"]);
    assert_eq!(rotated["current_version"], 2, "{rotated}");
    assert!(rotated["last_rotation_error"].is_null(), "{rotated}");
    let new_password = d
        .ok(&["secret", "reveal", "app-password"], None)
        .trim()
        .to_owned();
    assert_ne!(new_password, "first-app-password");
    std::thread::sleep(Duration::from_millis(1200)); // the grace window
    let (old_ok, old_out) = pg.psql("app_user", "first-app-password", "SELECT 1");
    assert!(!old_ok, "the old password still logs in: {old_out}");
    assert!(
        old_out.contains("password authentication failed"),
        "{old_out}"
    );
    let (new_ok, new_out) = pg.psql("app_user", &new_password, "SELECT current_user");
    assert!(new_ok, "the new password does not log in: {new_out}");
    assert_eq!(new_out.trim(), "app_user");
    // PostgreSQL saw a SCRAM verifier, never the password.
    let server_log = std::fs::read_to_string(pg.data.join("server.log")).unwrap_or_default();
    assert!(!server_log.contains(&new_password));

    // A rotation that cannot reach PostgreSQL leaves the working password current.
    pg.admin_sql("ALTER ROLE postgres NOLOGIN");
    let (code, _, err) = cli(
        d.port,
        &d.admin,
        &["secret", "rotate", "app-password"],
        None,
    );
    assert_ne!(code, 0, "{err}");
    assert_eq!(
        d.ok(&["secret", "reveal", "app-password"], None).trim(),
        new_password
    );
    assert!(pg.psql("app_user", &new_password, "SELECT 1").0);
}

#[test]
fn postgres_leases_work_during_the_lease_and_fail_after_even_across_restart() {
    let Some(pg) = PrivatePg::start() else { return };
    pg.admin_sql("CREATE ROLE app_readers NOLOGIN");
    pg.admin_sql("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2); GRANT SELECT ON orders TO app_readers");

    let d = Deployment::start(None, None);
    d.ok(&["secret", "set", "pg-admin"], Some(&pg.admin_url()));
    let spec = json!({"name": "orders-db", "kind": "postgres", "postgres": {"admin_dsn_secret": "pg-admin", "group_role": "app_readers", "max_ttl_secs": 30, "default_ttl_secs": 10}});
    let (status, v) = admin_http(
        d.port,
        &d.admin,
        "PUT",
        "/admin/v1/services/orders-db",
        Some(&spec),
    );
    assert!(status == 200 || status == 201, "{v}");
    let lease = |ttl: u64| {
        let (status, text) = http(
            "POST",
            &format!("http://127.0.0.1:{}/v1/leases", d.port),
            &[
                ("Authorization", &format!("Bearer {}", d.agent)),
                ("Content-Type", "application/json"),
            ],
            Some(&json!({"service": "orders-db", "ttl_secs": ttl}).to_string()),
        );
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or_default())
            .unwrap_or(Value::Null);
        (status, body)
    };

    // Policy decides: with no permit, no credential.
    d.policy("permit(principal, action, resource);\nforbid(principal, action == Action::\"orders-db:connect\", resource);");
    let (status, body) = lease(5);
    assert_eq!(status, 403, "{body}");
    d.policy("permit(principal, action == Action::\"orders-db:connect\", resource);");
    let (status, body) = lease(31);
    assert_eq!(status, 400, "a ttl above the maximum is refused: {body}");

    let (status, first) = lease(4);
    assert_eq!(status, 201, "{first}");
    let user = first["username"].as_str().unwrap().to_owned();
    let password = first["password"].as_str().unwrap().to_owned();
    let (ok_now, out) = pg.psql(&user, &password, "SELECT count(*) FROM orders");
    assert!(ok_now, "the leased credential does not work: {out}");
    assert_eq!(out.trim(), "2");
    assert!(!pg.psql(&user, "not-the-password", "SELECT 1").0);
    // Revocation ends a lease at once.
    let (status, second) = lease(30);
    assert_eq!(status, 201);
    let (user2, password2) = (
        second["username"].as_str().unwrap().to_owned(),
        second["password"].as_str().unwrap().to_owned(),
    );
    assert!(pg.psql(&user2, &password2, "SELECT 1").0);
    let (status, _) = http(
        "DELETE",
        &format!(
            "http://127.0.0.1:{}/v1/leases/{}",
            d.port,
            second["lease_id"].as_str().unwrap()
        ),
        &[("Authorization", &format!("Bearer {}", d.agent))],
        None,
    );
    assert_eq!(status, 200);
    assert!(
        !pg.psql(&user2, &password2, "SELECT 1").0,
        "a revoked lease still logs in"
    );
    assert_eq!(
        pg.admin_sql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{user2}'"
        ))
        .trim(),
        "0"
    );

    // After the TTL the background task drops the role.
    std::thread::sleep(Duration::from_millis(4000 + 2500));
    let (ok_after, out) = pg.psql(&user, &password, "SELECT 1");
    assert!(
        !ok_after,
        "the credential still works after the lease: {out}"
    );
    assert_eq!(
        pg.admin_sql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{user}'"
        ))
        .trim(),
        "0",
        "role not dropped"
    );

    // Leases survive a restart: expiry and cleanup still happen.
    let (status, third) = lease(5);
    assert_eq!(status, 201);
    let user3 = third["username"].as_str().unwrap().to_owned();
    let Deployment {
        dir,
        port,
        admin,
        steward,
        ..
    } = d;
    drop(steward); // kill -9
    assert_eq!(
        pg.admin_sql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{user3}'"
        ))
        .trim(),
        "1"
    );
    let (_steward, _) = start_steward(dir.path(), port, &[]);
    std::thread::sleep(Duration::from_millis(5000 + 2500));
    assert_eq!(
        pg.admin_sql(&format!(
            "SELECT count(*) FROM pg_roles WHERE rolname = '{user3}'"
        ))
        .trim(),
        "0",
        "lease outlived a restart"
    );
    let audit = json(port, &admin, &["audit", "search", "--limit", "1000"]);
    let ops: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["event"]["kind"] == "lease")
        .filter_map(|i| i["event"]["operation"].as_str())
        .collect();
    assert!(
        ops.contains(&"lease.granted")
            && ops.contains(&"lease.revoked")
            && ops.contains(&"lease.expired"),
        "{ops:?}"
    );
    assert!(
        !audit.to_string().contains(&password),
        "a lease password reached the audit log"
    );
}

#[test]
fn canary_plaintext_appears_nowhere_but_the_upstream() {
    if !httpbin_available() {
        return;
    }
    const SECRET: &str = "cnry-5b0e1d-plaintext-never-leaks";
    let d = Deployment::start(None, None);
    let (_httpbin, up_port, _) = start_httpbin(d.dir.path());
    let mut responses = String::new();
    responses.push_str(&d.ok(&["secret", "set", "canary"], Some(SECRET)));
    d.service(
        "hb",
        &format!("http://127.0.0.1:{up_port}"),
        HTTPBIN_SPEC,
        &["--auth", "bearer", "--secret", "canary"],
    );
    d.service(
        "dead",
        &format!("http://127.0.0.1:{}", free_port()),
        HTTPBIN_SPEC,
        &["--auth", "bearer", "--secret", "canary"],
    );
    d.service(
        "missing",
        &format!("http://127.0.0.1:{up_port}"),
        HTTPBIN_SPEC,
        &["--auth", "bearer", "--secret", "no-such-secret"],
    );
    d.policy("permit(principal, action, resource);\nforbid(principal, action == Action::\"hb:status\", resource) when { context.args.code == 418 };");
    let bearer = format!("Bearer {}", d.agent);

    // The upstream does receive it (httpbin echoes headers): that response is the one place.
    let (status, echoed) = gateway_header_of(d.port, &d.agent, "hb");
    assert_eq!(status, 200);
    assert!(echoed.contains(SECRET), "credential not injected");
    // Calls, errors, denials; each response is collected.
    for (service, path) in [
        ("hb", "/status/200"),
        ("hb", "/status/500"),
        ("hb", "/status/418"),
        ("hb", "/nope"),
        ("dead", "/status/200"),
        ("missing", "/status/200"),
        ("ghost", "/x"),
    ] {
        let (_, body) = http(
            "GET",
            &format!("http://127.0.0.1:{}/gw/{service}{path}", d.port),
            &[("Authorization", &bearer)],
            None,
        );
        responses.push_str(&body);
    }
    let (_, body) = http(
        "GET",
        &format!("http://127.0.0.1:{}/gw/hb/status/200", d.port),
        &[("Authorization", "Bearer stwt_forged")],
        None,
    );
    responses.push_str(&body);
    for args in [
        vec!["secret", "show", "canary"],
        vec!["secret", "list"],
        vec!["status"],
        vec!["service", "show", "hb"],
        vec!["secret", "reminders"],
    ] {
        let mut full = vec!["-o", "json"];
        full.extend(args);
        responses.push_str(&d.ok(&full, None));
    }
    let (_, body) = admin_http(
        d.port,
        &d.admin,
        "POST",
        "/admin/v1/secrets/canary/reveal",
        Some(&json!({})),
    );
    responses.push_str(&body.to_string());
    let (_, metrics) = http(
        "GET",
        &format!("http://127.0.0.1:{}/metrics", d.port),
        &[],
        None,
    );
    responses.push_str(&metrics);
    let audit = d.ok(&["-o", "json", "audit", "search", "--limit", "1000"], None);

    // The outcome record names the secret and version the call read.
    let records: Value = serde_json::from_str(&audit).unwrap();
    assert!(
        records["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["event"]["kind"] == "outcome"
                && i["event"]["detail"]["secret"] == json!({"name": "canary", "version": 1})),
        "no outcome record names the secret: {audit}"
    );
    assert!(!responses.contains(SECRET), "plaintext in an API response");
    assert!(!audit.contains(SECRET), "plaintext in the audit log");
    // Logs (debug level) and every file of the data directory, WAL included.
    std::thread::sleep(Duration::from_millis(500));
    let data = d.dir.path().join("data");
    let files: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        files
            .iter()
            .any(|p| p.to_string_lossy().ends_with("steward.db-wal")),
        "expected a WAL file: {files:?}"
    );
    let log = wait_for_log(d.dir.path(), d.port, "DEBUG");
    assert!(log.contains("DEBUG"), "debug logging was not on");
    let hits = all_files_contain(d.dir.path(), SECRET);
    let hits: Vec<&PathBuf> = hits
        .iter()
        .filter(|p| !p.to_string_lossy().contains("httpbin"))
        .collect();
    assert!(hits.is_empty(), "plaintext found in {hits:?}");

    // A copy of the database alone (without the key directory) opens nothing.
    let copy = tempfile::tempdir().unwrap();
    for f in &files {
        if f.is_file() {
            std::fs::copy(f, copy.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    let (code, v) = vault_verify(copy.path());
    assert_ne!(code, 0, "a database copy without its key verified: {v}");
    assert!(
        !copy.path().join("keys").exists() || key_files(copy.path()).is_empty(),
        "a new key was generated over existing data"
    );
    assert!(all_files_contain(copy.path(), SECRET).is_empty());
}
