//! The content cipher: AES-256 in counter mode under a key derived from the link key, seekable
//! by segment. Integrity comes from the BLAKE3 root in the link, so a stream cipher is all that
//! is needed.
//!
//! The keystream is AES-GCM's: segment `s` (of [`SEGMENT`] bytes) is encrypted with the 96-bit
//! nonce `s` and the GCM tag is thrown away, which leaves exactly AES-256-CTR with the counter
//! blocks `s || 2, s || 3, ...`: no block is used twice under one key. It is computed with
//! `ring`'s AES-GCM because that code uses the CPU's vector AES (VAES) and is about 1.5x faster
//! here than a plain AES-NI counter mode; the discarded GHASH costs less than the difference.

use rand_core::{CryptoRng, RngCore};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The 32-byte secret that decrypts one blob. It lives only in the share link.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ContentKey([u8; 32]);

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(<secret>)")
    }
}

impl ContentKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        ContentKey(k)
    }

    /// Wraps raw key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ContentKey(bytes)
    }

    /// The raw key bytes (for building a link).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A subkey for another purpose (e.g. encrypting local resume state of this download).
    pub fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }

    /// The locator under which peers serve the blob with this key and `root`: only holders of
    /// the link (who know the key) can compute it, so a request names nothing a third party
    /// can test against a known root.
    pub fn locator(&self, root: &crate::ContentRoot) -> crate::Locator {
        let mut h = blake3::Hasher::new_derive_key("samizdat 2026 content locator v1");
        h.update(&self.0);
        h.update(&root.0);
        crate::Locator(*h.finalize().as_bytes())
    }

    /// Encrypts or decrypts (the same operation) the bytes of chunk group `index`, which start
    /// at blob offset `index * GROUP_SIZE`.
    pub fn apply(&self, index: u32, data: &mut [u8]) {
        self.apply_at(u64::from(index) * crate::GROUP_SIZE as u64, data);
    }

    /// Encrypts or decrypts `data` located at byte `offset` of the blob.
    pub fn apply_at(&self, offset: u64, data: &mut [u8]) {
        let key = zeroize::Zeroizing::new(self.derive("samizdat 2026 content cipher v3"));
        let key = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, key.as_ref()).expect("a 32-byte key is an AES-256 key"),
        );
        let mut pos = 0;
        while pos < data.len() {
            let at = offset + pos as u64;
            let (segment, within) = (at / SEGMENT as u64, (at % SEGMENT as u64) as usize);
            let n = (SEGMENT - within).min(data.len() - pos);
            let part = &mut data[pos..pos + n];
            if within == 0 {
                xor_keystream(&key, segment, part);
            } else {
                // Mid-segment: run the segment's keystream from its start over a scratch copy.
                let mut scratch = vec![0u8; within + n];
                scratch[within..].copy_from_slice(part);
                xor_keystream(&key, segment, &mut scratch);
                part.copy_from_slice(&scratch[within..]);
            }
            pos += n;
        }
    }
}

/// Bytes per keystream segment (one GCM nonce each): a chunk group, so that the groups a
/// download writes are whole segments.
pub const SEGMENT: usize = crate::GROUP_SIZE;

/// XORs the keystream of `segment` (from its start) into `data` (at most [`SEGMENT`] bytes).
fn xor_keystream(key: &LessSafeKey, segment: u64, data: &mut [u8]) {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[NONCE_LEN - 8..].copy_from_slice(&segment.to_be_bytes());
    // GCM's ciphertext is the plaintext XOR the counter-mode keystream; the tag is not needed.
    // Sealing fails only for inputs of gigabytes; a segment is 32 KiB.
    let _tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), data)
        .expect("a segment is far below AES-GCM's length limit");
}
