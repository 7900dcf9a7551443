//! Real processes in network namespaces: a censor (nftables in the new node's namespace)
//! blackholes the node's only bootstrap peer, and the node still finds the network through
//! the Mainline DHT rendezvous (a `mainline` testnet in a namespace of its own; never the
//! internet).
//!
//! ```text
//!           bridge (namespace hub)
//!     ┌─────────┬─────────┬─────────┐
//!   A .2      B .3      C .4      M .5
//!  (new)   (member)  (bootstrap)  (Mainline testnet)
//!   A → C dropped by nftables in A
//! ```
//!
//! Needs root (for `ip netns` and `nft`); CI runs as root, and the test fails there if the
//! namespaces cannot be made. Run alone it prints the wall time of the discovery.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

mod common;

use common::{BIN, Daemon, cli, established, s, spawn_daemon};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the environment of the helper process that runs the Mainline testnet.
const TESTNET_BIND: &str = "SAMIZDAT_TEST_TESTNET_BIND";

/// Not a test: the Mainline testnet, run by [`the_mainline_dht_finds_peers_when_bootstrap_is_blackholed`]
/// inside its own namespace by re-running this binary. It prints the bootstrap addresses and
/// lives until its standard input closes.
#[test]
#[ignore = "helper process of the namespace test"]
fn mainline_testnet_server() {
    let Ok(bind) = std::env::var(TESTNET_BIND) else { return };
    let net = mainline::Testnet::builder(8).bind_address(bind.parse().unwrap()).build().unwrap();
    println!("BOOTSTRAP {}", net.bootstrap.join(","));
    let mut line = String::new();
    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
    drop(net);
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// Namespaces joined by a bridge, deleted when dropped.
struct Lab {
    hub: String,
    hosts: Vec<String>,
}

impl Lab {
    /// `hosts` namespaces, host i at 10.77.0.(i+2)/24.
    fn new(hosts: usize) -> Lab {
        static LABS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{}x{n}", std::process::id());
        let hub = format!("sz{tag}hub");
        ip(&["netns", "add", &hub]);
        let mut lab = Lab { hub: hub.clone(), hosts: Vec::new() };
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for i in 0..hosts {
            let ns = format!("sz{tag}h{i}");
            ip(&["netns", "add", &ns]);
            lab.hosts.push(ns.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &port, "up"]);
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", Lab::addr(i)), "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn addr(i: usize) -> String {
        format!("10.77.0.{}", i + 2)
    }

    /// Shapes every host's `eth0` with a token bucket of `rate` and `burst` (200 ms latency).
    fn shape(&self, rate: &str, burst: &str) {
        for i in 0..self.hosts.len() {
            run(self.exec(i, "tc").args([
                "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", burst,
                "latency", "200ms",
            ]));
        }
    }

    /// A command run inside host `i`'s namespace.
    fn exec(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hosts[i], program]);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&self.hub]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Starts `samizdat --json node` in host `i`, listening on its address; returns the daemon
/// and its node ID.
fn node(lab: &Lab, i: usize, data: &Path, extra: &[&str]) -> (Daemon, String) {
    node_with(lab, i, data, extra, Stdio::inherit())
}

/// [`node`], with the daemon's standard error going to `stderr`.
fn node_with(lab: &Lab, i: usize, data: &Path, extra: &[&str], stderr: Stdio) -> (Daemon, String) {
    let listen = format!("tcp/{}:7070", Lab::addr(i));
    let mut cmd = lab.exec(i, BIN);
    cmd.stderr(stderr);
    cmd.args(["--json", "node", "--local-network", "--listen", &listen, "--data"])
        .arg(data)
        .args(extra);
    let (daemon, v) = spawn_daemon(cmd, data);
    (daemon, v["node_id"].as_str().unwrap().to_owned())
}

/// Loads nftables `rules` in host `i`'s namespace (the censor).
fn nft(lab: &Lab, i: usize, rules: &str) {
    let mut nft = lab.exec(i, "nft").args(["-f", "-"]).stdin(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut nft.stdin.take().unwrap(), rules.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success(), "nft refused the rules");
}

/// Kills the testnet helper (closing its standard input) when dropped.
struct Testnet(Child);

impl Drop for Testnet {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_mainline_dht_finds_peers_when_bootstrap_is_blackholed() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces and nftables");
        return;
    }
    let lab = Lab::new(4);
    let (a, b, c, m) = (0, 1, 2, 3);

    // The Mainline testnet in M.
    let mut helper = lab
        .exec(m, &std::env::current_exe().unwrap().to_string_lossy())
        .args(["--ignored", "--exact", "mainline_testnet_server", "--nocapture"])
        .env(TESTNET_BIND, Lab::addr(m))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let testnet = Testnet(helper);
    let bootstrap = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("BOOTSTRAP ").map(str::to_owned))
        .expect("the testnet helper printed its bootstrap nodes");
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("network.secret");
    let out = cli(&["network-secret", "--out", s(&secret)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut mainline = vec!["--mainline-secret-file", s(&secret)];
    for node in bootstrap.split(',') {
        mainline.extend(["--mainline-bootstrap", node]);
    }

    // C is the well-known way in; B is a member that uses it.
    let peer_c = format!("tcp/{}:7070", Lab::addr(c));
    let (dc, db, da) = (tmp.path().join("c"), tmp.path().join("b"), tmp.path().join("a"));
    let (_c, id_c) = node(&lab, c, &dc, &mainline);
    let mut args = mainline.clone();
    args.extend(["--peer", &peer_c]);
    let (_b, id_b) = node(&lab, b, &db, &args);

    // The censor drops everything A sends to C.
    let rules = format!(
        "table inet censor {{\n chain out {{\n type filter hook output priority 0; policy \
         accept;\n ip daddr {} counter drop\n }}\n}}\n",
        Lab::addr(c)
    );
    nft(&lab, a, &rules);

    // B is up (it reached C) before A starts; its time through an open bootstrap peer is the
    // baseline.
    let up = Instant::now();
    while !established(&db).contains(&id_c) {
        assert!(up.elapsed() < Duration::from_secs(20), "B never reached C");
        std::thread::sleep(Duration::from_millis(50));
    }
    let direct = up.elapsed();
    let t0 = Instant::now();
    let (_a, _) = node(&lab, a, &da, &args);
    let found = loop {
        let peers = established(&da);
        assert!(!peers.contains(&id_c), "A reached the blackholed bootstrap peer");
        if peers.contains(&id_b) {
            break t0.elapsed();
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "A never found B: {peers:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "netns: A found B through the Mainline DHT in {:.1} s (wall); baseline: B reached its \
         open bootstrap peer in {:.2} s",
        found.as_secs_f64(),
        direct.as_secs_f64()
    );
    // The censor did drop A's attempts at C.
    let listed = lab.exec(a, "nft").args(["list", "ruleset"]).output().unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    let dropped: u64 = text
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(dropped > 0, "A never tried C: {text}");
    drop(testnet);
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

#[test]
fn nodes_on_a_lan_without_any_way_in_find_each_other_over_mdns() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces");
        return;
    }
    let lab = Lab::new(2);
    let tmp = tempfile::tempdir().unwrap();
    let (da, db) = (tmp.path().join("a"), tmp.path().join("b"));
    let lan = |i: usize| ["--lan".to_owned(), "--lan-interface".to_owned(), Lab::addr(i)];
    let args_b = lan(1);
    let (_b, id_b) = node(&lab, 1, &db, &args_b.iter().map(String::as_str).collect::<Vec<_>>());
    let t0 = Instant::now();
    let args_a = lan(0);
    let (_a, id_a) = node(&lab, 0, &da, &args_a.iter().map(String::as_str).collect::<Vec<_>>());
    while !established(&da).contains(&id_b) {
        assert!(t0.elapsed() < Duration::from_secs(30), "A never found B on the LAN");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("netns: A found B over mDNS in {:.1} s (wall)", t0.elapsed().as_secs_f64());
    assert!(established(&db).contains(&id_a));
}

#[test]
fn a_node_cut_off_from_everything_says_what_it_tried_within_30_s() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces and nftables");
        return;
    }
    let lab = Lab::new(1);
    // The censor drops everything but the LAN's multicast; nobody is on the LAN anyway.
    let rules = "table inet censor {\n chain out {\n type filter hook output priority 0; \
                 policy accept;\n ip daddr 10.0.0.0/8 drop\n }\n}\n";
    nft(&lab, 0, rules);
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("network.secret");
    assert!(cli(&["network-secret", "--out", s(&secret)]).status.success());
    let interface = Lab::addr(0);
    let args = [
        "--peer",
        "tcp/10.77.0.9:7070",
        "--mainline-secret-file",
        s(&secret),
        "--mainline-bootstrap",
        "10.77.0.9:6881",
        "--lan",
        "--lan-interface",
        &interface,
    ];
    let t0 = Instant::now();
    let (mut daemon, _) = node_with(&lab, 0, &tmp.path().join("a"), &args, Stdio::piped());
    let stderr = daemon.0.stderr.take().unwrap();
    let advice = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("no peer reachable"))
        .expect("the node said what it tried");
    let took = t0.elapsed();
    println!("netns: cut off, the node said what it tried after {:.1} s", took.as_secs_f64());
    assert!(took < Duration::from_secs(40), "took {took:?}");
    for what in ["1 --peer address", "mainline:", "mdns:", "--invite", "--lan too"] {
        assert!(advice.contains(what), "{what}: {advice}");
    }
    assert!(!advice.contains("10.77.0.9"), "no address in the log: {advice}");
}

/// Starts `samizdat --json node --local-network --listen LISTEN` in host `i`.
fn node_listening(lab: &Lab, i: usize, data: &Path, listen: &[&str]) -> Daemon {
    let mut cmd = lab.exec(i, BIN);
    cmd.args(["--json", "node", "--local-network", "--data"]).arg(data);
    for l in listen {
        cmd.args(["--listen", l]);
    }
    if listen.iter().any(|l| l.starts_with("https/")) {
        cmd.args(["--tls-name", "www.example.org"]);
    }
    spawn_daemon(cmd, data).0
}

/// A seeder in host 0 listening on `listen` that shares `file`, and a fetching node in host
/// 1: both daemons, the fetcher's data directory and the link.
struct Pair {
    _seeder: Daemon,
    _fetcher: Daemon,
    fetcher_data: std::path::PathBuf,
    link: String,
}

fn seeded_pair(lab: &Lab, tmp: &Path, tag: &str, listen: &[&str], file: &Path) -> Pair {
    let (ds, df) = (tmp.join(format!("{tag}-seed")), tmp.join(format!("{tag}-fetch")));
    let seeder = node_listening(lab, 0, &ds, listen);
    let fetcher = node_listening(lab, 1, &df, &[&format!("tcp/{}:7071", Lab::addr(1))]);
    let out = cli(&["--json", "share", s(file), "--data", s(&ds)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let link = v["link"].as_str().unwrap().to_owned();
    Pair { _seeder: seeder, _fetcher: fetcher, fetcher_data: df, link }
}

/// Shares `file` from a seeder in host 0 listening on `listen` and fetches it through a node
/// in host 1; the wall time of the fetch.
fn timed_transfer(lab: &Lab, tmp: &Path, tag: &str, listen: &str, file: &Path) -> Duration {
    let pair = seeded_pair(lab, tmp, tag, &[listen], file);
    let dest = tmp.join(format!("{tag}.out"));
    let t0 = Instant::now();
    let out =
        cli(&["--json", "fetch", &pair.link, "-o", s(&dest), "--data", s(&pair.fetcher_data)]);
    let took = t0.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(file).unwrap());
    took
}

#[test]
fn a_mebibyte_crosses_a_256_kbit_link_over_https_about_as_fast_as_over_tcp() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces and tc");
        return;
    }
    let lab = Lab::new(2);
    lab.shape("256kbit", "8kb");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("one.bin");
    common::write_random(&file, 1 << 20, 0x256);
    let tcp = timed_transfer(&lab, tmp.path(), "tcp", &format!("tcp/{}:7070", Lab::addr(0)), &file);
    let https =
        timed_transfer(&lab, tmp.path(), "https", &format!("https/{}:443", Lab::addr(0)), &file);
    println!(
        "netns 256 kbit/s, 1 MiB: https {:.1} s, tcp {:.1} s (same run), ratio {:.3}",
        https.as_secs_f64(),
        tcp.as_secs_f64(),
        https.as_secs_f64() / tcp.as_secs_f64()
    );
    assert!(https < Duration::from_secs(40), "https took {https:?} (tcp {tcp:?})");
}

/// The fetcher's links, as `samizdat peers --json` lists them.
fn peer_addrs(data: &Path) -> Vec<String> {
    let out = cli(&["--json", "peers", "--data", s(data)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let peers = v["peers"].as_array().cloned().unwrap_or_default();
    peers
        .iter()
        .filter(|p| p["established"].as_bool() == Some(true))
        .filter_map(|p| p["addr"].as_str().map(str::to_owned))
        .collect()
}

/// Shares `file` from host 0 (listening on HTTPS and TCP, HTTPS first) and fetches it from
/// host 1; with `block_after`, a censor in host 1 starts dropping every packet to and from
/// port 443 that long into the fetch. The fetch's wall time.
fn fetch_with_censor(
    lab: &Lab,
    tmp: &Path,
    tag: &str,
    file: &Path,
    block_after: Option<Duration>,
) -> Duration {
    let https = format!("https/{}:443", Lab::addr(0));
    let tcp = format!("tcp/{}:7070", Lab::addr(0));
    let pair = seeded_pair(lab, tmp, tag, &[&https, &tcp], file);
    let (df, link) = (&pair.fetcher_data, &pair.link);
    let dest = tmp.join(format!("{tag}.out"));
    let t0 = Instant::now();
    let mut fetch = Command::new(BIN)
        .args(["--json", "fetch", link, "-o", s(&dest), "--data", s(df)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(after) = block_after {
        std::thread::sleep(after);
        let links = peer_addrs(df);
        assert!(
            links.iter().any(|a| a.starts_with("https/")),
            "the fetch began over HTTPS: {links:?}"
        );
        nft(
            lab,
            1,
            "table inet censor {\n chain out { type filter hook output priority 0; tcp dport 443 drop; }\n chain in { type filter hook input priority 0; tcp sport 443 drop; }\n}\n",
        );
    }
    let status = loop {
        if let Some(status) = fetch.try_wait().unwrap() {
            break status;
        }
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = fetch.kill();
            panic!("the fetch did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = t0.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut fetch.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(std::fs::read(&dest).unwrap() == std::fs::read(file).unwrap());
    if block_after.is_some() {
        // The download's links ended with it (they were its own, anonymous ones); the
        // fetcher remembers why HTTPS failed and that TCP worked, and says so.
        let out = cli(&["--json", "peers", "--data", s(df)]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let transports = v["transports"].as_array().unwrap();
        let of = |t: &str| transports.iter().find(|x| x["transport"] == t).unwrap().clone();
        let (https, tcp) = (of("https"), of("tcp"));
        assert!(https["failing"] == true && https["last_failure"] == "silent", "{https}");
        assert!(tcp["working"] == true && tcp["failing"] == false, "{tcp}");
        let human = cli(&["peers", "--data", s(df)]);
        let human = String::from_utf8_lossy(&human.stdout).into_owned();
        assert!(human.contains("failing (silent,") && human.contains("working (up"), "{human}");
        assert!(!human.contains("key="), "no secret on screen: {human}");
        let _ = lab.exec(1, "nft").args(["delete", "table", "inet", "censor"]).status();
    }
    took
}

/// A censor blocks the HTTPS transport in the middle of a transfer (every packet to and from
/// port 443 dropped, as a blocklist does); the fetch moves to the seeder's TCP address by
/// itself and completes, costing at most a few seconds more than an unblocked fetch measured
/// in the same run.
#[test]
fn a_fetch_moves_to_another_transport_when_https_is_blocked_mid_transfer() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces, tc and nftables");
        return;
    }
    let lab = Lab::new(2);
    lab.shape("2mbit", "16kb");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("four.bin");
    common::write_random(&file, 4 << 20, 0x443);
    let free = fetch_with_censor(&lab, tmp.path(), "free", &file, None);
    let blocked =
        fetch_with_censor(&lab, tmp.path(), "blocked", &file, Some(Duration::from_secs(5)));
    let cost = blocked.saturating_sub(free);
    println!(
        "netns 2 Mbit/s, 4 MiB, HTTPS blocked 5 s in: {:.1} s (unblocked {:.1} s, same run), switch cost {:.1} s",
        blocked.as_secs_f64(),
        free.as_secs_f64(),
        cost.as_secs_f64()
    );
    assert!(
        cost < Duration::from_secs(12),
        "switching took {cost:?} (blocked {blocked:?}, free {free:?})"
    );
}

/// Set in the environment of the helper process that runs the censor.
const CENSOR_FROM: &str = "SAMIZDAT_TEST_CENSOR_FROM";
/// The helper's block probability (default 1) and SNI blocklist (comma-separated).
const CENSOR_P: &str = "SAMIZDAT_TEST_CENSOR_P";
const CENSOR_SNI: &str = "SAMIZDAT_TEST_CENSOR_SNI";
/// Set (to anything) to turn active probing on in the helper.
const CENSOR_PROBE: &str = "SAMIZDAT_TEST_CENSOR_PROBE";

/// Not a test: the censor (`samizdat_lab::censor`, as `samizdat-lab censor` runs it), run by
/// [`the_fully_encrypted_censor_passes_https_and_blocks_the_bare_session`] in the router's
/// namespace by re-running this binary. It blocks every flow without an exemption and lives
/// until its standard input closes.
#[test]
#[ignore = "helper process of the namespace test"]
fn censor_process() {
    let Ok(from) = std::env::var(CENSOR_FROM) else { return };
    std::thread::spawn(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", samizdat_lab::censor::TABLE])
            .status();
        std::process::exit(0);
    });
    let block_probability = std::env::var(CENSOR_P).map_or(1.0, |p| p.parse().unwrap());
    let block_sni = std::env::var(CENSOR_SNI)
        .map(|l| l.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    let config = samizdat_lab::censor::CensorConfig {
        port: 15_000,
        from,
        block_probability,
        block_for: Duration::from_secs(120),
        seed: 1,
        block_sni,
        probe: std::env::var(CENSOR_PROBE).is_ok(),
    };
    samizdat_lab::censor::run(config, Box::new(std::io::stdout())).unwrap();
}

/// Three namespaces in a line, the middle one a router: the censored region (10.78.1.0/24,
/// host 0), the router (host 1) and the outside (10.78.2.0/24, host 2).
fn routed_lab() -> Lab {
    static LABS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("{}r{n}", std::process::id());
    let names: Vec<String> = ["in", "rt", "out"].iter().map(|h| format!("sz{tag}{h}")).collect();
    for ns in &names {
        ip(&["netns", "add", ns]);
    }
    // The hub is unused here; Lab's Drop deletes it with the hosts.
    let hub = format!("sz{tag}hub");
    ip(&["netns", "add", &hub]);
    let lab = Lab { hub, hosts: names.clone() };
    let (inside, router, outside) = (&names[0], &names[1], &names[2]);
    for (host, side, net) in [(inside, "vin", "1"), (outside, "vout", "2")] {
        ip(&[
            "-n", router, "link", "add", side, "type", "veth", "peer", "name", "eth0", "netns",
            host,
        ]);
        ip(&["-n", router, "addr", "add", &format!("10.78.{net}.1/24"), "dev", side]);
        ip(&["-n", router, "link", "set", side, "up"]);
        ip(&["-n", host, "addr", "add", &format!("10.78.{net}.2/24"), "dev", "eth0"]);
        ip(&["-n", host, "link", "set", "eth0", "up"]);
        ip(&["-n", host, "link", "set", "lo", "up"]);
        ip(&["-n", host, "route", "add", "default", "via", &format!("10.78.{net}.1")]);
    }
    ip(&["-n", router, "link", "set", "lo", "up"]);
    run(lab.exec(1, "sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
    lab
}

/// Starts `samizdat --json node --local-network` in host `i` listening on `listen` (with
/// `--tls-name www.example.org` for an https address).
fn routed_node(lab: &Lab, i: usize, data: &Path, listen: &[&str]) -> Daemon {
    let mut cmd = lab.exec(i, BIN);
    cmd.args(["--json", "node", "--local-network", "--data"]).arg(data);
    for l in listen {
        cmd.args(["--listen", l]);
    }
    if listen.iter().any(|l| l.starts_with("https/")) {
        cmd.args(["--tls-name", "www.example.org"]);
    }
    spawn_daemon(cmd, data).0
}

/// The censor's report lines, gathered by a thread.
type Report = std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>;

/// Flows the censor judged toward `port`.
fn flows_to(report: &Report, port: u16) -> Vec<serde_json::Value> {
    let suffix = format!(":{port}");
    report
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v["server"].as_str().is_some_and(|s| s.ends_with(&suffix)))
        .cloned()
        .collect()
}

/// Starts the censor in the router (host 1) of a [`routed_lab`] with `env` added, and waits
/// until it is ready; its report lines are gathered as they come.
fn start_censor(lab: &Lab, env: &[(&str, &str)]) -> (Testnet, Report) {
    let mut cmd = lab.exec(1, &std::env::current_exe().unwrap().to_string_lossy());
    cmd.args(["--ignored", "--exact", "censor_process", "--nocapture", "--test-threads", "1"])
        .env(CENSOR_FROM, "10.78.1.0/24")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut helper = cmd.spawn().unwrap();
    let lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let censor = Testnet(helper);
    let report: Report = Report::default();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let gather = report.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            // libtest prints "test censor_process ... " before the helper's first line.
            let json = line.find('{').map_or("", |at| &line[at..]);
            let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else { continue };
            if v["censor"] == "ready" {
                let _ = ready_tx.send(());
            } else {
                gather.lock().unwrap().push(v);
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(60)).expect("the censor started");
    (censor, report)
}

/// A censor process on a real router applies the fully-encrypted rules (Wu et al. 2023) to
/// every TCP flow leaving the censored region, blocking every flow that has no exemption:
/// fetches over the HTTPS transport all pass (each flow judged `known_protocol`) and arrive
/// byte-identical, while a fetch over today's bare session is judged `fully_encrypted`,
/// blocked, and never completes.
#[test]
fn the_fully_encrypted_censor_passes_https_and_blocks_the_bare_session() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for network namespaces and nftables");
        return;
    }
    let lab = routed_lab();
    let (censor, report) = start_censor(&lab, &[]);

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("quarter.bin");
    common::write_random(&file, 256 << 10, 0xFE7);
    let share = |data: &Path| {
        let out = cli(&["--json", "share", s(&file), "--data", s(data)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["link"].as_str().unwrap().to_owned()
    };

    // Over HTTPS: three fetchers, each a new flow through the censor.
    let seed_https = tmp.path().join("seed-https");
    let _seeder = routed_node(&lab, 2, &seed_https, &["https/10.78.2.2:443"]);
    let link = share(&seed_https);
    for k in 0..3 {
        let data = tmp.path().join(format!("fetch-https-{k}"));
        let _fetcher = routed_node(&lab, 0, &data, &["tcp/10.78.1.2:7071"]);
        let dest = tmp.path().join(format!("https-{k}.out"));
        let out = cli(&["--json", "fetch", &link, "-o", s(&dest), "--data", s(&data)]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::read(&dest).unwrap() == std::fs::read(&file).unwrap());
    }
    let https = flows_to(&report, 443);
    assert!(https.len() >= 3, "every fetch was a flow through the censor: {https:?}");
    for f in &https {
        assert!(f["blocked"] == false && f["verdict"] == "known_protocol", "{f}");
    }

    // Over the bare session: blocked. About one first payload in ten is exempt by its
    // popcount (its cleartext length prefix pulls the average down); such a flow passes, as it
    // would through the real firewall, and the test tries again from a new node.
    let seed_tcp = tmp.path().join("seed-tcp");
    let _seeder_tcp = routed_node(&lab, 2, &seed_tcp, &["tcp/10.78.2.2:7070"]);
    let link = share(&seed_tcp);
    let mut blocked = None;
    for k in 0..4 {
        let data = tmp.path().join(format!("fetch-tcp-{k}"));
        let _fetcher = routed_node(&lab, 0, &data, &["tcp/10.78.1.2:7071"]);
        let seen = flows_to(&report, 7070).len();
        let dest = tmp.path().join(format!("tcp-{k}.out"));
        let mut fetch = Command::new(BIN)
            .args(["--json", "fetch", &link, "-o", s(&dest), "--data", s(&data)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let first = loop {
            if let Some(f) = flows_to(&report, 7070).get(seen) {
                break f.clone();
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "the fetch never dialled");
            std::thread::sleep(Duration::from_millis(50));
        };
        if first["blocked"] == true {
            assert_eq!(first["verdict"], "fully_encrypted", "{first}");
            std::thread::sleep(Duration::from_secs(15));
            let done = fetch.try_wait().unwrap();
            let _ = fetch.kill();
            let _ = fetch.wait();
            assert!(
                done.is_none_or(|st| !st.success()),
                "a fetch over a blocked bare session completed"
            );
            assert!(std::fs::read(&dest).map_or(true, |d| d != std::fs::read(&file).unwrap()));
            blocked = Some(k);
            break;
        }
        assert_eq!(
            first["verdict"], "popcount",
            "an unblocked bare flow is only ever exempt by popcount: {first}"
        );
        let _ = fetch.kill();
        let _ = fetch.wait();
    }
    let attempt = blocked.expect("the censor blocked a bare session in four tries");
    println!(
        "netns censor: {} HTTPS flows, all let through (known_protocol); the bare session was \
         blocked (fully_encrypted) on attempt {}",
        https.len(),
        attempt + 1
    );
    drop(censor);
}

/// A censor on the router resets every TLS flow naming the seeder's HTTPS host (an SNI
/// blocklist with RST injection, the fully-encrypted rules off): a fetch from a seeder
/// reachable over HTTPS and obfs4 completes over obfs4 by itself, the HTTPS address is marked
/// `reset`, and the censor saw the HTTPS flow and reset it.
#[test]
fn an_sni_blocking_censor_resets_https_and_the_fetch_moves_to_obfs4() {
    if !is_root() || !Path::new("/usr/bin/obfs4proxy").exists() {
        eprintln!("SKIPPED: needs root for network namespaces and nftables, and obfs4proxy");
        return;
    }
    let lab = routed_lab();
    let (censor, report) = start_censor(&lab, &[(CENSOR_P, "0"), (CENSOR_SNI, "example.org")]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("half.bin");
    let content = common::write_random(&file, 512 << 10, 0x5a1);
    let seed = tmp.path().join("seed");
    let _seeder = routed_node(&lab, 2, &seed, &["https/10.78.2.2:443", "obfs4/10.78.2.2:9443"]);
    let link = common::share_link(&file, &seed);
    let data = tmp.path().join("fetch");
    let _fetcher = routed_node(&lab, 0, &data, &["tcp/10.78.1.2:7071"]);
    let dest = tmp.path().join("half.out");
    let t0 = Instant::now();
    let out = cli(&["--json", "fetch", &link, "-o", s(&dest), "--data", s(&data)]);
    let took = t0.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&dest).unwrap() == content);

    let https = flows_to(&report, 443);
    assert!(!https.is_empty(), "the HTTPS dial went through the censor");
    for f in &https {
        assert!(f["verdict"] == "sni_blocklist" && f["blocked"] == true, "{f}");
        assert_eq!(f["sni"], "www.example.org");
    }
    let obfs4 = flows_to(&report, 9443);
    assert!(obfs4.iter().any(|f| f["blocked"] == false), "{obfs4:?}");
    let out = cli(&["--json", "peers", "--data", s(&data)]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let transports = v["transports"].as_array().unwrap();
    let of = |t: &str| transports.iter().find(|x| x["transport"] == t).unwrap().clone();
    assert_eq!(of("https")["last_failure"], "reset", "{transports:?}");
    assert_eq!(of("obfs4")["working"], true, "{transports:?}");
    println!(
        "netns SNI censor: {} HTTPS flow(s) reset (sni_blocklist), fetch of 512 KiB completed \
         over obfs4 in {took:?}",
        https.len()
    );
    drop(censor);
}

/// Lines of the censor's report about probes of `server`.
fn probes_of(report: &Report, server: &str) -> Vec<serde_json::Value> {
    report.lock().unwrap().iter().filter(|v| v["probe"] == server).cloned().collect()
}

/// Waits up to `within` for the censor's probe of `server`.
fn wait_probe(report: &Report, server: &str, within: Duration) -> Option<serde_json::Value> {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if let Some(p) = probes_of(report, server).pop() {
            return Some(p);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A censor that actively probes the servers of fully-encrypted flows (replaying the flow's
/// first payload, and random bytes), with no random blocking: the bare session answers the
/// replay, so the censor blocks the server and a later fetch from it never completes; obfs4
/// ignores the replay (its replay filter), stays reachable, and a second fetch works.
#[test]
fn an_actively_probing_censor_finds_the_bare_session_but_not_obfs4_or_veil() {
    if !is_root() || !Path::new("/usr/bin/obfs4proxy").exists() {
        eprintln!("SKIPPED: needs root for network namespaces and nftables, and obfs4proxy");
        return;
    }
    let lab = routed_lab();
    let (censor, report) = start_censor(&lab, &[(CENSOR_P, "0"), (CENSOR_PROBE, "1")]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("small.bin");
    let content = common::write_random(&file, 64 << 10, 0x9b0);
    let port = std::cell::Cell::new(7100);
    let fetch_with_new_node = |tag: &str, link: &str| {
        let data = tmp.path().join(format!("fetch-{tag}"));
        port.set(port.get() + 1);
        let node = routed_node(&lab, 0, &data, &[&format!("tcp/10.78.1.2:{}", port.get())]);
        let dest = tmp.path().join(format!("{tag}.out"));
        let child = Command::new(BIN)
            .args(["--json", "fetch", link, "-o", s(&dest), "--data", s(&data)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (node, Testnet(child), dest)
    };
    let finished = |mut fetch: Testnet, dest: &Path, within: Duration| {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Some(st) = fetch.0.try_wait().unwrap() {
                return st.success() && std::fs::read(dest).unwrap() == content;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };

    let servers =
        [("obfs4", "10.78.2.2:9443"), ("veil", "10.78.2.2:7443"), ("tcp", "10.78.2.2:7070")];
    for (transport, server) in servers {
        let seed = tmp.path().join(format!("seed-{transport}"));
        let _seeder = routed_node(&lab, 2, &seed, &[&format!("{transport}/{server}")]);
        let link = common::share_link(&file, &seed);
        // The first fetch makes the censor suspicious; it probes the server meanwhile. A flow
        // escapes the fully-encrypted rules now and then by chance (the bare session's first
        // message is random bytes behind a length, and about one in twenty has a popcount
        // outside the rules' band), and is then not probed: fetch again, up to three times.
        let (mut first_done, mut probe, mut kept) = (true, None, Vec::new());
        for attempt in 0..3 {
            let (n1, fetch, dest) = fetch_with_new_node(&format!("{transport}-1-{attempt}"), &link);
            first_done &= finished(fetch, &dest, Duration::from_secs(30));
            kept.push(n1);
            probe = wait_probe(&report, server, Duration::from_secs(12));
            if probe.is_some() {
                break;
            }
        }
        let probe = probe.unwrap_or_else(|| panic!("{server} was never probed in 3 fetches"));
        let (_n2, fetch, dest) = fetch_with_new_node(&format!("{transport}-2"), &link);
        let second_done = finished(fetch, &dest, Duration::from_secs(20));
        println!(
            "netns probing censor, {transport}: probe {probe}; first fetch done: {first_done}, \
             second: {second_done}"
        );
        if transport != "tcp" {
            assert!(first_done, "the first {transport} fetch failed");
            assert_eq!(probe["confirmed"], false, "{probe}");
            assert_eq!(probe["replay_answer_bytes"], 0, "{probe}");
            assert!(second_done, "{transport} was blocked after probing");
        } else {
            assert_eq!(probe["confirmed"], true, "{probe}");
            assert!(!second_done, "a fetch from a server found by probing completed");
        }
    }
    drop(censor);
}
