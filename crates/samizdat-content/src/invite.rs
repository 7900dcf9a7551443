//! Invite lines: `szi1` followed by base32 of `version || node_id || addresses || checksum`.
//!
//! An invite is how people hand each other a way into the network when the usual ways in are
//! blocked: one line (or its QR code) that names a node's identity and where to dial it. Like a
//! share link's hints, it pins the identity: a node at one of the addresses that cannot prove
//! it holds that identity is refused (an on-path censor cannot stand in for it). The line holds
//! no secret of the inviting node's user beyond the fact that the node exists there; later
//! versions add a transport secret (so the node answers only diallers who hold the line), and
//! the version byte lets them.

use crate::PeerHint;
use crate::link::{ArmorError, armor, dearmor, read_addr, write_addr};
use samizdat_identity::NodeId;
use samizdat_wire::{PeerAddr, Reader, Writer};
use std::fmt;

/// Every invite line starts with this.
pub const INVITE_PREFIX: &str = "szi1";
const VERSION: u8 = 1;
/// Most addresses one invite line carries.
pub const MAX_INVITE_ADDRS: usize = 8;

/// Why an invite line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// The text does not start with `szi1`.
    #[error("not a samizdat invite line (it should start with \"{INVITE_PREFIX}\")")]
    Prefix,
    /// The text contains characters that cannot appear in an invite line.
    #[error("invite line contains invalid characters (was it cut or mangled?)")]
    Encoding,
    /// The checksum does not match: a character was mistyped, lost or changed.
    #[error("invite line checksum mismatch: it was mistyped or damaged")]
    Checksum,
    /// The line is from a newer version of samizdat.
    #[error("invite format {0} is not supported; upgrade samizdat")]
    Version(u8),
    /// The line's contents are structurally invalid (or it names no address).
    #[error("invite line is malformed")]
    Malformed,
}

/// A node's identity and the addresses it can be dialled at.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The identity the node must authenticate as.
    pub node: NodeId,
    /// Where to dial it (at least one; at most [`MAX_INVITE_ADDRS`] are encoded).
    pub addrs: Vec<PeerAddr>,
}

impl Invite {
    /// The invite's addresses as pinned peer hints.
    pub fn hints(&self) -> Vec<PeerHint> {
        self.addrs.iter().map(|addr| PeerHint { node: self.node, addr: addr.clone() }).collect()
    }
}

impl fmt::Debug for Invite {
    // Addresses are not logged at default levels; keep them out of debug output too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invite({:?}, {} addresses)", self.node, self.addrs.len())
    }
}

impl fmt::Display for Invite {
    /// The full invite line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::new();
        let mut w = Writer::new(&mut raw);
        w.u8(VERSION);
        w.bytes(&self.node.0);
        let addrs = &self.addrs[..self.addrs.len().min(MAX_INVITE_ADDRS)];
        w.u8(addrs.len() as u8);
        for a in addrs {
            write_addr(&mut w, a);
        }
        f.write_str(&armor(INVITE_PREFIX, raw))
    }
}

impl std::str::FromStr for Invite {
    type Err = InviteError;

    fn from_str(s: &str) -> Result<Self, InviteError> {
        let payload = dearmor(INVITE_PREFIX, s).map_err(|e| match e {
            ArmorError::Prefix => InviteError::Prefix,
            ArmorError::Encoding => InviteError::Encoding,
            ArmorError::Checksum => InviteError::Checksum,
        })?;
        let mut r = Reader::new(&payload);
        let bad = |_| InviteError::Malformed;
        let version = r.u8("version").map_err(bad)?;
        if version != VERSION {
            return Err(InviteError::Version(version));
        }
        let node = NodeId(r.array("node id").map_err(bad)?);
        let n = usize::from(r.u8("address count").map_err(bad)?);
        if n == 0 || n > MAX_INVITE_ADDRS {
            return Err(InviteError::Malformed);
        }
        let addrs = (0..n)
            .map(|_| read_addr(&mut r).ok_or(InviteError::Malformed))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish().map_err(bad)?;
        Ok(Invite { node, addrs })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn invite() -> Invite {
        Invite {
            node: NodeId([5; 32]),
            addrs: vec![
                PeerAddr::new("tcp/192.0.2.7:7070").unwrap(),
                PeerAddr::new("tcp/[2001:db8::1]:443").unwrap(),
            ],
        }
    }

    #[test]
    fn an_invite_line_round_trips_and_names_pinned_hints() {
        let inv = invite();
        let line = inv.to_string();
        assert!(line.starts_with(INVITE_PREFIX));
        assert!(line.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(line.parse::<Invite>().unwrap(), inv);
        assert_eq!(format!("  {line}\n").parse::<Invite>().unwrap(), inv, "whitespace is trimmed");
        assert_eq!(line.to_uppercase().parse::<Invite>().unwrap(), inv, "as a QR code carries it");
        let hints = inv.hints();
        assert_eq!(hints.len(), 2);
        assert!(hints.iter().all(|h| h.node == inv.node));
        assert!(!format!("{inv:?}").contains("192.0.2.7"), "no address in debug output");
    }

    #[test]
    fn damaged_or_foreign_lines_are_refused_with_a_reason() {
        let line = invite().to_string();
        let mut typo = line.clone().into_bytes();
        let i = typo.len() / 2;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(typo.parse::<Invite>(), Err(InviteError::Checksum));
        let cut = line[..line.len() - 8].parse::<Invite>();
        assert!(matches!(cut, Err(InviteError::Checksum | InviteError::Encoding)), "{cut:?}");
        assert_eq!("sz1aaaa".parse::<Invite>(), Err(InviteError::Prefix));
        assert_eq!("szi1!!".parse::<Invite>(), Err(InviteError::Encoding));
        assert_eq!("szi1".parse::<Invite>(), Err(InviteError::Checksum));
        let none = Invite { node: NodeId([1; 32]), addrs: vec![] }.to_string();
        assert_eq!(none.parse::<Invite>(), Err(InviteError::Malformed));
        // A newer version is named as such.
        let mut raw = vec![9u8];
        raw.extend([0u8; 40]);
        assert_eq!(armor(INVITE_PREFIX, raw).parse::<Invite>(), Err(InviteError::Version(9)));
        // Trailing bytes and a bad address are malformed.
        let mut raw = vec![VERSION];
        raw.extend([1u8; 32]);
        raw.extend([1, 3]);
        raw.extend(b"x:1");
        assert_eq!(armor(INVITE_PREFIX, raw).parse::<Invite>(), Err(InviteError::Malformed));
        let mut raw = vec![VERSION];
        raw.extend([1u8; 32]);
        raw.push(1);
        write_addr(&mut Writer::new(&mut raw), &PeerAddr::new("tcp/192.0.2.1:1").unwrap());
        raw.push(0);
        assert_eq!(armor(INVITE_PREFIX, raw).parse::<Invite>(), Err(InviteError::Malformed));
        // More addresses than the format carries are cut at the limit when written.
        let many = Invite { node: NodeId([2; 32]), addrs: vec![invite().addrs[0].clone(); 20] };
        assert_eq!(many.to_string().parse::<Invite>().unwrap().addrs.len(), MAX_INVITE_ADDRS);
    }

    proptest! {
        #[test]
        fn any_text_parses_or_fails_without_panicking(s in ".{0,200}") {
            let _ = s.parse::<Invite>();
            let _ = format!("szi1{s}").parse::<Invite>();
        }
    }
}
