//! The Mainline rendezvous against a real `mainline` testnet on loopback (never the internet:
//! every DHT here is built with the testnet's bootstrap addresses or a dead local port only).
#![allow(clippy::unwrap_used, missing_docs)]
// Tests measure real wall time: the point is that nothing hangs.
#![allow(clippy::disallowed_methods)]

use samizdat_discovery::mainline_dht::{home_slot, slot_salt};
use samizdat_discovery::{
    BoxFuture, Discovery, DiscoveryError, MainlineConfig, MainlineRendezvous, NetworkSecret,
    PeerRecord, run_all,
};
use samizdat_identity::Identity;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const NOW: u64 = 1_780_000_000;
const SECRET: [u8; 32] = [42; 32];

fn testnet() -> mainline::Testnet {
    mainline::Testnet::builder(8).bind_address(Ipv4Addr::LOCALHOST).build().unwrap()
}

fn config(bootstrap: Vec<String>) -> MainlineConfig {
    let mut c = MainlineConfig::new(bootstrap);
    c.bind_address = Ipv4Addr::LOCALHOST;
    c.timeout = Duration::from_secs(15);
    // Loopback answers in microseconds; a short request timeout keeps lookups quick.
    c.request_timeout = Duration::from_millis(500);
    c
}

fn rendezvous(bootstrap: &[String]) -> MainlineRendezvous {
    MainlineRendezvous::new(NetworkSecret::from_bytes(SECRET), config(bootstrap.to_vec())).unwrap()
}

/// `n` identities whose home slots differ (so no announcer can displace another's home slot).
fn identities(n: usize, slots: u16) -> Vec<Identity> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for seed in 1u8.. {
        let id = Identity::from_secret_bytes(&[seed; 32]).unwrap();
        if seen.insert(home_slot(&id.node_id(), slots)) {
            out.push(id);
        }
        if out.len() == n {
            break;
        }
    }
    out
}

fn record(id: &Identity, port: u16) -> PeerRecord {
    PeerRecord::sign(id, &[format!("tcp/127.0.0.1:{port}")], NOW).unwrap()
}

/// A UDP port on loopback that swallows everything (a blackholed bootstrap node).
fn blackhole() -> (std::net::UdpSocket, String) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    (sock, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_announce_a_fourth_finds_them_all() {
    let net = testnet();
    let ids = identities(3, 16);
    for (i, id) in ids.iter().enumerate() {
        let node = rendezvous(&net.bootstrap);
        let stored = node.announce_at(&record(id, 7000 + i as u16), NOW).await.unwrap();
        assert!(stored >= 1);
    }
    let reader = rendezvous(&net.bootstrap);
    let found = reader.discover_at(NOW + 60).await.unwrap();
    let nodes: HashSet<_> = found.records.iter().map(|r| r.node_id()).collect();
    assert_eq!(nodes.len(), found.records.len(), "one record per node");
    for id in &ids {
        assert!(nodes.contains(&id.node_id()), "{:?} not found in {:?}", id.node_id(), found);
    }
    for r in &found.records {
        r.verify(NOW + 60, Duration::from_secs(7200)).unwrap();
    }
    assert_eq!(found.rejected, 0);
    assert!(found.responded > 0);

    // A reader in the next period still finds them (it reads the previous period too) …
    let next = reader.discover_at(NOW + 3600).await.unwrap();
    assert_eq!(next.records.len(), 3);
    // … and a reader with another network secret finds nobody.
    let other =
        MainlineRendezvous::new(NetworkSecret::from_bytes([7; 32]), config(net.bootstrap.clone()))
            .unwrap();
    assert!(other.discover_at(NOW + 60).await.unwrap().records.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_garbage_slot_values_are_ignored() {
    let net = testnet();
    let honest = &identities(1, 16)[0];
    let node = rendezvous(&net.bootstrap);
    node.announce_at(&record(honest, 7000), NOW).await.unwrap();

    // An attacker who knows the network secret writes the slots no one else uses.
    let secret = NetworkSecret::from_bytes(SECRET);
    let period = node.config().period_of(NOW);
    let seed = secret.danger_rendezvous_seed(period);
    let attacker = mainline::Dht::builder()
        .bootstrap(&net.bootstrap)
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .unwrap()
        .as_async();
    let victim = Identity::from_secret_bytes(&[200; 32]).unwrap();
    let mut forged = record(&victim, 7070).encode();
    let at = forged.iter().position(|&b| b == b'7').unwrap();
    forged[at] = b'8'; // the address changed after signing
    let home = home_slot(&honest.node_id(), 16);
    let free: Vec<u16> = (0..16).filter(|&s| s != home).take(2).collect();
    // The forged record is sealed properly (the attacker holds the secret): only its
    // signature gives it away. The garbage is not even sealed.
    let forged = secret.seal_value(period, free[0], &forged);
    for (slot, value) in [(free[0], forged), (free[1], b"not a record".to_vec())] {
        let item = mainline::MutableItem::new(
            mainline::SigningKey::from_bytes(&seed),
            &value,
            i64::MAX,
            Some(&slot_salt(slot)),
        );
        attacker.put_mutable(item, None).await.unwrap();
    }

    let found = rendezvous(&net.bootstrap).discover_at(NOW + 60).await.unwrap();
    let nodes: Vec<_> = found.records.iter().map(|r| r.node_id()).collect();
    assert!(nodes.contains(&honest.node_id()));
    assert!(!nodes.contains(&victim.node_id()), "forged record accepted");
    assert!(found.rejected >= 2, "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_dht_fails_within_the_timeout() {
    let (_hole, addr) = blackhole();
    let mut c = config(vec![addr]);
    c.timeout = Duration::from_secs(4);
    c.request_timeout = Duration::from_millis(500);
    let node = MainlineRendezvous::new(NetworkSecret::from_bytes(SECRET), c).unwrap();

    let start = Instant::now();
    let err = node.discover_at(NOW).await.unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, DiscoveryError::Unreachable { .. } | DiscoveryError::Timeout { .. }),
        "{err}"
    );
    assert!(took < Duration::from_secs(6), "discover took {took:?}");

    let start = Instant::now();
    let id = Identity::from_secret_bytes(&[1; 32]).unwrap();
    assert!(node.announce_at(&record(&id, 7000), NOW).await.is_err());
    assert!(start.elapsed() < Duration::from_secs(6), "announce took {:?}", start.elapsed());
}

/// A method that never answers.
struct Hang;

impl Discovery for Hang {
    fn name(&self) -> &'static str {
        "hang"
    }
    fn announce<'a>(&'a self, _: &'a PeerRecord) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(std::future::pending())
    }
    fn discover(&self) -> BoxFuture<'_, Result<Vec<PeerRecord>, DiscoveryError>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_reports_every_method() {
    let net = testnet();
    let id = &identities(1, 16)[0];
    // The trait methods read the wall clock, so this record is signed now.
    let now = samizdat_discovery::unix_now();
    let own = PeerRecord::sign(id, &["tcp/127.0.0.1:7000"], now).unwrap();
    let working = rendezvous(&net.bootstrap);
    working.announce(&own).await.unwrap();

    let (_hole, addr) = blackhole();
    let mut c = config(vec![addr]);
    c.timeout = Duration::from_secs(3);
    c.request_timeout = Duration::from_millis(500);
    let blocked = MainlineRendezvous::new(NetworkSecret::from_bytes(SECRET), c).unwrap();

    let methods: Vec<Box<dyn Discovery>> =
        vec![Box::new(rendezvous(&net.bootstrap)), Box::new(blocked), Box::new(Hang)];
    let start = Instant::now();
    let report = run_all(&methods, Duration::from_secs(12)).await;
    assert!(start.elapsed() < Duration::from_secs(14), "{:?}", start.elapsed());

    assert!(report.ok());
    assert_eq!(report.peers.len(), 1);
    assert_eq!(report.peers[0].node_id(), id.node_id());
    let names: Vec<_> = report.methods.iter().map(|m| m.name).collect();
    assert_eq!(names, ["mainline", "mainline", "hang"]);
    assert_eq!(report.methods[0].peers, 1);
    assert_eq!(report.methods[0].error, None);
    assert_eq!(report.methods[1].peers, 0);
    assert!(report.methods[1].error.is_some());
    assert!(report.methods[2].error.as_deref().unwrap().contains("no answer"));
    let text = report.to_string();
    assert!(text.contains("hang: 0 peers"), "{text}");
    assert!(report.methods[0].elapsed < Duration::from_secs(12));
    println!("{text}");
}
