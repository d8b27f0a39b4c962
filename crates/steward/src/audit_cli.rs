//! `steward audit verify --file`, `export`, `archive`, `proof` and `consistency`: the
//! parts of the audit CLI that read files or stream.

// Reading a `serde_json::Value` with `v["key"]` yields `Null` for a missing key and never
// panics; this module only renders API responses, so the lint's concern does not apply.
#![allow(clippy::indexing_slicing)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use steward_audit::{AuditRecord, Checkpoint, LogVerifier};

use crate::client::{Client, OutputFormat, print_object};

/// Reads checkpoints from a file holding one JSON checkpoint, or one per line (the
/// `[audit] checkpoint_file` format).
fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading `{}`", path.display()))?;
    if let Ok(one) = Checkpoint::from_json(&text) {
        return Ok(vec![one]);
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            Checkpoint::from_json(l).map_err(|e| anyhow!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Verifies exported JSONL files offline, in the order given, against checkpoints signed
/// by `public_key`. Prints the report; exit code 1 when anything is wrong.
pub fn verify_files(
    files: &[PathBuf],
    checkpoint_files: &[PathBuf],
    public_key: Option<&str>,
) -> Result<u8> {
    let mut checkpoints = Vec::new();
    for path in checkpoint_files {
        checkpoints.extend(read_checkpoints(path)?);
    }
    let key = match public_key {
        Some(k) => steward_audit::parse_public_key(k)
            .map_err(|e| anyhow!("{e}"))?
            .to_vec(),
        None if !checkpoints.is_empty() => bail!("--checkpoint needs --public-key"),
        None => Vec::new(),
    };
    let mut verifier = LogVerifier::new(&checkpoints, &key);
    for path in files {
        let file =
            std::fs::File::open(path).with_context(|| format!("reading `{}`", path.display()))?;
        for line in BufReader::new(file).lines() {
            let line = line.with_context(|| format!("reading `{}`", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            match AuditRecord::from_jsonl_line(&line) {
                Ok(record) => verifier.push(&record),
                Err(e) => verifier.push_unparseable(e.to_string()),
            }
        }
    }
    let report = verifier.finish();
    println!("{report}");
    Ok(if report.is_ok() { 0 } else { 1 })
}

/// Streams an export to `out` (synced before returning) or stdout.
pub async fn export(client: &Client, path: &str, out: Option<&Path>) -> Result<u64> {
    let mut resp = client.get_stream(path).await?;
    let mut sink: Box<dyn Write> = match out {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("creating `{}`", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut bytes = 0u64;
    while let Some(chunk) = resp.chunk().await.context("the export stream broke off")? {
        sink.write_all(&chunk)?;
        bytes += u64::try_from(chunk.len()).unwrap_or(0);
    }
    sink.flush()?;
    drop(sink);
    if let Some(p) = out {
        std::fs::File::open(p)?.sync_all()?;
    }
    Ok(bytes)
}

/// Checks that an archive file holds a contiguous, internally chained run of records
/// ending at `before - 1`; returns its first sequence number.
fn check_archive_file(path: &Path, before: u64) -> Result<u64> {
    let file = std::fs::File::open(path)?;
    let mut first = None;
    let mut prev: Option<AuditRecord> = None;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record = AuditRecord::from_jsonl_line(&line)
            .map_err(|e| anyhow!("{}:{}: {e}", path.display(), i + 1))?;
        if record.compute_hash().map_err(|e| anyhow!("{e}"))? != record.hash {
            bail!(
                "record {} in the export does not match its hash",
                record.seq
            );
        }
        if let Some(p) = &prev
            && (record.seq != p.seq + 1 || record.prev_hash != p.hash)
        {
            bail!("the export is not contiguous at record {}", record.seq);
        }
        first.get_or_insert(record.seq);
        prev = Some(record);
    }
    match prev {
        Some(last) if last.seq + 1 == before => first.ok_or_else(|| anyhow!("empty export")),
        Some(last) => bail!(
            "the export ends at record {}, expected {}",
            last.seq,
            before.saturating_sub(1)
        ),
        None => bail!("nothing to archive before {before}"),
    }
}

/// `steward audit archive --before SEQ --out FILE`: export, check the file, then delete.
pub async fn archive(client: &Client, before: u64, out: &Path) -> Result<u8> {
    export(
        client,
        &format!("/admin/v1/audit/export?format=jsonl&before={before}"),
        Some(out),
    )
    .await?;
    let first = check_archive_file(out, before)?;
    let v = client
        .post("/admin/v1/audit/archive", &json!({"before": before}))
        .await?;
    eprintln!(
        "archived records {first}..{} to {} ({} deleted from the store)",
        before - 1,
        out.display(),
        v["deleted"]
    );
    Ok(0)
}

/// Prints an inclusion proof and checks it locally against its root; exit 1 if it fails.
pub fn print_inclusion(out: OutputFormat, v: &Value) -> u8 {
    print_object(out, v);
    let check = || -> Result<()> {
        let leaf = parse(&v["leaf_hash"])?;
        let root = parse(&v["root_hash"])?;
        let proof = parse_list(&v["proof"])?;
        let seq = v["seq"].as_u64().ok_or_else(|| anyhow!("no seq"))?;
        let size = v["tree_size"]
            .as_u64()
            .ok_or_else(|| anyhow!("no tree_size"))?;
        if steward_audit::merkle::leaf_hash(&parse(&v["record_hash"])?) != leaf {
            bail!("leaf hash does not match the record hash");
        }
        steward_audit::merkle::verify_inclusion(&leaf, seq, size, &proof, &root)
            .map_err(|e| anyhow!("{e}"))?;
        if let Some(cp) = v.get("checkpoint").filter(|c| !c.is_null())
            && parse(&cp["root_hash"])? != root
        {
            bail!("root differs from the checkpoint's");
        }
        Ok(())
    };
    report(check())
}

/// Prints a consistency proof and checks it locally; exit 1 if it fails.
pub fn print_consistency(out: OutputFormat, v: &Value) -> u8 {
    print_object(out, v);
    let check = || -> Result<()> {
        let from = v["from"].as_u64().ok_or_else(|| anyhow!("no from"))?;
        let to = v["to"].as_u64().ok_or_else(|| anyhow!("no to"))?;
        let proof = parse_list(&v["proof"])?;
        steward_audit::merkle::verify_consistency(
            from,
            to,
            &parse(&v["from_root"])?,
            &parse(&v["to_root"])?,
            &proof,
        )
        .map_err(|e| anyhow!("{e}"))
    };
    report(check())
}

fn report(result: Result<()>) -> u8 {
    match result {
        Ok(()) => {
            eprintln!("proof verifies");
            0
        }
        Err(e) => {
            eprintln!("PROOF DOES NOT VERIFY: {e}");
            1
        }
    }
}

fn parse(v: &Value) -> Result<steward_audit::Hash> {
    steward_audit::event::parse_hash(v.as_str().unwrap_or_default()).map_err(|e| anyhow!("{e}"))
}

fn parse_list(v: &Value) -> Result<Vec<steward_audit::Hash>> {
    v.as_array()
        .ok_or_else(|| anyhow!("no proof"))?
        .iter()
        .map(parse)
        .collect()
}
