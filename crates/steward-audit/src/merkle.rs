//! RFC 6962/9162 Merkle tree: root, inclusion and consistency proofs, and an incremental
//! frontier for an append-only log.
//!
//! - leaf hash: `SHA-256(0x00 || leaf_data)`; node hash: `SHA-256(0x01 || left || right)`;
//!   the root of the empty tree is `SHA-256("")` (RFC 9162 §2.1.1).
//! - For the audit log, a record's leaf data is its 32-byte record hash, and its leaf
//!   index is its sequence number.
//! - Proof generation works over the slice of leaf hashes; verification follows
//!   RFC 9162 §2.1.3.2 and §2.1.4.2 and never panics on malformed input.
//! - [`MerkleFrontier`] keeps the roots of the perfect subtrees that make up the tree
//!   (a compact range over `[0, size)`), `O(log n)` hashes, so the writer can keep the
//!   root current without holding the leaves. It serializes as
//!   `{"size": n, "nodes": ["<hex>", ..]}` (largest subtree first).

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

use crate::error::AuditError;
use crate::event::{Hash, to_hash};

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    // The audit log's leaves are 32-byte record hashes: one-shot over a stack buffer
    // costs about half of a streaming context's two updates and finish.
    if data.len() == 32 {
        let mut input = [0u8; 33];
        input[1..].copy_from_slice(data);
        return to_hash(digest::digest(&digest::SHA256, &input).as_ref());
    }
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&[0x00]);
    context.update(data);
    to_hash(context.finish().as_ref())
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut input = [0u8; 65];
    input[0] = 0x01;
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    to_hash(digest::digest(&digest::SHA256, &input).as_ref())
}

/// Root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    crate::event::sha256(b"")
}

/// Largest power of two strictly less than `n` (`n >= 2`).
fn split_point(n: usize) -> usize {
    let mut k = 1usize;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// Merkle tree hash over `leaves` (already leaf-hashed).
pub fn root_from_leaf_hashes(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [only] => *only,
        _ => {
            let k = split_point(leaves.len());
            let (left, right) = leaves.split_at(k);
            node_hash(&root_from_leaf_hashes(left), &root_from_leaf_hashes(right))
        }
    }
}

/// Inclusion proof (audit path) for leaf `index` in the tree over `leaves`
/// (RFC 9162 §2.1.3.1).
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, AuditError> {
    let index = usize::try_from(index).map_err(|_| AuditError::Proof("leaf index too large"))?;
    if index >= leaves.len() {
        return Err(AuditError::Proof("leaf index outside the tree"));
    }
    let mut proof = Vec::new();
    path(index, leaves, &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m < k {
        path(m, left, out);
        out.push(root_from_leaf_hashes(right));
    } else {
        path(m - k, right, out);
        out.push(root_from_leaf_hashes(left));
    }
}

/// Consistency proof between the tree of the first `old_size` leaves and the tree over
/// all `leaves` (RFC 9162 §2.1.4.1). Empty when `old_size` is 0 or equals the size.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, AuditError> {
    let m = usize::try_from(old_size).map_err(|_| AuditError::Proof("tree size too large"))?;
    if m > leaves.len() {
        return Err(AuditError::Proof("old size larger than the tree"));
    }
    let mut proof = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut proof);
    }
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root_from_leaf_hashes(leaves));
        }
        return;
    }
    let k = split_point(n);
    let (left, right) = leaves.split_at(k);
    if m <= k {
        subproof(m, left, whole, out);
        out.push(root_from_leaf_hashes(right));
    } else {
        subproof(m - k, right, false, out);
        out.push(root_from_leaf_hashes(left));
    }
}

/// Root implied by an inclusion proof, or an error when the proof cannot fit the tree.
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
) -> Result<Hash, AuditError> {
    if index >= tree_size {
        return Err(AuditError::Proof("leaf index outside the tree"));
    }
    let mut fn_ = index;
    let mut sn = tree_size - 1;
    let mut root = *leaf;
    for sibling in proof {
        if sn == 0 {
            return Err(AuditError::Proof("proof has extra hashes"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            root = node_hash(sibling, &root);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            root = node_hash(&root, sibling);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(AuditError::Proof("proof is missing hashes"));
    }
    Ok(root)
}

/// Verifies that `leaf` (a leaf hash) is at `index` in the tree of `tree_size` with `root`.
///
/// `tree_size` and `root` must come from the same (signed) checkpoint: some wrong sizes
/// give the same path shape, so the size is only checked through the root.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), AuditError> {
    let computed = root_from_inclusion_proof(leaf, index, tree_size, proof)?;
    if steward_core::constant_time_eq(&computed, root) {
        Ok(())
    } else {
        Err(AuditError::Proof("root does not match"))
    }
}

/// Verifies that the tree of `old_size` with `old_root` is a prefix of the tree of
/// `new_size` with `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), AuditError> {
    if old_size > new_size {
        return Err(AuditError::Proof("old size larger than new size"));
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(AuditError::Proof("proof has extra hashes"));
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(AuditError::Proof("root does not match"))
        };
    }
    if old_size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(AuditError::Proof("proof has extra hashes"))
        };
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(AuditError::Proof("proof is missing hashes"));
    };
    // An old tree that is a perfect subtree is implicitly the first proof element.
    let (seed, path): (Hash, &[Hash]) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*first, rest)
    };
    let mut fn_ = old_size - 1;
    let mut sn = new_size - 1;
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut fr = seed;
    let mut sr = seed;
    for c in path {
        if sn == 0 {
            return Err(AuditError::Proof("proof has extra hashes"));
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(AuditError::Proof("proof is missing hashes"));
    }
    if fr != *old_root {
        return Err(AuditError::Proof("old root does not match"));
    }
    if sr != *new_root {
        return Err(AuditError::Proof("new root does not match"));
    }
    Ok(())
}

/// The right edge of an append-only Merkle tree: the roots of its perfect subtrees,
/// largest first. Enough to compute the root and to append.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "FrontierRepr", into = "FrontierRepr")]
pub struct MerkleFrontier {
    size: u64,
    // INVARIANT: nodes.len() == size.count_ones(); nodes[i] is the root of the subtree for
    // the i-th set bit of `size`, from the most significant.
    nodes: Vec<Hash>,
}

impl MerkleFrontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the frontier over leaf data (record hashes), in order.
    pub fn from_leaf_data<'a>(leaves: impl IntoIterator<Item = &'a Hash>) -> Self {
        let mut frontier = Self::new();
        for leaf in leaves {
            frontier.append(leaf);
        }
        frontier
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf given its data (for the audit log: the record hash).
    pub fn append(&mut self, leaf_data: &[u8]) {
        self.append_leaf_hash(leaf_hash(leaf_data));
    }

    /// Appends a leaf given its leaf hash.
    pub fn append_leaf_hash(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            carry = node_hash(&left, &carry);
            size >>= 1;
        }
        self.nodes.push(carry);
        self.size += 1;
    }

    /// The current root (the empty-tree root for size 0).
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }

    /// The subtree roots, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FrontierRepr {
    size: u64,
    nodes: Vec<String>,
}

impl TryFrom<FrontierRepr> for MerkleFrontier {
    type Error = AuditError;

    fn try_from(repr: FrontierRepr) -> Result<Self, Self::Error> {
        if u64::try_from(repr.nodes.len()).ok() != Some(u64::from(repr.size.count_ones())) {
            return Err(AuditError::malformed(
                "merkle frontier",
                "node count does not match size",
            ));
        }
        let nodes = repr
            .nodes
            .iter()
            .map(|node| crate::event::parse_hash(node))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            size: repr.size,
            nodes,
        })
    }
}

impl From<MerkleFrontier> for FrontierRepr {
    fn from(frontier: MerkleFrontier) -> Self {
        Self {
            size: frontier.size,
            nodes: frontier.nodes.iter().map(hex::encode).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The certificate-transparency reference data (RFC 6962 test vectors, as used by
    // transparency-dev/merkle and RFC 9162 implementations).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(text: &str) -> Hash {
        crate::event::parse_hash(text).unwrap()
    }

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|data| leaf_hash(&hex::decode(data).unwrap()))
            .collect()
    }

    fn root(size: usize) -> Hash {
        root_from_leaf_hashes(&leaves()[..size])
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(root_from_leaf_hashes(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(MerkleFrontier::new().root(), empty_root());
    }

    #[test]
    fn roots_match_reference_vectors() {
        let leaves = leaves();
        for (size, want) in ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(root_from_leaf_hashes(&leaves[..=size])), *want);
        }
    }

    // (leaf index, tree size, path)
    const INCLUSION: &[(u64, usize, &[&str])] = &[
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    // (old size, new size, proof)
    const CONSISTENCY: &[(u64, usize, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    #[test]
    fn inclusion_proofs_match_reference_vectors_and_verify() {
        let leaves = leaves();
        for (index, size, want) in INCLUSION {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            let proof = inclusion_proof(&leaves[..*size], *index).unwrap();
            assert_eq!(proof, want, "leaf {index} size {size}");
            let leaf = leaves[*index as usize];
            verify_inclusion(&leaf, *index, *size as u64, &proof, &root(*size)).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_reference_vectors_and_verify() {
        let leaves = leaves();
        for (old, new, want) in CONSISTENCY {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            let proof = consistency_proof(&leaves[..*new], *old).unwrap();
            assert_eq!(proof, want, "{old} -> {new}");
            verify_consistency(*old, *new as u64, &root(*old as usize), &root(*new), &proof)
                .unwrap();
        }
    }

    #[test]
    fn every_generated_proof_verifies_for_sizes_up_to_40() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let r = root_from_leaf_hashes(tree);
            for m in 0..n {
                let proof = inclusion_proof(tree, m as u64).unwrap();
                verify_inclusion(&tree[m], m as u64, n as u64, &proof, &r).unwrap();
                // A different leaf never verifies with the same proof.
                assert!(
                    verify_inclusion(&leaf_hash(b"x"), m as u64, n as u64, &proof, &r).is_err()
                );
            }
            for m in 0..=n {
                let proof = consistency_proof(tree, m as u64).unwrap();
                let old = root_from_leaf_hashes(&tree[..m]);
                verify_consistency(m as u64, n as u64, &old, &r, &proof).unwrap();
            }
        }
    }

    #[test]
    fn malformed_inclusion_proofs_are_rejected() {
        let leaves = leaves();
        let r = root(8);
        let index = 5u64;
        let leaf = leaves[5];
        let proof = inclusion_proof(&leaves, index).unwrap();
        let good = |p: &[Hash], i: u64, n: u64| verify_inclusion(&leaf, i, n, p, &r);
        assert!(good(&proof, index, 8).is_ok());

        let mut extra = proof.clone();
        extra.push(r);
        assert!(good(&extra, index, 8).is_err(), "extra hash at the end");
        let mut extra_front = proof.clone();
        extra_front.insert(0, leaf);
        assert!(good(&extra_front, index, 8).is_err(), "extra hash in front");
        let missing = &proof[..proof.len() - 1];
        assert!(good(missing, index, 8).is_err(), "missing hash");
        assert!(good(&[], index, 8).is_err(), "empty proof");
        // Size 7 is absent on purpose: leaf 5 has the same path shape in trees of 7 and 8,
        // so only a (root, size) pair taken from one checkpoint is meaningful.
        for size in [0, 4, 6, 9, 16, u64::MAX] {
            assert!(good(&proof, index, size).is_err(), "wrong tree size {size}");
        }
        for i in [4, 6, index ^ 2, 8, 100, u64::MAX] {
            assert!(good(&proof, i, 8).is_err(), "wrong or outside index {i}");
        }
        let mut flipped = proof.clone();
        flipped[1][0] ^= 8;
        assert!(good(&flipped, index, 8).is_err(), "flipped bit");
        assert!(verify_inclusion(&leaf, index, 8, &proof, &empty_root()).is_err());
        assert!(
            inclusion_proof(&leaves, 8).is_err(),
            "cannot prove outside the tree"
        );
    }

    #[test]
    fn malformed_consistency_proofs_are_rejected() {
        let leaves = leaves();
        for (old, new) in [(6u64, 8u64), (2, 5), (1, 8), (3, 7)] {
            let proof = consistency_proof(&leaves[..new as usize], old).unwrap();
            let r1 = root(old as usize);
            let r2 = root(new as usize);
            let check =
                |p: &[Hash], m: u64, n: u64, a: &Hash, b: &Hash| verify_consistency(m, n, a, b, p);
            assert!(check(&proof, old, new, &r1, &r2).is_ok());
            let mut extra = proof.clone();
            extra.push(r2);
            assert!(
                check(&extra, old, new, &r1, &r2).is_err(),
                "extra hash {old}->{new}"
            );
            let mut front = proof.clone();
            front.insert(0, proof[0]);
            assert!(
                check(&front, old, new, &r1, &r2).is_err(),
                "front {old}->{new}"
            );
            assert!(
                check(&proof[..proof.len() - 1], old, new, &r1, &r2).is_err(),
                "missing"
            );
            assert!(check(&[], old, new, &r1, &r2).is_err(), "empty");
            for (m, n) in [
                (old - 1, new),
                (old + 1, new),
                (old, new * 2),
                (old, new / 2),
                (new + 1, new),
                (old, u64::MAX),
            ] {
                assert!(check(&proof, m, n, &r1, &r2).is_err(), "sizes {m}->{n}");
            }
            assert!(check(&proof, old, new, &r2, &r1).is_err(), "swapped roots");
            let mut flipped = proof.clone();
            flipped[0][0] ^= 16;
            assert!(check(&flipped, old, new, &r1, &r2).is_err(), "flipped bit");
        }
        assert!(consistency_proof(&leaves[..3], 4).is_err());
        assert!(verify_consistency(3, 3, &root(3), &root(3), &[root(1)]).is_err());
        assert!(verify_consistency(0, 3, &empty_root(), &root(3), &[root(1)]).is_err());
    }

    #[test]
    fn frontier_matches_full_root_at_every_size() {
        let data: Vec<Hash> = (0u32..70)
            .map(|i| crate::event::sha256(&i.to_le_bytes()))
            .collect();
        let leaves: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
        let mut frontier = MerkleFrontier::new();
        for (i, d) in data.iter().enumerate() {
            frontier.append(d);
            assert_eq!(frontier.size(), i as u64 + 1);
            assert_eq!(frontier.root(), root_from_leaf_hashes(&leaves[..=i]));
            assert_eq!(
                frontier.nodes().len(),
                frontier.size().count_ones() as usize
            );
        }
        assert_eq!(MerkleFrontier::from_leaf_data(&data), frontier);
    }

    #[test]
    fn frontier_serializes_and_rejects_inconsistent_state() {
        let mut frontier = MerkleFrontier::new();
        for i in 0u8..11 {
            frontier.append(&[i]);
        }
        let json = serde_json::to_string(&frontier).unwrap();
        let back: MerkleFrontier = serde_json::from_str(&json).unwrap();
        assert_eq!(back, frontier);
        assert_eq!(back.root(), frontier.root());
        let bad = json.replace("\"size\":11", "\"size\":12");
        assert!(serde_json::from_str::<MerkleFrontier>(&bad).is_err());
    }

    #[test]
    fn frontier_root_for_reference_vectors() {
        let mut frontier = MerkleFrontier::new();
        for (data, want) in LEAVES.iter().zip(ROOTS) {
            frontier.append(&hex::decode(data).unwrap());
            assert_eq!(hex::encode(frontier.root()), want);
        }
    }
}
