//! Real processes: share and fetch as tools people trust (links kept out of argv, shares
//! listed and withdrawn, typed one-line errors, Ctrl-C, quiet default logs, progress on a pty).
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{BIN, Daemon, cli, s, write_random};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Starts `samizdat [FLAGS] --json node --data DATA --listen tcp/127.0.0.1:0 EXTRA…` with its
/// stderr going to `log`; returns it with its listen address.
fn daemon(data: &Path, flags: &[&str], extra: &[&str], log: &Path) -> (Daemon, String) {
    let mut child = Command::new(BIN)
        .args(flags)
        .args(["--json", "node", "--listen", "tcp/127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let d = Daemon(child);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !data.join("control.sock").exists() {
        assert!(Instant::now() < deadline, "control socket never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    (d, v["listen"][0].as_str().unwrap().to_owned())
}

/// Runs the CLI with `input` on its standard input.
fn cli_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The JSON error object a failed `--json` command wrote on stderr (one line, stdout empty).
fn json_error(out: &Output) -> serde_json::Value {
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    serde_json::from_str(err.trim()).unwrap()
}

fn blob_count(data: &Path) -> usize {
    std::fs::read_dir(data.join("blobs")).unwrap().count()
}

#[test]
fn links_stay_out_of_argv_and_shares_are_listed_deduplicated_and_withdrawn() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let (log_a, log_b) = (tmp.path().join("a.log"), tmp.path().join("b.log"));
    let (a, addr_a) = daemon(&da, &[], &[], &log_a);
    let (b, _) = daemon(&db, &["-v"], &["--peer", &addr_a], &log_b);

    let file = tmp.path().join("secret-report.pdf");
    let content = write_random(&file, 3 << 20, 7);
    let first = ok_json(&cli(&["--json", "share", s(&file), "--data", s(&da)]));
    assert_eq!(first["existing"], false);
    let link = first["link"].as_str().unwrap().to_owned();
    assert_eq!(blob_count(&da), 2);
    // The same content again: the same link, nothing stored.
    let again = ok_json(&cli(&["--json", "share", s(&file), "--data", s(&da)]));
    assert_eq!(
        (&again["existing"], &again["link"], &again["id"]),
        (&true.into(), &link.clone().into(), &first["id"])
    );
    assert_eq!(blob_count(&da), 2);
    let out = cli(&["share", s(&file), "--data", s(&da)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already shared"));
    // Unless asked.
    let second = ok_json(&cli(&["--json", "share", s(&file), "--again", "--data", s(&da)]));
    let link2 = second["link"].as_str().unwrap().to_owned();
    assert_ne!(link, link2);
    assert_eq!(blob_count(&da), 4);

    let list = ok_json(&cli(&["--json", "shares", "--data", s(&da)]));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for (entry, l) in list.iter().zip([&link, &link2]) {
        let mut keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["id", "link", "name", "shared_at", "size"]);
        assert_eq!(entry["link"], l.as_str());
        assert_eq!(entry["name"], "secret-report.pdf");
        assert_eq!(entry["size"], 3 << 20);
        let when = entry["shared_at"].as_str().unwrap();
        assert!(when.len() == 20 && when.starts_with("20") && when.ends_with('Z'), "{when}");
    }
    let human = String::from_utf8(cli(&["shares", "--data", s(&da)]).stdout).unwrap();
    assert!(human.contains("secret-report.pdf") && human.contains(&link) && human.contains(&link2));
    assert!(human.contains("3.0 MiB") && human.contains(" UTC"), "{human}");
    // The records on disk do not give the names or links away.
    let raw = std::fs::read(da.join("shares.rec")).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(!raw.contains("secret-report") && !raw.contains(&link[..20]));

    // Fetch with the link on standard input, then from a link file.
    let out1 = tmp.path().join("copy1");
    ok_json(&cli_stdin(
        &["--json", "fetch", "-", "-o", s(&out1), "--data", s(&db)],
        &format!("\n{link}\n"),
    ));
    assert!(std::fs::read(&out1).unwrap() == content);
    let link_file = tmp.path().join("link.txt");
    std::fs::write(&link_file, format!("\n  {link2}  \nignored\n")).unwrap();
    let out2 = tmp.path().join("copy2");
    let args = ["--json", "fetch", "--link-file", s(&link_file), "-o", s(&out2), "--data", s(&db)];
    ok_json(&cli(&args));
    assert!(std::fs::read(&out2).unwrap() == content);
    // Never overwritten.
    assert_eq!(json_error(&cli(&args))["kind"], "output_exists");

    // On a terminal, fetch and share draw a bar with real totals (never 0 B / 0 B).
    if Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let out3 = tmp.path().join("copy3");
        let cmd =
            format!("{BIN} fetch --link-file {} -o {} --data {}", s(&link_file), s(&out3), s(&db));
        let tty = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("COLUMNS", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&tty.stdout);
        assert!(tty.status.success(), "{text}");
        assert!(text.contains("Fetched"), "{text}");
        assert!(!text.contains("0 B / 0 B"), "{text}");
        // No frame mixes the bar with the waiting text, or shows a rate before a second.
        assert!(!text.contains("] looking for peers"), "{text}");
        // A bar frame has the total (the blob is a little larger than the file).
        assert!(text.contains("/ 3.0 MiB") || text.contains("looking for peers"), "{text}");
    }

    // Withdraw the first share by its link, from standard input.
    let v =
        ok_json(&cli_stdin(&["--json", "unshare", "-", "--data", s(&da)], &format!("{link}\n")));
    assert_eq!(v["id"], first["id"]);
    assert_eq!(blob_count(&da), 2);
    let list = ok_json(&cli(&["--json", "shares", "--data", s(&da)]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    // And the second by its link file; then nothing is left.
    let out = cli(&["unshare", "--link-file", s(&link_file), "--data", s(&da)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Stopped sharing"), "{out:?}");
    assert_eq!(blob_count(&da), 0);
    assert_eq!(
        String::from_utf8(cli(&["shares", "--data", s(&da)]).stdout).unwrap().trim(),
        "nothing shared"
    );
    let e =
        json_error(&cli(&["--json", "unshare", second["id"].as_str().unwrap(), "--data", s(&da)]));
    assert_eq!(e["kind"], "unknown_share");

    // Bad link inputs.
    let e = json_error(&cli(&["--json", "fetch", "--link-file", "/nonexistent/l", "-o", "x"]));
    assert_eq!(e["kind"], "io");
    let e = json_error(&cli_stdin(&["--json", "fetch", "-", "-o", "x"], "\n \n"));
    assert_eq!(e["kind"], "link_invalid");

    // Default-level logs: counts only, no address, link or file name. `-v` says more.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log_a).unwrap().contains("MiB served") {
        assert!(
            Instant::now() < deadline,
            "no status line: {}",
            std::fs::read_to_string(&log_a).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((a, b));
    let log = std::fs::read_to_string(&log_a).unwrap();
    assert!(log.contains("peer up, ") || log.contains("peers up, "), "{log}");
    for secret in ["127.0.0.1", "tcp/", "sz1", "secret-report", &addr_a] {
        assert!(!log.contains(secret), "{secret:?} in the default log: {log}");
    }
    let verbose = std::fs::read_to_string(&log_b).unwrap();
    assert!(verbose.contains("samizdat::peers") && verbose.contains(" up"), "{verbose}");
}

#[test]
fn fetch_with_a_data_dir_needs_its_node() {
    let tmp = tempfile::tempdir().unwrap();
    let none = tmp.path().join("none");
    let out = tmp.path().join("o");
    let link = samizdat_node::ShareLink {
        root: samizdat_node::ContentRoot([1; 32]),
        key: samizdat_content::ContentKey::from_bytes([2; 32]),
        blob_len: 5000,
        peers: vec![],
    }
    .to_string();
    let link = link.as_str();
    let r = cli_stdin(&["fetch", "-", "-o", s(&out), "--data", s(&none)], link);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8(r.stderr).unwrap();
    let want = format!(
        "samizdat: no node is running with data directory {0}; start one with `samizdat node --data {0}`",
        none.display()
    );
    assert_eq!(err.trim_end(), want);
    let r = Command::new(BIN)
        .args(["--json", "fetch", "-", "-o", s(&out)])
        .env("SAMIZDAT_DATA", &none)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = r;
    r.stdin.take().unwrap().write_all(link.as_bytes()).unwrap();
    let r = r.wait_with_output().unwrap();
    assert_eq!(json_error(&r)["kind"], "node_not_running");
    assert!(!out.exists() && !none.exists());
}

#[test]
fn ctrl_c_during_a_fetch_reports_what_was_kept_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let (_a, addr_a) = daemon(&da, &[], &[], &tmp.path().join("a.log"));
    let (_b, _) = daemon(&db, &[], &["--peer", &addr_a], &tmp.path().join("b.log"));
    let file = tmp.path().join("big");
    let content = write_random(&file, 96 << 20, 11);
    let v = ok_json(&cli(&["--json", "share", s(&file), "--data", s(&da)]));
    let link_file = tmp.path().join("link");
    std::fs::write(&link_file, v["link"].as_str().unwrap()).unwrap();
    let outdir = tmp.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let dest = outdir.join("copy");
    let args = ["fetch", "--link-file", s(&link_file), "-o", s(&dest), "--data", s(&db)];
    let fetch =
        Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Whatever the partial file is called, it lives beside the output.
        let kept: u64 = std::fs::read_dir(&outdir)
            .unwrap()
            .flatten()
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .max()
            .unwrap_or(0);
        if kept > 8 << 20 {
            break;
        }
        assert!(Instant::now() < deadline, "fetch made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    Command::new("kill").args(["-INT", &fetch.id().to_string()]).status().unwrap();
    let out = fetch.wait_with_output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    if out.status.success() {
        eprintln!("the fetch finished before Ctrl-C arrived; not exercised");
        return;
    }
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("interrupted; kept ") && err.contains("% of "), "{err}");
    assert!(err.contains("run the same command again to resume"), "{err}");
    assert!(!dest.exists());
    std::thread::sleep(Duration::from_millis(300));
    let mut json_args = vec!["--json"];
    json_args.extend(args);
    let v = ok_json(&cli(&json_args));
    assert!(v["resumed_bytes"].as_u64().unwrap() > 1 << 20, "{v}");
    assert!(std::fs::read(&dest).unwrap() == content);
}

#[test]
fn errors_are_one_line_without_repeats_and_typed_in_json() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp/{}", busy.local_addr().unwrap());
    let data = tmp.path().join("d");
    let node = |json: bool| {
        let mut c = Command::new(BIN);
        if json {
            c.arg("--json");
        }
        c.args(["node", "--listen", &addr, "--data", s(&data)]).output().unwrap()
    };
    let out = node(false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    assert_eq!(json_error(&node(true))["kind"], "in_use");

    let cases: [&[&str]; 4] = [
        &["node", "--listen", "127.0.0.1:7070", "--data", s(&data)],
        &["node", "--peer", "tcp/127.0.0.1", "--data", s(&data)],
        &["node", "--announce", "udp/1.2.3.4:5", "--data", s(&data)],
        &["fetch", "sz1x", "--peer", "tcp/:5", "-o", "x"],
    ];
    for args in cases {
        let out = Command::new(BIN).args(args).output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains("expected tcp/HOST:PORT"), "{args:?}: {err}");
        let out = Command::new(BIN).arg("--json").args(args).output().unwrap();
        assert_eq!(json_error(&out)["kind"], "bad_address", "{args:?}");
    }
    let out = cli(&["--json", "fetch", "sz1notalink", "-o", "x"]);
    assert_eq!(json_error(&out)["kind"], "link_invalid");
    let out = cli(&["--json", "share", "/nonexistent", "--data", s(&data)]);
    assert_eq!(json_error(&out)["kind"], "io");
    let out = cli(&["--json", "shares", "--data", s(&data)]);
    assert_eq!(json_error(&out)["kind"], "node_not_running");
}

#[test]
fn human_output_of_node_peers_share_and_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    // A daemon in human mode, announcing another address than it listens on.
    let mut child = Command::new(BIN)
        .args(["node", "--listen", "tcp/127.0.0.1:0", "--announce", "tcp/127.0.0.1:9", "--data"])
        .arg(&da)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut head = Vec::new();
    for _ in 0..5 {
        head.push(lines.next().unwrap().unwrap());
    }
    let mut a = Daemon(child);
    assert!(head[0].starts_with("samizdat node ") && head[0].ends_with(" running"), "{head:?}");
    let listen = head[1].strip_prefix("  listening on ").unwrap().to_owned();
    assert_eq!(head[2], "  advertising tcp/127.0.0.1:9");
    assert_eq!(head[3], format!("  data directory {}", da.display()));
    assert_eq!(head[4], "Press Ctrl-C to stop.");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !da.join("control.sock").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let human = String::from_utf8(cli(&["peers", "--data", s(&da)]).stdout).unwrap();
    assert_eq!(human.trim(), "no peers connected");
    let (_b, _) = daemon(&db, &[], &["--peer", &listen], &tmp.path().join("b.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let human = String::from_utf8(cli(&["peers", "--data", s(&db)]).stdout).unwrap();
        if human.starts_with("out ") {
            break;
        }
        assert!(Instant::now() < deadline, "{human}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A directory is not shared.
    let out = cli(&["share", s(tmp.path()), "--data", s(&da)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a regular file"));

    // The link names the announced (unreachable) address: --peer gives the real one.
    let file = tmp.path().join("f");
    write_random(&file, 2 << 20, 5);
    let link = String::from_utf8(cli(&["share", s(&file), "--data", s(&da)]).stdout).unwrap();
    let dest = tmp.path().join("copy");
    let args = ["fetch", "-", "-o", s(&dest), "--peer", &listen, "--data", s(&db)];
    let out = cli_stdin(&args, &link);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("Fetched 2097152 bytes into") && text.contains("\"f\""), "{text}");

    // SIGTERM stops the daemon cleanly and removes its control socket.
    Command::new("kill").args(["-TERM", &a.0.id().to_string()]).status().unwrap();
    let status = a.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!da.join("control.sock").exists());
}
