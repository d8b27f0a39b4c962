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
