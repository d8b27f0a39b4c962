//! Traffic simulator for behavioural monitoring.
//!
//! Drives `steward_monitor::Monitor` with hundreds of identities over several simulated
//! weeks on a controlled clock (no sleeps; deterministic from `--seed`). Identities follow
//! business-hours, 24/7-pipeline or bursty-batch patterns with natural drift (new
//! operations and services, network migrations, working late, ad-hoc runs, holidays).
//! Labelled attacks are injected; the labels stay in the simulator, the monitor never sees
//! them. An alert counts as a detection only if its evidence cites an attack call (by
//! request id) or the attacker's network.
//!
//! ```text
//! cargo run --release -p steward-bench --bin monitor_sim -- --seed 42 --identities 300 --days 28
//! ```

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use steward_monitor::{BreakerAction, CallEvent, Monitor, MonitorConfig, NetworkKey, Outcome};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2024-01-01 00:00 UTC, a Monday.
const EPOCH: i64 = 1_704_067_200_000;
/// Days (from the start) that business-hours identities take off.
const HOLIDAYS: [i64; 2] = [11, 21];

/// SplitMix64: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Exponential inter-arrival time in minutes for `rate` events per minute.
    fn exp_minutes(&mut self, rate: f64) -> f64 {
        -(1.0 - self.unit()).ln() / rate.max(1e-9)
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Business,
    Pipeline,
    Batch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    NightTheft,
    Exfiltration,
    DenyProbe,
    SlowAbuse,
    Pivot,
}

impl Scenario {
    const ALL: [Self; 5] = [
        Self::NightTheft,
        Self::Exfiltration,
        Self::DenyProbe,
        Self::SlowAbuse,
        Self::Pivot,
    ];
    fn name(self) -> &'static str {
        match self {
            Self::NightTheft => "credential theft, at night, new network",
            Self::Exfiltration => "exfiltration burst",
            Self::DenyProbe => "permission-probing deny burst",
            Self::SlowAbuse => "slow low-volume abuse",
            Self::Pivot => "pivot to new services",
        }
    }
    fn is_burst(self) -> bool {
        !matches!(self, Self::SlowAbuse)
    }
}

#[derive(Debug, Clone)]
struct Op {
    service: String,
    operation: String,
    weight: f64,
    median_bytes: f64,
}

#[derive(Debug, Clone)]
struct Profile {
    id: String,
    kind: Kind,
    credential: String,
    networks: Vec<[u8; 3]>,
    ops: Vec<Op>,
    deny_p: f64,
    approval_p: f64,
    rate_per_min: f64,
    start_min: f64,
    end_min: f64,
    runs: Vec<f64>,
    run_size: f64,
    run_minutes: f64,
    weekdays_only: bool,
}

#[derive(Debug, Clone)]
struct Attack {
    scenario: Scenario,
    start: i64,
    end: i64,
    network: Option<String>,
}

struct SimCall {
    event: CallEvent,
}

fn is_weekday(day: i64) -> bool {
    day.rem_euclid(7) < 5
}

fn make_profile(index: usize, rng: &mut Rng) -> Profile {
    let kind = match index % 10 {
        0..=3 => Kind::Business,
        4..=6 => Kind::Pipeline,
        _ => Kind::Batch,
    };
    let service_count = 1 + rng.below(4);
    let mut ops = Vec::new();
    for _ in 0..service_count {
        let service = format!("svc{}", rng.below(30));
        if ops.iter().any(|o: &Op| o.service == service) {
            continue;
        }
        for k in 0..(3 + rng.below(8)) {
            ops.push(Op {
                service: service.clone(),
                operation: format!("op{k}"),
                weight: 1.0 / (1.0 + k as f64),
                median_bytes: match kind {
                    Kind::Batch => rng.range(2_000.0, 400_000.0),
                    _ => rng.range(300.0, 100_000.0),
                },
            });
        }
    }
    let network_count = match kind {
        Kind::Business => 1 + usize::from(rng.chance(0.2)),
        Kind::Pipeline => 1 + rng.below(3),
        Kind::Batch => 1 + rng.below(2),
    };
    let networks = (0..network_count)
        .map(|_| [10, rng.below(256) as u8, rng.below(256) as u8])
        .collect();
    let runs = (0..(1 + rng.below(4)))
        .map(|_| rng.range(0.0, 23.0 * 60.0))
        .collect();
    Profile {
        id: format!("idn_{index:04}"),
        kind,
        credential: format!("key_{index:04}"),
        networks,
        ops,
        deny_p: rng.range(0.0, 0.03),
        approval_p: if rng.chance(0.3) {
            rng.range(0.0, 0.02)
        } else {
            0.0
        },
        rate_per_min: match kind {
            Kind::Business => rng.range(0.3, 3.0),
            Kind::Pipeline => rng.range(0.1, 4.0),
            Kind::Batch => 0.0,
        },
        start_min: rng.range(7.0 * 60.0, 9.5 * 60.0),
        end_min: rng.range(16.0 * 60.0, 19.0 * 60.0),
        runs,
        run_size: rng.range(100.0, 2_500.0),
        run_minutes: rng.range(2.0, 20.0),
        weekdays_only: rng.chance(0.3),
    }
}

fn pick_op<'a>(ops: &'a [Op], rng: &mut Rng) -> Option<&'a Op> {
    let total: f64 = ops.iter().map(|o| o.weight).sum();
    let mut target = rng.unit() * total;
    for op in ops {
        target -= op.weight;
        if target <= 0.0 {
            return Some(op);
        }
    }
    ops.last()
}

fn ip(net: [u8; 3], rng: &mut Rng) -> IpAddr {
    let [a, b, c] = net;
    IpAddr::V4(Ipv4Addr::new(a, b, c, 1 + rng.below(254) as u8))
}

struct Generator<'a> {
    profile: &'a Profile,
    calls: Vec<SimCall>,
    counter: u64,
}

impl Generator<'_> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        at_ms: i64,
        op: &Op,
        net: [u8; 3],
        outcome: Outcome,
        bytes: u64,
        attack: bool,
        rng: &mut Rng,
    ) {
        self.counter += 1;
        let prefix = if attack { "atk" } else { "req" };
        self.calls.push(SimCall {
            event: CallEvent {
                request_id: Some(format!("{prefix}-{}-{}", self.profile.id, self.counter)),
                identity_id: self.profile.id.clone(),
                credential_id: self.profile.credential.clone(),
                service: op.service.clone(),
                operation: op.operation.clone(),
                source_ip: Some(ip(net, rng)),
                outcome,
                response_bytes: bytes,
                at_ms,
            },
        });
    }

    fn legit(&mut self, at_ms: i64, ops: &[Op], networks: &[[u8; 3]], rng: &mut Rng) {
        let Some(op) = pick_op(ops, rng) else { return };
        let op = op.clone();
        let net = networks
            .get(rng.below(networks.len()))
            .copied()
            .unwrap_or([10, 0, 0]);
        let roll = rng.unit();
        let (outcome, bytes) = if roll < self.profile.deny_p {
            (Outcome::Denied, 0)
        } else if roll < self.profile.deny_p + self.profile.approval_p {
            (Outcome::ApprovalRequired, 0)
        } else {
            (Outcome::Allowed, rng.lognormal(op.median_bytes, 0.7) as u64)
        };
        self.push(at_ms, &op, net, outcome, bytes, false, rng);
    }
}

/// Legitimate traffic for the whole period, with drift.
fn generate_legit(profile: &Profile, days: i64, rng: &mut Rng) -> Vec<SimCall> {
    let mut generator = Generator {
        profile,
        calls: Vec::new(),
        counter: 0,
    };
    let mut ops = profile.ops.clone();
    let mut networks = profile.networks.clone();
    for day in 0..days {
        let day_start = EPOCH + day * DAY;
        // Drift: a new operation of a known service, a new service, a network migration.
        if day > 0
            && rng.chance(0.03)
            && let Some(base) = ops.get(rng.below(ops.len())).cloned()
        {
            ops.push(Op {
                operation: format!("new{day}"),
                weight: base.weight * 0.5,
                ..base
            });
        }
        if day > 0 && rng.chance(0.005) {
            let service = format!("svc{}", 30 + rng.below(20));
            for k in 0..2 {
                ops.push(Op {
                    service: service.clone(),
                    operation: format!("op{k}"),
                    weight: 0.3,
                    median_bytes: 5_000.0,
                });
            }
        }
        if day > 0
            && rng.chance(0.01)
            && let Some(first) = networks.first_mut()
        {
            *first = [10, rng.below(256) as u8, rng.below(256) as u8];
        }
        match profile.kind {
            Kind::Business => {
                if !is_weekday(day) || HOLIDAYS.contains(&day) {
                    continue;
                }
                let start = profile.start_min + 15.0 * rng.normal();
                let mut end = profile.end_min + 15.0 * rng.normal();
                if rng.chance(0.03) {
                    end += rng.range(60.0, 120.0); // working late
                }
                let rate = profile.rate_per_min * rng.range(0.7, 1.3);
                let mut minute = start + rng.exp_minutes(rate);
                while minute < end {
                    generator.legit(day_start + (minute * 60_000.0) as i64, &ops, &networks, rng);
                    minute += rng.exp_minutes(rate);
                }
            }
            Kind::Pipeline => {
                let max_rate = profile.rate_per_min * 1.3;
                let mut minute = rng.exp_minutes(max_rate);
                while minute < 24.0 * 60.0 {
                    let diurnal =
                        1.0 + 0.3 * (std::f64::consts::TAU * (minute / 60.0 - 8.0) / 24.0).sin();
                    if rng.chance(diurnal / 1.3) {
                        generator.legit(
                            day_start + (minute * 60_000.0) as i64,
                            &ops,
                            &networks,
                            rng,
                        );
                    }
                    minute += rng.exp_minutes(max_rate);
                }
            }
            Kind::Batch => {
                if profile.weekdays_only && !is_weekday(day) {
                    continue;
                }
                let mut runs: Vec<(f64, f64)> = profile
                    .runs
                    .iter()
                    .map(|r| (r + 5.0 * rng.normal(), 1.0))
                    .collect();
                if rng.chance(0.02) {
                    runs.push((rng.range(0.0, 23.0 * 60.0), 0.3)); // an ad-hoc run
                }
                for (run_start, scale) in runs {
                    let mut size = profile.run_size * scale * rng.range(0.7, 1.3);
                    if rng.chance(0.05) {
                        size *= 2.0; // an occasional big batch
                    }
                    let duration = profile.run_minutes * rng.range(0.8, 1.2);
                    for _ in 0..size as usize {
                        let minute = run_start + rng.unit() * duration;
                        generator.legit(
                            day_start + (minute * 60_000.0) as i64,
                            &ops,
                            &networks,
                            rng,
                        );
                    }
                }
            }
        }
    }
    generator.calls
}

/// A time at which the identity is normally active on or after `day`.
fn active_time(profile: &Profile, mut day: i64, rng: &mut Rng) -> i64 {
    match profile.kind {
        Kind::Business => {
            while !is_weekday(day) || HOLIDAYS.contains(&day) {
                day += 1;
            }
            EPOCH + day * DAY + ((profile.start_min + rng.range(60.0, 240.0)) * 60_000.0) as i64
        }
        Kind::Pipeline => EPOCH + day * DAY + (rng.range(0.0, 23.0) * HOUR as f64) as i64,
        Kind::Batch => {
            while profile.weekdays_only && !is_weekday(day) {
                day += 1;
            }
            let run = profile.runs.first().copied().unwrap_or(600.0);
            EPOCH + day * DAY + ((run + 2.0) * 60_000.0) as i64
        }
    }
}

fn generate_attack(
    profile: &Profile,
    scenario: Scenario,
    day: i64,
    rng: &mut Rng,
    calls: &mut Vec<SimCall>,
) -> Attack {
    let mut generator = Generator {
        profile,
        calls: Vec::new(),
        counter: 1_000_000,
    };
    let home = profile.networks.first().copied().unwrap_or([10, 0, 0]);
    let attacker = [185, rng.below(256) as u8, rng.below(256) as u8];
    let attacker_net = NetworkKey::of(ip(attacker, rng)).to_string();
    let known = |rng: &mut Rng| pick_op(&profile.ops, rng).cloned();
    let (start, end, network) = match scenario {
        Scenario::NightTheft => {
            let start = EPOCH + day * DAY + (rng.range(1.0, 4.0) * HOUR as f64) as i64;
            let rate = rng.range(3.0, 15.0);
            let end = start + (rng.range(20.0, 40.0) * 60_000.0) as i64;
            let mut t = start;
            while t < end {
                if let Some(op) = known(rng) {
                    let bytes = rng.lognormal(op.median_bytes * 2.0, 0.7) as u64;
                    generator.push(t, &op, attacker, Outcome::Allowed, bytes, true, rng);
                }
                t += (rng.exp_minutes(rate) * 60_000.0) as i64;
            }
            (start, end, Some(attacker_net))
        }
        Scenario::Exfiltration => {
            let start = active_time(profile, day, rng);
            let rate = rng.range(20.0, 60.0);
            let end = start + (rng.range(5.0, 10.0) * 60_000.0) as i64;
            let mut t = start;
            while t < end {
                if let Some(op) = known(rng) {
                    let median = rng.range(2.0, 8.0) * 1024.0 * 1024.0;
                    let bytes = rng.lognormal(median, 0.5) as u64;
                    generator.push(t, &op, home, Outcome::Allowed, bytes, true, rng);
                }
                t += (rng.exp_minutes(rate) * 60_000.0) as i64;
            }
            (start, end, None)
        }
        Scenario::DenyProbe => {
            let start = active_time(profile, day, rng);
            let rate = rng.range(10.0, 30.0);
            let end = start + (rng.range(3.0, 8.0) * 60_000.0) as i64;
            let deny_share = rng.range(0.85, 1.0);
            let mut t = start;
            let mut n = 0;
            while t < end {
                n += 1;
                let service = match profile.ops.get(rng.below(profile.ops.len())) {
                    Some(op) if rng.chance(0.5) => op.service.clone(),
                    _ => format!("svc{}", rng.below(60)),
                };
                let op = Op {
                    service,
                    operation: format!("admin.probe{n}"),
                    weight: 1.0,
                    median_bytes: 0.0,
                };
                let outcome = if rng.chance(deny_share) {
                    Outcome::Denied
                } else {
                    Outcome::Allowed
                };
                generator.push(t, &op, home, outcome, 0, true, rng);
                t += (rng.exp_minutes(rate) * 60_000.0) as i64;
            }
            (start, end, None)
        }
        Scenario::SlowAbuse => {
            let start = EPOCH + day * DAY + (rng.range(0.0, 23.0) * HOUR as f64) as i64;
            let end = start + 2 * DAY;
            let mean_gap = rng.range(10.0, 40.0);
            let mut t = start;
            while t < end {
                if let Some(op) = known(rng) {
                    let bytes = rng.lognormal(op.median_bytes, 0.7) as u64;
                    generator.push(t, &op, attacker, Outcome::Allowed, bytes, true, rng);
                }
                t += (rng.exp_minutes(1.0 / mean_gap) * 60_000.0) as i64;
            }
            (start, end, Some(attacker_net))
        }
        Scenario::Pivot => {
            let start = active_time(profile, day, rng);
            let rate = rng.range(5.0, 20.0);
            let end = start + (rng.range(10.0, 20.0) * 60_000.0) as i64;
            let services: Vec<String> = (0..(3 + rng.below(4)))
                .map(|k| format!("pivot{k}-{}", rng.below(1000)))
                .collect();
            let mut t = start;
            while t < end {
                let service = services
                    .get(rng.below(services.len()))
                    .cloned()
                    .unwrap_or_default();
                let op = Op {
                    service,
                    operation: format!("op{}", rng.below(5)),
                    weight: 1.0,
                    median_bytes: 20_000.0,
                };
                let bytes = rng.lognormal(op.median_bytes, 0.7) as u64;
                generator.push(t, &op, home, Outcome::Allowed, bytes, true, rng);
                t += (rng.exp_minutes(rate) * 60_000.0) as i64;
            }
            (start, end, None)
        }
    };
    calls.append(&mut generator.calls);
    Attack {
        scenario,
        start,
        end,
        network,
    }
}

#[derive(Default)]
struct Totals {
    calls: u64,
    observe_nanos: u128,
    false_alerts: u64,
    false_alerts_by_detector: std::collections::BTreeMap<String, u64>,
    false_suspensions: u64,
    false_suspension_reasons: Vec<String>,
    monitored_identity_days: f64,
    identity_days: f64,
}

struct AttackResult {
    scenario: Scenario,
    detect_ms: Option<i64>,
    suspend_ms: Option<i64>,
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

fn fmt_secs(ms: Option<i64>) -> String {
    match ms {
        None => "–".into(),
        Some(ms) if ms < 120_000 => format!("{:.0} s", ms as f64 / 1000.0),
        Some(ms) if ms < 2 * HOUR => format!("{:.1} min", ms as f64 / 60_000.0),
        Some(ms) => format!("{:.1} h", ms as f64 / HOUR as f64),
    }
}

struct Args {
    seed: u64,
    identities: usize,
    days: i64,
    out: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seed: 42,
        identities: 300,
        days: 28,
        out: Some("bench/results/monitor.md".into()),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("bad `--seed`: {e}"))?,
            "--identities" => {
                args.identities = value()?
                    .parse()
                    .map_err(|e| format!("bad `--identities`: {e}"))?
            }
            "--days" => args.days = value()?.parse().map_err(|e| format!("bad `--days`: {e}"))?,
            "--out" => args.out = Some(value()?),
            "--no-out" => args.out = None,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if args.days < 14 {
        return Err("`--days` must be at least 14 (attacks start after day 9)".into());
    }
    Ok(args)
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let config = MonitorConfig::default();
    let learning_days = config.learning.period_ms as f64 / DAY as f64;
    let monitor = Monitor::new(config).map_err(|e| e.to_string())?;

    // Attack assignment: half the identities, an equal share per scenario.
    let mut order: Vec<usize> = (0..args.identities).collect();
    let mut shuffle = Rng::new(args.seed ^ 0xa77a_c4ed);
    for i in (1..order.len()).rev() {
        order.swap(i, shuffle.below(i + 1));
    }
    let per_scenario = args.identities / 2 / Scenario::ALL.len();
    let mut assignment: Vec<Option<Scenario>> = vec![None; args.identities];
    for (slot, index) in order
        .iter()
        .take(per_scenario * Scenario::ALL.len())
        .enumerate()
    {
        if let Some(a) = assignment.get_mut(*index) {
            *a = Scenario::ALL.get(slot % Scenario::ALL.len()).copied();
        }
    }

    // `STEWARD_SIM_TRACE=idn_0005` prints that identity's profile, attack and alerts.
    let trace = std::env::var("STEWARD_SIM_TRACE").ok();
    let mut totals = Totals::default();
    let mut results: Vec<AttackResult> = Vec::new();
    let mut kinds = [0usize; 3];
    for index in 0..args.identities {
        let mut rng = Rng::new(
            args.seed.wrapping_mul(0x1000_0000_01b3) ^ (index as u64).wrapping_mul(0x9e37_79b9),
        );
        let profile = make_profile(index, &mut rng);
        if let Some(k) = kinds.get_mut(profile.kind as usize) {
            *k += 1;
        }
        let mut calls = generate_legit(&profile, args.days, &mut rng);
        let attack = assignment.get(index).copied().flatten().map(|scenario| {
            let day = 10 + rng.below((args.days - 13).max(1) as usize) as i64;
            generate_attack(&profile, scenario, day, &mut rng, &mut calls)
        });
        calls.sort_by_key(|c| c.event.at_ms);
        totals.identity_days += args.days as f64;
        totals.monitored_identity_days += (args.days as f64 - learning_days).max(0.0);

        // Replay on the controlled clock. Suspended identities are rejected before the
        // monitor (as the gateway would) until reinstated an hour later, or an hour after
        // the attack for an attacked identity.
        let mut reported = Vec::new();
        let mut suspended_until: Option<i64> = None;
        let started = Instant::now();
        for call in &calls {
            let now = call.event.at_ms;
            if let Some(until) = suspended_until {
                if now < until {
                    continue;
                }
                monitor.reinstate(&profile.id, until);
                suspended_until = None;
            }
            let observation = monitor.observe(&call.event);
            totals.calls += 1;
            if let Some(BreakerAction::Suspend { .. }) = observation.breaker {
                let in_attack = attack
                    .as_ref()
                    .is_some_and(|a| now >= a.start && now <= a.end + HOUR);
                suspended_until = Some(match (&attack, in_attack) {
                    (Some(a), true) => a.end + HOUR,
                    _ => now + HOUR,
                });
            }
            if !observation.alerts.is_empty() || observation.breaker.is_some() {
                reported.push(observation);
            }
        }
        totals.observe_nanos += started.elapsed().as_nanos();

        if trace.as_deref() == Some(profile.id.as_str()) {
            eprintln!("{profile:?}\nattack: {attack:?}");
            for observation in &reported {
                for alert in &observation.alerts {
                    eprintln!(
                        "{} {} {} score {}: {}",
                        alert.at_ms, alert.detector, alert.severity, alert.score, alert.summary
                    );
                }
                if let Some(b) = &observation.breaker {
                    eprintln!("  breaker: {b:?}");
                }
            }
        }
        let mut result = attack.as_ref().map(|a| AttackResult {
            scenario: a.scenario,
            detect_ms: None,
            suspend_ms: None,
        });
        for observation in reported {
            for alert in &observation.alerts {
                let attributed = attack.as_ref().is_some_and(|a| {
                    alert.evidence.iter().any(|e| {
                        e.request_id
                            .as_deref()
                            .is_some_and(|r| r.starts_with("atk-"))
                            || a.network
                                .as_deref()
                                .is_some_and(|n| e.description.contains(n))
                    }) || a
                        .network
                        .as_deref()
                        .is_some_and(|n| alert.summary.contains(n))
                });
                match (&mut result, &attack, attributed) {
                    (Some(r), Some(a), true) => {
                        r.detect_ms.get_or_insert(alert.at_ms - a.start);
                    }
                    _ => {
                        if std::env::var_os("STEWARD_SIM_TRACE_FALSE").is_some() {
                            eprintln!(
                                "false {} {:?} {} {}: {}",
                                profile.id,
                                profile.kind,
                                alert.at_ms,
                                alert.detector,
                                alert.summary
                            );
                        }
                        totals.false_alerts += 1;
                        *totals
                            .false_alerts_by_detector
                            .entry(alert.detector.to_string())
                            .or_default() += 1;
                    }
                }
            }
            if let Some(BreakerAction::Suspend { reason }) = &observation.breaker {
                let at = observation.alerts.first().map_or(0, |a| a.at_ms);
                match (&mut result, &attack) {
                    (Some(r), Some(a)) if at >= a.start && at <= a.end + HOUR => {
                        r.suspend_ms.get_or_insert(at - a.start);
                    }
                    _ => {
                        totals.false_suspensions += 1;
                        if totals.false_suspension_reasons.len() < 5 {
                            totals
                                .false_suspension_reasons
                                .push(format!("{} ({:?}): {reason}", profile.id, profile.kind));
                        }
                    }
                }
            }
        }
        if let Some(r) = &result
            && (r.detect_ms.is_none() || (r.scenario.is_burst() && r.suspend_ms.is_none()))
        {
            eprintln!(
                "{} {:?} `{}`: detected {:?}, suspended {:?}",
                profile.id,
                profile.kind,
                r.scenario.name(),
                r.detect_ms,
                r.suspend_ms
            );
        }
        results.extend(result);
    }

    let report = render(&args, &totals, &results, kinds, learning_days);
    print!("{report}");
    if let Some(path) = &args.out {
        // Keep any hand-written criterion section below the simulator's output.
        let keep = std::fs::read_to_string(path)
            .ok()
            .and_then(|old| {
                old.find("\n## Criterion")
                    .map(|i| old.get(i..).unwrap_or_default().to_owned())
            })
            .unwrap_or_default();
        std::fs::write(path, format!("{report}{keep}"))
            .map_err(|e| format!("cannot write `{path}`: {e}"))?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

fn render(
    args: &Args,
    totals: &Totals,
    results: &[AttackResult],
    kinds: [usize; 3],
    learning_days: f64,
) -> String {
    let mut out = String::new();
    let per_k_days = |n: u64, days: f64| 1000.0 * n as f64 / days.max(1.0);
    let _ = writeln!(out, "# Behavioural monitoring: simulator results\n");
    let _ = writeln!(
        out,
        "Command: `cargo run --release -p steward-bench --bin monitor_sim -- --seed {} --identities {} --days {}`  ",
        args.seed, args.identities, args.days
    );
    let _ = writeln!(
        out,
        "Identities: {} ({} business-hours, {} 24/7 pipelines, {} bursty batch), {} simulated days, learning period {:.0} days, default `MonitorConfig`. Calls observed: {}.\n",
        args.identities,
        kinds.first().unwrap_or(&0),
        kinds.get(1).unwrap_or(&0),
        kinds.get(2).unwrap_or(&0),
        args.days,
        learning_days,
        totals.calls
    );
    let _ = writeln!(
        out,
        "| Scenario | Injected | Detected | Median detect | p95 detect | Suspended | Median suspend | p95 suspend |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut all_detect = Vec::new();
    let mut burst_suspend = Vec::new();
    let mut burst_attacks = 0usize;
    let mut detected_total = 0;
    for scenario in Scenario::ALL {
        let rows: Vec<&AttackResult> = results.iter().filter(|r| r.scenario == scenario).collect();
        let mut detect: Vec<i64> = rows.iter().filter_map(|r| r.detect_ms).collect();
        let mut suspend: Vec<i64> = rows.iter().filter_map(|r| r.suspend_ms).collect();
        detect.sort_unstable();
        suspend.sort_unstable();
        detected_total += detect.len();
        all_detect.extend(detect.iter().copied());
        if scenario.is_burst() {
            burst_suspend.extend(suspend.iter().copied());
            burst_attacks += rows.len();
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} ({:.0}%) | {} | {} | {} ({:.0}%) | {} | {} |",
            scenario.name(),
            rows.len(),
            detect.len(),
            100.0 * detect.len() as f64 / rows.len().max(1) as f64,
            fmt_secs(percentile(&detect, 0.5)),
            fmt_secs(percentile(&detect, 0.95)),
            suspend.len(),
            100.0 * suspend.len() as f64 / rows.len().max(1) as f64,
            fmt_secs(percentile(&suspend, 0.5)),
            fmt_secs(percentile(&suspend, 0.95)),
        );
    }
    all_detect.sort_unstable();
    burst_suspend.sort_unstable();
    let _ = writeln!(
        out,
        "| **all** | {} | {} ({:.1}%) | {} | {} | | | |\n",
        results.len(),
        detected_total,
        100.0 * detected_total as f64 / results.len().max(1) as f64,
        fmt_secs(percentile(&all_detect, 0.5)),
        fmt_secs(percentile(&all_detect, 0.95)),
    );
    let ns_per_call = totals.observe_nanos as f64 / totals.calls.max(1) as f64;
    let _ = writeln!(out, "| Measure | Value | Target |");
    let _ = writeln!(out, "|---|---:|---:|");
    let _ = writeln!(
        out,
        "| attacks detected | {:.1}% | ≥ 95% |",
        100.0 * detected_total as f64 / results.len().max(1) as f64
    );
    let _ = writeln!(
        out,
        "| false alerts per 1,000 identity-days (monitored days / all days) | {:.1} / {:.1} | – |",
        per_k_days(totals.false_alerts, totals.monitored_identity_days),
        per_k_days(totals.false_alerts, totals.identity_days)
    );
    let _ = writeln!(
        out,
        "| false suspensions per 1,000 identity-days (monitored days / all days) | {:.2} / {:.2} ({} in total) | ≤ 1 |",
        per_k_days(totals.false_suspensions, totals.monitored_identity_days),
        per_k_days(totals.false_suspensions, totals.identity_days),
        totals.false_suspensions
    );
    let _ = writeln!(
        out,
        "| median / p95 time to suspend a burst attack, over suspended ones (simulated) | {} / {} | median < 60 s |",
        fmt_secs(percentile(&burst_suspend, 0.5)),
        fmt_secs(percentile(&burst_suspend, 0.95))
    );
    // The same median over every burst attack, counting those never suspended as infinite.
    let mut all_burst: Vec<i64> = burst_suspend.clone();
    all_burst.resize(burst_attacks, i64::MAX);
    let median_all = percentile(&all_burst, 0.5).filter(|ms| *ms != i64::MAX);
    let _ = writeln!(
        out,
        "| burst attacks suspended; median time to suspend, unsuspended counted as never | {}/{}; {} | – |",
        burst_suspend.len(),
        burst_attacks,
        fmt_secs(median_all)
    );
    let _ = writeln!(
        out,
        "| monitoring cost per call (`observe`, wall clock, this run) | {ns_per_call:.0} ns | < 5 µs |\n"
    );
    let _ = writeln!(
        out,
        "False alerts by detector (identity-days monitored: {:.0}):\n",
        totals.monitored_identity_days
    );
    let _ = writeln!(
        out,
        "| Detector | False alerts | per 1,000 monitored identity-days |"
    );
    let _ = writeln!(out, "|---|---:|---:|");
    for (detector, count) in &totals.false_alerts_by_detector {
        let _ = writeln!(
            out,
            "| {detector} | {count} | {:.1} |",
            per_k_days(*count, totals.monitored_identity_days)
        );
    }
    if !totals.false_suspension_reasons.is_empty() {
        let _ = writeln!(
            out,
            "\nFalse suspensions (first {}):\n",
            totals.false_suspension_reasons.len()
        );
        for reason in &totals.false_suspension_reasons {
            let _ = writeln!(out, "- {reason}");
        }
    }
    let _ = writeln!(
        out,
        "\nDetection = first alert whose evidence cites an attack call or the attacker's network; time from the attack's first call. \
         Suspension = first `Suspend` between attack start and one hour after its end; any other `Suspend` is false. \
         Burst attacks = all scenarios but slow abuse. \"Monitored days\" exclude each identity's learning period."
    );
    out
}
