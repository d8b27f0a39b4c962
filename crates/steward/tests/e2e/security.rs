//! The attack, fault and leak suite: the real binary attacked the way an adversary, a
//! flaky disk or a careless operator would. Every case asserts the outcome and that
//! nothing leaked or reached an upstream it should not have.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const CANARY_A: &str = "canary-secret-aaaa-51c2e9";
const CANARY_B: &str = "canary-secret-bbbb-8d04f7";

/// httpbin operations the suite calls (a subset is enough: unmatched requests are denied).
const HTTPBIN_SPEC: &str = r#"openapi: 3.0.3
info: { title: security suite, version: "1" }
paths:
  /anything/{item}:
    get:
      operationId: anything.read
      parameters: [{ name: item, in: path, required: true, schema: { type: string } }]
    put:
      operationId: anything.put
      parameters: [{ name: item, in: path, required: true, schema: { type: string } }]
  /get:
    get:
      operationId: get
      parameters: [{ name: q, in: query, schema: { type: string } }]
  /post:
    post:
      operationId: post
      requestBody:
        content:
          application/json:
            schema: { type: object, properties: { note: { type: string } } }
  /redirect-to:
    get:
      operationId: redirect
      parameters:
        - { name: url, in: query, schema: { type: string } }
        - { name: status_code, in: query, schema: { type: integer } }
  /status/{code}:
    get:
      operationId: status
      parameters: [{ name: code, in: path, required: true, schema: { type: integer } }]
"#;

/// Operations of the counting upstream.
const COUNTING_SPEC: &str = r#"openapi: 3.0.3
info: { title: counting upstream, version: "1" }
paths:
  /big/{n}:
    get:
      operationId: big
      parameters: [{ name: n, in: path, required: true, schema: { type: integer } }]
  /echo/{x}:
    get:
      operationId: echo
      parameters: [{ name: x, in: path, required: true, schema: { type: string } }]
  /sink:
    put:
      operationId: sink
  /inspect:
    post:
      operationId: inspect
      requestBody:
        content:
          application/json:
            schema: { type: object, properties: { amount: { type: integer } } }
  /redirect:
    get:
      operationId: redirect
      parameters: [{ name: to, in: query, schema: { type: string } }]
"#;

const ALLOW_READ_WRITE: &str = "permit(principal, action in Action::\"read\", resource);\n\
                                permit(principal, action in Action::\"write\", resource);\n";

/// The lines around a leak, with the secret itself masked, for the failure message.
fn leak_context(files: &[std::path::PathBuf], needle: &str) -> String {
    let mut out = String::new();
    for file in files {
        let bytes = std::fs::read(file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines().filter(|l| l.contains(needle)).take(3) {
            out.push_str(
                &line
                    .replace(needle, "<SECRET>")
                    .chars()
                    .take(400)
                    .collect::<String>(),
            );
            out.push('\n');
        }
    }
    out
}

fn upstream_part(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn get_text(url: &str, token: &str) -> String {
    let (status, body) = http(
        "GET",
        url,
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(status, 200, "GET {url}: {body}");
    upstream_part(&body).to_owned()
}

/// The agent token, its API key and the upstream secrets never reach an upstream or any
/// place at rest, whatever the agent does with them; credentials never cross services.
#[test]
fn agent_token_never_reaches_upstream_and_credentials_never_cross_services() {
    if !httpbin_available() {
        return;
    }
    let upstream_dir = tempfile::tempdir().unwrap();
    let (_httpbin, up, access_log) = start_httpbin(upstream_dir.path());
    let capture = CountingUpstream::start();
    let d = Deployment::start(None, None);
    d.ok(&["secret", "set", "secret-a"], Some(CANARY_A));
    d.ok(&["secret", "set", "secret-b"], Some(CANARY_B));
    let httpbin = format!("http://127.0.0.1:{up}");
    d.service(
        "a",
        &httpbin,
        HTTPBIN_SPEC,
        &["--auth", "bearer", "--secret", "secret-a"],
    );
    d.service(
        "b",
        &httpbin,
        HTTPBIN_SPEC,
        &[
            "--auth",
            "header",
            "--auth-param",
            "X-Api-Key",
            "--secret",
            "secret-b",
        ],
    );
    d.service(
        "c",
        &format!("http://127.0.0.1:{}", capture.port),
        COUNTING_SPEC,
        &["--auth", "bearer", "--secret", "secret-a"],
    );
    d.policy(ALLOW_READ_WRITE);
    let agent = d.agent.clone();
    let bearer = format!("Bearer {agent}");
    let a = d.base("a");
    let mut api_responses = String::new();

    // --- Token passthrough -------------------------------------------------------------
    // Duplicate Authorization headers: refused before anything else, upstream untouched.
    let before = httpbin_requests(&access_log).len();
    let (status, body) = http(
        "GET",
        &format!("{a}/anything/dup"),
        &[("Authorization", &bearer), ("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 401, "{body}");
    api_responses.push_str(&body);
    // A comma-joined pair is no single bearer token either.
    let (status, _) = http(
        "GET",
        &format!("{a}/anything/dup"),
        &[("Authorization", &format!("{bearer}, {bearer}"))],
        None,
    );
    assert_eq!(status, 401);
    assert_eq!(
        httpbin_requests(&access_log).len(),
        before,
        "a refused request reached the upstream"
    );

    // Lowercase header name and scheme; the token also in a cookie, another header and
    // the query under any parameter name or encoding: stripped, and the real credential
    // is injected.
    let encoded = format!("%{:02X}{}", agent.as_bytes()[0], &agent[1..]);
    let url =
        format!("{a}/get?q=ok&access_token={agent}&foo={agent}&x=Bearer%20{agent}&enc={encoded}");
    let (status, body) = http(
        "GET",
        &url,
        &[
            ("authorization", &format!("bearer {agent}")),
            ("Cookie", &format!("session={agent}; theme=dark")),
            ("X-Note", &agent),
        ],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let seen = upstream_part(&body);
    assert!(
        seen.contains(&format!("Bearer {CANARY_A}")),
        "credential not injected: {seen}"
    );
    assert!(
        seen.contains("\"q\": \"ok\""),
        "legitimate query parameter lost: {seen}"
    );
    assert!(
        !seen.contains(&agent[5..]),
        "agent token reached the upstream: {seen}"
    );
    assert!(
        !seen.to_ascii_lowercase().contains("session="),
        "cookie reached the upstream: {seen}"
    );
    // (httpbin echoes the injected credential back, so its 200 bodies are not Steward's
    // responses and are not collected for the canary check.)

    // In the path: refused (Steward forwards exactly the bytes it authorised).
    let before = httpbin_requests(&access_log).len();
    let (status, _) = http(
        "GET",
        &format!("{a}/anything/{agent}"),
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 400, "a token in the path must be refused");
    // In an inspected JSON body: refused.
    let note = format!(r#"{{"note":"{agent}"}}"#);
    let (status, body) = http(
        "POST",
        &format!("{a}/post"),
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        Some(&note),
    );
    assert_eq!(status, 400, "{body}");
    // In a small chunked body of an operation that does not inspect bodies: refused too.
    let chunked = format!(
        "PUT /gw/a/anything/x HTTP/1.1\r\nHost: s\r\nAuthorization: {bearer}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{agent}\r\n0\r\n\r\n",
        agent.len()
    );
    let (response, _) = raw_exchange(d.port, chunked.as_bytes(), Duration::from_secs(10));
    assert_eq!(status_of(&response), 400, "{response}");
    assert_eq!(
        httpbin_requests(&access_log).len(),
        before,
        "a refused request reached the upstream"
    );
    // In a large streamed body (beyond the inspection limit): the stream is cut before
    // the token is sent.
    let mut big = vec![b'z'; 3 * 1024 * 1024];
    big.splice(2_000_000..2_000_000 + agent.len(), agent.bytes());
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "PUT /gw/c/sink HTTP/1.1\r\nHost: s\r\nAuthorization: {bearer}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(&big);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    assert!(
        !capture.saw(&agent),
        "a streamed body carried the agent token upstream"
    );
    assert!(
        !response.starts_with("HTTP/1.1 2"),
        "a body carrying the token was forwarded: {response}"
    );

    // --- Credential confusion ----------------------------------------------------------
    // A crafted Host: the upstream still gets its own Host and service A's credential only.
    let (status, body) = http(
        "GET",
        &format!("{a}/anything/host"),
        &[("Authorization", &bearer), ("Host", "b.internal")],
        None,
    );
    assert!(status == 200 || status == 400, "{body}");
    if status == 200 {
        let seen = upstream_part(&body);
        assert!(
            seen.contains(&format!("\"Host\": \"127.0.0.1:{up}\"")),
            "Host not rewritten: {seen}"
        );
        assert!(
            !seen.contains(CANARY_B) && !seen.contains("b.internal"),
            "{seen}"
        );
    }
    // Service B gets B's credential, never A's.
    let seen = get_text(&format!("{}/anything/b", d.base("b")), &agent);
    assert!(
        seen.contains(CANARY_B) && !seen.contains(CANARY_A),
        "{seen}"
    );
    // Absolute-form request targets: the authority is never used as the upstream.
    for target in [
        format!("http://127.0.0.1:{}/gw/a/anything/abs", capture.port),
        format!("http://127.0.0.1:{}/gw/b/anything/abs", d.port),
    ] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {bearer}\r\nConnection: close\r\n\r\n",
            capture.port
        );
        let (response, _) = raw_exchange(d.port, request.as_bytes(), Duration::from_secs(10));
        let status = status_of(&response);
        assert!(status == 200 || status == 400, "{target}: {response}");
        if status == 200 {
            let seen = upstream_part(&response);
            if target.contains("/gw/a/") {
                assert!(
                    seen.contains(CANARY_A) && !seen.contains(CANARY_B),
                    "{seen}"
                );
            } else {
                assert!(
                    seen.contains(CANARY_B) && !seen.contains(CANARY_A),
                    "{seen}"
                );
            }
        }
    }
    let capture_before = capture.connections();
    // Upstream redirects are passed back, never followed, so no credential goes cross-origin.
    for url in [
        format!("{a}/redirect-to?url=http://127.0.0.1:{}/leak", capture.port),
        format!(
            "{a}/redirect-to?url=http://127.0.0.1:{}/leak&status_code=307",
            capture.port
        ),
        format!(
            "{}/redirect?to=http://127.0.0.1:{}/gw/b/anything/x",
            d.base("c"),
            up
        ),
    ] {
        let (status, body) = http("GET", &url, &[("Authorization", &bearer)], None);
        assert!(
            (300..400).contains(&status),
            "redirect not passed back: {body}"
        );
        assert!(
            body.to_ascii_lowercase()
                .contains("location: http://127.0.0.1:"),
            "{body}"
        );
    }
    // The /redirect case hits the counting upstream once itself; nothing else reached it.
    assert_eq!(
        capture.connections(),
        capture_before + 1,
        "a redirect was followed"
    );
    assert!(
        !httpbin_requests(&access_log)
            .iter()
            .any(|l| l.contains("/gw/b/anything/x")),
        "a redirect was followed"
    );

    // --- Canary leak: errors and every API surface -------------------------------------
    // Error flows carrying the API key and the agent token.
    let (code, _, err) = cli(
        d.port,
        &d.admin,
        &["token", "get", "--client-id", "no-such-agent"],
        Some(&d.api_key),
    );
    assert_ne!(code, 0);
    api_responses.push_str(&err);
    let (status, body) = http(
        "GET",
        &format!("{a}/anything/k"),
        &[("Authorization", &format!("Bearer {}", d.api_key))],
        None,
    );
    assert_eq!(status, 401);
    api_responses.push_str(&body);
    let (status, body) = http(
        "GET",
        &format!("{}/anything/k", d.base("nosuch")),
        &[("Authorization", &bearer)],
        None,
    );
    assert!(status >= 400);
    api_responses.push_str(&body);
    // A secret that cannot be a header value: the injection fails closed without echoing it.
    d.ok(
        &["secret", "set", "secret-bad"],
        Some("line1\u{7f}\u{1}line2-canary-secret-aaaa-51c2e9"),
    );
    d.service(
        "bad",
        &httpbin,
        HTTPBIN_SPEC,
        &["--auth", "bearer", "--secret", "secret-bad"],
    );
    d.policy(ALLOW_READ_WRITE);
    let (status, body) = http(
        "GET",
        &format!("{}/anything/x", d.base("bad")),
        &[("Authorization", &bearer)],
        None,
    );
    assert!(status >= 400, "{body}");
    api_responses.push_str(&body);
    // An unreachable upstream.
    let closed_port = free_port();
    d.service(
        "down",
        &format!("http://127.0.0.1:{closed_port}"),
        HTTPBIN_SPEC,
        &["--auth", "bearer", "--secret", "secret-a"],
    );
    d.policy(ALLOW_READ_WRITE);
    let (status, body) = http(
        "GET",
        &format!("{}/anything/x", d.base("down")),
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 502, "{body}");
    api_responses.push_str(&body);
    // Every read surface of the API, and the metrics.
    for args in [
        vec!["-o", "json", "secret", "list"],
        vec!["-o", "json", "secret", "show", "secret-a"],
        vec!["-o", "json", "service", "show", "a"],
        vec!["-o", "json", "service", "list"],
        vec!["-o", "json", "identity", "list"],
        vec!["-o", "json", "audit", "search", "--limit", "10000"],
        vec!["-o", "json", "audit", "verify"],
        vec!["-o", "json", "status"],
    ] {
        api_responses.push_str(&d.ok(&args, None));
    }
    let (_, metrics) = http(
        "GET",
        &format!("http://127.0.0.1:{}/metrics", d.port),
        &[],
        None,
    );
    assert!(
        metrics.contains("steward_"),
        "metrics not served: {metrics}"
    );
    api_responses.push_str(&metrics);
    let secrets = [CANARY_A, CANARY_B, d.api_key.as_str(), agent.as_str()];
    for needle in secrets {
        if let Some(at) = api_responses.find(needle) {
            let from = api_responses[..at]
                .char_indices()
                .rev()
                .nth(300)
                .map_or(0, |(i, _)| i);
            panic!(
                "`{}…` appeared in an API response: …{}",
                &needle[..10],
                &api_responses[from..at]
            );
        }
    }
    // The upstream's own access log never saw the token either.
    let upstream_log = std::fs::read_to_string(&access_log).unwrap();
    assert!(
        !upstream_log.contains(&agent[5..]),
        "the agent token reached the upstream's log"
    );

    let Deployment { dir, steward, .. } = d;
    drop(steward);
    // Logs (debug level), database, WAL and SHM: no plaintext anywhere.
    let files: Vec<_> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        files.iter().any(|f| f.to_string_lossy().ends_with(".db")),
        "{files:?}"
    );
    for needle in secrets {
        let hits = all_files_contain(dir.path(), needle);
        assert!(
            hits.is_empty(),
            "`{}…` found at rest in {hits:?}: {}",
            &needle[..10],
            leak_context(&hits, needle)
        );
    }
}

/// Ambiguous paths and request-smuggling framings sent over a raw socket: 400 (framings
/// also close the connection), and the upstream never sees a request.
#[test]
fn ambiguous_paths_and_smuggling_framings_are_refused_on_the_wire() {
    if !httpbin_available() {
        return;
    }
    let upstream_dir = tempfile::tempdir().unwrap();
    let (_httpbin, up, access_log) = start_httpbin(upstream_dir.path());
    let d = Deployment::start(None, None);
    d.ok(&["secret", "set", "secret-a"], Some(CANARY_A));
    d.service(
        "a",
        &format!("http://127.0.0.1:{up}"),
        HTTPBIN_SPEC,
        &["--auth", "bearer", "--secret", "secret-a"],
    );
    d.policy(ALLOW_READ_WRITE);
    let auth = format!("Authorization: Bearer {}\r\n", d.agent);
    // Sanity: a well-formed request does reach the upstream (so "saw nothing" means something).
    let ok_req =
        format!("GET /gw/a/anything/fine HTTP/1.1\r\nHost: s\r\n{auth}Connection: close\r\n\r\n");
    let (response, _) = raw_exchange(d.port, ok_req.as_bytes(), Duration::from_secs(10));
    assert_eq!(status_of(&response), 200, "{response}");
    let baseline = httpbin_requests(&access_log).len();
    assert_eq!(baseline, 1);

    for path in [
        "/gw/a/anything/../get",
        "/gw/a/anything/%2e%2e/get",
        "/gw/a/anything/%2E%2e/get",
        "/gw/a/anything/.%2e/get",
        "/gw/a/anything/a%2Fb",
        "/gw/a/anything/a%2fb",
        "/gw/a/anything/a%252Fb",
        "/gw/a/anything/a%5Cb",
        "/gw/a/anything/a\\b",
        "/gw/a//get",
        "/gw/a/anything//x",
        "/gw/a/anything/x;y=1",
        "/gw/a/anything/x%3By",
        "/gw/a/anything/./x",
        "/gw/a/anything/x%00",
        "/gw/a/./anything/x",
        "/gw/a/anything/x%",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: s\r\n{auth}\r\n");
        let (response, _) = raw_exchange(d.port, request.as_bytes(), Duration::from_millis(1500));
        let status = status_of(&response);
        assert!(
            status == 400 || (status == 0 && response.is_empty()),
            "{path}: {response}"
        );
    }

    // Each framing is followed by a smuggled second request; it must never run.
    let smuggled = format!("GET /gw/a/get?q=smuggled HTTP/1.1\r\nHost: s\r\n{auth}\r\n");
    for (name, head, body) in [
        (
            "conflicting CL",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "hello".to_owned(),
        ),
        ("CL list", "Content-Length: 5, 6\r\n", "hello".to_owned()),
        ("CL +5", "Content-Length: +5\r\n", "hello".to_owned()),
        ("CL -1", "Content-Length: -1\r\n", "hello".to_owned()),
        ("CL hex", "Content-Length: 0x5\r\n", "hello".to_owned()),
        (
            "bad chunk size",
            "Transfer-Encoding: chunked\r\n",
            "zz\r\nhello\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "overflowing chunk size",
            "Transfer-Encoding: chunked\r\n",
            "fffffffffffffffffff\r\nhello\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "negative chunk size",
            "Transfer-Encoding: chunked\r\n",
            "-5\r\nhello\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "TE not chunked last",
            "Transfer-Encoding: chunked, identity\r\n",
            "5\r\nhello\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "TE obfuscated",
            "Transfer-Encoding: xchunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n".to_owned(),
        ),
        (
            "TE with space before colon",
            "Transfer-Encoding : chunked\r\n",
            "5\r\nhello\r\n0\r\n\r\n".to_owned(),
        ),
    ] {
        let request =
            format!("PUT /gw/a/anything/x HTTP/1.1\r\nHost: s\r\n{auth}{head}\r\n{body}{smuggled}");
        let (response, closed) = raw_exchange(d.port, request.as_bytes(), Duration::from_secs(5));
        let status = status_of(&response);
        assert!(
            status == 400 || (status == 0 && closed),
            "{name}: expected 400, got {response}"
        );
        assert!(
            closed,
            "{name}: the connection stayed open after a smuggling framing"
        );
        assert_eq!(
            response.matches("HTTP/1.1").count(),
            1.min(response.len()),
            "{name}: a second response: {response}"
        );
    }
    // Both Content-Length and Transfer-Encoding, in either order and after a well-formed
    // keep-alive request on the same connection: the earlier request is answered, the
    // conflicting one gets 400 and the connection closes. The smuggled request never runs.
    for (name, head) in [
        (
            "CL and TE",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "TE and CL",
            "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n",
        ),
    ] {
        let request = format!(
            "GET /gw/a/anything/first HTTP/1.1\r\nHost: s\r\n{auth}\r\nPUT /gw/a/anything/x HTTP/1.1\r\nHost: s\r\n{auth}{head}\r\n0\r\n\r\n{smuggled}"
        );
        let (response, closed) = raw_exchange(d.port, request.as_bytes(), Duration::from_secs(5));
        assert_eq!(status_of(&response), 200, "{name}: {response}");
        let second = response
            .match_indices("HTTP/1.1 ")
            .nth(1)
            .map(|(i, _)| &response[i..])
            .unwrap_or_default();
        assert_eq!(status_of(second), 400, "{name}: {response}");
        assert!(
            second.contains("both Content-Length and Transfer-Encoding"),
            "{name}: {second}"
        );
        assert!(closed, "{name}: the connection stayed open");
        assert_eq!(
            response.matches("HTTP/1.1 ").count(),
            2,
            "{name}: the smuggled request was answered: {response}"
        );
    }
    let seen = httpbin_requests(&access_log);
    assert!(
        !seen.iter().any(|l| l.contains("smuggled")),
        "a smuggled request reached the upstream: {seen:?}"
    );
    let baseline = seen.len();

    // 10,000 headers: refused, no crash.
    let mut many = String::from("GET /gw/a/anything/x HTTP/1.1\r\nHost: s\r\n");
    for i in 0..10_000 {
        many.push_str(&format!("X-H-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (response, closed) = raw_exchange(d.port, many.as_bytes(), Duration::from_secs(5));
    let status = status_of(&response);
    assert!(
        closed && (status == 0 || status == 431 || status == 400),
        "10k headers: {response}"
    );

    let seen = httpbin_requests(&access_log);
    assert_eq!(
        seen.len(),
        baseline,
        "an ambiguous or smuggled request reached the upstream: {seen:?}"
    );
    // Still serving.
    let (response, _) = raw_exchange(d.port, ok_req.as_bytes(), Duration::from_secs(10));
    assert_eq!(status_of(&response), 200, "{response}");
    // HTTP/2 (prior knowledge) passes the HTTP/1 framing guard untouched.
    if let Ok(out) = std::process::Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "-H",
            &format!("Authorization: Bearer {}", d.agent),
            &format!("http://127.0.0.1:{}/gw/a/anything/h2", d.port),
        ])
        .output()
    {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    }
}

/// Services pointing at metadata, link-local or loopback addresses in any spelling are
/// refused without `allow_private`, and nothing is contacted.
#[test]
fn ssrf_every_spelling_of_a_private_upstream_is_blocked() {
    let capture = CountingUpstream::start();
    let p = capture.port;
    let d = Deployment::start(None, None);
    d.ok(&["secret", "set", "secret-a"], Some(CANARY_A));
    let spec = d.dir.path().join("counting.yaml");
    std::fs::write(&spec, COUNTING_SPEC).unwrap();
    let bases = [
        "http://169.254.169.254".to_owned(),
        "http://169.254.170.2".to_owned(),
        "http://metadata.google.internal".to_owned(),
        "http://[fd00:ec2::254]".to_owned(),
        format!("http://127.0.0.1:{p}"),
        format!("http://localhost:{p}"),
        format!("http://0x7f000001:{p}"),
        format!("http://2130706433:{p}"),
        format!("http://017700000001:{p}"),
        format!("http://127.1:{p}"),
        format!("http://0x7f.0.0.1:{p}"),
        format!("http://[::ffff:127.0.0.1]:{p}"),
        format!("http://[::ffff:7f00:1]:{p}"),
        format!("http://[::1]:{p}"),
        format!("http://0.0.0.0:{p}"),
        format!("http://0:{p}"),
        format!("http://[::]:{p}"),
        "http://10.0.0.1".to_owned(),
        "http://192.168.0.1".to_owned(),
        "http://100.64.0.1".to_owned(),
    ];
    let mut services = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        let name = format!("s{i}");
        let (code, _, err) = cli(
            d.port,
            &d.admin,
            &[
                "service",
                "add",
                &name,
                "--base-url",
                base,
                "--allow-http",
                "--auth",
                "bearer",
                "--secret",
                "secret-a",
                "--openapi",
                spec.to_str().unwrap(),
            ],
            None,
        );
        if code == 0 {
            services.push((name, base.clone()));
        } else {
            assert!(!err.contains("panicked"), "{base}: {err}");
        }
    }
    // Metadata stays blocked even where private addresses are allowed.
    for (name, base) in [
        ("m1", "http://169.254.169.254"),
        ("m2", "http://[::ffff:169.254.169.254]"),
    ] {
        let (code, _, _) = cli(
            d.port,
            &d.admin,
            &[
                "service",
                "add",
                name,
                "--base-url",
                base,
                "--allow-http",
                "--allow-private",
                "--openapi",
                spec.to_str().unwrap(),
            ],
            None,
        );
        if code == 0 {
            services.push((name.to_owned(), base.to_owned()));
        }
    }
    d.policy(ALLOW_READ_WRITE);
    for (name, base) in &services {
        let started = Instant::now();
        let (status, body) = http(
            "GET",
            &format!("{}/echo/x", d.base(name)),
            &[("Authorization", &format!("Bearer {}", d.agent))],
            None,
        );
        assert_eq!(status, 403, "{base}: {body}");
        assert!(body.contains("egress_blocked"), "{base}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{base}: the guard waited on a connect"
        );
    }
    assert_eq!(capture.connections(), 0, "a blocked upstream was contacted");
    // The same upstream with allow_private is reachable (the guard is what blocked it).
    d.service(
        "allowed",
        &format!("http://127.0.0.1:{p}"),
        COUNTING_SPEC,
        &["--auth", "bearer", "--secret", "secret-a"],
    );
    d.policy(ALLOW_READ_WRITE);
    let seen = get_text(&format!("{}/echo/x", d.base("allowed")), &d.agent);
    assert!(seen.contains(CANARY_A));
    assert_eq!(capture.connections(), 1);
}

/// Unmounts a test mount point when dropped (after the server using it has stopped).
struct Mounted(std::path::PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a small tmpfs, or says why it cannot (not root, no CAP_SYS_ADMIN).
fn mount_tmpfs(at: &Path, size: &str) -> Option<Mounted> {
    std::fs::create_dir_all(at).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipping: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)");
        return None;
    }
    Some(Mounted(at.to_path_buf()))
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 CLI");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn request_id_of(response: &str) -> String {
    response
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("steward-request-id")
                .then(|| value.trim().to_owned())
        })
        .expect("a response without a request id")
}

fn requests_seen(upstream: &CountingUpstream) -> usize {
    upstream.requests.lock().unwrap().len()
}

/// Audit disk full, vault ciphertext tampered, a policy that breaks on reload and a
/// read-only data directory: every case fails closed, and the upstream is not contacted.
#[test]
fn fail_closed_on_full_disk_tampered_vault_broken_policy_and_read_only_data() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("mnt");
    let Some(_mounted) = mount_tmpfs(&mnt, "24m") else {
        return;
    };
    let data = mnt.join("data");
    let upstream = CountingUpstream::start();
    let mut d = Deployment::start(None, Some(&data));
    d.ok(&["secret", "set", "secret-a"], Some(CANARY_A));
    d.ok(&["secret", "set", "secret-t"], Some(CANARY_B));
    let base = format!("http://127.0.0.1:{}", upstream.port);
    d.service(
        "c",
        &base,
        COUNTING_SPEC,
        &["--auth", "bearer", "--secret", "secret-a"],
    );
    d.service(
        "t",
        &base,
        COUNTING_SPEC,
        &["--auth", "bearer", "--secret", "secret-t"],
    );
    d.policy(&format!(
        "{ALLOW_READ_WRITE}permit(principal, action == Action::\"t:echo\", resource);\n"
    ));
    let bearer = format!("Bearer {}", d.agent);
    let call = |svc: &str, d: &Deployment| {
        http(
            "GET",
            &format!("{}/echo/x", d.base(svc)),
            &[("Authorization", &bearer)],
            None,
        )
    };
    assert_eq!(call("c", &d).0, 200);

    // --- Vault ciphertext tampered: 503, upstream untouched. ---------------------------
    let db = data.join("steward.db");
    let where_t = "secret_id = (SELECT id FROM secrets WHERE name = 'secret-t')";
    let hex = sqlite(
        &db,
        &format!("SELECT hex(sealed) FROM secret_versions WHERE {where_t};"),
    );
    assert!(hex.len() > 40, "{hex}");
    let mut bytes: Vec<u8> = hex.into_bytes();
    let at = bytes.len() - 10;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    sqlite(
        &db,
        &format!(
            "UPDATE secret_versions SET sealed = X'{}' WHERE {where_t};",
            String::from_utf8(bytes).unwrap()
        ),
    );
    let before = requests_seen(&upstream);
    let (status, body) = call("t", &d);
    assert_eq!(status, 503, "tampered ciphertext: {body}");
    assert!(!body.contains(CANARY_B));
    assert_eq!(
        requests_seen(&upstream),
        before,
        "the upstream was called without a valid credential"
    );

    // --- Malformed policy: refused, and on reload the last good set stays. ------------
    let pol = d.dir.path().join("bad-policy");
    std::fs::create_dir_all(&pol).unwrap();
    std::fs::write(
        pol.join("bad.cedar"),
        "permit(principal, action, resource) when { context.args. };",
    )
    .unwrap();
    let (code, _, _) = cli(
        d.port,
        &d.admin,
        &["policy", "set", pol.to_str().unwrap()],
        None,
    );
    assert_ne!(code, 0, "a malformed policy set was accepted");
    assert_eq!(call("c", &d).0, 200, "the last good set must stay in force");
    // Removing service `t` makes the stored set fail validation on reload (it names
    // `t:echo`); whether the removal is refused or applied, the good set keeps serving.
    let _ = cli(d.port, &d.admin, &["service", "remove", "t"], None);
    assert_eq!(
        call("c", &d).0,
        200,
        "a failed reload replaced the policy in force"
    );
    let (status, _) = call("nosuch", &d);
    assert!(status >= 400);

    // --- Audit disk full: 503, upstream untouched, admin mutations refused. -----------
    let filler = mnt.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 256 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    // The WAL may still have room from earlier commits; calls succeed (durably) until a
    // commit needs a new block, then every call must fail closed.
    // The WAL may still have room from earlier commits; calls succeed (durably) until a
    // commit needs a new block, then calls fail closed. A call whose decision record still
    // fit but whose outcome did not has reached the upstream: it is answered 503 too, and
    // its decision record must be durable (checked once space is back).
    let started = Instant::now();
    let mut touched = Vec::new();
    let mut untouched = 0;
    let mut failing = 0;
    for i in 0..5000 {
        let before = requests_seen(&upstream);
        let (status, body) = http(
            "GET",
            &format!("{}/echo/{i}", d.base("c")),
            &[("Authorization", &bearer)],
            None,
        );
        let reached = requests_seen(&upstream) > before;
        if status == 503 {
            assert!(body.contains("AUD") || body.contains("audit"), "{body}");
            failing += 1;
            if reached {
                touched.push(request_id_of(&body));
            } else {
                untouched += 1;
            }
            if failing == 10 {
                break;
            }
            continue;
        }
        assert_eq!(
            failing, 0,
            "a call succeeded after the audit log had started failing: {body}"
        );
        assert_eq!(status, 200, "{body}");
        assert!(reached);
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the disk never filled"
        );
    }
    assert_eq!(failing, 10, "a full disk never failed a call");
    assert!(
        untouched >= 5,
        "only {untouched} of 10 failing calls left the upstream untouched"
    );
    let (code, _, _) = cli(
        d.port,
        &d.admin,
        &["identity", "create", "written-while-full"],
        None,
    );
    assert_ne!(
        code, 0,
        "an admin mutation succeeded while its audit record could not be written"
    );

    // Space freed: service resumes without a restart.
    let pid = d.pid();
    std::fs::remove_file(&filler).unwrap();
    let resumed = Instant::now();
    loop {
        let (status, body) = http(
            "GET",
            &format!("{}/echo/back", d.base("c")),
            &[("Authorization", &bearer)],
            None,
        );
        if status == 200 {
            break;
        }
        if resumed.elapsed() > Duration::from_secs(15) {
            let log = std::fs::read_to_string(d.dir.path().join(format!("steward-{}.log", d.port)))
                .unwrap_or_default();
            let errors: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN"))
                .collect();
            panic!(
                "did not resume after space was freed: {body}\n{}",
                errors[errors.len().saturating_sub(8)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(d.pid(), pid);
    let listed = json(d.port, &d.admin, &["identity", "list"]);
    assert!(
        !listed.to_string().contains("written-while-full"),
        "a refused mutation was applied"
    );
    let verify = json(d.port, &d.admin, &["audit", "verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
    for rid in touched {
        let (_, text) = http(
            "GET",
            &format!(
                "http://127.0.0.1:{}/admin/v1/audit?request_id={rid}",
                d.port
            ),
            &[("Authorization", &format!("Bearer {}", d.admin))],
            None,
        );
        assert!(
            upstream_part(&text).contains("\"decision\""),
            "{rid} reached the upstream without a durable decision record: {text}"
        );
    }

    // --- Read-only data directory: refuse to serve. ------------------------------------
    d.kill();
    let ro = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ro.success(), "remount read-only failed");
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waited = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
                || waited.elapsed() < Duration::from_millis(50),
            "served from a read-only data directory"
        );
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "neither served nor exited on a read-only data directory"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "started on a read-only data directory");
    assert!(!err.contains("panicked"), "{err}");
    let _ = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&mnt)
        .status();
}

/// A huge body, slow-loris clients and many concurrent streams: memory stays bounded,
/// inspected bodies over the limit get 413, and another identity keeps being served.
#[test]
fn resource_abuse_keeps_memory_bounded_and_others_served() {
    let upstream = CountingUpstream::start();
    let mut d = Deployment::start(
        Some("version = 1\n[server]\nheader_read_timeout_secs = 2\n"),
        None,
    );
    d.ok(&["secret", "set", "secret-a"], Some(CANARY_A));
    d.service(
        "c",
        &format!("http://127.0.0.1:{}", upstream.port),
        COUNTING_SPEC,
        &["--auth", "bearer", "--secret", "secret-a"],
    );
    d.policy(ALLOW_READ_WRITE);
    let (_, _, victim) = new_agent(d.port, &d.admin, "agent-two");
    let abuser = d.agent.clone();
    let port = d.port;
    let victim_call = move || {
        let started = Instant::now();
        let (status, body) = http(
            "GET",
            &format!("http://127.0.0.1:{port}/gw/c/echo/victim"),
            &[("Authorization", &format!("Bearer {victim}"))],
            None,
        );
        assert_eq!(status, 200, "{body}");
        started.elapsed()
    };
    victim_call();
    let pid = d.pid();
    let rss_start = vm_rss_kib(pid);

    // 200 MiB streamed down and up through /gw.
    const BIG: u64 = 200 * 1024 * 1024;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(stream, "GET /gw/c/big/{BIG} HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {abuser}\r\nConnection: close\r\n\r\n").unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let mut peak = 0;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
        if total % (16 << 20) < n as u64 {
            peak = peak.max(vm_rss_kib(pid));
        }
    }
    assert!(total >= BIG, "download truncated at {total} bytes");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(stream, "PUT /gw/c/sink HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {abuser}\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n").unwrap();
    let chunk = vec![b'u'; 256 * 1024];
    let mut sent = 0u64;
    while sent < BIG {
        stream.write_all(&chunk).unwrap();
        sent += chunk.len() as u64;
        if sent.is_multiple_of(16 << 20) {
            peak = peak.max(vm_rss_kib(pid));
        }
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{}",
        &response[..response.len().min(300)]
    );
    assert!(
        response.contains(&format!("body-bytes: {BIG}")),
        "upload truncated: {}",
        &response[..response.len().min(600)]
    );
    peak = peak.max(vm_rss_kib(pid));
    eprintln!("gateway VmRSS: start {rss_start} KiB, peak during 2 x 200 MiB streams {peak} KiB");
    assert!(
        peak < rss_start + 64 * 1024,
        "RSS grew from {rss_start} to {peak} KiB while streaming"
    );

    // Inspected operations: 413 over the limit, with a length or chunked; upstream untouched.
    let before = requests_seen(&upstream);
    let body = format!(
        "{{\"amount\": 1, \"pad\": \"{}\"}}",
        "p".repeat(2 * 1024 * 1024)
    );
    let (status, _) = http(
        "POST",
        &format!("{}/inspect", d.base("c")),
        &[
            ("Authorization", &format!("Bearer {abuser}")),
            ("Content-Type", "application/json"),
        ],
        Some(&body),
    );
    assert_eq!(status, 413);
    let mut chunked = format!(
        "POST /gw/c/inspect HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {abuser}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    chunked.push_str(&format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()));
    let (response, closed) = raw_exchange(port, chunked.as_bytes(), Duration::from_secs(10));
    assert_eq!(
        status_of(&response),
        413,
        "{}",
        &response[..response.len().min(300)]
    );
    assert!(closed, "connection kept open after an oversized body");
    assert_eq!(
        requests_seen(&upstream),
        before,
        "an oversized inspected body reached the upstream"
    );

    // Slow loris: connections that never finish their headers are closed by the server
    // while others are served.
    let mut slow: Vec<std::net::TcpStream> = (0..200)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    for s in &mut slow {
        let _ = s.write_all(b"GET /gw/c/echo/slow HTTP/1.1\r\nHost: s\r\n");
    }
    let loris_started = Instant::now();
    while loris_started.elapsed() < Duration::from_secs(4) {
        for s in &mut slow {
            let _ = s.write_all(b"X-Slow: 1\r\n");
        }
        assert!(
            victim_call() < Duration::from_secs(2),
            "a slow-loris flood starved another identity"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut open = 0;
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 512];
        match s.read(&mut b) {
            Ok(0) => {}
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                open += 1
            }
            Err(_) => {}
        }
    }
    assert_eq!(
        open, 0,
        "{open} slow-loris connections still open after the header timeout"
    );
    drop(slow);

    // Many concurrent streams from one identity; the other keeps being served quickly.
    let streams: Vec<_> = (0..24)
        .map(|_| {
            let abuser = abuser.clone();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                write!(s, "GET /gw/c/big/{} HTTP/1.1\r\nHost: s\r\nAuthorization: Bearer {abuser}\r\nConnection: close\r\n\r\n", 16 << 20).unwrap();
                let mut total = 0usize;
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n;
                    std::thread::sleep(Duration::from_millis(1));
                }
                total
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..10 {
        assert!(
            victim_call() < Duration::from_secs(3),
            "concurrent streams starved another identity"
        );
        peak = peak.max(vm_rss_kib(pid));
    }
    for s in streams {
        assert!(
            s.join().unwrap() >= 16 << 20,
            "a concurrent stream was truncated"
        );
    }
    peak = peak.max(vm_rss_kib(pid));
    eprintln!("gateway VmRSS peak with 24 concurrent 16 MiB streams: {peak} KiB");
    assert!(
        peak < rss_start + 128 * 1024,
        "RSS grew from {rss_start} to {peak} KiB under concurrent streams"
    );
    d.kill();
}

/// `kill -9` under concurrent load, repeatedly: every 2xx a client saw has its outcome
/// record, sequence numbers have no gaps, and the chain verifies. `scripts/soak` runs
/// this with more iterations.
#[test]
fn kill_dash_nine_under_load_keeps_the_audit_invariants() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let iterations: usize = std::env::var("STEWARD_SOAK_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let upstream = CountingUpstream::start();
    let mut d = Deployment::start(None, None);
    d.ok(&["secret", "set", "secret-a"], Some(CANARY_A));
    d.service(
        "c",
        &format!("http://127.0.0.1:{}", upstream.port),
        COUNTING_SPEC,
        &["--auth", "bearer", "--secret", "secret-a"],
    );
    d.policy(ALLOW_READ_WRITE);
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    for round in 0..iterations {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
                let url = format!("{}/echo/r{round}w{w}", d.base("c"));
                let bearer = format!("Bearer {}", d.agent);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        if let Some((status, text)) =
                            try_http("GET", &url, &[("Authorization", &bearer)], None)
                            && (200..300).contains(&status)
                        {
                            let rid = request_id_of(&text);
                            acknowledged.lock().unwrap().push(rid);
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700 + 250 * (round as u64 % 4)));
        d.kill();
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        d.restart(None);
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 10 * iterations,
        "too little load: {} calls",
        acknowledged.len()
    );

    let verify = json(d.port, &d.admin, &["audit", "verify"]);
    assert_eq!(
        verify["ok"], true,
        "chain does not verify after kill -9: {verify}"
    );
    let (status, text) = http(
        "GET",
        &format!("http://127.0.0.1:{}/admin/v1/audit?limit=10000", d.port),
        &[("Authorization", &format!("Bearer {}", d.admin))],
        None,
    );
    assert_eq!(status, 200);
    let log: serde_json::Value = serde_json::from_str(upstream_part(&text)).unwrap();
    let items = log["items"].as_array().unwrap();
    let mut seqs: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
    let mut outcomes = std::collections::HashSet::new();
    for item in items {
        seqs.entry(item["instance_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(item["seq"].as_i64().unwrap());
        if item["event"]["kind"] == "outcome"
            && let Some(rid) = item["event"]["request_id"].as_str()
        {
            outcomes.insert(rid.to_owned());
        }
    }
    assert!(
        items.len() < 10000,
        "raise the limit: the whole log must be read"
    );
    for (instance, mut s) in seqs {
        s.sort_unstable();
        let first = s[0];
        for (i, seq) in s.iter().enumerate() {
            assert_eq!(
                *seq,
                first + i as i64,
                "gap in the sequence of {instance} at {seq}"
            );
        }
    }
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|rid| !outcomes.contains(*rid))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged calls have no outcome record, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    eprintln!(
        "kill -9 x{iterations}: {} acknowledged calls, all with outcome records",
        acknowledged.len()
    );
}

/// Schemathesis against the admin API's own OpenAPI document: no 5xx, no response that
/// violates the document. Bounded examples keep it fast.
#[test]
fn admin_api_survives_schemathesis() {
    let available = Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but schemathesis is not installed"
        );
        eprintln!("skipping: schemathesis not installed (pip install schemathesis)");
        return;
    }
    let d = Deployment::start(None, None);
    d.ok(&["secret", "set", "secret-a"], Some(CANARY_A));
    let report = d.dir.path().join("schemathesis");
    let out = Command::new("schemathesis")
        .current_dir(d.dir.path())
        .args(["run", &format!("http://127.0.0.1:{}/admin/v1/openapi.json", d.port)])
        .args(["-H", &format!("Authorization: Bearer {}", d.admin)])
        .args(["--max-examples", "20", "--seed", "1", "--workers", "1", "--phases", "examples,coverage,fuzzing"])
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
        .args(["--request-timeout", "10", "--no-shrink", "--report", "junit", "--report-dir"])
        .arg(&report)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{stderr}"
    );
    // The admin token survived (schemathesis may not revoke it through a random id).
    let (status, _) = http(
        "GET",
        &format!("http://127.0.0.1:{}/admin/v1/status", d.port),
        &[("Authorization", &format!("Bearer {}", d.admin))],
        None,
    );
    assert_eq!(status, 200);
}
