//! Conformance suite: the same storage story runs on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `STEWARD_TEST_DATABASE_URL`. Without it the PostgreSQL half is
//! skipped locally, but under `CI=true` a missing or unreachable database fails the run.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use steward_store::models::*;
use steward_store::{Backend, Store, StoreError};

async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("steward.db").display()
    );
    Store::open(&url).await.expect("open sqlite")
}

/// A fresh PostgreSQL database for one test, or `None` when not configured outside CI.
async fn postgres_store() -> Option<Store> {
    let base = match std::env::var("STEWARD_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but STEWARD_TEST_DATABASE_URL is not set"
            );
            eprintln!("skipping PostgreSQL half: STEWARD_TEST_DATABASE_URL not set");
            return None;
        }
    };
    let admin = Store::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("STEWARD_TEST_DATABASE_URL unreachable: {e}"));
    let name = format!(
        "steward_t_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    // PostgreSQL refuses concurrent CREATE DATABASE from the same template ("source
    // database is being accessed by other users"); tests run in parallel, so retry briefly.
    let mut attempt = 0;
    while let Err(e) = admin.raw_execute(&format!("CREATE DATABASE {name}")).await {
        attempt += 1;
        assert!(attempt < 20, "create database: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
    }
    admin.close().await;
    let url = match base.rsplit_once('/') {
        Some((prefix, _db)) => format!("{prefix}/{name}"),
        None => panic!("STEWARD_TEST_DATABASE_URL has no database path"),
    };
    Some(Store::open(&url).await.expect("open postgres"))
}

fn identity(id: &str, name: &str, owner: &str) -> Identity {
    Identity {
        id: id.into(),
        name: name.into(),
        kind: "ai_agent".into(),
        owner: owner.into(),
        description: String::new(),
        labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
        status: "active".into(),
        status_reason: None,
        observe_only: false,
        tokens_valid_after: 0,
        created_at: 1,
        updated_at: 1,
        last_seen_at: None,
    }
}

async fn story(store: &Store) {
    // Migrations are idempotent and the version is recorded.
    store.migrate().await.unwrap();
    assert_eq!(
        store.schema_version().await.unwrap(),
        steward_store::SCHEMA_VERSION
    );

    // Meta.
    assert!(store.meta_set_if_absent("k", "v1").await.unwrap());
    assert!(!store.meta_set_if_absent("k", "v2").await.unwrap());
    assert_eq!(store.meta_get("k").await.unwrap().as_deref(), Some("v1"));

    // Identities: normalised names are unique.
    let a = identity("idn_a", "Billing-Bot", "alice");
    store.identity_insert(&a, "billing-bot").await.unwrap();
    let dup = identity("idn_b", "billing-bot ", "bob");
    match store.identity_insert(&dup, "billing-bot").await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("already exists"), "{msg}"),
        other => panic!("expected conflict, got {other:?}"),
    }
    let got = store
        .identity_by_name("billing-bot")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, a);
    let mut changed = got.clone();
    changed.status = "suspended".into();
    changed.observe_only = true;
    store
        .identity_update(&changed, "billing-bot")
        .await
        .unwrap();
    assert_eq!(
        store.identity_get("idn_a").await.unwrap().unwrap().status,
        "suspended"
    );
    assert!(
        store
            .identity_get("idn_a")
            .await
            .unwrap()
            .unwrap()
            .observe_only
    );
    assert_eq!(store.identity_list(Some("alice")).await.unwrap().len(), 1);
    assert_eq!(store.identity_list(Some("bob")).await.unwrap().len(), 0);

    // API keys are found by hash only.
    let key = ApiKeyRecord {
        id: "key_1".into(),
        identity_id: "idn_a".into(),
        prefix: "abcd".into(),
        created_at: 5,
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    };
    store.api_key_insert(&key, &[7u8; 32]).await.unwrap();
    assert_eq!(
        store.api_key_by_hash(&[7u8; 32]).await.unwrap().unwrap().id,
        "key_1"
    );
    assert!(store.api_key_by_hash(&[8u8; 32]).await.unwrap().is_none());
    assert_eq!(store.api_key_revoke("idn_a", None, 9).await.unwrap(), 1);
    assert_eq!(
        store
            .api_key_by_hash(&[7u8; 32])
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(9)
    );

    // Secrets: versions, rotation and re-wrap bookkeeping.
    let secret = SecretRecord {
        id: "sec_1".into(),
        name: "github".into(),
        current_version: 1,
        fingerprint: "fp1".into(),
        rotation: None,
        created_at: 10,
        rotated_at: None,
        expires_at: None,
        next_rotation_at: None,
        last_rotation_error: None,
    };
    let v1 = SecretVersion {
        secret_id: "sec_1".into(),
        version: 1,
        key_version: 1,
        sealed: vec![1, 2, 3],
        created_at: 10,
        retire_at: None,
    };
    store.secret_create(&secret, &v1).await.unwrap();
    assert!(matches!(
        store.secret_create(&secret, &v1).await,
        Err(StoreError::Conflict(_))
    ));
    let mut rotated = secret.clone();
    rotated.fingerprint = "fp2".into();
    rotated.rotated_at = Some(20);
    let v2 = SecretVersion {
        version: 2,
        sealed: vec![4, 5],
        created_at: 20,
        ..v1.clone()
    };
    store
        .secret_add_version(&rotated, &v2, Some(30))
        .await
        .unwrap();
    // A concurrent writer that also thinks version 1 is current loses.
    assert!(matches!(
        store.secret_add_version(&rotated, &v2, Some(30)).await,
        Err(StoreError::Conflict(_)) | Err(StoreError::Unavailable(_))
    ));
    let s = store.secret_by_name("github").await.unwrap().unwrap();
    assert_eq!((s.current_version, s.fingerprint.as_str()), (2, "fp2"));
    let versions = store.secret_versions("sec_1").await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].retire_at, Some(30));
    assert_eq!(
        store
            .secret_versions_not_wrapped_by(2, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .secret_version_rewrap("sec_1", 1, 1, 2, &[9])
            .await
            .unwrap()
    );
    assert!(
        !store
            .secret_version_rewrap("sec_1", 1, 1, 2, &[9])
            .await
            .unwrap()
    );
    assert_eq!(
        store.secret_key_versions().await.unwrap(),
        vec![(1, 1), (2, 1)]
    );

    // Policy sets are append-only versions.
    let set = PolicySetRecord {
        version: 1,
        policies: vec![PolicyText {
            id: "p1".into(),
            text: "permit(principal, action, resource);".into(),
        }],
        created_at: 1,
        created_by: "admin".into(),
        comment: "first".into(),
    };
    store.policy_set_insert(&set).await.unwrap();
    assert!(store.policy_set_insert(&set).await.is_err());
    assert_eq!(store.policy_set_latest().await.unwrap().unwrap(), set);

    // Audit: atomic batches, ordered ranges, search.
    let rows: Vec<AuditRow> = (1..=3)
        .map(|seq| AuditRow {
            instance_id: "i1".into(),
            seq,
            time_ms: 100 + seq,
            prev_hash: vec![0; 32],
            hash: vec![seq as u8; 32],
            kind: "decision".into(),
            actor_id: Some("idn_a".into()),
            operation: Some("github:issues.create".into()),
            decision: Some(if seq == 2 { "deny" } else { "allow" }.into()),
            request_id: Some(format!("req{seq}")),
            event: "{}".into(),
        })
        .collect();
    store.audit_append(&rows).await.unwrap();
    // A batch that collides with an existing sequence number writes nothing.
    let mut bad = rows.clone();
    bad[0].seq = 4;
    bad[1].seq = 3;
    assert!(store.audit_append(&bad[..2]).await.is_err());
    assert!(store.audit_get("i1", 4).await.unwrap().is_none());
    assert_eq!(store.audit_head("i1").await.unwrap().unwrap().seq, 3);
    assert_eq!(store.audit_range("i1", 2, 10).await.unwrap().len(), 2);
    assert_eq!(
        store.audit_hashes("i1", 2).await.unwrap(),
        vec![vec![1u8; 32], vec![2u8; 32]]
    );
    let denies = store
        .audit_search(&AuditQuery {
            decision: Some("deny".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(denies.len(), 1);
    assert_eq!(denies[0].seq, 2);

    // Approvals: coalescing and compare-and-set decisions.
    let approval = ApprovalRecord {
        id: "apr_1".into(),
        identity_id: "idn_a".into(),
        operation: "stripe:refunds.create".into(),
        digest: "d1".into(),
        body: serde_json::json!({"reason": "big refund"}),
        status: "pending".into(),
        quorum: 1,
        requested_at: 50,
        expires_at: 5_000,
        decided_at: None,
        used_at: None,
        version: 0,
    };
    let (first, created) = store.approval_create_or_coalesce(&approval).await.unwrap();
    assert!(created);
    let again = ApprovalRecord {
        id: "apr_2".into(),
        ..approval.clone()
    };
    let (coalesced, created) = store.approval_create_or_coalesce(&again).await.unwrap();
    assert!(!created);
    assert_eq!(coalesced.id, first.id);
    let mut decided = first.clone();
    decided.status = "approved".into();
    store.approval_update_cas(&decided, 0).await.unwrap();
    assert!(matches!(
        store.approval_update_cas(&decided, 0).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.approval_get("apr_1").await.unwrap().unwrap().version,
        1
    );

    // Generic records.
    store
        .kv_put("alert", "a1", &serde_json::json!({"x": 1}), 3)
        .await
        .unwrap();
    store
        .kv_put("alert", "a1", &serde_json::json!({"x": 2}), 4)
        .await
        .unwrap();
    let rec = store.kv_get("alert", "a1").await.unwrap().unwrap();
    assert_eq!(
        (rec.body["x"].as_i64(), rec.created_at, rec.updated_at),
        (Some(2), 3, 4)
    );
    assert!(store.kv_delete("alert", "a1").await.unwrap());
}

#[tokio::test]
async fn conformance_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    assert_eq!(store.backend(), Backend::Sqlite);
    story(&store).await;
}

#[tokio::test]
async fn conformance_postgres() {
    if let Some(store) = postgres_store().await {
        assert_eq!(store.backend(), Backend::Postgres);
        story(&store).await;
    }
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    store.meta_set("schema_version", "999").await.unwrap();
    store.close().await;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("steward.db").display()
    );
    match Store::open(&url).await {
        Err(e @ StoreError::SchemaTooNew { found: 999, .. }) => {
            assert!(e.to_string().contains("newer than this steward supports"));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
}

#[tokio::test]
async fn sqlite_runs_wal_with_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    assert_eq!(store.pragma("journal_mode").await.unwrap(), "wal");
    // FULL is 2.
    assert_eq!(store.pragma("synchronous").await.unwrap(), "2");
    // A new file gets 32 KiB pages, and checkpoints every 16 MiB of WAL in them.
    assert_eq!(store.pragma("page_size").await.unwrap(), "32768");
    assert_eq!(store.pragma("wal_autocheckpoint").await.unwrap(), "512");
}

#[tokio::test]
async fn an_existing_database_keeps_its_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    {
        // A file created before the page size changed: 4 KiB pages, already in WAL mode.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "page_size", 4096).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE before_upgrade (x INTEGER)")
            .unwrap();
    }
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.pragma("page_size").await.unwrap(), "4096");
    // The checkpoint interval is the same 16 MiB, in that file's pages.
    assert_eq!(store.pragma("wal_autocheckpoint").await.unwrap(), "4096");
    // And the bulk audit index writes to it.
    let mut index = store.sqlite_audit_index().unwrap();
    let rows = audit_rows("gw-1", 0..=2);
    tokio::task::spawn_blocking(move || index.append(&rows))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.audit_head("gw-1").await.unwrap().unwrap().seq, 2);
}

/// Bulk import, batched compare-and-swap re-wrap, paging and the internal-key CAS writes
/// that master-key rotation relies on.
async fn vault_rotation_story(store: &Store) {
    let items: Vec<(SecretRecord, SecretVersion)> = (0..450)
        .map(|i| {
            let id = format!("sec_{i:04}");
            (
                SecretRecord {
                    id: id.clone(),
                    name: format!("bulk-{i:04}"),
                    current_version: 1,
                    fingerprint: "fp".into(),
                    rotation: (i == 0).then(|| serde_json::json!({"interval_secs": 60})),
                    created_at: 1,
                    rotated_at: None,
                    expires_at: None,
                    next_rotation_at: (i == 0).then_some(61_000),
                    last_rotation_error: None,
                },
                SecretVersion {
                    secret_id: id,
                    version: 1,
                    key_version: 1,
                    sealed: vec![1, 2, u8::try_from(i % 251).unwrap()],
                    created_at: 1,
                    retire_at: None,
                },
            )
        })
        .collect();
    store.secret_create_many(&items).await.unwrap();
    assert_eq!(store.secret_list().await.unwrap().len(), 450);
    let first = store.secret_by_name("bulk-0000").await.unwrap().unwrap();
    assert_eq!(
        first.rotation,
        Some(serde_json::json!({"interval_secs": 60}))
    );
    assert_eq!(first.next_rotation_at, Some(61_000));
    // A conflicting import leaves nothing behind.
    let clash = vec![items[0].clone()];
    assert!(store.secret_create_many(&clash).await.is_err());

    // Paging visits every version once, in key order.
    let (mut after, mut after_v, mut seen) = (String::new(), -1, 0);
    loop {
        let page = store
            .secret_versions_page(&after, after_v, 100)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        seen += page.len();
        (after, after_v) = (last.secret_id.clone(), last.version);
    }
    assert_eq!(seen, 450);

    // CAS re-wrap: only rows still at the old key version change.
    let batch: Vec<(String, i64, i64, i64, Vec<u8>)> = (0..3)
        .map(|i| (format!("sec_{i:04}"), 1, 1, 2, vec![9, 9, i]))
        .collect();
    assert_eq!(store.secret_version_rewrap_batch(&batch).await.unwrap(), 3);
    assert_eq!(
        store.secret_version_rewrap_batch(&batch).await.unwrap(),
        0,
        "a second write of the same rows is a no-op"
    );
    assert_eq!(
        store
            .secret_versions_not_wrapped_by(2, 1000)
            .await
            .unwrap()
            .len(),
        447
    );
    let counts = store.secret_key_versions().await.unwrap();
    assert_eq!(counts, vec![(1, 447), (2, 3)]);
    assert_eq!(
        store
            .secret_version("sec_0001", 1)
            .await
            .unwrap()
            .unwrap()
            .sealed,
        vec![9, 9, 1]
    );

    store.signing_key_insert("kid_a", &[1, 1], 5).await.unwrap();
    assert!(
        !store
            .signing_key_rewrap("kid_a", &[0], &[2, 2])
            .await
            .unwrap()
    );
    assert!(
        store
            .signing_key_rewrap("kid_a", &[1, 1], &[2, 2])
            .await
            .unwrap()
    );
    assert_eq!(store.signing_keys().await.unwrap()[0].1, vec![2, 2]);
    store.meta_set("key.test", "old").await.unwrap();
    assert!(!store.meta_cas("key.test", "other", "new").await.unwrap());
    assert!(store.meta_cas("key.test", "old", "new").await.unwrap());
    assert_eq!(
        store.meta_get("key.test").await.unwrap().as_deref(),
        Some("new")
    );
}

#[tokio::test]
async fn vault_rotation_queries_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    vault_rotation_story(&sqlite_store(&dir).await).await;
}

#[tokio::test]
async fn vault_rotation_queries_postgres() {
    if let Some(store) = postgres_store().await {
        vault_rotation_story(&store).await;
    }
}

fn audit_rows(instance: &str, seqs: std::ops::RangeInclusive<i64>) -> Vec<AuditRow> {
    seqs.map(|seq| AuditRow {
        instance_id: instance.into(),
        seq,
        time_ms: 1_000 + seq,
        prev_hash: vec![0; 32],
        hash: vec![seq as u8; 32],
        kind: "decision".into(),
        actor_id: Some(format!("idn_{}", seq % 3)),
        operation: Some("github:issues.create".into()),
        decision: Some("allow".into()),
        request_id: Some(format!("req{seq}")),
        event: format!("{{\"n\":{seq}}}"),
    })
    .collect()
}

#[tokio::test]
async fn sqlite_bulk_audit_index_is_atomic_and_visible_to_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let mut index = store
        .sqlite_audit_index()
        .expect("a file database has a bulk index");
    let rows = audit_rows("i1", 1..=500);
    index.append(&rows).unwrap();
    // The pooled connections read exactly what the bulk connection wrote.
    let back = store.audit_range("i1", 1, 1_000).await.unwrap();
    assert_eq!(back, rows);

    // A batch colliding with a stored sequence number leaves nothing behind...
    let mut bad = audit_rows("i1", 501..=510);
    bad[9].seq = 500;
    let err = index.append(&bad).unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert_eq!(store.audit_head("i1").await.unwrap().unwrap().seq, 500);
    // ...and the writer carries on with the next good batch.
    index.append(&audit_rows("i1", 501..=510)).unwrap();
    assert_eq!(store.audit_head("i1").await.unwrap().unwrap().seq, 510);

    // The pool and the bulk connection can both write: neither is locked out.
    store.audit_append(&audit_rows("i2", 1..=3)).await.unwrap();
    index.append(&audit_rows("i2", 4..=6)).unwrap();
    assert_eq!(store.audit_range("i2", 1, 10).await.unwrap().len(), 6);
}

#[tokio::test]
async fn in_memory_sqlite_has_no_bulk_audit_index() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    assert!(store.sqlite_audit_index().is_none());
}

#[tokio::test]
async fn a_version_1_database_loses_the_unused_audit_indexes_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steward.db");
    {
        // A database as schema version 1 left it, with audit rows in it.
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta (key, value) VALUES ('schema_version', '1');",
        )
        .unwrap();
        conn.execute_batch(include_str!("../migrations/sqlite/0001_init.sql"))
            .unwrap();
    }
    // The rows go in through the indexer's own connection, which needs only the table.
    steward_store::audit_index::SqliteAuditIndex::new(path.clone())
        .append(&audit_rows("gw-1", 1..=9))
        .unwrap();
    let sqlite_indexes = |path: std::path::PathBuf| {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_log' AND sql IS NOT NULL")
            .unwrap();
        stmt.query_map([], |row| row.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    assert_eq!(
        sqlite_indexes(path.clone()),
        ["audit_log_actor", "audit_log_request"]
    );
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 2);
    assert!(sqlite_indexes(path).is_empty());
    // Every row is still there, as written.
    assert_eq!(
        store.audit_range("gw-1", 1, 100).await.unwrap(),
        audit_rows("gw-1", 1..=9)
    );
    // Search by identity and by request id still finds exactly the matching rows.
    let by_actor = store
        .audit_search(&AuditQuery {
            actor_id: Some("idn_1".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        by_actor.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [1, 4, 7]
    );
    let by_request = store
        .audit_search(&AuditQuery {
            request_id: Some("req5".into()),
            limit: 100,
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(by_request.len(), 1);
    assert_eq!(by_request[0].seq, 5);
}
