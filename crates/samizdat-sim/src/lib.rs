//! Deterministic network simulator: virtual time, lossy links, partitions, crashes.
//!
//! # Role in Samizdat
//!
//! Samizdat's protocol crates are sans-IO state machines: they take `now: Instant` as an
//! argument and never touch sockets or clocks. In production a runtime drives them over TCP.
//! This crate drives the *same* state machines in tests: many nodes in one process, one
//! virtual clock, an in-memory network whose every random decision comes from one seed. The
//! same seed gives the same event trace ([`Sim::trace_digest`]), so a failing scenario replays
//! exactly.
//!
//! The crate has no threads, no async runtime, and reads the OS clock only once, at
//! [`Sim::new`], to get a base [`Instant`]. After that, virtual time is that base plus a
//! [`Duration`](std::time::Duration) that only moves when the next event is processed.
//!
//! # Layers
//!
//! ```text
//!   Host (protocol state machine, one per node)      <- trait `Host`, implemented by callers
//!     | accept/connected/receive/closed/timeout        ^ poll_action: Connect/Send/Close
//!   transport (per connection: SYN/SYN-ACK, segments, SACK, RTO, FIN, RST, keepalive)
//!     | packets                                       ^
//!   links (latency, jitter, bandwidth + bounded queue, random loss, cuts, middleboxes)
//! ```
//!
//! Hosts see reliable, ordered byte streams, like TCP. Underneath, the simulator runs a small
//! deterministic transport over lossy, reordering packet links: segments of
//! [`TransportConfig::mss`] bytes, cumulative plus selective acks, loss detection by
//! reordering threshold (RACK-like) with a retransmission timeout as backstop, a fixed or AIMD
//! window, SYN retries, FIN, RST and keepalives. Every segment crossing a link passes any
//! [`Middlebox`] installed on it, which can pass, drop, delay or rewrite it, or inject resets;
//! that is where censors and adversaries plug in.
//!
//! # Example
//!
//! ```
//! use std::collections::VecDeque;
//! use std::time::{Duration, Instant};
//! use samizdat_sim::{Action, ConnId, Host, NodeId, Sim, SimConfig};
//!
//! /// Sends "hello" to node 1 at start-up and records what it receives.
//! #[derive(Default)]
//! struct Hello { talk_to: Option<NodeId>, actions: VecDeque<Action>, got: Vec<u8>, next: u64 }
//!
//! impl Host for Hello {
//!     fn accept(&mut self, _now: Instant, _peer: NodeId) -> ConnId {
//!         self.next += 1;
//!         ConnId(self.next)
//!     }
//!     fn connected(&mut self, _now: Instant, conn: ConnId) {
//!         self.actions.push_back(Action::Send { conn, data: b"hello".to_vec() });
//!         self.actions.push_back(Action::Close { conn });
//!     }
//!     fn connect_failed(&mut self, _now: Instant, _conn: ConnId) {}
//!     fn receive(&mut self, _now: Instant, _conn: ConnId, data: &[u8]) {
//!         self.got.extend_from_slice(data);
//!     }
//!     fn closed(&mut self, _now: Instant, _conn: ConnId) {}
//!     fn timeout(&mut self, _now: Instant) {}
//!     fn poll_action(&mut self, _now: Instant) -> Option<Action> {
//!         if let Some(peer) = self.talk_to.take() {
//!             return Some(Action::Connect { conn: ConnId(0), peer });
//!         }
//!         self.actions.pop_front()
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> { None }
//! }
//!
//! let mut sim = Sim::new(7, SimConfig::default());
//! let a = sim.add_node(Hello::default());
//! let b = sim.add_node(Hello::default());
//! sim.with_host(a, |host, _now| host.talk_to = Some(b))?;
//! assert!(sim.run_until_idle());
//! assert_eq!(sim.host(b).map(|h| h.got.clone()), Some(b"hello".to_vec()));
//! assert!(sim.elapsed() < Duration::from_secs(1));
//! # Ok::<(), samizdat_sim::SimError>(())
//! ```
#![forbid(unsafe_code)]

mod censor;
mod config;
mod error;
mod fingerprint;
mod middlebox;
mod sim;
mod stats;
mod trace;
mod transport;

use std::time::Instant;

pub use censor::{FetVerdict, FullyEncryptedCensor, MAX_PENDING_FLOWS, classify_first_payload};
pub use config::{CongestionControl, LinkConfig, SimConfig, TransportConfig};
pub use error::SimError;
pub use fingerprint::{ClientHello, is_grease, ja4};
pub use middlebox::{Blocklist, Middlebox, RstAfterBytes, Segment, SegmentKind, Verdict};
pub use sim::Sim;
pub use stats::{LinkStats, SimStats};
pub use trace::{TraceEvent, TraceKind};

/// A simulated node's index, which is also its network address.
pub type NodeId = usize;

/// A connection handle, allocated by the [`Host`] that owns the connection.
///
/// Outbound connections get the id the host put in [`Action::Connect`]; inbound connections
/// get the id the host returned from [`Host::accept`]. Ids are per host: two hosts may use the
/// same number. A host may reuse an id once it has seen [`Host::closed`] or
/// [`Host::connect_failed`] for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// What a host asks the simulator to do, returned from [`Host::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a reliable byte stream to `peer`; the outcome is [`Host::connected`] or
    /// [`Host::connect_failed`] for `conn`.
    Connect {
        /// The host's id for the new connection; must not be in use.
        conn: ConnId,
        /// The node to connect to.
        peer: NodeId,
    },
    /// Queue bytes on a connection. They are sent in order as the transport window allows;
    /// sending may start before the connection is established. The simulator does not bound
    /// the queue: the host decides how much it hands over.
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Close gracefully: queued bytes are delivered, then a FIN. The host keeps receiving
    /// until the peer's FIN arrives, then gets [`Host::closed`].
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// A protocol state machine the simulator drives; one per node.
///
/// All methods take the virtual `now`. After every call to one of the event methods the
/// simulator calls [`Host::poll_action`] until it returns `None`, then reads
/// [`Host::poll_timeout`].
///
/// Every connection the host learns about through [`Host::accept`] or [`Host::connected`]
/// ends with exactly one [`Host::closed`] (graceful close, reset, or timeout), unless the
/// node crashes first. An outbound connection that never establishes ends with exactly one
/// [`Host::connect_failed`] instead.
pub trait Host {
    /// Called for a new inbound connection from `peer`; the host returns the [`ConnId`] it
    /// will use for it.
    fn accept(&mut self, now: Instant, peer: NodeId) -> ConnId;
    /// An outbound connection the host asked for ([`Action::Connect`]) is established.
    fn connected(&mut self, now: Instant, conn: ConnId);
    /// An outbound connection attempt failed (unreachable, refused, or timed out).
    fn connect_failed(&mut self, now: Instant, conn: ConnId);
    /// Bytes arrived on a connection, in order.
    fn receive(&mut self, now: Instant, conn: ConnId, data: &[u8]);
    /// The connection closed (FIN from the peer, RST, or timeout).
    fn closed(&mut self, now: Instant, conn: ConnId);
    /// Virtual time reached the host's requested timeout.
    fn timeout(&mut self, now: Instant);
    /// Next thing the host wants done; called repeatedly until `None` after every call above.
    fn poll_action(&mut self, now: Instant) -> Option<Action>;
    /// When the host next wants [`Host::timeout`] called. After `timeout` runs, this must
    /// return a later instant or `None`, or the host is woken again at the same time.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl<T: Host + ?Sized> Host for Box<T> {
    fn accept(&mut self, now: Instant, peer: NodeId) -> ConnId {
        (**self).accept(now, peer)
    }
    fn connected(&mut self, now: Instant, conn: ConnId) {
        (**self).connected(now, conn)
    }
    fn connect_failed(&mut self, now: Instant, conn: ConnId) {
        (**self).connect_failed(now, conn)
    }
    fn receive(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        (**self).receive(now, conn, data)
    }
    fn closed(&mut self, now: Instant, conn: ConnId) {
        (**self).closed(now, conn)
    }
    fn timeout(&mut self, now: Instant) {
        (**self).timeout(now)
    }
    fn poll_action(&mut self, now: Instant) -> Option<Action> {
        (**self).poll_action(now)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        (**self).poll_timeout()
    }
}
