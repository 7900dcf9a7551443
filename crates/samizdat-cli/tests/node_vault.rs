//! `samizdat node --vault`: a daemon that keeps its state inside a vault, driven through the CLI.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{cli, s, start_daemon, write_random};

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
    let (daemon, _) = start_daemon(&data, &["--vault", s(&container), "--password-file", s(&pw)]);

    let file = tmp.path().join("field-notes.bin");
    let content = write_random(&file, 3 << 20, 0x2545f4914f6cdd1d);
    let out = cli(&["--json", "share", s(&file), "--data", s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = v["link"].as_str().unwrap().to_owned();

    // Fetch with a short-lived node of the CLI's own (no daemon at this data directory).
    let dest = tmp.path().join("copy.bin");
    let out = std::process::Command::new(common::BIN)
        .args(["--json", "fetch", &link, "-o", s(&dest)])
        .env("HOME", tmp.path())
        .env_remove("SAMIZDAT_DATA")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&dest).unwrap() == content, "fetched file differs");

    // The share is recorded inside the vault, and withdrawn from it.
    let out = cli(&["--json", "shares", "--data", s(&data)]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["link"], link.as_str());
    assert_eq!(list[0]["name"], "field-notes.bin");
    let out = cli(&["--json", "share", s(&file), "--data", s(&data)]);
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((&again["existing"], &again["link"]), (&true.into(), &link.clone().into()));
    let id = list[0]["id"].as_str().unwrap();
    assert!(cli(&["unshare", id, "--data", s(&data)]).status.success());
    let out = cli(&["--json", "shares", "--data", s(&data)]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([])
    );
    // Withdrawn means forgotten: sharing it now stores it anew.
    let out = cli(&["--json", "share", s(&file), "--data", s(&data)]);
    let fresh: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fresh["existing"], false);

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
    assert!(listing.contains("node/identity") && listing.contains("node/shares"), "{listing}");
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

/// Issue 6: a `vault put` while `node --vault` held the container was lost at the node's next
/// commit, and two nodes started on one vault. The node now holds the container's lock for
/// its whole lifetime: both are refused, and work again once the node has stopped.
#[test]
fn a_running_node_keeps_the_vault_to_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "the node's volume\n").unwrap();
    let container = tmp.path().join("state.vault");
    let out = cli(&["vault", "create", s(&container), "--size", "8MiB", "--password-file", s(&pw)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = tmp.path().join("data");
    let (daemon, _) = start_daemon(&data, &["--vault", s(&container), "--password-file", s(&pw)]);

    let file = tmp.path().join("note.txt");
    std::fs::write(&file, b"written while the node runs").unwrap();
    let put = ["vault", "put", s(&container), s(&file), "--password-file", s(&pw)];
    let out = cli(&put);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    let out = cli(&["vault", "ls", s(&container), "--password-file", s(&pw)]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another process"));

    let other = tmp.path().join("other");
    let out = cli(&[
        "node",
        "--listen",
        "tcp/127.0.0.1:0",
        "--data",
        s(&other),
        "--vault",
        s(&container),
        "--password-file",
        s(&pw),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    drop(daemon);

    let out = cli(&put);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        cli(&["vault", "get", s(&container), "note.txt", "-o", "-", "--password-file", s(&pw)]);
    assert_eq!(out.stdout, b"written while the node runs");
}

/// `node --vault DECOY --protect-password-file HIDDEN`: the node's writes (identity, shared
/// blobs) avoid the hidden volume's blocks, even with the container nearly full.
#[test]
fn node_in_protected_mode_leaves_the_hidden_volume_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let (pw, hpw) = (tmp.path().join("pw"), tmp.path().join("hpw"));
    std::fs::write(&pw, "decoy volume\n").unwrap();
    std::fs::write(&hpw, "hidden volume\n").unwrap();
    let c = tmp.path().join("state.vault");
    let out = cli(&["vault", "create", s(&c), "--size", "8MiB", "--password-file", s(&pw)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(&[
        "vault",
        "add-volume",
        s(&c),
        "--replace-hidden",
        "--parent-password-file",
        s(&pw),
        "--password-file",
        s(&hpw),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Half of the container is hidden data: unprotected, a 2 MiB share would hit it.
    let secret = tmp.path().join("secret.bin");
    let hidden = write_random(&secret, 4 << 20, 0x9e3779b97f4a7c15);
    let out = cli(&["vault", "put", s(&c), s(&secret), "--password-file", s(&hpw)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let data = tmp.path().join("data");
    let (daemon, _) = start_daemon(
        &data,
        &["--vault", s(&c), "--password-file", s(&pw), "--protect-password-file", s(&hpw)],
    );
    let file = tmp.path().join("decoy.bin");
    write_random(&file, 2 << 20, 0x2545f4914f6cdd1d);
    let out = cli(&["--json", "share", s(&file), "--data", s(&data)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(daemon);

    let out = cli(&["vault", "get", s(&c), "secret.bin", "-o", "-", "--password-file", s(&hpw)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == hidden, "hidden file damaged");
    let out = cli(&["vault", "ls", s(&c), "--password-file", s(&pw)]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(".blob"));
}
