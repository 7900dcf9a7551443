//! The simulator: nodes, links, the event queue and virtual time.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::config::{LinkConfig, SimConfig};
use crate::error::SimError;
use crate::middlebox::{Middlebox, Segment, SegmentKind, Verdict};
use crate::stats::{LinkStats, SimStats};
use crate::trace::{TraceEvent, TraceKind, Tracer};
use crate::transport::{Connection, Output, Packet};
use crate::{Action, ConnId, Host, NodeId};

/// Marks "no peer" in trace events.
const NO_PEER: u64 = u64::MAX;

enum Event {
    Deliver(Packet),
    ConnTimer { node: NodeId, incarnation: u64, flow: u64, generation: u64 },
    HostTimer { node: NodeId, incarnation: u64, generation: u64 },
    ConnectFailed { node: NodeId, incarnation: u64, conn: ConnId },
}

struct Scheduled {
    at: Duration,
    seq: u64,
    active: bool,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so the max-heap pops the earliest `(at, seq)` first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A connection endpoint at a node, with the host's id for it and its timer bookkeeping.
struct Endpoint {
    /// Boxed: a node's endpoint map then holds small entries (a map node has room for
    /// eleven, mostly unused at a node with a few connections).
    conn: Box<Connection>,
    host_conn: ConnId,
    /// The earliest pending timer event for this endpoint, if any.
    scheduled: Option<Duration>,
    generation: u64,
    /// Counted in `Sim::busy_endpoints`: it has data in flight or a connection attempt.
    busy: bool,
}

struct Node<H> {
    host: Option<H>,
    incarnation: u64,
    isolated: bool,
    endpoints: BTreeMap<u64, Endpoint>,
    /// Host connection id -> flow, for connections the host still knows.
    by_conn: BTreeMap<u64, u64>,
    /// Flows this incarnation finished within the last [`TransportConfig::time_wait`]; their
    /// stray SYNs are answered with RST.
    ///
    /// [`TransportConfig::time_wait`]: crate::TransportConfig::time_wait
    retired: TimeWait,
    host_scheduled: Option<Duration>,
    host_generation: u64,
    middleboxes: Vec<Box<dyn Middlebox>>,
}

/// Recently finished flows, forgotten `time_wait` after they finished (virtual time), so the
/// set holds only the flows of one time-wait period however long a simulation runs.
#[derive(Default)]
struct TimeWait {
    /// Flow -> when it is forgotten.
    flows: BTreeMap<u64, Duration>,
    /// The same flows in the order they finished, which is also the order they expire in.
    order: VecDeque<(Duration, u64)>,
}

impl TimeWait {
    fn insert(&mut self, now: Duration, time_wait: Duration, flow: u64) {
        self.expire(now);
        let until = now + time_wait;
        self.flows.insert(flow, until);
        self.order.push_back((until, flow));
    }

    /// Whether `flow` finished within the time-wait period before `now`.
    fn contains(&mut self, now: Duration, flow: u64) -> bool {
        self.expire(now);
        self.flows.contains_key(&flow)
    }

    fn expire(&mut self, now: Duration) {
        while let Some(&(until, flow)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            if self.flows.get(&flow) == Some(&until) {
                self.flows.remove(&flow);
            }
        }
        if self.order.is_empty() && self.order.capacity() > 64 {
            self.order = VecDeque::new();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.flows.len()
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[derive(Default)]
struct Direction {
    busy_until: Duration,
    stats: LinkStats,
}

struct Link {
    config: LinkConfig,
    cut: bool,
    /// Index 0: lower node id to higher; 1: the reverse.
    dirs: [Direction; 2],
    middleboxes: Vec<Box<dyn Middlebox>>,
}

impl Link {
    fn new(config: LinkConfig) -> Self {
        Self { config, cut: false, dirs: Default::default(), middleboxes: Vec::new() }
    }
}

fn link_key(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

fn dir_index(from: NodeId, to: NodeId) -> usize {
    usize::from(from > to)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn validate(config: &LinkConfig) -> Result<(), SimError> {
    if !(0.0..=1.0).contains(&config.loss) {
        return Err(SimError::InvalidLink("loss must be within 0.0..=1.0"));
    }
    Ok(())
}

/// A deterministic simulated network of hosts of type `H`.
///
/// Use an enum or `Box<dyn Host>` as `H` for networks of different kinds of hosts.
/// Everything random (loss, jitter) comes from one ChaCha8 generator seeded with the seed,
/// and events at equal times run in the order they were scheduled, so a seed fully
/// determines a run.
pub struct Sim<H: Host> {
    seed: u64,
    config: SimConfig,
    base: Instant,
    now: Duration,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Scheduled>,
    next_seq: u64,
    /// Pending events that are never stale: deliveries (except keepalive traffic) and
    /// immediate connect failures.
    active_pending: usize,
    /// Endpoints with data in flight or a connection attempt under way.
    busy_endpoints: usize,
    /// Nodes with a host timer pending.
    hosts_waiting: usize,
    nodes: Vec<Node<H>>,
    links: BTreeMap<(NodeId, NodeId), Link>,
    next_flow: u64,
    tracer: Tracer,
    events: u64,
    connections_opened: u64,
    host_errors: u64,
}

impl<H: Host> Sim<H> {
    /// A simulator with no nodes, at virtual time zero.
    pub fn new(seed: u64, config: SimConfig) -> Self {
        // The one clock read: a base for the virtual `Instant`s handed to hosts. Nothing in
        // the simulation depends on its value.
        #[allow(clippy::disallowed_methods)]
        let base = Instant::now();
        Self {
            seed,
            rng: ChaCha8Rng::seed_from_u64(seed),
            tracer: Tracer::new(config.trace_log_capacity),
            config,
            base,
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            next_seq: 0,
            active_pending: 0,
            busy_endpoints: 0,
            hosts_waiting: 0,
            nodes: Vec::new(),
            links: BTreeMap::new(),
            next_flow: 1,
            events: 0,
            connections_opened: 0,
            host_errors: 0,
        }
    }

    /// The simulator's configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The current virtual time, as an `Instant` (the same kind hosts receive).
    pub fn now(&self) -> Instant {
        self.base + self.now
    }

    /// Virtual time elapsed since the simulator started.
    pub fn elapsed(&self) -> Duration {
        self.now
    }

    /// The `Instant` hosts see at virtual time `at` (time since the start).
    pub fn instant(&self, at: Duration) -> Instant {
        self.base + at
    }

    /// A seed for `node`'s own random generator, derived from the simulation seed, so host
    /// randomness replays too. Stable across restarts of the node.
    pub fn node_seed(&self, node: NodeId) -> u64 {
        let mut h = blake3::Hasher::new_derive_key("samizdat-sim node seed v1");
        h.update(&self.seed.to_le_bytes());
        h.update(&(node as u64).to_le_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&h.finalize().as_bytes()[..8]);
        u64::from_le_bytes(bytes)
    }

    /// Number of nodes ever added (crashed ones included).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Whether `node` exists and is running.
    pub fn is_up(&self, node: NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.host.is_some())
    }

    /// The host running at `node`, or `None` if it is crashed or unknown.
    pub fn host(&self, node: NodeId) -> Option<&H> {
        self.nodes.get(node)?.host.as_ref()
    }

    /// Runs `f` on the host at `node` with the current virtual time, then carries out the
    /// actions the host queued. Use it to tell a host to start something mid-scenario.
    pub fn with_host<R>(
        &mut self,
        node: NodeId,
        f: impl FnOnce(&mut H, Instant) -> R,
    ) -> Result<R, SimError> {
        let now = self.now();
        let host = self
            .nodes
            .get_mut(node)
            .ok_or(SimError::UnknownNode(node))?
            .host
            .as_mut()
            .ok_or(SimError::NodeDown(node))?;
        let r = f(host, now);
        self.after_host(node);
        Ok(r)
    }

    /// Adds a running node; returns its id (ids count up from 0). The host's first actions
    /// run at once.
    pub fn add_node(&mut self, host: H) -> NodeId {
        let node = self.nodes.len();
        self.nodes.push(Node {
            host: Some(host),
            incarnation: 0,
            isolated: false,
            endpoints: BTreeMap::new(),
            by_conn: BTreeMap::new(),
            retired: TimeWait::default(),
            host_scheduled: None,
            host_generation: 0,
            middleboxes: Vec::new(),
        });
        self.trace(TraceKind::NodeAdded, node, NO_PEER, 0, 0);
        self.after_host(node);
        node
    }

    fn check_node(&self, node: NodeId) -> Result<(), SimError> {
        if node < self.nodes.len() { Ok(()) } else { Err(SimError::UnknownNode(node)) }
    }

    fn check_pair(&self, a: NodeId, b: NodeId) -> Result<(), SimError> {
        self.check_node(a)?;
        self.check_node(b)?;
        if a == b { Err(SimError::SelfLink(a)) } else { Ok(()) }
    }

    fn link_mut(&mut self, a: NodeId, b: NodeId) -> &mut Link {
        let default = &self.config.default_link;
        self.links.entry(link_key(a, b)).or_insert_with(|| Link::new(default.clone()))
    }

    /// Sets the properties of the link between `a` and `b` (both directions). Counters,
    /// cuts and middleboxes stay.
    pub fn set_link(&mut self, a: NodeId, b: NodeId, config: LinkConfig) -> Result<(), SimError> {
        self.check_pair(a, b)?;
        validate(&config)?;
        self.link_mut(a, b).config = config;
        Ok(())
    }

    /// Sets the properties of every link not yet configured or used.
    pub fn set_default_link(&mut self, config: LinkConfig) -> Result<(), SimError> {
        validate(&config)?;
        self.config.default_link = config;
        Ok(())
    }

    /// Cuts the link between `a` and `b`: segments in either direction are dropped, including
    /// those already in flight, until [`Sim::heal`].
    pub fn cut(&mut self, a: NodeId, b: NodeId) -> Result<(), SimError> {
        self.check_pair(a, b)?;
        self.link_mut(a, b).cut = true;
        self.trace(TraceKind::Cut, a, b as u64, 0, 0);
        Ok(())
    }

    /// Restores a link cut with [`Sim::cut`].
    pub fn heal(&mut self, a: NodeId, b: NodeId) -> Result<(), SimError> {
        self.check_pair(a, b)?;
        self.link_mut(a, b).cut = false;
        self.trace(TraceKind::Heal, a, b as u64, 0, 0);
        Ok(())
    }

    /// Cuts `node` off from every other node until [`Sim::rejoin`]. The host keeps running.
    pub fn isolate(&mut self, node: NodeId) -> Result<(), SimError> {
        self.check_node(node)?;
        self.nodes[node].isolated = true;
        self.trace(TraceKind::Isolate, node, NO_PEER, 0, 0);
        Ok(())
    }

    /// Reconnects a node isolated with [`Sim::isolate`].
    pub fn rejoin(&mut self, node: NodeId) -> Result<(), SimError> {
        self.check_node(node)?;
        self.nodes[node].isolated = false;
        self.trace(TraceKind::Rejoin, node, NO_PEER, 0, 0);
        Ok(())
    }

    /// Installs a middlebox on the link between `a` and `b`; it sees both directions.
    pub fn add_middlebox(
        &mut self,
        a: NodeId,
        b: NodeId,
        middlebox: Box<dyn Middlebox>,
    ) -> Result<(), SimError> {
        self.check_pair(a, b)?;
        self.link_mut(a, b).middleboxes.push(middlebox);
        Ok(())
    }

    /// Installs a middlebox in front of `node`: it sees every segment the node sends or
    /// receives (a censor at the node's network border). Survives crashes and restarts.
    pub fn add_node_middlebox(
        &mut self,
        node: NodeId,
        middlebox: Box<dyn Middlebox>,
    ) -> Result<(), SimError> {
        self.check_node(node)?;
        self.nodes[node].middleboxes.push(middlebox);
        Ok(())
    }

    /// Crashes `node`: its host is dropped and its connections vanish without a word; peers
    /// notice by timeout, or by RST once the node restarts. Segments reaching it are dropped.
    pub fn crash(&mut self, node: NodeId) -> Result<(), SimError> {
        self.check_node(node)?;
        let n = &mut self.nodes[node];
        if n.host.is_none() {
            return Err(SimError::NodeDown(node));
        }
        n.host = None;
        n.incarnation += 1;
        self.busy_endpoints -= n.endpoints.values().filter(|ep| ep.busy).count();
        if n.host_scheduled.is_some() {
            self.hosts_waiting -= 1;
        }
        n.endpoints.clear();
        n.by_conn.clear();
        n.retired.clear();
        n.host_scheduled = None;
        self.trace(TraceKind::Crash, node, NO_PEER, 0, 0);
        Ok(())
    }

    /// Restarts a crashed node with a new host at the same address. Its first actions run
    /// at once.
    pub fn restart(&mut self, node: NodeId, host: H) -> Result<(), SimError> {
        self.check_node(node)?;
        if self.nodes[node].host.is_some() {
            return Err(SimError::NodeUp(node));
        }
        self.nodes[node].host = Some(host);
        self.trace(TraceKind::Restart, node, NO_PEER, 0, 0);
        self.after_host(node);
        Ok(())
    }

    /// Aborts every connection between `a` and `b` at once; both hosts get
    /// [`Host::closed`] (or [`Host::connect_failed`] for attempts in progress).
    pub fn reset_link(&mut self, a: NodeId, b: NodeId) -> Result<(), SimError> {
        self.check_pair(a, b)?;
        self.trace(TraceKind::ResetLink, a, b as u64, 0, 0);
        for (node, other) in [(a, b), (b, a)] {
            let flows: Vec<u64> = self.nodes[node]
                .endpoints
                .iter()
                .filter(|(_, ep)| ep.conn.peer() == other)
                .map(|(&f, _)| f)
                .collect();
            for flow in flows {
                let mut out = Vec::new();
                if let Some(ep) = self.nodes[node].endpoints.get_mut(&flow) {
                    ep.conn.abort(&mut out);
                }
                self.process_outputs(node, flow, out);
            }
        }
        Ok(())
    }

    /// Counters for the link direction `from -> to` (all zero if it never carried traffic).
    /// `payload_bytes_sent` is the number of payload bytes sent on it, retransmissions
    /// included.
    pub fn link_stats(&self, from: NodeId, to: NodeId) -> LinkStats {
        self.links
            .get(&link_key(from, to))
            .map(|l| l.dirs[dir_index(from, to)].stats)
            .unwrap_or_default()
    }

    /// Simulator-wide counters.
    pub fn stats(&self) -> SimStats {
        let mut links = LinkStats::default();
        for link in self.links.values() {
            for dir in &link.dirs {
                links.add(&dir.stats);
            }
        }
        SimStats {
            events: self.events,
            links,
            connections_opened: self.connections_opened,
            host_errors: self.host_errors,
        }
    }

    /// BLAKE3 digest of every trace event so far (virtual time, nodes, kinds, connection and
    /// flow ids, sequence numbers, byte counts). Equal seeds and scenarios give equal digests.
    pub fn trace_digest(&self) -> [u8; 32] {
        self.tracer.digest()
    }

    /// Number of trace events recorded so far.
    pub fn trace_len(&self) -> u64 {
        self.tracer.count()
    }

    /// The most recent trace events, oldest first; at most
    /// [`SimConfig::trace_log_capacity`] of them.
    pub fn trace_log(&self) -> impl Iterator<Item = &TraceEvent> {
        self.tracer.log()
    }

    /// Processes the next event, advancing virtual time to it. Returns `false` if there is
    /// none.
    pub fn step(&mut self) -> bool {
        let Some(s) = self.queue.pop() else { return false };
        if s.active {
            self.active_pending -= 1;
        }
        self.now = self.now.max(s.at);
        self.events += 1;
        match s.event {
            Event::Deliver(packet) => self.deliver(packet),
            Event::ConnTimer { node, incarnation, flow, generation } => {
                self.conn_timer(node, incarnation, flow, generation)
            }
            Event::HostTimer { node, incarnation, generation } => {
                self.host_timer(node, incarnation, generation)
            }
            Event::ConnectFailed { node, incarnation, conn } => {
                if self.nodes[node].incarnation == incarnation {
                    self.trace(TraceKind::ConnectFailed, node, NO_PEER, conn.0, 0);
                    let now = self.now();
                    if let Some(host) = self.nodes[node].host.as_mut() {
                        host.connect_failed(now, conn);
                        self.after_host(node);
                    }
                }
            }
        }
        true
    }

    /// Runs every event up to and including virtual time `deadline` (time since the start),
    /// then sets the clock to `deadline` if it is later.
    pub fn run_until(&mut self, deadline: Duration) {
        while self.queue.peek().is_some_and(|s| s.at <= deadline) {
            self.step();
        }
        self.now = self.now.max(deadline);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until nothing is left to do but keepalive traffic on idle connections: no data
    /// in flight, no connection attempts or host timers pending. Returns `false` if that
    /// does not happen within [`SimConfig::idle_limit`] of virtual time.
    ///
    /// Hosts with periodic timers never go idle; drive them with [`Sim::run_until`].
    /// Connections that die silently (e.g. after a partition) close by timer events that
    /// do not count as activity: run past their dead timeout with [`Sim::run_until`].
    pub fn run_until_idle(&mut self) -> bool {
        let limit = self.now + self.config.idle_limit;
        while !self.is_idle() {
            if self.queue.peek().is_some_and(|s| s.at > limit) {
                return false;
            }
            if !self.step() {
                break;
            }
        }
        self.is_idle()
    }

    /// Runs `f` after every event until it returns `true` or `deadline` passes; returns
    /// whether it did. `f` is also checked once before the first event.
    pub fn run_until_cond(&mut self, deadline: Duration, mut f: impl FnMut(&Self) -> bool) -> bool {
        loop {
            if f(self) {
                return true;
            }
            if self.queue.peek().is_none_or(|s| s.at > deadline) {
                self.now = self.now.max(deadline);
                return f(self);
            }
            self.step();
        }
    }

    /// Whether nothing but keepalive traffic is pending (see [`Sim::run_until_idle`]).
    pub fn is_idle(&self) -> bool {
        self.active_pending == 0 && self.busy_endpoints == 0 && self.hosts_waiting == 0
    }

    fn schedule(&mut self, at: Duration, active: bool, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if active {
            self.active_pending += 1;
        }
        self.queue.push(Scheduled { at: at.max(self.now), seq, active, event });
    }

    fn trace(&mut self, kind: TraceKind, node: NodeId, peer: u64, id: u64, bytes: u64) {
        self.tracer.record(TraceEvent {
            time_ns: nanos(self.now),
            kind,
            node: node as u64,
            peer,
            id,
            segment: None,
            seq: 0,
            bytes,
        });
    }

    /// Carries out the host's queued actions and re-arms its timer.
    fn after_host(&mut self, node: NodeId) {
        let now = self.now();
        loop {
            let action = match self.nodes[node].host.as_mut() {
                Some(host) => host.poll_action(now),
                None => return,
            };
            match action {
                Some(action) => self.handle_action(node, action),
                None => break,
            }
        }
        let n = &self.nodes[node];
        let Some(at) = n.host.as_ref().and_then(|h| h.poll_timeout()) else { return };
        let at = at.saturating_duration_since(self.base).max(self.now);
        if n.host_scheduled.is_some_and(|s| s <= at) {
            return;
        }
        let n = &mut self.nodes[node];
        if n.host_scheduled.is_none() {
            self.hosts_waiting += 1;
        }
        n.host_generation += 1;
        n.host_scheduled = Some(at);
        let event =
            Event::HostTimer { node, incarnation: n.incarnation, generation: n.host_generation };
        self.schedule(at, false, event);
    }

    fn host_timer(&mut self, node: NodeId, incarnation: u64, generation: u64) {
        let now = self.now();
        let n = &mut self.nodes[node];
        if n.incarnation != incarnation || n.host_generation != generation {
            return;
        }
        n.host_scheduled = None;
        self.hosts_waiting -= 1;
        let Some(host) = n.host.as_mut() else { return };
        if host.poll_timeout().is_some_and(|t| t <= now) {
            host.timeout(now);
            self.trace(TraceKind::Timeout, node, NO_PEER, 0, 0);
        }
        self.after_host(node);
    }

    fn handle_action(&mut self, node: NodeId, action: Action) {
        let now = self.now;
        match action {
            Action::Connect { conn, peer } => {
                self.trace(TraceKind::ActionConnect, node, peer as u64, conn.0, 0);
                if self.nodes[node].by_conn.contains_key(&conn.0) {
                    self.host_error(node, conn);
                    return;
                }
                self.connections_opened += 1;
                if peer >= self.nodes.len() || peer == node {
                    let incarnation = self.nodes[node].incarnation;
                    self.schedule(now, true, Event::ConnectFailed { node, incarnation, conn });
                    return;
                }
                let flow = self.next_flow;
                self.next_flow += 1;
                let mut out = Vec::new();
                let c =
                    Connection::connect(node, peer, flow, now, &self.config.transport, &mut out);
                let n = &mut self.nodes[node];
                n.by_conn.insert(conn.0, flow);
                n.endpoints.insert(
                    flow,
                    Endpoint {
                        conn: Box::new(c),
                        host_conn: conn,
                        scheduled: None,
                        generation: 0,
                        busy: false,
                    },
                );
                self.process_outputs(node, flow, out);
            }
            Action::Send { conn, data } => {
                self.trace(TraceKind::ActionSend, node, NO_PEER, conn.0, data.len() as u64);
                let cfg = &self.config.transport;
                let n = &mut self.nodes[node];
                let ep = n.by_conn.get(&conn.0).and_then(|flow| n.endpoints.get_mut(flow));
                match ep {
                    Some(ep) if ep.conn.accepts_data() => {
                        ep.conn.send(&data);
                        let mut out = Vec::new();
                        ep.conn.pump(now, cfg, &mut out);
                        let flow = n.by_conn[&conn.0];
                        self.process_outputs(node, flow, out);
                    }
                    _ => self.host_error(node, conn),
                }
            }
            Action::Close { conn } => {
                self.trace(TraceKind::ActionClose, node, NO_PEER, conn.0, 0);
                let cfg = &self.config.transport;
                let n = &mut self.nodes[node];
                let Some(&flow) = n.by_conn.get(&conn.0) else {
                    self.host_error(node, conn);
                    return;
                };
                let mut out = Vec::new();
                if let Some(ep) = n.endpoints.get_mut(&flow) {
                    ep.conn.close();
                    ep.conn.pump(now, cfg, &mut out);
                }
                self.process_outputs(node, flow, out);
            }
        }
    }

    fn host_error(&mut self, node: NodeId, conn: ConnId) {
        self.host_errors += 1;
        self.trace(TraceKind::HostError, node, NO_PEER, conn.0, 0);
    }

    /// Carries out an endpoint's outputs: transmits segments, tells the host, then forgets
    /// a finished endpoint or re-arms its timer.
    fn process_outputs(&mut self, node: NodeId, flow: u64, out: Vec<Output>) {
        // Captured up front: a nested call (from actions the host queues while handling an
        // output) may already have forgotten a finished endpoint; its outputs still count.
        let Some(conn) = self.nodes[node].endpoints.get(&flow).map(|ep| ep.host_conn) else {
            return;
        };
        for o in out {
            let now = self.now();
            match o {
                Output::Transmit(p) => {
                    self.transmit(p);
                    continue;
                }
                Output::Connected => {
                    self.trace(TraceKind::Connected, node, NO_PEER, conn.0, 0);
                    if let Some(h) = self.nodes[node].host.as_mut() {
                        h.connected(now, conn);
                    }
                }
                Output::Data(data) => {
                    self.trace(TraceKind::Receive, node, NO_PEER, conn.0, data.len() as u64);
                    if let Some(h) = self.nodes[node].host.as_mut() {
                        h.receive(now, conn, &data);
                    }
                }
                Output::Closed | Output::ConnectFailed => {
                    let n = &mut self.nodes[node];
                    if n.by_conn.get(&conn.0) == Some(&flow) {
                        n.by_conn.remove(&conn.0);
                    }
                    let failed = matches!(o, Output::ConnectFailed);
                    let kind = if failed { TraceKind::ConnectFailed } else { TraceKind::Closed };
                    self.trace(kind, node, NO_PEER, conn.0, 0);
                    if let Some(h) = self.nodes[node].host.as_mut() {
                        if failed {
                            h.connect_failed(now, conn);
                        } else {
                            h.closed(now, conn);
                        }
                    }
                    self.after_host(node);
                    let cfg = &self.config.transport;
                    let mut more = Vec::new();
                    if let Some(ep) = self.nodes[node].endpoints.get_mut(&flow) {
                        ep.conn.host_told_closed(self.now, cfg, &mut more);
                    }
                    for o in more {
                        if let Output::Transmit(p) = o {
                            self.transmit(p);
                        }
                    }
                    continue;
                }
            }
            // Honour the Host contract: drain actions after every call.
            self.after_host(node);
        }
        self.settle(node, flow);
    }

    /// Forgets a finished endpoint, or makes sure its next timer is scheduled.
    fn settle(&mut self, node: NodeId, flow: u64) {
        let cfg = &self.config.transport;
        let n = &mut self.nodes[node];
        let Some(ep) = n.endpoints.get_mut(&flow) else { return };
        if ep.conn.is_finished() {
            if ep.busy {
                self.busy_endpoints -= 1;
            }
            if n.by_conn.get(&ep.host_conn.0) == Some(&flow) {
                n.by_conn.remove(&ep.host_conn.0);
            }
            n.endpoints.remove(&flow);
            n.retired.insert(self.now, cfg.time_wait, flow);
            return;
        }
        let timer = ep.conn.next_timer(cfg);
        let busy = timer.is_some_and(|t| t.active);
        if busy != ep.busy {
            ep.busy = busy;
            if busy {
                self.busy_endpoints += 1;
            } else {
                self.busy_endpoints -= 1;
            }
        }
        let Some(timer) = timer else { return };
        // An already scheduled event that fires no later will re-arm when it fires.
        if ep.scheduled.is_some_and(|s| s <= timer.at) {
            return;
        }
        ep.generation += 1;
        ep.scheduled = Some(timer.at);
        let event =
            Event::ConnTimer { node, incarnation: n.incarnation, flow, generation: ep.generation };
        self.schedule(timer.at, false, event);
    }

    fn conn_timer(&mut self, node: NodeId, incarnation: u64, flow: u64, generation: u64) {
        let cfg = &self.config.transport;
        let now = self.now;
        let n = &mut self.nodes[node];
        if n.incarnation != incarnation {
            return;
        }
        let Some(ep) = n.endpoints.get_mut(&flow) else { return };
        if ep.generation != generation {
            return;
        }
        ep.scheduled = None;
        let mut out = Vec::new();
        ep.conn.on_timer(now, cfg, &mut out);
        self.process_outputs(node, flow, out);
    }

    /// Hands a segment to the link `p.from -> p.to`.
    fn transmit(&mut self, mut p: Packet) {
        let (from, to) = (p.from, p.to);
        let now = self.now;
        self.tracer.packet(TraceKind::PacketSent, now, &p);
        let default = &self.config.default_link;
        let link =
            self.links.entry(link_key(from, to)).or_insert_with(|| Link::new(default.clone()));
        let dir = dir_index(from, to);
        let payload_len = p.payload.len() as u64;
        {
            let st = &mut link.dirs[dir].stats;
            st.packets_sent += 1;
            st.payload_bytes_sent += payload_len;
            st.wire_bytes_sent += p.wire_len() as u64;
            if p.retransmission {
                st.retransmitted_packets += 1;
                st.retransmitted_bytes += payload_len;
            }
        }
        if link.cut || self.nodes[from].isolated || self.nodes[to].isolated {
            link.dirs[dir].stats.dropped_cut += 1;
            self.tracer.packet(TraceKind::DropCut, now, &p);
            return;
        }

        // Middleboxes: the sender's node, the link, the receiver's node.
        let mut extra = Duration::ZERO;
        let mut verdict_end = None;
        {
            let Self { nodes, links, .. } = self;
            let link = links.get_mut(&link_key(from, to));
            let mut boxes: Vec<&mut Box<dyn Middlebox>> = Vec::new();
            let (lo, hi) = nodes.split_at_mut(from.max(to));
            let (first, second) = (&mut lo[from.min(to)], &mut hi[0]);
            let (src, dst) = if from < to { (first, second) } else { (second, first) };
            boxes.extend(src.middleboxes.iter_mut());
            if let Some(link) = link {
                boxes.extend(link.middleboxes.iter_mut());
            }
            boxes.extend(dst.middleboxes.iter_mut());
            for mb in boxes {
                let seg = Segment {
                    from,
                    to,
                    flow: p.flow,
                    kind: p.kind,
                    seq: p.seq,
                    payload: &p.payload,
                    retransmission: p.retransmission,
                };
                match mb.inspect(now, &seg) {
                    Verdict::Pass => {}
                    Verdict::Delay(d) => extra += d,
                    Verdict::Rewrite(payload) => p.payload = payload,
                    v @ (Verdict::Drop | Verdict::Reset) => {
                        verdict_end = Some(v);
                        break;
                    }
                }
            }
        }
        let Some(link) = self.links.get_mut(&link_key(from, to)) else { return };
        match verdict_end {
            Some(Verdict::Drop) => {
                link.dirs[dir].stats.dropped_middlebox += 1;
                self.tracer.packet(TraceKind::DropMiddlebox, now, &p);
                return;
            }
            Some(_) => {
                link.dirs[dir].stats.dropped_middlebox += 1;
                link.dirs[dir].stats.rst_injected += 2;
                let latency = link.config.latency;
                self.tracer.packet(TraceKind::RstInjected, now, &p);
                let rst_fwd = Packet::control(from, to, p.flow, SegmentKind::Rst);
                let rst_back = Packet::control(to, from, p.flow, SegmentKind::Rst);
                self.schedule(now + latency, true, Event::Deliver(rst_fwd));
                self.schedule(now + latency, true, Event::Deliver(rst_back));
                return;
            }
            None => {}
        }

        // Queue (serialization delay, tail drop), then random loss and propagation.
        let cfg = &link.config;
        let d = &mut link.dirs[dir];
        let wire = p.wire_len() as u64;
        let mut depart = now;
        if cfg.bandwidth_bps > 0 {
            let bw = u128::from(cfg.bandwidth_bps);
            let backlog_ns = d.busy_until.saturating_sub(now).as_nanos();
            let backlog_bytes = backlog_ns * bw / 8 / 1_000_000_000;
            if backlog_bytes + u128::from(wire) > cfg.queue_limit as u128 && backlog_ns > 0 {
                d.stats.dropped_queue += 1;
                self.tracer.packet(TraceKind::DropQueue, now, &p);
                return;
            }
            let tx_ns = u128::from(wire) * 8 * 1_000_000_000 / bw;
            let tx = Duration::from_nanos(u64::try_from(tx_ns).unwrap_or(u64::MAX));
            depart = d.busy_until.max(now) + tx;
            d.busy_until = depart;
        }
        if cfg.loss > 0.0 {
            let r = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if r < cfg.loss {
                d.stats.lost += 1;
                self.tracer.packet(TraceKind::DropLoss, now, &p);
                return;
            }
        }
        let mut arrival = depart + cfg.latency + extra;
        if !cfg.jitter.is_zero() {
            let j = nanos(cfg.jitter);
            arrival += Duration::from_nanos(self.rng.next_u64() % j.saturating_add(1));
        }
        let active = !p.is_background();
        self.schedule(arrival, active, Event::Deliver(p));
    }

    /// A segment reaches `p.to`.
    fn deliver(&mut self, p: Packet) {
        let (from, to) = (p.from, p.to);
        let now = self.now;
        let dir = dir_index(from, to);
        let cut = self.links.get(&link_key(from, to)).is_some_and(|l| l.cut)
            || self.nodes[from].isolated
            || self.nodes[to].isolated;
        let down = self.nodes[to].host.is_none();
        let default = &self.config.default_link;
        let link =
            self.links.entry(link_key(from, to)).or_insert_with(|| Link::new(default.clone()));
        let st = &mut link.dirs[dir].stats;
        if cut {
            st.dropped_cut += 1;
            self.tracer.packet(TraceKind::DropCut, now, &p);
            return;
        }
        if down {
            st.dropped_down += 1;
            self.tracer.packet(TraceKind::DropDown, now, &p);
            return;
        }
        st.delivered_packets += 1;
        st.delivered_payload_bytes += p.payload.len() as u64;
        self.tracer.packet(TraceKind::Delivered, now, &p);

        let flow = p.flow;
        let cfg = &self.config.transport;
        let n = &mut self.nodes[to];
        let stray = p.kind == SegmentKind::Syn && n.retired.contains(now, flow);
        if let Some(ep) = n.endpoints.get_mut(&flow) {
            let mut out = Vec::new();
            ep.conn.handle(now, p, cfg, &mut out);
            self.process_outputs(to, flow, out);
            return;
        }
        match p.kind {
            SegmentKind::Rst => {}
            SegmentKind::Syn if !stray => self.accept(to, from, flow),
            _ => self.transmit(Packet::control(to, from, flow, SegmentKind::Rst)),
        }
    }

    /// A SYN for a new flow reached `node`: ask the host for an id and answer.
    fn accept(&mut self, node: NodeId, peer: NodeId, flow: u64) {
        let now = self.now();
        let Some(host) = self.nodes[node].host.as_mut() else { return };
        let conn = host.accept(now, peer);
        self.trace(TraceKind::Accept, node, peer as u64, conn.0, 0);
        if self.nodes[node].by_conn.contains_key(&conn.0) {
            self.host_error(node, conn);
            self.transmit(Packet::control(node, peer, flow, SegmentKind::Rst));
            self.after_host(node);
            return;
        }
        self.connections_opened += 1;
        let mut out = Vec::new();
        let c = Connection::accept(node, peer, flow, self.now, &self.config.transport, &mut out);
        let n = &mut self.nodes[node];
        n.by_conn.insert(conn.0, flow);
        n.endpoints.insert(
            flow,
            Endpoint {
                conn: Box::new(c),
                host_conn: conn,
                scheduled: None,
                generation: 0,
                busy: false,
            },
        );
        // SYN-ACK first, then whatever the host wants to do with its new connection.
        self.process_outputs(node, flow, out);
        self.after_host(node);
        self.settle(node, flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_wait_holds_only_the_last_period() {
        let wait = Duration::from_secs(10);
        let mut tw = TimeWait::default();
        // One flow finishes every 100 ms for ten minutes of virtual time.
        for i in 0..6000u64 {
            tw.insert(Duration::from_millis(100 * i), wait, i);
            assert!(tw.len() <= 100, "{} flows remembered at flow {i}", tw.len());
        }
        let now = Duration::from_millis(100 * 5999);
        assert!(tw.contains(now, 5999) && tw.contains(now, 5900));
        assert!(!tw.contains(now, 5899) && !tw.contains(now, 0));
        assert!(!tw.contains(now + wait, 5999));
        assert_eq!(tw.len(), 0);
    }
}
