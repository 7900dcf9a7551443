//! The container: header slots, volumes, block allocation and atomic commits.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use zeroize::Zeroizing;

use crate::catalog::{Catalog, FileEntry, check_name};
use crate::error::{Result, VaultError};
use crate::format::{
    AD_COMMIT, AD_KEYS, AD_META, BLOCK_SIZE, COMMIT_OFF, COMMIT_PLAIN, COMMIT_PLAIN_V2, KEYS_OFF,
    KEYS_PLAIN, KdfCost, MAX_CONTAINER_SIZE, MAX_REPLICAS, MAX_VOLUMES, MIN_CONTAINER_SIZE,
    NO_BLOCK, NONCE_LEN, PAYLOAD_SIZE, Reader, SALT_LEN, SecretKey, TAG_LEN, ad, block_offset,
    fill_noise, open_in_place, open_small, password_key, seal_in_place, seal_small, slot_offset,
};
use crate::io::{FileReader, FileWriter, PendingFile, stream_file};
use crate::storage::{FileStorage, Lock, Storage};

/// Bytes at the start of a metadata block's payload (version 3): the length of its piece of
/// the catalog, the number of copies, and where every copy of the next block is.
const META_HEAD: usize = 4 + 1 + 4 * MAX_REPLICAS;
/// Catalog bytes carried by one metadata block (version 3).
const META_DATA: usize = PAYLOAD_SIZE - META_HEAD;
/// Catalog bytes carried by one version 2 metadata block (next pointer and length first).
const META_DATA_V2: usize = PAYLOAD_SIZE - 8;

/// Copies of every metadata block a container of `nblocks` data blocks aims for: 2 in the
/// smallest containers, [`MAX_REPLICAS`] from 32 MiB up (fewer when the vault is nearly full).
/// A hidden volume's catalog is lost only if every copy of one of its metadata blocks is
/// overwritten (by a less hidden volume opened without it); each copy is at an independent
/// random position, so after writes over a fraction `f` of the container that happens with
/// probability about `k·f^r` for `k` metadata blocks (one per GiB stored) and `r` copies.
fn replicas_for(nblocks: u32) -> usize {
    (nblocks as usize).saturating_add(1).div_euclid(64).clamp(2, MAX_REPLICAS)
}

/// How [`Vault::open_with`] and [`Vault::add_volume_with`] open a container file.
///
/// By default the container is opened for reading and writing under an exclusive lock, and
/// another process holding it makes the open fail at once with [`VaultError::InUse`].
///
/// ```
/// use samizdat_vault::OpenOptions;
/// let readers = OpenOptions::new().read_only(true).wait(true);
/// # let _ = readers;
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    wait: bool,
    read_only: bool,
    replace_hidden: bool,
}

impl OpenOptions {
    /// Read-write, exclusive, fail at once if the container is in use.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wait for another process to close the container instead of failing with
    /// [`VaultError::InUse`].
    pub fn wait(mut self, on: bool) -> Self {
        self.wait = on;
        self
    }

    /// Open for reading only, under a shared lock: readers run together but never during a
    /// write (so they never see a commit half-way); writes fail with [`VaultError::ReadOnly`].
    pub fn read_only(mut self, on: bool) -> Self {
        self.read_only = on;
        self
    }

    /// For [`Vault::add_volume_with`]: write the new volume into the slot above the parent
    /// even though a hidden volume may already be there (it is then destroyed). Without it,
    /// `add_volume` refuses with [`VaultError::MayReplaceHidden`].
    pub fn danger_replace_hidden(mut self, on: bool) -> Self {
        self.replace_hidden = on;
        self
    }

    fn lock(&self) -> Lock {
        if self.read_only { Lock::Shared } else { Lock::Exclusive }
    }
}

/// Name and size of one stored file, as returned by [`Vault::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileInfo {
    /// The file's name.
    pub name: String,
    /// The file's length in bytes.
    pub size: u64,
}

/// One open volume.
pub(crate) struct Volume {
    /// Volume master key.
    vmk: SecretKey,
    /// Master key of the volume one slot below (every volume but slot 0 has one).
    prev: Option<SecretKey>,
    /// Generation of the last commit.
    generation: u64,
    /// Committed catalog.
    pub(crate) catalog: Catalog,
    /// Metadata blocks of the committed catalog (every copy).
    meta_blocks: Vec<u32>,
}

/// An open vault: one container, the volume its password opened (the *active* volume, where
/// all reads and writes go), every less hidden volume below it, and, in protected mode, the
/// volumes of the extra passwords.
///
/// Every write ([`Vault::put`], [`FileWriter::finish`], [`Vault::commit_pending`],
/// [`Vault::delete`], [`Vault::rename`]) is one atomic, durable commit: after a crash the
/// container opens at the last completed one. One process at a time may have a container open
/// for writing.
pub struct Vault {
    /// Shared with every [`PendingFile`] of this vault (for [`PendingFile::sync`]).
    pub(crate) storage: Arc<dyn Storage>,
    nblocks: u32,
    /// Opened volumes by header slot.
    pub(crate) volumes: Vec<Option<Volume>>,
    /// Slot of the active volume.
    pub(crate) active: usize,
    /// For every data block, how many opened volumes reference it (0 = free).
    refs: Vec<u8>,
    /// For every data block, the slots (bit mask) whose metadata prefers it (see
    /// [`meta_position`]); content is placed elsewhere while there is room.
    reserved: Vec<u16>,
    free: u64,
    pub(crate) rng: ChaCha20Rng,
    poisoned: bool,
    /// Opened with [`OpenOptions::read_only`]: every write is refused.
    read_only: bool,
    /// Blocks of dropped [`PendingFile`]s, given back (see [`Vault::reclaim`]) before the next
    /// allocation. Also tells this vault's pending files from another vault's.
    pub(crate) returned: Arc<Mutex<Vec<u32>>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Deliberately silent about slots and volume counts: logs must not reveal them.
        f.debug_struct("Vault").field("capacity", &self.capacity()).finish_non_exhaustive()
    }
}

fn slot_key(pw_key: &SecretKey, slot: usize) -> SecretKey {
    pw_key.derive("samizdat vault v2 header slot key", &[slot as u8])
}

fn commit_key(vmk: &SecretKey) -> SecretKey {
    vmk.derive("samizdat vault v2 commit record key", &[])
}

fn meta_key(vmk: &SecretKey) -> SecretKey {
    vmk.derive("samizdat vault v2 metadata key", &[])
}

fn position_key(vmk: &SecretKey) -> SecretKey {
    vmk.derive("samizdat vault v3 metadata positions", &[])
}

/// Attempts at a volume's own pseudo-random metadata positions before any free block is taken.
const META_ATTEMPTS: u32 = 16;

/// The `attempt`-th preferred position of copy `copy` of metadata block `seq` for commits of
/// `parity` (generation mod 2): a keyed hash of the volume, so nobody without the volume's
/// key can compute it, and the same blocks are rewritten commit after commit. A volume's
/// metadata therefore occupies a stable set of about `2 × copies × blocks` positions instead
/// of fresh random ones at every commit, which would wear away the hidden volumes above a
/// decoy a few blocks per commit.
fn meta_position(key: &SecretKey, parity: u64, seq: u32, copy: usize, attempt: u32, n: u32) -> u32 {
    let mut h = blake3::Hasher::new_keyed(&key.0);
    h.update(&parity.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(&(copy as u32).to_le_bytes());
    h.update(&attempt.to_le_bytes());
    let mut x = [0u8; 8];
    x.copy_from_slice(&h.finalize().as_bytes()[..8]);
    (u64::from_le_bytes(x) % u64::from(n.max(1))) as u32
}

/// Tries the password key on every header slot (always all of them, so that the time does not
/// depend on where, or whether, a volume is found). Returns the highest matching slot.
fn find_slot(header: &[u8], pw_key: &SecretKey) -> Option<(usize, SecretKey)> {
    let mut found = None;
    for slot in 0..MAX_VOLUMES {
        let key = slot_key(pw_key, slot);
        let at = slot_offset(slot) + KEYS_OFF;
        let rec = open_small(&key, &ad(AD_KEYS, slot as u32, 0, 0), &header[at..], KEYS_PLAIN);
        if let Some(plain) = rec {
            let mut vmk = SecretKey([0u8; 32]);
            vmk.0.copy_from_slice(&plain[..32]);
            found = Some((slot, vmk));
        }
    }
    found
}

/// A decoded commit record.
struct CommitRecord {
    prev: Option<SecretKey>,
    generation: u64,
    /// First metadata block of every copy of the catalog (one for version 2).
    heads: Vec<u32>,
    /// Metadata blocks per copy.
    count: u32,
    len: u64,
    /// Written by format version 2 (single copy, `next ‖ used` block layout).
    v2: bool,
}

/// A fast CSPRNG (nonces, keys, filler) seeded from the operating system.
fn new_rng() -> Result<ChaCha20Rng> {
    let mut seed = Zeroizing::new([0u8; 32]);
    OsRng.try_fill_bytes(&mut *seed).map_err(|e| {
        VaultError::io("seeding the random generator", std::io::Error::other(e.to_string()))
    })?;
    Ok(ChaCha20Rng::from_seed(*seed))
}

/// Fails with [`VaultError::NoRoom`] if the file system that would hold `path` has less than
/// `size` bytes free for this user. A file system that cannot say is not second-guessed.
fn check_room(path: &Path, size: u64) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(st) = rustix::fs::statvfs(dir) else { return Ok(()) };
    let available = st.f_bavail.saturating_mul(st.f_frsize);
    if available < size {
        return Err(VaultError::NoRoom { needed: size, available });
    }
    Ok(())
}

fn nblocks_for_len(len: u64) -> Result<u32> {
    if len < MIN_CONTAINER_SIZE {
        return Err(VaultError::TooSmall { size: len, min: MIN_CONTAINER_SIZE });
    }
    let n = (len / BLOCK_SIZE as u64 - 1).min(u64::from(u32::MAX - 1));
    u32::try_from(n).map_err(|_| VaultError::TooLarge { size: len, max: MAX_CONTAINER_SIZE })
}

impl Vault {
    /// Creates a container file of `size` bytes (rounded down to a multiple of 64 KiB) at
    /// `path`, fills it with random bytes and creates its first volume, opened by `password`.
    ///
    /// Fails with [`VaultError::TooSmall`] below [`MIN_CONTAINER_SIZE`], with
    /// [`VaultError::PathExists`] if the path exists, and with [`VaultError::NoRoom`] (before
    /// writing anything) if the file system lacks the space. On error the partial file is
    /// removed. The returned vault holds the container's exclusive lock.
    pub fn create(path: impl AsRef<Path>, size: u64, password: &[u8]) -> Result<Vault> {
        Vault::create_with_progress(path, size, password, &mut |_, _| {})
    }

    /// [`Vault::create`], calling `progress(done, total)` (bytes) while the container is
    /// filled with random bytes, which is most of the time it takes.
    pub fn create_with_progress(
        path: impl AsRef<Path>,
        size: u64,
        password: &[u8],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Vault> {
        let path = path.as_ref();
        if password.is_empty() {
            return Err(VaultError::EmptyPassword);
        }
        if size < MIN_CONTAINER_SIZE {
            return Err(VaultError::TooSmall { size, min: MIN_CONTAINER_SIZE });
        }
        let size = size - size % BLOCK_SIZE as u64;
        nblocks_for_len(size)?;
        if size > MAX_CONTAINER_SIZE {
            return Err(VaultError::TooLarge { size, max: MAX_CONTAINER_SIZE });
        }
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(VaultError::PathExists { path: path.display().to_string() });
        }
        check_room(path, size)?;
        let storage = FileStorage::create_new(path, size).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                VaultError::PathExists { path: path.display().to_string() }
            } else {
                VaultError::io("creating the container file", e)
            }
        })?;
        let result =
            Vault::create_in_with_progress(Box::new(storage), password, KdfCost::FORMAT, progress);
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// Opens the volume that `password` unlocks in the container at `path` (a file or a block
    /// device), together with every less hidden volume below it, for reading and writing.
    ///
    /// A wrong password gives [`VaultError::NoVolume`], exactly as a container without such a
    /// volume does, after the same work. Another process holding the container gives
    /// [`VaultError::InUse`] (see [`Vault::open_with`] to wait or to read only).
    pub fn open(path: impl AsRef<Path>, password: &[u8]) -> Result<Vault> {
        Vault::open_with(path, password, &[], OpenOptions::new())
    }

    /// Protected mode: opens the volume of `password` for reading and writing, and the volumes
    /// of the `protect` passwords (and the ones below them) read-only, so that writes never
    /// land on any of their blocks. Use it to write to a decoy volume without risking the
    /// hidden ones.
    pub fn open_protected(
        path: impl AsRef<Path>,
        password: &[u8],
        protect: &[&[u8]],
    ) -> Result<Vault> {
        Vault::open_with(path, password, protect, OpenOptions::new())
    }

    /// [`Vault::open_protected`] with [`OpenOptions`]: waiting for another process instead
    /// of failing with [`VaultError::InUse`], or reading only under a shared lock.
    ///
    /// The lock is taken before the header is read and held until the vault is dropped, so
    /// every commit of another process is either entirely visible or not yet started.
    pub fn open_with(
        path: impl AsRef<Path>,
        password: &[u8],
        protect: &[&[u8]],
        options: OpenOptions,
    ) -> Result<Vault> {
        let storage = FileStorage::open_locked(path.as_ref(), options.lock(), options.wait)
            .map_err(|e| VaultError::io("opening the container", e))?;
        let mut vault = Vault::open_in(Box::new(storage), password, protect, KdfCost::FORMAT)?;
        vault.read_only = options.read_only;
        Ok(vault)
    }

    /// Adds a new volume, more hidden than the one `parent_password` opens, in the next header
    /// slot above it, and returns the vault opened on the new volume.
    ///
    /// **Refuses with [`VaultError::MayReplaceHidden`]**: if a volume already exists in the
    /// slot above the parent it would be replaced and its content lost, and nothing in the
    /// container can tell whether one does. Use [`Vault::add_volume_with`] and
    /// [`OpenOptions::danger_replace_hidden`] once you are sure the parent is the most hidden
    /// volume.
    pub fn add_volume(
        path: impl AsRef<Path>,
        parent_password: &[u8],
        new_password: &[u8],
    ) -> Result<Vault> {
        Vault::add_volume_with(path, parent_password, new_password, OpenOptions::new())
    }

    /// [`Vault::add_volume`] with [`OpenOptions`] (`read_only` is ignored: adding writes).
    pub fn add_volume_with(
        path: impl AsRef<Path>,
        parent_password: &[u8],
        new_password: &[u8],
        options: OpenOptions,
    ) -> Result<Vault> {
        if new_password.is_empty() {
            return Err(VaultError::EmptyPassword);
        }
        if !options.replace_hidden {
            return Err(VaultError::MayReplaceHidden);
        }
        let storage = FileStorage::open_locked(path.as_ref(), Lock::Exclusive, options.wait)
            .map_err(|e| VaultError::io("opening the container", e))?;
        Vault::add_volume_in(Box::new(storage), parent_password, new_password, KdfCost::FORMAT)
    }

    /// [`Vault::create`] on any [`Storage`] with an explicit KDF cost. Use
    /// [`KdfCost::FORMAT`] for real containers; other costs are for tests and fuzzing.
    pub fn create_in(storage: Box<dyn Storage>, password: &[u8], kdf: KdfCost) -> Result<Vault> {
        Vault::create_in_with_progress(storage, password, kdf, &mut |_, _| {})
    }

    fn create_in_with_progress(
        storage: Box<dyn Storage>,
        password: &[u8],
        kdf: KdfCost,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Vault> {
        if password.is_empty() {
            return Err(VaultError::EmptyPassword);
        }
        let nblocks = nblocks_for_len(storage.len())?;
        let mut rng = new_rng()?;
        // Fill everything with random bytes: unused space must look like the rest.
        let mut chunk = vec![0u8; 1 << 20];
        let len = storage.len();
        let mut off = 0u64;
        while off < len {
            let n = (len - off).min(chunk.len() as u64) as usize;
            fill_noise(&mut rng, &mut chunk[..n]);
            storage
                .write_at(off, &chunk[..n])
                .map_err(|e| VaultError::io("filling the container with random bytes", e))?;
            off += n as u64;
            progress(off, len);
        }
        let mut salt = [0u8; SALT_LEN];
        storage
            .read_at(0, &mut salt)
            .map_err(|e| VaultError::io("reading the container header", e))?;
        let pw_key = password_key(password, &salt, kdf)?;
        let mut vault = Vault {
            storage: Arc::from(storage),
            nblocks,
            volumes: (0..MAX_VOLUMES).map(|_| None).collect(),
            active: 0,
            refs: vec![0u8; nblocks as usize],
            reserved: vec![0u16; nblocks as usize],
            free: u64::from(nblocks),
            rng,
            poisoned: false,
            read_only: false,
            returned: Arc::default(),
        };
        vault.init_volume(0, &pw_key, None)?;
        Ok(vault)
    }

    /// [`Vault::open_protected`] on any [`Storage`] with an explicit KDF cost.
    pub fn open_in(
        storage: Box<dyn Storage>,
        password: &[u8],
        protect: &[&[u8]],
        kdf: KdfCost,
    ) -> Result<Vault> {
        let nblocks = nblocks_for_len(storage.len())?;
        let mut header = Zeroizing::new(vec![0u8; BLOCK_SIZE]);
        storage
            .read_at(0, &mut header)
            .map_err(|e| VaultError::io("reading the container header", e))?;
        let rng = new_rng()?;
        let mut vault = Vault {
            storage: Arc::from(storage),
            nblocks,
            volumes: (0..MAX_VOLUMES).map(|_| None).collect(),
            active: 0,
            refs: vec![0u8; nblocks as usize],
            reserved: vec![0u16; nblocks as usize],
            free: u64::from(nblocks),
            rng,
            poisoned: false,
            read_only: false,
            returned: Arc::default(),
        };
        let salt = &header[..SALT_LEN];
        let pw_key = password_key(password, salt, kdf)?;
        let (slot, vmk) = find_slot(&header, &pw_key).ok_or(VaultError::NoVolume)?;
        vault.active = slot;
        vault.load_chain(&header, slot, vmk)?;
        for p in protect {
            let key = password_key(p, salt, kdf)?;
            let (slot, vmk) = find_slot(&header, &key).ok_or(VaultError::NoVolume)?;
            vault.load_chain(&header, slot, vmk)?;
        }
        vault.count_refs()?;
        for slot in 0..MAX_VOLUMES {
            vault.reserve_meta_positions(slot);
        }
        Ok(vault)
    }

    /// [`Vault::add_volume`] on any [`Storage`] with an explicit KDF cost.
    pub fn add_volume_in(
        storage: Box<dyn Storage>,
        parent_password: &[u8],
        new_password: &[u8],
        kdf: KdfCost,
    ) -> Result<Vault> {
        if new_password.is_empty() {
            return Err(VaultError::EmptyPassword);
        }
        let mut vault = Vault::open_in(storage, parent_password, &[], kdf)?;
        let slot = vault.active + 1;
        if slot >= MAX_VOLUMES {
            return Err(VaultError::NoFreeSlot { max: MAX_VOLUMES });
        }
        let mut header = Zeroizing::new(vec![0u8; BLOCK_SIZE]);
        vault
            .storage
            .read_at(0, &mut header)
            .map_err(|e| VaultError::io("reading the container header", e))?;
        let pw_key = password_key(new_password, &header[..SALT_LEN], kdf)?;
        if find_slot(&header, &pw_key).is_some() {
            return Err(VaultError::PasswordInUse);
        }
        let prev = vault.volume(vault.active)?.vmk.clone();
        vault.init_volume(slot, &pw_key, Some(prev))?;
        vault.active = slot;
        Ok(vault)
    }

    /// Writes a fresh, empty volume into `slot`: its first commit record, then its keys record.
    fn init_volume(
        &mut self,
        slot: usize,
        pw_key: &SecretKey,
        prev: Option<SecretKey>,
    ) -> Result<()> {
        let vmk = SecretKey::random(&mut self.rng);
        let volume = Volume {
            vmk,
            prev,
            generation: 0,
            catalog: Catalog::default(),
            meta_blocks: Vec::new(),
        };
        // Stale bytes in the other commit position are replaced by fresh random ones.
        let mut filler = vec![0u8; NONCE_LEN + COMMIT_PLAIN + TAG_LEN];
        self.rng.fill_bytes(&mut filler);
        self.write_header(slot_offset(slot) + COMMIT_OFF[0], &filler)?;
        self.write_commit_record(slot, &volume, 1, &[], 0, 0)?;
        self.sync("writing the new volume")?;
        let keys = seal_small(
            &slot_key(pw_key, slot),
            &mut self.rng,
            &ad(AD_KEYS, slot as u32, 0, 0),
            &volume.vmk.0,
        )?;
        self.write_header(slot_offset(slot) + KEYS_OFF, &keys)?;
        self.sync("writing the new volume")?;
        self.volumes[slot] = Some(Volume { generation: 1, ..volume });
        self.reserve_meta_positions(slot);
        Ok(())
    }

    fn write_header(&self, offset: usize, bytes: &[u8]) -> Result<()> {
        self.storage
            .write_at(offset as u64, bytes)
            .map_err(|e| VaultError::io("writing the container header", e))
    }

    fn sync(&self, context: &'static str) -> Result<()> {
        self.storage.sync().map_err(|e| VaultError::io(context, e))
    }

    fn write_commit_record(
        &mut self,
        slot: usize,
        volume: &Volume,
        generation: u64,
        heads: &[u32],
        count: u32,
        len: u64,
    ) -> Result<()> {
        let mut plain = Zeroizing::new(Vec::with_capacity(COMMIT_PLAIN));
        match &volume.prev {
            Some(k) => {
                plain.push(1);
                plain.extend_from_slice(&k.0);
            }
            None => {
                plain.push(0);
                plain.extend_from_slice(&[0u8; 32]);
            }
        }
        plain.extend_from_slice(&generation.to_le_bytes());
        plain.extend_from_slice(&count.to_le_bytes());
        plain.extend_from_slice(&len.to_le_bytes());
        plain.push(heads.len() as u8);
        for i in 0..MAX_REPLICAS {
            plain.extend_from_slice(&heads.get(i).copied().unwrap_or(NO_BLOCK).to_le_bytes());
        }
        let which = (generation % 2) as usize;
        let rec = seal_small(
            &commit_key(&volume.vmk),
            &mut self.rng,
            &ad(AD_COMMIT, slot as u32, which as u64, 0),
            &plain,
        )?;
        self.write_header(slot_offset(slot) + COMMIT_OFF[which], &rec)
    }

    /// Decodes a version 3 commit record.
    fn parse_commit(plain: &[u8]) -> Result<CommitRecord> {
        let mut r = Reader::new(plain);
        let has_prev = r.u8()?;
        let prev_key = r.key()?;
        let generation = r.u64()?;
        let count = r.u32()?;
        let len = r.u64()?;
        let copies = usize::from(r.u8()?);
        if copies > MAX_REPLICAS || (copies == 0) != (count == 0) {
            return Err(VaultError::corrupt("commit record copy count out of range"));
        }
        let mut heads = Vec::with_capacity(copies);
        for i in 0..MAX_REPLICAS {
            let h = r.u32()?;
            if i < copies {
                heads.push(h);
            }
        }
        Ok(CommitRecord {
            prev: (has_prev == 1).then_some(prev_key),
            generation,
            heads,
            count,
            len,
            v2: false,
        })
    }

    /// Decodes a version 2 commit record (one copy of the catalog).
    fn parse_commit_v2(plain: &[u8]) -> Result<CommitRecord> {
        let mut r = Reader::new(plain);
        let has_prev = r.u8()?;
        let prev_key = r.key()?;
        let generation = r.u64()?;
        let head = r.u32()?;
        let count = r.u32()?;
        let len = r.u64()?;
        let heads = if count == 0 { Vec::new() } else { vec![head] };
        Ok(CommitRecord {
            prev: (has_prev == 1).then_some(prev_key),
            generation,
            heads,
            count,
            len,
            v2: true,
        })
    }

    fn read_commit_record(header: &[u8], slot: usize, vmk: &SecretKey) -> Result<CommitRecord> {
        let key = commit_key(vmk);
        let mut best: Option<CommitRecord> = None;
        for (which, off) in COMMIT_OFF.iter().enumerate() {
            let at = slot_offset(slot) + off;
            let ad = ad(AD_COMMIT, slot as u32, which as u64, 0);
            // A version 3 record, or (a container written by version 2) a shorter one.
            let rec = match open_small(&key, &ad, &header[at..], COMMIT_PLAIN) {
                Some(plain) => Vault::parse_commit(&plain)?,
                None => match open_small(&key, &ad, &header[at..], COMMIT_PLAIN_V2) {
                    Some(plain) => Vault::parse_commit_v2(&plain)?,
                    None => continue,
                },
            };
            if rec.generation % 2 != which as u64 {
                continue;
            }
            if best.as_ref().is_none_or(|b| rec.generation > b.generation) {
                best = Some(rec);
            }
        }
        best.ok_or_else(|| VaultError::corrupt("no valid commit record for an opened volume"))
    }

    /// Loads the volume in `slot` and every volume below it that is not loaded yet.
    fn load_chain(&mut self, header: &[u8], mut slot: usize, mut vmk: SecretKey) -> Result<()> {
        loop {
            if self.volumes[slot].is_some() {
                return Ok(());
            }
            let rec = Vault::read_commit_record(header, slot, &vmk)?;
            let (catalog, meta_blocks) = self.load_catalog(&vmk, &rec)?;
            let prev = rec.prev.clone();
            self.volumes[slot] = Some(Volume {
                vmk,
                prev: rec.prev,
                generation: rec.generation,
                catalog,
                meta_blocks,
            });
            match (prev, slot) {
                (None, 0) => return Ok(()),
                (Some(p), s) if s > 0 => {
                    slot -= 1;
                    vmk = p;
                }
                _ => return Err(VaultError::corrupt("broken volume chain")),
            }
        }
    }

    /// Reads the catalog of a commit: for every metadata block, the first of its copies that
    /// authenticates (each copy lists where every copy of the next block is). Returns the
    /// catalog and every metadata block of every copy, damaged ones included (they stay
    /// reserved until the next commit of this volume replaces them).
    fn load_catalog(&self, vmk: &SecretKey, rec: &CommitRecord) -> Result<(Catalog, Vec<u32>)> {
        let per_block = if rec.v2 { META_DATA_V2 } else { META_DATA };
        let copies = rec.heads.len() as u64;
        if u64::from(rec.count) * copies > u64::from(self.nblocks)
            || rec.len > u64::from(rec.count) * per_block as u64
        {
            return Err(VaultError::corrupt("catalog larger than the container"));
        }
        let key = meta_key(vmk);
        let mut bytes = Zeroizing::new(Vec::with_capacity(rec.len as usize));
        let mut blocks = Vec::with_capacity((u64::from(rec.count) * copies) as usize);
        let mut block = Zeroizing::new(vec![0u8; BLOCK_SIZE]);
        let mut cur = rec.heads.clone();
        for seq in 0..rec.count {
            if cur.is_empty() {
                return Err(VaultError::corrupt("metadata chain ends early"));
            }
            if cur.iter().any(|&b| b >= self.nblocks) {
                return Err(VaultError::corrupt("metadata pointer beyond the container"));
            }
            blocks.extend_from_slice(&cur);
            let mut next = None;
            for &b in &cur {
                self.storage
                    .read_at(block_offset(b), &mut block)
                    .map_err(|e| VaultError::io("reading metadata", e))?;
                if open_in_place(&key, &ad(AD_META, b, rec.generation, seq), &mut block).is_err() {
                    // Overwritten (or tampered with): try the next copy.
                    continue;
                }
                let mut r = Reader::new(&block[NONCE_LEN..BLOCK_SIZE - TAG_LEN]);
                let (used, following) = if rec.v2 {
                    let n = r.u32()?;
                    let used = r.u32()? as usize;
                    (used, if n == NO_BLOCK { Vec::new() } else { vec![n] })
                } else {
                    let used = r.u32()? as usize;
                    if usize::from(r.u8()?) != cur.len() {
                        return Err(VaultError::corrupt("metadata copy count inconsistent"));
                    }
                    let mut following = Vec::with_capacity(cur.len());
                    for i in 0..MAX_REPLICAS {
                        let n = r.u32()?;
                        if i < cur.len() && n != NO_BLOCK {
                            following.push(n);
                        }
                    }
                    (used, following)
                };
                if used > per_block {
                    return Err(VaultError::corrupt("metadata block length out of range"));
                }
                bytes.extend_from_slice(r.bytes(used)?);
                next = Some(following);
                break;
            }
            cur = next.ok_or_else(|| {
                VaultError::corrupt("every copy of a metadata block failed authentication")
            })?;
            if !cur.is_empty() && cur.len() != rec.heads.len() {
                return Err(VaultError::corrupt("metadata chain inconsistent"));
            }
        }
        if !cur.is_empty() || bytes.len() as u64 != rec.len {
            return Err(VaultError::corrupt("metadata chain inconsistent"));
        }
        let catalog =
            if rec.count == 0 { Catalog::default() } else { Catalog::parse(&bytes, self.nblocks)? };
        Ok((catalog, blocks))
    }

    /// Counts block references of every opened volume.
    fn count_refs(&mut self) -> Result<()> {
        let mut own = vec![false; self.nblocks as usize];
        for volume in self.volumes.iter().flatten() {
            own.iter_mut().for_each(|b| *b = false);
            let data = volume.catalog.files.values().flat_map(|f| f.blocks.iter());
            for &b in volume.meta_blocks.iter().chain(data) {
                let i = b as usize;
                if own[i] {
                    return Err(VaultError::corrupt("a block is used twice in one volume"));
                }
                own[i] = true;
                // Two volumes can share a block only if a less hidden one overwrote a more
                // hidden one while that was closed; count both so neither frees it.
                if self.refs[i] == 0 {
                    self.free -= 1;
                }
                self.refs[i] = self.refs[i].saturating_add(1);
            }
        }
        Ok(())
    }

    pub(crate) fn volume(&self, slot: usize) -> Result<&Volume> {
        self.volumes[slot].as_ref().ok_or_else(|| VaultError::corrupt("active volume missing"))
    }

    pub(crate) fn active_catalog(&self) -> Result<&Catalog> {
        Ok(&self.volume(self.active)?.catalog)
    }

    /// Marks the first preferred metadata positions of the volume in `slot` (both parities,
    /// one block more than its catalog has now) so that content avoids them.
    fn reserve_meta_positions(&mut self, slot: usize) {
        let Some(volume) = &self.volumes[slot] else { return };
        let key = position_key(&volume.vmk);
        let copies = replicas_for(self.nblocks);
        let blocks = (volume.meta_blocks.len() / copies.max(1)) as u32 + 1;
        for parity in 0..2 {
            for seq in 0..blocks {
                for copy in 0..copies {
                    let b = meta_position(&key, parity, seq, copy, 0, self.nblocks);
                    self.reserved[b as usize] |= 1 << slot;
                }
            }
        }
    }

    /// Allocates the metadata blocks of the next commit of the active volume: `count` blocks
    /// × `copies`, block `seq` of copy `c` at index `seq * copies + c`, each at the first of
    /// its preferred positions that is free and not preferred by another volume (else at a
    /// random free block).
    fn alloc_meta(&mut self, count: usize, copies: usize, generation: u64) -> Result<Vec<u32>> {
        self.reclaim();
        if (count * copies) as u64 > self.free {
            return Err(VaultError::Full);
        }
        let slot = self.active;
        let key = position_key(&self.volume(slot)?.vmk);
        let others = !(1u16 << slot);
        let mut out = Vec::with_capacity(count * copies);
        for seq in 0..count as u32 {
            for copy in 0..copies {
                let found = (0..META_ATTEMPTS)
                    .map(|a| meta_position(&key, generation % 2, seq, copy, a, self.nblocks))
                    .find(|&b| {
                        self.refs[b as usize] == 0 && self.reserved[b as usize] & others == 0
                    });
                let b = match found {
                    Some(b) => {
                        self.refs[b as usize] = 1;
                        self.free -= 1;
                        b
                    }
                    None => match self.alloc(1) {
                        Ok(v) => v[0],
                        Err(e) => {
                            self.release(&out);
                            return Err(e);
                        }
                    },
                };
                out.push(b);
            }
        }
        Ok(out)
    }

    /// Allocates `n` free blocks at random positions, avoiding the preferred metadata
    /// positions of the opened volumes while other blocks are free.
    pub(crate) fn alloc(&mut self, n: usize) -> Result<Vec<u32>> {
        if self.read_only {
            return Err(VaultError::ReadOnly);
        }
        if self.poisoned {
            return Err(VaultError::Poisoned);
        }
        self.reclaim();
        if n as u64 > self.free {
            return Err(VaultError::Full);
        }
        let total = self.nblocks as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let start = (self.rng.next_u64() % total as u64) as usize;
            let found = (start..total)
                .chain(0..start)
                .find(|&i| self.refs[i] == 0 && self.reserved[i] == 0)
                .or_else(|| (start..total).chain(0..start).find(|&i| self.refs[i] == 0))
                .ok_or(VaultError::Full)?;
            self.refs[found] = 1;
            self.free -= 1;
            out.push(found as u32);
        }
        Ok(out)
    }

    /// Gives blocks back without touching their content (they were never committed, or are
    /// still referenced by another volume).
    pub(crate) fn release(&mut self, blocks: &[u32]) {
        for &b in blocks {
            let r = &mut self.refs[b as usize];
            if *r > 0 {
                *r -= 1;
                if *r == 0 {
                    self.free += 1;
                }
            }
        }
    }

    /// Overwrites no longer referenced blocks with random bytes, then frees them.
    fn shred(&mut self, blocks: &[u32]) -> Result<()> {
        let mut noise = vec![0u8; BLOCK_SIZE];
        for &b in blocks {
            if self.refs[b as usize] == 1 {
                fill_noise(&mut self.rng, &mut noise);
                self.storage
                    .write_at(block_offset(b), &noise)
                    .map_err(|e| VaultError::io("overwriting freed blocks", e))?;
            }
        }
        self.release(blocks);
        self.sync("overwriting freed blocks")
    }

    /// Commits `catalog` as the active volume's new state: (content blocks were written by the
    /// caller) fsync, write the metadata blocks, fsync, write the commit record, fsync; then
    /// shred the previous metadata and `freed`. On error, `uncommitted` blocks are released.
    pub(crate) fn commit(
        &mut self,
        catalog: Catalog,
        freed: Vec<u32>,
        uncommitted: &[u32],
    ) -> Result<()> {
        if self.read_only {
            return Err(VaultError::ReadOnly);
        }
        if self.poisoned {
            self.release(uncommitted);
            return Err(VaultError::Poisoned);
        }
        self.reclaim();
        let bytes = catalog.serialize();
        let count = bytes.len().div_ceil(META_DATA).max(1);
        // As many copies as the container size asks for and the free space allows.
        let free = usize::try_from(self.free).unwrap_or(usize::MAX);
        let copies = replicas_for(self.nblocks).min(free / count).max(1);
        let generation = self.volume(self.active)?.generation + 1;
        let meta = match self.alloc_meta(count, copies, generation) {
            Ok(m) => m,
            Err(e) => {
                self.release(uncommitted);
                return Err(e);
            }
        };
        if let Err(e) = self.write_commit(&bytes, &meta, copies) {
            // The on-disk state is the previous commit or this one; we cannot tell which, so
            // refuse further writes until the vault is reopened.
            self.poisoned = true;
            self.release(&meta);
            self.release(uncommitted);
            return Err(e);
        }
        let slot = self.active;
        let old_meta = {
            let volume = self.volumes[slot]
                .as_mut()
                .ok_or_else(|| VaultError::corrupt("active volume missing"))?;
            volume.generation += 1;
            volume.catalog = catalog;
            std::mem::replace(&mut volume.meta_blocks, meta)
        };
        let mut dead = old_meta;
        dead.extend(freed);
        self.reserve_meta_positions(slot);
        self.shred(&dead)
    }

    /// Writes the catalog `bytes` as `copies` copies of `meta.len() / copies` metadata blocks
    /// (block `seq` of copy `c` is `meta[seq * copies + c]`), then the commit record.
    fn write_commit(&mut self, bytes: &[u8], meta: &[u32], copies: usize) -> Result<()> {
        self.sync("writing file content")?;
        let slot = self.active;
        let volume = self.volume(slot)?;
        let generation = volume.generation + 1;
        let key = meta_key(&volume.vmk);
        let count = meta.len() / copies;
        let mut block = Zeroizing::new(vec![0u8; BLOCK_SIZE]);
        for seq in 0..count {
            let start = seq * META_DATA;
            let piece = bytes.get(start..(start + META_DATA).min(bytes.len())).unwrap_or(&[]);
            let following = meta.get((seq + 1) * copies..(seq + 2) * copies).unwrap_or(&[]);
            for c in 0..copies {
                block.fill(0);
                let p = &mut block[NONCE_LEN..];
                p[0..4].copy_from_slice(&(piece.len() as u32).to_le_bytes());
                p[4] = copies as u8;
                for i in 0..MAX_REPLICAS {
                    let n = following.get(i).copied().unwrap_or(NO_BLOCK);
                    p[5 + 4 * i..9 + 4 * i].copy_from_slice(&n.to_le_bytes());
                }
                p[META_HEAD..META_HEAD + piece.len()].copy_from_slice(piece);
                let mut nonce = [0u8; NONCE_LEN];
                self.rng.fill_bytes(&mut nonce);
                let b = meta[seq * copies + c];
                seal_in_place(&key, &nonce, &ad(AD_META, b, generation, seq as u32), &mut block)?;
                self.storage
                    .write_at(block_offset(b), &block)
                    .map_err(|e| VaultError::io("writing metadata", e))?;
            }
        }
        self.sync("writing metadata")?;
        let volume = self.volumes[slot]
            .take()
            .ok_or_else(|| VaultError::corrupt("active volume missing"))?;
        let res = self.write_commit_record(
            slot,
            &volume,
            generation,
            &meta[..copies],
            count as u32,
            bytes.len() as u64,
        );
        self.volumes[slot] = Some(volume);
        res?;
        self.sync("writing the commit record")
    }

    /// Total bytes of file content the container can hold (all volumes together).
    pub fn capacity(&self) -> u64 {
        u64::from(self.nblocks) * PAYLOAD_SIZE as u64
    }

    /// Bytes of file content that can still be written without touching any opened volume.
    /// In a decoy opened alone this counts the blocks of hidden volumes as free.
    pub fn free_space(&self) -> u64 {
        (self.free + self.returned_count()) * PAYLOAD_SIZE as u64
    }

    /// Files of the active volume, sorted by name.
    pub fn list(&self) -> Result<Vec<FileInfo>> {
        Ok(self
            .active_catalog()?
            .files
            .iter()
            .map(|(name, f)| FileInfo { name: name.clone(), size: f.size })
            .collect())
    }

    /// Size of the file `name`, or `None` if there is none.
    pub fn file_size(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.active_catalog()?.files.get(name).map(|f| f.size))
    }

    /// Starts writing the file `name` (streaming). The file appears, replacing any file of the
    /// same name, only when [`FileWriter::finish`] commits it; dropping the writer discards it.
    pub fn create_file(&mut self, name: &str) -> Result<FileWriter<'_>> {
        let file = self.begin_file(name)?;
        Ok(FileWriter::new(self, file))
    }

    /// Starts writing the file `name` without borrowing the vault: the returned handle owns
    /// everything written so far, and every step takes the vault only for as long as it runs.
    /// Feed it with [`Vault::write_pending`] and commit it with [`Vault::commit_pending`]
    /// (which replaces any file of the same name); until then nothing of it is visible, not
    /// even after a crash. [`Vault::abort_pending`], or dropping the handle, discards it and
    /// gives its blocks back.
    ///
    /// Use it when the vault is shared (behind a mutex) and a long write must not keep the
    /// other users out: lock for each [`Vault::write_pending`], not for the whole file. Any
    /// other operation may run in between, other pending files included: the blocks a pending
    /// file holds are never handed to anyone else, and commits of other files leave them alone.
    ///
    /// ```
    /// use samizdat_vault::{KdfCost, MemStorage, Vault};
    /// use std::sync::{Arc, Mutex};
    ///
    /// # fn main() -> Result<(), samizdat_vault::VaultError> {
    /// let disk = Box::new(MemStorage::new(4 << 20));
    /// let vault = Vault::create_in(disk, b"pw", KdfCost::DANGER_INSECURE_TEST)?;
    /// let vault = Arc::new(Mutex::new(vault));
    /// let mut file = vault.lock().unwrap().begin_file("big")?;
    /// for chunk in [&b"first part, "[..], b"second part"] {
    ///     // Others may use the vault between the chunks.
    ///     vault.lock().unwrap().write_pending(&mut file, chunk)?;
    /// }
    /// file.sync()?; // the long fsync, outside the lock
    /// vault.lock().unwrap().commit_pending(file)?;
    /// assert_eq!(vault.lock().unwrap().get_bytes("big")?, b"first part, second part");
    /// # Ok(())
    /// # }
    /// ```
    pub fn begin_file(&mut self, name: &str) -> Result<PendingFile> {
        check_name(name)?;
        if self.read_only {
            return Err(VaultError::ReadOnly);
        }
        if self.poisoned {
            return Err(VaultError::Poisoned);
        }
        self.reclaim();
        Ok(PendingFile::new(self, name.to_owned()))
    }

    /// Appends `bytes` to the pending file `file`. Full batches (see
    /// [`PendingFile::set_batch_blocks`]) are sealed and written to freshly allocated blocks
    /// during the call; the rest waits in the handle's buffer.
    ///
    /// After an error the pending file is unusable (further calls and [`Vault::commit_pending`]
    /// fail with [`VaultError::Poisoned`]); abort it and start again. A handle begun by
    /// another vault is refused with [`VaultError::WrongVault`].
    pub fn write_pending(&mut self, file: &mut PendingFile, bytes: &[u8]) -> Result<()> {
        self.check_owner(file)?;
        file.write(self, bytes)
    }

    /// Writes the last batch of `file` and commits it (one atomic, durable commit), replacing
    /// any file of the same name. Returns the file's length. On error the file is discarded
    /// and its blocks given back.
    pub fn commit_pending(&mut self, mut file: PendingFile) -> Result<u64> {
        self.check_owner(&file)?;
        file.flush_batch(self)?;
        let (name, entry) = file.into_entry();
        let size = entry.size;
        self.commit_file(name, entry)?;
        Ok(size)
    }

    /// Discards the pending file `file` and gives its blocks back at once (dropping it gives
    /// them back at this vault's next allocation). What it wrote is left in place: it is
    /// sealed under a key that no longer exists, as random as the free blocks around it.
    pub fn abort_pending(&mut self, file: PendingFile) {
        drop(file);
        self.reclaim();
    }

    fn check_owner(&self, file: &PendingFile) -> Result<()> {
        if file.belongs_to(self) { Ok(()) } else { Err(VaultError::WrongVault) }
    }

    fn returned_count(&self) -> u64 {
        self.returned.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    /// Frees the blocks that dropped pending files gave back.
    fn reclaim(&mut self) {
        let blocks = std::mem::take(&mut *self.returned.lock().unwrap_or_else(|e| e.into_inner()));
        self.release(&blocks);
    }

    /// Stores everything `reader` yields as the file `name` (replacing any file of that name)
    /// in one commit. Returns the number of bytes stored.
    pub fn put(&mut self, name: &str, mut reader: impl std::io::Read) -> Result<u64> {
        let mut w = self.create_file(name)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(VaultError::io("reading the input", e)),
            };
            w.write_bytes(&buf[..n])?;
        }
        w.finish()
    }

    /// Stores `bytes` as the file `name` (replacing any file of that name) in one commit.
    pub fn put_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.put(name, bytes).map(|_| ())
    }

    /// Opens the file `name` for streaming reads (it implements [`std::io::Read`] and
    /// [`std::io::Seek`]).
    pub fn open_file(&self, name: &str) -> Result<FileReader<'_>> {
        Ok(FileReader::new(self, self.entry(name)?.clone()))
    }

    fn entry(&self, name: &str) -> Result<&FileEntry> {
        self.active_catalog()?
            .files
            .get(name)
            .ok_or_else(|| VaultError::NotFound { name: name.to_owned() })
    }

    /// Copies the file `name` into `out`; returns its length. Every block is authenticated
    /// before its bytes are handed out.
    pub fn get(&self, name: &str, mut out: impl std::io::Write) -> Result<u64> {
        let entry = self.entry(name)?;
        stream_file(&*self.storage, entry, |bytes| {
            out.write_all(bytes).map_err(|e| VaultError::io("writing the output", e))
        })?;
        Ok(entry.size)
    }

    /// Reads the whole file `name` into memory.
    pub fn get_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get(name, &mut out)?;
        Ok(out)
    }

    /// Deletes the file `name`: the catalog entry, with the file's key, is dropped in one
    /// commit, then the file's blocks and the old catalog are overwritten with random bytes.
    pub fn delete(&mut self, name: &str) -> Result<()> {
        let mut catalog = self.active_catalog()?.clone();
        let entry = catalog
            .files
            .remove(name)
            .ok_or_else(|| VaultError::NotFound { name: name.to_owned() })?;
        self.commit(catalog, entry.blocks.clone(), &[])
    }

    /// Renames `from` to `to` in one commit. Fails if `to` exists.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        check_name(to)?;
        let mut catalog = self.active_catalog()?.clone();
        if catalog.files.contains_key(to) {
            return Err(VaultError::AlreadyExists { name: to.to_owned() });
        }
        let entry = catalog
            .files
            .remove(from)
            .ok_or_else(|| VaultError::NotFound { name: from.to_owned() })?;
        catalog.files.insert(to.to_owned(), entry);
        self.commit(catalog, Vec::new(), &[])
    }

    /// Reads and authenticates every block of every file of the active volume. Fails with
    /// [`VaultError::Corrupt`] on the first block that does not verify.
    pub fn verify(&self) -> Result<()> {
        for entry in self.active_catalog()?.files.values() {
            stream_file(&*self.storage, entry, |_| Ok(()))?;
        }
        Ok(())
    }

    /// Commits a new file (called by [`FileWriter::finish`]).
    pub(crate) fn commit_file(&mut self, name: String, entry: FileEntry) -> Result<()> {
        let mut catalog = self.active_catalog()?.clone();
        let blocks = entry.blocks.clone();
        let freed = catalog.files.insert(name, entry).map(|old| old.blocks).unwrap_or_default();
        self.commit(catalog, freed, &blocks)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::MemStorage;

    const KDF: KdfCost = KdfCost::DANGER_INSECURE_TEST;

    fn data(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    /// A decoy with one file and a hidden volume with `files` files of two blocks each.
    fn two_volumes(len: usize, files: u8) -> Arc<MemStorage> {
        let disk = Arc::new(MemStorage::new(len));
        let mut d = Vault::create_in(Box::new(disk.clone()), b"decoy", KDF).unwrap();
        d.put_bytes("d", b"decoy").unwrap();
        drop(d);
        let mut h = Vault::add_volume_in(Box::new(disk.clone()), b"decoy", b"hidden", KDF).unwrap();
        for i in 0..files {
            h.put_bytes(&format!("f{i}"), &data(i, 2 * PAYLOAD_SIZE)).unwrap();
        }
        disk
    }

    fn hidden_meta(disk: &Arc<MemStorage>) -> Vec<u32> {
        let h = Vault::open_in(Box::new(disk.clone()), b"hidden", &[], KDF).unwrap();
        h.volume(h.active).unwrap().meta_blocks.clone()
    }

    fn clobber(disk: &MemStorage, block: u32) {
        disk.write_at(block_offset(block), &[0x5a; BLOCK_SIZE]).unwrap();
    }

    #[test]
    fn metadata_has_a_copy_per_replica_at_distinct_blocks() {
        // 32 MiB: the full number of copies; 1 MiB: two.
        assert_eq!(replicas_for(511), MAX_REPLICAS);
        assert_eq!(replicas_for(15), 2);
        let disk = two_volumes(32 << 20, 3);
        let meta = hidden_meta(&disk);
        assert_eq!(meta.len(), MAX_REPLICAS, "one catalog block, {MAX_REPLICAS} copies");
        let mut sorted = meta.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), meta.len());
    }

    /// The loss reported in issue 6: one overwritten catalog block made the whole hidden
    /// volume unreadable. Now every copy but one may go, and only files hit lose data.
    #[test]
    fn overwriting_metadata_copies_loses_nothing_until_the_last_one() {
        let disk = two_volumes(8 << 20, 4);
        let clean = disk.to_bytes();
        let meta = hidden_meta(&disk);
        assert!(meta.len() >= 2);
        for keep in 0..meta.len() {
            let d = Arc::new(MemStorage::from_bytes(clean.clone()));
            for (i, &b) in meta.iter().enumerate() {
                if i != keep {
                    clobber(&d, b);
                }
            }
            let h = Vault::open_in(Box::new(d.clone()), b"hidden", &[], KDF).unwrap();
            for i in 0..4u8 {
                assert_eq!(h.get_bytes(&format!("f{i}")).unwrap(), data(i, 2 * PAYLOAD_SIZE));
            }
            // The next commit writes a complete set of copies again.
            let mut h = h;
            h.put_bytes("after", b"x").unwrap();
            drop(h);
            let h = Vault::open_in(Box::new(d.clone()), b"hidden", &[], KDF).unwrap();
            assert_eq!(h.list().unwrap().len(), 5, "f0..f3 and after");
        }
        // Every copy gone: the catalog is lost, and says so.
        let d = Arc::new(MemStorage::from_bytes(clean));
        meta.iter().for_each(|&b| clobber(&d, b));
        assert!(matches!(
            Vault::open_in(Box::new(d), b"hidden", &[], KDF),
            Err(VaultError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_hit_content_block_loses_only_its_file() {
        let disk = two_volumes(8 << 20, 4);
        let h = Vault::open_in(Box::new(disk.clone()), b"hidden", &[], KDF).unwrap();
        let victim = h.active_catalog().unwrap().files["f2"].blocks[1];
        drop(h);
        clobber(&disk, victim);
        let h = Vault::open_in(Box::new(disk), b"hidden", &[], KDF).unwrap();
        assert!(matches!(h.get_bytes("f2"), Err(VaultError::Corrupt { .. })));
        for i in [0u8, 1, 3] {
            assert_eq!(h.get_bytes(&format!("f{i}")).unwrap(), data(i, 2 * PAYLOAD_SIZE));
        }
    }

    /// Rewrites the active volume's catalog in the version 2 layout (one copy, blocks of
    /// `next ‖ used ‖ data`, a 57-byte commit record), as a container written by the previous
    /// version looks.
    fn downgrade_to_v2(v: &mut Vault) {
        let slot = v.active;
        let volume = v.volumes[slot].take().unwrap();
        let bytes = volume.catalog.serialize();
        let count = bytes.len().div_ceil(META_DATA_V2).max(1);
        let blocks = v.alloc(count).unwrap();
        let generation = volume.generation + 1;
        let key = meta_key(&volume.vmk);
        for (seq, &b) in blocks.iter().enumerate() {
            let piece = &bytes[seq * META_DATA_V2..((seq + 1) * META_DATA_V2).min(bytes.len())];
            let mut block = vec![0u8; BLOCK_SIZE];
            let next = blocks.get(seq + 1).copied().unwrap_or(NO_BLOCK);
            block[NONCE_LEN..NONCE_LEN + 4].copy_from_slice(&next.to_le_bytes());
            block[NONCE_LEN + 4..NONCE_LEN + 8]
                .copy_from_slice(&(piece.len() as u32).to_le_bytes());
            block[NONCE_LEN + 8..NONCE_LEN + 8 + piece.len()].copy_from_slice(piece);
            let ad = ad(AD_META, b, generation, seq as u32);
            seal_in_place(&key, &[seq as u8 + 1; NONCE_LEN], &ad, &mut block).unwrap();
            v.storage.write_at(block_offset(b), &block).unwrap();
        }
        let mut plain = vec![0u8; 33];
        plain.extend_from_slice(&generation.to_le_bytes());
        plain.extend_from_slice(&blocks[0].to_le_bytes());
        plain.extend_from_slice(&(count as u32).to_le_bytes());
        plain.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        assert_eq!(plain.len(), COMMIT_PLAIN_V2);
        let which = (generation % 2) as usize;
        let ad = ad(AD_COMMIT, slot as u32, which as u64, 0);
        let rec = seal_small(&commit_key(&volume.vmk), &mut v.rng, &ad, &plain).unwrap();
        v.write_header(slot_offset(slot) + COMMIT_OFF[which], &rec).unwrap();
        v.volumes[slot] = Some(volume);
    }

    #[test]
    fn a_version_2_container_opens_and_is_upgraded_by_its_next_commit() {
        let disk = Arc::new(MemStorage::new(4 << 20));
        let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
        v.put_bytes("old", &data(1, 100_000)).unwrap();
        downgrade_to_v2(&mut v);
        drop(v);
        let mut v = Vault::open_in(Box::new(disk.clone()), b"pw", &[], KDF).unwrap();
        assert_eq!(v.get_bytes("old").unwrap(), data(1, 100_000));
        assert_eq!(v.volume(0).unwrap().meta_blocks.len(), 1, "read as one version 2 copy");
        v.put_bytes("new", b"n").unwrap();
        drop(v);
        let v = Vault::open_in(Box::new(disk), b"pw", &[], KDF).unwrap();
        assert_eq!(v.volume(0).unwrap().meta_blocks.len(), 2, "rewritten with two copies");
        assert_eq!(v.get_bytes("old").unwrap(), data(1, 100_000));
        assert_eq!(v.get_bytes("new").unwrap(), b"n");
    }
    /// Every block the committed state of the active volume references: its metadata and the
    /// content of its files.
    fn committed_blocks(v: &Vault) -> Vec<u32> {
        let volume = v.volume(v.active).unwrap();
        let data = volume.catalog.files.values().flat_map(|f| f.blocks.iter().copied());
        volume.meta_blocks.iter().copied().chain(data).collect()
    }

    /// The pending file's blocks are allocated (to it alone) and no committed state uses them.
    fn assert_held(v: &Vault, p: &PendingFile) {
        let committed = committed_blocks(v);
        for &b in p.blocks() {
            assert_eq!(v.refs[b as usize], 1, "pending block {b} must stay allocated");
            assert!(!committed.contains(&b), "pending block {b} used by a commit");
        }
    }

    #[test]
    fn a_pending_file_survives_reads_writes_and_commits_in_between() {
        let disk = Arc::new(MemStorage::new(16 << 20));
        let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
        v.put_bytes("small", &data(1, 3000)).unwrap();
        let big = data(2, 40 * PAYLOAD_SIZE + 123);
        let mut p = v.begin_file("big").unwrap();
        p.set_batch_blocks(4);
        for (i, piece) in big.chunks(3 * PAYLOAD_SIZE + 7).enumerate() {
            v.write_pending(&mut p, piece).unwrap();
            // Another file read, written, replaced, renamed and deleted meanwhile.
            assert_eq!(v.get_bytes("small").unwrap(), data(1, 3000));
            v.put_bytes(&format!("other{i}"), &data(i as u8, 2 * PAYLOAD_SIZE)).unwrap();
            v.put_bytes("small", &data(1, 3000)).unwrap();
            if i % 3 == 2 {
                v.rename(&format!("other{i}"), &format!("renamed{i}")).unwrap();
                v.delete(&format!("other{}", i - 1)).unwrap();
            }
            assert_eq!(v.file_size("big").unwrap(), None, "invisible until committed");
            assert_held(&v, &p);
        }
        assert!(p.blocks().len() >= 36, "most batches were written already");
        assert_eq!(v.commit_pending(p).unwrap(), big.len() as u64);
        assert!(v.get_bytes("big").unwrap() == big);
        v.verify().unwrap();
        let expected = v.list().unwrap();
        drop(v);
        // Reopening recounts every reference: a block used twice would be refused.
        let v = Vault::open_in(Box::new(disk), b"pw", &[], KDF).unwrap();
        assert_eq!(v.list().unwrap(), expected);
        assert!(v.get_bytes("big").unwrap() == big);
        v.verify().unwrap();
    }

    #[test]
    fn two_pending_files_at_once_and_a_writer_between_them() {
        let disk = Arc::new(MemStorage::new(8 << 20));
        let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
        let (a, b) = (data(3, 9 * PAYLOAD_SIZE), data(4, 7 * PAYLOAD_SIZE + 1));
        let mut pa = v.begin_file("a").unwrap();
        let mut pb = v.begin_file("b").unwrap();
        pa.set_batch_blocks(2);
        pb.set_batch_blocks(3);
        for (x, y) in a.chunks(PAYLOAD_SIZE).zip(b.chunks(PAYLOAD_SIZE)).take(7) {
            v.write_pending(&mut pa, x).unwrap();
            v.write_pending(&mut pb, y).unwrap();
            let mut w = v.create_file("c").unwrap();
            w.write_bytes(x).unwrap();
            w.finish().unwrap();
        }
        v.write_pending(&mut pa, &a[7 * PAYLOAD_SIZE..]).unwrap();
        v.write_pending(&mut pb, &b[7 * PAYLOAD_SIZE..]).unwrap();
        assert!(pa.blocks().iter().all(|x| !pb.blocks().contains(x)), "disjoint blocks");
        assert_held(&v, &pa);
        assert_held(&v, &pb);
        v.commit_pending(pb).unwrap();
        assert_held(&v, &pa);
        v.commit_pending(pa).unwrap();
        drop(v);
        let v = Vault::open_in(Box::new(disk), b"pw", &[], KDF).unwrap();
        assert!(v.get_bytes("a").unwrap() == a);
        assert!(v.get_bytes("b").unwrap() == b);
        assert!(v.get_bytes("c").unwrap() == a[6 * PAYLOAD_SIZE..7 * PAYLOAD_SIZE]);
    }

    #[test]
    fn pending_blocks_are_never_handed_out_even_when_the_vault_fills_up() {
        // 2 MiB: 31 data blocks.
        let disk = Arc::new(MemStorage::new(2 << 20));
        let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
        let big = data(5, 10 * PAYLOAD_SIZE);
        let mut p = v.begin_file("big").unwrap();
        v.write_pending(&mut p, &big).unwrap();
        assert_eq!(p.blocks().len(), 10);
        // Everything else, one block at a time, until nothing is left.
        let mut n = 0;
        while v.put_bytes(&format!("f{n}"), &data(n as u8, 100)).is_ok() {
            assert_held(&v, &p);
            n += 1;
        }
        assert!(v.free_space() < 3 * PAYLOAD_SIZE as u64, "full");
        assert!(n > 5, "{n} small files");
        // Room for the commit's metadata, then the big file commits intact.
        for i in 0..4 {
            v.delete(&format!("f{i}")).unwrap();
        }
        v.commit_pending(p).unwrap();
        assert!(v.get_bytes("big").unwrap() == big);
        v.verify().unwrap();
        drop(v);
        let v = Vault::open_in(Box::new(disk), b"pw", &[], KDF).unwrap();
        assert!(v.get_bytes("big").unwrap() == big);
        v.verify().unwrap();
    }

    #[test]
    fn aborted_or_dropped_pending_files_give_their_space_back() {
        let mut v = Vault::create_in(Box::new(MemStorage::new(8 << 20)), b"pw", KDF).unwrap();
        let free = v.free_space();
        let mut p = v.begin_file("x").unwrap();
        p.set_batch_blocks(4);
        v.write_pending(&mut p, &data(6, 2 << 20)).unwrap();
        assert!(v.free_space() < free);
        v.abort_pending(p);
        assert_eq!(v.free_space(), free);
        assert_eq!(v.refs.iter().filter(|&&r| r > 0).count() as u64, v.nblocks as u64 - v.free);
        // Dropped: the blocks come back (counted at once, reclaimed at the next allocation).
        let mut p = v.begin_file("x").unwrap();
        p.set_batch_blocks(4);
        v.write_pending(&mut p, &data(6, 2 << 20)).unwrap();
        assert!(v.free_space() < free);
        drop(p);
        assert_eq!(v.free_space(), free);
        v.put_bytes("y", b"y").unwrap();
        assert!(v.returned.lock().unwrap().is_empty());
        assert_eq!(v.list().unwrap().len(), 1, "only y");
    }

    #[test]
    fn a_crash_before_the_commit_leaves_nothing_visible_and_no_plaintext() {
        let disk = Arc::new(MemStorage::new(4 << 20));
        let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
        v.put_bytes("kept", b"kept").unwrap();
        let secret = b"pending plaintext that must never reach the disk".repeat(3000);
        let mut p = v.begin_file("p").unwrap();
        p.set_batch_blocks(1);
        v.write_pending(&mut p, &secret).unwrap();
        p.sync().unwrap();
        assert!(!p.blocks().is_empty());
        // The container as a crash now would leave it.
        let image = disk.to_bytes();
        assert!(!image.windows(48).any(|w| w == &secret[..48]), "plaintext on disk");
        let after =
            Vault::open_in(Box::new(MemStorage::from_bytes(image)), b"pw", &[], KDF).unwrap();
        assert_eq!(after.list().unwrap().len(), 1, "only kept");
        assert_eq!(
            after.free_space(),
            v.free_space() + p.blocks().len() as u64 * PAYLOAD_SIZE as u64
        );
    }

    #[test]
    fn pending_file_errors_are_typed() {
        // Full during a pending write: the file is unusable, the vault is not.
        let mut v = Vault::create_in(Box::new(MemStorage::new(2 << 20)), b"pw", KDF).unwrap();
        let free = v.free_space();
        let mut p = v.begin_file("huge").unwrap();
        p.set_batch_blocks(4);
        let err = v.write_pending(&mut p, &data(7, 40 * PAYLOAD_SIZE)).unwrap_err();
        assert!(matches!(err, VaultError::Full), "{err:?}");
        assert!(matches!(v.write_pending(&mut p, b"more"), Err(VaultError::Poisoned)));
        assert!(matches!(v.commit_pending(p), Err(VaultError::Poisoned)));
        assert_eq!(v.free_space(), free, "the failed file's blocks are free again");
        v.put_bytes("fits", b"fits").unwrap();
        assert_eq!(v.list().unwrap().len(), 1);

        // A handle from another vault is refused and changes nothing.
        let mut other = Vault::create_in(Box::new(MemStorage::new(2 << 20)), b"pw", KDF).unwrap();
        let mut p = other.begin_file("o").unwrap();
        other.write_pending(&mut p, b"o").unwrap();
        assert!(matches!(v.write_pending(&mut p, b"x"), Err(VaultError::WrongVault)));
        let err = v.commit_pending(p).unwrap_err();
        assert!(matches!(err, VaultError::WrongVault), "{err:?}");
        assert_eq!(v.list().unwrap().len(), 1);
        assert!(matches!(v.begin_file(""), Err(VaultError::InvalidName { .. })));

        // Read-only.
        v.read_only = true;
        assert!(matches!(v.begin_file("r"), Err(VaultError::ReadOnly)));
        assert!(matches!(v.create_file("r"), Err(VaultError::ReadOnly)));
        v.read_only = false;
        // A pending file begun before the vault became unable to write.
        let mut p = v.begin_file("r").unwrap();
        v.read_only = true;
        assert!(matches!(
            v.write_pending(&mut p, &data(8, 2 * PAYLOAD_SIZE)),
            Err(VaultError::ReadOnly)
        ));
        assert!(matches!(v.commit_pending(p), Err(VaultError::Poisoned)));
    }
}
