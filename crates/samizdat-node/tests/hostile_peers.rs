//! Real nodes over loopback TCP against peers that misbehave: idle sockets that hold connection
//! slots, and a node with another identity at a link's address.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::data;
use samizdat_node::{NodeBuilder, NodeError, PeerHint, ShareLink};
use std::time::{Duration, Instant};

/// Shares `len` bytes from a fresh listening node; returns the node, its link and the bytes.
async fn seeder(dir: &std::path::Path, len: usize) -> (samizdat_node::Node, ShareLink, Vec<u8>) {
    let file = dir.join("file.bin");
    let content = data(len, 7);
    std::fs::write(&file, &content).unwrap();
    let node = NodeBuilder::new()
        .data_dir(dir.join("seed"))
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let link = node.share(&file).await.unwrap();
    (node, link, content)
}

async fn fetch_time(link: &ShareLink, out: &std::path::Path) -> Duration {
    let fetcher = NodeBuilder::new().build().await.unwrap();
    let t = Instant::now();
    let fetch = fetcher.fetch(link, out).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), fetch.outcome()).await.unwrap().unwrap();
    let took = t.elapsed();
    fetcher.shutdown().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_idle_sockets_do_not_stop_a_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (node, link, content) = seeder(dir.path(), 4_000_000).await;
    let baseline = fetch_time(&link, &dir.path().join("baseline")).await;

    // 300 TCP connections that never say a word, all held open by this process.
    let addr = node.listen_addrs()[0].address().to_owned();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = dir.path().join("under-attack");
    let attacked = fetch_time(&link, &out).await;
    assert_eq!(std::fs::read(&out).unwrap(), content);
    println!("fetch of 4 MB: {baseline:?} alone, {attacked:?} with 300 idle sockets held");
    // "Its normal time": well within a few seconds of the undisturbed fetch.
    assert!(attacked < baseline + Duration::from_secs(5), "{attacked:?} vs {baseline:?}");

    // The node closed the idle sockets it evicted or timed out (within seconds), instead of
    // keeping them all.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let mut closed = 0;
    for s in &idle {
        let mut buf = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(5), s.peek(&mut buf)).await {
            closed += 1;
        }
    }
    assert!(closed >= 290, "only {closed} of 300 idle sockets were closed");
    let peers = node.peers().await.unwrap();
    assert!(peers.len() < 50, "{} connections still held", peers.len());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_identity_at_the_hinted_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (node, link, _) = seeder(dir.path(), 200_000).await;
    // An impostor holding the same file (it has the link) at another address: the link given
    // to the victim names the real node's identity but the impostor's address, as an on-path
    // attacker that terminates connections would present it.
    let impostor = NodeBuilder::new()
        .data_dir(dir.path().join("impostor"))
        .listen("tcp/127.0.0.1:0")
        .seed_downloads(true)
        .build()
        .await
        .unwrap();
    let copy = dir.path().join("impostor-copy");
    impostor.fetch(&link, &copy).await.unwrap().outcome().await.unwrap();
    let forged = ShareLink {
        peers: vec![PeerHint { node: node.node_id(), addr: impostor.listen_addrs()[0].clone() }],
        ..link.clone()
    };
    let victim = NodeBuilder::new().build().await.unwrap();
    let fetch = victim.fetch(&forged, &dir.path().join("victim")).await.unwrap();
    let err =
        tokio::time::timeout(Duration::from_secs(60), fetch.outcome()).await.unwrap().unwrap_err();
    assert!(matches!(err, NodeError::IdentityMismatch), "{err}");
    assert_eq!(err.kind(), "identity_mismatch");
    assert!(!dir.path().join("victim").exists());
    // The same link with the right address works.
    let ok = dir.path().join("victim-ok");
    victim.fetch(&link, &ok).await.unwrap().outcome().await.unwrap();
    victim.shutdown().await;
    impostor.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_fetch_that_never_got_data_frees_its_output_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    // A peer that accepts and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let link = ShareLink {
        root: samizdat_node::ContentRoot([1; 32]),
        key: samizdat_content::ContentKey::from_bytes([2; 32]),
        blob_len: 100_000,
        peers: vec![PeerHint {
            node: samizdat_node::NodeId([3; 32]),
            addr: format!("tcp/{}", silent.local_addr().unwrap()).parse().unwrap(),
        }],
    };
    let node = NodeBuilder::new().build().await.unwrap();
    let out = dir.path().join("out");
    let first = node.fetch(&link, &out).await.unwrap();
    let busy = node.fetch(&link, &out).await;
    assert!(busy.is_err(), "a second fetch into the same output while the first runs");
    drop(first);
    let t = Instant::now();
    loop {
        match node.fetch(&link, &out).await {
            Ok(_) => break,
            Err(e) => {
                assert!(t.elapsed() < Duration::from_secs(5), "output still held: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    node.shutdown().await;
}
