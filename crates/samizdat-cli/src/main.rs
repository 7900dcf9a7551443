//! `samizdat`: the command-line tool and node daemon.
//!
//! `samizdat node` runs a node in the foreground; `share`, `fetch` and `peers` talk to it over
//! its control socket (`fetch` runs its own short-lived node when none is running); `demo`
//! starts a small network on loopback and moves a file through it; `vault` manages deniable
//! encrypted containers.
// A binary: ambient time is fine here.
#![allow(clippy::disallowed_methods)]

mod demo;
mod size;
mod vault_cmd;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use samizdat_node::control::{self, ControlClient};
use samizdat_node::{NodeBuilder, PeerAddr, Progress, ShareLink};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Censorship-resistant, anonymous peer-to-peer file sharing.
#[derive(Parser, Debug)]
#[command(name = "samizdat", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    json: bool,
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
        /// Address to accept peers on (repeatable).
        #[arg(long, value_name = "ADDR", default_value = "tcp/127.0.0.1:7070")]
        listen: Vec<String>,
        /// Address to give peers and put in share links instead of the listen addresses
        /// (repeatable), e.g. a public IP or port forward: tcp/203.0.113.5:7070.
        #[arg(long, value_name = "ADDR")]
        announce: Vec<String>,
        /// Peer to connect to at start (repeatable), e.g. tcp/192.0.2.1:7070.
        #[arg(long, value_name = "ADDR")]
        peer: Vec<String>,
        /// Keep and serve the encrypted copy of everything this node downloads.
        #[arg(long)]
        seed: bool,
    },
    /// Share a file through the running node; prints its share link.
    Share {
        /// The file to share.
        file: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Download a file from a share link (resumes an interrupted download).
    Fetch {
        /// The share link (sz1…).
        link: String,
        /// Where to write the file.
        #[arg(short, long, value_name = "OUT")]
        output: PathBuf,
        /// Extra peer to try (repeatable).
        #[arg(long, value_name = "ADDR")]
        peer: Vec<String>,
        #[command(flatten)]
        data: DataArgs,
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

fn main() {
    let cli = Cli::parse();
    // Default: warnings only. Nothing about transfers, links, names or addresses is logged at
    // the default level; RUST_LOG raises it for debugging.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let json = cli.json;
    let result = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(run(cli.command, json)),
        Err(e) => Err(e.into()),
    };
    if let Err(err) = result {
        let msg = format!("{err:#}").replace('\n', " ");
        if json {
            println!("{}", json!({ "ok": false, "error": msg }));
        } else {
            eprintln!("samizdat: {msg}");
        }
        std::process::exit(1);
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
            seed,
        } => {
            let state = match vault {
                Some(path) => State::Vault { path, password_file, protect_password_file, wait },
                None => State::Dir,
            };
            let net = NetOpts { listen, announce, peers: peer, seed };
            run_node(&data.dir(), state, net, json).await
        }
        Command::Share { file, data } => share(&file, &data.dir(), json).await,
        Command::Fetch { link, output, peer, data } => {
            fetch(&link, &output, peer, &data.dir(), json).await
        }
        Command::Peers { data } => peers(&data.dir(), json).await,
        Command::Demo { nodes, size } => demo::run(usize::from(nodes), size, json).await,
        // The vault is synchronous, blocking file I/O.
        Command::Vault(args) => tokio::task::block_in_place(|| vault_cmd::run(args, json)),
    }
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
    seed: bool,
}

async fn run_node(dir: &Path, state: State, net: NetOpts, json: bool) -> anyhow::Result<()> {
    let NetOpts { listen, announce, peers, seed } = net;
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
    .seed_downloads(seed);
    for l in listen {
        b = b.listen(l);
    }
    for a in announce {
        b = b.announce(a);
    }
    for p in peers {
        b = b.peer(p);
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
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = control => {
            if let Ok(Err(e)) = r {
                return Err(e).context("control socket");
            }
        }
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = std::fs::remove_file(control::socket_path(dir));
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await;
    }
    Ok(())
}

/// Creates `dir` (and its parents) if needed, readable only by this user.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("setting the permissions of {}", dir.display()))
}

async fn share(file: &Path, dir: &Path, json: bool) -> anyhow::Result<()> {
    let path =
        std::fs::canonicalize(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !path.is_file() {
        bail!("{} is not a regular file", file.display());
    }
    let client = ControlClient::connect(dir).await?;
    let v = client.request(json!({ "op": "share", "path": path }), |_| {}).await?;
    let link = v.get("link").and_then(|l| l.as_str()).context("node sent no link")?;
    if json {
        println!("{v}");
    } else {
        println!("{link}");
        eprintln!("Anyone with this link can fetch and decrypt the file: send it privately.");
    }
    Ok(())
}

fn progress_bar(json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn update_bar(bar: &ProgressBar, p: &Progress) {
    if let Some(t) = p.total_bytes {
        bar.set_length(t);
    }
    bar.set_position(p.verified_bytes);
}

async fn fetch(
    link: &str,
    out: &Path,
    extra: Vec<String>,
    dir: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let mut link: ShareLink = link.parse()?;
    for p in extra {
        link.peers.push(PeerAddr::new(&p).map_err(|_| anyhow::anyhow!("bad peer address {p:?}"))?);
    }
    let out = absolute(out)?;
    if out.exists() {
        bail!("{} already exists; choose another output path", out.display());
    }
    let started = std::time::Instant::now();
    let bar = progress_bar(json);
    let (bytes, resumed, name) = match ControlClient::connect(dir).await {
        Ok(client) => {
            let req = json!({ "op": "fetch", "link": link.to_string(), "out": out });
            let v = client.request(req, |p| update_bar(&bar, &p)).await?;
            let get = |k| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let name = v.get("name").and_then(|n| n.as_str()).unwrap_or("").to_owned();
            (get("bytes"), get("resumed_bytes"), name)
        }
        Err(control::ControlError::NoNode(_)) => {
            // No daemon: fetch with a short-lived node of our own (no listener, no disk state).
            let node = NodeBuilder::new().build().await?;
            let mut f = node.fetch(&link, &out).await?;
            while let Some(p) = f.progress().await {
                update_bar(&bar, &p);
            }
            let o = f.outcome().await?;
            node.shutdown().await;
            (o.bytes, o.resumed_bytes, o.manifest.safe_name())
        }
        Err(e) => return Err(e.into()),
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if json {
        println!(
            "{}",
            json!({ "ok": true, "bytes": bytes, "resumed_bytes": resumed, "seconds": seconds,
                    "path": out, "name": name })
        );
    } else {
        let resumed_note = if resumed > 0 {
            format!(", {resumed} bytes resumed from an earlier attempt")
        } else {
            String::new()
        };
        println!("Fetched {bytes} bytes into {} in {seconds:.1} s{resumed_note}", out.display());
        if !name.is_empty() {
            println!("The sender named the file {name:?}.");
        }
    }
    Ok(())
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p.to_owned());
    }
    Ok(std::env::current_dir().context("cannot read the current directory")?.join(p))
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
        println!("{dir:3} {id} {addr}");
    }
    Ok(())
}
