//! Sans-IO node engine: connections, peer exchange, content serving and verified,
//! multi-source, resumable downloads.
//!
//! The engine owns every [`Session`] of a node and decides what to send. It contains no
//! networking code and does not read the clock: the driver (the tokio runtime in
//! `samizdat-node`, or the simulator in `samizdat-sim`) feeds it transport events with `now`
//! ([`Engine::accept`], [`Engine::connected`], [`Engine::handle_input`], [`Engine::closed`],
//! [`Engine::handle_timeout`]) and carries out its [`Action`]s (dial, send bytes, close).
//! Downloads report verified chunk groups as [`Event`]s; the driver decides where they go.
//!
//! Where a downloaded chunk is verified: [`transfer`], via
//! [`samizdat_content::Outboard::verify_group`], before it is ever handed out.
//!
//! Every queue a peer can grow is bounded: connections ([`EngineConfig::max_connections`]),
//! known addresses, queued requests per connection, and unwritten bytes per connection
//! (serving pauses until the driver reports them written with [`Engine::on_written`]).
#![forbid(unsafe_code)]

pub mod addrbook;
mod source;
pub mod transfer;

pub use source::{ContentSource, MemorySource};
pub use transfer::{Resume, TransferError};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use samizdat_content::{ContentRoot, Outboard};
use samizdat_identity::NodeId;
use samizdat_session::{PeerInfo, Session, SessionConfig, SessionError, SessionEvent};
use samizdat_wire::{MAX_ADDRS, MAX_LEAVES_PER_MESSAGE, Message, PeerAddr, features};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use transfer::Transfer;

/// Identifies one transport connection of this engine. Allocated by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Something the driver must do on the engine's behalf.
#[derive(Debug)]
pub enum Action {
    /// Open a transport connection to `addr`; report [`Engine::connected`] or
    /// [`Engine::connect_failed`] for `conn`.
    Connect {
        /// The engine's name for the new connection.
        conn: ConnId,
        /// Where to dial.
        addr: PeerAddr,
    },
    /// Write these bytes to the connection, then report them with [`Engine::on_written`].
    Send {
        /// The connection.
        conn: ConnId,
        /// Encrypted bytes.
        data: Vec<u8>,
    },
    /// Close the connection (the engine has already forgotten it).
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Why the engine dropped a peer or distrusts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offence {
    /// It served a chunk group that failed verification.
    CorruptGroup,
    /// It served leaf hashes that do not hash to the content root.
    CorruptOutboard,
    /// It broke the protocol (malformed or unexpected messages, too many requests).
    ProtocolViolation,
}

/// Something the engine wants its owner to know.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A session is established and authenticated.
    PeerUp {
        /// The connection.
        conn: ConnId,
        /// The authenticated peer.
        peer: NodeId,
    },
    /// A connection ended (or a dial failed).
    PeerDown {
        /// The connection.
        conn: ConnId,
        /// The peer, if it had authenticated.
        peer: Option<NodeId>,
    },
    /// A peer misbehaved and was penalised.
    PeerPenalized {
        /// The offender.
        peer: NodeId,
        /// What it did.
        offence: Offence,
    },
    /// A download's outboard was fetched and checked against the root; persist it to resume
    /// without fetching it again.
    OutboardVerified {
        /// The download.
        root: ContentRoot,
        /// The verified outboard.
        outboard: Outboard,
    },
    /// A chunk group of a download arrived and passed verification.
    GroupVerified {
        /// The download.
        root: ContentRoot,
        /// Group index.
        index: u32,
        /// The verified (still encrypted) bytes.
        data: Vec<u8>,
        /// Which peer served it.
        from: NodeId,
    },
    /// Every group of a download is verified.
    TransferComplete {
        /// The download.
        root: ContentRoot,
    },
    /// A download gave up.
    TransferFailed {
        /// The download.
        root: ContentRoot,
        /// Why.
        error: TransferError,
    },
}

/// Tunables of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Session settings (identity, features, listen addresses, limits).
    pub session: SessionConfig,
    /// Most simultaneous connections; further inbound ones are refused.
    pub max_connections: usize,
    /// Most remembered peer addresses.
    pub max_known_addrs: usize,
    /// Chunk groups requested from one peer at a time, per download.
    pub window: u32,
    /// Most queued requests a peer may have with us before it is cut off.
    pub max_queued_requests: usize,
    /// Unwritten bytes per connection above which serving pauses.
    pub write_high_water: usize,
    /// Interval between keep-alive pings on an idle connection.
    pub ping_interval: Duration,
    /// A connection that receives nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A download that makes no progress and has no usable peer for this long fails.
    pub stall_timeout: Duration,
    /// The largest blob the engine will download (bounds outboard memory).
    pub max_blob_len: u64,
    /// A peer that delivers nothing it was asked for during this long loses those requests
    /// to other peers, for that download.
    pub request_timeout: Duration,
}

impl EngineConfig {
    /// Defaults around a session configuration.
    pub fn new(session: SessionConfig) -> Self {
        EngineConfig {
            session,
            max_connections: 256,
            max_known_addrs: 1024,
            window: 64,
            max_queued_requests: 1024,
            write_high_water: 1 << 20,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
            max_blob_len: 64 << 30,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A summary of one connection, for display.
#[derive(Debug, Clone)]
pub struct PeerSummary {
    /// The connection.
    pub conn: ConnId,
    /// The authenticated peer, once known.
    pub node_id: Option<NodeId>,
    /// The address we dialled (outbound connections only).
    pub addr: Option<PeerAddr>,
    /// Whether we dialled it.
    pub outbound: bool,
    /// Whether the session is established.
    pub established: bool,
    /// The peer's user agent.
    pub user_agent: Option<String>,
}

enum ServeItem {
    Group(ContentRoot, u32),
    Leaves(ContentRoot, u32, u32),
}

pub(crate) struct Conn {
    session: Session,
    addr: Option<PeerAddr>,
    outbound: bool,
    transport_up: bool,
    peer: Option<PeerInfo>,
    serve: VecDeque<ServeItem>,
    unwritten: usize,
    last_rx: Instant,
    next_ping: Instant,
}

impl Conn {
    pub(crate) fn peer_id(&self) -> Option<NodeId> {
        self.peer.as_ref().map(|p| p.node_id)
    }

    pub(crate) fn can_serve(&self) -> bool {
        self.peer.as_ref().is_some_and(|p| p.features & features::SERVE_CONTENT != 0)
    }
}

/// The sans-IO core of a node (see the crate docs).
pub struct Engine<S> {
    config: EngineConfig,
    source: S,
    rng: ChaCha20Rng,
    clock_anchor: (Instant, u64),
    next_conn: u64,
    conns: BTreeMap<ConnId, Conn>,
    transfers: BTreeMap<ContentRoot, Transfer>,
    known_addrs: BTreeSet<PeerAddr>,
    self_addrs: BTreeSet<PeerAddr>,
    reputation: BTreeMap<NodeId, i64>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl<S> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("conns", &self.conns.len())
            .field("transfers", &self.transfers.len())
            .finish_non_exhaustive()
    }
}

const PENALTY_CORRUPT: i64 = 10;
/// Redial rounds (with doubling back-off from [`REDIAL_BASE`]) before a download with no usable
/// peer fails.
const MAX_REDIALS: u32 = 4;
const REDIAL_BASE: Duration = Duration::from_millis(500);
const BAN_THRESHOLD: i64 = -30;
/// Most peers whose reputation is remembered.
const MAX_REPUTATION_ENTRIES: usize = 10_000;
/// Output a peer lets pile up (by sending requests without reading the answers), in multiples
/// of the write high-water mark, before it is disconnected.
const FLOOD_FACTOR: usize = 4;

impl<S: ContentSource> Engine<S> {
    /// Creates an engine. `seed` drives all of its randomness (session keys, nonces);
    /// `now` and `wall_secs` anchor its idea of wall-clock time.
    pub fn new(
        config: EngineConfig,
        source: S,
        seed: [u8; 32],
        now: Instant,
        wall_secs: u64,
    ) -> Self {
        Engine {
            config,
            source,
            rng: ChaCha20Rng::from_seed(seed),
            clock_anchor: (now, wall_secs),
            next_conn: 0,
            conns: BTreeMap::new(),
            transfers: BTreeMap::new(),
            known_addrs: BTreeSet::new(),
            self_addrs: BTreeSet::new(),
            reputation: BTreeMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The content source (to add or remove shared blobs).
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The content source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        self.config.session.identity.node_id()
    }

    fn wall_secs(&self, now: Instant) -> u64 {
        self.clock_anchor.1 + now.saturating_duration_since(self.clock_anchor.0).as_secs()
    }

    fn new_session(&mut self, now: Instant, initiator: bool) -> Result<Session, SessionError> {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let cfg = self.config.session.clone();
        let wall = self.wall_secs(now);
        if initiator {
            Session::initiator(cfg, seed, wall, now)
        } else {
            Ok(Session::responder(cfg, seed, wall, now))
        }
    }

    fn alloc_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    fn insert_conn(
        &mut self,
        now: Instant,
        session: Session,
        addr: Option<PeerAddr>,
        outbound: bool,
    ) -> ConnId {
        let conn = self.alloc_conn();
        let c = Conn {
            session,
            addr,
            outbound,
            transport_up: !outbound,
            peer: None,
            serve: VecDeque::new(),
            unwritten: 0,
            last_rx: now,
            next_ping: now + self.config.ping_interval,
        };
        self.conns.insert(conn, c);
        conn
    }

    /// Dials `addr` (unless it is one of our own). Returns the new connection's ID.
    pub fn connect(&mut self, now: Instant, addr: PeerAddr) -> Option<ConnId> {
        if self.self_addrs.contains(&addr) || self.config.session.listen.contains(&addr) {
            return None;
        }
        if self.conns.len() >= self.config.max_connections {
            return None;
        }
        let session = self.new_session(now, true).ok()?;
        let conn = self.insert_conn(now, session, Some(addr.clone()), true);
        self.actions.push_back(Action::Connect { conn, addr });
        Some(conn)
    }

    /// Whether a connection to `addr` exists (dialled by us).
    pub fn is_connected_to(&self, addr: &PeerAddr) -> bool {
        self.conns.values().any(|c| c.addr.as_ref() == Some(addr))
    }

    /// A new inbound transport connection. Returns `None` (close it) when at capacity.
    pub fn accept(&mut self, now: Instant) -> Option<ConnId> {
        if self.conns.len() >= self.config.max_connections {
            return None;
        }
        let session = self.new_session(now, false).ok()?;
        Some(self.insert_conn(now, session, None, false))
    }

    /// An outbound connection's transport is up: the handshake starts.
    pub fn connected(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.transport_up = true;
            c.last_rx = now;
        }
        self.flush(conn);
    }

    /// An outbound dial failed.
    pub fn connect_failed(&mut self, now: Instant, conn: ConnId) {
        self.drop_conn(now, conn, false);
    }

    /// The transport connection closed.
    pub fn closed(&mut self, now: Instant, conn: ConnId) {
        self.drop_conn(now, conn, false);
    }

    /// The driver wrote `bytes` of a [`Action::Send`] to the transport.
    pub fn on_written(&mut self, conn: ConnId, bytes: usize) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.unwritten = c.unwritten.saturating_sub(bytes);
        }
        self.flush(conn);
    }

    /// Forgets a connection; with `close`, asks the driver to close the transport.
    fn drop_conn(&mut self, now: Instant, conn: ConnId, close: bool) {
        let Some(c) = self.conns.remove(&conn) else { return };
        if close {
            self.actions.push_back(Action::Close { conn });
        }
        for t in self.transfers.values_mut() {
            t.conn_lost(conn);
        }
        self.events.push_back(Event::PeerDown { conn, peer: c.peer_id() });
        self.check_sources(now);
        self.schedule(now);
    }

    /// Downloads without any usable peer redial their hints with back-off, then fail.
    fn check_sources(&mut self, now: Instant) {
        let mut failed = Vec::new();
        let mut dial = Vec::new();
        for (root, t) in self.transfers.iter_mut() {
            if t.has_source(&self.conns) {
                t.redials = 0;
                t.next_redial = None;
                continue;
            }
            match t.next_redial {
                Some(at) if now >= at => {
                    t.next_redial = None;
                    t.redials += 1;
                    dial.extend(t.hints.iter().cloned());
                }
                Some(_) => {}
                None if t.redials >= MAX_REDIALS => failed.push(*root),
                None => t.next_redial = Some(now + REDIAL_BASE * 2u32.pow(t.redials)),
            }
        }
        for addr in dial {
            if !self.is_connected_to(&addr) {
                self.connect(now, addr);
            }
        }
        for root in failed {
            self.transfers.remove(&root);
            self.events.push_back(Event::TransferFailed { root, error: TransferError::NoSources });
        }
    }

    /// Bytes arrived on a connection.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.last_rx = now;
        if let Err(err) = c.session.handle_input(now, data) {
            if matches!(err, SessionError::SelfConnection) {
                if let Some(addr) = c.addr.clone() {
                    if self.self_addrs.len() < self.config.max_known_addrs {
                        self.self_addrs.insert(addr);
                    }
                }
            }
            self.flush(conn);
            self.drop_conn(now, conn, true);
            return;
        }
        while let Some(ev) = self.conns.get_mut(&conn).and_then(|c| c.session.poll_event()) {
            let ok = match ev {
                SessionEvent::Established(info) => {
                    if !self.on_established(conn, *info) {
                        // A banned peer: refuse to work with it.
                        self.drop_conn(now, conn, true);
                        return;
                    }
                    true
                }
                SessionEvent::Message(msg) => self.on_message(now, conn, msg),
            };
            if !ok {
                self.penalize_conn(conn, Offence::ProtocolViolation, 5);
                self.flush(conn);
                self.drop_conn(now, conn, true);
                return;
            }
        }
        let flooding = self.conns.get(&conn).is_some_and(|c| {
            c.unwritten + c.session.pending_transmit() > FLOOD_FACTOR * self.config.write_high_water
        });
        if flooding {
            self.penalize_conn(conn, Offence::ProtocolViolation, 5);
            self.drop_conn(now, conn, true);
            return;
        }
        self.check_sources(now);
        self.schedule(now);
        self.flush(conn);
    }

    /// Records an established session; `false` if the peer is banned.
    fn on_established(&mut self, conn: ConnId, info: PeerInfo) -> bool {
        let peer = info.node_id;
        if self.reputation.get(&peer).is_some_and(|r| *r <= BAN_THRESHOLD) {
            return false;
        }
        let exchange = info.features & features::PEER_EXCHANGE != 0;
        for addr in info.hello.listen.iter().take(4) {
            self.learn_addr(addr.clone());
        }
        let Some(c) = self.conns.get_mut(&conn) else { return true };
        c.peer = Some(info);
        if exchange {
            let _ = c.session.send(&Message::GetAddr);
        }
        self.events.push_back(Event::PeerUp { conn, peer });
        true
    }

    fn learn_addr(&mut self, addr: PeerAddr) {
        if self.self_addrs.contains(&addr) || self.config.session.listen.contains(&addr) {
            return;
        }
        if self.known_addrs.len() < self.config.max_known_addrs {
            self.known_addrs.insert(addr);
        }
    }

    /// Handles one message; `false` means the peer broke the protocol.
    fn on_message(&mut self, now: Instant, conn: ConnId, msg: Message) -> bool {
        let max_queue = self.config.max_queued_requests;
        let Some(c) = self.conns.get_mut(&conn) else { return true };
        match msg {
            Message::Ping { nonce } => {
                let _ = c.session.send(&Message::Pong { nonce });
            }
            Message::Pong { .. } => {}
            Message::GetAddr => {
                let addrs: Vec<PeerAddr> =
                    self.known_addrs.iter().take(MAX_ADDRS).cloned().collect();
                let _ = c.session.send(&Message::Addr(addrs));
            }
            Message::Addr(addrs) => {
                for a in addrs {
                    self.learn_addr(a);
                }
            }
            Message::GetOutboard { root, first, count } => {
                if c.serve.len() >= max_queue {
                    return false;
                }
                c.serve.push_back(ServeItem::Leaves(root, first, count));
            }
            Message::GetGroups { root, first, count } => {
                if c.serve.len() + count as usize > max_queue {
                    return false;
                }
                for i in 0..count {
                    let Some(index) = first.checked_add(i) else { return false };
                    c.serve.push_back(ServeItem::Group(root, index));
                }
            }
            Message::Cancel { root } => {
                c.serve.retain(|item| match item {
                    ServeItem::Group(r, _) | ServeItem::Leaves(r, _, _) => *r != root,
                });
            }
            Message::Outboard { root, blob_len, first, leaves } => {
                let max = self.config.max_blob_len;
                if let Some(t) = self.transfers.get_mut(&root) {
                    let result = t.on_leaves(now, conn, blob_len, first, leaves, max);
                    t.request_more_leaves(&mut self.conns);
                    self.after_transfer_input(now, conn, root, result);
                }
            }
            Message::Group { root, index, data } => {
                let from = c.peer_id();
                let Some(t) = self.transfers.get_mut(&root) else { return true };
                let (Some(from), result) = (from, t.on_group(now, conn, index, data)) else {
                    return true;
                };
                let complete = t.is_complete();
                if let transfer::Input::Verified(data) = result {
                    self.events.push_back(Event::GroupVerified { root, index, data, from });
                    if complete {
                        self.finish_transfer(root);
                    }
                } else {
                    self.after_transfer_input(now, conn, root, result);
                }
            }
            Message::NotFound { root } => {
                if let Some(t) = self.transfers.get_mut(&root) {
                    t.not_found(conn);
                }
            }
            // A second Hello is rejected by the session; unknown future variants are ignored.
            _ => {}
        }
        true
    }

    fn after_transfer_input(
        &mut self,
        _now: Instant,
        conn: ConnId,
        root: ContentRoot,
        input: transfer::Input,
    ) {
        match input {
            transfer::Input::Ignored | transfer::Input::Verified(_) => {}
            transfer::Input::OutboardReady(outboard) => {
                self.events.push_back(Event::OutboardVerified { root, outboard });
                if self.transfers.get(&root).is_some_and(Transfer::is_complete) {
                    self.finish_transfer(root);
                }
            }
            transfer::Input::Corrupt(offence) => {
                self.penalize_conn(conn, offence, PENALTY_CORRUPT);
                if let Some(c) = self.conns.get_mut(&conn) {
                    let _ = c.session.send(&Message::Cancel { root });
                }
            }
        }
    }

    fn penalize_conn(&mut self, conn: ConnId, offence: Offence, points: i64) {
        let Some(peer) = self.conns.get(&conn).and_then(Conn::peer_id) else { return };
        for t in self.transfers.values_mut() {
            if offence != Offence::ProtocolViolation {
                t.ban(conn, peer);
            }
        }
        if !self.reputation.contains_key(&peer) && self.reputation.len() >= MAX_REPUTATION_ENTRIES {
            // Forget the least-penalised peer to make room (bans are kept longest).
            if let Some(mildest) =
                self.reputation.iter().max_by_key(|(_, s)| **s).map(|(id, _)| *id)
            {
                self.reputation.remove(&mildest);
            }
        }
        let score = self.reputation.entry(peer).or_insert(0);
        *score -= points;
        self.events.push_back(Event::PeerPenalized { peer, offence });
    }

    fn finish_transfer(&mut self, root: ContentRoot) {
        if self.transfers.remove(&root).is_some() {
            self.events.push_back(Event::TransferComplete { root });
        }
    }

    /// Starts (or joins) a download of `root`, dialling `peers` and any known addresses.
    /// With `resume`, groups already verified on disk are not fetched again.
    pub fn fetch(&mut self, now: Instant, root: ContentRoot, peers: Vec<PeerAddr>, resume: Resume) {
        if self.transfers.contains_key(&root) {
            return;
        }
        let mut t = Transfer::new(now, root, resume);
        t.hints = peers.clone();
        let complete = t.is_complete();
        self.transfers.insert(root, t);
        if complete {
            self.finish_transfer(root);
            return;
        }
        for addr in
            peers.into_iter().chain(self.known_addrs.iter().take(8).cloned().collect::<Vec<_>>())
        {
            if !self.is_connected_to(&addr) {
                self.connect(now, addr);
            }
        }
        self.check_sources(now);
        self.schedule(now);
    }

    /// Abandons a download (its verified groups stay wherever the driver put them).
    pub fn cancel(&mut self, root: &ContentRoot) {
        if self.transfers.remove(root).is_some() {
            for c in self.conns.values_mut() {
                let _ = c.session.send(&Message::Cancel { root: *root });
            }
        }
    }

    /// Verified bytes and total bytes of a download, once its size is known.
    pub fn progress(&self, root: &ContentRoot) -> Option<(u64, Option<u64>)> {
        self.transfers.get(root).map(Transfer::progress)
    }

    /// Assigns requests of every download to peers with free window.
    fn schedule(&mut self, now: Instant) {
        let window = self.config.window;
        let Engine { transfers, conns, .. } = self;
        for t in transfers.values_mut() {
            t.schedule(now, conns, window);
        }
        let pending: Vec<ConnId> = conns
            .iter()
            .filter(|(_, c)| c.session.pending_transmit() > 0)
            .map(|(id, _)| *id)
            .collect();
        for conn in pending {
            self.flush(conn);
        }
    }

    /// Moves session output into `Send` actions and serves queued requests while the
    /// connection has room.
    fn flush(&mut self, conn: ConnId) {
        let high_water = self.config.write_high_water;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if !c.transport_up {
            return;
        }
        while c.unwritten + c.session.pending_transmit() < high_water {
            let Some(item) = c.serve.pop_front() else { break };
            let msg = match item {
                ServeItem::Group(root, index) => match self.source.read_group(&root, index) {
                    Some(data) => Message::Group { root, index, data },
                    None => {
                        c.serve.retain(|i| !matches!(i, ServeItem::Group(r, _) if *r == root));
                        Message::NotFound { root }
                    }
                },
                ServeItem::Leaves(root, first, count) => match self.source.outboard(&root) {
                    Some(o) => {
                        let start = (first as usize).min(o.leaves.len());
                        let end = start
                            .saturating_add(count as usize)
                            .min(o.leaves.len())
                            .min(start + MAX_LEAVES_PER_MESSAGE);
                        Message::Outboard {
                            root,
                            blob_len: o.blob_len,
                            first,
                            leaves: o.leaves[start..end].to_vec(),
                        }
                    }
                    None => Message::NotFound { root },
                },
            };
            if c.session.send(&msg).is_err() {
                break;
            }
        }
        if let Some(data) = c.session.poll_transmit() {
            c.unwritten += data.len();
            self.actions.push_back(Action::Send { conn, data });
        }
    }

    /// Runs timers: handshake deadlines, keep-alives, idle connections, stalled downloads.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut dead = Vec::new();
        for (&id, c) in self.conns.iter_mut() {
            if c.session.handle_timeout(now).is_err()
                || now.saturating_duration_since(c.last_rx) >= self.config.idle_timeout
            {
                dead.push(id);
            } else if c.session.is_established() && now >= c.next_ping {
                c.next_ping = now + self.config.ping_interval;
                let nonce = self.rng.next_u64();
                let _ = c.session.send(&Message::Ping { nonce });
            }
        }
        for id in dead {
            self.drop_conn(now, id, true);
        }
        let stall = self.config.stall_timeout;
        let mut failed = Vec::new();
        for (root, t) in self.transfers.iter_mut() {
            t.expire(now, self.config.request_timeout);
            if t.stalled(now, stall) {
                failed.push(*root);
            }
        }
        for root in failed {
            self.transfers.remove(&root);
            self.events.push_back(Event::TransferFailed { root, error: TransferError::NoSources });
        }
        self.check_sources(now);
        self.schedule(now);
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.flush(id);
        }
    }

    /// When [`Engine::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.values().flat_map(|c| {
            let hs = c.session.poll_timeout();
            let idle = Some(c.last_rx + self.config.idle_timeout);
            let ping = c.session.is_established().then_some(c.next_ping);
            [hs, idle, ping]
        });
        let (stall, request) = (self.config.stall_timeout, self.config.request_timeout);
        let transfers = self.transfers.values().map(|t| t.deadline(stall, request));
        conns.chain(transfers).flatten().min()
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Current connections.
    pub fn peers(&self) -> Vec<PeerSummary> {
        self.conns
            .iter()
            .map(|(&conn, c)| PeerSummary {
                conn,
                node_id: c.peer_id(),
                addr: c.addr.clone(),
                outbound: c.outbound,
                established: c.session.is_established(),
                user_agent: c.peer.as_ref().map(|p| p.hello.user_agent.clone()),
            })
            .collect()
    }

    /// Peer addresses learned from peers (bounded).
    pub fn known_addrs(&self) -> impl Iterator<Item = &PeerAddr> {
        self.known_addrs.iter()
    }

    /// A peer's reputation score (0 is neutral; negative after offences).
    pub fn reputation(&self, peer: &NodeId) -> i64 {
        self.reputation.get(peer).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
