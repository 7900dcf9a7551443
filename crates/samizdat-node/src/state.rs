//! Where the node keeps its own state: nowhere (an ephemeral node), a data directory, or a
//! vault volume. [`Store`] is the one place that knows the difference; the driver and
//! [`crate::Node::share`] only ask it for the identity, the content source and to store a blob.

use crate::NodeError;
use crate::store::{FileSource, blob_stem, write_outboard};
use crate::vault_store::{self, SharedVault, VaultSource};
use samizdat_content::{ContentRoot, Outboard};
use samizdat_engine::ContentSource;
use samizdat_identity::Identity;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A cheap, cloneable handle on the node's state store.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    /// No state on disk: a fresh identity every run, nothing shared or seeded.
    Ephemeral,
    /// `DIR/identity.key` and `DIR/blobs/` (the blob directory is held here).
    Dir {
        /// `DIR/blobs`.
        blobs: PathBuf,
    },
    /// Everything inside an opened vault volume.
    Vault(SharedVault),
}

/// What a store holds when the node starts.
pub(crate) struct Opened {
    pub store: Store,
    pub identity: Identity,
    pub source: BlobSource,
}

impl Store {
    /// An ephemeral node's store.
    pub(crate) fn ephemeral() -> Opened {
        Opened {
            store: Store::Ephemeral,
            identity: Identity::generate(&mut rand_core::OsRng),
            source: BlobSource::Files(FileSource::default()),
        }
    }

    /// Opens (creating if needed) a data directory.
    pub(crate) fn open_dir(dir: &Path) -> Result<Opened, NodeError> {
        let identity = crate::load_identity(dir)?;
        let blobs = dir.join("blobs");
        let source = BlobSource::Files(FileSource::open(&blobs)?);
        Ok(Opened { store: Store::Dir { blobs }, identity, source })
    }

    /// Opens the vault volume that `password` unlocks. Blocking (one Argon2id run, then the
    /// outboards are read and checked).
    pub(crate) fn open_vault(
        path: &Path,
        password: &[u8],
        options: &vault_store::VaultOptions,
    ) -> Result<Opened, NodeError> {
        let mut vault = vault_store::open(path, password, options)?;
        let identity = vault_store::load_identity(&mut vault)?;
        let vault = Arc::new(Mutex::new(vault));
        let source = BlobSource::Vault(VaultSource::load(vault.clone())?);
        Ok(Opened { store: Store::Vault(vault), identity, source })
    }

    /// Whether blobs can be stored (sharing, seeding).
    pub(crate) fn is_persistent(&self) -> bool {
        !matches!(self, Store::Ephemeral)
    }

    /// Streams a new blob into the store. `write` encodes it into the writer it is given and
    /// returns its root and outboard; the blob is then filed under the root's name with its
    /// outboard. Nothing is served until the driver registers it with
    /// [`BlobSource::register`]. Blocking: call it off the driver task.
    pub(crate) fn put_blob(
        &self,
        write: impl FnOnce(&mut dyn Write) -> Result<(ContentRoot, Outboard), NodeError>,
    ) -> Result<(ContentRoot, Outboard), NodeError> {
        match self {
            Store::Ephemeral => Err(NodeError::io(
                "storing a blob",
                std::io::Error::other("this node has no data directory or vault"),
            )),
            Store::Dir { blobs } => put_blob_dir(blobs, write),
            Store::Vault(vault) => vault_store::put_blob(vault, write),
        }
    }
}

fn put_blob_dir(
    dir: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(ContentRoot, Outboard), NodeError>,
) -> Result<(ContentRoot, Outboard), NodeError> {
    let tmp =
        dir.join(format!("incoming-{}.tmp", rand_core::RngCore::next_u64(&mut rand_core::OsRng)));
    let out =
        std::fs::File::create(&tmp).map_err(|e| NodeError::io("writing to the blob store", e))?;
    let result = (|| {
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, out);
        let (root, outboard) = write(&mut writer)?;
        let out = writer
            .into_inner()
            .map_err(|e| NodeError::io("writing to the blob store", e.into_error()))?;
        out.sync_all().map_err(|e| NodeError::io("writing to the blob store", e))?;
        Ok((root, outboard))
    })();
    let (root, outboard) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let stem = blob_stem(dir, &root);
    std::fs::rename(&tmp, stem.with_extension("blob"))
        .map_err(|e| NodeError::io("writing to the blob store", e))?;
    write_outboard(&stem, &root, &outboard)?;
    Ok((root, outboard))
}

/// The engine's content source: the blobs of a data directory or of a vault.
#[derive(Debug)]
pub(crate) enum BlobSource {
    /// Files in `DATA/blobs/` (empty for an ephemeral node).
    Files(FileSource),
    /// Files in a vault volume.
    Vault(VaultSource),
}

impl BlobSource {
    /// Whether `root` is served.
    pub(crate) fn contains(&self, root: &ContentRoot) -> bool {
        match self {
            BlobSource::Files(f) => f.contains(root),
            BlobSource::Vault(v) => v.contains(root),
        }
    }

    /// Starts serving a blob that [`Store::put_blob`] stored in `store`.
    pub(crate) fn register(
        &mut self,
        store: &Store,
        root: ContentRoot,
        outboard: Outboard,
    ) -> Result<(), NodeError> {
        match (self, store) {
            (BlobSource::Files(f), Store::Dir { blobs }) => {
                f.load(&blob_stem(blobs, &root).with_extension("obao"))
            }
            (BlobSource::Vault(v), Store::Vault(_)) => v.register(root, outboard),
            _ => Err(NodeError::io(
                "storing a blob",
                std::io::Error::other("this node has no data directory or vault"),
            )),
        }
    }
}

impl ContentSource for BlobSource {
    fn outboard(&self, root: &ContentRoot) -> Option<Arc<Outboard>> {
        match self {
            BlobSource::Files(f) => f.outboard(root),
            BlobSource::Vault(v) => v.outboard(root),
        }
    }

    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        match self {
            BlobSource::Files(f) => f.read_group(root, index),
            BlobSource::Vault(v) => v.read_group(root, index),
        }
    }
}
