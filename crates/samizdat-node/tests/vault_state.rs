//! A node that keeps all of its state inside a vault volume, over loopback TCP.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::data;

use samizdat_node::{NodeBuilder, NodeError, ShareLink, VaultError};
use samizdat_vault::Vault;
use std::collections::HashSet;
use std::path::Path;

const PASSWORD: &[u8] = b"correct horse battery staple";
/// Small, but holds a few MiB of blobs plus the catalog.
const CONTAINER: u64 = 32 << 20;

/// Creates a container with one volume (at the format's real KDF cost: the node opens it
/// with `Vault::open`).
fn create_vault(path: &Path) {
    drop(Vault::create(path, CONTAINER, PASSWORD).unwrap());
}

/// Panics if `haystack` contains any 64-byte window of `content`. Every such window covers a
/// whole 32-byte piece of `content` at an offset that is a multiple of 32, so it is enough to
/// look for those pieces (an 8-byte prefix set keeps the scan fast).
fn assert_no_window_of(haystack: &[u8], content: &[u8], what: &str) {
    let pieces: HashSet<&[u8]> = content.chunks_exact(32).collect();
    let prefixes: HashSet<u64> =
        pieces.iter().map(|p| u64::from_le_bytes(p[..8].try_into().unwrap())).collect();
    for (i, w) in haystack.windows(32).enumerate() {
        let prefix = u64::from_le_bytes(w[..8].try_into().unwrap());
        if prefixes.contains(&prefix) && pieces.contains(w) {
            panic!("{what}: found a piece of the content at offset {i}");
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn fetch_with_new_node(link: &ShareLink, out: &Path) -> samizdat_node::FetchOutcome {
    let fetcher = NodeBuilder::new().build().await.unwrap();
    let outcome = fetcher.fetch(link, out).await.unwrap().outcome().await.unwrap();
    fetcher.shutdown().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_node_shares_leaks_nothing_and_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let container = tmp.path().join("state.vault");
    create_vault(&container);
    let src_dir = tmp.path().join("src");
    std::fs::create_dir(&src_dir).unwrap();
    let file = src_dir.join("whistleblower-memo.bin");
    // More than one 4 MiB serving window, not a whole number of groups.
    let content = data(5_000_123, 7);
    std::fs::write(&file, &content).unwrap();

    let node = NodeBuilder::new()
        .vault(&container, PASSWORD)
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let node_id = node.node_id();
    let link = node.share(&file).await.unwrap();

    let out = tmp.path().join("copy.bin");
    let outcome = fetch_with_new_node(&link, &out).await;
    assert_eq!(outcome.manifest.name, "whistleblower-memo.bin");
    assert!(std::fs::read(&out).unwrap() == content, "fetched file differs");
    node.shutdown().await;

    // Nothing but the container was written: no data directory, no temporary file.
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["copy.bin", "src", "state.vault"]);
    assert_eq!(std::fs::read_dir(&src_dir).unwrap().count(), 1);

    // The state is in the volume: identity and one blob with its outboard.
    let vault = Vault::open(&container, PASSWORD).unwrap();
    let files: Vec<String> = vault.list().unwrap().into_iter().map(|f| f.name).collect();
    assert!(files.iter().any(|f| f == "node/identity"), "{files:?}");
    assert_eq!(files.iter().filter(|f| f.ends_with(".blob")).count(), 1, "{files:?}");
    assert_eq!(files.iter().filter(|f| f.ends_with(".obao")).count(), 1, "{files:?}");
    let secret = vault.get_bytes("node/identity").unwrap();
    assert_eq!(secret.len(), 32);
    drop(vault);

    // The container shows none of it.
    let raw = std::fs::read(&container).unwrap();
    assert_eq!(raw.len() as u64, CONTAINER);
    assert!(!contains(&raw, b"whistleblower"), "file name in the container");
    assert!(!contains(&raw, b"node/identity"), "vault file name in the container");
    assert!(!contains(&raw, &secret), "identity secret in the container");
    assert_no_window_of(&raw, &content, "container");

    // Restart from the same vault: same identity, still serving the blob.
    let node = NodeBuilder::new()
        .vault(&container, PASSWORD)
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    assert_eq!(node.node_id(), node_id);
    let relinked = ShareLink { peers: node.hints(), ..link };
    let out2 = tmp.path().join("copy2.bin");
    fetch_with_new_node(&relinked, &out2).await;
    assert!(std::fs::read(&out2).unwrap() == content, "fetched file differs after restart");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_node_seeds_what_it_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("leaflet.bin");
    let content = data(1_234_567, 9);
    std::fs::write(&file, &content).unwrap();
    let seeder = NodeBuilder::new()
        .data_dir(tmp.path().join("seeder"))
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let link = seeder.share(&file).await.unwrap();

    // A node with a vault fetches and seeds.
    let container = tmp.path().join("relay.vault");
    create_vault(&container);
    let relay = NodeBuilder::new()
        .vault(&container, PASSWORD)
        .listen("tcp/127.0.0.1:0")
        .seed_downloads(true)
        .build()
        .await
        .unwrap();
    let out = tmp.path().join("relay-copy.bin");
    relay.fetch(&link, &out).await.unwrap().outcome().await.unwrap();
    assert!(std::fs::read(&out).unwrap() == content);
    seeder.shutdown().await;

    // With the original seeder gone, a third node gets the file from the relay's vault.
    let from_relay = ShareLink { peers: relay.hints(), ..link.clone() };
    let out2 = tmp.path().join("third-copy.bin");
    fetch_with_new_node(&from_relay, &out2).await;
    assert!(std::fs::read(&out2).unwrap() == content);

    // ... and again after the relay restarts.
    relay.shutdown().await;
    let relay = NodeBuilder::new()
        .vault(&container, PASSWORD)
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let from_relay = ShareLink { peers: relay.hints(), ..link };
    let out3 = tmp.path().join("fourth-copy.bin");
    fetch_with_new_node(&from_relay, &out3).await;
    assert!(std::fs::read(&out3).unwrap() == content);
    relay.shutdown().await;
    let raw = std::fs::read(&container).unwrap();
    assert_no_window_of(&raw, &content, "relay container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_vault_password_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let container = tmp.path().join("state.vault");
    create_vault(&container);
    let err = NodeBuilder::new().vault(&container, b"not the password").build().await.unwrap_err();
    assert!(
        matches!(err, NodeError::Vault { source: VaultError::NoVolume, .. }),
        "unexpected error {err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("vault") && msg.contains("password"), "unclear message: {msg}");
    assert!(!msg.contains("not the password"), "the password must not appear: {msg}");

    let missing = tmp.path().join("missing.vault");
    let err = NodeBuilder::new().vault(&missing, PASSWORD).build().await.unwrap_err();
    assert!(matches!(err, NodeError::Vault { .. }), "unexpected error {err:?}");
    assert!(!missing.exists());
}
