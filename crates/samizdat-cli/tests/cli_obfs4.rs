//! Real processes over obfs4 through Debian's `obfs4proxy` (Tor's pluggable-transport
//! protocol): a daemon listening only on `obfs4/…`, a file fetched from it by a short-lived
//! node through the link's hint, and the obfs4 keys kept (sealed) across a restart.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{BIN, cli, fetch_checked, s, share_link, spawn_daemon, write_random};
use std::path::Path;
use std::process::Command;

fn obfs4_node(data: &Path) -> (common::Daemon, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--json", "node", "--listen", "obfs4/127.0.0.1:0", "--data", s(data)]);
    let (daemon, v) = spawn_daemon(cmd, data);
    (daemon, v["listen"][0].as_str().unwrap().to_owned())
}

#[test]
fn a_file_crosses_obfs4proxy_and_the_cert_survives_a_restart() {
    if !Path::new("/usr/bin/obfs4proxy").exists() {
        eprintln!("SKIPPED: obfs4proxy is not installed (apt-get install obfs4proxy)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("a");
    let (daemon, addr) = obfs4_node(&data);
    let (endpoint, params) = addr.split_once('?').unwrap();
    assert!(endpoint.starts_with("obfs4/127.0.0.1:"), "{addr}");
    assert!(params.starts_with("cert=") && params.ends_with("&iat-mode=0"), "{addr}");

    let file = tmp.path().join("notes.bin");
    let content = write_random(&file, 4 << 20, 0x0bf5);
    let link = share_link(&file, &data);
    // A short-lived node fetches through the link's hint: its only way to the seeder.
    fetch_checked(&link, &tmp.path().join("copy.bin"), &content);

    // Restarted, the node publishes the same cert, so its links stay valid; the keys are
    // sealed on disk.
    drop(daemon);
    let (_daemon, again) = obfs4_node(&data);
    assert_eq!(again.split_once('?').unwrap().1, params);
    let raw = std::fs::read(data.join("obfs4.rec")).unwrap();
    assert!(!raw.windows(11).any(|w| w == b"private-key"), "no plaintext key on disk");
    let out = cli(&["--json", "invite", "--data", s(&data)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["addrs"].as_array().unwrap().iter().any(|a| a == again.as_str()), "{v}");
}

#[test]
fn a_missing_obfs4proxy_fails_the_node_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--json", "node", "--listen", "obfs4/127.0.0.1:0", "--data"])
        .arg(tmp.path().join("d"))
        .args(["--obfs4proxy", "/nonexistent/obfs4proxy"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/obfs4proxy"), "{err}");
    let out = cli(&["--json", "node", "--listen", "obfs4/example.org:1", "--data", "/nonexistent"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_address"));
}

#[test]
fn an_announced_obfs4_address_carries_the_listeners_cert() {
    if !Path::new("/usr/bin/obfs4proxy").exists() {
        eprintln!("SKIPPED: obfs4proxy is not installed (apt-get install obfs4proxy)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("a");
    let mut cmd = Command::new(BIN);
    cmd.args(["--json", "node", "--listen", "obfs4/127.0.0.1:0"]).args([
        "--announce",
        "obfs4/192.0.2.5:9443",
        "--data",
        s(&data),
    ]);
    let (_daemon, v) = spawn_daemon(cmd, &data);
    let listen = v["listen"][0].as_str().unwrap();
    let advertised = v["advertised"][0].as_str().unwrap();
    let cert = listen.split_once('?').unwrap().1;
    assert_eq!(advertised, format!("obfs4/192.0.2.5:9443?{cert}"), "{v}");
}
