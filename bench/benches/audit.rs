//! Audit log benchmarks.
//!
//! - `audit_verify`: offline verification (`verify_log`: canonical bytes, chain hash,
//!   Merkle frontier) against plain SHA-256 over the same bytes, in records/s.
//! - `audit_append`: durable appends/s through `AuditWriter` over a file store that
//!   appends JSONL + `fdatasync` per batch, against a raw group-commit writer doing the
//!   same append + `fdatasync` per batch (same batch window, same line size, same disk),
//!   at concurrency 1, 16 and 64.
//!
//! Run: `cargo bench -p steward-bench --bench audit -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use serde_json::json;
use steward_audit::event::{hash_with_prev, sha256};
use steward_audit::{
    Actor, ActorKind, AuditEvent, AuditRecord, AuditStore, AuditWriter, BoxFuture, Decision,
    EventKind, GENESIS_HASH, Hash, MerkleFrontier, StoreError, StoreHead, WriterConfig, verify_log,
};
use tokio::sync::{mpsc, oneshot};

const VERIFY_RECORDS: usize = 1000;
const CONCURRENCY: [usize; 3] = [1, 16, 64];
/// Batch window used by both writers.
const BATCH_WINDOW: Duration = Duration::ZERO;
const MAX_BATCH: usize = 256;

fn event(n: u64) -> AuditEvent {
    let mut actor = Actor::new(ActorKind::Identity, format!("idn_{n:08}"));
    actor.name = Some("release-bot".to_owned());
    actor.delegation_chain = vec!["user:alice".to_owned()];
    let mut event = AuditEvent::new(EventKind::Decision, actor);
    event.instance_id = "gw-1".to_owned();
    event.request_id = Some(format!("req_{n:016}"));
    event.operation = Some("github:issues.create".to_owned());
    event.resource = Some("repo:acme/api".to_owned());
    event.decision = Some(Decision::Allow);
    event.policy_ids = vec!["policy0".to_owned(), "policy7".to_owned()];
    event.policy_set_version = Some("42".to_owned());
    event.request_digest = Some(hex_of(&sha256(&n.to_le_bytes())));
    event.args = json!({
        "title": "Crash on startup",
        "body": "Steps to reproduce: run the binary with an empty config file.",
        "labels": ["bug", "p1"],
        "token": "hmac-sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    });
    event.reason = Some("triage incoming issue".to_owned());
    event.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned());
    event
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn chain(count: usize) -> Vec<AuditRecord> {
    let mut prev = GENESIS_HASH;
    let mut out = Vec::with_capacity(count);
    for n in 0..count as u64 {
        let Ok(record) = AuditRecord::chain(n, 1_700_000_000_000 + n as i64, prev, event(n)) else {
            continue;
        };
        prev = record.hash;
        out.push(record);
    }
    out
}

fn bench_verify(c: &mut Criterion) {
    let records = chain(VERIFY_RECORDS);
    // The exact bytes the verifier hashes: domain tag || prev_hash || canonical bytes.
    let hashed_bytes: Vec<Vec<u8>> = records
        .iter()
        .map(|record| {
            let mut bytes = steward_audit::event::RECORD_HASH_DOMAIN.to_vec();
            bytes.extend_from_slice(&record.prev_hash);
            bytes.extend_from_slice(&record.canonical_bytes().unwrap_or_default());
            bytes
        })
        .collect();
    let canonical: Vec<Vec<u8>> = records
        .iter()
        .map(|record| record.canonical_bytes().unwrap_or_default())
        .collect();
    let jsonl: String = records
        .iter()
        .filter_map(|record| record.to_jsonl_line().ok())
        .map(|line| line + "\n")
        .collect();

    let mut group = c.benchmark_group("audit_verify");
    group.throughput(Throughput::Elements(VERIFY_RECORDS as u64));
    group.bench_function("sha256_same_bytes", |b| {
        b.iter(|| {
            let mut acc = 0u8;
            for bytes in &hashed_bytes {
                acc ^= sha256(bytes)[0];
            }
            acc
        })
    });
    group.bench_function("verify_log", |b| {
        b.iter(|| {
            let report = verify_log(&records, &[], &[0u8; 32]);
            assert!(report.is_ok());
            report.verified_records
        })
    });
    group.bench_function("chain_hash_only_precomputed_canonical", |b| {
        b.iter(|| {
            let mut prev = GENESIS_HASH;
            for bytes in &canonical {
                prev = hash_with_prev(&prev, bytes);
            }
            prev
        })
    });
    group.bench_function("verify_jsonl_parse_and_verify", |b| {
        b.iter(|| {
            let report = steward_audit::verify::verify_jsonl(jsonl.as_bytes(), &[], &[0u8; 32]);
            report.map(|r| r.verified_records).unwrap_or_default()
        })
    });
    group.finish();
}

/// JSONL file store: one write + fdatasync per batch; rolls the file back on failure.
/// Keeps the record hashes in memory and rebuilds the head from them when asked (at
/// startup and after a failed commit), as a store without a persisted frontier would.
struct FileStore {
    file: Arc<Mutex<File>>,
    hashes: Mutex<Vec<Hash>>,
}

impl FileStore {
    fn create(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            file: Arc::new(Mutex::new(file)),
            hashes: Mutex::new(Vec::new()),
        })
    }
}

fn append_and_sync(file: &Mutex<File>, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
    let len = file.metadata()?.len();
    let result = file.write_all(bytes).and_then(|()| file.sync_data());
    if result.is_err() {
        let _ = file.set_len(len);
    }
    result
}

impl AuditStore for FileStore {
    fn append_batch<'a>(
        &'a self,
        records: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut bytes = Vec::with_capacity(records.len() * 900);
            for record in records {
                let line = record
                    .to_jsonl_line()
                    .map_err(|err| StoreError::new(err.to_string()))?;
                bytes.extend_from_slice(line.as_bytes());
                bytes.push(b'\n');
            }
            let file = self.file.clone();
            tokio::task::spawn_blocking(move || append_and_sync(&file, &bytes))
                .await
                .map_err(|err| StoreError::new(err.to_string()))??;
            self.hashes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(records.iter().map(|record| record.hash));
            Ok(())
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<StoreHead, StoreError>> {
        Box::pin(async move {
            let hashes = self.hashes.lock().unwrap_or_else(PoisonError::into_inner);
            Ok(StoreHead {
                chain_head: hashes.last().copied().unwrap_or(GENESIS_HASH),
                frontier: MerkleFrontier::from_leaf_data(hashes.iter()),
            })
        })
    }
}

type RawRequest = (Arc<[u8]>, oneshot::Sender<std::io::Result<()>>);

/// The baseline: group commit of pre-serialized lines, append + fdatasync per batch.
#[derive(Clone)]
struct RawWriter {
    sender: mpsc::Sender<RawRequest>,
}

impl RawWriter {
    fn start(path: &Path) -> std::io::Result<Self> {
        let file = Arc::new(Mutex::new(
            OpenOptions::new().create(true).append(true).open(path)?,
        ));
        let (sender, mut receiver) = mpsc::channel::<RawRequest>(4096);
        tokio::spawn(async move {
            let mut batch: Vec<RawRequest> = Vec::with_capacity(MAX_BATCH);
            while let Some(first) = receiver.recv().await {
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
                if !BATCH_WINDOW.is_zero() {
                    let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
                    while batch.len() < MAX_BATCH {
                        match tokio::time::timeout_at(deadline, receiver.recv()).await {
                            Ok(Some(request)) => batch.push(request),
                            _ => break,
                        }
                    }
                }
                let mut bytes = Vec::with_capacity(batch.len() * 900);
                for (line, _) in &batch {
                    bytes.extend_from_slice(line);
                }
                let file = file.clone();
                let result = tokio::task::spawn_blocking(move || append_and_sync(&file, &bytes))
                    .await
                    .unwrap_or_else(|err| Err(std::io::Error::other(err.to_string())));
                for (_, reply) in batch.drain(..) {
                    let answer = match &result {
                        Ok(()) => Ok(()),
                        Err(err) => Err(std::io::Error::new(err.kind(), err.to_string())),
                    };
                    let _ = reply.send(answer);
                }
            }
        });
        Ok(Self { sender })
    }

    async fn append(&self, line: Arc<[u8]>) -> std::io::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((line, reply))
            .await
            .map_err(|_| std::io::Error::other("raw writer stopped"))?;
        answer
            .await
            .map_err(|_| std::io::Error::other("raw writer stopped"))?
    }
}

fn bench_append(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(dir) = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    // The raw writer appends a line of the same length as a real record.
    let sample_line: Arc<[u8]> = chain(1)
        .first()
        .and_then(|record| record.to_jsonl_line().ok())
        .map(|line| (line + "\n").into_bytes())
        .unwrap_or_default()
        .into();

    let mut group = c.benchmark_group("audit_append");
    group.sample_size(10);
    for concurrency in CONCURRENCY {
        group.throughput(Throughput::Elements(concurrency as u64));

        let path = dir.path().join(format!("steward-{concurrency}.jsonl"));
        let writer = runtime.block_on(async {
            let store: Arc<dyn AuditStore> = Arc::new(FileStore::create(&path).ok()?);
            let config = WriterConfig {
                batch_window: BATCH_WINDOW,
                max_batch: MAX_BATCH,
                ..WriterConfig::default()
            };
            AuditWriter::start(store, config).await.ok()
        });
        let Some(writer) = writer else { return };
        group.bench_with_input(
            BenchmarkId::new("steward_writer", concurrency),
            &concurrency,
            |b, &concurrency| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..concurrency)
                            .map(|task| {
                                let writer = writer.clone();
                                tokio::spawn(async move {
                                    for i in 0..iters {
                                        let n = (task as u64) << 32 | i;
                                        if writer.append(event(n), n as i64).await.is_err() {
                                            break;
                                        }
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            let _ = task.await;
                        }
                        start.elapsed()
                    })
                })
            },
        );

        let raw_path = dir.path().join(format!("raw-{concurrency}.jsonl"));
        let raw = runtime.block_on(async { RawWriter::start(&raw_path).ok() });
        let Some(raw) = raw else { return };
        group.bench_with_input(
            BenchmarkId::new("raw_fdatasync_writer", concurrency),
            &concurrency,
            |b, &concurrency| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..concurrency)
                            .map(|_| {
                                let raw = raw.clone();
                                let line = sample_line.clone();
                                tokio::spawn(async move {
                                    for _ in 0..iters {
                                        if raw.append(line.clone()).await.is_err() {
                                            break;
                                        }
                                    }
                                })
                            })
                            .collect();
                        for task in tasks {
                            let _ = task.await;
                        }
                        start.elapsed()
                    })
                })
            },
        );
    }
    group.finish();
}

/// Appends `per_task` records from each of `concurrency` tasks; returns the elapsed time.
/// Events are built before the clock starts, as the raw writer's line is.
async fn run_steward(
    writer: &AuditWriter,
    concurrency: usize,
    per_task: u64,
    base: u64,
) -> Duration {
    let prepared: Vec<Vec<AuditEvent>> = (0..concurrency as u64)
        .map(|task| {
            (0..per_task)
                .map(|i| event(base + (task << 20 | i)))
                .collect()
        })
        .collect();
    let start = Instant::now();
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|events| {
            let writer = writer.clone();
            tokio::spawn(async move {
                for (i, event) in events.into_iter().enumerate() {
                    if writer.append(event, i as i64).await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    start.elapsed()
}

async fn run_raw(raw: &RawWriter, line: &Arc<[u8]>, concurrency: usize, per_task: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let raw = raw.clone();
            let line = line.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    if raw.append(line.clone()).await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    start.elapsed()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Paired, interleaved rounds (steward, raw, raw, steward, ...) on the same disk, so a
/// busy shared machine affects both sides alike; prints medians and the median ratio.
fn paired_append_ratios() {
    const ROUNDS: usize = 11;
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(dir) = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")) else {
        return;
    };
    let sample_line: Arc<[u8]> = chain(1)
        .first()
        .and_then(|record| record.to_jsonl_line().ok())
        .map(|line| (line + "\n").into_bytes())
        .unwrap_or_default()
        .into();
    println!(
        "\naudit_append_paired (window {BATCH_WINDOW:?}, max batch {MAX_BATCH}, {ROUNDS} interleaved rounds)"
    );
    println!(
        "| concurrency | steward writer (appends/s) | raw fdatasync writer (appends/s) | ratio (median of rounds) |"
    );
    println!("|---|---|---|---|");
    for concurrency in CONCURRENCY {
        let per_task: u64 = match concurrency {
            1 => 150,
            16 => 40,
            _ => 20,
        };
        let total = (per_task * concurrency as u64) as f64;
        let result = runtime.block_on(async {
            let store: Arc<dyn AuditStore> = Arc::new(
                FileStore::create(
                    &dir.path()
                        .join(format!("paired-steward-{concurrency}.jsonl")),
                )
                .ok()?,
            );
            let config = WriterConfig {
                batch_window: BATCH_WINDOW,
                max_batch: MAX_BATCH,
                ..WriterConfig::default()
            };
            let writer = AuditWriter::start(store, config).await.ok()?;
            let raw = RawWriter::start(&dir.path().join(format!("paired-raw-{concurrency}.jsonl")))
                .ok()?;
            // Warm-up.
            run_steward(&writer, concurrency, per_task / 2 + 1, 1 << 40).await;
            run_raw(&raw, &sample_line, concurrency, per_task / 2 + 1).await;
            let (mut steward, mut rawv, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                let base = (round as u64 + 2) << 40;
                let (s, r) = if round % 2 == 0 {
                    let s = run_steward(&writer, concurrency, per_task, base).await;
                    (s, run_raw(&raw, &sample_line, concurrency, per_task).await)
                } else {
                    let r = run_raw(&raw, &sample_line, concurrency, per_task).await;
                    (run_steward(&writer, concurrency, per_task, base).await, r)
                };
                let s = total / s.as_secs_f64();
                let r = total / r.as_secs_f64();
                steward.push(s);
                rawv.push(r);
                ratios.push(s / r);
            }
            Some((median(&mut steward), median(&mut rawv), median(&mut ratios)))
        });
        if let Some((s, r, ratio)) = result {
            println!("| {concurrency} | {s:.0} | {r:.0} | {ratio:.2} |");
        }
    }
}

criterion_group!(benches, bench_verify, bench_append);

const TAKES_VALUE: [&str; 14] = [
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--save-baseline",
    "--baseline",
    "--load-baseline",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--nresamples",
    "--profile-time",
    "--output-format",
    "--color",
    "--plotting-backend",
];

fn main() {
    // Positional arguments are criterion's name filters; skip the values of its options.
    let mut filters: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg.starts_with("--") && !arg.contains('=') && TAKES_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    benches();
    if filters.is_empty()
        || filters
            .iter()
            .any(|f| "audit_append_paired".contains(f.as_str()))
    {
        paired_append_ratios();
    }
    Criterion::default().configure_from_args().final_summary();
}
