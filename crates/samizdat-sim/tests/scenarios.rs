//! Scenario tests: whole networks in the simulator with fixed seeds.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use samizdat_sim::{
    Action, Blocklist, CongestionControl, ConnId, Host, LinkConfig, NodeId, RstAfterBytes, Segment,
    SegmentKind, Sim, SimConfig, Verdict,
};

/// A scriptable host: opens connections on request, records everything, optionally echoes.
#[derive(Default)]
struct TestHost {
    next_conn: u64,
    echo: bool,
    actions: VecDeque<Action>,
    received: BTreeMap<ConnId, Vec<u8>>,
    accepted: Vec<(ConnId, NodeId)>,
    connected: Vec<ConnId>,
    failed: Vec<ConnId>,
    closed: BTreeMap<ConnId, Instant>,
    timer: Option<Instant>,
    timeouts: u32,
}

impl TestHost {
    fn echo() -> Self {
        Self { echo: true, ..Self::default() }
    }

    /// Connects to `peer`, sends `data`, and closes if `close`.
    fn open(&mut self, peer: NodeId, data: Vec<u8>, close: bool) -> ConnId {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        self.actions.push_back(Action::Connect { conn, peer });
        if !data.is_empty() {
            self.actions.push_back(Action::Send { conn, data });
        }
        if close {
            self.actions.push_back(Action::Close { conn });
        }
        conn
    }

    fn got(&self, conn: ConnId) -> &[u8] {
        self.received.get(&conn).map_or(&[], |v| v.as_slice())
    }

    fn total_received(&self) -> usize {
        self.received.values().map(Vec::len).sum()
    }
}

impl Host for TestHost {
    fn accept(&mut self, _now: Instant, peer: NodeId) -> ConnId {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        self.accepted.push((conn, peer));
        conn
    }
    fn connected(&mut self, _now: Instant, conn: ConnId) {
        self.connected.push(conn);
    }
    fn connect_failed(&mut self, _now: Instant, conn: ConnId) {
        self.failed.push(conn);
    }
    fn receive(&mut self, _now: Instant, conn: ConnId, data: &[u8]) {
        self.received.entry(conn).or_default().extend_from_slice(data);
        if self.echo {
            self.actions.push_back(Action::Send { conn, data: data.to_vec() });
        }
    }
    fn closed(&mut self, now: Instant, conn: ConnId) {
        assert!(self.closed.insert(conn, now).is_none(), "closed twice: {conn:?}");
    }
    fn timeout(&mut self, _now: Instant) {
        self.timer = None;
        self.timeouts += 1;
    }
    fn poll_action(&mut self, _now: Instant) -> Option<Action> {
        self.actions.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }
}

/// Deterministic pseudo-random bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn lossy(latency_ms: u64, loss: f64) -> LinkConfig {
    LinkConfig { latency: Duration::from_millis(latency_ms), loss, ..LinkConfig::default() }
}

/// Sends `len` bytes from node 0 to node 1 over `link`; returns (virtual time, wall time).
fn bulk(seed: u64, len: usize, link: LinkConfig) -> (Sim<TestHost>, Duration, Duration) {
    let started = Instant::now();
    let mut sim = Sim::new(seed, SimConfig::default());
    let a = sim.add_node(TestHost::default());
    let b = sim.add_node(TestHost::default());
    sim.set_link(a, b, link).unwrap();
    let data = pattern(len, seed);
    let conn = sim.with_host(a, |h, _| h.open(b, data.clone(), true)).unwrap();
    assert!(sim.run_until_idle());
    let virt = sim.elapsed();
    let wall = started.elapsed();
    let hb = sim.host(b).unwrap();
    assert_eq!(hb.accepted.len(), 1);
    let (bconn, _) = hb.accepted[0];
    assert!(hb.got(bconn) == data.as_slice(), "stream corrupted");
    assert!(hb.closed.contains_key(&bconn), "receiver not closed");
    let ha = sim.host(a).unwrap();
    assert_eq!(ha.connected, [conn]);
    assert!(ha.closed.contains_key(&conn), "sender not closed");
    assert_eq!(sim.stats().host_errors, 0);
    (sim, virt, wall)
}

#[test]
fn bulk_8mib_over_lossy_50ms_link() {
    let len = 8 << 20;
    let (sim, virt, wall) = bulk(1, len, lossy(50, 0.05));
    let st = sim.link_stats(0, 1);
    let goodput = len as f64 / virt.as_secs_f64() / 1e6;
    println!(
        "8 MiB, 50 ms, 5% loss: virtual {virt:?}, wall {wall:?}, goodput {goodput:.2} MB/s, \
         sent {} B payload, retransmitted {} B ({} segments), lost {}",
        st.payload_bytes_sent, st.retransmitted_bytes, st.retransmitted_packets, st.lost
    );
    assert!(virt < Duration::from_secs(10), "too slow: {virt:?}");
    assert!(st.payload_bytes_sent >= len as u64);
    assert!(st.retransmitted_bytes > 0);
    // Selective retransmission: little beyond what was lost is re-sent.
    assert!(st.retransmitted_bytes < len as u64 / 5, "retransmitted {}", st.retransmitted_bytes);
}

#[test]
#[ignore = "acceptance-size run; `cargo test -p samizdat-sim --release -- --ignored`"]
fn bulk_64mib_over_lossy_50ms_link() {
    let len = 64 << 20;
    let (sim, virt, wall) = bulk(2, len, lossy(50, 0.05));
    let st = sim.link_stats(0, 1);
    println!(
        "64 MiB, 50 ms, 5% loss: virtual {virt:?}, wall {wall:?}, goodput {:.2} MB/s, \
         retransmitted {} B ({} segments, {} lost), events {}",
        len as f64 / virt.as_secs_f64() / 1e6,
        st.retransmitted_bytes,
        st.retransmitted_packets,
        st.lost,
        sim.stats().events
    );
    assert!(virt < Duration::from_secs(60));
}

#[test]
fn aimd_over_narrow_link_with_small_queue() {
    let link = LinkConfig {
        latency: Duration::from_millis(20),
        bandwidth_bps: 10_000_000,
        queue_limit: 64 * 1024,
        ..LinkConfig::default()
    };
    let mut config = SimConfig::default();
    config.transport.congestion = CongestionControl::Aimd;
    let mut sim = Sim::new(3, config);
    let a = sim.add_node(TestHost::default());
    let b = sim.add_node(TestHost::default());
    sim.set_link(a, b, link).unwrap();
    let data = pattern(2 << 20, 3);
    sim.with_host(a, |h, _| h.open(b, data.clone(), true)).unwrap();
    assert!(sim.run_until_idle());
    let hb = sim.host(b).unwrap();
    assert!(hb.got(hb.accepted[0].0) == data.as_slice());
    let st = sim.link_stats(a, b);
    let virt = sim.elapsed();
    println!("AIMD 2 MiB over 10 Mbit/s: {virt:?}, queue drops {}", st.dropped_queue);
    // 2 MiB at 10 Mbit/s takes at least 1.7 s; AIMD should stay within 3x of that.
    assert!(virt > Duration::from_millis(1600) && virt < Duration::from_secs(6), "{virt:?}");
}

/// A mixed scenario: 20 nodes, lossy jittery links, echo traffic, a cut and a crash.
fn mixed_scenario(seed: u64) -> [u8; 32] {
    let config = SimConfig {
        default_link: LinkConfig {
            latency: Duration::from_millis(15),
            jitter: Duration::from_millis(10),
            loss: 0.03,
            ..LinkConfig::default()
        },
        ..SimConfig::default()
    };
    let mut sim = Sim::new(seed, config);
    for _ in 0..20 {
        sim.add_node(TestHost::echo());
    }
    for i in 0..20usize {
        let peer = (sim.node_seed(i) % 20) as usize;
        let peer = if peer == i { (i + 1) % 20 } else { peer };
        sim.with_host(i, |h, now| {
            h.open(peer, pattern(20_000 + i * 100, i as u64), false);
            h.timer = Some(now + Duration::from_millis(300));
        })
        .unwrap();
    }
    sim.run_for(Duration::from_millis(200));
    sim.cut(0, 1).unwrap();
    sim.crash(5).unwrap();
    sim.run_for(Duration::from_secs(2));
    sim.restart(5, TestHost::echo()).unwrap();
    sim.heal(0, 1).unwrap();
    sim.run_for(Duration::from_secs(20));
    sim.trace_digest()
}

#[test]
fn same_seed_same_trace() {
    let a = mixed_scenario(42);
    let b = mixed_scenario(42);
    let c = mixed_scenario(43);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn partition_closes_both_ends_and_heal_allows_new_connection() {
    let config = SimConfig { trace_log_capacity: 64, ..SimConfig::default() };
    let mut sim = Sim::new(4, config);
    let a = sim.add_node(TestHost::default());
    let b = sim.add_node(TestHost::default());
    sim.set_link(a, b, lossy(50, 0.0)).unwrap();
    let conn = sim.with_host(a, |h, _| h.open(b, pattern(4 << 20, 4), true)).unwrap();
    let mid = sim
        .run_until_cond(Duration::from_secs(30), |s| s.host(b).unwrap().total_received() > 1 << 20);
    assert!(mid, "transfer did not get going");
    let cut_at = sim.elapsed();
    let sent_before = sim.link_stats(a, b).payload_bytes_sent;
    sim.cut(a, b).unwrap();
    sim.run_for(Duration::from_secs(15));
    let dead = TransportDefaults::dead();
    let ha = sim.host(a).unwrap();
    let hb = sim.host(b).unwrap();
    let bconn = hb.accepted[0].0;
    let a_closed = ha.closed[&conn] - sim.instant(cut_at);
    let b_closed = hb.closed[&bconn] - sim.instant(cut_at);
    println!("after cut: sender closed in {a_closed:?}, receiver in {b_closed:?}");
    assert!(a_closed <= dead + Duration::from_secs(1));
    assert!(b_closed <= dead + Duration::from_secs(1));
    assert!(hb.got(bconn).len() < 4 << 20);
    assert!(sim.link_stats(a, b).payload_bytes_sent > sent_before, "no retransmissions");
    assert!(sim.link_stats(a, b).dropped_cut > 0);
    assert!(sim.trace_log().count() == 64);

    sim.heal(a, b).unwrap();
    let data = pattern(100_000, 5);
    let conn2 = sim.with_host(a, |h, _| h.open(b, data.clone(), true)).unwrap();
    assert!(sim.run_until_idle());
    let hb = sim.host(b).unwrap();
    assert_eq!(hb.accepted.len(), 2);
    assert!(hb.got(hb.accepted[1].0) == data.as_slice());
    assert!(sim.host(a).unwrap().closed.contains_key(&conn2));
}

struct TransportDefaults;
impl TransportDefaults {
    fn dead() -> Duration {
        SimConfig::default().transport.dead_timeout
    }
}

#[test]
fn reset_link_closes_both_ends_at_once() {
    let mut sim = Sim::new(5, SimConfig::default());
    let a = sim.add_node(TestHost::default());
    let b = sim.add_node(TestHost::default());
    let conn = sim.with_host(a, |h, _| h.open(b, pattern(1 << 20, 1), false)).unwrap();
    sim.run_for(Duration::from_millis(100));
    sim.reset_link(a, b).unwrap();
    let at = sim.now();
    assert_eq!(sim.host(a).unwrap().closed.get(&conn), Some(&at));
    assert_eq!(sim.host(b).unwrap().closed.len(), 1);
    assert!(sim.run_until_idle());
}

#[test]
fn crash_and_restart() {
    let mut sim = Sim::new(6, SimConfig::default());
    let a = sim.add_node(TestHost::default());
    let b = sim.add_node(TestHost::echo());

    // Connecting to a crashed node fails after the connect timeout.
    sim.crash(b).unwrap();
    assert!(sim.host(b).is_none());
    let start = sim.now();
    let c1 = sim.with_host(a, |h, _| h.open(b, b"hi".to_vec(), true)).unwrap();
    assert!(sim.run_until_idle());
    let ha = sim.host(a).unwrap();
    assert_eq!(ha.failed, [c1]);
    let took = sim.now() - start;
    println!("connect to crashed node failed after {took:?}");
    assert!(took >= Duration::from_secs(9) && took <= Duration::from_secs(11));
    assert_eq!(sim.crash(b), Err(samizdat_sim::SimError::NodeDown(b)));

    // After restart it works, and an open connection dies when the node crashes and
    // comes back: the peer's next segment draws an RST.
    sim.restart(b, TestHost::echo()).unwrap();
    let c2 = sim.with_host(a, |h, _| h.open(b, b"ping".to_vec(), false)).unwrap();
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.host(a).unwrap().got(c2), b"ping");
    sim.crash(b).unwrap();
    sim.run_for(Duration::from_millis(500));
    sim.restart(b, TestHost::echo()).unwrap();
    let t = sim.now();
    sim.with_host(a, |h, _| h.actions.push_back(Action::Send { conn: c2, data: b"x".to_vec() }))
        .unwrap();
    sim.run_for(Duration::from_secs(1));
    let closed_at = sim.host(a).unwrap().closed[&c2];
    assert!(closed_at - t < Duration::from_millis(100), "RST not seen");
    assert!(sim.host(b).unwrap().accepted.is_empty());
    assert!(sim.link_stats(a, b).dropped_down > 0 || sim.stats().links.dropped_down > 0);

    // Restarted node's host answers new connections.
    let c3 = sim.with_host(a, |h, _| h.open(b, b"again".to_vec(), true)).unwrap();
    assert!(sim.run_until_idle());
    assert_eq!(sim.host(a).unwrap().got(c3), b"again");
}

#[test]
fn thousand_nodes() {
    let started = Instant::now();
    let n = 1000;
    let config = SimConfig {
        default_link: LinkConfig {
            latency: Duration::from_millis(20),
            jitter: Duration::from_millis(20),
            loss: 0.01,
            ..LinkConfig::default()
        },
        ..SimConfig::default()
    };
    let mut sim = Sim::new(7, config);
    for _ in 0..n {
        sim.add_node(TestHost::echo());
    }
    let mut expected = Vec::new();
    for i in 0..n {
        let mut x = sim.node_seed(i);
        for k in 0..3 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut peer = ((x >> 33) % n as u64) as usize;
            if peer == i {
                peer = (peer + 1) % n;
            }
            let msg = pattern(200, (i * 3 + k) as u64);
            let conn = sim.with_host(i, |h, _| h.open(peer, msg.clone(), true)).unwrap();
            expected.push((i, conn, msg));
        }
    }
    assert!(sim.run_until_idle());
    let virt = sim.elapsed();
    for (i, conn, msg) in &expected {
        let h = sim.host(*i).unwrap();
        assert_eq!(h.got(*conn), msg.as_slice(), "node {i} {conn:?}");
        assert!(h.closed.contains_key(conn));
    }
    let stats = sim.stats();
    println!(
        "1000 nodes x 3 echo connections: virtual {virt:?}, wall {:?}, events {}, \
         segments {}",
        started.elapsed(),
        stats.events,
        stats.links.packets_sent
    );
    assert_eq!(stats.connections_opened, 6000);
    assert!(virt < Duration::from_secs(30), "{virt:?}");
}

#[test]
fn blocklist_middlebox_blocks_a_node() {
    let mut sim = Sim::new(8, SimConfig::default());
    let a = sim.add_node(TestHost::default());
    let b = sim.add_node(TestHost::echo());
    let c = sim.add_node(TestHost::echo());
    // A censor in front of `a` that blocks `b`.
    sim.add_node_middlebox(a, Box::new(Blocklist::new([b]))).unwrap();
    let to_b = sim.with_host(a, |h, _| h.open(b, b"blocked?".to_vec(), true)).unwrap();
    let to_c = sim.with_host(a, |h, _| h.open(c, b"fine".to_vec(), true)).unwrap();
    assert!(sim.run_until_idle());
    let ha = sim.host(a).unwrap();
    assert_eq!(ha.failed, [to_b]);
    assert_eq!(ha.got(to_c), b"fine");
    assert!(sim.host(b).unwrap().accepted.is_empty());
    assert!(sim.link_stats(a, b).dropped_middlebox > 0);
}

#[test]
fn rst_injection_middlebox_cuts_flows_over_budget() {
    let mut sim = Sim::new(9, SimConfig::default());
    let a = sim.add_node(TestHost::default());
    let b = sim.add_node(TestHost::default());
    sim.set_link(a, b, lossy(30, 0.01)).unwrap();
    let limit = 100_000;
    sim.add_middlebox(a, b, Box::new(RstAfterBytes::new(limit))).unwrap();
    let small = sim.with_host(a, |h, _| h.open(b, pattern(50_000, 1), true)).unwrap();
    let big = sim.with_host(a, |h, _| h.open(b, pattern(1 << 20, 2), true)).unwrap();
    assert!(sim.run_until_idle());
    let ha = sim.host(a).unwrap();
    let hb = sim.host(b).unwrap();
    assert!(ha.closed.contains_key(&small) && ha.closed.contains_key(&big));
    assert_eq!(hb.closed.len(), 2);
    let lens: Vec<usize> = hb.accepted.iter().map(|(c, _)| hb.got(*c).len()).collect();
    assert!(lens.contains(&50_000), "{lens:?}");
    assert!(lens.iter().any(|&l| l <= limit as usize), "{lens:?}");
    assert!(sim.link_stats(a, b).rst_injected > 0);
}

#[test]
fn closure_middlebox_rewrites_and_delays() {
    let mut sim = Sim::new(10, SimConfig::default());
    let a = sim.add_node(TestHost::default());
    let b = sim.add_node(TestHost::default());
    let rewrite = |_now: Duration, s: &Segment<'_>| {
        if s.kind == SegmentKind::Data && s.payload == b"secret" {
            Verdict::Rewrite(b"public".to_vec())
        } else if s.kind == SegmentKind::Syn {
            Verdict::Delay(Duration::from_millis(500))
        } else {
            Verdict::Pass
        }
    };
    sim.add_middlebox(a, b, Box::new(rewrite)).unwrap();
    let conn = sim.with_host(a, |h, _| h.open(b, b"secret".to_vec(), true)).unwrap();
    assert!(sim.run_until_idle());
    let hb = sim.host(b).unwrap();
    assert_eq!(hb.got(hb.accepted[0].0), b"public");
    assert!(sim.host(a).unwrap().closed.contains_key(&conn));
    assert!(sim.elapsed() > Duration::from_millis(500));
}

/// A connection whose first SYN is held back `syn_delay` by a middlebox: the retransmitted
/// SYN opens it, it carries a few bytes and closes, and the original SYN turns up afterwards.
/// Returns the acceptor's host.
fn late_syn(time_wait: Duration, syn_delay: Duration) -> TestHost {
    let mut config = SimConfig::default();
    config.transport.time_wait = time_wait;
    let mut sim = Sim::new(12, config);
    let a = sim.add_node(TestHost::default());
    let b = sim.add_node(TestHost::default());
    let mut first = true;
    let hold_first_syn = move |_now: Duration, s: &Segment<'_>| {
        if s.kind == SegmentKind::Syn && std::mem::take(&mut first) {
            Verdict::Delay(syn_delay)
        } else {
            Verdict::Pass
        }
    };
    sim.add_middlebox(a, b, Box::new(hold_first_syn)).unwrap();
    let conn = sim.with_host(a, |h, _| h.open(b, b"once".to_vec(), true)).unwrap();
    assert!(sim.run_until_idle());
    assert!(sim.elapsed() > syn_delay, "the held SYN was delivered");
    assert!(sim.host(a).unwrap().closed.contains_key(&conn));
    sim.host(b)
        .map(|h| TestHost {
            accepted: h.accepted.clone(),
            received: h.received.clone(),
            closed: h.closed.clone(),
            ..TestHost::default()
        })
        .unwrap()
}

#[test]
fn stray_syn_within_time_wait_is_refused() {
    let hb = late_syn(Duration::from_secs(60), Duration::from_secs(5));
    assert_eq!(hb.accepted.len(), 1, "the late SYN opened a second connection");
    assert_eq!(hb.got(hb.accepted[0].0), b"once");
}

#[test]
fn finished_flows_are_forgotten_after_time_wait() {
    // With a 1 s time-wait the node no longer remembers the flow when its 5 s-late SYN
    // arrives: the SYN is taken for a new connection (which the initiator, which has
    // forgotten the flow too, resets). Remembering every flow for ever is what limited how
    // many nodes fit in one simulation.
    let hb = late_syn(Duration::from_secs(1), Duration::from_secs(5));
    assert_eq!(hb.accepted.len(), 2);
    assert_eq!(hb.got(hb.accepted[0].0), b"once");
    assert!(hb.got(hb.accepted[1].0).is_empty());
    assert_eq!(hb.closed.len(), 2, "the stray connection was reset");
}

#[test]
fn host_timers_fire_at_requested_virtual_time() {
    let mut sim = Sim::new(11, SimConfig::default());
    let a = sim.add_node(TestHost::default());
    let at = sim.instant(Duration::from_millis(1234));
    sim.with_host(a, |h, _| h.timer = Some(at)).unwrap();
    assert!(sim.run_until_idle());
    assert_eq!(sim.host(a).unwrap().timeouts, 1);
    assert_eq!(sim.now(), at);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever the loss, jitter and bandwidth, streams in both directions arrive intact and
    /// in order, and both ends close.
    #[test]
    fn streams_survive_any_link(
        seed in any::<u64>(),
        latency_ms in 1u64..80,
        jitter_ms in 0u64..40,
        loss in 0.0f64..0.25,
        mbps in prop_oneof![Just(0u64), 1u64..200],
        len in 0usize..150_000,
        aimd in any::<bool>(),
    ) {
        let mut config = SimConfig::default();
        // Heavy loss may take many SYNs; this property is about integrity, not timeouts.
        config.transport.connect_timeout = Duration::from_secs(120);
        config.transport.dead_timeout = Duration::from_secs(120);
        if aimd {
            config.transport.congestion = CongestionControl::Aimd;
        }
        let mut sim = Sim::new(seed, config);
        let a = sim.add_node(TestHost::default());
        let b = sim.add_node(TestHost::echo());
        sim.set_link(a, b, LinkConfig {
            latency: Duration::from_millis(latency_ms),
            jitter: Duration::from_millis(jitter_ms),
            loss,
            bandwidth_bps: mbps * 1_000_000,
            queue_limit: 256 * 1024,
        }).unwrap();
        let data = pattern(len, seed);
        let conn = sim.with_host(a, |h, _| h.open(b, data.clone(), true)).unwrap();
        prop_assert!(sim.run_until_idle());
        let ha = sim.host(a).unwrap();
        let hb = sim.host(b).unwrap();
        prop_assert_eq!(ha.failed.len(), 0);
        prop_assert!(hb.got(hb.accepted[0].0) == data.as_slice());
        // The echo comes back intact too: the echo host replied before its FIN.
        prop_assert!(ha.got(conn) == data.as_slice());
        prop_assert!(ha.closed.contains_key(&conn));
        prop_assert_eq!(hb.closed.len(), 1);
        prop_assert_eq!(sim.stats().host_errors, 0);
    }
}
