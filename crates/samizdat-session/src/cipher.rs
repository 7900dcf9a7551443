//! The Noise transport cipher state (AES-256-GCM), working in place.
//!
//! After the handshake, snow's `split` gives one key per direction. Encrypting through snow's
//! `TransportState` costs an extra copy of every byte (payload → message buffer); this cipher
//! state seals and opens frames where they lie, with exactly the Noise `CipherState` rules for
//! AESGCM: the nonce is 32 zero bits followed by the big-endian 64-bit counter `n`, associated
//! data is empty, and `n` increments after every message (the maximum value is never used).
//! A test checks it byte for byte against snow's own transport.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

/// Bytes of an AES-GCM tag.
pub(crate) const TAG_LEN: usize = 16;

/// Why a seal or open failed.
#[derive(Debug)]
pub(crate) enum CipherError {
    /// Authentication failed: tampered, replayed, reordered or injected data.
    Open,
    /// The nonce counter is exhausted (after 2^64 - 1 messages).
    Exhausted,
}

/// One direction of a session.
pub(crate) struct CipherState {
    key: LessSafeKey,
    n: u64,
}

impl CipherState {
    pub(crate) fn new(key: &[u8; 32]) -> Result<Self, CipherError> {
        // AES-256 accepts any 32-byte key; `UnboundKey::new` only fails on a wrong length.
        let key = UnboundKey::new(&AES_256_GCM, key).map_err(|_| CipherError::Open)?;
        Ok(CipherState { key: LessSafeKey::new(key), n: 0 })
    }

    fn nonce(n: u64) -> Nonce {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&n.to_be_bytes());
        Nonce::assume_unique_for_key(bytes)
    }

    fn next(&mut self) -> Result<Nonce, CipherError> {
        if self.n == u64::MAX {
            return Err(CipherError::Exhausted);
        }
        let nonce = Self::nonce(self.n);
        self.n += 1;
        Ok(nonce)
    }

    /// Encrypts `buf[..len - TAG_LEN]` in place and writes the tag into the last 16 bytes.
    pub(crate) fn seal(&mut self, buf: &mut [u8]) -> Result<(), CipherError> {
        let split = buf.len().checked_sub(TAG_LEN).ok_or(CipherError::Open)?;
        let nonce = self.next()?;
        let (plain, tag_out) = buf.split_at_mut(split);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), plain)
            .map_err(|_| CipherError::Open)?;
        tag_out.copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Authenticates and decrypts `buf` (ciphertext followed by the tag) in place; returns the
    /// length of the plaintext, which now starts at `buf[0]`. On failure the counter does not
    /// advance (the session is torn down anyway).
    pub(crate) fn open(&mut self, buf: &mut [u8]) -> Result<usize, CipherError> {
        self.open_at(self.n, buf)?;
        self.n += 1;
        Ok(buf.len() - TAG_LEN)
    }

    /// Like [`CipherState::open`] but for the nonce after the next one, without advancing:
    /// used to read a frame header before the whole frame has arrived.
    pub(crate) fn peek(&self, buf: &mut [u8]) -> Result<usize, CipherError> {
        self.open_at(self.n, buf)?;
        Ok(buf.len() - TAG_LEN)
    }

    /// Skips the nonce of a header already read with [`CipherState::peek`].
    pub(crate) fn advance(&mut self) {
        self.n = self.n.saturating_add(1);
    }

    /// Sets the nonce counter (tests reach the end of the nonce space this way).
    #[cfg(test)]
    pub(crate) fn set_counter(&mut self, n: u64) {
        self.n = n;
    }

    fn open_at(&self, n: u64, buf: &mut [u8]) -> Result<(), CipherError> {
        if n == u64::MAX {
            return Err(CipherError::Exhausted);
        }
        let split = buf.len().checked_sub(TAG_LEN).ok_or(CipherError::Open)?;
        let (cipher, tag) = buf.split_at_mut(split);
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| CipherError::Open)?;
        self.key
            .open_in_place_separate_tag(Self::nonce(n), Aad::empty(), Tag::from(tag), cipher, 0..)
            .map(|_| ())
            .map_err(|_| CipherError::Open)
    }
}
