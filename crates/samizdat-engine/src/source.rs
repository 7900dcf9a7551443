//! What the engine serves: blobs found by their locator.

use samizdat_content::{ContentRoot, Locator, Outboard, group_range};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The blobs a node serves. The engine only calls [`ContentSource::lookup`] (an in-memory
/// lookup); chunk-group reads are [`crate::Action::ReadGroup`]s that the driver carries out,
/// with [`ContentSource::read_group`] or its own store, wherever it likes.
pub trait ContentSource {
    /// The root and verified outboard of the blob served under `locator`, if this node can
    /// serve it completely. Only requests naming a locator the node holds are answered.
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, Arc<Outboard>)>;
    /// The bytes of chunk group `index` of blob `root`, or `None` if they cannot be read.
    /// May block (disk, vault): drivers call it off the engine's thread.
    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>>;
}

/// A [`ContentSource`] that keeps whole blobs in memory (tests, the simulator, small nodes).
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    locators: BTreeMap<Locator, ContentRoot>,
    blobs: BTreeMap<ContentRoot, (Arc<Outboard>, Arc<Vec<u8>>)>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a blob with its outboard, served under `locator`.
    pub fn insert(
        &mut self,
        locator: Locator,
        root: ContentRoot,
        outboard: Outboard,
        blob: Vec<u8>,
    ) {
        self.locators.insert(locator, root);
        self.blobs.insert(root, (Arc::new(outboard), Arc::new(blob)));
    }

    /// Removes a blob.
    pub fn remove(&mut self, root: &ContentRoot) {
        self.locators.retain(|_, r| r != root);
        self.blobs.remove(root);
    }
}

impl ContentSource for MemorySource {
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, Arc<Outboard>)> {
        let root = self.locators.get(locator)?;
        self.blobs.get(root).map(|(o, _)| (*root, o.clone()))
    }

    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        let (outboard, blob) = self.blobs.get(root)?;
        if index >= outboard.groups() {
            return None;
        }
        let r = group_range(outboard.blob_len, index);
        blob.get(r.start as usize..r.end as usize).map(<[u8]>::to_vec)
    }
}

impl<T: ContentSource + ?Sized> ContentSource for Box<T> {
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, Arc<Outboard>)> {
        (**self).lookup(locator)
    }
    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        (**self).read_group(root, index)
    }
}
