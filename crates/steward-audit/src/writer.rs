//! The group-commit writer: assigns sequence numbers and chain hashes, batches concurrent
//! appends into one durable `append_batch` call, and answers each caller once its batch
//! is durable.
//!
//! # Contract with the store
//!
//! [`AuditStore::append_batch`] is atomic and durable: when it returns `Ok`, every record
//! of the batch survives a crash (one fsync / one committed transaction); when it returns
//! `Err`, none of them is visible. The writer only advances its head (next sequence
//! number, chain head, Merkle frontier) after `Ok`, so a failed batch leaves no gap: the
//! next batch reuses the same sequence numbers. After a failure the writer re-reads
//! [`AuditStore::head`] before the next batch, so a store that committed despite
//! reporting an error is followed rather than forked, and appends resume by themselves
//! once the store can write again.
//!
//! # Batching
//!
//! The writer task takes the first waiting append, then everything already queued (up to
//! `max_batch`), then waits up to `batch_window` for more. While a commit is in flight new
//! appends queue up, so under load batches grow without any window; a window only helps
//! when commits are cheap relative to arrival gaps.
//!
//! A caller that stops waiting (its future dropped) does not withdraw its record: once
//! queued, it is written.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{AuditError, StoreError};
use crate::event::{
    AuditEvent, AuditRecord, Decision, EventKind, GENESIS_HASH, Hash, canonical_event_bytes,
    hash_with_event_bytes,
};
use crate::merkle::MerkleFrontier;

/// A boxed `Send` future, so [`AuditStore`] can be used as `dyn AuditStore`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The durable state of the log, read at startup and after a failed commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHead {
    /// Hash of the last durable record ([`GENESIS_HASH`] when empty).
    pub chain_head: Hash,
    /// Merkle frontier over all durable records; its size is the next sequence number.
    pub frontier: MerkleFrontier,
}

impl StoreHead {
    /// The head of an empty log.
    pub fn genesis() -> Self {
        Self {
            chain_head: GENESIS_HASH,
            frontier: MerkleFrontier::new(),
        }
    }

    /// Number of durable records, which is also the next sequence number.
    pub fn tree_size(&self) -> u64 {
        self.frontier.size()
    }

    /// Rebuilds the head by replaying records in sequence order (for stores that do not
    /// persist the frontier). Does not verify the chain; use [`crate::verify_log`] for that.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Self {
        let mut head = Self::genesis();
        head.push(records);
        head
    }

    /// Extends the head with records that follow it, in order.
    pub fn push<'a>(&mut self, records: impl IntoIterator<Item = &'a AuditRecord>) {
        for record in records {
            self.frontier.append(&record.hash);
            self.chain_head = record.hash;
        }
    }
}

/// Durable storage of audit records. Implemented by the SQLite and PostgreSQL stores.
pub trait AuditStore: Send + Sync {
    /// Appends `records` (consecutive sequence numbers, continuing the log) atomically
    /// and durably: all or nothing, durable when `Ok`. See the module docs.
    fn append_batch<'a>(
        &'a self,
        records: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Like [`AuditStore::append_batch`], taking the records by value as the writer hands
    /// them over: each event as its canonical bytes ([`crate::event::canonical_event_bytes`],
    /// the event's JSON form, serialized by the caller for the hash) with the columns an
    /// index keeps. A store can persist those bytes without serializing the event again,
    /// and keep the records (for an index written later, on another thread) without
    /// copying them. `after` is the head once the batch is appended, as the writer
    /// computed it while hashing the records: a store that keeps a head in memory takes it
    /// from there instead of hashing the Merkle frontier a second time. The default parses
    /// the events back and calls `append_batch`.
    fn append_batch_encoded<'a>(
        &'a self,
        batch: Vec<EncodedRecord>,
        _after: &'a StoreHead,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let records = batch
                .iter()
                .map(EncodedRecord::to_record)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::new(format!("audit event bytes: {e}")))?;
            self.append_batch(&records).await
        })
    }

    /// The current durable head. Stores may persist the frontier with each batch, or
    /// rebuild it with [`StoreHead::from_records`].
    fn head(&self) -> BoxFuture<'_, Result<StoreHead, StoreError>>;

    /// Returns once every record durable at the time of the call is visible to the
    /// store's readers (search, proofs, verification). Stores that index records after
    /// making them durable wait for their index here; the default has nothing to wait for.
    fn settle(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A record as the writer hands it to [`AuditStore::append_batch_encoded`]: its event as
/// the canonical bytes its hash covers, plus the few fields an index keeps in columns.
///
/// The event itself stays with the caller that built it, which drops it on its own
/// thread once serialized: a record queued for an index holds its bytes and a handful of
/// strings, not the event's whole tree (whose frees, on the indexer's thread, had cost
/// about a tenth of the CPU of a durable append).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRecord {
    /// Sequence number.
    pub seq: u64,
    /// Time of the append, in Unix milliseconds.
    pub time_ms: i64,
    /// Hash of the previous record.
    pub prev_hash: Hash,
    /// Hash of this record.
    pub hash: Hash,
    /// The fields of the event an index keeps in columns.
    pub columns: IndexColumns,
    /// [`crate::event::canonical_event_bytes`] of the event.
    pub event_bytes: Vec<u8>,
}

impl EncodedRecord {
    /// The encoded form of `record`.
    ///
    /// # Errors
    ///
    /// The event cannot be serialized.
    pub fn from_record(record: &AuditRecord) -> Result<Self, AuditError> {
        Ok(Self {
            seq: record.seq,
            time_ms: record.time_ms,
            prev_hash: record.prev_hash,
            hash: record.hash,
            columns: IndexColumns::of(&record.event),
            event_bytes: canonical_event_bytes(&record.event)?,
        })
    }

    /// The record, with its event parsed back from the canonical bytes.
    ///
    /// # Errors
    ///
    /// The bytes are not an event.
    pub fn to_record(&self) -> Result<AuditRecord, serde_json::Error> {
        Ok(AuditRecord {
            seq: self.seq,
            time_ms: self.time_ms,
            prev_hash: self.prev_hash,
            hash: self.hash,
            event: serde_json::from_slice(&self.event_bytes)?,
        })
    }
}

/// The fields of an event that an index keeps in columns of their own, beside the
/// event's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexColumns {
    /// The event's kind.
    pub kind: EventKind,
    /// The actor's id.
    pub actor_id: String,
    /// The operation, if any.
    pub operation: Option<String>,
    /// The decision, if any.
    pub decision: Option<Decision>,
    /// The request id, if any.
    pub request_id: Option<String>,
}

impl IndexColumns {
    /// The columns of `event`, copied.
    pub fn of(event: &AuditEvent) -> Self {
        Self {
            kind: event.kind.clone(),
            actor_id: event.actor.id.clone(),
            operation: event.operation.clone(),
            decision: event.decision,
            request_id: event.request_id.clone(),
        }
    }

    /// The columns of `event`, moved out of it; the rest of the event is dropped here.
    pub fn take(event: AuditEvent) -> Self {
        let AuditEvent {
            kind,
            actor,
            operation,
            decision,
            request_id,
            ..
        } = event;
        Self {
            kind,
            actor_id: actor.id,
            operation,
            decision,
            request_id,
        }
    }
}

/// Writer tuning.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// How long to wait for more appends after the first of a batch (0: no wait).
    pub batch_window: Duration,
    /// Maximum records in one `append_batch`.
    pub max_batch: usize,
    /// Appends that may wait in the queue before `append` waits for room.
    pub queue_capacity: usize,
    /// Written into events whose `instance_id` is empty.
    pub instance_id: String,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_window: Duration::ZERO,
            max_batch: 256,
            queue_capacity: 4096,
            instance_id: String::new(),
        }
    }
}

/// What a caller gets once its record is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Sequence number of the record.
    pub seq: u64,
    /// Hash of the record.
    pub hash: Hash,
}

/// The durable state as last committed by the writer; what a checkpoint signs.
///
/// The Merkle root is computed when asked for ([`WriterHead::root_hash`]): a checkpoint
/// needs it every N records or T seconds, while computing it for every commit would cost
/// up to log2(n) node hashes per group commit on the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterHead {
    /// Records durable so far.
    pub tree_size: u64,
    /// Hash of the last one.
    pub chain_head: Hash,
    frontier: Arc<MerkleFrontier>,
}

impl WriterHead {
    fn of(head: &StoreHead) -> Self {
        Self {
            tree_size: head.frontier.size(),
            chain_head: head.chain_head,
            frontier: Arc::new(head.frontier.clone()),
        }
    }

    /// Merkle root over the durable records.
    pub fn root_hash(&self) -> Hash {
        self.frontier.root()
    }
}

struct AppendRequest {
    // The event's canonical bytes and index columns, taken by the caller so that the
    // writer task only hashes (the writer is a single task; callers run in parallel) and
    // the event is dropped on the thread that built it.
    columns: IndexColumns,
    event_bytes: Vec<u8>,
    time_ms: i64,
    reply: oneshot::Sender<Result<AppendReceipt, AuditError>>,
}

/// Handle to the writer task. Cloning shares the task; it stops when every handle is
/// dropped, after writing what was queued.
#[derive(Clone)]
pub struct AuditWriter {
    sender: mpsc::Sender<AppendRequest>,
    head: watch::Receiver<WriterHead>,
    instance_id: Arc<str>,
    store: Arc<dyn AuditStore>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("instance_id", &self.instance_id)
            .field("head", &*self.head.borrow())
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Reads the store's head and starts the writer task on the current tokio runtime.
    pub async fn start(
        store: Arc<dyn AuditStore>,
        config: WriterConfig,
    ) -> Result<Self, AuditError> {
        Self::start_with(store, config, |task| {
            tokio::spawn(task);
        })
        .await
    }

    /// Like [`AuditWriter::start`], but hands the writer task to `spawn`, which decides
    /// where it runs (the server gives the journal's writer a thread of its own, so that a
    /// batch goes from the queue to the disk without crossing threads).
    ///
    /// If `spawn` drops the task instead of running it, every append fails with
    /// [`AuditError::WriterClosed`] (fail closed).
    pub async fn start_with(
        store: Arc<dyn AuditStore>,
        config: WriterConfig,
        spawn: impl FnOnce(BoxFuture<'static, ()>),
    ) -> Result<Self, AuditError> {
        let state = store.head().await?;
        let (head_tx, head_rx) = watch::channel(WriterHead::of(&state));
        let (sender, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let instance_id: Arc<str> = Arc::from(config.instance_id.as_str());
        spawn(Box::pin(run(
            Arc::clone(&store),
            receiver,
            config,
            state,
            head_tx,
        )));
        Ok(Self {
            sender,
            head: head_rx,
            instance_id,
            store,
        })
    }

    /// Returns once every record durable now is visible to the store's readers; call it
    /// before reading the log back (search, proofs, verification). See
    /// [`AuditStore::settle`].
    pub async fn settled(&self) -> Result<(), AuditError> {
        Ok(self.store.settle().await?)
    }

    /// Appends `event` at `now_ms`; returns once the record is durable. On a store error
    /// nothing was written and the caller must fail closed (503, no upstream call).
    pub async fn append(
        &self,
        mut event: AuditEvent,
        now_ms: i64,
    ) -> Result<AppendReceipt, AuditError> {
        if event.instance_id.is_empty() {
            event.instance_id = self.instance_id.to_string();
        }
        let event_bytes = canonical_event_bytes(&event)?;
        let columns = IndexColumns::take(event);
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            columns,
            event_bytes,
            time_ms: now_ms,
            reply,
        };
        self.sender
            .send(request)
            .await
            .map_err(|_| AuditError::WriterClosed)?;
        answer.await.map_err(|_| AuditError::WriterClosed)?
    }

    /// The last durable head.
    pub fn head(&self) -> WriterHead {
        self.head.borrow().clone()
    }

    /// A receiver that sees every new durable head (for the checkpoint scheduler).
    pub fn subscribe(&self) -> watch::Receiver<WriterHead> {
        self.head.clone()
    }
}

async fn run(
    store: Arc<dyn AuditStore>,
    mut receiver: mpsc::Receiver<AppendRequest>,
    config: WriterConfig,
    mut state: StoreHead,
    head_tx: watch::Sender<WriterHead>,
) {
    let max_batch = config.max_batch.max(1);
    let mut resync = false;
    let mut batch: Vec<AppendRequest> = Vec::with_capacity(max_batch);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        gather(&mut receiver, &mut batch, max_batch, config.batch_window).await;

        if resync {
            match store.head().await {
                Ok(durable) => {
                    state = durable;
                    resync = false;
                    head_tx.send_replace(WriterHead::of(&state));
                }
                Err(err) => {
                    for request in batch.drain(..) {
                        let _ = request.reply.send(Err(AuditError::Store(err.clone())));
                    }
                    continue;
                }
            }
        }

        let mut frontier = state.frontier.clone();
        let mut prev = state.chain_head;
        let mut records = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for request in batch.drain(..) {
            let seq = frontier.size();
            let hash = hash_with_event_bytes(seq, request.time_ms, &prev, &request.event_bytes);
            records.push(EncodedRecord {
                seq,
                time_ms: request.time_ms,
                prev_hash: prev,
                hash,
                columns: request.columns,
                event_bytes: request.event_bytes,
            });
            prev = hash;
            frontier.append(&hash);
            replies.push((request.reply, AppendReceipt { seq, hash }));
        }
        if records.is_empty() {
            continue;
        }

        let after = StoreHead {
            chain_head: prev,
            frontier,
        };
        match store.append_batch_encoded(records, &after).await {
            Ok(()) => {
                state = after;
                head_tx.send_replace(WriterHead::of(&state));
                for (reply, receipt) in replies {
                    let _ = reply.send(Ok(receipt));
                }
            }
            Err(err) => {
                // INVARIANT: the head does not advance on failure, so no sequence gap.
                resync = true;
                for (reply, _) in replies {
                    let _ = reply.send(Err(AuditError::Store(err.clone())));
                }
            }
        }
    }
}

async fn gather(
    receiver: &mut mpsc::Receiver<AppendRequest>,
    batch: &mut Vec<AppendRequest>,
    max_batch: usize,
    window: Duration,
) {
    while batch.len() < max_batch {
        match receiver.try_recv() {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
    if window.is_zero() || batch.len() >= max_batch {
        return;
    }
    let deadline = tokio::time::Instant::now() + window;
    while batch.len() < max_batch {
        match tokio::time::timeout_at(deadline, receiver.recv()).await {
            Ok(Some(request)) => batch.push(request),
            Ok(None) | Err(_) => break,
        }
    }
}

/// An in-memory [`AuditStore`] for tests, with failure injection and an optional commit
/// delay that stands in for fsync.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<MemoryInner>,
    commit_delay: Duration,
}

#[derive(Debug, Default)]
struct MemoryInner {
    records: Vec<AuditRecord>,
    batch_sizes: Vec<usize>,
    fail_next: u32,
    fail_always: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose commits take `delay`.
    pub fn with_commit_delay(delay: Duration) -> Self {
        Self {
            commit_delay: delay,
            ..Self::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails the next `count` batches.
    pub fn fail_next(&self, count: u32) {
        self.lock().fail_next = count;
    }

    /// Fails every batch (and `head`) until called with `false`.
    pub fn set_failing(&self, failing: bool) {
        self.lock().fail_always = failing;
    }

    /// Copy of the stored records.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.lock().records.clone()
    }

    /// Size of every committed batch, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.lock().batch_sizes.clone()
    }
}

impl AuditStore for MemoryStore {
    fn append_batch<'a>(
        &'a self,
        records: &'a [AuditRecord],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if !self.commit_delay.is_zero() {
                tokio::time::sleep(self.commit_delay).await;
            }
            let mut inner = self.lock();
            if inner.fail_always {
                return Err(StoreError::new("injected failure"));
            }
            if inner.fail_next > 0 {
                inner.fail_next -= 1;
                return Err(StoreError::new("injected failure"));
            }
            let expected = u64::try_from(inner.records.len()).unwrap_or(u64::MAX);
            if records.first().map(|record| record.seq) != Some(expected) {
                return Err(StoreError::new("batch does not continue the log"));
            }
            inner.records.extend_from_slice(records);
            inner.batch_sizes.push(records.len());
            Ok(())
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<StoreHead, StoreError>> {
        Box::pin(async move {
            let inner = self.lock();
            if inner.fail_always {
                return Err(StoreError::new("injected failure"));
            }
            Ok(StoreHead::from_records(&inner.records))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointSigner;
    use crate::event::tests::sample_event;
    use crate::verify::verify_log;

    async fn writer(store: &Arc<MemoryStore>, config: WriterConfig) -> AuditWriter {
        let dyn_store: Arc<dyn AuditStore> = store.clone();
        AuditWriter::start(dyn_store, config).await.unwrap()
    }

    fn assert_chain_ok(store: &MemoryStore) {
        let records = store.records();
        for (index, record) in records.iter().enumerate() {
            assert_eq!(record.seq, index as u64, "no gaps");
        }
        let report = verify_log(&records, &[], &[0u8; 32]);
        assert!(report.is_ok(), "{report}");
    }

    #[tokio::test]
    async fn sequential_appends_are_chained_and_answered() {
        let store = Arc::new(MemoryStore::new());
        let config = WriterConfig {
            instance_id: "gw-9".to_owned(),
            ..WriterConfig::default()
        };
        let writer = writer(&store, config).await;
        for n in 0..5u64 {
            let receipt = writer
                .append(sample_event(n), 100 + n as i64)
                .await
                .unwrap();
            assert_eq!(receipt.seq, n);
            assert_eq!(store.records()[n as usize].hash, receipt.hash);
        }
        let mut event = sample_event(9);
        event.instance_id.clear();
        writer.append(event, 1).await.unwrap();
        assert_eq!(store.records()[5].event.instance_id, "gw-9");
        assert_eq!(writer.head().tree_size, 6);
        assert_eq!(writer.head().chain_head, store.records()[5].hash);
        assert_chain_ok(&store);
    }

    #[test]
    fn an_encoded_record_carries_the_hashed_bytes_and_the_index_columns() {
        let event = sample_event(4);
        let event_bytes = canonical_event_bytes(&event).unwrap();
        let record = AuditRecord {
            seq: 4,
            time_ms: 40,
            prev_hash: [1; 32],
            hash: hash_with_event_bytes(4, 40, &[1; 32], &event_bytes),
            event: event.clone(),
        };
        let encoded = EncodedRecord::from_record(&record).unwrap();
        assert_eq!(encoded.event_bytes, event_bytes);
        assert_eq!(encoded.columns.actor_id, event.actor.id);
        assert_eq!(encoded.columns.operation, event.operation);
        assert_eq!(encoded.columns.decision, event.decision);
        assert_eq!(encoded.columns.request_id, event.request_id);
        // Moving the columns out gives what copying them does.
        assert_eq!(IndexColumns::take(event), encoded.columns);
        // And the record parses back exactly from its bytes.
        assert_eq!(encoded.to_record().unwrap(), record);
        let mut broken = encoded;
        broken.event_bytes.truncate(3);
        assert!(broken.to_record().is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_one_commit() {
        let store = Arc::new(MemoryStore::with_commit_delay(Duration::from_millis(20)));
        let writer = writer(&store, WriterConfig::default()).await;
        let tasks: Vec<_> = (0..64u64)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.append(sample_event(n), n as i64).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap().unwrap().seq);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..64).collect::<Vec<_>>());
        let batches = store.batch_sizes();
        assert_eq!(batches.iter().sum::<usize>(), 64);
        // Appends queue while a 20 ms commit is in flight, so they share commits.
        assert!(
            batches.len() <= 8,
            "expected group commit, got batches {batches:?}"
        );
        assert_chain_ok(&store);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_never_exceed_max_batch() {
        let store = Arc::new(MemoryStore::with_commit_delay(Duration::from_millis(5)));
        let config = WriterConfig {
            max_batch: 4,
            ..WriterConfig::default()
        };
        let writer = writer(&store, config).await;
        let tasks: Vec<_> = (0..30u64)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.append(sample_event(n), 0).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let batches = store.batch_sizes();
        assert!(batches.iter().all(|size| *size <= 4), "{batches:?}");
        assert_eq!(batches.iter().sum::<usize>(), 30);
        assert_chain_ok(&store);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batch_window_collects_appends_that_arrive_later() {
        let store = Arc::new(MemoryStore::new());
        let config = WriterConfig {
            batch_window: Duration::from_millis(300),
            ..WriterConfig::default()
        };
        let writer = writer(&store, config).await;
        let tasks: Vec<_> = (0..5u64)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(n * 10)).await;
                    writer.append(sample_event(n), 0).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(store.batch_sizes(), vec![5]);
    }

    #[tokio::test]
    async fn failing_store_fails_callers_without_gaps_and_recovers() {
        let store = Arc::new(MemoryStore::new());
        let writer = writer(&store, WriterConfig::default()).await;
        writer.append(sample_event(0), 0).await.unwrap();
        writer.append(sample_event(1), 0).await.unwrap();
        let before = writer.head();

        store.fail_next(3);
        for n in 2..5u64 {
            let err = writer.append(sample_event(n), 0).await.unwrap_err();
            assert!(matches!(err, AuditError::Store(_)), "{err}");
            assert_eq!(err.code(), steward_core::ErrorCode::AUDIT_UNAVAILABLE);
            assert_eq!(writer.head(), before, "head must not advance on failure");
        }
        assert_eq!(store.records().len(), 2);

        // The store works again: no restart, and the sequence continues at 2.
        let receipt = writer.append(sample_event(5), 0).await.unwrap();
        assert_eq!(receipt.seq, 2);
        assert_eq!(store.records()[2].prev_hash, before.chain_head);
        assert_chain_ok(&store);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_fails_every_caller_in_it() {
        let store = Arc::new(MemoryStore::with_commit_delay(Duration::from_millis(20)));
        let writer = writer(&store, WriterConfig::default()).await;
        store.set_failing(true);
        let tasks: Vec<_> = (0..16u64)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.append(sample_event(n), 0).await })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_err());
        }
        assert!(store.records().is_empty());
        assert_eq!(writer.head().tree_size, 0);
        store.set_failing(false);
        assert_eq!(writer.append(sample_event(99), 0).await.unwrap().seq, 0);
        assert_chain_ok(&store);
    }

    #[tokio::test]
    async fn a_new_writer_resumes_from_the_store_head() {
        let store = Arc::new(MemoryStore::new());
        let first = writer(&store, WriterConfig::default()).await;
        for n in 0..3 {
            first.append(sample_event(n), 0).await.unwrap();
        }
        drop(first);
        let second = writer(&store, WriterConfig::default()).await;
        assert_eq!(second.head().tree_size, 3);
        assert_eq!(second.append(sample_event(3), 0).await.unwrap().seq, 3);
        assert_chain_ok(&store);
    }

    #[tokio::test]
    async fn checkpoint_of_the_writer_head_verifies_against_the_store() {
        let store = Arc::new(MemoryStore::new());
        let writer = writer(&store, WriterConfig::default()).await;
        for n in 0..9 {
            writer.append(sample_event(n), 0).await.unwrap();
        }
        let signer = CheckpointSigner::from_seed(&[5u8; 32]).unwrap();
        let checkpoint = signer.sign_head(&writer.head(), 77, "gw-1");
        let report = verify_log(
            store.records(),
            std::slice::from_ref(&checkpoint),
            &signer.public_key(),
        );
        assert!(report.is_ok(), "{report}");
        let report = verify_log(&store.records()[..8], &[checkpoint], &signer.public_key());
        assert!(report.truncation().is_some());
    }
}
