//! End-to-end tests of steward-scan: detector families, inputs, formats, suppression.

// Test helpers may fail loudly.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use steward_core::id::base62_u32_fixed;
use steward_scan::{Confidence, Finding, Format, Report, ScanArgs, Scanner, fingerprint, run};

fn crc_token(prefix: &str, random: &str) -> String {
    format!(
        "{prefix}{random}{}",
        base62_u32_fixed(crc32fast::hash(random.as_bytes()))
    )
}

/// A Steward API key exactly as the server mints it.
fn steward_key(random: &[u8; 32]) -> String {
    use secrecy::ExposeSecret as _;
    steward_token::api_key::generate(random)
        .expose_secret()
        .to_owned()
}

fn rules_found(text: &str) -> Vec<String> {
    let scanner = Scanner::new().unwrap();
    scanner
        .scan("sample.txt", text.as_bytes())
        .into_iter()
        .map(|f| f.rule_id)
        .collect()
}

fn pem(kind: &str, body: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {kind}-----\n{}\n-----END {kind}-----\n",
        lines.join("\n")
    )
}

fn der_body() -> Vec<u8> {
    let mut body = vec![0x30, 0x82, 0x02, 0x5c];
    body.extend((0..600u32).map(|i| (i * 7919 % 251) as u8));
    body
}

#[test]
fn checksummed_tokens_are_found_and_bad_checksums_rejected() {
    let ghp = crc_token("ghp_", "R7fX2kq9LmZpT4vB8nW1cY6dH3sJ0a");
    let npm = crc_token("npm_", "Q2w3E4r5T6y7U8i9O0pAsDfGhJkLzX");
    let stw = steward_key(&[7u8; 32]);
    let text =
        format!("GITHUB_TOKEN={ghp}\n//registry.npmjs.org/:_authToken={npm}\nkey = \"{stw}\"\n");
    assert_eq!(
        rules_found(&text),
        vec!["github-pat", "npm-token", "steward-key"]
    );
    let mut bad = ghp.clone();
    bad.pop();
    bad.push(if ghp.ends_with('A') { 'B' } else { 'A' });
    let mut bad_stw = stw.clone();
    bad_stw.pop();
    bad_stw.push(if stw.ends_with('0') { '1' } else { '0' });
    let negatives = format!(
        "GITHUB_TOKEN={bad}\n//registry.npmjs.org/:_authToken=npm_{}\nkey={bad_stw}\n",
        "a1B2".repeat(9)
    );
    assert!(
        rules_found(&negatives).is_empty(),
        "{:?}",
        rules_found(&negatives)
    );
}

#[test]
fn provider_formats_are_found() {
    let cases = [
        (
            "gh_token: github_pat_11ABCDEFG0123456789abc_0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHI",
            "github-fine-grained-pat",
        ),
        (
            "export GITLAB_TOKEN=glpat-aB3dE5fG7hJ9kL1mN3pQ",
            "gitlab-pat",
        ),
        (
            "slack = \"xoxb-12345678901-123456789012-aB3dE5fG7hJ9kL1mN3pQ5rS7\"",
            "slack-bot-token",
        ),
        (
            "stripe('sk_live_4eC39HqLyjWDarjtT1zdp7dcZ9Xw')",
            "stripe-secret-key",
        ),
        (
            "OPENAI_API_KEY=sk-proj-aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zT3BlbkFJaB3dE5fG7hJ9kL1mN3pQ5rS7tU9",
            "openai-api-key",
        ),
        (
            &format!(
                "key=\"sk-ant-api03-{}AA\"",
                "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z-_"
                    .repeat(3)
                    .get(..93)
                    .unwrap()
            ),
            "anthropic-api-key",
        ),
        (
            "password = pypi-AgEIcHlwaS5vcmcCAQAGIOWsZeyc4K09yRPzcjHUYF9cZ_ac35v1a5tLW9EeCspp2yn181qRYrS2a-NVjKlJX1",
            "pypi-token",
        ),
        (
            &format!(
                "AccountKey={}==;",
                "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z"
                    .repeat(3)
                    .get(..86)
                    .unwrap()
            ),
            "azure-storage-connection-string",
        ),
        (
            "DATABASE_URL=postgresql://app:Zq8xWv3pLm9K@db.internal:5432/app",
            "postgres-url",
        ),
        (
            "uri = \"mongodb+srv://rep:Zq8xWv3pLm9K@cluster0.abcde.mongodb.net/x\"",
            "mongodb-url",
        ),
        (
            "REDIS_URL=rediss://default:Zq8xWv3pLm9K@cache:6380/0",
            "redis-url",
        ),
        (
            "broker = \"amqp://celery:Zq8xWv3pLm9K@rabbit:5672//\"",
            "amqp-url",
        ),
        ("url: mysql://svc:Zq8xWv3pLm9K@db:3306/orders", "mysql-url"),
        (
            "connect(\"host=db port=5432 dbname=app user=etl password=Zq8xWv3pLm9K sslmode=require\")",
            "postgres-dsn",
        ),
        (
            "mysql -h db -u admin -p'Zq8x!Wv3pLm9K' orders",
            "mysql-cli-password",
        ),
        (
            "machine api.example.org login deploy password Zq8xWv3pLm9K",
            "netrc-password",
        ),
        (
            "https://ci-bot:Zq8xWv3pLm9K@git.corp.net",
            "url-credentials",
        ),
        (
            "      \"auth\": \"cm9ib3Q6WnE4eFd2M3BMbTlL\"",
            "docker-config-auth",
        ),
        (
            "    <password>Zq8xWv3pLm9K</password>",
            "maven-settings-password",
        ),
        ("MYSQL_ROOT_PASSWORD=Zq8x!Wv3pLm9K", "generic-secret"),
        (
            "SENDGRID_API_KEY=SG.aB3dE5fG7hJ9kL1mN3pQ5r.aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zaB3dE5fG7",
            "sendgrid-api-key",
        ),
    ];
    for (text, rule) in cases {
        assert_eq!(rules_found(text), vec![rule.to_owned()], "{text}");
    }
}

#[test]
fn aws_key_id_is_paired_with_its_secret_and_examples_ignored() {
    let scanner = Scanner::new().unwrap();
    let text = "[default]\naws_access_key_id = AKIA2OGYBAH6STMMNXNN\naws_secret_access_key = 1Rc4/L48S2Jp6jtrXhE12mMyKUrCH8i91LDEBWN4\n";
    let findings = scanner.scan("credentials", text.as_bytes());
    let rules: Vec<(&str, u32, Confidence)> = findings
        .iter()
        .map(|f| (f.rule_id.as_str(), f.line, f.confidence))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("aws-access-key-id", 2, Confidence::High),
            ("aws-secret-access-key", 3, Confidence::High)
        ]
    );
    let lone = scanner.scan("x", b"id = AKIA2OGYBAH6STMMNXNN\n");
    assert_eq!(lone.first().map(|f| f.confidence), Some(Confidence::Medium));
    let examples = "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
    assert!(scanner.scan("x", examples.as_bytes()).is_empty());
}

#[test]
fn private_keys_span_lines_and_need_a_real_body() {
    let scanner = Scanner::new().unwrap();
    let key = pem("RSA PRIVATE KEY", &der_body());
    let text = format!("# deploy key\n{key}");
    let findings = scanner.scan("id_rsa", text.as_bytes());
    assert_eq!(findings.len(), 1);
    let finding = findings.first().unwrap();
    assert_eq!(
        (finding.rule_id.as_str(), finding.line),
        ("pem-private-key", 2)
    );
    assert!(finding.end_line > finding.line + 5);
    let mut ssh_body = b"openssh-key-v1\0".to_vec();
    ssh_body.extend((0..300u32).map(|i| (i * 31 % 256) as u8));
    assert_eq!(
        rules_found(&pem("OPENSSH PRIVATE KEY", &ssh_body)),
        vec!["openssh-private-key"]
    );
    // A placeholder key right before a real one must not swallow it.
    let both =
        format!("-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----\n{key}");
    assert_eq!(rules_found(&both), vec!["pem-private-key"]);
    assert!(rules_found(&pem("OPENSSH PRIVATE KEY", &der_body())).is_empty());
    // GCP service-account JSON keeps the key on one line with escaped newlines.
    let escaped = key.trim_end().replace('\n', "\\n");
    let json = format!(
        "{{\n  \"type\": \"service_account\",\n  \"private_key\": \"{escaped}\\n\",\n  \"client_email\": \"a@b.iam.gserviceaccount.com\"\n}}\n"
    );
    let gcp = scanner.scan("sa.json", json.as_bytes());
    assert_eq!(
        gcp.iter()
            .map(|f| (f.rule_id.as_str(), f.line))
            .collect::<Vec<_>>(),
        vec![("gcp-service-account", 3)]
    );
    // The fingerprint is over the real key text, so it matches the PEM file's.
    assert_eq!(
        gcp.first().map(|f| f.fingerprint.clone()),
        Some(finding.fingerprint.clone())
    );
}

#[test]
fn jwt_requires_structure_and_rejects_the_jwt_io_example() {
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let token = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(r#"{"sub":"ci-bot","exp":1900000000}"#),
        "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z"
    );
    assert_eq!(
        rules_found(&format!("Authorization: Bearer {token}")),
        vec!["jwt"]
    );
    let example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    assert!(rules_found(&format!("token: {example}")).is_empty());
}

#[test]
fn generic_assignments_skip_placeholders_lookups_hashes_and_images() {
    let negatives = [
        "password: \"${DB_PASSWORD}\"",
        "db_password = os.environ[\"DB_PASSWORD\"]",
        "const apiKey = process.env.STRIPE_SECRET_KEY;",
        "        token: ${{ secrets.GITHUB_TOKEN }}",
        "API_KEY=<your-api-key-here>",
        "SECRET_KEY=changeme",
        "password = \"xxxxxxxxxxxxxxxx\"",
        "api_key_id = \"550e8400-e29b-41d4-a716-446655440000\"",
        "token = \"550e8400-e29b-41d4-a716-446655440000\"",
        "    \"integrity\": \"sha512-Zq8xWv3pLm9KZq8xWv3pLm9KZq8xWv3pLm9KZq8xWv3pLm9K==\",",
        "password_hash = '$2b$12$Zq8xWv3pLm9KZq8xWv3pLm9KZq8xWv3pLm9K'",
        "secret_image = \"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAZq8xWv3pLm9K\"",
        "api_token = settings.API_TOKEN",
        "DATABASE_URL=postgres://postgres:postgres@localhost:5432/dev",
        "url = \"postgresql://user:password@localhost/mydb\"",
        "mysql -u root -p$MYSQL_ROOT_PASSWORD",
        "max_tokens = 4096",
        "    password = getpass.getpass(\"Password: \")",
    ];
    for line in negatives {
        assert!(
            rules_found(line).is_empty(),
            "{line}: {:?}",
            rules_found(line)
        );
    }
    // Lockfiles skip generic scoring entirely.
    let scanner = Scanner::new().unwrap();
    assert!(
        scanner
            .scan("app/package-lock.json", b"\"token\": \"Zq8x!Wv3pLm9KZq8x\"")
            .is_empty()
    );
    assert_eq!(
        scanner
            .scan("app/config.json", b"\"token\": \"Zq8x!Wv3pLm9KZq8x\"")
            .len(),
        1
    );
}

#[test]
fn findings_never_contain_the_raw_secret() {
    let ghp = crc_token("ghp_", "R7fX2kq9LmZpT4vB8nW1cY6dH3sJ0a");
    let scanner = Scanner::new().unwrap();
    let findings = scanner.scan("x", format!("t={ghp}\npassword=Zq8x!Wv3pLm9K\n").as_bytes());
    assert_eq!(findings.len(), 2);
    let report = Report {
        findings,
        stats: Default::default(),
    };
    for format in [Format::Table, Format::Json, Format::Jsonl, Format::Sarif] {
        let mut out = Vec::new();
        report.write(format, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains(&ghp) && !text.contains("Zq8x!Wv3pLm9K"),
            "{format:?} leaks: {text}"
        );
    }
    assert_eq!(
        report.findings.first().map(|f| f.fingerprint.clone()),
        Some(fingerprint(ghp.as_bytes()))
    );
}

fn args_for(paths: &[&Path]) -> ScanArgs {
    ScanArgs {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        no_progress: true,
        ..ScanArgs::default()
    }
}

fn scan_dir(dir: &Path, args: ScanArgs) -> (Report, i32) {
    let _ = dir;
    let mut out = Vec::new();
    let outcome = run(
        &ScanArgs {
            format: Format::Json,
            ..args
        },
        &mut out,
    )
    .unwrap();
    let parsed: Report = serde_json::from_slice(&out).unwrap();
    assert_eq!(parsed, outcome.report);
    (outcome.report, outcome.exit_code)
}

#[test]
fn directories_honour_gitignore_unless_no_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join(".gitignore"), "ignored/\n").unwrap();
    std::fs::create_dir_all(root.join("ignored")).unwrap();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("ignored/app.env"), "DB_PASSWORD=Zq8x!Wv3pLm9K\n").unwrap();
    std::fs::write(root.join("src/app.env"), "DB_PASSWORD=Wv3p!Zq8xLm9K\n").unwrap();
    let (report, code) = scan_dir(root, args_for(&[root]));
    assert_eq!(report.findings.len(), 1);
    assert!(
        report
            .findings
            .first()
            .unwrap()
            .path
            .ends_with("src/app.env")
    );
    assert_eq!(code, 1);
    assert!(report.stats.files >= 2 && report.stats.bytes > 0);
    let (all, _) = scan_dir(
        root,
        ScanArgs {
            no_ignore: true,
            ..args_for(&[root])
        },
    );
    assert_eq!(all.findings.len(), 2);
    let (_, custom) = scan_dir(
        root,
        ScanArgs {
            exit_code: 7,
            ..args_for(&[root])
        },
    );
    assert_eq!(custom, 7);
    std::fs::write(root.join("src/app.env"), "DB_PASSWORD=${DB_PASSWORD}\n").unwrap();
    let (clean, code) = scan_dir(root, args_for(&[root]));
    assert!(clean.findings.is_empty());
    assert_eq!(code, 0);
}

#[test]
fn suppression_by_inline_comment_stewardignore_and_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("fixtures")).unwrap();
    std::fs::write(
        root.join("a.env"),
        "DB_PASSWORD=Zq8x!Wv3pLm9K # steward:allow\nAPI_SECRET=Wv3p!Zq8xLm9K\n",
    )
    .unwrap();
    std::fs::write(root.join("fixtures/b.env"), "DB_PASSWORD=Lm9K!Zq8xWv3p\n").unwrap();
    std::fs::write(root.join("c.env"), "DB_PASSWORD=Xk9#mQ2$vL8pRt\n").unwrap();
    let (before, _) = scan_dir(root, args_for(&[root]));
    assert_eq!(before.findings.len(), 3, "{:?}", before.findings);
    let c_fingerprint = fingerprint(b"Xk9#mQ2$vL8pRt");
    std::fs::write(
        root.join(".stewardignore"),
        format!("# fixtures are fake\nfixtures/\n{c_fingerprint}\n"),
    )
    .unwrap();
    let (after, _) = scan_dir(root, args_for(&[root]));
    let paths: Vec<&str> = after.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths.len(), 1);
    assert!(paths.first().unwrap().ends_with("a.env"));
    assert_eq!(after.findings.first().unwrap().line, 2);
    // Baseline: everything known now, one new secret later.
    let baseline = root.join("baseline.json");
    std::fs::write(&baseline, serde_json::to_vec(&after).unwrap()).unwrap();
    std::fs::write(root.join("d.env"), "SMTP_PASS=Qp4!vR8sTz2Lk\n").unwrap();
    let (fresh, _) = scan_dir(
        root,
        ScanArgs {
            baseline: Some(baseline),
            ..args_for(&[root])
        },
    );
    assert_eq!(
        fresh
            .findings
            .iter()
            .map(|f| f.path.ends_with("d.env"))
            .collect::<Vec<_>>(),
        vec![true]
    );
}

#[test]
fn archives_are_scanned_member_by_member() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let ghp = crc_token("ghp_", "R7fX2kq9LmZpT4vB8nW1cY6dH3sJ0a");
    let content = format!("line one\nGITHUB_TOKEN={ghp}\n");
    // zip
    let mut zip = zip::ZipWriter::new(std::fs::File::create(root.join("bundle.zip")).unwrap());
    zip.start_file("conf/app.env", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(content.as_bytes()).unwrap();
    zip.finish().unwrap();
    // tar.gz
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(root.join("bundle.tar.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "inner/app.env", content.as_bytes())
        .unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    let (report, _) = scan_dir(root, args_for(&[root]));
    let mut locations: Vec<(bool, bool, u32)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.path.ends_with("bundle.tar.gz!inner/app.env"),
                f.path.ends_with("bundle.zip!conf/app.env"),
                f.line,
            )
        })
        .collect();
    locations.sort();
    assert_eq!(locations, vec![(false, true, 2), (true, false, 2)]);
}

#[test]
fn kubernetes_secret_data_is_decoded_and_env_dumps_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let b64 = |v: &str| base64::engine::general_purpose::STANDARD.encode(v);
    let yaml = format!(
        "apiVersion: v1\nitems:\n- apiVersion: v1\n  kind: Secret\n  data:\n    username: {}\n    password: {}\n  type: Opaque\n",
        b64("admin"),
        b64("Zq8x!Wv3pLm9K")
    );
    let file = dir.path().join("secrets.yaml");
    std::fs::write(&file, yaml).unwrap();
    let (report, _) = scan_dir(dir.path(), args_for(&[&file]));
    assert_eq!(
        report
            .findings
            .iter()
            .map(|f| (f.rule_id.as_str(), f.line))
            .collect::<Vec<_>>(),
        vec![("generic-secret", 7)]
    );
    let inspect = dir.path().join("inspect.json");
    std::fs::write(
        &inspect,
        "[{\"Config\": {\"Env\": [\"PATH=/usr/bin\", \"POSTGRES_PASSWORD=Zq8x!Wv3pLm9K\"]}}]\n",
    )
    .unwrap();
    let (docker, _) = scan_dir(dir.path(), args_for(&[&inspect]));
    assert_eq!(docker.findings.len(), 1);
}

#[test]
fn git_history_reports_the_commit_that_added_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
        String::from_utf8(status.stdout).unwrap()
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("app.env"), "A=1\nB=2\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    std::fs::write(
        repo.join("app.env"),
        "A=1\nB=2\nDB_PASSWORD=Zq8x!Wv3pLm9K\n",
    )
    .unwrap();
    git(&["commit", "-q", "-am", "two"]);
    let leak = git(&["rev-parse", "HEAD"]).trim().to_owned();
    std::fs::write(repo.join("app.env"), "A=1\nB=2\n").unwrap();
    git(&["commit", "-q", "-am", "three: remove"]);
    let (report, _) = scan_dir(
        repo,
        ScanArgs {
            git: true,
            ..args_for(&[repo])
        },
    );
    let found: Vec<(&str, u32, Option<&str>)> = report
        .findings
        .iter()
        .map(|f| (f.path.as_str(), f.line, f.commit.as_deref()))
        .collect();
    assert_eq!(found, vec![("app.env", 3, Some(leak.as_str()))]);
    // The working tree is clean.
    let (tree, _) = scan_dir(repo, args_for(&[repo]));
    assert!(tree.findings.is_empty());
}

#[test]
fn json_jsonl_and_sarif_shapes() {
    let finding = Finding {
        path: "dir with space/a.env".into(),
        line: 3,
        column: 13,
        end_line: 3,
        commit: Some("abc123".into()),
        rule_id: "generic-secret".into(),
        provider: "generic".into(),
        kind: "secret".into(),
        confidence: Confidence::Medium,
        fingerprint: fingerprint(b"x"),
        redacted: "****(13)".into(),
    };
    let report = Report {
        findings: vec![finding],
        stats: steward_scan::Stats {
            files: 1,
            bytes: 10,
            duration_ms: 2,
        },
    };
    let mut json = Vec::new();
    report.write(Format::Json, &mut json).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let keys: Vec<&String> = value["findings"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 11);
    for key in [
        "path",
        "line",
        "column",
        "end_line",
        "commit",
        "rule_id",
        "provider",
        "kind",
        "confidence",
        "fingerprint",
        "redacted",
    ] {
        assert!(value["findings"][0].get(key).is_some(), "{key}");
    }
    assert_eq!(value["findings"][0]["confidence"], "medium");
    assert_eq!(
        value["stats"],
        serde_json::json!({"files": 1, "bytes": 10, "duration_ms": 2})
    );
    let mut jsonl = Vec::new();
    report.write(Format::Jsonl, &mut jsonl).unwrap();
    assert_eq!(String::from_utf8(jsonl).unwrap().lines().count(), 2);
    let mut sarif = Vec::new();
    report.write(Format::Sarif, &mut sarif).unwrap();
    let log: serde_json::Value = serde_json::from_slice(&sarif).unwrap();
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(
        log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "dir%20with%20space/a.env"
    );
    validate_sarif_with_schema(&sarif);
}

/// Validates against the real SARIF 2.1.0 schema through `bench/scan/validate_sarif.py`
/// when Python's `jsonschema` is installed (CI installs it; see bench/scan/README.md).
fn validate_sarif_with_schema(sarif: &[u8]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/scan/validate_sarif.py");
    let has_jsonschema = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_jsonschema {
        assert!(
            std::env::var_os("STEWARD_REQUIRE_SARIF_SCHEMA").is_none(),
            "python3 with jsonschema is required"
        );
        eprintln!("skipping SARIF schema validation: python3 -m pip install jsonschema");
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), sarif).unwrap();
    let output = Command::new("python3")
        .arg(&script)
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "SARIF invalid: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The validator must reject a broken log, or this test proves nothing.
    let mut broken: serde_json::Value = serde_json::from_slice(sarif).unwrap();
    broken["runs"][0]["results"][0]["level"] = serde_json::json!("fatal");
    std::fs::write(file.path(), serde_json::to_vec(&broken).unwrap()).unwrap();
    let output = Command::new("python3")
        .arg(&script)
        .arg(file.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "schema accepted an invalid level");
}
