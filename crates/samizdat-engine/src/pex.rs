//! Peer exchange with self-certifying peer records: `GetAddr`, answered once per link with
//! [`PeersMsg::Records`].
//!
//! * **What is sent.** A node answers with its own [`PeerRecord`] (signed afresh every
//!   [`OWN_RECORD_REFRESH_SECS`]) and up to 15 records that other peers signed for
//!   themselves and handed over on a link with this node, passed on exactly as signed and only
//!   while every honest clock accepts them (not ahead of ours, at least five minutes short of
//!   [`RECORD_MAX_AGE`]). Records this node *confirmed* (it dialled the node at the record's
//!   first address and the node authenticated, for this very record) go first and carry their
//!   bit in `vouched`. Nothing unsigned is ever passed on.
//! * **What is taken.** One `Records` per `GetAddr` this node sent; unasked-for records are a
//!   protocol violation (verifying them costs a signature check each). Every record is decoded
//!   and verified; its addresses go into the address book *pinned* to the record's key
//!   ([`crate::addrbook::Pin`]), so a dial reaches that identity or nobody. A poisoned source
//!   can hide peers or name keys of its own, never put words in another node's mouth. An
//!   address that turns out to be someone else's is re-pinned to the identity that answered.
//! * **Holding the teller to account, for what it could check.** A record whose signature
//!   fails costs the teller [`PENALTY_BAD_RECORD`] (everyone verifies before passing on; an
//!   expired or early record costs nothing, the clocks may differ). Only for the first address
//!   of a record it vouched for, and only on the first dial, does the teller answer for what
//!   the dial finds: another identity costs [`PENALTY_WRONG_PEER`], no handshake one point,
//!   the right peer wins a point back (never above neutral). These never take a teller below
//!   [`IGNORE_THRESHOLD`], where it is no longer listened to: gossip alone gets nobody banned,
//!   so an attacker who hands an honest node records it cannot check cannot get that node
//!   refused by others. Only bad signatures (and the engine's other offences) lead to the ban
//!   threshold.
//! * **Bounds.** At most [`MAX_KEPT_RECORDS`] records are kept for passing on, and at most
//!   [`MAX_KEPT_PER_GROUP`] unconfirmed ones from inbound links of one /24 or /48; an
//!   unconfirmed newcomer can replace only an unconfirmed record (chosen at random), so a
//!   flood of inbound Sybils cannot wash out the peers this node has checked itself. The
//!   address book's per-source quotas bound what one peer can place there.
//! * **What it reveals.** A node's records say which peers it knows, and the vouched bits
//!   which of them it dialled in the last day (its outbound peers). Onion routing will need
//!   guards kept out of these answers.

use crate::addrbook::Pin;
use crate::{ConnId, ContentSource, Engine, Offence, SourceId};
use rand_core::RngCore;
use samizdat_identity::record::MAX_CLOCK_SKEW;
use samizdat_identity::{NodeId, PeerRecord, RecordError};
use samizdat_wire::{MAX_PEER_RECORDS, Message, PeerAddr, PeersMsg, features};
use std::collections::HashMap;
use std::time::{Duration, Instant};

// The `vouched` bits of one message are a u16.
const _: () = assert!(MAX_PEER_RECORDS <= 16);

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

/// Most unconfirmed records kept from inbound links of one address group (/24 or /48).
pub const MAX_KEPT_PER_GROUP: usize = 8;

/// One record kept for passing on. (No `Debug`: it holds addresses.)
struct Kept {
    record: PeerRecord,
    /// This node dialled the record's node at the record's first address and it
    /// authenticated (for this very record: a newer record starts unconfirmed).
    confirmed: bool,
    /// The address group of the link it came in on (inbound links only).
    group: Option<u64>,
}

/// The engine's peer-exchange state.
#[derive(Default)]
pub(crate) struct PeerExchange {
    kept: HashMap<NodeId, Kept>,
    /// This node's own record (its timestamp says when it was signed).
    own: Option<PeerRecord>,
}

impl PeerExchange {
    /// Keeps `record` for passing on (see the module documentation for what it may replace).
    fn keep(
        &mut self,
        record: PeerRecord,
        confirmed: bool,
        group: Option<u64>,
        rng: &mut impl RngCore,
    ) {
        let node = record.node_id();
        if let Some(k) = self.kept.get_mut(&node) {
            if k.record == record {
                k.confirmed |= confirmed;
            } else if record.timestamp() > k.record.timestamp() {
                *k = Kept { record, confirmed, group };
            }
            return;
        }
        let crowded = !confirmed
            && group.is_some()
            && self.kept.values().filter(|k| !k.confirmed && k.group == group).count()
                >= MAX_KEPT_PER_GROUP;
        if crowded || self.kept.len() >= MAX_KEPT_RECORDS {
            // A crowded group replaces one of its own; otherwise an unconfirmed newcomer
            // replaces an unconfirmed record, a confirmed one any.
            let victims: Vec<NodeId> = self
                .kept
                .iter()
                .filter(|(_, k)| {
                    if crowded {
                        !k.confirmed && k.group == group
                    } else {
                        confirmed || !k.confirmed
                    }
                })
                .map(|(id, _)| *id)
                .collect();
            if victims.is_empty() {
                return;
            }
            let victim = victims[(rng.next_u64() % victims.len() as u64) as usize];
            self.kept.remove(&victim);
        }
        self.kept.insert(node, Kept { record, confirmed, group });
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
        // Passed on only while any honest clock (within the skew) accepts it.
        let margin = MAX_CLOCK_SKEW.as_secs();
        let fine = |r: &PeerRecord| {
            r.timestamp() <= wall && r.timestamp() >= oldest.saturating_add(margin)
        };
        let mut pool: Vec<(bool, u64, &Kept)> = self
            .kept
            .iter()
            .filter(|(id, k)| **id != except && fine(&k.record))
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
    /// keys; a peer's own record is kept for passing on. `false`: the peer broke the protocol
    /// (records it was not asked for).
    pub(crate) fn on_records(
        &mut self,
        now: Instant,
        conn: ConnId,
        records: Vec<Vec<u8>>,
        vouched: u16,
    ) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return true };
        let Some(peer) = c.peer_id() else { return true };
        // One answer per question: unasked-for records (a peer making us verify signatures
        // in a loop) break the protocol, and the link is closed.
        if !std::mem::replace(&mut c.asked_getaddr, false) {
            return false;
        }
        if self.reputation(&SourceId::Node(peer)) <= IGNORE_THRESHOLD {
            return true;
        }
        let Some(c) = self.conns.get(&conn) else { return true };
        let origin = crate::source_addr(c, peer);
        let dialled = c.outbound.then(|| c.addr.clone()).flatten();
        let group = (!c.outbound).then_some(c.group).flatten();
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
                // Only a bad signature is surely the teller's fault: an age or clock
                // difference may be ours.
                Err(RecordError::BadSignature) => {
                    bad = true;
                    continue;
                }
                Err(_) => continue,
            };
            if node == me {
                continue;
            }
            let teller = (node != peer).then_some(peer);
            // A voucher reached the record's first address: it answers for that one only.
            let vouched = teller.is_some() && vouched & (1 << i) != 0;
            for (j, a) in record.addrs().iter().filter_map(|a| PeerAddr::new(a).ok()).enumerate() {
                if !self.is_own_addr(&a) {
                    let pin = Pin { node, teller, vouched: vouched && j == 0 };
                    let _ = self.addrs.add_pinned(&a, &origin, pin, now);
                }
            }
            if node == peer {
                let confirmed = dialled.as_ref().is_some_and(|d| {
                    record
                        .addrs()
                        .first()
                        .and_then(|a| PeerAddr::new(a).ok())
                        .is_some_and(|a| same_addr(&a, d))
                });
                self.pex.keep(record, confirmed, group, &mut self.rng);
            }
        }
        if bad {
            self.penalize(SourceId::Node(peer), Offence::BadPeerRecord, PENALTY_BAD_RECORD);
        }
        // New addresses: a node short of peers dials some at once.
        self.fill_outbound(now);
        true
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
            // Capped like dead addresses: gossip alone never gets a peer banned (a node whose
            // address changed hands since the teller reached it is not the teller's lie).
            Some(false) => {
                if self.reputation(&source) > IGNORE_THRESHOLD {
                    self.penalize(source, Offence::WrongPeer, PENALTY_WRONG_PEER);
                }
            }
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
            pex.keep(r.clone(), true, None, &mut rng);
        }
        for _ in 0..MAX_KEPT_RECORDS + 500 {
            let r = record(&mut rng, T0);
            pex.keep(r, false, None, &mut rng);
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
            full.keep(record(&mut rng, T0), true, None, &mut rng);
        }
        full.keep(record(&mut rng, T0), false, None, &mut rng);
        assert_eq!(full.kept(), (MAX_KEPT_RECORDS, MAX_KEPT_RECORDS));
        full.keep(record(&mut rng, T0), true, None, &mut rng);
        assert_eq!(full.kept(), (MAX_KEPT_RECORDS, MAX_KEPT_RECORDS));
    }

    #[test]
    fn one_address_group_keeps_at_most_a_few_unconfirmed_records() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut pex = PeerExchange::default();
        for _ in 0..50 {
            pex.keep(record(&mut rng, T0), false, Some(7), &mut rng);
        }
        pex.keep(record(&mut rng, T0), false, Some(8), &mut rng);
        pex.keep(record(&mut rng, T0), true, Some(7), &mut rng);
        assert_eq!(pex.kept(), (1, MAX_KEPT_PER_GROUP + 2));
    }

    #[test]
    fn newer_records_replace_older_ones_and_expired_ones_are_not_passed_on() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let id = Identity::generate(&mut rng);
        let mut pex = PeerExchange::default();
        let old = PeerRecord::sign(&id, &["tcp/8.8.8.8:1"], T0).unwrap();
        let new = PeerRecord::sign(&id, &["tcp/8.8.4.4:1"], T0 + 10).unwrap();
        pex.keep(new.clone(), false, None, &mut rng);
        // An older record changes nothing, and does not confirm the newer one.
        pex.keep(old.clone(), true, None, &mut rng);
        assert_eq!(pex.kept(), (0, 1));
        pex.keep(new.clone(), true, None, &mut rng);
        assert_eq!(pex.kept(), (1, 1));
        let nobody = NodeId([0; 32]);
        assert_eq!(pex.sample(T0 + 10, nobody, 16, &mut rng), vec![(&new, true)]);
        // A newer record starts unconfirmed: the confirmation was for other addresses.
        let newer = PeerRecord::sign(&id, &["tcp/1.1.1.1:1"], T0 + 20).unwrap();
        pex.keep(newer.clone(), false, None, &mut rng);
        assert_eq!(pex.kept(), (0, 1));
        // Records from the future (by our clock) are not passed on.
        assert!(pex.sample(T0 + 10, nobody, 16, &mut rng).is_empty());
        assert_eq!(pex.sample(T0 + 20, nobody, 16, &mut rng), vec![(&newer, false)]);
        let late = T0 + 20 + RECORD_MAX_AGE.as_secs() + 1;
        assert!(pex.sample(late, nobody, 16, &mut rng).is_empty());
        assert_eq!(pex.kept(), (0, 0));
    }
}
