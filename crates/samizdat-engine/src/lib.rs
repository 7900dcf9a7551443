//! Sans-IO node engine: links, stream routing, peer exchange, content serving and verified,
//! multi-source, resumable downloads.
//!
//! The engine owns every [`Session`] of a node (the *links*) and decides what to send. It
//! contains no networking code, does no disk I/O and does not read the clock: the driver (the
//! tokio runtime in `samizdat-node`, or the simulator in `samizdat-sim`) feeds it transport
//! events with `now` ([`Engine::accept`], [`Engine::connected`], [`Engine::handle_input`],
//! [`Engine::closed`], [`Engine::handle_timeout`]) and carries out its [`Action`]s (dial, send
//! bytes, close, read a chunk group — reported back with [`Engine::read_done`]).
//!
//! Protocols run over **streams**, not connections: a [`StreamId`] is either a link's own
//! direct stream or a stream relayed through another node. The transfer state machine
//! ([`transfer`]) is fed `(stream, message)` and emits `(stream, message)`; it never sees a
//! session. Requests carry request ids and answers name only the request, and content is asked
//! for by a [`Locator`] that only holders of the link can compute.
//!
//! **Ask only who must know.** A download asks only its sources: the peers its link pins (by
//! identity: a dialled session that authenticates as anyone else is closed and reported as
//! [`Event::IdentityMismatch`]) and any the caller names. Cancels go only to the streams that
//! were asked, by request id.
//!
//! Where a downloaded chunk is verified: [`transfer`], via
//! [`samizdat_content::Outboard::verify_group`], before it is ever handed out.
//!
//! Every table a peer can grow is bounded: inbound and outbound connections separately, inbound
//! connections per address group (with eviction of idle or unauthenticated ones when full),
//! known addresses ([`addrbook`]), queued requests per link, reads in flight per link,
//! relayed streams per link, unwritten bytes per link (serving pauses until the driver reports
//! them written with [`Engine::on_written`]) and the reputation table.
#![forbid(unsafe_code)]

pub mod addrbook;
mod dht;
pub mod health;
pub mod pex;
pub mod rendezvous;
mod source;
pub mod transfer;

pub use source::{ContentSource, MemorySource};
pub use transfer::{FetchSpec, Resume, TransferError};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use samizdat_content::{ContentRoot, Locator, Outboard};
use samizdat_identity::NodeId;
use samizdat_session::{PeerInfo, Session, SessionConfig, SessionError, SessionEvent};
use samizdat_wire::{
    MAX_LEAVES_PER_MESSAGE, MAX_RELAY_STREAMS, Message, PeerAddr, PeersMsg, RelayMsg, RequestId,
    TransferMsg, features,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};
use transfer::{Output, Transfer};

/// Identifies one transport connection (a link) of this engine. Allocated by the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// A stream: what a protocol state machine talks over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamId {
    /// The link's own stream (a direct session with the peer).
    Direct(ConnId),
    /// Stream number `n` relayed over link `conn` (through the node at the other end of
    /// `conn`, or, at the far end, arriving from it).
    Relayed(ConnId, u32),
}

impl StreamId {
    /// The link that carries this stream.
    pub fn conn(&self) -> ConnId {
        match self {
            StreamId::Direct(c) | StreamId::Relayed(c, _) => *c,
        }
    }
}

/// Who is at the far end of a source stream, as far as this node can tell: what reputation is
/// kept for. A relayed source is its own entry (relay and target together), so a corrupt
/// relayed stream blames neither the relay nor the target alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceId {
    /// A peer on a direct, authenticated session.
    Node(NodeId),
    /// A peer reached through a relay.
    Relayed {
        /// The relay (authenticated).
        relay: NodeId,
        /// The peer the relay was asked to reach.
        target: NodeId,
    },
}

/// Where a download may fetch from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// Dial `addr`; with `node`, the session must authenticate as that identity (a link's
    /// pinned hint). Without it (an address the user typed), any identity is accepted.
    Direct {
        /// The identity the peer must prove.
        node: Option<NodeId>,
        /// Where to dial.
        addr: PeerAddr,
    },
    /// Reach `target` through the relay `relay` at `relay_addr` (the relay must authenticate
    /// as `relay`, and must allow relaying).
    Relayed {
        /// The relay's identity.
        relay: NodeId,
        /// Where to dial the relay.
        relay_addr: PeerAddr,
        /// The peer to reach through it.
        target: NodeId,
    },
}

impl SourceSpec {
    fn dial(&self) -> (Option<NodeId>, &PeerAddr) {
        match self {
            SourceSpec::Direct { node, addr } => (*node, addr),
            SourceSpec::Relayed { relay, relay_addr, .. } => (Some(*relay), relay_addr),
        }
    }
}

/// Identifies a read the engine asked the driver for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadId(pub u64);

/// Something the driver must do on the engine's behalf.
#[derive(Debug)]
#[non_exhaustive]
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
    /// Read chunk group `index` of the served blob `root` (with [`ContentSource::read_group`]
    /// or the driver's own store, off the engine's thread if it likes) and report the bytes
    /// with [`Engine::read_done`].
    ReadGroup {
        /// Names the read in [`Engine::read_done`].
        read: ReadId,
        /// The blob.
        root: ContentRoot,
        /// The group.
        index: u32,
    },
}

/// Why the engine dropped a peer or distrusts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Offence {
    /// It served a chunk group that failed verification.
    CorruptGroup,
    /// It served leaf hashes that do not hash to the content root, or a wrong length.
    CorruptOutboard,
    /// It broke the protocol (malformed or unexpected messages, too many requests).
    ProtocolViolation,
    /// It passed on a peer record whose signature does not verify (forged or altered).
    BadPeerRecord,
    /// An address it passed on was answered by another identity than the record's.
    WrongPeer,
}

impl Offence {
    /// Whether the offence is about content it served (and so bars it from downloads).
    fn is_about_content(self) -> bool {
        matches!(self, Offence::CorruptGroup | Offence::CorruptOutboard)
    }
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
    /// A provider lookup for a download finished (see [`Engine::find_providers`]):
    /// `providers` new sources were added to it.
    ProvidersFound {
        /// The download.
        root: ContentRoot,
        /// New sources found.
        providers: usize,
    },
    /// A dialled peer authenticated as someone other than the identity it was dialled for;
    /// the connection was closed and the peer is not used.
    IdentityMismatch {
        /// The connection (already closed).
        conn: ConnId,
        /// The identity the link pinned.
        expected: NodeId,
        /// The identity the peer proved.
        got: NodeId,
    },
    /// A source misbehaved and was penalised.
    PeerPenalized {
        /// The offender.
        source: SourceId,
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
    /// A chunk group of a download arrived and passed verification. The owner must report
    /// it with [`Engine::stored`] once it has stored it: a download stops requesting after
    /// [`EngineConfig::store_window`] unreported groups.
    GroupVerified {
        /// The download.
        root: ContentRoot,
        /// Group index.
        index: u32,
        /// The verified (still encrypted) bytes.
        data: Vec<u8>,
        /// Which source served it.
        from: SourceId,
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
    /// Most inbound connections; when full, an idle or unauthenticated one is evicted for a
    /// newcomer, or the newcomer is refused.
    pub max_inbound: usize,
    /// Most inbound connections from one address group (IPv4 /24, IPv6 /48).
    pub max_inbound_per_group: usize,
    /// Most outbound connections (our own dials never compete with inbound ones).
    pub max_outbound: usize,
    /// Settings of the address book.
    pub addrbook: addrbook::AddrBookConfig,
    /// Chunk groups requested from one stream at a time, per download.
    pub window: u32,
    /// Verified groups of one download that the owner may hold unstored: once this many are
    /// handed out by [`Event::GroupVerified`] and not yet reported by [`Engine::stored`]
    /// (together with the groups in flight), no more are requested. A slow disk then slows
    /// the download instead of filling memory.
    pub store_window: u32,
    /// Most queued requests a link may have with us before it is cut off.
    pub max_queued_requests: usize,
    /// Most chunk-group reads in flight for one link.
    pub max_reads_per_conn: usize,
    /// Unwritten bytes per connection above which serving pauses.
    pub write_high_water: usize,
    /// Interval between keep-alive pings on an idle connection.
    pub ping_interval: Duration,
    /// A connection that receives nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A link that receives nothing for this long while it owes a download data is taken
    /// for blocked: it is closed, its address marked, and the peer dialled another way.
    pub silence_timeout: Duration,
    /// Rotate transports: each new link to a peer goes through the address used longest ago
    /// instead of the one that last worked (see [`health::HealthTable::rotated`]).
    pub rotate_transports: bool,
    /// A download that makes no progress and has no usable peer for this long fails.
    pub stall_timeout: Duration,
    /// The largest blob the engine will download (bounds outboard memory).
    pub max_blob_len: u64,
    /// A stream that delivers nothing it was asked for during this long loses those requests
    /// to other streams, for that download.
    pub request_timeout: Duration,
    /// Whether this node relays streams between its peers.
    pub relay: bool,
    /// Fetch over anonymous links: each download dials its sources under a throwaway
    /// identity ([`Session::anonymous_initiator`]) and uses no other link to them, so a source
    /// learns what is fetched but not which node fetches it, and two sources cannot match
    /// their records of a fetcher by identity. (Without onion circuits they still see its IP
    /// address.) Off: downloads use any link to a source, identified or not.
    pub anonymous_downloads: bool,
    /// Longest back-off between redials of a persistent peer.
    pub max_redial_backoff: Duration,
    /// Outbound connections the node keeps up by dialling addresses picked at random from its
    /// address book (learned by peer exchange), besides its persistent peers: how a node that
    /// got in through one peer finds the rest of the network. 0 turns it off.
    pub target_outbound: usize,
    /// The DHT's settings (`None`: no DHT; provider lookups and records are then unavailable).
    /// Every node of one network must use the same proof-of-work difficulty.
    pub dht: Option<samizdat_dht::DhtConfig>,
    /// Slots per period of the overlay's rendezvous points (see [`rendezvous`]); 0 turns
    /// them off. Every node of one network must use the same number.
    pub rendezvous_slots: u16,
}

/// The proof-of-work difficulty of DHT node ids (leading zero bits; each identity solves it
/// once, about `2^DHT_POW_DIFFICULTY` BLAKE3 hashes, a few milliseconds).
pub const DHT_POW_DIFFICULTY: u8 = 12;

impl EngineConfig {
    /// Defaults around a session configuration. Unauthenticated connections are given 8 s to
    /// finish their handshake.
    pub fn new(mut session: SessionConfig) -> Self {
        session.handshake_timeout = session.handshake_timeout.min(Duration::from_secs(8));
        EngineConfig {
            session,
            max_inbound: 192,
            max_inbound_per_group: 32,
            max_outbound: 64,
            addrbook: addrbook::AddrBookConfig::default(),
            window: 64,
            store_window: 512,
            max_queued_requests: 1024,
            max_reads_per_conn: 16,
            write_high_water: 1 << 20,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            silence_timeout: Duration::from_secs(7),
            rotate_transports: false,
            stall_timeout: Duration::from_secs(60),
            max_blob_len: 64 << 30,
            request_timeout: Duration::from_secs(30),
            relay: false,
            anonymous_downloads: true,
            max_redial_backoff: Duration::from_secs(15),
            target_outbound: 8,
            dht: Some(samizdat_dht::DhtConfig {
                pow_difficulty: DHT_POW_DIFFICULTY,
                ..samizdat_dht::DhtConfig::default()
            }),
            rendezvous_slots: 64,
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
    /// Whether we opened it under a throwaway identity (a download's link).
    pub anonymous: bool,
}

/// One queued request of a peer.
enum ServeItem {
    Group { stream: StreamId, req: RequestId, root: ContentRoot, index: u32 },
    Leaves { stream: StreamId, req: RequestId, locator: Locator, first: u32, count: u32 },
}

impl ServeItem {
    fn is(&self, s: StreamId, r: RequestId) -> bool {
        match self {
            ServeItem::Group { stream, req, .. } | ServeItem::Leaves { stream, req, .. } => {
                *stream == s && *req == r
            }
        }
    }

    fn on_stream(&self, s: StreamId) -> bool {
        match self {
            ServeItem::Group { stream, .. } | ServeItem::Leaves { stream, .. } => *stream == s,
        }
    }
}

/// The far side of a relayed stream this node joins.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RelayEnd {
    /// We forward it to this stream number on that link.
    Forward(ConnId, u32),
    /// It ends here: we serve or fetch on it.
    Local,
}

pub(crate) struct Conn {
    session: Session,
    addr: Option<PeerAddr>,
    /// With a pinned dial: the identity the peer must prove.
    expect: Option<NodeId>,
    /// For inbound connections: the remote address group (for per-group caps).
    group: Option<u64>,
    /// For inbound connections: the remote IP, when the transport knows it.
    remote: Option<IpAddr>,
    outbound: bool,
    transport_up: bool,
    peer: Option<PeerInfo>,
    serve: VecDeque<ServeItem>,
    reads_in_flight: usize,
    unwritten: usize,
    created: Instant,
    last_rx: Instant,
    /// Last time the peer asked us for something (or we for it): idle links are evicted first.
    last_used: Instant,
    next_ping: Instant,
    /// For a pinned dial not up yet: when the peer's next address is raced beside it.
    race_at: Option<Instant>,
    /// Relayed streams on this link and where they go.
    relayed: BTreeMap<u32, RelayEnd>,
    next_stream: u32,
    /// Whether the peer already had its one `Records` answer on this link.
    answered_getaddr: bool,
    /// Whether we asked the peer for records and it has not answered yet.
    asked_getaddr: bool,
    /// For a dial to an address from a signed record another peer passed on and vouched
    /// for: that peer, who answers for what the dial finds.
    teller: Option<NodeId>,
    /// The peer's DHT contact, once it offered one with a valid proof of work.
    dht_contact: Option<samizdat_dht::contact::Contact>,
    /// For a connection dialled to carry one DHT request as a one-round-trip exchange (not a
    /// session; it has a budget of its own): that request.
    exchange: Option<(samizdat_dht::codec::RequestId, NodeId)>,
    /// For a link opened anonymously for a download: that download's root (it carries that
    /// download alone, and is closed when it ends).
    for_download: Option<ContentRoot>,
}

impl Conn {
    /// A relayed-stream number for a stream we open on this link. The side that dialled uses
    /// odd numbers and the other side even ones, so the two ends never pick the same number.
    fn alloc_stream(&mut self) -> u32 {
        loop {
            self.next_stream = self.next_stream.wrapping_add(2);
            let n = self.next_stream;
            // Bounded: at most MAX_RELAY_STREAMS numbers are in use.
            if !self.relayed.contains_key(&n) {
                return n;
            }
        }
    }

    /// Whether `n` is a number the peer may choose (the other parity from ours).
    fn peer_may_number(&self, n: u32) -> bool {
        (n % 2 == 1) != self.outbound
    }
}

impl Conn {
    pub(crate) fn peer_id(&self) -> Option<NodeId> {
        self.peer.as_ref().map(|p| p.node_id)
    }

    pub(crate) fn can_serve(&self) -> bool {
        self.peer.as_ref().is_some_and(|p| p.features & features::SERVE_CONTENT != 0)
    }

    /// Whether this link may carry more than a download: ours or the peer's identified link
    /// (not one we opened anonymously).
    pub(crate) fn is_overlay(&self) -> bool {
        !self.session.is_anonymous()
    }
}

/// Which side of a new session we take.
#[derive(Clone, Copy)]
enum Side {
    Initiator,
    /// An initiator under a throwaway identity ([`Session::anonymous_initiator`]).
    Anonymous,
    Responder,
}

struct Download {
    transfer: Transfer,
    sources: Vec<SourceSpec>,
    /// Redial rounds used since the last verified progress.
    redials: u32,
    /// Verified bytes when `redials` was last reset: only verified data resets it, so a
    /// source that connects and never delivers cannot keep a download redialling for ever.
    verified_mark: u64,
    /// When the next redial round is due, if one is scheduled.
    next_redial: Option<Instant>,
    /// Pinned peers that turned out to be someone else.
    mismatches: u32,
    /// Relay links a relayed stream was opened on in this round (not reopened until the next
    /// redial round, so a relay that refuses is not asked in a loop).
    relay_tried: BTreeSet<ConnId>,
    /// Which download of its root this is (see `Engine::next_download`).
    generation: u64,
    /// Provider lookups running for this download (it is not given up while any runs).
    finding: u32,
    /// Whether its sources were looked up in the DHT.
    looked_up: bool,
    /// Until when a running provider lookup keeps it from stalling.
    finding_until: Option<Instant>,
    /// The last request id this download used: its own sequence from a random start, so the
    /// ids a source sees say nothing of the node's other downloads.
    next_req: RequestId,
}

/// A peer the node keeps connected to (bootstrap peers, `--peer` addresses).
struct Persistent {
    backoff: Duration,
    next_try: Option<Instant>,
    /// The identity the peer must prove (from an invite line), if it is pinned.
    expect: Option<NodeId>,
}

struct PendingRead {
    conn: ConnId,
    stream: StreamId,
    req: RequestId,
    index: u32,
}

/// The sans-IO core of a node (see the crate docs).
pub struct Engine<S> {
    config: EngineConfig,
    source: S,
    rng: ChaCha20Rng,
    clock_anchor: (Instant, u64),
    next_conn: u64,
    next_read: u64,
    /// Numbers each download started, so a lookup begun for a cancelled download of the same
    /// root is not counted for the next one.
    next_download: u64,
    conns: BTreeMap<ConnId, Conn>,
    downloads: BTreeMap<ContentRoot, Download>,
    addrs: addrbook::AddrBook,
    self_addrs: BTreeSet<PeerAddr>,
    persistent: BTreeMap<PeerAddr, Persistent>,
    /// What each dialled address did (which transports of a peer work).
    health: health::HealthTable,
    reputation: BTreeMap<SourceId, i64>,
    reads: BTreeMap<ReadId, PendingRead>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    dht: Option<dht::DhtGlue>,
    pex: pex::PeerExchange,
}

impl<S> std::fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("conns", &self.conns.len())
            .field("downloads", &self.downloads.len())
            .finish_non_exhaustive()
    }
}

const PENALTY_CORRUPT: i64 = 10;
/// Redial rounds (with doubling back-off from [`REDIAL_BASE`]) before a download with no usable
/// peer fails.
const MAX_REDIALS: u32 = 4;
const REDIAL_BASE: Duration = Duration::from_millis(500);
const BAN_THRESHOLD: i64 = -30;

/// Whether `source`'s score in `reputation` is at the ban threshold or below (a free function
/// for callers that hold another borrow of the engine).
fn is_banned(reputation: &BTreeMap<SourceId, i64>, source: &SourceId) -> bool {
    reputation.get(source).is_some_and(|r| *r <= BAN_THRESHOLD)
}
/// Most sources whose reputation is remembered.
const MAX_REPUTATION_ENTRIES: usize = 10_000;
/// Most persistent peers.
const MAX_PERSISTENT: usize = 64;
/// Output a peer lets pile up (by sending requests without reading the answers), in multiples
/// of the write high-water mark, before it is disconnected.
const FLOOD_FACTOR: usize = 4;

/// The address group of inbound connections whose transport gives no address.
const NO_ADDRESS_GROUP: u64 = 1 << 62;

/// The address group an inbound connection counts against: IPv4 /24, IPv6 /48.
pub fn inbound_group(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u64::from(u32::from(v4) >> 8),
            None => (1 << 63) | (u128::from(v6) >> 80) as u64,
        },
    }
}

impl<S: ContentSource> Engine<S> {
    /// Creates an engine. `seed` drives all of its randomness (session keys, nonces, address
    /// selection); `now` and `wall_secs` anchor its idea of wall-clock time.
    pub fn new(
        config: EngineConfig,
        source: S,
        seed: [u8; 32],
        now: Instant,
        wall_secs: u64,
    ) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut book_key = [0u8; 32];
        rng.fill_bytes(&mut book_key);
        let addrs = addrbook::AddrBook::new(config.addrbook.clone(), book_key);
        let mut dht_seed = [0u8; 32];
        rng.fill_bytes(&mut dht_seed);
        let dht = config.dht.clone().and_then(|mut c| {
            // On a local network every node shares a few address groups: the per-group limit
            // on a key's providers would keep all but two of them out.
            if config.addrbook.allow_local {
                c.store.max_providers_per_key_group = c.store.max_providers_per_key;
            }
            let offer = config.session.listen.first();
            dht::DhtGlue::new(c, &config.session.identity, offer, dht_seed, now, wall_secs)
        });
        Engine {
            config,
            source,
            rng,
            clock_anchor: (now, wall_secs),
            next_conn: 0,
            next_read: 0,
            next_download: 0,
            conns: BTreeMap::new(),
            downloads: BTreeMap::new(),
            addrs,
            self_addrs: BTreeSet::new(),
            persistent: BTreeMap::new(),
            health: health::HealthTable::default(),
            reputation: BTreeMap::new(),
            reads: BTreeMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            dht,
            pex: pex::PeerExchange::default(),
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

    fn new_session(&mut self, now: Instant, side: Side) -> Result<Session, SessionError> {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let cfg = self.config.session.clone();
        let wall = self.wall_secs(now);
        match side {
            Side::Initiator => Session::initiator(cfg, seed, wall, now),
            Side::Anonymous => Session::anonymous_initiator(cfg, seed, wall, now),
            Side::Responder => Ok(Session::responder(cfg, seed, wall, now)),
        }
    }

    fn insert_conn(&mut self, now: Instant, session: Session, outbound: bool) -> ConnId {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        let c = Conn {
            session,
            addr: None,
            expect: None,
            group: None,
            remote: None,
            outbound,
            transport_up: !outbound,
            peer: None,
            serve: VecDeque::new(),
            reads_in_flight: 0,
            unwritten: 0,
            created: now,
            last_rx: now,
            last_used: now,
            next_ping: now + self.config.ping_interval,
            race_at: None,
            relayed: BTreeMap::new(),
            // Outbound links number their streams 1, 3, 5…; inbound ones 2, 4, 6….
            next_stream: if outbound { u32::MAX } else { 0 },
            answered_getaddr: false,
            asked_getaddr: false,
            teller: None,
            dht_contact: None,
            exchange: None,
            for_download: None,
        };
        self.conns.insert(conn, c);
        conn
    }

    /// Connections in one direction, exchanges (short-lived, budgeted apart) not counted.
    fn count(&self, outbound: bool) -> usize {
        self.conns.values().filter(|c| c.outbound == outbound && !c.session.is_exchange()).count()
    }

    /// Dials `addr` (unless it is one of our own). Returns the new connection's ID.
    pub fn connect(&mut self, now: Instant, addr: PeerAddr) -> Option<ConnId> {
        self.dial(now, addr, None)
    }

    /// Dials a peer found by a discovery method once, pinned to `node` (the identity that
    /// signed the address): a session with any other identity is closed with
    /// [`Event::IdentityMismatch`]. Nothing is dialled when the address breaks the address
    /// book's rules (a private address off a local network), or when `node` is already
    /// connected or being dialled.
    pub fn connect_pinned(&mut self, now: Instant, addr: PeerAddr, node: NodeId) -> Option<ConnId> {
        let addr = self.addrs.check(&addr).ok()?;
        let known =
            |c: &Conn| c.is_overlay() && (c.expect == Some(node) || c.peer_id() == Some(node));
        if self.conns.values().any(known) {
            return None;
        }
        if node == self.node_id() || self.is_connected_to(&addr) {
            return None;
        }
        self.dial(now, addr, Some(node))
    }

    fn dial(&mut self, now: Instant, addr: PeerAddr, expect: Option<NodeId>) -> Option<ConnId> {
        self.dial_as(now, addr, expect, Side::Initiator)
    }

    /// Dials `addr` as `side` (identified or anonymous).
    fn dial_as(
        &mut self,
        now: Instant,
        addr: PeerAddr,
        expect: Option<NodeId>,
        side: Side,
    ) -> Option<ConnId> {
        if self.self_addrs.contains(&addr) || self.config.session.listen.contains(&addr) {
            return None;
        }
        if self.count(true) >= self.config.max_outbound {
            return None;
        }
        let session = self.new_session(now, side).ok()?;
        let conn = self.insert_conn(now, session, true);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.addr = Some(addr.clone());
            c.expect = expect;
            c.race_at = expect.map(|_| now + health::RACE_AFTER);
        }
        self.addrs.mark_attempt(&addr, now);
        self.actions.push_back(Action::Connect { conn, addr });
        Some(conn)
    }

    /// Keeps a connection to `addr` up: it is dialled now and redialled with capped
    /// exponential back-off whenever it is down, for as long as the engine runs.
    pub fn add_persistent(&mut self, now: Instant, addr: PeerAddr) {
        self.keep_up(now, addr, None);
    }

    /// Like [`Engine::add_persistent`], for a peer that must authenticate as `node` (an invite
    /// line's): a session with any other identity is closed with
    /// [`Event::IdentityMismatch`] and the address is tried again later, never used.
    pub fn add_persistent_pinned(&mut self, now: Instant, addr: PeerAddr, node: NodeId) {
        self.keep_up(now, addr, Some(node));
    }

    fn keep_up(&mut self, now: Instant, addr: PeerAddr, expect: Option<NodeId>) {
        if self.persistent.len() >= MAX_PERSISTENT || self.persistent.contains_key(&addr) {
            return;
        }
        let p = Persistent { backoff: REDIAL_BASE, next_try: Some(now), expect };
        self.persistent.insert(addr, p);
        self.redial_persistent(now);
    }

    fn redial_persistent(&mut self, now: Instant) {
        let due: Vec<(PeerAddr, Option<NodeId>)> = self
            .persistent
            .iter()
            .filter(|(a, p)| p.next_try.is_some_and(|t| now >= t) && !self.is_connected_to(a))
            .map(|(a, p)| (a.clone(), p.expect))
            .collect();
        for (addr, expect) in due {
            let cap = self.config.max_redial_backoff;
            if let Some(p) = self.persistent.get_mut(&addr) {
                p.next_try = Some(now + p.backoff);
                p.backoff = p.backoff.saturating_mul(2).min(cap);
            }
            self.dial(now, addr, expect);
        }
    }

    /// Dials random address-book entries until [`EngineConfig::target_outbound`] outbound
    /// connections (up or being set up, DHT exchanges not counted) exist.
    fn fill_outbound(&mut self, now: Instant) {
        let have = self.conns.values().filter(|c| c.outbound && c.is_overlay()).count();
        let want = self.config.target_outbound.saturating_sub(have);
        if want == 0 || self.addrs.is_empty() {
            return;
        }
        let picks = self.addrs.select_distinct(now, &mut self.rng, want);
        for addr in picks {
            if self.is_connected_to(&addr) {
                continue;
            }
            let pin = self.addrs.pin(&addr);
            if let Some(pin) = pin {
                let known = |c: &Conn| {
                    c.is_overlay() && (c.expect == Some(pin.node) || c.peer_id() == Some(pin.node))
                };
                if pin.node == self.node_id() || self.conns.values().any(known) {
                    continue;
                }
            }
            let conn = self.dial(now, addr.clone(), pin.map(|p| p.node));
            if let Some(c) = conn.and_then(|id| self.conns.get_mut(&id)) {
                c.teller = pin.filter(|p| p.vouched).and_then(|p| p.teller);
                if c.teller.is_some() {
                    // The teller answers for its voucher once, not on every redial.
                    self.addrs.unvouch(&addr);
                }
            }
        }
    }

    /// Whether an identified connection to `addr` exists (dialled by us; a download's
    /// anonymous links do not count: they carry nothing but that download).
    pub fn is_connected_to(&self, addr: &PeerAddr) -> bool {
        self.conns.values().any(|c| c.is_overlay() && c.addr.as_ref() == Some(addr))
    }

    /// A new inbound transport connection from `remote` (when the transport knows it).
    /// Returns `None` (close it) when no slot can be had; when inbound slots (or those of
    /// `remote`'s address group) are full, the least useful inbound connection — one still
    /// unauthenticated, else the longest idle — is closed to make room.
    pub fn accept(&mut self, now: Instant, remote: Option<IpAddr>) -> Option<ConnId> {
        // Transports that cannot say where a connection comes from share one group, so they
        // are capped like one address prefix.
        let group = Some(remote.map_or(NO_ADDRESS_GROUP, inbound_group));
        let in_group = |c: &Conn| c.group == group && !c.outbound;
        if self.conns.values().filter(|c| in_group(c)).count() >= self.config.max_inbound_per_group
        {
            let victim = self.eviction_candidate(now, group);
            self.drop_conn(now, victim?, true);
        }
        if self.count(false) >= self.config.max_inbound {
            let victim = self.eviction_candidate(now, None);
            self.drop_conn(now, victim?, true);
        }
        let session = self.new_session(now, Side::Responder).ok()?;
        let conn = self.insert_conn(now, session, false);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.group = group;
            c.remote = remote;
        }
        Some(conn)
    }

    /// The inbound connection to close for a newcomer (within `group` if given): the oldest
    /// unauthenticated one, else the one idle longest that no download uses, if idle for at
    /// least a few seconds. Never a source of ours or a link with work in progress.
    fn eviction_candidate(&self, now: Instant, group: Option<u64>) -> Option<ConnId> {
        let used: BTreeSet<ConnId> = self
            .downloads
            .values()
            .flat_map(|d| d.transfer.streams().map(StreamId::conn))
            .collect();
        let candidates = self
            .conns
            .iter()
            .filter(|(id, c)| !c.outbound && !used.contains(id))
            .filter(|(_, c)| group.is_none() || c.group == group);
        let unauthenticated = candidates
            .clone()
            .filter(|(_, c)| !c.session.is_established())
            .min_by_key(|(_, c)| c.created)
            .map(|(id, _)| *id);
        unauthenticated.or_else(|| {
            candidates
                .filter(|(_, c)| {
                    // An open relayed stream keeps nothing alive by itself (anyone can open
                    // one to us); data through it refreshes `last_used`.
                    c.serve.is_empty()
                        && c.reads_in_flight == 0
                        && now.saturating_duration_since(c.last_used) >= Duration::from_secs(5)
                })
                .min_by_key(|(_, c)| c.last_used)
                .map(|(id, _)| *id)
        })
    }

    /// An outbound connection's transport is up: the handshake starts.
    pub fn connected(&mut self, now: Instant, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.transport_up = true;
            c.last_rx = now;
        }
        self.flush(conn);
    }

    /// An outbound dial failed, for `why`.
    pub fn connect_failed(&mut self, now: Instant, conn: ConnId, why: health::LinkFailure) {
        if let Some(addr) = self.conns.get(&conn).and_then(|c| c.addr.clone()) {
            self.addrs.mark_failed(&addr);
            self.health.failed(&addr, now, why);
        }
        self.drop_conn(now, conn, false);
    }

    /// The transport connection closed.
    pub fn closed(&mut self, now: Instant, conn: ConnId) {
        // A dial whose link closes before it is up, or while it owes us data, failed (a reset
        // a censor injects looks like this).
        if let Some(c) = self.conns.get(&conn).filter(|c| c.outbound) {
            let owing = self.downloads.values().any(|d| d.transfer.waiting_on(conn));
            if let Some(addr) = c.addr.clone().filter(|_| owing || !c.session.is_established()) {
                self.health.failed(&addr, now, health::LinkFailure::Reset);
            }
        }
        self.drop_conn(now, conn, false);
    }

    /// What each dialled address did, as ages, to keep across restarts (most recent first).
    pub fn export_link_health(&self, now: Instant) -> Vec<(PeerAddr, health::SavedHealth)> {
        self.health.export(now)
    }

    /// Takes back what [`Engine::export_link_health`] gave in an earlier run, so the first
    /// dials after a restart go where links last worked.
    pub fn restore_link_health(
        &mut self,
        now: Instant,
        saved: Vec<(PeerAddr, health::SavedHealth)>,
    ) {
        self.health.restore(now, saved);
    }

    /// What each dialled address did lately (for display: which of a peer's transports work).
    pub fn link_health(&self) -> Vec<(PeerAddr, health::Health)> {
        let mut all: Vec<_> = self.health.all().map(|(a, h)| (a.clone(), *h)).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
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
        let peer = c.peer_id();
        if let Some(teller) = c.teller.filter(|_| peer.is_none()) {
            self.judge_teller(teller, None);
        }
        // Relayed streams through this link end on their other side too.
        for (_, end) in c.relayed {
            if let RelayEnd::Forward(other, n) = end {
                if let Some(o) = self.conns.get_mut(&other) {
                    o.relayed.remove(&n);
                    let _ = o.session.send(&Message::Relay(RelayMsg::Close { stream: n }));
                }
                self.lose_stream(StreamId::Relayed(other, n));
                self.flush(other);
            }
        }
        for d in self.downloads.values_mut() {
            let lost: Vec<StreamId> =
                d.transfer.streams().filter(|s| s.conn() == conn).copied().collect();
            for s in lost {
                d.transfer.stream_lost(s);
            }
        }
        // An exchange was never a peer: nothing went down.
        if !c.session.is_exchange() {
            self.events.push_back(Event::PeerDown { conn, peer });
        }
        self.dht_conn_gone(now, conn);
        self.check_sources(now);
        self.schedule(now);
    }

    fn lose_stream(&mut self, stream: StreamId) {
        for d in self.downloads.values_mut() {
            d.transfer.stream_lost(stream);
        }
    }

    /// Bytes arrived on a connection.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        self.input(now, conn, |s| s.handle_input(now, data));
    }

    /// Like [`Engine::handle_input`], but takes the received buffer so whole frames are
    /// decrypted where they are ([`Session::handle_input_owned`]): a runtime reading into a
    /// fresh buffer per read saves a copy of every byte received.
    pub fn handle_input_owned(&mut self, now: Instant, conn: ConnId, data: Vec<u8>) {
        self.input(now, conn, |s| s.handle_input_owned(now, data));
    }

    fn input(
        &mut self,
        now: Instant,
        conn: ConnId,
        feed: impl FnOnce(&mut Session) -> Result<(), SessionError>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        c.last_rx = now;
        if let Err(err) = feed(&mut c.session) {
            if matches!(err, SessionError::SelfConnection) {
                if let Some(addr) = c.addr.clone() {
                    if self.self_addrs.len() < MAX_PERSISTENT {
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
                    if !self.on_established(now, conn, *info) {
                        self.drop_conn(now, conn, true);
                        return;
                    }
                    true
                }
                SessionEvent::Message(msg) => self.on_message(now, conn, msg),
                SessionEvent::Query(query) => {
                    self.on_query(now, conn, *query);
                    return;
                }
                SessionEvent::Answer(body) => {
                    self.on_answer(now, conn, &body);
                    return;
                }
            };
            if !ok {
                self.penalize_conn(conn, Offence::ProtocolViolation, 5);
                self.flush(conn);
                self.drop_conn(now, conn, true);
                return;
            }
        }
        if self.is_flooding(conn) {
            self.penalize_conn(conn, Offence::ProtocolViolation, 5);
            self.drop_conn(now, conn, true);
            return;
        }
        self.after_input(now);
        self.flush(conn);
    }

    fn is_flooding(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| {
            c.unwritten + c.session.pending_transmit() > FLOOD_FACTOR * self.config.write_high_water
        })
    }

    fn after_input(&mut self, now: Instant) {
        self.drain_transfers(now);
        self.check_sources(now);
        self.schedule(now);
    }

    /// Records an established session; `false` if the peer is banned or not who we dialled.
    fn on_established(&mut self, now: Instant, conn: ConnId, info: PeerInfo) -> bool {
        let peer = info.node_id;
        let Some(c) = self.conns.get(&conn) else { return true };
        if let Some(expected) = c.expect.filter(|e| *e != peer) {
            self.events.push_back(Event::IdentityMismatch { conn, expected, got: peer });
            if let Some(teller) = c.teller {
                self.judge_teller(teller, Some(false));
            }
            let Some(c) = self.conns.get_mut(&conn) else { return false };
            c.teller = None;
            if let Some(addr) = &c.addr {
                // A gossiped address that turned out to be someone else's is theirs from now on.
                if self.addrs.pin(addr).is_some_and(|p| p.node == expected) {
                    self.addrs
                        .repin(addr, addrbook::Pin { node: peer, teller: None, vouched: false });
                }
                for d in self.downloads.values_mut() {
                    if d.sources.iter().any(|s| s.dial() == (Some(expected), addr)) {
                        d.mismatches += 1;
                    }
                }
            }
            return false;
        }
        if self.is_banned(&SourceId::Node(peer)) {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.teller = None; // it did authenticate as the record said
            }
            return false;
        }
        let Some(c) = self.conns.get(&conn) else { return true };
        let exchange = info.features & features::PEER_EXCHANGE != 0;
        let addr = c.addr.clone();
        // A link we opened anonymously teaches the address book nothing: what it learnt
        // there could later have this node dial the peer under its own identity.
        let learn = c.is_overlay();
        let listen: Vec<PeerAddr> =
            info.hello.listen.iter().take(4).filter(|_| learn).cloned().collect();
        let origin = source_addr(c, peer);
        let teller = c.teller;
        // What an authenticated peer says about itself is pinned to it.
        let pin = addrbook::Pin { node: peer, teller: None, vouched: false };
        for a in listen {
            if !self.is_own_addr(&a) {
                let _ = self.addrs.add_pinned(&a, &origin, pin, now);
            }
        }
        if let Some(teller) = teller {
            self.judge_teller(teller, Some(true));
        }
        if let Some(addr) = &addr {
            if learn {
                self.addrs.mark_good(addr, now);
            }
            self.health.ok(addr, now);
            if let Some(p) = self.persistent.get_mut(addr) {
                p.backoff = REDIAL_BASE;
            }
        }
        let Some(c) = self.conns.get_mut(&conn) else { return true };
        c.peer = Some(info);
        c.teller = None;
        if exchange {
            c.asked_getaddr = true;
            let _ = c.session.send(&Message::Peers(PeersMsg::GetAddr));
        }
        self.events.push_back(Event::PeerUp { conn, peer });
        self.dht_peer_up(now, conn);
        true
    }

    /// Handles one message; `false` means the peer broke the protocol.
    fn on_message(&mut self, now: Instant, conn: ConnId, msg: Message) -> bool {
        if self.conns.get(&conn).is_some_and(|c| c.session.is_anonymous()) {
            return self.on_anonymous_message(now, conn, msg);
        }
        match msg {
            Message::Ping { nonce } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    let _ = c.session.send(&Message::Pong { nonce });
                }
                true
            }
            Message::Peers(m) => self.on_peers(now, conn, m),
            Message::Transfer(m) => self.on_stream_message(now, StreamId::Direct(conn), m),
            Message::Relay(m) => self.on_relay(now, conn, m),
            Message::Dht { pow, payload } => self.on_dht(now, conn, pow, &payload),
            // Pong needs nothing; a second Hello is rejected by the session; unknown future
            // variants are ignored.
            _ => true,
        }
    }

    /// A message on a link we opened anonymously: it carries our download and nothing else.
    /// Whatever the peer asks of us is refused the same way whatever we hold (an answer would
    /// tell it what this node holds, relays or knows, and so which node it is).
    fn on_anonymous_message(&mut self, now: Instant, conn: ConnId, msg: Message) -> bool {
        let reply = match &msg {
            Message::Relay(RelayMsg::Open { stream, .. }) => {
                Some(Message::Relay(RelayMsg::Close { stream: *stream }))
            }
            Message::Ping { nonce } => Some(Message::Pong { nonce: *nonce }),
            _ => None,
        };
        if let Some(reply) = reply {
            if let Some(c) = self.conns.get_mut(&conn) {
                let _ = c.session.send(&reply);
            }
            return true;
        }
        match msg {
            Message::Transfer(m) => self.on_stream_message(now, StreamId::Direct(conn), m),
            Message::Relay(m) => self.on_relay(now, conn, m),
            // Peer exchange and the DHT are off on this link (the session did not offer
            // them); what arrives anyway is ignored.
            _ => true,
        }
    }

    /// Handles a peer-exchange message; `false` means the peer broke the protocol.
    fn on_peers(&mut self, now: Instant, conn: ConnId, msg: PeersMsg) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else { return true };
        match msg {
            // One answer per link: asking again and again does not list the whole book.
            PeersMsg::GetAddr if !c.answered_getaddr => {
                c.answered_getaddr = true;
                self.answer_getaddr(now, conn);
                true
            }
            PeersMsg::Records { records, vouched } => self.on_records(now, conn, records, vouched),
            _ => true,
        }
    }

    /// Whether `addr` is one of this node's own (configured or learnt) addresses.
    fn is_own_addr(&self, addr: &PeerAddr) -> bool {
        self.config.session.listen.contains(addr) || self.self_addrs.contains(addr)
    }

    /// A transfer-protocol message on a stream: requests are served, answers go to the
    /// download that asked.
    fn on_stream_message(&mut self, now: Instant, stream: StreamId, msg: TransferMsg) -> bool {
        let max_queue = self.config.max_queued_requests;
        let conn = stream.conn();
        // On a link we opened anonymously, direct or relayed through it, nothing is served:
        // every request gets the same answer whatever this node holds.
        if self.conns.get(&conn).is_some_and(|c| c.session.is_anonymous()) {
            if let TransferMsg::GetOutboard { req, .. } | TransferMsg::GetGroups { req, .. } = msg {
                send_on(&mut self.conns, stream, TransferMsg::NotFound { req });
                return true;
            }
        }
        match msg {
            TransferMsg::GetOutboard { req, locator, first, count } => {
                let Some(c) = self.conns.get_mut(&conn) else { return true };
                if c.serve.len() >= max_queue {
                    return false;
                }
                // Only a request we can serve makes the link useful (junk keeps no slot).
                if self.source.lookup(&locator).is_some() {
                    c.last_used = now;
                }
                c.serve.push_back(ServeItem::Leaves { stream, req, locator, first, count });
            }
            TransferMsg::GetGroups { req, locator, first, count } => {
                let Some(c) = self.conns.get_mut(&conn) else { return true };
                if c.serve.len() + count as usize > max_queue {
                    return false;
                }
                let Some((root, outboard)) = self.source.lookup(&locator) else {
                    send_on(&mut self.conns, stream, TransferMsg::NotFound { req });
                    return true;
                };
                let Some(end) = first.checked_add(count) else { return false };
                if end > outboard.groups() {
                    send_on(&mut self.conns, stream, TransferMsg::NotFound { req });
                    return true;
                }
                c.last_used = now;
                for index in first..end {
                    c.serve.push_back(ServeItem::Group { stream, req, root, index });
                }
            }
            TransferMsg::Cancel { req } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.serve.retain(|item| !item.is(stream, req));
                }
            }
            answer @ (TransferMsg::Outboard { .. }
            | TransferMsg::Group { .. }
            | TransferMsg::NotFound { .. }) => {
                let req = match &answer {
                    TransferMsg::Outboard { req, .. }
                    | TransferMsg::Group { req, .. }
                    | TransferMsg::NotFound { req } => *req,
                    _ => return true,
                };
                if let Some(d) = self.downloads.values_mut().find(|d| d.transfer.owns(stream, req))
                {
                    d.transfer.on_message(now, stream, answer, &mut d.next_req);
                    // Only answers we asked for count as use.
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.last_used = now;
                    }
                }
            }
            _ => {}
        }
        true
    }

    /// A relay message on `conn`.
    fn on_relay(&mut self, now: Instant, conn: ConnId, msg: RelayMsg) -> bool {
        match msg {
            RelayMsg::Open { stream, target } => {
                let me = self.node_id();
                let Some(c) = self.conns.get_mut(&conn) else { return true };
                if c.peer.is_none() || c.relayed.contains_key(&stream) || !c.peer_may_number(stream)
                {
                    return false;
                }
                let refuse = |c: &mut Conn| {
                    let _ = c.session.send(&Message::Relay(RelayMsg::Close { stream }));
                };
                if c.relayed.len() >= MAX_RELAY_STREAMS {
                    refuse(c);
                    return true;
                }
                if NodeId(target) == me {
                    c.relayed.insert(stream, RelayEnd::Local);
                    return true;
                }
                let next = self
                    .conns
                    .iter()
                    .find(|(id, o)| {
                        **id != conn && o.is_overlay() && o.peer_id() == Some(NodeId(target))
                    })
                    .map(|(id, _)| *id);
                let far = next.filter(|n| {
                    self.config.relay
                        && self.conns.get(n).is_some_and(|o| o.relayed.len() < MAX_RELAY_STREAMS)
                });
                let Some(far) = far else {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        refuse(c);
                    }
                    return true;
                };
                let Some(o) = self.conns.get_mut(&far) else { return true };
                let n = o.alloc_stream();
                o.relayed.insert(n, RelayEnd::Forward(conn, stream));
                let _ = o.session.send(&Message::Relay(RelayMsg::Open { stream: n, target }));
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.relayed.insert(stream, RelayEnd::Forward(far, n));
                }
                self.flush(far);
            }
            RelayMsg::Data { stream, payload } => {
                let Some(end) = self.conns.get(&conn).and_then(|c| c.relayed.get(&stream).copied())
                else {
                    return true;
                };
                match end {
                    RelayEnd::Local => {
                        // Whoever is at the far end of a relayed stream broke its protocol:
                        // that stream ends, and the relay, which only carried it, is not blamed.
                        let ok = TransferMsg::decode(&payload).is_ok_and(|msg| {
                            self.on_stream_message(now, StreamId::Relayed(conn, stream), msg)
                        });
                        if !ok {
                            self.close_relayed(conn, stream);
                        }
                    }
                    RelayEnd::Forward(far, n) => {
                        for id in [conn, far] {
                            if let Some(c) = self.conns.get_mut(&id) {
                                c.last_used = now;
                            }
                        }
                        let Some(o) = self.conns.get_mut(&far) else { return true };
                        let _ =
                            o.session.send(&Message::Relay(RelayMsg::Data { stream: n, payload }));
                        if self.is_flooding(far) {
                            // The far side does not keep up: end the stream, not the link.
                            self.close_relayed(conn, stream);
                        }
                        self.flush(far);
                    }
                }
            }
            RelayMsg::Close { stream } => self.close_relayed(conn, stream),
            _ => {}
        }
        true
    }

    /// Ends relayed stream `stream` of `conn` (and its other half, if we forward it).
    fn close_relayed(&mut self, conn: ConnId, stream: u32) {
        let Some(end) = self.conns.get_mut(&conn).and_then(|c| c.relayed.remove(&stream)) else {
            return;
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.serve.retain(|i| !i.on_stream(StreamId::Relayed(conn, stream)));
            let _ = c.session.send(&Message::Relay(RelayMsg::Close { stream }));
        }
        self.lose_stream(StreamId::Relayed(conn, stream));
        if let RelayEnd::Forward(far, n) = end {
            if let Some(o) = self.conns.get_mut(&far) {
                o.relayed.remove(&n);
                let _ = o.session.send(&Message::Relay(RelayMsg::Close { stream: n }));
            }
            self.flush(far);
        }
    }

    /// Moves transfer output into messages and events.
    fn drain_transfers(&mut self, _now: Instant) {
        let roots: Vec<ContentRoot> = self.downloads.keys().copied().collect();
        for root in roots {
            let mut penalties = Vec::new();
            let mut complete = false;
            let Some(d) = self.downloads.get_mut(&root) else { continue };
            while let Some((stream, msg)) = d.transfer.poll_transmit() {
                send_on(&mut self.conns, stream, msg);
            }
            while let Some(out) = d.transfer.poll_output() {
                match out {
                    Output::Verified { index, data, source } => {
                        self.events.push_back(Event::GroupVerified {
                            root,
                            index,
                            data,
                            from: source,
                        });
                        complete |= d.transfer.is_complete();
                    }
                    Output::OutboardReady(outboard) => {
                        self.events.push_back(Event::OutboardVerified { root, outboard });
                        complete |= d.transfer.is_complete();
                    }
                    Output::Corrupt { source, offence } => penalties.push((source, offence)),
                }
            }
            // Cancels the ban produced.
            while let Some((stream, msg)) = d.transfer.poll_transmit() {
                send_on(&mut self.conns, stream, msg);
            }
            for (source, offence) in penalties {
                self.penalize(source, offence, PENALTY_CORRUPT);
            }
            if complete {
                self.finish_transfer(root);
            }
        }
    }

    fn penalize_conn(&mut self, conn: ConnId, offence: Offence, points: i64) {
        let Some(peer) = self.conns.get(&conn).and_then(Conn::peer_id) else { return };
        self.penalize(SourceId::Node(peer), offence, points);
    }

    fn penalize(&mut self, source: SourceId, offence: Offence, points: i64) {
        if offence.is_about_content() {
            for d in self.downloads.values_mut() {
                d.transfer.ban(source);
            }
        }
        if !self.reputation.contains_key(&source) && self.reputation.len() >= MAX_REPUTATION_ENTRIES
        {
            // Forget the least-penalised source to make room (bans are kept longest).
            if let Some(mildest) =
                self.reputation.iter().max_by_key(|(_, s)| **s).map(|(id, _)| *id)
            {
                self.reputation.remove(&mildest);
            }
        }
        *self.reputation.entry(source).or_insert(0) -= points;
        self.events.push_back(Event::PeerPenalized { source, offence });
    }

    fn finish_transfer(&mut self, root: ContentRoot) {
        if let Some(d) = self.downloads.remove(&root) {
            self.wind_up(d);
            self.events.push_back(Event::TransferComplete { root });
        }
    }

    /// Cancels what an ended download still has outstanding and closes the relayed streams
    /// it opened (so relays do not keep a slot for it).
    fn wind_up(&mut self, mut d: Download) {
        d.transfer.cancel_all();
        while let Some((stream, msg)) = d.transfer.poll_transmit() {
            send_on(&mut self.conns, stream, msg);
        }
        let relayed: Vec<(ConnId, u32)> = d
            .transfer
            .streams()
            .filter_map(|s| match s {
                StreamId::Relayed(c, n) => Some((*c, *n)),
                StreamId::Direct(_) => None,
            })
            .collect();
        for (conn, n) in relayed {
            self.close_relayed(conn, n);
        }
        // The download's anonymous links carried it and nothing else: they end with it, so
        // no later download reuses one (and its throwaway identity).
        let root = d.transfer.spec.root;
        let own: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.for_download == Some(root))
            .map(|(id, _)| *id)
            .collect();
        for conn in own {
            if let Some(c) = self.conns.remove(&conn) {
                self.actions.push_back(Action::Close { conn });
                self.events.push_back(Event::PeerDown { conn, peer: c.peer_id() });
            }
        }
    }

    /// Starts a download of `spec`, fetching only from `sources` (the link's pinned hints and
    /// any the caller adds). With `resume`, groups already verified on disk are not fetched
    /// again. A second fetch of the same root while one runs is ignored.
    pub fn fetch(
        &mut self,
        now: Instant,
        spec: FetchSpec,
        sources: Vec<SourceSpec>,
        resume: Resume,
    ) {
        if self.downloads.contains_key(&spec.root) {
            return;
        }
        if spec.blob_len > self.config.max_blob_len {
            self.events.push_back(Event::TransferFailed {
                root: spec.root,
                error: TransferError::TooLarge(spec.blob_len),
            });
            return;
        }
        let transfer = Transfer::new(now, spec, resume);
        let complete = transfer.is_complete();
        self.next_download += 1;
        let d = Download {
            generation: self.next_download,
            transfer,
            sources,
            redials: 0,
            verified_mark: 0,
            next_redial: None,
            mismatches: 0,
            relay_tried: BTreeSet::new(),
            finding: 0,
            looked_up: false,
            finding_until: None,
            next_req: self.rng.next_u32(),
        };
        self.downloads.insert(spec.root, d);
        if complete {
            self.finish_transfer(spec.root);
            return;
        }
        self.dial_sources(now, spec.root);
        self.check_sources(now);
        self.schedule(now);
    }

    /// Dials every source of a download that has no link yet (a new round: relays that
    /// refused may be asked again).
    fn dial_sources(&mut self, now: Instant, root: ContentRoot) {
        let Some(d) = self.downloads.get_mut(&root) else { return };
        d.relay_tried.clear();
        self.dial_missing(now, root, false);
    }

    /// Dials the sources of a download that have no link and no dial under way. A peer with
    /// several addresses (transports) is dialled one address at a time, best first (see
    /// [`health`]); a dial not up after [`health::RACE_AFTER`] gets the next address raced
    /// beside it. With `race_only`, only that: peers with no dial under way are left to the
    /// redial rounds of [`Engine::check_sources`].
    fn dial_missing(&mut self, now: Instant, root: ContentRoot, race_only: bool) {
        let Some(d) = self.downloads.get(&root) else { return };
        // The addresses of each pinned peer in the order given; unpinned addresses alone.
        let mut peers: Vec<(Option<NodeId>, Vec<PeerAddr>)> = Vec::new();
        for s in &d.sources {
            let (node, addr) = s.dial();
            match peers.iter_mut().find(|(n, _)| node.is_some() && *n == node) {
                Some((_, addrs)) if !addrs.contains(addr) => addrs.push(addr.clone()),
                Some(_) => {}
                None => peers.push((node, vec![addr.clone()])),
            }
        }
        let mut dials = Vec::new();
        let anonymous = self.config.anonymous_downloads;
        for (node, addrs) in &peers {
            let tries: Vec<&Conn> = self
                .conns
                .values()
                .filter(|c| !anonymous || c.for_download == Some(root))
                .filter(|c| {
                    addrs.iter().any(|a| c.addr.as_ref() == Some(a))
                        || (node.is_some() && (c.peer_id() == *node || c.expect == *node))
                })
                .collect();
            if tries.iter().any(|c| c.session.is_established()) || (race_only && tries.is_empty()) {
                continue;
            }
            // At most two dials at once, the second only once the first is slow.
            let slow = tries.iter().all(|c| now >= c.created + health::RACE_AFTER);
            if tries.len() >= 2 || !slow {
                continue;
            }
            let candidates: Vec<&PeerAddr> = addrs
                .iter()
                .filter(|a| !tries.iter().any(|c| c.addr.as_ref() == Some(*a)))
                .collect();
            let order = if self.config.rotate_transports {
                self.health.rotated(now, &candidates)
            } else {
                self.health.ranked(now, &candidates)
            };
            if let Some(best) = order.first() {
                dials.push(((*best).clone(), *node));
            }
        }
        let side = if anonymous { Side::Anonymous } else { Side::Initiator };
        for (addr, node) in dials {
            let conn = self.dial_as(now, addr, node, side);
            if let Some(c) = conn.filter(|_| anonymous).and_then(|id| self.conns.get_mut(&id)) {
                c.for_download = Some(root);
            }
        }
    }

    /// Gives each download the streams its sources are reachable on: established links to
    /// pinned peers (whoever dialled whom), links we dialled at an unpinned address, and
    /// relayed streams through links to pinned relays (opened here).
    fn attach_sources(&mut self) {
        let roots: Vec<ContentRoot> = self.downloads.keys().copied().collect();
        for root in roots {
            let Some(d) = self.downloads.get(&root) else { continue };
            let mut offers = Vec::new();
            let mut opens = Vec::new();
            for spec in &d.sources {
                match spec {
                    SourceSpec::Direct { node, addr } => {
                        for (id, c) in &self.conns {
                            let Some(peer) = c.peer_id() else { continue };
                            if self.config.anonymous_downloads && c.for_download != Some(root) {
                                continue;
                            }
                            let matches = match node {
                                Some(n) => peer == *n,
                                None => c.addr.as_ref() == Some(addr),
                            };
                            if matches && c.can_serve() {
                                offers.push((StreamId::Direct(*id), SourceId::Node(peer)));
                            }
                        }
                    }
                    SourceSpec::Relayed { relay, target, .. } => {
                        let source = SourceId::Relayed { relay: *relay, target: *target };
                        let anonymous = self.config.anonymous_downloads;
                        let Some((id, c)) = self.conns.iter().find(|(_, c)| {
                            c.peer_id() == Some(*relay)
                                && (!anonymous || c.for_download == Some(root))
                        }) else {
                            continue;
                        };
                        if !d.relay_tried.contains(id)
                            && !d.transfer.is_banned(&source)
                            && c.relayed.len() < MAX_RELAY_STREAMS
                        {
                            opens.push((*id, *target, source));
                        }
                    }
                }
            }
            if let Some(d) = self.downloads.get_mut(&root) {
                d.relay_tried.extend(opens.iter().map(|o| o.0));
            }
            for (conn, target, source) in opens {
                let Some(c) = self.conns.get_mut(&conn) else { continue };
                let n = c.alloc_stream();
                c.relayed.insert(n, RelayEnd::Local);
                let _ =
                    c.session.send(&Message::Relay(RelayMsg::Open { stream: n, target: target.0 }));
                offers.push((StreamId::Relayed(conn, n), source));
            }
            let Some(d) = self.downloads.get_mut(&root) else { continue };
            for (stream, source) in offers {
                if !is_banned(&self.reputation, &source) {
                    d.transfer.add_stream(stream, source);
                }
            }
        }
    }

    /// Downloads without any usable source redial their sources with back-off, then fail.
    fn check_sources(&mut self, now: Instant) {
        self.attach_sources();
        let mut failed = Vec::new();
        let mut redial = Vec::new();
        for (root, d) in self.downloads.iter_mut() {
            let pending = d.sources.iter().any(|s| {
                let (_, addr) = s.dial();
                self.conns.values().any(|c| c.addr.as_ref() == Some(addr) && c.peer.is_none())
            });
            if d.transfer.has_usable_stream() || pending || d.finding > 0 {
                let verified = d.transfer.progress().0;
                if verified > d.verified_mark {
                    d.verified_mark = verified;
                    d.redials = 0;
                }
                d.next_redial = None;
                continue;
            }
            match d.next_redial {
                Some(at) if now >= at => {
                    d.next_redial = None;
                    d.redials += 1;
                    redial.push(*root);
                }
                Some(_) => {}
                None if d.redials >= MAX_REDIALS => failed.push(*root),
                None => d.next_redial = Some(now + REDIAL_BASE * 2u32.pow(d.redials)),
            }
        }
        for root in redial {
            self.dial_sources(now, root);
        }
        for root in failed {
            self.fail_download(root);
        }
    }

    fn fail_download(&mut self, root: ContentRoot) {
        let Some(d) = self.downloads.remove(&root) else { return };
        let mismatch = d.mismatches > 0 && !d.transfer.has_usable_stream();
        let unfound = d.looked_up && d.sources.is_empty();
        self.wind_up(d);
        let error = if mismatch {
            TransferError::IdentityMismatch
        } else if unfound {
            TransferError::NoProviders
        } else {
            TransferError::NoSources
        };
        self.events.push_back(Event::TransferFailed { root, error });
    }

    /// Abandons a download (its verified groups stay wherever the driver put them). Only the
    /// streams that were asked are told, by request id.
    pub fn cancel(&mut self, root: &ContentRoot) {
        if let Some(d) = self.downloads.remove(root) {
            self.wind_up(d);
            let conns: Vec<ConnId> = self.conns.keys().copied().collect();
            for c in conns {
                self.flush(c);
            }
        }
    }

    /// Verified bytes and total bytes of a download.
    pub fn progress(&self, root: &ContentRoot) -> Option<(u64, Option<u64>)> {
        self.downloads.get(root).map(|d| d.transfer.progress())
    }

    /// The owner stored `groups` of the verified groups of download `root` (see
    /// [`EngineConfig::store_window`]); an unknown or finished download is ignored.
    pub fn stored(&mut self, now: Instant, root: &ContentRoot, groups: u32) {
        let Some(d) = self.downloads.get_mut(root) else { return };
        d.transfer.stored(groups);
        self.schedule(now);
    }

    /// Assigns requests of every download to streams with free window.
    fn schedule(&mut self, now: Instant) {
        let (window, store_window) = (self.config.window, self.config.store_window);
        for d in self.downloads.values_mut() {
            d.transfer.schedule(now, window, store_window, &mut d.next_req);
            while let Some((stream, msg)) = d.transfer.poll_transmit() {
                send_on(&mut self.conns, stream, msg);
            }
        }
        let pending: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session.pending_transmit() > 0 || !c.serve.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for conn in pending {
            self.flush(conn);
        }
    }

    /// A read asked for with [`Action::ReadGroup`] finished (`None`: it could not be read).
    pub fn read_done(&mut self, read: ReadId, data: Option<Vec<u8>>) {
        let Some(r) = self.reads.remove(&read) else { return };
        let Some(c) = self.conns.get_mut(&r.conn) else { return };
        c.reads_in_flight = c.reads_in_flight.saturating_sub(1);
        let msg = match data {
            Some(data) => TransferMsg::Group { req: r.req, index: r.index, data },
            None => {
                c.serve.retain(|i| !i.is(r.stream, r.req));
                TransferMsg::NotFound { req: r.req }
            }
        };
        // A stream closed meanwhile swallows the answer.
        let open = match r.stream {
            StreamId::Direct(_) => true,
            StreamId::Relayed(_, n) => c.relayed.get(&n) == Some(&RelayEnd::Local),
        };
        if open {
            send_on(&mut self.conns, r.stream, msg);
        }
        self.flush(r.conn);
    }

    /// Moves session output into `Send` actions and serves queued requests while the
    /// connection has room: leaves from memory, groups by asking the driver to read them.
    fn flush(&mut self, conn: ConnId) {
        let high_water = self.config.write_high_water;
        let max_reads = self.config.max_reads_per_conn;
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if !c.transport_up {
            return;
        }
        let group = samizdat_content::GROUP_SIZE;
        while c.unwritten + c.session.pending_transmit() + c.reads_in_flight * group < high_water
            && c.reads_in_flight < max_reads
        {
            let Some(item) = c.serve.pop_front() else { break };
            match item {
                ServeItem::Group { stream, req, root, index } => {
                    self.next_read += 1;
                    let read = ReadId(self.next_read);
                    self.reads.insert(read, PendingRead { conn, stream, req, index });
                    c.reads_in_flight += 1;
                    self.actions.push_back(Action::ReadGroup { read, root, index });
                }
                ServeItem::Leaves { stream, req, locator, first, count } => {
                    let msg = match self.source.lookup(&locator) {
                        Some((_, o)) => {
                            let start = (first as usize).min(o.leaves.len());
                            let end = start
                                .saturating_add(count as usize)
                                .min(o.leaves.len())
                                .min(start + MAX_LEAVES_PER_MESSAGE);
                            TransferMsg::Outboard {
                                req,
                                blob_len: o.blob_len,
                                first,
                                leaves: o.leaves[start..end].to_vec(),
                            }
                        }
                        None => TransferMsg::NotFound { req },
                    };
                    send_one(c, stream, msg);
                }
            }
        }
        if let Some(data) = c.session.poll_transmit() {
            c.unwritten += data.len();
            self.actions.push_back(Action::Send { conn, data });
        }
    }

    /// Runs timers: handshake deadlines, keep-alives, idle connections, stalled downloads,
    /// persistent peers.
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
        // Links that owe a download data and have gone silent are taken for blocked.
        let silence = self.config.silence_timeout;
        for (&id, c) in &self.conns {
            let waiting =
                self.downloads.values().filter_map(|d| d.transfer.waiting_since(id)).max();
            if c.session.is_established()
                && !dead.contains(&id)
                && waiting.is_some_and(|since| now >= since.max(c.last_rx) + silence)
            {
                if let Some(addr) = c.addr.as_ref().filter(|_| c.outbound) {
                    self.health.failed(addr, now, health::LinkFailure::Silent);
                }
                dead.push(id);
            }
        }
        for id in dead {
            self.drop_conn(now, id, true);
        }
        // Dials of download sources that are slow to come up get the next address beside them.
        for c in self.conns.values_mut() {
            c.race_at = c.race_at.filter(|&t| t > now && !c.session.is_established());
        }
        let roots: Vec<ContentRoot> = self.downloads.keys().copied().collect();
        for root in roots {
            self.dial_missing(now, root, true);
        }
        let stall = self.config.stall_timeout;
        let mut failed = Vec::new();
        for (root, d) in self.downloads.iter_mut() {
            d.transfer.expire(now, self.config.request_timeout);
            let looking = d.finding > 0 && d.finding_until.is_some_and(|t| now < t);
            if d.transfer.stalled(now, stall) && !looking {
                failed.push(*root);
            }
        }
        for root in failed {
            self.fail_download(root);
        }
        self.redial_persistent(now);
        self.fill_outbound(now);
        self.dht_handle_timeout(now);
        self.after_input(now);
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.flush(id);
        }
    }

    /// When [`Engine::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conns = self.conns.iter().flat_map(|(id, c)| {
            let hs = c.session.poll_timeout();
            let idle = Some(c.last_rx + self.config.idle_timeout);
            let ping = c.session.is_established().then_some(c.next_ping);
            let waiting =
                self.downloads.values().filter_map(|d| d.transfer.waiting_since(*id)).max();
            let silence = waiting
                .filter(|_| c.session.is_established())
                .map(|since| since.max(c.last_rx) + self.config.silence_timeout);
            let race = c.race_at.filter(|_| !c.session.is_established());
            [hs, idle, ping, silence, race]
        });
        let (stall, request) = (self.config.stall_timeout, self.config.request_timeout);
        let downloads = self
            .downloads
            .values()
            .flat_map(|d| [d.transfer.deadline(stall, request), d.next_redial]);
        let persistent = self
            .persistent
            .iter()
            .filter(|(a, _)| !self.is_connected_to(a))
            .map(|(_, p)| p.next_try);
        conns.chain(downloads).chain(persistent).chain([self.dht_timeout()]).flatten().min()
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the owner.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Current connections (exchanges, which are not links to peers, left out).
    pub fn peers(&self) -> Vec<PeerSummary> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.session.is_exchange())
            .map(|(&conn, c)| PeerSummary {
                conn,
                node_id: c.peer_id(),
                addr: c.addr.clone(),
                outbound: c.outbound,
                established: c.session.is_established(),
                user_agent: c.peer.as_ref().map(|p| p.hello.user_agent.clone()),
                anonymous: c.session.is_anonymous(),
            })
            .collect()
    }

    /// The address book (bounded, bucketed).
    pub fn addrs(&self) -> &addrbook::AddrBook {
        &self.addrs
    }

    /// Adds an address the user supplied to the address book.
    pub fn add_addr(&mut self, now: Instant, addr: PeerAddr) {
        let _ = self.addrs.add_trusted(&addr, now);
    }

    /// Whether `source` ranked itself down to a ban.
    fn is_banned(&self, source: &SourceId) -> bool {
        is_banned(&self.reputation, source)
    }

    /// A source's reputation score (0 is neutral; negative after offences).
    pub fn reputation(&self, source: &SourceId) -> i64 {
        self.reputation.get(source).copied().unwrap_or(0)
    }
}

/// What the address book groups a link's gossip by: the address we dialled, the remote IP of
/// an inbound link, or (on transports without IPs) the peer's identity.
fn source_addr(c: &Conn, peer: NodeId) -> PeerAddr {
    let text = match (&c.addr, c.remote) {
        (Some(a), _) => return a.clone(),
        (None, Some(IpAddr::V4(ip))) => format!("tcp/{ip}:0"),
        (None, Some(IpAddr::V6(ip))) => format!("tcp/[{ip}]:0"),
        (None, None) => format!("id/{}", peer.short()),
    };
    PeerAddr::new(&text).unwrap_or_else(|_| c.addr.clone().unwrap_or_else(fallback_source))
}

/// A fixed source for the (impossible) case that a source address does not format.
fn fallback_source() -> PeerAddr {
    PeerAddr::new("id/unknown").unwrap_or_else(|_| unreachable!("a valid literal address"))
}

/// Sends a transfer message on a stream (wrapping it for a relayed stream).
fn send_on(conns: &mut BTreeMap<ConnId, Conn>, stream: StreamId, msg: TransferMsg) {
    if let Some(c) = conns.get_mut(&stream.conn()) {
        send_one(c, stream, msg);
    }
}

fn send_one(c: &mut Conn, stream: StreamId, msg: TransferMsg) {
    let _ = match stream {
        StreamId::Direct(_) => c.session.send(&Message::Transfer(msg)),
        StreamId::Relayed(_, n) => c
            .session
            .send(&Message::Relay(RelayMsg::Data { stream: n, payload: msg.encode_to_vec() })),
    };
}

#[cfg(test)]
mod tests;
