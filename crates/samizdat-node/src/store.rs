//! The node's blob store in a data directory: blobs and their outboards in `DATA/blobs/` (the
//! vault counterpart is `vault_store`; `state` chooses between them).
//!
//! Nothing in the store can be tied to a share link by someone who holds the link but not the
//! node's secret (the [`StoreKeys`], derived from the identity key beside it):
//!
//! * a blob is filed as `NAME.blob` + `NAME.obao`, where `NAME` is a hash of the root keyed
//!   with the node's secret (so the link's root cannot be used to look a file up);
//! * `NAME.blob` is the blob's ciphertext encrypted once more under a random per-blob key
//!   (AES-256-CTR, seekable), so hashing the files does not reveal the root either;
//! * `NAME.obao` is `nonce || AES-256-GCM(root || blob key || outboard)`, authenticated
//!   together with `NAME`, under a key derived from the node's secret: the root, the length and
//!   the leaves are never on disk in plaintext, and a swapped or altered record is rejected.
//!
//! Every file is created mode 0600 with `O_NOFOLLOW`, the directory mode 0700. A data
//! directory of the old layout (v1: `.obao` files beginning with the plaintext root, blobs
//! without the second layer) is migrated when the node opens it: each blob is re-encrypted
//! into the new layout and the old files are removed.

use crate::NodeError;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use samizdat_content::{ContentKey, ContentRoot, Locator, Outboard, group_range};
use samizdat_engine::ContentSource;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Bytes of a blob name's keyed hash that go into the file name.
const NAME_BYTES: usize = 16;
/// Associated data of a sealed outboard record (followed by the file name).
const OBAO_AAD: &[u8] = b"samizdat 2026 store outboard v2 ";
/// Length of the GCM tag.
const TAG_LEN: usize = 16;
/// Copy buffer of a migration.
const COPY_BUFFER: usize = 1 << 20;

/// Opens `path` for reading and writing, creating it mode 0600 if it does not exist, never
/// following a symbolic link in its last component.
pub(crate) fn open_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Creates a new file at `path` (mode 0600, failing if anything, a link included, is there).
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Reads the whole file at `path`, refusing a symbolic link.
pub(crate) fn read_private(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Writes `bytes` to `path` atomically (a new private temporary file, synced, then renamed).
pub(crate) fn write_private_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{:016x}.tmp", rand_core::RngCore::next_u64(&mut rand_core::OsRng)));
    let tmp = PathBuf::from(tmp);
    let result = create_private(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename durable.
        match path.parent() {
            Some(dir) => File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` (and missing parents) mode 0700, and makes an existing one 0700.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Seals `plaintext` with AES-256-GCM under `key`: `nonce || ciphertext || tag`, with a
/// random nonce.
pub(crate) fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let mut out = nonce.to_vec();
    out.extend_from_slice(plaintext);
    // Only a wrong key length fails, and the key is always 32 bytes.
    if let Ok(k) = UnboundKey::new(&AES_256_GCM, key) {
        let mut body = out.split_off(NONCE_LEN);
        if let Ok(tag) = LessSafeKey::new(k).seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        ) {
            out.extend_from_slice(&body);
            out.extend_from_slice(tag.as_ref());
            return out;
        }
    }
    Vec::new()
}

/// Opens what [`seal`] made; `None` if it was altered, truncated or sealed under another key
/// or associated data.
pub(crate) fn open_sealed(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut body = Zeroizing::new(body.to_vec());
    let len = key.open_in_place(nonce, Aad::from(aad), &mut body).ok()?.len();
    body.truncate(len);
    Some(body)
}

/// The node's secrets for its data directory, derived from its identity key: one names blob
/// files, one seals their outboard records.
#[derive(Clone)]
pub(crate) struct StoreKeys {
    name: Zeroizing<[u8; 32]>,
    record: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for StoreKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKeys(<secret>)")
    }
}

impl StoreKeys {
    /// Derives the store keys from the node's identity secret.
    pub(crate) fn derive(identity_secret: &[u8; 32]) -> Self {
        StoreKeys {
            name: Zeroizing::new(blake3::derive_key(
                "samizdat 2026 store file name v2",
                identity_secret,
            )),
            record: Zeroizing::new(blake3::derive_key(
                "samizdat 2026 store outboard record v2",
                identity_secret,
            )),
        }
    }

    /// The name under which `root` is stored: a hash of the root keyed with the node secret.
    pub(crate) fn blob_name(&self, root: &ContentRoot) -> String {
        let h = blake3::keyed_hash(&self.name, &root.0);
        data_encoding::HEXLOWER.encode(&h.as_bytes()[..NAME_BYTES])
    }

    fn aad(name: &str) -> Vec<u8> {
        let mut aad = OBAO_AAD.to_vec();
        aad.extend_from_slice(name.as_bytes());
        aad
    }

    /// Seals the outboard record of the blob filed as `name`.
    fn seal_record(&self, name: &str, record: &Record) -> Vec<u8> {
        let mut plain = Zeroizing::new(record.root.0.to_vec());
        plain.extend_from_slice(&record.locator.0);
        plain.extend_from_slice(record.at_rest.as_bytes());
        plain.extend_from_slice(&record.outboard.to_bytes());
        seal(&self.record, &Self::aad(name), &plain)
    }

    /// Opens and checks the outboard record of the blob filed as `name`: it must be sealed
    /// under this node's key for this name, name the root that `name` is the hash of, and its
    /// leaves must hash to that root.
    fn open_record(&self, name: &str, sealed: &[u8]) -> Result<Record, NodeError> {
        let corrupt = NodeError::Corrupt("outboard file");
        let plain =
            self.open_sealed_record(name, sealed).ok_or(NodeError::Corrupt("outboard file"))?;
        let (root, rest) = plain.split_at_checked(32).ok_or(NodeError::Corrupt("outboard file"))?;
        let (locator, rest) =
            rest.split_at_checked(32).ok_or(NodeError::Corrupt("outboard file"))?;
        let locator = Locator(locator.try_into().map_err(|_| NodeError::Corrupt("outboard file"))?);
        let (key, rest) = rest.split_at_checked(32).ok_or(NodeError::Corrupt("outboard file"))?;
        let root = ContentRoot(root.try_into().map_err(|_| NodeError::Corrupt("outboard file"))?);
        let at_rest = ContentKey::from_bytes(
            key.try_into().map_err(|_| NodeError::Corrupt("outboard file"))?,
        );
        let outboard =
            Outboard::from_bytes(rest).map_err(|_| NodeError::Corrupt("outboard file"))?;
        if self.blob_name(&root) != name || outboard.check_root(&root).is_err() {
            return Err(corrupt);
        }
        Ok(Record { root, locator, at_rest, outboard })
    }

    fn open_sealed_record(&self, name: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        open_sealed(&self.record, &Self::aad(name), sealed)
    }
}

/// What a sealed outboard record holds.
struct Record {
    root: ContentRoot,
    /// What peers ask for it by.
    locator: Locator,
    /// The key of the second encryption layer of the blob file.
    at_rest: ContentKey,
    outboard: Outboard,
}

/// A fresh random key for the at-rest layer of one blob file.
fn new_at_rest_key() -> ContentKey {
    ContentKey::generate(&mut rand_core::OsRng)
}

/// Writes the sealed outboard record of `root` into `dir` (atomically).
fn write_record(dir: &Path, keys: &StoreKeys, record: &Record) -> Result<(), NodeError> {
    let name = keys.blob_name(&record.root);
    let sealed = keys.seal_record(&name, record);
    write_private_atomic(&dir.join(format!("{name}.obao")), &sealed)
        .map_err(|e| NodeError::io("writing an outboard", e))
}

/// A blob file being written sequentially (sharing, vault-less seeding of a finished file,
/// migration): it encrypts what it is given with the blob's at-rest key. Dropping it without
/// [`NewBlob::finish`] removes the file.
pub(crate) struct NewBlob {
    file: std::io::BufWriter<File>,
    tmp: PathBuf,
    dir: PathBuf,
    at_rest: ContentKey,
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

impl NewBlob {
    /// Starts a new blob in `dir` (under a random temporary name).
    pub(crate) fn create(dir: &Path) -> Result<Self, NodeError> {
        let tmp = dir.join(format!(
            "incoming-{:016x}.tmp",
            rand_core::RngCore::next_u64(&mut rand_core::OsRng)
        ));
        let file =
            create_private(&tmp).map_err(|e| NodeError::io("writing to the blob store", e))?;
        Ok(NewBlob {
            file: std::io::BufWriter::with_capacity(COPY_BUFFER, file),
            tmp,
            dir: dir.to_owned(),
            at_rest: new_at_rest_key(),
            offset: 0,
            buf: Vec::new(),
            done: false,
        })
    }

    /// Syncs the blob and files it under `root` with its sealed outboard record.
    pub(crate) fn finish(
        mut self,
        keys: &StoreKeys,
        root: ContentRoot,
        locator: Locator,
        outboard: &Outboard,
    ) -> Result<(), NodeError> {
        let io = |e| NodeError::io("writing to the blob store", e);
        self.file.flush().map_err(io)?;
        self.file.get_ref().sync_all().map_err(io)?;
        if self.offset != outboard.blob_len {
            return Err(NodeError::Corrupt("blob length"));
        }
        let name = keys.blob_name(&root);
        let record =
            Record { root, locator, at_rest: self.at_rest.clone(), outboard: outboard.clone() };
        std::fs::rename(&self.tmp, self.dir.join(format!("{name}.blob"))).map_err(io)?;
        self.done = true;
        write_record(&self.dir, keys, &record)
    }
}

impl Write for NewBlob {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.clear();
        self.buf.extend_from_slice(data);
        self.at_rest.apply_at(self.offset, &mut self.buf);
        self.file.write_all(&self.buf)?;
        self.offset += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for NewBlob {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The seeding copy of a download in a data directory, written group by group at its offset
/// as each is verified. Dropping it without [`FileSource::commit`] (a failed or cancelled
/// download) removes the file, so a failure leaves no blob behind.
#[derive(Debug)]
pub(crate) struct PendingBlob {
    file: File,
    path: PathBuf,
    root: ContentRoot,
    locator: Locator,
    at_rest: ContentKey,
    done: bool,
}

impl PendingBlob {
    /// Writes verified ciphertext at blob offset `offset` (adding the at-rest layer).
    /// Flushes what was written to the disk.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }

    pub(crate) fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut buf = data.to_vec();
        self.at_rest.apply_at(offset, &mut buf);
        self.file.write_all_at(&buf, offset)
    }
}

impl Drop for PendingBlob {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Serves blobs from files.
#[derive(Debug, Default)]
pub struct FileSource {
    /// The directory and its keys; `None` for an ephemeral node, which stores nothing.
    dir: Option<(PathBuf, StoreKeys)>,
    blobs: BTreeMap<ContentRoot, Served>,
    locators: BTreeMap<Locator, ContentRoot>,
}

#[derive(Debug)]
struct Served {
    locator: Locator,
    outboard: Arc<Outboard>,
    file: Arc<File>,
    at_rest: ContentKey,
}

impl FileSource {
    /// Opens the blob store in `dir` (creating it, mode 0700, if needed) and loads every valid
    /// blob. Invalid entries are skipped (not served); leftovers of interrupted writes are
    /// removed; blobs of the old layout are migrated.
    pub(crate) fn open(dir: &Path, keys: StoreKeys) -> Result<Self, NodeError> {
        create_private_dir(dir).map_err(|e| NodeError::io("creating the blob store", e))?;
        let mut source = FileSource {
            dir: Some((dir.to_owned(), keys)),
            blobs: BTreeMap::new(),
            locators: BTreeMap::new(),
        };
        let entries =
            std::fs::read_dir(dir).map_err(|e| NodeError::io("reading the blob store", e))?;
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in &paths {
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            match ext {
                "obao" => {
                    if let Err(NodeError::Corrupt(_)) = source.load(path) {
                        // Either the old layout (removed) or damage (not served).
                        source.remove_v1(path);
                    }
                }
                // Interrupted writes: an unfinished share or seeding copy.
                "tmp" => {
                    let _ = std::fs::remove_file(path);
                }
                _ => {}
            }
        }
        // A blob without a record is an interrupted seeding copy (the record is written last).
        for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "blob")) {
            if !path.with_extension("obao").exists() {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(source)
    }

    fn dir(&self) -> Result<(&Path, &StoreKeys), NodeError> {
        match &self.dir {
            Some((d, k)) => Ok((d, k)),
            None => Err(NodeError::io(
                "storing a blob",
                std::io::Error::other("this node has no data directory or vault"),
            )),
        }
    }

    /// Loads the outboard record `obao` and its blob, and starts serving it.
    pub(crate) fn load(&mut self, obao: &Path) -> Result<(), NodeError> {
        let (_, keys) = self.dir()?;
        let name =
            obao.file_stem().and_then(|s| s.to_str()).ok_or(NodeError::Corrupt("file name"))?;
        let bytes = read_private(obao).map_err(|e| NodeError::io("reading an outboard", e))?;
        let Record { root, locator, at_rest, outboard } = keys.open_record(name, &bytes)?;
        let blob = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(obao.with_extension("blob"))
            .map_err(|e| NodeError::io("opening a blob", e))?;
        let len = blob.metadata().map_err(|e| NodeError::io("reading a blob", e))?.len();
        if len != outboard.blob_len {
            return Err(NodeError::Corrupt("blob length"));
        }
        let served =
            Served { locator, outboard: Arc::new(outboard), file: Arc::new(blob), at_rest };
        self.locators.insert(locator, root);
        self.blobs.insert(root, served);
        Ok(())
    }

    /// Starts serving `root`, which [`NewBlob::finish`] filed in this store.
    pub(crate) fn load_root(&mut self, root: &ContentRoot) -> Result<(), NodeError> {
        let (dir, keys) = self.dir()?;
        let obao = dir.join(format!("{}.obao", keys.blob_name(root)));
        self.load(&obao)
    }

    /// Removes one blob of the first layout (a plaintext `root || outboard` record beside a
    /// blob named by an unkeyed hash of the root). Links of that time are no longer accepted
    /// (they did not pin who serves the file), so the blob could never be asked for again,
    /// and its files are exactly the forensic trace this layout was replaced to avoid.
    fn remove_v1(&mut self, obao: &Path) {
        let Ok(bytes) = read_private(obao) else { return };
        let name = obao.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let root = bytes.get(..32).and_then(|r| <[u8; 32]>::try_from(r).ok()).map(ContentRoot);
        if !is_v1_record(&bytes) || root.is_none_or(|r| blob_name(&r) != name) {
            tracing::debug!("skipping a damaged blob store entry");
            return;
        }
        let _ = std::fs::remove_file(obao.with_extension("blob"));
        let _ = std::fs::remove_file(obao);
    }

    /// Opens the seeding copy of a download of `root`, unless this store cannot hold one.
    pub(crate) fn pending(&self, root: &ContentRoot, locator: Locator) -> Option<PendingBlob> {
        let (dir, keys) = self.dir().ok()?;
        let path = dir.join(format!("{}.blob", keys.blob_name(root)));
        // A leftover of an earlier attempt is rewritten under a fresh key.
        let _ = std::fs::remove_file(&path);
        let file = create_private(&path).ok()?;
        Some(PendingBlob {
            file,
            path,
            root: *root,
            locator,
            at_rest: new_at_rest_key(),
            done: false,
        })
    }

    /// Files a completed seeding copy with its outboard and starts serving it.
    pub(crate) fn commit(
        &mut self,
        mut pending: PendingBlob,
        outboard: Outboard,
    ) -> Result<(), NodeError> {
        let (dir, keys) = self.dir()?;
        pending.file.sync_all().map_err(|e| NodeError::io("storing a seeding copy", e))?;
        let root = pending.root;
        let record =
            Record { root, locator: pending.locator, at_rest: pending.at_rest.clone(), outboard };
        write_record(dir, keys, &record)?;
        pending.done = true;
        self.load_root(&root)
    }

    /// Stops serving `root`; whether it was served.
    pub(crate) fn remove(&mut self, root: &ContentRoot) -> bool {
        match self.blobs.remove(root) {
            Some(s) => {
                self.locators.remove(&s.locator);
                true
            }
            None => false,
        }
    }

    /// Whether this store serves `root`.
    pub fn contains(&self, root: &ContentRoot) -> bool {
        self.blobs.contains_key(root)
    }

    /// Number of blobs served.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether nothing is served.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}

/// The file name of a blob in the old (v1) layout of a data directory, and of a blob inside a
/// vault volume (where names are hidden by the vault): an unkeyed hash of the root.
pub(crate) fn blob_name(root: &ContentRoot) -> String {
    let name = blake3::derive_key("samizdat 2026 store file name v1", &root.0);
    data_encoding::HEXLOWER.encode(&name[..16])
}

/// The tag that starts an outboard record inside a vault volume (v2: with the locator).
const VAULT_RECORD_V2: &[u8; 4] = b"SZo2";

/// The bytes of an outboard record inside a vault volume (which encrypts it):
/// `"SZo2" || root || locator || blob_len || leaves`.
pub(crate) fn outboard_record(
    root: &ContentRoot,
    locator: &Locator,
    outboard: &Outboard,
) -> Vec<u8> {
    let mut bytes = VAULT_RECORD_V2.to_vec();
    bytes.extend_from_slice(&root.0);
    bytes.extend_from_slice(&locator.0);
    bytes.extend_from_slice(&outboard.to_bytes());
    bytes
}

/// Parses an outboard record of [`outboard_record`]'s form and checks it against its root.
pub(crate) fn parse_outboard_record(
    bytes: &[u8],
) -> Result<(ContentRoot, Locator, Outboard), NodeError> {
    let corrupt = || NodeError::Corrupt("outboard file");
    let rest = bytes.strip_prefix(VAULT_RECORD_V2).ok_or_else(corrupt)?;
    let (root, rest) = rest.split_at_checked(32).ok_or_else(corrupt)?;
    let (locator, rest) = rest.split_at_checked(32).ok_or_else(corrupt)?;
    let root = ContentRoot(root.try_into().map_err(|_| corrupt())?);
    let locator = Locator(locator.try_into().map_err(|_| corrupt())?);
    let outboard = Outboard::from_bytes(rest).map_err(|_| corrupt())?;
    outboard.check_root(&root).map_err(|_| corrupt())?;
    Ok((root, locator, outboard))
}

/// Whether `bytes` look like an outboard record of the first layout (`root || outboard`,
/// checked against its root).
fn is_v1_record(bytes: &[u8]) -> bool {
    let Some((root, rest)) = bytes.split_at_checked(32) else { return false };
    let Ok(root) = <[u8; 32]>::try_from(root) else { return false };
    Outboard::from_bytes(rest).is_ok_and(|o| o.check_root(&ContentRoot(root)).is_ok())
}

impl ContentSource for FileSource {
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, Arc<Outboard>)> {
        let root = self.locators.get(locator)?;
        self.blobs.get(root).map(|s| (*root, s.outboard.clone()))
    }

    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        let served = self.blobs.get(root)?;
        let r = group_range(served.outboard.blob_len, index);
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        served.file.read_exact_at(&mut buf, r.start).ok()?;
        served.at_rest.apply_at(r.start, &mut buf);
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_bytes_reject_any_change() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"ad", b"hello world");
        assert_eq!(&open_sealed(&key, b"ad", &sealed).unwrap()[..], b"hello world");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open_sealed(&key, b"ad", &bad).is_none(), "byte {i}");
        }
        assert!(open_sealed(&key, b"other", &sealed).is_none());
        assert!(open_sealed(&[8u8; 32], b"ad", &sealed).is_none());
        assert!(open_sealed(&key, b"ad", &sealed[..sealed.len() - 1]).is_none());
        assert!(open_sealed(&key, b"ad", &[]).is_none());
    }

    #[test]
    fn blob_names_depend_on_the_node_secret() {
        let root = ContentRoot([3; 32]);
        let a = StoreKeys::derive(&[1; 32]);
        let b = StoreKeys::derive(&[2; 32]);
        assert_ne!(a.blob_name(&root), b.blob_name(&root));
        assert_ne!(a.blob_name(&root), blob_name(&root));
        assert_eq!(a.blob_name(&root), StoreKeys::derive(&[1; 32]).blob_name(&root));
    }

    #[test]
    fn a_record_moved_to_another_name_is_rejected() {
        let keys = StoreKeys::derive(&[1; 32]);
        let (r1, r2) = (ContentRoot([3; 32]), ContentRoot([4; 32]));
        // One group: check_root accepts any single leaf.
        let outboard = Outboard { blob_len: 10, leaves: vec![[0; 32]] };
        let record =
            Record { root: r1, locator: Locator([5; 32]), at_rest: new_at_rest_key(), outboard };
        let sealed = keys.seal_record(&keys.blob_name(&r1), &record);
        assert!(keys.open_record(&keys.blob_name(&r1), &sealed).is_ok());
        assert!(keys.open_record(&keys.blob_name(&r2), &sealed).is_err());
        assert!(StoreKeys::derive(&[2; 32]).open_record(&keys.blob_name(&r1), &sealed).is_err());
    }

    #[test]
    fn private_files_refuse_symlinks_and_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_private(&link).is_err());
        assert!(create_private(&link).is_err());
        assert!(read_private(&link).is_err());
        let f = dir.path().join("new");
        open_private(&f).unwrap();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let d = dir.path().join("d/e");
        create_private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
