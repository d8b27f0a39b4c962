//! The audit journal against a real SQLite store: durable appends become searchable rows,
//! a crash's unindexed frames are replayed at the next open, a torn tail is cut, and a
//! journal that does not continue the stored chain is refused.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;
use std::sync::Arc;

use steward_audit::{
    Actor, ActorKind, AuditEvent, AuditStore, AuditWriter, Decision, EventKind, WriterConfig,
};
use steward_gateway::audit_journal::{
    JournalConfig, JournalError, JournaledAuditStore, spawn_writer_thread,
};
use steward_gateway::audit_sink::{SqlAuditStore, verify_chain};
use steward_store::Store;

fn event(n: u64) -> AuditEvent {
    let mut event = AuditEvent::new(
        EventKind::Decision,
        Actor::new(ActorKind::Identity, format!("idn_{n}")),
    );
    event.request_id = Some(format!("req_{n}"));
    event.operation = Some("github:issues.create".to_owned());
    event.decision = Some(Decision::Allow);
    event
}

async fn store(dir: &std::path::Path) -> Store {
    Store::open(&format!(
        "sqlite://{}?mode=rwc",
        dir.join("db.sqlite").display()
    ))
    .await
    .unwrap()
}

async fn writer(store: &Store, journal: &std::path::Path, instance: &str) -> AuditWriter {
    journaled_writer(store, journal, instance, JournalConfig::default())
        .await
        .1
}

/// A writer over a journal opened with `config`, and the journal itself.
async fn journaled_writer(
    store: &Store,
    journal: &std::path::Path,
    instance: &str,
    config: JournalConfig,
) -> (JournaledAuditStore, AuditWriter) {
    let sql = SqlAuditStore::new(store.clone(), instance);
    let journaled = JournaledAuditStore::open(sql, journal, config)
        .await
        .unwrap();
    let dyn_store: Arc<dyn AuditStore> = Arc::new(journaled.clone());
    // As `steward serve` runs it: the writer on its own thread, writing in place.
    let writer = AuditWriter::start_with(
        dyn_store,
        WriterConfig {
            instance_id: instance.to_owned(),
            ..WriterConfig::default()
        },
        spawn_writer_thread().unwrap(),
    )
    .await
    .unwrap();
    (journaled, writer)
}

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

async fn rows(store: &Store, instance: &str) -> Vec<i64> {
    store
        .audit_range(instance, 0, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect()
}

/// Appends records `0..count` from concurrent tasks, then checks that once settled the
/// index holds every one of them and the chain verifies.
async fn append_concurrently_and_check(writer: &AuditWriter, db: &Store, count: u64) {
    let tasks: Vec<_> = (0..count)
        .map(|n| {
            let writer = writer.clone();
            tokio::spawn(async move { writer.append(event(n), n as i64).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    writer.settled().await.unwrap();
    let expected: Vec<i64> = (0..count as i64).collect();
    assert_eq!(rows(db, "gw-1").await, expected);
    let report = verify_chain(db, "gw-1", &[]).await.unwrap();
    assert!(report.is_ok(), "{report}");
}

/// Checks that the chain goes on at `seq`: the next append gets it, and once settled the
/// whole chain verifies.
async fn continues_at(writer: &AuditWriter, db: &Store, seq: u64) {
    assert_eq!(
        writer.append(event(seq), seq as i64).await.unwrap().seq,
        seq
    );
    writer.settled().await.unwrap();
    let report = verify_chain(db, "gw-1", &[]).await.unwrap();
    assert!(report.is_ok(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_appends_are_indexed_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path()).await;
    let journal = dir.path().join("audit.journal");
    let writer = writer(&db, &journal, "gw-1").await;
    append_concurrently_and_check(&writer, &db, 200).await;
    assert_eq!(writer.head().tree_size, 200);
    assert!(thread_names().iter().any(|n| n == "steward-audit"));
}

/// The same journal with the writer task on the caller's multi-threaded runtime: writes
/// go through the blocking pool, with the same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_on_a_shared_runtime_writes_through_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path()).await;
    let sql = SqlAuditStore::new(db.clone(), "gw-1");
    let journaled = JournaledAuditStore::open(
        sql,
        &dir.path().join("audit.journal"),
        JournalConfig::default(),
    )
    .await
    .unwrap();
    let writer = AuditWriter::start(
        Arc::new(journaled),
        WriterConfig {
            instance_id: "gw-1".to_owned(),
            ..WriterConfig::default()
        },
    )
    .await
    .unwrap();
    append_concurrently_and_check(&writer, &db, 100).await;
}

/// Records reach the index field for field: the columns the search filters on come from
/// the event, and the stored event is exactly the bytes the hash covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_rows_carry_the_event_columns_and_hashed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path()).await;
    let writer = writer(&db, &dir.path().join("audit.journal"), "gw-1").await;
    let mut outcome = event(7);
    outcome.kind = EventKind::Outcome;
    outcome.decision = None;
    outcome.operation = None;
    writer.append(event(3), 1_000).await.unwrap();
    writer.append(outcome.clone(), 2_000).await.unwrap();
    writer.settled().await.unwrap();
    let stored = db.audit_range("gw-1", 0, 10).await.unwrap();
    assert_eq!(stored.len(), 2);
    let (first, second) = (&stored[0], &stored[1]);
    assert_eq!(
        (
            first.kind.as_str(),
            first.actor_id.as_deref(),
            first.operation.as_deref()
        ),
        ("decision", Some("idn_3"), Some("github:issues.create"))
    );
    assert_eq!(
        (
            first.decision.as_deref(),
            first.request_id.as_deref(),
            first.time_ms
        ),
        (Some("allow"), Some("req_3"), 1_000)
    );
    assert_eq!(
        (
            second.kind.as_str(),
            second.operation.as_deref(),
            second.decision.as_deref()
        ),
        ("outcome", None, None)
    );
    assert_eq!(second.prev_hash, first.hash);
    outcome.instance_id = "gw-1".to_owned();
    assert_eq!(
        second.event.as_bytes(),
        steward_audit::canonical_event_bytes(&outcome).unwrap()
    );
}

/// Writes a journal the way a process that crashed before indexing would have left it:
/// the frames of records `0..count` (from a scratch writer) but no rows in `target`.
async fn crashed_journal(dir: &std::path::Path, count: u64) -> Vec<u8> {
    let scratch_dir = dir.join("scratch");
    std::fs::create_dir_all(&scratch_dir).unwrap();
    let scratch = store(&scratch_dir).await;
    let path = scratch_dir.join("audit.journal");
    // Large rotation threshold: the scratch journal keeps every frame.
    let writer = writer(&scratch, &path, "gw-1").await;
    for n in 0..count {
        writer.append(event(n), n as i64).await.unwrap();
    }
    // The file is preallocated: keep the header and the frames, not the zeros after them.
    let mut bytes = std::fs::read(&path).unwrap();
    let header = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let (frames, valid) = steward_gateway::audit_journal::scan_frames(&bytes[header..]);
    assert_eq!(frames as u64, count);
    assert!(
        bytes[header + valid..].iter().all(|b| *b == 0),
        "only zeros follow the frames"
    );
    bytes.truncate(header + valid);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unindexed_frames_are_replayed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = crashed_journal(dir.path(), 25).await;
    let db = store(dir.path()).await;
    let journal = dir.path().join("audit.journal");
    std::fs::write(&journal, &bytes).unwrap();

    let writer = writer(&db, &journal, "gw-1").await;
    // The replay happened before `open` returned: no settle needed.
    assert_eq!(rows(&db, "gw-1").await, (0..25).collect::<Vec<_>>());
    assert_eq!(writer.head().tree_size, 25);
    // The chain continues where the journal ended.
    continues_at(&writer, &db, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_the_intact_frames_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = crashed_journal(dir.path(), 10).await;
    // A crash in the middle of the last write: drop the last 7 bytes, then add garbage.
    bytes.truncate(bytes.len() - 7);
    let db = store(dir.path()).await;
    let journal = dir.path().join("audit.journal");
    let mut file = std::fs::File::create(&journal).unwrap();
    file.write_all(&bytes).unwrap();
    file.write_all(&[0x55; 3]).unwrap();
    drop(file);

    let writer = writer(&db, &journal, "gw-1").await;
    assert_eq!(rows(&db, "gw-1").await, (0..9).collect::<Vec<_>>());
    continues_at(&writer, &db, 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_does_not_continue_the_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = crashed_journal(dir.path(), 5).await;
    let db = store(dir.path()).await;
    let journal = dir.path().join("audit.journal");
    std::fs::write(&journal, &bytes).unwrap();

    // Another instance's journal with records the database lacks: refused, not replayed.
    let sql = SqlAuditStore::new(db.clone(), "gw-2");
    let err = JournaledAuditStore::open(sql, &journal, JournalConfig::default())
        .await
        .unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("gw-1"), "{err}");
    assert!(rows(&db, "gw-2").await.is_empty());

    // The right instance, but the database already holds a different record 0: refused.
    let other = writer(&db, &dir.path().join("other.journal"), "gw-1").await;
    other.append(event(1000), 1).await.unwrap();
    other.settled().await.unwrap();
    let sql = SqlAuditStore::new(db.clone(), "gw-1");
    let err = JournaledAuditStore::open(sql, &journal, JournalConfig::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not continue"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_index_fails_appends_closed_once_lag_is_exhausted_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path()).await;
    let config = JournalConfig {
        max_lag: 8,
        lag_timeout: std::time::Duration::from_millis(300),
        index_delay: std::time::Duration::from_millis(5),
        ..JournalConfig::default()
    };
    let (journaled, writer) =
        journaled_writer(&db, &dir.path().join("audit.journal"), "gw-1", config).await;
    writer.append(event(0), 0).await.unwrap();
    writer.settled().await.unwrap();

    // The index cannot write: records stay durable in the journal up to the lag bound...
    db.raw_execute("ALTER TABLE audit_log RENAME TO audit_log_away")
        .await
        .unwrap();
    let mut accepted = 0u64;
    let mut refused = false;
    for n in 1..40u64 {
        match writer.append(event(n), n as i64).await {
            Ok(receipt) => {
                assert_eq!(receipt.seq, n, "no gaps while accepting");
                accepted += 1;
            }
            Err(e) => {
                assert_eq!(e.code(), steward_core::ErrorCode::AUDIT_UNAVAILABLE, "{e}");
                refused = true;
                break;
            }
        }
    }
    // ...and then appends fail closed instead of growing without bound.
    assert!(refused, "appends kept succeeding with a dead index");
    assert!(
        accepted <= 9,
        "accepted {accepted} records beyond the lag bound"
    );
    assert!(
        writer.settled().await.is_err(),
        "readers are told the log is not readable"
    );

    // The index can write again: it catches up, appends resume, nothing was lost.
    db.raw_execute("ALTER TABLE audit_log_away RENAME TO audit_log")
        .await
        .unwrap();
    // The indexer retries with backoff: appends are refused until it has caught up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let next = loop {
        match writer.append(event(100), 100).await {
            Ok(receipt) => break receipt,
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(e.code(), steward_core::ErrorCode::AUDIT_UNAVAILABLE, "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("appends did not resume: {e}"),
        }
    };
    assert_eq!(next.seq, 1 + accepted, "the refused append left no gap");
    writer.settled().await.unwrap();
    assert_eq!(
        rows(&db, "gw-1").await,
        (0..=i64::try_from(next.seq).unwrap()).collect::<Vec<_>>()
    );
    let report = verify_chain(&db, "gw-1", &[]).await.unwrap();
    assert!(report.is_ok(), "{report}");
    let (written, indexed) = journaled.progress();
    assert_eq!(written, indexed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_written_over_in_place_replays_only_what_the_index_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path()).await;
    let path = dir.path().join("audit.journal");
    let config = JournalConfig {
        rotate_bytes: 2048,
        prealloc_bytes: 4096,
        index_delay: std::time::Duration::from_millis(1),
        ..JournalConfig::default()
    };
    let (_, first) = journaled_writer(&db, &path, "gw-1", config).await;
    for n in 0..40 {
        first.append(event(n), n as i64).await.unwrap();
        first.settled().await.unwrap();
    }
    drop(first);
    // 40 frames of about 300 bytes: the file was written over from the start, not grown.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= 3 * 4096, "the journal grew to {size} bytes");
    let bytes = std::fs::read(&path).unwrap();
    let header = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let (frames, _) = steward_gateway::audit_journal::scan_frames(&bytes[header..]);
    assert!(frames < 40, "{frames} frames: nothing was written over");

    // The last record never reached the index (a crash between the journal and SQL): the
    // next open replays it from the current frames and skips the stale ones after them.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    db.raw_execute("DELETE FROM audit_log WHERE seq = 39")
        .await
        .unwrap();
    let reopened = writer(&db, &path, "gw-1").await;
    assert_eq!(rows(&db, "gw-1").await, (0..40).collect::<Vec<_>>());
    continues_at(&reopened, &db, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_head_does_not_end_with_it_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path()).await;
    let journal_path = dir.path().join("audit.journal");
    let (journal, writer) =
        journaled_writer(&db, &journal_path, "gw-1", JournalConfig::default()).await;
    append_concurrently_and_check(&writer, &db, 3).await;
    let head = journal.head().await.unwrap();
    assert_eq!(head.tree_size(), 3);

    // Record 3, hashed onto the real head.
    let mut record_event = event(3);
    record_event.instance_id = "gw-1".to_owned();
    let record = steward_audit::AuditRecord {
        seq: 3,
        time_ms: 3,
        prev_hash: head.chain_head,
        hash: steward_audit::hash_with_event_bytes(
            3,
            3,
            &head.chain_head,
            &steward_audit::canonical_event_bytes(&record_event).unwrap(),
        ),
        event: record_event,
    };
    let encoded = || vec![steward_audit::EncodedRecord::from_record(&record).unwrap()];
    let mut after = head.clone();
    after.push([&record]);

    // A head that stops short of the batch, and one that ends on another hash.
    let err = journal
        .append_batch_encoded(encoded(), &head)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not end with"), "{err}");
    let mut forged = after.clone();
    forged.chain_head = [7; 32];
    assert!(
        journal
            .append_batch_encoded(encoded(), &forged)
            .await
            .is_err()
    );
    assert_eq!(journal.head().await.unwrap(), head);
    assert_eq!(journal.progress().0, 3);

    // The true head goes through, and the chain verifies with the record in it.
    journal
        .append_batch_encoded(encoded(), &after)
        .await
        .unwrap();
    assert_eq!(journal.head().await.unwrap(), after);
    journal.settle().await.unwrap();
    assert_eq!(rows(&db, "gw-1").await, vec![0, 1, 2, 3]);
    let report = verify_chain(&db, "gw-1", &[]).await.unwrap();
    assert!(report.is_ok(), "{report}");
}

/// Under sustained load the index is never exactly caught up when it commits, so a
/// rotation that waited for that moment never came and the journal grew without bound.
/// The writer now waits for the index once the file is past `rotate_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_starts_over_under_sustained_load() {
    let dir = tempfile::tempdir().unwrap();
    let db = store(dir.path()).await;
    let path = dir.path().join("audit.journal");
    let rotate_bytes = 32 * 1024;
    let config = JournalConfig {
        rotate_bytes,
        prealloc_bytes: 8 * 1024,
        // The default: the index commits every 100 ms, behind the writer.
        ..JournalConfig::default()
    };
    let (journal, appender) = journaled_writer(&db, &path, "gw-1", config).await;
    // 16 appenders that never pause, about 300 bytes a record: ~900 KB in all, many
    // times `rotate_bytes`.
    let count = 3_000u64;
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let appender = appender.clone();
            tokio::spawn(async move {
                for n in (t..count).step_by(16) {
                    appender.append(event(n), n as i64).await.unwrap();
                }
            })
        })
        .collect();
    let mut largest = 0;
    for task in tasks {
        task.await.unwrap();
        largest = largest.max(std::fs::metadata(&path).unwrap().len());
    }
    assert_eq!(journal.progress().0, count);
    let size = std::fs::metadata(&path).unwrap().len();
    // Past `rotate_bytes` by at most one batch (256 records) and a preallocation step.
    let bound = rotate_bytes + 256 * 400 + 8 * 1024;
    assert!(
        size <= bound && largest <= bound,
        "the journal grew to {size} bytes (largest seen {largest}), bound {bound}"
    );

    appender.settled().await.unwrap();
    assert_eq!(
        rows(&db, "gw-1").await,
        (0..count as i64).collect::<Vec<_>>()
    );
    let report = verify_chain(&db, "gw-1", &[]).await.unwrap();
    assert!(report.is_ok(), "{report}");

    // The last records never reached the index (a crash between the journal and SQL):
    // the next open replays them from the written-over file, and the chain goes on. Only
    // records of the current cycle can be lost that way: the journal starts over only once
    // the index holds everything before, so the rows dropped here start no earlier than
    // the first frame after the header.
    drop(appender);
    drop(journal);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let bytes = std::fs::read(&path).unwrap();
    let body = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    // A frame starts with its length (u32) and its record's sequence number (u64), LE.
    let cycle_start = u64::from_le_bytes(bytes[body + 4..body + 12].try_into().unwrap());
    assert!(cycle_start < count, "{cycle_start}");
    let lost_from = cycle_start.max(count - 5);
    db.raw_execute(&format!("DELETE FROM audit_log WHERE seq >= {lost_from}"))
        .await
        .unwrap();
    let reopened = writer(&db, &path, "gw-1").await;
    assert_eq!(
        rows(&db, "gw-1").await,
        (0..count as i64).collect::<Vec<_>>()
    );
    continues_at(&reopened, &db, count).await;
}
