//! A dedicated SQLite connection that bulk-inserts audit rows, outside sqlx's `Any` driver.
//!
//! The audit journal's indexer is the one writer that inserts tens of thousands of rows a
//! second. Through the pooled `Any` driver each row costs a value conversion per column, a
//! hand-off to the connection's worker thread and a statement built per batch size; here
//! one prepared single-row `INSERT` is bound and stepped per row inside one transaction,
//! on the caller's (blocking) thread. Same database file, same pragmas, same table.

use std::path::{Path, PathBuf};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, params};

use crate::StoreError;
use crate::models::{AuditRow, AuditRowRef};

/// WAL bytes before a commit checkpoints: 16 MiB, not SQLite's 4 MiB (1,000 pages of
/// 4 KiB). Each index page the audit rows touch is copied to the database once per
/// checkpoint, so fewer, larger checkpoints write fewer bytes (12% more durable appends/s
/// at concurrency 64 in paired runs). The pooled connections use the same value (see
/// `backend.rs`); [`wal_autocheckpoint_pages`] turns it into pages of the file's size.
pub const WAL_AUTOCHECKPOINT_BYTES: i64 = 16 * 1024 * 1024;

/// The page size a new database file is created with: 32 KiB, not SQLite's 4 KiB.
///
/// An audit row holds about 1 KiB of event JSON, so a 4 KiB page took three rows and
/// every few inserts paid for a page split, a WAL frame and its checksum. With 32 KiB
/// pages inserting an audit row costs about half the CPU (8 µs down to 4.5 µs a row in a
/// paired measurement; 64 KiB saves only another 0.4 µs). A page size is fixed once a
/// WAL database exists, so an older file keeps the size it was created with.
pub const PAGE_SIZE: i64 = 32 * 1024;

/// What every SQLite connection runs with, the pool's (`backend.rs`) and this indexer's
/// alike, in this order, after `PRAGMA page_size` and before `wal_autocheckpoint`.
///
/// INVARIANT: WAL with FULL sync, so a committed audit record or index row survives power
/// loss (the journal may be emptied once everything in it is committed here). 16 MiB of
/// page cache per connection (SQLite's default is 2 MiB): the audit index reads back fewer
/// pages while it grows.
pub const CONNECTION_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA cache_size=-16384",
];

/// [`WAL_AUTOCHECKPOINT_BYTES`] in pages of `page_size` bytes.
pub fn wal_autocheckpoint_pages(page_size: i64) -> i64 {
    (WAL_AUTOCHECKPOINT_BYTES / page_size.max(512)).max(1)
}

const INSERT: &str = "INSERT INTO audit_log (instance_id, seq, time_ms, prev_hash, hash, kind, \
                      actor_id, operation, decision, request_id, event) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// Appends audit rows to an SQLite database file in one transaction per call.
///
/// Blocking: call it from a blocking thread. A failed append leaves nothing behind (the
/// transaction rolls back) and the next call reopens the connection, so a database that
/// was full or read-only is written again once it can be.
pub struct SqliteAuditIndex {
    path: PathBuf,
    conn: Option<Connection>,
}

impl std::fmt::Debug for SqliteAuditIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAuditIndex")
            .field("path", &self.path)
            .field("open", &self.conn.is_some())
            .finish()
    }
}

fn unavailable(path: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

impl SqliteAuditIndex {
    /// An index writer for the database file at `path` (which must already be migrated).
    /// Connects lazily, on the first append.
    pub fn new(path: PathBuf) -> Self {
        Self { path, conn: None }
    }

    fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        for pragma in CONNECTION_PRAGMAS {
            conn.execute_batch(pragma)?;
        }
        let page_size: i64 = conn.pragma_query_value(None, "page_size", |row| row.get(0))?;
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            wal_autocheckpoint_pages(page_size),
        )?;
        Ok(conn)
    }

    /// Inserts `rows` in one transaction: all of them or none.
    pub fn append(&mut self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let rows: Vec<AuditRowRef<'_>> = rows.iter().map(AuditRow::as_ref).collect();
        self.append_refs(&rows)
    }

    /// Inserts `rows` in one transaction: all of them or none. Binds every field as it is
    /// borrowed (SQLite copies each value once, into its page).
    pub fn append_refs(&mut self, rows: &[AuditRowRef<'_>]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            slot => {
                slot.insert(Self::connect(&self.path).map_err(|e| unavailable(&self.path, &e))?)
            }
        };
        let result = insert_all(conn, rows);
        if let Err(e) = &result {
            // A connection that failed mid-write (disk full, I/O error) is not trusted
            // again: the next append starts from a fresh one.
            self.conn = None;
            return Err(unavailable(&self.path, e));
        }
        Ok(())
    }
}

fn insert_all(conn: &mut Connection, rows: &[AuditRowRef<'_>]) -> Result<(), rusqlite::Error> {
    // IMMEDIATE: take the write lock up front and wait for it under `busy_timeout`.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        for r in rows {
            insert.execute(params![
                r.instance_id,
                r.seq,
                r.time_ms,
                r.prev_hash,
                r.hash,
                r.kind,
                r.actor_id,
                r.operation,
                r.decision,
                r.request_id,
                // Text, as the pool's rows are (see `AuditRowRef::event`).
                ToSqlOutput::Borrowed(ValueRef::Text(r.event)),
            ])?;
        }
    }
    tx.commit()
}
