//! Real processes over the veil transport: a daemon listening only on `veil/…`, a file
//! fetched from it by a short-lived node through the link's hint, the key kept (sealed)
//! across a restart, and a prober that gets nothing from the port.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{BIN, cli, fetch_checked, s, share_link, spawn_daemon, write_random};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn veil_node(data: &Path, extra: &[&str]) -> (common::Daemon, serde_json::Value) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--json", "node", "--listen", "veil/127.0.0.1:0", "--data", s(data)]).args(extra);
    spawn_daemon(cmd, data)
}

#[test]
fn a_file_crosses_veil_and_the_key_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("a");
    let (daemon, v) = veil_node(&data, &[]);
    let addr = v["listen"][0].as_str().unwrap().to_owned();
    let (endpoint, params) = addr.split_once('?').unwrap();
    assert!(endpoint.starts_with("veil/127.0.0.1:"), "{addr}");
    assert!(params.starts_with("k=") && params.len() == 45, "{addr}");

    let file = tmp.path().join("notes.bin");
    let content = write_random(&file, 4 << 20, 0x7e11);
    let link = share_link(&file, &data);
    // A short-lived node fetches through the link's hint: its only way to the seeder.
    fetch_checked(&link, &tmp.path().join("copy.bin"), &content);

    // A prober at the port gets not a byte (and the node keeps serving).
    let port = endpoint.rsplit_once(':').unwrap().1;
    let mut probe = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    probe.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    probe.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    let e = probe.read(&mut buf).err().unwrap();
    assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));

    // Restarted, the node publishes the same key; it is sealed on disk.
    drop(daemon);
    let (_daemon, v) = veil_node(&data, &["--announce", "veil/192.0.2.5:7443"]);
    let again = v["listen"][0].as_str().unwrap();
    assert_eq!(again.split_once('?').unwrap().1, params);
    let raw = std::fs::read(data.join("veil.rec")).unwrap();
    // Sealed: not the plaintext record (the secret as 64 hex digits).
    let hex_run = raw.windows(64).any(|w| w.iter().all(u8::is_ascii_hexdigit));
    assert!(!hex_run && !raw.starts_with(b"\""), "the key in the clear on disk");
    let out = cli(&["--json", "invite", "--data", s(&data)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let announced = format!("veil/192.0.2.5:7443?{params}");
    assert!(v["addrs"].as_array().unwrap().iter().any(|a| *a == announced), "{v}");
}

#[test]
fn bad_veil_addresses_are_refused() {
    for bad in ["veil/example.org:1", "veil/127.0.0.1:1?k=short", "veil/127.0.0.1:1?x=1"] {
        let out = cli(&["--json", "node", "--peer", bad, "--data", "/nonexistent"]);
        assert!(!out.status.success(), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("bad_address"), "{bad}");
    }
}
