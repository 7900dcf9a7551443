//! Contacts: a node's public key, the proof of work that admits it, and where to reach it.

use crate::DhtError;
use samizdat_identity::{Identity, NodeId, pow};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The longest address string a contact may carry.
pub const MAX_ADDRESS_LEN: usize = 255;

/// A DHT contact. Its [`NodeId`] is always derived from its public key (never taken from the
/// wire), so an ID and a key cannot disagree; the proof of work is checked separately against
/// the configured difficulty ([`Contact::verify_pow`]).
///
/// The address is an opaque transport string such as `"tcp/1.2.3.4:5"`; the DHT reads it only
/// to group contacts by network prefix ([`NetGroups`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Contact {
    id: NodeId,
    public_key: [u8; 32],
    pow_nonce: u64,
    address: String,
}

impl Contact {
    /// A contact from its parts. Fails if the address is empty or longer than
    /// [`MAX_ADDRESS_LEN`]. Does not check the proof of work.
    pub fn new(
        public_key: [u8; 32],
        pow_nonce: u64,
        address: impl Into<String>,
    ) -> Result<Self, DhtError> {
        let address = address.into();
        if address.is_empty() {
            return Err(DhtError::BadAddress);
        }
        if address.len() > MAX_ADDRESS_LEN {
            return Err(DhtError::TooLong {
                what: "address",
                len: address.len(),
                max: MAX_ADDRESS_LEN,
            });
        }
        Ok(Contact { id: NodeId::from_public_key(&public_key), public_key, pow_nonce, address })
    }

    /// This node's own contact: solves the proof of work for `identity` at `difficulty`
    /// (about `2^difficulty` hashes).
    pub fn for_identity(
        identity: &Identity,
        difficulty: u8,
        address: impl Into<String>,
    ) -> Result<Self, DhtError> {
        let public_key = identity.public_key();
        Contact::new(public_key, pow::solve(&public_key, difficulty, 0), address)
    }

    /// The node ID (derived from the public key).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The proof-of-work nonce.
    pub fn pow_nonce(&self) -> u64 {
        self.pow_nonce
    }

    /// The transport address string.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Checks the proof of work at `difficulty` (one hash).
    pub fn verify_pow(&self, difficulty: u8) -> Result<(), DhtError> {
        if pow::verify(&self.public_key, self.pow_nonce, difficulty) {
            Ok(())
        } else {
            Err(DhtError::BadProofOfWork(difficulty))
        }
    }

    /// The network groups of the address, for admission limits.
    pub fn net_groups(&self) -> NetGroups {
        NetGroups::of(&self.address)
    }
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Contact({:?} @ {})", self.id, self.address)
    }
}

/// A network group: the unit admission limits count in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum NetGroup {
    /// An IPv4 /24.
    V4Slash24([u8; 3]),
    /// An IPv4 /16.
    V4Slash16([u8; 2]),
    /// An IPv6 /48.
    V6Slash48([u8; 6]),
    /// An IPv6 /32.
    V6Slash32([u8; 4]),
    /// Addresses that are not `transport/ip:port`: all of one transport share one group (a
    /// hash of the transport name), so names an attacker can mint freely (DNS names, future
    /// onion addresses) cannot bypass the limits.
    Other([u8; 8]),
}

/// The narrow group (limited per bucket) and the wide group (limited per table) of an address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NetGroups {
    /// /24 for IPv4, /48 for IPv6.
    pub narrow: NetGroup,
    /// /16 for IPv4, /32 for IPv6.
    pub wide: NetGroup,
}

impl NetGroups {
    /// The groups of an address string `transport/ip:port` (IPv4-mapped IPv6 counts as IPv4).
    pub fn of(address: &str) -> NetGroups {
        let (transport, rest) = address.split_once('/').unwrap_or(("", address));
        // Transport parameters (`?name=…`) are not part of where the host is.
        let rest = rest.split_once('?').map_or(rest, |(endpoint, _)| endpoint);
        let ip = rest.parse::<SocketAddr>().map(|s| s.ip()).or_else(|_| rest.parse::<IpAddr>());
        let ip = match ip {
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            Ok(ip) => ip,
            Err(_) => {
                let h = blake3::derive_key("samizdat 2026 dht net group v1", transport.as_bytes());
                let mut g = [0u8; 8];
                g.copy_from_slice(&h[..8]);
                return NetGroups { narrow: NetGroup::Other(g), wide: NetGroup::Other(g) };
            }
        };
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                NetGroups {
                    narrow: NetGroup::V4Slash24([o[0], o[1], o[2]]),
                    wide: NetGroup::V4Slash16([o[0], o[1]]),
                }
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                NetGroups {
                    narrow: NetGroup::V6Slash48([o[0], o[1], o[2], o[3], o[4], o[5]]),
                    wide: NetGroup::V6Slash32([o[0], o[1], o[2], o[3]]),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn contact_id_is_derived_and_pow_checked() {
        let id = Identity::from_secret_bytes(&[3; 32]).unwrap();
        let c = Contact::for_identity(&id, 6, "tcp/1.2.3.4:5").unwrap();
        assert_eq!(c.id(), id.node_id());
        assert!(c.verify_pow(6).is_ok());
        let bad = Contact::new(id.public_key(), c.pow_nonce() ^ 1, "tcp/1.2.3.4:5").unwrap();
        // A neighbouring nonce passes difficulty 6 only by chance; search one that fails.
        let failing = (0..64u64)
            .map(|n| Contact::new(id.public_key(), c.pow_nonce() ^ (n + 1), "x").unwrap())
            .find(|c| c.verify_pow(6).is_err())
            .unwrap();
        assert_eq!(failing.verify_pow(6), Err(DhtError::BadProofOfWork(6)));
        assert_eq!(bad.id(), c.id());
        assert!(format!("{c:?}").contains("1.2.3.4"));
    }

    #[test]
    fn address_limits() {
        assert_eq!(Contact::new([0; 32], 0, ""), Err(DhtError::BadAddress));
        let long = "a".repeat(MAX_ADDRESS_LEN + 1);
        assert!(matches!(Contact::new([0; 32], 0, long), Err(DhtError::TooLong { .. })));
        assert!(Contact::new([0; 32], 0, "a".repeat(MAX_ADDRESS_LEN)).is_ok());
    }

    #[test]
    fn net_groups() {
        let g = NetGroups::of("tcp/10.1.2.3:80");
        assert_eq!(g.narrow, NetGroup::V4Slash24([10, 1, 2]));
        assert_eq!(g.wide, NetGroup::V4Slash16([10, 1]));
        assert_eq!(NetGroups::of("quic/[::ffff:10.1.2.9]:1"), g);
        let v6 = NetGroups::of("tcp/[2001:db8:1:2::5]:443");
        assert_eq!(v6.narrow, NetGroup::V6Slash48([0x20, 0x01, 0x0d, 0xb8, 0, 1]));
        assert_eq!(v6.wide, NetGroup::V6Slash32([0x20, 0x01, 0x0d, 0xb8]));
        let a = NetGroups::of("onion/abcdef");
        assert_eq!(a, NetGroups::of("onion/zzzz"));
        assert_ne!(a, NetGroups::of("dns/example.org:1"));
        assert!(matches!(a.narrow, NetGroup::Other(_)));
        assert_eq!(NetGroups::of("1.2.3.4:5").narrow, NetGroup::V4Slash24([1, 2, 3]));
    }
}
