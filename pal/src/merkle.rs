//! The database digest, kept up to date as the file changes: a Merkle tree over the file's
//! 4 KiB pieces (`sqlite_shim::DIGEST_CHUNK`), so a digest after a write rehashes the pieces
//! written and their paths to the root — O(changed pieces × log(file size)) — rather than the
//! whole file.
//!
//! The tree is RFC 6962's Merkle Tree Hash (§2.1): a piece's leaf is SHA-256(0x00 ‖ piece),
//! a node SHA-256(0x01 ‖ left ‖ right), and a tree of n > 1 leaves splits at the largest power
//! of two below n. The digest binds the file's length too:
//! SHA-256("vpr database v1" ‖ length as u64 LE ‖ root), the root of an empty file being 32
//! zero bytes. [`digest_of`] computes it from the bytes alone (the reference); [`Tree`] keeps
//! its levels — each the pairs of the one below, an unpaired last node carried up as it is,
//! which is the same shape — and recomputes only what changed.

use alloc::vec::Vec;

use sqlite_shim::{Stale, DIGEST_CHUNK};
use vpr_proto::crypto::hash;
use vpr_proto::digest::Digest;

type Node = [u8; 32];

const CHUNK: usize = 4096;
const _: () = assert!(DIGEST_CHUNK == CHUNK as u64);

fn leaf(piece: &[u8]) -> Node {
    hash(&[&[0], piece]).0
}

fn node(left: &Node, right: &Node) -> Node {
    hash(&[&[1], left, right]).0
}

fn finish(len: usize, root: &Node) -> Digest {
    hash(&[b"vpr database v1", &(len as u64).to_le_bytes(), root])
}

/// The digest of `bytes` computed from scratch (memory: the tree's depth).
pub fn digest_of(bytes: &[u8]) -> Digest {
    let leaves = bytes.len().div_ceil(CHUNK);
    let root = if leaves == 0 { [0; 32] } else { subtree(bytes, 0, leaves) };
    finish(bytes.len(), &root)
}

/// The root over leaves `[first, first + count)`, `count >= 1`.
fn subtree(bytes: &[u8], first: usize, count: usize) -> Node {
    if count == 1 {
        let start = first * CHUNK;
        return leaf(&bytes[start..(start + CHUNK).min(bytes.len())]);
    }
    // The largest power of two below `count`: the highest bit of `count - 1`.
    let split = 1 << (usize::BITS - 1 - (count - 1).leading_zeros());
    node(&subtree(bytes, first, split), &subtree(bytes, first + split, count - split))
}

/// The tree of one database file's digest.
#[derive(Debug, Default)]
pub struct Tree {
    /// Level 0 holds the leaves; each next level the pairs of the one before; the last holds
    /// the root. Empty until the first [`Tree::digest`] (and after an allocation failed).
    levels: Vec<Vec<Node>>,
    /// The file's length when the levels were last brought up to date.
    len: usize,
}

impl Tree {
    /// The digest of `bytes`, which differ from what the last call saw at most where `stale`
    /// says (everything, on the first call).
    pub fn digest(&mut self, bytes: &[u8], stale: Stale) -> Digest {
        let leaves = bytes.len().div_ceil(CHUNK);
        let updated = match stale {
            Stale::Chunks(chunks) if !self.levels.is_empty() => {
                self.update(bytes, chunks.into_iter().map(|c| c as usize))
            }
            _ => self.update(bytes, 0..leaves),
        };
        if !updated {
            // Out of memory: forget the tree (the next digest builds it again) and hash the
            // file without one.
            self.levels = Vec::new();
            return digest_of(bytes);
        }
        let root = self.levels.last().and_then(|top| top.first()).copied().unwrap_or([0; 32]);
        finish(bytes.len(), &root)
    }

    /// Brings the levels to `bytes`, rehashing the leaves `changed` (ascending; others are as
    /// the last call saw them, or new) and the nodes above them. `false` if out of memory.
    fn update(&mut self, bytes: &[u8], changed: impl Iterator<Item = usize>) -> bool {
        let mut len = bytes.len().div_ceil(CHUNK);
        // A change of length changes the pieces at the old and the new end (one may have
        // been partial), whatever `changed` says.
        let ends = if bytes.len() == self.len {
            None
        } else {
            Some([self.len, bytes.len()].map(|end| end.saturating_sub(1) / CHUNK))
        };
        self.len = bytes.len();
        let mut dirty: Vec<usize> = Vec::new();
        for index in changed.chain(ends.into_iter().flatten()).filter(|&i| i < len) {
            if dirty.try_reserve(1).is_err() {
                return false;
            }
            dirty.push(index);
        }
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                if self.levels.try_reserve(1).is_err() {
                    return false;
                }
                self.levels.push(Vec::new());
            }
            let old = self.levels[level].len();
            if len > old {
                // Amortized: a file that grows a piece at a time does not copy its tree each
                // time.
                if self.levels[level].try_reserve(len - old).is_err()
                    || dirty.try_reserve(len - old + 1).is_err()
                {
                    return false;
                }
                dirty.extend(old..len);
            } else if dirty.try_reserve(1).is_err() {
                return false;
            }
            // The last node's pairing changed with the length of the level below.
            if len != old && len > 0 {
                dirty.push(len - 1);
            }
            dirty.sort_unstable();
            dirty.dedup();
            self.levels[level].resize(len, [0; 32]);
            for &i in &dirty {
                let value = if level == 0 {
                    let start = i * CHUNK;
                    leaf(&bytes[start..(start + CHUNK).min(bytes.len())])
                } else {
                    let below = &self.levels[level - 1];
                    match below.get(2 * i + 1) {
                        Some(right) => node(&below[2 * i], right),
                        None => below[2 * i],
                    }
                };
                self.levels[level][i] = value;
            }
            if len <= 1 {
                self.levels.truncate(level + 1);
                return true;
            }
            for d in &mut dirty {
                *d /= 2;
            }
            dirty.dedup();
            len = len.div_ceil(2);
            level += 1;
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // small test sizes and values
mod tests {
    use super::*;
    use alloc::vec;

    /// RFC 6962 §2.1 as written: k is the largest power of two smaller than n.
    fn rfc6962(leaves: &[Node]) -> Node {
        match leaves.len() {
            0 => [0; 32],
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node(&rfc6962(&leaves[..k]), &rfc6962(&leaves[k..]))
            }
        }
    }

    fn leaves(bytes: &[u8]) -> Vec<Node> {
        bytes.chunks(CHUNK).map(leaf).collect()
    }

    #[test]
    fn the_reference_is_rfc_6962_over_the_pieces() {
        for pieces in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 33] {
            let bytes: Vec<u8> = (0..pieces * CHUNK + pieces).map(|i| (i % 251) as u8).collect();
            let root = rfc6962(&leaves(&bytes));
            assert_eq!(digest_of(&bytes), finish(bytes.len(), &root), "{pieces} pieces");
        }
    }

    #[test]
    fn the_length_is_bound() {
        assert_ne!(digest_of(&[]), digest_of(&[0]));
        assert_ne!(digest_of(&[0; CHUNK]), digest_of(&[0; CHUNK + 1]));
    }

    /// A small deterministic generator (no dependency for a test).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, below: usize) -> usize {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((self.0 >> 33) as usize) % below.max(1)
        }
    }

    #[test]
    fn incremental_digests_equal_the_reference_through_writes_growth_and_cuts() {
        for seed in 0..40 {
            let mut rng = Lcg(seed);
            let mut bytes = vec![0u8; rng.next(12 * CHUNK)];
            let mut tree = Tree::default();
            assert_eq!(tree.digest(&bytes, Stale::All), digest_of(&bytes));
            for _ in 0..30 {
                let mut touched: Vec<u32> = Vec::new();
                match rng.next(4) {
                    0 | 1 => {
                        let at = rng.next(bytes.len() + CHUNK);
                        let len = rng.next(3 * CHUNK) + 1;
                        if at + len > bytes.len() {
                            bytes.resize(at + len, 0);
                        }
                        let value = rng.next(256) as u8;
                        bytes[at..at + len].fill(value);
                        touched.extend((at / CHUNK) as u32..=((at + len - 1) / CHUNK) as u32);
                    }
                    2 => {
                        let new = rng.next(bytes.len() + 1);
                        bytes.truncate(new);
                        if new > 0 {
                            touched.push(((new - 1) / CHUNK) as u32);
                        }
                    }
                    _ => {
                        let old = bytes.len();
                        bytes.resize(old + rng.next(5 * CHUNK), 0);
                        touched.extend((old / CHUNK) as u32..bytes.len().div_ceil(CHUNK) as u32);
                    }
                }
                let limit = bytes.len().div_ceil(CHUNK) as u32;
                touched.retain(|&c| c < limit);
                touched.sort_unstable();
                touched.dedup();
                let got = tree.digest(&bytes, Stale::Chunks(touched));
                assert_eq!(got, digest_of(&bytes), "seed {seed}, {} bytes", bytes.len());
            }
        }
    }

    #[test]
    fn an_unchanged_file_keeps_its_digest_and_a_changed_piece_changes_it() {
        let mut bytes = vec![7u8; 5 * CHUNK];
        let mut tree = Tree::default();
        let first = tree.digest(&bytes, Stale::All);
        assert_eq!(tree.digest(&bytes, Stale::Chunks(Vec::new())), first);
        bytes[3 * CHUNK + 10] = 8;
        let second = tree.digest(&bytes, Stale::Chunks(vec![3]));
        assert_ne!(second, first);
        assert_eq!(second, digest_of(&bytes));
    }
}
