//! The node's blob store in a data directory: encrypted blobs and their outboards in
//! `DATA/blobs/` (the vault counterpart is `vault_store`; `state` chooses between them).
//!
//! Files are named by a hash of the root (not the root itself) and hold only ciphertext; the
//! keys live only in share links. Each `.obao` file is `root || blob_len || leaves` and is
//! checked against its root when loaded.

use crate::NodeError;
use samizdat_content::{ContentRoot, Outboard, group_range};
use samizdat_engine::ContentSource;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Serves blobs from files.
#[derive(Debug, Default)]
pub struct FileSource {
    blobs: BTreeMap<ContentRoot, (Arc<Outboard>, Arc<File>)>,
}

/// The name under which a blob is stored (a hash of the root, not the root itself).
pub(crate) fn blob_name(root: &ContentRoot) -> String {
    let name = blake3::derive_key("samizdat 2026 store file name v1", &root.0);
    data_encoding::HEXLOWER.encode(&name[..16])
}

/// The file stem under which a blob is stored.
pub(crate) fn blob_stem(dir: &Path, root: &ContentRoot) -> PathBuf {
    dir.join(blob_name(root))
}

/// The bytes of an outboard record: `root || blob_len || leaves`.
pub(crate) fn outboard_record(root: &ContentRoot, outboard: &Outboard) -> Vec<u8> {
    let mut bytes = root.0.to_vec();
    bytes.extend_from_slice(&outboard.to_bytes());
    bytes
}

/// Parses an outboard record and checks the leaves against the root it names.
pub(crate) fn parse_outboard_record(bytes: &[u8]) -> Result<(ContentRoot, Outboard), NodeError> {
    let (root, rest) = bytes.split_at_checked(32).ok_or(NodeError::Corrupt("outboard file"))?;
    let mut r = [0u8; 32];
    r.copy_from_slice(root);
    let root = ContentRoot(r);
    let outboard = Outboard::from_bytes(rest).map_err(|_| NodeError::Corrupt("outboard file"))?;
    outboard.check_root(&root).map_err(|_| NodeError::Corrupt("outboard file"))?;
    Ok((root, outboard))
}

/// Writes the outboard of the blob at `stem.blob` to `stem.obao` (atomically, by rename).
pub(crate) fn write_outboard(
    stem: &Path,
    root: &ContentRoot,
    outboard: &Outboard,
) -> Result<(), NodeError> {
    let tmp = stem.with_extension("obao.tmp");
    std::fs::write(&tmp, outboard_record(root, outboard))
        .map_err(|e| NodeError::io("writing an outboard", e))?;
    std::fs::rename(&tmp, stem.with_extension("obao"))
        .map_err(|e| NodeError::io("writing an outboard", e))
}

impl FileSource {
    /// Loads every valid blob in `dir` (creating it if needed). Invalid entries are skipped.
    pub fn open(dir: &Path) -> Result<Self, NodeError> {
        std::fs::create_dir_all(dir).map_err(|e| NodeError::io("creating the blob store", e))?;
        let mut source = FileSource::default();
        let entries =
            std::fs::read_dir(dir).map_err(|e| NodeError::io("reading the blob store", e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "obao") {
                // A damaged entry must not stop the node; it is simply not served.
                let _ = source.load(&path);
            }
        }
        Ok(source)
    }

    /// Loads the outboard file `obao` and its blob, and starts serving it.
    pub(crate) fn load(&mut self, obao: &Path) -> Result<(), NodeError> {
        let bytes = std::fs::read(obao).map_err(|e| NodeError::io("reading an outboard", e))?;
        let (root, outboard) = parse_outboard_record(&bytes)?;
        let blob = File::open(obao.with_extension("blob"))
            .map_err(|e| NodeError::io("opening a blob", e))?;
        let len = blob.metadata().map_err(|e| NodeError::io("reading a blob", e))?.len();
        if len != outboard.blob_len {
            return Err(NodeError::Corrupt("blob length"));
        }
        self.blobs.insert(root, (Arc::new(outboard), Arc::new(blob)));
        Ok(())
    }

    /// Writes the outboard of a completed blob file at `stem.blob` and starts serving it.
    pub(crate) fn commit(
        &mut self,
        stem: &Path,
        root: ContentRoot,
        outboard: Outboard,
    ) -> Result<(), NodeError> {
        write_outboard(stem, &root, &outboard)?;
        self.load(&stem.with_extension("obao"))
    }

    /// Stops serving `root`; whether it was served.
    pub(crate) fn remove(&mut self, root: &ContentRoot) -> bool {
        self.blobs.remove(root).is_some()
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

impl ContentSource for FileSource {
    fn outboard(&self, root: &ContentRoot) -> Option<Arc<Outboard>> {
        self.blobs.get(root).map(|(o, _)| o.clone())
    }

    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        let (outboard, file) = self.blobs.get(root)?;
        let r = group_range(outboard.blob_len, index);
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        file.read_exact_at(&mut buf, r.start).ok()?;
        Some(buf)
    }
}
