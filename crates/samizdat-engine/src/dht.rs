//! The engine's side of the DHT: it carries [`samizdat_dht::Dht`]'s requests over sessions
//! and turns provider lookups into download sources.
//!
//! * **Who is a contact.** A peer that offers itself (a node others can dial) sends its
//!   proof-of-work nonce with its DHT messages ([`Message::Dht`]'s `pow`). Its contact is built
//!   from the key its session authenticated, that nonce and the first address of its `Hello`;
//!   it enters the routing table only if the proof of work holds. A node without a listen
//!   address (a short-lived fetcher) offers nothing and is answered as an anonymous requester.
//! * **Routes.** A request to a contact goes over an established session with that identity,
//!   or else as a one-round-trip exchange (`samizdat_session::exchange`: Noise NK against the
//!   contact's identity key) on a connection of its own: no session handshake, no `Hello`,
//!   one round trip after the transport's, and only the holder of the contact's key can read
//!   the request or answer it. Stores from a node that offers itself as a contact are sent
//!   identified (so the record is taken from its owner, and the owner admitted); every lookup
//!   goes anonymously. Addresses from the DHT pass the address book's admission rules first (no
//!   host names; no special-use ranges unless the node is on a local network). An answer
//!   counts only on the connection the request went out on; anything else is ignored.
//! * **Providers.** [`Engine::find_providers`] looks a key up and adds every provider found
//!   (pinned to its identity) as a source of the download; [`Engine::provide`] publishes this
//!   node as a provider (republished by the DHT until the record expires).

use crate::{ContentRoot, ContentSource, Engine, Event, SourceSpec};
use rand_core::RngCore;
use samizdat_dht::codec::{self, DhtMessage, DhtRequest, RequestId};
use samizdat_dht::contact::Contact;
use samizdat_dht::record::ProviderRecord;
use samizdat_dht::{Dht, DhtConfig, DhtError, DhtEvent, LookupId, Transmit};
use samizdat_identity::NodeId;
use samizdat_session::{Query, Session};
use samizdat_wire::{DhtQuery, Message, PeerAddr, features};
use std::collections::BTreeMap;
use std::time::Instant;

/// Most DHT requests parked while their connection is being set up, or queued for an
/// exchange slot.
const MAX_WAITING: usize = 256;
/// How long a download without sources waits for its provider lookups before it may stall.
pub(crate) const LOOKUP_GRACE: std::time::Duration = std::time::Duration::from_secs(120);
/// Most exchanges (each a connection of its own) in flight at once; one per contact.
pub(crate) const MAX_DHT_EXCHANGES: usize = 16;
/// Most exchange requests answered per inbound address group per second.
pub(crate) const MAX_EXCHANGES_PER_GROUP_PER_SEC: u32 = 64;
/// Slots of the per-group answer counter.
const ANSWER_SLOTS: usize = 1024;
/// Replays remembered (initiator ephemeral keys of requests answered).
const MAX_SEEN: usize = 4096;
/// Most requests remembered as sent (the DHT times out requests on its own; the oldest ids
/// are forgotten beyond this).
const MAX_SENT: usize = 1024;

/// The engine's DHT state.
pub(crate) struct DhtGlue {
    pub(crate) dht: Dht,
    /// Our proof-of-work nonce, when we offer ourselves as a contact.
    pub(crate) pow: Option<u64>,
    /// Requests sent, by id: the connection they went out on.
    sent: BTreeMap<RequestId, crate::ConnId>,
    /// Requests waiting for a connection being dialled.
    waiting: BTreeMap<crate::ConnId, Vec<Transmit>>,
    /// Requests waiting for an exchange slot, with when they were queued.
    queued: std::collections::VecDeque<(Instant, Transmit)>,
    /// Initiator ephemeral keys of exchange requests answered lately (replays are refused),
    /// oldest first, and the same as a set.
    seen: std::collections::VecDeque<[u8; 32]>,
    seen_set: std::collections::BTreeSet<[u8; 32]>,
    /// Exchange requests answered in the current second, per slot of a keyed hash of the
    /// inbound address group (groups that collide share a budget; the table never fills).
    answered: Vec<(Instant, u32)>,
    /// The key of that hash.
    answered_key: [u8; 32],
    /// Provider lookups for downloads: the root and the download's generation.
    finding: BTreeMap<LookupId, (ContentRoot, u64)>,
    /// Whether a bootstrap lookup has been started.
    bootstrapped: bool,
    /// Provider records given before any contact was known, stored once one is.
    deferred: Vec<ProviderRecord>,
    /// The overlay rendezvous points' state.
    pub(crate) rendezvous: crate::rendezvous::Rendezvous,
}

/// Seconds a provider record's lifetime stays short of the stores' limit, for clocks that are
/// behind ours (the session's clock-skew bound).
const CLOCK_MARGIN_SECS: u64 = 600;

/// Whether a put failed only for now (nobody to store at, lookups busy) and may be retried.
fn is_transient(e: &DhtError) -> bool {
    matches!(e, DhtError::NoContacts | DhtError::TooManyLookups(_))
}

/// Lookup slots kept free of announcements for the node's own lookups.
const RESERVED_LOOKUPS: usize = 4;

impl DhtGlue {
    /// Whether no request waits for an exchange slot.
    #[cfg(test)]
    pub(crate) fn queued_is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Keeps an announcement for when it can be stored (one per key, at most `max_owned`).
    fn defer(&mut self, record: ProviderRecord) -> bool {
        self.deferred.retain(|r| r.key != record.key);
        if self.deferred.len() >= self.dht.config().max_owned {
            return false;
        }
        self.deferred.push(record);
        true
    }

    /// Whether `ephemeral` (an exchange request's) was seen before; remembers it if not.
    fn replayed(&mut self, ephemeral: [u8; 32]) -> bool {
        if !self.seen_set.insert(ephemeral) {
            return true;
        }
        self.seen.push_back(ephemeral);
        while self.seen.len() > MAX_SEEN {
            if let Some(old) = self.seen.pop_front() {
                self.seen_set.remove(&old);
            }
        }
        false
    }

    /// Whether another exchange request from inbound address group `group` may be answered
    /// this second.
    fn may_answer(&mut self, now: Instant, group: u64) -> bool {
        let second = std::time::Duration::from_secs(1);
        let h = blake3::keyed_hash(&self.answered_key, &group.to_le_bytes());
        let mut slot = [0u8; 8];
        slot.copy_from_slice(&h.as_bytes()[..8]);
        let slot = (u64::from_le_bytes(slot) % ANSWER_SLOTS as u64) as usize;
        let Some((start, n)) = self.answered.get_mut(slot) else { return false };
        if now.saturating_duration_since(*start) >= second {
            *start = now;
            *n = 0;
        }
        *n += 1;
        *n <= MAX_EXCHANGES_PER_GROUP_PER_SEC
    }

    /// Whether an announcement may start a lookup now.
    fn room_for_puts(&self) -> bool {
        self.dht.lookups_running() + RESERVED_LOOKUPS < self.dht.config().max_lookups
    }

    /// The DHT of a node with `identity`, offering itself at `offer` (its first advertised
    /// address) if it has one.
    pub(crate) fn new(
        config: DhtConfig,
        identity: &samizdat_identity::Identity,
        offer: Option<&PeerAddr>,
        seed: [u8; 32],
        now: Instant,
        wall_secs: u64,
    ) -> Option<DhtGlue> {
        let address = offer.map_or_else(|| "none/".to_owned(), |a| a.to_string());
        let local = Contact::for_identity(identity, config.pow_difficulty, address).ok()?;
        let pow = offer.map(|_| local.pow_nonce());
        let dht = Dht::new(config, local, seed, now, wall_secs).ok()?;
        Some(DhtGlue {
            dht,
            pow,
            sent: BTreeMap::new(),
            waiting: BTreeMap::new(),
            queued: std::collections::VecDeque::new(),
            seen: std::collections::VecDeque::new(),
            seen_set: std::collections::BTreeSet::new(),
            answered: vec![(now, 0); ANSWER_SLOTS],
            answered_key: blake3::derive_key("samizdat 2026 exchange rate slots", &seed),
            finding: BTreeMap::new(),
            bootstrapped: false,
            deferred: Vec::new(),
            rendezvous: crate::rendezvous::Rendezvous::default(),
        })
    }
}

/// Whether `addr` (announced by a peer that dialled us from `remote`) has that IP; without a
/// known remote (in-memory transports) there is nothing to compare.
pub(crate) fn from_where_it_came(addr: &PeerAddr, remote: Option<std::net::IpAddr>) -> bool {
    let Some(remote) = remote else { return true };
    addr.address().parse::<std::net::SocketAddr>().is_ok_and(|a| {
        let canon = |ip: std::net::IpAddr| match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        canon(a.ip()) == canon(remote)
    })
}

impl<S: ContentSource> Engine<S> {
    /// The DHT, if this engine runs one (for inspection: table size, stored records).
    pub fn dht(&self) -> Option<&Dht> {
        self.dht.as_ref().map(|g| &g.dht)
    }

    /// The DHT contacts worth remembering across a restart: those that answered lately, at
    /// most `n`, most recently seen first.
    pub fn dht_contacts(&self, n: usize) -> Vec<Contact> {
        let Some(g) = self.dht.as_ref() else { return Vec::new() };
        let mut entries: Vec<_> = g.dht.table().entries().filter(|e| e.failures == 0).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
        entries.into_iter().take(n).map(|e| e.contact.clone()).collect()
    }

    /// Re-admits remembered contacts (their proof of work is checked again; the table's
    /// limits apply) and bootstraps from them: the node finds its way back into the network
    /// without any bootstrap peer. Their addresses also go into the address book, pinned to
    /// their identities, so the node links up with some of them as peers (DHT requests alone
    /// travel as exchanges and make no links).
    pub fn restore_dht_contacts(&mut self, now: Instant, contacts: Vec<Contact>) -> usize {
        let Some(g) = self.dht.as_mut() else { return 0 };
        let admitted: Vec<Contact> =
            contacts.into_iter().filter(|c| g.dht.add_contact(c.clone(), now).is_ok()).collect();
        // All from one source, so the address book's per-source quota caps how many it takes.
        let source = PeerAddr::new("dht/remembered").ok();
        for c in &admitted {
            if let (Ok(addr), Some(source)) = (PeerAddr::new(c.address()), &source) {
                let pin = crate::addrbook::Pin { node: c.id(), teller: None, vouched: false };
                let _ = self.addrs.add_pinned(&addr, source, pin, now);
            }
        }
        self.pump_dht(now);
        self.fill_outbound(now);
        admitted.len()
    }

    /// Publishes this node as a provider of `key` until `expires_at` (Unix seconds); the
    /// record is stored at the nodes closest to `key` and republished until it expires.
    /// Nothing happens without a DHT or when this node offers no address.
    pub fn provide(&mut self, now: Instant, key: NodeId, expires_at: u64) -> bool {
        let identity = self.config.session.identity.clone();
        let wall = self.wall_secs(now);
        let Some(g) = self.dht.as_mut() else { return false };
        if g.pow.is_none() {
            return false;
        }
        // No store takes a record that lives longer than its limit (judged by clocks that may
        // be behind ours): ask for what will be taken; the owner announces again later.
        let ttl = g.dht.config().store.max_ttl_secs.saturating_sub(CLOCK_MARGIN_SECS);
        let expires_at = expires_at.min(wall.saturating_add(ttl));
        let local = g.dht.local().clone();
        let Ok(record) = ProviderRecord::sign(&identity, key, local, expires_at) else {
            return false;
        };
        if g.dht.table().is_empty() || !g.room_for_puts() {
            // Nobody to store it at yet, or lookups are busy: later (see `pump_dht`).
            return g.defer(record);
        }
        let ok = match g.dht.provide(record.clone(), now) {
            Ok(_) => true,
            Err(e) if is_transient(&e) => g.defer(record),
            Err(_) => false,
        };
        self.pump_dht(now);
        ok
    }

    /// Looks up the providers of `key` for the download of `root`: each provider found
    /// becomes a source (pinned to its identity) and is dialled. The download is kept alive
    /// while the lookup runs.
    pub fn find_providers(&mut self, now: Instant, root: ContentRoot, key: NodeId) -> bool {
        let Some(generation) = self.downloads.get(&root).map(|d| d.generation) else {
            return false;
        };
        let started = self.dht.as_mut().and_then(|g| {
            let id = g.dht.get_providers(key, now).ok()?;
            g.finding.insert(id, (root, generation));
            Some(id)
        });
        let Some(d) = self.downloads.get_mut(&root) else { return started.is_some() };
        d.looked_up = true;
        if started.is_some() {
            d.finding += 1;
            d.finding_until = Some(now + LOOKUP_GRACE);
        } else if d.finding == 0 && d.sources.is_empty() {
            // No DHT, or it knows nobody to ask: nothing will turn up.
            self.fail_download(root);
            return false;
        }
        self.pump_dht(now);
        started.is_some()
    }

    /// Whether the DHT may send to a peer on this connection.
    fn dht_peer(&self, conn: crate::ConnId) -> bool {
        self.conns
            .get(&conn)
            .and_then(|c| c.peer.as_ref())
            .is_some_and(|p| p.features & features::DHT != 0)
    }

    /// A session came up: announce ourselves to a DHT peer, and bootstrap once.
    pub(crate) fn dht_peer_up(&mut self, now: Instant, conn: crate::ConnId) {
        let speaks = self.dht_peer(conn);
        let waiting = self.dht.as_mut().and_then(|g| g.waiting.remove(&conn)).unwrap_or_default();
        let Some(g) = self.dht.as_mut() else { return };
        if !speaks {
            // It does not speak the DHT: what waited for it fails now.
            for t in waiting {
                g.dht.handle_failure(now, t.request_id);
            }
            return self.pump_dht(now);
        }
        if let (Some(pow), Some(c)) = (g.pow, self.conns.get_mut(&conn)) {
            let _ = c.session.send(&Message::Dht { pow: Some(pow), payload: Vec::new() });
        }
        for t in waiting {
            self.send_transmit(conn, t);
        }
        self.pump_dht(now);
    }

    /// A connection went away: its requests fail now.
    pub(crate) fn dht_conn_gone(&mut self, now: Instant, conn: crate::ConnId) {
        let Some(g) = self.dht.as_mut() else { return };
        let mut failed: Vec<RequestId> =
            g.waiting.remove(&conn).unwrap_or_default().iter().map(|t| t.request_id).collect();
        failed.extend(g.sent.iter().filter(|(_, c)| **c == conn).map(|(id, _)| *id));
        for id in failed {
            g.sent.remove(&id);
            g.dht.handle_failure(now, id);
        }
        self.pump_dht(now);
    }

    /// A DHT message from a peer; `false` if it broke the protocol.
    pub(crate) fn on_dht(
        &mut self,
        now: Instant,
        conn: crate::ConnId,
        pow: Option<u64>,
        payload: &[u8],
    ) -> bool {
        if self.dht.is_none() {
            return true;
        }
        // The sender offers itself: admit it if its proof of work holds.
        let Some(c) = self.conns.get(&conn) else { return true };
        let Some(info) = c.peer.as_ref() else { return false };
        if let (Some(nonce), None) = (pow, &c.dht_contact) {
            // Where others will dial it: the address we dialled (it answered there as itself),
            // or, for a peer that dialled us, its announced address only if that is the
            // address it came from (table limits group by it, so it must not be made up).
            let claimed = if c.outbound {
                c.addr.clone()
            } else {
                info.hello.listen.first().filter(|a| from_where_it_came(a, c.remote)).cloned()
            };
            let public_key = info.public_key;
            let contact = claimed.and_then(|a| self.admit(now, public_key, nonce, &a));
            if let Some(c) = self.conns.get_mut(&conn) {
                c.dht_contact = contact;
            }
        }
        if payload.is_empty() {
            self.pump_dht(now);
            return true;
        }
        let Ok(msg) = codec::decode(payload) else { return false };
        let from = self.conns.get(&conn).and_then(|c| c.dht_contact.clone());
        let Some(g) = self.dht.as_mut() else { return true };
        match msg {
            DhtMessage::Request { id, request } => {
                let response = g.dht.handle_request(now, from.as_ref(), request);
                let payload = codec::encode(&DhtMessage::Response { id, response });
                if let Some(c) = self.conns.get_mut(&conn) {
                    let _ = c.session.send(&Message::Dht { pow: None, payload });
                }
            }
            DhtMessage::Response { id, response } => {
                // Only the connection the request went out on may answer it.
                if g.sent.get(&id) == Some(&conn) {
                    g.sent.remove(&id);
                    g.dht.handle_response(now, id, response);
                }
            }
        }
        self.pump_dht(now);
        true
    }

    /// Admits the contact of an authenticated peer with identity key `public_key` that offers
    /// itself at `addr` with proof-of-work `nonce` (the caller checked the address is the
    /// peer's), if the address book's rules and the table's admission rules let it in.
    fn admit(
        &mut self,
        now: Instant,
        public_key: [u8; 32],
        nonce: u64,
        addr: &PeerAddr,
    ) -> Option<Contact> {
        let addr = self.addrs.check(addr).ok()?;
        let contact = Contact::new(public_key, nonce, addr.to_string()).ok()?;
        let g = self.dht.as_mut()?;
        g.dht.add_contact(contact.clone(), now).ok()?;
        // A live contact: what could be stored nowhere is tried again.
        g.dht.retry_unstored(now);
        Some(contact)
    }

    /// A DHT request arrived in an exchange on `conn`: answer it and close the connection.
    /// An identified sender that offers itself at the address it came from is admitted like a
    /// session's peer; anyone else is answered as an anonymous requester.
    pub(crate) fn on_query(&mut self, now: Instant, conn: crate::ConnId, query: Query) {
        let (remote, group) = self.conns.get(&conn).map_or((None, None), |c| (c.remote, c.group));
        let banned =
            query.from.is_some_and(|(_, node)| self.is_banned(&crate::SourceId::Node(node)));
        // Replays and floods are refused before any work on their behalf.
        let fresh = self.dht.as_mut().is_some_and(|g| {
            group.is_none_or(|grp| g.may_answer(now, grp)) && !g.replayed(query.ephemeral)
        });
        let answer =
            DhtQuery::decode(&query.body).ok().filter(|_| fresh && !banned).and_then(|q| {
                let from = match (query.from, &q.offer) {
                    (Some((public_key, node)), Some((nonce, addr)))
                        if from_where_it_came(addr, remote) =>
                    {
                        // A contact already in the table stays as it is: its requests neither
                        // refresh its entry nor clear its failures.
                        let known = self.dht.as_ref().and_then(|g| g.dht.table().entry(&node));
                        match known {
                            Some(e) => Some(e.contact.clone()),
                            None => self.admit(now, public_key, *nonce, addr),
                        }
                    }
                    _ => None,
                };
                let DhtMessage::Request { id, request } = codec::decode(&q.payload).ok()? else {
                    return None;
                };
                let response = self.dht.as_mut()?.dht.handle_request(now, from.as_ref(), request);
                Some(codec::encode(&DhtMessage::Response { id, response }))
            });
        if let (Some(body), Some(c)) = (answer, self.conns.get_mut(&conn)) {
            if c.session.answer(&body).is_ok() {
                self.flush(conn);
            }
        }
        self.drop_conn(now, conn, true);
        self.pump_dht(now);
    }

    /// The answer to the exchange on `conn` arrived: hand it to the DHT and close the
    /// connection (a missing or mismatched answer fails the request when it closes).
    pub(crate) fn on_answer(&mut self, now: Instant, conn: crate::ConnId, body: &[u8]) {
        let asked = self.conns.get(&conn).and_then(|c| c.exchange).map(|(id, _)| id);
        if let (Some(asked), Ok(DhtMessage::Response { id, response })) =
            (asked, codec::decode(body))
        {
            if let Some(g) =
                self.dht.as_mut().filter(|g| id == asked && g.sent.get(&id) == Some(&conn))
            {
                g.sent.remove(&id);
                g.dht.handle_response(now, id, response);
            }
        }
        self.drop_conn(now, conn, true);
    }

    /// Sends `t` as an exchange on a connection of its own (or queues it while every exchange
    /// slot is taken).
    fn start_exchange(&mut self, now: Instant, t: Transmit) {
        self.start_exchange_sent_at(now, t, now);
    }

    /// Like [`Engine::start_exchange`] for a request the DHT handed out at `sent_at` (its
    /// deadline runs from then).
    fn start_exchange_sent_at(&mut self, now: Instant, t: Transmit, sent_at: Instant) {
        let to = t.to.id();
        let banned = self.is_banned(&crate::SourceId::Node(to));
        let in_flight = self.conns.values().filter_map(|c| c.exchange);
        let (busy, to_it) =
            in_flight.fold((0, false), |(n, b), (_, node)| (n + 1, b || node == to));
        let Some(g) = self.dht.as_mut() else { return };
        if banned {
            g.dht.handle_unsent(now, t.request_id);
            g.dht.forget_contact(&to, now);
            return;
        }
        if busy >= MAX_DHT_EXCHANGES || to_it {
            let parked: usize = g.waiting.values().map(Vec::len).sum();
            if parked + g.queued.len() < MAX_WAITING {
                g.queued.push_back((sent_at, t));
            } else {
                // Our own congestion: the contact is not to blame.
                g.dht.handle_unsent(now, t.request_id);
            }
            return;
        }
        let request_timeout = g.dht.config().request_timeout;
        // Only what must be attributed is asked as ourselves: a store (the record must come
        // from its owner, at the host it names) from a node that offers itself. Lookups go
        // anonymously, so the nodes on a lookup's path learn nothing of who looks.
        let writes = matches!(t.request, DhtRequest::Store { .. } | DhtRequest::AddProvider { .. });
        let offer = g.pow.filter(|_| writes).zip(PeerAddr::new(g.dht.local().address()).ok());
        let identify = offer.is_some();
        let payload = codec::encode(&DhtMessage::Request { id: t.request_id, request: t.request });
        let body = DhtQuery { offer, payload }.encode_to_vec();
        let Some(addr) = PeerAddr::new(t.to.address()).ok().and_then(|a| self.addrs.check(&a).ok())
        else {
            return self.fail_request(now, t.request_id);
        };
        let mut config = self.config.session.clone();
        // An exchange lives as long as the DHT waits for its answer (from when it was handed
        // out, queueing included).
        config.handshake_timeout = (sent_at + request_timeout).saturating_duration_since(now);
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let responder = *t.to.public_key();
        let Ok(session) = Session::exchange(config, seed, now, &responder, identify, &body) else {
            return self.fail_request(now, t.request_id);
        };
        let conn = self.insert_conn(now, session, true);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.exchange = Some((t.request_id, to));
        }
        if let Some(g) = self.dht.as_mut() {
            g.sent.insert(t.request_id, conn);
            while g.sent.len() > MAX_SENT {
                g.sent.pop_first();
            }
        }
        self.actions.push_back(crate::Action::Connect { conn, addr });
    }

    fn fail_request(&mut self, now: Instant, id: RequestId) {
        if let Some(g) = self.dht.as_mut() {
            g.dht.handle_failure(now, id);
        }
    }

    /// Starts queued exchanges while slots are free (one per contact at a time); requests
    /// that waited half the DHT's patience are given up unsent, before the DHT would time them
    /// out and blame their contacts for our congestion.
    fn start_queued(&mut self, now: Instant) {
        let Some(g) = self.dht.as_mut() else { return };
        let patience = g.dht.config().request_timeout / 2;
        while g.queued.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) >= patience) {
            if let Some((_, t)) = g.queued.pop_front() {
                g.dht.handle_unsent(now, t.request_id);
            }
        }
        let mut busy: std::collections::BTreeSet<NodeId> =
            self.conns.values().filter_map(|c| c.exchange).map(|(_, node)| node).collect();
        let mut i = 0;
        while busy.len() < MAX_DHT_EXCHANGES {
            let Some(g) = self.dht.as_mut() else { return };
            let Some(pos) = (i..g.queued.len()).find(|&j| !busy.contains(&g.queued[j].1.to.id()))
            else {
                return;
            };
            let Some((sent_at, t)) = g.queued.remove(pos) else { return };
            i = pos;
            busy.insert(t.to.id());
            self.start_exchange_sent_at(now, t, sent_at);
        }
    }

    /// Sends what the DHT wants sent and handles what it reports.
    pub(crate) fn pump_dht(&mut self, now: Instant) {
        let Some(g) = self.dht.as_mut() else { return };
        if !g.bootstrapped && !g.dht.table().is_empty() {
            g.bootstrapped = true;
            let _ = g.dht.bootstrap(now);
        }
        // Deferred announcements go out as lookups finish, leaving room for the node's own
        // lookups (a fetch is never refused because announcements fill the lookup slots).
        while g.bootstrapped && g.room_for_puts() {
            let Some(record) = g.deferred.pop() else { break };
            match g.dht.provide(record.clone(), now) {
                Ok(_) => {}
                Err(e) if is_transient(&e) => {
                    g.deferred.push(record);
                    break;
                }
                // One that can never be stored (expired meanwhile) must not hold up the rest.
                Err(_) => {}
            }
        }
        self.start_queued(now);
        // Routing a request can fail or give up others at once, which moves lookups on and
        // makes more to send: drain until the DHT has nothing more (each pass sends or ends
        // requests, so this stops).
        loop {
            let Some(g) = self.dht.as_mut() else { return };
            let transmits: Vec<Transmit> =
                std::iter::from_fn(|| g.dht.poll_transmit(now)).collect();
            let events: Vec<DhtEvent> = std::iter::from_fn(|| g.dht.poll_event()).collect();
            if transmits.is_empty() && events.is_empty() {
                return;
            }
            for t in transmits {
                self.route_transmit(now, t);
            }
            for e in events {
                self.on_dht_event(now, e);
            }
        }
    }

    fn route_transmit(&mut self, now: Instant, mut t: Transmit) {
        let to = t.to.id();
        if let Some(linked) = self
            .conns
            .iter()
            .find(|(_, c)| c.is_overlay() && c.peer_id() == Some(to) && c.session.is_established())
            .map(|(id, _)| *id)
        {
            if self.dht_peer(linked) {
                return self.send_transmit(linked, t);
            }
            // Linked, but it does not speak the DHT: no second connection to it.
            if let Some(g) = self.dht.as_mut() {
                g.dht.handle_failure(now, t.request_id);
            }
            return;
        }
        let Some(g) = self.dht.as_mut() else { return };
        // A node the table knows is dialled where it was admitted, never at an address
        // someone else mentioned for it.
        if let Some(e) = g.dht.table().entry(&to) {
            t.to = e.contact.clone();
        }
        // A session to it being set up carries the request once it is up; otherwise it goes
        // as an exchange.
        let dialling = self
            .conns
            .iter()
            .find(|(_, c)| c.is_overlay() && c.expect == Some(to) && c.peer.is_none())
            .map(|(id, _)| *id);
        let Some(conn) = dialling else { return self.start_exchange(now, t) };
        let Some(g) = self.dht.as_mut() else { return };
        let parked: usize = g.waiting.values().map(Vec::len).sum();
        if parked < MAX_WAITING {
            g.waiting.entry(conn).or_default().push(t);
        } else {
            g.dht.handle_failure(now, t.request_id);
        }
    }

    fn send_transmit(&mut self, conn: crate::ConnId, t: Transmit) {
        let Some(g) = self.dht.as_mut() else { return };
        let payload = codec::encode(&DhtMessage::Request { id: t.request_id, request: t.request });
        let pow = g.pow;
        g.sent.insert(t.request_id, conn);
        while g.sent.len() > MAX_SENT {
            g.sent.pop_first();
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            let _ = c.session.send(&Message::Dht { pow, payload });
        }
        self.flush(conn);
    }

    fn on_dht_event(&mut self, now: Instant, event: DhtEvent) {
        let DhtEvent::LookupFinished { id, result } = event else { return };
        if self.rendezvous_finished(now, id, &result) {
            return;
        }
        let Some((root, generation)) = self.dht.as_mut().and_then(|g| g.finding.remove(&id)) else {
            return;
        };
        let mut found = 0;
        // A lookup for an earlier (cancelled) download of this root counts for nothing.
        let Some(d) = self.downloads.get_mut(&root).filter(|d| d.generation == generation) else {
            return;
        };
        d.finding = d.finding.saturating_sub(1);
        let me = self.config.session.identity.node_id();
        for p in &result.providers {
            let node = p.provider.id();
            let Ok(addr) = PeerAddr::new(p.provider.address()) else { continue };
            let Ok(addr) = self.addrs.check(&addr) else { continue };
            let spec = SourceSpec::Direct { node: Some(node), addr };
            if node != me && !d.sources.contains(&spec) {
                d.sources.push(spec);
                found += 1;
            }
        }
        self.events.push_back(Event::ProvidersFound { root, providers: found });
        // Every lookup came back empty and nothing else is known: say so now rather than
        // after the redial rounds.
        if self.downloads.get(&root).is_some_and(|d| d.finding == 0 && d.sources.is_empty()) {
            self.fail_download(root);
            return;
        }
        self.dial_sources(now, root);
        self.check_sources(now);
        self.schedule(now);
    }

    /// When the DHT next needs [`Engine::handle_timeout`].
    pub(crate) fn dht_timeout(&self) -> Option<Instant> {
        let dht = self.dht.as_ref().and_then(|g| g.dht.poll_timeout());
        // The oldest queued request is given up at half the DHT's patience.
        let queued = self.dht.as_ref().and_then(|g| {
            let (t, _) = g.queued.front()?;
            Some(*t + g.dht.config().request_timeout / 2)
        });
        dht.into_iter().chain(queued).chain(self.rendezvous_timeout()).min()
    }

    /// Runs the DHT's timers.
    pub(crate) fn dht_handle_timeout(&mut self, now: Instant) {
        if let Some(g) = self.dht.as_mut() {
            g.dht.handle_timeout(now);
        }
        self.pump_dht(now);
        self.rendezvous_tick(now);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use super::*;

    fn glue() -> DhtGlue {
        let identity = samizdat_identity::Identity::from_secret_bytes(&[3; 32]).unwrap();
        let config = DhtConfig { pow_difficulty: 2, ..DhtConfig::default() };
        let now = Instant::now();
        DhtGlue::new(config, &identity, None, [1; 32], now, 1_800_000_000).unwrap()
    }

    #[test]
    fn replayed_requests_are_recognised_within_a_bounded_memory() {
        let mut g = glue();
        assert!(!g.replayed([1; 32]));
        assert!(g.replayed([1; 32]));
        for i in 0..MAX_SEEN as u32 {
            let mut e = [0u8; 32];
            e[..4].copy_from_slice(&i.to_be_bytes());
            e[31] = 7;
            g.replayed(e);
        }
        assert_eq!(g.seen.len(), MAX_SEEN);
        assert_eq!(g.seen_set.len(), MAX_SEEN);
        // The oldest was forgotten to make room.
        assert!(!g.replayed([1; 32]));
    }

    #[test]
    fn each_address_group_gets_a_bounded_number_of_answers_per_second() {
        let mut g = glue();
        let now = Instant::now();
        let allowed = (0..200).filter(|_| g.may_answer(now, 5)).count();
        assert_eq!(allowed, MAX_EXCHANGES_PER_GROUP_PER_SEC as usize);
        assert!(g.may_answer(now + std::time::Duration::from_secs(1), 5), "a new second");
        // Thousands of groups in one second: memory stays fixed and most still get answers
        // (only groups sharing a slot with a busy one share its budget).
        let fresh = (100..5100u64).filter(|&grp| g.may_answer(now, grp)).count();
        assert_eq!(g.answered.len(), ANSWER_SLOTS);
        assert!(fresh > 4900, "{fresh} of 5000 answered");
    }
}
