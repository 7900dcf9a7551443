//! Real processes over the HTTPS camouflage transport: a daemon serving `https/…` with a decoy
//! site, a file fetched from it by a short-lived node through the link's hint, and the
//! transport's keys (secret and self-made certificate) kept across a restart.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{BIN, cli, fetch_checked, s, share_link, spawn_daemon, write_random};
use std::path::Path;
use std::process::Command;

fn https_node(data: &Path, decoy: &Path) -> (common::Daemon, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--json", "node", "--listen", "https/127.0.0.1:0", "--tls-name", "www.example.org"])
        .args(["--decoy-dir", s(decoy), "--data", s(data)]);
    let (daemon, v) = spawn_daemon(cmd, data);
    (daemon, v["listen"][0].as_str().unwrap().to_owned())
}

#[test]
fn a_file_crosses_the_https_transport_and_the_keys_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, decoy) = (tmp.path().join("a"), tmp.path().join("site"));
    std::fs::create_dir(&decoy).unwrap();
    std::fs::write(decoy.join("index.html"), "<h1>Garden notes</h1>").unwrap();
    let (daemon, addr) = https_node(&data, &decoy);
    let (endpoint, params) = addr.split_once('?').unwrap();
    assert!(endpoint.starts_with("https/127.0.0.1:"), "{addr}");
    assert!(params.starts_with("name=www.example.org&pin="), "{addr}");

    let file = tmp.path().join("notes.bin");
    let content = write_random(&file, 4 << 20, 0x5eed);
    let link = share_link(&file, &data);
    // A short-lived node fetches through the link's hint: its only way to the seeder.
    fetch_checked(&link, &tmp.path().join("copy.bin"), &content);
    // The node's invite line carries the HTTPS address with its pin and secret.
    let out = cli(&["--json", "invite", "--data", s(&data)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["invite"].as_str().unwrap().starts_with("szi1"), "{v}");
    assert!(v["addrs"].as_array().unwrap().iter().any(|a| a == addr.as_str()), "{v}");

    // Restarted, the node has the same secret and certificate pin (a new port: it listened
    // on port 0), so the links it gave out still pin it.
    drop(daemon);
    let (_daemon, again) = https_node(&data, &decoy);
    assert_eq!(again.split_once('?').unwrap().1, params);
    let raw = std::fs::read(data.join("https.rec")).unwrap();
    assert!(!raw.windows(6).any(|w| w == b"BEGIN "), "no plaintext key on disk");
}

#[test]
fn https_options_are_checked_before_the_node_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let run = |args: &[&str]| {
        let mut all = vec!["--json", "node", "--data", s(&d)];
        all.extend_from_slice(args);
        let out = cli(&all);
        assert!(!out.status.success(), "{args:?} should fail");
        let line = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        assert_eq!(line.lines().count(), 1, "{line}");
        serde_json::from_str::<serde_json::Value>(&line).unwrap()["kind"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(run(&["--listen", "https/127.0.0.1:0"]), "usage");
    assert_eq!(run(&["--listen", "https/127.0.0.1:0", "--tls-name", "192.0.2.7"]), "usage");
    assert_eq!(run(&["--listen", "tcp/127.0.0.1:0", "--tls-name", "www.example.org"]), "usage");
    assert_eq!(
        run(&["--listen", "https/localhost:0", "--tls-name", "a.example.org"]),
        "bad_address"
    );
    let missing = tmp.path().join("missing");
    let args = ["--listen", "https/127.0.0.1:0", "--tls-name", "a.example.org", "--decoy-dir"];
    let mut with_dir = args.to_vec();
    with_dir.push(s(&missing));
    assert_eq!(run(&with_dir), "usage");
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let mut with_cert = args[..4].to_vec();
    with_cert.extend_from_slice(&["--tls-cert", s(&junk), "--tls-key", s(&junk)]);
    assert_eq!(run(&with_cert), "bad_certificate");
}
