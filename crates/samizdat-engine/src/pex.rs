//! Peer exchange with self-certifying peer records: `GetAddr`, answered once per link with
//! [`PeersMsg::Records`].
//!
//! * **What is sent.** A node answers with its own [`PeerRecord`] (signed afresh every
//!   [`OWN_RECORD_REFRESH_SECS`]) and up to 15 records that other peers signed for
//!   themselves and handed over on a link with this node. Records whose node this node
//!   dialled and authenticated at an address the record names ("confirmed") go first. Nothing
//!   unsigned is ever passed on, and a record is passed on exactly as its node signed it.
//! * **What is taken.** Every record is decoded and verified (signature, at most
//!   [`RECORD_MAX_AGE`] old, at most five minutes ahead); its addresses go into the address
//!   book *pinned* to the record's key ([`crate::addrbook::Pin`]), so a dial reaches that
//!   identity or nobody: a session with any other key is refused. A poisoned source can hide
//!   peers or name keys of its own, never put words in another node's mouth.
//! * **Holding the teller to account, for what it could check.** The pin remembers which
//!   peer passed the record on and whether it *vouched* for it (the `vouched` bits of
//!   [`PeersMsg::Records`]: it dialled that node at an address the record names and the node
//!   authenticated; a node vouches for exactly its confirmed records). A record that does not
//!   verify costs the teller [`PENALTY_BAD_RECORD`] points (everyone verifies before passing
//!   on). For a vouched record, an address answered by another identity costs
//!   [`PENALTY_WRONG_PEER`], one that never completes a handshake one point (never below
//!   [`IGNORE_THRESHOLD`]: a node may simply have gone offline since), and one that reaches the
//!   node the record names wins a point back (never above neutral). An unvouched record costs
//!   its teller nothing whatever a dial finds, so an attacker who hands an honest node records
//!   of its own keys signed for other people's addresses cannot get that node ranked down;
//!   a misattributed address is dropped from the book either way. A peer at or below
//!   [`IGNORE_THRESHOLD`] is no longer listened to; at the engine's ban threshold (-30, only
//!   reachable through bad records and wrong peers) it is refused altogether.
//! * **Bounds.** At most [`MAX_KEPT_RECORDS`] records are kept for passing on; an
//!   unconfirmed newcomer can replace only an unconfirmed record (chosen at random), so a
//!   flood of inbound Sybils cannot wash out the peers this node has checked itself. The
//!   address book's per-source quotas bound what one peer can place there.

use crate::addrbook::Pin;
use crate::{ConnId, ContentSource, Engine, Offence, SourceId};
use rand_core::RngCore;
use samizdat_identity::{NodeId, PeerRecord};
use samizdat_wire::{MAX_PEER_RECORDS, Message, PeerAddr, PeersMsg, features};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The oldest record accepted or passed on.
pub const RECORD_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How often a node signs its own record afresh.
pub const OWN_RECORD_REFRESH_SECS: u64 = 30 * 60;
/// Most records kept for passing on.
pub const MAX_KEPT_RECORDS: usize = 1024;
/// Points a peer loses for a record that does not verify (once per message).
pub const PENALTY_BAD_RECORD: i64 = 10;
/// Points a peer loses when an address it passed on is answered by another identity.
pub const PENALTY_WRONG_PEER: i64 = 5;
/// Points a peer loses when an address it passed on never completes a handshake.
const PENALTY_UNREACHABLE: i64 = 1;
/// A peer whose reputation is at or below this is not listened to for peer records.
pub const IGNORE_THRESHOLD: i64 = -15;

/// One record kept for passing on.
#[derive(Debug)]
struct Kept {
    record: PeerRecord,
    /// This node dialled the record's node at one of its addresses and it authenticated.
    confirmed: bool,
}

/// The engine's peer-exchange state.
#[derive(Debug, Default)]
pub(crate) struct PeerExchange {
    kept: HashMap<NodeId, Kept>,
    /// This node's own record (its timestamp says when it was signed).
    own: Option<PeerRecord>,
}

impl PeerExchange {
    /// Keeps `record` for passing on (see the module documentation for what it may replace).
    fn keep(&mut self, record: PeerRecord, confirmed: bool, rng: &mut impl RngCore) {
        let node = record.node_id();
        if let Some(k) = self.kept.get_mut(&node) {
            if record.timestamp() >= k.record.timestamp() {
                k.record = record;
            }
            k.confirmed |= confirmed;
            return;
        }
        if self.kept.len() >= MAX_KEPT_RECORDS {
            let victims: Vec<NodeId> = self
                .kept
                .iter()
                .filter(|(_, k)| confirmed || !k.confirmed)
                .map(|(id, _)| *id)
                .collect();
            if victims.is_empty() {
                return;
            }
            let victim = victims[(rng.next_u64() % victims.len() as u64) as usize];
            self.kept.remove(&victim);
        }
        self.kept.insert(node, Kept { record, confirmed });
    }

    /// Up to `n` kept records, not older than [`RECORD_MAX_AGE`], none of `except`'s:
    /// confirmed ones first, each group in random order. Expired records are dropped.
    fn sample(
        &mut self,
        wall: u64,
        except: NodeId,
        n: usize,
        rng: &mut impl RngCore,
    ) -> Vec<(&PeerRecord, bool)> {
        let oldest = wall.saturating_sub(RECORD_MAX_AGE.as_secs());
        self.kept.retain(|_, k| k.record.timestamp() >= oldest);
        let mut pool: Vec<(bool, u64, &Kept)> = self
            .kept
            .iter()
            .filter(|(id, _)| **id != except)
            .map(|(_, k)| (!k.confirmed, rng.next_u64(), k))
            .collect();
        pool.sort_unstable_by_key(|(unconfirmed, r, _)| (*unconfirmed, *r));
        pool.into_iter().take(n).map(|(_, _, k)| (&k.record, k.confirmed)).collect()
    }

    /// Records kept for passing on: (confirmed, all).
    pub(crate) fn kept(&self) -> (usize, usize) {
        (self.kept.values().filter(|k| k.confirmed).count(), self.kept.len())
    }
}

impl<S: ContentSource> Engine<S> {
    /// This node's own record, signed afresh when older than [`OWN_RECORD_REFRESH_SECS`];
    /// `None` when it listens nowhere.
    fn own_record(&mut self, wall: u64) -> Option<PeerRecord> {
        let fresh = |r: &PeerRecord| wall.saturating_sub(r.timestamp()) < OWN_RECORD_REFRESH_SECS;
        if let Some(r) = self.pex.own.as_ref().filter(|r| fresh(r)) {
            return Some(r.clone());
        }
        let addrs: Vec<String> =
            self.config.session.listen.iter().take(4).map(ToString::to_string).collect();
        let record = PeerRecord::sign(&self.config.session.identity, &addrs, wall).ok()?;
        self.pex.own = Some(record.clone());
        Some(record)
    }

    /// Answers a peer's `GetAddr`: this node's record and a sample of those it keeps.
    pub(crate) fn answer_getaddr(&mut self, now: Instant, conn: ConnId) {
        let Some(peer) = self.conns.get(&conn).and_then(|c| c.peer.as_ref()) else { return };
        if peer.features & features::PEER_EXCHANGE == 0 {
            return;
        }
        let asker = peer.node_id;
        let wall = self.wall_secs(now);
        let mut records: Vec<Vec<u8>> =
            self.own_record(wall).iter().map(PeerRecord::encode).collect();
        let room = MAX_PEER_RECORDS - records.len();
        let mut vouched = 0u16;
        for (record, confirmed) in self.pex.sample(wall, asker, room, &mut self.rng) {
            if confirmed {
                vouched |= 1 << records.len();
            }
            records.push(record.encode());
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            let _ = c.session.send(&Message::Peers(PeersMsg::Records { records, vouched }));
        }
    }

    /// Takes the records a peer sent: verified ones go into the address book pinned to their
    /// keys; a peer's own record is kept for passing on.
    pub(crate) fn on_records(
        &mut self,
        now: Instant,
        conn: ConnId,
        records: Vec<Vec<u8>>,
        vouched: u16,
    ) {
        let Some(c) = self.conns.get(&conn) else { return };
        let Some(peer) = c.peer_id() else { return };
        if self.reputation(&SourceId::Node(peer)) <= IGNORE_THRESHOLD {
            return;
        }
        let origin = crate::source_addr(c, peer);
        let dialled = c.outbound.then(|| c.addr.clone()).flatten();
        let wall = self.wall_secs(now);
        let me = self.node_id();
        let mut bad = false;
        for (i, bytes) in records.into_iter().enumerate() {
            let record = match PeerRecord::decode(&bytes) {
                Ok(r) => r,
                Err(_) => {
                    bad = true;
                    continue;
                }
            };
            let node = match record.verify(wall, RECORD_MAX_AGE) {
                Ok(node) => node,
                Err(_) => {
                    bad = true;
                    continue;
                }
            };
            if node == me {
                continue;
            }
            let teller = (node != peer).then_some(peer);
            let pin = Pin { node, teller, vouched: teller.is_some() && vouched & (1 << i) != 0 };
            for a in record.addrs().iter().filter_map(|a| PeerAddr::new(a).ok()) {
                if !self.config.session.listen.contains(&a) && !self.self_addrs.contains(&a) {
                    let _ = self.addrs.add_pinned(&a, &origin, pin, now);
                }
            }
            if node == peer {
                let confirmed = dialled.as_ref().is_some_and(|d| {
                    record.addrs().iter().any(|a| PeerAddr::new(a).is_ok_and(|a| same_addr(&a, d)))
                });
                self.pex.keep(record, confirmed, &mut self.rng);
            }
        }
        if bad {
            self.penalize(SourceId::Node(peer), Offence::BadPeerRecord, PENALTY_BAD_RECORD);
        }
        // New addresses: a node short of peers dials some at once.
        self.fill_outbound(now);
    }

    /// What came of dialling an address a peer passed on: `Some(true)` it authenticated as the
    /// record's key, `Some(false)` someone else answered, `None` no handshake completed.
    pub(crate) fn judge_teller(&mut self, teller: NodeId, outcome: Option<bool>) {
        let source = SourceId::Node(teller);
        match outcome {
            Some(true) => {
                if let Some(score) = self.reputation.get_mut(&source) {
                    *score = (*score + 1).min(0);
                    if *score == 0 {
                        self.reputation.remove(&source);
                    }
                }
            }
            Some(false) => self.penalize(source, Offence::WrongPeer, PENALTY_WRONG_PEER),
            // The node may have gone offline since the teller reached it: this ranks a teller
            // down, never below the point where it is ignored (churn gets nobody banned).
            None => {
                if self.reputation.len() < crate::MAX_REPUTATION_ENTRIES
                    || self.reputation.contains_key(&source)
                {
                    let score = self.reputation.entry(source).or_insert(0);
                    if *score > IGNORE_THRESHOLD {
                        *score -= PENALTY_UNREACHABLE;
                    }
                }
            }
        }
    }

    /// Records kept for passing on: (confirmed, all).
    pub fn kept_peer_records(&self) -> (usize, usize) {
        self.pex.kept()
    }
}

/// Whether two addresses name the same transport endpoint (in any spelling the address book
/// treats as the same).
fn same_addr(a: &PeerAddr, b: &PeerAddr) -> bool {
    a == b || crate::addrbook::lenient_canonical(a) == crate::addrbook::lenient_canonical(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use samizdat_identity::Identity;

    const T0: u64 = 1_800_000_000;

    fn record(rng: &mut ChaCha20Rng, at: u64) -> PeerRecord {
        PeerRecord::sign(&Identity::generate(rng), &["tcp/8.8.8.8:1"], at).unwrap()
    }

    #[test]
    fn a_flood_of_unconfirmed_records_stays_bounded_and_keeps_the_confirmed_ones() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut pex = PeerExchange::default();
        let confirmed: Vec<PeerRecord> = (0..100).map(|_| record(&mut rng, T0)).collect();
        for r in &confirmed {
            pex.keep(r.clone(), true, &mut rng);
        }
        for _ in 0..MAX_KEPT_RECORDS + 500 {
            let r = record(&mut rng, T0);
            pex.keep(r, false, &mut rng);
        }
        assert_eq!(pex.kept(), (100, MAX_KEPT_RECORDS));
        // The sample puts the confirmed records first and leaves out the asker's.
        let except = confirmed[0].node_id();
        let sample = pex.sample(T0, except, 150, &mut rng);
        assert_eq!(sample.len(), 150);
        assert!(sample[..99].iter().all(|(r, c)| *c && confirmed[1..].contains(r)));
        assert!(sample[99..].iter().all(|(_, c)| !c));
        assert!(!sample.iter().any(|(r, _)| r.node_id() == except));
        // A confirmed newcomer may replace anything; a full table of confirmed ones refuses
        // unconfirmed newcomers.
        let mut full = PeerExchange::default();
        for _ in 0..MAX_KEPT_RECORDS {
            full.keep(record(&mut rng, T0), true, &mut rng);
        }
        full.keep(record(&mut rng, T0), false, &mut rng);
        assert_eq!(full.kept(), (MAX_KEPT_RECORDS, MAX_KEPT_RECORDS));
        full.keep(record(&mut rng, T0), true, &mut rng);
        assert_eq!(full.kept(), (MAX_KEPT_RECORDS, MAX_KEPT_RECORDS));
    }

    #[test]
    fn newer_records_replace_older_ones_and_expired_ones_are_not_passed_on() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let id = Identity::generate(&mut rng);
        let mut pex = PeerExchange::default();
        let old = PeerRecord::sign(&id, &["tcp/8.8.8.8:1"], T0).unwrap();
        let new = PeerRecord::sign(&id, &["tcp/8.8.4.4:1"], T0 + 10).unwrap();
        pex.keep(new.clone(), false, &mut rng);
        pex.keep(old, true, &mut rng);
        assert_eq!(pex.kept(), (1, 1));
        let nobody = NodeId([0; 32]);
        assert_eq!(pex.sample(T0 + 10, nobody, 16, &mut rng), vec![(&new, true)]);
        let late = T0 + 10 + RECORD_MAX_AGE.as_secs() + 1;
        assert!(pex.sample(late, nobody, 16, &mut rng).is_empty());
        assert_eq!(pex.kept(), (0, 0));
    }
}
