//! Streaming file writer and reader: content is sealed and opened in batches of blocks, on
//! several threads.

use std::io::{self, Read, Seek, SeekFrom, Write};

use chacha20poly1305::XChaCha20Poly1305;
use rand_core::RngCore;
use zeroize::Zeroizing;

use crate::catalog::{FileEntry, blocks_for};
use crate::error::{Result, VaultError};
use crate::format::{
    AD_DATA, BLOCK_SIZE, NONCE_LEN, PAYLOAD_SIZE, SecretKey, ad, block_offset, open_in_place,
    seal_in_place,
};
use crate::storage::Storage;
use crate::vault::Vault;

/// Blocks sealed or opened per batch (4 MiB).
const BATCH: usize = 64;

/// Runs `f(i, block_i)` for every block of `buf` (`n` blocks of [`BLOCK_SIZE`]) on up to four
/// threads.
fn par_blocks<F>(buf: &mut [u8], n: usize, f: F) -> Result<()>
where
    F: Fn(usize, &mut [u8]) -> Result<()> + Sync,
{
    let threads =
        std::thread::available_parallelism().map(|t| t.get()).unwrap_or(1).clamp(1, 4).min(n);
    let buf = &mut buf[..n * BLOCK_SIZE];
    if threads <= 1 {
        for (i, block) in buf.chunks_mut(BLOCK_SIZE).enumerate() {
            f(i, block)?;
        }
        return Ok(());
    }
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = buf
            .chunks_mut(per * BLOCK_SIZE)
            .enumerate()
            .map(|(t, part)| {
                let f = &f;
                s.spawn(move || {
                    for (j, block) in part.chunks_mut(BLOCK_SIZE).enumerate() {
                        f(t * per + j, block)?;
                    }
                    Ok::<(), VaultError>(())
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            let r =
                h.join().unwrap_or_else(|_| Err(VaultError::corrupt("a worker thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// A file being written: bytes go in through [`FileWriter::write_bytes`] or [`std::io::Write`]
/// and the file is committed by [`FileWriter::finish`]. Dropping it without `finish` discards
/// everything written (the blocks are freed; their content is under a key that no longer
/// exists).
pub struct FileWriter<'v> {
    vault: &'v mut Vault,
    name: String,
    key: SecretKey,
    cipher: XChaCha20Poly1305,
    blocks: Vec<u32>,
    batch: Zeroizing<Vec<u8>>,
    /// Payload bytes in the current batch.
    fill: usize,
    size: u64,
}

impl std::fmt::Debug for FileWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter").field("size", &self.size).finish_non_exhaustive()
    }
}

impl<'v> FileWriter<'v> {
    pub(crate) fn new(vault: &'v mut Vault, name: String) -> Self {
        let key = SecretKey::random(&mut vault.rng);
        let cipher = key.cipher();
        FileWriter {
            vault,
            name,
            key,
            cipher,
            blocks: Vec::new(),
            batch: Zeroizing::new(vec![0u8; BATCH * BLOCK_SIZE]),
            fill: 0,
            size: 0,
        }
    }

    /// Appends `bytes` to the file.
    pub fn write_bytes(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let i = self.fill / PAYLOAD_SIZE;
            let off = self.fill % PAYLOAD_SIZE;
            let n = (PAYLOAD_SIZE - off).min(bytes.len());
            let at = i * BLOCK_SIZE + NONCE_LEN + off;
            self.batch[at..at + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            self.size += n as u64;
            bytes = &bytes[n..];
            if self.fill == BATCH * PAYLOAD_SIZE {
                self.flush_batch()?;
            }
        }
        Ok(())
    }

    /// Seals the current batch and writes it to freshly allocated random blocks.
    fn flush_batch(&mut self) -> Result<()> {
        if self.fill == 0 {
            return Ok(());
        }
        let n = self.fill.div_ceil(PAYLOAD_SIZE);
        // Zero the unused tail of a partial last block (it is encrypted like the rest).
        let tail = self.fill % PAYLOAD_SIZE;
        if tail != 0 {
            let start = (n - 1) * BLOCK_SIZE + NONCE_LEN + tail;
            let end = n * BLOCK_SIZE - crate::format::TAG_LEN;
            self.batch[start..end].fill(0);
        }
        let phys = self.vault.alloc(n)?;
        let mut nonces = vec![[0u8; NONCE_LEN]; n];
        for nonce in &mut nonces {
            self.vault.rng.fill_bytes(nonce);
        }
        let first_chunk = self.blocks.len() as u64;
        let cipher = &self.cipher;
        let storage: &dyn Storage = &*self.vault.storage;
        let result = par_blocks(&mut self.batch, n, |i, block| {
            let b = phys[i];
            seal_in_place(cipher, &nonces[i], &ad(AD_DATA, b, first_chunk + i as u64, 0), block)?;
            storage
                .write_at(block_offset(b), block)
                .map_err(|e| VaultError::io("writing file content", e))
        });
        if let Err(e) = result {
            self.vault.release(&phys);
            return Err(e);
        }
        self.blocks.extend_from_slice(&phys);
        self.fill = 0;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Writes the last batch and commits the file (one atomic, durable commit). Returns the
    /// file's length.
    pub fn finish(mut self) -> Result<u64> {
        self.flush_batch()?;
        debug_assert_eq!(blocks_for(self.size), self.blocks.len() as u64);
        let entry = FileEntry {
            size: self.size,
            key: self.key.clone(),
            blocks: std::mem::take(&mut self.blocks),
        };
        let size = self.size;
        let name = std::mem::take(&mut self.name);
        self.vault.commit_file(name, entry)?;
        Ok(size)
    }
}

impl Drop for FileWriter<'_> {
    fn drop(&mut self) {
        let blocks = std::mem::take(&mut self.blocks);
        self.vault.release(&blocks);
    }
}

impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_bytes(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A stored file opened for reading. Every block is authenticated before any of its bytes is
/// returned; a block that fails gives an error of kind [`io::ErrorKind::InvalidData`] wrapping
/// [`VaultError::Corrupt`].
pub struct FileReader<'v> {
    vault: &'v Vault,
    entry: FileEntry,
    cipher: XChaCha20Poly1305,
    pos: u64,
    batch: Zeroizing<Vec<u8>>,
    /// Chunk index of the first block held in `batch`, and how many are held.
    batch_first: u64,
    batch_len: usize,
}

impl std::fmt::Debug for FileReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("size", &self.entry.size)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<'v> FileReader<'v> {
    pub(crate) fn new(vault: &'v Vault, entry: FileEntry) -> Self {
        let cipher = entry.key.cipher();
        FileReader {
            vault,
            entry,
            cipher,
            pos: 0,
            batch: Zeroizing::new(Vec::new()),
            batch_first: 0,
            batch_len: 0,
        }
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.entry.size
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.entry.size == 0
    }

    fn load_batch(&mut self, chunk: u64) -> Result<()> {
        let total = self.entry.blocks.len() as u64;
        let n = (total - chunk).min(BATCH as u64) as usize;
        if self.batch.len() < n * BLOCK_SIZE {
            self.batch.resize(BATCH * BLOCK_SIZE, 0);
        }
        self.batch_len = 0;
        let phys = &self.entry.blocks[chunk as usize..chunk as usize + n];
        let cipher = &self.cipher;
        let storage: &dyn Storage = &*self.vault.storage;
        par_blocks(&mut self.batch, n, |i, block| {
            let b = phys[i];
            storage
                .read_at(block_offset(b), block)
                .map_err(|e| VaultError::io("reading file content", e))?;
            open_in_place(cipher, &ad(AD_DATA, b, chunk + i as u64, 0), block)
                .map_err(|()| VaultError::corrupt("a content block failed authentication"))
        })?;
        self.batch_first = chunk;
        self.batch_len = n;
        Ok(())
    }

    /// Returns the next run of bytes (up to the end of the current block), or an empty slice
    /// at the end of the file.
    pub fn read_chunk(&mut self) -> Result<&[u8]> {
        if self.pos >= self.entry.size {
            return Ok(&[]);
        }
        let chunk = self.pos / PAYLOAD_SIZE as u64;
        if chunk < self.batch_first || chunk >= self.batch_first + self.batch_len as u64 {
            self.load_batch(chunk)?;
        }
        let off = (self.pos % PAYLOAD_SIZE as u64) as usize;
        let n = ((PAYLOAD_SIZE - off) as u64).min(self.entry.size - self.pos) as usize;
        let at = (chunk - self.batch_first) as usize * BLOCK_SIZE + NONCE_LEN + off;
        self.pos += n as u64;
        Ok(&self.batch[at..at + n])
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let before = self.pos;
            let chunk = self.read_chunk().map_err(|e| match e {
                VaultError::Corrupt { .. } => io::Error::new(io::ErrorKind::InvalidData, e),
                other => io::Error::other(other),
            })?;
            if chunk.is_empty() {
                break;
            }
            let n = chunk.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&chunk[..n]);
            done += n;
            self.pos = before + n as u64;
        }
        Ok(done)
    }
}

impl Seek for FileReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.entry.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}
