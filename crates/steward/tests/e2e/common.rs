//! Shared helpers for the end-to-end tests: start the real binary and real peers, run the CLI.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_steward");
pub const CANARY: &str = "upstream-canary-7f3a9c";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the server answers `/healthz` (the port opens before the store is ready).
pub fn wait_ready(port: u16) {
    wait_port(port);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if try_http(
            "GET",
            &format!("http://127.0.0.1:{port}/healthz"),
            &[],
            None,
        )
        .is_some_and(|(s, _)| s == 200)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("steward on port {port} never became healthy");
}

/// The bootstrap token a first start prints (it may follow readiness by a moment).
fn bootstrap_token(rx: &std::sync::mpsc::Receiver<String>, fresh: bool) -> Option<String> {
    let wait = if fresh {
        Duration::from_secs(15)
    } else {
        Duration::from_millis(300)
    };
    let start = Instant::now();
    while let Some(left) = wait.checked_sub(start.elapsed()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.trim().starts_with("stwa_") => return Some(line.trim().to_owned()),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Starts steward; returns the process and the bootstrap token if one was printed.
pub fn start_steward(dir: &Path, port: u16, extra_env: &[(&str, &str)]) -> (Proc, Option<String>) {
    std::fs::create_dir_all(dir).unwrap();
    let fresh = !dir.join("data").exists();
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
    wait_ready(port);
    let token = bootstrap_token(&rx, fresh);
    (Proc(child), token)
}

pub fn cli(port: u16, token: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
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
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ok(port: u16, token: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = cli(port, token, args, stdin);
    assert_eq!(code, 0, "steward {args:?} failed: {err}{out}");
    out
}

/// `steward audit search --operation OPERATION --limit LIMIT`, as JSON.
pub fn audit_search(port: u16, token: &str, operation: &str, limit: u32) -> serde_json::Value {
    json(
        port,
        token,
        &[
            "audit",
            "search",
            "--operation",
            operation,
            "--limit",
            &limit.to_string(),
        ],
    )
}

pub fn json(port: u16, token: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    serde_json::from_str(&ok(port, token, &full, None)).unwrap()
}

pub fn httpbin_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import httpbin, gunicorn"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but httpbin/gunicorn are not installed"
        );
        eprintln!("skipping: httpbin/gunicorn not installed (pip install httpbin gunicorn)");
    }
    ok
}

/// Sends one HTTP/1.1 request; returns the status and the raw response text.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let client = reqwest::blocking_client();
    client(method, url, headers, body)
}

pub mod reqwest {
    //! A tiny blocking HTTP/1.1 client over std, so the test does not need an async runtime.
    use std::io::{Read, Write};

    pub fn blocking_client() -> impl Fn(&str, &str, &[(&str, &str)], Option<&str>) -> (u16, String)
    {
        |method, url, headers, body| {
            let rest = url.strip_prefix("http://").unwrap();
            let (host, path) = rest.split_at(rest.find('/').unwrap());
            let mut stream = std::net::TcpStream::connect(host).unwrap();
            stream
                .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            let mut req =
                format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            let body = body.unwrap_or("");
            req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            stream.write_all(req.as_bytes()).unwrap();
            let mut resp = Vec::new();
            let _ = stream.read_to_end(&mut resp);
            let text = String::from_utf8_lossy(&resp).into_owned();
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (status, text)
        }
    }
}

pub fn all_files_contain(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                hits.push(p);
            }
        }
    }
    hits
}

/// Starts httpbin under gunicorn on a free port with an access log; returns the process,
/// its port and the log path (every request that reached it is one line there).
pub fn start_httpbin(dir: &Path) -> (Proc, u16, PathBuf) {
    let port = free_port();
    let log = dir.join(format!("httpbin-{port}.access.log"));
    std::fs::write(&log, "").unwrap();
    let proc = Proc(
        Command::new("python3")
            .args([
                "-m",
                "gunicorn",
                "-w",
                "2",
                "-b",
                &format!("127.0.0.1:{port}"),
                "--access-logfile",
            ])
            .arg(&log)
            .arg("httpbin:app")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_port(port);
    (proc, port, log)
}

/// Request lines httpbin logged so far.
pub fn httpbin_requests(log: &Path) -> Vec<String> {
    // gunicorn writes the access line after it has sent the response: wait until the log
    // has stopped growing (at most 3 s) so both "it arrived" and "nothing arrived" hold.
    let size = || std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut last, mut stable) = (size(), 0);
    while stable < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = size();
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
    }
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A deployment ready for governed calls: steward, an admin token, one agent identity
/// with its API key and access token.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin: String,
    #[allow(dead_code)]
    pub identity_id: String,
    pub api_key: String,
    pub agent: String,
    pub steward: Proc,
}

impl Deployment {
    /// Starts steward in a fresh directory (optionally with a `steward.toml` and a data
    /// directory elsewhere) and creates identity `agent-one`.
    pub fn start(config: Option<&str>, data_dir: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = config {
            std::fs::write(dir.path().join("steward.toml"), text).unwrap();
        }
        let port = free_port();
        let (steward, token) = match data_dir {
            Some(d) => start_steward_at(dir.path(), d, port, &[]),
            None => start_steward(dir.path(), port, &[]),
        };
        let admin = token.expect("first start prints a bootstrap token");
        let (identity_id, api_key, agent) = new_agent(port, &admin, "agent-one");
        Self {
            dir,
            port,
            admin,
            identity_id,
            api_key,
            agent,
            steward,
        }
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.steward.0.kill();
        let _ = self.steward.0.wait();
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self, data_dir: Option<&Path>) {
        self.kill();
        let (proc, _) = match data_dir {
            Some(d) => start_steward_at(self.dir.path(), d, self.port, &[]),
            None => start_steward(self.dir.path(), self.port, &[]),
        };
        self.steward = proc;
    }

    pub fn pid(&self) -> u32 {
        self.steward.0.id()
    }

    pub fn base(&self, service: &str) -> String {
        format!("http://127.0.0.1:{}/gw/{service}", self.port)
    }

    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        ok(self.port, &self.admin, args, stdin)
    }

    /// Sets the policy set from Cedar text.
    pub fn policy(&self, text: &str) {
        let pol = self.dir.path().join(format!("policies-{}", free_port()));
        std::fs::create_dir_all(&pol).unwrap();
        std::fs::write(pol.join("suite.cedar"), text).unwrap();
        self.ok(&["policy", "set", pol.to_str().unwrap()], None);
    }

    /// Adds an HTTP service from an OpenAPI text, with private/plain-HTTP upstreams allowed.
    pub fn service(&self, name: &str, base_url: &str, openapi: &str, auth: &[&str]) {
        let spec = self.dir.path().join(format!("{name}.openapi.yaml"));
        std::fs::write(&spec, openapi).unwrap();
        let mut args = vec![
            "service",
            "add",
            name,
            "--base-url",
            base_url,
            "--allow-http",
            "--allow-private",
            "--openapi",
            spec.to_str().unwrap(),
        ];
        args.extend_from_slice(auth);
        self.ok(&args, None);
    }
}

/// Like [`start_steward`], with the data directory at `data`.
pub fn start_steward_at(
    dir: &Path,
    data: &Path,
    port: u16,
    extra_env: &[(&str, &str)],
) -> (Proc, Option<String>) {
    std::fs::create_dir_all(dir).unwrap();
    let fresh = !data.exists();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("steward-{port}.log")))
                .unwrap(),
        );
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
    wait_ready(port);
    let token = bootstrap_token(&rx, fresh);
    (Proc(child), token)
}

/// Creates an identity with an API key and exchanges it for an access token.
pub fn new_agent(port: u16, admin: &str, name: &str) -> (String, String, String) {
    let identity = json(
        port,
        admin,
        &["identity", "create", name, "--owner", "alice"],
    );
    let id = identity["id"].as_str().unwrap().to_owned();
    let key = ok(port, admin, &["identity", "key-create", &id], None)
        .trim()
        .to_owned();
    let agent = ok(
        port,
        admin,
        &["token", "get", "--client-id", name],
        Some(&key),
    )
    .trim()
    .to_owned();
    (id, key, agent)
}

/// Sends raw bytes on a fresh connection; returns everything read until the server closes
/// or `wait` passes, and whether the server closed the connection.
pub fn raw_exchange(port: u16, request: &[u8], wait: Duration) -> (String, bool) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _ = stream.write_all(request);
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut closed = false;
    while start.elapsed() < wait {
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

/// A minimal upstream that counts every connection and request it receives and keeps
/// what it was sent, so a test can prove an upstream was (or was not) contacted.
///
/// Routes: `/big/N` answers N bytes; `/redirect?to=URL` answers 302; anything else
/// drains the body and answers 200 with the request head and the body size.
pub struct CountingUpstream {
    pub port: u16,
    pub connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl CountingUpstream {
    pub fn start() -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, r) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || serve_counting(stream, &r));
            }
        });
        Self {
            port,
            connections,
            requests,
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether any received request (head or kept body) contains `needle`.
    pub fn saw(&self, needle: &str) -> bool {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }
}

fn serve_counting(mut stream: std::net::TcpStream, seen: &std::sync::Mutex<Vec<Vec<u8>>>) {
    use std::io::{Read, Write};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
            if head.len() > 1 << 20 {
                return;
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let lower = text.to_ascii_lowercase();
        let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let content_length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<u64>().ok());
        let chunked = lower
            .lines()
            .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
        // Keep up to 4 MiB of each request for inspection; count the rest.
        let mut kept = head.clone();
        let mut body_bytes: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        if let Some(len) = content_length {
            let mut left = len;
            while left > 0 {
                let want = usize::try_from(left.min(buf.len() as u64)).unwrap();
                match stream.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if kept.len() < 4 << 20 {
                            kept.extend_from_slice(&buf[..n]);
                        }
                        body_bytes += n as u64;
                        left -= n as u64;
                    }
                }
            }
        } else if chunked {
            // Read until the terminating chunk; enough for the tests' well-formed bodies.
            let mut tail: Vec<u8> = Vec::new();
            loop {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if kept.len() < 4 << 20 {
                            kept.extend_from_slice(&buf[..n]);
                        }
                        body_bytes += n as u64;
                        tail.extend_from_slice(&buf[..n]);
                        if tail.len() > 8 {
                            tail.drain(..tail.len() - 8);
                        }
                        if tail.ends_with(b"0\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
        }
        seen.lock().unwrap().push(kept);
        let result = if let Some(n) = path
            .strip_prefix("/big/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            let mut r = stream.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = n;
            while r.is_ok() && left > 0 {
                let k = usize::try_from(left.min(chunk.len() as u64)).unwrap();
                r = stream.write_all(&chunk[..k]);
                left -= k as u64;
            }
            r
        } else if let Some(to) = path.strip_prefix("/redirect?to=").map(str::to_owned) {
            stream.write_all(
                format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            )
        } else {
            let body = format!("{text}body-bytes: {body_bytes}\n");
            stream.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}", body.len()).as_bytes())
        };
        if result.is_err() {
            return;
        }
    }
}

/// Resident memory of a process in KiB (Linux).
pub fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Like [`http`], but a connection failure is `None` instead of a panic.
pub fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_at(rest.find('/')?);
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())?;
    Some((status, text))
}

/// Stores the upstream credential `httpbin-token` (the canary) and adds the example
/// `httpbin` service (`examples/services/httpbin.yaml`) in front of the httpbin on
/// `up_port`, injecting that credential as a bearer token.
pub fn add_httpbin_service(port: u16, admin: &str, up_port: u16) {
    ok(
        port,
        admin,
        &["secret", "set", "httpbin-token"],
        Some(CANARY),
    );
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/services/httpbin.yaml");
    ok(
        port,
        admin,
        &[
            "service",
            "add",
            "httpbin",
            "--base-url",
            &format!("http://127.0.0.1:{up_port}"),
            "--auth",
            "bearer",
            "--secret",
            "httpbin-token",
            "--allow-http",
            "--allow-private",
            "--openapi",
            spec.to_str().unwrap(),
        ],
        None,
    );
}

/// Waits up to 10 s for `needle` to appear in Steward's log for `port` under `dir`, and
/// returns the log. Log lines leave the server on a writer thread a few milliseconds after
/// the request that logged them has been answered, so a test must not read the file once.
pub fn wait_for_log(dir: &Path, port: u16, needle: &str) -> String {
    let path = dir.join(format!("steward-{port}.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.contains(needle) || Instant::now() >= deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM to process `pid` (a graceful stop).
pub fn sigterm(pid: &str) {
    assert!(
        Command::new("kill")
            .args(["-TERM", pid])
            .status()
            .unwrap()
            .success(),
        "kill -TERM {pid}"
    );
}
