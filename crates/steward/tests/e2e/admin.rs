//! The foundation through its public interfaces: the role table for every admin route,
//! owner scoping, declarative apply, status and probes, JSON logs with request ids,
//! draining on SIGTERM, and serving from PostgreSQL with two instances side by side.

use std::path::Path;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

use serde_json::{Value, json as j};

use crate::common::*;

const ROLES: [&str; 4] = ["admin", "approver", "auditor", "owner"];
const MASTER_KEY: &str = "c3Rld2FyZC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM=";

fn body_json(resp: &str) -> Value {
    serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap_or(Value::Null)
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

/// One admin API request with a bearer token and a JSON body.
fn admin_call(
    port: u16,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let text = body.map(Value::to_string);
    let mut headers = vec![("Authorization", auth.as_str())];
    if text.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    http(
        method,
        &format!("http://127.0.0.1:{port}{path}"),
        &headers,
        text.as_deref(),
    )
}

/// Creates an admin token with `role` for `principal` through the admin-tokens route.
fn role_token(port: u16, admin: &str, role: &str, principal: &str) -> String {
    let (status, resp) = admin_call(
        port,
        admin,
        "POST",
        "/admin/v1/admin-tokens",
        Some(&j!({"name": format!("{role}-{principal}"), "role": role, "principal": principal})),
    );
    assert_eq!(status, 201, "{resp}");
    body_json(&resp)["token"].as_str().unwrap().to_owned()
}

#[test]
fn every_admin_route_refuses_roles_outside_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("bootstrap token");
    let tokens: Vec<(&str, String)> = ROLES
        .iter()
        .map(|r| (*r, role_token(port, &admin, r, &format!("{r}-person"))))
        .collect();

    let (status, resp) = http(
        "GET",
        &format!("http://127.0.0.1:{port}/admin/v1/openapi.json"),
        &[],
        None,
    );
    assert_eq!(status, 200);
    let doc = body_json(&resp);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut checked_denials = 0;
    let mut routes = 0;
    let mut denied_per_role = std::collections::BTreeMap::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            routes += 1;
            let allowed: Vec<&str> = op["x-steward-roles"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path}: no x-steward-roles"))
                .iter()
                .map(|r| r.as_str().unwrap())
                .collect();
            assert!(
                allowed.contains(&"admin"),
                "{method} {path}: admins may call everything"
            );
            // Every path parameter gets a value that names nothing.
            let concrete: String = path
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') && seg.ends_with('}') {
                        "zz-missing"
                    } else {
                        seg
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let method_up = method.to_ascii_uppercase();
            let body = matches!(method_up.as_str(), "POST" | "PUT" | "PATCH").then(|| j!({}));
            // Unauthenticated: 401 everywhere.
            let (status, resp) = http(
                &method_up,
                &format!("http://127.0.0.1:{port}{concrete}"),
                &[],
                None,
            );
            assert_eq!(status, 401, "{method_up} {path} without a token: {resp}");
            for (role, tok) in &tokens {
                let (status, resp) = admin_call(port, tok, &method_up, &concrete, body.as_ref());
                if allowed.contains(role) {
                    // The role gate lets it through; the handler may still refuse for its own
                    // reasons (a missing resource, a disabled feature), never for the role.
                    assert!(
                        status != 401 && status != 500,
                        "{role} may call {method_up} {path}, got {status}: {resp}"
                    );
                    let detail = body_json(&resp)["detail"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                    assert!(
                        !(status == 403 && detail.contains("may not call")),
                        "{role} may call {method_up} {path}: {resp}"
                    );
                } else {
                    assert_eq!(
                        status, 403,
                        "{role} must not call {method_up} {path}: {resp}"
                    );
                    assert_eq!(
                        header(&resp, "content-type"),
                        Some("application/problem+json"),
                        "{resp}"
                    );
                    assert!(
                        body_json(&resp)["detail"]
                            .as_str()
                            .unwrap_or_default()
                            .contains(role),
                        "{resp}"
                    );
                    checked_denials += 1;
                    *denied_per_role.entry(*role).or_insert(0) += 1;
                }
            }
        }
    }
    assert!(routes >= 33, "only {routes} routes in the OpenAPI document");
    assert!(
        checked_denials >= 40,
        "only {checked_denials} denials checked"
    );
    for role in ["approver", "auditor", "owner"] {
        assert!(
            denied_per_role.get(role).copied().unwrap_or(0) >= 5,
            "{role}: {denied_per_role:?}"
        );
    }
    // Spot checks that the table says what the issue requires.
    let roles_of = |m: &str, p: &str| doc["paths"][p][m]["x-steward-roles"].clone();
    assert_eq!(
        roles_of("get", "/admin/v1/audit"),
        j!(["admin", "approver", "auditor"])
    );
    assert_eq!(
        roles_of("get", "/admin/v1/approvals"),
        j!(["admin", "approver"])
    );
    // Deciding is gated in the handler (so refusals are audited): still 403 for other roles.
    for (role, tok) in tokens
        .iter()
        .filter(|(r, _)| ["auditor", "owner"].contains(r))
    {
        let (status, resp) = admin_call(
            port,
            tok,
            "POST",
            "/admin/v1/approvals/zz-missing/approve",
            Some(&j!({"reason": "x"})),
        );
        assert_eq!(status, 403, "{role} must not approve: {resp}");
    }
    assert_eq!(roles_of("put", "/admin/v1/policies"), j!(["admin"]));
    assert_eq!(
        roles_of("post", "/admin/v1/identities"),
        j!(["admin", "owner"])
    );
    // An expired or unknown admin token is a 401, not a 403.
    let (status, _) = admin_call(port, "stwa_unknown", "GET", "/admin/v1/status", None);
    assert_eq!(status, 401);
}

#[test]
fn owners_manage_only_their_own_identities() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("bootstrap token");
    let alice = role_token(port, &admin, "owner", "alice");
    let bobs = json(
        port,
        &admin,
        &["identity", "create", "bob-bot", "--owner", "bob"],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let alices = json(
        port,
        &admin,
        &["identity", "create", "alice-bot", "--owner", "alice"],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let list = json(port, &alice, &["identity", "list"]);
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![alices.as_str()],
        "owners list only their identities"
    );
    assert_eq!(
        json(port, &alice, &["identity", "show", "alice-bot"])["id"],
        alices.as_str()
    );
    // Someone else's identity does not exist for an owner: by id or by name, for every action.
    for target in [bobs.as_str(), "bob-bot", "BOB-BOT"] {
        for args in [
            vec!["identity", "show", target],
            vec!["identity", "update", target, "--description", "mine now"],
            vec!["identity", "suspend", target, "--reason", "x"],
            vec!["identity", "revoke", target, "--reason", "x"],
            vec!["identity", "key-create", target],
            vec!["identity", "key-list", target],
        ] {
            let (code, _, err) = cli(port, &alice, &args, None);
            assert_ne!(code, 0, "{args:?}");
            assert!(
                err.contains("404") || err.contains("does not exist"),
                "{args:?}: {err}"
            );
        }
    }
    let (status, _) = admin_call(
        port,
        &alice,
        "GET",
        &format!("/admin/v1/identities/{bobs}"),
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(
        json(port, &admin, &["identity", "show", &bobs])["status"],
        "active",
        "nothing happened to bob's identity"
    );
    // An owner's new identity is theirs, whatever owner it names; transfers are refused.
    let created = json(
        port,
        &alice,
        &["identity", "create", "alice-two", "--owner", "bob"],
    );
    assert_eq!(created["owner"], "alice");
    let (code, _, err) = cli(
        port,
        &alice,
        &["identity", "update", "alice-two", "--owner", "bob"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("transfer"), "{err}");
    // The owner manages its own: keys, suspension.
    let key = ok(port, &alice, &["identity", "key-create", "alice-bot"], None);
    assert!(key.trim().starts_with("stw_"));
    assert_eq!(
        json(
            port,
            &alice,
            &["identity", "suspend", "alice-bot", "--reason", "mine"]
        )["status"],
        "suspended"
    );
}

#[test]
fn apply_is_idempotent_for_yaml_and_toml_and_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("bootstrap token");
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/apply/quickstart.yaml");
    let file = example.to_str().unwrap();

    // Dry run on an empty deployment: the diff, and nothing stored.
    let dry = ok(port, &admin, &["apply", "-f", file, "--dry-run"], None);
    assert!(dry.contains("+ service httpbin (dry run)"), "{dry}");
    assert!(dry.contains("+ identity report-bot (dry run)"), "{dry}");
    assert!(
        dry.contains("+ policy read-only") && dry.contains("+ policy small-refunds-in-dev"),
        "{dry}"
    );
    assert!(dry.contains("labels"), "field-level diff expected: {dry}");
    assert_eq!(json(port, &admin, &["identity", "list"])["items"], j!([]));
    assert_eq!(json(port, &admin, &["service", "list"])["items"], j!([]));
    assert!(
        json(port, &admin, &["policy", "history"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // First apply creates; the second reports and makes no changes.
    let first = json(port, &admin, &["apply", "-f", file]);
    let kinds: Vec<&str> = first["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["service", "identity", "policies"], "{first}");
    let audit_before = json(port, &admin, &["audit", "search", "--limit", "10000"])["items"]
        .as_array()
        .unwrap()
        .len();
    let second = ok(port, &admin, &["apply", "-f", file], None);
    assert_eq!(second.trim(), "no changes");
    assert_eq!(
        json(port, &admin, &["apply", "-f", file])["changes"],
        j!([])
    );
    assert_eq!(
        json(port, &admin, &["policy", "history"])["items"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "no new policy version"
    );
    let audit_after = json(port, &admin, &["audit", "search", "--limit", "10000"])["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        audit_before, audit_after,
        "an idempotent apply writes no mutation records"
    );
    let identity = json(port, &admin, &["identity", "show", "Report-Bot"]);
    assert_eq!(identity["labels"]["team"], "payments");
    assert_eq!(
        json(port, &admin, &["service", "show", "httpbin"])["base_url"],
        "http://127.0.0.1:8000"
    );

    // The same document in TOML (names spelled differently) is also a no-op.
    let yaml: Value = serde_yaml_doc(&std::fs::read_to_string(&example).unwrap());
    let mut doc = yaml.clone();
    doc["identities"][0]["name"] = j!("REPORT-BOT");
    let toml_path = dir.path().join("quickstart.toml");
    std::fs::write(&toml_path, to_toml(&doc)).unwrap();
    let toml_file = toml_path.to_str().unwrap();
    assert_eq!(
        ok(port, &admin, &["apply", "-f", toml_file], None).trim(),
        "no changes"
    );

    // A changed TOML: the dry run shows the field diff and changes nothing; applying does.
    doc["identities"][0]["labels"]["env"] = j!("prod");
    doc["policies"][0]["text"] =
        j!("permit(principal, action == Action::\"httpbin:get\", resource);\n");
    std::fs::write(&toml_path, to_toml(&doc)).unwrap();
    let dry = ok(port, &admin, &["apply", "-f", toml_file, "--dry-run"], None);
    assert!(dry.contains("~ identity REPORT-BOT (dry run)"), "{dry}");
    assert!(dry.contains("labels: {\"env\":\"dev\",\"team\":\"payments\"} -> {\"env\":\"prod\",\"team\":\"payments\"}"), "{dry}");
    assert!(dry.contains("~ policy read-only"), "{dry}");
    assert_eq!(
        json(port, &admin, &["identity", "show", "report-bot"])["labels"]["env"],
        "dev",
        "dry run changed nothing"
    );
    let applied = ok(port, &admin, &["apply", "-f", toml_file], None);
    assert!(
        applied.contains("~ identity REPORT-BOT") && !applied.contains("dry run"),
        "{applied}"
    );
    assert_eq!(
        json(port, &admin, &["identity", "show", "report-bot"])["labels"]["env"],
        "prod"
    );
    assert_eq!(
        ok(port, &admin, &["apply", "-f", toml_file], None).trim(),
        "no changes"
    );
    // An invalid policy is refused as a whole, dry run or not.
    doc["policies"][0]["text"] =
        j!("permit(principal, action == Action::\"httpbin:nope\", resource);");
    std::fs::write(&toml_path, to_toml(&doc)).unwrap();
    for extra in [&["--dry-run"][..], &[][..]] {
        let mut args = vec!["apply", "-f", toml_file];
        args.extend_from_slice(extra);
        let (code, _, err) = cli(port, &admin, &args, None);
        assert_ne!(code, 0, "{err}");
    }
    assert_eq!(
        json(port, &admin, &["policy", "history"])["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

fn serde_yaml_doc(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

fn to_toml(doc: &Value) -> String {
    toml::to_string(doc).unwrap()
}

#[test]
fn status_probes_metrics_and_json_logs_with_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_steward, token) = start_steward(
        dir.path(),
        port,
        &[("STEWARD_LOG_JSON", "true"), ("RUST_LOG", "info")],
    );
    let admin = token.expect("bootstrap token");
    let status = json(port, &admin, &["status"]);
    assert_eq!(status["status"], "ok");
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["store"], "sqlite");
    assert!(status["uptime_secs"].is_u64(), "{status}");
    let table = ok(port, &admin, &["status"], None);
    assert!(
        table.contains("uptime_secs") && table.contains("sqlite"),
        "{table}"
    );
    let base = format!("http://127.0.0.1:{port}");
    let (code, resp) = http("GET", &format!("{base}/healthz"), &[], None);
    assert_eq!(code, 200);
    assert_eq!(body_json(&resp)["status"], "ok");
    let (code, resp) = http("GET", &format!("{base}/readyz"), &[], None);
    assert_eq!(code, 200, "{resp}");
    assert_eq!(body_json(&resp), j!({"store": true, "audit": true}));

    // Generate some traffic: admin calls, a failed agent call, a token request.
    let (_, resp) = admin_call(port, &admin, "GET", "/admin/v1/identities", None);
    let admin_rid = header(&resp, "steward-request-id")
        .expect("admin responses carry a request id")
        .to_owned();
    assert!(admin_rid.starts_with("req_"));
    let (code, resp) = http(
        "GET",
        &format!("{base}/gw/x/y"),
        &[("Authorization", "Bearer stwt_bad")],
        None,
    );
    assert_eq!(code, 401);
    let gw_rid = header(&resp, "steward-request-id").unwrap().to_owned();
    let (code, resp) = http(
        "POST",
        &format!("{base}/oauth/token"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("grant_type=client_credentials&client_id=nobody&client_secret=stw_x"),
    );
    assert_eq!(code, 401);
    let oauth_rid = header(&resp, "steward-request-id").unwrap().to_owned();
    // A client cannot choose its request id.
    let (_, resp) = http(
        "GET",
        &format!("{base}/healthz"),
        &[("Steward-Request-Id", "req_forged")],
        None,
    );
    assert_ne!(header(&resp, "steward-request-id"), Some("req_forged"));

    let (code, metrics) = http("GET", &format!("{base}/metrics"), &[], None);
    assert_eq!(code, 200);
    assert!(metrics.contains("steward_auth_failures_total"), "{metrics}");
    // The journal's indexer reports how far it is behind.
    assert!(
        metrics.contains("steward_audit_index_lag_records"),
        "{metrics}"
    );

    // Every log line is JSON; every request line has the id that the client saw.
    for rid in [&admin_rid, &gw_rid, &oauth_rid] {
        wait_for_log(dir.path(), port, rid);
    }
    let log = std::fs::read_to_string(dir.path().join(format!("steward-{port}.log"))).unwrap();
    let mut request_lines = Vec::new();
    for line in log.lines().filter(|l| l.starts_with('{')) {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["fields"]["message"] == "request" {
            let rid = v["fields"]["request.id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(
                rid.starts_with("req_"),
                "request line without a request id: {line}"
            );
            request_lines.push((
                rid,
                v["fields"]["http.path"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
    assert!(
        log.lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| l.starts_with('{') || l.starts_with("steward listening")),
        "non-JSON lines:\n{log}"
    );
    for (rid, path) in [
        (&admin_rid, "/admin/v1/identities"),
        (&gw_rid, "/gw/x/y"),
        (&oauth_rid, "/oauth/token"),
    ] {
        assert!(
            request_lines.iter().any(|(r, p)| r == rid && p == path),
            "no request line for {path} with {rid}: {request_lines:?}"
        );
    }
    // Lines logged inside a request carry its id through the span.
    let inner = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["fields"]["message"] != "request" && v["span"]["request.id"] == oauth_rid.as_str()
        });
    assert!(
        inner.is_some(),
        "the failed client authentication line should carry {oauth_rid}:\n{log}"
    );
}

fn delay_openapi() -> &'static str {
    "openapi: 3.0.3\ninfo: { title: slow, version: \"1\" }\npaths:\n  /delay/{n}:\n    get:\n      operationId: delay\n      parameters:\n        - { name: n, in: path, required: true, schema: { type: integer } }\n  /get:\n    get:\n      operationId: get\n"
}

fn add_httpbin(port: u16, admin: &str, dir: &Path, up_port: u16) {
    let spec = dir.join("slow.openapi.yaml");
    std::fs::write(&spec, delay_openapi()).unwrap();
    ok(
        port,
        admin,
        &[
            "service",
            "add",
            "slow",
            "--base-url",
            &format!("http://127.0.0.1:{up_port}"),
            "--allow-http",
            "--allow-private",
            "--openapi",
            spec.to_str().unwrap(),
        ],
        None,
    );
    let pol = dir.join(format!("policies-{port}"));
    std::fs::create_dir_all(&pol).unwrap();
    std::fs::write(
        pol.join("all.cedar"),
        "permit(principal, action in Action::\"read\", resource);\n",
    )
    .unwrap();
    ok(port, admin, &["policy", "set", pol.to_str().unwrap()], None);
}

#[test]
fn sigterm_drains_an_in_flight_request_and_exits_cleanly() {
    if !httpbin_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_httpbin, up_port, _log) = start_httpbin(dir.path());
    let port = free_port();
    let (mut steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("bootstrap token");
    let (_, _, agent) = new_agent(port, &admin, "slow-agent");
    add_httpbin(port, &admin, dir.path(), up_port);
    let url = format!("http://127.0.0.1:{port}/gw/slow/delay/2");
    let bearer = format!("Bearer {agent}");
    let in_flight = {
        let (url, bearer) = (url.clone(), bearer.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let (status, body) = http("GET", &url, &[("Authorization", &bearer)], None);
            (status, body, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(600));
    let pid = steward.0.id().to_string();
    let signalled = Instant::now();
    sigterm(&pid);
    let (status, body, took) = in_flight.join().unwrap();
    assert_eq!(status, 200, "the in-flight call must complete: {body}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    // New connections are refused while draining or after exit.
    let exit = loop {
        if let Some(s) = steward.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "steward did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0), "clean exit after draining");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening after exit"
    );
    // The drained call was audited to completion.
    let (again, _) = start_steward(dir.path(), port, &[]);
    let log = audit_search(port, &admin, "slow:delay", 10);
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["event"]["kind"] == "outcome"),
        "{log}"
    );
    drop(again);
}

/// A fresh PostgreSQL database, or None (skip) when PostgreSQL is unreachable outside CI.
fn fresh_postgres_db() -> Option<String> {
    let base = std::env::var("STEWARD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let server = base
        .rsplit_once('/')
        .map(|(s, _)| s.to_owned())
        .unwrap_or(base.clone());
    let name = format!("steward_e2e_{}_{}", std::process::id(), free_port());
    // PostgreSQL refuses concurrent CREATE DATABASE from the same template, and tests run
    // in parallel: a few attempts before calling the server unreachable.
    let created = (0..10).any(|attempt| {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(100 * attempt));
        }
        Command::new("psql")
            .args([
                &format!("{server}/postgres"),
                "-v",
                "ON_ERROR_STOP=1",
                "-qc",
                &format!("CREATE DATABASE {name}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !created {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but PostgreSQL at {server} is unreachable"
        );
        eprintln!("skipping: cannot create a database at {server}");
        return None;
    }
    Some(format!("{server}/{name}"))
}

#[test]
fn postgres_backend_serves_and_two_instances_share_revocations() {
    if !httpbin_available() {
        return;
    }
    let Some(db) = fresh_postgres_db() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_httpbin, up_port, _log) = start_httpbin(dir.path());
    let env = [
        ("STEWARD_DATABASE", db.as_str()),
        ("STEWARD_MASTER_KEY", MASTER_KEY),
    ];
    let (port_a, port_b) = (free_port(), free_port());
    let (a, token) = start_steward_at(
        &dir.path().join("a"),
        &dir.path().join("a-data"),
        port_a,
        &env,
    );
    let admin = token.expect("the first instance bootstraps");
    assert_eq!(json(port_a, &admin, &["status"])["store"], "postgres");
    let (id, _key, agent) = new_agent(port_a, &admin, "pg-agent");
    add_httpbin(port_a, &admin, dir.path(), up_port);
    let bearer = format!("Bearer {agent}");
    let call = |port: u16| {
        http(
            "GET",
            &format!("http://127.0.0.1:{port}/gw/slow/get"),
            &[("Authorization", &bearer)],
            None,
        )
        .0
    };
    assert_eq!(call(port_a), 200, "governed call through PostgreSQL");

    // A second instance on the same database, own data dir, same master key.
    std::fs::create_dir_all(dir.path().join("b-data")).unwrap();
    let (b, token) = start_steward_at(
        &dir.path().join("b"),
        &dir.path().join("b-data"),
        port_b,
        &env,
    );
    assert!(token.is_none(), "bootstrap happens once per deployment");
    let status_b = json(port_b, &admin, &["status"]);
    assert_eq!(status_b["store"], "postgres");
    assert_ne!(
        status_b["instance_id"],
        json(port_a, &admin, &["status"])["instance_id"]
    );
    assert_eq!(
        call(port_b),
        200,
        "B accepts A's token and serves the same services and policies"
    );

    // Suspension through A is enforced by B within a few seconds.
    ok(
        port_a,
        &admin,
        &["identity", "suspend", &id, "--reason", "pg test"],
        None,
    );
    assert_eq!(call(port_a), 401);
    let t = Instant::now();
    while call(port_b) != 401 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "B still accepts a suspended identity's token"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("suspension reached instance B after {:?}", t.elapsed());
    // ... and so is the reinstatement.
    ok(
        port_a,
        &admin,
        &["identity", "reinstate", &id, "--reason", "pg test over"],
        None,
    );
    let t = Instant::now();
    while call(port_b) != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "B still refuses a reinstated identity"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A key rotation on B is followed by A.
    let rotation = json(port_b, &admin, &["token", "rotate-signing-key"]);
    let key = ok(port_b, &admin, &["identity", "key-create", &id], None)
        .trim()
        .to_owned();
    let fresh = ok(
        port_b,
        &admin,
        &["token", "get", "--client-id", "pg-agent"],
        Some(&key),
    )
    .trim()
    .to_owned();
    let inspected: Value = serde_json::from_str(&ok(
        port_b,
        &admin,
        &["-o", "json", "token", "inspect"],
        Some(&fresh),
    ))
    .unwrap();
    assert_eq!(inspected["key_id"], rotation["kid"]);
    let t = Instant::now();
    while http(
        "GET",
        &format!("http://127.0.0.1:{port_a}/gw/slow/get"),
        &[("Authorization", &format!("Bearer {fresh}"))],
        None,
    )
    .0 != 200
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "A does not know B's new signing key"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(call(port_a), 200, "old tokens verify during the overlap");
    // Both chains verify.
    let verify = json(port_a, &admin, &["audit", "verify"]);
    assert_eq!(verify["ok"], true, "{verify}");
    assert!(verify["chains"].as_array().unwrap().len() >= 2, "{verify}");
    drop(b);
    drop(a);
    // Best effort: leave no test databases behind.
    if let Some((server, name)) = db.rsplit_once('/') {
        let _ = Command::new("psql")
            .args([
                &format!("{server}/postgres"),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {name}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A log consumer that stops reading (a full pipe, a stalled collector) must not stop the
/// gateway: request threads never write to stderr themselves. Steward's stderr here is a
/// pipe nobody reads until every request is answered; the pipe holds 64 KiB, the requests
/// log several times that.
#[test]
fn a_stalled_log_reader_does_not_stall_requests() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut steward = Proc(child);
    wait_ready(port);
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let requests = 1500;
    for i in 0..requests {
        let (code, resp) = http("GET", &format!("{base}/healthz"), &[], None);
        assert_eq!(
            code,
            200,
            "request {i} after {:?}: {resp}",
            started.elapsed()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{requests} requests took {:?}",
        started.elapsed()
    );
    // Now read what was logged: every request's line is there, none dropped (the buffer
    // holds megabytes), and far more than the pipe could hold while nobody read it.
    let reader = std::thread::spawn(move || {
        let mut log = Vec::new();
        let _ = stderr.read_to_end(&mut log);
        String::from_utf8_lossy(&log).into_owned()
    });
    // A graceful stop writes out every buffered line before exiting (a SIGKILL would lose
    // the last few milliseconds' worth, and make this test depend on timing).
    let pid = steward.0.id().to_string();
    sigterm(&pid);
    let _ = steward.0.wait();
    let log = reader.join().unwrap();
    let request_lines = log
        .lines()
        .filter(|l| l.contains("request") && l.contains("/healthz"))
        .count();
    assert!(log.len() > 64 * 1024 * 2, "only {} bytes logged", log.len());
    assert!(
        request_lines >= requests,
        "{request_lines} of {requests} request lines"
    );
    assert!(!log.contains("log lines dropped"), "lines were dropped");
}
