//! Real processes: `samizdat node` daemons on loopback driven through the CLI.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{BIN, cli, s, start_daemon, write_random};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts a daemon (optionally bootstrapping from `peer`) and returns it with its address.
fn start_node(data: &Path, peer: Option<&str>) -> (common::Daemon, String) {
    let extra: Vec<&str> = peer.map(|p| vec!["--peer", p]).unwrap_or_default();
    let (daemon, v) = start_daemon(data, &extra);
    (daemon, v["listen"][0].as_str().unwrap().to_owned())
}

#[test]
fn hundred_mib_between_two_daemons_with_kill_and_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let (_a, addr_a) = start_node(&da, None);
    let (_b, _) = start_node(&db, Some(&addr_a));

    let file = tmp.path().join("leak.bin");
    let content = write_random(&file, 100 << 20, 0x9e3779b97f4a7c15);
    let out = cli(&["--json", "share", s(&file), "--data", s(&da)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = v["link"].as_str().unwrap().to_owned();

    // Start the fetch through daemon B and kill the CLI midway.
    let dest = tmp.path().join("copy.bin");
    let part = tmp.path().join("copy.bin.part");
    let mut fetch = Command::new(BIN)
        .args(["--json", "fetch", &link, "-o", s(&dest), "--data", s(&db)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let len = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if len > 10 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "fetch made no progress");
        assert!(fetch.try_wait().unwrap().is_none(), "fetch ended before it could be killed");
        std::thread::sleep(Duration::from_millis(1));
    }
    fetch.kill().unwrap();
    fetch.wait().unwrap();
    assert!(!dest.exists(), "an interrupted download must not appear complete");
    // Give daemon B a moment to notice the cancel and flush its writes.
    std::thread::sleep(Duration::from_millis(300));

    let out = cli(&["--json", "fetch", &link, "-o", s(&dest), "--data", s(&db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["resumed_bytes"].as_u64().unwrap() > 5 << 20, "resume expected: {v}");
    assert_eq!(v["bytes"].as_u64().unwrap(), 100 << 20);
    assert!(std::fs::read(&dest).unwrap() == content, "fetched file differs");

    let out = cli(&["--json", "peers", "--data", s(&db)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["peers"].as_array().unwrap().is_empty());
}

#[test]
fn bad_input_gives_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "fetch".into(),
                "sz1notalink".into(),
                "-o".into(),
                s(&tmp.path().join("o")).into(),
            ],
            "link",
        ),
        (vec!["fetch".into(), "hello".into(), "-o".into(), "o".into()], "not a samizdat link"),
        (
            vec!["share".into(), "/nonexistent/file".into(), "--data".into(), s(tmp.path()).into()],
            "cannot read",
        ),
        (
            vec![
                "share".into(),
                s(&std::env::current_exe().unwrap()).into(),
                "--data".into(),
                s(tmp.path()).into(),
            ],
            "no node is running",
        ),
        (vec!["peers".into(), "--data".into(), s(tmp.path()).into()], "no node is running"),
    ];
    for (args, expect) in cases {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        let out = Command::new(BIN).arg("--json").args(&args).output().unwrap();
        assert!(out.stdout.is_empty());
        let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
        assert!(v["error"].as_str().unwrap().contains(expect), "{v}");
        assert!(v["kind"].as_str().is_some_and(|k| !k.is_empty()), "{v}");
    }
}

#[test]
fn unreachable_peer_fails_cleanly_and_keeps_nothing_half_done() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, _) = (tmp.path().join("a"), ());
    let (a, addr_a) = start_node(&da, None);
    let file = tmp.path().join("f");
    write_random(&file, 1 << 20, 0x9e3779b97f4a7c15);
    let out = cli(&["--json", "share", s(&file), "--data", s(&da)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = v["link"].as_str().unwrap().to_owned();
    drop(a); // the only peer goes away
    let _ = addr_a;
    let dest = tmp.path().join("o");
    let started = Instant::now();
    // No --data and no node in the default directory: a short-lived node of its own.
    let out = Command::new(BIN)
        .args(["fetch", &link, "-o", s(&dest)])
        .env("HOME", tmp.path())
        .env_remove("SAMIZDAT_DATA")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no reachable peer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(!dest.exists());
}

#[test]
fn demo_json_reports_success() {
    let out = cli(&["--json", "demo", "--nodes", "3", "--size", "4MiB"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["sha256_match"], true);
    assert_eq!(v["bytes"], 4 << 20);
    assert!(v["seconds"].as_f64().unwrap() > 0.0);
}

/// A disk without room for the file gives a one-line error as soon as the size is known
/// (the output's space is reserved before data is written) and leaves no part file behind;
/// after space is freed the same command succeeds. Needs root for a small tmpfs; elsewhere the
/// test says so and passes.
#[test]
fn a_full_disk_is_a_clear_error_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("full_disk test: cannot mount a tmpfs here (not root?); not exercised");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let da = tmp.path().join("a");
    let (_a, _) = start_node(&da, None);
    let file = tmp.path().join("big");
    let content = write_random(&file, 5 << 20, 0x9e3779b97f4a7c15);
    let out = cli(&["--json", "share", s(&file), "--data", s(&da)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = v["link"].as_str().unwrap().to_owned();
    let dest = mnt.join("big.copy");
    let standalone = |args: &[&str]| {
        Command::new(BIN).args(args).env("HOME", tmp.path()).env_remove("SAMIZDAT_DATA").output()
    };
    let out = standalone(&["fetch", &link, "-o", s(&dest)]).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("reserving space") && err.contains("No space left"), "{err}");
    assert!(!mnt.join("big.copy.part").exists(), "an empty part file was left");
    // Free space: grow the tmpfs, then the same command resumes.
    let grown = Command::new("mount").args(["-o", "remount,size=32m"]).arg(&mnt).status().unwrap();
    assert!(grown.success());
    let out = standalone(&["--json", "fetch", &link, "-o", s(&dest)]).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(std::fs::read(&dest).unwrap() == content);
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What each address did, from `samizdat peers --json`.
fn transports(data: &Path) -> Vec<serde_json::Value> {
    let out = cli(&["--json", "peers", "--data", s(data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["transports"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_restarted_node_remembers_which_transport_worked() {
    let tmp = tempfile::tempdir().unwrap();
    let (seed, fetch) = (tmp.path().join("seed"), tmp.path().join("fetch"));
    // The seeder's link names a closed port first, then the one it listens on.
    let (dead, live) = (free_port(), free_port());
    let (dead, live) = (format!("tcp/127.0.0.1:{dead}"), format!("tcp/127.0.0.1:{live}"));
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["--json", "node", "--listen", &live, "--announce", &dead, "--announce", &live])
        .args(["--data", s(&seed)]);
    let (_seeder, _) = common::spawn_daemon(cmd, &seed);
    let file = tmp.path().join("f.bin");
    let content = write_random(&file, 1 << 20, 0x4ea1);
    let link = common::share_link(&file, &seed);

    let (fetcher, _) = start_daemon(&fetch, &[]);
    let dest = tmp.path().join("copy.bin");
    let out = cli(&["--json", "fetch", &link, "-o", s(&dest), "--data", s(&fetch)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&dest).unwrap() == content);
    let find = |list: &[serde_json::Value], addr: &str| {
        list.iter()
            .find(|t| t["addr"] == addr)
            .cloned()
            .unwrap_or_else(|| panic!("{addr}: {list:?}"))
    };
    let before = transports(&fetch);
    assert_eq!(find(&before, &dead)["last_failure"], "refused", "{before:?}");
    assert_eq!(find(&before, &live)["working"], true, "{before:?}");

    // Stopped and started again, the node still knows: the closed port is failing (refused),
    // the listening one worked, so its next dial goes there first.
    drop(fetcher);
    let (_fetcher, _) = start_daemon(&fetch, &[]);
    let after = transports(&fetch);
    let d = find(&after, &dead);
    assert!(d["failing"] == true && d["last_failure"] == "refused", "{after:?}");
    assert_eq!(find(&after, &live)["working"], true, "{after:?}");
    let raw = std::fs::read(fetch.join("transports.rec")).unwrap();
    assert!(!raw.windows(9).any(|w| w == b"127.0.0.1"), "sealed, no address in the clear");
}

#[test]
fn a_fetching_daemon_is_a_stranger_to_its_source() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let (_a, addr_a) = start_node(&da, None);
    // The fetcher is an identified peer of the seeder too (it bootstraps from it).
    let (_b, vb) = start_daemon(&db, &["--peer", &addr_a]);
    let fetcher = vb["node_id"].as_str().unwrap().to_owned();
    let file = tmp.path().join("f.bin");
    let content = write_random(&file, 1 << 20, 0xa40);
    let link = common::share_link(&file, &da);
    let dest = tmp.path().join("copy.bin");
    let out = cli(&["--json", "fetch", &link, "-o", s(&dest), "--data", s(&db)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&dest).unwrap() == content);
    // The download's link ended with it: only the overlay link is left, both sides.
    let peers = |data: &Path| -> Vec<serde_json::Value> {
        let out = cli(&["--json", "peers", "--data", s(data)]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["peers"].as_array().unwrap().clone()
    };
    let wait_for = |data: &Path, what: &dyn Fn(&[serde_json::Value]) -> bool| {
        let t0 = Instant::now();
        loop {
            let list = peers(data);
            if what(&list) {
                return list;
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "{list:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(&db, &|l| l.len() == 1 && l[0]["anonymous"] == false);
    assert_eq!(common::established(&da), std::slice::from_ref(&fetcher));
    // A fetch that cannot finish (the seeder stopped sharing the file) keeps its link up:
    // the fetcher's side has an anonymous link to the seeder, the seeder sees a stranger.
    let mut unshare = Command::new(BIN)
        .args(["--json", "unshare", "-", "--data", s(&da)])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    unshare.stdin.take().unwrap().write_all(link.as_bytes()).unwrap();
    assert!(unshare.wait().unwrap().success());
    let dest2 = tmp.path().join("again.bin");
    let mut stalled = Command::new(BIN)
        .args(["--json", "fetch", &link, "-o", s(&dest2), "--data", s(&db)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let list =
        wait_for(&db, &|l| l.iter().any(|p| p["anonymous"] == true && p["established"] == true));
    assert!(list.iter().any(|p| p["anonymous"] == false), "the overlay link: {list:?}");
    let seeder = common::established(&da);
    assert_eq!(seeder.iter().filter(|id| **id == fetcher).count(), 1, "{seeder:?}");
    assert!(seeder.iter().any(|id| *id != fetcher), "no stranger: {seeder:?}");
    let human = cli(&["peers", "--data", s(&db)]);
    let human = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(human.contains("(anonymous, a download's)"), "{human}");
    let _ = stalled.kill();
    let _ = stalled.wait();
}

#[test]
fn shaping_flags_are_checked_and_an_unshaped_node_still_serves() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in [["--padding-budget", "101"], ["--max-jitter-ms", "5000"], ["--padding-budget", "x"]]
    {
        let out = cli(&["node", bad[0], bad[1], "--data", s(&tmp.path().join("n"))]);
        assert!(!out.status.success(), "{bad:?}");
    }
    // Padding, chaff and jitter off on the seeder, on (the default) at the fetcher: each end
    // pads as it chooses and the other drops it.
    let data = tmp.path().join("a");
    let extra = ["--padding-budget", "0", "--max-jitter-ms", "0"];
    let (_daemon, _) = start_daemon(&data, &extra);
    let file = tmp.path().join("f");
    let content = write_random(&file, 2 << 20, 0x5eed);
    let link = common::share_link(&file, &data);
    common::fetch_checked(&link, &tmp.path().join("copy"), &content);
}
