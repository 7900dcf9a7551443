//! The node's state inside a vault volume: identity key, encrypted blobs and their outboards.
//!
//! Vault file names (visible only to someone who opens the volume):
//!
//! * `node/identity`: the Ed25519 secret key;
//! * `blobs/HASH.blob`: an encrypted blob, named by a hash of its root (as in a data directory);
//! * `blobs/HASH.obao`: its outboard record, `root || blob_len || leaves`, checked against the
//!   root when the node starts;
//! * `blobs/incoming-N`: a blob being written whose root is not known yet. It is renamed when
//!   complete; one left over by a crash is deleted at the next start.
//!
//! Nothing is written outside the container. The vault handle is shared behind a mutex: long
//! writes (sharing, storing a seeding copy) run on blocking threads and take the vault for one
//! step of about 1 MiB at a time (a [`PendingFile`]), so serving never waits for a whole blob to
//! be written; serving reads one window of a blob at a time and keeps the last few windows in
//! memory, so that serving a run of 32 KiB groups does not decrypt a vault batch per group.

use crate::NodeError;
use crate::store::{blob_name, outboard_record, parse_outboard_record};
use samizdat_content::{ContentRoot, GROUP_SIZE, Locator, Outboard, group_range};
use samizdat_engine::ContentSource;
use samizdat_identity::Identity;
use samizdat_vault::{PAYLOAD_SIZE, PendingFile, Vault, VaultError};
use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use zeroize::Zeroizing;

/// Vault file of the node's identity key.
const IDENTITY: &str = "node/identity";
/// Vault "directory" of the blob store.
const BLOBS: &str = "blobs/";
/// Prefix of blobs being written.
const INCOMING: &str = "blobs/incoming-";
/// Blob bytes read from the vault at once when serving (a multiple of the group size).
const WINDOW: u64 = 128 * GROUP_SIZE as u64;
/// Windows kept in memory (bounded: `WINDOW × CACHED_WINDOWS` bytes, 16 MiB).
const CACHED_WINDOWS: usize = 4;
/// Vault blocks a blob being written hands to the vault at once: the vault is locked for one
/// seal and write of this many blocks (about 1 MiB), never for the whole blob.
const STEP_BLOCKS: usize = 16;
/// Blob bytes of one step.
const STEP: usize = STEP_BLOCKS * PAYLOAD_SIZE;

/// How the node opens its vault, beyond the path and password.
#[derive(Default)]
pub(crate) struct VaultOptions {
    /// Protected mode: volumes the node's writes must not touch.
    pub(crate) protect: Vec<Zeroizing<Vec<u8>>>,
    /// Wait for another process to close the container instead of failing.
    pub(crate) wait: bool,
}

impl std::fmt::Debug for VaultOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the passwords.
        f.debug_struct("VaultOptions").field("wait", &self.wait).finish_non_exhaustive()
    }
}

/// Opens the node's volume under the container's exclusive lock, which the node holds for its
/// whole lifetime (the vault lives as long as the node): a second node, or a `vault put`, on
/// the same container is refused with [`VaultError::InUse`]. Blocking.
pub(crate) fn open(
    path: &std::path::Path,
    password: &[u8],
    options: &VaultOptions,
) -> Result<Vault, NodeError> {
    let protect: Vec<&[u8]> = options.protect.iter().map(|p| p.as_slice()).collect();
    let opts = samizdat_vault::OpenOptions::new().wait(options.wait);
    Vault::open_with(path, password, &protect, opts).map_err(verr("opening the vault"))
}

/// A shared handle on the opened vault volume.
pub(crate) type SharedVault = Arc<Mutex<Vault>>;

/// Locks the vault. A panic while it was held leaves it usable: every vault write is one
/// atomic commit, and an unfinished writer is discarded when dropped.
pub(crate) fn lock(vault: &SharedVault) -> MutexGuard<'_, Vault> {
    vault.lock().unwrap_or_else(PoisonError::into_inner)
}

fn verr(context: &'static str) -> impl FnOnce(VaultError) -> NodeError {
    move |source| NodeError::Vault { context, source }
}

fn blob_file(root: &ContentRoot) -> String {
    format!("{BLOBS}{}.blob", blob_name(root))
}

fn outboard_file(root: &ContentRoot) -> String {
    format!("{BLOBS}{}.obao", blob_name(root))
}

/// Loads the node's identity from the vault, creating and storing one on first use.
pub(crate) fn load_identity(vault: &mut Vault) -> Result<Identity, NodeError> {
    match vault.get_bytes(IDENTITY) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            Identity::from_secret_bytes(&bytes).map_err(|_| NodeError::Corrupt("identity key"))
        }
        Err(VaultError::NotFound { .. }) => {
            let id = Identity::generate(&mut rand_core::OsRng);
            vault
                .put_bytes(IDENTITY, &id.danger_secret_bytes()[..])
                .map_err(verr("saving the identity key in the vault"))?;
            Ok(id)
        }
        Err(e) => {
            Err(NodeError::Vault { context: "reading the identity key from the vault", source: e })
        }
    }
}

/// Streams a new blob into the vault. `write` encodes it into the writer it is given and
/// returns its root and outboard; the blob is then filed under the root's name with its
/// outboard record. Blocking. The vault is taken for one [`STEP`] of the blob at a time, and
/// for the commits at the end, so serving goes on while a large blob is written.
pub(crate) fn put_blob(
    vault: &SharedVault,
    write: impl FnOnce(&mut dyn Write) -> Result<crate::state::Filed, NodeError>,
) -> Result<crate::state::Filed, NodeError> {
    let tmp = format!("{INCOMING}{:016x}", rand_core::RngCore::next_u64(&mut rand_core::OsRng));
    let mut file = lock(vault).begin_file(&tmp).map_err(verr("writing to the vault"))?;
    file.set_batch_blocks(STEP_BLOCKS);
    let mut writer =
        StepWriter { vault, file, buf: Zeroizing::new(Vec::with_capacity(STEP)), failure: None };
    let written = write(&mut writer).and_then(|filed| {
        writer.flush().map_err(|e| NodeError::io("writing to the vault", e))?;
        Ok(filed)
    });
    let StepWriter { file, failure, .. } = writer;
    let (root, locator, outboard) = match written {
        Ok(filed) => filed,
        Err(e) => {
            // Everything written is discarded; a vault error is the cause the encoder only saw
            // as an I/O error.
            lock(vault).abort_pending(file);
            return Err(failure.map_or(e, verr("writing to the vault")));
        }
    };
    // The long fsync of the blob's content, holding no lock: the commit has little left to do.
    if let Err(e) = file.sync() {
        lock(vault).abort_pending(file);
        return Err(verr("writing to the vault")(e));
    }
    let mut vault = lock(vault);
    vault.commit_pending(file).map_err(verr("writing to the vault"))?;
    let name = blob_file(&root);
    let exists = vault.file_size(&name).map_err(verr("reading the vault"))?.is_some();
    if exists {
        // Same root, same bytes: keep the stored copy.
        vault.delete(&tmp).map_err(verr("writing to the vault"))?;
    } else {
        vault.rename(&tmp, &name).map_err(verr("writing to the vault"))?;
    }
    vault
        .put_bytes(&outboard_file(&root), &outboard_record(&root, &locator, &outboard))
        .map_err(verr("writing an outboard to the vault"))?;
    Ok((root, locator, outboard))
}

/// The writer [`put_blob`] gives the encoder: it gathers a [`STEP`] of the blob, then locks the
/// vault just long enough to seal and write it.
struct StepWriter<'a> {
    vault: &'a SharedVault,
    file: PendingFile,
    buf: Zeroizing<Vec<u8>>,
    /// The vault error behind a failed write (the encoder sees an [`std::io::Error`]).
    failure: Option<VaultError>,
}

impl StepWriter<'_> {
    /// Hands `bytes` to the vault under its lock.
    fn push(
        vault: &SharedVault,
        file: &mut PendingFile,
        failure: &mut Option<VaultError>,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let result = lock(vault).write_pending(file, bytes);
        result.map_err(|e| {
            let io = std::io::Error::other(e.to_string());
            failure.get_or_insert(e);
            io
        })
    }
}

impl Write for StepWriter<'_> {
    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<usize> {
        let n = bytes.len();
        while !bytes.is_empty() {
            if self.buf.is_empty() && bytes.len() >= STEP {
                // A whole step in the caller's buffer: no copy.
                Self::push(self.vault, &mut self.file, &mut self.failure, &bytes[..STEP])?;
                bytes = &bytes[STEP..];
                continue;
            }
            let take = (STEP - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == STEP {
                self.flush()?;
            }
        }
        Ok(n)
    }

    /// Hands what is gathered to the vault (whose last partial batch waits for the commit).
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = Self::push(self.vault, &mut self.file, &mut self.failure, &self.buf);
        self.buf.clear();
        result
    }
}

/// Deletes a blob and its outboard record from the vault (a missing one is not an error).
/// Blocking.
pub(crate) fn delete_blob(vault: &SharedVault, root: &ContentRoot) -> Result<(), NodeError> {
    let mut vault = lock(vault);
    for name in [blob_file(root), outboard_file(root)] {
        match vault.delete(&name) {
            Ok(()) | Err(VaultError::NotFound { .. }) => {}
            Err(e) => return Err(verr("deleting a blob from the vault")(e)),
        }
    }
    Ok(())
}

/// One window of a blob held in memory.
#[derive(Debug)]
struct Window {
    root: ContentRoot,
    index: u64,
    bytes: Arc<Vec<u8>>,
}

/// Serves blobs stored in a vault volume.
#[derive(Debug)]
pub(crate) struct VaultSource {
    vault: SharedVault,
    blobs: BTreeMap<ContentRoot, (Locator, Arc<Outboard>)>,
    locators: BTreeMap<Locator, ContentRoot>,
    /// Recently read windows, least recently used first.
    cache: Mutex<VecDeque<Window>>,
}

impl VaultSource {
    /// Loads the outboard of every valid blob in the vault, checking each against its root.
    /// Damaged entries are skipped; blobs left half-written by a crash are deleted.
    /// Blocking.
    pub(crate) fn load(vault: SharedVault) -> Result<Self, NodeError> {
        let mut source = VaultSource {
            vault: vault.clone(),
            blobs: BTreeMap::new(),
            locators: BTreeMap::new(),
            cache: Mutex::default(),
        };
        let mut v = lock(&vault);
        let files = v.list().map_err(verr("reading the vault"))?;
        let names: std::collections::BTreeSet<&str> =
            files.iter().map(|f| f.name.as_str()).collect();
        for f in files.iter().filter(|f| f.name.ends_with(".obao")) {
            // A damaged entry must not stop the node; it is simply not served.
            let Ok(bytes) = v.get_bytes(&f.name) else { continue };
            // Records of the first layout (no locator) fail here: their links are obsolete.
            let Ok((root, locator, outboard)) = parse_outboard_record(&bytes) else { continue };
            if f.name != outboard_file(&root) {
                continue;
            }
            if v.file_size(&blob_file(&root)).ok().flatten() != Some(outboard.blob_len) {
                continue;
            }
            source.locators.insert(locator, root);
            source.blobs.insert(root, (locator, Arc::new(outboard)));
        }
        for f in &files {
            // A blob without an outboard record: the node stopped between the two commits.
            let no_outboard = f.name.starts_with(BLOBS)
                && f.name
                    .strip_suffix(".blob")
                    .is_some_and(|stem| !names.contains(format!("{stem}.obao").as_str()));
            let orphan = f.name.starts_with(INCOMING) || no_outboard;
            if orphan {
                // Best effort: an orphan is never served, deleting it only frees space.
                let _ = v.delete(&f.name);
            }
        }
        drop(v);
        Ok(source)
    }

    /// Starts serving a blob that [`put_blob`] stored.
    pub(crate) fn register(
        &mut self,
        root: ContentRoot,
        locator: Locator,
        outboard: Outboard,
    ) -> Result<(), NodeError> {
        outboard.check_root(&root).map_err(|_| NodeError::Corrupt("outboard"))?;
        let size =
            lock(&self.vault).file_size(&blob_file(&root)).map_err(verr("reading the vault"))?;
        if size != Some(outboard.blob_len) {
            return Err(NodeError::Corrupt("blob length"));
        }
        self.locators.insert(locator, root);
        self.blobs.insert(root, (locator, Arc::new(outboard)));
        Ok(())
    }

    /// Stops serving `root` (and drops its cached windows); whether it was served.
    pub(crate) fn remove(&mut self, root: &ContentRoot) -> bool {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner).retain(|w| w.root != *root);
        match self.blobs.remove(root) {
            Some((locator, _)) => {
                self.locators.remove(&locator);
                true
            }
            None => false,
        }
    }

    /// Whether this store serves `root`.
    pub(crate) fn contains(&self, root: &ContentRoot) -> bool {
        self.blobs.contains_key(root)
    }

    /// Window `index` of the blob `root` (`blob_len` bytes), from the cache or the vault.
    fn window(&self, root: &ContentRoot, index: u64, blob_len: u64) -> Option<Arc<Vec<u8>>> {
        {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(pos) = cache.iter().position(|w| w.root == *root && w.index == index) {
                let w = cache.remove(pos)?;
                let bytes = w.bytes.clone();
                cache.push_back(w);
                return Some(bytes);
            }
        }
        let start = index.checked_mul(WINDOW)?;
        let len = usize::try_from(blob_len.checked_sub(start)?.min(WINDOW)).ok()?;
        let mut bytes = vec![0u8; len];
        {
            let vault = lock(&self.vault);
            let mut reader = vault.open_file(&blob_file(root)).ok()?;
            if reader.len() != blob_len {
                return None;
            }
            reader.seek(SeekFrom::Start(start)).ok()?;
            reader.read_exact(&mut bytes).ok()?;
        }
        let bytes = Arc::new(bytes);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.push_back(Window { root: *root, index, bytes: bytes.clone() });
        while cache.len() > CACHED_WINDOWS {
            cache.pop_front();
        }
        Some(bytes)
    }
}

impl ContentSource for VaultSource {
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, Arc<Outboard>)> {
        let root = self.locators.get(locator)?;
        self.blobs.get(root).map(|(_, o)| (*root, o.clone()))
    }

    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        let (_, outboard) = self.blobs.get(root)?;
        if index >= outboard.groups() {
            return None;
        }
        let r = group_range(outboard.blob_len, index);
        let w = r.start / WINDOW;
        let window = self.window(root, w, outboard.blob_len)?;
        let start = usize::try_from(r.start - w * WINDOW).ok()?;
        let end = usize::try_from(r.end - w * WINDOW).ok()?;
        window.get(start..end).map(<[u8]>::to_vec)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use samizdat_content::{ContentKey, Manifest, encode};
    use samizdat_vault::{KdfCost, MemStorage};

    fn vault() -> SharedVault {
        let disk = Box::new(MemStorage::new(16 << 20));
        Arc::new(Mutex::new(Vault::create_in(disk, b"pw", KdfCost::DANGER_INSECURE_TEST).unwrap()))
    }

    /// Shares `len` bytes into the vault; returns the root and the ciphertext blob.
    fn share(vault: &SharedVault, len: usize) -> (ContentRoot, Locator, Vec<u8>) {
        let file: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let manifest = Manifest { name: "f".into(), size: len as u64, mime: "x".into() };
        let key = ContentKey::generate(&mut rand_core::OsRng);
        let mut blob = Vec::new();
        let (root, locator, _) = put_blob(vault, |sink| {
            let mut tee = Tee(sink, &mut blob);
            let e = encode(&key, &manifest, &file[..], &mut tee)?;
            Ok((e.root, key.locator(&e.root), e.outboard))
        })
        .unwrap();
        (root, locator, blob)
    }

    struct Tee<'a>(&'a mut dyn std::io::Write, &'a mut Vec<u8>);

    impl std::io::Write for Tee<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.1.extend_from_slice(buf);
            self.0.write_all(buf)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn serves_every_group_across_windows() {
        let vault = vault();
        let (root, locator, blob) = share(&vault, 2 * WINDOW as usize + 12_345);
        let (small, _, small_blob) = share(&vault, 10);
        let source = VaultSource::load(vault).unwrap();
        let (found, outboard) = source.lookup(&locator).unwrap();
        assert_eq!(found, root);
        assert!(source.lookup(&Locator(root.0)).is_none(), "served by its root");
        assert_eq!(outboard.blob_len, blob.len() as u64);
        // Out of order and interleaved with another blob, to exercise the cache.
        let groups = outboard.groups();
        for g in (0..groups).rev().chain(0..groups) {
            let r = group_range(outboard.blob_len, g);
            let got = source.read_group(&root, g).unwrap();
            assert_eq!(got, blob[r.start as usize..r.end as usize], "group {g}");
            assert_eq!(source.read_group(&small, 0).unwrap(), small_blob);
        }
        assert!(source.read_group(&root, groups).is_none());
        assert!(source.read_group(&ContentRoot([9; 32]), 0).is_none());
        assert!(source.cache.lock().unwrap().len() <= CACHED_WINDOWS);
    }

    #[test]
    fn load_skips_damaged_entries_and_removes_half_written_blobs() {
        let vault = vault();
        let (good, _, _) = share(&vault, 100_000);
        let (damaged, _, _) = share(&vault, 100_000);
        let (orphan, _, _) = share(&vault, 100_000);
        {
            let mut v = lock(&vault);
            // A corrupt outboard record: skipped, the blob kept.
            v.put_bytes(&outboard_file(&damaged), b"not an outboard").unwrap();
            // A crash between storing the blob and its outboard.
            v.delete(&outboard_file(&orphan)).unwrap();
            // A crash in the middle of a share (after the blob's commit, before its rename).
            v.put_bytes(&format!("{INCOMING}0123456789abcdef"), b"partial").unwrap();
        }
        let source = VaultSource::load(vault.clone()).unwrap();
        assert!(source.contains(&good));
        assert!(!source.contains(&damaged));
        assert!(!source.contains(&orphan));
        let names: Vec<String> = lock(&vault).list().unwrap().into_iter().map(|f| f.name).collect();
        assert!(names.contains(&blob_file(&damaged)), "{names:?}");
        assert!(!names.contains(&blob_file(&orphan)), "{names:?}");
        assert!(!names.iter().any(|n| n.starts_with(INCOMING)), "{names:?}");
    }

    /// A source of `len` bytes that pauses before every MiB but the first, like an encoder
    /// reading a slow disk, and says when `signal_at` bytes have been read.
    struct SlowReader {
        len: usize,
        served: usize,
        signal_at: usize,
        started: Option<std::sync::mpsc::Sender<()>>,
    }

    impl Read for SlowReader {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            const MIB: usize = 1 << 20;
            if self.served == self.len {
                return Ok(0);
            }
            if self.served > 0 && self.served % MIB == 0 {
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            let to_boundary = MIB - self.served % MIB;
            let n = buf.len().min(self.len - self.served).min(to_boundary);
            buf[..n].iter_mut().enumerate().for_each(|(i, b)| *b = (self.served + i) as u8);
            self.served += n;
            if self.served >= self.signal_at {
                if let Some(tx) = self.started.take() {
                    let _ = tx.send(());
                }
            }
            Ok(n)
        }
    }

    /// The requirement: serving never stalls while a large share is being written.
    /// The writer below takes about 2.4 s (a pause before every MiB, the vault untouched while
    /// it pauses); a group read in the middle must not wait for it.
    #[test]
    fn a_group_is_served_promptly_while_a_large_blob_is_written() {
        let vault = vault();
        let (root, _, blob) = share(&vault, 100_000);
        let source = VaultSource::load(vault.clone()).unwrap();
        let (tx, started) = std::sync::mpsc::channel();
        let len = 8 << 20;
        let writer = {
            let vault = vault.clone();
            std::thread::spawn(move || {
                let manifest = Manifest { name: "big".into(), size: len as u64, mime: "x".into() };
                let key = ContentKey::generate(&mut rand_core::OsRng);
                let reader = SlowReader { len, served: 0, signal_at: 2 << 20, started: Some(tx) };
                put_blob(&vault, |sink| {
                    let e = encode(&key, &manifest, reader, sink)?;
                    Ok((e.root, key.locator(&e.root), e.outboard))
                })
            })
        };
        started.recv().unwrap();
        let t = std::time::Instant::now();
        let got = source.read_group(&root, 0).unwrap();
        let took = t.elapsed();
        assert!(
            took < std::time::Duration::from_secs(1),
            "a group read waited {took:?} for the blob being written"
        );
        assert!(!writer.is_finished(), "the read must happen while the blob is being written");
        assert!(got == blob[..got.len()]);
        // The large blob itself was stored whole.
        let (big, locator, outboard) = writer.join().unwrap().unwrap();
        let mut source = source;
        source.register(big, locator, outboard).unwrap();
        let last = source.blobs[&big].1.groups() - 1;
        assert!(source.read_group(&big, last).is_some());
        let names: Vec<String> = lock(&vault).list().unwrap().into_iter().map(|f| f.name).collect();
        assert!(!names.iter().any(|n| n.starts_with(INCOMING)), "{names:?}");
    }

    #[test]
    fn a_full_vault_fails_the_put_with_a_vault_error_and_keeps_nothing() {
        let disk = Box::new(MemStorage::new(2 << 20));
        let v = Vault::create_in(disk, b"pw", KdfCost::DANGER_INSECURE_TEST).unwrap();
        let vault = Arc::new(Mutex::new(v));
        let (small, _, _) = share(&vault, 10_000);
        let free = lock(&vault).free_space();
        let file: Vec<u8> = vec![7; 3 << 20];
        let manifest = Manifest { name: "f".into(), size: file.len() as u64, mime: "x".into() };
        let key = ContentKey::generate(&mut rand_core::OsRng);
        let err = put_blob(&vault, |sink| {
            let e = encode(&key, &manifest, &file[..], sink)?;
            Ok((e.root, key.locator(&e.root), e.outboard))
        })
        .unwrap_err();
        assert!(
            matches!(err, NodeError::Vault { source: VaultError::Full, .. }),
            "the vault's own error, not the encoder's view of it: {err:?}"
        );
        assert_eq!(lock(&vault).free_space(), free, "the partial blob's space is back");
        let names: Vec<String> = lock(&vault).list().unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names.len(), 2, "only the small blob and its outboard: {names:?}");
        // The vault still works, and still serves.
        share(&vault, 10_000);
        let source = VaultSource::load(vault).unwrap();
        assert!(source.read_group(&small, 0).is_some());
    }

    #[test]
    fn a_read_only_vault_refuses_the_put() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.vault");
        drop(Vault::create(&path, 1 << 20, b"pw").unwrap());
        let opts = samizdat_vault::OpenOptions::new().read_only(true);
        let v = Vault::open_with(&path, b"pw", &[], opts).unwrap();
        let vault = Arc::new(Mutex::new(v));
        let mut called = false;
        let err = put_blob(&vault, |_| {
            called = true;
            Err(NodeError::Corrupt("never called"))
        })
        .unwrap_err();
        assert!(matches!(err, NodeError::Vault { source: VaultError::ReadOnly, .. }), "{err:?}");
        assert!(!called, "refused before encoding anything");
    }

    #[test]
    fn identity_is_created_once() {
        let vault = vault();
        let a = load_identity(&mut lock(&vault)).unwrap();
        let b = load_identity(&mut lock(&vault)).unwrap();
        assert_eq!(a.node_id(), b.node_id());
        lock(&vault).put_bytes(IDENTITY, b"short").unwrap();
        assert!(matches!(load_identity(&mut lock(&vault)), Err(NodeError::Corrupt(_))));
    }
}
