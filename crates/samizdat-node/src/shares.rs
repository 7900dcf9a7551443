//! The node's record of what it shares: one entry per share (name, size, date, link), kept
//! so that `samizdat shares` can show the links again and `samizdat unshare` can withdraw one.
//!
//! The records hold the links, which are the keys, so they are never written in the clear:
//!
//! * in vault mode they are the vault file `node/shares` (the vault encrypts and authenticates
//!   it, and nothing outside the container reveals it exists);
//! * in data-directory mode they are `DATA/shares.rec`: `nonce (12) || AES-256-GCM(json)`, under
//!   a key derived from the node's identity secret (BLAKE3 `derive_key`). The file has no
//!   plaintext header, is created 0600 and replaced atomically (write, sync, rename); a file
//!   that fails authentication is refused, never trusted or silently replaced.
//!
//! To notice that a file is shared twice, each record keeps a keyed BLAKE3 hash of the file's
//! content (the key is derived from the identity secret too), never a plain hash that someone
//! holding a known file could test for.

use crate::NodeError;
use crate::sealed::{DocKind, SealedDoc};
use crate::state::Store;
use samizdat_identity::Identity;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

/// Vault file of the share records.
const VAULT_FILE: &str = "node/shares";
/// File of the share records in a data directory.
const DIR_FILE: &str = "shares.rec";
/// Largest records file read (bounded: a damaged or hostile file cannot exhaust memory).
const MAX_FILE: u64 = 16 << 20;
/// Most records kept.
pub(crate) const MAX_SHARES: usize = 100_000;
const RECORD_KEY_CONTEXT: &str = "samizdat 2026 share records v1";
const CONTENT_KEY_CONTEXT: &str = "samizdat 2026 share content hash v1";
const AAD: &[u8] = b"samizdat share records v1";

/// One shared file, as the node remembers it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareRecord {
    /// A short random id, to name the share in `unshare`.
    pub id: String,
    /// The file's name (its last path component) when it was shared.
    pub name: String,
    /// The file's size in bytes.
    pub size: u64,
    /// When it was shared, in seconds since the Unix epoch.
    pub shared_at: u64,
    /// The share link as it was made (its peer hints may since have changed).
    pub link: String,
    /// Keyed hash of the file's content (hex), to recognise the same file shared again.
    content: String,
    /// Shared (last) with `--no-hints`: its listed link names no address.
    #[serde(default)]
    pub no_hints: bool,
}

impl std::fmt::Debug for ShareRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The link is the key and the name is sensitive: print neither.
        f.debug_struct("ShareRecord").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Where and how the records are kept (see [`crate::sealed`]).
static KIND: DocKind = DocKind {
    vault_file: VAULT_FILE,
    dir_file: DIR_FILE,
    key_context: RECORD_KEY_CONTEXT,
    aad: AAD,
    max_len: MAX_FILE,
    what: "share records (not written by this node's identity, or damaged)",
};

/// The share records of a node with a data directory or a vault.
pub(crate) struct ShareBook {
    doc: SealedDoc,
    records: Vec<ShareRecord>,
    content_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ShareBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareBook").field("records", &self.records.len()).finish_non_exhaustive()
    }
}

fn corrupt() -> NodeError {
    NodeError::Corrupt(KIND.what)
}

impl ShareBook {
    /// Opens the records of `store` (none yet is an empty book); `None` for an ephemeral node.
    /// Blocking.
    pub(crate) fn open(store: &Store, identity: &Identity) -> Result<Option<Self>, NodeError> {
        let Some(doc) = SealedDoc::new(store, identity, &KIND) else { return Ok(None) };
        let secret = identity.danger_secret_bytes();
        let content_key = Zeroizing::new(blake3::derive_key(CONTENT_KEY_CONTEXT, &secret[..]));
        let mut book = ShareBook { doc, records: Vec::new(), content_key };
        if let Some(plain) = book.doc.load()? {
            book.records = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
            book.records.truncate(MAX_SHARES);
        }
        Ok(Some(book))
    }

    /// Writes the records back. Blocking.
    fn save(&self) -> Result<(), NodeError> {
        let plain = Zeroizing::new(serde_json::to_vec(&self.records).map_err(|_| corrupt())?);
        self.doc.save(&plain)
    }

    /// Every record, oldest first.
    pub(crate) fn records(&self) -> &[ShareRecord] {
        &self.records
    }

    /// A keyed hasher for file content.
    pub(crate) fn content_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.content_key)
    }

    /// The record of a file whose keyed content hash is `hash` and size is `size`.
    pub(crate) fn find_content(&self, size: u64, hash: &blake3::Hash) -> Option<&ShareRecord> {
        let hex = hash.to_hex();
        self.records.iter().find(|r| r.size == size && r.content == hex.as_str())
    }

    /// Whether some record has this size (only then is it worth hashing a file to compare).
    pub(crate) fn has_size(&self, size: u64) -> bool {
        self.records.iter().any(|r| r.size == size)
    }

    /// Adds a record and saves. Blocking.
    pub(crate) fn add(
        &mut self,
        name: String,
        size: u64,
        link: String,
        hash: &blake3::Hash,
        shared_at: u64,
    ) -> Result<ShareRecord, NodeError> {
        if self.records.len() >= MAX_SHARES {
            return Err(NodeError::io(
                "recording the share",
                std::io::Error::other(format!("this node already has {MAX_SHARES} shares")),
            ));
        }
        let mut id = [0u8; 4];
        let record = loop {
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
            let id = data_encoding::HEXLOWER.encode(&id);
            if !self.records.iter().any(|r| r.id == id) {
                break ShareRecord {
                    id,
                    name,
                    size,
                    shared_at,
                    link,
                    content: hash.to_hex().to_string(),
                    no_hints: false,
                };
            }
        };
        self.records.push(record.clone());
        if let Err(e) = self.save() {
            self.records.pop();
            return Err(e);
        }
        Ok(record)
    }

    /// The index of the record that `target` names: its id, or a link with the same root.
    pub(crate) fn find(
        &self,
        target: &str,
        root: Option<&samizdat_content::ContentRoot>,
    ) -> Option<usize> {
        self.records.iter().position(|r| {
            r.id == target
                || root.is_some_and(|root| {
                    r.link.parse::<samizdat_content::ShareLink>().is_ok_and(|l| l.root == *root)
                })
        })
    }

    /// Sets whether record `id`'s link is listed without hints, and saves. Blocking.
    pub(crate) fn set_no_hints(&mut self, id: &str, on: bool) -> Result<ShareRecord, NodeError> {
        let i = self.records.iter().position(|r| r.id == id).ok_or(NodeError::UnknownShare)?;
        let was = std::mem::replace(&mut self.records[i].no_hints, on);
        if let Err(e) = self.save() {
            self.records[i].no_hints = was;
            return Err(e);
        }
        Ok(self.records[i].clone())
    }

    /// Removes record `index` and saves. Blocking.
    pub(crate) fn remove(&mut self, index: usize) -> Result<ShareRecord, NodeError> {
        if index >= self.records.len() {
            return Err(NodeError::UnknownShare);
        }
        let record = self.records.remove(index);
        if let Err(e) = self.save() {
            self.records.insert(index, record);
            return Err(e);
        }
        Ok(record)
    }
}

/// Overwrites a file with zeros, syncs it, and unlinks it. A missing file is not an error.
/// Blocking.
pub(crate) fn overwrite_and_remove(path: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| NodeError::io("deleting a blob", e);
    let mut f =
        match std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
    let len = f.metadata().map_err(io)?.len();
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(io)?;
        left -= n as u64;
    }
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::remove_file(path).map_err(io)
}

/// A reader that feeds what it reads to a hasher and counts it.
pub(crate) struct HashingReader<'a, R> {
    pub inner: R,
    pub hasher: &'a mut blake3::Hasher,
    pub count: Option<&'a std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(c) = self.count {
            c.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dir_store(dir: &Path) -> (Store, Identity) {
        let opened = Store::open_dir(dir).unwrap();
        (opened.store, opened.identity)
    }

    fn hash(book: &ShareBook, data: &[u8]) -> blake3::Hash {
        let mut h = book.content_hasher();
        h.update(data);
        h.finalize()
    }

    #[test]
    fn records_survive_a_reopen_encrypted_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (store, id) = dir_store(tmp.path());
        let mut book = ShareBook::open(&store, &id).unwrap().unwrap();
        assert!(book.records().is_empty());
        let h = hash(&book, b"hello");
        let r = book.add("secret-name.pdf".into(), 5, "sz1link".into(), &h, 1_700_000_000).unwrap();
        let book = ShareBook::open(&store, &id).unwrap().unwrap();
        assert_eq!(book.records(), std::slice::from_ref(&r));
        assert_eq!(book.find_content(5, &h).map(|r| &r.id), Some(&r.id));
        assert!(book.find_content(6, &h).is_none());
        assert!(book.has_size(5) && !book.has_size(4));
        assert_eq!(book.find(&r.id, None), Some(0));
        assert_eq!(book.find("nope", None), None);
        let path = tmp.path().join(DIR_FILE);
        let raw = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("secret-name") && !text.contains("sz1link"));
        assert!(!text.contains(&h.to_hex().to_string()[..16]));
        // No plain hash of the content either.
        assert!(!text.contains(&blake3::hash(b"hello").to_hex().to_string()[..16]));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // A different file content with the same name gives a different keyed hash.
        assert_ne!(hash(&book, b"hellp"), h);
    }

    #[test]
    fn tampered_or_foreign_records_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, id) = dir_store(tmp.path());
        let mut book = ShareBook::open(&store, &id).unwrap().unwrap();
        book.add("a".into(), 1, "l".into(), &hash(&book, b"a"), 1).unwrap();
        let path = tmp.path().join(DIR_FILE);
        let good = std::fs::read(&path).unwrap();
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(ShareBook::open(&store, &id), Err(NodeError::Corrupt(_))));
        std::fs::write(&path, &good[..5]).unwrap();
        assert!(matches!(ShareBook::open(&store, &id), Err(NodeError::Corrupt(_))));
        // Another identity cannot read them.
        std::fs::write(&path, &good).unwrap();
        let other = Identity::generate(&mut rand_core::OsRng);
        assert!(matches!(ShareBook::open(&store, &other), Err(NodeError::Corrupt(_))));
        assert!(ShareBook::open(&store, &id).is_ok());
        assert!(ShareBook::open(&Store::Ephemeral, &id).unwrap().is_none());
    }

    #[test]
    fn remove_saves_and_bad_index_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, id) = dir_store(tmp.path());
        let mut book = ShareBook::open(&store, &id).unwrap().unwrap();
        let a = book.add("a".into(), 1, "l".into(), &hash(&book, b"a"), 1).unwrap();
        let b = book.add("b".into(), 1, "m".into(), &hash(&book, b"b"), 2).unwrap();
        assert_ne!(a.id, b.id);
        assert!(matches!(book.remove(5), Err(NodeError::UnknownShare)));
        assert_eq!(book.remove(0).unwrap(), a);
        let book = ShareBook::open(&store, &id).unwrap().unwrap();
        assert_eq!(book.records(), &[b]);
    }

    #[test]
    fn vault_records_live_in_the_vault() {
        use samizdat_vault::{KdfCost, MemStorage, Vault};
        use std::sync::{Arc, Mutex};
        let disk = Box::new(MemStorage::new(4 << 20));
        let vault = Vault::create_in(disk, b"pw", KdfCost::DANGER_INSECURE_TEST).unwrap();
        let shared = Arc::new(Mutex::new(vault));
        let store = Store::Vault(shared.clone());
        let id = Identity::generate(&mut rand_core::OsRng);
        let mut book = ShareBook::open(&store, &id).unwrap().unwrap();
        let r = book.add("v".into(), 3, "link".into(), &hash(&book, b"abc"), 9).unwrap();
        assert!(crate::vault_store::lock(&shared).file_size(VAULT_FILE).unwrap().is_some());
        let book = ShareBook::open(&store, &id).unwrap().unwrap();
        assert_eq!(book.records(), &[r]);
        crate::vault_store::lock(&shared).put_bytes(VAULT_FILE, b"garbage").unwrap();
        assert!(matches!(ShareBook::open(&store, &id), Err(NodeError::Corrupt(_))));
    }

    #[test]
    fn overwrite_and_remove_deletes_and_tolerates_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.blob");
        std::fs::write(&p, vec![7u8; (1 << 20) + 5]).unwrap();
        overwrite_and_remove(&p).unwrap();
        assert!(!p.exists());
        overwrite_and_remove(&p).unwrap();
        // A symlink is not followed.
        let target = tmp.path().join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(overwrite_and_remove(&p).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
    }

    #[test]
    fn hashing_reader_counts_and_hashes() {
        let mut h = blake3::Hasher::new();
        let count = std::sync::atomic::AtomicU64::new(0);
        let mut r = HashingReader { inner: &b"abcdef"[..], hasher: &mut h, count: Some(&count) };
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(count.into_inner(), 6);
        assert_eq!(h.finalize(), blake3::hash(b"abcdef"));
    }
}
