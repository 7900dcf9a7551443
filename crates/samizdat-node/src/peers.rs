//! The peers a node remembers across restarts: the DHT contacts that answered it lately, so a
//! restarted node finds its way back into the network without any bootstrap peer. Kept as a
//! sealed document ([`crate::sealed`]): inside the vault with `--vault`, else encrypted under a
//! key derived from the identity in `DATA/peers.rec`. Nothing about them is ever logged.

use crate::NodeError;
use crate::sealed::{DocKind, SealedDoc};
use crate::state::Store;
use samizdat_dht::contact::Contact;
use samizdat_identity::Identity;
use serde::{Deserialize, Serialize};

/// Most contacts remembered.
pub(crate) const MAX_REMEMBERED: usize = 256;

static KIND: DocKind = DocKind {
    vault_file: "node/peers",
    dir_file: "peers.rec",
    key_context: "samizdat 2026 remembered peers v1",
    aad: b"samizdat remembered peers v1",
    max_len: 1 << 20,
    what: "remembered peers (not written by this node's identity, or damaged)",
};

/// One remembered contact.
#[derive(Serialize, Deserialize)]
struct Remembered {
    /// Public key, hex.
    key: String,
    /// Proof-of-work nonce.
    pow: u64,
    /// Address.
    addr: String,
}

/// The remembered peers of a node with a data directory or a vault.
pub(crate) struct PeerBook {
    doc: SealedDoc,
}

impl PeerBook {
    /// `None` for an ephemeral node (it remembers nothing).
    pub(crate) fn new(store: &Store, identity: &Identity) -> Option<PeerBook> {
        SealedDoc::new(store, identity, &KIND).map(|doc| PeerBook { doc })
    }

    /// The contacts saved last time (none if never saved; damaged entries are skipped, a
    /// document that fails authentication is an error). Blocking.
    pub(crate) fn load(&self) -> Result<Vec<Contact>, NodeError> {
        let Some(list) = self.doc.load_json::<Vec<Remembered>>()? else { return Ok(Vec::new()) };
        Ok(list
            .into_iter()
            .take(MAX_REMEMBERED)
            .filter_map(|r| {
                let key: [u8; 32] =
                    data_encoding::HEXLOWER.decode(r.key.as_bytes()).ok()?.try_into().ok()?;
                Contact::new(key, r.pow, r.addr).ok()
            })
            .collect())
    }

    /// Replaces the saved contacts. Blocking.
    pub(crate) fn save(&self, contacts: &[Contact]) -> Result<(), NodeError> {
        let list: Vec<Remembered> = contacts
            .iter()
            .take(MAX_REMEMBERED)
            .map(|c| Remembered {
                key: data_encoding::HEXLOWER.encode(c.public_key()),
                pow: c.pow_nonce(),
                addr: c.address().to_owned(),
            })
            .collect();
        self.doc.save_json(&list)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn remembered_peers_round_trip_sealed_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::Store::open_dir(dir.path()).unwrap().store;
        let id = Identity::generate(&mut rand_core::OsRng);
        let book = PeerBook::new(&store, &id).unwrap();
        assert!(book.load().unwrap().is_empty(), "nothing saved yet");
        let c = Contact::for_identity(&id, 4, "tcp/192.0.2.1:7070").unwrap();
        book.save(std::slice::from_ref(&c)).unwrap();
        assert_eq!(book.load().unwrap(), vec![c]);
        let path = dir.path().join("peers.rec");
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(9).any(|w| w == b"192.0.2.1"), "no address in the clear");
        // Another identity cannot read it; a damaged file is refused.
        let other = PeerBook::new(&store, &Identity::generate(&mut rand_core::OsRng)).unwrap();
        assert!(matches!(other.load(), Err(NodeError::Corrupt(_))));
        let mut bad = raw;
        let last = bad.len() - 1;
        bad[last] ^= 1;
        std::fs::write(&path, bad).unwrap();
        assert!(matches!(book.load(), Err(NodeError::Corrupt(_))));
    }
}
