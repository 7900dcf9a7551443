//! `samizdat`: the command-line tool and node daemon.
//!
//! `samizdat node` runs a node in the foreground; `share`, `shares`, `unshare`, `fetch` and
//! `peers` talk to it over its control socket (`fetch` without `--data` runs its own
//! short-lived node when none is running); `demo` starts a small network on loopback and moves
//! a file through it; `vault` manages deniable encrypted containers.
//!
//! Errors are one line on stderr; with `--json`, one object `{"error": …, "kind": …}` whose
//! `kind` is a stable snake_case name of the error class. Exit status 1, or 130 when a fetch is
//! interrupted with Ctrl-C.
// A binary: ambient time is fine here.
#![allow(clippy::disallowed_methods)]

mod demo;
mod progress;
mod size;
mod vault_cmd;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use progress::{Bar, human_bytes};
use samizdat_discovery::mainline_dht::PUBLIC_BOOTSTRAP;
use samizdat_discovery::{
    LanConfig, LanDiscovery, MainlineConfig, MainlineRendezvous, NetworkSecret,
};
use samizdat_node::control::{self, ControlClient, ControlError};
use samizdat_node::{
    Decoy, DiscoveryReport, FetchTarget, HttpsOptions, Invite, Node, NodeBuilder, NodeError,
    PeerAddr, ServerCert, Shaping, ShareLink,
};
use serde_json::json;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Censorship-resistant, anonymous peer-to-peer file sharing.
#[derive(Parser, Debug)]
#[command(name = "samizdat", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    json: bool,
    /// Log more (repeatable: -v info, -vv debug, -vvv trace). The default logs only counts
    /// and warnings, never addresses, names or links.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug, Clone)]
struct DataArgs {
    /// The node's data directory [default: $SAMIZDAT_DATA, else ~/.local/share/samizdat].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

impl DataArgs {
    /// Whether the user named a data directory (`--data` or `$SAMIZDAT_DATA`).
    fn explicit(&self) -> bool {
        self.data.is_some() || std::env::var_os("SAMIZDAT_DATA").is_some()
    }

    fn dir(&self) -> PathBuf {
        if let Some(d) = &self.data {
            return d.clone();
        }
        if let Some(d) = std::env::var_os("SAMIZDAT_DATA") {
            return PathBuf::from(d);
        }
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".local/share/samizdat")
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node in the foreground (Ctrl-C stops it).
    ///
    /// The node keeps its identity key and the encrypted blobs it shares or seeds in the data
    /// directory, or, with --vault, inside a volume of a deniable vault container (see
    /// `samizdat vault create`), so that nothing on disk outside the container reveals what
    /// the node shares. With --vault the data directory only holds the control socket that
    /// `share`, `fetch` and `peers --data DIR` talk to.
    #[command(after_help = "Examples:\n  \
        samizdat node --data ~/.samizdat --listen tcp/0.0.0.0:7070\n  \
        samizdat vault create state.vault --size 1GiB\n  \
        samizdat node --vault state.vault --data ~/.samizdat   # asks for the volume password")]
    Node {
        #[command(flatten)]
        data: DataArgs,
        /// Keep all of the node's state inside the vault volume that the password opens in this
        /// container, instead of the data directory (which then holds only the control socket).
        #[arg(long, value_name = "PATH")]
        vault: Option<PathBuf>,
        /// With --vault: read the volume password from the first line of FILE instead of
        /// asking on the terminal (without echo).
        #[arg(long, value_name = "FILE", requires = "vault")]
        password_file: Option<PathBuf>,
        /// With --vault, protected mode: also open the volume of the password in FILE
        /// (repeatable) read-only, so that the node's writes never land on its blocks. Use it
        /// when the node's volume is a decoy below a hidden one.
        #[arg(long, value_name = "FILE", requires = "vault")]
        protect_password_file: Vec<PathBuf>,
        /// With --vault: if another process has the container open, wait for it to close it
        /// instead of failing at once. The node holds the container until it stops.
        #[arg(long, requires = "vault")]
        wait: bool,
        /// Address to accept peers on (repeatable): tcp/IP:PORT (the bare session, for local
        /// networks), veil/IP:PORT (the session behind a layer that looks like random bytes
        /// and answers no probe), https/IP:PORT (HTTPS camouflage; needs --tls-name),
        /// obfs4/IP:PORT (obfs4 through obfs4proxy). Share links and invite lines carry each
        /// address with what peers need to dial it (the veil key, the HTTPS pin and secret,
        /// the obfs4 cert).
        #[arg(long, value_name = "ADDR", default_value = "tcp/127.0.0.1:7070")]
        listen: Vec<String>,
        /// Address to give peers and put in share links instead of the listen addresses
        /// (repeatable), e.g. a public IP or port forward: tcp/203.0.113.5:7070. A veil/,
        /// https/ or obfs4/ address takes its parameters from this node's listener of that
        /// transport, so https/203.0.113.5:443 is enough. meek/EDGE-IP:PORT?front=DOMAIN
        /// is a CDN or proxy in front of the https listener that passes plain requests
        /// (domain fronting: the censor sees DOMAIN); it takes the rest from the https
        /// listener (add &pin=PIN for a CDN certificate other than --tls-front-cert's).
        #[arg(long, value_name = "ADDR")]
        announce: Vec<String>,
        /// Peer to connect to at start (repeatable), e.g. tcp/192.0.2.1:7070.
        #[arg(long, value_name = "ADDR")]
        peer: Vec<String>,
        /// Invite line (szi1…, from `samizdat invite` on another node) of a node to keep a
        /// connection to (repeatable); the node there must prove the identity the line names.
        #[arg(long, value_name = "LINE")]
        invite: Vec<String>,
        /// Read invite lines from FILE, one per line (repeatable).
        #[arg(long, value_name = "FILE")]
        invite_file: Vec<PathBuf>,
        /// Keep and serve the encrypted copy of everything this node downloads. The node then
        /// announces itself in the DHT as a provider: anyone holding a file's link can learn
        /// this node's address.
        #[arg(long)]
        seed: bool,
        /// This node is on a local network: accept loopback and private addresses from peers
        /// (refused otherwise; implied when every --listen address is a loopback one).
        #[arg(long)]
        local_network: bool,
        /// Rotate transports: each new link to a peer reachable several ways (HTTPS, TCP, …)
        /// goes through the way used longest ago, failing ones last (default: the way that
        /// last worked).
        #[arg(long)]
        rotate_transports: bool,
        /// Padding and chaff allowed on each link, in percent of the bytes it really carries
        /// (beyond a 16 KiB allowance): flushes are padded to 512-byte sizes and idle links
        /// send chaff while the budget lasts. 0 turns padding and chaff off.
        #[arg(long, value_name = "PERCENT", default_value_t = 10,
              value_parser = clap::value_parser!(u32).range(0..=100))]
        padding_budget: u32,
        /// The most the first write of a burst after a pause is held back, in milliseconds
        /// (timing jitter); 0 for none.
        #[arg(long, value_name = "MS", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(0..=1000))]
        max_jitter_ms: u64,
        /// Find peers, and be found, through the BitTorrent Mainline DHT, under rendezvous
        /// keys derived from the network secret in FILE (`samizdat network-secret` makes one;
        /// the nodes of one network share it, out of band). The node's advertised addresses
        /// are stored there sealed, readable only with the secret.
        #[arg(long, value_name = "FILE")]
        mainline_secret_file: Option<PathBuf>,
        /// With --mainline-secret-file: a Mainline DHT node to start from, HOST:PORT
        /// (repeatable; default: the public BitTorrent bootstrap routers).
        #[arg(long, value_name = "HOST:PORT", requires = "mainline_secret_file")]
        mainline_bootstrap: Vec<String>,
        /// Find peers on the local network, and be found there, over mDNS (for when the
        /// internet is cut off): anyone on the LAN can see this node's identity and advertised
        /// addresses. Implies --local-network; use --announce with the LAN address.
        #[arg(long)]
        lan: bool,
        /// With --lan: the IPv4 address of the interface to use (default: the system's
        /// choice).
        #[arg(long, value_name = "ADDR", requires = "lan")]
        lan_interface: Option<std::net::Ipv4Addr>,
        #[command(flatten)]
        https: Box<HttpsArgs>,
        /// The obfs4proxy program (Tor's pluggable-transport protocol) that carries obfs4/…
        /// addresses, dialled and listened on (--listen obfs4/IP:PORT); default: obfs4proxy
        /// on PATH, else /usr/bin/obfs4proxy.
        #[arg(long, value_name = "PATH")]
        obfs4proxy: Option<PathBuf>,
    },
    /// Share a file through the running node; prints its share link.
    ///
    /// Sharing a file whose content is already shared prints the existing link and stores
    /// nothing (--again makes a new share with a new link).
    Share {
        /// The file to share.
        file: PathBuf,
        /// Share it again under a new link even if the same content is already shared.
        #[arg(long)]
        again: bool,
        /// Print a link with no peer addresses: fetchers find this node through the DHT, under
        /// a key only holders of the link can compute (the link then says nothing about where
        /// the file is).
        #[arg(long)]
        no_hints: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List what the running node shares: id, size, date, name and the link again.
    Shares {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Stop sharing a file: the node stops serving it and deletes its encrypted copy.
    #[command(after_help = "Examples:\n  \
        samizdat unshare 3fa1c2d9            # an id from `samizdat shares`\n  \
        samizdat unshare - < link.txt        # the link, from standard input\n  \
        samizdat unshare --link-file link.txt")]
    Unshare {
        /// The share's id (see `samizdat shares`) or its link; `-` reads it from standard
        /// input (keeps the link out of the process list and shell history).
        #[arg(value_name = "ID-OR-LINK", required_unless_present = "link_file")]
        target: Option<String>,
        /// Read the link from the first non-empty line of FILE.
        #[arg(long, value_name = "FILE", conflicts_with = "target")]
        link_file: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Download a file from a share link (resumes an interrupted download).
    ///
    /// The link is the key to the file: pass it on standard input (`-`) or in a file
    /// (--link-file) rather than as an argument, which other users can see in the process
    /// list and which stays in the shell history.
    ///
    /// Without -o the file is saved in the current directory under the name the sender gave
    /// it (made safe: no directories, no hidden or control characters), never replacing a
    /// file: "report (1).pdf" if "report.pdf" exists. Until it is complete it is kept in a
    /// hidden part file whose name reveals nothing; running the same command again resumes.
    #[command(after_help = "Examples:\n  \
        samizdat fetch - < link.txt                 # into the current directory\n  \
        samizdat fetch --link-file link.txt -o ~/Downloads   # into a directory\n  \
        samizdat fetch - -o copy.pdf < link.txt     # into this file\n  \
        samizdat fetch --link-file link.txt -o - | less      # to standard output")]
    Fetch {
        /// The share link (sz1…), or `-` to read it from standard input.
        #[arg(value_name = "LINK", required_unless_present = "link_file")]
        link: Option<String>,
        /// Read the link from the first non-empty line of FILE.
        #[arg(long, value_name = "FILE", conflicts_with = "link")]
        link_file: Option<PathBuf>,
        /// Where to save: a new file, an existing directory (saved inside it under the
        /// sender's file name), or - for standard output (then nothing else is printed there)
        /// [default: the current directory].
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// Extra peer to try (repeatable).
        #[arg(long, value_name = "ADDR")]
        peer: Vec<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print the running node's invite line (and its QR code on a terminal): hand it to
    /// someone so their node can find the network through yours (`node --invite LINE`).
    Invite {
        /// Do not draw the QR code.
        #[arg(long)]
        no_qr: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Make a new network secret for --mainline-secret-file: the nodes that share it find
    /// each other through the BitTorrent Mainline DHT. Hand it only to the network's members.
    NetworkSecret {
        /// Write it to FILE (created, readable only by you) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List the running node's connections.
    Peers {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Start a local network on loopback, share a generated file and fetch it.
    Demo {
        /// Number of nodes.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=64))]
        nodes: u16,
        /// Size of the generated file, e.g. 16MiB.
        #[arg(long, default_value = "16MiB", value_parser = size::parse_size)]
        size: u64,
    },
    /// Deniable encrypted storage: containers with hidden volumes.
    Vault(vault_cmd::VaultArgs),
}

/// An error with its class, for errors the CLI itself finds.
#[derive(Debug)]
struct Failure {
    kind: &'static str,
    message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

fn failure(kind: &'static str, message: impl Into<String>) -> anyhow::Error {
    Failure { kind, message: message.into() }.into()
}

/// Exit status of a fetch interrupted by Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;

/// The error as one line: each cause appended once, skipped when the text so far already
/// contains it (as in "cannot listen on X: Address already in use (os error 98)", whose
/// source is that same io error).
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let t = cause.to_string();
        let t = t.trim();
        if t.is_empty() || text.contains(t) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(t);
    }
    text.replace('\n', " ")
}

/// The stable snake_case class of an error: the first cause in the chain that has one.
fn error_kind(err: &anyhow::Error) -> String {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.kind.to_owned();
        }
        if let Some(e) = cause.downcast_ref::<NodeError>() {
            return e.kind().to_owned();
        }
        if let Some(e) = cause.downcast_ref::<ControlError>() {
            return e.kind().to_owned();
        }
        if cause.downcast_ref::<samizdat_node::LinkError>().is_some() {
            return "link_invalid".to_owned();
        }
        if cause.downcast_ref::<samizdat_node::VaultError>().is_some() {
            return "vault".to_owned();
        }
        if let Some(e) = cause.downcast_ref::<std::io::Error>() {
            return match e.kind() {
                std::io::ErrorKind::AddrInUse => "in_use",
                _ => "io",
            }
            .to_owned();
        }
    }
    "error".to_owned()
}

/// The log filter: `RUST_LOG` if set, else by the number of `-v`. At the default level only
/// the node's status counts (target `samizdat::status`) and warnings are logged.
fn log_filter(verbose: u8) -> tracing_subscriber::EnvFilter {
    if let Ok(f) = tracing_subscriber::EnvFilter::try_from_default_env() {
        return f;
    }
    tracing_subscriber::EnvFilter::new(match verbose {
        0 => "warn,samizdat::status=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    })
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(cli.verbose))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let json = cli.json;
    let result = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(run(cli.command, json)),
        Err(e) => Err(e.into()),
    };
    if let Err(err) = result {
        let (msg, kind) = (error_text(&err), error_kind(&err));
        if json {
            eprintln!("{}", json!({ "error": msg, "kind": kind }));
        } else {
            eprintln!("samizdat: {msg}");
        }
        std::process::exit(if kind == "interrupted" { EXIT_INTERRUPTED } else { 1 });
    }
}

async fn run(cmd: Command, json: bool) -> anyhow::Result<()> {
    match cmd {
        Command::Node {
            data,
            vault,
            password_file,
            protect_password_file,
            wait,
            listen,
            announce,
            peer,
            invite,
            invite_file,
            seed,
            local_network,
            rotate_transports,
            padding_budget,
            max_jitter_ms,
            mainline_secret_file,
            mainline_bootstrap,
            lan,
            lan_interface,
            https,
            obfs4proxy,
        } => {
            let HttpsArgs { tls_name, tls_cert, tls_key, decoy_dir, tls_front_cert } = *https;
            let https = https_options(
                &listen,
                tls_name,
                tls_cert.zip(tls_key),
                decoy_dir,
                tls_front_cert.as_deref(),
            )?;
            let state = match vault {
                Some(path) => State::Vault { path, password_file, protect_password_file, wait },
                None => State::Dir,
            };
            let invites = read_invites(&invite, &invite_file)?;
            let mainline = match mainline_secret_file {
                Some(file) => Some((read_network_secret(&file)?, mainline_bootstrap)),
                None => None,
            };
            let lan = lan.then(|| {
                let mut c = LanConfig::default();
                c.interface = lan_interface.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
                c
            });
            let net = NetOpts {
                listen,
                announce,
                peers: peer,
                invites,
                seed,
                local_network: local_network || lan.is_some(),
                rotate_transports,
                shaping: match padding_budget {
                    0 => Shaping::OFF,
                    percent => Shaping { budget_percent: percent, ..Shaping::default() },
                },
                jitter: Duration::from_millis(max_jitter_ms),
                mainline,
                lan,
                https,
                obfs4proxy,
            };
            run_node(&data.dir(), state, net, json).await
        }
        Command::Share { file, again, no_hints, data } => {
            share(&file, ShareFlags { again, no_hints }, &data.dir(), json).await
        }
        Command::Shares { data } => shares(&data.dir(), json).await,
        Command::Unshare { target, link_file, data } => {
            let target = read_link(target.as_deref(), link_file.as_deref())?;
            unshare(&target, &data.dir(), json).await
        }
        Command::Fetch { link, link_file, output, peer, data } => {
            let link = read_link(link.as_deref(), link_file.as_deref())?;
            fetch(&link, output.as_deref(), peer, &data, json).await
        }
        Command::Invite { no_qr, data } => invite(&data.dir(), no_qr, json).await,
        Command::NetworkSecret { out } => network_secret(out.as_deref(), json),
        Command::Peers { data } => peers(&data.dir(), json).await,
        Command::Demo { nodes, size } => demo::run(usize::from(nodes), size, json).await,
        // The vault is synchronous, blocking file I/O.
        Command::Vault(args) => tokio::task::block_in_place(|| vault_cmd::run(args, json)),
    }
}

/// Longest link file or standard input read for a link (a link is well under 1 KiB).
const MAX_LINK_INPUT: u64 = 64 * 1024;

/// The first non-empty line of `r`, trimmed.
fn first_line(r: impl Read, from: &str) -> anyhow::Result<String> {
    let mut reader = std::io::BufReader::new(r.take(MAX_LINK_INPUT));
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| failure("io", format!("cannot read the link from {from}: {e}")))?;
        if n == 0 {
            return Err(failure("link_invalid", format!("no link in {from}")));
        }
        if !line.trim().is_empty() {
            return Ok(line.trim().to_owned());
        }
    }
}

/// The link (or share id) given as an argument, `-` (standard input) or `--link-file`.
fn read_link(arg: Option<&str>, file: Option<&Path>) -> anyhow::Result<String> {
    match (arg, file) {
        (_, Some(path)) => {
            let f = std::fs::File::open(path).map_err(|e| {
                failure("io", format!("cannot read the link file {}: {e}", path.display()))
            })?;
            first_line(f, &format!("the link file {}", path.display()))
        }
        (Some("-"), None) => first_line(std::io::stdin().lock(), "standard input"),
        (Some(a), None) => Ok(a.trim().to_owned()),
        (None, None) => Err(failure(
            "usage",
            "give the link as `-` (standard input), --link-file FILE, or an argument",
        )),
    }
}

/// Whether `addr` is a bare `tcp/` address others outside this machine and its private
/// networks can reach (a public IP, or the unspecified address, which binds them all).
fn is_public_bare(addr: &str) -> bool {
    let Ok(parsed) = PeerAddr::new(addr) else { return false };
    if parsed.transport() != "tcp" {
        return false;
    }
    match parsed.endpoint().parse::<std::net::SocketAddr>().map(|a| a.ip()) {
        Ok(std::net::IpAddr::V4(ip)) => {
            !(ip.is_loopback() || ip.is_private() || ip.is_link_local())
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let local = ip.segments()[0] & 0xfe00 == 0xfc00 || ip.segments()[0] & 0xffc0 == 0xfe80;
            !(ip.is_loopback() || local)
        }
        // A host name: taken for public.
        Err(_) => true,
    }
}

/// Checks an address of the form `tcp/HOST:PORT`.
fn check_addr(addr: &str) -> anyhow::Result<PeerAddr> {
    let bad = || failure("bad_address", NodeError::BadAddr(addr.to_owned()).to_string());
    let parsed = PeerAddr::new(addr).map_err(|_| bad())?;
    if parsed.transport() == "https" {
        // Peers' https addresses carry their parameters; a listen address is just IP:PORT.
        return match parsed.params() {
            Some(_) => samizdat_transport::https::HttpsAddr::parse(parsed.address())
                .map(|_| parsed.clone())
                .map_err(|_| bad()),
            None => parsed
                .endpoint()
                .parse::<std::net::SocketAddr>()
                .map(|_| parsed.clone())
                .map_err(|_| bad()),
        };
    }
    if parsed.transport() == "meek" {
        // A peer's meek address is whole; an announced one may leave the name, key and pin
        // to the https listener, but names its front.
        let ok = match parsed.params() {
            Some(p) if p.split('&').any(|kv| kv.starts_with("front=")) => {
                samizdat_transport::meek::MeekAddr::parse(parsed.address()).is_ok()
                    || parsed.endpoint().parse::<std::net::SocketAddr>().is_ok()
            }
            _ => false,
        };
        return if ok { Ok(parsed) } else { Err(bad()) };
    }
    if parsed.transport() == "obfs4" || parsed.transport() == "veil" {
        // Peers' obfs4 and veil addresses carry the server's key; a listen address is just
        // IP:PORT.
        let ok = match parsed.params() {
            Some(_) if parsed.transport() == "veil" => {
                samizdat_transport::veil::VeilAddr::parse(parsed.address()).is_ok()
            }
            Some(_) => samizdat_transport::pt::PtAddr::parse(parsed.address()).is_ok(),
            None => parsed.endpoint().parse::<std::net::SocketAddr>().is_ok(),
        };
        return if ok { Ok(parsed) } else { Err(bad()) };
    }
    if parsed.transport() != "tcp" {
        return Err(bad());
    }
    match parsed.address().rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(parsed),
        _ => Err(bad()),
    }
}

/// `samizdat node`'s HTTPS transport options.
#[derive(Debug, clap::Args)]
struct HttpsArgs {
    /// For --listen https/IP:PORT: the host name the node's HTTPS server answers for
    /// (sent by clients as TLS SNI and HTTP Host; never an IP address).
    #[arg(long, value_name = "NAME")]
    tls_name: Option<String>,
    /// For --listen https/…: the certificate chain to serve (PEM, leaf first). Without
    /// it the node makes a self-signed certificate for --tls-name, keeps it, and the
    /// addresses in its links and invite lines pin it.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// For --listen https/…: the private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// For --listen https/…: the static website (index.html and the rest) shown to
    /// every visitor without the node's secret; default: nginx's welcome page.
    #[arg(long, value_name = "DIR")]
    decoy_dir: Option<PathBuf>,
    /// For --listen https/… behind a reverse proxy or CDN that terminates TLS: the
    /// certificate it shows (PEM; e.g. saved with `openssl s_client -showcerts`). The node
    /// then speaks plain HTTP to the proxy, and its https/ and meek/ addresses pin this
    /// certificate. Announce the proxy's side: --announce https/PROXY-IP:443 where it passes
    /// upgrades, --announce meek/EDGE-IP:443?front=FRONT-DOMAIN where it passes only
    /// requests (a CDN; the front domain is what a censor sees).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tls_cert", "tls_key"])]
    tls_front_cert: Option<PathBuf>,
}

/// Where `samizdat node` keeps its state.
enum State {
    /// In the data directory.
    Dir,
    /// In a vault volume; the data directory holds only the control socket.
    Vault {
        /// The container.
        path: PathBuf,
        /// Where the password comes from (else the terminal).
        password_file: Option<PathBuf>,
        /// Protected mode: passwords of volumes the node must not write over.
        protect_password_file: Vec<PathBuf>,
        /// Wait for another process to close the container.
        wait: bool,
    },
}

/// The network side of `samizdat node`'s options.
struct NetOpts {
    listen: Vec<String>,
    announce: Vec<String>,
    peers: Vec<String>,
    invites: Vec<Invite>,
    seed: bool,
    local_network: bool,
    rotate_transports: bool,
    /// Padding and chaff on every link (--padding-budget).
    shaping: Shaping,
    /// The bound of the writer's jitter (--max-jitter-ms).
    jitter: Duration,
    /// The network secret and the Mainline bootstrap nodes, with --mainline-secret-file.
    mainline: Option<(NetworkSecret, Vec<String>)>,
    /// LAN discovery's settings, with --lan.
    lan: Option<LanConfig>,
    /// The HTTPS server's settings, with --listen https/….
    https: Option<HttpsOptions>,
    /// The obfs4proxy program, when given.
    obfs4proxy: Option<PathBuf>,
}

/// Largest certificate or key file read.
const MAX_PEM_FILE: u64 = 256 * 1024;

/// The HTTPS transport's settings when some `--listen` address is `https/…`.
fn https_options(
    listen: &[String],
    tls_name: Option<String>,
    cert: Option<(PathBuf, PathBuf)>,
    decoy_dir: Option<PathBuf>,
    front_cert: Option<&Path>,
) -> anyhow::Result<Option<HttpsOptions>> {
    let usage = |msg: &str| failure("usage", msg.to_owned());
    if !listen.iter().any(|l| l.starts_with("https/")) {
        if tls_name.is_some() || cert.is_some() || decoy_dir.is_some() || front_cert.is_some() {
            return Err(usage(
                "--tls-name, --tls-cert, --tls-front-cert and --decoy-dir need --listen https/IP:PORT",
            ));
        }
        return Ok(None);
    }
    let tls_name = tls_name.ok_or_else(|| usage("--listen https/… needs --tls-name NAME"))?;
    if !samizdat_transport::https::valid_tls_name(&tls_name) {
        return Err(usage("--tls-name must be a DNS host name such as www.example.org"));
    }
    let read = |path: &Path| {
        let mut buf = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PEM_FILE).read_to_end(&mut buf))
            .map_err(|e| failure("io", format!("cannot read {}: {e}", path.display())))?;
        Ok::<_, anyhow::Error>(buf)
    };
    let cert = match cert {
        Some((c, k)) => {
            let cert = ServerCert { cert_pem: read(&c)?, key_pem: read(&k)? };
            // Checked now, so a bad pair is a clear error before the node starts.
            cert.acceptor()
                .map_err(|e| failure("bad_certificate", format!("--tls-cert/--tls-key: {e}")))?;
            Some(cert)
        }
        None => None,
    };
    let decoy = match decoy_dir {
        Some(dir) => Decoy::dir(&dir)
            .map_err(|e| failure("usage", format!("--decoy-dir {}: {e}", dir.display())))?,
        None => Decoy::Welcome,
    };
    let front_pin = match front_cert {
        Some(path) => {
            let front = ServerCert { cert_pem: read(path)?, key_pem: Vec::new() };
            Some(front.pin().map_err(|e| {
                failure("bad_certificate", format!("--tls-front-cert {}: {e}", path.display()))
            })?)
        }
        None => None,
    };
    Ok(Some(HttpsOptions { tls_name, cert, decoy, front_pin }))
}

/// Longest network secret file read.
const MAX_SECRET_FILE: u64 = 4096;

/// The network secret in `path` (its first non-empty line).
fn read_network_secret(path: &Path) -> anyhow::Result<NetworkSecret> {
    let mut text = zeroize::Zeroizing::new(String::new());
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE).read_to_string(&mut text))
        .map_err(|e| {
            failure("io", format!("cannot read the network secret file {}: {e}", path.display()))
        })?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
    NetworkSecret::from_text(line).ok_or_else(|| {
        failure(
            "secret_invalid",
            format!(
                "{} holds no network secret (a line szn1… from `samizdat network-secret`)",
                path.display()
            ),
        )
    })
}

/// `samizdat network-secret`: a new secret, on standard output or in a new private file.
fn network_secret(out: Option<&Path>, json: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let secret = NetworkSecret::generate();
    let text = secret.danger_to_text();
    let Some(path) = out else {
        if json {
            println!("{}", json!({ "ok": true, "secret": text.as_str() }));
        } else {
            println!("{}", text.as_str());
        }
        return Ok(());
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| {
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .map_err(|e| failure("io", format!("cannot write {}: {e}", path.display())))?;
    if json {
        println!("{}", json!({ "ok": true, "file": path }));
    } else {
        println!("network secret written to {}", path.display());
    }
    Ok(())
}

/// Longest invite file read (a line is well under 1 KiB).
const MAX_INVITE_FILE: u64 = 1 << 20;

/// The invite lines given with `--invite` and in `--invite-file`s (blank lines and lines
/// starting with `#` are skipped).
fn read_invites(lines: &[String], files: &[PathBuf]) -> anyhow::Result<Vec<Invite>> {
    let parse = |line: &str, from: &str| {
        line.parse::<Invite>().map_err(|e| failure("invite_invalid", format!("{from}: {e}")))
    };
    let mut out = Vec::new();
    for line in lines {
        out.push(parse(line, "--invite")?);
    }
    for path in files {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_INVITE_FILE).read_to_string(&mut text))
            .map_err(|e| {
            failure("io", format!("cannot read the invite file {}: {e}", path.display()))
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                out.push(parse(line, &format!("{} line {}", path.display(), i + 1))?);
            }
        }
    }
    Ok(out)
}

async fn run_node(dir: &Path, state: State, net: NetOpts, json: bool) -> anyhow::Result<()> {
    let NetOpts {
        listen,
        announce,
        peers,
        invites,
        seed,
        local_network,
        rotate_transports,
        shaping,
        jitter,
        mainline,
        lan,
        https,
        obfs4proxy,
    } = net;
    let tried = Tried {
        peers: peers.len(),
        invites: invites.len(),
        mainline: mainline.is_some(),
        lan: lan.is_some(),
    };
    for a in listen.iter().chain(&announce).chain(&peers) {
        check_addr(a)?;
    }
    if listen.iter().chain(&announce).any(|a| is_public_bare(a)) {
        // No address in the line: logs never name one.
        tracing::warn!(
            target: "samizdat::status",
            "a tcp/ address reachable from outside answers anyone who dials it with a Samizdat \
             handshake, so a censor's prober recognises the node: listen on veil/ (or https/, \
             obfs4/) where one may look"
        );
    }
    let mut b = match &state {
        State::Dir => NodeBuilder::new().data_dir(dir),
        State::Vault { path, password_file, protect_password_file, wait } => {
            // Reading the terminal blocks.
            let pw = tokio::task::block_in_place(|| {
                vault_cmd::password(password_file, "Vault volume password", false)
            })?;
            let protect = vault_cmd::protect_passwords(protect_password_file)?;
            // The control socket still lives in the data directory: create it, private.
            create_private_dir(dir)?;
            let b = NodeBuilder::new().vault(path, pw.as_bytes()).vault_wait(*wait);
            protect.iter().fold(b, |b, p| b.vault_protect(p.as_bytes()))
        }
    }
    .seed_downloads(seed)
    .local_network(local_network)
    .rotate_transports(rotate_transports)
    .shaping(shaping)
    .jitter(jitter);
    if let Some(options) = https {
        b = b.https(options);
    }
    if let Some(program) = obfs4proxy {
        b = b.obfs4proxy(program);
    }
    for l in listen {
        b = b.listen(l);
    }
    for a in announce {
        b = b.announce(a);
    }
    for p in peers {
        b = b.peer(p);
    }
    for i in invites {
        b = b.invite(i);
    }
    if let Some((secret, bootstrap)) = mainline {
        let bootstrap = if bootstrap.is_empty() {
            PUBLIC_BOOTSTRAP.iter().map(|s| (*s).to_owned()).collect()
        } else {
            bootstrap
        };
        // Resolving the bootstrap host names blocks.
        let method = tokio::task::block_in_place(|| {
            MainlineRendezvous::new(secret, MainlineConfig::new(bootstrap))
        })
        .map_err(|e| failure("io", format!("cannot start the Mainline DHT client: {e}")))?;
        b = b.discovery(Box::new(method));
    }
    if let Some(config) = lan {
        b = b.discovery(Box::new(LanDiscovery::new(config)));
    }
    let node = Arc::new(match &state {
        State::Dir => b.build().await?,
        State::Vault { path, .. } => {
            b.build().await.with_context(|| format!("vault {}", path.display()))?
        }
    });
    let addrs: Vec<String> = node.listen_addrs().iter().map(ToString::to_string).collect();
    let advertised: Vec<String> = node.advertised_addrs().iter().map(ToString::to_string).collect();
    if json {
        println!(
            "{}",
            json!({ "ok": true, "node_id": node.node_id().to_string(), "listen": addrs,
                    "advertised": advertised })
        );
    } else {
        println!("samizdat node {} running", node.node_id().short());
        for a in &addrs {
            println!("  listening on {a}");
        }
        if advertised.is_empty() {
            println!(
                "  advertising no address: pass --announce ADDR so links carry a reachable one"
            );
        }
        for a in advertised.iter().filter(|a| !addrs.contains(a)) {
            println!("  advertising {a}");
        }
        match &state {
            State::Dir => println!("  data directory {}", dir.display()),
            State::Vault { path, .. } => {
                println!("  state kept in the vault {}", path.display());
                println!("  control socket {}", control::socket_path(dir).display());
            }
        }
        println!("Press Ctrl-C to stop.");
    }
    let control = tokio::spawn({
        let node = node.clone();
        let dir = dir.to_owned();
        async move { control::serve(node, &dir).await }
    });
    let status = tokio::spawn(log_status(node.clone(), tried));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut control = control;
    let mut failed = None;
    tokio::select! {
        r = &mut control => {
            if let Ok(Err(e)) = r {
                failed = Some(e);
            }
        }
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    control.abort();
    let _ = control.await;
    status.abort();
    let _ = status.await;
    let _ = std::fs::remove_file(control::socket_path(dir));
    // Stop the driver in every case (a control connection may still hold the node): its
    // downloads wind up and the peers it knows are remembered.
    match Arc::try_unwrap(node) {
        Ok(node) => node.shutdown().await,
        Err(node) => node.stop().await,
    }
    match failed {
        Some(e) => Err(e).context("control socket"),
        None => Ok(()),
    }
}

/// Creates `dir` (and its parents) if needed, readable only by this user.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the permissions of {}", dir.display()))
}

/// How often the node's status is sampled, and the least time between two status lines.
const STATUS_SAMPLE: Duration = Duration::from_secs(1);
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// How long a node may go without any peer before it says what it tried.
const ALONE_AFTER: Duration = Duration::from_secs(30);

/// The ways in `samizdat node` was given, for the advice it prints when none worked.
#[derive(Clone, Copy, Debug)]
struct Tried {
    peers: usize,
    invites: usize,
    mainline: bool,
    lan: bool,
}

impl Tried {
    /// What was tried and what the user can do (counts only: never a peer's address), with
    /// what each discovery method did in its last round.
    fn advice(self, discovery: Option<&DiscoveryReport>) -> String {
        let tried = match (self.peers, self.invites) {
            (0, 0) => "this node was given no way in (no --peer, no --invite)".to_owned(),
            (p, i) => format!(
                "none of the {p} --peer address{} and {i} invite line{} answered",
                if p == 1 { "" } else { "es" },
                if i == 1 { "" } else { "s" }
            ),
        };
        let methods = match discovery {
            Some(r) => r
                .methods
                .iter()
                .map(|m| match &m.error {
                    Some(e) if e.starts_with(m.name) => format!("; {e}"),
                    Some(e) => format!("; {}: {e}", m.name),
                    None => format!("; {}: {} peers, none reachable", m.name, m.peers),
                })
                .collect(),
            None if self.mainline => "; the Mainline DHT has not answered yet".to_owned(),
            None => String::new(),
        };
        let mainline = if self.mainline {
            ""
        } else {
            "; with the network secret of your network, add --mainline-secret-file FILE"
        };
        let lan = if self.lan {
            "; on a local network, check that the others run with --lan too, or give their \
             LAN addresses with --peer"
        } else {
            "; on a local network (when the internet is cut off), add --lan, or give each \
             other's LAN addresses with --peer and --local-network"
        };
        format!(
            "no peer reachable after {} s: {tried}{methods}, and nobody dialled in. Ask someone \
             who runs samizdat for an invite line (they run `samizdat invite`) and start with \
             --invite LINE or --invite-file FILE{mainline}{lan}",
            ALONE_AFTER.as_secs()
        )
    }
}

/// Logs the node's counts (peers up, bytes served) when they change, at most once every
/// [`STATUS_EVERY`]; never an address, a name or a link. With `-v`, each peer that comes or
/// goes is logged too (target `samizdat::peers`).
async fn log_status(node: Arc<Node>, tried: Tried) {
    let mut warned = false;
    let mut logged: Option<(usize, u64)> = None;
    let start = tokio::time::Instant::now();
    let mut last_line = start.checked_sub(STATUS_EVERY).unwrap_or(start);
    let mut known = std::collections::BTreeSet::new();
    loop {
        let Ok(peers) = node.peers().await else { return };
        let up: std::collections::BTreeSet<String> = peers
            .iter()
            .filter(|p| p.established)
            .filter_map(|p| p.node_id.map(|n| n.short()))
            .collect();
        for id in up.difference(&known) {
            tracing::info!(target: "samizdat::peers", "peer {id} up");
        }
        for id in known.difference(&up) {
            tracing::info!(target: "samizdat::peers", "peer {id} down");
        }
        let now = (up.len(), node.served_bytes());
        known = up;
        if !warned && now.0 == 0 && start.elapsed() >= ALONE_AFTER {
            warned = true;
            let report = node.discovery_report();
            tracing::warn!(target: "samizdat::status", "{}", tried.advice(report.as_ref()));
        }
        if logged != Some(now) && last_line.elapsed() >= STATUS_EVERY {
            tracing::info!(
                target: "samizdat::status",
                "{} peer{} up, {} served",
                now.0,
                if now.0 == 1 { "" } else { "s" },
                human_bytes(now.1)
            );
            logged = Some(now);
            last_line = tokio::time::Instant::now();
        }
        tokio::time::sleep(STATUS_SAMPLE).await;
    }
}

/// `share`'s flags.
struct ShareFlags {
    again: bool,
    no_hints: bool,
}

async fn share(file: &Path, flags: ShareFlags, dir: &Path, json: bool) -> anyhow::Result<()> {
    let path = std::fs::canonicalize(file)
        .map_err(|e| failure("io", format!("cannot read {}: {e}", file.display())))?;
    if !path.is_file() {
        return Err(failure("io", format!("{} is not a regular file", file.display())));
    }
    let client = ControlClient::connect(dir).await?;
    let mut bar = Bar::new("sharing", "encrypting", json);
    let req =
        json!({ "op": "share", "path": path, "again": flags.again, "no_hints": flags.no_hints });
    let v = client.request(req, |p| bar.update(p.verified_bytes, p.total_bytes, 0)).await;
    bar.finish();
    let v = v?;
    let link = v.get("link").and_then(|l| l.as_str()).context("node sent no link")?;
    if json {
        println!("{v}");
        return Ok(());
    }
    println!("{link}");
    if v.get("existing").and_then(serde_json::Value::as_bool) == Some(true) {
        let id = v.get("id").and_then(|i| i.as_str()).unwrap_or("?");
        eprintln!(
            "This content is already shared (id {id}); that is its link. Nothing new was \
             stored (use --again for a new link)."
        );
    }
    eprintln!("Anyone with this link can fetch and decrypt the file: send it privately.");
    Ok(())
}

/// `secs` since the Unix epoch as a UTC date and time, `2026-12-02T07:52:15Z`.
fn utc_timestamp(secs: u64) -> String {
    let (year, month, day) = samizdat_transport::https::civil_date(secs);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

async fn shares(dir: &Path, json: bool) -> anyhow::Result<()> {
    let client = ControlClient::connect(dir).await?;
    let v = client.request(json!({ "op": "shares" }), |_| {}).await?;
    let list = v.get("shares").and_then(|p| p.as_array()).cloned().unwrap_or_default();
    let field = |s: &serde_json::Value, k: &str| {
        s.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned()
    };
    let num = |s: &serde_json::Value, k: &str| s.get(k).and_then(serde_json::Value::as_u64);
    if json {
        let out: Vec<serde_json::Value> = list
            .iter()
            .map(|s| {
                json!({ "id": field(s, "id"), "name": field(s, "name"),
                        "size": num(s, "size").unwrap_or(0),
                        "shared_at": utc_timestamp(num(s, "shared_at").unwrap_or(0)),
                        "link": field(s, "link") })
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
        return Ok(());
    }
    if list.is_empty() {
        println!("nothing shared");
    }
    for s in &list {
        let when = utc_timestamp(num(s, "shared_at").unwrap_or(0)).replace('T', " ");
        println!(
            "{}  {:>10}  {}  {}",
            field(s, "id"),
            human_bytes(num(s, "size").unwrap_or(0)),
            when.trim_end_matches('Z').to_owned() + " UTC",
            field(s, "name").escape_debug()
        );
        println!("    {}", field(s, "link"));
    }
    Ok(())
}

async fn unshare(target: &str, dir: &Path, json: bool) -> anyhow::Result<()> {
    let client = ControlClient::connect(dir).await?;
    let v = client.request(json!({ "op": "unshare", "target": target }), |_| {}).await?;
    if json {
        println!("{v}");
    } else {
        let get = |k| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_owned();
        println!(
            "Stopped sharing {:?} (id {}); its encrypted copy was deleted.",
            get("name"),
            get("id")
        );
    }
    Ok(())
}

/// Progress of a fetch as last seen: what to say if it is interrupted.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    verified: u64,
    total: Option<u64>,
}

/// The error of a fetch interrupted by Ctrl-C: what was kept, and how to resume.
fn interrupted(seen: Seen) -> anyhow::Error {
    let kept = match seen.total {
        Some(t) if t > 0 => format!(
            "{} ({} bytes, {:.0}% of {})",
            human_bytes(seen.verified),
            seen.verified,
            progress::percent(seen.verified, t).floor(),
            human_bytes(t)
        ),
        _ => format!("{} bytes", seen.verified),
    };
    failure(
        "interrupted",
        format!("interrupted; kept {kept} of verified data; run the same command again to resume"),
    )
}

/// Where `fetch -o OUT` saves: `-` is standard output, an existing directory is saved into,
/// anything else is a new file; without `-o`, the current directory.
fn fetch_target(out: Option<&Path>) -> anyhow::Result<FetchTarget> {
    let cwd = || std::env::current_dir().context("cannot read the current directory");
    Ok(match out {
        None => FetchTarget::Dir(cwd()?),
        Some(p) if p.as_os_str() == "-" => FetchTarget::Stdout,
        Some(p) if p.is_dir() => FetchTarget::Dir(absolute(p)?),
        Some(p) => {
            let out = absolute(p)?;
            if out.symlink_metadata().is_ok() {
                return Err(NodeError::OutputExists(out).into());
            }
            FetchTarget::File(out)
        }
    })
}

async fn fetch(
    link: &str,
    out: Option<&Path>,
    extra: Vec<String>,
    data: &DataArgs,
    json: bool,
) -> anyhow::Result<()> {
    let extra = extra.iter().map(|p| check_addr(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let link: ShareLink = link.parse()?;
    let target = fetch_target(out)?;
    let to_stdout = target == FetchTarget::Stdout;
    let dir = data.dir();
    let started = std::time::Instant::now();
    let mut bar = Bar::new("fetching", "looking for peers", json);
    let mut seen = Seen::default();
    let mut on_progress = |p: samizdat_node::Progress| {
        seen = Seen { verified: p.verified_bytes, total: p.total_bytes };
        bar.update(p.verified_bytes, p.total_bytes, p.resumed_bytes);
    };
    // Through a daemon, the file lands in its staging directory and is copied out here; a
    // node of our own writes standard output itself.
    let mut via_daemon = false;
    let result = match ControlClient::connect(&dir).await {
        Ok(client) => {
            via_daemon = true;
            let peers: Vec<String> = extra.iter().map(ToString::to_string).collect();
            let mut req = json!({ "op": "fetch", "link": link.to_string(), "peers": peers });
            // The node cannot write to this process's standard output: it saves into a private
            // staging directory beside its control socket, and the file is copied out from
            // there (a later run of the same command resumes from it).
            let staging = dir.join("stdout");
            match &target {
                FetchTarget::File(out) => req["out"] = json!(out),
                FetchTarget::Dir(d) => req["dir"] = json!(d),
                _ => {
                    create_private_dir(&staging)?;
                    req["dir"] = json!(staging);
                }
            }
            tokio::select! {
                v = client.request(req, &mut on_progress) => v.map_err(Into::into).map(|v| {
                    let get = |k| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
                    let name = v.get("name").and_then(|n| n.as_str()).unwrap_or("").to_owned();
                    let path = PathBuf::from(v.get("path").and_then(|n| n.as_str()).unwrap_or(""));
                    (get("bytes"), get("resumed_bytes"), name, path)
                }),
                // Dropping the request closes the socket: the node cancels the download and
                // keeps what it verified.
                _ = tokio::signal::ctrl_c() => Err(interrupted(seen)),
            }
        }
        Err(e @ ControlError::NoNode(_)) if data.explicit() => Err(e.into()),
        Err(ControlError::NoNode(_)) => {
            // No daemon: fetch with a short-lived node of our own (no listener, no disk state).
            let node = NodeBuilder::new().build().await?;
            let r = tokio::select! {
                r = fetch_standalone(&node, &link, target, extra, &mut on_progress) => r,
                _ = tokio::signal::ctrl_c() => Err(interrupted(seen)),
            };
            node.shutdown().await;
            r
        }
        Err(e) => Err(e.into()),
    };
    bar.finish();
    let (bytes, resumed, name, path) = result?;
    let path = if to_stdout {
        if via_daemon {
            copy_out(&path)?;
        }
        PathBuf::from("-")
    } else {
        path
    };
    let seconds = started.elapsed().as_secs_f64();
    // With -o -, standard output carries the file and nothing else.
    let mut report: Box<dyn std::io::Write> =
        if to_stdout { Box::new(std::io::stderr()) } else { Box::new(std::io::stdout()) };
    if json {
        let v = json!({ "ok": true, "bytes": bytes, "resumed_bytes": resumed,
                        "seconds": seconds, "path": path, "name": name });
        writeln!(report, "{v}")?;
    } else {
        let resumed_note = if resumed > 0 {
            format!(", {resumed} bytes resumed from an earlier attempt")
        } else {
            String::new()
        };
        let place =
            if to_stdout { "standard output".to_owned() } else { path.display().to_string() };
        writeln!(report, "Fetched {bytes} bytes into {place} in {seconds:.1} s{resumed_note}")?;
        if !name.is_empty() && !to_stdout {
            writeln!(report, "The sender named the file {name:?}.")?;
        }
    }
    Ok(())
}

async fn fetch_standalone(
    node: &Node,
    link: &ShareLink,
    target: FetchTarget,
    extra: Vec<PeerAddr>,
    on_progress: &mut impl FnMut(samizdat_node::Progress),
) -> anyhow::Result<(u64, u64, String, PathBuf)> {
    let mut f = node.fetch_with(link, target, extra).await?;
    while let Some(p) = f.progress().await {
        on_progress(p);
    }
    let o = f.outcome().await?;
    Ok((o.bytes, o.resumed_bytes, o.manifest.safe_name(), o.path))
}

/// Copies a file the node saved for `-o -` to standard output, then removes it.
fn copy_out(path: &Path) -> anyhow::Result<()> {
    let result = std::fs::File::open(path).and_then(|mut f| {
        let mut out = std::io::stdout().lock();
        std::io::copy(&mut f, &mut out)?;
        std::io::Write::flush(&mut out)
    });
    let _ = std::fs::remove_file(path);
    result.context("writing to standard output")
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_owned());
    }
    Ok(std::env::current_dir().context("cannot read the current directory")?.join(p))
}

async fn invite(dir: &Path, no_qr: bool, json: bool) -> anyhow::Result<()> {
    let client = ControlClient::connect(dir).await?;
    let v = client.request(json!({ "op": "invite" }), |_| {}).await?;
    if json {
        println!("{v}");
        return Ok(());
    }
    let line = v.get("invite").and_then(|l| l.as_str()).unwrap_or_default();
    if !no_qr && std::io::stdout().is_terminal() {
        if let Ok(code) = qrcode::QrCode::new(line.to_uppercase()) {
            let art = code
                .render::<qrcode::render::unicode::Dense1x2>()
                .dark_color(qrcode::render::unicode::Dense1x2::Light)
                .light_color(qrcode::render::unicode::Dense1x2::Dark)
                .build();
            println!("{art}");
        }
    }
    println!("{line}");
    Ok(())
}

async fn peers(dir: &Path, json: bool) -> anyhow::Result<()> {
    let client = ControlClient::connect(dir).await?;
    let v = client.request(json!({ "op": "peers" }), |_| {}).await?;
    if json {
        println!("{v}");
        return Ok(());
    }
    let list = v.get("peers").and_then(|p| p.as_array()).cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no peers connected");
    }
    for p in list {
        let id = p.get("node_id").and_then(|n| n.as_str()).unwrap_or("(handshaking)");
        let dir = if p.get("outbound").and_then(serde_json::Value::as_bool) == Some(true) {
            "out"
        } else {
            "in"
        };
        let addr = p.get("addr").and_then(|a| a.as_str()).unwrap_or("-");
        // A download's own link, opened under a throwaway identity.
        let anonymous = p.get("anonymous").and_then(serde_json::Value::as_bool) == Some(true);
        let note = if anonymous { " (anonymous, a download's)" } else { "" };
        println!("{dir:3} {id} {}{note}", endpoint(addr));
    }
    let transports = v.get("transports").and_then(|t| t.as_array()).cloned().unwrap_or_default();
    if !transports.is_empty() {
        println!("transports dialled:");
    }
    for t in transports {
        let addr = endpoint(t.get("addr").and_then(|a| a.as_str()).unwrap_or("-"));
        let secs = |k: &str| t.get(k).and_then(serde_json::Value::as_u64);
        let state = if t.get("failing").and_then(serde_json::Value::as_bool) == Some(true) {
            let why = t.get("last_failure").and_then(|w| w.as_str()).unwrap_or("?");
            format!("failing ({why}, {} s ago)", secs("last_failure_secs_ago").unwrap_or(0))
        } else if let Some(ok) = secs("last_ok_secs_ago") {
            format!("working (up {ok} s ago)")
        } else {
            "failed over 10 minutes ago".into()
        };
        println!("  {addr} {state}");
    }
    Ok(())
}

/// An address without its parameters (an HTTPS address's pin and secret stay off screen).
fn endpoint(addr: &str) -> &str {
    addr.split('?').next().unwrap_or(addr)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use samizdat_discovery::MethodReport;

    #[test]
    fn bare_tcp_reachable_from_outside_is_told_apart() {
        for public in
            ["tcp/0.0.0.0:7070", "tcp/203.0.113.5:7070", "tcp/[2001:db8::1]:1", "tcp/[::]:1"]
        {
            assert!(is_public_bare(public), "{public}");
        }
        for private in [
            "tcp/127.0.0.1:7070",
            "tcp/10.1.2.3:1",
            "tcp/192.168.1.5:1",
            "tcp/169.254.0.1:1",
            "tcp/[::1]:1",
            "tcp/[fd00::1]:1",
            "tcp/[fe80::1]:1",
            "veil/0.0.0.0:7070",
            "https/203.0.113.5:443",
            "not an address",
        ] {
            assert!(!is_public_bare(private), "{private}");
        }
        assert!(is_public_bare("tcp/node.example:7070"));
    }

    #[test]
    fn the_advice_when_alone_names_counts_and_ways_in_but_no_address() {
        let none = Tried { peers: 0, invites: 0, mainline: false, lan: false }.advice(None);
        assert!(none.contains("no way in") && none.contains("--invite"), "{none}");
        assert!(none.contains("--mainline-secret-file"), "{none}");
        let some = Tried { peers: 2, invites: 1, mainline: false, lan: false }.advice(None);
        assert!(some.contains("2 --peer addresses and 1 invite line answered"), "{some}");
        assert!(some.contains("--local-network") && some.contains("samizdat invite"), "{some}");
        assert!(!some.contains("tcp/"), "{some}");
        let waiting = Tried { peers: 0, invites: 0, mainline: true, lan: false }.advice(None);
        assert!(waiting.contains("Mainline DHT has not answered"), "{waiting}");
        assert!(!waiting.contains("add --mainline-secret-file"), "{waiting}");
        let report = DiscoveryReport {
            methods: vec![
                MethodReport {
                    name: "mainline",
                    peers: 0,
                    elapsed: Duration::from_secs(20),
                    error: Some("mainline: no answer within 20s".into()),
                },
                MethodReport { name: "mdns", peers: 2, elapsed: Duration::ZERO, error: None },
            ],
            peers: Vec::new(),
        };
        let tried = Tried { peers: 0, invites: 1, mainline: true, lan: true }.advice(Some(&report));
        assert!(tried.contains("; mainline: no answer within 20s;"), "{tried}");
        assert!(tried.contains("; mdns: 2 peers, none reachable"), "{tried}");
        assert!(tried.contains("run with --lan too"), "{tried}");
        assert!(some.contains("add --lan"), "{some}");
    }

    #[test]
    fn repeated_causes_are_dropped() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let text = io.to_string();
        let err =
            anyhow::Error::from(NodeError::Listen { addr: "tcp/127.0.0.1:1".into(), source: io });
        let shown = error_text(&err);
        assert_eq!(shown.matches(&text).count(), 1, "{shown}");
        assert_eq!(error_kind(&err), "in_use");
        // A context that adds information keeps both parts.
        let err = anyhow::Error::from(std::io::Error::other("disk on fire")).context("saving");
        assert_eq!(error_text(&err), "saving: disk on fire");
        assert_eq!(error_kind(&err), "io");
        let err = anyhow::anyhow!("line one\nline two");
        assert_eq!(error_text(&err), "line one line two");
        assert_eq!(error_kind(&err), "error");
    }

    #[test]
    fn every_error_class_has_a_kind() {
        let kind = |e: anyhow::Error| error_kind(&e);
        assert_eq!(kind(failure("usage", "x")), "usage");
        assert_eq!(kind(NodeError::NoSources.into()), "no_sources");
        assert_eq!(kind(ControlError::NoNode("/d".into()).into()), "node_not_running");
        assert_eq!(kind("hello".parse::<ShareLink>().unwrap_err().into()), "link_invalid");
        let v = samizdat_node::VaultError::NoVolume;
        assert_eq!(kind(anyhow::Error::from(v).context("opening")), "vault");
        let in_use = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        assert_eq!(kind(anyhow::Error::from(in_use).context("control socket")), "in_use");
        assert_eq!(kind(interrupted(Seen::default())), "interrupted");
    }

    #[test]
    fn interruption_says_what_was_kept() {
        let e = interrupted(Seen { verified: 3 << 20, total: Some(12 << 20) });
        assert_eq!(
            e.to_string(),
            "interrupted; kept 3.0 MiB (3145728 bytes, 25% of 12.0 MiB) of verified data; \
             run the same command again to resume"
        );
        let e = interrupted(Seen { verified: 0, total: None });
        assert!(e.to_string().starts_with("interrupted; kept 0 bytes of verified data"));
    }

    #[test]
    fn timestamps_are_utc_civil_dates() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_796_198_399), "2026-12-02T07:59:59Z");
        assert_eq!(utc_timestamp(4_102_444_800), "2100-01-01T00:00:00Z");
    }

    #[test]
    fn links_come_from_the_first_non_empty_line() {
        assert_eq!(first_line(&b"\n \n  sz1abc  \nmore\n"[..], "x").unwrap(), "sz1abc");
        assert_eq!(first_line(&b"sz1abc"[..], "x").unwrap(), "sz1abc");
        let e = first_line(&b"\n\n"[..], "standard input").unwrap_err();
        assert_eq!(
            (error_kind(&e), e.to_string()),
            ("link_invalid".into(), "no link in standard input".into())
        );
        // Bounded: a huge file without a newline is not read whole.
        let big = vec![b' '; 2 * MAX_LINK_INPUT as usize];
        assert!(first_line(&big[..], "x").is_err());
        let e = first_line(&b"\xff\xfe\n"[..], "x").unwrap_err();
        assert_eq!(error_kind(&e), "io");
        assert_eq!(read_link(Some(" sz1x "), None).unwrap(), "sz1x");
        assert_eq!(error_kind(&read_link(None, None).unwrap_err()), "usage");
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("l");
        std::fs::write(&f, "\nsz1y\n").unwrap();
        assert_eq!(read_link(Some("ignored"), Some(&f)).unwrap(), "sz1y");
        let e = read_link(None, Some(&tmp.path().join("missing"))).unwrap_err();
        assert!(e.to_string().starts_with("cannot read the link file"), "{e}");
    }

    #[test]
    fn addresses_must_be_tcp_host_port() {
        for good in ["tcp/127.0.0.1:7070", "tcp/[::1]:1", "tcp/example.org:443"] {
            assert!(check_addr(good).is_ok(), "{good}");
        }
        for bad in
            ["127.0.0.1:7070", "tcp/127.0.0.1", "tcp/:80", "tcp/h:99999", "udp/h:1", "tcp/a b:1"]
        {
            let e = check_addr(bad).unwrap_err();
            assert_eq!(error_kind(&e), "bad_address", "{bad}");
            assert!(e.to_string().contains("expected tcp/HOST:PORT"), "{e}");
        }
    }

    #[test]
    fn verbosity_raises_the_log_level() {
        // RUST_LOG, when set, wins over -v.
        if std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        assert_eq!(log_filter(0).to_string(), "samizdat::status=info,warn");
        assert_eq!(log_filter(1).to_string(), "info");
        assert_eq!(log_filter(2).to_string(), "debug");
        assert_eq!(log_filter(9).to_string(), "trace");
    }

    #[test]
    fn data_dir_defaults() {
        let d = DataArgs { data: Some("/x".into()) };
        assert!(d.explicit());
        assert_eq!(d.dir(), PathBuf::from("/x"));
        assert!(absolute(Path::new("/a")).unwrap().is_absolute());
        assert!(absolute(Path::new("a")).unwrap().is_absolute());
    }
}
