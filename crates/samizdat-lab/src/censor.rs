//! A censor for real traffic: the fully-encrypted rules of
//! [`samizdat_sim::classify_first_payload`] applied by a process on a router, to real TCP
//! flows.
//!
//! It installs an nftables table that redirects every TCP connection from the censored
//! region (`--from`) to its own port, reads the original destination (`SO_ORIGINAL_DST`),
//! connects there and relays, judging the first payload the client sends. A flow without an
//! exemption is blocked with the configured probability, as the measured firewall does: the
//! censor stops relaying it and adds its client address, server address and server port to
//! an nftables set whose packets are dropped for `block_for` (180 s in the paper), so the
//! flow and every new one on that 3-tuple die in silence. One JSON line per judged flow goes
//! to the report writer.
//!
//! Before those rules, a TLS ClientHello naming a server on the SNI blocklist gets its flow
//! reset at once, both ways (RST injection, as SNI-filtering firewalls do). With probing on,
//! the servers of suspect flows are probed actively (see [`CensorConfig::probe`]).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use samizdat_sim::{FetVerdict, classify_first_payload};

/// The nftables table the censor owns (replaced when it starts).
pub const TABLE: &str = "samizdat_censor";
/// Flows relayed at once; more are refused (the lab's bound, not the firewall's).
pub const MAX_FLOWS: usize = 1024;
/// How long a client may stay silent before its flow is judged on nothing (and let through).
const FIRST_PAYLOAD_WAIT: Duration = Duration::from_secs(10);

/// What the censor does.
#[derive(Clone, Debug)]
pub struct CensorConfig {
    /// The local port connections are redirected to.
    pub port: u16,
    /// The censored region: TCP connections from this IPv4 prefix (`10.0.0.0/24`) are judged.
    pub from: String,
    /// The chance that a flow without an exemption is blocked (the paper measured about 0.26).
    pub block_probability: f64,
    /// How long a blocked 3-tuple stays blocked.
    pub block_for: Duration,
    /// Seeds the block rolls.
    pub seed: u64,
    /// TLS server names (SNI) whose flows are reset at once, with every name under them
    /// (`example.org` also blocks `www.example.org`).
    pub block_sni: Vec<String>,
    /// Active probing: the server of a flow judged fully encrypted (and not blocked) is
    /// probed once from the router with a replay of the flow's first payload and with random
    /// bytes; a server that answers the replay runs a handshake without replay protection,
    /// and the region loses it (its address and port are dropped for `block_for`).
    pub probe: bool,
}

/// How long after a suspect flow its server is probed (the measured firewalls probe seconds to
/// minutes later; never before the flow's own handshake reached the server).
const PROBE_DELAY: Duration = Duration::from_secs(2);
/// How long a probe waits for the server's answer.
const PROBE_WAIT: Duration = Duration::from_secs(3);
/// Servers remembered as probed (more are not probed).
const MAX_PROBED: usize = 4096;

/// The bytes a server sends back (up to 4 KiB) to `payload` on a fresh connection.
fn probe_once(server: SocketAddr, payload: &[u8]) -> io::Result<usize> {
    let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
    s.set_read_timeout(Some(PROBE_WAIT))?;
    s.write_all(payload)?;
    let (mut buf, mut total) = ([0u8; 4096], 0);
    while total < buf.len() {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => total += k,
        }
    }
    Ok(total)
}

/// Whether `sni` is `blocked` or a name under it (DNS names compare case-insensitively).
pub fn sni_blocked(sni: &str, blocked: &[String]) -> bool {
    let sni = sni.trim_end_matches('.').to_ascii_lowercase();
    blocked.iter().any(|b| {
        let b = b.trim_end_matches('.').to_ascii_lowercase();
        sni == b || sni.strip_suffix(&b).is_some_and(|head| head.ends_with('.'))
    })
}

/// Parses the censored region, an IPv4 prefix such as `10.78.1.0/24` (a bare address is a
/// /32), so that nothing but an address and a length ever reaches the nftables script.
///
/// # Errors
/// `InvalidInput` for anything else.
pub fn parse_prefix(s: &str) -> io::Result<(Ipv4Addr, u8)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "--from must be an IPv4 prefix");
    let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if len > 32 {
        return Err(bad());
    }
    Ok((addr, len))
}

/// The nftables rules for `config`: the drop set first (raw priority, before NAT sees the
/// packet), then the redirect.
///
/// # Errors
/// When `config.from` is not an IPv4 prefix.
pub fn ruleset(config: &CensorConfig) -> io::Result<String> {
    let (addr, len) = parse_prefix(&config.from)?;
    Ok(format!(
        "table ip {TABLE} {{\n\
         \x20set blocked {{ type ipv4_addr . ipv4_addr . inet_service; flags timeout; }}\n\
         \x20set servers {{ type ipv4_addr . inet_service; flags timeout; }}\n\
         \x20chain raw {{ type filter hook prerouting priority -300; policy accept;\n\
         \x20  ip saddr . ip daddr . tcp dport @blocked counter drop\n\
         \x20  ip saddr {addr}/{len} ip daddr . tcp dport @servers counter drop\n }}\n\
         \x20chain nat {{ type nat hook prerouting priority dstnat; policy accept;\n\
         \x20  ip saddr {addr}/{len} meta l4proto tcp redirect to :{}\n }}\n}}\n",
        config.port
    ))
}

fn nft(script: &str) -> io::Result<()> {
    let mut child = Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    if child.wait()?.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("nft refused: {script}")))
    }
}

/// Removes the censor's table when dropped.
struct Rules;

impl Drop for Rules {
    fn drop(&mut self) {
        let _ = Command::new("nft").args(["delete", "table", "ip", TABLE]).status();
    }
}

/// The stable name of a verdict in the report.
pub fn verdict_name(v: FetVerdict) -> &'static str {
    match v {
        FetVerdict::Popcount => "popcount",
        FetVerdict::PrintablePrefix => "printable_prefix",
        FetVerdict::MostlyPrintable => "mostly_printable",
        FetVerdict::PrintableRun => "printable_run",
        FetVerdict::KnownProtocol => "known_protocol",
        FetVerdict::FullyEncrypted => "fully_encrypted",
    }
}

struct Shared {
    config: CensorConfig,
    rng: Mutex<ChaCha8Rng>,
    report: Mutex<Box<dyn Write + Send>>,
    flows: AtomicUsize,
    judged: AtomicUsize,
    probed: Mutex<std::collections::HashSet<SocketAddr>>,
}

impl Shared {
    fn line(&self, line: &str) {
        if let Ok(mut w) = self.report.lock() {
            let _ = writeln!(w, "{line}");
            let _ = w.flush();
        }
    }
}

/// Probes `server` (see [`CensorConfig::probe`]) and blocks it when it answers a replay.
fn probe(shared: &Shared, server: SocketAddr, first: &[u8]) -> io::Result<()> {
    std::thread::sleep(PROBE_DELAY);
    let replay = probe_once(server, first)?;
    let mut random = vec![0u8; first.len()];
    shared.rng.lock().map_err(|_| io::Error::other("poisoned"))?.fill_bytes(&mut random);
    let random = probe_once(server, &random)?;
    let confirmed = replay > 0;
    shared.line(&format!(
        "{{\"probe\":\"{server}\",\"replay_answer_bytes\":{replay},\"random_answer_bytes\":{random},\"confirmed\":{confirmed}}}"
    ));
    if confirmed {
        nft(&format!(
            "add element ip {TABLE} servers {{ {} . {} timeout {}s }}\n",
            server.ip(),
            server.port(),
            shared.config.block_for.as_secs().max(1)
        ))?;
    }
    Ok(())
}

/// Installs the rules and judges flows until the listener fails; the rules go with it.
///
/// # Errors
/// When the rules cannot be installed or the port cannot be bound.
pub fn run(config: CensorConfig, report: Box<dyn Write + Send>) -> io::Result<()> {
    let rules = ruleset(&config)?;
    if !(0.0..=1.0).contains(&config.block_probability) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "block probability not in 0..=1"));
    }
    let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, config.port))?;
    let _ =
        Command::new("nft").args(["delete", "table", "ip", TABLE]).stderr(Stdio::null()).status();
    nft(&rules)?;
    let _rules = Rules;
    let mut report = report;
    writeln!(report, "{{\"censor\":\"ready\",\"port\":{}}}", config.port)?;
    report.flush()?;
    let shared = Arc::new(Shared {
        rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed)),
        config,
        report: Mutex::new(report),
        flows: AtomicUsize::new(0),
        judged: AtomicUsize::new(0),
        probed: Mutex::default(),
    });
    loop {
        let (client, peer) = listener.accept()?;
        if shared.flows.fetch_add(1, Ordering::SeqCst) >= MAX_FLOWS {
            shared.flows.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let _ = flow(&shared, client, peer);
            shared.flows.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn flow(shared: &Arc<Shared>, mut client: TcpStream, peer: SocketAddr) -> io::Result<()> {
    let server = match socket2::SockRef::from(&client).original_dst_v4()?.as_socket() {
        Some(s) => s,
        None => return Err(io::Error::other("no original destination")),
    };
    let mut upstream = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
    // The server may speak first; relay that way from the start.
    let (mut down_from, mut down_to) = (upstream.try_clone()?, client.try_clone()?);
    let silenced = Arc::new(AtomicBool::new(false));
    let quiet = Arc::clone(&silenced);
    let down = std::thread::spawn(move || {
        let _ = io::copy(&mut down_from, &mut down_to);
        if !quiet.load(Ordering::SeqCst) {
            let _ = down_to.shutdown(Shutdown::Write);
        }
    });
    client.set_read_timeout(Some(FIRST_PAYLOAD_WAIT))?;
    let mut first = vec![0u8; 65_536];
    let n = match client.read(&mut first) {
        Ok(n) => n,
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => 0,
        Err(e) => return Err(e),
    };
    client.set_read_timeout(None)?;
    first.truncate(n);
    let sni = samizdat_sim::ClientHello::parse(&first).and_then(|h| h.server_name);
    if let Some(name) = sni.as_deref().filter(|s| sni_blocked(s, &shared.config.block_sni)) {
        let judged = shared.judged.fetch_add(1, Ordering::SeqCst);
        shared.line(&format!(
            "{{\"flow\":{judged},\"client\":\"{peer}\",\"server\":\"{server}\",\"first_bytes\":{n},\"verdict\":\"sni_blocklist\",\"sni\":\"{}\",\"blocked\":true}}",
            name.escape_default()
        ));
        // RST injection, both ways: closing with a zero linger time sends a reset.
        silenced.store(true, Ordering::SeqCst);
        let _ = socket2::SockRef::from(&upstream).set_linger(Some(Duration::ZERO));
        let _ = upstream.shutdown(Shutdown::Both);
        let _ = down.join();
        socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO))?;
        return Ok(());
    }
    let verdict = classify_first_payload(&first);
    let roll = f64::from(shared.rng.lock().map_err(|_| io::Error::other("poisoned"))?.next_u32())
        / f64::from(u32::MAX);
    let blocked = n > 0 && !verdict.is_exempt() && roll < shared.config.block_probability;
    let judged = shared.judged.fetch_add(1, Ordering::SeqCst);
    shared.line(&format!(
        "{{\"flow\":{judged},\"client\":\"{peer}\",\"server\":\"{server}\",\"first_bytes\":{n},\"verdict\":\"{}\",\"blocked\":{blocked}}}",
        verdict_name(verdict)
    ));
    let suspect = shared.config.probe && n > 0 && verdict == FetVerdict::FullyEncrypted;
    if suspect && !blocked {
        let fresh =
            shared.probed.lock().is_ok_and(|mut p| p.len() < MAX_PROBED && p.insert(server));
        if fresh {
            let (shared, payload) = (Arc::clone(shared), first.clone());
            std::thread::spawn(move || {
                if let Err(e) = probe(&shared, server, &payload) {
                    shared.line(&format!("{{\"probe\":\"{server}\",\"error\":\"{}\"}}", e.kind()));
                }
            });
        }
    }
    if blocked {
        let element = format!(
            "add element ip {TABLE} blocked {{ {} . {} . {} timeout {}s }}\n",
            peer.ip(),
            server.ip(),
            server.port(),
            shared.config.block_for.as_secs().max(1)
        );
        silenced.store(true, Ordering::SeqCst);
        nft(&element)?;
        // The flow dies in silence: nothing more is relayed either way, and the client's
        // packets are dropped by the set from now on.
        let _ = upstream.shutdown(Shutdown::Both);
        let _ = down.join();
        std::thread::sleep(shared.config.block_for);
        return Ok(());
    }
    upstream.write_all(&first)?;
    let _ = io::copy(&mut client, &mut upstream);
    let _ = upstream.shutdown(Shutdown::Write);
    let _ = down.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(from: &str) -> CensorConfig {
        CensorConfig {
            port: 15_000,
            from: from.into(),
            block_probability: 0.26,
            block_for: Duration::from_secs(180),
            seed: 1,
            block_sni: Vec::new(),
            probe: false,
        }
    }

    #[test]
    fn a_probe_counts_what_the_server_answers() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let (e, q) = (echo.local_addr().unwrap(), silent.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut c, _) = echo.accept().unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).unwrap();
            c.write_all(&buf).unwrap();
        });
        std::thread::spawn(move || {
            let (mut c, _) = silent.accept().unwrap();
            let mut buf = [0u8; 5];
            let _ = c.read_exact(&mut buf);
        });
        assert_eq!(probe_once(e, b"hello").unwrap(), 5);
        assert_eq!(probe_once(q, b"hello").unwrap(), 0);
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(probe_once(closed, b"hello").is_err());
    }

    #[test]
    fn sni_blocking_covers_the_name_and_the_names_under_it_only() {
        let blocked = vec!["Example.org.".to_owned()];
        for yes in ["example.org", "www.example.org", "WWW.EXAMPLE.ORG.", "a.b.example.org"] {
            assert!(sni_blocked(yes, &blocked), "{yes}");
        }
        for no in ["notexample.org", "example.org.evil", "org", "example.com"] {
            assert!(!sni_blocked(no, &blocked), "{no}");
        }
        assert!(!sni_blocked("example.org", &[]));
    }

    #[test]
    fn the_ruleset_drops_blocked_three_tuples_before_redirecting_the_region() {
        let rules = ruleset(&config("10.78.1.0/24")).unwrap();
        let drop = rules.find("@blocked counter drop").unwrap();
        let redirect = rules.find("ip saddr 10.78.1.0/24 meta l4proto tcp redirect to :15000");
        assert!(drop < redirect.unwrap(), "{rules}");
        assert!(rules.contains("priority -300") && rules.contains("flags timeout"), "{rules}");
        // Servers found by probing are lost to the region only.
        let servers = "ip saddr 10.78.1.0/24 ip daddr . tcp dport @servers counter drop";
        assert!(rules.find(servers).unwrap() < redirect.unwrap(), "{rules}");
        assert!(ruleset(&config("10.0.0.7")).unwrap().contains("ip saddr 10.0.0.7/32 "));
    }

    #[test]
    fn anything_but_an_ipv4_prefix_is_refused_before_it_reaches_nft() {
        for bad in ["", "10.0.0.0/33", "10.0.0.0/x", "::1/128", "10.0.0.0/24; flush ruleset"] {
            let e = ruleset(&config(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        let mut c = config("10.0.0.0/8");
        c.block_probability = 1.5;
        assert_eq!(run(c, Box::new(io::sink())).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn every_verdict_has_a_distinct_report_name() {
        let all = [
            FetVerdict::Popcount,
            FetVerdict::PrintablePrefix,
            FetVerdict::MostlyPrintable,
            FetVerdict::PrintableRun,
            FetVerdict::KnownProtocol,
            FetVerdict::FullyEncrypted,
        ];
        let names: std::collections::BTreeSet<_> = all.iter().map(|v| verdict_name(*v)).collect();
        assert_eq!(names.len(), all.len());
        assert_eq!(verdict_name(classify_first_payload(b"GET / HTTP/1.1\r\n")), "popcount");
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend((0u8..=255).map(|b| b.wrapping_mul(167) ^ 0x9c));
        assert_eq!(verdict_name(classify_first_payload(&record)), "known_protocol");
    }
}
