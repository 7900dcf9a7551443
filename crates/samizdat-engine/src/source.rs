//! Where the engine reads the content it serves.

use samizdat_content::{ContentRoot, Outboard, group_range};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Read access to the encrypted blobs a node serves. The engine calls it synchronously when it
/// answers a request; implementations must be cheap (a memory map, a page-cached file).
pub trait ContentSource {
    /// The verified outboard of a blob this node can serve completely, if it has one.
    fn outboard(&self, root: &ContentRoot) -> Option<Arc<Outboard>>;
    /// The bytes of chunk group `index` of that blob, or `None` if they cannot be read.
    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>>;
}

/// A [`ContentSource`] that keeps whole blobs in memory (tests, the simulator, small nodes).
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    blobs: BTreeMap<ContentRoot, (Arc<Outboard>, Arc<Vec<u8>>)>,
}

impl MemorySource {
    /// An empty source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a blob with its outboard.
    pub fn insert(&mut self, root: ContentRoot, outboard: Outboard, blob: Vec<u8>) {
        self.blobs.insert(root, (Arc::new(outboard), Arc::new(blob)));
    }

    /// Removes a blob.
    pub fn remove(&mut self, root: &ContentRoot) {
        self.blobs.remove(root);
    }
}

impl ContentSource for MemorySource {
    fn outboard(&self, root: &ContentRoot) -> Option<Arc<Outboard>> {
        self.blobs.get(root).map(|(o, _)| o.clone())
    }

    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        let (outboard, blob) = self.blobs.get(root)?;
        let r = group_range(outboard.blob_len, index);
        blob.get(r.start as usize..r.end as usize).map(<[u8]>::to_vec)
    }
}

impl<T: ContentSource + ?Sized> ContentSource for Box<T> {
    fn outboard(&self, root: &ContentRoot) -> Option<Arc<Outboard>> {
        (**self).outboard(root)
    }
    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        (**self).read_group(root, index)
    }
}
