//! Rendezvous points inside the overlay: keys that rotate every period where nodes announce
//! themselves (like Tor's hidden-service directories), so a node that got into the DHT
//! through one contact finds nodes that accept connections, and not only the few its
//! contacts' peer exchange names.
//!
//! * **Keys.** Each period ([`RENDEZVOUS_PERIOD_SECS`]) has [`EngineConfig::rendezvous_slots`]
//!   keys, `BLAKE3-derive_key(RENDEZVOUS_CONTEXT, period (8 BE) || slot (2 BE))`. A node
//!   announces itself (a signed provider record, the DHT's own) under its *home* slot, chosen
//!   by its node ID, for this period and the next; the slots spread the load over as many
//!   groups of DHT nodes, each of which keeps at most 20 providers per key.
//! * **Walks.** While a node keeps fewer than [`EngineConfig::target_outbound`] outbound
//!   peers, it looks up the providers of a random slot of the current period (with back-off:
//!   10 s doubling to 10 min) and dials each one found, pinned to the identity that signed the
//!   record, so a poisoned answer cannot make it talk to anyone else.
//! * **Limits.** The keys are public: anyone in the DHT can compute them and list the
//!   announcers, which is what crawling the DHT gives anyway. A Sybil operator can fill a
//!   slot's 20 places for a period (the store refuses, not evicts, when full); rotation bounds
//!   it to a period and the other slots still answer.
//!
//! [`EngineConfig::rendezvous_slots`]: crate::EngineConfig::rendezvous_slots
//! [`EngineConfig::target_outbound`]: crate::EngineConfig::target_outbound

use crate::{ContentSource, Engine};
use rand_core::RngCore;
use samizdat_dht::LookupId;
use samizdat_dht::lookup::LookupResult;
use samizdat_identity::NodeId;
use samizdat_wire::PeerAddr;
use std::time::{Duration, Instant};

/// Length of a rendezvous period.
pub const RENDEZVOUS_PERIOD_SECS: u64 = 3600;
/// The BLAKE3 key-derivation context of rendezvous keys.
pub const RENDEZVOUS_CONTEXT: &str = "samizdat 2026 overlay rendezvous v1";
/// First wait between walks while short of peers; doubled up to [`MAX_WALK_BACKOFF`].
const FIRST_WALK_BACKOFF: Duration = Duration::from_secs(10);
const MAX_WALK_BACKOFF: Duration = Duration::from_secs(600);
/// How often the node announces itself again (records are republished by the DHT; new
/// periods need new announcements).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(20 * 60);

/// The rendezvous key of `slot` in `period`.
pub fn rendezvous_key(period: u64, slot: u16) -> NodeId {
    let mut input = [0u8; 10];
    input[..8].copy_from_slice(&period.to_be_bytes());
    input[8..].copy_from_slice(&slot.to_be_bytes());
    NodeId(blake3::derive_key(RENDEZVOUS_CONTEXT, &input))
}

/// The slot a node announces itself under.
pub fn home_slot(node: &NodeId, slots: u16) -> u16 {
    u16::from_be_bytes([node.0[0], node.0[1]]) % slots.max(1)
}

/// The engine's rendezvous state.
#[derive(Debug)]
pub(crate) struct Rendezvous {
    next_announce: Option<Instant>,
    walk: Option<LookupId>,
    next_walk: Option<Instant>,
    backoff: Duration,
}

impl Default for Rendezvous {
    fn default() -> Self {
        Rendezvous { next_announce: None, walk: None, next_walk: None, backoff: FIRST_WALK_BACKOFF }
    }
}

impl<S: ContentSource> Engine<S> {
    /// Outbound peers up or being set up (DHT exchanges not counted).
    fn outbound_peers(&self) -> usize {
        self.count(true)
    }

    /// Announces this node and starts a walk when due (called from the DHT's timers).
    pub(crate) fn rendezvous_tick(&mut self, now: Instant) {
        let slots = self.config.rendezvous_slots;
        let me = self.node_id();
        let period = self.wall_secs(now) / RENDEZVOUS_PERIOD_SECS;
        let Some(g) = self.dht.as_ref() else { return };
        if slots == 0 || g.dht.table().is_empty() {
            return;
        }
        let offers = g.pow.is_some();
        if offers && g.rendezvous.next_announce.is_none_or(|t| now >= t) {
            let home = home_slot(&me, slots);
            for p in [period, period + 1] {
                self.provide(now, rendezvous_key(p, home), (p + 2) * RENDEZVOUS_PERIOD_SECS);
            }
            if let Some(g) = self.dht.as_mut() {
                g.rendezvous.next_announce = Some(now + ANNOUNCE_EVERY);
            }
        }
        let short = self.outbound_peers() < self.config.target_outbound;
        let slot = u16::try_from(self.rng.next_u32() % u32::from(slots)).unwrap_or(0);
        let Some(g) = self.dht.as_mut() else { return };
        let rv = &mut g.rendezvous;
        if !short {
            rv.backoff = FIRST_WALK_BACKOFF;
            return;
        }
        if rv.walk.is_some() || rv.next_walk.is_some_and(|t| now < t) {
            return;
        }
        // Due again after the back-off whether or not the lookup can start (no busy loop).
        rv.next_walk = Some(now + rv.backoff);
        rv.backoff = rv.backoff.saturating_mul(2).min(MAX_WALK_BACKOFF);
        if let Ok(id) = g.dht.get_providers(rendezvous_key(period, slot), now) {
            g.rendezvous.walk = Some(id);
            self.pump_dht(now);
        }
    }

    /// When [`Engine::rendezvous_tick`] next has something to do.
    pub(crate) fn rendezvous_timeout(&self) -> Option<Instant> {
        let g = self.dht.as_ref()?;
        if self.config.rendezvous_slots == 0 || g.dht.table().is_empty() {
            return None;
        }
        let rv = &g.rendezvous;
        let announce =
            g.pow.is_some().then_some(rv.next_announce).map(|t| t.unwrap_or(self.clock_anchor.0));
        let short = self.outbound_peers() < self.config.target_outbound;
        let walk =
            (short && rv.walk.is_none()).then_some(rv.next_walk.unwrap_or(self.clock_anchor.0));
        announce.into_iter().chain(walk).min()
    }

    /// Takes the result of a walk: dials the providers found, pinned. Returns whether `id`
    /// was a walk.
    pub(crate) fn rendezvous_finished(
        &mut self,
        now: Instant,
        id: LookupId,
        result: &LookupResult,
    ) -> bool {
        let Some(g) = self.dht.as_mut() else { return false };
        if g.rendezvous.walk != Some(id) {
            return false;
        }
        g.rendezvous.walk = None;
        let mut want = self.config.target_outbound.saturating_sub(self.outbound_peers());
        for p in &result.providers {
            if want == 0 {
                break;
            }
            let Ok(addr) = PeerAddr::new(p.provider.address()) else { continue };
            if self.connect_pinned(now, addr, p.provider.id()).is_some() {
                want -= 1;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_rotate_per_period_and_slot_and_are_pinned() {
        assert_ne!(rendezvous_key(1, 0), rendezvous_key(2, 0));
        assert_ne!(rendezvous_key(1, 0), rendezvous_key(1, 1));
        // Every node of every version must compute the same keys.
        let mut input = [0u8; 10];
        input[7] = 5;
        input[9] = 3;
        assert_eq!(rendezvous_key(5, 3).0, blake3::derive_key(RENDEZVOUS_CONTEXT, &input));
        assert_eq!(home_slot(&NodeId([0xff; 32]), 64), 0xffff % 64);
        assert_eq!(home_slot(&NodeId([1; 32]), 0), 0, "no slots: slot 0, no panic");
    }
}
