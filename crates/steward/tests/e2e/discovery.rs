//! Credential discovery end to end: `steward scan --report-to` uploads fingerprints (never
//! secrets) and `steward discovered list` tells managed credentials from unmanaged ones.

use secrecy::ExposeSecret as _;
use serde_json::Value;

use crate::common::*;

#[test]
fn scan_report_to_feeds_the_inventory_with_managed_and_unmanaged_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("first start prints a bootstrap token");

    // Two real Steward API keys: one is managed in the vault, the other leaked unmanaged.
    let managed = steward_token::api_key::generate_random()
        .unwrap()
        .expose_secret()
        .to_owned();
    let unmanaged = steward_token::api_key::generate_random()
        .unwrap()
        .expose_secret()
        .to_owned();
    ok(
        port,
        &admin,
        &["secret", "set", "agent-key"],
        Some(&managed),
    );
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("deploy")).unwrap();
    std::fs::write(
        repo.join("config.env"),
        format!("APP=billing\nSTEWARD_KEY={managed}\n"),
    )
    .unwrap();
    std::fs::write(
        repo.join("deploy/values.yaml"),
        format!("replicas: 2\nagent:\n  token: \"{unmanaged}\"\n"),
    )
    .unwrap();

    let server = format!("http://127.0.0.1:{port}");
    let scan = |expect_new: &str| {
        let (code, out, err) = cli(
            port,
            &admin,
            &[
                "scan",
                repo.to_str().unwrap(),
                "--no-progress",
                "--report-to",
                &server,
                "--report-source",
                "ci-runner",
            ],
            None,
        );
        assert_eq!(code, 1, "findings exit 1: {err}{out}");
        assert!(
            err.contains("reported 2 findings") && err.contains(expect_new),
            "{err}"
        );
        assert!(
            !out.contains(&managed) && !out.contains(&unmanaged),
            "the table shows redacted previews only"
        );
    };
    scan("2 new");

    let list = json(port, &admin, &["discovered", "list"]);
    let items = list["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{list}");
    let find = |file: &str| {
        items
            .iter()
            .find(|i| i["location"].as_str().unwrap().contains(file))
            .unwrap()
            .clone()
    };
    let env_item = find("config.env");
    let yaml_item = find("values.yaml");
    assert_eq!(env_item["managed"], true);
    assert_eq!(env_item["managed_secret"], "agent-key");
    assert_eq!(
        env_item["fingerprint"].as_str().unwrap(),
        steward_scan::fingerprint(managed.as_bytes())
    );
    assert_eq!(env_item["provider"], "steward");
    assert!(
        env_item["location"]
            .as_str()
            .unwrap()
            .starts_with("ci-runner:"),
        "{env_item}"
    );
    assert!(
        env_item["location"]
            .as_str()
            .unwrap()
            .ends_with("config.env:2"),
        "{env_item}"
    );
    assert_eq!(yaml_item["managed"], false);
    assert_eq!(
        yaml_item["fingerprint"].as_str().unwrap(),
        steward_scan::fingerprint(unmanaged.as_bytes())
    );
    assert_eq!(env_item["first_seen_ms"], env_item["last_seen_ms"]);
    assert_eq!(
        (list["managed"].as_u64(), list["unmanaged"].as_u64()),
        (Some(1), Some(1))
    );
    // The raw secrets never left the machine: not in the API, not in the server's files.
    let text = list.to_string();
    assert!(!text.contains(&managed) && !text.contains(&unmanaged));

    // A second scan updates last-seen and keeps first-seen.
    std::thread::sleep(std::time::Duration::from_millis(20));
    scan("0 new, 2 seen before");
    let again = json(
        port,
        &admin,
        &["discovered", "list", "--status", "unmanaged"],
    );
    let only: Vec<Value> = again["items"].as_array().unwrap().clone();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["first_seen_ms"], yaml_item["first_seen_ms"]);
    assert!(only[0]["last_seen_ms"].as_i64() > yaml_item["last_seen_ms"].as_i64());
    let table = ok(port, &admin, &["discovered", "list"], None);
    assert!(
        table.contains("UNMANAGED") && table.contains("managed (agent-key)"),
        "{table}"
    );

    // Uploads are audited; a raw value posing as a preview is refused.
    let (status, body) = http(
        "POST",
        &format!("{server}/admin/v1/discovered-credentials"),
        &[
            ("Authorization", &format!("Bearer {admin}")),
            ("Content-Type", "application/json"),
        ],
        Some(&format!(
            r#"{{"findings":[{{"path":"x","rule_id":"r","fingerprint":"{}","redacted":"{unmanaged}"}}]}}"#,
            "0".repeat(32)
        )),
    );
    assert_eq!(status, 400, "{body}");
    let log = json(port, &admin, &["audit", "search", "--limit", "1000"]);
    assert!(log.to_string().contains("discovered.report"));
    drop(_steward);
    for needle in [&managed, &unmanaged] {
        let hits = all_files_contain(&dir.path().join("data"), needle);
        assert!(
            hits.is_empty(),
            "a raw key reached the server's files: {hits:?}"
        );
    }
}
