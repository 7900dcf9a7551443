//! `samizdat node --vault`: a daemon that keeps its state inside a vault, driven through the CLI.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_samizdat");

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn write_random(path: &Path, len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545f4914f6cdd1d;
    let data: Vec<u8> = (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

#[test]
fn node_with_vault_shares_through_the_cli_and_keeps_nothing_in_its_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "a long volume password\n").unwrap();
    let container = tmp.path().join("state.vault");
    let out =
        cli(&["vault", "create", s(&container), "--size", "32MiB", "--password-file", s(&pw)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The data directory does not exist yet: the node creates it for its control socket.
    let data = tmp.path().join("data");
    let mut child = Command::new(BIN)
        .args(["--json", "node", "--listen", "tcp/127.0.0.1:0", "--data", s(&data)])
        .args(["--vault", s(&container), "--password-file", s(&pw)])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let daemon = Daemon(child);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["ok"], true, "{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !data.join("control.sock").exists() {
        assert!(Instant::now() < deadline, "control socket never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }

    let file = tmp.path().join("field-notes.bin");
    let content = write_random(&file, 3 << 20);
    let out = cli(&["--json", "share", s(&file), "--data", s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = v["link"].as_str().unwrap().to_owned();

    // Fetch with a short-lived node of the CLI's own (no daemon at this data directory).
    let dest = tmp.path().join("copy.bin");
    let nobody = tmp.path().join("no-daemon-here");
    let out = cli(&["--json", "fetch", &link, "-o", s(&dest), "--data", s(&nobody)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&dest).unwrap() == content, "fetched file differs");

    let out = cli(&["--json", "peers", "--data", s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The data directory holds the control socket and nothing else.
    let names: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["control.sock"]);
    drop(daemon);

    // The container does not show the file name; the volume holds the node's state.
    let raw = std::fs::read(&container).unwrap();
    assert!(!raw.windows(11).any(|w| w == b"field-notes"));
    let out = cli(&["--json", "vault", "ls", s(&container), "--password-file", s(&pw)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("node/identity"), "{listing}");
    assert!(listing.contains(".blob"), "{listing}");
}

#[test]
fn node_with_a_wrong_vault_password_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let (pw, wrong) = (tmp.path().join("pw"), tmp.path().join("wrong"));
    std::fs::write(&pw, "the right one\n").unwrap();
    std::fs::write(&wrong, "the wrong one\n").unwrap();
    let container = tmp.path().join("state.vault");
    let out = cli(&["vault", "create", s(&container), "--size", "2MiB", "--password-file", s(&pw)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = tmp.path().join("data");
    let out = cli(&[
        "node",
        "--listen",
        "tcp/127.0.0.1:0",
        "--data",
        s(&data),
        "--vault",
        s(&container),
        "--password-file",
        s(&wrong),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no volume opens with this password"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
