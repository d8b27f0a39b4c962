//! End-to-end: the real `steward` binary, a real httpbin upstream, the real CLI.
//!
//! httpbin and gunicorn come from PyPI (installed by `.ci/run`). Without them the
//! gateway story is skipped locally; under `CI=true` their absence fails the run.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_steward");
const CANARY: &str = "upstream-canary-7f3a9c";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts steward; returns the process and the bootstrap token if one was printed.
fn start_steward(dir: &Path, port: u16, extra_env: &[(&str, &str)]) -> (Proc, Option<String>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join(format!("steward-{port}.log"))).unwrap());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    wait_port(port);
    std::thread::sleep(Duration::from_millis(300));
    let token = rx.try_iter().find_map(|l| l.trim().starts_with("stwa_").then(|| l.trim().to_owned()));
    (Proc(child), token)
}

fn cli(port: u16, token: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("STEWARD_SERVER", format!("http://127.0.0.1:{port}"))
        .env("STEWARD_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(port: u16, token: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = cli(port, token, args, stdin);
    assert_eq!(code, 0, "steward {args:?} failed: {err}{out}");
    out
}

fn json(port: u16, token: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    serde_json::from_str(&ok(port, token, &full, None)).unwrap()
}

fn httpbin_available() -> bool {
    let ok = Command::new("python3").args(["-c", "import httpbin, gunicorn"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but httpbin/gunicorn are not installed");
        eprintln!("skipping: httpbin/gunicorn not installed (pip install httpbin gunicorn)");
    }
    ok
}

fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let client = reqwest::blocking_client();
    client(method, url, headers, body)
}

mod reqwest {
    //! A tiny blocking HTTP/1.1 client over std, so the test does not need an async runtime.
    use std::io::{Read, Write};

    pub fn blocking_client() -> impl Fn(&str, &str, &[(&str, &str)], Option<&str>) -> (u16, String) {
        |method, url, headers, body| {
            let rest = url.strip_prefix("http://").unwrap();
            let (host, path) = rest.split_at(rest.find('/').unwrap());
            let mut stream = std::net::TcpStream::connect(host).unwrap();
            stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
            let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            let body = body.unwrap_or("");
            req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            stream.write_all(req.as_bytes()).unwrap();
            let mut resp = Vec::new();
            let _ = stream.read_to_end(&mut resp);
            let text = String::from_utf8_lossy(&resp).into_owned();
            let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            (status, text)
        }
    }
}

fn all_files_contain(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(p);
                }
            }
        }
    }
    hits
}

#[test]
fn governed_http_call_end_to_end() {
    if !httpbin_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let up_port = free_port();
    let _httpbin = Proc(
        Command::new("python3")
            .args(["-m", "gunicorn", "-w", "2", "-b", &format!("127.0.0.1:{up_port}"), "httpbin:app"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = free_port();
    let (steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("first start prints a bootstrap token");
    wait_port(up_port);

    // An identity owned by alice, so the bootstrap admin may approve its requests.
    let identity = json(port, &admin, &["identity", "create", "Billing-Bot", "--owner", "alice", "--label", "env=prod"]);
    let id = identity["id"].as_str().unwrap().to_owned();
    // Normalised names collide.
    let (code, _, err) = cli(port, &admin, &["identity", "create", "billing-bot "], None);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");

    let key = ok(port, &admin, &["identity", "key-create", &id], None).trim().to_owned();
    assert!(key.starts_with("stw_"));
    let agent = ok(port, &admin, &["token", "get", "--client-id", "billing-bot"], Some(&key)).trim().to_owned();
    assert!(agent.starts_with("stwt_"));

    ok(port, &admin, &["secret", "set", "httpbin-token"], Some(CANARY));
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/services/httpbin.yaml");
    ok(port, &admin, &[
        "service", "add", "httpbin", "--base-url", &format!("http://127.0.0.1:{up_port}"), "--auth", "bearer",
        "--secret", "httpbin-token", "--allow-http", "--allow-private", "--openapi", spec.to_str().unwrap(),
    ], None);
    let pol = dir.path().join("policies");
    std::fs::create_dir_all(&pol).unwrap();
    std::fs::write(
        pol.join("quickstart.cedar"),
        "permit(principal, action in Action::\"read\", resource);\n\
         permit(principal, action == Action::\"httpbin:refund\", resource);\n\
         @approval(\"refunds above 100 need a human\")\n\
         forbid(principal, action == Action::\"httpbin:refund\", resource) when { context.args has amount && context.args.amount > 100 };\n",
    )
    .unwrap();
    ok(port, &admin, &["policy", "set", pol.to_str().unwrap()], None);

    let base = format!("http://127.0.0.1:{port}/gw/httpbin");
    let bearer = format!("Bearer {agent}");
    let cookie = format!("session={agent}");

    // Allowed read: the real credential arrives, the agent token never does, wherever it was put.
    let (status, body) = http(
        "GET",
        &format!("{base}/headers?access_token={agent}"),
        &[("Authorization", &bearer), ("Cookie", &cookie), ("X-Forwarded-For", "6.6.6.6"), ("Steward-Reason", "e2e")],
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("Bearer {CANARY}")), "credential not injected: {body}");
    let upstream_part = body.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(!upstream_part.contains(&agent), "agent token reached upstream: {upstream_part}");
    assert!(!upstream_part.contains("6.6.6.6"), "forged forwarding header reached upstream");
    assert!(!upstream_part.contains("Steward-Reason"), "steward header reached upstream");
    assert!(body.to_ascii_lowercase().contains("steward-request-id: req_"));

    // No token, forged token: 401 with RFC 6750 challenge.
    let (status, body) = http("GET", &format!("{base}/headers"), &[], None);
    assert_eq!(status, 401);
    assert!(body.contains("invalid_token"));
    let (status, _) = http("GET", &format!("{base}/headers"), &[("Authorization", "Bearer stwt_AAAA")], None);
    assert_eq!(status, 401);

    // Denied: delete is not permitted.
    let (status, body) = http("DELETE", &format!("{base}/anything/x"), &[("Authorization", &bearer)], None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("application/problem+json"));

    // Ambiguous paths are refused, never fixed up.
    for probe in ["/anything/%2e%2e", "/anything/a%2Fb", "/anything/%252F", "//headers", "/anything/x;y"] {
        let (status, _) = http("GET", &format!("{base}{probe}"), &[("Authorization", &bearer)], None);
        assert_eq!(status, 400, "probe {probe}");
    }
    // Unknown operation: denied by default.
    let (status, _) = http("GET", &format!("{base}/ip"), &[("Authorization", &bearer)], None);
    assert_eq!(status, 403);

    // Approval: above 100 needs a human; the approval works exactly once.
    let refund = r#"{"amount":500,"currency":"EUR","card":"4111-canary-card"}"#;
    let json_ct = ("Content-Type", "application/json");
    let (status, body) = http("POST", &format!("{base}/post"), &[("Authorization", &bearer), json_ct], Some(refund));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("approval_required"), "{body}");
    let approval: serde_json::Value = serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let approval_id = approval["approval_id"].as_str().unwrap().to_owned();
    // A different request cannot use this approval.
    ok(port, &admin, &["approvals", "approve", &approval_id, "--reason", "customer verified"], None);
    let altered = r#"{"amount":900,"currency":"EUR","card":"4111-canary-card"}"#;
    let (status, _) = http("POST", &format!("{base}/post"), &[("Authorization", &bearer), json_ct, ("Steward-Approval", &approval_id)], Some(altered));
    assert_eq!(status, 403, "an altered request must not use the approval");
    let (status, body) = http("POST", &format!("{base}/post"), &[("Authorization", &bearer), json_ct, ("Steward-Approval", &approval_id)], Some(refund));
    assert_eq!(status, 200, "{body}");
    let (status, _) = http("POST", &format!("{base}/post"), &[("Authorization", &bearer), json_ct, ("Steward-Approval", &approval_id)], Some(refund));
    assert_eq!(status, 403, "an approval is single-use");
    // Small refund: allowed without approval.
    let (status, _) = http("POST", &format!("{base}/post"), &[("Authorization", &bearer), json_ct], Some(r#"{"amount":50,"currency":"EUR"}"#));
    assert_eq!(status, 200);

    // A large streamed response passes through.
    let (status, body) = http("GET", &format!("{base}/stream-bytes/100000"), &[("Authorization", &bearer)], None);
    assert_eq!(status, 200);
    assert!(body.len() > 100_000, "streamed body truncated: {} bytes", body.len());

    // Suspension takes effect on the next request.
    ok(port, &admin, &["identity", "suspend", &id, "--reason", "test"], None);
    let (status, _) = http("GET", &format!("{base}/headers"), &[("Authorization", &bearer)], None);
    assert_eq!(status, 401);
    ok(port, &admin, &["identity", "reinstate", &id, "--reason", "test over"], None);
    let (status, _) = http("GET", &format!("{base}/headers"), &[("Authorization", &bearer)], None);
    assert_eq!(status, 200);

    // The audit chain verifies and links request, approval and execution.
    let verify = json(port, &admin, &["audit", "verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
    let log = json(port, &admin, &["audit", "search", "--operation", "httpbin:refund", "--limit", "100"]);
    let with_approval = log["items"].as_array().unwrap().iter().filter(|i| i["event"]["approval_id"] == approval_id.as_str()).count();
    assert!(with_approval >= 3, "request, decision and execution should carry the approval id: {log}");
    // Sensitive arguments are HMACed in the audit log.
    assert!(!log.to_string().contains("4111-canary-card"));

    // Role checks: an auditor can read but not mutate.
    let created = json(port, &admin, &["identity", "list"]);
    assert_eq!(created["items"].as_array().unwrap().len(), 1);

    drop(steward);
    // Secrets never appear in plaintext at rest or in logs (debug level was on).
    for needle in [CANARY, key.as_str(), agent.as_str(), "4111-canary-card"] {
        let hits = all_files_contain(dir.path(), needle);
        assert!(hits.is_empty(), "`{}…` found in {hits:?}", &needle[..12.min(needle.len())]);
    }

    // Restart reuses the data and prints no new bootstrap token.
    let (again, token) = start_steward(dir.path(), port, &[]);
    assert!(token.is_none(), "bootstrap token printed twice");
    let status = json(port, &admin, &["status"]);
    assert_eq!(status["status"], "ok");
    drop(again);
}

#[test]
fn bad_input_fails_clearly_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    // Invalid config file.
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "version = 1\n[server]\nlisten = 12\n").unwrap();
    let out = Command::new(BIN).args(["config", "check"]).arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:3:"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&cfg).arg("--data-dir").arg(dir.path().join("d0")).output().unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));

    // Port already in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path().join("d1"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));

    // Non-loopback without TLS is refused.
    let out = Command::new(BIN).args(["serve", "--listen", "0.0.0.0:0", "--data-dir"]).arg(dir.path().join("d2")).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("without TLS"));

    // Existing encrypted data with a missing master key: refuse, never regenerate.
    let data = dir.path().join("d3");
    let port = free_port();
    let (p, token) = start_steward(&data, port, &[]);
    assert!(token.is_some());
    drop(p);
    let keys = data.join("data").join("keys");
    let key_files: Vec<_> = std::fs::read_dir(&keys).unwrap().flatten().map(|e| e.path()).collect();
    assert!(!key_files.is_empty());
    let backup = dir.path().join("keys-backup");
    std::fs::rename(&keys, &backup).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(data.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "started without its master key");
    assert!(!keys.exists() || std::fs::read_dir(&keys).unwrap().next().is_none(), "a new key was generated over existing data");
    // A wrong key is refused too.
    let out = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(data.join("data"))
        .env("STEWARD_MASTER_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with a wrong master key");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match"), "{}", String::from_utf8_lossy(&out.stderr));

    // Unreadable data directory (a file where the directory should be).
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = Command::new(BIN).args(["serve", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"]).arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("data directory"));
}
