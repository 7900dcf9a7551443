//! Real nodes over loopback TCP finding each other through a discovery method: a shared
//! directory of signed peer records (the shape of every method: announce, discover). A
//! poisoned directory that points one node's record at another node's address gets the dial
//! refused, never a session with the wrong identity.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use samizdat_discovery::{BoxFuture, Discovery, DiscoveryError, PeerRecord, unix_now};
use samizdat_identity::Identity;
use samizdat_node::{Node, NodeBuilder, NodeId};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every record announced by any node, shared: what a rendezvous does, without the network.
#[derive(Clone, Default)]
struct Directory(Arc<Mutex<Vec<PeerRecord>>>);

impl Discovery for Directory {
    fn name(&self) -> &'static str {
        "directory"
    }

    fn announce<'a>(&'a self, record: &'a PeerRecord) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(async move {
            record.verify(unix_now(), Duration::from_secs(3600))?;
            self.0.lock().unwrap().push(record.clone());
            Ok(())
        })
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<PeerRecord>, DiscoveryError>> {
        Box::pin(async move { Ok(self.0.lock().unwrap().clone()) })
    }
}

async fn node(dir: &Directory) -> Node {
    NodeBuilder::new()
        .listen("tcp/127.0.0.1:0")
        .discovery(Box::new(dir.clone()))
        .build()
        .await
        .unwrap()
}

async fn connected_to(node: &Node, other: NodeId) -> bool {
    node.peers().await.unwrap().iter().any(|p| p.established && p.node_id == Some(other))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_find_each_other_through_a_discovery_method_and_forged_records_are_refused() {
    let dir = Directory::default();
    let a = node(&dir).await;
    let b = node(&dir).await;
    let t0 = Instant::now();
    while !connected_to(&b, a.node_id()).await || !connected_to(&a, b.node_id()).await {
        assert!(t0.elapsed() < Duration::from_secs(20), "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = b.discovery_report().or(a.discovery_report()).expect("a round ran");
    assert_eq!(report.methods[0].name, "directory");
    assert!(report.methods[0].error.is_none());

    // A record signed by an identity nobody runs, naming the address of D (a node nobody
    // else knows): C dials it pinned to that identity, D proves another one, and C never gets
    // a session with D.
    let d = NodeBuilder::new().listen("tcp/127.0.0.1:0").build().await.unwrap();
    let ghost = Identity::generate(&mut rand_core::OsRng);
    let d_addr = d.advertised_addrs()[0].to_string();
    let forged = PeerRecord::sign(&ghost, &[d_addr.as_str()], unix_now()).unwrap();
    // B's honest record is there too: C does dial what it finds.
    let honest: Vec<PeerRecord> =
        dir.0.lock().unwrap().iter().filter(|r| r.node_id() == b.node_id()).cloned().collect();
    let poisoned = Directory(Arc::new(Mutex::new([vec![forged], honest].concat())));
    let c = node(&poisoned).await;
    let t0 = Instant::now();
    while !connected_to(&c, b.node_id()).await {
        assert!(t0.elapsed() < Duration::from_secs(20), "C never reached B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peers = c.peers().await.unwrap();
    assert!(
        !peers.iter().any(|p| p.established && p.node_id == Some(d.node_id())),
        "a session with an identity nobody found: {peers:?}"
    );
    let report = c.discovery_report().unwrap();
    assert!(report.peers.iter().any(|r| r.node_id() == ghost.node_id()), "it was found");

    // A node that stopped lets its discovery task go.
    for n in [a, b, c, d] {
        n.shutdown().await;
    }
}

/// Fetches `link` through a fresh ephemeral node that knows only `hub`, retrying while the
/// provider record may still be on its way; returns the bytes or the last error.
async fn fetch_via(
    hub: &str,
    link: &samizdat_node::ShareLink,
    out: &std::path::Path,
) -> Result<Vec<u8>, samizdat_node::NodeError> {
    let mut last = None;
    let t0 = Instant::now();
    // A put that first reached only dead contacts is retried within 30 s: allow for it on a
    // loaded machine.
    while t0.elapsed() < Duration::from_secs(45) {
        // No listener: on loopback it must be told it is on a local network.
        let f = NodeBuilder::new().peer(hub).local_network(true).build().await.unwrap();
        f.wait_for_peers(1, Duration::from_secs(10)).await.unwrap();
        let r = match f.fetch(link, out).await {
            Ok(fetch) => fetch.outcome().await.map(|_| std::fs::read(out).unwrap()),
            Err(e) => Err(e),
        };
        f.shutdown().await;
        match r {
            Ok(bytes) => {
                println!("fetched through the DHT after {:.1} s", t0.elapsed().as_secs_f64());
                return Ok(bytes);
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(last.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_seeder_announces_its_copies_again_to_a_network_that_forgot_them() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = NodeBuilder::new().listen("tcp/127.0.0.1:0").build().await.unwrap();
    let hub_addr = hub.advertised_addrs()[0].to_string();
    let sharer = NodeBuilder::new()
        .data_dir(tmp.path().join("sharer"))
        .listen("tcp/127.0.0.1:0")
        .peer(&hub_addr)
        .build()
        .await
        .unwrap();
    let file = tmp.path().join("f.bin");
    let content: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    sharer.wait_for_peers(1, Duration::from_secs(10)).await.unwrap();
    let opts = samizdat_node::ShareOptions { no_hints: true, ..Default::default() };
    let link = sharer.share_with(&file, opts).await.unwrap().link;
    assert!(link.peers.is_empty());

    // The seeder fetches it through the DHT and keeps a copy.
    let seeder_dir = tmp.path().join("seeder");
    let seeder = |hub: String| {
        NodeBuilder::new()
            .data_dir(seeder_dir.clone())
            .listen("tcp/127.0.0.1:0")
            .peer(hub)
            .seed_downloads(true)
            .build()
    };
    let s = seeder(hub_addr.clone()).await.unwrap();
    s.wait_for_peers(1, Duration::from_secs(10)).await.unwrap();
    let mut got = None;
    for _ in 0..20 {
        match s.fetch(&link, &tmp.path().join("s.bin")).await.unwrap().outcome().await {
            Ok(_) => {
                got = Some(std::fs::read(tmp.path().join("s.bin")).unwrap());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
    assert_eq!(got.as_deref(), Some(&content[..]), "the seeder fetched it");
    tokio::time::sleep(Duration::from_millis(300)).await; // the seed is remembered
    // Everyone goes; a new hub knows nothing of the file.
    for n in [s, sharer, hub] {
        n.shutdown().await;
    }
    assert!(seeder_dir.join("seeds.rec").exists(), "the seed was remembered");
    let hub2 = NodeBuilder::new().listen("tcp/127.0.0.1:0").build().await.unwrap();
    let hub2_addr = hub2.advertised_addrs()[0].to_string();
    let s = seeder(hub2_addr.clone()).await.unwrap();
    let bytes = fetch_via(&hub2_addr, &link, &tmp.path().join("f2.bin")).await.unwrap();
    assert_eq!(bytes, content, "found through the seeder's new announcement");
    s.shutdown().await;
    hub2.shutdown().await;
}
