//! Where the container's bytes live: a file, a block device, or memory.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

/// Random-access byte storage holding one container.
///
/// Implementations must be usable from several threads at once: reads, and a
/// [`Storage::sync`] while another thread writes (see [`crate::PendingFile::sync`]).
pub trait Storage: Send + Sync {
    /// Total size in bytes.
    fn len(&self) -> u64;
    /// Whether the storage holds no bytes at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset` (never beyond [`Storage::len`]).
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes every completed write durable (fsync).
    fn sync(&self) -> io::Result<()>;
}

/// How a process holds a container file (an advisory `flock(2)` lock on the open file).
///
/// Every process that writes a container holds [`Lock::Exclusive`] from before it reads the
/// header until it closes the container, so writers never interleave and no commit is lost;
/// readers hold [`Lock::Shared`], so they never see a commit half-way. The lock lives in the
/// kernel, not on disk: it leaves no trace in the container or beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// Readers: any number at once, never while a writer holds the container.
    Shared,
    /// One writer, and no reader, at a time.
    Exclusive,
}

/// A container in a regular file or on a block device, locked (see [`Lock`]) for as long as
/// this value lives.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    len: u64,
}

/// Takes `lock` on `file`; without `wait`, another holder makes it fail at once with
/// [`io::ErrorKind::WouldBlock`].
fn take_lock(file: &File, lock: Lock, wait: bool) -> io::Result<()> {
    use rustix::fs::FlockOperation as Op;
    let op = match (lock, wait) {
        (Lock::Shared, true) => Op::LockShared,
        (Lock::Shared, false) => Op::NonBlockingLockShared,
        (Lock::Exclusive, true) => Op::LockExclusive,
        (Lock::Exclusive, false) => Op::NonBlockingLockExclusive,
    };
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "the container is locked by another process",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

impl FileStorage {
    /// Opens an existing container file or block device for reading and writing, under an
    /// exclusive lock; fails with [`io::ErrorKind::WouldBlock`] if another process (or another
    /// open handle) holds it.
    pub fn open(path: &Path) -> io::Result<Self> {
        FileStorage::open_locked(path, Lock::Exclusive, false)
    }

    /// Opens an existing container under `lock`: [`Lock::Exclusive`] opens it for reading and
    /// writing, [`Lock::Shared`] for reading only. With `wait`, blocks until the lock is free;
    /// without, fails at once with [`io::ErrorKind::WouldBlock`].
    pub fn open_locked(path: &Path, lock: Lock, wait: bool) -> io::Result<Self> {
        let write = lock == Lock::Exclusive;
        let mut file = File::options().read(true).write(write).open(path)?;
        take_lock(&file, lock, wait)?;
        let len = file.seek(SeekFrom::End(0))?;
        Ok(FileStorage { file, len })
    }

    /// Creates a new file of `len` bytes under an exclusive lock; fails if the path exists.
    /// The content is not yet random: [`crate::Vault::create`] fills it.
    pub fn create_new(path: &Path, len: u64) -> io::Result<Self> {
        let file = File::options().read(true).write(true).create_new(true).open(path)?;
        take_lock(&file, Lock::Exclusive, false)?;
        file.set_len(len)?;
        Ok(FileStorage { file, len })
    }
}

impl Storage for FileStorage {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write beyond the end of the container",
            ));
        }
        self.file.write_all_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// A container held in memory (tests, fuzzing).
#[derive(Debug, Default)]
pub struct MemStorage {
    bytes: Mutex<Vec<u8>>,
}

impl MemStorage {
    /// A zero-filled in-memory container of `len` bytes.
    pub fn new(len: usize) -> Self {
        MemStorage { bytes: Mutex::new(vec![0u8; len]) }
    }

    /// An in-memory container holding exactly `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        MemStorage { bytes: Mutex::new(bytes) }
    }

    /// A copy of the current bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A poisoned lock only means another thread panicked while copying bytes; the bytes
        // themselves are still a valid Vec.
        self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn range(offset: u64, n: usize, len: usize) -> io::Result<std::ops::Range<usize>> {
    let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
    let end = start.checked_add(n).filter(|&e| e <= len).ok_or(io::ErrorKind::UnexpectedEof)?;
    Ok(start..end)
}

impl Storage for MemStorage {
    fn len(&self) -> u64 {
        self.lock().len() as u64
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let bytes = self.lock();
        let r = range(offset, buf.len(), bytes.len())?;
        buf.copy_from_slice(&bytes[r]);
        Ok(())
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut bytes = self.lock();
        let len = bytes.len();
        let r = range(offset, buf.len(), len)?;
        bytes[r].copy_from_slice(buf);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: Storage + ?Sized> Storage for std::sync::Arc<S> {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        (**self).write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        (**self).sync()
    }
}
