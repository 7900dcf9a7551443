//! Memory per simulated node: a network of `NODES` hosts, each dialling `DIALS` random peers
//! and running a real encrypted [`Session`] (Noise XX, identities, `Hello`s, one `Ping`/`Pong`
//! each way) on every connection, over the simulated transport.
//!
//! ```sh
//! cargo run --release -p samizdat-sim --example sim_memory -- 10000 3
//! ```
//!
//! Prints the resident set size (from `/proc/self/status`) before the nodes are added, after
//! they are added, and once every session is established and idle, each divided by the
//! number of nodes, with the wall time of each phase. RSS counts what the allocator kept, so
//! it is an upper bound on what the nodes hold.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use samizdat_identity::Identity;
use samizdat_session::{Session, SessionConfig, SessionEvent};
use samizdat_sim::{Action, ConnId, Host, LinkConfig, NodeId, Sim, SimConfig};
use samizdat_wire::Message;

const WALL_SECS: u64 = 1_800_000_000;

/// A node that runs one session per connection.
struct SessionHost {
    config: SessionConfig,
    rng: ChaCha20Rng,
    base: Instant,
    sessions: BTreeMap<ConnId, Session>,
    actions: VecDeque<Action>,
    next_conn: u64,
    /// Dials still to make, latest first.
    pending_dials: Vec<(Instant, NodeId)>,
    established: u32,
    pongs: u32,
    errors: u32,
}

impl SessionHost {
    fn new(seed: u64, base: Instant) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let identity = Identity::generate(&mut rng);
        let config = SessionConfig::new(identity);
        SessionHost {
            config,
            rng,
            base,
            sessions: BTreeMap::new(),
            actions: VecDeque::new(),
            next_conn: 0,
            pending_dials: Vec::new(),
            established: 0,
            pongs: 0,
            errors: 0,
        }
    }

    fn seed(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        self.rng.fill_bytes(&mut s);
        s
    }

    fn wall(&self, now: Instant) -> u64 {
        WALL_SECS + now.saturating_duration_since(self.base).as_secs()
    }

    fn dial(&mut self, now: Instant, peer: NodeId) {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        let seed = self.seed();
        let session = Session::initiator(self.config.clone(), seed, self.wall(now), now).unwrap();
        self.sessions.insert(conn, session);
        self.actions.push_back(Action::Connect { conn, peer });
        self.flush(conn);
    }

    /// Queues what the session wants to send.
    fn flush(&mut self, conn: ConnId) {
        if let Some(s) = self.sessions.get_mut(&conn) {
            while let Some(data) = s.poll_transmit() {
                self.actions.push_back(Action::Send { conn, data });
            }
        }
    }

    fn fail(&mut self, conn: ConnId) {
        self.errors += 1;
        self.sessions.remove(&conn);
        self.actions.push_back(Action::Close { conn });
    }
}

impl Host for SessionHost {
    fn accept(&mut self, now: Instant, _peer: NodeId) -> ConnId {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        let seed = self.seed();
        let session = Session::responder(self.config.clone(), seed, self.wall(now), now);
        self.sessions.insert(conn, session);
        conn
    }
    fn connected(&mut self, _now: Instant, _conn: ConnId) {}
    fn connect_failed(&mut self, _now: Instant, conn: ConnId) {
        self.errors += 1;
        self.sessions.remove(&conn);
    }
    fn receive(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        let Some(s) = self.sessions.get_mut(&conn) else { return };
        match drive(s, now, conn, data) {
            Ok((established, pongs)) => {
                self.established += established;
                self.pongs += pongs;
                self.flush(conn);
            }
            Err(_) => self.fail(conn),
        }
    }
    fn closed(&mut self, _now: Instant, conn: ConnId) {
        self.sessions.remove(&conn);
    }
    fn timeout(&mut self, now: Instant) {
        while self.pending_dials.last().is_some_and(|&(at, _)| at <= now) {
            if let Some((_, peer)) = self.pending_dials.pop() {
                self.dial(now, peer);
            }
        }
    }
    fn poll_action(&mut self, _now: Instant) -> Option<Action> {
        self.actions.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.pending_dials.last().map(|&(at, _)| at)
    }
}

/// Feeds bytes to a session and answers: a `Ping` once established, a `Pong` to each `Ping`.
/// Returns how many times it became established and how many `Pong`s arrived.
fn drive(
    s: &mut Session,
    now: Instant,
    conn: ConnId,
    data: &[u8],
) -> Result<(u32, u32), samizdat_session::SessionError> {
    s.handle_input(now, data)?;
    let (mut established, mut pongs) = (0, 0);
    while let Some(ev) = s.poll_event() {
        match ev {
            SessionEvent::Established(_) => {
                established += 1;
                s.send(&Message::Ping { nonce: conn.0 })?;
            }
            SessionEvent::Message(Message::Ping { nonce }) => s.send(&Message::Pong { nonce })?,
            SessionEvent::Message(_) => pongs += 1,
            // Only sessions run here, never exchanges.
            SessionEvent::Query(_) | SessionEvent::Answer(_) => {}
        }
    }
    Ok((established, pongs))
}

/// Resident set size in bytes (Linux), or 0 where `/proc` is missing.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let dials: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    // Dials are spread evenly over this much virtual time (0: all at once), so that the
    // figure measures what established sessions hold rather than the allocator's leftovers
    // from every handshake running at the same instant.
    let spread_ms: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let started = Instant::now();
    let rss0 = rss();

    let mut sim: Sim<SessionHost> = Sim::new(42, SimConfig::default());
    sim.set_default_link(LinkConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    })
    .unwrap();
    let base = sim.now();
    for i in 0..nodes {
        let seed = sim.node_seed(i);
        sim.add_node(SessionHost::new(seed, base));
    }
    let rss1 = rss();
    let t1 = started.elapsed();

    let mut pick = ChaCha20Rng::seed_from_u64(7);
    for i in 0..nodes {
        let mut plan = Vec::new();
        for d in 0..dials {
            let mut peer = (pick.next_u64() % nodes as u64) as usize;
            if peer == i {
                peer = (peer + 1) % nodes;
            }
            let slot = (i * dials + d) as u64;
            let at = base + Duration::from_millis(spread_ms * slot / (nodes * dials) as u64);
            plan.push((at, peer));
        }
        plan.reverse();
        sim.with_host(i, |h, now| {
            h.pending_dials = plan;
            h.timeout(now);
        })
        .unwrap();
    }
    assert!(sim.run_until_idle(), "network did not settle");
    let rss2 = rss();
    let t2 = started.elapsed();

    let (mut est, mut pongs, mut errors, mut sessions) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..nodes {
        let h = sim.host(i).unwrap();
        est += u64::from(h.established);
        pongs += u64::from(h.pongs);
        errors += u64::from(h.errors);
        sessions += h.sessions.len() as u64;
    }
    let n = nodes as u64;
    let kib = |b: u64| b as f64 / 1024.0;
    println!("nodes {nodes}, dials per node {dials}, dials spread over {spread_ms} ms");
    println!(
        "sizes: Session {} B, SessionConfig {} B",
        std::mem::size_of::<Session>(),
        std::mem::size_of::<SessionConfig>()
    );
    println!(
        "sessions open {sessions} ({:.1} per node), established ends {est}, pongs {pongs}, \
         errors {errors}",
        sessions as f64 / nodes as f64
    );
    println!("virtual time {:.2} s, events {}", sim.elapsed().as_secs_f64(), sim.stats().events);
    println!("RSS at start {:.1} MiB", kib(rss0) / 1024.0);
    println!(
        "after adding nodes: RSS {:.1} MiB, {:.2} KiB per node (wall {:.2} s)",
        kib(rss1) / 1024.0,
        kib(rss1.saturating_sub(rss0)) / n as f64,
        t1.as_secs_f64()
    );
    println!(
        "all sessions up and idle: RSS {:.1} MiB, {:.2} KiB per node (wall {:.2} s)",
        kib(rss2) / 1024.0,
        kib(rss2.saturating_sub(rss0)) / n as f64,
        t2.as_secs_f64()
    );
}
