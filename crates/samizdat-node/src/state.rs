//! Where the node keeps its own state: nowhere (an ephemeral node), a data directory, or a
//! vault volume. [`Store`] is the one place that knows the difference; the driver and
//! [`crate::Node::share`] only ask it for the identity, the content source and to store a blob.

use crate::NodeError;
use crate::store::{FileSource, NewBlob, StoreKeys};
use crate::vault_store::{self, SharedVault, VaultSource};
use samizdat_content::{ContentRoot, Locator, Outboard};
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
        /// The keys that name and seal the files in it.
        keys: StoreKeys,
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
        let keys = StoreKeys::derive(&identity.danger_secret_bytes());
        let blobs = dir.join("blobs");
        let source = BlobSource::Files(FileSource::open(&blobs, keys.clone())?);
        Ok(Opened { store: Store::Dir { blobs, keys }, identity, source })
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
    /// returns its root and outboard; the blob is then filed under its name (keyed hash of the
    /// root) with its sealed outboard record. A failed write leaves nothing behind. Nothing is served until the driver registers it with
    /// [`BlobSource::register`]. Blocking: call it off the driver task.
    pub(crate) fn put_blob(
        &self,
        write: impl FnOnce(&mut dyn Write) -> Result<Filed, NodeError>,
    ) -> Result<Filed, NodeError> {
        match self {
            Store::Ephemeral => Err(NodeError::io(
                "storing a blob",
                std::io::Error::other("this node has no data directory or vault"),
            )),
            Store::Dir { blobs, keys } => put_blob_dir(blobs, keys, write),
            Store::Vault(vault) => vault_store::put_blob(vault, write),
        }
    }

    /// Deletes a stored blob and its outboard securely: overwritten then unlinked in a data
    /// directory, deleted in the vault (which overwrites the freed blocks). Blocking.
    pub(crate) fn delete_blob(&self, root: &ContentRoot) -> Result<(), NodeError> {
        match self {
            Store::Ephemeral => Ok(()),
            Store::Dir { blobs, keys } => {
                let stem = blobs.join(keys.blob_name(root));
                crate::shares::overwrite_and_remove(&stem.with_extension("blob"))?;
                crate::shares::overwrite_and_remove(&stem.with_extension("obao"))
            }
            Store::Vault(vault) => vault_store::delete_blob(vault, root),
        }
    }
}

fn put_blob_dir(
    dir: &Path,
    keys: &StoreKeys,
    write: impl FnOnce(&mut dyn Write) -> Result<Filed, NodeError>,
) -> Result<Filed, NodeError> {
    // Dropped unfinished (an error below), the temporary file is removed.
    let mut blob = NewBlob::create(dir)?;
    let (root, locator, outboard) = write(&mut blob)?;
    blob.finish(keys, root, locator, &outboard)?;
    Ok((root, locator, outboard))
}

/// A blob as filed in a store: its root, the locator it is served under, its outboard.
pub(crate) type Filed = (ContentRoot, Locator, Outboard);

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

    /// Stops serving `root`; whether it was served.
    pub(crate) fn remove(&mut self, root: &ContentRoot) -> bool {
        match self {
            BlobSource::Files(f) => f.remove(root),
            BlobSource::Vault(v) => v.remove(root),
        }
    }

    /// Starts serving a blob that [`Store::put_blob`] stored in `store`.
    pub(crate) fn register(
        &mut self,
        store: &Store,
        root: ContentRoot,
        locator: Locator,
        outboard: Outboard,
    ) -> Result<(), NodeError> {
        match (self, store) {
            (BlobSource::Files(f), Store::Dir { .. }) => f.load_root(&root),
            (BlobSource::Vault(v), Store::Vault(_)) => v.register(root, locator, outboard),
            _ => Err(NodeError::io(
                "storing a blob",
                std::io::Error::other("this node has no data directory or vault"),
            )),
        }
    }
}

impl ContentSource for BlobSource {
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, Arc<Outboard>)> {
        match self {
            BlobSource::Files(f) => f.lookup(locator),
            BlobSource::Vault(v) => v.lookup(locator),
        }
    }

    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        match self {
            BlobSource::Files(f) => f.read_group(root, index),
            BlobSource::Vault(v) => v.read_group(root, index),
        }
    }
}
