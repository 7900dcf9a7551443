//! Helpers shared by the CLI integration tests: running the `samizdat` binary and its daemon.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_samizdat");

/// A running `samizdat node`, killed when dropped.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        // SIGTERM first: the daemon stops cleanly (and, under coverage, writes its profile).
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `samizdat --json node --listen tcp/127.0.0.1:0 --data DATA EXTRA…`, waits for its
/// control socket, and returns it with the JSON line it printed.
pub fn start_daemon(data: &Path, extra: &[&str]) -> (Daemon, serde_json::Value) {
    let mut cmd = Command::new(BIN);
    cmd.args(["--json", "node", "--listen", "tcp/127.0.0.1:0", "--data"]).arg(data).args(extra);
    spawn_daemon(cmd, data)
}

/// Runs `cmd` (a `samizdat --json node … --data DATA`, perhaps behind `ip netns exec`), waits
/// for its control socket, and returns it with the JSON line it printed.
pub fn spawn_daemon(mut cmd: Command, data: &Path) -> (Daemon, serde_json::Value) {
    // Standard error is the caller's choice (inherited unless it says otherwise).
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let daemon = Daemon(child);
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert_eq!(v["ok"], true, "{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !data.join("control.sock").exists() {
        assert!(Instant::now() < deadline, "control socket never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    (daemon, v)
}

/// The node IDs of the established peers of the node at `data`.
pub fn established(data: &Path) -> Vec<String> {
    let out = cli(&["--json", "peers", "--data", s(data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["established"] == true)
        .filter_map(|p| p["node_id"].as_str().map(str::to_owned))
        .collect()
}

/// Runs the CLI to completion.
pub fn cli(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Writes `len` pseudo-random bytes (xorshift from `seed`) to `path` and returns them.
pub fn write_random(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
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

/// Shares `file` through the daemon at `data`, returning the link.
#[allow(dead_code)]
pub fn share_link(file: &Path, data: &Path) -> String {
    let out = cli(&["--json", "share", s(file), "--data", s(data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["link"].as_str().unwrap().to_owned()
}

/// Fetches `link` with a short-lived node of no state of its own (only the link's hints lead
/// to the seeder) and checks the copy is `content`.
#[allow(dead_code)]
pub fn fetch_checked(link: &str, dest: &Path, content: &[u8]) {
    let out = cli(&["--json", "fetch", link, "-o", s(dest)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(dest).unwrap() == content, "the copy differs");
}
