//! The peers a node remembers across restarts: the DHT contacts that answered it lately, so a
//! restarted node finds its way back into the network without any bootstrap peer. Kept as a
//! sealed document ([`crate::sealed`]): inside the vault with `--vault`, else encrypted under a
//! key derived from the identity in `DATA/peers.rec`. Nothing about them is ever logged.
//!
//! Beside them, what each dialled address did (`DATA/transports.rec`, `node/transports` in
//! the vault): a restarted node dials a peer first through the transport that last worked,
//! not through the one a censor blocks.

use crate::NodeError;
use crate::sealed::{DocKind, SealedDoc};
use crate::state::Store;
use samizdat_dht::contact::Contact;
use samizdat_engine::health::{LinkFailure, MAX_TRACKED, SavedHealth};
use samizdat_identity::Identity;
use samizdat_wire::PeerAddr;
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

static HEALTH: DocKind = DocKind {
    vault_file: "node/transports",
    dir_file: "transports.rec",
    key_context: "samizdat 2026 transport health v1",
    aad: b"samizdat transport health v1",
    max_len: 1 << 20,
    what: "remembered transport health (not written by this node's identity, or damaged)",
};

/// What one address did, in seconds before `saved_at`.
#[derive(Serialize, Deserialize)]
struct SavedEntry {
    addr: String,
    ok_ago: Option<u64>,
    fail_ago: Option<u64>,
    why: Option<String>,
    fails: u32,
}

#[derive(Serialize, Deserialize)]
struct SavedTable {
    /// Unix seconds when saved.
    saved_at: u64,
    entries: Vec<SavedEntry>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

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
    health: SealedDoc,
}

impl PeerBook {
    /// `None` for an ephemeral node (it remembers nothing).
    pub(crate) fn new(store: &Store, identity: &Identity) -> Option<PeerBook> {
        let doc = SealedDoc::new(store, identity, &KIND)?;
        let health = SealedDoc::new(store, identity, &HEALTH)?;
        Some(PeerBook { doc, health })
    }

    /// What each address did, aged by the time since it was saved (a clock that went back
    /// counts as no time). Blocking.
    pub(crate) fn load_health(&self) -> Result<Vec<(PeerAddr, SavedHealth)>, NodeError> {
        let Some(table) = self.health.load_json::<SavedTable>()? else { return Ok(Vec::new()) };
        let elapsed = Duration::from_secs(unix_now().saturating_sub(table.saved_at));
        Ok(table
            .entries
            .into_iter()
            .take(MAX_TRACKED)
            .filter_map(|e| {
                let addr = PeerAddr::new(&e.addr).ok()?;
                let fail = match (e.fail_ago, e.why) {
                    (Some(ago), Some(why)) => {
                        Some((Duration::from_secs(ago), LinkFailure::from_name(&why)?))
                    }
                    _ => None,
                };
                let saved =
                    SavedHealth { ok_ago: e.ok_ago.map(Duration::from_secs), fail, fails: e.fails };
                Some((addr, saved.aged(elapsed)))
            })
            .collect())
    }

    /// Replaces what is saved of the addresses' health. Blocking.
    pub(crate) fn save_health(&self, table: &[(PeerAddr, SavedHealth)]) -> Result<(), NodeError> {
        let entries = table
            .iter()
            .take(MAX_TRACKED)
            .map(|(addr, h)| SavedEntry {
                addr: addr.as_str().to_owned(),
                ok_ago: h.ok_ago.map(|d| d.as_secs()),
                fail_ago: h.fail.map(|(d, _)| d.as_secs()),
                why: h.fail.map(|(_, why)| why.as_str().to_owned()),
                fails: h.fails,
            })
            .collect();
        self.health.save_json(&SavedTable { saved_at: unix_now(), entries })
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

    #[test]
    fn transport_health_round_trips_sealed_and_ages_while_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::state::Store::open_dir(dir.path()).unwrap().store;
        let id = Identity::generate(&mut rand_core::OsRng);
        let book = PeerBook::new(&store, &id).unwrap();
        assert!(book.load_health().unwrap().is_empty(), "nothing saved yet");
        let https = PeerAddr::new("https/192.0.2.1:443?name=www.example.org&pin=P&key=K").unwrap();
        let tcp = PeerAddr::new("tcp/192.0.2.1:7070").unwrap();
        let table = vec![
            (
                https.clone(),
                SavedHealth {
                    ok_ago: None,
                    fail: Some((Duration::from_secs(5), LinkFailure::Silent)),
                    fails: 2,
                },
            ),
            (
                tcp.clone(),
                SavedHealth { ok_ago: Some(Duration::from_secs(3)), fail: None, fails: 0 },
            ),
        ];
        book.save_health(&table).unwrap();
        let back = book.load_health().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].0, https);
        let (age, why) = back[0].1.fail.unwrap();
        assert!(age >= Duration::from_secs(5) && age < Duration::from_secs(60), "{age:?}");
        assert_eq!((why, back[0].1.fails), (LinkFailure::Silent, 2));
        assert!(back[1].1.ok_ago.unwrap() >= Duration::from_secs(3));
        let raw = std::fs::read(dir.path().join("transports.rec")).unwrap();
        assert!(!raw.windows(9).any(|w| w == b"192.0.2.1"), "no address in the clear");
        let other = PeerBook::new(&store, &Identity::generate(&mut rand_core::OsRng)).unwrap();
        assert!(matches!(other.load_health(), Err(NodeError::Corrupt(_))));
        // Entries this version cannot read are skipped, not fatal.
        let odd = SavedTable {
            saved_at: unix_now() + 3600,
            entries: vec![
                SavedEntry {
                    addr: "no slash".into(),
                    ok_ago: None,
                    fail_ago: None,
                    why: None,
                    fails: 0,
                },
                SavedEntry {
                    addr: "tcp/192.0.2.9:1".into(),
                    ok_ago: None,
                    fail_ago: Some(1),
                    why: Some("from the future".into()),
                    fails: 1,
                },
                SavedEntry {
                    addr: "tcp/192.0.2.9:2".into(),
                    ok_ago: Some(7),
                    fail_ago: None,
                    why: None,
                    fails: 0,
                },
            ],
        };
        book.health.save_json(&odd).unwrap();
        let back = book.load_health().unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            back[0].1.ok_ago,
            Some(Duration::from_secs(7)),
            "a clock gone back ages nothing"
        );
    }
}
