//! Merkle proofs over a log whose oldest records were archived: the tree is known by the
//! [`MerkleFrontier`] at the cut (the roots of the perfect subtrees covering `[0, cut)`)
//! plus the leaf hashes from the cut on.
//!
//! Proof generation follows RFC 9162 §2.1.3.1 and §2.1.4.1 exactly as
//! [`crate::merkle::inclusion_proof`] and [`crate::merkle::consistency_proof`] do; a
//! subtree that lies wholly before the cut is taken from the frontier. Every subtree such
//! a proof needs for a leaf at or after the cut is either a frontier node or spans the
//! cut (a left sibling wholly before the cut whose parent spans the cut is a maximal
//! aligned block, hence a frontier node), so proofs of leaves `>= cut` and consistency
//! proofs from sizes `>= cut` are always available. Proofs about archived leaves are
//! refused with [`AuditError::Proof`].

use crate::error::AuditError;
use crate::event::Hash;
use crate::merkle::{MerkleFrontier, node_hash, root_from_leaf_hashes};

/// A tree of `cut + leaves.len()` leaves whose first `cut` leaves are only known through
/// their frontier.
#[derive(Debug, Clone, Copy)]
pub struct PrunedTree<'a> {
    frontier: &'a MerkleFrontier,
    leaves: &'a [Hash],
}

impl<'a> PrunedTree<'a> {
    /// `frontier` covers `[0, cut)`; `leaves` are the leaf hashes (already leaf-hashed)
    /// of `cut..`, in order.
    pub fn new(frontier: &'a MerkleFrontier, leaves: &'a [Hash]) -> Self {
        Self { frontier, leaves }
    }

    /// First leaf that is still held.
    pub fn cut(&self) -> u64 {
        self.frontier.size()
    }

    /// Number of leaves of the whole tree.
    pub fn size(&self) -> u64 {
        self.cut()
            .saturating_add(u64::try_from(self.leaves.len()).unwrap_or(u64::MAX))
    }

    /// Root of the tree of the first `tree_size` leaves (`tree_size >= cut`).
    pub fn root(&self, tree_size: u64) -> Result<Hash, AuditError> {
        self.check_size(tree_size)?;
        if tree_size == 0 {
            return Ok(crate::merkle::empty_root());
        }
        self.subtree(0, tree_size)
    }

    /// Inclusion proof of leaf `index` in the tree of `tree_size` leaves.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(tree_size)?;
        if index >= tree_size {
            return Err(AuditError::Proof("leaf index outside the tree"));
        }
        if index < self.cut() {
            return Err(AuditError::Proof("leaf was archived"));
        }
        let mut proof = Vec::new();
        self.path(index, 0, tree_size, &mut proof)?;
        Ok(proof)
    }

    /// Consistency proof between the trees of `old_size` and `new_size` leaves.
    pub fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>, AuditError> {
        self.check_size(new_size)?;
        if old_size > new_size {
            return Err(AuditError::Proof("old size larger than the tree"));
        }
        let mut proof = Vec::new();
        if old_size > 0 && old_size < new_size {
            self.subproof(old_size, 0, new_size, true, &mut proof)?;
        }
        Ok(proof)
    }

    fn check_size(&self, tree_size: u64) -> Result<(), AuditError> {
        if tree_size > self.size() {
            return Err(AuditError::Proof("tree size larger than the log"));
        }
        if tree_size < self.cut() {
            return Err(AuditError::Proof("tree ends inside the archived records"));
        }
        Ok(())
    }

    /// The root over consecutive frontier nodes covering exactly `[start, end)`, if the
    /// range starts and ends on node boundaries. Frontier nodes shrink from left to right,
    /// so folding them from the right follows the RFC 9162 split.
    fn frontier_range(&self, start: u64, end: u64) -> Option<Hash> {
        let size = self.frontier.size();
        let mut offset = 0u64;
        let mut nodes = self.frontier.nodes().iter();
        let mut inside: Vec<Hash> = Vec::new();
        for bit in (0..u64::BITS).rev() {
            let width = 1u64 << bit;
            if size & width == 0 {
                continue;
            }
            let node = nodes.next()?;
            if offset >= start && offset + width <= end {
                inside.push(*node);
            } else if offset < end && offset + width > start {
                return None; // the range cuts through this node
            }
            offset += width;
        }
        if end > offset {
            return None;
        }
        let mut iter = inside.into_iter().rev();
        let last = iter.next()?;
        Some(iter.fold(last, |right, left| node_hash(&left, &right)))
    }

    /// RFC 9162 MTH over leaves `[start, end)`.
    fn subtree(&self, start: u64, end: u64) -> Result<Hash, AuditError> {
        let cut = self.cut();
        if start >= cut {
            let from =
                usize::try_from(start - cut).map_err(|_| AuditError::Proof("tree too large"))?;
            let to = usize::try_from(end - cut).map_err(|_| AuditError::Proof("tree too large"))?;
            let leaves = self
                .leaves
                .get(from..to)
                .ok_or(AuditError::Proof("tree size larger than the log"))?;
            return Ok(root_from_leaf_hashes(leaves));
        }
        if let Some(node) = self.frontier_range(start, end) {
            return Ok(node);
        }
        if end <= cut || end - start < 2 {
            return Err(AuditError::Proof("subtree was archived"));
        }
        let k = split_point(end - start);
        Ok(node_hash(
            &self.subtree(start, start + k)?,
            &self.subtree(start + k, end)?,
        ))
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), AuditError> {
        let n = end - start;
        if n <= 1 {
            return Ok(());
        }
        let k = split_point(n);
        if m < k {
            self.path(m, start, start + k, out)?;
            out.push(self.subtree(start + k, end)?);
        } else {
            self.path(m - k, start + k, end, out)?;
            out.push(self.subtree(start, start + k)?);
        }
        Ok(())
    }

    fn subproof(
        &self,
        m: u64,
        start: u64,
        end: u64,
        whole: bool,
        out: &mut Vec<Hash>,
    ) -> Result<(), AuditError> {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(self.subtree(start, end)?);
            }
            return Ok(());
        }
        let k = split_point(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, out)?;
            out.push(self.subtree(start + k, end)?);
        } else {
            self.subproof(m - k, start + k, end, false, out)?;
            out.push(self.subtree(start, start + k)?);
        }
        Ok(())
    }
}

/// Largest power of two strictly less than `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    let mut k = 1u64;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{
        consistency_proof, inclusion_proof, leaf_hash, verify_consistency, verify_inclusion,
    };

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn frontier_of(leaf_hashes: &[Hash]) -> MerkleFrontier {
        let mut frontier = MerkleFrontier::new();
        for leaf in leaf_hashes {
            frontier.append_leaf_hash(*leaf);
        }
        frontier
    }

    #[test]
    fn proofs_after_the_cut_equal_the_full_tree_proofs() {
        let all = leaves(37);
        for cut in 0..=all.len() {
            let frontier = frontier_of(&all[..cut]);
            let tree = PrunedTree::new(&frontier, &all[cut..]);
            for size in cut.max(1)..=all.len() {
                let full = &all[..size];
                let root = root_from_leaf_hashes(full);
                assert_eq!(
                    tree.root(size as u64).unwrap(),
                    root,
                    "cut {cut} size {size}"
                );
                for (index, leaf) in full.iter().enumerate().skip(cut) {
                    let proof = tree.inclusion_proof(index as u64, size as u64).unwrap();
                    assert_eq!(proof, inclusion_proof(full, index as u64).unwrap());
                    verify_inclusion(leaf, index as u64, size as u64, &proof, &root).unwrap();
                }
                for old in cut..=size {
                    let proof = tree.consistency_proof(old as u64, size as u64).unwrap();
                    assert_eq!(
                        proof,
                        consistency_proof(full, old as u64).unwrap(),
                        "cut {cut} {old}->{size}"
                    );
                    let old_root = root_from_leaf_hashes(&all[..old]);
                    verify_consistency(old as u64, size as u64, &old_root, &root, &proof).unwrap();
                }
            }
        }
    }

    #[test]
    fn archived_leaves_and_sizes_outside_the_log_are_refused() {
        let all = leaves(20);
        let frontier = frontier_of(&all[..7]);
        let tree = PrunedTree::new(&frontier, &all[7..]);
        assert!(tree.inclusion_proof(6, 20).is_err(), "archived leaf");
        assert!(tree.inclusion_proof(20, 20).is_err(), "outside the tree");
        assert!(
            tree.inclusion_proof(8, 21).is_err(),
            "tree larger than the log"
        );
        assert!(tree.root(5).is_err(), "tree inside the archive");
        assert!(tree.consistency_proof(9, 8).is_err());
    }
}
