//! Durable audit appends through the real server paths against a raw group-commit file
//! writer (append + `fdatasync` once per batch) on the same disk, with the same batching
//! (window 0, at most 256 records a batch), at concurrency 1, 16 and 64:
//! - the journal (`AuditWriter` over `JournaledAuditStore`, the SQLite default): durable in
//!   the journal, indexed into SQLite behind it. Its rate counts the time until the index
//!   has caught up (`settled`), so an indexer that cannot keep up shows;
//! - `SqlAuditStore` alone (each batch one SQLite transaction, WAL, `synchronous=FULL`; the
//!   PostgreSQL-style path).
//!
//! Paired rounds alternate the two writers so load from other processes hits both; the
//! median ratio is reported. Run:
//! `cargo bench -p steward-bench --bench audit_store` (`AUDIT_STORE_SECS`, `AUDIT_STORE_ROUNDS`
//! set the round length and count).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use steward_audit::{
    Actor, ActorKind, AuditEvent, AuditStore, AuditWriter, Decision, EventKind, WriterConfig,
};
use steward_gateway::audit_journal::{JournalConfig, JournaledAuditStore};
use steward_gateway::audit_sink::SqlAuditStore;
use tokio::sync::{mpsc, oneshot};

/// The allocator `steward serve` runs with (see `crates/steward/src/main.rs`); every writer
/// in this benchmark, the raw one included, runs on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MAX_BATCH: usize = 256;

/// Distinct identities the records spread over, as in a deployment with a few hundred
/// agents (one identity per record would make every identity-keyed write an append).
const ACTORS: u64 = 200;

fn event(n: u64) -> AuditEvent {
    let mut actor = Actor::new(ActorKind::Identity, format!("idn_{:08}", n % ACTORS));
    actor.name = Some("release-bot".to_owned());
    actor.delegation_chain = vec!["user:alice".to_owned()];
    let mut event = AuditEvent::new(EventKind::Decision, actor);
    event.request_id = Some(format!("req_{n:016}"));
    event.operation = Some("github:issues.create".to_owned());
    event.resource = Some("repo:acme/api".to_owned());
    event.decision = Some(Decision::Allow);
    event.policy_ids = vec!["policy0".to_owned(), "policy7".to_owned()];
    event.policy_set_version = Some("42".to_owned());
    event.request_digest = Some(format!("{n:064x}"));
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

/// The raw writer: the same mpsc + oneshot group commit, writing each record's line and
/// syncing once per batch.
struct RawRequest {
    line: Vec<u8>,
    reply: oneshot::Sender<()>,
}

fn start_raw(path: std::path::PathBuf) -> mpsc::Sender<RawRequest> {
    let (tx, mut rx) = mpsc::channel::<RawRequest>(8192);
    std::thread::spawn(move || {
        let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut buf = Vec::with_capacity(MAX_BATCH * 1024);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            buf.clear();
            for r in &batch {
                buf.extend_from_slice(&r.line);
                buf.push(b'\n');
            }
            if file.write_all(&buf).is_err() || file.sync_data().is_err() {
                return;
            }
            for r in batch.drain(..) {
                let _ = r.reply.send(());
            }
        }
    });
    tx
}

/// Runs `concurrency` appenders for `secs`; returns how many appends succeeded.
async fn drive<F, Fut>(concurrency: usize, secs: f64, append: F) -> u64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let append = Arc::new(append);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (append, stop, done) = (append.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut n = (worker as u64) << 40;
                while !stop.load(Ordering::Relaxed) {
                    if !append(n).await {
                        return;
                    }
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Journal,
    Sql,
}

async fn steward_round(
    dir: &std::path::Path,
    kind: Path,
    round: usize,
    concurrency: usize,
    secs: f64,
) -> f64 {
    let path = dir.join(format!("steward-{round}-{concurrency}.db"));
    let journal = dir.join(format!("steward-{round}-{concurrency}.journal"));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let Ok(store) = steward_store::Store::open(&url).await else {
        eprintln!("cannot open {url}");
        return 0.0;
    };
    let sql = SqlAuditStore::new(store, "gw-bench");
    let audit_store: Arc<dyn AuditStore> = match kind {
        Path::Sql => Arc::new(sql),
        Path::Journal => {
            match JournaledAuditStore::open(sql, &journal, JournalConfig::default()).await {
                Ok(j) => Arc::new(j),
                Err(e) => {
                    eprintln!("journal: {e}");
                    return 0.0;
                }
            }
        }
    };
    let config = WriterConfig {
        batch_window: Duration::ZERO,
        max_batch: MAX_BATCH,
        queue_capacity: 8192,
        instance_id: "gw-bench".to_owned(),
    };
    // As `steward serve` starts it: the journal's writer on its own thread.
    let writer = match kind {
        Path::Journal => {
            let Ok(spawn) = steward_gateway::audit_journal::spawn_writer_thread() else {
                return 0.0;
            };
            AuditWriter::start_with(audit_store, config, spawn).await
        }
        Path::Sql => AuditWriter::start(audit_store, config).await,
    };
    let Ok(writer) = writer else {
        return 0.0;
    };
    let start = Instant::now();
    let appender = writer.clone();
    let count = drive(concurrency, secs, move |n| {
        let writer = appender.clone();
        async move { writer.append(event(n), 1_700_000_000_000).await.is_ok() }
    })
    .await;
    // Counted until the index holds every record (a no-op for the SQL path).
    if writer.settled().await.is_err() {
        return 0.0;
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    drop(writer);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let _ = std::fs::remove_file(&journal);
    rate
}

async fn raw_round(dir: &std::path::Path, round: usize, concurrency: usize, secs: f64) -> f64 {
    let path = dir.join(format!("raw-{round}-{concurrency}.jsonl"));
    let tx = start_raw(path.clone());
    let start = Instant::now();
    // The same line the store keeps: the event's JSON form, serialized by the caller.
    let count = drive(concurrency, secs, move |n| {
        let tx = tx.clone();
        async move {
            let Ok(line) = serde_json::to_vec(&event(n)) else {
                return false;
            };
            let (reply, answer) = oneshot::channel();
            tx.send(RawRequest { line, reply }).await.is_ok() && answer.await.is_ok()
        }
    })
    .await;
    let rate = count as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    rate
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let secs: f64 = std::env::var("AUDIT_STORE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let rounds: usize = std::env::var("AUDIT_STORE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    // A temp dir under the target dir: the same disk for both writers.
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let Ok(dir) = tempfile::tempdir_in(&base) else {
        return;
    };
    // For profiling one writer: AUDIT_STORE_ONLY=journal|sql|raw, AUDIT_STORE_CONCURRENCY=N.
    let only = std::env::var("AUDIT_STORE_ONLY").ok();
    let levels: Vec<usize> = std::env::var("AUDIT_STORE_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or_else(|| vec![1, 16, 64], |c| vec![c]);
    let skip = |which: usize| {
        only.as_deref()
            .is_some_and(|o| o != ["journal", "sql", "raw"].get(which).copied().unwrap_or(""))
    };
    println!(
        "| Concurrency | Journal (server default) appends/s | SqlAuditStore appends/s | Raw appends/s | Journal / raw | SQL / raw |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for concurrency in levels {
        let mut rates: [Vec<f64>; 3] = Default::default();
        let (mut journal_ratios, mut sql_ratios) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Rotate the order so drift in machine load hits every writer alike.
            let [j, s, r] = runtime.block_on(async {
                let mut out = [0.0f64; 3];
                for k in 0..3 {
                    let which = (k + round) % 3;
                    if skip(which) {
                        continue;
                    }
                    let rate = match which {
                        0 => {
                            steward_round(dir.path(), Path::Journal, round, concurrency, secs).await
                        }
                        1 => steward_round(dir.path(), Path::Sql, round, concurrency, secs).await,
                        _ => raw_round(dir.path(), round, concurrency, secs).await,
                    };
                    if let Some(slot) = out.get_mut(which) {
                        *slot = rate;
                    }
                }
                out
            });
            rates[0].push(j);
            rates[1].push(s);
            rates[2].push(r);
            journal_ratios.push(if r > 0.0 { j / r } else { 0.0 });
            sql_ratios.push(if r > 0.0 { s / r } else { 0.0 });
        }
        let [j, s, r] = &mut rates;
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
            median(j),
            median(s),
            median(r),
            median(&mut journal_ratios),
            median(&mut sql_ratios)
        );
    }
}
