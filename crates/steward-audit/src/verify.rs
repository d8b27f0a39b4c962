//! Offline verification of an exported log against signed checkpoints.
//!
//! [`LogVerifier`] reads records in file order and checks, for each one:
//!
//! 1. its `seq` is the next expected one (a gap means records were deleted or moved; a
//!    lower `seq` means a duplicate or a record moved back);
//! 2. its stored `hash` equals the hash recomputed from its fields (else it was edited);
//! 3. its `prev_hash` equals the previous record's hash (else the previous record was
//!    rewritten with a recomputed hash, or records were removed and renumbered).
//!
//! It stops extending the verified prefix at the first failure and names that record.
//! Record hashes are fed into a [`MerkleFrontier`]; whenever the verified prefix reaches a
//! checkpoint's `tree_size`, the root and chain head are compared with the checkpoint, so
//! a log rewritten with every hash recomputed is still caught. A checkpoint whose size is
//! beyond the end of an otherwise valid log reports truncation.
//! Checkpoints whose signature does not verify are reported and not used.

use std::borrow::Borrow;
use std::fmt;
use std::io::BufRead;

use crate::checkpoint::Checkpoint;
use crate::event::{AuditRecord, GENESIS_HASH, Hash};
use crate::merkle::MerkleFrontier;

/// Why a record is bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadRecordKind {
    /// The stored hash is not the hash of the record's contents: the record was edited.
    HashMismatch {
        /// Hash found in the record.
        stored: Hash,
        /// Hash recomputed from its fields.
        computed: Hash,
    },
    /// `prev_hash` does not match the previous record's hash: the previous record was
    /// rewritten (hash recomputed), or records before this one were removed and renumbered.
    PrevHashMismatch {
        /// Hash of the previous record as read.
        expected: Hash,
    },
    /// Records `expected..seq` are missing here (deleted), and none of them appears later.
    SequenceGap {
        /// The sequence number that should have come next.
        expected: u64,
    },
    /// Records `expected..seq` are missing here but appear later in the file: reordered.
    Reordered {
        /// The sequence number that should have come next.
        expected: u64,
    },
    /// `seq` is lower than expected: a duplicate, or a record moved back.
    OutOfOrder {
        /// The sequence number that should have come next.
        expected: u64,
    },
    /// The line could not be parsed as a record.
    Unparseable {
        /// Parser message.
        detail: String,
    },
}

/// The first bad record of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// 0-based position in the input (line index of a JSONL file, ignoring blank lines).
    pub position: u64,
    /// The record's sequence number, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong with it.
    pub kind: BadRecordKind,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = match self.seq {
            Some(seq) => format!("record seq {seq} (entry {})", self.position + 1),
            None => format!("entry {}", self.position + 1),
        };
        match &self.kind {
            BadRecordKind::HashMismatch { .. } => {
                write!(f, "{at}: hash does not match its contents (record edited)")
            }
            BadRecordKind::PrevHashMismatch { .. } => write!(
                f,
                "{at}: prev_hash does not match the previous record (previous record \
                 rewritten, or records removed)"
            ),
            BadRecordKind::SequenceGap { expected } => match self.seq {
                Some(seq) if seq > expected.saturating_add(1) => write!(
                    f,
                    "{at}: records {expected}..={} are missing (deleted)",
                    seq - 1
                ),
                _ => write!(f, "{at}: record {expected} is missing (deleted)"),
            },
            BadRecordKind::Reordered { expected } => write!(
                f,
                "{at}: expected record {expected} here, which appears later (reordered)"
            ),
            BadRecordKind::OutOfOrder { expected } => write!(
                f,
                "{at}: expected record {expected}, found an earlier sequence number \
                 (duplicate or moved)"
            ),
            BadRecordKind::Unparseable { detail } => write!(f, "{at}: unreadable: {detail}"),
        }
    }
}

/// Result of comparing the log with one checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointStatus {
    /// Root and chain head match the log at this size.
    Matched,
    /// The signature does not verify with the given key; the checkpoint was not used.
    BadSignature,
    /// The Merkle root of the first `tree_size` records differs: the log was rewritten.
    /// The first altered record has a sequence number in
    /// `last_matching_size..tree_size`.
    RootMismatch {
        /// Largest size at which an earlier checkpoint matched (0 if none).
        last_matching_size: u64,
    },
    /// The root matches but the chain head differs (the checkpoint is inconsistent).
    ChainHeadMismatch,
    /// The log ends before this checkpoint's size: records were removed from the end.
    Truncated {
        /// Records present in the (otherwise valid) log.
        records_present: u64,
    },
    /// The log broke before reaching this size, so the checkpoint was not compared.
    NotReached,
}

/// One checkpoint and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointCheck {
    /// Checkpoint tree size.
    pub tree_size: u64,
    /// Checkpoint time.
    pub time_ms: i64,
    /// Outcome.
    pub status: CheckpointStatus,
}

/// What [`verify_log`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read (including any after the first bad one).
    pub records_read: u64,
    /// Length of the valid prefix: records `0..verified_records` verified.
    pub verified_records: u64,
    /// The first bad record, if any.
    pub first_bad: Option<BadRecord>,
    /// Every checkpoint given, in tree-size order.
    pub checkpoints: Vec<CheckpointCheck>,
    /// Merkle root over the valid prefix.
    pub root_hash: Hash,
    /// Hash of the last record of the valid prefix.
    pub chain_head: Hash,
}

impl VerifyReport {
    /// True when every record verified and every checkpoint matched.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none()
            && self
                .checkpoints
                .iter()
                .all(|check| check.status == CheckpointStatus::Matched)
    }

    /// The first truncation reported by a checkpoint.
    pub fn truncation(&self) -> Option<&CheckpointCheck> {
        self.checkpoints
            .iter()
            .find(|check| matches!(check.status, CheckpointStatus::Truncated { .. }))
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} records read, {} verified, root {}",
            self.records_read,
            self.verified_records,
            hex::encode(self.root_hash)
        )?;
        if let Some(bad) = &self.first_bad {
            writeln!(f, "FIRST BAD RECORD: {bad}")?;
        }
        for check in &self.checkpoints {
            let status = match &check.status {
                CheckpointStatus::Matched => "matched".to_owned(),
                CheckpointStatus::BadSignature => "SIGNATURE INVALID".to_owned(),
                CheckpointStatus::RootMismatch { last_matching_size } => {
                    format!("ROOT MISMATCH: log rewritten at or after record {last_matching_size}")
                }
                CheckpointStatus::ChainHeadMismatch => "CHAIN HEAD MISMATCH".to_owned(),
                CheckpointStatus::Truncated { records_present } => format!(
                    "TRUNCATED: log has {records_present} records, checkpoint covers {}",
                    check.tree_size
                ),
                CheckpointStatus::NotReached => "not reached (log broken earlier)".to_owned(),
            };
            writeln!(f, "checkpoint size {}: {status}", check.tree_size)?;
        }
        write!(f, "{}", if self.is_ok() { "OK" } else { "FAILED" })
    }
}

/// Streaming verifier; see the module docs.
#[derive(Debug)]
pub struct LogVerifier {
    // INVARIANT: sorted by tree_size; `next_check` indexes the first not yet decided.
    checks: Vec<(Checkpoint, Option<CheckpointStatus>)>,
    next_check: usize,
    last_matching_size: u64,
    next_seq: u64,
    prev_hash: Hash,
    frontier: MerkleFrontier,
    records_read: u64,
    first_bad: Option<BadRecord>,
}

impl LogVerifier {
    /// A verifier for a log starting at seq 0, checked against `checkpoints` signed by
    /// `public_key` (raw 32-byte Ed25519).
    pub fn new(checkpoints: &[Checkpoint], public_key: &[u8]) -> Self {
        let mut checks: Vec<(Checkpoint, Option<CheckpointStatus>)> = checkpoints
            .iter()
            .map(|checkpoint| {
                let status = checkpoint
                    .verify(public_key)
                    .err()
                    .map(|_| CheckpointStatus::BadSignature);
                (checkpoint.clone(), status)
            })
            .collect();
        checks.sort_by_key(|(checkpoint, _)| checkpoint.tree_size);
        let mut verifier = Self {
            checks,
            next_check: 0,
            last_matching_size: 0,
            next_seq: 0,
            prev_hash: GENESIS_HASH,
            frontier: MerkleFrontier::new(),
            records_read: 0,
            first_bad: None,
        };
        verifier.compare_checkpoints();
        verifier
    }

    /// A verifier for a log whose records before `frontier.size()` were archived: it
    /// expects the next record to have `seq == frontier.size()` and `prev_hash ==
    /// chain_head`, and continues the Merkle tree from `frontier`. Checkpoints of sizes
    /// below the cut cannot be compared and are left out of the report; one exactly at the
    /// cut is compared with the frontier at once.
    pub fn from_frontier(
        checkpoints: &[Checkpoint],
        public_key: &[u8],
        frontier: MerkleFrontier,
        chain_head: Hash,
    ) -> Self {
        let start = frontier.size();
        let kept: Vec<Checkpoint> = checkpoints
            .iter()
            .filter(|checkpoint| checkpoint.tree_size >= start)
            .cloned()
            .collect();
        let mut verifier = Self::new(&[], public_key);
        verifier.checks = Self::new(&kept, public_key).checks;
        verifier.next_seq = start;
        verifier.prev_hash = chain_head;
        verifier.frontier = frontier;
        verifier.compare_checkpoints();
        verifier
    }

    /// Feeds the next record in file order.
    pub fn push(&mut self, record: &AuditRecord) {
        let position = self.records_read;
        self.records_read += 1;
        if let Some(bad) = &mut self.first_bad {
            // Only look for the records a gap said were missing, to tell reorder from delete.
            if let BadRecordKind::SequenceGap { expected } = bad.kind
                && let Some(gap_end) = bad.seq
                && (expected..gap_end).contains(&record.seq)
            {
                bad.kind = BadRecordKind::Reordered { expected };
            }
            return;
        }
        let kind = if record.seq > self.next_seq {
            Some(BadRecordKind::SequenceGap {
                expected: self.next_seq,
            })
        } else if record.seq < self.next_seq {
            Some(BadRecordKind::OutOfOrder {
                expected: self.next_seq,
            })
        } else {
            match record.compute_hash() {
                Err(err) => Some(BadRecordKind::Unparseable {
                    detail: err.to_string(),
                }),
                Ok(computed) if computed != record.hash => Some(BadRecordKind::HashMismatch {
                    stored: record.hash,
                    computed,
                }),
                Ok(_) if record.prev_hash != self.prev_hash => {
                    Some(BadRecordKind::PrevHashMismatch {
                        expected: self.prev_hash,
                    })
                }
                Ok(_) => None,
            }
        };
        if let Some(kind) = kind {
            self.first_bad = Some(BadRecord {
                position,
                seq: Some(record.seq),
                kind,
            });
            return;
        }
        self.next_seq += 1;
        self.prev_hash = record.hash;
        self.frontier.append(&record.hash);
        self.compare_checkpoints();
    }

    /// Records that the next entry could not be parsed.
    pub fn push_unparseable(&mut self, detail: impl Into<String>) {
        let position = self.records_read;
        self.records_read += 1;
        if self.first_bad.is_none() {
            self.first_bad = Some(BadRecord {
                position,
                seq: None,
                kind: BadRecordKind::Unparseable {
                    detail: detail.into(),
                },
            });
        }
    }

    fn compare_checkpoints(&mut self) {
        let size = self.frontier.size();
        while let Some((checkpoint, status)) = self.checks.get_mut(self.next_check) {
            if checkpoint.tree_size > size {
                break;
            }
            if status.is_none() {
                let decided = if checkpoint.root_hash != self.frontier.root() {
                    CheckpointStatus::RootMismatch {
                        last_matching_size: self.last_matching_size,
                    }
                } else if checkpoint.chain_head != self.prev_hash {
                    CheckpointStatus::ChainHeadMismatch
                } else {
                    self.last_matching_size = checkpoint.tree_size;
                    CheckpointStatus::Matched
                };
                *status = Some(decided);
            }
            self.next_check += 1;
        }
    }

    /// The report.
    pub fn finish(self) -> VerifyReport {
        let verified = self.frontier.size();
        let broken = self.first_bad.is_some();
        let checkpoints = self
            .checks
            .into_iter()
            .map(|(checkpoint, status)| CheckpointCheck {
                tree_size: checkpoint.tree_size,
                time_ms: checkpoint.time_ms,
                status: status.unwrap_or(if broken {
                    CheckpointStatus::NotReached
                } else {
                    CheckpointStatus::Truncated {
                        records_present: verified,
                    }
                }),
            })
            .collect();
        VerifyReport {
            records_read: self.records_read,
            verified_records: verified,
            first_bad: self.first_bad,
            checkpoints,
            root_hash: self.frontier.root(),
            chain_head: self.prev_hash,
        }
    }
}

/// Verifies `records` (in file order, starting at seq 0) against `checkpoints` signed by
/// `public_key`. See the module docs.
pub fn verify_log<I>(records: I, checkpoints: &[Checkpoint], public_key: &[u8]) -> VerifyReport
where
    I: IntoIterator,
    I::Item: Borrow<AuditRecord>,
{
    let mut verifier = LogVerifier::new(checkpoints, public_key);
    for record in records {
        verifier.push(record.borrow());
    }
    verifier.finish()
}

/// Verifies a JSONL export read from `reader` (blank lines are skipped; an unparseable
/// line is reported as the bad record). Fails only on read errors.
pub fn verify_jsonl<R: BufRead>(
    reader: R,
    checkpoints: &[Checkpoint],
    public_key: &[u8],
) -> std::io::Result<VerifyReport> {
    let mut verifier = LogVerifier::new(checkpoints, public_key);
    for line in reader.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match AuditRecord::from_jsonl_line(&line) {
            Ok(record) => verifier.push(&record),
            Err(err) => verifier.push_unparseable(err.to_string()),
        }
    }
    Ok(verifier.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointSigner;
    use crate::event::tests::sample_chain;
    use crate::event::{AuditRecord, Decision};

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed(&[3u8; 32]).unwrap()
    }

    fn checkpoint_at(records: &[AuditRecord], size: usize) -> Checkpoint {
        let frontier = MerkleFrontier::from_leaf_data(records[..size].iter().map(|r| &r.hash));
        let head = if size == 0 {
            GENESIS_HASH
        } else {
            records[size - 1].hash
        };
        signer().sign(
            size as u64,
            frontier.root(),
            head,
            1_000 + size as i64,
            "gw-1",
        )
    }

    /// Recomputes seq, prev_hash and hash of every record: what an attacker with write
    /// access to the file (but not the signing key) can do.
    fn rechain(records: &mut [AuditRecord]) {
        let mut prev = GENESIS_HASH;
        for (seq, record) in records.iter_mut().enumerate() {
            *record =
                AuditRecord::chain(seq as u64, record.time_ms, prev, record.event.clone()).unwrap();
            prev = record.hash;
        }
    }

    fn verify(records: &[AuditRecord], checkpoints: &[Checkpoint]) -> VerifyReport {
        verify_log(records, checkpoints, &signer().public_key())
    }

    #[test]
    fn intact_log_verifies_with_checkpoints() {
        let records = sample_chain(20);
        let cps = [
            checkpoint_at(&records, 0),
            checkpoint_at(&records, 7),
            checkpoint_at(&records, 20),
        ];
        let report = verify(&records, &cps);
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.verified_records, 20);
        assert_eq!(report.chain_head, records[19].hash);
        assert!(report.to_string().ends_with("OK"));
    }

    #[test]
    fn edited_record_is_named() {
        let mut records = sample_chain(10);
        records[4].event.decision = Some(Decision::Deny);
        let report = verify(&records, &[]);
        let bad = report.first_bad.clone().unwrap();
        assert_eq!((bad.position, bad.seq), (4, Some(4)));
        assert!(
            matches!(bad.kind, BadRecordKind::HashMismatch { .. }),
            "{bad:?}"
        );
        assert_eq!(report.verified_records, 4);
        assert!(report.to_string().contains("record seq 4"), "{report}");
    }

    #[test]
    fn edited_record_with_its_hash_recomputed_breaks_the_next_link() {
        let mut records = sample_chain(10);
        records[4].event.reason = Some("nothing to see".to_owned());
        records[4].hash = records[4].compute_hash().unwrap();
        let report = verify(&records, &[]);
        let bad = report.first_bad.unwrap();
        assert_eq!(bad.seq, Some(5));
        assert!(
            matches!(bad.kind, BadRecordKind::PrevHashMismatch { .. }),
            "{bad:?}"
        );
    }

    #[test]
    fn deleted_record_is_named() {
        let mut records = sample_chain(10);
        records.remove(6);
        let report = verify(&records, &[]);
        let bad = report.first_bad.clone().unwrap();
        assert_eq!(bad.position, 6);
        assert_eq!(bad.seq, Some(7));
        assert_eq!(bad.kind, BadRecordKind::SequenceGap { expected: 6 });
        assert!(
            report.to_string().contains("record 6 is missing"),
            "{report}"
        );
    }

    #[test]
    fn deleted_first_record_is_named() {
        let mut records = sample_chain(5);
        records.remove(0);
        let bad = verify(&records, &[]).first_bad.unwrap();
        assert_eq!(
            (bad.position, bad.kind),
            (0, BadRecordKind::SequenceGap { expected: 0 })
        );
    }

    #[test]
    fn deleted_record_with_renumbering_is_named_by_the_broken_link() {
        let mut records = sample_chain(10);
        records.remove(6);
        for record in records.iter_mut().skip(6) {
            record.seq -= 1;
            record.hash = record.compute_hash().unwrap();
        }
        let bad = verify(&records, &[]).first_bad.unwrap();
        assert_eq!(bad.seq, Some(6));
        assert!(
            matches!(bad.kind, BadRecordKind::PrevHashMismatch { .. }),
            "{bad:?}"
        );
    }

    #[test]
    fn reordered_records_are_named() {
        let mut records = sample_chain(10);
        records.swap(3, 4);
        let report = verify(&records, &[]);
        let bad = report.first_bad.unwrap();
        assert_eq!((bad.position, bad.seq), (3, Some(4)));
        assert_eq!(bad.kind, BadRecordKind::Reordered { expected: 3 });
    }

    #[test]
    fn duplicated_record_is_named() {
        let mut records = sample_chain(6);
        let copy = records[2].clone();
        records.insert(3, copy);
        let bad = verify(&records, &[]).first_bad.unwrap();
        assert_eq!(
            (bad.position, bad.kind),
            (3, BadRecordKind::OutOfOrder { expected: 3 })
        );
    }

    #[test]
    fn truncation_is_reported_against_a_later_checkpoint() {
        let records = sample_chain(30);
        let cps = [checkpoint_at(&records, 10), checkpoint_at(&records, 30)];
        let report = verify(&records[..25], &cps);
        assert!(
            report.first_bad.is_none(),
            "the remaining chain itself is intact"
        );
        assert!(!report.is_ok());
        assert_eq!(report.checkpoints[0].status, CheckpointStatus::Matched);
        assert_eq!(
            report.checkpoints[1].status,
            CheckpointStatus::Truncated {
                records_present: 25
            }
        );
        assert!(report.truncation().is_some());
    }

    #[test]
    fn truncation_and_rewrite_with_recomputed_hashes_is_caught_by_the_root() {
        let records = sample_chain(30);
        let cps = [checkpoint_at(&records, 10), checkpoint_at(&records, 20)];
        // Drop records 12..=14 and re-hash the rest, so the chain itself verifies.
        let mut forged: Vec<AuditRecord> = records.clone();
        forged.drain(12..15);
        rechain(&mut forged);
        let report = verify(&forged, &cps);
        assert!(report.first_bad.is_none(), "chain was recomputed: {report}");
        assert_eq!(report.checkpoints[0].status, CheckpointStatus::Matched);
        assert_eq!(
            report.checkpoints[1].status,
            CheckpointStatus::RootMismatch {
                last_matching_size: 10
            }
        );
        assert!(!report.is_ok());
    }

    #[test]
    fn edit_with_recomputed_chain_is_caught_by_the_root() {
        let records = sample_chain(12);
        let cps = [checkpoint_at(&records, 12)];
        let mut forged = records.clone();
        forged[2].event.actor.id = "someone_else".to_owned();
        rechain(&mut forged);
        let report = verify(&forged, &cps);
        assert!(report.first_bad.is_none());
        assert_eq!(
            report.checkpoints[0].status,
            CheckpointStatus::RootMismatch {
                last_matching_size: 0
            }
        );
    }

    #[test]
    fn forged_checkpoint_signature_is_reported_and_not_trusted() {
        let records = sample_chain(8);
        let mut cp = checkpoint_at(&records, 8);
        cp.tree_size = 5;
        let other = CheckpointSigner::from_seed(&[4u8; 32]).unwrap();
        let foreign = other.sign(8, [0u8; 32], [0u8; 32], 1, "gw-1");
        let report = verify(&records, &[cp, foreign]);
        assert!(report.first_bad.is_none());
        assert_eq!(report.checkpoints.len(), 2);
        for check in &report.checkpoints {
            assert_eq!(check.status, CheckpointStatus::BadSignature);
        }
        assert!(!report.is_ok());
    }

    #[test]
    fn checkpoints_after_a_break_are_not_reached() {
        let mut records = sample_chain(10);
        let cps = [checkpoint_at(&records, 3), checkpoint_at(&records, 10)];
        records[5].time_ms += 1;
        let report = verify(&records, &cps);
        assert_eq!(report.checkpoints[0].status, CheckpointStatus::Matched);
        assert_eq!(report.checkpoints[1].status, CheckpointStatus::NotReached);
    }

    #[test]
    fn jsonl_export_verifies_and_names_an_unparseable_line() {
        let records = sample_chain(6);
        let cps = [checkpoint_at(&records, 6)];
        let mut text = String::new();
        for record in &records {
            text.push_str(&record.to_jsonl_line().unwrap());
            text.push('\n');
        }
        let pk = signer().public_key();
        let report = verify_jsonl(text.as_bytes(), &cps, &pk).unwrap();
        assert!(report.is_ok(), "{report}");

        let edited = text.replacen("\"req_2\"", "\"req_X\"", 1);
        let report = verify_jsonl(edited.as_bytes(), &cps, &pk).unwrap();
        assert_eq!(report.first_bad.unwrap().seq, Some(2));

        let broken = text.replacen("{\"seq\":3", "{\"seq\":\"3\"", 1);
        let report = verify_jsonl(broken.as_bytes(), &cps, &pk).unwrap();
        let bad = report.first_bad.unwrap();
        assert_eq!((bad.position, bad.seq), (3, None));
        assert!(matches!(bad.kind, BadRecordKind::Unparseable { .. }));
    }

    #[test]
    fn verification_resumes_from_the_frontier_at_an_archive_cut() {
        let records = sample_chain(20);
        let cps = [
            checkpoint_at(&records, 4),
            checkpoint_at(&records, 8),
            checkpoint_at(&records, 20),
        ];
        let cut = 8;
        let frontier = MerkleFrontier::from_leaf_data(records[..cut].iter().map(|r| &r.hash));
        let pk = signer().public_key();
        let start = |frontier: MerkleFrontier| {
            LogVerifier::from_frontier(&cps, &pk, frontier, records[cut - 1].hash)
        };
        let mut verifier = start(frontier.clone());
        for record in &records[cut..] {
            verifier.push(record);
        }
        let report = verifier.finish();
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.verified_records, 20);
        assert_eq!(
            report.checkpoints.len(),
            2,
            "the checkpoint before the cut is left out"
        );

        // The first kept record deleted: named against the cut.
        let mut verifier = start(frontier.clone());
        for record in &records[cut + 1..] {
            verifier.push(record);
        }
        let bad = verifier.finish().first_bad.unwrap();
        assert_eq!(bad.kind, BadRecordKind::SequenceGap { expected: 8 });

        // Kept records rewritten and re-chained from a forged anchor: caught by the
        // checkpoint after the cut.
        let mut forged = records.clone();
        forged[9].event.decision = Some(Decision::Deny);
        let mut prev = records[cut - 1].hash;
        for record in forged.iter_mut().skip(cut) {
            *record =
                AuditRecord::chain(record.seq, record.time_ms, prev, record.event.clone()).unwrap();
            prev = record.hash;
        }
        let mut verifier = start(frontier);
        for record in &forged[cut..] {
            verifier.push(record);
        }
        let report = verifier.finish();
        assert!(report.first_bad.is_none());
        assert!(!report.is_ok(), "{report}");
    }
}
