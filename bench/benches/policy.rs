//! Policy benchmark: `authorize()` (context building included) at 10 to 10,000 policies,
//! against bare `cedar_policy::Authorizer::is_authorized` on the full set and against regorus
//! evaluating an equivalent Rego policy on the same inputs.
//!
//! Besides criterion's means, it prints p50/p99 and decisions/s measured with its own loop.
//! Run: `cargo bench -p steward-bench --bench policy -- --warm-up-time 1 --measurement-time 3`
//! With `POLICY_BENCH_BREAKDOWN=1` it prints the cost of the parts of Cedar's inputs instead;
//! with `POLICY_BENCH_BREAKDOWN=authorize` it loops `authorize` for 3 s (for `perf record`).
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use jiff::tz::TimeZone;
use serde_json::json;
use steward_policy::{
    Catalog, CompiledPolicies, Effect, IdentityAttrs, PolicySource, Request, authorize, compile,
};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const AGENTS: usize = 100;
const SERVICES: usize = 5;
const OPS_PER_SERVICE: usize = 20;
const ACTIONS: usize = SERVICES * OPS_PER_SERVICE;
const GENERIC: usize = 3;

fn catalog() -> Catalog {
    let mut yaml = String::from("identity_labels: [env]\nservices:\n");
    for s in 0..SERVICES {
        yaml.push_str(&format!("  - name: svc{s}\n    operations:\n"));
        for o in 0..OPS_PER_SERVICE {
            yaml.push_str(&format!(
                "      - {{name: op{o}, class: write, args: [{{name: amount, type: long}}, {{name: to, type: string}}]}}\n"
            ));
        }
    }
    Catalog::from_yaml(&yaml).expect("catalog")
}

/// The i-th identity-and-action-specific grant: (agent, service, op, limit).
fn grant(i: usize) -> (usize, usize, usize, i64) {
    let action = (i / AGENTS) % ACTIONS;
    let limit = 1_000 + i64::try_from(i).unwrap_or(0);
    (
        i % AGENTS,
        action / OPS_PER_SERVICE,
        action % OPS_PER_SERVICE,
        limit,
    )
}

fn cedar_sources(n: usize) -> Vec<PolicySource> {
    let mut sources = vec![
        PolicySource::new(
            "risk",
            "forbid (principal, action, resource) when { context.risk_score > 90 };",
        ),
        PolicySource::new(
            "quarantine",
            r#"forbid (principal, action, resource) when { principal.hasTag("quarantine") };"#,
        ),
        PolicySource::new(
            "large",
            r#"@approval("large amounts") forbid (principal, action, resource) when { context.args.amount > 100000 };"#,
        ),
    ];
    for i in 0..n.saturating_sub(GENERIC) {
        let (agent, s, o, limit) = grant(i);
        sources.push(PolicySource::new(
            format!("grant-{i}"),
            format!(
                r#"permit (principal == Identity::"agent-{agent}", action == Action::"svc{s}:op{o}", resource) when {{ context.args.amount < {limit} && context.time.hour >= 6 }};"#
            ),
        ));
    }
    sources
}

const REGO_LINEAR: &str = r#"
package steward
import rego.v1
default allow := false
allow if {
  some g in data.grants
  g.principal == input.principal
  g.action == input.action
  input.args.amount < g.limit
  input.time.hour >= 6
  not forbidden
  not needs_approval
}
forbidden if input.risk_score > 90
forbidden if input.labels.quarantine
needs_approval if input.args.amount > 100000
"#;

const REGO_INDEXED: &str = r#"
package steward
import rego.v1
default allow := false
allow if {
  some limit in data.index[input.principal][input.action]
  input.args.amount < limit
  input.time.hour >= 6
  not forbidden
  not needs_approval
}
forbidden if input.risk_score > 90
forbidden if input.labels.quarantine
needs_approval if input.args.amount > 100000
"#;

fn rego_engine(n: usize, indexed: bool) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    let policy = if indexed { REGO_INDEXED } else { REGO_LINEAR };
    engine
        .add_policy("steward.rego".into(), policy.into())
        .expect("rego policy");
    let grants: Vec<_> = (0..n.saturating_sub(GENERIC)).map(grant).collect();
    let data = if indexed {
        let mut index = serde_json::Map::new();
        for (agent, s, o, limit) in grants {
            let by_action = index
                .entry(format!("agent-{agent}"))
                .or_insert_with(|| json!({}));
            if let Some(obj) = by_action.as_object_mut() {
                let list = obj
                    .entry(format!("svc{s}:op{o}"))
                    .or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(json!(limit));
                }
            }
        }
        json!({"index": index})
    } else {
        json!({"grants": grants.iter().map(|(agent, s, o, limit)| json!({
            "principal": format!("agent-{agent}"), "action": format!("svc{s}:op{o}"), "limit": limit
        })).collect::<Vec<_>>()})
    };
    engine
        .add_data(regorus::Value::from_json_str(&data.to_string()).expect("data"))
        .expect("add data");
    engine
}

fn request(catalog: &Catalog) -> Request {
    let mut r = Request::new(
        IdentityAttrs {
            id: "agent-0".into(),
            kind: "agent".into(),
            owner: "ops".into(),
            labels: [("env".to_owned(), "prod".to_owned())].into(),
        },
        "svc0:op0".parse().expect("op"),
        catalog,
        "2026-01-05T09:00:00Z".parse().expect("time"),
    );
    r.args = json!({"amount": 500, "to": "x@example.com"});
    r.tz = TimeZone::get("Europe/Berlin").expect("tz");
    r.risk_score = 10;
    r
}

/// Rego input from the same request: the same fields, time computed in the same zone.
fn rego_decide(engine: &mut regorus::Engine, r: &Request) -> bool {
    let local = r.tz.to_datetime(r.now);
    let input = json!({
        "principal": r.identity.id, "kind": r.identity.kind, "labels": r.identity.labels,
        "action": r.operation.to_string(), "args": r.args,
        "time": {"hour": local.hour(), "minute": local.minute(),
                 "weekday": local.weekday().to_monday_one_offset()},
        "risk_score": r.risk_score, "delegated": r.delegated,
    });
    engine.set_input_json(&input.to_string()).expect("input");
    engine
        .eval_rule("data.steward.allow".into())
        .map(|v| v == regorus::Value::from(true))
        .unwrap_or(false)
}

struct Latency {
    p50: Duration,
    p99: Duration,
    per_second: f64,
}

/// Times `f` one call at a time until `budget` is spent (at least 50 calls).
fn measure(budget: Duration, mut f: impl FnMut()) -> Latency {
    for _ in 0..50 {
        f();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 50 || (start.elapsed() < budget && samples.len() < 200_000) {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    let total: Duration = samples.iter().sum();
    samples.sort();
    let pick = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    Latency {
        p50: pick(0.50),
        p99: pick(0.99),
        per_second: samples.len() as f64 / total.as_secs_f64(),
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn latency_table() {
    let catalog = catalog();
    let r = request(&catalog);
    let budget = Duration::from_millis(1_500);
    println!(
        "\n| policies | authorize p50 µs | p99 µs | decisions/s (1/mean) | p50 µs, principal rebuilt every call | bare Cedar p50 µs | bare Cedar / ours | regorus linear p50 µs | regorus / ours | regorus / ours, rebuilt | regorus indexed p50 µs | regorus indexed / ours |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut p50_at_10 = None;
    let mut compile_times = Vec::new();
    for n in SIZES {
        let compile_start = Instant::now();
        let compiled: CompiledPolicies = compile(&catalog, &cedar_sources(n), 1).expect("compile");
        let compile_time = compile_start.elapsed();
        assert_eq!(authorize(&compiled, &r).effect(), Effect::Allow);
        // Alternate two requests so no engine can reuse a previous answer.
        let mut r2 = r.clone();
        r2.args = json!({"amount": 501, "to": "y@example.com"});
        let pair = [&r, &r2];
        let mut i = 0usize;
        let ours = measure(budget, || {
            i += 1;
            let req = pair.get(i % 2).copied().unwrap_or(&r);
            black_box(authorize(black_box(&compiled), black_box(req)));
        });
        // The worst case for the principal cache: the risk score changes on every call, so the
        // principal entity is rebuilt every time.
        let mut r3 = r.clone();
        r3.risk_score = 11;
        r3.args = r2.args.clone();
        let changing = [&r, &r3];
        let rebuilt = measure(budget, || {
            i += 1;
            let req = changing.get(i % 2).copied().unwrap_or(&r);
            black_box(authorize(black_box(&compiled), black_box(req)));
        });
        let (cedar_request, entities) = compiled.cedar_inputs(&r).expect("inputs");
        let authorizer = cedar_policy::Authorizer::new();
        let set = compiled.cedar_policy_set();
        assert_eq!(
            authorizer
                .is_authorized(&cedar_request, set, &entities)
                .decision(),
            cedar_policy::Decision::Allow
        );
        let cedar = measure(budget, || {
            black_box(authorizer.is_authorized(black_box(&cedar_request), set, &entities));
        });
        let mut linear = rego_engine(n, false);
        assert!(rego_decide(&mut linear, &r));
        let rego_linear = measure(budget, || {
            i += 1;
            let req = pair.get(i % 2).copied().unwrap_or(&r);
            black_box(rego_decide(&mut linear, black_box(req)));
        });
        let mut indexed = rego_engine(n, true);
        assert!(rego_decide(&mut indexed, &r));
        let rego_indexed = measure(budget, || {
            i += 1;
            let req = pair.get(i % 2).copied().unwrap_or(&r);
            black_box(rego_decide(&mut indexed, black_box(req)));
        });
        // Ratios of medians: how many more decisions per second we make than the other engine
        // at the median (robust to the preemption that skews means on a shared machine).
        println!(
            "| {n} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1}× | {:.1} | {:.1}× | {:.1}× | {:.1} | {:.1}× |",
            us(ours.p50),
            us(ours.p99),
            ours.per_second,
            us(rebuilt.p50),
            us(cedar.p50),
            us(cedar.p50) / us(ours.p50),
            us(rego_linear.p50),
            us(rego_linear.p50) / us(ours.p50),
            us(rego_linear.p50) / us(rebuilt.p50),
            us(rego_indexed.p50),
            us(rego_indexed.p50) / us(ours.p50),
        );
        compile_times.push(format!("{n}: {:.0} ms", compile_time.as_secs_f64() * 1e3));
        let base = *p50_at_10.get_or_insert(us(ours.p50));
        if n == 10_000 {
            println!("\np50 at 10,000 / p50 at 10: {:.2}", us(ours.p50) / base);
        }
    }
    println!(
        "compile (validate + slice) time by policy count: {}",
        compile_times.join(", ")
    );
}

fn criterion_benches(c: &mut Criterion) {
    let catalog = catalog();
    let r = request(&catalog);
    let mut group = c.benchmark_group("policy/authorize");
    for n in SIZES {
        let compiled = compile(&catalog, &cedar_sources(n), 1).expect("compile");
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| authorize(black_box(&compiled), black_box(&r)));
        });
    }
    group.finish();
    let compiled = compile(&catalog, &cedar_sources(1_000), 1).expect("compile");
    let (cedar_request, entities) = compiled.cedar_inputs(&r).expect("inputs");
    let authorizer = cedar_policy::Authorizer::new();
    c.bench_function("policy/bare_cedar_is_authorized/1000", |b| {
        b.iter(|| {
            authorizer.is_authorized(
                black_box(&cedar_request),
                compiled.cedar_policy_set(),
                &entities,
            )
        });
    });
}

fn breakdown() {
    let catalog = catalog();
    let r = request(&catalog);
    let compiled = compile(&catalog, &cedar_sources(10), 1).expect("compile");
    if std::env::var("POLICY_BENCH_BREAKDOWN").as_deref() == Ok("compile") {
        black_box(compile(&catalog, &cedar_sources(10_000), 1).expect("compile"));
        return;
    }
    if std::env::var("POLICY_BENCH_BREAKDOWN").as_deref() == Ok("authorize") {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            black_box(authorize(black_box(&compiled), black_box(&r)));
        }
        return;
    }
    let budget = Duration::from_millis(1_000);
    let inputs = measure(budget, || {
        black_box(compiled.cedar_inputs(black_box(&r)));
    });
    let (cedar_request, entities) = compiled.cedar_inputs(&r).expect("inputs");
    let small = cedar_policy::PolicySet::new();
    let authorizer = cedar_policy::Authorizer::new();
    let empty = measure(budget, || {
        black_box(authorizer.is_authorized(&cedar_request, &small, &entities));
    });
    let whole = measure(budget, || {
        black_box(authorize(&compiled, &r));
    });
    use cedar_policy::{Context, Entities, Entity, EntityUid, RestrictedExpression as RE};
    let ctx_plain = measure(budget, || {
        let rec = RE::new_record([
            ("a".to_owned(), RE::new_long(1)),
            ("b".to_owned(), RE::new_string("x".into())),
        ])
        .expect("r");
        black_box(
            Context::from_pairs([
                ("args".to_owned(), rec),
                ("risk".to_owned(), RE::new_long(3)),
            ])
            .expect("c"),
        );
    });
    let ctx_dt = measure(budget, || {
        black_box(
            Context::from_pairs([(
                "now".to_owned(),
                RE::new_datetime("2026-01-05T09:00:00.000Z"),
            )])
            .expect("c"),
        );
    });
    let uid: EntityUid = r#"Identity::"agent-0""#.parse().expect("uid");
    let act: EntityUid = r#"Action::"svc0:op0""#.parse().expect("uid");
    let grp: EntityUid = r#"Action::"svc0""#.parse().expect("uid");
    let ent = measure(budget, || {
        black_box(
            Entity::new_with_tags(
                uid.clone(),
                [("kind".to_owned(), RE::new_string("agent".into()))],
                [],
                [("env".to_owned(), RE::new_string("prod".into()))],
            )
            .expect("e"),
        );
    });
    let ents = measure(budget, || {
        let e = Entity::new_no_attrs(uid.clone(), Default::default());
        let a = Entity::new_no_attrs(act.clone(), [grp.clone()].into());
        let g = Entity::new_no_attrs(grp.clone(), Default::default());
        black_box(Entities::from_entities([e, a, g], None).expect("es"));
    });
    let ctx_real = measure(budget, || {
        let args = RE::new_record([
            ("amount".to_owned(), RE::new_long(500)),
            ("to".to_owned(), RE::new_string("x@example.com".into())),
        ])
        .expect("r");
        let local = r.tz.to_datetime(r.now);
        let time = RE::new_record([
            ("hour".to_owned(), RE::new_long(i64::from(local.hour()))),
            ("minute".to_owned(), RE::new_long(i64::from(local.minute()))),
            (
                "weekday".to_owned(),
                RE::new_long(i64::from(local.weekday().to_monday_one_offset())),
            ),
            (
                "date".to_owned(),
                RE::new_string(format!(
                    "{:04}-{:02}-{:02}",
                    local.year(),
                    local.month(),
                    local.day()
                )),
            ),
        ])
        .expect("t");
        black_box(
            Context::from_pairs([
                ("args".to_owned(), args),
                ("time".to_owned(), time),
                ("risk_score".to_owned(), RE::new_long(10)),
            ])
            .expect("c"),
        );
    });
    let ent_real = measure(budget, || {
        let labels =
            RE::new_record([("env".to_owned(), RE::new_string("prod".into()))]).expect("l");
        let e = Entity::new_with_tags(
            uid.clone(),
            [
                ("kind".to_owned(), RE::new_string("agent".into())),
                ("owner".to_owned(), RE::new_string("ops".into())),
                ("risk_score".to_owned(), RE::new_long(10)),
                ("labels".to_owned(), labels),
            ],
            [],
            [("env".to_owned(), RE::new_string("prod".into()))],
        )
        .expect("e");
        black_box(Entities::from_entities([e], None).expect("es"));
    });
    println!(
        "real context {:.1} µs, real principal entities {:.1} µs",
        us(ctx_real.p50),
        us(ent_real.p50)
    );
    println!(
        "context 3 attrs {:.1} µs, context datetime only {:.1} µs, entity {:.1} µs, entities of 3 {:.1} µs",
        us(ctx_plain.p50),
        us(ctx_dt.p50),
        us(ent.p50),
        us(ents.p50)
    );
    println!(
        "breakdown at 10 policies: cedar_inputs p50 {:.1} µs, is_authorized on an empty set p50 {:.1} µs, authorize p50 {:.1} µs",
        us(inputs.p50),
        us(empty.p50),
        us(whole.p50)
    );
}

fn main() {
    if std::env::var_os("POLICY_BENCH_BREAKDOWN").is_some() {
        breakdown();
        return;
    }
    latency_table();
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
