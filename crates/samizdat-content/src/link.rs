//! Share links: `sz1` followed by base32 of
//! `version || root || key || blob_len || hints || checksum`, where each hint is
//! `node_id || address`.
//!
//! A link pins everything a fetcher must not take from a peer: the content root (what the
//! bytes hash to), the blob length (so a peer cannot shorten or lengthen the file), and the
//! identity of every hinted peer (so a node with another identity at a hinted address, such as
//! an on-path censor terminating sessions, is refused with an identity-mismatch error).

use crate::{ContentKey, ContentRoot, Locator};
use samizdat_identity::NodeId;
use samizdat_wire::{MAX_PEER_ADDR_LEN, PeerAddr, Reader, Writer};
use std::fmt;

/// Every share link starts with this.
pub const LINK_PREFIX: &str = "sz1";
/// The link format this code writes: v2 pins the blob length and each hint's identity.
const VERSION: u8 = 2;
const CHECKSUM_LEN: usize = 4;
/// Most peer hints a link carries.
pub const MAX_HINTS: usize = 16;
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
    /// The link is from an older samizdat that did not pin peers' identities.
    #[error(
        "link format {0} is no longer accepted (it does not pin who serves the file); ask the sender for a new link"
    )]
    Obsolete(u8),
    /// The link is from a newer version of samizdat.
    #[error("link version {0} is not supported; upgrade samizdat")]
    Version(u8),
    /// The link's contents are structurally invalid.
    #[error("link is malformed")]
    Malformed,
}

/// A peer named by a link: where to dial it and which identity it must prove.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerHint {
    /// The identity the peer must authenticate as; a session with any other is refused.
    pub node: NodeId,
    /// Where to dial it.
    pub addr: PeerAddr,
}

impl fmt::Debug for PeerHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerHint({:?}, {:?})", self.node, self.addr)
    }
}

/// A capability to fetch and decrypt one file: whoever holds it can read the file.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareLink {
    /// BLAKE3 root of the encrypted blob.
    pub root: ContentRoot,
    /// The decryption key.
    pub key: ContentKey,
    /// Length of the encrypted blob in bytes (bound to the root by the link, not by a peer).
    pub blob_len: u64,
    /// Peers believed to hold the blob, each pinned to its identity (at most [`MAX_HINTS`]
    /// are encoded).
    pub peers: Vec<PeerHint>,
}

/// How long one provider key is used ([`ShareLink::provider_key`]): one day.
pub const PROVIDER_PERIOD_SECS: u64 = 86_400;

impl ShareLink {
    /// The locator peers are asked for: derived from the key, so only link holders know it.
    pub fn locator(&self) -> Locator {
        self.key.locator(&self.root)
    }

    /// The DHT key under which the blob's providers are announced during `period` (Unix
    /// seconds divided by [`PROVIDER_PERIOD_SECS`]). It derives from the link's secret key,
    /// so DHT nodes storing or answering for it cannot tell which file it stands for, a censor
    /// cannot compute it for a file it knows without the link, and keys of different periods
    /// cannot be linked to each other.
    pub fn provider_key(&self, period: u64) -> [u8; 32] {
        provider_key(&self.provider_base(), period)
    }

    /// What a node that keeps a copy needs to announce itself in every later period
    /// ([`provider_key`]) without keeping the link: it neither decrypts the file nor
    /// locates it on the wire.
    pub fn provider_base(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("samizdat 2026 provider base v1");
        h.update(self.key.as_bytes());
        h.update(&self.root.0);
        *h.finalize().as_bytes()
    }
}

/// The provider key of `period` for a [`ShareLink::provider_base`].
pub fn provider_key(base: &[u8; 32], period: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("samizdat 2026 provider key v2");
    h.update(base);
    h.update(&period.to_be_bytes());
    *h.finalize().as_bytes()
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
        w.u64(self.blob_len);
        let hints = &self.peers[..self.peers.len().min(MAX_HINTS)];
        w.u8(hints.len() as u8);
        for p in hints {
            w.bytes(&p.node.0);
            write_addr(&mut w, &p.addr);
        }
        f.write_str(&armor(LINK_PREFIX, raw))
    }
}

/// Writes a peer address as a length byte and its text.
pub(crate) fn write_addr(w: &mut Writer<'_>, addr: &PeerAddr) {
    w.u8(addr.as_str().len() as u8);
    w.bytes(addr.as_str().as_bytes());
}

/// Reads what [`write_addr`] wrote; `None` if it is not a valid address.
pub(crate) fn read_addr(r: &mut Reader<'_>) -> Option<PeerAddr> {
    let len = usize::from(r.u8("address length").ok()?);
    if len > MAX_PEER_ADDR_LEN {
        return None;
    }
    let text = std::str::from_utf8(r.bytes(len, "address").ok()?).ok()?;
    PeerAddr::new(text).ok()
}

/// `prefix` then the lowercase base32 of `raw` and its 4-byte BLAKE3 checksum: the text form
/// of links and invite lines.
pub(crate) fn armor(prefix: &str, mut raw: Vec<u8>) -> String {
    let sum = blake3::hash(&raw);
    raw.extend_from_slice(&sum.as_bytes()[..CHECKSUM_LEN]);
    format!("{prefix}{}", ENCODING.encode(&raw).to_lowercase())
}

/// Why [`dearmor`] refused a text.
pub(crate) enum ArmorError {
    Prefix,
    Encoding,
    Checksum,
}

/// The bytes inside a text made by [`armor`] with `prefix`.
pub(crate) fn dearmor(prefix: &str, s: &str) -> Result<Vec<u8>, ArmorError> {
    // Any case: a QR code carries the text in capitals (its compact alphanumeric mode).
    let s = s.trim();
    let body = match s.get(..prefix.len()) {
        Some(p) if p.eq_ignore_ascii_case(prefix) => &s[prefix.len()..],
        _ => return Err(ArmorError::Prefix),
    };
    let mut raw =
        ENCODING.decode(body.to_uppercase().as_bytes()).map_err(|_| ArmorError::Encoding)?;
    let at = raw.len().checked_sub(CHECKSUM_LEN).ok_or(ArmorError::Checksum)?;
    if blake3::hash(&raw[..at]).as_bytes()[..CHECKSUM_LEN] != raw[at..] {
        return Err(ArmorError::Checksum);
    }
    raw.truncate(at);
    Ok(raw)
}

impl std::str::FromStr for ShareLink {
    type Err = LinkError;

    fn from_str(s: &str) -> Result<Self, LinkError> {
        let payload = dearmor(LINK_PREFIX, s).map_err(|e| match e {
            ArmorError::Prefix => LinkError::Prefix,
            ArmorError::Encoding => LinkError::Encoding,
            ArmorError::Checksum => LinkError::Checksum,
        })?;
        let mut r = Reader::new(&payload);
        let bad = |_| LinkError::Malformed;
        let version = r.u8("version").map_err(bad)?;
        if version < VERSION {
            return Err(LinkError::Obsolete(version));
        }
        if version != VERSION {
            return Err(LinkError::Version(version));
        }
        let root = ContentRoot(r.array("root").map_err(bad)?);
        let key = ContentKey::from_bytes(r.array("key").map_err(bad)?);
        let blob_len = r.u64("blob length").map_err(bad)?;
        if blob_len < crate::HEADER_LEN as u64 {
            return Err(LinkError::Malformed);
        }
        let n = usize::from(r.u8("hint count").map_err(bad)?);
        if n > MAX_HINTS {
            return Err(LinkError::Malformed);
        }
        let mut peers = Vec::with_capacity(n);
        for _ in 0..n {
            let node = NodeId(r.array("hint node id").map_err(bad)?);
            let addr = read_addr(&mut r).ok_or(LinkError::Malformed)?;
            peers.push(PeerHint { node, addr });
        }
        r.finish().map_err(bad)?;
        Ok(ShareLink { root, key, blob_len, peers })
    }
}
