//! Behaviour of the policy engine: compilation, decisions, grants, examples and properties.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use proptest::prelude::*;
use serde_json::json;
use steward_core::OperationName;
use steward_policy::*;

const CATALOG: &str = r#"
identity_labels: [env]
services:
  - name: svc
    operations:
      - {name: op1, class: read, args: [{name: n, type: long}]}
      - {name: op2, class: write, args: [{name: n, type: long}, {name: note, type: string, optional: true}]}
      - {name: op3, class: delete, args: [{name: n, type: long}]}
  - name: other
    operations:
      - {name: op1, class: read, args: [{name: n, type: long}, {name: price, type: decimal, optional: true}, {name: tags, type: set_of_string, optional: true}]}
"#;

fn catalog() -> Catalog {
    Catalog::from_yaml(CATALOG).unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn request(id: &str, op: &str, n: i64) -> Request {
    let mut r = Request::new(
        IdentityAttrs {
            id: id.into(),
            kind: "agent".into(),
            owner: "alice".into(),
            labels: [("env".to_owned(), "prod".to_owned())].into(),
        },
        op.parse().unwrap(),
        &catalog(),
        ts("2026-01-05T10:00:00Z"),
    );
    r.args = json!({"n": n});
    r
}

fn compile_texts(texts: &[&str]) -> Result<CompiledPolicies, PolicyError> {
    let sources: Vec<PolicySource> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| PolicySource::new(format!("p{i}"), *t))
        .collect();
    compile(&catalog(), &sources, 7)
}

#[test]
fn allow_deny_and_approval_follow_steward_semantics() {
    let set = compile_texts(&[
        r#"permit (principal, action in Action::"svc", resource);"#,
        r#"@approval("big n") @approvals("2") forbid (principal, action == Action::"svc:op2", resource) when { context.args.n > 10 };"#,
        r#"forbid (principal, action in Action::"delete", resource);"#,
    ])
    .unwrap();
    let d = authorize(&set, &request("a", "svc:op1", 1));
    assert_eq!(d.effect(), Effect::Allow);
    assert_eq!(d.determining_policies(), ["p0"]);
    assert_eq!(d.policy_version(), 7);
    assert!(d.permit().is_some() && d.permit_after_approval().is_none());

    let d = authorize(&set, &request("a", "svc:op2", 11));
    assert_eq!(d.effect(), Effect::ApprovalRequired);
    assert_eq!(d.approval_reasons(), ["big n"]);
    assert_eq!(d.required_approvals(), 2);
    assert_eq!(d.determining_policies(), ["p1"]);
    assert!(d.permit().is_none());
    let permit = d.permit_after_approval().unwrap();
    assert!(permit.human_approved());
    assert_eq!(permit.operation().to_string(), "svc:op2");

    let d = authorize(&set, &request("a", "svc:op3", 1));
    assert_eq!(d.effect(), Effect::Deny);
    assert_eq!(d.deny_reason(), Some(DenyReason::Forbidden));
    assert_eq!(d.determining_policies(), ["p2"]);
    assert!(d.permit().is_none() && d.permit_after_approval().is_none());

    let d = authorize(&set, &request("a", "other:op1", 1));
    assert_eq!(d.deny_reason(), Some(DenyReason::NoPermit));
}

#[test]
fn approval_forbid_without_permit_denies() {
    let set = compile_texts(&[r#"@approval("x") forbid (principal, action, resource);"#]).unwrap();
    assert_eq!(
        authorize(&set, &request("a", "svc:op1", 1)).effect(),
        Effect::Deny
    );
}

#[test]
fn an_erroring_forbid_beside_a_matching_permit_denies() {
    let set = compile_texts(&[
        r#"permit (principal, action, resource);"#,
        r#"forbid (principal, action, resource) when { context.args.n * 9223372036854775807 > 0 };"#,
    ])
    .unwrap();
    // n = 1 and n = 0 do not overflow: the forbid is simply true or false.
    assert_eq!(
        authorize(&set, &request("a", "svc:op1", 1)).effect(),
        Effect::Deny
    );
    assert_eq!(
        authorize(&set, &request("a", "svc:op1", 0)).effect(),
        Effect::Allow
    );
    let d = authorize(&set, &request("a", "svc:op1", 2));
    assert_eq!(d.effect(), Effect::Deny);
    assert_eq!(d.deny_reason(), Some(DenyReason::EvaluationError));
    assert_eq!(d.determining_policies(), ["p1"]);
    assert!(!d.errors().is_empty());
    // Cedar alone would allow: it skips the erroring forbid.
    let (cedar_request, entities) = set.cedar_inputs(&request("a", "svc:op1", 2)).unwrap();
    let response = cedar_policy::Authorizer::new().is_authorized(
        &cedar_request,
        set.cedar_policy_set(),
        &entities,
    );
    assert_eq!(response.decision(), cedar_policy::Decision::Allow);
}

#[test]
fn rejections_name_policy_line_and_column() {
    let err = compile(
        &catalog(),
        &[PolicySource::new(
            "bad-attr",
            "permit (principal, action, resource)\nwhen {\n  context.args.nope == 1\n};",
        )],
        1,
    )
    .unwrap_err();
    let d = err.diagnostics().first().unwrap().clone();
    assert_eq!(d.policy_id, "bad-attr");
    assert_eq!(d.line, Some(3), "{err}");
    assert!(d.column.is_some(), "{err}");
    assert!(err.to_string().contains("bad-attr"), "{err}");

    let err = compile(
        &catalog(),
        &[PolicySource::new(
            "syntax",
            "permit (principal, action, resource);\n\nforbid (principal action);",
        )],
        1,
    )
    .unwrap_err();
    let d = err.diagnostics().first().unwrap();
    assert_eq!((d.policy_id.as_str(), d.line), ("syntax", Some(3)), "{err}");

    // Optional attributes need a `has` guard under strict validation.
    let err = compile_texts(&[
        r#"permit (principal, action == Action::"svc:op2", resource) when { context.args.note == "x" };"#,
    ]);
    assert!(err.is_err());
    // Misused annotations are refused.
    assert!(compile_texts(&[r#"@approval("x") permit (principal, action, resource);"#]).is_err());
    assert!(
        compile_texts(&[r#"@approval("x") @approvals("0") forbid (principal, action, resource);"#])
            .is_err()
    );
    // Duplicate ids are refused.
    assert!(compile_texts(&[r#"@id("x") permit (principal, action, resource); @id("x") permit (principal, action, resource);"#]).is_err());
}

#[test]
fn multi_policy_sources_get_numbered_ids() {
    let set = compile(
        &catalog(),
        &[PolicySource::new(
            "file.cedar",
            r#"permit (principal, action == Action::"svc:op1", resource); forbid (principal, action == Action::"svc:op2", resource); @id("named") permit (principal, action == Action::"svc:op3", resource);"#,
        )],
        1,
    )
    .unwrap();
    let ids: Vec<&str> = set.policies().iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["file.cedar#1", "file.cedar#2", "named"]);
}

#[test]
fn nonconforming_args_deny_with_diagnostics() {
    let set = compile_texts(&[r#"permit (principal, action, resource);"#]).unwrap();
    let cases = [
        json!({"n": "1"}),
        json!({}),
        json!({"n": 1.5}),
        json!([1]),
        json!({"n": 1, "price": "1.23456"}),
        json!({"n": 1, "tags": ["a", 2]}),
        json!({"n": 1, "note": 3}),
    ];
    for (i, args) in cases.into_iter().enumerate() {
        let op = if i == 6 { "svc:op2" } else { "other:op1" };
        let mut r = request("a", op, 1);
        r.args = args.clone();
        let d = authorize(&set, &r);
        assert_eq!(d.deny_reason(), Some(DenyReason::InvalidRequest), "{args}");
        assert!(!d.errors().is_empty());
    }
    let mut r = request("a", "other:op1", 1);
    r.args = json!({"n": 1, "price": 12.5, "tags": ["a"], "undeclared": {"x": 1}});
    assert_eq!(authorize(&set, &r).effect(), Effect::Allow);
    // Unknown operations and wrong classes deny.
    let mut r = request("a", "svc:op1", 1);
    r.operation = OperationName::new("svc", "nope");
    assert_eq!(
        authorize(&set, &r).deny_reason(),
        Some(DenyReason::InvalidRequest)
    );
    let mut r = request("a", "svc:op1", 1);
    r.class = steward_core::OperationClass::Write;
    assert_eq!(
        authorize(&set, &r).deny_reason(),
        Some(DenyReason::InvalidRequest)
    );
}

#[test]
fn labels_tags_risk_ip_and_decimal_are_visible_to_policies() {
    let set = compile_texts(&[
        r#"permit (principal, action == Action::"svc:op1", resource) when { principal.labels.env == "prod" && principal.risk_score < 50 && context.risk_score < 50 };"#,
        r#"forbid (principal, action, resource) when { principal.hasTag("team") && principal.getTag("team") == "blocked" };"#,
        r#"forbid (principal, action, resource) when { context has source_ip && context.source_ip.isInRange(ip("192.168.0.0/16")) };"#,
        r#"permit (principal, action == Action::"other:op1", resource) when { context.args has price && context.args.price.lessThan(decimal("10.00")) && !context.delegated };"#,
    ])
    .unwrap();
    assert_eq!(
        authorize(&set, &request("a", "svc:op1", 1)).effect(),
        Effect::Allow
    );
    let mut r = request("a", "svc:op1", 1);
    r.identity.labels.insert("env".into(), "dev".into());
    assert_eq!(authorize(&set, &r).effect(), Effect::Deny);
    let mut r = request("a", "svc:op1", 1);
    r.identity.labels.clear(); // a missing declared label reads as ""
    assert_eq!(authorize(&set, &r).effect(), Effect::Deny);
    let mut r = request("a", "svc:op1", 1);
    r.risk_score = 80;
    assert_eq!(authorize(&set, &r).effect(), Effect::Deny);
    let mut r = request("a", "svc:op1", 1);
    r.identity.labels.insert("team".into(), "blocked".into());
    assert_eq!(authorize(&set, &r).effect(), Effect::Deny);
    let mut r = request("a", "svc:op1", 1);
    r.source_ip = Some("192.168.1.9".parse().unwrap());
    assert_eq!(
        authorize(&set, &r).deny_reason(),
        Some(DenyReason::Forbidden)
    );
    r.source_ip = Some("10.1.1.1".parse().unwrap());
    assert_eq!(authorize(&set, &r).effect(), Effect::Allow);
    let mut r = request("a", "other:op1", 1);
    r.args = json!({"n": 1, "price": "9.99"});
    assert_eq!(authorize(&set, &r).effect(), Effect::Allow);
    r.delegated = true;
    assert_eq!(authorize(&set, &r).effect(), Effect::Deny);
    r.delegated = false;
    r.args = json!({"n": 1, "price": 10});
    assert_eq!(authorize(&set, &r).effect(), Effect::Deny);
}

#[test]
fn time_context_uses_the_deployment_zone_across_dst() {
    let set = compile_texts(&[
        r#"permit (principal, action, resource) when { context.time.hour == 3 && context.time.date == "2026-03-29" && context.time.weekday == 7 && context.now > datetime("2026-03-29T00:00:00Z") };"#,
    ])
    .unwrap();
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    let mut r = request("a", "svc:op1", 1);
    r.tz = berlin.clone();
    r.now = ts("2026-03-29T01:00:00Z"); // 03:00 CEST: 02:xx does not exist that day
    assert_eq!(authorize(&set, &r).effect(), Effect::Allow);
    r.now = ts("2026-03-29T00:59:59Z"); // 01:59:59 CET
    assert_eq!(authorize(&set, &r).effect(), Effect::Deny);
    r.tz = TimeZone::UTC;
    r.now = ts("2026-03-29T03:00:00Z");
    assert_eq!(authorize(&set, &r).effect(), Effect::Allow);
}

#[test]
fn grants_expire_without_cleanup_and_honour_arg_constraints() {
    let grant = Grant {
        id: "g1".into(),
        identity_id: "a".into(),
        operations: vec!["svc:op2".parse().unwrap()],
        services: vec!["other".into()],
        expires_at: ts("2026-01-05T11:00:00Z"),
        arg_equals: Default::default(),
    };
    let similar = Grant {
        id: "g2".into(),
        identity_id: "b".into(),
        operations: vec!["svc:op2".parse().unwrap()],
        services: vec![],
        expires_at: ts("2026-01-06T00:00:00Z"),
        arg_equals: [("n".to_owned(), json!(42))].into(),
    };
    let set = compile_with_grants(&catalog(), &[], &[grant.clone(), similar], 1).unwrap();
    let mut r = request("a", "svc:op2", 1);
    r.now = ts("2026-01-05T10:59:59Z");
    let d = authorize(&set, &r);
    assert_eq!(d.effect(), Effect::Allow);
    assert_eq!(d.determining_policies(), ["grant:g1"]);
    r.now = ts("2026-01-05T11:00:00Z");
    assert_eq!(authorize(&set, &r).effect(), Effect::Deny);
    let mut r = request("a", "other:op1", 1);
    r.now = ts("2026-01-05T10:00:00Z");
    assert_eq!(authorize(&set, &r).effect(), Effect::Allow);
    assert_eq!(
        authorize(&set, &request("a", "svc:op1", 1)).effect(),
        Effect::Deny
    );
    // The "approve similar" grant matches only its argument value, and only its identity.
    assert_eq!(
        authorize(&set, &request("b", "svc:op2", 42)).effect(),
        Effect::Allow
    );
    assert_eq!(
        authorize(&set, &request("b", "svc:op2", 43)).effect(),
        Effect::Deny
    );
    assert_eq!(
        authorize(&set, &request("a", "svc:op2", 42)).effect(),
        Effect::Allow
    );
    assert_eq!(
        authorize(&set, &request("c", "svc:op2", 42)).effect(),
        Effect::Deny
    );
    // Bad grants are refused.
    let mut bad = grant.clone();
    bad.operations = vec!["svc:nope".parse().unwrap()];
    assert!(compile_with_grants(&catalog(), &[], &[bad], 1).is_err());
    let mut bad = grant;
    bad.arg_equals = [("missing".to_owned(), json!("x"))].into();
    assert!(compile_with_grants(&catalog(), &[], &[bad], 1).is_err());
}

#[test]
fn explain_names_determining_policies() {
    let set = compile(
        &catalog(),
        &[PolicySource::new(
            "f",
            r#"@id("allow-svc") @description("svc is open") permit (principal, action in Action::"svc", resource);
               @id("no-deletes") @approval("deletes are reviewed") forbid (principal, action in Action::"delete", resource);"#,
        )],
        3,
    )
    .unwrap();
    let text = explain(&authorize(&set, &request("a", "svc:op3", 1)), Some(&set));
    assert!(text.starts_with("APPROVAL_REQUIRED `svc:op3`"), "{text}");
    assert!(
        text.contains("no-deletes") && text.contains("deletes are reviewed"),
        "{text}"
    );
    assert!(
        text.contains("allow-svc") && text.contains("svc is open"),
        "{text}"
    );
    let text = explain(&authorize(&set, &request("a", "other:op1", 1)), None);
    assert!(text.contains("no permit matched"), "{text}");
}

#[test]
fn test_files_report_each_failure() {
    let set =
        compile_texts(&[r#"permit (principal, action == Action::"svc:op1", resource);"#]).unwrap();
    let yaml = r#"
- name: ok
  request: {identity: {id: a}, operation: "svc:op1", args: {n: 1}, at: "2026-01-05T10:00:00Z"}
  expect: allow
- name: wrong expectation
  request: {identity: {id: a}, operation: "svc:op2", args: {n: 1}, at: "2026-01-05T10:00:00Z"}
  expect: allow
- name: bad time
  request: {identity: {id: a}, operation: "svc:op1", args: {n: 1}, at: "yesterday"}
  expect: deny
"#;
    let report = run_test_file(&set, yaml).unwrap();
    assert_eq!(report.passed, ["ok"]);
    assert_eq!(report.failures.len(), 2);
    assert_eq!(report.failures[0].actual, Some(Effect::Deny));
    assert_eq!(report.failures[1].actual, None);
    assert!(!report.is_success());
    assert!(report.summary().contains("wrong expectation"));
    assert!(run_test_file(&set, "not: [valid").is_err());
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

#[test]
fn every_example_compiles_and_passes_its_tests() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let catalog =
            Catalog::from_yaml(&std::fs::read_to_string(dir.join("catalog.yaml")).unwrap())
                .unwrap();
        let mut sources = Vec::new();
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "cedar") {
                let id = path.file_name().unwrap().to_string_lossy().into_owned();
                sources.push(PolicySource::new(
                    id,
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
        assert!(!sources.is_empty(), "{}", dir.display());
        let set =
            compile(&catalog, &sources, 1).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let report = run_test_file(
            &set,
            &std::fs::read_to_string(dir.join("tests.yaml")).unwrap(),
        )
        .unwrap();
        assert!(
            report.is_success(),
            "{}: {}",
            dir.display(),
            report.summary()
        );
        assert!(report.passed.len() >= 4, "{}", dir.display());
        seen += 1;
    }
    assert_eq!(seen, 6);
}

// ---- properties ----

fn policy_strategy() -> impl Strategy<Value = String> {
    let principal = prop_oneof![
        Just("principal".to_owned()),
        Just(r#"principal == Identity::"a""#.to_owned()),
        Just(r#"principal in Identity::"b""#.to_owned()),
        Just("principal is Identity".to_owned()),
    ];
    let action = prop_oneof![
        Just("action".to_owned()),
        Just(r#"action == Action::"svc:op1""#.to_owned()),
        Just(r#"action in Action::"svc""#.to_owned()),
        Just(r#"action in Action::"read""#.to_owned()),
        Just(r#"action in [Action::"svc:op2", Action::"delete"]"#.to_owned()),
        Just(r#"action == Action::"other:op1""#.to_owned()),
    ];
    let condition = prop_oneof![
        Just(String::new()),
        (0i64..20).prop_map(|k| format!("when {{ context.args.n > {k} }}")),
        (0i64..100).prop_map(|k| format!("when {{ context.risk_score > {k} }}")),
        Just(r#"when { principal.labels.env == "prod" }"#.to_owned()),
        Just("when { context.args.n * 9223372036854775807 > 1 }".to_owned()),
        Just("unless { context.time.hour < 9 }".to_owned()),
        Just(r#"when { action in Action::"read" }"#.to_owned()),
        Just(r#"when { context.now > datetime("2026-01-05T05:00:00Z") }"#.to_owned()),
        Just(r#"when { principal.hasTag("env") && principal.getTag("env") == "prod" }"#.to_owned()),
        Just("when { context has source_ip && context.source_ip.isLoopback() }".to_owned()),
        (0i64..5).prop_map(|k| format!(
            "when {{ context.rate.op_per_day > {k} && !context.delegated }}"
        )),
    ];
    let head = prop_oneof![
        Just("permit".to_owned()),
        Just("forbid".to_owned()),
        Just(r#"@approval("review") forbid"#.to_owned()),
    ];
    (head, principal, action, condition)
        .prop_map(|(h, p, a, c)| format!("{h} ({p}, {a}, resource) {c};"))
}

fn request_strategy() -> impl Strategy<Value = Request> {
    (
        prop_oneof![Just("a"), Just("b"), Just("c")],
        prop_oneof![
            Just("svc:op1"),
            Just("svc:op2"),
            Just("svc:op3"),
            Just("other:op1")
        ],
        -1i64..25,
        0i64..100,
        any::<bool>(),
        0u8..24,
        (
            0u64..8,
            any::<bool>(),
            prop_oneof![Just(None), Just(Some("127.0.0.1")), Just(Some("10.0.0.1"))],
        ),
    )
        .prop_map(|(id, op, n, risk, prod, hour, (per_day, delegated, ip))| {
            let mut r = request(id, op, n);
            r.rate.op_per_day = per_day;
            r.delegated = delegated;
            r.source_ip = ip.map(|i| i.parse().unwrap());
            r.risk_score = risk;
            if !prod {
                r.identity.labels.insert("env".into(), "dev".into());
            }
            r.now = ts(&format!("2026-01-05T{hour:02}:00:00Z"));
            r
        })
}

fn set_of(texts: &[String]) -> CompiledPolicies {
    let sources: Vec<PolicySource> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| PolicySource::new(format!("p{i}"), t.clone()))
        .collect();
    compile(&catalog(), &sources, 1).unwrap()
}

/// The parts of a decision that must not depend on policy order or ids.
fn essence(d: &Decision) -> (Effect, Option<DenyReason>, u32) {
    (d.effect(), d.deny_reason(), d.required_approvals())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sliced_decisions_equal_full_scan(texts in prop::collection::vec(policy_strategy(), 0..24),
                                        requests in prop::collection::vec(request_strategy(), 1..8)) {
        let set = set_of(&texts);
        for r in &requests {
            prop_assert_eq!(authorize(&set, r), authorize_full_scan(&set, r));
        }
    }

    #[test]
    fn shuffling_or_duplicating_never_changes_a_decision(
        texts in prop::collection::vec(policy_strategy(), 1..16),
        seed in any::<u64>(),
        requests in prop::collection::vec(request_strategy(), 1..8)) {
        let set = set_of(&texts);
        let mut shuffled = texts.clone();
        // A deterministic shuffle plus duplicates of every third policy.
        let len = shuffled.len();
        for i in 0..len {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % len as u64) as usize;
            shuffled.swap(i, j);
        }
        let dups: Vec<String> = texts.iter().step_by(3).cloned().collect();
        shuffled.extend(dups);
        let other = set_of(&shuffled);
        for r in &requests {
            prop_assert_eq!(essence(&authorize(&set, r)), essence(&authorize(&other, r)));
        }
    }

    #[test]
    fn adding_a_forbid_never_turns_deny_into_allow(
        texts in prop::collection::vec(policy_strategy(), 0..16),
        extra in policy_strategy(),
        requests in prop::collection::vec(request_strategy(), 1..8)) {
        let forbid = extra.replacen("permit", "forbid", 1);
        let set = set_of(&texts);
        let mut more = texts.clone();
        more.push(forbid);
        let bigger = set_of(&more);
        for r in &requests {
            let before = authorize(&set, r).effect();
            let after = authorize(&bigger, r).effect();
            if before == Effect::Deny {
                prop_assert_eq!(after, Effect::Deny);
            }
            if before == Effect::ApprovalRequired {
                prop_assert_ne!(after, Effect::Allow);
            }
        }
    }

    #[test]
    fn an_empty_set_denies_everything(r in request_strategy()) {
        let set = set_of(&[]);
        let d = authorize(&set, &r);
        prop_assert_eq!(d.effect(), Effect::Deny);
        prop_assert!(d.permit().is_none());
    }

    #[test]
    fn arbitrary_policy_text_never_panics(text in ".{0,200}") {
        let _ = compile(&catalog(), &[PolicySource::new("fuzz", text)], 1);
    }

    #[test]
    fn arbitrary_args_never_panic(key in "[a-z]{1,3}", n in any::<i64>(), s in ".{0,20}", f in any::<f64>()) {
        let set = set_of(&[r#"permit (principal, action, resource);"#.to_owned()]);
        for args in [json!({key.clone(): s.clone()}), json!({"n": n, "price": f}), json!({"n": n, "price": s}), json!({"n": f}), json!(s)] {
            let mut r = request("a", "other:op1", 0);
            r.args = args;
            let _ = authorize(&set, &r);
        }
    }
}

#[test]
fn large_general_sets_stay_unmerged_and_agree_with_full_scan() {
    let mut texts: Vec<String> = (0..70)
        .map(|k| format!("forbid (principal, action in Action::\"svc\", resource) when {{ context.args.n == {} }};", k + 100))
        .collect();
    texts.push(r#"permit (principal == Identity::"a", action == Action::"svc:op1", resource) when { context.args.n < 10 };"#.into());
    texts.push(r#"@approval("x") forbid (principal == Identity::"a", action, resource) when { context.args.n == 5 };"#.into());
    let set = set_of(&texts);
    for (id, n) in [
        ("a", 1),
        ("a", 5),
        ("a", 12),
        ("a", 150),
        ("a", 105),
        ("b", 1),
    ] {
        let r = request(id, "svc:op1", n);
        assert_eq!(
            authorize(&set, &r),
            authorize_full_scan(&set, &r),
            "{id} {n}"
        );
    }
    assert_eq!(
        authorize(&set, &request("a", "svc:op1", 1)).effect(),
        Effect::Allow
    );
    assert_eq!(
        authorize(&set, &request("a", "svc:op1", 5)).effect(),
        Effect::ApprovalRequired
    );
    assert_eq!(
        authorize(&set, &request("a", "svc:op1", 105)).effect(),
        Effect::Deny
    );
}

#[test]
fn compiled_sets_and_decisions_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<CompiledPolicies>();
    shareable::<Decision>();
    shareable::<Permit>();
}
