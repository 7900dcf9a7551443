//! Streaming file writer and readers: content is sealed and opened in batches of blocks, on
//! several threads.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, TryLockError};

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

/// Most blocks sealed or opened per batch (8 MiB): large enough that starting the worker
/// threads is a small fraction of a batch.
const BATCH: usize = 128;
/// Blocks of the first batch a reader loads after opening or seeking (512 KiB), so that small
/// or random reads do not pay for a full batch; sequential reading doubles it up to [`BATCH`].
const FIRST_BATCH: usize = 8;

/// Threads used to seal or open a batch: the available cores, at most four (asked once: the
/// answer involves reading cgroup files).
fn workers() -> usize {
    static WORKERS: OnceLock<usize> = OnceLock::new();
    *WORKERS.get_or_init(|| {
        std::thread::available_parallelism().map(|t| t.get()).unwrap_or(1).clamp(1, 4)
    })
}

/// Runs `f(i, block_i)` for every block of `buf` (`n` blocks of [`BLOCK_SIZE`]) on up to
/// [`workers`] threads, the calling thread included.
///
/// Blocks are handed out one at a time rather than in fixed shares, so that a thread the
/// (shared, busy) machine does not schedule for a while delays the batch by at most one block:
/// the others take over its share.
fn par_blocks<F>(buf: &mut [u8], n: usize, f: F) -> Result<()>
where
    F: Fn(usize, &mut [u8]) -> Result<()> + Sync,
{
    let buf = &mut buf[..n * BLOCK_SIZE];
    let threads = workers().min(n);
    if threads <= 1 {
        for (i, block) in buf.chunks_mut(BLOCK_SIZE).enumerate() {
            f(i, block)?;
        }
        return Ok(());
    }
    let queue = Mutex::new(buf.chunks_mut(BLOCK_SIZE).enumerate());
    let work = || -> Result<()> {
        loop {
            // A poisoned lock means another worker panicked; its panic is reported below.
            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
            let Some((i, block)) = next else { return Ok(()) };
            if let Err(e) = f(i, block) {
                // Stop the others early: drain what is left.
                queue.lock().unwrap_or_else(|e| e.into_inner()).by_ref().for_each(drop);
                return Err(e);
            }
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut result = work();
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

/// Opens content block `chunk` of `entry` into `block`: read, authenticate, decrypt in place.
fn open_block(
    storage: &dyn Storage,
    entry: &FileEntry,
    chunk: u64,
    block: &mut [u8],
) -> Result<()> {
    let b = usize::try_from(chunk)
        .ok()
        .and_then(|i| entry.blocks.get(i))
        .copied()
        .ok_or_else(|| VaultError::corrupt("content block beyond the end of the file"))?;
    storage
        .read_at(block_offset(b), block)
        .map_err(|e| VaultError::io("reading file content", e))?;
    open_in_place(&entry.key, &ad(AD_DATA, b, chunk, 0), block)
        .map_err(|()| VaultError::corrupt("a content block failed authentication"))
}

/// Blocks the workers of [`stream_file`] may open ahead of the consumer (4 MiB).
const RING: usize = 64;

/// One buffer of [`stream_file`]'s ring.
struct Slot {
    /// The chunk this slot holds, or is being filled with.
    chunk: u64,
    /// `Some(true)` once the chunk is opened, `Some(false)` if that failed.
    done: Option<bool>,
    block: Zeroizing<Vec<u8>>,
}

/// Shared progress of [`stream_file`].
struct Claims {
    /// Next chunk to open.
    next: u64,
    /// Chunks handed to the sink so far.
    consumed: u64,
    /// Set on error, or when the consumer stops: workers exit.
    stop: bool,
    /// The first error a worker met.
    failure: Option<VaultError>,
    /// Workers waiting for room in the ring.
    waiting: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a worker panicked; the data is still consistent (a slot it held
    // has no result, which reads as an error).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the whole file `entry` in order, handing the payload of every block to `sink` as soon
/// as it is authenticated.
///
/// Worker threads (one per further core) open blocks ahead of the consumer into a ring of
/// [`RING`] buffers, and the calling thread opens blocks too whenever the next one in order is
/// not ready. Nobody waits at batch boundaries, and no thread sleeps unless it has nothing to
/// do, which matters on a busy machine, where every wake-up costs a turn in the run queue.
pub(crate) fn stream_file(
    storage: &dyn Storage,
    entry: &FileEntry,
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let n = entry.blocks.len() as u64;
    let payload = |chunk: u64| {
        let left = entry.size - chunk * PAYLOAD_SIZE as u64;
        NONCE_LEN..NONCE_LEN + (left.min(PAYLOAD_SIZE as u64) as usize)
    };
    let threads = workers().min(n.try_into().unwrap_or(usize::MAX));
    if threads <= 1 || n < 4 {
        let mut block = Zeroizing::new(vec![0u8; BLOCK_SIZE]);
        for chunk in 0..n {
            open_block(storage, entry, chunk, &mut block)?;
            sink(&block[payload(chunk)])?;
        }
        return Ok(());
    }
    let ring = RING.min(n as usize);
    let slots: Vec<Mutex<Slot>> = (0..ring)
        .map(|_| {
            Mutex::new(Slot {
                chunk: u64::MAX,
                done: None,
                block: Zeroizing::new(vec![0u8; BLOCK_SIZE]),
            })
        })
        .collect();
    let slot_of = |chunk: u64| &slots[(chunk % ring as u64) as usize];
    let claims =
        Mutex::new(Claims { next: 0, consumed: 0, stop: false, failure: None, waiting: 0 });
    let room = Condvar::new();
    let stop = |failure: Option<VaultError>| {
        let mut c = lock(&claims);
        c.stop = true;
        if c.failure.is_none() {
            c.failure = failure;
        }
        if c.waiting > 0 {
            room.notify_all();
        }
    };
    let failure = || {
        lock(&claims)
            .failure
            .take()
            .unwrap_or_else(|| VaultError::corrupt("a worker thread panicked"))
    };
    // Takes the next chunk to open and locks its slot, if the ring has room for it; with
    // `wait`, sleeps until it has. The slot is locked before the claim is published, so that
    // a consumer that sees the chunk claimed finds its slot locked or filled.
    let claim = |wait: bool| -> Option<(u64, MutexGuard<'_, Slot>)> {
        let mut c = lock(&claims);
        loop {
            if c.stop || c.next >= n {
                return None;
            }
            if c.next < c.consumed + ring as u64 {
                break;
            }
            if !wait {
                return None;
            }
            c.waiting += 1;
            c = room.wait(c).unwrap_or_else(|e| e.into_inner());
            c.waiting -= 1;
        }
        let chunk = c.next;
        c.next += 1;
        // Free: its previous chunk (chunk - ring) was consumed and released.
        let slot = lock(slot_of(chunk));
        drop(c);
        Some((chunk, slot))
    };
    let fill = |chunk: u64, mut slot: MutexGuard<'_, Slot>| {
        slot.chunk = chunk;
        let result = open_block(storage, entry, chunk, &mut slot.block);
        slot.done = Some(result.is_ok());
        drop(slot);
        if let Err(e) = result {
            stop(Some(e));
        }
    };
    let work = || {
        while let Some((chunk, slot)) = claim(true) {
            fill(chunk, slot);
        }
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut consume = || -> Result<()> {
            for chunk in 0..n {
                let mut slot = loop {
                    let claimed = lock(&claims).next > chunk;
                    if !claimed {
                        // Everything before `chunk` was claimed: this claims `chunk` itself,
                        // unless a worker just did, or failed and stopped the claims.
                        match claim(false) {
                            Some((c, slot)) => fill(c, slot),
                            None => {
                                let stopped = lock(&claims).stop;
                                if stopped {
                                    return Err(failure());
                                }
                            }
                        }
                        continue;
                    }
                    match slot_of(chunk).try_lock() {
                        Ok(slot) => break slot,
                        Err(TryLockError::Poisoned(e)) => break e.into_inner(),
                        // A worker is opening it: open a later block meanwhile, or wait.
                        Err(TryLockError::WouldBlock) => match claim(false) {
                            Some((c, slot)) => fill(c, slot),
                            None => break lock(slot_of(chunk)),
                        },
                    }
                };
                if slot.done.take() != Some(true) || slot.chunk != chunk {
                    drop(slot);
                    return Err(failure());
                }
                sink(&slot.block[payload(chunk)])?;
                drop(slot);
                let mut c = lock(&claims);
                c.consumed = chunk + 1;
                if c.waiting > 0 {
                    room.notify_all();
                }
            }
            Ok(())
        };
        let result = consume();
        stop(None);
        let mut panicked = false;
        for h in handles {
            panicked |= h.join().is_err();
        }
        match result {
            Ok(()) if panicked => Err(VaultError::corrupt("a worker thread panicked")),
            r => r,
        }
    })
}

/// A file being written that borrows no vault: [`Vault::begin_file`] starts it,
/// [`Vault::write_pending`] appends to it, [`Vault::commit_pending`] commits it. It owns its
/// file key, the blocks written so far (which its vault hands to nobody else meanwhile) and the
/// batch being filled.
///
/// Dropping it (or [`Vault::abort_pending`]) discards everything written: the blocks go back to
/// the vault (on its next allocation), their content under a key that no longer exists. Its
/// `Debug` output shows only the length written. It keeps the container open, and so holds its
/// lock, until dropped, even if the vault is dropped first.
pub struct PendingFile {
    name: String,
    key: SecretKey,
    /// Data blocks written so far, in file order.
    blocks: Vec<u32>,
    batch: Zeroizing<Vec<u8>>,
    /// Payload bytes in the current batch.
    fill: usize,
    size: u64,
    /// Most blocks per batch.
    max_batch: usize,
    /// A batch failed to be written: its buffer may hold a half-sealed mix, so the file can
    /// only be discarded.
    failed: bool,
    /// The container, for [`PendingFile::sync`].
    storage: Arc<dyn Storage>,
    /// Where the blocks go when the file is dropped: its vault's queue of returned blocks.
    returned: Arc<Mutex<Vec<u32>>>,
}

impl std::fmt::Debug for PendingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingFile").field("size", &self.size).finish_non_exhaustive()
    }
}

impl PendingFile {
    pub(crate) fn new(vault: &mut Vault, name: String) -> Self {
        let key = SecretKey::random(&mut vault.rng);
        PendingFile {
            name,
            key,
            blocks: Vec::new(),
            batch: Zeroizing::new(Vec::new()),
            fill: 0,
            size: 0,
            max_batch: BATCH,
            failed: false,
            storage: vault.storage.clone(),
            returned: vault.returned.clone(),
        }
    }

    pub(crate) fn belongs_to(&self, vault: &Vault) -> bool {
        Arc::ptr_eq(&self.returned, &vault.returned)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Sets the most blocks sealed and written at once (from 1 to 128, the default; a block
    /// carries [`crate::PAYLOAD_SIZE`] bytes), from the next batch on. With a shared vault, a
    /// [`Vault::write_pending`] call that completes a batch holds the vault for one seal and
    /// write of that many blocks; smaller batches keep it shorter, larger ones use more cores.
    pub fn set_batch_blocks(&mut self, blocks: usize) {
        self.max_batch = blocks.clamp(1, BATCH);
    }

    /// Makes the content written so far durable (fsync of the container) without the vault.
    /// Optional: [`Vault::commit_pending`] syncs anyway, but after a large file most of that
    /// work is done here, where it keeps no other user of a shared vault waiting.
    pub fn sync(&self) -> Result<()> {
        self.storage.sync().map_err(|e| VaultError::io("writing file content", e))
    }

    /// Appends `bytes`, sealing and writing every batch it fills.
    pub(crate) fn write(&mut self, vault: &mut Vault, mut bytes: &[u8]) -> Result<()> {
        if self.failed {
            return Err(VaultError::Poisoned);
        }
        while !bytes.is_empty() {
            if self.batch.is_empty() {
                // Allocated on first use, no larger than the first write needs: a small file
                // never pays for a whole batch.
                let blocks = usize::try_from(blocks_for(bytes.len() as u64)).unwrap_or(BATCH);
                let blocks = blocks.clamp(1, self.max_batch);
                self.batch = Zeroizing::new(vec![0u8; blocks * BLOCK_SIZE]);
            }
            let i = self.fill / PAYLOAD_SIZE;
            let off = self.fill % PAYLOAD_SIZE;
            let n = (PAYLOAD_SIZE - off).min(bytes.len());
            let at = i * BLOCK_SIZE + NONCE_LEN + off;
            self.batch[at..at + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            self.size += n as u64;
            bytes = &bytes[n..];
            let capacity = self.batch.len() / BLOCK_SIZE;
            if self.fill == capacity * PAYLOAD_SIZE {
                self.flush_batch(vault)?;
                let next = (capacity * 2).min(self.max_batch);
                if next != capacity {
                    // A large file: double the batch, up to the limit. (The old buffer holds
                    // only sealed blocks now.)
                    self.batch = Zeroizing::new(vec![0u8; next * BLOCK_SIZE]);
                }
            }
        }
        Ok(())
    }

    /// Seals the current batch and writes it to freshly allocated random blocks. Any error
    /// leaves the file unusable.
    pub(crate) fn flush_batch(&mut self, vault: &mut Vault) -> Result<()> {
        if self.failed {
            return Err(VaultError::Poisoned);
        }
        if self.fill == 0 {
            return Ok(());
        }
        // Until this batch is on disk the file is unusable: an error past this point leaves
        // its buffer half sealed, and one before it (a full vault) would otherwise leave the
        // caller unsure which bytes were taken.
        self.failed = true;
        let n = self.fill.div_ceil(PAYLOAD_SIZE);
        // Zero the unused tail of a partial last block (it is encrypted like the rest).
        let tail = self.fill % PAYLOAD_SIZE;
        if tail != 0 {
            let start = (n - 1) * BLOCK_SIZE + NONCE_LEN + tail;
            let end = n * BLOCK_SIZE - crate::format::TAG_LEN;
            self.batch[start..end].fill(0);
        }
        let phys = vault.alloc(n)?;
        let mut nonces = vec![[0u8; NONCE_LEN]; n];
        for nonce in &mut nonces {
            vault.rng.fill_bytes(nonce);
        }
        let first_chunk = self.blocks.len() as u64;
        let key = &self.key;
        let storage: &dyn Storage = &*vault.storage;
        // Seal on every core, then write from this thread alone: buffered writes to one file
        // are serialized by the kernel anyway (ext4 and XFS hold the inode lock), and
        // concurrent writers only spin on it.
        let result = par_blocks(&mut self.batch, n, |i, block| {
            seal_in_place(key, &nonces[i], &ad(AD_DATA, phys[i], first_chunk + i as u64, 0), block)
        })
        .and_then(|()| {
            for (block, &b) in self.batch.chunks(BLOCK_SIZE).zip(&phys) {
                storage
                    .write_at(block_offset(b), block)
                    .map_err(|e| VaultError::io("writing file content", e))?;
            }
            Ok(())
        });
        if let Err(e) = result {
            vault.release(&phys);
            return Err(e);
        }
        self.blocks.extend_from_slice(&phys);
        self.fill = 0;
        self.failed = false;
        Ok(())
    }

    /// The data blocks this file holds so far.
    #[cfg(test)]
    pub(crate) fn blocks(&self) -> &[u32] {
        &self.blocks
    }

    /// The file's name and catalog entry, once its last batch is written. The blocks now
    /// belong to the caller (the commit), not to this handle's drop.
    pub(crate) fn into_entry(mut self) -> (String, FileEntry) {
        debug_assert_eq!(blocks_for(self.size), self.blocks.len() as u64);
        let entry = FileEntry {
            size: self.size,
            key: self.key.clone(),
            blocks: std::mem::take(&mut self.blocks),
        };
        (std::mem::take(&mut self.name), entry)
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.blocks.is_empty() {
            let blocks = std::mem::take(&mut self.blocks);
            lock(&self.returned).extend(blocks);
        }
    }
}

/// A file being written: bytes go in through [`FileWriter::write_bytes`] or [`std::io::Write`]
/// and the file is committed by [`FileWriter::finish`]. Dropping it without `finish` discards
/// everything written (the blocks are freed; their content is under a key that no longer
/// exists). It borrows the vault for the whole write; [`PendingFile`] is the same without the
/// borrow.
pub struct FileWriter<'v> {
    vault: &'v mut Vault,
    /// `None` only while finishing.
    file: Option<PendingFile>,
}

impl std::fmt::Debug for FileWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter").field("size", &self.len()).finish_non_exhaustive()
    }
}

impl<'v> FileWriter<'v> {
    pub(crate) fn new(vault: &'v mut Vault, file: PendingFile) -> Self {
        FileWriter { vault, file: Some(file) }
    }

    /// Appends `bytes` to the file. After an error the writer is unusable (further calls and
    /// [`FileWriter::finish`] fail with [`VaultError::Poisoned`]); drop it and start again.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self.file.as_mut().ok_or(VaultError::Poisoned)?;
        self.vault.write_pending(file, bytes)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.file.as_ref().map_or(0, PendingFile::len)
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the last batch and commits the file (one atomic, durable commit). Returns the
    /// file's length.
    pub fn finish(mut self) -> Result<u64> {
        let file = self.file.take().ok_or(VaultError::Poisoned)?;
        self.vault.commit_pending(file)
    }
}

impl Drop for FileWriter<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.file.take() {
            self.vault.abort_pending(file);
        }
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
    pos: u64,
    batch: Zeroizing<Vec<u8>>,
    /// Chunk index of the first block held in `batch`, and how many are held.
    batch_first: u64,
    batch_len: usize,
    /// Blocks the next sequential batch loads (grows from [`FIRST_BATCH`] to [`BATCH`]).
    window: usize,
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
        FileReader {
            vault,
            entry,
            pos: 0,
            batch: Zeroizing::new(Vec::new()),
            batch_first: 0,
            batch_len: 0,
            window: FIRST_BATCH,
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
        let sequential = self.batch_len > 0 && chunk == self.batch_first + self.batch_len as u64;
        self.window = if sequential { (self.window * 2).min(BATCH) } else { FIRST_BATCH };
        let total = self.entry.blocks.len() as u64;
        let n = (total - chunk).min(self.window as u64) as usize;
        if self.batch.len() < n * BLOCK_SIZE {
            // A fresh buffer, not `resize`: reallocating would free the old plaintext unwiped.
            self.batch = Zeroizing::new(vec![0u8; n * BLOCK_SIZE]);
        }
        self.batch_len = 0;
        let phys = &self.entry.blocks[chunk as usize..chunk as usize + n];
        let key = &self.entry.key;
        let storage: &dyn Storage = &*self.vault.storage;
        par_blocks(&mut self.batch, n, |i, block| {
            let b = phys[i];
            storage
                .read_at(block_offset(b), block)
                .map_err(|e| VaultError::io("reading file content", e))?;
            open_in_place(key, &ad(AD_DATA, b, chunk + i as u64, 0), block)
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
