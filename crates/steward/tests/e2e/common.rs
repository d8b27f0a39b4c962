//! Shared helpers for the end-to-end tests: start the real binary and real peers, run the CLI.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_steward");
pub const CANARY: &str = "upstream-canary-7f3a9c";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
        assert!(start.elapsed() < Duration::from_secs(30), "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts steward; returns the process and the bootstrap token if one was printed.
pub fn start_steward(dir: &Path, port: u16, extra_env: &[(&str, &str)]) -> (Proc, Option<String>) {
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

pub fn ok(port: u16, token: &str, args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = cli(port, token, args, stdin);
    assert_eq!(code, 0, "steward {args:?} failed: {err}{out}");
    out
}

pub fn json(port: u16, token: &str, args: &[&str]) -> serde_json::Value {
    let mut full = vec!["-o", "json"];
    full.extend_from_slice(args);
    serde_json::from_str(&ok(port, token, &full, None)).unwrap()
}

pub fn httpbin_available() -> bool {
    let ok = Command::new("python3").args(["-c", "import httpbin, gunicorn"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but httpbin/gunicorn are not installed");
        eprintln!("skipping: httpbin/gunicorn not installed (pip install httpbin gunicorn)");
    }
    ok
}

/// Sends one HTTP/1.1 request; returns the status and the raw response text.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> (u16, String) {
    let client = reqwest::blocking_client();
    client(method, url, headers, body)
}

pub mod reqwest {
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

pub fn all_files_contain(dir: &Path, needle: &str) -> Vec<PathBuf> {
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


