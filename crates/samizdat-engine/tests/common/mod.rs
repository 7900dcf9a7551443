//! Runs [`Engine`]s as hosts of the deterministic simulator (`samizdat-sim`).
//!
//! [`EngineHost`] adapts the engine's sans-IO API to [`samizdat_sim::Host`]:
//!
//! * a node's address is `sim/<node index>`; the engine's [`EConnId`]s are the simulator's
//!   connection ids one-to-one (the engine allocates them; a refused inbound connection gets
//!   an id from a separate range and is closed at once);
//! * a `Send` is reported to the engine as written as soon as the simulator takes it (the
//!   simulator buffers without bound; the requester's window bounds the data in flight);
//! * events are collected: verified groups land on the node's "disk" (one map of groups per
//!   root), from which a test reassembles the file or builds a [`Resume`], as the real node
//!   does from its files.
//!
//! Everything an engine draws at random (identity, session keys, nonces) comes from
//! [`Sim::node_seed`], so a whole run replays exactly from the simulation seed.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use samizdat_content::Locator;
use samizdat_content::{ContentKey, ContentRoot, Manifest, Outboard, encode, group_range};
use samizdat_engine::{
    Action as EAction, ConnId as EConnId, ContentSource, Engine, EngineConfig, Event, FetchSpec,
    MemorySource, Offence, Resume, SourceId, SourceSpec,
};
use samizdat_identity::{Identity, NodeId as PeerId};
use samizdat_session::SessionConfig;
use samizdat_sim::{Action as SAction, ConnId as SConnId, Host, NodeId, Sim};
use samizdat_wire::PeerAddr;

/// The wall clock every engine believes in at start-up (its clock then follows virtual time).
pub const WALL_SECS: u64 = 1_800_000_000;
/// Ids for inbound connections the engine refused; far above anything the engine allocates.
const REFUSED_BASE: u64 = 1 << 62;
/// Encrypted-frame overhead per message: 2-byte length + tag, then the payload's tag.
pub const FRAME_OVERHEAD: u64 = 18 + 16;
/// `Message::Group` header: tag, root, index, data length.
pub const GROUP_HEADER: u64 = 1 + 4 + 4 + 4;
/// `Message::Outboard` header: tag, root, blob length, first leaf, leaf count.
pub const OUTBOARD_HEADER: u64 = 1 + 4 + 8 + 4 + 2;
/// An engine that asks to be woken at the same instant this often in a row is spinning.
const SPIN_LIMIT: u32 = 1000;

/// What every engine serves from.
pub type Source = Box<dyn ContentSource>;

/// The simulator address of `node`.
pub fn addr(node: NodeId) -> PeerAddr {
    PeerAddr::new(&format!("sim/{node}")).unwrap()
}

fn node_of(addr: &PeerAddr) -> Option<NodeId> {
    if addr.transport() != "sim" {
        return None;
    }
    addr.address().parse().ok()
}

/// One group that passed verification at a node.
#[derive(Debug, Clone, Copy)]
pub struct Verified {
    /// The download.
    pub root: ContentRoot,
    /// Group index.
    pub index: u32,
    /// Its length.
    pub len: usize,
    /// The source that served it.
    pub from: SourceId,
    /// When it arrived.
    pub at: Instant,
}

/// An [`Engine`] driven by the simulator, plus everything it reported.
pub struct EngineHost {
    /// The simulator node this host runs at.
    pub node: NodeId,
    /// The engine.
    pub engine: Engine<Source>,
    refused: VecDeque<SConnId>,
    next_refused: u64,
    /// Verified groups per download: the node's "disk".
    pub disk: BTreeMap<ContentRoot, BTreeMap<u32, Vec<u8>>>,
    /// Verified outboards per download.
    pub outboards: BTreeMap<ContentRoot, Outboard>,
    /// Every verified group, in order.
    pub verified: Vec<Verified>,
    /// Group indices verified although already on disk (must stay empty).
    pub reverified: Vec<(ContentRoot, u32)>,
    /// Sessions established (`PeerUp`), with the connection and peer.
    pub up: Vec<(EConnId, PeerId)>,
    /// `PeerDown` events, with when they happened.
    pub down: Vec<(EConnId, Option<PeerId>, Instant)>,
    /// `PeerPenalized` events.
    pub penalized: Vec<(SourceId, Offence)>,
    /// Completed downloads.
    pub complete: BTreeSet<ContentRoot>,
    /// Failed downloads.
    pub failed: Vec<ContentRoot>,
    /// Bytes the transport delivered to this node, per connection and in total.
    pub rx: BTreeMap<EConnId, u64>,
    /// Sum of [`EngineHost::rx`].
    pub rx_total: u64,
    last_wake: Option<(Instant, u32)>,
    born: Instant,
    /// Never report sends as written: the engine's serving stalls at its high-water mark
    /// while its session keeps answering pings (a peer that stops serving but stays alive).
    pub withhold_writes: bool,
}

impl EngineHost {
    /// An engine for simulator node `node` whose randomness comes from `node_seed`.
    pub fn new(
        node: NodeId,
        node_seed: u64,
        source: Source,
        now: Instant,
        tweak: impl FnOnce(&mut EngineConfig),
    ) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(node_seed);
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let identity = Identity::from_secret_bytes(&secret).unwrap();
        let mut session = SessionConfig::new(identity);
        session.listen = vec![addr(node)];
        let mut config = EngineConfig::new(session);
        tweak(&mut config);
        EngineHost {
            node,
            engine: Engine::new(config, source, seed, now, WALL_SECS),
            refused: VecDeque::new(),
            next_refused: REFUSED_BASE,
            disk: BTreeMap::new(),
            outboards: BTreeMap::new(),
            verified: Vec::new(),
            reverified: Vec::new(),
            up: Vec::new(),
            down: Vec::new(),
            penalized: Vec::new(),
            complete: BTreeSet::new(),
            failed: Vec::new(),
            rx: BTreeMap::new(),
            rx_total: 0,
            last_wake: None,
            born: now,
            withhold_writes: false,
        }
    }

    /// The node's identity.
    pub fn id(&self) -> PeerId {
        self.engine.node_id()
    }

    /// Groups of `root` on disk.
    pub fn have(&self, root: &ContentRoot) -> usize {
        self.disk.get(root).map_or(0, BTreeMap::len)
    }

    /// The resume state of `root` from disk, as a restarted node would build it.
    pub fn resume(&self, root: &ContentRoot) -> Resume {
        let Some(outboard) = self.outboards.get(root) else { return Resume::default() };
        let disk = self.disk.get(root);
        let have = (0..outboard.groups()).map(|i| disk.is_some_and(|d| d.contains_key(&i)));
        Resume { outboard: Some(outboard.clone()), have: have.collect() }
    }

    /// The downloaded blob, if every group is on disk.
    pub fn file(&self, root: &ContentRoot) -> Option<Vec<u8>> {
        let outboard = self.outboards.get(root)?;
        let disk = self.disk.get(root)?;
        let mut out = Vec::with_capacity(usize::try_from(outboard.blob_len).ok()?);
        for i in 0..outboard.groups() {
            out.extend_from_slice(disk.get(&i)?);
        }
        Some(out)
    }

    /// How many verified groups of `root` each peer served.
    pub fn served_by(&self, root: &ContentRoot) -> BTreeMap<SourceId, usize> {
        let mut by = BTreeMap::new();
        for v in self.verified.iter().filter(|v| v.root == *root) {
            *by.entry(v.from).or_insert(0) += 1;
        }
        by
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(ev) = self.engine.poll_event() {
            match ev {
                Event::PeerUp { conn, peer } => self.up.push((conn, peer)),
                Event::PeerDown { conn, peer } => self.down.push((conn, peer, now)),
                Event::PeerPenalized { source, offence } => self.penalized.push((source, offence)),
                Event::OutboardVerified { root, outboard } => {
                    self.outboards.insert(root, outboard);
                }
                Event::GroupVerified { root, index, data, from } => {
                    let len = data.len();
                    if self.disk.entry(root).or_default().insert(index, data).is_some() {
                        self.reverified.push((root, index));
                    }
                    self.verified.push(Verified { root, index, len, from, at: now });
                    self.engine.stored(now, &root, 1);
                }
                Event::TransferComplete { root } => {
                    self.complete.insert(root);
                }
                Event::TransferFailed { root, .. } => self.failed.push(root),
                _ => {}
            }
        }
    }
}

impl Host for EngineHost {
    fn accept(&mut self, now: Instant, peer: NodeId) -> SConnId {
        // Every simulated node has an address in a /24 of its own: 10.hi.lo.1.
        let ip = std::net::Ipv4Addr::from(0x0a00_0001 | ((peer as u32 & 0xffff) << 8));
        let conn = match self.engine.accept(now, Some(ip.into())) {
            Some(conn) => SConnId(conn.0),
            None => {
                self.next_refused += 1;
                let conn = SConnId(self.next_refused);
                self.refused.push_back(conn);
                conn
            }
        };
        self.drain_events(now);
        conn
    }

    fn connected(&mut self, now: Instant, conn: SConnId) {
        self.engine.connected(now, EConnId(conn.0));
        self.drain_events(now);
    }

    fn connect_failed(&mut self, now: Instant, conn: SConnId) {
        self.engine.connect_failed(
            now,
            EConnId(conn.0),
            samizdat_engine::health::LinkFailure::Refused,
        );
        self.drain_events(now);
    }

    fn receive(&mut self, now: Instant, conn: SConnId, data: &[u8]) {
        *self.rx.entry(EConnId(conn.0)).or_insert(0) += data.len() as u64;
        self.rx_total += data.len() as u64;
        self.engine.handle_input(now, EConnId(conn.0), data);
        self.drain_events(now);
    }

    fn closed(&mut self, now: Instant, conn: SConnId) {
        self.engine.closed(now, EConnId(conn.0));
        self.drain_events(now);
    }

    fn timeout(&mut self, now: Instant) {
        // The simulator only calls this when `poll_timeout() <= now`; an engine that keeps
        // asking for the same instant would freeze virtual time, so fail loudly instead.
        let spins = match self.last_wake {
            Some((at, n)) if at == now => n + 1,
            _ => 0,
        };
        assert!(
            spins < SPIN_LIMIT,
            "node {}: engine keeps asking to be woken at the same instant, {:?} after start \
             (poll_timeout() <= now after handle_timeout(now)); last verified group {:?} after start",
            self.node,
            now - self.born,
            self.verified.last().map(|v| v.at - self.born),
        );
        self.last_wake = Some((now, spins));
        self.engine.handle_timeout(now);
        self.drain_events(now);
    }

    fn poll_action(&mut self, now: Instant) -> Option<SAction> {
        if let Some(conn) = self.refused.pop_front() {
            return Some(SAction::Close { conn });
        }
        loop {
            let action = self.engine.poll_action();
            self.drain_events(now);
            return match action? {
                EAction::Connect { conn, addr } => match node_of(&addr) {
                    Some(peer) => Some(SAction::Connect { conn: SConnId(conn.0), peer }),
                    None => {
                        self.engine.connect_failed(
                            now,
                            conn,
                            samizdat_engine::health::LinkFailure::Refused,
                        );
                        continue;
                    }
                },
                EAction::Send { conn, data } => {
                    // The simulator takes everything at once; the engine may serve more.
                    if !self.withhold_writes {
                        self.engine.on_written(conn, data.len());
                    }
                    Some(SAction::Send { conn: SConnId(conn.0), data })
                }
                EAction::Close { conn } => Some(SAction::Close { conn: SConnId(conn.0) }),
                EAction::ReadGroup { read, root, index } => {
                    // Reads complete at once: the simulated disk is memory.
                    let data = self.engine.source().read_group(&root, index);
                    self.engine.read_done(read, data);
                    continue;
                }
                _ => continue,
            };
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }
}

/// A source spec for simulator node `node`, pinned to its identity (as a link's hint is).
pub fn pinned(sim: &Sim<EngineHost>, node: NodeId) -> SourceSpec {
    SourceSpec::Direct { node: Some(sim.host(node).unwrap().id()), addr: addr(node) }
}

/// The reputation key of simulator node `node` when it serves directly.
pub fn source_id(sim: &Sim<EngineHost>, node: NodeId) -> SourceId {
    SourceId::Node(sim.host(node).unwrap().id())
}

/// Adds an engine node serving `source`; `tweak` adjusts its configuration.
pub fn spawn_with(
    sim: &mut Sim<EngineHost>,
    source: Source,
    tweak: impl FnOnce(&mut EngineConfig),
) -> NodeId {
    let node = sim.node_count();
    let host = EngineHost::new(node, sim.node_seed(node), source, sim.now(), tweak);
    sim.add_node(host)
}

/// Adds an engine node with the default configuration.
pub fn spawn(sim: &mut Sim<EngineHost>, source: Source) -> NodeId {
    spawn_with(sim, source, |_| {})
}

/// A test blob: `size` bytes of file content, encoded (encrypted) under a key from `seed`.
pub struct Blob {
    /// Content root.
    pub root: ContentRoot,
    /// What peers ask for.
    pub locator: Locator,
    /// Verification data.
    pub outboard: Outboard,
    /// The encrypted blob (what peers store and serve).
    pub bytes: Vec<u8>,
}

impl Blob {
    /// Encodes `size` pseudo-random bytes.
    pub fn new(size: usize, seed: u64) -> Blob {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut file = vec![0u8; size];
        // Content encryption makes the blob random anyway; a cheap fill will do.
        let mut x = rng.next_u64() | 1;
        for chunk in file.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let manifest = Manifest { name: "blob".into(), size: size as u64, mime: String::new() };
        let mut bytes = Vec::with_capacity(size + samizdat_content::HEADER_LEN);
        let enc = encode(&ContentKey::from_bytes(key), &manifest, &file[..], &mut bytes).unwrap();
        let locator = ContentKey::from_bytes(key).locator(&enc.root);
        Blob { root: enc.root, locator, outboard: enc.outboard, bytes }
    }

    /// What a link to this blob pins.
    pub fn spec(&self) -> FetchSpec {
        FetchSpec { root: self.root, locator: self.locator, blob_len: self.bytes.len() as u64 }
    }

    /// A [`MemorySource`] serving this blob.
    pub fn source(&self) -> MemorySource {
        let mut s = MemorySource::new();
        s.insert(self.locator, self.root, self.outboard.clone(), self.bytes.clone());
        s
    }

    /// Number of groups.
    pub fn groups(&self) -> u32 {
        self.outboard.groups()
    }

    /// Length of group `index`.
    pub fn group_len(&self, index: u32) -> u64 {
        let r = group_range(self.outboard.blob_len, index);
        r.end - r.start
    }
}

/// A source that serves every `every`-th group (from group `offset`) with one byte flipped.
pub struct Corrupting {
    /// The honest data.
    pub inner: MemorySource,
    /// Corrupt groups where `index % every == offset`.
    pub every: u32,
    /// See `every`.
    pub offset: u32,
}

impl ContentSource for Corrupting {
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, std::sync::Arc<Outboard>)> {
        self.inner.lookup(locator)
    }

    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        let mut g = self.inner.read_group(root, index)?;
        if index % self.every == self.offset {
            let mid = g.len() / 2;
            g[mid] ^= 0x01;
        }
        Some(g)
    }
}
