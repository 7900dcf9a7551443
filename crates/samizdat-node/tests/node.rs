//! Real nodes over loopback TCP.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::data;

use samizdat_node::{NodeBuilder, NodeError, ShareLink};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_fetch_resume_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret-report.bin");
    // Large enough that the download is still running when the test, which may be scheduled
    // late on a loaded machine, cancels it after 2 MB (with 6 MB it sometimes finished first).
    let content = data(48_000_000, 1);
    std::fs::write(&file, &content).unwrap();
    let seeder = NodeBuilder::new()
        .data_dir(dir.path().join("a"))
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let link = seeder.share(&file).await.unwrap();
    let link: ShareLink = link.to_string().parse().unwrap();

    // Nothing about the file is stored in plaintext by the seeder.
    for entry in std::fs::read_dir(dir.path().join("a/blobs")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(13).any(|w| w == b"secret-report"));
        assert!(!bytes.windows(64).any(|w| w == &content[1000..1064]));
    }

    // First attempt: stop after some progress.
    let fetcher = NodeBuilder::new().build().await.unwrap();
    let out = dir.path().join("out.bin");
    let mut fetch = fetcher.fetch(&link, &out).await.unwrap();
    while let Some(p) = fetch.progress().await {
        if p.verified_bytes > 2_000_000 {
            break;
        }
    }
    drop(fetch);
    fetcher.shutdown().await;
    assert!(!out.exists());

    // Second attempt resumes from the part file.
    let fetcher = NodeBuilder::new().build().await.unwrap();
    let fetch = fetcher.fetch(&link, &out).await.unwrap();
    let outcome = fetch.outcome().await.unwrap();
    assert!(outcome.resumed_bytes >= 1_000_000, "resumed {}", outcome.resumed_bytes);
    assert_eq!(outcome.manifest.name, "secret-report.bin");
    assert_eq!(std::fs::read(&out).unwrap(), content);
    assert!(!dir.path().join("out.bin.part").exists());
    assert!(!dir.path().join("out.bin.part.state").exists());

    // Fetching again into an existing file is refused.
    assert!(matches!(fetcher.fetch(&link, &out).await, Err(NodeError::OutputExists(_))));

    let peers = seeder.peers().await.unwrap();
    assert!(peers.iter().all(|p| !p.outbound));
    seeder.shutdown().await;
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_peer_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let link = ShareLink {
        root: samizdat_node::ContentRoot([1; 32]),
        key: samizdat_content_key(),
        blob_len: 100_000,
        peers: vec![samizdat_node::PeerHint {
            node: samizdat_node::NodeId([7; 32]),
            addr: format!("tcp/127.0.0.1:{port}").parse().unwrap(),
        }],
    };
    let node = NodeBuilder::new().build().await.unwrap();
    let started = std::time::Instant::now();
    let fetch = node.fetch(&link, &dir.path().join("x")).await.unwrap();
    let err =
        tokio::time::timeout(Duration::from_secs(30), fetch.outcome()).await.unwrap().unwrap_err();
    assert!(matches!(err, NodeError::NoSources), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    node.shutdown().await;
}

fn samizdat_content_key() -> samizdat_content::ContentKey {
    samizdat_content::ContentKey::from_bytes([9; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_download_serves_a_third_node() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    let content = data(3_000_000, 2);
    std::fs::write(&file, &content).unwrap();
    let a = NodeBuilder::new()
        .data_dir(dir.path().join("a"))
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let b = NodeBuilder::new()
        .data_dir(dir.path().join("b"))
        .listen("tcp/127.0.0.1:0")
        .seed_downloads(true)
        .build()
        .await
        .unwrap();
    let link = a.share(&file).await.unwrap();
    b.fetch(&link, &dir.path().join("b.out")).await.unwrap().outcome().await.unwrap();
    a.shutdown().await;
    // Only b is left; a link pointing at b works.
    let link_b = ShareLink { peers: b.hints(), ..link };
    let c = NodeBuilder::new().build().await.unwrap();
    c.fetch(&link_b, &dir.path().join("c.out")).await.unwrap().outcome().await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("c.out")).unwrap(), content);
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_carry_announced_addresses_never_unspecified_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"hello").unwrap();
    let wildcard = NodeBuilder::new()
        .data_dir(dir.path().join("a"))
        .listen("tcp/0.0.0.0:0")
        .build()
        .await
        .unwrap();
    assert!(wildcard.advertised_addrs().is_empty());
    let link = wildcard.share(&file).await.unwrap();
    assert!(link.peers.is_empty(), "0.0.0.0 must not be handed out");
    wildcard.shutdown().await;

    let announced = NodeBuilder::new()
        .data_dir(dir.path().join("b"))
        .listen("tcp/127.0.0.1:0")
        .announce("tcp/203.0.113.5:7070")
        .build()
        .await
        .unwrap();
    let link = announced.share(&file).await.unwrap();
    let hint = samizdat_node::PeerHint {
        node: announced.node_id(),
        addr: "tcp/203.0.113.5:7070".parse().unwrap(),
    };
    assert_eq!(link.peers, vec![hint]);
    announced.shutdown().await;
    assert!(matches!(
        NodeBuilder::new().announce("nonsense").build().await,
        Err(NodeError::BadAddr(_))
    ));
}
