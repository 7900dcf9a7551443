//! Real processes: where `samizdat fetch` saves a file (current directory, `-o DIR`,
//! `-o FILE`, `-o -`) and how it refuses a second fetch into the same output.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{BIN, Daemon, cli, s, start_daemon, write_random};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A seeding daemon in `tmp/a` that shares `name` (random `len` bytes); returns the daemon,
/// its address, the link and the content.
fn seeder(tmp: &Path, name: &str, len: usize) -> (Daemon, String, String, Vec<u8>) {
    let data = tmp.join("a");
    let (daemon, v) = start_daemon(&data, &[]);
    let addr = v["listen"][0].as_str().unwrap().to_owned();
    let src = tmp.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join(name);
    let content = write_random(&file, len, 0x1234_5678_9abc_def1);
    let out = cli(&["--json", "share", s(&file), "--data", s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (daemon, addr, v["link"].as_str().unwrap().to_owned(), content)
}

/// Runs `samizdat ARGS` in `cwd`.
fn cli_in(cwd: &Path, args: &[&str]) -> Output {
    // HOME beside the working directory: without --data the CLI looks for a node in
    // HOME/.samizdat, finds none, and fetches with a short-lived node of its own.
    let home = cwd.parent().unwrap_or(cwd);
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("SAMIZDAT_DATA")
        .output()
        .unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn fetch_saves_under_the_senders_name_into_the_current_directory_or_a_given_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (_a, _, link, content) = seeder(tmp.path(), "report.pdf", 300_000);
    // Fetch through a second daemon, as a user with a running node would.
    let db = tmp.path().join("b");
    let (_b, _) = start_daemon(&db, &[]);
    let here = tmp.path().join("here");
    std::fs::create_dir(&here).unwrap();

    let out = cli_in(&here, &["--json", "fetch", &link, "--data", s(&db)]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["path"], s(&here.join("report.pdf")));
    assert_eq!(std::fs::read(here.join("report.pdf")).unwrap(), content);
    // Again: never overwrites, adds a suffix before the extension.
    assert_ok(&cli_in(&here, &["fetch", &link, "--data", s(&db)]));
    assert_eq!(names(&here), ["report (1).pdf", "report.pdf"]);
    assert_eq!(std::fs::read(here.join("report (1).pdf")).unwrap(), content);

    // -o DIR saves inside it; the human message says where.
    let into = tmp.path().join("into");
    std::fs::create_dir(&into).unwrap();
    let out = cli(&["fetch", &link, "-o", s(&into), "--data", s(&db)]);
    assert_ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(s(&into.join("report.pdf"))), "{text}");
    assert_eq!(names(&into), ["report.pdf"]);

    // -o FILE as before, and an existing FILE is refused.
    let file = tmp.path().join("copy");
    assert_ok(&cli(&["fetch", &link, "-o", s(&file), "--data", s(&db)]));
    assert_eq!(std::fs::read(&file).unwrap(), content);
    let out = cli(&["fetch", &link, "-o", s(&file), "--data", s(&db)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn fetch_to_standard_output_writes_the_file_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (_a, _, link, content) = seeder(tmp.path(), "notes.txt", 500_000);
    let db = tmp.path().join("b");
    let (_b, _) = start_daemon(&db, &[]);
    let here = tmp.path().join("here");
    std::fs::create_dir(&here).unwrap();
    // Through a running node, and through a short-lived one of the CLI's own.
    for data in [Some(&db), None] {
        for json in [false, true] {
            let mut args = vec!["fetch", &link, "-o", "-"];
            if let Some(data) = data {
                args.extend(["--data", s(data)]);
            }
            if json {
                args.insert(0, "--json");
            }
            let out = cli_in(&here, &args);
            assert_ok(&out);
            assert!(out.stdout == content, "stdout is not exactly the file ({json})");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("500000"), "{err}");
        }
    }
    // Nothing was left in the current directory or the staging directory.
    assert!(names(&here).is_empty(), "{:?}", names(&here));
    assert!(names(&db.join("stdout")).is_empty(), "{:?}", names(&db.join("stdout")));
}

#[test]
fn a_second_fetch_into_the_same_output_is_refused_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, addr, link, _) = seeder(tmp.path(), "big.bin", 100_000);
    // Replace the seeder by a listener that accepts and never answers: the first fetch then
    // runs (holding its output) until it is stopped.
    drop(a);
    let port = addr.rsplit(':').next().unwrap();
    let silent = std::net::TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    let here = tmp.path().join("here");
    std::fs::create_dir(&here).unwrap();
    let mut first = Command::new(BIN)
        .args(["fetch", &link])
        .current_dir(&here)
        .env("HOME", tmp.path())
        .env_remove("SAMIZDAT_DATA")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while names(&here).is_empty() {
        assert!(Instant::now() < deadline, "the first fetch never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let part = names(&here);
    assert!(part[0].starts_with('.') && !part[0].contains("big"), "{part:?}");
    let out = cli_in(&here, &["fetch", &link]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("being written by another fetch"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(first.try_wait().unwrap().is_none(), "the first fetch must be unaffected");
    first.kill().unwrap();
    first.wait().unwrap();
    drop(silent);
}
