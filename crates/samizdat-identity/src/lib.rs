//! Node identity: an Ed25519 long-term key per node, and the [`NodeId`] derived from it.
//!
//! The identity key never encrypts anything; it signs the node's Noise static key during the
//! session handshake (see `samizdat-session`), binding the encrypted channel to a stable name.
//! A [`NodeId`] is the BLAKE3 derived key of the public key, so the ID alone reveals nothing
//! beyond what the public key does and IDs are uniformly distributed (ready for a Kademlia DHT).
//!
//! ```
//! let id = samizdat_identity::Identity::generate(&mut rand_core::OsRng);
//! let sig = id.sign(b"hello");
//! let node = samizdat_identity::verify(&id.public_key(), b"hello", &sig).unwrap();
//! assert_eq!(node, id.node_id());
//! ```
#![forbid(unsafe_code)]

pub mod record;

pub use record::{PeerRecord, RecordError};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use std::fmt;
use zeroize::Zeroizing;

/// Errors from identity operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The bytes are not a valid Ed25519 public key.
    #[error("invalid public key")]
    BadPublicKey,
    /// The signature does not verify under the given key.
    #[error("signature does not verify")]
    BadSignature,
    /// A stored secret key has the wrong length.
    #[error("secret key must be 32 bytes, got {0}")]
    BadSecretLength(usize),
    /// A textual node ID could not be parsed.
    #[error("malformed node id")]
    BadNodeId,
}

/// A node's stable identifier: BLAKE3 derived from its Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// Derives the ID of a public key.
    pub fn from_public_key(public: &[u8; 32]) -> Self {
        NodeId(blake3::derive_key("samizdat 2026 node id v1", public))
    }

    /// The XOR distance to another ID (for Kademlia-style routing).
    pub fn distance(&self, other: &NodeId) -> [u8; 32] {
        std::array::from_fn(|i| self.0[i] ^ other.0[i])
    }

    /// A short, human-friendly prefix for display (not unique).
    pub fn short(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0[..5]).to_lowercase()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::BASE32_NOPAD.encode(&self.0).to_lowercase())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({}…)", self.short())
    }
}

impl std::str::FromStr for NodeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, IdentityError> {
        let raw = data_encoding::BASE32_NOPAD
            .decode(s.to_uppercase().as_bytes())
            .map_err(|_| IdentityError::BadNodeId)?;
        raw.try_into().map(NodeId).map_err(|_| IdentityError::BadNodeId)
    }
}

/// A node's long-term signing identity. The secret is zeroized on drop and never printed.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({:?})", self.node_id())
    }
}

impl Identity {
    /// Generates a fresh identity from a cryptographic RNG.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Identity { key: SigningKey::generate(rng) }
    }

    /// Restores an identity from its 32-byte secret.
    pub fn from_secret_bytes(secret: &[u8]) -> Result<Self, IdentityError> {
        let bytes: [u8; 32] =
            secret.try_into().map_err(|_| IdentityError::BadSecretLength(secret.len()))?;
        let bytes = Zeroizing::new(bytes);
        Ok(Identity { key: SigningKey::from_bytes(&bytes) })
    }

    /// The 32-byte secret, for storing in an encrypted vault. Handle with care.
    pub fn danger_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_public_key(&self.public_key())
    }

    /// Signs a message.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// The X25519 secret of this identity: the Ed25519 secret scalar (the clamped first half
    /// of SHA-512 of the seed), whose public key is [`x25519_public`] of
    /// [`Identity::public_key`]. Lets a peer that knows only our identity key run a
    /// one-way-authenticated Diffie-Hellman handshake with us (Noise NK), as libsodium's
    /// `crypto_sign_ed25519_sk_to_curve25519` does. Using one key pair for Ed25519 signatures
    /// and an X25519 key exchange is shown secure by Thormarker, "On using the same key pair
    /// for Ed25519 and an X25519 based KEM" (ePrint 2021/509).
    pub fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        let mut scalar = Zeroizing::new(self.key.to_scalar_bytes());
        scalar[0] &= 248;
        scalar[31] &= 127;
        scalar[31] |= 64;
        scalar
    }
}

/// The X25519 (Montgomery) form of an Ed25519 identity key, for a Diffie-Hellman handshake
/// against the identity (see [`Identity::x25519_secret`]). Keys that do not decode, and weak
/// (small-order) keys, whose Diffie-Hellman results anyone can compute, are refused.
pub fn x25519_public(public: &[u8; 32]) -> Result<[u8; 32], IdentityError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| IdentityError::BadPublicKey)?;
    // Weak keys, and keys with a small-order component (which the X25519 clamp removes, so
    // one secret would answer for several identity keys), are refused.
    if key.is_weak() || !key.to_edwards().is_torsion_free() {
        return Err(IdentityError::BadPublicKey);
    }
    Ok(key.to_montgomery().to_bytes())
}

/// Verifies `sig` over `msg` under `public`; returns the signer's [`NodeId`].
pub fn verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> Result<NodeId, IdentityError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| IdentityError::BadPublicKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    key.verify_strict(msg, &sig).map_err(|_| IdentityError::BadSignature)?;
    Ok(NodeId::from_public_key(public))
}

/// Proof of work binding a [`NodeId`] to its public key (S/Kademlia's static crypto puzzle).
///
/// A node's ID is already `BLAKE3(public key)`, so nobody can pick an ID without picking a key.
/// The puzzle makes *each* key cost work: a key is admitted to a DHT only together with a nonce
/// such that `BLAKE3-derive-key(POW_CONTEXT, public key || nonce)` starts with at least
/// `difficulty` zero bits. Solving costs about `2^difficulty` hashes; checking costs one, so a
/// Sybil operator pays per identity while honest nodes pay once.
///
/// ```
/// use samizdat_identity::pow;
/// let public = [7u8; 32];
/// let nonce = pow::solve(&public, 8, 0);
/// assert!(pow::verify(&public, nonce, 8));
/// ```
pub mod pow {
    /// The BLAKE3 derive-key context of the puzzle (domain separation from every other hash).
    pub const POW_CONTEXT: &str = "samizdat 2026 node id pow v1";

    /// The puzzle hash of `public` with `nonce`.
    pub fn hash(public: &[u8; 32], nonce: u64) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(POW_CONTEXT);
        h.update(public);
        h.update(&nonce.to_le_bytes());
        *h.finalize().as_bytes()
    }

    /// The number of leading zero bits of `bytes` (0 to `8 * bytes.len()`).
    pub fn leading_zero_bits(bytes: &[u8]) -> u32 {
        let mut n = 0;
        for b in bytes {
            if *b == 0 {
                n += 8;
            } else {
                return n + b.leading_zeros();
            }
        }
        n
    }

    /// Whether `nonce` solves the puzzle for `public` at `difficulty` (one hash).
    pub fn verify(public: &[u8; 32], nonce: u64, difficulty: u8) -> bool {
        leading_zero_bits(&hash(public, nonce)) >= u32::from(difficulty)
    }

    /// Searches nonces from `start` upward until one solves the puzzle for `public`
    /// (about `2^difficulty` hashes on average). Difficulties above 64 are clamped to 64.
    pub fn solve(public: &[u8; 32], difficulty: u8, start: u64) -> u64 {
        let base = {
            let mut h = blake3::Hasher::new_derive_key(POW_CONTEXT);
            h.update(public);
            h
        };
        let want = u32::from(difficulty.min(64));
        let mut nonce = start;
        loop {
            let mut h = base.clone();
            h.update(&nonce.to_le_bytes());
            if leading_zero_bits(h.finalize().as_bytes()) >= want {
                return nonce;
            }
            nonce = nonce.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let id = Identity::generate(&mut rand_core::OsRng);
        let sig = id.sign(b"msg");
        assert_eq!(verify(&id.public_key(), b"msg", &sig).unwrap(), id.node_id());
        assert!(verify(&id.public_key(), b"msh", &sig).is_err());
        let other = Identity::generate(&mut rand_core::OsRng);
        assert!(verify(&other.public_key(), b"msg", &sig).is_err());
    }

    #[test]
    fn x25519_forms_refuse_weak_and_invalid_keys() {
        let id = Identity::generate(&mut rand_core::OsRng);
        let public = x25519_public(&id.public_key()).unwrap();
        assert_ne!(public, [0; 32]);
        // The secret is a clamped scalar, as X25519 wants it.
        let secret = id.x25519_secret();
        assert_eq!(secret[0] & 7, 0);
        assert_eq!(secret[31] & 0xc0, 0x40);
        // A key with a small-order component added is refused: the clamp would remove it.
        let eight_torsion = ed25519_dalek::VerifyingKey::from_bytes(&[
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ])
        .unwrap();
        let mixed = id.key.verifying_key().to_edwards() + eight_torsion.to_edwards();
        let mixed = mixed.compress().to_bytes();
        assert!(matches!(x25519_public(&mixed), Err(IdentityError::BadPublicKey)));
        // The neutral point (small order) and a non-point are refused.
        let mut neutral = [0u8; 32];
        neutral[0] = 1;
        assert!(matches!(x25519_public(&neutral), Err(IdentityError::BadPublicKey)));
        // About half of all y coordinates are not on the curve.
        let mut refused = 0;
        for y in 2u8..64 {
            let mut key = [0u8; 32];
            key[0] = y;
            if VerifyingKey::from_bytes(&key).is_err() {
                assert!(matches!(x25519_public(&key), Err(IdentityError::BadPublicKey)));
                refused += 1;
            }
        }
        assert!(refused > 0);
    }

    #[test]
    fn secret_roundtrip_and_id_text() {
        let id = Identity::generate(&mut rand_core::OsRng);
        let back = Identity::from_secret_bytes(&id.danger_secret_bytes()[..]).unwrap();
        assert_eq!(back.node_id(), id.node_id());
        let text = id.node_id().to_string();
        assert_eq!(text.parse::<NodeId>().unwrap(), id.node_id());
        assert!(Identity::from_secret_bytes(&[1; 5]).is_err());
        assert!("zz".parse::<NodeId>().is_err());
        assert!(!format!("{id:?}").contains(&text));
    }

    #[test]
    fn pow_solve_verify_and_cost() {
        let public = Identity::generate(&mut rand_core::OsRng).public_key();
        assert_eq!(pow::leading_zero_bits(&[0, 0x10]), 11);
        assert_eq!(pow::leading_zero_bits(&[0; 4]), 32);
        let nonce = pow::solve(&public, 10, 0);
        assert!(pow::verify(&public, nonce, 10));
        assert!(pow::verify(&public, nonce, 0));
        // The solution is bound to the key: another key with the same nonce rarely passes.
        let other = Identity::generate(&mut rand_core::OsRng).public_key();
        let passes = (0..64u64).filter(|n| pow::verify(&other, nonce ^ n, 10)).count();
        assert!(passes < 4, "{passes}");
    }
}
