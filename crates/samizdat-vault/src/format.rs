//! Format constants, key types and the sealing primitives every on-disk record uses.
//!
//! Nothing here is stored in clear: these constants are what version 3 of the format *is*.
//!
//! # Record sealing
//!
//! Every sealed record (header keys and commit records, metadata blocks, content blocks) is
//! `nonce ‖ ciphertext ‖ tag`, with a fresh random 192-bit `nonce`. The record is encrypted
//! with AES-256-GCM under a **one-time key** `K_r = BLAKE3-keyed(K, nonce)`, where `K` is the
//! record's long-term key (per-file key, metadata key, commit key, slot key), and the all-zero
//! 96-bit GCM nonce. Each one-time key seals exactly one record (a repeat needs two equal
//! random 192-bit nonces under one `K`), so GCM's nonce-uniqueness requirement holds with no
//! bound on the number of records a key may seal; this is the XAES-256-GCM / "derive a key
//! per message" pattern. The associated data binds the record to its role and place.

use rand_core::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Result, VaultError};

/// Size of every block of the container, header block included (64 KiB).
pub const BLOCK_SIZE: usize = 64 * 1024;
/// Length of the random nonce stored at the start of every sealed record (it selects the
/// record's one-time key).
pub const NONCE_LEN: usize = 24;
/// Length of the GCM tag stored at the end of every sealed record.
pub const TAG_LEN: usize = 16;
/// Plaintext bytes carried by one data or metadata block.
pub const PAYLOAD_SIZE: usize = BLOCK_SIZE - NONCE_LEN - TAG_LEN;
/// Number of header slots, i.e. the most volumes one container can hold.
pub const MAX_VOLUMES: usize = 15;
/// Size of one header slot inside the header block.
pub(crate) const SLOT_SIZE: usize = 4096;
/// Length of the container-wide Argon2id salt (the first bytes of the container).
pub(crate) const SALT_LEN: usize = 32;
/// Smallest container the format accepts (1 MiB: the header block and 15 data blocks).
pub const MIN_CONTAINER_SIZE: u64 = 16 * BLOCK_SIZE as u64;
/// Largest container the format accepts (block indices are 32-bit).
pub const MAX_CONTAINER_SIZE: u64 = (u32::MAX as u64 - 1) * BLOCK_SIZE as u64;
/// Marker for "no block" in block pointers.
pub(crate) const NO_BLOCK: u32 = u32::MAX;

/// Offset of the keys record inside a slot.
pub(crate) const KEYS_OFF: usize = 0;
/// Plaintext length of a keys record: the volume master key.
pub(crate) const KEYS_PLAIN: usize = 32;
/// Offsets of the two alternating commit records inside a slot.
pub(crate) const COMMIT_OFF: [usize; 2] = [1024, 2048];
/// Most copies of each metadata block (format version 3).
pub(crate) const MAX_REPLICAS: usize = 8;
/// Plaintext length of a commit record (version 3): previous volume's key flag and key,
/// generation, metadata block count, catalog length, copies per metadata block, and the
/// first metadata block of every copy.
pub(crate) const COMMIT_PLAIN: usize = 1 + 32 + 8 + 4 + 8 + 1 + 4 * MAX_REPLICAS;
/// Plaintext length of a version 2 commit record (read for old containers): flag, previous
/// key, generation, head block, block count, catalog length.
pub(crate) const COMMIT_PLAIN_V2: usize = 1 + 32 + 8 + 4 + 4 + 8;

/// Byte offset of header slot `slot` in the container.
pub(crate) fn slot_offset(slot: usize) -> usize {
    SLOT_SIZE * (slot + 1)
}

/// Byte offset of data block `index` in the container (block 0 follows the header block).
pub(crate) fn block_offset(index: u32) -> u64 {
    (u64::from(index) + 1) * BLOCK_SIZE as u64
}

/// Cost parameters of the Argon2id password hash.
///
/// The format fixes them to [`KdfCost::FORMAT`]; a container is only readable with the cost it
/// was created with, and nothing on disk says which one that was. Other values exist for tests
/// and fuzzing only (see [`KdfCost::DANGER_INSECURE_TEST`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub lanes: u32,
}

impl KdfCost {
    /// The cost the format fixes: Argon2id, 64 MiB, 3 passes, 1 lane (RFC 9106's second
    /// recommended option, single lane).
    pub const FORMAT: KdfCost = KdfCost { memory_kib: 64 * 1024, iterations: 3, lanes: 1 };
    /// A trivially cheap cost for tests and fuzzing. Containers made with it are **not**
    /// protected against password guessing and cannot be opened by the CLI.
    pub const DANGER_INSECURE_TEST: KdfCost = KdfCost { memory_kib: 8, iterations: 1, lanes: 1 };
}

/// A 256-bit secret key, zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SecretKey(pub(crate) [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// A fresh random key.
    pub(crate) fn random(rng: &mut impl RngCore) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        SecretKey(k)
    }

    /// Derives a subkey for `context` (BLAKE3 key derivation) with an optional extra input.
    pub(crate) fn derive(&self, context: &str, extra: &[u8]) -> SecretKey {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        hasher.update(&self.0);
        hasher.update(extra);
        SecretKey(*hasher.finalize().as_bytes())
    }
}

/// The one-time AES-256-GCM key of the record with `nonce` under `key`:
/// `BLAKE3-keyed(key, nonce)`.
///
/// `ring` does not wipe its expanded key schedule; it lives on the caller's stack for one
/// record only and can decrypt nothing but that record.
fn record_key(key: &SecretKey, nonce: &[u8; NONCE_LEN]) -> Option<LessSafeKey> {
    let sub = Zeroizing::new(*blake3::keyed_hash(&key.0, nonce).as_bytes());
    // AES_256_GCM accepts every 32-byte key, so this never fails in practice.
    UnboundKey::new(&AES_256_GCM, &sub[..]).ok().map(LessSafeKey::new)
}

/// The GCM nonce: constant, because every record key seals a single record.
fn gcm_nonce() -> Nonce {
    Nonce::assume_unique_for_key([0u8; 12])
}

/// Fills `buf` with random-looking bytes (free space, shredded blocks): the AES-256-CTR
/// keystream (AES-256-GCM encryption of zeros; the tag is dropped) under a fresh key drawn
/// from `rng`. It is a standard CSPRNG construction, and several times faster than drawing
/// every byte from `rng` (ChaCha20) on machines with AES instructions.
pub(crate) fn fill_noise(rng: &mut impl RngCore, buf: &mut [u8]) {
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(&mut key[..]);
    buf.fill(0);
    let sealed = UnboundKey::new(&AES_256_GCM, &key[..])
        .ok()
        .map(LessSafeKey::new)
        .and_then(|k| k.seal_in_place_separate_tag(gcm_nonce(), Aad::empty(), buf).ok());
    if sealed.is_none() {
        // Only for buffers beyond GCM's length limit (64 GiB); never happens here.
        rng.fill_bytes(buf);
    }
}

/// Derives the password key: Argon2id(password, container salt).
pub(crate) fn password_key(password: &[u8], salt: &[u8], cost: KdfCost) -> Result<SecretKey> {
    let params = argon2::Params::new(cost.memory_kib, cost.iterations, cost.lanes, Some(32))
        .map_err(|e| VaultError::Kdf(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = SecretKey([0u8; 32]);
    argon
        .hash_password_into(password, salt, &mut out.0)
        .map_err(|e| VaultError::Kdf(e.to_string()))?;
    Ok(out)
}

/// Associated data binding a sealed record to its kind and place.
pub(crate) fn ad(kind: u8, place: u32, a: u64, b: u32) -> [u8; 17] {
    let mut out = [0u8; 17];
    out[0] = kind;
    out[1..5].copy_from_slice(&place.to_le_bytes());
    out[5..13].copy_from_slice(&a.to_le_bytes());
    out[13..17].copy_from_slice(&b.to_le_bytes());
    out
}

/// AD kinds.
pub(crate) const AD_KEYS: u8 = b'K';
pub(crate) const AD_COMMIT: u8 = b'C';
pub(crate) const AD_META: u8 = b'M';
pub(crate) const AD_DATA: u8 = b'D';

/// Seals `record` in place: `record = nonce || plaintext || tag`, the plaintext already in
/// `record[NONCE_LEN..len-TAG_LEN]`. The nonce is written by this function.
pub(crate) fn seal_in_place(
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    record: &mut [u8],
) -> Result<()> {
    let len = record.len();
    if len < NONCE_LEN + TAG_LEN {
        return Err(VaultError::corrupt("record too short to seal"));
    }
    record[..NONCE_LEN].copy_from_slice(nonce);
    let (body, tag_out) = record[NONCE_LEN..].split_at_mut(len - NONCE_LEN - TAG_LEN);
    let tag = record_key(key, nonce)
        .ok_or_else(|| VaultError::corrupt("record key rejected"))?
        .seal_in_place_separate_tag(gcm_nonce(), Aad::from(ad), body)
        .map_err(|_| VaultError::corrupt("record too large to seal"))?;
    tag_out.copy_from_slice(tag.as_ref());
    Ok(())
}

/// Opens a record sealed by [`seal_in_place`]; on success the plaintext is in
/// `record[NONCE_LEN..len-TAG_LEN]`. On failure the record content is unspecified.
pub(crate) fn open_in_place(
    key: &SecretKey,
    ad: &[u8],
    record: &mut [u8],
) -> std::result::Result<(), ()> {
    let len = record.len();
    if len < NONCE_LEN + TAG_LEN {
        return Err(());
    }
    let (nonce, rest) = record.split_at_mut(NONCE_LEN);
    let (body, tag) = rest.split_at_mut(len - NONCE_LEN - TAG_LEN);
    let nonce: &[u8; NONCE_LEN] = (&*nonce).try_into().map_err(|_| ())?;
    let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| ())?;
    record_key(key, nonce)
        .ok_or(())?
        .open_in_place_separate_tag(gcm_nonce(), Aad::from(ad), Tag::from(tag), body, 0..)
        .map(|_| ())
        .map_err(|_| ())
}

/// Seals a small record (`plain`) into a fresh buffer.
pub(crate) fn seal_small(
    key: &SecretKey,
    rng: &mut impl RngCore,
    ad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>> {
    let mut rec = vec![0u8; NONCE_LEN + plain.len() + TAG_LEN];
    rec[NONCE_LEN..NONCE_LEN + plain.len()].copy_from_slice(plain);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_in_place(key, &nonce, ad, &mut rec)?;
    Ok(rec)
}

/// Opens a small record of plaintext length `plain_len` at the start of `bytes`.
pub(crate) fn open_small(
    key: &SecretKey,
    ad: &[u8],
    bytes: &[u8],
    plain_len: usize,
) -> Option<Zeroizing<Vec<u8>>> {
    let total = NONCE_LEN + plain_len + TAG_LEN;
    let mut rec = Zeroizing::new(bytes.get(..total)?.to_vec());
    open_in_place(key, ad, &mut rec).ok()?;
    Some(Zeroizing::new(rec[NONCE_LEN..NONCE_LEN + plain_len].to_vec()))
}

/// Little-endian readers over a byte slice that fail instead of panicking.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| VaultError::corrupt("metadata record ends early"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.bytes(2)?);
        Ok(u16::from_le_bytes(a))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.bytes(4)?);
        Ok(u32::from_le_bytes(a))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn key(&mut self) -> Result<SecretKey> {
        let mut k = SecretKey([0u8; 32]);
        k.0.copy_from_slice(self.bytes(32)?);
        Ok(k)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn seal_open_roundtrip_and_tamper() {
        let key = SecretKey::random(&mut OsRng);
        let c = key.clone();
        let rec = seal_small(&c, &mut OsRng, b"ad", b"hello").unwrap();
        assert_eq!(&open_small(&c, b"ad", &rec, 5).unwrap()[..], b"hello");
        assert!(open_small(&c, b"other", &rec, 5).is_none());
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 1;
            assert!(open_small(&c, b"ad", &bad, 5).is_none(), "bit flip at {i}");
        }
    }

    /// Known-answer test of the record construction, computed with an independent
    /// implementation (RustCrypto `aes-gcm` + `blake3`): `K_r = BLAKE3-keyed(K, nonce)`,
    /// AES-256-GCM under `K_r` with the all-zero 96-bit nonce.
    #[test]
    fn record_known_answer() {
        let key = SecretKey([0x11; 32]);
        let nonce: [u8; NONCE_LEN] = core::array::from_fn(|i| i as u8);
        let plain = b"samizdat vault record";
        let expected = "000102030405060708090a0b0c0d0e0f1011121314151617\
                        15205e40009b3623ef349edb56410eb6c08bedbfc0\
                        94b969fab3c001c8d8b874b1dd2924c3";
        let mut rec = vec![0u8; NONCE_LEN + plain.len() + TAG_LEN];
        rec[NONCE_LEN..NONCE_LEN + plain.len()].copy_from_slice(plain);
        let ad = ad(AD_DATA, 7, 3, 0);
        seal_in_place(&key, &nonce, &ad, &mut rec).unwrap();
        let hex: String = rec.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        open_in_place(&key, &ad, &mut rec).unwrap();
        assert_eq!(&rec[NONCE_LEN..NONCE_LEN + plain.len()], plain);
    }

    #[test]
    fn secret_key_debug_is_redacted() {
        let key = SecretKey([7u8; 32]);
        assert_eq!(format!("{key:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn layout_fits() {
        assert!(slot_offset(MAX_VOLUMES - 1) + SLOT_SIZE <= BLOCK_SIZE);
        assert!(COMMIT_OFF[1] + NONCE_LEN + COMMIT_PLAIN + TAG_LEN <= SLOT_SIZE);
        assert!(KEYS_OFF + NONCE_LEN + KEYS_PLAIN + TAG_LEN <= COMMIT_OFF[0]);
        assert!(SALT_LEN <= slot_offset(0));
    }
}
