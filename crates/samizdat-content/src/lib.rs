//! Content: how a file becomes an encrypted, verifiable blob and a share link.
//!
//! * [`encode`] streams a file into a **blob**: `header || file`, where the 4 KiB header holds
//!   the encrypted [`Manifest`] (name, size, type), all encrypted with AES-256-CTR under a random
//!   [`ContentKey`] that exists only in the [`ShareLink`]. Nothing about a file is ever stored
//!   or sent in plaintext; peers that store or relay a blob never need the key.
//! * The blob is content-addressed by its standard **BLAKE3 hash** (the [`ContentRoot`]).
//!   Verified streaming works on chunk groups of [`GROUP_SIZE`] bytes: the [`Outboard`] holds
//!   each group's BLAKE3 chaining value; [`Outboard::check_root`] recomputes the root from them,
//!   and [`Outboard::verify_group`] checks a received group before a single byte is written.
//! * A [`ShareLink`] is a self-contained capability: root, key, blob length and optional peer
//!   hints pinned to their identities, with a checksum so a mistyped link gives a clear error.
//!   Peers are asked for a [`Locator`] derived from the key ([`ContentKey::locator`]), never
//!   for the root.
//!
//! ```
//! use samizdat_content::{encode, ContentKey, Manifest, ShareLink};
//! let file = b"hello, censored world".to_vec();
//! let key = ContentKey::generate(&mut rand_core::OsRng);
//! let manifest = Manifest { name: "note.txt".into(), size: file.len() as u64, mime: "text/plain".into() };
//! let mut blob = Vec::new();
//! let out = encode(&key, &manifest, &file[..], &mut blob).unwrap();
//! assert!(!blob.windows(5).any(|w| w == b"hello"));
//! let link = ShareLink { root: out.root, key, blob_len: blob.len() as u64, peers: vec![] };
//! let parsed: ShareLink = link.to_string().parse().unwrap();
//! assert_eq!(parsed.root, out.root);
//! ```
#![forbid(unsafe_code)]

mod cipher;
mod invite;
mod link;
mod manifest;
mod outboard;

pub use cipher::ContentKey;
pub use invite::{INVITE_PREFIX, Invite, InviteError, MAX_INVITE_ADDRS};
pub use link::{
    LINK_PREFIX, LinkError, MAX_HINTS, PROVIDER_PERIOD_SECS, PeerHint, ShareLink, provider_key,
};
pub use manifest::{HEADER_LEN, Manifest};
pub use outboard::{Outboard, group_count, group_range};
pub use samizdat_wire::{ContentRoot, GROUP_SIZE, Locator};

use std::io::{Read, Write};

/// Errors from content operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// Reading the source or writing the blob failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A chunk group's hash does not match its leaf: the data is corrupt or forged.
    #[error("chunk group {index} failed verification")]
    GroupMismatch {
        /// The group index.
        index: u32,
    },
    /// The leaf hashes do not hash to the content root.
    #[error("outboard does not match the content root")]
    OutboardMismatch,
    /// The outboard has the wrong number of leaves for its blob length.
    #[error("outboard has {got} leaves, expected {expected}")]
    OutboardShape {
        /// Leaves found.
        got: usize,
        /// Leaves the blob length implies.
        expected: usize,
    },
    /// The decrypted header is not a valid manifest (wrong key or corrupt data).
    #[error("manifest is malformed")]
    BadManifest,
    /// The manifest's file name is too long to fit in the header.
    #[error("file name or type too long for the manifest")]
    ManifestTooLarge,
    /// The source produced a different number of bytes than the manifest announced.
    #[error("file changed while it was being read: expected {expected} bytes, got {got}")]
    SizeChanged {
        /// The announced size.
        expected: u64,
        /// Bytes actually read.
        got: u64,
    },
    /// The blob would have more groups than the protocol can address.
    #[error("file too large")]
    TooLarge,
}

/// What [`encode`] produced.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// BLAKE3 hash of the encrypted blob.
    pub root: ContentRoot,
    /// The per-group verification data.
    pub outboard: Outboard,
}

/// Streams `manifest.size` bytes from `source` into an encrypted blob written to `sink`,
/// computing its root and outboard on the way. Memory use is one chunk group.
pub fn encode<R: Read, W: Write>(
    key: &ContentKey,
    manifest: &Manifest,
    mut source: R,
    mut sink: W,
) -> Result<Encoded, ContentError> {
    let blob_len = HEADER_LEN as u64 + manifest.size;
    if group_count(blob_len) > u64::from(u32::MAX) {
        return Err(ContentError::TooLarge);
    }
    let mut leaves = Vec::with_capacity(group_count(blob_len) as usize);
    let mut group = vec![0u8; GROUP_SIZE];
    let header = manifest.to_header()?;
    group[..HEADER_LEN].copy_from_slice(&header);
    let mut filled = HEADER_LEN;
    let mut offset: u64 = 0; // blob offset of `group`
    let mut read_total: u64 = 0;
    let mut whole_hasher = blake3::Hasher::new();
    loop {
        // Fill the group from the source.
        while filled < GROUP_SIZE {
            let n = source.read(&mut group[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
            read_total += n as u64;
            if read_total > manifest.size {
                return Err(ContentError::SizeChanged { expected: manifest.size, got: read_total });
            }
        }
        if filled == 0 {
            break;
        }
        let index = (offset / GROUP_SIZE as u64) as u32;
        key.apply(index, &mut group[..filled]);
        whole_hasher.update(&group[..filled]);
        leaves.push(outboard::leaf_cv(index, &group[..filled]));
        sink.write_all(&group[..filled])?;
        offset += filled as u64;
        if filled < GROUP_SIZE {
            break;
        }
        filled = 0;
    }
    if read_total != manifest.size {
        return Err(ContentError::SizeChanged { expected: manifest.size, got: read_total });
    }
    sink.flush()?;
    let root = ContentRoot(*whole_hasher.finalize().as_bytes());
    let outboard = Outboard { blob_len, leaves };
    debug_assert!(outboard.check_root(&root).is_ok());
    Ok(Encoded { root, outboard })
}

#[cfg(test)]
mod tests;
