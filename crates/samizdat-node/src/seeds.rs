//! The seeding copies a node keeps, remembered so that it announces itself as their provider
//! again after a restart. For each it keeps the content root and the link's *provider base*
//! ([`samizdat_content::ShareLink::provider_base`]): enough to compute every later period's DHT
//! key, not to decrypt the file or ask for it (the link itself is not kept). A sealed document
//! ([`crate::sealed`]): inside the vault with `--vault`, else `DATA/seeds.rec`.

use crate::NodeError;
use crate::sealed::{DocKind, SealedDoc};
use crate::state::Store;
use samizdat_content::ContentRoot;
use samizdat_identity::Identity;
use serde::{Deserialize, Serialize};

/// Most seeds remembered (the oldest is forgotten beyond: it is still served, only not
/// announced after a restart).
pub(crate) const MAX_SEEDS: usize = 100_000;

static KIND: DocKind = DocKind {
    vault_file: "node/seeds",
    dir_file: "seeds.rec",
    key_context: "samizdat 2026 seed records v1",
    aad: b"samizdat seed records v1",
    max_len: 16 << 20,
    what: "seed records (not written by this node's identity, or damaged)",
};

#[derive(Serialize, Deserialize)]
struct Entry {
    /// Content root, hex.
    root: String,
    /// Provider base, hex.
    base: String,
}

/// The remembered seeds of a node with a data directory or a vault.
pub(crate) struct SeedBook {
    doc: SealedDoc,
    seeds: Vec<(ContentRoot, [u8; 32])>,
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    data_encoding::HEXLOWER.decode(s.as_bytes()).ok()?.try_into().ok()
}

impl SeedBook {
    /// Opens the book (`None` for an ephemeral node). A damaged document is an error. Blocking.
    pub(crate) fn open(store: &Store, identity: &Identity) -> Result<Option<SeedBook>, NodeError> {
        let Some(doc) = SealedDoc::new(store, identity, &KIND) else { return Ok(None) };
        let list: Vec<Entry> = doc.load_json()?.unwrap_or_default();
        let seeds = list
            .iter()
            .take(MAX_SEEDS)
            .filter_map(|e| Some((ContentRoot(hex32(&e.root)?), hex32(&e.base)?)))
            .collect();
        Ok(Some(SeedBook { doc, seeds }))
    }

    /// The provider bases of the seeds, oldest first.
    pub(crate) fn bases(&self) -> Vec<[u8; 32]> {
        self.seeds.iter().map(|(_, b)| *b).collect()
    }

    /// Remembers a seed (once per root) and saves. Blocking.
    pub(crate) fn add(&mut self, root: ContentRoot, base: [u8; 32]) -> Result<(), NodeError> {
        if self.seeds.iter().any(|(r, _)| *r == root) {
            return Ok(());
        }
        if self.seeds.len() >= MAX_SEEDS {
            self.seeds.remove(0);
        }
        self.seeds.push((root, base));
        self.save()
    }

    /// Forgets the seeds whose blob is gone (saving if any was). Blocking.
    pub(crate) fn retain(&mut self, keep: impl Fn(&ContentRoot) -> bool) -> Result<(), NodeError> {
        let before = self.seeds.len();
        self.seeds.retain(|(r, _)| keep(r));
        if self.seeds.len() == before { Ok(()) } else { self.save() }
    }

    fn save(&self) -> Result<(), NodeError> {
        let hex = |b: &[u8]| data_encoding::HEXLOWER.encode(b);
        let list: Vec<Entry> =
            self.seeds.iter().map(|(r, b)| Entry { root: hex(&r.0), base: hex(b) }).collect();
        self.doc.save_json(&list)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seeds_round_trip_sealed_once_per_root_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::Store::open_dir(dir.path()).unwrap().store;
        let id = Identity::generate(&mut rand_core::OsRng);
        let mut book = SeedBook::open(&store, &id).unwrap().unwrap();
        assert!(book.bases().is_empty());
        book.add(ContentRoot([1; 32]), [0xab; 32]).unwrap();
        book.add(ContentRoot([1; 32]), [0xcd; 32]).unwrap();
        book.add(ContentRoot([2; 32]), [0xef; 32]).unwrap();
        let again = SeedBook::open(&store, &id).unwrap().unwrap();
        assert_eq!(again.bases(), [[0xab; 32], [0xef; 32]]);
        let raw = std::fs::read(dir.path().join("seeds.rec")).unwrap();
        assert!(!raw.windows(8).any(|w| w == b"abababab"), "nothing in the clear");
        let mut again = again;
        again.retain(|r| *r == ContentRoot([2; 32])).unwrap();
        assert_eq!(SeedBook::open(&store, &id).unwrap().unwrap().bases(), [[0xef; 32]]);
        let other = Identity::generate(&mut rand_core::OsRng);
        assert!(matches!(SeedBook::open(&store, &other), Err(NodeError::Corrupt(_))));
        assert!(SeedBook::open(&crate::state::Store::ephemeral().store, &id).unwrap().is_none());
    }
}
