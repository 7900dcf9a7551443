//! Share links: `sz1` followed by base32 of `version || root || key || hints || checksum`.

use crate::{ContentKey, ContentRoot};
use samizdat_wire::{MAX_PEER_ADDR_LEN, PeerAddr, Reader, Writer};
use std::fmt;

/// Every share link starts with this.
pub const LINK_PREFIX: &str = "sz1";
const VERSION: u8 = 1;
const CHECKSUM_LEN: usize = 4;
const MAX_HINTS: usize = 16;
const ENCODING: data_encoding::Encoding = data_encoding::BASE32_NOPAD;

/// Why a link could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The text does not start with `sz1`.
    #[error("not a samizdat link (it should start with \"{LINK_PREFIX}\")")]
    Prefix,
    /// The text contains characters that cannot appear in a link.
    #[error("link contains invalid characters (was it cut or mangled?)")]
    Encoding,
    /// The checksum does not match: a character was mistyped, lost or changed.
    #[error("link checksum mismatch: it was mistyped or damaged")]
    Checksum,
    /// The link is from a newer version of samizdat.
    #[error("link version {0} is not supported; upgrade samizdat")]
    Version(u8),
    /// The link's contents are structurally invalid.
    #[error("link is malformed")]
    Malformed,
}

/// A capability to fetch and decrypt one file: whoever holds it can read the file.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareLink {
    /// BLAKE3 root of the encrypted blob.
    pub root: ContentRoot,
    /// The decryption key.
    pub key: ContentKey,
    /// Peers believed to hold the blob (optional; at most 16 are encoded).
    pub peers: Vec<PeerAddr>,
}

impl fmt::Debug for ShareLink {
    // A link is a secret: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShareLink({:?}, {} hints)", self.root, self.peers.len())
    }
}

impl fmt::Display for ShareLink {
    /// The full link text. This is secret material: do not log it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::new();
        let mut w = Writer::new(&mut raw);
        w.u8(VERSION);
        w.bytes(&self.root.0);
        w.bytes(self.key.as_bytes());
        let hints = &self.peers[..self.peers.len().min(MAX_HINTS)];
        w.u8(hints.len() as u8);
        for p in hints {
            w.u8(p.as_str().len() as u8);
            w.bytes(p.as_str().as_bytes());
        }
        let sum = blake3::hash(&raw);
        raw.extend_from_slice(&sum.as_bytes()[..CHECKSUM_LEN]);
        write!(f, "{LINK_PREFIX}{}", ENCODING.encode(&raw).to_lowercase())
    }
}

impl std::str::FromStr for ShareLink {
    type Err = LinkError;

    fn from_str(s: &str) -> Result<Self, LinkError> {
        let s = s.trim();
        let body = s.strip_prefix(LINK_PREFIX).ok_or(LinkError::Prefix)?;
        let raw =
            ENCODING.decode(body.to_uppercase().as_bytes()).map_err(|_| LinkError::Encoding)?;
        let (payload, sum) = raw
            .split_at_checked(raw.len().saturating_sub(CHECKSUM_LEN))
            .ok_or(LinkError::Malformed)?;
        if sum.len() != CHECKSUM_LEN || &blake3::hash(payload).as_bytes()[..CHECKSUM_LEN] != sum {
            return Err(LinkError::Checksum);
        }
        let mut r = Reader::new(payload);
        let bad = |_| LinkError::Malformed;
        let version = r.u8("version").map_err(bad)?;
        if version != VERSION {
            return Err(LinkError::Version(version));
        }
        let root = ContentRoot(r.array("root").map_err(bad)?);
        let key = ContentKey::from_bytes(r.array("key").map_err(bad)?);
        let n = usize::from(r.u8("hint count").map_err(bad)?);
        if n > MAX_HINTS {
            return Err(LinkError::Malformed);
        }
        let mut peers = Vec::with_capacity(n);
        for _ in 0..n {
            let len = usize::from(r.u8("hint length").map_err(bad)?);
            if len > MAX_PEER_ADDR_LEN {
                return Err(LinkError::Malformed);
            }
            let text = std::str::from_utf8(r.bytes(len, "hint").map_err(bad)?)
                .map_err(|_| LinkError::Malformed)?;
            peers.push(PeerAddr::new(text).map_err(bad)?);
        }
        r.finish().map_err(bad)?;
        Ok(ShareLink { root, key, peers })
    }
}
