//! Audit log routes beyond search: signed checkpoints, the checkpoint public key, Merkle
//! inclusion and consistency proofs, streaming export (JSONL or OCSF) and archiving.
//!
//! Every route works on one instance's chain: `?instance=` names it, defaulting to the
//! instance that serves the request.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use steward_audit::{Checkpoint, MerkleFrontier, PrunedTree};
use steward_gateway::audit_sink::{self, ArchiveAnchor, AuditAccessError};
use steward_gateway::problem::Problem;
use steward_gateway::runtime::{Runtime, RuntimeError};
use steward_store::Store;

use crate::auth::AdminPrincipal;

type R = Result<Json<Value>, Problem>;

/// `meta` key of the hex Ed25519 public key that verifies checkpoints.
pub const PUBLIC_KEY_META: &str = "audit.checkpoint_public_key";

fn p(e: impl Into<RuntimeError>) -> Problem {
    e.into().to_problem()
}

fn access(e: AuditAccessError) -> Problem {
    p(RuntimeError::from(e))
}

fn instance_of(rt: &Runtime, instance: Option<String>) -> String {
    instance
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| rt.instance_id.clone())
}

/// `?instance=`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InstanceParam {
    instance: Option<String>,
}

/// `GET /admin/v1/audit/checkpoints`: the chain's signed checkpoints, oldest first.
pub async fn checkpoints(State(rt): State<Arc<Runtime>>, Query(q): Query<InstanceParam>) -> R {
    let instance = instance_of(&rt, q.instance);
    let items = audit_sink::checkpoints(&rt.store, &instance)
        .await
        .map_err(access)?;
    Ok(Json(json!({"instance_id": instance, "items": items})))
}

/// `GET /admin/v1/audit/public-key`: the Ed25519 key that verifies checkpoints.
pub async fn public_key(State(rt): State<Arc<Runtime>>) -> R {
    let key = rt
        .store
        .meta_get(PUBLIC_KEY_META)
        .await
        .map_err(p)?
        .ok_or_else(|| Problem::not_found("no checkpoint key has been created yet"))?;
    let raw = steward_audit::parse_public_key(&key).map_err(|_| {
        p(RuntimeError::Invalid(
            "stored checkpoint key is malformed".into(),
        ))
    })?;
    Ok(Json(json!({
        "algorithm": "ed25519",
        "public_key": hex::encode(raw),
        "key_id": steward_audit::checkpoint::key_id(&raw),
    })))
}

/// The chain's leaves from its archive cut up to `tree_size`, as a tree proofs can be
/// taken from.
struct ChainTree {
    frontier: MerkleFrontier,
    leaves: Vec<steward_audit::Hash>,
}

impl ChainTree {
    async fn load(store: &Store, instance: &str, tree_size: u64) -> Result<Self, Problem> {
        let frontier = ArchiveAnchor::load(store, instance)
            .await
            .map_err(access)?
            .map(|a| a.frontier)
            .unwrap_or_default();
        if tree_size < frontier.size() {
            return Err(
                Problem::new(StatusCode::GONE, "archived", "Archived").detail(format!(
                    "records before {} were archived; verify them from the archive file",
                    frontier.size()
                )),
            );
        }
        let leaves = audit_sink::leaf_hashes(store, instance, frontier.size(), tree_size)
            .await
            .map_err(access)?;
        Ok(Self { frontier, leaves })
    }

    fn tree(&self) -> PrunedTree<'_> {
        PrunedTree::new(&self.frontier, &self.leaves)
    }
}

fn hexes(hashes: &[steward_audit::Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn proof_problem(e: steward_audit::AuditError) -> Problem {
    Problem::bad_request(e.to_string())
}

/// `?tree_size=&instance=`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ProofParams {
    tree_size: Option<u64>,
    instance: Option<String>,
}

async fn latest_checkpoint(store: &Store, instance: &str) -> Result<Option<Checkpoint>, Problem> {
    Ok(audit_sink::checkpoints(store, instance)
        .await
        .map_err(access)?
        .pop())
}

/// `GET /admin/v1/audit/{seq}/proof`: inclusion proof of record `seq` in the tree of the
/// latest checkpoint, or of `?tree_size=`.
pub async fn inclusion_proof(
    State(rt): State<Arc<Runtime>>,
    Path(seq): Path<u64>,
    Query(q): Query<ProofParams>,
) -> R {
    let instance = instance_of(&rt, q.instance);
    let checkpoints = audit_sink::checkpoints(&rt.store, &instance)
        .await
        .map_err(access)?;
    let (tree_size, checkpoint) = match q.tree_size {
        Some(size) => (size, checkpoints.into_iter().find(|c| c.tree_size == size)),
        None => {
            let latest = checkpoints
                .into_iter()
                .last()
                .ok_or_else(|| Problem::not_found("no checkpoint yet; pass `tree_size`"))?;
            (latest.tree_size, Some(latest))
        }
    };
    if seq >= tree_size {
        return Err(Problem::bad_request(format!(
            "record {seq} is outside the tree of size {tree_size}"
        )));
    }
    let chain = ChainTree::load(&rt.store, &instance, tree_size).await?;
    let tree = chain.tree();
    let proof = tree
        .inclusion_proof(seq, tree_size)
        .map_err(proof_problem)?;
    let root = tree.root(tree_size).map_err(proof_problem)?;
    let row = rt
        .store
        .audit_get(&instance, i64::try_from(seq).unwrap_or(i64::MAX))
        .await
        .map_err(p)?
        .ok_or_else(|| Problem::not_found(format!("record {seq} does not exist")))?;
    let offset = usize::try_from(seq - tree.cut()).unwrap_or(usize::MAX);
    let leaf = chain.leaves.get(offset).copied().unwrap_or_default();
    Ok(Json(json!({
        "instance_id": instance,
        "seq": seq,
        "tree_size": tree_size,
        "record_hash": hex::encode(&row.hash),
        "leaf_hash": hex::encode(leaf),
        "root_hash": hex::encode(root),
        "proof": hexes(&proof),
        "checkpoint": checkpoint,
    })))
}

/// `?from=M&to=N&instance=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    from: u64,
    to: Option<u64>,
    instance: Option<String>,
}

/// `GET /admin/v1/audit/consistency`: proof that the tree of `from` records is a prefix
/// of the tree of `to` records (default: the latest checkpoint).
pub async fn consistency_proof(
    State(rt): State<Arc<Runtime>>,
    Query(q): Query<ConsistencyParams>,
) -> R {
    let instance = instance_of(&rt, q.instance);
    let checkpoints = audit_sink::checkpoints(&rt.store, &instance)
        .await
        .map_err(access)?;
    let to = match q.to {
        Some(to) => to,
        None => latest_checkpoint(&rt.store, &instance)
            .await?
            .map(|c| c.tree_size)
            .ok_or_else(|| Problem::not_found("no checkpoint yet; pass `to`"))?,
    };
    if q.from > to {
        return Err(Problem::bad_request(format!(
            "`from` {} is larger than `to` {to}",
            q.from
        )));
    }
    let chain = ChainTree::load(&rt.store, &instance, to).await?;
    let tree = chain.tree();
    let proof = tree.consistency_proof(q.from, to).map_err(proof_problem)?;
    let find = |size: u64| checkpoints.iter().find(|c| c.tree_size == size).cloned();
    Ok(Json(json!({
        "instance_id": instance,
        "from": q.from,
        "to": to,
        "from_root": hex::encode(tree.root(q.from).map_err(proof_problem)?),
        "to_root": hex::encode(tree.root(to).map_err(proof_problem)?),
        "proof": hexes(&proof),
        "from_checkpoint": find(q.from),
        "to_checkpoint": find(to),
    })))
}

/// `?format=jsonl|ocsf&since=&until=&before=&instance=`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    format: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<u64>,
    instance: Option<String>,
}

fn ts_param(v: Option<&str>) -> Result<Option<i64>, Problem> {
    v.map(|t| {
        t.parse::<jiff::Timestamp>()
            .map(|ts| ts.as_millisecond())
            .or_else(|_| t.parse::<i64>())
            .map_err(|_| {
                Problem::bad_request(format!("`{t}` is neither RFC 3339 nor milliseconds"))
            })
    })
    .transpose()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExportFormat {
    Jsonl,
    Ocsf,
}

struct ExportCursor {
    store: Store,
    instance: String,
    next_seq: i64,
    before: i64,
    since: Option<i64>,
    until: Option<i64>,
    format: ExportFormat,
    done: bool,
}

const EXPORT_PAGE: i64 = 1000;

async fn export_page(
    mut cursor: ExportCursor,
) -> Option<(Result<Vec<u8>, std::io::Error>, ExportCursor)> {
    if cursor.done {
        return None;
    }
    let rows = match cursor
        .store
        .audit_range_filtered(
            &cursor.instance,
            cursor.next_seq,
            cursor.since,
            cursor.until,
            EXPORT_PAGE,
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            cursor.done = true;
            tracing::error!(error = %e, "audit export failed");
            return Some((Err(std::io::Error::other("audit export failed")), cursor));
        }
    };
    let mut chunk = Vec::new();
    for row in &rows {
        if row.seq >= cursor.before {
            cursor.done = true;
            break;
        }
        let line = match steward_gateway::audit_sink::from_row(row) {
            Ok(record) => match cursor.format {
                ExportFormat::Jsonl => record.to_jsonl_line().map_err(|e| e.to_string()),
                ExportFormat::Ocsf => serde_json::to_string(&steward_audit::to_ocsf(&record))
                    .map_err(|e| e.to_string()),
            },
            Err(e) => Err(e),
        };
        match line {
            Ok(line) => {
                chunk.extend_from_slice(line.as_bytes());
                chunk.push(b'\n');
            }
            Err(e) => {
                cursor.done = true;
                tracing::error!(error = %e, seq = row.seq, "audit export: corrupt record");
                return Some((
                    Err(std::io::Error::other(format!(
                        "record {} is corrupt",
                        row.seq
                    ))),
                    cursor,
                ));
            }
        }
        cursor.next_seq = row.seq.saturating_add(1);
    }
    if i64::try_from(rows.len()).unwrap_or(0) < EXPORT_PAGE {
        cursor.done = true;
    }
    if chunk.is_empty() && cursor.done {
        return None;
    }
    Some((Ok(chunk), cursor))
}

/// `GET /admin/v1/audit/export`: the chain in sequence order, streamed, one record a line:
/// `format=jsonl` (default) writes [`steward_audit::AuditRecord::to_jsonl_line`], which
/// `steward audit verify --file` checks offline; `format=ocsf` writes OCSF API Activity
/// events (see docs/audit.md). `since`/`until` filter by time, `before` by sequence.
pub async fn export(
    State(rt): State<Arc<Runtime>>,
    Query(q): Query<ExportParams>,
) -> Result<Response, Problem> {
    let format = match q.format.as_deref() {
        None | Some("jsonl") => ExportFormat::Jsonl,
        Some("ocsf") => ExportFormat::Ocsf,
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "format `{other}` is neither `jsonl` nor `ocsf`"
            )));
        }
    };
    let instance = instance_of(&rt, q.instance);
    let start = ArchiveAnchor::load(&rt.store, &instance)
        .await
        .map_err(access)?
        .map(|a| a.cut())
        .unwrap_or(0);
    let cursor = ExportCursor {
        store: rt.store.clone(),
        instance,
        next_seq: start,
        before: q
            .before
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
            .unwrap_or(i64::MAX),
        since: ts_param(q.since.as_deref())?,
        until: ts_param(q.until.as_deref())?,
        format,
        done: false,
    };
    let stream = futures_util::stream::unfold(cursor, export_page);
    let content_type = "application/x-ndjson";
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `POST /admin/v1/audit/archive` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveInput {
    before: u64,
}

/// `POST /admin/v1/audit/archive`: deletes this instance's records before `before`, which
/// the caller has exported. A signed checkpoint of at least `before` records must exist,
/// so what is removed stays anchored; the frontier at the cut is kept so the chain, its
/// proofs and online verification continue from it.
pub async fn archive(
    State(rt): State<Arc<Runtime>>,
    Extension(who): Extension<AdminPrincipal>,
    Json(input): Json<ArchiveInput>,
) -> R {
    let instance = rt.instance_id.clone();
    let anchor = ArchiveAnchor::load(&rt.store, &instance)
        .await
        .map_err(access)?;
    let (frontier, cut) = match anchor {
        Some(a) => {
            let cut = a.frontier.size();
            (a.frontier, cut)
        }
        None => (MerkleFrontier::new(), 0),
    };
    if input.before <= cut {
        return Err(Problem::conflict(format!(
            "records before {cut} are already archived"
        )));
    }
    let head = rt.audit.head().tree_size;
    if input.before > head {
        return Err(Problem::bad_request(format!(
            "the log has only {head} records"
        )));
    }
    let covered = latest_checkpoint(&rt.store, &instance)
        .await?
        .is_some_and(|c| c.tree_size >= input.before);
    if !covered {
        return Err(Problem::conflict(format!(
            "no signed checkpoint covers record {}; wait for the next checkpoint",
            input.before - 1
        )));
    }
    let hashes = rt
        .store
        .audit_hash_range(
            &instance,
            i64::try_from(cut).unwrap_or(i64::MAX),
            i64::try_from(input.before).unwrap_or(i64::MAX),
        )
        .await
        .map_err(p)?;
    let mut frontier = frontier;
    let mut chain_head = [0u8; 32];
    for h in &hashes {
        let h: steward_audit::Hash = h
            .as_slice()
            .try_into()
            .map_err(|_| p(RuntimeError::Conflict("malformed stored hash".into())))?;
        frontier.append(&h);
        chain_head = h;
    }
    if frontier.size() != input.before {
        return Err(p(RuntimeError::Conflict(format!(
            "records {cut}..{} are not all stored",
            input.before
        ))));
    }
    let anchor = ArchiveAnchor {
        frontier,
        chain_head,
    };
    let body =
        serde_json::to_string(&anchor).map_err(|e| p(RuntimeError::Invalid(e.to_string())))?;
    rt.audit_admin(
        &who.principal,
        "audit.archive",
        &instance,
        json!({"before": input.before, "from": cut}),
    )
    .await
    .map_err(p)?;
    let deleted = rt
        .store
        .audit_archive_cut(
            &instance,
            i64::try_from(input.before).unwrap_or(i64::MAX),
            &ArchiveAnchor::meta_key(&instance),
            &body,
        )
        .await
        .map_err(p)?;
    Ok(Json(json!({
        "instance_id": instance,
        "archived_from": cut,
        "archived_before": input.before,
        "deleted": deleted,
        "root_at_cut": hex::encode(anchor.frontier.root()),
        "chain_head_at_cut": hex::encode(anchor.chain_head),
    })))
}
