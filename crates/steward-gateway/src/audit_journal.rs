//! The audit journal: an append-only file that makes audit records durable with one
//! `fdatasync` per group-commit batch, in front of the SQL store that indexes them for
//! search, proofs and verification.
//!
//! # Why
//!
//! Every governed call waits for two durable records (the decision before the upstream is
//! contacted, the outcome before the response is released). Committing each batch as a
//! SQLite transaction put the whole row insertion (binding, B-tree and index updates, WAL
//! bookkeeping) on that critical path, behind one connection. Appending a batch's frames
//! to a file and syncing it costs a single write and an `fdatasync`; the rows are inserted
//! into SQL afterwards, by an indexer task, in large transactions.
//!
//! # Guarantees
//!
//! - `append_batch` returns `Ok` only once the batch's frames are on disk (`fdatasync`):
//!   a crash after that loses nothing, because startup replays the journal's frames that
//!   the SQL store does not hold yet before anything else runs.
//! - On a write or sync error the file is cut back to its last durable length and the
//!   batch fails (the caller fails closed); appends resume by themselves once the disk
//!   can write again.
//! - A torn tail (a frame cut short by a crash, or whose hash does not recompute) was
//!   never acknowledged: replay stops there and the file is cut back.
//! - The indexer may lag the journal by at most `max_lag` records; beyond that appends
//!   wait for it, and fail after `lag_timeout` (fail closed, never unbounded memory).
//! - Readers that must see every durable record (admin audit search, proofs,
//!   verification) call [`AuditStore::settle`] first, which waits until the index has
//!   caught up with everything durable at the time of the call.
//! - Once everything in the journal is indexed and the file has grown past
//!   `rotate_bytes`, writing starts over after the header (SQL committed those rows with
//!   `synchronous=FULL`). The frames left behind are stale: every one of them has a
//!   sequence number the index already holds, so replay skips them, and the first frame
//!   overwritten in part ends the valid prefix.
//!
//! # Rotation
//!
//! The writer decides: the first batch after the file passes `rotate_bytes` goes right
//! after the header once the index holds every record before it. After a lull that is
//! already so; under sustained load it never is by itself (the writer has always appended
//! more by the time the indexer commits: an indexer that waited for that moment let the
//! file grow to 142 MB in 8 s of the HTTP benchmark), so the writer asks the indexer to
//! commit at once and waits for it (one index commit, tens of milliseconds, once per
//! `rotate_bytes` of records). If the index does not catch up within `ROTATE_WAIT` (2 s) the file
//! keeps growing and rotation is tried again a quarter of `rotate_bytes` later: appends
//! never fail for want of a rotation.
//!
//! # Threads
//!
//! `steward serve` runs the audit writer on a thread of its own ([`spawn_writer_thread`]),
//! where the journal writes and syncs each batch in place: the batch is hashed, written,
//! synced and answered on one thread. On a multi-threaded runtime (a writer started with
//! `AuditWriter::start`) the write goes to the blocking pool instead, which costs two
//! thread hand-offs per batch. The records themselves are handed to the indexer, which
//! binds their fields in place on its own (blocking) thread (no row is copied), and the
//! journal's head is the one the writer computed for the batch (its Merkle frontier is
//! hashed once, by the writer).
//!
//! # Preallocation
//!
//! The file is extended ahead of the writes, `prealloc_bytes` at a time, by writing zeros
//! and syncing the new size once. A batch then overwrites blocks that already exist, and
//! its `fdatasync` flushes data only: no size or block-map update to write as well, which
//! cut the cost of each sync by about a third on the ext4 volumes measured (the reason
//! databases zero-fill their write-ahead log). The batch that crosses the end pays for
//! the extension (a few milliseconds); once the file has wrapped it stops growing. On a
//! full disk the extension fails, and so does that batch, as an append would: only the
//! records that fit in room already zeroed (at most `prealloc_bytes`) are written first.
//!
//! # Frame format
//!
//! The file starts with one header line, `steward-audit-journal v1 <instance-id>\n`. Each
//! frame is `u32 body length (LE)` then the body: `u64 seq | i64 time_ms | prev hash (32)
//! | hash (32) | canonical event bytes`. The record hash covers seq, time, previous hash
//! and event bytes, so replay validates every frame by recomputing it.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steward_audit::{
    AuditEvent, AuditRecord, AuditStore, BoxFuture, EncodedRecord, Hash, IndexColumns,
    StoreError as AuditStoreError, StoreHead, hash_with_event_bytes,
};
use steward_store::models::AuditRow;
use tokio::sync::{Notify, watch};

use crate::audit_sink::{SqlAuditStore, encoded_row, encoded_row_refs, store_err};
use crate::lock;

const MAGIC: &str = "steward-audit-journal v1";
/// Fixed part of a frame body: seq, time, previous hash, hash.
const FIXED: usize = 8 + 8 + 32 + 32;
/// Largest event a frame may carry (a sanity bound for replay of a damaged file).
const MAX_EVENT: usize = 16 * 1024 * 1024;
/// How long the writer waits for the index to catch up before starting the file over.
const ROTATE_WAIT: Duration = Duration::from_secs(2);

/// Journal tuning.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Records the index may lag behind the journal before appends wait.
    pub max_lag: u64,
    /// How long an append waits for a lagging index before it fails.
    pub lag_timeout: Duration,
    /// Rows per indexer transaction, at most.
    pub index_batch: usize,
    /// How long the indexer lets a transaction grow before committing it (unless a
    /// reader is waiting in `settle`, or a full batch is queued). Row insertion costs far
    /// less per row in large transactions: fewer WAL pages rewritten, one sync.
    pub index_delay: Duration,
    /// Writing starts over after the header once everything is indexed and the frames
    /// take more than this.
    pub rotate_bytes: u64,
    /// Zeros written ahead of the frames at a time (see "Preallocation").
    pub prealloc_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            max_lag: 50_000,
            lag_timeout: Duration::from_secs(10),
            index_batch: 4096,
            index_delay: Duration::from_millis(100),
            rotate_bytes: 64 * 1024 * 1024,
            prealloc_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Why the journal could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// File I/O failed.
    #[error("audit journal {path}: {source}")]
    Io {
        /// The journal file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The journal does not continue the stored chain.
    #[error("audit journal {path}: {detail}")]
    Corrupt {
        /// The journal file.
        path: String,
        /// What does not fit.
        detail: String,
    },
    /// The SQL store failed.
    #[error("audit journal replay: {0}")]
    Store(String),
}

struct JournalFile {
    file: File,
    /// Length of the durable prefix (header and acknowledged frames).
    len: u64,
    /// Length of the header line.
    header_len: u64,
    /// Size of the file: everything past `len` is zeros or stale frames.
    capacity: u64,
    /// Sequence number after the last frame in the file.
    next_seq: u64,
    /// A failed write may have left bytes past `len`; cut them before the next write.
    dirty: bool,
    /// Length past which the writer starts over after the header (see "Rotation").
    rotate_at: u64,
}

struct Shared {
    path: PathBuf,
    file: Mutex<JournalFile>,
    /// Next sequence number committed to the SQL index.
    indexed: watch::Sender<u64>,
    /// Rows waiting for the indexer, in sequence order.
    queue: Mutex<Vec<EncodedRecord>>,
    wake: Notify,
    /// Set by `settle`: index what is queued now, without waiting for the batch to grow.
    flush: AtomicBool,
    flush_wake: Notify,
    head: Mutex<StoreHead>,
    config: JournalConfig,
}

/// An [`AuditStore`] that makes records durable in the journal and indexes them into a
/// [`SqlAuditStore`] in the background. See the module docs.
#[derive(Clone)]
pub struct JournaledAuditStore {
    sql: SqlAuditStore,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for JournaledAuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournaledAuditStore")
            .field("path", &self.shared.path)
            .field("written", &lock(&self.shared.head).tree_size())
            .field("indexed", &*self.shared.indexed.borrow())
            .finish()
    }
}

fn io_err(path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// One decoded frame.
struct Frame {
    record_seq: u64,
    time_ms: i64,
    prev_hash: Hash,
    hash: Hash,
    event: Vec<u8>,
}

/// Decodes one frame at the start of `bytes`; `None` if it is incomplete or invalid.
fn decode_frame(bytes: &[u8]) -> Option<(Frame, usize)> {
    let (len_bytes, rest) = bytes.split_first_chunk::<4>()?;
    let len = usize::try_from(u32::from_le_bytes(*len_bytes)).ok()?;
    if !(FIXED..=FIXED + MAX_EVENT).contains(&len) {
        return None;
    }
    let body = rest.get(..len)?;
    let (seq, body) = body.split_first_chunk::<8>()?;
    let (time, body) = body.split_first_chunk::<8>()?;
    let (prev_hash, body) = body.split_first_chunk::<32>()?;
    let (hash, event) = body.split_first_chunk::<32>()?;
    let record_seq = u64::from_le_bytes(*seq);
    let time_ms = i64::from_le_bytes(*time);
    if hash_with_event_bytes(record_seq, time_ms, prev_hash, event) != *hash {
        return None;
    }
    let frame = Frame {
        record_seq,
        time_ms,
        prev_hash: *prev_hash,
        hash: *hash,
        event: event.to_vec(),
    };
    Some((frame, 4 + len))
}

/// Decodes frames from `bytes` (after the header); returns them and the length of the
/// valid prefix. Decoding stops at the first incomplete or invalid frame.
fn decode_frames(bytes: &[u8]) -> (Vec<Frame>, usize) {
    let mut frames = Vec::new();
    let mut at = 0usize;
    while let Some((frame, used)) = bytes.get(at..).and_then(decode_frame) {
        frames.push(frame);
        at += used;
    }
    (frames, at)
}

/// What replay would take from a journal body (the bytes after the header line): the
/// number of valid frames and the length of the valid prefix. Public for the fuzz target.
pub fn scan_frames(bytes: &[u8]) -> (usize, usize) {
    let (frames, valid) = decode_frames(bytes);
    (frames.len(), valid)
}

fn encode_frame(out: &mut Vec<u8>, record: &EncodedRecord) {
    let event = &record.event_bytes;
    let len = u32::try_from(FIXED + event.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record.seq.to_le_bytes());
    out.extend_from_slice(&record.time_ms.to_le_bytes());
    out.extend_from_slice(&record.prev_hash);
    out.extend_from_slice(&record.hash);
    out.extend_from_slice(event);
}

impl JournaledAuditStore {
    /// Opens (or creates) the journal at `path`, replays into `sql` the frames it holds
    /// that `sql` does not, and starts the indexer on the current tokio runtime.
    ///
    /// Refuses a journal whose frames do not continue the stored chain (another
    /// instance's journal, or a damaged one): starting anyway would fork the log.
    pub async fn open(
        sql: SqlAuditStore,
        path: &Path,
        config: JournalConfig,
    ) -> Result<Self, JournalError> {
        let mut head = sql
            .head()
            .await
            .map_err(|e| JournalError::Store(e.to_string()))?;
        let header = format!("{MAGIC} {}\n", sql.instance_id());
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io_err(path, e))?;

        let mut replay = Vec::new();
        if !bytes.is_empty() {
            let Some((found, frames_bytes)) = bytes
                .iter()
                .position(|b| *b == b'\n')
                .and_then(|newline| bytes.split_at_checked(newline + 1))
            else {
                return Err(corrupt(path, "the header line is missing"));
            };
            let found = String::from_utf8_lossy(found);
            if found != header {
                let (frames, _) = decode_frames(frames_bytes);
                if frames.iter().any(|f| f.record_seq >= head.tree_size()) {
                    return Err(corrupt(
                        path,
                        &format!(
                            "it belongs to `{}`, not to this instance, and holds records the \
                             database does not; start with that instance id or move the file away",
                            found.trim_end()
                        ),
                    ));
                }
            } else {
                let (frames, _) = decode_frames(frames_bytes);
                for frame in frames {
                    if frame.record_seq < head.tree_size() {
                        continue;
                    }
                    if frame.record_seq != head.tree_size() || frame.prev_hash != head.chain_head {
                        return Err(corrupt(
                            path,
                            &format!(
                                "record {} does not continue the stored chain (which ends at {})",
                                frame.record_seq,
                                head.tree_size()
                            ),
                        ));
                    }
                    head.frontier.append(&frame.hash);
                    head.chain_head = frame.hash;
                    replay.push(frame);
                }
            }
        }
        if !replay.is_empty() {
            let mut rows = Vec::with_capacity(replay.len());
            for frame in replay {
                rows.push(frame_row(sql.instance_id(), frame).map_err(|e| corrupt(path, &e))?);
            }
            for chunk in rows.chunks(config.index_batch.max(1)) {
                sql.store()
                    .audit_append(chunk)
                    .await
                    .map_err(|e| JournalError::Store(e.to_string()))?;
            }
            tracing::warn!(
                records = rows.len(),
                "replayed audit records from the journal into the database"
            );
        }
        // Everything is in the database now: start an empty journal.
        file.set_len(0).map_err(|e| io_err(path, e))?;
        file.write_all_at(header.as_bytes(), 0)
            .map_err(|e| io_err(path, e))?;
        file.sync_all().map_err(|e| io_err(path, e))?;
        if !existed {
            // A new file's directory entry is only durable once the directory is synced.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| io_err(dir, e))?;
            }
        }
        let len = header.len() as u64;
        let next = head.tree_size();
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            file: Mutex::new(JournalFile {
                file,
                len,
                header_len: len,
                capacity: len,
                next_seq: next,
                dirty: false,
                rotate_at: config.rotate_bytes,
            }),
            indexed: watch::channel(next).0,
            queue: Mutex::new(Vec::new()),
            wake: Notify::new(),
            flush: AtomicBool::new(false),
            flush_wake: Notify::new(),
            head: Mutex::new(head),
            config,
        });
        let store = Self { sql, shared };
        tokio::spawn(index_loop(store.sql.clone(), Arc::clone(&store.shared)));
        Ok(store)
    }

    /// Sequence numbers durable in the journal and committed to the index.
    pub fn progress(&self) -> (u64, u64) {
        (self.written(), *self.shared.indexed.borrow())
    }

    /// Next sequence number durable in the journal.
    fn written(&self) -> u64 {
        lock(&self.shared.head).tree_size()
    }

    /// Whether the batch starting at `expected` may start the file over: the file is past
    /// its rotation length and the index holds every record before the batch. Under
    /// sustained load the index is never exactly caught up, so the indexer is asked to
    /// commit at once and the writer waits for it, at most [`ROTATE_WAIT`]. If it does not
    /// catch up in time the file keeps growing, and rotation is tried again a quarter of
    /// `rotate_bytes` later. Appends never fail for want of a rotation.
    async fn ready_to_rotate(&self, expected: u64) -> bool {
        let (len, rotate_at) = {
            let journal = lock(&self.shared.file);
            (journal.len, journal.rotate_at)
        };
        if len < rotate_at {
            return false;
        }
        if *self.shared.indexed.borrow() >= expected {
            return true;
        }
        self.shared.flush.store(true, Ordering::Release);
        self.shared.flush_wake.notify_one();
        let mut rx = self.shared.indexed.subscribe();
        let caught_up = tokio::time::timeout(
            ROTATE_WAIT.min(self.shared.config.lag_timeout),
            rx.wait_for(|indexed| *indexed >= expected),
        )
        .await;
        if matches!(caught_up, Ok(Ok(_))) {
            return true;
        }
        let retry = len.saturating_add((self.shared.config.rotate_bytes / 4).max(1));
        lock(&self.shared.file).rotate_at = retry;
        tracing::warn!(
            bytes = len,
            "audit index did not catch up for a journal rotation; the journal keeps growing"
        );
        false
    }

    async fn wait_indexed(&self, target: u64) -> Result<(), AuditStoreError> {
        let mut rx = self.shared.indexed.subscribe();
        let wait = rx.wait_for(|indexed| *indexed >= target);
        match tokio::time::timeout(self.shared.config.lag_timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(AuditStoreError::new("audit indexer stopped")),
            Err(_) => Err(AuditStoreError::new(format!(
                "the audit index is behind the journal (indexed {}, waiting for {target})",
                *self.shared.indexed.borrow()
            ))),
        }
    }
}

fn corrupt(path: &Path, detail: &str) -> JournalError {
    JournalError::Corrupt {
        path: path.display().to_string(),
        detail: detail.to_owned(),
    }
}

fn frame_row(instance_id: &str, frame: Frame) -> Result<AuditRow, String> {
    let event: AuditEvent = serde_json::from_slice(&frame.event)
        .map_err(|e| format!("record {}: {e}", frame.record_seq))?;
    // Parsed as JSON, the bytes are UTF-8: the row keeps them as they are.
    Ok(encoded_row(
        instance_id,
        EncodedRecord {
            seq: frame.record_seq,
            time_ms: frame.time_ms,
            prev_hash: frame.prev_hash,
            hash: frame.hash,
            columns: IndexColumns::take(event),
            event_bytes: frame.event,
        },
    ))
}

/// Zeros for preallocation, written a slice at a time.
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

/// Cuts the file back to its durable length (a failed write may have left frames of a
/// batch that was never acknowledged past it).
fn cut(journal: &mut JournalFile) -> std::io::Result<()> {
    journal.file.set_len(journal.len)?;
    journal.file.sync_all()?;
    journal.capacity = journal.len;
    journal.dirty = false;
    Ok(())
}

/// Extends the file with zeros to at least `end`, in steps of `step`, and syncs the size.
fn preallocate(journal: &mut JournalFile, end: u64, step: u64) -> std::io::Result<()> {
    let step = step.max(1);
    let target = end.div_ceil(step).saturating_mul(step);
    let mut at = journal.capacity;
    while at < target {
        let n = usize::try_from(target - at).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
        journal
            .file
            .write_all_at(ZEROS.get(..n).unwrap_or(&ZEROS), at)?;
        at += n as u64;
    }
    journal.file.sync_all()?;
    journal.capacity = target;
    Ok(())
}

/// Writes `buf` at the durable end and syncs; on failure cuts the file back.
fn write_durable(journal: &mut JournalFile, buf: &[u8], prealloc: u64) -> std::io::Result<()> {
    if journal.dirty {
        cut(journal)?;
    }
    let end = journal.len + buf.len() as u64;
    let result = if end > journal.capacity {
        preallocate(journal, end, prealloc)
    } else {
        Ok(())
    }
    .and_then(|()| journal.file.write_all_at(buf, journal.len))
    .and_then(|()| journal.file.sync_data());
    if let Err(e) = result {
        journal.dirty = true;
        let _ = cut(journal);
        return Err(e);
    }
    journal.len = end;
    Ok(())
}

impl AuditStore for JournaledAuditStore {
    fn append_batch<'a>(
        &'a self,
        records: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), AuditStoreError>> {
        Box::pin(async move {
            let batch = records
                .iter()
                .map(EncodedRecord::from_record)
                .collect::<Result<Vec<_>, _>>()
                .map_err(store_err)?;
            let mut after = lock(&self.shared.head).clone();
            after.push(records);
            self.append_batch_encoded(batch, &after).await
        })
    }

    fn append_batch_encoded<'a>(
        &'a self,
        batch: Vec<EncodedRecord>,
        after: &'a StoreHead,
    ) -> BoxFuture<'a, Result<(), AuditStoreError>> {
        Box::pin(async move {
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(());
            };
            let (expected, next) = (first.seq, last.seq + 1);
            if after.tree_size() != next || after.chain_head != last.hash {
                return Err(AuditStoreError::new(format!(
                    "the head after records {expected}..{next} does not end with the last of them"
                )));
            }
            // Backpressure: the index may not fall further behind than `max_lag`.
            let lag_floor = expected.saturating_sub(self.shared.config.max_lag);
            if *self.shared.indexed.borrow() < lag_floor {
                metrics::counter!("steward_audit_index_lag_waits_total").increment(1);
                self.wait_indexed(lag_floor).await?;
            }
            let rotate = self.ready_to_rotate(expected).await;
            let mut buf = Vec::with_capacity(batch.iter().map(|e| e.event_bytes.len() + 84).sum());
            for e in &batch {
                encode_frame(&mut buf, e);
            }
            let shared = Arc::clone(&self.shared);
            let write = move || {
                let mut journal = lock(&shared.file);
                if journal.next_seq != expected {
                    return Err(AuditStoreError::new(format!(
                        "batch starts at {expected}, the journal continues at {}",
                        journal.next_seq
                    )));
                }
                // Every frame in the file is indexed: this batch goes right after the header.
                if rotate && *shared.indexed.borrow() >= expected {
                    journal.len = journal.header_len;
                    journal.rotate_at = shared.config.rotate_bytes;
                }
                let prealloc = shared.config.prealloc_bytes;
                write_durable(&mut journal, &buf, prealloc).map_err(|e| {
                    AuditStoreError::new(format!("audit journal {}: {e}", shared.path.display()))
                })?;
                journal.next_seq = next;
                Ok(())
            };
            if on_own_thread() {
                write()?;
            } else {
                tokio::task::spawn_blocking(write)
                    .await
                    .map_err(|e| AuditStoreError::new(format!("audit journal task: {e}")))??;
            }

            // Queued before the head moves, so everything `settle` sees in the head is
            // already on its way to the index. The head is the writer's, after the batch:
            // its frontier is not hashed again here.
            let mut head = lock(&self.shared.head);
            head.clone_from(after);
            lock(&self.shared.queue).extend(batch);
            drop(head);
            self.shared.wake.notify_one();
            Ok(())
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<StoreHead, AuditStoreError>> {
        Box::pin(async move { Ok(lock(&self.shared.head).clone()) })
    }

    fn settle(&self) -> BoxFuture<'_, Result<(), AuditStoreError>> {
        Box::pin(async move {
            let target = self.written();
            if *self.shared.indexed.borrow() >= target {
                return Ok(());
            }
            self.shared.flush.store(true, Ordering::Release);
            self.shared.flush_wake.notify_one();
            self.wait_indexed(target).await
        })
    }
}

/// Whether the caller runs on a single-threaded runtime (the writer's own thread, see
/// [`spawn_writer_thread`], or a test's runtime), where the journal writes and syncs in
/// place: blocking that thread holds up nothing but the writer, which waits for the sync
/// anyway. On a multi-threaded runtime the write goes to the blocking pool instead.
fn on_own_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// Runs the audit writer's task on a thread of its own, with a single-threaded runtime,
/// for [`AuditWriter::start_with`](steward_audit::AuditWriter::start_with).
///
/// With the journal this takes two thread hand-offs off every group commit: the writer
/// hashes a batch, writes and syncs it and answers its callers on one thread, instead of
/// handing the write to the blocking pool and waiting to be woken again. At concurrency
/// 64 those hand-offs took about as long as the `fdatasync` itself.
///
/// # Errors
///
/// The runtime or the thread cannot be created (the server does not start).
pub fn spawn_writer_thread() -> std::io::Result<impl FnOnce(steward_audit::BoxFuture<'static, ()>)>
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = std::sync::mpsc::channel::<steward_audit::BoxFuture<'static, ()>>();
    std::thread::Builder::new()
        .name("steward-audit".to_owned())
        .spawn(move || {
            // Nothing to run if the writer never started (its start failed).
            if let Ok(task) = rx.recv() {
                runtime.block_on(task);
            }
        })?;
    Ok(move |task| {
        // If the thread is gone the task is dropped, and appends fail closed.
        let _ = tx.send(task);
    })
}

/// Moves queued rows into SQL in large transactions (letting each grow for up to
/// `index_delay` unless a reader is waiting), retrying with backoff while the database
/// cannot write.
async fn index_loop(sql: SqlAuditStore, shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(50);
    // Records taken from the queue and not committed yet (kept for a retry).
    let mut pending: Vec<EncodedRecord> = Vec::new();
    // Their rows, for the pooled path (PostgreSQL, in-memory databases).
    let mut rows: Vec<AuditRow> = Vec::new();
    let batch = shared.config.index_batch.max(1);
    let instance: Arc<str> = Arc::from(sql.instance_id());
    // An SQLite file gets its own bulk-insert connection; PostgreSQL and in-memory
    // databases go through the pool.
    let fast = sql
        .store()
        .sqlite_audit_index()
        .map(|index| Arc::new(Mutex::new(index)));
    report_lag(&shared);
    loop {
        if pending.is_empty() && rows.is_empty() {
            let notified = shared.wake.notified();
            let queued = lock(&shared.queue).len();
            if queued == 0 {
                // Stop once every writer handle is gone and nothing is left.
                if Arc::strong_count(&shared) == 1 {
                    return;
                }
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            if queued < batch && !shared.flush.load(Ordering::Acquire) {
                tokio::select! {
                    () = shared.flush_wake.notified() => {}
                    () = tokio::time::sleep(shared.config.index_delay) => {}
                }
            }
            let mut queue = lock(&shared.queue);
            let take = queue.len().min(batch);
            pending.extend(queue.drain(..take));
            if queue.is_empty() {
                shared.flush.store(false, Ordering::Release);
            }
        }
        let next = pending
            .last()
            .map(|e| e.seq)
            .or_else(|| rows.last().and_then(|r| u64::try_from(r.seq).ok()))
            .map_or(0, |seq| seq + 1);
        let result = match &fast {
            Some(index) => {
                let index = Arc::clone(index);
                let records = std::mem::take(&mut pending);
                let instance = Arc::clone(&instance);
                match tokio::task::spawn_blocking(move || {
                    let result = lock(&index).append_refs(&encoded_row_refs(&instance, &records));
                    (records, result)
                })
                .await
                {
                    Ok((records, result)) => {
                        pending = records;
                        result
                    }
                    Err(e) => {
                        // The rows stay in the journal for the next start to replay; this
                        // instance stops indexing, so writers fail closed at `max_lag`.
                        tracing::error!(error = %e, "audit indexer failed; indexing stopped");
                        return;
                    }
                }
            }
            None => {
                // Records become rows once; a retry reuses them.
                rows.extend(pending.drain(..).map(|e| encoded_row(&instance, e)));
                sql.store().audit_append(&rows).await
            }
        };
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(50);
                pending.clear();
                rows.clear();
                shared.indexed.send_replace(next);
                report_lag(&shared);
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = pending.len() + rows.len(), "audit index write failed; retrying");
                metrics::counter!("steward_audit_index_failures_total").increment(1);
                // The lag grows while the index cannot write: keep the gauge current.
                report_lag(&shared);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Publishes how many durable records the index does not hold yet
/// (`steward_audit_index_lag_records`). Appends wait once it reaches `max_lag`, which
/// `steward_audit_index_lag_waits_total` counts.
fn report_lag(shared: &Shared) {
    let written = lock(&shared.head).tree_size();
    let lag = written.saturating_sub(*shared.indexed.borrow());
    metrics::gauge!("steward_audit_index_lag_records").set(lag as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_cut() {
        let prev = [7u8; 32];
        let event_value = steward_audit::AuditEvent::new(
            steward_audit::EventKind::Decision,
            steward_audit::Actor::new(steward_audit::ActorKind::Identity, "idn_1"),
        );
        let event = steward_audit::canonical_event_bytes(&event_value).unwrap();
        let hash = hash_with_event_bytes(3, 99, &prev, &event);
        let record = AuditRecord {
            seq: 3,
            time_ms: 99,
            prev_hash: prev,
            hash,
            event: event_value,
        };
        let record = EncodedRecord::from_record(&record).unwrap();
        assert_eq!(record.event_bytes, event);
        let mut buf = Vec::new();
        encode_frame(&mut buf, &record);
        let whole = buf.len();
        encode_frame(&mut buf, &record);
        let (frames, valid) = decode_frames(&buf);
        assert_eq!(frames.len(), 2);
        assert_eq!(valid, buf.len());
        assert_eq!(frames[0].record_seq, 3);
        assert_eq!(frames[0].event, event);

        // Cut inside the second frame: only the first is valid.
        let (frames, valid) = decode_frames(&buf[..whole + 10]);
        assert_eq!((frames.len(), valid), (1, whole));
        // A flipped byte in the event breaks the hash: the frame is not replayed.
        let mut bad = buf.clone();
        bad[whole + 4 + FIXED] ^= 1;
        let (frames, valid) = decode_frames(&bad);
        assert_eq!((frames.len(), valid), (1, whole));
        // A nonsense length stops decoding instead of allocating.
        let (frames, valid) = decode_frames(&[0xff, 0xff, 0xff, 0x7f, 0, 0]);
        assert_eq!((frames.len(), valid), (0, 0));
    }

    /// Damaged journals (every single-byte change and every cut of a valid two-frame
    /// body, plus pseudo-random bytes) never panic, and the valid prefix never grows past
    /// the input or past the intact frames.
    #[test]
    fn damaged_bytes_never_panic_or_overreach() {
        let event = br#"{"kind":"decision"}"#.to_vec();
        let mut buf = Vec::new();
        let mut prev = [0u8; 32];
        for seq in 0..2u64 {
            let hash = hash_with_event_bytes(seq, 5, &prev, &event);
            let record = EncodedRecord {
                seq,
                time_ms: 5,
                prev_hash: prev,
                hash,
                columns: IndexColumns::take(steward_audit::AuditEvent::new(
                    steward_audit::EventKind::Decision,
                    steward_audit::Actor::new(steward_audit::ActorKind::Identity, "i"),
                )),
                event_bytes: event.clone(),
            };
            encode_frame(&mut buf, &record);
            prev = hash;
        }
        assert_eq!(scan_frames(&buf), (2, buf.len()));
        for cut in 0..buf.len() {
            let (frames, valid) = scan_frames(&buf[..cut]);
            assert!(valid <= cut && frames < 2, "cut {cut}");
        }
        for at in 0..buf.len() {
            let mut damaged = buf.clone();
            damaged[at] ^= 0x41;
            let (frames, valid) = scan_frames(&damaged);
            assert!(frames < 2 && valid < buf.len(), "flip at {at}");
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 300)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            let (_, valid) = scan_frames(&bytes);
            assert!(valid <= bytes.len());
        }
    }
}
