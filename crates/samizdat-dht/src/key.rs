//! The key space: XOR distances, bucket indices, and rotating content keys.

use rand_core::RngCore;
use samizdat_identity::{NodeId, pow::leading_zero_bits};

/// An XOR distance between two keys. Compares as a 256-bit big-endian number.
pub type Distance = [u8; 32];

/// The XOR distance between `a` and `b`.
pub fn distance(a: &NodeId, b: &NodeId) -> Distance {
    a.distance(b)
}

/// The k-bucket index of `other` as seen from `local`: 255 for the far half of the key space,
/// 0 for the single closest possible ID; `None` for `local` itself.
pub fn bucket_index(local: &NodeId, other: &NodeId) -> Option<usize> {
    let lz = leading_zero_bits(&local.distance(other)) as usize;
    (lz < 256).then(|| 255 - lz)
}

/// A uniformly random ID that falls into bucket `index` (clamped to 0..=255) of `local`.
pub fn random_id_in_bucket<R: RngCore>(local: &NodeId, index: usize, rng: &mut R) -> NodeId {
    let lz = 255 - index.min(255);
    let mut d = [0u8; 32];
    rng.fill_bytes(&mut d);
    for bit in 0..=lz {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        if bit < lz {
            d[byte] &= !mask;
        } else {
            d[byte] |= mask;
        }
    }
    NodeId(std::array::from_fn(|i| local.0[i] ^ d[i]))
}

/// The BLAKE3 derive-key context of [`rotating_key`].
pub const ROTATING_KEY_CONTEXT: &str = "samizdat 2026 dht rotating key v1";

/// A DHT key derived from a secret, a purpose and a time period.
///
/// Content is published under `rotating_key(link_secret, "providers", period)` rather than under
/// its content hash, so the nodes that store or route a lookup see only a pseudo-random key that
/// changes every period: without the secret they cannot tell which file is looked up, link two
/// periods' keys, or enumerate the providers of a file they know only by hash. `period` is
/// usually `unix_secs / period_len` (see [`period_of`]); callers look up the current and the
/// previous period around boundaries.
///
/// ```
/// let k1 = samizdat_dht::rotating_key(&[1; 32], "providers", 100);
/// let k2 = samizdat_dht::rotating_key(&[1; 32], "providers", 101);
/// assert_ne!(k1, k2);
/// ```
pub fn rotating_key(secret: &[u8; 32], purpose: &str, period: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(ROTATING_KEY_CONTEXT);
    h.update(secret);
    h.update(&period.to_le_bytes());
    h.update(purpose.as_bytes());
    *h.finalize().as_bytes()
}

/// The period number of `unix_secs` for periods of `period_len` seconds (0 is treated as 1).
pub fn period_of(unix_secs: u64, period_len: u64) -> u64 {
    unix_secs / period_len.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn bucket_indices() {
        let a = NodeId([0; 32]);
        let mut b = [0; 32];
        b[0] = 0x80;
        assert_eq!(bucket_index(&a, &NodeId(b)), Some(255));
        let mut c = [0; 32];
        c[31] = 1;
        assert_eq!(bucket_index(&a, &NodeId(c)), Some(0));
        assert_eq!(bucket_index(&a, &a), None);
    }

    #[test]
    fn random_ids_land_in_their_bucket() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut local = [0u8; 32];
        rng.fill_bytes(&mut local);
        let local = NodeId(local);
        for index in [0, 1, 7, 8, 100, 254, 255, 999] {
            for _ in 0..20 {
                let id = random_id_in_bucket(&local, index, &mut rng);
                assert_eq!(bucket_index(&local, &id), Some(index.min(255)));
            }
        }
    }

    #[test]
    fn rotating_keys_separate_secret_purpose_period() {
        let base = rotating_key(&[1; 32], "p", 5);
        assert_eq!(base, rotating_key(&[1; 32], "p", 5));
        assert_ne!(base, rotating_key(&[2; 32], "p", 5));
        assert_ne!(base, rotating_key(&[1; 32], "q", 5));
        assert_ne!(base, rotating_key(&[1; 32], "p", 6));
        assert_eq!(period_of(3600 * 5 + 7, 3600), 5);
        assert_eq!(period_of(9, 0), 9);
    }
}
