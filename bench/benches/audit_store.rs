//! Durable audit appends through the real server path (`AuditWriter` over `SqlAuditStore`,
//! SQLite in WAL mode with `synchronous=FULL`) against a raw group-commit file writer
//! (append + `fdatasync` once per batch) on the same disk, with the same batching (window
//! 0, at most 256 records a batch), at concurrency 1, 16 and 64.
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
use steward_gateway::audit_sink::SqlAuditStore;
use tokio::sync::{mpsc, oneshot};

const MAX_BATCH: usize = 256;

fn event(n: u64) -> AuditEvent {
    let mut actor = Actor::new(ActorKind::Identity, format!("idn_{n:08}"));
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

async fn drive<F, Fut>(concurrency: usize, secs: f64, append: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let append = Arc::new(append);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
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
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

async fn steward_round(dir: &std::path::Path, round: usize, concurrency: usize, secs: f64) -> f64 {
    let path = dir.join(format!("steward-{round}-{concurrency}.db"));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let Ok(store) = steward_store::Store::open(&url).await else {
        eprintln!("cannot open {url}");
        return 0.0;
    };
    let audit_store: Arc<dyn AuditStore> = Arc::new(SqlAuditStore::new(store, "gw-bench"));
    let config = WriterConfig {
        batch_window: Duration::ZERO,
        max_batch: MAX_BATCH,
        queue_capacity: 8192,
        instance_id: "gw-bench".to_owned(),
    };
    let Ok(writer) = AuditWriter::start(audit_store, config).await else {
        return 0.0;
    };
    let rate = drive(concurrency, secs, move |n| {
        let writer = writer.clone();
        async move { writer.append(event(n), 1_700_000_000_000).await.is_ok() }
    })
    .await;
    let _ = std::fs::remove_file(&path);
    rate
}

async fn raw_round(dir: &std::path::Path, round: usize, concurrency: usize, secs: f64) -> f64 {
    let path = dir.join(format!("raw-{round}-{concurrency}.jsonl"));
    let tx = start_raw(path.clone());
    // The same line the store keeps: the event's JSON form, serialized by the caller.
    let rate = drive(concurrency, secs, move |n| {
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
    println!(
        "| Concurrency | Steward (SqlAuditStore) appends/s | Raw appends/s | Ratio (median of {rounds} paired rounds) |"
    );
    println!("|---|---|---|---|");
    for concurrency in [1usize, 16, 64] {
        let (mut ours, mut raws, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let (a, b) = runtime.block_on(async {
                if round % 2 == 0 {
                    let a = steward_round(dir.path(), round, concurrency, secs).await;
                    (a, raw_round(dir.path(), round, concurrency, secs).await)
                } else {
                    let b = raw_round(dir.path(), round, concurrency, secs).await;
                    (steward_round(dir.path(), round, concurrency, secs).await, b)
                }
            });
            ours.push(a);
            raws.push(b);
            ratios.push(if b > 0.0 { a / b } else { 0.0 });
        }
        println!(
            "| {concurrency} | {:.0} | {:.0} | {:.2} |",
            median(&mut ours),
            median(&mut raws),
            median(&mut ratios)
        );
    }
}
