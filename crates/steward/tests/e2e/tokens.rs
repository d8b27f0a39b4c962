//! Identities and agent tokens through the public interfaces: a real OAuth2 client library,
//! token exchange with an actor chain, offline attenuation, revocation, signing-key rotation,
//! every invalid-token case, and the identity registry with name normalisation.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const EXCHANGE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange";
const ACCESS: &str = "urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
/// A fixed test master key (32 bytes, base64), so a second instance can open the same data.
pub const TEST_MASTER_KEY: &str = "c3Rld2FyZC10ZXN0LW1hc3Rlci1rZXktMzItYnl0ZXM=";

/// The JSON body of a raw HTTP response.
fn body_json(resp: &str) -> Value {
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(Value::Null)
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split("\r\n\r\n").next().unwrap_or_default();
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// POSTs a form to /oauth/token.
fn token_endpoint(port: u16, form: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    http(
        "POST",
        &format!("http://127.0.0.1:{port}/oauth/token"),
        &headers,
        Some(form),
    )
}

/// Presents `token` to the gateway for a service that does not exist: 404 means the token
/// was accepted (authentication runs first), 401 that it was refused.
fn probe(port: u16, token: &str) -> (u16, String) {
    http(
        "GET",
        &format!("http://127.0.0.1:{port}/gw/no-such-service/x"),
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    )
}

/// Asserts an RFC 6750 invalid_token rejection (401, never 500) and returns the detail.
fn assert_invalid_token(port: u16, token: &str, case: &str) -> String {
    let (status, resp) = probe(port, token);
    assert_eq!(status, 401, "{case}: expected 401, got {resp}");
    let challenge = header(&resp, "www-authenticate")
        .unwrap_or_else(|| panic!("{case}: no WWW-Authenticate: {resp}"));
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
        "{case}: {challenge}"
    );
    body_json(&resp)["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn assert_accepted(port: u16, token: &str, case: &str) {
    let (status, resp) = probe(port, token);
    assert_eq!(status, 404, "{case}: the token should be accepted: {resp}");
}

fn python_has(modules: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but python modules `{modules}` are missing"
        );
        eprintln!("skipping: python modules `{modules}` not installed");
    }
    ok
}

fn inspect(port: u16, admin: &str, token: &str) -> Value {
    serde_json::from_str(&ok(
        port,
        admin,
        &["-o", "json", "token", "inspect"],
        Some(token),
    ))
    .unwrap()
}

/// Minimal base64url (no padding) for tampering with a token's bytes.
mod b64 {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    pub fn decode(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in s.bytes() {
            acc = (acc << 6) | A.iter().position(|&x| x == c).unwrap() as u32;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }
    pub fn encode(b: &[u8]) -> String {
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &x)| acc | u32::from(x) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

/// Flips one bit of block 0's signature: a well-formed token whose signature is wrong.
fn forge(token: &str) -> String {
    let mut bytes = b64::decode(token.strip_prefix("stwt_").unwrap());
    assert_eq!(
        b64::encode(&bytes),
        token.strip_prefix("stwt_").unwrap(),
        "codec round trip"
    );
    let payload_len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let sig_at = 2 + 2 + payload_len + 32 + 10;
    bytes[sig_at] ^= 0x01;
    format!("stwt_{}", b64::encode(&bytes))
}

#[test]
fn oauth_client_library_gets_tokens_with_basic_and_post_auth() {
    if !python_has("authlib, requests") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("bootstrap token");
    let id = json(
        port,
        &admin,
        &["identity", "create", "Report-Bot", "--owner", "alice"],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = ok(port, &admin, &["identity", "key-create", &id], None)
        .trim()
        .to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/oauth_client.py");
    let url = format!("http://127.0.0.1:{port}/oauth/token");
    // The client id may be the identity id or any spelling of its name.
    for (method, client_id) in [
        ("client_secret_basic", id.as_str()),
        ("client_secret_post", "report-bot"),
        ("client_secret_basic", "REPORT-BOT"),
    ] {
        let out = Command::new("python3")
            .arg(&script)
            .args([url.as_str(), client_id, key.as_str(), method])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tok: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            tok["token_type"]
                .as_str()
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("bearer"),
            "{tok}"
        );
        let access = tok["access_token"].as_str().unwrap();
        assert!(access.starts_with("stwt_"));
        assert!(tok["expires_in"].as_i64().unwrap() > 0);
        assert_eq!(inspect(port, &admin, access)["identity_id"], id.as_str());
        assert_accepted(port, access, method);
    }
    // A wrong secret through the library is an OAuth error, not a token.
    let out = Command::new("python3")
        .arg(&script)
        .args([url.as_str(), id.as_str(), "stw_wrong", "client_secret_post"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid_client"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // last_seen_at on the identity and last_used_at on the key are recorded.
    let shown = json(port, &admin, &["identity", "show", &id]);
    assert!(
        shown["last_seen_at"].as_i64().is_some_and(|t| t > 0),
        "{shown}"
    );
    assert!(
        shown["keys"][0]["last_used_at"]
            .as_i64()
            .is_some_and(|t| t > 0),
        "{shown}"
    );
}

#[test]
fn delegation_attenuation_revocation_and_invalid_tokens() {
    if !httpbin_available() {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (_httpbin, up_port, _log) = start_httpbin(dir.path());
    let port = free_port();
    let (_steward, token) =
        start_steward(dir.path(), port, &[("STEWARD_MASTER_KEY", TEST_MASTER_KEY)]);
    let admin = token.expect("bootstrap token");

    let parent = json(
        port,
        &admin,
        &["identity", "create", "Billing-Bot", "--owner", "alice"],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sub = json(
        port,
        &admin,
        &[
            "identity",
            "create",
            "sub-agent",
            "--owner",
            "alice",
            "--kind",
            "workload",
        ],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let parent_key = ok(port, &admin, &["identity", "key-create", &parent], None)
        .trim()
        .to_owned();
    let sub_key = ok(port, &admin, &["identity", "key-create", &sub], None)
        .trim()
        .to_owned();
    let parent_tok = ok(
        port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&parent_key),
    )
    .trim()
    .to_owned();
    let sub_tok = ok(
        port,
        &admin,
        &["token", "get", "--client-id", "sub-agent"],
        Some(&sub_key),
    )
    .trim()
    .to_owned();

    // A token minted with the smallest TTL, checked for expiry at the end.
    let (status, resp) = token_endpoint(
        port,
        &format!(
            "grant_type=client_credentials&client_id=sub-agent&client_secret={sub_key}&expires_in=1"
        ),
        &[],
    );
    assert_eq!(status, 200, "{resp}");
    let short = body_json(&resp);
    assert_eq!(
        short["expires_in"], 1,
        "the lower clamp is one second: {short}"
    );
    let short_tok = short["access_token"].as_str().unwrap().to_owned();
    let short_minted = Instant::now();
    assert_accepted(port, &short_tok, "a 1 s token right after minting");

    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/services/httpbin.yaml");
    ok(
        port,
        &admin,
        &[
            "service",
            "add",
            "httpbin",
            "--base-url",
            &format!("http://127.0.0.1:{up_port}"),
            "--allow-http",
            "--allow-private",
            "--openapi",
            spec.to_str().unwrap(),
        ],
        None,
    );
    let pol = dir.path().join("policies");
    std::fs::create_dir_all(&pol).unwrap();
    std::fs::write(
        pol.join("delegation.cedar"),
        "permit(principal, action in Action::\"read\", resource);\n\
         forbid(principal, action == Action::\"httpbin:headers\", resource) when { context.delegated };\n",
    )
    .unwrap();
    ok(
        port,
        &admin,
        &["policy", "set", pol.to_str().unwrap()],
        None,
    );
    let gw = format!("http://127.0.0.1:{port}/gw/httpbin");
    let call = |tok: &str, path: &str| {
        http(
            "GET",
            &format!("{gw}{path}"),
            &[("Authorization", &format!("Bearer {tok}"))],
            None,
        )
    };

    // --- token exchange: the sub-agent acts for the parent.
    let (status, resp) = token_endpoint(
        port,
        &format!(
            "grant_type={EXCHANGE}&subject_token={parent_tok}&subject_token_type={ACCESS}&actor_token={sub_tok}&actor_token_type={ACCESS}"
        ),
        &[],
    );
    assert_eq!(status, 200, "{resp}");
    let exchanged = body_json(&resp);
    assert_eq!(
        exchanged["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let delegated = exchanged["access_token"].as_str().unwrap().to_owned();
    let claims = inspect(port, &admin, &delegated);
    assert_eq!(claims["identity_id"], parent.as_str());
    assert_eq!(claims["actor_chain"], serde_json::json!([sub]));
    assert_eq!(claims["verified"], false);
    assert!(
        !ok(
            port,
            &admin,
            &["-o", "json", "token", "inspect"],
            Some(&delegated)
        )
        .contains("proof")
    );

    // Delegated call: allowed, and the audit record carries the actor chain.
    let (status, resp) = call(&delegated, "/get");
    assert_eq!(status, 200, "{resp}");
    let rid = header(&resp, "steward-request-id").unwrap().to_owned();
    let log = json(
        port,
        &admin,
        &[
            "audit",
            "search",
            "--identity",
            &parent,
            "--operation",
            "httpbin:get",
            "--limit",
            "100",
        ],
    );
    let records: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["event"]["request_id"] == rid.as_str())
        .collect();
    assert!(
        records.len() >= 2,
        "decision and outcome expected for {rid}: {log}"
    );
    for r in &records {
        assert_eq!(
            r["event"]["actor"]["delegation_chain"],
            serde_json::json!([sub]),
            "{r}"
        );
    }
    // `context.delegated` is true for policy: the forbid applies to the delegated token only.
    let (status, resp) = call(&delegated, "/headers");
    assert_eq!(
        status, 403,
        "delegated tokens are forbidden for headers: {resp}"
    );
    let (status, resp) = call(&parent_tok, "/headers");
    assert_eq!(
        status, 200,
        "the parent's own token is not delegated: {resp}"
    );

    // --- offline attenuation: only anything.read, shorter TTL.
    let narrowed = ok(
        port,
        &admin,
        &[
            "token",
            "attenuate",
            "--operation",
            "httpbin:anything.read",
            "--ttl-secs",
            "300",
        ],
        Some(&parent_tok),
    )
    .trim()
    .to_owned();
    assert!(narrowed.starts_with("stwt_") && narrowed != parent_tok);
    let claims = inspect(port, &admin, &narrowed);
    assert_eq!(
        claims["restrictions"][0]["operations"],
        serde_json::json!(["httpbin:anything.read"]),
        "{claims}"
    );
    let (status, resp) = call(&narrowed, "/anything/kept");
    assert_eq!(status, 200, "the kept operation works: {resp}");
    let (status, resp) = call(&narrowed, "/get");
    assert_eq!(status, 403, "other operations are refused: {resp}");
    assert!(
        body_json(&resp)["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("restricted"),
        "{resp}"
    );
    let (status, _) = call(&parent_tok, "/get");
    assert_eq!(status, 200, "the original token is unaffected");
    // Effective rights are the intersection: a narrowing that keeps a policy-denied
    // operation does not make it allowed.
    let with_delete = ok(
        port,
        &admin,
        &[
            "token",
            "attenuate",
            "--service",
            "httpbin",
            "--operation",
            "httpbin:anything.delete",
            "--operation",
            "httpbin:anything.read",
        ],
        Some(&parent_tok),
    )
    .trim()
    .to_owned();
    let (status, resp) = http(
        "DELETE",
        &format!("{gw}/anything/x"),
        &[("Authorization", &format!("Bearer {with_delete}"))],
        None,
    );
    assert_eq!(status, 403, "{resp}");
    assert!(
        body_json(&resp)["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("policy"),
        "denied by policy, not the token: {resp}"
    );
    // Narrowing can be chained offline, never widened.
    let narrower = ok(
        port,
        &admin,
        &["token", "attenuate", "--operation", "httpbin:get"],
        Some(&narrowed),
    )
    .trim()
    .to_owned();
    let (status, _) = call(&narrower, "/get");
    assert_eq!(
        status, 403,
        "the intersection of anything.read and get is empty"
    );
    let (status, _) = call(&narrower, "/anything/x");
    assert_eq!(status, 403);

    // --- revoking one token by id: cached copies and attenuations fail on the next request.
    let victim = ok(
        port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&parent_key),
    )
    .trim()
    .to_owned();
    let victim_narrowed = ok(
        port,
        &admin,
        &["token", "attenuate", "--service", "httpbin"],
        Some(&victim),
    )
    .trim()
    .to_owned();
    assert_accepted(port, &victim, "before revocation (now cached)");
    assert_accepted(port, &victim_narrowed, "attenuated copy before revocation");
    let victim_id = inspect(port, &admin, &victim)["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(port, &admin, &["token", "revoke", &victim_id], None);
    let why = assert_invalid_token(port, &victim, "revoked token");
    assert!(why.contains("revoked"), "{why}");
    assert_invalid_token(port, &victim_narrowed, "attenuated copy of a revoked token");
    assert_accepted(port, &parent_tok, "other tokens of the identity still work");

    // --- suspension through another spelling of the name rejects every token at once,
    // including cached ones and tokens where the identity is only the actor.
    assert_accepted(port, &sub_tok, "sub-agent before suspension");
    ok(
        port,
        &admin,
        &[
            "identity",
            "suspend",
            "ＳＵＢ-ＡＧＥＮＴ",
            "--reason",
            "test",
        ],
        None,
    );
    assert_invalid_token(port, &sub_tok, "suspended identity (cached token)");
    let (status, _) = call(&delegated, "/get");
    assert_eq!(
        status, 401,
        "a token acting through a suspended actor fails"
    );
    assert_accepted(port, &parent_tok, "the parent is unaffected");
    let (code, _, err) = cli(
        port,
        &admin,
        &["token", "get", "--client-id", "sub-agent"],
        Some(&sub_key),
    );
    assert_ne!(code, 0, "a suspended identity gets no token");
    assert!(err.contains("invalid_grant"), "{err}");
    ok(
        port,
        &admin,
        &["identity", "reinstate", "Sub-Agent ", "--reason", "cleared"],
        None,
    );
    assert_accepted(port, &sub_tok, "reinstated");

    // --- errors: malformed, forged, wrong audience, expired, revoked: 401, never 500.
    for (case, bad, reason) in [
        ("malformed: not base64", "stwt_!!!!".to_owned(), "malformed"),
        (
            "malformed: truncated",
            parent_tok[..parent_tok.len() / 2].to_owned(),
            "malformed",
        ),
        (
            "malformed: other prefix",
            "eyJhbGciOiJub25lIn0.e30.".to_owned(),
            "malformed",
        ),
        (
            "malformed: too large",
            format!("stwt_{}", "A".repeat(9000)),
            "limit",
        ),
        ("forged: signature flipped", forge(&parent_tok), "signature"),
    ] {
        let why = assert_invalid_token(port, &bad, case);
        assert!(why.contains(reason), "{case}: {why}");
    }
    // A token from another deployment sharing the same keys (same database and master key)
    // but bound to a different audience.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    std::fs::write(
        other_dir.join("steward.toml"),
        "version = 1\n[tokens]\naudience = \"other-deployment\"\n",
    )
    .unwrap();
    let db = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("data").join("steward.db").display()
    );
    let other_port = free_port();
    // An existing (empty) data dir: the helper then does not wait for a bootstrap token.
    std::fs::create_dir_all(other_dir.join("data")).unwrap();
    let (other, _) = start_steward_at(
        &other_dir,
        &other_dir.join("data"),
        other_port,
        &[
            ("STEWARD_DATABASE", db.as_str()),
            ("STEWARD_MASTER_KEY", TEST_MASTER_KEY),
        ],
    );
    let other_tok = ok(
        other_port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&parent_key),
    )
    .trim()
    .to_owned();
    assert_eq!(
        inspect(port, &admin, &other_tok)["audience"],
        "other-deployment"
    );
    assert_eq!(
        inspect(port, &admin, &other_tok)["key_id"],
        inspect(port, &admin, &parent_tok)["key_id"],
        "same signing key"
    );
    let why = assert_invalid_token(port, &other_tok, "wrong audience");
    assert!(why.contains("audience"), "{why}");
    drop(other);

    // Revoking the identity rejects all its tokens and keys.
    ok(
        port,
        &admin,
        &[
            "identity",
            "revoke",
            "BILLING-BOT",
            "--reason",
            "decommissioned",
        ],
        None,
    );
    for tok in [&parent_tok, &narrowed, &delegated] {
        assert_invalid_token(port, tok, "revoked identity");
    }
    let (code, _, _) = cli(
        port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&parent_key),
    );
    assert_ne!(code, 0, "a revoked identity's keys are revoked");

    // Expired: the 1 s token, once past its expiry plus the 30 s clock-skew tolerance.
    let wait = Duration::from_secs(32).saturating_sub(short_minted.elapsed());
    std::thread::sleep(wait);
    let why = assert_invalid_token(port, &short_tok, "expired");
    assert!(why.contains("expired"), "{why}");
    assert_accepted(
        port,
        &sub_tok,
        "the same identity's unexpired token still works",
    );
    eprintln!("delegation test took {:?}", started.elapsed());
}

#[test]
fn failed_client_authentication_is_rate_limited_per_normalised_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("bootstrap token");
    let id = json(
        port,
        &admin,
        &["identity", "create", "Rate-Bot", "--owner", "alice"],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = ok(port, &admin, &["identity", "key-create", &id], None)
        .trim()
        .to_owned();
    let other = json(
        port,
        &admin,
        &["identity", "create", "calm-bot", "--owner", "alice"],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_key = ok(port, &admin, &["identity", "key-create", &other], None)
        .trim()
        .to_owned();
    // Wrong secrets under several spellings of one name all count against it.
    let spellings = [
        "Rate-Bot",
        "rate-bot%20",
        "%EF%BC%B2%EF%BC%A1%EF%BC%B4%EF%BC%A5-bot",
    ];
    let mut statuses = Vec::new();
    for i in 0..12 {
        let client = spellings[i % spellings.len()];
        let (status, resp) = token_endpoint(
            port,
            &format!("grant_type=client_credentials&client_id={client}&client_secret=stw_nope{i}"),
            &[],
        );
        assert!(status == 401 || status == 429, "{resp}");
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    // Even the right secret is refused while the client is blocked, with no other client affected.
    let (status, resp) = token_endpoint(
        port,
        &format!("grant_type=client_credentials&client_id=rate-bot&client_secret={key}"),
        &[],
    );
    assert_eq!(status, 429, "{resp}");
    assert_eq!(body_json(&resp)["error"], "slow_down");
    let (status, resp) = token_endpoint(
        port,
        &format!("grant_type=client_credentials&client_id=calm-bot&client_secret={other_key}"),
        &[],
    );
    assert_eq!(status, 200, "{resp}");
    // Bad requests to the endpoint are OAuth errors, never 500.
    for form in [
        "",
        "grant_type=password",
        "grant_type=client_credentials&client_id=a&client_id=b",
        "grant_type=%FF",
    ] {
        let (status, resp) = token_endpoint(port, form, &[]);
        assert!((400..500).contains(&status), "{form}: {resp}");
    }
    let (status, resp) = token_endpoint(
        port,
        &format!("grant_type={EXCHANGE}&subject_token=stwt_garbage&subject_token_type={ACCESS}"),
        &[],
    );
    assert_eq!(status, 400, "{resp}");
    assert_eq!(body_json(&resp)["error"], "invalid_grant");
}

#[test]
fn signing_key_rotates_with_an_overlap_window() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("bootstrap token");
    let id = json(
        port,
        &admin,
        &["identity", "create", "rotor", "--owner", "alice"],
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = ok(port, &admin, &["identity", "key-create", &id], None)
        .trim()
        .to_owned();
    let old_tok = ok(
        port,
        &admin,
        &["token", "get", "--client-id", "rotor"],
        Some(&key),
    )
    .trim()
    .to_owned();
    let old_kid = inspect(port, &admin, &old_tok)["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_accepted(port, &old_tok, "before rotation (now cached)");

    let rotation = json(
        port,
        &admin,
        &["token", "rotate-signing-key", "--overlap-secs", "3"],
    );
    let rotated_at = Instant::now();
    let new_kid = rotation["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(rotation["retired"], serde_json::json!([old_kid]));

    // During the overlap: old tokens still work; new tokens carry the new kid.
    assert_accepted(port, &old_tok, "old token during the overlap");
    let new_tok = ok(
        port,
        &admin,
        &["token", "get", "--client-id", "rotor"],
        Some(&key),
    )
    .trim()
    .to_owned();
    assert_eq!(inspect(port, &admin, &new_tok)["key_id"], new_kid.as_str());
    assert_accepted(port, &new_tok, "new token");
    let keys = json(port, &admin, &["token", "signing-keys"]);
    let items = keys["items"].as_array().unwrap();
    let current: Vec<&Value> = items.iter().filter(|k| k["current"] == true).collect();
    assert_eq!(current.len(), 1, "{keys}");
    assert_eq!(current[0]["kid"], new_kid.as_str());
    let old = items.iter().find(|k| k["kid"] == old_kid.as_str()).unwrap();
    assert!(
        old["retired_at"].is_i64() && old["verify_until"].is_i64(),
        "{old}"
    );
    // The rotation is audited.
    let log = json(port, &admin, &["audit", "search", "--limit", "1000"]);
    assert!(
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["event"]["operation"] == "signing_key.rotate"),
        "rotation not audited"
    );

    // After the overlap: the retired key stops verifying, even for the cached token.
    std::thread::sleep(Duration::from_millis(3500).saturating_sub(rotated_at.elapsed()));
    let why = assert_invalid_token(port, &old_tok, "retired key after the overlap");
    assert!(why.contains("retired"), "{why}");
    assert_accepted(port, &new_tok, "new token after the overlap");

    // A restart keeps the new key current and the old one retired.
    drop(steward);
    let (_again, _) = start_steward(dir.path(), port, &[]);
    assert_accepted(port, &new_tok, "new token after restart");
    assert_invalid_token(port, &old_tok, "old token after restart");
    let newest = ok(
        port,
        &admin,
        &["token", "get", "--client-id", "rotor"],
        Some(&key),
    )
    .trim()
    .to_owned();
    assert_eq!(inspect(port, &admin, &newest)["key_id"], new_kid.as_str());
}

#[test]
fn identity_registry_with_normalised_names_and_key_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_steward, token) = start_steward(dir.path(), port, &[]);
    let admin = token.expect("bootstrap token");
    let created = json(
        port,
        &admin,
        &[
            "identity",
            "create",
            "Billing-Bot",
            "--kind",
            "bot",
            "--owner",
            "team-payments",
            "--description",
            "pays",
            "--label",
            "env=prod",
        ],
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "active");
    assert!(created["created_at"].as_i64().unwrap() > 0);
    assert!(created["last_seen_at"].is_null());
    // Every spelling collides on create and finds the identity on lookup.
    for spelling in [
        "billing-bot ",
        "BILLING-BOT",
        "ｂｉｌｌｉｎｇ-ｂｏｔ",
        "Ｂｉｌｌｉｎｇ－Ｂｏｔ",
    ] {
        let (code, _, err) = cli(port, &admin, &["identity", "create", spelling], None);
        assert_ne!(code, 0, "`{spelling}` must collide");
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(
            json(port, &admin, &["identity", "show", spelling])["id"],
            id.as_str(),
            "lookup by `{spelling}`"
        );
    }
    // Invalid kinds are refused.
    let (code, _, err) = cli(
        port,
        &admin,
        &["identity", "create", "x", "--kind", "human"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("kind"), "{err}");
    for kind in [
        "ai_agent",
        "service_account",
        "bot",
        "ci_pipeline",
        "workload",
    ] {
        json(
            port,
            &admin,
            &[
                "identity",
                "create",
                &format!("kind-{kind}"),
                "--kind",
                kind,
            ],
        );
    }

    // Update through a different spelling.
    let updated = json(
        port,
        &admin,
        &[
            "identity",
            "update",
            "BILLING-bot",
            "--description",
            "pays invoices",
            "--label",
            "env=staging",
            "--label",
            "tier=1",
        ],
    );
    assert_eq!(updated["description"], "pays invoices");
    assert_eq!(updated["labels"]["env"], "staging");
    assert_eq!(updated["labels"]["tier"], "1");
    let listed = json(port, &admin, &["identity", "list"]);
    let row = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["owner"], "team-payments");
    assert_eq!(row["kind"], "bot");
    let table = ok(port, &admin, &["identity", "list"], None);
    assert!(
        table.contains("Billing-Bot") && table.contains("active"),
        "{table}"
    );

    // Lifecycle: suspend, reinstate (needs a reason), revoke (final).
    assert_eq!(
        json(
            port,
            &admin,
            &["identity", "suspend", "billing-bot", "--reason", "odd"]
        )["status"],
        "suspended"
    );
    assert_eq!(
        json(port, &admin, &["identity", "show", &id])["status_reason"],
        "odd"
    );
    assert_eq!(
        json(
            port,
            &admin,
            &["identity", "reinstate", "billing-bot", "--reason", "fine"]
        )["status"],
        "active"
    );

    // Keys: last_used_at, last_seen_at, and expiry honoured.
    let key = ok(port, &admin, &["identity", "key-create", &id], None)
        .trim()
        .to_owned();
    assert!(key.starts_with("stw_"));
    let short = ok(
        port,
        &admin,
        &["identity", "key-create", &id, "--expires-in-secs", "1"],
        None,
    )
    .trim()
    .to_owned();
    ok(
        port,
        &admin,
        &["token", "get", "--client-id", "Billing-Bot"],
        Some(&key),
    );
    ok(
        port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&short),
    );
    let shown = json(port, &admin, &["identity", "show", &id]);
    assert!(
        shown["last_seen_at"].as_i64().is_some_and(|t| t > 0),
        "{shown}"
    );
    let keys = shown["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k["last_used_at"].as_i64().is_some_and(|t| t > 0)),
        "{shown}"
    );
    assert!(keys.iter().any(|k| k["expires_at"].is_i64()), "{shown}");
    std::thread::sleep(Duration::from_millis(1500));
    let (code, _, err) = cli(
        port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&short),
    );
    assert_ne!(code, 0, "an expired key gets no token");
    assert!(err.contains("invalid_client"), "{err}");
    ok(
        port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&key),
    );
    // A mistyped key fails its checksum offline, before any lookup.
    let mut typo = key.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    let (code, _, _) = cli(
        port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&typo),
    );
    assert_ne!(code, 0);

    // Revoke the key, then the identity: nothing works any more, and status is final.
    let key_id = keys.iter().find(|k| k["expires_at"].is_null()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        port,
        &admin,
        &["identity", "key-revoke", &id, &key_id],
        None,
    );
    let (code, _, _) = cli(
        port,
        &admin,
        &["token", "get", "--client-id", "billing-bot"],
        Some(&key),
    );
    assert_ne!(code, 0, "a revoked key gets no token");
    assert_eq!(
        json(
            port,
            &admin,
            &["identity", "revoke", "Billing-Bot", "--reason", "done"]
        )["status"],
        "revoked"
    );
    let (code, _, err) = cli(
        port,
        &admin,
        &["identity", "reinstate", &id, "--reason", "oops"],
        None,
    );
    assert_ne!(code, 0);
    assert!(err.contains("revoked"), "{err}");
}
