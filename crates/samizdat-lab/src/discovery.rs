//! The `discovery` scenario: a new node joins a network whose usual ways in a censor blocks,
//! and finds peers through the fallbacks, all at once, each with its own timeout.
//!
//! **What is real:** every peer record is a real [`PeerRecord`], signed by a real
//! [`Identity`] of its node and verified by the newcomer (forgeries are refused by the same
//! check the node runs); the methods, their order, timeouts, fan-out and caps are the node's
//! (`samizdat-node/src/discover.rs`, `samizdat-engine/src/rendezvous.rs`, the peer exchange).
//!
//! **What is modelled** (a seeded discrete-event simulation, in simulated milliseconds):
//! * Links: each node is 20–150 ms one way from the newcomer; a connection (TCP, then the
//!   Noise XX handshake and `Hello`) takes 2.5 round trips; a dial to an offline, blocked or
//!   unreachable address fails after the 5 s connect timeout. 90% of the nodes are online.
//! * Bootstrap peers: 3 well-known nodes (the `--peer` / invite lines), always online.
//! * Peer exchange: a connected peer answers `getaddr` one round trip later with up to 16
//!   signed records of nodes it knows (any node, online or not).
//! * Overlay rendezvous points: once one peer is connected, a walk of a random slot of the
//!   hour (64 slots; every online node announced in its home slot; at most 20 providers kept
//!   per key) takes 3 round trips (the median hops of `dht-sybil` at 10,000 nodes) and its
//!   providers are dialled.
//! * Mainline DHT rendezvous: the client finds its neighbourhood in 0.6–1.5 s, then reads the
//!   16 slots of this hour and of the last, 4 at a time, each get taking 0.8–3.0 s (our
//!   namespace test measured 32 gets in 19 s with one unresponsive node per lookup; public
//!   Mainline BEP 44 gets typically take 1–3 s); each slot holds one record of a random node
//!   that announced (last hour's may be offline now). Budget: 20 s.
//! * LAN (mDNS): `--lan-peers` online nodes on the newcomer's LAN answer within the 1.5 s
//!   browse window, 1 ms away.
//! * The censor (`--block`): `bootstrap` blackholes the bootstrap peers' addresses;
//!   `mainline` the Mainline DHT; `lan` multicast; `all` every address and method.
//!
//! A peer counts as found when its record verified and a session with it is up. The run ends
//! at `--until` simulated seconds (30 by default) or when nothing is left to happen.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use samizdat_discovery::PeerRecord;
use samizdat_identity::{Identity, NodeId};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

/// The methods, in report order.
pub const METHODS: [&str; 5] =
    ["bootstrap", "peer-exchange", "overlay-rendezvous", "mainline", "mdns"];
const BOOTSTRAP: usize = 0;
const PEX: usize = 1;
const RENDEZVOUS: usize = 2;
const MAINLINE: usize = 3;
const LAN: usize = 4;

const CONNECT_TIMEOUT_MS: u64 = 5_000;
const MAINLINE_BUDGET_MS: u64 = 20_000;
const LAN_WINDOW_MS: u64 = 1_500;
const PEX_RECORDS: usize = 16;
const RENDEZVOUS_SLOTS: u64 = 64;
const PROVIDERS_PER_KEY: usize = 20;
const MAINLINE_SLOTS: usize = 16;
const MAINLINE_PARALLEL: usize = 4;
const MAX_DIALS_IN_FLIGHT: usize = 16;
const TARGET_PEERS: usize = 8;
/// Peers beyond which the newcomer dials no more (its outbound target and room for
/// inbound-like extras; the node keeps 8 outbound).
const MAX_PEERS: usize = 16;
const BOOTSTRAP_PEERS: usize = 3;
/// Unix time of the run (records are signed and verified against it).
const T0: u64 = 1_800_000_000;

/// What the censor blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Block {
    /// The bootstrap peers' addresses.
    pub bootstrap: bool,
    /// The Mainline DHT.
    pub mainline: bool,
    /// LAN multicast.
    pub lan: bool,
    /// Every address (nothing can be dialled).
    pub everything: bool,
}

impl Block {
    /// Parses `none`, `bootstrap`, `mainline`, `lan`, `all`, or a comma list of them.
    pub fn parse(s: &str) -> Result<Block, String> {
        let mut b = Block::default();
        for part in s.split(',').map(str::trim) {
            match part {
                "none" => {}
                "bootstrap" => b.bootstrap = true,
                "mainline" => b.mainline = true,
                "lan" => b.lan = true,
                "all" => {
                    b = Block { bootstrap: true, mainline: true, lan: true, everything: true };
                }
                other => {
                    return Err(format!(
                        "unknown block {other:?} (none, bootstrap, mainline, lan, all)"
                    ));
                }
            }
        }
        Ok(b)
    }

    fn name(&self) -> String {
        if self.everything {
            return "all".into();
        }
        let parts: Vec<&str> =
            [(self.bootstrap, "bootstrap"), (self.mainline, "mainline"), (self.lan, "lan")]
                .into_iter()
                .filter_map(|(on, n)| on.then_some(n))
                .collect();
        if parts.is_empty() { "none".into() } else { parts.join(",") }
    }
}

/// The scenario's parameters.
#[derive(Clone, Debug)]
pub struct Params {
    /// Nodes in the network.
    pub nodes: usize,
    /// What the censor blocks.
    pub block: Block,
    /// Online nodes on the newcomer's LAN.
    pub lan_peers: usize,
    /// Fraction of peer-exchange records that are forged.
    pub poison: f64,
    /// Simulated seconds the run lasts at most.
    pub until: Duration,
    /// The seed.
    pub seed: u64,
}

/// What one method did.
#[derive(Clone, Debug, PartialEq)]
pub struct MethodReport {
    /// Its name.
    pub name: &'static str,
    /// Peers found first through it.
    pub peers: usize,
    /// When it gave its first peer.
    pub first_peer_seconds: Option<f64>,
    /// When it had done all it would (or the run ended).
    pub elapsed_seconds: f64,
    /// Why it found nothing, if it did not.
    pub error: Option<String>,
}

/// The outcome of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The parameters' seed, size and block.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// The block's name.
    pub block: String,
    /// Whether any peer was found.
    pub ok: bool,
    /// Peers found by the end.
    pub peers_found: usize,
    /// Peers found within 5 simulated seconds.
    pub peers_at_5s: usize,
    /// When the 8th peer was found, or when the run gave up.
    pub seconds: f64,
    /// When the first peer was found.
    pub seconds_to_first: Option<f64>,
    /// Per method.
    pub methods: Vec<MethodReport>,
    /// Records refused (bad signature, or an identity the address did not prove).
    pub records_refused: usize,
    /// Simulated events processed.
    pub events: usize,
}

impl Report {
    /// One JSON object.
    pub fn to_json(&self) -> String {
        let secs =
            |s: Option<f64>| s.map_or(serde_json::Value::Null, |s| serde_json::json!(round(s)));
        let methods: Vec<serde_json::Value> = self
            .methods
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.name, "peers": m.peers,
                    "first_peer_seconds": secs(m.first_peer_seconds),
                    "elapsed_seconds": round(m.elapsed_seconds), "error": m.error,
                })
            })
            .collect();
        serde_json::json!({
            "scenario": "discovery", "seed": self.seed, "nodes": self.nodes, "block": self.block,
            "ok": self.ok, "peers_found": self.peers_found, "peers_at_5s": self.peers_at_5s,
            "seconds": round(self.seconds), "seconds_to_first": secs(self.seconds_to_first),
            "methods": methods,
            "methods_tried": self.methods.iter().map(|m| m.name).collect::<Vec<_>>(),
            "records_refused": self.records_refused, "events": self.events,
        })
        .to_string()
    }
}

fn round(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A dial of `node`'s address, for the record of `claimed`, learned through `method`.
    Dial { node: usize, claimed: usize, method: usize },
    /// A dial came through: a session with `node`.
    Up { node: usize, claimed: usize, method: usize },
    /// A dial failed.
    Failed { method: usize },
    /// Records arrive through `method` (indices into the forged or honest set).
    Records { method: usize, records: Vec<Offer> },
    /// The Mainline client is ready; start the slot gets.
    MainlineReady,
    /// A Mainline slot get ended.
    MainlineGet { slot: usize },
    /// A method has nothing more to do.
    Done { method: usize, error: Option<String> },
}

/// A record handed over: honest (of node `i`), forged signature, or a valid record of a
/// throwaway identity naming node `i`'s address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Offer {
    Honest(usize),
    BadSignature(usize),
    WrongIdentity(usize),
}

struct Sim {
    p: Params,
    rng: ChaCha20Rng,
    ids: Vec<Identity>,
    records: BTreeMap<usize, PeerRecord>,
    node_of: BTreeMap<NodeId, usize>,
    online: Vec<bool>,
    oneway: Vec<u64>,
    queue: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    now: u64,
    dialled: BTreeSet<usize>,
    in_flight: usize,
    waiting: Vec<(usize, usize, usize)>,
    up: BTreeSet<usize>,
    found_at: Vec<u64>,
    methods: Vec<MethodReport>,
    refused: usize,
    pending: [usize; 5],
    ended: [bool; 5],
    /// Records each method gave of peers already dialled.
    known: [usize; 5],
    /// Records each method gave once the node had enough peers.
    unneeded: [usize; 5],
    rendezvous_started: bool,
    mainline_next: usize,
    mainline_slots: Vec<(usize, usize)>,
}

impl Sim {
    fn new(p: Params) -> Sim {
        let mut rng = ChaCha20Rng::seed_from_u64(p.seed);
        let n = p.nodes.max(BOOTSTRAP_PEERS + 1);
        let ids: Vec<Identity> = (0..n)
            .map(|_| {
                let mut secret = [0u8; 32];
                rng.fill_bytes(&mut secret);
                Identity::from_secret_bytes(&secret).expect("32 bytes are a key")
            })
            .collect();
        let node_of = ids.iter().enumerate().map(|(i, id)| (id.node_id(), i)).collect();
        // The bootstrap peers are always up; the rest are online with probability 0.9.
        let online = (0..n).map(|i| i < BOOTSTRAP_PEERS || rng.next_u32() % 10 != 0).collect();
        let oneway = (0..n).map(|_| 20 + u64::from(rng.next_u32() % 131)).collect();
        let methods = METHODS
            .iter()
            .map(|&name| MethodReport {
                name,
                peers: 0,
                first_peer_seconds: None,
                elapsed_seconds: 0.0,
                error: None,
            })
            .collect();
        Sim {
            p: Params { nodes: n, ..p },
            rng,
            ids,
            records: BTreeMap::new(),
            node_of,
            online,
            oneway,
            queue: BinaryHeap::new(),
            seq: 0,
            now: 0,
            dialled: BTreeSet::new(),
            in_flight: 0,
            waiting: Vec::new(),
            up: BTreeSet::new(),
            found_at: Vec::new(),
            methods,
            refused: 0,
            pending: [0; 5],
            ended: [false; 5],
            known: [0; 5],
            unneeded: [0; 5],
            rendezvous_started: false,
            mainline_next: 0,
            mainline_slots: Vec::new(),
        }
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.next_u64() % (hi - lo + 1)
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((t, self.seq, ev)));
    }

    fn random_node(&mut self) -> usize {
        (self.rng.next_u64() % self.p.nodes as u64) as usize
    }

    fn on_lan(&self, i: usize) -> bool {
        i >= BOOTSTRAP_PEERS && i < BOOTSTRAP_PEERS + self.p.lan_peers
    }

    fn record(&mut self, i: usize) -> PeerRecord {
        let id = &self.ids[i];
        self.records
            .entry(i)
            .or_insert_with(|| {
                let addr = format!("tcp/10.{}.{}.{}:7070", i >> 16 & 255, i >> 8 & 255, i & 255);
                PeerRecord::sign(id, &[addr], T0 - 60).expect("a valid address")
            })
            .clone()
    }

    /// Encodes what is offered, as it would travel, and checks it as the node does.
    fn take(&mut self, offer: &Offer) -> Option<(usize, usize)> {
        let (bytes, target) = match *offer {
            Offer::Honest(i) => (self.record(i).encode(), i),
            Offer::BadSignature(i) => {
                let mut b = self.record(i).encode();
                let last = b.len() - 1;
                b[last] ^= 1;
                (b, i)
            }
            Offer::WrongIdentity(i) => {
                let mut secret = [0u8; 32];
                self.rng.fill_bytes(&mut secret);
                let ghost = Identity::from_secret_bytes(&secret).expect("32 bytes are a key");
                let addr = self.record(i).addrs()[0].clone();
                (PeerRecord::sign(&ghost, &[addr], T0 - 60).expect("valid").encode(), i)
            }
        };
        let checked = PeerRecord::decode(&bytes)
            .ok()
            .and_then(|r| r.verify(T0, Duration::from_secs(7200)).ok());
        let Some(claimed) = checked else {
            self.refused += 1;
            return None;
        };
        // The node the record's key belongs to (none for a throwaway identity).
        let claimed = self.node_of.get(&claimed).copied().unwrap_or(usize::MAX);
        Some((target, claimed))
    }

    fn reachable(&self, i: usize, method: usize) -> bool {
        let b = self.p.block;
        let blocked =
            b.everything || (b.bootstrap && i < BOOTSTRAP_PEERS) || (method == LAN && b.lan);
        self.online[i] && !blocked
    }

    fn dial(&mut self, node: usize, claimed: usize, method: usize) {
        if self.dialled.contains(&node) {
            self.known[method] += 1;
            return;
        }
        if self.up.len() >= MAX_PEERS {
            self.unneeded[method] += 1;
            return;
        }
        self.dialled.insert(node);
        self.pending[method] += 1;
        if self.in_flight >= MAX_DIALS_IN_FLIGHT {
            self.waiting.push((node, claimed, method));
            return;
        }
        self.in_flight += 1;
        let t = self.now;
        self.at(t, Ev::Dial { node, claimed, method });
    }

    fn offer(&mut self, method: usize, offers: Vec<Offer>) {
        for o in offers {
            if let Some((node, claimed)) = self.take(&o) {
                self.dial(node, claimed, method);
            }
        }
        self.settle(method);
    }

    /// Ends `method` once nothing of it is pending.
    fn settle(&mut self, method: usize) {
        if self.pending[method] == 0 {
            let t = self.now;
            let error = (self.methods[method].peers == 0).then(|| match method {
                BOOTSTRAP | PEX | RENDEZVOUS => {
                    format!("no peer reachable (connect timeout {} s)", CONNECT_TIMEOUT_MS / 1000)
                }
                _ => "no peer reachable".to_owned(),
            });
            self.at(t, Ev::Done { method, error });
        }
    }

    fn found(&mut self, node: usize, method: usize) {
        if !self.up.insert(node) {
            return;
        }
        self.found_at.push(self.now);
        let m = &mut self.methods[method];
        m.peers += 1;
        m.first_peer_seconds.get_or_insert(self.now as f64 / 1000.0);
        // Every peer is asked for addresses; the first one also starts a rendezvous walk.
        let rtt = 2 * self.oneway[node];
        let records: Vec<Offer> = (0..PEX_RECORDS)
            .map(|_| {
                let i = self.random_node();
                let roll = (self.rng.next_u32() % 1000) as f64 / 1000.0;
                if roll < self.p.poison / 2.0 {
                    Offer::BadSignature(i)
                } else if roll < self.p.poison {
                    Offer::WrongIdentity(i)
                } else {
                    Offer::Honest(i)
                }
            })
            .collect();
        self.pending[PEX] += 1;
        let t = self.now + rtt;
        self.at(t, Ev::Records { method: PEX, records });
        if !self.rendezvous_started {
            self.rendezvous_started = true;
            self.pending[RENDEZVOUS] += 1;
            let slot = self.rng.next_u64() % RENDEZVOUS_SLOTS;
            let providers: Vec<Offer> = (0..self.p.nodes)
                .filter(|&i| {
                    self.online[i] && self.ids[i].node_id().0[0] as u64 % RENDEZVOUS_SLOTS == slot
                })
                .take(PROVIDERS_PER_KEY)
                .map(Offer::Honest)
                .collect();
            let t = self.now + 3 * rtt;
            self.at(t, Ev::Records { method: RENDEZVOUS, records: providers });
        }
    }

    fn start(&mut self) {
        // Bootstrap peers and invite lines.
        for i in 0..BOOTSTRAP_PEERS {
            let claimed = i;
            self.dial(i, claimed, BOOTSTRAP);
        }
        // Mainline.
        if self.p.block.mainline || self.p.block.everything {
            self.at(
                MAINLINE_BUDGET_MS,
                Ev::Done {
                    method: MAINLINE,
                    error: Some(format!(
                        "mainline: no answer within {} s",
                        MAINLINE_BUDGET_MS / 1000
                    )),
                },
            );
        } else {
            let ready = self.between(600, 1500);
            self.at(ready, Ev::MainlineReady);
            // Each slot holds the newest record of a random announcer: this hour's, and the
            // last hour's (whose node may have gone since).
            for s in 0..2 * MAINLINE_SLOTS {
                let node = loop {
                    let i = self.random_node();
                    if s >= MAINLINE_SLOTS || self.online[i] {
                        break i;
                    }
                };
                self.mainline_slots.push((s, node));
            }
        }
        // LAN.
        if self.p.block.lan || self.p.block.everything {
            self.at(
                0,
                Ev::Done {
                    method: LAN,
                    error: Some("mdns: unreachable (multicast blocked)".into()),
                },
            );
        } else if self.p.lan_peers == 0 {
            self.at(
                LAN_WINDOW_MS,
                Ev::Done { method: LAN, error: Some("mdns: no answer on the LAN".into()) },
            );
        } else {
            let peers: Vec<usize> =
                (0..self.p.nodes).filter(|&i| self.on_lan(i) && self.online[i]).collect();
            for i in peers {
                let t = self.between(50, LAN_WINDOW_MS);
                self.pending[LAN] += 1;
                self.at(t, Ev::Records { method: LAN, records: vec![Offer::Honest(i)] });
            }
        }
    }

    fn next_mainline_get(&mut self) {
        while self.mainline_next < self.mainline_slots.len()
            && self.pending[MAINLINE] < MAINLINE_PARALLEL
        {
            let slot = self.mainline_next;
            self.mainline_next += 1;
            self.pending[MAINLINE] += 1;
            let t = self.now + self.between(800, 3000);
            if t <= MAINLINE_BUDGET_MS {
                self.at(t, Ev::MainlineGet { slot });
            } else {
                self.at(MAINLINE_BUDGET_MS, Ev::MainlineGet { slot: usize::MAX });
            }
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Dial { node, claimed, method } => {
                let oneway = if self.on_lan(node) && method == LAN { 1 } else { self.oneway[node] };
                if self.reachable(node, method) {
                    let t = self.now + 5 * oneway;
                    self.at(t, Ev::Up { node, claimed, method });
                } else {
                    let t = self.now + CONNECT_TIMEOUT_MS;
                    self.at(t, Ev::Failed { method });
                }
            }
            Ev::Up { node, claimed, method } => {
                self.dial_done();
                if claimed == node {
                    self.found(node, method);
                } else {
                    // The session proved another identity than the record's: refused.
                    self.refused += 1;
                }
                self.pending[method] -= 1;
                self.settle(method);
            }
            Ev::Failed { method } => {
                self.dial_done();
                self.pending[method] -= 1;
                self.settle(method);
            }
            Ev::Records { method, records } => {
                self.pending[method] -= 1;
                self.offer(method, records);
            }
            Ev::MainlineReady => self.next_mainline_get(),
            Ev::MainlineGet { slot } => {
                self.pending[MAINLINE] -= 1;
                if let Some(&(_, node)) = self.mainline_slots.get(slot) {
                    self.offer(MAINLINE, vec![Offer::Honest(node)]);
                }
                self.next_mainline_get();
                self.settle(MAINLINE);
            }
            Ev::Done { method, error } => {
                let m = &mut self.methods[method];
                m.error = error;
                m.elapsed_seconds = m.elapsed_seconds.max(self.now as f64 / 1000.0);
                self.ended[method] = true;
            }
        }
    }

    fn dial_done(&mut self) {
        self.in_flight -= 1;
        while let Some((node, claimed, method)) = self.waiting.pop() {
            if self.up.len() >= MAX_PEERS {
                // Enough peers: the queued dials are dropped.
                self.unneeded[method] += 1;
                self.pending[method] -= 1;
                self.settle(method);
                continue;
            }
            self.in_flight += 1;
            let t = self.now;
            self.at(t, Ev::Dial { node, claimed, method });
            break;
        }
    }

    fn run(mut self) -> Report {
        self.start();
        let until = self.p.until.as_millis() as u64;
        let mut events = 0;
        while let Some(Reverse((t, _, ev))) = self.queue.pop() {
            if t > until {
                break;
            }
            self.now = t;
            events += 1;
            self.handle(ev);
        }
        let end = self.now.min(until);
        for (i, m) in self.methods.iter_mut().enumerate() {
            if !self.ended[i] || self.pending[i] > 0 {
                // Still running when the run ended, or never started (nobody to ask).
                m.elapsed_seconds = end as f64 / 1000.0;
                if m.error.is_none() {
                    m.error = Some(match i {
                        PEX | RENDEZVOUS if self.up.is_empty() => "no peer to ask".into(),
                        _ => "nothing found before the run ended".into(),
                    });
                }
            }
            if m.peers > 0 {
                m.error = None;
            }
        }
        let seconds =
            if self.found_at.len() >= TARGET_PEERS { self.found_at[TARGET_PEERS - 1] } else { end };
        Report {
            seed: self.p.seed,
            nodes: self.p.nodes,
            block: self.p.block.name(),
            ok: !self.up.is_empty(),
            peers_found: self.up.len(),
            peers_at_5s: self.found_at.iter().filter(|&&t| t <= 5000).count(),
            seconds: seconds as f64 / 1000.0,
            seconds_to_first: self.found_at.first().map(|&t| t as f64 / 1000.0),
            methods: self.methods,
            records_refused: self.refused,
            events,
        }
    }
}

/// Runs the scenario.
pub fn run(params: Params) -> Report {
    Sim::new(params).run()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn params(block: &str) -> Params {
        Params {
            nodes: 300,
            block: Block::parse(block).unwrap(),
            lan_peers: 0,
            poison: 0.0,
            until: Duration::from_secs(30),
            seed: 7,
        }
    }

    #[test]
    fn with_the_bootstrap_peers_blocked_the_fallbacks_find_8_peers_within_5_s() {
        let r = run(params("bootstrap"));
        assert!(r.ok && r.peers_at_5s >= 8, "{}", r.to_json());
        assert!(r.seconds <= 5.0, "{}", r.to_json());
        let m = |n: &str| r.methods.iter().find(|m| m.name == n).unwrap().clone();
        assert_eq!(m("bootstrap").peers, 0);
        assert!(m("bootstrap").error.is_some());
        assert!(m("mainline").peers >= 1, "{}", r.to_json());
    }

    #[test]
    fn with_everything_blocked_it_ends_within_30_s_saying_what_it_tried() {
        let r = run(params("all"));
        assert!(!r.ok && r.peers_found == 0);
        assert!(r.seconds <= 30.0, "{}", r.to_json());
        assert_eq!(r.methods.len(), METHODS.len());
        assert!(r.methods.iter().all(|m| m.error.is_some()), "{}", r.to_json());
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["ok"], false);
        assert_eq!(json["methods_tried"].as_array().unwrap().len(), METHODS.len());
    }

    #[test]
    fn the_same_seed_gives_the_same_report_and_another_seed_another() {
        assert_eq!(run(params("bootstrap")), run(params("bootstrap")));
        let other = Params { seed: 8, ..params("bootstrap") };
        assert_ne!(run(params("bootstrap")).to_json(), run(other).to_json());
    }

    #[test]
    fn forged_records_are_refused_and_never_counted() {
        let r = run(Params { poison: 0.5, ..params("none") });
        assert!(r.records_refused > 0, "{}", r.to_json());
        assert!(r.ok && r.peers_found >= 8, "{}", r.to_json());
    }

    #[test]
    fn the_lan_alone_finds_peers_when_everything_else_is_blocked() {
        let r = run(Params { lan_peers: 10, ..params("bootstrap,mainline") });
        let lan = r.methods.iter().find(|m| m.name == "mdns").unwrap();
        assert!(lan.peers >= 1 && lan.first_peer_seconds.unwrap() <= 1.5, "{}", r.to_json());
        assert!(r.peers_at_5s >= 8, "and through those peers the rest: {}", r.to_json());
        assert!(Block::parse("nonsense").is_err());
        assert_eq!(Block::parse("bootstrap,lan").unwrap().name(), "bootstrap,lan");
    }
}
