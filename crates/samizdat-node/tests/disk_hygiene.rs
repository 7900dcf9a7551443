//! What a node leaves on disk: private files, nothing that ties the data directory to a link,
//! authenticated resume state, no leftovers of failed downloads, and downloads into
//! directories under the sender's (sanitised) name.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::data;
use samizdat_node::{FetchTarget, Node, NodeBuilder, NodeError, ShareLink};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A listening node with a data directory that shares `name` holding `content`.
async fn seeder(dir: &Path, name: &str, content: &[u8]) -> (Node, ShareLink) {
    let file = dir.join(name);
    std::fs::write(&file, content).unwrap();
    let node =
        NodeBuilder::new().data_dir(dir.join("seeder")).listen("tcp/127.0.0.1:0").build().await;
    let node = node.unwrap();
    let link = node.share(&file).await.unwrap();
    std::fs::remove_file(&file).unwrap();
    (node, link)
}

/// Every file and directory under `dir` (a running node's files may come and go meanwhile:
/// those gone by the time they are looked at are left out).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        let Ok(meta) = p.symlink_metadata() else { continue };
        if meta.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Asserts that nothing under `dir` (names or bytes) contains the root, in raw, hex or base32
/// form, nor the v1 file name of the root; that no file hashes to the root; and that files
/// are 0600 and directories 0700.
fn assert_no_trace(dir: &Path, link: &ShareLink) {
    let root = link.root.0;
    let hex = data_encoding::HEXLOWER.encode(&root);
    let v1_name = data_encoding::HEXLOWER
        .encode(&blake3::derive_key("samizdat 2026 store file name v1", &root)[..16]);
    for p in walk(dir) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains(&hex[..16]) && !name.contains(&v1_name), "{name}");
        if p.is_dir() {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
            continue;
        }
        if name == "control.sock" {
            continue;
        }
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        let bytes = std::fs::read(&p).unwrap();
        assert_ne!(blake3::hash(&bytes).as_bytes(), &root, "{} hashes to the root", p.display());
        for needle in [&root[..], hex.as_bytes(), &root[..8]] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{} holds the root", name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_dir_holds_no_trace_of_the_root_and_still_serves_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(700_000, 3);
    let (node, link) = seeder(dir.path(), "leak.bin", &content).await;
    assert_no_trace(&dir.path().join("seeder"), &link);
    assert_eq!(mode(&dir.path().join("seeder")), 0o700);
    node.shutdown().await;

    // The keyed names and sealed records are found again after a restart.
    let node = NodeBuilder::new()
        .data_dir(dir.path().join("seeder"))
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let link = ShareLink { peers: node.hints(), ..link };
    let fetcher = NodeBuilder::new().build().await.unwrap();
    let out = dir.path().join("copy");
    let done = fetcher.fetch(&link, &out).await.unwrap().outcome().await.unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), content);
    assert_eq!(done.path, out);
    assert_eq!(mode(&out), 0o600);
    node.shutdown().await;
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_swapped_outboard_record_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let (node, link_a) = seeder(dir.path(), "a", &data(100_000, 4)).await;
    let file = dir.path().join("b");
    std::fs::write(&file, data(200_000, 5)).unwrap();
    let link_b = node.share(&file).await.unwrap();
    node.shutdown().await;
    let blobs = dir.path().join("seeder/blobs");
    let mut records: Vec<PathBuf> =
        walk(&blobs).into_iter().filter(|p| p.extension().is_some_and(|e| e == "obao")).collect();
    records.sort();
    assert_eq!(records.len(), 2);
    // Swap the two records' contents: each is now under the other's name.
    let (r0, r1) = (std::fs::read(&records[0]).unwrap(), std::fs::read(&records[1]).unwrap());
    std::fs::write(&records[0], &r1).unwrap();
    std::fs::write(&records[1], &r0).unwrap();
    let node = NodeBuilder::new()
        .data_dir(dir.path().join("seeder"))
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let fetcher = NodeBuilder::new().build().await.unwrap();
    for (i, link) in [&link_a, &link_b].into_iter().enumerate() {
        let link = ShareLink { peers: node.hints(), ..link.clone() };
        let f = fetcher.fetch(&link, &dir.path().join(format!("x{i}"))).await.unwrap();
        // Not served: the fetch finds no source (it would finish in well under a second).
        let r = tokio::time::timeout(Duration::from_secs(5), f.outcome()).await;
        assert!(!matches!(r, Ok(Ok(_))), "a swapped record was served");
    }
    node.shutdown().await;
    fetcher.shutdown().await;
    // Put back, both are served again (so it was the swap that was refused).
    std::fs::write(&records[0], &r0).unwrap();
    std::fs::write(&records[1], &r1).unwrap();
    let node = NodeBuilder::new()
        .data_dir(dir.path().join("seeder"))
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let fetcher = NodeBuilder::new().build().await.unwrap();
    for (i, link) in [link_a, link_b].into_iter().enumerate() {
        let link = ShareLink { peers: node.hints(), ..link };
        let out = dir.path().join(format!("ok{i}"));
        fetcher.fetch(&link, &out).await.unwrap().outcome().await.unwrap();
    }
    node.shutdown().await;
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_at_the_part_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (node, link) = seeder(dir.path(), "f", &data(50_000, 6)).await;
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = dir.path().join("out");
    std::os::unix::fs::symlink(&victim, dir.path().join("out.part")).unwrap();
    let fetcher = NodeBuilder::new().build().await.unwrap();
    let err = fetcher.fetch(&link, &out).await.unwrap_err();
    assert!(matches!(err, NodeError::Io { .. }), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert_eq!(mode(&victim), 0o644);
    // A symlink at the state path is not followed either: the download fails before it
    // writes through it, or replaces the link itself.
    std::fs::remove_file(dir.path().join("out.part")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.path().join("out.part.state")).unwrap();
    let r = fetcher.fetch(&link, &out).await.unwrap().outcome().await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    node.shutdown().await;
    fetcher.shutdown().await;
}

/// A TCP listener that accepts and never answers: a fetch from it runs until it gives up.
fn silent_peer() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp/{}", l.local_addr().unwrap());
    (l, addr)
}

fn dead_link(peer: &str) -> ShareLink {
    ShareLink {
        root: samizdat_node::ContentRoot([1; 32]),
        key: samizdat_content::ContentKey::from_bytes([9; 32]),
        blob_len: 100_000,
        peers: vec![samizdat_node::PeerHint {
            node: samizdat_node::NodeId([7; 32]),
            addr: peer.parse().unwrap(),
        }],
    }
}

/// A port nobody listens on.
fn closed_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("tcp/127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fetch_leaves_no_part_file_and_a_failed_seed_fetch_no_blob() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeBuilder::new()
        .data_dir(dir.path().join("n"))
        .seed_downloads(true)
        .build()
        .await
        .unwrap();
    let link = dead_link(&closed_port());
    let out = dir.path().join("out");
    let r = node.fetch(&link, &out).await.unwrap().outcome().await;
    assert!(matches!(r, Err(NodeError::NoSources)), "{r:?}");
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let r = node.fetch_into(&link, FetchTarget::Dir(into.clone())).await.unwrap().outcome().await;
    assert!(matches!(r, Err(NodeError::NoSources)), "{r:?}");
    node.shutdown().await;
    // The node's own state stays: its identity and, sealed, what each dialled address did
    // (transports.rec; it names the dead peer only under the node's key).
    let state = dir.path().join("n/transports.rec");
    let sealed = std::fs::read(&state).unwrap();
    assert!(!sealed.windows(9).any(|w| w == b"127.0.0.1"), "sealed, no address in the clear");
    let left: Vec<_> = walk(dir.path()).into_iter().filter(|p| !p.is_dir()).collect();
    let left: Vec<_> = left
        .iter()
        .filter(|p| !p.ends_with("n/identity.key") && !p.ends_with("n/transports.rec"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_seed_fetch_leaves_no_blob_and_a_completed_one_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(6_000_000, 7);
    let (seed, link) = seeder(dir.path(), "f", &content).await;
    let node = NodeBuilder::new()
        .data_dir(dir.path().join("n"))
        .seed_downloads(true)
        .build()
        .await
        .unwrap();
    let blobs = dir.path().join("n/blobs");
    let out = dir.path().join("out");
    let mut f = node.fetch(&link, &out).await.unwrap();
    while let Some(p) = f.progress().await {
        if p.verified_bytes > 1_000_000 {
            break;
        }
    }
    drop(f);
    // The cancel reaches the driver with the next verified group.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !walk(&blobs).is_empty() {
        assert!(std::time::Instant::now() < deadline, "seed blob kept: {:?}", walk(&blobs));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = node.fetch(&link, &out).await.unwrap().outcome().await.unwrap();
    assert!(done.resumed_bytes > 0);
    assert_eq!(std::fs::read(&out).unwrap(), content);
    // At rest: while the node runs, its download state files come and go under the walk.
    node.shutdown().await;
    assert_eq!(walk(&blobs).len(), 2, "one blob and its record");
    assert_no_trace(&dir.path().join("n"), &link);
    seed.shutdown().await;
}

/// Starts a fetch of `link` into `target` and stops it after some verified bytes.
/// Starts a fetch and drops it after 2 MB. On a busy machine the fetch may finish before
/// the progress that stops it is seen: `finished` (where a whole fetch lands) then exists, and
/// is removed and the fetch tried again.
async fn interrupted(link: &ShareLink, target: FetchTarget, finished: &std::path::Path) {
    for _ in 0..5 {
        let node = NodeBuilder::new().build().await.unwrap();
        let mut f = node.fetch_into(link, target.clone()).await.unwrap();
        while let Some(p) = f.progress().await {
            if p.verified_bytes > 2_000_000 {
                break;
            }
        }
        drop(f);
        node.shutdown().await;
        if !finished.exists() {
            return;
        }
        std::fs::remove_file(finished).unwrap();
    }
    panic!("every fetch finished before it could be interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_truncated_resume_state_is_discarded_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(6_000_000, 8);
    let (seed, link) = seeder(dir.path(), "f", &content).await;
    let out = dir.path().join("out");
    let state = dir.path().join("out.part.state");
    let fetcher = NodeBuilder::new().build().await.unwrap();

    // Untouched: the resume uses what was verified.
    interrupted(&link, FetchTarget::File(out.clone()), &out).await;
    assert_eq!(mode(&state), 0o600);
    assert_eq!(mode(&dir.path().join("out.part")), 0o600);
    let done = fetcher.fetch(&link, &out).await.unwrap().outcome().await.unwrap();
    assert!(done.resumed_bytes > 1_000_000, "{}", done.resumed_bytes);
    assert_eq!(std::fs::read(&out).unwrap(), content);

    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 3] = [
        ("flipped", |b| b[40] ^= 1),
        ("truncated", |b| b.truncate(b.len() - 32)),
        ("emptied", Vec::clear),
    ];
    for (what, damage) in damages {
        std::fs::remove_file(&out).unwrap();
        interrupted(&link, FetchTarget::File(out.clone()), &out).await;
        let mut bytes = std::fs::read(&state).unwrap();
        damage(&mut bytes);
        std::fs::write(&state, &bytes).unwrap();
        let done = fetcher.fetch(&link, &out).await.unwrap().outcome().await.unwrap();
        assert_eq!(done.resumed_bytes, 0, "{what} state was trusted");
        assert_eq!(std::fs::read(&out).unwrap(), content, "{what}");
        assert!(!state.exists());
    }
    seed.shutdown().await;
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_into_a_directory_uses_the_senders_name_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let content = data(6_000_000, 9);
    let (seed, link) = seeder(dir.path(), "report.pdf", &content).await;
    let into = dir.path().join("downloads");
    std::fs::create_dir(&into).unwrap();
    std::fs::write(into.join("report.pdf"), b"mine").unwrap();

    // Interrupted: the part file is hidden and names nothing; the same call resumes.
    interrupted(&link, FetchTarget::Dir(into.clone()), &into.join("report (1).pdf")).await;
    let parts: Vec<_> = walk(&into).into_iter().filter(|p| !p.ends_with("report.pdf")).collect();
    assert_eq!(parts.len(), 2, "{parts:?}");
    for p in &parts {
        let name = p.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with('.') && !name.contains("report"), "{name}");
        assert_eq!(mode(p), 0o600);
    }
    let fetcher = NodeBuilder::new().build().await.unwrap();
    let done = fetcher.fetch_into(&link, FetchTarget::Dir(into.clone())).await.unwrap();
    let done = done.outcome().await.unwrap();
    assert!(done.resumed_bytes > 1_000_000, "{}", done.resumed_bytes);
    assert_eq!(done.path, into.join("report (1).pdf"));
    assert_eq!(std::fs::read(into.join("report.pdf")).unwrap(), b"mine");
    assert_eq!(std::fs::read(&done.path).unwrap(), content);

    let done = fetcher.fetch_into(&link, FetchTarget::Dir(into.clone())).await.unwrap();
    let done = done.outcome().await.unwrap();
    assert_eq!(done.path, into.join("report (2).pdf"));
    let mut names: Vec<_> = std::fs::read_dir(&into)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["report (1).pdf", "report (2).pdf", "report.pdf"]);
    seed.shutdown().await;
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sender_names_stay_inside_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeBuilder::new()
        .data_dir(dir.path().join("seeder"))
        .listen("tcp/127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let fetcher = NodeBuilder::new().build().await.unwrap();
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    // The names a sender can put in a manifest are whatever its file is called; these are
    // hostile ones a file system allows (no '/' or NUL): hidden, dotted, bidi-spoofed.
    let cases = [
        (".bashrc", "bashrc"),
        ("...", "download"),
        (" ..x\u{7}y", "xy"),
        ("a\u{202E}txt.exe", "atxt.exe"),
    ];
    for (i, (name, want)) in cases.into_iter().enumerate() {
        let sub = dir.path().join(format!("src{i}"));
        std::fs::create_dir(&sub).unwrap();
        let file = sub.join(name);
        // Different contents: the same content would be recognised as already shared.
        let content = format!("content {i}");
        std::fs::write(&file, &content).unwrap();
        let link = node.share(&file).await.unwrap();
        let done = fetcher.fetch_into(&link, FetchTarget::Dir(into.clone())).await.unwrap();
        let done = done.outcome().await.unwrap();
        assert_eq!(done.path, into.join(want), "{name:?}");
        assert_eq!(std::fs::read(&done.path).unwrap(), content.as_bytes());
    }
    node.shutdown().await;
    fetcher.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fetches_into_the_same_output_refuse_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (_listener, peer) = silent_peer();
    let link = dead_link(&peer);
    let (a, b) =
        (NodeBuilder::new().build().await.unwrap(), NodeBuilder::new().build().await.unwrap());
    let out = dir.path().join("out");
    let first = a.fetch(&link, &out).await.unwrap();
    let err = b.fetch(&link, &out).await.unwrap_err();
    assert!(matches!(&err, NodeError::OutputBusy(p) if p == &out), "{err}");
    assert!(err.to_string().contains("another fetch"), "{err}");
    // The same into a directory (a's download of this link holds it now).
    let into = dir.path().join("into");
    std::fs::create_dir(&into).unwrap();
    drop(first);
    a.shutdown().await;
    let a = NodeBuilder::new().build().await.unwrap();
    let first = a.fetch_into(&link, FetchTarget::Dir(into.clone())).await.unwrap();
    let second = b.fetch_into(&link, FetchTarget::Dir(into.clone())).await.map(|_| ());
    assert!(matches!(&second, Err(NodeError::OutputBusy(p)) if p == &into), "{second:?}");
    // Once the first is gone, the output is free again.
    drop(first);
    a.shutdown().await;
    assert!(b.fetch_into(&link, FetchTarget::Dir(into.clone())).await.is_ok());
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_old_layout_loses_its_traces() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("old");
    // An identity, made by a node of this version.
    NodeBuilder::new().data_dir(&data_dir).build().await.unwrap().shutdown().await;
    // A blob filed the v1 way: unkeyed name, plaintext `root || outboard` record. Links of
    // that time pinned no identity and are refused now, so it could never be asked for again.
    let content = data(300_000, 10);
    let key = samizdat_content::ContentKey::from_bytes([4; 32]);
    let manifest = samizdat_node::Manifest {
        name: "old.bin".into(),
        size: content.len() as u64,
        mime: "application/octet-stream".into(),
    };
    let mut blob = Vec::new();
    let enc = samizdat_content::encode(&key, &manifest, &content[..], &mut blob).unwrap();
    let name = data_encoding::HEXLOWER
        .encode(&blake3::derive_key("samizdat 2026 store file name v1", &enc.root.0)[..16]);
    let blobs = data_dir.join("blobs");
    std::fs::write(blobs.join(format!("{name}.blob")), &blob).unwrap();
    let mut record = enc.root.0.to_vec();
    record.extend_from_slice(&enc.outboard.to_bytes());
    std::fs::write(blobs.join(format!("{name}.obao")), &record).unwrap();
    // Something that is neither layout is left alone (not ours to delete).
    std::fs::write(blobs.join("other.obao"), b"not a record").unwrap();

    let node =
        NodeBuilder::new().data_dir(&data_dir).listen("tcp/127.0.0.1:0").build().await.unwrap();
    assert!(!blobs.join(format!("{name}.obao")).exists());
    assert!(!blobs.join(format!("{name}.blob")).exists());
    assert!(blobs.join("other.obao").exists());
    let link = ShareLink { root: enc.root, key, blob_len: blob.len() as u64, peers: node.hints() };
    std::fs::remove_file(blobs.join("other.obao")).unwrap();
    assert_no_trace(&data_dir, &link);
    node.shutdown().await;
}
