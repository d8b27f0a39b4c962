//! The governed HTTP path against a real httpbin upstream.

use std::process::{Command, Stdio};

use crate::common::*;

#[test]
fn governed_http_call_end_to_end() {
    if !httpbin_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let up_port = free_port();
    let _httpbin = Proc(
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
    let port = free_port();
    let (steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("first start prints a bootstrap token");
    wait_port(up_port);

    // An identity owned by alice, so the bootstrap admin may approve its requests.
    let identity = json(
        port,
        &admin,
        &[
            "identity",
            "create",
            "Billing-Bot",
            "--owner",
            "alice",
            "--label",
            "env=prod",
        ],
    );
    let id = identity["id"].as_str().unwrap().to_owned();
    // Normalised names collide.
    let (code, _, err) = cli(port, &admin, &["identity", "create", "billing-bot "], None);
    assert_ne!(code, 0);
    assert!(err.contains("already exists"), "{err}");

    let key = ok(port, &admin, &["identity", "key-create", &id], None)
        .trim()
        .to_owned();
    assert!(key.starts_with("stw_"));
    let agent = ok(
        port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&key),
    )
    .trim()
    .to_owned();
    assert!(agent.starts_with("stwt_"));

    add_httpbin_service(port, &admin, up_port);
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
    ok(
        port,
        &admin,
        &["policy", "set", pol.to_str().unwrap()],
        None,
    );

    let base = format!("http://127.0.0.1:{port}/gw/httpbin");
    let bearer = format!("Bearer {agent}");
    let cookie = format!("session={agent}");

    // Allowed read: the real credential arrives, the agent token never does, wherever it was put.
    let (status, body) = http(
        "GET",
        &format!("{base}/headers?access_token={agent}"),
        &[
            ("Authorization", &bearer),
            ("Cookie", &cookie),
            ("X-Forwarded-For", "6.6.6.6"),
            ("Steward-Reason", "e2e"),
        ],
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("Bearer {CANARY}")),
        "credential not injected: {body}"
    );
    let upstream_part = body.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        !upstream_part.contains(&agent),
        "agent token reached upstream: {upstream_part}"
    );
    assert!(
        !upstream_part.contains("6.6.6.6"),
        "forged forwarding header reached upstream"
    );
    assert!(
        !upstream_part.contains("Steward-Reason"),
        "steward header reached upstream"
    );
    assert!(
        body.to_ascii_lowercase()
            .contains("steward-request-id: req_")
    );

    // No token, forged token: 401 with RFC 6750 challenge.
    let (status, body) = http("GET", &format!("{base}/headers"), &[], None);
    assert_eq!(status, 401);
    assert!(body.contains("invalid_token"));
    let (status, _) = http(
        "GET",
        &format!("{base}/headers"),
        &[("Authorization", "Bearer stwt_AAAA")],
        None,
    );
    assert_eq!(status, 401);

    // Denied: delete is not permitted.
    let (status, body) = http(
        "DELETE",
        &format!("{base}/anything/x"),
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("application/problem+json"));

    // Ambiguous paths are refused, never fixed up.
    for probe in [
        "/anything/%2e%2e",
        "/anything/a%2Fb",
        "/anything/%252F",
        "//headers",
        "/anything/x;y",
    ] {
        let (status, _) = http(
            "GET",
            &format!("{base}{probe}"),
            &[("Authorization", &bearer)],
            None,
        );
        assert_eq!(status, 400, "probe {probe}");
    }
    // Unknown operation: denied by default.
    let (status, _) = http(
        "GET",
        &format!("{base}/ip"),
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 403);

    // Approval: above 100 needs a human; the approval works exactly once.
    let refund = r#"{"amount":500,"currency":"EUR","card":"4111-canary-card"}"#;
    let json_ct = ("Content-Type", "application/json");
    let (status, body) = http(
        "POST",
        &format!("{base}/post"),
        &[("Authorization", &bearer), json_ct],
        Some(refund),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("approval_required"), "{body}");
    let approval: serde_json::Value =
        serde_json::from_str(body.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let approval_id = approval["approval_id"].as_str().unwrap().to_owned();
    // A different request cannot use this approval.
    ok(
        port,
        &admin,
        &[
            "approvals",
            "approve",
            &approval_id,
            "--reason",
            "customer verified",
        ],
        None,
    );
    let altered = r#"{"amount":900,"currency":"EUR","card":"4111-canary-card"}"#;
    let (status, _) = http(
        "POST",
        &format!("{base}/post"),
        &[
            ("Authorization", &bearer),
            json_ct,
            ("Steward-Approval", &approval_id),
        ],
        Some(altered),
    );
    assert_eq!(status, 403, "an altered request must not use the approval");
    let (status, body) = http(
        "POST",
        &format!("{base}/post"),
        &[
            ("Authorization", &bearer),
            json_ct,
            ("Steward-Approval", &approval_id),
        ],
        Some(refund),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = http(
        "POST",
        &format!("{base}/post"),
        &[
            ("Authorization", &bearer),
            json_ct,
            ("Steward-Approval", &approval_id),
        ],
        Some(refund),
    );
    assert_eq!(status, 403, "an approval is single-use");
    // Small refund: allowed without approval.
    let (status, _) = http(
        "POST",
        &format!("{base}/post"),
        &[("Authorization", &bearer), json_ct],
        Some(r#"{"amount":50,"currency":"EUR"}"#),
    );
    assert_eq!(status, 200);

    // A large streamed response passes through.
    let (status, body) = http(
        "GET",
        &format!("{base}/stream-bytes/100000"),
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 200);
    assert!(
        body.len() > 100_000,
        "streamed body truncated: {} bytes",
        body.len()
    );

    // Suspension takes effect on the next request.
    ok(
        port,
        &admin,
        &["identity", "suspend", &id, "--reason", "test"],
        None,
    );
    let (status, _) = http(
        "GET",
        &format!("{base}/headers"),
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 401);
    ok(
        port,
        &admin,
        &["identity", "reinstate", &id, "--reason", "test over"],
        None,
    );
    let (status, _) = http(
        "GET",
        &format!("{base}/headers"),
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 200);

    // The audit chain verifies and links request, approval and execution.
    let verify = json(port, &admin, &["audit", "verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
    let log = audit_search(port, &admin, "httpbin:refund", 100);
    let with_approval = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["event"]["approval_id"] == approval_id.as_str())
        .count();
    assert!(
        with_approval >= 3,
        "request, decision and execution should carry the approval id: {log}"
    );
    // Sensitive arguments are HMACed in the audit log.
    assert!(!log.to_string().contains("4111-canary-card"));

    // Role checks: an auditor can read but not mutate.
    let created = json(port, &admin, &["identity", "list"]);
    assert_eq!(created["items"].as_array().unwrap().len(), 1);

    drop(steward);
    // Secrets never appear in plaintext at rest or in logs (debug level was on).
    for needle in [CANARY, key.as_str(), agent.as_str(), "4111-canary-card"] {
        let hits = all_files_contain(dir.path(), needle);
        assert!(
            hits.is_empty(),
            "`{}…` found in {hits:?}",
            &needle[..12.min(needle.len())]
        );
    }

    // Restart reuses the data and prints no new bootstrap token.
    let (again, token) = start_steward(dir.path(), port, &[]);
    assert!(token.is_none(), "bootstrap token printed twice");
    let status = json(port, &admin, &["status"]);
    assert_eq!(status["status"], "ok");
    drop(again);
}

/// A real OAuth 2.0 authorization server and resource server in one (Python stdlib): the
/// token endpoint checks the client credentials and issues short-lived tokens; the
/// resource refuses anything but a live token it issued; `/revoke` revokes every token.
const OAUTH_UPSTREAM: &str = r#"
import http.server, json, secrets, sys, threading, time, urllib.parse
CLIENT_ID, CLIENT_SECRET, LIFETIME = sys.argv[2], sys.argv[3], int(sys.argv[4])
lock = threading.Lock()
tokens = {}   # token -> (serial, expires_at)
stats = {"fetches": 0, "refused_clients": 0, "data_calls": 0, "data_refused": 0, "scope": None}
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        if self.path == "/revoke":
            with lock:
                tokens.clear()
            return self.reply(200, {})
        if self.path != "/token":
            return self.reply(404, {})
        ok = (form.get("grant_type") == ["client_credentials"]
              and form.get("client_id") == [CLIENT_ID]
              and form.get("client_secret") == [CLIENT_SECRET])
        with lock:
            if not ok:
                stats["refused_clients"] += 1
                return self.reply(401, {"error": "invalid_client"})
            time.sleep(0.2)  # a slow token endpoint makes concurrent fetches overlap
            stats["fetches"] += 1
            stats["scope"] = form.get("scope", [None])[0]
            token = "tok-" + secrets.token_hex(16)
            tokens[token] = (stats["fetches"], time.time() + LIFETIME)
        self.reply(200, {"access_token": token, "token_type": "Bearer", "expires_in": LIFETIME})
    def do_GET(self):
        if self.path == "/stats":
            with lock:
                return self.reply(200, dict(stats))
        auth = self.headers.get("Authorization", "")
        with lock:
            stats["data_calls"] += 1
            entry = tokens.get(auth.removeprefix("Bearer "))
            if entry is None or entry[1] < time.time():
                stats["data_refused"] += 1
                return self.reply(401, {"error": "invalid_token"})
        self.reply(200, {"token_serial": entry[0]})
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// OAuth 2.0 client credentials upstream auth, against a real token endpoint: one fetch
/// for a burst of concurrent calls, refresh before expiry, a fresh token after the
/// upstream refuses a revoked one, fail closed on bad client credentials, and neither the
/// token nor the client secret ever reaches the agent or the audit log.
#[test]
fn oauth2_upstream_tokens_are_fetched_once_refreshed_and_never_leaked() {
    const CLIENT_SECRET: &str = "cs-3f9a1c77e2b84d05";
    const LIFETIME_S: u64 = 10; // Steward refreshes at 80% of it: after 8 s
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("oauth.py"), OAUTH_UPSTREAM).unwrap();
    let up = free_port();
    let _server = Proc(
        Command::new("python3")
            .arg(dir.path().join("oauth.py"))
            .args([
                &up.to_string(),
                "steward-client",
                CLIENT_SECRET,
                &LIFETIME_S.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    wait_port(up);
    let stats = || -> serde_json::Value {
        let (status, text) = http("GET", &format!("http://127.0.0.1:{up}/stats"), &[], None);
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
    };

    let d = Deployment::start(None, None);
    d.ok(&["secret", "set", "oauth-client"], Some(CLIENT_SECRET));
    d.ok(&["secret", "set", "oauth-wrong"], Some("cs-not-the-secret"));
    let spec = "openapi: 3.0.3\ninfo: {title: data, version: '1'}\npaths:\n  /data:\n    get: {operationId: data.get}\n";
    let token_url = format!("http://127.0.0.1:{up}/token");
    let base = format!("http://127.0.0.1:{up}");
    let oauth = |secret: &'static str| {
        [
            "--auth",
            "oauth2",
            "--token-url",
            token_url.as_str(),
            "--client-id",
            "steward-client",
            "--scope",
            "data:read",
            "--secret",
            secret,
        ]
    };
    d.service("api", &base, spec, &oauth("oauth-client"));
    d.service("badclient", &base, spec, &oauth("oauth-wrong"));
    d.policy("permit(principal, action, resource);");

    // The CLI refuses an incomplete or plain-http grant with a clear error.
    let (code, _, err) = cli(
        d.port,
        &d.admin,
        &[
            "service",
            "add",
            "x",
            "--base-url",
            &base,
            "--auth",
            "oauth2",
            "--secret",
            "s",
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("--token-url"), "{err}");
    let (code, out, err) = cli(
        d.port,
        &d.admin,
        &[
            "service",
            "add",
            "x",
            "--base-url",
            "https://api.example.com",
            "--auth",
            "oauth2",
            "--secret",
            "s",
            "--client-id",
            "c",
            "--token-url",
            &token_url,
        ],
        None,
    );
    assert_ne!(code, 0);
    assert!(format!("{err}{out}").contains("plain http"), "{err}{out}");

    let bearer = format!("Bearer {}", d.agent);
    let call = |service: &str| {
        http(
            "GET",
            &format!("{}/data", d.base(service)),
            &[("Authorization", bearer.as_str())],
            None,
        )
    };

    // A burst of concurrent first calls: every one succeeds, on one token fetch.
    let results: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8).map(|_| s.spawn(|| call("api"))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, text) in &results {
        assert_eq!(*status, 200, "{text}");
        assert!(text.contains(r#""token_serial": 1"#), "{text}");
    }
    let fetched_at = std::time::Instant::now();
    let st = stats();
    assert_eq!(st["fetches"], 1, "{st}");
    assert_eq!(st["scope"], "data:read", "{st}");
    assert_eq!(st["data_refused"], 0, "{st}");

    // The upstream revokes its tokens: the refused call is passed on as 401, and the next
    // call gets a fresh token instead of failing until the old one expires.
    let (status, _) = http(
        "POST",
        &format!("http://127.0.0.1:{up}/revoke"),
        &[],
        Some(""),
    );
    assert_eq!(status, 200);
    let (status, text) = call("api");
    assert_eq!(status, 401, "{text}");
    let (status, text) = call("api");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""token_serial": 2"#), "{text}");
    let refetched_at = std::time::Instant::now();
    assert_eq!(stats()["fetches"], 2);

    // Calls within 80% of the lifetime reuse the token; after it, Steward refreshes before
    // the token expires, so the upstream never sees an expired one.
    let (status, _) = call("api");
    assert_eq!(status, 200);
    assert_eq!(stats()["fetches"], 2);
    let refresh_after = std::time::Duration::from_millis(LIFETIME_S * 800 + 500);
    std::thread::sleep(refresh_after.saturating_sub(refetched_at.elapsed()));
    let (status, text) = call("api");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""token_serial": 3"#), "{text}");
    let st = stats();
    assert_eq!(st["fetches"], 3, "{st}");
    assert_eq!(
        st["data_refused"], 1,
        "only the revoked token was ever refused: {st}"
    );
    assert!(fetched_at.elapsed() >= std::time::Duration::from_secs(8));

    // Wrong client credentials: fail closed with 502, and the resource is never called.
    let before = stats()["data_calls"].as_u64().unwrap();
    let (status, text) = call("badclient");
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("token endpoint"), "{text}");
    let st = stats();
    assert_eq!(st["refused_clients"], 1, "{st}");
    assert_eq!(st["data_calls"].as_u64().unwrap(), before, "{st}");

    // Neither the client secret nor any issued token reaches the agent or the audit log.
    for (_, text) in &results {
        assert!(
            !text.contains("tok-") && !text.contains(CLIENT_SECRET),
            "{text}"
        );
    }
    let audit = audit_search(d.port, &d.admin, "api:data.get", 100).to_string();
    assert!(audit.contains("oauth2_client_credentials"), "{audit}");
    assert!(
        !audit.contains("tok-"),
        "an upstream token reached the audit log"
    );
    assert!(
        !audit.contains(CLIENT_SECRET),
        "the client secret reached the audit log"
    );
    assert!(
        all_files_contain(d.dir.path(), CLIENT_SECRET).is_empty(),
        "the client secret is stored in clear"
    );
}
