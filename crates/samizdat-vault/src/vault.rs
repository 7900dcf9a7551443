//! The container: header slots, volumes, block allocation and atomic commits.

use std::path::Path;

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use zeroize::Zeroizing;

use crate::catalog::{Catalog, FileEntry, check_name};
use crate::error::{Result, VaultError};
use crate::format::{
    AD_COMMIT, AD_KEYS, AD_META, BLOCK_SIZE, COMMIT_OFF, COMMIT_PLAIN, KEYS_OFF, KEYS_PLAIN,
    KdfCost, MAX_CONTAINER_SIZE, MAX_VOLUMES, MIN_CONTAINER_SIZE, NO_BLOCK, NONCE_LEN,
    PAYLOAD_SIZE, Reader, SALT_LEN, SecretKey, TAG_LEN, ad, block_offset, fill_noise,
    open_in_place, open_small, password_key, seal_in_place, seal_small, slot_offset,
};
use crate::io::{FileReader, FileWriter, stream_file};
use crate::storage::{FileStorage, Storage};

/// Metadata bytes carried by one metadata block (the rest holds the chain pointer and length).
const META_DATA: usize = PAYLOAD_SIZE - 8;

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
    /// Metadata blocks of the committed catalog.
    meta_blocks: Vec<u32>,
}

/// An open vault: one container, the volume its password opened (the *active* volume, where
/// all reads and writes go), every less hidden volume below it, and, in protected mode, the
/// volumes of the extra passwords.
///
/// Every write ([`Vault::put`], [`FileWriter::finish`], [`Vault::delete`], [`Vault::rename`]) is
/// one atomic, durable commit: after a crash the container opens at the last completed one.
/// One process at a time may have a container open for writing.
pub struct Vault {
    pub(crate) storage: Box<dyn Storage>,
    nblocks: u32,
    /// Opened volumes by header slot.
    pub(crate) volumes: Vec<Option<Volume>>,
    /// Slot of the active volume.
    pub(crate) active: usize,
    /// For every data block, how many opened volumes reference it (0 = free).
    refs: Vec<u8>,
    free: u64,
    pub(crate) rng: ChaCha20Rng,
    poisoned: bool,
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
    head: u32,
    count: u32,
    len: u64,
}

/// A fast CSPRNG (nonces, keys, filler) seeded from the operating system.
fn new_rng() -> Result<ChaCha20Rng> {
    let mut seed = Zeroizing::new([0u8; 32]);
    OsRng.try_fill_bytes(&mut *seed).map_err(|e| {
        VaultError::io("seeding the random generator", std::io::Error::other(e.to_string()))
    })?;
    Ok(ChaCha20Rng::from_seed(*seed))
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
    /// Fails with [`VaultError::PathExists`] if the path exists. On error the partial file is
    /// removed.
    pub fn create(path: impl AsRef<Path>, size: u64, password: &[u8]) -> Result<Vault> {
        let path = path.as_ref();
        if password.is_empty() {
            return Err(VaultError::EmptyPassword);
        }
        let size = size - size % BLOCK_SIZE as u64;
        nblocks_for_len(size)?;
        if size > MAX_CONTAINER_SIZE {
            return Err(VaultError::TooLarge { size, max: MAX_CONTAINER_SIZE });
        }
        let storage = FileStorage::create_new(path, size).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                VaultError::PathExists { path: path.display().to_string() }
            } else {
                VaultError::io("creating the container file", e)
            }
        })?;
        let result = Vault::create_in(Box::new(storage), password, KdfCost::FORMAT);
        if result.is_err() {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    /// Opens the volume that `password` unlocks in the container at `path` (a file or a block
    /// device), together with every less hidden volume below it.
    ///
    /// A wrong password gives [`VaultError::NoVolume`], exactly as a container without such a
    /// volume does, after the same work.
    pub fn open(path: impl AsRef<Path>, password: &[u8]) -> Result<Vault> {
        Vault::open_protected(path, password, &[])
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
        let storage = FileStorage::open(path.as_ref())
            .map_err(|e| VaultError::io("opening the container", e))?;
        Vault::open_in(Box::new(storage), password, protect, KdfCost::FORMAT)
    }

    /// Adds a new volume, more hidden than the one `parent_password` opens, in the next header
    /// slot above it, and returns the vault opened on the new volume.
    ///
    /// **Pass the password of the most hidden volume you have**: if a volume already exists in
    /// the slot above the parent, it is replaced and its content lost. Nothing in the container
    /// can tell whether one does.
    pub fn add_volume(
        path: impl AsRef<Path>,
        parent_password: &[u8],
        new_password: &[u8],
    ) -> Result<Vault> {
        let storage = FileStorage::open(path.as_ref())
            .map_err(|e| VaultError::io("opening the container", e))?;
        Vault::add_volume_in(Box::new(storage), parent_password, new_password, KdfCost::FORMAT)
    }

    /// [`Vault::create`] on any [`Storage`] with an explicit KDF cost. Use
    /// [`KdfCost::FORMAT`] for real containers; other costs are for tests and fuzzing.
    pub fn create_in(storage: Box<dyn Storage>, password: &[u8], kdf: KdfCost) -> Result<Vault> {
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
        }
        let mut salt = [0u8; SALT_LEN];
        storage
            .read_at(0, &mut salt)
            .map_err(|e| VaultError::io("reading the container header", e))?;
        let pw_key = password_key(password, &salt, kdf)?;
        let mut vault = Vault {
            storage,
            nblocks,
            volumes: (0..MAX_VOLUMES).map(|_| None).collect(),
            active: 0,
            refs: vec![0u8; nblocks as usize],
            free: u64::from(nblocks),
            rng,
            poisoned: false,
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
            storage,
            nblocks,
            volumes: (0..MAX_VOLUMES).map(|_| None).collect(),
            active: 0,
            refs: vec![0u8; nblocks as usize],
            free: u64::from(nblocks),
            rng,
            poisoned: false,
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
        self.write_commit_record(slot, &volume, 1, NO_BLOCK, 0, 0)?;
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
        head: u32,
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
        plain.extend_from_slice(&head.to_le_bytes());
        plain.extend_from_slice(&count.to_le_bytes());
        plain.extend_from_slice(&len.to_le_bytes());
        let which = (generation % 2) as usize;
        let rec = seal_small(
            &commit_key(&volume.vmk),
            &mut self.rng,
            &ad(AD_COMMIT, slot as u32, which as u64, 0),
            &plain,
        )?;
        self.write_header(slot_offset(slot) + COMMIT_OFF[which], &rec)
    }

    fn read_commit_record(header: &[u8], slot: usize, vmk: &SecretKey) -> Result<CommitRecord> {
        let key = commit_key(vmk);
        let mut best: Option<CommitRecord> = None;
        for (which, off) in COMMIT_OFF.iter().enumerate() {
            let at = slot_offset(slot) + off;
            let Some(plain) = open_small(
                &key,
                &ad(AD_COMMIT, slot as u32, which as u64, 0),
                &header[at..],
                COMMIT_PLAIN,
            ) else {
                continue;
            };
            let mut r = Reader::new(&plain);
            let has_prev = r.u8()?;
            let prev_key = r.key()?;
            let rec = CommitRecord {
                prev: (has_prev == 1).then_some(prev_key),
                generation: r.u64()?,
                head: r.u32()?,
                count: r.u32()?,
                len: r.u64()?,
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

    fn load_catalog(&self, vmk: &SecretKey, rec: &CommitRecord) -> Result<(Catalog, Vec<u32>)> {
        if rec.count > self.nblocks || rec.len > u64::from(rec.count) * META_DATA as u64 {
            return Err(VaultError::corrupt("catalog larger than the container"));
        }
        let key = meta_key(vmk);
        let mut bytes = Zeroizing::new(Vec::with_capacity(rec.len as usize));
        let mut blocks = Vec::with_capacity(rec.count as usize);
        let mut block = Zeroizing::new(vec![0u8; BLOCK_SIZE]);
        let mut cur = rec.head;
        for seq in 0..rec.count {
            if cur >= self.nblocks {
                return Err(VaultError::corrupt("metadata pointer beyond the container"));
            }
            self.storage
                .read_at(block_offset(cur), &mut block)
                .map_err(|e| VaultError::io("reading metadata", e))?;
            open_in_place(&key, &ad(AD_META, cur, rec.generation, seq), &mut block)
                .map_err(|()| VaultError::corrupt("metadata block failed authentication"))?;
            let p = &block[NONCE_LEN..BLOCK_SIZE - TAG_LEN];
            let mut r = Reader::new(p);
            let next = r.u32()?;
            let used = r.u32()? as usize;
            if used > META_DATA {
                return Err(VaultError::corrupt("metadata block length out of range"));
            }
            bytes.extend_from_slice(r.bytes(used)?);
            blocks.push(cur);
            cur = next;
        }
        if cur != NO_BLOCK || bytes.len() as u64 != rec.len {
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

    /// Allocates `n` free blocks at random positions.
    pub(crate) fn alloc(&mut self, n: usize) -> Result<Vec<u32>> {
        if self.poisoned {
            return Err(VaultError::Poisoned);
        }
        if n as u64 > self.free {
            return Err(VaultError::Full);
        }
        let total = self.nblocks as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let start = (self.rng.next_u64() % total as u64) as usize;
            let found = (start..total)
                .chain(0..start)
                .find(|&i| self.refs[i] == 0)
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
        if self.poisoned {
            self.release(uncommitted);
            return Err(VaultError::Poisoned);
        }
        let bytes = catalog.serialize();
        let count = bytes.len().div_ceil(META_DATA).max(1);
        let meta = match self.alloc(count) {
            Ok(m) => m,
            Err(e) => {
                self.release(uncommitted);
                return Err(e);
            }
        };
        if let Err(e) = self.write_commit(&bytes, &meta) {
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
        self.shred(&dead)
    }

    fn write_commit(&mut self, bytes: &[u8], meta: &[u32]) -> Result<()> {
        self.sync("writing file content")?;
        let slot = self.active;
        let volume = self.volume(slot)?;
        let generation = volume.generation + 1;
        let key = meta_key(&volume.vmk);
        let mut block = Zeroizing::new(vec![0u8; BLOCK_SIZE]);
        for (seq, chunk_idx) in (0..meta.len()).enumerate() {
            let start = chunk_idx * META_DATA;
            let piece = bytes.get(start..(start + META_DATA).min(bytes.len())).unwrap_or(&[]);
            let next = meta.get(seq + 1).copied().unwrap_or(NO_BLOCK);
            block.fill(0);
            let p = &mut block[NONCE_LEN..];
            p[0..4].copy_from_slice(&next.to_le_bytes());
            p[4..8].copy_from_slice(&(piece.len() as u32).to_le_bytes());
            p[8..8 + piece.len()].copy_from_slice(piece);
            let mut nonce = [0u8; NONCE_LEN];
            self.rng.fill_bytes(&mut nonce);
            let b = meta[seq];
            seal_in_place(&key, &nonce, &ad(AD_META, b, generation, seq as u32), &mut block)?;
            self.storage
                .write_at(block_offset(b), &block)
                .map_err(|e| VaultError::io("writing metadata", e))?;
        }
        self.sync("writing metadata")?;
        let volume = self.volumes[slot]
            .take()
            .ok_or_else(|| VaultError::corrupt("active volume missing"))?;
        let res = self.write_commit_record(
            slot,
            &volume,
            generation,
            meta[0],
            meta.len() as u32,
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
        self.free * PAYLOAD_SIZE as u64
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
        check_name(name)?;
        if self.poisoned {
            return Err(VaultError::Poisoned);
        }
        Ok(FileWriter::new(self, name.to_owned()))
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
