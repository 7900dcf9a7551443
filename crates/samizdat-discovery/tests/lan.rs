//! LAN discovery over real sockets, with no mocks, in network namespaces of its own.
//!
//! The loopback interface of a host usually lacks the MULTICAST flag, and a test must not
//! multicast onto the real LAN nor clash with a system avahi on port 5353. So every test here
//! runs in a fresh network namespace: it re-runs this test binary, filtered to itself, under
//! `unshare --net`, and the child brings its private loopback up with `ip link set lo up
//! multicast on` before running the body. The namespace dies with the child; nothing is left
//! behind. Several nodes and raw sockets then share that loopback on the real mDNS port.
//!
//! `two_hosts_over_a_veth_link` goes one step further: two named namespaces joined by a veth
//! pair (`ip netns`, `ip link add … type veth`), one node process in each, so the datagrams
//! cross a link with the multicast TTL and interface options the method sets.
//!
//! Creating namespaces needs root. Without it every test prints a loud SKIPPED line and
//! passes; CI runs as root, so there they run.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)]

use samizdat_discovery::lan::dns::{CLASS_IN, Message, Question, rtype};
use samizdat_discovery::lan::service::{self, MIN_ANSWER_INTERVAL};
use samizdat_discovery::lan::{LanConfig, LanDiscovery, MDNS_GROUP_V4, MDNS_PORT};
use samizdat_discovery::{Discovery, DiscoveryError, PeerRecord, run_all, unix_now};
use samizdat_identity::{Identity, NodeId};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

/// Set in a child that runs inside its fresh namespace.
const CHILD_ENV: &str = "SAMIZDAT_LAN_TEST_NETNS";
/// Set in a child that plays one host of `two_hosts_over_a_veth_link`: "own,peer,address".
const HOST_ENV: &str = "SAMIZDAT_LAN_TEST_HOST";
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

fn skip(test: &str, why: &str) {
    use std::io::Write;
    // Written to the process's stderr directly: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(
        std::io::stderr(),
        "\n{bar}\nSKIPPED {test}: {why}\n(these tests need root to create network namespaces; \
         CI runs as root)\n{bar}\n",
        bar = "*".repeat(72)
    );
}

fn sh(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {program} (install iproute2): {e}"));
    assert!(status.success(), "{program} {} failed: {status}", args.join(" "));
}

/// In the child: brings the namespace's loopback up with MULTICAST and returns true, so the
/// test body runs. In the parent: runs the test in a child inside a fresh network namespace,
/// asserts that it passed, and returns false.
fn in_fresh_netns(test: &str) -> bool {
    if std::env::var_os(CHILD_ENV).is_some() {
        sh("ip", &["link", "set", "lo", "up", "multicast", "on"]);
        return true;
    }
    if !is_root() {
        skip(test, "not root");
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{test} failed in its network namespace: {}", out.status);
    assert!(stdout.contains("1 passed"), "{test}: the child ran no test");
    false
}

fn config() -> LanConfig {
    let mut c = LanConfig::default();
    c.interface = LOOPBACK;
    c
}

fn record(id: &Identity, port: u16) -> PeerRecord {
    PeerRecord::sign(id, &[format!("tcp/127.0.0.1:{port}")], unix_now()).unwrap()
}

fn nodes(records: &[PeerRecord]) -> Vec<NodeId> {
    let mut n: Vec<NodeId> = records.iter().map(PeerRecord::node_id).collect();
    n.sort();
    n
}

/// A third party on the LAN: a plain socket on the mDNS port, joined to the group.
fn raw_socket() -> UdpSocket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    let any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, MDNS_PORT));
    s.bind(&SockAddr::from(any)).unwrap();
    s.join_multicast_v4(&MDNS_GROUP_V4, &LOOPBACK).unwrap();
    s.set_multicast_if_v4(&LOOPBACK).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s.set_nonblocking(true).unwrap();
    UdpSocket::from_std(s.into()).unwrap()
}

const GROUP: SocketAddrV4 = SocketAddrV4::new(MDNS_GROUP_V4, MDNS_PORT);

/// Waits for a browse query for our service on `raw`.
async fn await_query(raw: &UdpSocket) {
    let service = config().service;
    let mut buf = vec![0u8; 9001];
    loop {
        let (n, _) = raw.recv_from(&mut buf).await.unwrap();
        if let Ok(m) = Message::decode(&buf[..n]) {
            if !m.is_response() && m.questions.iter().any(|q| q.name.eq_ignore_case(&service)) {
                return;
            }
        }
    }
}

/// Collects the DNS responses `raw` hears for `period`.
async fn responses(raw: &UdpSocket, period: Duration) -> Vec<Message> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 9001];
    let deadline = Instant::now() + period;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, raw.recv_from(&mut buf)).await {
        if let Ok(m) = Message::decode(&buf[..n]) {
            if m.is_response() {
                out.push(m);
            }
        }
    }
    out
}

fn query_bytes(service: &str) -> Vec<u8> {
    Message {
        questions: vec![Question {
            name: service.parse().unwrap(),
            qtype: rtype::PTR,
            qclass: CLASS_IN,
        }],
        ..Message::default()
    }
    .encode()
    .unwrap()
}

#[tokio::test]
async fn two_nodes_find_each_other() {
    if !in_fresh_netns("two_nodes_find_each_other") {
        return;
    }
    let (ida, idb) = (
        Identity::from_secret_bytes(&[1; 32]).unwrap(),
        Identity::from_secret_bytes(&[2; 32]).unwrap(),
    );
    let a = LanDiscovery::new(config());
    let b = LanDiscovery::new(config());
    a.announce(&record(&ida, 7001)).await.unwrap();
    b.announce(&record(&idb, 7002)).await.unwrap();
    assert!(a.is_responding() && b.is_responding());
    let start = Instant::now();
    let (found_a, found_b) = tokio::join!(a.discover(), b.discover());
    let took = start.elapsed();
    // Each finds the other and not itself.
    assert_eq!(nodes(&found_a.unwrap()), [idb.node_id()]);
    let found_b = found_b.unwrap();
    assert_eq!(nodes(&found_b), [ida.node_id()]);
    assert_eq!(found_b[0].addrs(), ["tcp/127.0.0.1:7001"]);
    assert!(took < config().window + Duration::from_millis(500), "bounded by the window: {took:?}");

    // A newer record replaces the old one in the answers.
    let newer = PeerRecord::sign(&ida, &["tcp/127.0.0.1:7999"], unix_now() + 1).unwrap();
    a.announce(&newer).await.unwrap();
    let found = b.discover().await.unwrap();
    assert_eq!(found, [newer]);

    // Through run_all, as the node will use it.
    let methods: Vec<Box<dyn Discovery>> = vec![Box::new(b)];
    let report = run_all(&methods, Duration::from_secs(5)).await;
    assert_eq!(report.methods[0].name, "mdns");
    assert_eq!(report.methods[0].error, None);
    assert_eq!(nodes(&report.peers), [ida.node_id()]);
}

#[tokio::test]
async fn forged_and_expired_records_are_ignored() {
    if !in_fresh_netns("forged_and_expired_records_are_ignored") {
        return;
    }
    let service = config().service;
    let honest = Identity::from_secret_bytes(&[3; 32]).unwrap();
    let b = LanDiscovery::new(config());
    b.announce(&record(&honest, 7003)).await.unwrap();

    let mut bytes = record(&Identity::from_secret_bytes(&[4; 32]).unwrap(), 7004).encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let forged = PeerRecord::decode(&bytes).unwrap();
    let expired = PeerRecord::sign(
        &Identity::from_secret_bytes(&[5; 32]).unwrap(),
        &["tcp/127.0.0.1:7005"],
        unix_now() - 3 * 3600,
    )
    .unwrap();
    let future = PeerRecord::sign(
        &Identity::from_secret_bytes(&[6; 32]).unwrap(),
        &["tcp/127.0.0.1:7006"],
        unix_now() + 3600,
    )
    .unwrap();
    let raw = raw_socket();
    let liar = tokio::spawn(async move {
        await_query(&raw).await;
        for r in [&forged, &expired, &future] {
            raw.send_to(&service::answer(&service, r).unwrap(), GROUP).await.unwrap();
        }
        // And answers whose TXT strings are garbage.
        let mut garbled = Message::decode(&service::answer(&service, &forged).unwrap()).unwrap();
        if let samizdat_discovery::lan::dns::RData::Txt(strings) = &mut garbled.answers[2].data {
            strings[1][5] = b'!';
        }
        raw.send_to(&garbled.encode().unwrap(), GROUP).await.unwrap();
    });

    let a = LanDiscovery::new(config());
    let found = a.discover_at(unix_now()).await.unwrap();
    liar.await.unwrap();
    assert_eq!(nodes(&found.records), [honest.node_id()]);
    assert!(found.rejected >= 4, "forged, expired, future and garbled rejected: {found:?}");
}

#[tokio::test]
async fn a_flood_keeps_the_set_bounded() {
    if !in_fresh_netns("a_flood_keeps_the_set_bounded") {
        return;
    }
    let service = config().service;
    let mut rng = rand_core::OsRng;
    let flood: Vec<Vec<u8>> = (0..1000)
        .map(|i| {
            let id = Identity::generate(&mut rng);
            service::answer(&service, &record(&id, 10_000 + i)).unwrap()
        })
        .collect();
    let raw = raw_socket();
    let flooder = tokio::spawn(async move {
        await_query(&raw).await;
        for answer in &flood {
            raw.send_to(answer, GROUP).await.unwrap();
        }
    });
    let mut c = config();
    c.max_records = 16;
    let a = LanDiscovery::new(c.clone());
    let start = Instant::now();
    let found = a.discover_at(unix_now()).await.unwrap();
    let took = start.elapsed();
    flooder.await.unwrap();
    assert_eq!(
        found.records.len(),
        16,
        "{} responses, {} over capacity",
        found.responses,
        found.over_capacity
    );
    assert!(found.over_capacity > 0, "more than 16 arrived: {}", found.over_capacity);
    assert_eq!(nodes(&found.records).windows(2).filter(|w| w[0] == w[1]).count(), 0);
    assert!(took < c.window + Duration::from_millis(500), "bounded by the window: {took:?}");
    println!(
        "flood: {} responses received, {} distinct beyond the cap, {} kept",
        found.responses,
        found.over_capacity,
        found.records.len()
    );
}

#[tokio::test]
async fn malformed_packets_do_not_kill_the_responder() {
    if !in_fresh_netns("malformed_packets_do_not_kill_the_responder") {
        return;
    }
    let id = Identity::from_secret_bytes(&[8; 32]).unwrap();
    let b = LanDiscovery::new(config());
    b.announce(&record(&id, 7008)).await.unwrap();
    let raw = raw_socket();
    let mut query = query_bytes("_samizdat._udp.local");
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        vec![0; 12 + 1],
        query[..query.len() - 1].to_vec(),
        // A question whose name points at itself.
        vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 12, 0, 1],
        // 65535 questions announced.
        vec![0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
        vec![0x55; 9001],
    ];
    query.push(0); // trailing byte
    garbage.push(query);
    let mut rng = rand_core::OsRng;
    for _ in 0..200 {
        use rand_core::RngCore;
        let mut g = vec![0u8; (rng.next_u32() % 1400) as usize];
        rng.fill_bytes(&mut g);
        garbage.push(g);
    }
    for g in &garbage {
        raw.send_to(g, GROUP).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(b.is_responding(), "the responder task is alive");
    let a = LanDiscovery::new(config());
    let found = a.discover().await.unwrap();
    assert_eq!(nodes(&found), [id.node_id()]);
}

#[tokio::test]
async fn queries_for_another_service_get_no_answer() {
    if !in_fresh_netns("queries_for_another_service_get_no_answer") {
        return;
    }
    let raw = raw_socket();
    let id = Identity::from_secret_bytes(&[9; 32]).unwrap();
    let b = LanDiscovery::new(config());
    let announced = Instant::now();
    b.announce(&record(&id, 7009)).await.unwrap();
    // The unsolicited announcement, once.
    let heard = responses(&raw, MIN_ANSWER_INTERVAL + Duration::from_millis(300)).await;
    assert_eq!(heard.len(), 1, "one announcement: {heard:?}");
    tokio::time::sleep_until(announced + 2 * MIN_ANSWER_INTERVAL).await;

    // Another service, another type for ours, or ours by unicast (the responder's socket is
    // bound to the group, so it never sees unicast): silence.
    raw.send_to(&query_bytes("_other._udp.local"), GROUP).await.unwrap();
    raw.send_to(&query_bytes("_samizdat._tcp.local"), GROUP).await.unwrap();
    let unicast = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    unicast.send_to(&query_bytes("_samizdat._udp.local"), (LOOPBACK, MDNS_PORT)).await.unwrap();
    let heard = responses(&raw, Duration::from_millis(1500)).await;
    assert!(heard.is_empty(), "answered a query for another service: {heard:?}");

    // Twenty queries for ours within 200 ms: one answer now, one a second later, no more.
    for _ in 0..20 {
        raw.send_to(&query_bytes("_samizdat._udp.local"), GROUP).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let heard = responses(&raw, Duration::from_millis(2500)).await;
    assert!((1..=2).contains(&heard.len()), "20 queries gave {} answers", heard.len());
    for m in &heard {
        assert!(m.encode().unwrap().len() <= service::MAX_ANSWER_LEN);
    }
}

#[tokio::test]
async fn unreachable_when_the_group_cannot_be_joined() {
    // No namespace needed: joining on an address no interface has fails before anything is
    // sent.
    let mut c = LanConfig::default();
    c.interface = Ipv4Addr::new(192, 0, 2, 77);
    c.port = 53_535;
    let lan = LanDiscovery::new(c);
    let err = lan.discover().await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Unreachable { method: "mdns", .. }), "{err}");
    let id = Identity::from_secret_bytes(&[10; 32]).unwrap();
    let err = lan.announce(&record(&id, 7010)).await.unwrap_err();
    assert!(matches!(err, DiscoveryError::Unreachable { .. }), "{err}");
    assert!(!lan.is_responding());
    // A record that does not verify is refused before any socket.
    let old = PeerRecord::sign(&id, &["tcp/127.0.0.1:1"], 1).unwrap();
    assert!(matches!(lan.announce(&old).await, Err(DiscoveryError::Record(_))));
}

/// Removes the named namespaces (and so the veth pair) when the test ends, even by a panic.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn two_hosts_over_a_veth_link() {
    if !is_root() {
        skip("two_hosts_over_a_veth_link", "not root");
        return;
    }
    let pid = std::process::id();
    let (na, nb) = (format!("samz-lan-{pid}-a"), format!("samz-lan-{pid}-b"));
    let mut guard = Namespaces(Vec::new());
    for ns in [&na, &nb] {
        sh("ip", &["netns", "add", ns]);
        guard.0.push(ns.clone());
    }
    sh(
        "ip",
        &[
            "link", "add", "lan0", "netns", &na, "type", "veth", "peer", "name", "lan0", "netns",
            &nb,
        ],
    );
    for (ns, addr) in [(&na, "10.77.0.1/24"), (&nb, "10.77.0.2/24")] {
        sh("ip", &["-n", ns, "addr", "add", addr, "dev", "lan0"]);
        sh("ip", &["-n", ns, "link", "set", "lan0", "up"]);
    }
    let exe = std::env::current_exe().unwrap();
    let spawn = |ns: &str, role: &str| {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&exe)
            .args(["lan_host_role", "--exact", "--nocapture", "--test-threads=1"])
            .env(HOST_ENV, role)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn(&na, "21,22,10.77.0.1"), spawn(&nb, "22,21,10.77.0.2")];
    let deadline = Instant::now() + Duration::from_secs(30);
    for mut child in children {
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "a host failed: {}", out.status);
        assert!(stdout.contains("found the other host"), "a host ran no test");
    }
}

/// One host of `two_hosts_over_a_veth_link` (does nothing when run on its own).
#[tokio::test]
async fn lan_host_role() {
    let Some(role) = std::env::var_os(HOST_ENV) else { return };
    let role = role.into_string().unwrap();
    let parts: Vec<&str> = role.split(',').collect();
    let own = Identity::from_secret_bytes(&[parts[0].parse().unwrap(); 32]).unwrap();
    let peer = Identity::from_secret_bytes(&[parts[1].parse().unwrap(); 32]).unwrap();
    let mut c = LanConfig::default();
    c.interface = parts[2].parse().unwrap();
    let lan = LanDiscovery::new(c);
    let addr = format!("tcp/{}:7070", parts[2]);
    lan.announce(&PeerRecord::sign(&own, &[&addr], unix_now()).unwrap()).await.unwrap();
    let found = timeout(Duration::from_secs(20), async {
        loop {
            let found = lan.discover().await.unwrap();
            if let Some(r) = found.into_iter().find(|r| r.node_id() == peer.node_id()) {
                return r;
            }
        }
    })
    .await
    .expect("found the other host within 20 s");
    let other = if parts[2].ends_with(".1") { "10.77.0.2" } else { "10.77.0.1" };
    assert_eq!(found.addrs(), [format!("tcp/{other}:7070")]);
    // Keep answering a little longer, so the other host can finish too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("found the other host: {}", found.node_id());
}
