//! The Samizdat node: drives the sans-IO [`samizdat_engine::Engine`] with tokio, real
//! transports and files, and offers the async [`Node`] API that the CLI and embedding
//! applications use.
//!
//! ```no_run
//! # async fn demo() -> Result<(), samizdat_node::NodeError> {
//! use samizdat_node::NodeBuilder;
//! let seeder = NodeBuilder::new().data_dir("/tmp/seeder").listen("tcp/127.0.0.1:0").build().await?;
//! let link = seeder.share("report.pdf".as_ref()).await?;
//!
//! let fetcher = NodeBuilder::new().build().await?; // ephemeral: no disk state, no listener
//! let mut fetch = fetcher.fetch(&link, "copy.pdf".as_ref()).await?;
//! while let Some(p) = fetch.progress().await {
//!     println!("{} / {:?}", p.verified_bytes, p.total_bytes);
//! }
//! let done = fetch.outcome().await?;
//! println!("got {} bytes", done.bytes);
//! # Ok(()) }
//! ```
//!
//! A node keeps its state (identity key, shared and seeded blobs) in a data directory, or,
//! with [`NodeBuilder::vault`], inside a volume of a deniable vault (`samizdat-vault`), so that
//! nothing on disk outside the container reveals what the node shares:
//!
//! ```no_run
//! # async fn demo() -> Result<(), samizdat_node::NodeError> {
//! use samizdat_node::NodeBuilder;
//! let node = NodeBuilder::new()
//!     .vault("/media/usb/state.vault", b"correct horse battery staple")
//!     .listen("tcp/0.0.0.0:7070")
//!     .build()
//!     .await?;
//! let link = node.share("report.pdf".as_ref()).await?; // the blob is written into the vault
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
// The runtime is where ambient time enters the system.
#![allow(clippy::disallowed_methods)]

mod camouflage;
pub mod control;
mod discover;
mod download;
mod driver;
mod peers;
mod sealed;
mod seeds;
mod shares;
mod state;
mod store;
mod vault_store;
mod writer;

pub use camouflage::HttpsOptions;
pub use download::FetchTarget;
pub use samizdat_content::{
    ContentRoot, Invite, InviteError, LinkError, Manifest, PeerHint, ShareLink,
};
pub use samizdat_discovery::{Discovery, Report as DiscoveryReport};
pub use samizdat_engine::PeerSummary;
pub use samizdat_identity::NodeId;
pub use samizdat_session::Shaping;
pub use samizdat_transport::https::{Decoy, ServerCert};
pub use samizdat_transport::{
    HttpsTransport, MeekTransport, MemoryTransport, PtTransport, TcpTransport, Transport,
    Transports, VeilTransport,
};
pub use samizdat_vault::VaultError;
pub use samizdat_wire::PeerAddr;
pub use shares::ShareRecord;
pub use store::FileSource;

use driver::Command;
use samizdat_content::{ContentKey, PROVIDER_PERIOD_SECS, encode};
use samizdat_discovery::Report;
use samizdat_engine::{FetchSpec, SourceSpec};
use samizdat_identity::Identity;
use shares::ShareBook;
use state::Store;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

/// Errors of the node API. Messages are one line, fit for showing to a user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the node was doing.
        context: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The output file already exists (the node never overwrites).
    #[error("{} already exists; choose another output path", .0.display())]
    OutputExists(PathBuf),
    /// Another download is writing this output right now (its part file is locked).
    #[error("{} is being written by another fetch of this link; wait for it or stop it", .0.display())]
    OutputBusy(PathBuf),
    /// Content encoding failed.
    #[error(transparent)]
    Content(#[from] samizdat_content::ContentError),
    /// A share link could not be parsed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// No peer could be reached that has the content.
    #[error("no reachable peer has this content (is the sharing node running and reachable?)")]
    NoSources,
    /// The link names no peer, and nobody in the DHT announced the content.
    #[error(
        "nobody sharing this file was found: the link names no peer and no node in the DHT announced it (the sharer may be offline, or this node may know too few peers: fetch through a running node with --data, or add a peer with --peer)"
    )]
    NoProviders,
    /// Stored or received data is inconsistent.
    #[error("corrupt {0}")]
    Corrupt(&'static str),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// An address is malformed.
    #[error("bad address {0:?}: expected tcp/HOST:PORT or https/IP:PORT, e.g. tcp/127.0.0.1:7070")]
    BadAddr(String),
    /// The node has shut down.
    #[error("the node has stopped")]
    Stopped,
    /// The download was cancelled.
    #[error("download cancelled")]
    Cancelled,
    /// The vault that holds the node's state failed: a wrong password
    /// ([`VaultError::NoVolume`]), a corrupt or full container, an I/O error.
    #[error("{context}: {source}")]
    Vault {
        /// What the node was doing.
        context: &'static str,
        /// The vault's error.
        source: VaultError,
    },
    /// No share has this id or link (see [`Node::shares`]).
    #[error("no share has this id or link (`samizdat shares` lists them)")]
    UnknownShare,
    /// The peers at the link's addresses authenticated as nodes other than the ones the link
    /// names (someone is intercepting, or the sharing node's address changed hands).
    #[error(
        "identity mismatch: the peer at the link's address is not the node the link names (the connection may be intercepted)"
    )]
    IdentityMismatch,
    /// The file is larger than this node accepts.
    #[error("the file is {0} bytes, more than this node accepts")]
    TooLarge(u64),
}

/// [`NodeError::BadAddr`] naming only the address's endpoint: the parameters of an https
/// address (its pin and secret) never reach an error message.
fn bad_addr(addr: &str) -> NodeError {
    NodeError::BadAddr(addr.split('?').next().unwrap_or_default().to_owned())
}

impl NodeError {
    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        NodeError::Io { context, source }
    }

    /// A stable snake_case name of this error's class, for programs (the CLI's `--json`
    /// errors carry it as `kind`).
    pub fn kind(&self) -> &'static str {
        let in_use = |e: &std::io::Error| e.kind() == std::io::ErrorKind::AddrInUse;
        match self {
            NodeError::Io { source, .. } if in_use(source) => "in_use",
            NodeError::Io { .. } if self.is_disk_full() => "disk_full",
            NodeError::Io { .. } => "io",
            NodeError::OutputExists(_) => "output_exists",
            NodeError::Content(_) => "content",
            NodeError::Link(_) => "link_invalid",
            NodeError::NoSources => "no_sources",
            NodeError::NoProviders => "no_providers",
            NodeError::Corrupt(_) => "corrupt",
            NodeError::Listen { source, .. } if in_use(source) => "in_use",
            NodeError::Listen { .. } => "listen",
            NodeError::BadAddr(_) => "bad_address",
            NodeError::Stopped => "stopped",
            NodeError::Cancelled => "cancelled",
            NodeError::Vault { .. } => "vault",
            NodeError::UnknownShare => "unknown_share",
            NodeError::OutputBusy(_) => "output_busy",
            NodeError::IdentityMismatch => "identity_mismatch",
            NodeError::TooLarge(_) => "too_large",
        }
    }

    /// Whether this error means the disk is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, NodeError::Io { source, .. } if source.raw_os_error() == Some(28))
    }
}

/// Download progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Verified bytes of the encrypted blob, including those resumed from disk.
    pub verified_bytes: u64,
    /// Size of the encrypted blob, once known.
    pub total_bytes: Option<u64>,
    /// Bytes that were already verified on disk when this attempt started.
    pub resumed_bytes: u64,
}

/// Options of [`Node::share_with`].
#[derive(Debug, Clone, Default)]
pub struct ShareOptions {
    /// Store and serve the file again under a new link even if the same content is already
    /// shared (by default the existing share is returned).
    pub again: bool,
    /// Give a link without peer hints: fetchers find this node through the DHT, where it
    /// announces itself under a key only link holders can compute.
    pub no_hints: bool,
    /// Counts the bytes of the file read so far (for a progress display).
    pub progress: Option<Arc<AtomicU64>>,
}

/// What [`Node::share_with`] did.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The link to give out, with this node's current advertised addresses as hints.
    pub link: ShareLink,
    /// The node's record of the share.
    pub record: ShareRecord,
    /// Whether the same content was already shared (nothing new was stored).
    pub existing: bool,
}

/// How a finished download went.
#[derive(Debug, Clone)]
pub struct FetchOutcome {
    /// The decrypted manifest.
    pub manifest: Manifest,
    /// File size in bytes.
    pub bytes: u64,
    /// Bytes that were already on disk from an interrupted attempt.
    pub resumed_bytes: u64,
    /// Where the file was written (`-` for [`FetchTarget::Stdout`]).
    pub path: PathBuf,
}

/// A running download: progress updates, then the outcome. Dropping it cancels the download
/// (what was verified stays on disk for a later resume).
#[derive(Debug)]
pub struct Fetch {
    progress: mpsc::Receiver<Progress>,
    outcome: oneshot::Receiver<Result<FetchOutcome, NodeError>>,
    /// Whether the finished file is copied to standard output (see [`FetchTarget::Stdout`]).
    to_stdout: bool,
}

impl Fetch {
    /// The next progress update; `None` once the download has ended.
    pub async fn progress(&mut self) -> Option<Progress> {
        self.progress.recv().await
    }

    /// Waits for the download to end. For [`FetchTarget::Stdout`] this also copies the
    /// verified file to standard output (and then removes it).
    pub async fn outcome(self) -> Result<FetchOutcome, NodeError> {
        let Fetch { progress, outcome, to_stdout } = self;
        // Keep the progress channel open until the end so the driver does not see a cancel.
        let result = outcome.await.map_err(|_| NodeError::Stopped)?;
        drop(progress);
        let mut done = result?;
        if to_stdout {
            let path = std::mem::replace(&mut done.path, PathBuf::from("-"));
            tokio::task::spawn_blocking(move || download::copy_to_stdout(&path))
                .await
                .map_err(|_| NodeError::Stopped)??;
        }
        Ok(done)
    }
}

/// Where and how to open the vault that holds a node's state.
struct VaultConfig {
    path: PathBuf,
    password: Zeroizing<Vec<u8>>,
    options: vault_store::VaultOptions,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("VaultConfig").field("path", &self.path).finish_non_exhaustive()
    }
}

/// The default bound of [`NodeBuilder::jitter`].
pub const DEFAULT_JITTER: std::time::Duration = std::time::Duration::from_millis(10);

/// Configures and starts a [`Node`].
#[derive(Debug, Default)]
pub struct NodeBuilder {
    data_dir: Option<PathBuf>,
    vault: Option<VaultConfig>,
    listen: Vec<String>,
    announce: Vec<String>,
    peers: Vec<String>,
    invites: Vec<Invite>,
    local_network: bool,
    rotate_transports: bool,
    jitter: Option<std::time::Duration>,
    shaping: Option<Shaping>,
    transports: Option<Transports>,
    user_agent: Option<String>,
    seed_downloads: bool,
    discovery: Methods,
    https: Option<HttpsOptions>,
    obfs4proxy: Option<PathBuf>,
}

/// The discovery methods a node runs (printed by name only).
#[derive(Default)]
struct Methods(Vec<Box<dyn Discovery>>);

impl std::fmt::Debug for Methods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|m| m.name())).finish()
    }
}

impl NodeBuilder {
    /// A node with no disk state, no listener, and TCP.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the identity and shared blobs in `dir` (created if needed). Replaces a
    /// [`NodeBuilder::vault`] set before.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self.vault = None;
        self
    }

    /// Keeps all of the node's state inside the vault volume that `password` opens in the
    /// container at `path` (made with `samizdat vault create` or
    /// `samizdat_vault::Vault::create`): the identity key (vault file `node/identity`) and every
    /// shared and seeded blob with its outboard (`blobs/…`, named by a hash of the root).
    /// Nothing is written outside the container. Replaces a [`NodeBuilder::data_dir`] set
    /// before. The password is kept (zeroized on drop) only until [`NodeBuilder::build`].
    ///
    /// A wrong password makes `build` fail with [`NodeError::Vault`] wrapping
    /// [`VaultError::NoVolume`]. The node holds the container's exclusive lock while it runs:
    /// another process (a second node, `samizdat vault put`) gets [`VaultError::InUse`].
    pub fn vault(mut self, path: impl Into<PathBuf>, password: &[u8]) -> Self {
        let options = self.vault.take().map(|v| v.options).unwrap_or_default();
        self.vault = Some(VaultConfig {
            path: path.into(),
            password: Zeroizing::new(password.to_vec()),
            options,
        });
        self.data_dir = None;
        self
    }

    /// With [`NodeBuilder::vault`], protected mode (repeatable): also opens the volume of
    /// `password` read-only, so that the node's writes never land on its blocks (use it when
    /// the node's volume is a decoy below a hidden one). Ignored without a vault.
    pub fn vault_protect(mut self, password: &[u8]) -> Self {
        if let Some(v) = &mut self.vault {
            v.options.protect.push(Zeroizing::new(password.to_vec()));
        }
        self
    }

    /// With [`NodeBuilder::vault`]: if another process holds the container, wait for it to
    /// close it instead of failing with [`VaultError::InUse`]. Ignored without a vault.
    pub fn vault_wait(mut self, on: bool) -> Self {
        if let Some(v) = &mut self.vault {
            v.options.wait = on;
        }
        self
    }

    /// Accepts connections at `addr`, e.g. `tcp/127.0.0.1:0` (port 0 picks a free port).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen.push(addr.into());
        self
    }

    /// Advertises `addr` to peers and in share links instead of the listen addresses: a public
    /// address, a port forward, or a hostname:port in front of this node. Without it, every
    /// listen address except unspecified ones (`0.0.0.0`, `[::]`) is advertised.
    pub fn announce(mut self, addr: impl Into<String>) -> Self {
        self.announce.push(addr.into());
        self
    }

    /// Connects to this peer at start (bootstrap).
    pub fn peer(mut self, addr: impl Into<String>) -> Self {
        self.peers.push(addr.into());
        self
    }

    /// The most a link's writes are held back when a burst starts after a pause (bounded
    /// timing jitter, so the moments a node starts to speak do not follow what it received
    /// to the millisecond); default [`DEFAULT_JITTER`], zero for none. Within a burst nothing
    /// waits. Padding and chaff are the session's ([`samizdat_session::Shaping`]).
    pub fn jitter(mut self, max: std::time::Duration) -> Self {
        self.jitter = Some(max);
        self
    }

    /// Pads and adds chaff to every link as `shaping` says (default [`Shaping::default`]: 512-
    /// byte buckets and chaff within 16 KiB plus 10 % of the real bytes; [`Shaping::OFF`] for
    /// none).
    pub fn shaping(mut self, shaping: Shaping) -> Self {
        self.shaping = Some(shaping);
        self
    }

    /// Rotates transports: each new link to a peer with several addresses goes through the
    /// one used longest ago (failing ones still last), so no one transport carries all of
    /// this node's traffic to it.
    pub fn rotate_transports(mut self, on: bool) -> Self {
        self.rotate_transports = on;
        self
    }

    /// Runs on a local network: accepts loopback and private addresses from peers (the address
    /// book and the DHT refuse them otherwise). Implied when every listen address is a
    /// loopback address.
    pub fn local_network(mut self, on: bool) -> Self {
        self.local_network = on;
        self
    }

    /// Keeps connections to the node an invite line names, at each of its addresses, pinned to
    /// its identity: a node there that cannot prove that identity is refused (bootstrap).
    pub fn invite(mut self, invite: Invite) -> Self {
        self.invites.push(invite);
        self
    }

    /// Adds a way of finding peers (and of being found) beside bootstrap peers and invite
    /// lines: e.g. [`samizdat_discovery::MainlineRendezvous`]. The node announces its signed
    /// peer record (its advertised addresses) through every method, and while it has fewer
    /// than eight peers it runs them all and dials each peer found, pinned to the identity
    /// that signed the record. See [`Node::discovery_report`].
    pub fn discovery(mut self, method: Box<dyn Discovery>) -> Self {
        self.discovery.0.push(method);
        self
    }

    /// Replaces the transport set (default: TCP, and HTTPS camouflage for dialling).
    pub fn transports(mut self, transports: Transports) -> Self {
        self.transports = Some(transports);
        self
    }

    /// Serves the HTTPS camouflage transport (listen on it with `https/IP:PORT`): a web
    /// server that shows `options.decoy` to everyone without the node's transport secret.
    /// The secret (and the certificate the node makes when none is given) is kept in the
    /// node's state, so its addresses stay valid across restarts.
    pub fn https(mut self, options: HttpsOptions) -> Self {
        self.https = Some(options);
        self
    }

    /// The `obfs4proxy` program that carries `obfs4/…` addresses (Tor's pluggable-transport
    /// protocol); default: `obfs4proxy` on `PATH`, else `/usr/bin/obfs4proxy`. The node dials
    /// obfs4 addresses through it, and listens on `--listen obfs4/IP:PORT` with keys it keeps.
    pub fn obfs4proxy(mut self, program: impl Into<PathBuf>) -> Self {
        self.obfs4proxy = Some(program.into());
        self
    }

    /// Sets the user agent sent in handshakes (default: a generic one).
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = Some(ua.into());
        self
    }

    /// Keeps the encrypted blob of every completed download and serves it to others.
    /// Requires a data directory or a vault.
    pub fn seed_downloads(mut self, on: bool) -> Self {
        self.seed_downloads = on;
        self
    }

    /// Starts the node on the current tokio runtime.
    pub async fn build(self) -> Result<Node, NodeError> {
        let opened = match (self.vault, &self.data_dir) {
            (Some(VaultConfig { path, password, options }), _) => {
                tokio::task::spawn_blocking(move || Store::open_vault(&path, &password, &options))
                    .await
                    .map_err(|_| NodeError::Stopped)??
            }
            (None, Some(dir)) => Store::open_dir(dir)?,
            (None, None) => Store::ephemeral(),
        };
        let state::Opened { store, identity, source } = opened;
        let obfs4proxy =
            self.obfs4proxy.unwrap_or_else(|| samizdat_transport::pt::find_program("obfs4proxy"));
        let custom = self.transports.is_some();
        let mut transports = self.transports.unwrap_or_else(|| {
            let mut t = Transports::tcp();
            t.register(HttpsTransport::client());
            t.register(PtTransport::client("obfs4", obfs4proxy.clone()));
            t.register(VeilTransport::client());
            t.register(MeekTransport);
            t
        });
        if !custom && self.listen.iter().any(|l| l.starts_with("veil/")) {
            let (store, id) = (store.clone(), identity.clone());
            let key = tokio::task::spawn_blocking(move || camouflage::veil_key(&store, &id))
                .await
                .map_err(|_| NodeError::Stopped)??;
            transports.register(VeilTransport::with_server(key));
        }
        if !custom && self.listen.iter().any(|l| l.starts_with("obfs4/")) {
            let (store, id) = (store.clone(), identity.clone());
            let keys = tokio::task::spawn_blocking(move || camouflage::obfs4_keys(&store, &id))
                .await
                .map_err(|_| NodeError::Stopped)??;
            transports.register(PtTransport::with_server("obfs4", obfs4proxy, keys));
        }
        if let Some(options) = self.https {
            let (store, id) = (store.clone(), identity.clone());
            let config = tokio::task::spawn_blocking(move || {
                camouflage::server_config(&store, &id, &options)
            })
            .await
            .map_err(|_| NodeError::Stopped)??;
            let https = HttpsTransport::with_server(config)
                .map_err(|source| NodeError::Io { context: "https transport", source })?;
            transports.register(https);
        }
        let mut listeners = Vec::new();
        for addr in &self.listen {
            let l = transports
                .listen(addr)
                .await
                .map_err(|source| NodeError::Listen { addr: addr.clone(), source })?;
            listeners.push(l);
        }
        let listen_addrs: Vec<PeerAddr> = listeners
            .iter()
            .map(|l| PeerAddr::new(&l.local_addr()).map_err(|_| bad_addr(&l.local_addr())))
            .collect::<Result<_, _>>()?;
        let parse = |list: &[String]| {
            list.iter()
                .map(|p| PeerAddr::new(p).map_err(|_| bad_addr(p)))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut peers: Vec<(PeerAddr, Option<NodeId>)> =
            parse(&self.peers)?.into_iter().map(|a| (a, None)).collect();
        peers.extend(self.invites.iter().flat_map(Invite::hints).map(|h| (h.addr, Some(h.node))));
        let advertised: Vec<PeerAddr> = if self.announce.is_empty() {
            listen_addrs.iter().filter(|a| !is_unspecified(a)).cloned().collect()
        } else {
            parse(&self.announce)?
                .into_iter()
                .map(|a| with_listener_params(a, &listen_addrs))
                .collect()
        };
        let node_id = identity.node_id();
        let shares = {
            let (store, identity) = (store.clone(), identity);
            let (book, identity) =
                tokio::task::spawn_blocking(move || (ShareBook::open(&store, &identity), identity))
                    .await
                    .map_err(|_| NodeError::Stopped)?;
            (book?.map(|b| Arc::new(Mutex::new(b))), identity)
        };
        let (shares, identity) = shares;
        // The peers remembered from the last run (a damaged record is dropped, not fatal:
        // it only costs the way back in).
        let (peer_book, (remembered, remembered_health), identity) = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                let book = peers::PeerBook::new(&store, &identity);
                let remembered = book.as_ref().and_then(|b| b.load().ok()).unwrap_or_default();
                let health = book.as_ref().and_then(|b| b.load_health().ok()).unwrap_or_default();
                (book, (remembered, health), identity)
            })
            .await
            .map_err(|_| NodeError::Stopped)?
        };
        // The seeds kept last time, whose blobs are still here (announced again below).
        let (seed_book, identity, source) = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || {
                let book = seeds::SeedBook::open(&store, &identity).and_then(|b| {
                    let Some(mut b) = b else { return Ok(None) };
                    b.retain(|root| source.contains(root))?;
                    Ok(Some(b))
                });
                (book, identity, source)
            })
            .await
            .map_err(|_| NodeError::Stopped)?
        };
        let seed_book = seed_book?.map(|b| Arc::new(Mutex::new(b)));
        let served = Arc::new(AtomicU64::new(0));
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let discovery_report = discover::LastReport::default();
        let mut tasks = Vec::new();
        if !self.discovery.0.is_empty() {
            tasks.push(tokio::spawn(discover::run(
                self.discovery.0,
                identity.clone(),
                advertised.clone(),
                cmd_tx.downgrade(),
                discovery_report.clone(),
            )));
        }
        let setup = driver::Setup {
            identity,
            user_agent: self.user_agent,
            listen_addrs: advertised.clone(),
            listeners,
            peer_book,
            remembered,
            remembered_health,
            local_network: self.local_network
                || (!listen_addrs.is_empty() && listen_addrs.iter().all(is_loopback)),
            rotate_transports: self.rotate_transports,
            jitter: self.jitter.unwrap_or(DEFAULT_JITTER),
            shaping: self.shaping.unwrap_or_default(),
            peers,
            transports,
            source,
            store: store.clone(),
            seed_downloads: self.seed_downloads && store.is_persistent(),
            seed_book: seed_book.clone(),
            served: served.clone(),
        };
        let task = tokio::spawn(driver::run(setup, cmd_rx));
        if shares.is_some() || seed_book.is_some() {
            let (book, seeds, cmd) = (shares.clone(), seed_book, cmd_tx.downgrade());
            tasks.push(tokio::spawn(announce_shares(book, seeds, cmd)));
        }
        Ok(Node {
            cmd: cmd_tx,
            node_id,
            listen_addrs,
            advertised,
            store,
            shares,
            share_lock: tokio::sync::Mutex::new(()),
            served,
            task: Some(task),
            helpers: Mutex::new(tasks),
            discovery_report,
        })
    }
}

/// Whether an address is a loopback one (or in memory, as in tests): a node that listens
/// only there is on a local network.
fn is_loopback(addr: &PeerAddr) -> bool {
    addr.transport() == "mem"
        || addr.endpoint().parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback())
}

/// The DHT keys to announce a share under now: this period's and the next one's (so fetchers
/// find it across the change of period), each with its record's expiry.
fn provider_keys(link: &ShareLink) -> Vec<(NodeId, u64)> {
    provider_keys_for(&link.provider_base())
}

/// [`provider_keys`] from a link's provider base (what a seed keeps instead of the link).
pub(crate) fn provider_keys_for(base: &[u8; 32]) -> Vec<(NodeId, u64)> {
    let period = unix_now() / PROVIDER_PERIOD_SECS;
    [period, period + 1]
        .into_iter()
        .map(|p| (NodeId(samizdat_content::provider_key(base, p)), (p + 2) * PROVIDER_PERIOD_SECS))
        .collect()
}

/// How often every share is announced again (new periods bring new keys; the DHT itself
/// republishes each record until it expires).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(3600);

/// Announces every share at start and then every [`ANNOUNCE_EVERY`], until the node stops (it
/// holds only a weak sender, so a dropped node still stops its driver).
async fn announce_shares(
    book: Option<Arc<Mutex<ShareBook>>>,
    seeds: Option<Arc<Mutex<seeds::SeedBook>>>,
    cmd: mpsc::WeakSender<Command>,
) {
    loop {
        let mut bases: Vec<[u8; 32]> = book.as_ref().map_or_else(Vec::new, |b| {
            let links: Vec<ShareLink> =
                lock_book(b).records().iter().filter_map(|r| r.link.parse().ok()).collect();
            links.iter().map(ShareLink::provider_base).collect()
        });
        if let Some(seeds) = &seeds {
            bases.extend(seeds.lock().unwrap_or_else(PoisonError::into_inner).bases());
        }
        for base in bases {
            let Some(tx) = cmd.upgrade() else { return };
            if tx.send(Command::Provide { keys: provider_keys_for(&base) }).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(ANNOUNCE_EVERY).await;
        if cmd.upgrade().is_none() {
            return;
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An announced address of a transport whose peers need parameters (an https name, pin and
/// secret; an obfs4 cert) gets them from the listener of that transport (the one on the same
/// port, else the first): `--announce https/203.0.113.5:443` is the public side of
/// `--listen https/0.0.0.0:443`. An address given with parameters is kept as it is.
///
/// A `meek/EDGE:PORT?front=FRONT&pin=PIN` address (a CDN or proxy in front of the node's
/// https listener) takes the name and secret it lacks from the https listener, and its pin
/// too when none is given (a front proxy whose certificate the listener was told of).
fn with_listener_params(addr: PeerAddr, listeners: &[PeerAddr]) -> PeerAddr {
    if addr.transport() == "meek" {
        return meek_with_listener_params(addr, listeners);
    }
    if addr.params().is_some() {
        return addr;
    }
    let port = |a: &PeerAddr| a.endpoint().rsplit_once(':').map(|(_, p)| p.to_owned());
    let same: Vec<&PeerAddr> = listeners
        .iter()
        .filter(|l| l.transport() == addr.transport() && l.params().is_some())
        .collect();
    let pick = same.iter().find(|l| port(l) == port(&addr)).or(same.first());
    match pick.and_then(|l| l.params()) {
        Some(params) => PeerAddr::new(&format!("{}?{params}", addr.as_str())).unwrap_or(addr),
        None => addr,
    }
}

fn meek_with_listener_params(addr: PeerAddr, listeners: &[PeerAddr]) -> PeerAddr {
    let Some(https) = listeners.iter().find(|l| l.transport() == "https") else { return addr };
    let given: Vec<&str> = addr.params().map(|p| p.split('&').collect()).unwrap_or_default();
    let has = |k: &str| given.iter().any(|p| p.split_once('=').is_some_and(|(n, _)| n == k));
    let mut params: Vec<&str> = given.clone();
    for pair in https.params().unwrap_or_default().split('&') {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        if !has(name) {
            params.push(pair);
        }
    }
    let endpoint = addr.as_str().split_once('?').map_or(addr.as_str(), |(e, _)| e);
    PeerAddr::new(&format!("{endpoint}?{}", params.join("&"))).unwrap_or(addr)
}

/// Whether a TCP address names no host in particular (`0.0.0.0`, `[::]`): such an address is
/// only meaningful for binding, and must not be handed to peers.
fn is_unspecified(addr: &PeerAddr) -> bool {
    matches!(addr.transport(), "tcp" | "https" | "obfs4" | "veil" | "meek")
        && addr.endpoint().parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_unspecified())
}

pub(crate) fn load_identity(dir: &Path) -> Result<Identity, NodeError> {
    use std::os::unix::fs::OpenOptionsExt;
    store::create_private_dir(dir).map_err(|e| NodeError::io("creating the data directory", e))?;
    let path = dir.join("identity.key");
    match store::read_private(&path) {
        Ok(bytes) => {
            Identity::from_secret_bytes(&bytes).map_err(|_| NodeError::Corrupt("identity key"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::generate(&mut rand_core::OsRng);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| NodeError::io("saving the identity key", e))?;
            std::io::Write::write_all(&mut f, &id.danger_secret_bytes()[..])
                .and_then(|()| f.sync_all())
                .map_err(|e| NodeError::io("saving the identity key", e))?;
            Ok(id)
        }
        Err(e) => Err(NodeError::io("reading the identity key", e)),
    }
}

/// A running node. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct Node {
    cmd: mpsc::Sender<Command>,
    node_id: NodeId,
    listen_addrs: Vec<PeerAddr>,
    advertised: Vec<PeerAddr>,
    store: Store,
    /// The share records (none for an ephemeral node).
    shares: Option<Arc<Mutex<ShareBook>>>,
    /// Serialises shares, so that two shares of one file do not both store it.
    share_lock: tokio::sync::Mutex<()>,
    /// Bytes served to peers.
    served: Arc<AtomicU64>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The tasks beside the driver: the share announcer (it holds the share records, and
    /// through them the vault: stopped and awaited at shutdown so the vault is free once the
    /// node is gone) and the discovery methods.
    helpers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// What the discovery methods did in their last round.
    discovery_report: discover::LastReport,
}

impl Node {
    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The addresses this node accepts connections on.
    pub fn listen_addrs(&self) -> &[PeerAddr] {
        &self.listen_addrs
    }

    /// The addresses this node gives peers and puts in share links (see
    /// [`NodeBuilder::announce`]).
    pub fn advertised_addrs(&self) -> &[PeerAddr] {
        &self.advertised
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Encrypts `path` into the node's store (its data directory or vault), starts serving
    /// it and records the share. Returns the share link, with this node's advertised addresses
    /// as peer hints. Needs a data directory or a vault. If the same content is already
    /// shared, its link is returned and nothing is stored (see [`Node::share_with`]).
    ///
    /// The file is read once and streamed, encrypted, straight into the store: no other copy
    /// is written.
    pub async fn share(&self, path: &Path) -> Result<ShareLink, NodeError> {
        Ok(self.share_with(path, ShareOptions::default()).await?.link)
    }

    /// [`Node::share`] with options: share again under a new link, count progress.
    ///
    /// "The same content" is recognised by a keyed hash of the file kept in the encrypted
    /// share records; the file is only hashed first when a share of the same size exists.
    pub async fn share_with(&self, path: &Path, opts: ShareOptions) -> Result<Shared, NodeError> {
        let Some(book) = self.shares.clone() else {
            return Err(NodeError::Io {
                context: "sharing",
                source: std::io::Error::other("this node has no data directory or vault"),
            });
        };
        let _one_at_a_time = self.share_lock.lock().await;
        let (path, store) = (path.to_owned(), self.store.clone());
        let progress = opts.progress.clone();
        let again = opts.again;
        let job = tokio::task::spawn_blocking(move || {
            prepare_share(&path, &store, &book, again, progress.as_deref())
        });
        let prepared = job.await.map_err(|_| NodeError::Stopped)??;
        let (record, existing) = match prepared {
            Prepared::Existing(record) => (record, true),
            Prepared::New { root, outboard, key, name, size, hash } => {
                let (locator, blob_len) = (key.locator(&root), outboard.blob_len);
                self.call(|reply| Command::Register { root, locator, outboard, reply }).await??;
                let link = ShareLink { root, key, blob_len, peers: self.hints() };
                let book = self.shares.clone().ok_or(NodeError::Stopped)?;
                let shared_at = std::time::SystemTime::now()
                    .duration_since(std::time::SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let text = link.to_string();
                let added = tokio::task::spawn_blocking(move || {
                    lock_book(&book).add(name, size, text, &hash, shared_at)
                })
                .await
                .map_err(|_| NodeError::Stopped)?;
                (added?, false)
            }
        };
        let record = if record.no_hints == opts.no_hints {
            record
        } else {
            // The latest share decides how `shares` lists the link.
            let book = self.shares.clone().ok_or(NodeError::Stopped)?;
            let (id, on) = (record.id.clone(), opts.no_hints);
            tokio::task::spawn_blocking(move || lock_book(&book).set_no_hints(&id, on))
                .await
                .map_err(|_| NodeError::Stopped)??
        };
        let link = self.current_link(&record)?;
        self.announce(&link).await;
        Ok(Shared { link, record, existing })
    }

    /// Announces this node in the DHT as a provider of `link`'s content.
    async fn announce(&self, link: &ShareLink) {
        let _ = self.cmd.send(Command::Provide { keys: provider_keys(link) }).await;
    }

    /// A record's link with this node's current advertised addresses as hints (none for a
    /// share made with [`ShareOptions::no_hints`]).
    fn current_link(&self, record: &ShareRecord) -> Result<ShareLink, NodeError> {
        let mut link: ShareLink = record.link.parse()?;
        link.peers = if record.no_hints { Vec::new() } else { self.hints() };
        Ok(link)
    }

    /// This node's invite line: its identity and advertised addresses, for people to hand
    /// each other as a way in (`None` when it advertises no address).
    pub fn invite(&self) -> Option<Invite> {
        (!self.advertised.is_empty())
            .then(|| Invite { node: self.node_id, addrs: self.advertised.clone() })
    }

    /// This node's advertised addresses as link hints, each pinned to this node's identity.
    pub fn hints(&self) -> Vec<PeerHint> {
        self.advertised
            .iter()
            .map(|addr| PeerHint { node: self.node_id, addr: addr.clone() })
            .collect()
    }

    /// What this node shares, oldest first, each with its current link (see
    /// [`Node::share_with`]). Empty for an ephemeral node.
    pub fn shares(&self) -> Vec<(ShareRecord, ShareLink)> {
        let Some(book) = &self.shares else { return Vec::new() };
        let records = lock_book(book).records().to_vec();
        records.into_iter().filter_map(|r| self.current_link(&r).ok().map(|l| (r, l))).collect()
    }

    /// Withdraws a share named by its record id or its link: stops serving it, deletes the
    /// blob securely (overwritten then unlinked in a data directory, deleted in the vault) and
    /// forgets the record. [`NodeError::UnknownShare`] if nothing matches.
    pub async fn unshare(&self, id_or_link: &str) -> Result<ShareRecord, NodeError> {
        let book = self.shares.clone().ok_or(NodeError::UnknownShare)?;
        let _one_at_a_time = self.share_lock.lock().await;
        let root = id_or_link.trim().parse::<ShareLink>().ok().map(|l| l.root);
        let (index, record) = {
            let b = lock_book(&book);
            let index = b.find(id_or_link.trim(), root.as_ref()).ok_or(NodeError::UnknownShare)?;
            (index, b.records()[index].clone())
        };
        let root = record.link.parse::<ShareLink>()?.root;
        self.call(|reply| Command::Unregister { root, reply }).await?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.delete_blob(&root)?;
            lock_book(&book).remove(index)
        })
        .await
        .map_err(|_| NodeError::Stopped)?
    }

    /// Bytes of content this node has served to peers since it started.
    pub fn served_bytes(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Starts downloading `link` into the file `out` (resuming from `out.part` if present);
    /// the same as [`Node::fetch_into`] with [`FetchTarget::File`].
    pub async fn fetch(&self, link: &ShareLink, out: &Path) -> Result<Fetch, NodeError> {
        self.fetch_into(link, FetchTarget::File(out.to_owned())).await
    }

    /// Starts downloading `link` into `target`: a file, a directory (under the sender's
    /// sanitised file name, never replacing a file) or standard output. An interrupted
    /// download into the same target resumes from what was verified. Fails with
    /// [`NodeError::OutputExists`] if the output file exists and with
    /// [`NodeError::OutputBusy`] while another download writes the same output.
    ///
    /// ```no_run
    /// # async fn demo(node: &samizdat_node::Node, link: &samizdat_node::ShareLink)
    /// # -> Result<(), samizdat_node::NodeError> {
    /// use samizdat_node::FetchTarget;
    /// let done = node.fetch_into(link, FetchTarget::Dir("/home/me/Downloads".into())).await?
    ///     .outcome()
    ///     .await?;
    /// println!("saved as {}", done.path.display());
    /// # Ok(()) }
    /// ```
    pub async fn fetch_into(
        &self,
        link: &ShareLink,
        target: FetchTarget,
    ) -> Result<Fetch, NodeError> {
        self.fetch_with(link, target, Vec::new()).await
    }

    /// [`Node::fetch_into`] that may also fetch from `extra` addresses the user names (which
    /// are not pinned to an identity: whoever answers there is asked). Only the link's peers
    /// and these are ever asked for the file.
    pub async fn fetch_with(
        &self,
        link: &ShareLink,
        target: FetchTarget,
        extra: Vec<PeerAddr>,
    ) -> Result<Fetch, NodeError> {
        let to_stdout = target == FetchTarget::Stdout;
        let (root, key) = (link.root, link.key.clone());
        let (target, resume) =
            tokio::task::spawn_blocking(move || download::prepare(&target, root, key))
                .await
                .map_err(|_| NodeError::Stopped)??;
        let (progress_tx, progress_rx) = mpsc::channel(64);
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let cmd = Command::Fetch {
            target: Box::new(target),
            resume,
            spec: FetchSpec { root: link.root, locator: link.locator(), blob_len: link.blob_len },
            // A link without hints: its providers are found in the DHT, under this period's
            // key and the previous one's (announcements made just before the change).
            providers: if link.peers.is_empty() {
                let period = unix_now() / PROVIDER_PERIOD_SECS;
                [period, period.saturating_sub(1)]
                    .into_iter()
                    .map(|p| NodeId(link.provider_key(p)))
                    .collect()
            } else {
                Vec::new()
            },
            provider_base: link.provider_base(),
            sources: link
                .peers
                .iter()
                .map(|h| SourceSpec::Direct { node: Some(h.node), addr: h.addr.clone() })
                .chain(extra.into_iter().map(|addr| SourceSpec::Direct { node: None, addr }))
                .collect(),
            progress: progress_tx,
            outcome: outcome_tx,
        };
        self.cmd.send(cmd).await.map_err(|_| NodeError::Stopped)?;
        Ok(Fetch { progress: progress_rx, outcome: outcome_rx, to_stdout })
    }

    /// Current connections.
    pub async fn peers(&self) -> Result<Vec<PeerSummary>, NodeError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// What each address this node dialled lately did: which transports of its peers work,
    /// and why the others failed (see [`samizdat_engine::health`]).
    pub async fn link_health(
        &self,
    ) -> Result<Vec<(PeerAddr, samizdat_engine::health::Health)>, NodeError> {
        self.call(|reply| Command::LinkHealth { reply }).await
    }

    /// Dials a peer.
    pub async fn connect(&self, addr: &str) -> Result<(), NodeError> {
        let addr = PeerAddr::new(addr).map_err(|_| bad_addr(addr))?;
        self.call(|reply| Command::Connect { addr, reply }).await
    }

    /// Waits until at least `n` sessions are established, or `timeout` passes.
    pub async fn wait_for_peers(&self, n: usize, timeout: Duration) -> Result<usize, NodeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let up = self.peers().await?.iter().filter(|p| p.established).count();
            if up >= n || tokio::time::Instant::now() >= deadline {
                return Ok(up);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the discovery methods given with [`NodeBuilder::discovery`] did in their last
    /// round (each method's peers, time and error), or `None` before the first round ends
    /// (and when no method was given). Rounds run while the node has fewer than eight peers.
    pub fn discovery_report(&self) -> Option<Report> {
        self.discovery_report.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stops the node and waits for its task to end.
    pub async fn shutdown(mut self) {
        self.stop_helpers().await;
        let _ = self.cmd.send(Command::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    async fn stop_helpers(&self) {
        let tasks =
            std::mem::take(&mut *self.helpers.lock().unwrap_or_else(PoisonError::into_inner));
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    /// Like [`Node::shutdown`], for a node still shared with other tasks: stops the driver
    /// (downloads wind up, remembered peers are saved) and returns once it has stopped.
    pub async fn stop(&self) {
        self.stop_helpers().await;
        let _ = self.cmd.send(Command::Shutdown).await;
        self.cmd.closed().await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A node dropped without `shutdown` lets go of its share records (and vault) too.
        for t in self.helpers.get_mut().unwrap_or_else(PoisonError::into_inner).drain(..) {
            t.abort();
        }
    }
}

fn lock_book(book: &Mutex<ShareBook>) -> std::sync::MutexGuard<'_, ShareBook> {
    // Every change to the book is saved whole, so a panic while it was held leaves it usable.
    book.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a share found or stored.
enum Prepared {
    /// The same content was already shared.
    Existing(ShareRecord),
    /// A new blob, stored but not yet served or recorded.
    New {
        root: ContentRoot,
        outboard: samizdat_content::Outboard,
        key: ContentKey,
        name: String,
        size: u64,
        hash: blake3::Hash,
    },
}

/// Looks for an existing share of the file's content (unless `again`), else encrypts the file
/// into the store. Blocking.
fn prepare_share(
    path: &Path,
    store: &Store,
    book: &Mutex<ShareBook>,
    again: bool,
    progress: Option<&AtomicU64>,
) -> Result<Prepared, NodeError> {
    let open =
        || std::fs::File::open(path).map_err(|e| NodeError::io("opening the file to share", e));
    let file = open()?;
    let meta = file.metadata().map_err(|e| NodeError::io("reading the file to share", e))?;
    if !meta.is_file() {
        return Err(NodeError::io("sharing", std::io::Error::other("not a regular file")));
    }
    let size = meta.len();
    let mut hasher = lock_book(book).content_hasher();
    if !again && lock_book(book).has_size(size) {
        let mut h = hasher.clone();
        let mut reader = shares::HashingReader { inner: &file, hasher: &mut h, count: None };
        std::io::copy(&mut reader, &mut std::io::sink())
            .map_err(|e| NodeError::io("reading the file to share", e))?;
        if let Some(r) = lock_book(book).find_content(size, &h.finalize()) {
            if let Some(p) = progress {
                p.store(size, Ordering::Relaxed);
            }
            return Ok(Prepared::Existing(r.clone()));
        }
    }
    let file = open()?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let manifest = Manifest { name: name.clone(), size, mime: "application/octet-stream".into() };
    let key = ContentKey::generate(&mut rand_core::OsRng);
    let reader = std::io::BufReader::with_capacity(
        1 << 20,
        shares::HashingReader { inner: file, hasher: &mut hasher, count: progress },
    );
    let (root, _, outboard) = store.put_blob(|sink| {
        let encoded = encode(&key, &manifest, reader, sink)?;
        Ok((encoded.root, key.locator(&encoded.root), encoded.outboard))
    })?;
    Ok(Prepared::New { root, outboard, key, name, size, hash: hasher.finalize() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn announced_addresses_take_their_transport_parameters_from_the_listener() {
        let a = |s: &str| PeerAddr::new(s).unwrap();
        let listeners = [
            a("tcp/0.0.0.0:7070"),
            a("obfs4/0.0.0.0:9443?cert=AAA&iat-mode=0"),
            a("https/0.0.0.0:8443?name=n&pin=P1&key=K1"),
            a("https/0.0.0.0:443?name=n&pin=P2&key=K2"),
        ];
        let got = |s: &str| with_listener_params(a(s), &listeners).to_string();
        assert_eq!(got("obfs4/203.0.113.5:9443"), "obfs4/203.0.113.5:9443?cert=AAA&iat-mode=0");
        assert_eq!(got("https/203.0.113.5:443"), "https/203.0.113.5:443?name=n&pin=P2&key=K2");
        // Another port (a port forward): the first listener of the transport.
        assert_eq!(got("https/203.0.113.5:10443"), "https/203.0.113.5:10443?name=n&pin=P1&key=K1");
        assert_eq!(got("tcp/203.0.113.5:7070"), "tcp/203.0.113.5:7070");
        assert_eq!(got("obfs4/203.0.113.5:1?cert=B"), "obfs4/203.0.113.5:1?cert=B");
        assert_eq!(
            with_listener_params(a("obfs4/203.0.113.5:1"), &[]).to_string(),
            "obfs4/203.0.113.5:1"
        );
        // A CDN edge in front: its front domain and pin as given, the rest from https.
        assert_eq!(
            got("meek/198.51.100.7:443?front=cdn.example&pin=CDN"),
            "meek/198.51.100.7:443?front=cdn.example&pin=CDN&name=n&key=K1"
        );
        assert_eq!(
            got("meek/198.51.100.7:443?front=cdn.example"),
            "meek/198.51.100.7:443?front=cdn.example&name=n&pin=P1&key=K1"
        );
        assert_eq!(
            with_listener_params(a("meek/198.51.100.7:443?front=f.example"), &[]).to_string(),
            "meek/198.51.100.7:443?front=f.example"
        );
    }

    #[test]
    fn a_bad_address_error_names_no_secret() {
        let e = bad_addr("https/bad:443?name=www.example.org&pin=PIN&key=THE-SECRET");
        let text = e.to_string();
        assert!(text.contains("https/bad:443") && !text.contains("THE-SECRET"), "{text}");
        assert_eq!(e.kind(), "bad_address");
    }
}
