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
