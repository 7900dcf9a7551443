//! Self-certifying peer records: a node's key, addresses and a timestamp, signed by that key.
//!
//! Every discovery method carries [`PeerRecord`]s and nothing else, so a poisoned source (a
//! Mainline DHT slot overwritten by an attacker, a lying LAN responder, a hostile seed list)
//! can hide peers but cannot invent them: a record names the key that signed it, and the
//! [`NodeId`] a caller dials is derived from that key. A session with any other key is refused.
//!
//! # Encoding (version 1)
//!
//! ```text
//! version      u8   = 1
//! public key   [u8; 32]
//! timestamp    u64  big endian, Unix seconds
//! count        u8   1..=4
//! count times: len u8 1..=128, address bytes (printable ASCII, e.g. "tcp/1.2.3.4:7070")
//! signature    [u8; 64]  Ed25519 over RECORD_CONTEXT || all bytes above
//! ```
//!
//! Decoding is strict: exact lengths, no trailing bytes, no unknown version, so every record
//! has exactly one encoding and the signature covers all of it.
//!
//! ```
//! use samizdat_identity::PeerRecord;
//! use std::time::Duration;
//!
//! let id = samizdat_identity::Identity::generate(&mut rand_core::OsRng);
//! let record = PeerRecord::sign(&id, &["tcp/192.0.2.1:7070"], 1_700_000_000).unwrap();
//! let bytes = record.encode();
//! let back = PeerRecord::decode(&bytes).unwrap();
//! assert_eq!(back.verify(1_700_000_060, Duration::from_secs(3600)).unwrap(), id.node_id());
//! ```

use crate::{Identity, NodeId};
use std::time::Duration;

/// The domain-separation context prefixed to the signed bytes of a [`PeerRecord`].
pub const RECORD_CONTEXT: &[u8] = b"samizdat 2026 peer record v1\0";
/// The only encoding version this crate reads and writes.
pub const RECORD_VERSION: u8 = 1;
/// The most addresses one record carries.
pub const MAX_ADDRS: usize = 4;
/// The longest address, in bytes.
pub const MAX_ADDR_LEN: usize = 128;
/// How far in the future a record's timestamp may be (clock skew between honest nodes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// The largest encoding of a record (it fits a BEP 44 value, at most 1000 bytes).
pub const MAX_RECORD_LEN: usize = 1 + 32 + 8 + 1 + MAX_ADDRS * (1 + MAX_ADDR_LEN) + 64;

/// Why a peer record was refused (building, decoding or verifying it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The input ended before the field named.
    #[error("peer record truncated in {0}")]
    Truncated(&'static str),
    /// Bytes follow the signature.
    #[error("{0} trailing bytes after the peer record")]
    TrailingBytes(usize),
    /// The input is longer than any valid record.
    #[error("peer record of {0} bytes exceeds {MAX_RECORD_LEN}")]
    TooLong(usize),
    /// The version byte is not [`RECORD_VERSION`].
    #[error("unknown peer record version {0}")]
    UnknownVersion(u8),
    /// No address, or more than [`MAX_ADDRS`].
    #[error("peer record has {0} addresses (1..={MAX_ADDRS} allowed)")]
    AddressCount(usize),
    /// An address is empty, longer than [`MAX_ADDR_LEN`], or not printable ASCII.
    #[error("peer record address {index} is malformed")]
    BadAddress {
        /// The position of the address in the record.
        index: usize,
    },
    /// The signature does not verify under the record's key (or the key is invalid).
    #[error("peer record signature does not verify")]
    BadSignature,
    /// The timestamp lies further in the future than [`MAX_CLOCK_SKEW`].
    #[error("peer record timestamp {timestamp} is in the future (now {now})")]
    FromFuture {
        /// The record's timestamp.
        timestamp: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// The record is older than the verifier accepts.
    #[error("peer record timestamp {timestamp} is too old (now {now}, max age {max_age:?})")]
    Expired {
        /// The record's timestamp.
        timestamp: u64,
        /// The verifier's clock.
        now: u64,
        /// The oldest age accepted.
        max_age: Duration,
    },
}

/// A node's signed statement "my key is K, reach me at these addresses, as of time T".
///
/// A decoded record is *not yet trusted*: call [`PeerRecord::verify`] before using it.
/// Records handed over by discovery methods (`samizdat-discovery`) and by peer exchange have been
/// verified there.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerRecord {
    public_key: [u8; 32],
    addrs: Vec<String>,
    timestamp: u64,
    signature: [u8; 64],
}

impl std::fmt::Debug for PeerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerRecord")
            .field("node", &self.node_id())
            .field("addrs", &self.addrs)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

fn check_addrs<S: AsRef<str>>(addrs: &[S]) -> Result<(), RecordError> {
    if addrs.is_empty() || addrs.len() > MAX_ADDRS {
        return Err(RecordError::AddressCount(addrs.len()));
    }
    for (index, addr) in addrs.iter().enumerate() {
        let a = addr.as_ref().as_bytes();
        if a.is_empty() || a.len() > MAX_ADDR_LEN || !a.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return Err(RecordError::BadAddress { index });
        }
    }
    Ok(())
}

impl PeerRecord {
    /// Signs a record for `identity` with `addrs` (1 to [`MAX_ADDRS`] printable-ASCII strings of
    /// at most [`MAX_ADDR_LEN`] bytes) as of `timestamp` (Unix seconds).
    pub fn sign<S: AsRef<str>>(
        identity: &Identity,
        addrs: &[S],
        timestamp: u64,
    ) -> Result<Self, RecordError> {
        check_addrs(addrs)?;
        let mut record = PeerRecord {
            public_key: identity.public_key(),
            addrs: addrs.iter().map(|a| a.as_ref().to_owned()).collect(),
            timestamp,
            signature: [0; 64],
        };
        record.signature = identity.sign(&record.signed_bytes());
        Ok(record)
    }

    /// The signer's Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The signer's node ID (derived from [`Self::public_key`]).
    pub fn node_id(&self) -> NodeId {
        NodeId::from_public_key(&self.public_key)
    }

    /// The addresses the node says it is reachable at.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// When the node signed the record (Unix seconds).
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The Ed25519 signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_RECORD_LEN);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        // Lengths were checked when the record was built or decoded.
        out.push(self.addrs.len() as u8);
        for a in &self.addrs {
            out.push(a.len() as u8);
            out.extend_from_slice(a.as_bytes());
        }
        out
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut msg = RECORD_CONTEXT.to_vec();
        msg.extend_from_slice(&self.body());
        msg
    }

    /// Checks the signature and that `timestamp` lies within `[now - max_age, now + skew]`
    /// ([`MAX_CLOCK_SKEW`]); returns the signer's node ID.
    pub fn verify(&self, now: u64, max_age: Duration) -> Result<NodeId, RecordError> {
        let node = crate::verify(&self.public_key, &self.signed_bytes(), &self.signature)
            .map_err(|_| RecordError::BadSignature)?;
        if self.timestamp > now.saturating_add(MAX_CLOCK_SKEW.as_secs()) {
            return Err(RecordError::FromFuture { timestamp: self.timestamp, now });
        }
        if now.saturating_sub(self.timestamp) > max_age.as_secs() {
            return Err(RecordError::Expired { timestamp: self.timestamp, now, max_age });
        }
        Ok(node)
    }

    /// The canonical encoding (at most [`MAX_RECORD_LEN`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses an encoding strictly. Does not check the signature: see [`Self::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLong(bytes.len()));
        }
        let mut r = Reader(bytes);
        let version = r.take(1, "version")?[0];
        if version != RECORD_VERSION {
            return Err(RecordError::UnknownVersion(version));
        }
        let public_key: [u8; 32] = r.array("public key")?;
        let timestamp = u64::from_be_bytes(r.array("timestamp")?);
        let count = usize::from(r.take(1, "address count")?[0]);
        if count == 0 || count > MAX_ADDRS {
            return Err(RecordError::AddressCount(count));
        }
        let mut addrs = Vec::with_capacity(count);
        for index in 0..count {
            let len = usize::from(r.take(1, "address length")?[0]);
            let raw = r.take(len, "address")?;
            let addr = std::str::from_utf8(raw).map_err(|_| RecordError::BadAddress { index })?;
            addrs.push(addr.to_owned());
        }
        check_addrs(&addrs)?;
        let signature: [u8; 64] = r.array("signature")?;
        if !r.0.is_empty() {
            return Err(RecordError::TrailingBytes(r.0.len()));
        }
        Ok(PeerRecord { public_key, addrs, timestamp, signature })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], RecordError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_780_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn identity(seed: u8) -> Identity {
        Identity::from_secret_bytes(&[seed; 32]).expect("32 bytes")
    }

    fn record(seed: u8) -> PeerRecord {
        PeerRecord::sign(&identity(seed), &["tcp/192.0.2.1:7070", "tcp/[2001:db8::1]:7070"], NOW)
            .expect("valid")
    }

    #[test]
    fn sign_encode_decode_verify() {
        let r = record(1);
        let bytes = r.encode();
        assert!(bytes.len() <= MAX_RECORD_LEN);
        let back = PeerRecord::decode(&bytes).expect("decodes");
        assert_eq!(back, r);
        assert_eq!(back.verify(NOW, HOUR), Ok(identity(1).node_id()));
        assert_eq!(back.node_id(), identity(1).node_id());
        assert_eq!(back.addrs(), ["tcp/192.0.2.1:7070", "tcp/[2001:db8::1]:7070"]);
    }

    #[test]
    fn largest_record_fits_bep44() {
        let addr = "a".repeat(MAX_ADDR_LEN);
        let r = PeerRecord::sign(&identity(1), &[&addr, &addr, &addr, &addr], NOW).expect("ok");
        assert_eq!(r.encode().len(), MAX_RECORD_LEN);
        const { assert!(MAX_RECORD_LEN <= 1000) };
        assert!(PeerRecord::decode(&r.encode()).is_ok());
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let bytes = record(2).encode();
        for i in 0..bytes.len() * 8 {
            let mut t = bytes.clone();
            t[i / 8] ^= 1 << (i % 8);
            if let Ok(r) = PeerRecord::decode(&t) {
                assert!(r.verify(NOW, HOUR).is_err(), "bit {i} flipped still verifies");
            }
        }
    }

    #[test]
    fn wrong_key_is_refused() {
        let good = record(3);
        // The same body and signature under another node's key.
        let mut forged = good.clone();
        forged.public_key = identity(4).public_key();
        assert_eq!(forged.verify(NOW, HOUR), Err(RecordError::BadSignature));
        // A record signed by node 4 claiming node 3's key.
        let mut claimed = record(4);
        claimed.public_key = identity(3).public_key();
        assert_eq!(claimed.verify(NOW, HOUR), Err(RecordError::BadSignature));
        // An invalid curve point as key.
        let mut junk = good;
        junk.public_key = [0xff; 32];
        assert_eq!(junk.verify(NOW, HOUR), Err(RecordError::BadSignature));
    }

    #[test]
    fn changed_addresses_are_refused() {
        let mut r = record(5);
        r.addrs[0] = "tcp/198.51.100.9:7070".into();
        let back = PeerRecord::decode(&r.encode()).expect("well formed");
        assert_eq!(back.verify(NOW, HOUR), Err(RecordError::BadSignature));
    }

    #[test]
    fn expiry_and_future() {
        let r = record(6);
        assert!(r.verify(NOW + 3600, HOUR).is_ok());
        assert!(matches!(r.verify(NOW + 3601, HOUR), Err(RecordError::Expired { .. })));
        assert!(r.verify(NOW - MAX_CLOCK_SKEW.as_secs(), HOUR).is_ok());
        assert!(matches!(
            r.verify(NOW - MAX_CLOCK_SKEW.as_secs() - 1, HOUR),
            Err(RecordError::FromFuture { .. })
        ));
        // Extreme clocks do not overflow.
        assert!(r.verify(0, HOUR).is_err());
        assert!(r.verify(u64::MAX, Duration::MAX).is_ok());
    }

    #[test]
    fn bad_addresses_are_refused_when_signing() {
        let id = identity(7);
        let none: [&str; 0] = [];
        assert_eq!(PeerRecord::sign(&id, &none, NOW), Err(RecordError::AddressCount(0)));
        assert_eq!(PeerRecord::sign(&id, &["a"; 5], NOW), Err(RecordError::AddressCount(5)));
        let long = "a".repeat(MAX_ADDR_LEN + 1);
        for bad in ["", "tcp/1.2.3.4 7070", "tcp/\n", "адрес", long.as_str()] {
            assert_eq!(
                PeerRecord::sign(&id, &["ok", bad], NOW),
                Err(RecordError::BadAddress { index: 1 }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_encodings() {
        let bytes = record(8).encode();
        for n in 0..bytes.len() {
            assert!(
                matches!(PeerRecord::decode(&bytes[..n]), Err(RecordError::Truncated(_))),
                "prefix {n}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(PeerRecord::decode(&long), Err(RecordError::TrailingBytes(1)));
        assert_eq!(
            PeerRecord::decode(&vec![1; MAX_RECORD_LEN + 1]),
            Err(RecordError::TooLong(MAX_RECORD_LEN + 1))
        );
        let mut v = bytes.clone();
        v[0] = 2;
        assert_eq!(PeerRecord::decode(&v), Err(RecordError::UnknownVersion(2)));
        let mut c = bytes.clone();
        c[41] = 0;
        assert_eq!(PeerRecord::decode(&c), Err(RecordError::AddressCount(0)));
        c[41] = 5;
        assert_eq!(PeerRecord::decode(&c), Err(RecordError::AddressCount(5)));
        let mut z = bytes.clone();
        z[42] = 0; // first address length 0
        assert!(PeerRecord::decode(&z).is_err());
        let mut u = bytes;
        u[43] = 0xff; // not UTF-8
        assert_eq!(PeerRecord::decode(&u), Err(RecordError::BadAddress { index: 0 }));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            if let Ok(r) = PeerRecord::decode(&bytes) {
                // Anything that decodes re-encodes to the same bytes (one encoding per record).
                prop_assert_eq!(r.encode(), bytes);
                let _ = r.verify(NOW, HOUR);
            }
        }

        #[test]
        fn mutated_records_never_panic(pos in 0usize..700, val in any::<u8>(), cut in 0usize..700) {
            let mut bytes = record(9).encode();
            let len = bytes.len();
            bytes[pos % len] = val;
            bytes.truncate(cut.max(1));
            if let Ok(r) = PeerRecord::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }

        #[test]
        fn roundtrip(addrs in proptest::collection::vec("[!-~]{1,128}", 1..=4), ts in any::<u64>()) {
            let r = PeerRecord::sign(&identity(10), &addrs, ts).expect("valid");
            let back = PeerRecord::decode(&r.encode()).expect("decodes");
            prop_assert_eq!(&back, &r);
            prop_assert!(back.verify(ts, HOUR).is_ok());
        }
    }
}
