//! BLAKE3 verified streaming over chunk groups.
//!
//! The content root is the standard BLAKE3 hash of the blob. BLAKE3 is a Merkle tree over
//! 1 KiB chunks; a chunk group of [`GROUP_SIZE`] bytes (a power of two of chunks) is a complete
//! subtree whose chaining value is a *leaf* here. The outboard is the list of leaves; merging
//! them along BLAKE3's tree shape must give the root, so a forged leaf is caught, and each group
//! is then checked against its leaf on arrival.

use crate::{ContentError, ContentRoot, GROUP_SIZE};
use blake3::hazmat::{
    HasherExt, Mode, left_subtree_len, merge_subtrees_non_root, merge_subtrees_root,
};
use std::ops::Range;

/// The chaining value of group `index` holding `data`.
pub(crate) fn leaf_cv(index: u32, data: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(u64::from(index) * GROUP_SIZE as u64);
    h.update(data);
    h.finalize_non_root()
}

/// Number of chunk groups in a blob of `blob_len` bytes (at least one).
pub fn group_count(blob_len: u64) -> u64 {
    blob_len.div_ceil(GROUP_SIZE as u64).max(1)
}

/// The byte range of group `index` within a blob of `blob_len` bytes.
pub fn group_range(blob_len: u64, index: u32) -> Range<u64> {
    let start = u64::from(index) * GROUP_SIZE as u64;
    start.min(blob_len)..(start + GROUP_SIZE as u64).min(blob_len)
}

/// The verification data of one blob: its length and the chaining value of every group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outboard {
    /// Length of the encrypted blob.
    pub blob_len: u64,
    /// One BLAKE3 chaining value per chunk group.
    pub leaves: Vec<[u8; 32]>,
}

impl Outboard {
    /// Number of groups.
    pub fn groups(&self) -> u32 {
        self.leaves.len() as u32
    }

    /// Checks that the leaves hash to `root` (and that their number fits the blob length).
    pub fn check_root(&self, root: &ContentRoot) -> Result<(), ContentError> {
        let expected = group_count(self.blob_len) as usize;
        if self.leaves.len() != expected {
            return Err(ContentError::OutboardShape { got: self.leaves.len(), expected });
        }
        if self.leaves.len() == 1 {
            // A single group is the whole tree: its root is not derivable from a leaf CV, so the
            // group itself is checked against the root in `verify_group`.
            return Ok(());
        }
        let computed = self.root_of(0, self.blob_len);
        if computed.as_bytes() == &root.0 { Ok(()) } else { Err(ContentError::OutboardMismatch) }
    }

    fn root_of(&self, start: u64, len: u64) -> blake3::Hash {
        let left = left_subtree_len(len);
        merge_subtrees_root(
            &self.cv_of(start, left),
            &self.cv_of(start + left, len - left),
            Mode::Hash,
        )
    }

    fn cv_of(&self, start: u64, len: u64) -> [u8; 32] {
        if len <= GROUP_SIZE as u64 {
            return self.leaves[(start / GROUP_SIZE as u64) as usize];
        }
        let left = left_subtree_len(len);
        merge_subtrees_non_root(
            &self.cv_of(start, left),
            &self.cv_of(start + left, len - left),
            Mode::Hash,
        )
    }

    /// Verifies group `index` of a blob whose outboard already passed [`Outboard::check_root`].
    pub fn verify_group(
        &self,
        root: &ContentRoot,
        index: u32,
        data: &[u8],
    ) -> Result<(), ContentError> {
        let range = group_range(self.blob_len, index);
        let ok = match self.leaves.get(index as usize) {
            Some(_) if data.len() as u64 != range.end - range.start => false,
            Some(_) if self.leaves.len() == 1 => blake3::hash(data).as_bytes() == &root.0,
            Some(leaf) => &leaf_cv(index, data) == leaf,
            None => false,
        };
        if ok { Ok(()) } else { Err(ContentError::GroupMismatch { index }) }
    }

    /// Serialises the outboard (for local storage).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.leaves.len());
        out.extend_from_slice(&self.blob_len.to_be_bytes());
        for leaf in &self.leaves {
            out.extend_from_slice(leaf);
        }
        out
    }

    /// Parses [`Outboard::to_bytes`] output, checking its shape.
    pub fn from_bytes(bytes: &[u8]) -> Result<Outboard, ContentError> {
        let (len, rest) = bytes.split_at_checked(8).ok_or(ContentError::BadManifest)?;
        let mut blob_len = [0u8; 8];
        blob_len.copy_from_slice(len);
        let blob_len = u64::from_be_bytes(blob_len);
        let expected = group_count(blob_len) as usize;
        if rest.len() != expected * 32 {
            return Err(ContentError::OutboardShape { got: rest.len() / 32, expected });
        }
        let leaves = rest
            .chunks_exact(32)
            .map(|c| {
                let mut a = [0u8; 32];
                a.copy_from_slice(c);
                a
            })
            .collect();
        Ok(Outboard { blob_len, leaves })
    }
}
