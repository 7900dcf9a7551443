//! Invite lines between real processes: `samizdat invite` prints a node's line, and
//! `node --invite` / `--invite-file` connects to it only if it proves the identity named.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{cli, established, s, start_daemon};
use samizdat_content::Invite;
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_for_peer(data: &Path, id: &str) -> Duration {
    let t0 = Instant::now();
    while !established(data).iter().any(|p| p == id) {
        assert!(t0.elapsed() < Duration::from_secs(15), "never connected to {id}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t0.elapsed()
}

#[test]
fn an_invite_line_brings_a_node_in_and_a_forged_one_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (tmp.path().join("a"), tmp.path().join("b"), tmp.path().join("c"));
    let (_da, _) = start_daemon(&a, &[]);

    let out = cli(&["--json", "invite", "--data", s(&a)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let line = v["invite"].as_str().unwrap().to_owned();
    let invite: Invite = line.parse().unwrap();
    let a_id = v["node_id"].as_str().unwrap().to_owned();
    assert_eq!(invite.node.to_string(), a_id);
    // Not on a terminal: just the line, no QR code.
    let plain = cli(&["invite", "--data", s(&a)]);
    assert_eq!(String::from_utf8(plain.stdout).unwrap().trim(), line);

    // From a file (comments and blank lines skipped), as people would pass it around.
    let file = tmp.path().join("invites.txt");
    std::fs::write(&file, format!("# from a friend\n\n{line}\n")).unwrap();
    let (_db, _) = start_daemon(&b, &["--invite-file", s(&file)]);
    let took = wait_for_peer(&b, &a_id);
    eprintln!("connected through the invite in {took:?}");

    // The same addresses under another identity: the node there cannot prove it, so it is
    // never a peer.
    let forged = Invite { node: samizdat_node::NodeId([7; 32]), addrs: invite.addrs.clone() };
    let (_dc, _) = start_daemon(&c, &["--invite", &forged.to_string()]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(established(&c).is_empty(), "a forged invite was used: {:?}", established(&c));
}

#[test]
fn a_damaged_invite_line_stops_the_node_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = cli(&[
        "--json",
        "node",
        "--listen",
        "tcp/127.0.0.1:0",
        "--data",
        s(&tmp.path().join("n")),
        "--invite",
        "szi1notaninvite",
    ]);
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["kind"], "invite_invalid", "{err}");
    assert!(err["error"].as_str().unwrap().contains("invite"), "{err}");
    let out = cli(&["invite", "--data", s(&tmp.path().join("none"))]);
    assert!(!out.status.success(), "no node running there is an error");
}
