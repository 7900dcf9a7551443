//! Real processes: a file shared with `--no-hints` (a link naming no address at all) is found
//! through the DHT by a node that knows only a third node, and arrives byte-identical.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{cli, s, start_daemon, write_random};
use samizdat_content::ShareLink;
use std::path::Path;
use std::time::{Duration, Instant};

fn established(data: &Path) -> usize {
    let out = cli(&["--json", "peers", "--data", s(data)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["peers"].as_array().unwrap().iter().filter(|p| p["established"] == true).count()
}

fn wait_for_peers(data: &Path, n: usize) {
    let t0 = Instant::now();
    while established(data) < n {
        assert!(t0.elapsed() < Duration::from_secs(15), "never reached {n} peers");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_link_without_hints_is_fetched_through_the_dht_from_a_node_known_only_by_a_third() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let (_dc, v) = start_daemon(&c, &[]);
    let hub = v["listen"][0].as_str().unwrap().to_owned();
    let (da, _) = start_daemon(&a, &["--peer", &hub]);
    let (_db, _) = start_daemon(&b, &["--peer", &hub, "--seed"]);
    wait_for_peers(&a, 1);
    wait_for_peers(&b, 1);

    let file = tmp.path().join("report.bin");
    let data = write_random(&file, 3 << 20, 11);
    let out = cli(&["share", s(&file), "--no-hints", "--data", s(&a)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let link: ShareLink = text.trim().parse().unwrap();
    assert!(link.peers.is_empty(), "the link names no peer");
    let link_file = tmp.path().join("link.txt");
    std::fs::write(&link_file, &text).unwrap();
    // `shares` lists it as it was made: without hints; sharing it again with hints changes
    // that, and --no-hints again brings it back.
    let listed = |data: &Path| -> ShareLink {
        let out = cli(&["--json", "shares", "--data", s(data)]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["link"].as_str().unwrap().parse().unwrap()
    };
    assert!(listed(&a).peers.is_empty(), "shares lists a hinted link");
    let out = cli(&["share", s(&file), "--data", s(&a)]);
    let hinted: ShareLink = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    assert!(!hinted.peers.is_empty() && !listed(&a).peers.is_empty());
    assert_eq!(hinted.root, link.root, "the same share");
    assert!(cli(&["share", s(&file), "--no-hints", "--data", s(&a)]).status.success());
    assert!(listed(&a).peers.is_empty());

    // A short-lived fetcher that knows nobody finds no provider, and says so at once.
    let t0 = Instant::now();
    let lonely = std::process::Command::new(common::BIN)
        .args(["--json", "fetch", "--link-file", s(&link_file), "-o"])
        .arg(tmp.path().join("never.bin"))
        .env("HOME", tmp.path())
        .output()
        .unwrap();
    assert!(!lonely.status.success());
    let err: serde_json::Value = serde_json::from_slice(&lonely.stderr).unwrap();
    assert_eq!(err["kind"], "no_providers", "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());

    // B knows only C. The provider record may still be on its way to C: try a few times.
    let dest = tmp.path().join("out.bin");
    let t0 = Instant::now();
    let mut last = String::new();
    for _ in 0..10 {
        let out = cli(&[
            "--json",
            "fetch",
            "--link-file",
            s(&link_file),
            "-o",
            s(&dest),
            "--data",
            s(&b),
        ]);
        if out.status.success() {
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(500));
    }
    let took = t0.elapsed();
    assert!(dest.exists(), "never fetched: {last}");
    assert_eq!(std::fs::read(&dest).unwrap(), data, "byte-identical");
    eprintln!("found through the DHT and fetched 3 MiB in {took:?}");

    // B kept a seeding copy, so it announced itself: with A gone, a fourth node that also
    // knows only C fetches the file from B.
    drop(da);
    let d = tmp.path().join("d");
    let (_dd, _) = start_daemon(&d, &["--peer", &hub]);
    wait_for_peers(&d, 1);
    let dest2 = tmp.path().join("out2.bin");
    let t0 = Instant::now();
    for _ in 0..20 {
        let args =
            ["--json", "fetch", "--link-file", s(&link_file), "-o", s(&dest2), "--data", s(&d)];
        let out = cli(&args);
        if out.status.success() {
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(dest2.exists(), "the seeder was never found: {last}");
    assert_eq!(std::fs::read(&dest2).unwrap(), data);
    eprintln!("fetched from the node that seeded it in {:?}", t0.elapsed());
}

#[test]
fn a_restarted_node_finds_its_way_back_through_the_peers_it_remembers() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, c) = (tmp.path().join("a"), tmp.path().join("c"));
    let (_dc, v) = start_daemon(&c, &[]);
    let hub = v["listen"][0].as_str().unwrap().to_owned();
    let (da, _) = start_daemon(&a, &["--peer", &hub]);
    wait_for_peers(&a, 1);
    drop(da); // SIGTERM: the node saves the contacts it knows as it stops
    let raw = std::fs::read(a.join("peers.rec")).unwrap();
    assert!(!raw.windows(9).any(|w| w == b"127.0.0.1"), "no address in the clear");
    // No --peer this time: the remembered DHT contact is dialled.
    let t0 = Instant::now();
    let (_da, _) = start_daemon(&a, &[]);
    wait_for_peers(&a, 1);
    eprintln!("back in the network {:?} after the restart, with no bootstrap peer", t0.elapsed());
}
