//! The [`Dht`] behaviour: routing table, lookups and record store behind one sans-IO API.
//!
//! The owner feeds it incoming requests ([`Dht::handle_request`], answered at once from the
//! table and the store), answers to its own requests ([`Dht::handle_response`]), failures
//! ([`Dht::handle_failure`]) and time ([`Dht::handle_timeout`]); it polls outgoing requests
//! ([`Dht::poll_transmit`]) and events ([`Dht::poll_event`]). Requests carry a [`RequestId`]
//! and name a [`Contact`]; how they travel (a direct stream, later an onion circuit) is the
//! owner's choice.
//!
//! Bounds: lookups in flight ([`DhtConfig::max_lookups`]), requests per lookup, owned
//! records ([`DhtConfig::max_owned`]), the table and the store (see their modules). Nothing a
//! peer sends can grow a queue: incoming requests are answered synchronously and only the
//! node's own operations create outgoing requests.

use crate::DhtError;
use crate::codec::{DhtRequest, DhtResponse, MAX_CONTACTS, MAX_PROVIDERS, RequestId};
use crate::contact::Contact;
use crate::key::random_id_in_bucket;
use crate::lookup::{Lookup, LookupConfig, LookupKind, LookupResult};
use crate::record::{ProviderRecord, SignedRecord};
use crate::store::{RecordStore, Source, StoreConfig};
use crate::table::{InsertOutcome, RoutingTable, TableConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use samizdat_identity::NodeId;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How often expired records are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Whether two contact addresses name the same host: the same IP for `transport/ip:port`
/// addresses, else the same string. A provider record is taken only with the address its
/// sender was reached at (or came from), so the per-network-group limits count real hosts.
fn same_host(a: &str, b: &str) -> bool {
    let ip = |s: &str| {
        let rest = s.split_once('/').map_or(s, |(_, r)| r);
        let rest = rest.split_once('?').map_or(rest, |(endpoint, _)| endpoint);
        rest.parse::<std::net::SocketAddr>().ok().map(|a| match a.ip() {
            std::net::IpAddr::V6(v6) => {
                v6.to_ipv4_mapped().map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4)
            }
            v4 => v4,
        })
    };
    match (ip(a), ip(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// When a republish could not start, how long until it is tried again.
const RETRY_PUT_AFTER: Duration = Duration::from_secs(30);

/// Parameters of a [`Dht`].
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// Kademlia's k: bucket size, and how many closest nodes a lookup converges on and a
    /// record is stored at (at most [`MAX_CONTACTS`]).
    pub k: usize,
    /// Requests in flight per lookup path.
    pub alpha: usize,
    /// Disjoint lookup paths (S/Kademlia's d; 1 = plain Kademlia).
    pub disjoint_paths: usize,
    /// The proof-of-work difficulty every contact must meet (leading zero bits).
    pub pow_difficulty: u8,
    /// How long a request may go unanswered before it counts as failed.
    pub request_timeout: Duration,
    /// Lookups (including puts, refreshes and republishes) in flight at once.
    pub max_lookups: usize,
    /// Requests one lookup may send over all its paths.
    pub max_requests_per_lookup: usize,
    /// How often owned records are stored again.
    pub republish_interval: Duration,
    /// The most records (values and provider records) this node keeps publishing.
    pub max_owned: usize,
    /// Whether to start bucket refresh lookups by itself.
    pub refresh_buckets: bool,
    /// Routing table parameters (`k` is taken from [`DhtConfig::k`]).
    pub table: TableConfig,
    /// Record store limits.
    pub store: StoreConfig,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            k: 20,
            alpha: 3,
            disjoint_paths: 4,
            pow_difficulty: 16,
            request_timeout: Duration::from_secs(10),
            max_lookups: 16,
            max_requests_per_lookup: 400,
            republish_interval: Duration::from_secs(3600),
            max_owned: 256,
            refresh_buckets: true,
            table: TableConfig::default(),
            store: StoreConfig::default(),
        }
    }
}

/// Names one lookup or put started by [`Dht`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// A request to send: deliver `request` to `to` and report the answer under `request_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Report the answer or failure under this id.
    pub request_id: RequestId,
    /// Who to ask.
    pub to: Contact,
    /// What to ask.
    pub request: DhtRequest,
}

/// Something the owner should know.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum DhtEvent {
    /// A lookup started with [`Dht::find_node`], [`Dht::find_value`] or
    /// [`Dht::get_providers`] finished.
    LookupFinished {
        /// The lookup.
        id: LookupId,
        /// What it found.
        result: Box<LookupResult>,
    },
    /// A put ([`Dht::put_record`], [`Dht::provide`], or a republish) finished.
    PutFinished {
        /// The put.
        id: LookupId,
        /// The key stored under.
        key: NodeId,
        /// Nodes that accepted the record.
        accepted: usize,
        /// Nodes that refused or failed to answer.
        failed: usize,
    },
}

#[derive(Clone, Debug)]
enum Then {
    Report,
    Refresh,
    Put(Owned),
}

#[derive(Clone, Debug)]
enum Owned {
    Value(SignedRecord),
    Provider(ProviderRecord),
}

impl Owned {
    fn expires_at(&self) -> u64 {
        match self {
            Owned::Value(r) => r.expires_at,
            Owned::Provider(p) => p.expires_at,
        }
    }
    fn request(&self) -> DhtRequest {
        match self {
            Owned::Value(r) => DhtRequest::Store { record: r.clone() },
            Owned::Provider(p) => DhtRequest::AddProvider { record: p.clone() },
        }
    }
}

#[derive(Clone, Debug)]
enum Purpose {
    Lookup(LookupId),
    Probe,
    Store(LookupId),
}

#[derive(Clone, Debug)]
struct InFlight {
    to: Contact,
    purpose: Purpose,
    deadline: Instant,
}

struct Running {
    lookup: Lookup,
    then: Then,
}

struct PutState {
    key: NodeId,
    pending: usize,
    accepted: usize,
    failed: usize,
}

/// The sans-IO DHT node (see the module docs).
pub struct Dht {
    config: DhtConfig,
    lookup_config: LookupConfig,
    local: Contact,
    table: RoutingTable,
    store: RecordStore,
    lookups: HashMap<LookupId, Running>,
    puts: HashMap<LookupId, PutState>,
    in_flight: HashMap<RequestId, InFlight>,
    queued: VecDeque<Transmit>,
    events: VecDeque<DhtEvent>,
    owned: HashMap<NodeId, (Owned, Instant)>,
    /// Owned keys whose last put reached nobody, or has not finished yet.
    unstored: BTreeSet<NodeId>,
    refreshing: Option<LookupId>,
    rng: ChaCha20Rng,
    next_request: u64,
    next_lookup: u64,
    anchor: (Instant, u64),
    next_sweep: Instant,
}

impl Dht {
    /// A DHT node with identity `local` (whose proof of work must meet the difficulty),
    /// randomness from `seed`, and the wall clock anchored as `unix_now` at `now`.
    pub fn new(
        mut config: DhtConfig,
        local: Contact,
        seed: [u8; 32],
        now: Instant,
        unix_now: u64,
    ) -> Result<Self, DhtError> {
        local.verify_pow(config.pow_difficulty)?;
        config.k = config.k.clamp(1, MAX_CONTACTS);
        config.alpha = config.alpha.max(1);
        config.disjoint_paths = config.disjoint_paths.max(1);
        config.table.k = config.k;
        let lookup_config = LookupConfig {
            k: config.k,
            alpha: config.alpha,
            disjoint_paths: config.disjoint_paths,
            max_requests: config.max_requests_per_lookup,
            difficulty: config.pow_difficulty,
            max_providers: MAX_PROVIDERS,
        };
        Ok(Dht {
            table: RoutingTable::new(local.id(), config.table.clone(), now),
            store: RecordStore::new(config.store.clone(), config.pow_difficulty),
            lookup_config,
            config,
            local,
            lookups: HashMap::new(),
            puts: HashMap::new(),
            in_flight: HashMap::new(),
            queued: VecDeque::new(),
            events: VecDeque::new(),
            owned: HashMap::new(),
            unstored: BTreeSet::new(),
            refreshing: None,
            rng: ChaCha20Rng::from_seed(seed),
            next_request: 1,
            next_lookup: 1,
            anchor: (now, unix_now),
            next_sweep: now + SWEEP_INTERVAL,
        })
    }

    /// This node's contact.
    pub fn local(&self) -> &Contact {
        &self.local
    }

    /// The configuration in force.
    pub fn config(&self) -> &DhtConfig {
        &self.config
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The record store.
    pub fn store(&self) -> &RecordStore {
        &self.store
    }

    /// Requests awaiting an answer.
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Lookups and puts running.
    pub fn lookups_running(&self) -> usize {
        self.lookups.len() + self.puts.len()
    }

    /// Re-anchors the wall clock: `unix_now` is the time at `now`.
    pub fn set_wall_clock(&mut self, now: Instant, unix_now: u64) {
        self.anchor = (now, unix_now);
    }

    /// The wall clock (Unix seconds) at `now`.
    pub fn unix_time(&self, now: Instant) -> u64 {
        self.anchor.1.saturating_add(now.saturating_duration_since(self.anchor.0).as_secs())
    }

    /// Adds a contact the caller vouches for (a bootstrap peer, a peer on an authenticated
    /// link). Its proof of work is checked.
    pub fn add_contact(
        &mut self,
        contact: Contact,
        now: Instant,
    ) -> Result<InsertOutcome, DhtError> {
        contact.verify_pow(self.config.pow_difficulty)?;
        Ok(self.table.insert(contact, now))
    }

    fn start(
        &mut self,
        kind: LookupKind,
        target: NodeId,
        then: Then,
        now: Instant,
    ) -> Result<LookupId, DhtError> {
        if self.lookups_running() >= self.config.max_lookups {
            return Err(DhtError::TooManyLookups(self.config.max_lookups));
        }
        let seeds = self.table.closest(&target, self.config.k);
        if seeds.is_empty() {
            return Err(DhtError::NoContacts);
        }
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        self.table.mark_refreshed(&target, now);
        let lookup = Lookup::new(kind, target, self.local.id(), seeds, self.lookup_config.clone());
        self.lookups.insert(id, Running { lookup, then });
        Ok(id)
    }

    /// Starts a lookup of the `k` nodes closest to `target`.
    pub fn find_node(&mut self, target: NodeId, now: Instant) -> Result<LookupId, DhtError> {
        self.start(LookupKind::FindNode, target, Then::Report, now)
    }

    /// Looks up this node's own ID (the Kademlia join; fills the nearby buckets).
    pub fn bootstrap(&mut self, now: Instant) -> Result<LookupId, DhtError> {
        self.find_node(self.local.id(), now)
    }

    /// Starts a lookup of the mutable record under `key`.
    pub fn find_value(&mut self, key: NodeId, now: Instant) -> Result<LookupId, DhtError> {
        self.start(LookupKind::FindValue, key, Then::Report, now)
    }

    /// Starts a lookup of the providers of `key`.
    pub fn get_providers(&mut self, key: NodeId, now: Instant) -> Result<LookupId, DhtError> {
        self.start(LookupKind::GetProviders, key, Then::Report, now)
    }

    fn own(&mut self, key: NodeId, owned: Owned, now: Instant) -> Result<LookupId, DhtError> {
        if !self.owned.contains_key(&key) && self.owned.len() >= self.config.max_owned {
            return Err(DhtError::TooManyOwned(self.config.max_owned));
        }
        let id = self.start(LookupKind::FindNode, key, Then::Put(owned.clone()), now)?;
        self.owned.insert(key, (owned, now + self.config.republish_interval));
        self.unstored.insert(key);
        Ok(id)
    }

    /// Makes every owned record whose last put reached nobody due now (call it when a live
    /// contact arrives: after a restart the remembered contacts may all be gone, and a put
    /// that found only them would otherwise wait for its retry).
    pub fn retry_unstored(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.unstored) {
            if let Some(entry) = self.owned.get_mut(&key) {
                entry.1 = entry.1.min(now);
            }
        }
    }

    /// Publishes a mutable record this node owns: checks it, keeps it in the local store,
    /// stores it at the `k` nodes closest to its key, and republishes it every
    /// [`DhtConfig::republish_interval`] until it expires.
    pub fn put_record(&mut self, record: SignedRecord, now: Instant) -> Result<LookupId, DhtError> {
        let unix = self.unix_time(now);
        record.verify(unix)?;
        let key = record.key();
        self.store.put_value(record.clone(), Source::Local, unix)?;
        self.own(key, Owned::Value(record), now)
    }

    /// Announces this node as a provider: `record.provider` must be this node's contact.
    /// Kept, stored at the `k` closest nodes and republished like [`Dht::put_record`].
    pub fn provide(&mut self, record: ProviderRecord, now: Instant) -> Result<LookupId, DhtError> {
        if record.provider != self.local {
            return Err(DhtError::KeyMismatch("provider record is not this node's"));
        }
        let unix = self.unix_time(now);
        self.store.add_provider(record.clone(), Source::Local, unix)?;
        let key = record.key;
        self.own(key, Owned::Provider(record), now)
    }

    /// Stops republishing what this node owns under `key`.
    pub fn forget_owned(&mut self, key: &NodeId) -> bool {
        self.owned.remove(key).is_some()
    }

    /// Answers a request from a peer. `from` is the requester's contact if the caller vouches
    /// for it (a direct link authenticated with that key); such a requester is added to the
    /// table and gets its own store quota. `None` means an anonymous route (all anonymous
    /// requesters share one quota).
    pub fn handle_request(
        &mut self,
        now: Instant,
        from: Option<&Contact>,
        request: DhtRequest,
    ) -> DhtResponse {
        let unix = self.unix_time(now);
        let source = match from {
            Some(c) if c.verify_pow(self.config.pow_difficulty).is_ok() => {
                // A newcomer is admitted; a known entry is not refreshed by its own requests
                // (a peer that asks but never answers must still fail its probes and go).
                if !self.table.contains(&c.id()) {
                    self.table.insert(c.clone(), now);
                }
                Source::Peer(c.id())
            }
            _ => Source::Anonymous,
        };
        let k = self.config.k;
        match request {
            DhtRequest::Ping => DhtResponse::Pong,
            DhtRequest::FindNode { target } => {
                DhtResponse::Nodes { closer: self.table.closest(&target, k) }
            }
            DhtRequest::FindValue { key } => DhtResponse::Value {
                record: self.store.value(&key, unix).cloned(),
                closer: self.table.closest(&key, k),
            },
            DhtRequest::GetProviders { key } => DhtResponse::Providers {
                providers: self.store.providers(&key, unix, MAX_PROVIDERS),
                closer: self.table.closest(&key, k),
            },
            // Records are kept only for keys this node is responsible for (it knows fewer than
            // 2k nodes closer to the key, sibling list included), so nobody can make it store
            // records for keys far from it.
            DhtRequest::Store { record } => DhtResponse::Stored {
                accepted: self.table.is_among_closest(&record.key(), 2 * k)
                    && self.store.put_value(record, source, unix).is_ok(),
            },
            // A node announces only itself: a provider record is taken only from the provider
            // (so one peer cannot fill a key's slots with records of others, real or made up).
            DhtRequest::AddProvider { record } => DhtResponse::Stored {
                accepted: from.is_some_and(|c| {
                    c.public_key() == record.provider.public_key()
                        && same_host(c.address(), record.provider.address())
                }) && self.table.is_among_closest(&record.key, 2 * k)
                    && self.store.add_provider(record, source, unix).is_ok(),
            },
        }
    }

    /// Reports the answer to request `id`. Answers to unknown (or already timed-out) ids
    /// are ignored. A peer whose answer is forged, malformed or of the wrong kind is removed
    /// from the table; one that answers well is marked seen.
    pub fn handle_response(&mut self, now: Instant, id: RequestId, response: DhtResponse) {
        let Some(req) = self.in_flight.remove(&id) else { return };
        let peer = req.to.id();
        let ok = match req.purpose {
            Purpose::Lookup(l) => {
                let unix = self.unix_time(now);
                let ok = match self.lookups.get_mut(&l) {
                    Some(r) => r.lookup.on_response(&peer, response, unix).is_ok(),
                    None => true,
                };
                self.progress(l, now);
                ok
            }
            Purpose::Probe => matches!(response, DhtResponse::Pong),
            Purpose::Store(l) => match response {
                DhtResponse::Stored { accepted } => {
                    self.put_answer(l, accepted, now);
                    true
                }
                _ => {
                    self.put_answer(l, false, now);
                    false
                }
            },
        };
        if ok {
            self.table.insert(req.to, now);
        } else {
            self.table.remove(&peer, now);
        }
    }

    /// Reports that request `id` failed (no route, connection lost, caller's own timeout).
    pub fn handle_failure(&mut self, now: Instant, id: RequestId) {
        self.fail(now, id, true);
    }

    /// Drops `id` from the table at once (the caller no longer deals with it, e.g. it is
    /// banned); a pending contact takes its place.
    pub fn forget_contact(&mut self, id: &NodeId, now: Instant) -> bool {
        self.table.remove(id, now)
    }

    /// Reports that request `id` was never sent (the caller's own limits held it back): the
    /// lookup or put moves on as for a failure, but the contact is not blamed for it.
    pub fn handle_unsent(&mut self, now: Instant, id: RequestId) {
        self.fail(now, id, false);
    }

    fn fail(&mut self, now: Instant, id: RequestId, blame: bool) {
        let Some(req) = self.in_flight.remove(&id) else { return };
        let peer = req.to.id();
        if blame {
            self.table.failed(&peer, now);
        } else if matches!(req.purpose, Purpose::Probe) {
            // A probe that never went out decides nothing: the bucket may probe again.
            self.table.probe_abandoned(&peer);
        }
        match req.purpose {
            Purpose::Lookup(l) => {
                if let Some(r) = self.lookups.get_mut(&l) {
                    r.lookup.on_failure(&peer);
                }
                self.progress(l, now);
            }
            Purpose::Probe => {}
            Purpose::Store(l) => self.put_answer(l, false, now),
        }
    }

    fn put_answer(&mut self, l: LookupId, accepted: bool, now: Instant) {
        let Some(p) = self.puts.get_mut(&l) else { return };
        p.pending = p.pending.saturating_sub(1);
        if accepted {
            p.accepted += 1;
        } else {
            p.failed += 1;
        }
        if p.pending == 0 {
            let key = p.key;
            let (accepted, failed) = (p.accepted, p.failed);
            self.puts.remove(&l);
            self.put_finished(l, key, accepted, failed, now);
        }
    }

    /// Reports a finished put. One that reached nobody (every contact known was dead, as after
    /// a restart with remembered contacts) is tried again in [`RETRY_PUT_AFTER`], not after a
    /// whole republish interval.
    fn put_finished(
        &mut self,
        l: LookupId,
        key: NodeId,
        accepted: usize,
        failed: usize,
        now: Instant,
    ) {
        if accepted == 0 {
            if let Some(entry) = self.owned.get_mut(&key) {
                entry.1 = entry.1.min(now + RETRY_PUT_AFTER);
                self.unstored.insert(key);
            }
        } else {
            self.unstored.remove(&key);
        }
        self.events.push_back(DhtEvent::PutFinished { id: l, key, accepted, failed });
    }

    /// Finishes lookup `l` if it is done.
    fn progress(&mut self, l: LookupId, now: Instant) {
        let done = self.lookups.get(&l).is_some_and(|r| r.lookup.is_finished());
        if !done {
            return;
        }
        let Some(running) = self.lookups.remove(&l) else { return };
        // Late answers to this lookup are ignored from now on.
        self.in_flight.retain(|_, f| !matches!(f.purpose, Purpose::Lookup(x) if x == l));
        let result = running.lookup.result();
        match running.then {
            Then::Report => {
                self.events.push_back(DhtEvent::LookupFinished { id: l, result: Box::new(result) })
            }
            Then::Refresh => {
                if self.refreshing == Some(l) {
                    self.refreshing = None;
                }
            }
            Then::Put(owned) => {
                let key = result.target;
                let mut pending = 0;
                for to in result.closest {
                    let request_id = self.send(to, owned.request(), Purpose::Store(l), now);
                    let _ = request_id;
                    pending += 1;
                }
                if pending == 0 {
                    self.put_finished(l, key, 0, 0, now);
                } else {
                    self.puts.insert(l, PutState { key, pending, accepted: 0, failed: 0 });
                }
            }
        }
    }

    /// Queues a request for transmission (only for requests this node originates).
    fn send(
        &mut self,
        to: Contact,
        request: DhtRequest,
        purpose: Purpose,
        now: Instant,
    ) -> RequestId {
        let request_id = RequestId(self.next_request);
        self.next_request += 1;
        let deadline = now + self.config.request_timeout;
        self.in_flight.insert(request_id, InFlight { to: to.clone(), purpose, deadline });
        self.queued.push_back(Transmit { request_id, to, request });
        request_id
    }

    /// The next request to send.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(t) = self.queued.pop_front() {
            return Some(t);
        }
        if let Some(probe) = self.table.next_probe(now) {
            let id = self.send(probe, DhtRequest::Ping, Purpose::Probe, now);
            let _ = id;
            return self.queued.pop_front();
        }
        let mut ids: Vec<LookupId> = self.lookups.keys().copied().collect();
        ids.sort_unstable();
        for l in ids {
            let next = self.lookups.get_mut(&l).and_then(|r| r.lookup.next_request());
            if let Some((to, request)) = next {
                self.send(to, request, Purpose::Lookup(l), now);
                return self.queued.pop_front();
            }
            self.progress(l, now);
            if let Some(t) = self.queued.pop_front() {
                return Some(t);
            }
        }
        None
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// When [`Dht::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.in_flight.values().map(|f| f.deadline).min();
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(Some(self.next_sweep));
        consider(self.owned.values().map(|(_, at)| *at).min());
        if self.config.refresh_buckets && self.refreshing.is_none() {
            consider(self.table.next_refresh());
        }
        t
    }

    /// Advances time: fails requests past their deadline, sweeps expired records, starts a
    /// due bucket refresh and republishes owned records that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<RequestId> =
            self.in_flight.iter().filter(|(_, f)| f.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            self.handle_failure(now, id);
        }
        let unix = self.unix_time(now);
        if now >= self.next_sweep {
            self.store.sweep(unix);
            self.next_sweep = now + SWEEP_INTERVAL;
        }
        self.owned.retain(|_, (o, _)| o.expires_at() > unix);
        let owned = &self.owned;
        self.unstored.retain(|k| owned.contains_key(k));
        let mut due: Vec<NodeId> =
            self.owned.iter().filter(|(_, (_, at))| *at <= now).map(|(k, _)| *k).collect();
        due.sort_unstable();
        for key in due {
            let Some((owned, _)) = self.owned.get(&key).cloned() else { continue };
            // Started or not (no contact, too many lookups), the next try is later: a due time
            // left in the past would make the owner's timer fire in a loop.
            let started = self.start(LookupKind::FindNode, key, Then::Put(owned), now).is_ok();
            let next = if started { self.config.republish_interval } else { RETRY_PUT_AFTER };
            if let Some(entry) = self.owned.get_mut(&key) {
                entry.1 = now + next;
            }
        }
        if self.config.refresh_buckets && self.refreshing.is_none() {
            if let Some(&b) = self.table.buckets_to_refresh(now).first() {
                let target = random_id_in_bucket(&self.local.id(), b, &mut self.rng);
                match self.start(LookupKind::FindNode, target, Then::Refresh, now) {
                    Ok(l) => self.refreshing = Some(l),
                    // Nothing to ask: try again after the interval.
                    Err(_) => self.table.mark_refreshed(&target, now),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::scenario::Network;
    use samizdat_identity::{Identity, pow};

    fn base() -> Instant {
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    fn config() -> DhtConfig {
        DhtConfig { k: 8, pow_difficulty: 2, disjoint_paths: 2, ..DhtConfig::default() }
    }

    fn node(n: u32) -> (Identity, Contact) {
        let mut secret = [7u8; 32];
        secret[..4].copy_from_slice(&n.to_le_bytes());
        let id = Identity::from_secret_bytes(&secret).unwrap();
        let addr = format!("tcp/10.{}.{}.1:1", n / 256, n % 256);
        (id.clone(), Contact::for_identity(&id, 2, addr).unwrap())
    }

    fn dht(now: Instant) -> Dht {
        Dht::new(config(), node(0).1, [1; 32], now, 1000).unwrap()
    }

    fn network(n: usize) -> Network {
        let mut net = Network::new(config(), 5, base());
        for _ in 0..n {
            net.add(false);
        }
        net.converge();
        net
    }

    #[test]
    fn records_round_trip_through_a_network() {
        let mut net = network(60);
        let now = net.now;
        let unix = net.dht(3).unwrap().unix_time(now);
        let rec = SignedRecord::sign(net.identity(3), b"s", 1, unix + 600, b"hello").unwrap();
        let key = rec.key();
        let put = net.dht(3).unwrap().put_record(rec.clone(), now).unwrap();
        let events = net.drive(3);
        let accepted = events.iter().find_map(|e| match e {
            DhtEvent::PutFinished { id, accepted, key: k, .. } if *id == put && *k == key => {
                Some(*accepted)
            }
            _ => None,
        });
        assert_eq!(accepted, Some(8));
        let r = net.lookup(40, |d, now| d.find_value(key, now).ok()).unwrap();
        assert_eq!(r.record, Some(rec));
        // Providers.
        let pkey = NodeId(crate::rotating_key(&[5; 32], "providers", 1));
        let me = net.contact(7).clone();
        let pr = ProviderRecord::sign(net.identity(7), pkey, me, unix + 600).unwrap();
        net.dht(7).unwrap().provide(pr.clone(), now).unwrap();
        net.drive(7);
        let r = net.lookup(41, |d, now| d.get_providers(pkey, now).ok()).unwrap();
        assert_eq!(r.providers, vec![pr]);
        // A node lookup finds the target.
        let target = net.contact(22).id();
        let r = net.lookup(9, |d, now| d.find_node(target, now).ok()).unwrap();
        assert_eq!(r.closest[0].id(), target);
        assert!(r.stats.requests > 0 && r.paths == 2);
        assert!(net.messages > 0 && net.bytes > 0);
    }

    #[test]
    fn api_errors() {
        let now = base();
        let weak = (0u64..)
            .map(|n| Contact::new([3; 32], n, "tcp/1.1.1.1:1").unwrap())
            .find(|c| !pow::verify(c.public_key(), c.pow_nonce(), 2))
            .unwrap();
        assert!(Dht::new(config(), weak.clone(), [0; 32], now, 0).is_err());
        let mut d = dht(now);
        assert_eq!(d.find_node(NodeId([1; 32]), now), Err(DhtError::NoContacts));
        assert_eq!(d.add_contact(weak, now), Err(DhtError::BadProofOfWork(2)));
        d.add_contact(node(1).1, now).unwrap();
        for _ in 0..16 {
            d.find_node(NodeId([1; 32]), now).unwrap();
        }
        assert_eq!(d.find_node(NodeId([1; 32]), now), Err(DhtError::TooManyLookups(16)));
        let (other, oc) = node(9);
        let pr = ProviderRecord::sign(&other, NodeId([1; 32]), oc, 2000).unwrap();
        assert!(matches!(d.provide(pr, now), Err(DhtError::KeyMismatch(_))));
        let expired = SignedRecord::sign(&other, b"", 1, 10, b"x").unwrap();
        assert!(matches!(d.put_record(expired, now), Err(DhtError::Expired { .. })));
    }

    #[test]
    fn owned_records_are_bounded() {
        let now = base();
        let cfg = DhtConfig { max_owned: 2, max_lookups: 10, ..config() };
        let mut d = Dht::new(cfg, node(0).1, [1; 32], now, 1000).unwrap();
        d.add_contact(node(1).1, now).unwrap();
        let owner = node(0).0;
        for i in 0..2u8 {
            let r = SignedRecord::sign(&owner, &[i], 1, 2000, b"x").unwrap();
            d.put_record(r, now).unwrap();
        }
        let r = SignedRecord::sign(&owner, &[9], 1, 2000, b"x").unwrap();
        assert_eq!(d.put_record(r, now), Err(DhtError::TooManyOwned(2)));
        // A new version of an owned record is fine.
        let r = SignedRecord::sign(&owner, &[0], 2, 2000, b"y").unwrap();
        assert!(d.put_record(r, now).is_ok());
        assert!(d.forget_owned(&crate::record::record_key(&owner.public_key(), &[0])));
    }

    #[test]
    fn incoming_requests_never_grow_the_node_without_bound() {
        let now = base();
        let cfg = DhtConfig {
            store: StoreConfig { max_records: 50, max_per_source: 5, ..StoreConfig::default() },
            ..config()
        };
        let mut d = Dht::new(cfg, node(0).1, [1; 32], now, 1000).unwrap();
        let flooder = node(1);
        let mut accepted = 0;
        for i in 0..100u32 {
            let r = SignedRecord::sign(&flooder.0, &i.to_be_bytes(), 1, 2000, b"x").unwrap();
            if d.handle_request(now, Some(&flooder.1), DhtRequest::Store { record: r })
                == (DhtResponse::Stored { accepted: true })
            {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 5, "per-source quota");
        for i in 0..100u32 {
            let r =
                SignedRecord::sign(&flooder.0, &(1000 + i).to_be_bytes(), 1, 2000, b"x").unwrap();
            d.handle_request(now, None, DhtRequest::Store { record: r });
        }
        assert_eq!(d.store().len(), 10, "anonymous requesters share one quota");
        // Many distinct requesters: the store stops at its cap, the table at its bounds.
        for n in 2..400u32 {
            let (id, c) = node(n);
            let r = SignedRecord::sign(&id, b"", 1, 2000, b"x").unwrap();
            d.handle_request(now, Some(&c), DhtRequest::Store { record: r });
        }
        assert_eq!(d.store().remote_len(), 50);
        assert!(d.table().len() <= 256 * 8);
        assert!(d.table().pending_len() <= 256 * 3);
        // Answers are bounded by k.
        match d.handle_request(now, None, DhtRequest::FindNode { target: NodeId([0; 32]) }) {
            DhtResponse::Nodes { closer } => assert_eq!(closer.len(), 8),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.handle_request(now, None, DhtRequest::Ping), DhtResponse::Pong);
        match d.handle_request(now, None, DhtRequest::FindValue { key: NodeId([0; 32]) }) {
            DhtResponse::Value { record: None, closer } => assert_eq!(closer.len(), 8),
            other => panic!("{other:?}"),
        }
    }

    /// Starts a lookup on a node knowing `peers`, returns its first transmits.
    fn started(now: Instant, peers: &[Contact]) -> (Dht, Vec<Transmit>) {
        let mut d = dht(now);
        for p in peers {
            d.add_contact(p.clone(), now).unwrap();
        }
        d.find_node(NodeId([0x42; 32]), now).unwrap();
        let sends: Vec<Transmit> = std::iter::from_fn(|| d.poll_transmit(now)).collect();
        (d, sends)
    }

    #[test]
    fn forged_answers_remove_the_sender_and_unknown_ids_are_ignored() {
        let now = base();
        let peers: Vec<Contact> = (1..5).map(|n| node(n).1).collect();
        let (mut d, sends) = started(now, &peers);
        assert_eq!(sends.len(), 4);
        assert_eq!(d.requests_in_flight(), 4);
        let weak = (0u64..)
            .map(|n| Contact::new([3; 32], n, "tcp/1.1.1.1:1").unwrap())
            .find(|c| !pow::verify(c.public_key(), c.pow_nonce(), 2))
            .unwrap();
        let liar = sends[0].to.id();
        d.handle_response(now, sends[0].request_id, DhtResponse::Nodes { closer: vec![weak] });
        assert!(!d.table().contains(&liar), "forger removed");
        let wrong = sends[1].to.id();
        d.handle_response(now, sends[1].request_id, DhtResponse::Pong);
        assert!(!d.table().contains(&wrong), "wrong kind of answer removed");
        // Unknown and repeated ids change nothing.
        d.handle_response(now, RequestId(999_999), DhtResponse::Pong);
        d.handle_response(now, sends[1].request_id, DhtResponse::Nodes { closer: vec![] });
        d.handle_failure(now, RequestId(999_999));
        assert_eq!(d.table().len(), 2);
        assert_eq!(d.requests_in_flight(), 2);
        // A good answer keeps its sender.
        d.handle_response(now, sends[2].request_id, DhtResponse::Nodes { closer: vec![] });
        assert!(d.table().contains(&sends[2].to.id()));
    }

    #[test]
    fn timeouts_fail_requests_and_finish_lookups() {
        let now = base();
        let peers: Vec<Contact> = (1..3).map(|n| node(n).1).collect();
        let (mut d, sends) = started(now, &peers);
        assert_eq!(sends.len(), 2);
        let deadline = d.poll_timeout().unwrap();
        assert!(deadline <= now + Duration::from_secs(10));
        d.handle_timeout(deadline);
        assert_eq!(d.requests_in_flight(), 0);
        // Each peer failed once (max_failures is 2): still in the table, ranked down.
        for p in &peers {
            assert_eq!(d.table().entry(&p.id()).unwrap().failures, 1);
        }
        assert!(d.poll_transmit(deadline).is_none());
        match d.poll_event() {
            Some(DhtEvent::LookupFinished { result, .. }) => {
                assert!(result.closest.is_empty());
                assert_eq!(result.stats.failures, 2);
            }
            other => panic!("{other:?}"),
        }
        // A late answer is ignored.
        d.handle_response(deadline, sends[0].request_id, DhtResponse::Nodes { closer: vec![] });
        assert_eq!(d.table().entry(&peers[0].id()).unwrap().failures, 1);
    }

    #[test]
    fn a_request_never_sent_moves_the_lookup_on_without_blaming_the_contact() {
        let now = base();
        let peers: Vec<Contact> = (1..3).map(|n| node(n).1).collect();
        let (mut d, sends) = started(now, &peers);
        for t in &sends {
            d.handle_unsent(now, t.request_id);
        }
        assert_eq!(d.requests_in_flight(), 0);
        for p in &peers {
            assert_eq!(d.table().entry(&p.id()).unwrap().failures, 0);
        }
        assert!(matches!(d.poll_event(), Some(DhtEvent::LookupFinished { .. })));
    }

    #[test]
    fn full_buckets_probe_the_oldest_entry() {
        let now = base();
        let mut d = dht(now);
        let local = d.local().id();
        // Fill the far bucket (k = 8) with contacts from distinct /16s.
        let mut far = Vec::new();
        let mut n = 1;
        while far.len() < 9 {
            let c = node(n).1;
            n += 1;
            if crate::key::bucket_index(&local, &c.id()) == Some(255) {
                far.push(c);
            }
        }
        for c in &far[..8] {
            assert_eq!(d.add_contact(c.clone(), now).unwrap(), InsertOutcome::Inserted);
        }
        assert_eq!(d.add_contact(far[8].clone(), now).unwrap(), InsertOutcome::Pending);
        let t = d.poll_transmit(now).unwrap();
        assert_eq!(t.request, DhtRequest::Ping);
        assert_eq!(t.to, far[0]);
        d.handle_failure(now, t.request_id);
        assert!(!d.table().contains(&far[0].id()));
        assert!(d.table().contains(&far[8].id()));
    }

    #[test]
    fn refresh_and_republish_are_driven_by_time() {
        let mut net = network(30);
        let now = net.now;
        let unix = net.dht(1).unwrap().unix_time(now);
        let rec = SignedRecord::sign(net.identity(1), b"", 1, unix + 10 * 3600, b"v").unwrap();
        net.dht(1).unwrap().put_record(rec, now).unwrap();
        net.drive(1);
        assert!(net.dht(1).unwrap().poll_timeout().is_some());
        // An hour later the owner republishes (Store requests go out again) and refreshes.
        net.now += Duration::from_secs(3601);
        let later = net.now;
        let d = net.dht(1).unwrap();
        d.handle_timeout(later);
        assert_eq!(d.lookups_running(), 2, "a republish and a refresh");
        let before = net.messages;
        let events = net.drive(1);
        assert!(net.messages > before);
        assert!(events.iter().any(|e| matches!(e, DhtEvent::PutFinished { accepted: 8, .. })));
        // After expiry it stops.
        net.now += Duration::from_secs(10 * 3600);
        let end = net.now;
        let d = net.dht(1).unwrap();
        d.handle_timeout(end);
        assert_eq!(d.store().len(), 0, "swept");
        net.drive(1);
        let d = net.dht(1).unwrap();
        d.handle_timeout(end + Duration::from_secs(1));
        let events = net.drive(1);
        assert!(!events.iter().any(|e| matches!(e, DhtEvent::PutFinished { .. })));
        let d = net.dht(1).unwrap();
        d.set_wall_clock(end, 5);
        assert_eq!(d.unix_time(end + Duration::from_secs(2)), 7);
    }

    #[test]
    fn a_provider_record_is_taken_only_from_the_provider_itself() {
        let now = base();
        let mut d = dht(now);
        let (alice_id, alice) = node(1);
        let (_, mallory) = node(2);
        let record = ProviderRecord::sign(&alice_id, NodeId([9; 32]), alice.clone(), 5000).unwrap();
        let add = || DhtRequest::AddProvider { record: record.clone() };
        for from in [Some(&mallory), None] {
            let r = d.handle_request(now, from, add());
            assert_eq!(r, DhtResponse::Stored { accepted: false }, "relayed by another");
        }
        assert_eq!(
            d.handle_request(now, Some(&alice), add()),
            DhtResponse::Stored { accepted: true }
        );
    }

    #[test]
    fn a_known_contact_keeps_its_address_and_its_own_requests_do_not_clear_failures() {
        let now = base();
        let mut d = dht(now);
        let (_, bob) = node(3);
        d.add_contact(bob.clone(), now).unwrap();
        // Someone mentions bob at another address: the table keeps the one it admitted.
        let moved = Contact::new(*bob.public_key(), bob.pow_nonce(), "tcp/6.6.6.6:1").unwrap();
        d.add_contact(moved, now).unwrap();
        assert_eq!(d.table().entry(&bob.id()).unwrap().contact.address(), bob.address());
        // bob fails a request, then asks us something: the failure stays on its record.
        d.table.failed(&bob.id(), now);
        let _ = d.handle_request(now, Some(&bob), DhtRequest::Ping);
        assert_eq!(d.table().entry(&bob.id()).unwrap().failures, 1);
    }

    #[test]
    fn a_republish_that_cannot_start_waits_instead_of_spinning() {
        let now = base();
        let mut d = dht(now);
        let (id0, me) = node(0);
        let record = ProviderRecord::sign(&id0, NodeId([4; 32]), me, 100_000).unwrap();
        let _ = d.provide(record, now);
        // Nobody to store it at: whenever the timer fires, the next one is in the future.
        let mut t = now;
        for _ in 0..50 {
            let Some(next) = d.poll_timeout() else { break };
            assert!(next > t || next > now, "timer in the past: {next:?}");
            t = next.max(t + Duration::from_millis(1));
            d.handle_timeout(t);
        }
        assert!(d.poll_timeout().is_none_or(|n| n > t), "still spinning");
    }

    #[test]
    fn a_put_that_reached_only_dead_contacts_is_retried_when_a_live_one_arrives() {
        let now = base();
        let mut d = dht(now);
        let (id0, me) = node(0);
        // A remembered contact that is gone: every request to it fails.
        d.add_contact(node(1).1, now).unwrap();
        let record = ProviderRecord::sign(&id0, NodeId([4; 32]), me, 100_000).unwrap();
        d.provide(record, now).unwrap();
        let mut t = now;
        for _ in 0..20 {
            while let Some(tx) = d.poll_transmit(t) {
                d.handle_failure(t, tx.request_id);
            }
            while d.poll_event().is_some() {}
            t += Duration::from_millis(10);
            d.handle_timeout(t);
        }
        let retry = d.poll_timeout().unwrap();
        assert!(retry <= t + RETRY_PUT_AFTER, "retried within 30 s, not after an hour");
        // A live contact arrives: the put is due at once.
        d.add_contact(node(2).1, t).unwrap();
        d.retry_unstored(t);
        assert!(d.poll_timeout().unwrap() <= t);
        d.handle_timeout(t);
        let mut asked = Vec::new();
        while let Some(tx) = d.poll_transmit(t) {
            asked.push(tx.to.id());
        }
        assert!(asked.contains(&node(2).1.id()), "the new contact is asked: {asked:?}");
        // Nothing more to retry once it was retried.
        d.retry_unstored(t);
    }

    #[test]
    fn a_provider_record_is_taken_only_with_the_address_its_sender_was_reached_at() {
        assert!(same_host("tcp/192.0.2.1:7070", "tcp/192.0.2.1:9"));
        assert!(same_host("tcp/[::ffff:192.0.2.1]:1", "tcp/192.0.2.1:2"));
        assert!(!same_host("tcp/192.0.2.1:7070", "tcp/192.0.2.2:7070"));
        assert!(same_host("test/3", "test/3") && !same_host("test/3", "test/4"));
        let now = base();
        let mut d = dht(now);
        let (id, real) = node(5);
        // The record claims another host than the one the session came from.
        let elsewhere = Contact::for_identity(&id, 2, "tcp/203.0.113.7:1").unwrap();
        let record = ProviderRecord::sign(&id, NodeId([4; 32]), elsewhere, 100_000).unwrap();
        let r = d.handle_request(now, Some(&real), DhtRequest::AddProvider { record });
        assert_eq!(r, DhtResponse::Stored { accepted: false });
        let record = ProviderRecord::sign(&id, NodeId([4; 32]), real.clone(), 100_000).unwrap();
        let r = d.handle_request(now, Some(&real), DhtRequest::AddProvider { record });
        assert_eq!(r, DhtResponse::Stored { accepted: true });
    }
}
