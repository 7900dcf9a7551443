//! Signed records: BEP 44-style mutable values and provider records.
//!
//! Both kinds are self-certifying: a node checks the signature, the size limits and the expiry
//! before storing or believing one, so a record cannot be forged by the nodes that store or
//! relay it, only withheld.

use crate::DhtError;
use crate::codec::Writer;
use crate::contact::Contact;
use samizdat_identity::{Identity, NodeId};

/// The largest value a mutable record may carry (as in BEP 44).
pub const MAX_VALUE_LEN: usize = 1000;
/// The longest salt of a mutable record (as in BEP 44).
pub const MAX_SALT_LEN: usize = 64;

const RECORD_SIG_CONTEXT: &[u8] = b"samizdat 2026 dht mutable record v1\0";
const PROVIDER_SIG_CONTEXT: &[u8] = b"samizdat 2026 dht provider record v1\0";
const RECORD_KEY_CONTEXT: &str = "samizdat 2026 dht record key v1";

/// The DHT key of the mutable record owned by `public_key` under `salt`.
pub fn record_key(public_key: &[u8; 32], salt: &[u8]) -> NodeId {
    let mut h = blake3::Hasher::new_derive_key(RECORD_KEY_CONTEXT);
    h.update(public_key);
    h.update(salt);
    NodeId(*h.finalize().as_bytes())
}

/// A signed mutable record (BEP 44 style): the owner's key and an optional salt name the
/// record ([`record_key`]); a higher sequence number replaces a lower one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedRecord {
    /// The owner's Ed25519 public key.
    pub public_key: [u8; 32],
    /// The salt (up to [`MAX_SALT_LEN`] bytes), so one key can own many records.
    pub salt: Vec<u8>,
    /// The sequence number.
    pub seq: u64,
    /// When the record expires, in Unix seconds.
    pub expires_at: u64,
    /// The value (up to [`MAX_VALUE_LEN`] bytes).
    pub value: Vec<u8>,
    /// Ed25519 signature over [`SignedRecord::signed_bytes`].
    pub signature: [u8; 64],
}

impl SignedRecord {
    /// Creates and signs a record.
    pub fn sign(
        owner: &Identity,
        salt: &[u8],
        seq: u64,
        expires_at: u64,
        value: &[u8],
    ) -> Result<Self, DhtError> {
        check_len("salt", salt.len(), MAX_SALT_LEN)?;
        check_len("value", value.len(), MAX_VALUE_LEN)?;
        let mut r = SignedRecord {
            public_key: owner.public_key(),
            salt: salt.to_vec(),
            seq,
            expires_at,
            value: value.to_vec(),
            signature: [0; 64],
        };
        r.signature = owner.sign(&r.signed_bytes());
        Ok(r)
    }

    /// The record's DHT key.
    pub fn key(&self) -> NodeId {
        record_key(&self.public_key, &self.salt)
    }

    /// The canonical bytes the signature covers: a context string, the key, the
    /// length-prefixed salt, the sequence number, the expiry and the length-prefixed value.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(RECORD_SIG_CONTEXT);
        w.bytes(&self.public_key);
        w.u8(self.salt.len().min(255) as u8);
        w.bytes(&self.salt);
        w.u64(self.seq);
        w.u64(self.expires_at);
        w.u16(self.value.len().min(u16::MAX as usize) as u16);
        w.bytes(&self.value);
        w.finish()
    }

    /// Checks sizes, expiry (against `now_unix`) and the signature.
    pub fn verify(&self, now_unix: u64) -> Result<(), DhtError> {
        check_len("salt", self.salt.len(), MAX_SALT_LEN)?;
        check_len("value", self.value.len(), MAX_VALUE_LEN)?;
        check_expiry(self.expires_at, now_unix)?;
        samizdat_identity::verify(&self.public_key, &self.signed_bytes(), &self.signature)
            .map(|_| ())
            .map_err(|_| DhtError::BadSignature)
    }
}

/// A provider record: `provider` says it holds what `key` names, until `expires_at`.
/// Signed by the provider's own key, so nobody can announce someone else as a provider.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ProviderRecord {
    /// The key provided (usually a [`crate::rotating_key`]).
    pub key: NodeId,
    /// The provider.
    pub provider: Contact,
    /// When the record expires, in Unix seconds.
    pub expires_at: u64,
    /// Ed25519 signature by the provider over [`ProviderRecord::signed_bytes`].
    pub signature: [u8; 64],
}

impl ProviderRecord {
    /// Creates and signs a provider record; `provider` must be `identity`'s own contact.
    pub fn sign(
        identity: &Identity,
        key: NodeId,
        provider: Contact,
        expires_at: u64,
    ) -> Result<Self, DhtError> {
        if provider.public_key() != &identity.public_key() {
            return Err(DhtError::KeyMismatch("provider contact is not the signer"));
        }
        let mut r = ProviderRecord { key, provider, expires_at, signature: [0; 64] };
        r.signature = identity.sign(&r.signed_bytes());
        Ok(r)
    }

    /// The canonical bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes(PROVIDER_SIG_CONTEXT);
        w.bytes(&self.key.0);
        w.contact(&self.provider);
        w.u64(self.expires_at);
        w.finish()
    }

    /// Checks the provider's proof of work at `difficulty`, the expiry and the signature.
    pub fn verify(&self, now_unix: u64, difficulty: u8) -> Result<(), DhtError> {
        self.provider.verify_pow(difficulty)?;
        check_expiry(self.expires_at, now_unix)?;
        samizdat_identity::verify(self.provider.public_key(), &self.signed_bytes(), &self.signature)
            .map(|_| ())
            .map_err(|_| DhtError::BadSignature)
    }
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), DhtError> {
    if len > max { Err(DhtError::TooLong { what, len, max }) } else { Ok(()) }
}

fn check_expiry(expires_at: u64, now: u64) -> Result<(), DhtError> {
    if expires_at <= now { Err(DhtError::Expired { expires_at, now }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn owner() -> Identity {
        Identity::from_secret_bytes(&[9; 32]).unwrap()
    }

    #[test]
    fn mutable_record_sign_verify_tamper() {
        let r = SignedRecord::sign(&owner(), b"salt", 3, 1000, b"hello").unwrap();
        assert!(r.verify(999).is_ok());
        assert_eq!(r.verify(1000), Err(DhtError::Expired { expires_at: 1000, now: 1000 }));
        assert_eq!(r.key(), record_key(&owner().public_key(), b"salt"));
        assert_ne!(r.key(), record_key(&owner().public_key(), b""));
        for tamper in [
            |r: &mut SignedRecord| r.seq += 1,
            |r: &mut SignedRecord| r.expires_at += 1,
            |r: &mut SignedRecord| r.value.push(0),
            |r: &mut SignedRecord| r.salt.clear(),
            |r: &mut SignedRecord| r.signature[0] ^= 1,
        ] {
            let mut t = r.clone();
            tamper(&mut t);
            assert_eq!(t.verify(0), Err(DhtError::BadSignature));
        }
        let mut other = r.clone();
        other.public_key = Identity::from_secret_bytes(&[8; 32]).unwrap().public_key();
        assert_eq!(other.verify(0), Err(DhtError::BadSignature));
    }

    #[test]
    fn mutable_record_limits() {
        let big = vec![0; MAX_VALUE_LEN + 1];
        assert!(matches!(
            SignedRecord::sign(&owner(), b"", 0, 10, &big),
            Err(DhtError::TooLong { what: "value", .. })
        ));
        assert!(matches!(
            SignedRecord::sign(&owner(), &[0; MAX_SALT_LEN + 1], 0, 10, b""),
            Err(DhtError::TooLong { what: "salt", .. })
        ));
        let mut r = SignedRecord::sign(&owner(), b"", 0, 10, &big[1..]).unwrap();
        assert!(r.verify(0).is_ok());
        r.value.push(1);
        assert!(matches!(r.verify(0), Err(DhtError::TooLong { .. })));
    }

    #[test]
    fn provider_record_sign_verify() {
        let id = owner();
        let c = Contact::for_identity(&id, 4, "tcp/1.2.3.4:5").unwrap();
        let p = ProviderRecord::sign(&id, NodeId([1; 32]), c.clone(), 50).unwrap();
        assert!(p.verify(10, 4).is_ok());
        assert!(matches!(p.verify(50, 4), Err(DhtError::Expired { .. })));
        let mut t = p.clone();
        t.key = NodeId([2; 32]);
        assert_eq!(t.verify(10, 4), Err(DhtError::BadSignature));
        let other = Identity::from_secret_bytes(&[1; 32]).unwrap();
        assert!(matches!(
            ProviderRecord::sign(&other, NodeId([1; 32]), c, 50),
            Err(DhtError::KeyMismatch(_))
        ));
        // Someone else's contact with a forged proof of work fails before the signature.
        let weak = Contact::new(id.public_key(), 0, "x").unwrap();
        if weak.verify_pow(20).is_err() {
            let p = ProviderRecord::sign(&id, NodeId([1; 32]), weak, 50).unwrap();
            assert_eq!(p.verify(10, 20), Err(DhtError::BadProofOfWork(20)));
        }
    }
}
