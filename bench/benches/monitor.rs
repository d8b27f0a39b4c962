//! Per-call cost of `Monitor::observe` on a warmed baseline (the hot path the gateway runs on
//! every call), next to the no-alert fast path's building blocks.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use steward_monitor::{CallEvent, Monitor, MonitorConfig, Outcome};

const MIN: i64 = 60_000;
const DAY: i64 = 24 * 60 * MIN;
const OPS: [&str; 8] = [
    "repos.get",
    "issues.list",
    "issues.create",
    "pulls.get",
    "pulls.list",
    "contents.get",
    "search.code",
    "user.get",
];

fn event(identity: &str, at_ms: i64, n: usize) -> CallEvent {
    CallEvent {
        request_id: Some(format!("req-{n:012}")),
        identity_id: identity.to_owned(),
        credential_id: "key_bench".to_owned(),
        service: "github".to_owned(),
        operation: OPS
            .get(n % OPS.len())
            .copied()
            .unwrap_or("repos.get")
            .to_owned(),
        source_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 1, (n % 2) as u8, 7))),
        outcome: if n.is_multiple_of(50) {
            Outcome::Denied
        } else {
            Outcome::Allowed
        },
        response_bytes: 2_000 + (n as u64 % 7) * 1_000,
        at_ms,
    }
}

/// 1,000 identities warmed past their learning period: a call every ~97 minutes for nine
/// days, then one a minute on the tenth.
fn warmed() -> (Monitor, i64) {
    let monitor = Monitor::new(MonitorConfig::default()).unwrap_or_else(|e| unreachable_config(&e));
    let identities: Vec<String> = (0..1_000).map(|i| format!("idn_{i:05}")).collect();
    let mut t = 0;
    let mut n: usize = 0;
    while t < 10 * DAY {
        for identity in &identities {
            if n.is_multiple_of(97) || t > 9 * DAY {
                monitor.observe(&event(identity, t, n));
            }
            n += 1;
        }
        t += MIN;
    }
    (monitor, t)
}

fn unreachable_config(error: &steward_monitor::MonitorError) -> ! {
    eprintln!("default config rejected: {error}");
    std::process::exit(1)
}

fn bench(c: &mut Criterion) {
    let (monitor, start) = warmed();
    let identities: Vec<String> = (0..1_000).map(|i| format!("idn_{i:05}")).collect();
    // Pre-built events so the measurement is `observe` alone, not event construction.
    let events: Vec<CallEvent> = (0..4_096)
        .map(|n| {
            event(
                identities
                    .get(n % identities.len())
                    .map_or("idn_00000", |s| s),
                start + n as i64 * 50,
                n,
            )
        })
        .collect();
    let mut group = c.benchmark_group("monitor");
    let mut i = 0usize;
    let mut clock = start;
    group.bench_function("observe_warmed_no_alert", |b| {
        b.iter(|| {
            let template = events
                .get(i % events.len())
                .unwrap_or_else(|| unreachable_event());
            i += 1;
            clock += 20;
            let mut ev = template.clone();
            ev.at_ms = clock;
            black_box(monitor.observe(black_box(&ev)))
        })
    });
    group.bench_function("event_clone_only", |b| {
        b.iter(|| {
            let template = events
                .get(i % events.len())
                .unwrap_or_else(|| unreachable_event());
            i += 1;
            black_box(template.clone())
        })
    });
    group.bench_function("risk_score_lookup", |b| {
        b.iter(|| {
            i += 1;
            black_box(monitor.risk_score(
                identities.get(i % identities.len()).map_or("x", |s| s),
                clock,
            ))
        })
    });
    group.finish();
}

fn unreachable_event() -> &'static CallEvent {
    eprintln!("no events prepared");
    std::process::exit(1)
}

criterion_group!(benches, bench);
criterion_main!(benches);
