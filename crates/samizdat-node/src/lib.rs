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

pub mod control;
mod download;
mod driver;
mod state;
mod store;
mod vault_store;

pub use samizdat_content::{ContentRoot, LinkError, Manifest, ShareLink};
pub use samizdat_engine::PeerSummary;
pub use samizdat_identity::NodeId;
pub use samizdat_transport::{MemoryTransport, TcpTransport, Transport, Transports};
pub use samizdat_vault::VaultError;
pub use samizdat_wire::PeerAddr;
pub use store::FileSource;

use driver::Command;
use samizdat_content::{ContentKey, encode};
use samizdat_identity::Identity;
use state::Store;
use std::path::{Path, PathBuf};
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
    /// Content encoding failed.
    #[error(transparent)]
    Content(#[from] samizdat_content::ContentError),
    /// A share link could not be parsed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// No peer could be reached that has the content.
    #[error("no reachable peer has this content (is the sharing node running and reachable?)")]
    NoSources,
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
    #[error("bad peer address {0:?} (expected e.g. tcp/127.0.0.1:4000)")]
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
}

impl NodeError {
    pub(crate) fn io(context: &'static str, source: std::io::Error) -> Self {
        NodeError::Io { context, source }
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

/// How a finished download went.
#[derive(Debug, Clone)]
pub struct FetchOutcome {
    /// The decrypted manifest.
    pub manifest: Manifest,
    /// File size in bytes.
    pub bytes: u64,
    /// Bytes that were already on disk from an interrupted attempt.
    pub resumed_bytes: u64,
    /// Where the file was written.
    pub path: PathBuf,
}

/// A running download: progress updates, then the outcome. Dropping it cancels the download
/// (what was verified stays on disk for a later resume).
#[derive(Debug)]
pub struct Fetch {
    progress: mpsc::Receiver<Progress>,
    outcome: oneshot::Receiver<Result<FetchOutcome, NodeError>>,
}

impl Fetch {
    /// The next progress update; `None` once the download has ended.
    pub async fn progress(&mut self) -> Option<Progress> {
        self.progress.recv().await
    }

    /// Waits for the download to end.
    pub async fn outcome(self) -> Result<FetchOutcome, NodeError> {
        let Fetch { progress, outcome } = self;
        // Keep the progress channel open until the end so the driver does not see a cancel.
        let result = outcome.await.map_err(|_| NodeError::Stopped)?;
        drop(progress);
        result
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

/// Configures and starts a [`Node`].
#[derive(Debug, Default)]
pub struct NodeBuilder {
    data_dir: Option<PathBuf>,
    vault: Option<VaultConfig>,
    listen: Vec<String>,
    announce: Vec<String>,
    peers: Vec<String>,
    transports: Option<Transports>,
    user_agent: Option<String>,
    seed_downloads: bool,
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

    /// Replaces the transport set (default: TCP only).
    pub fn transports(mut self, transports: Transports) -> Self {
        self.transports = Some(transports);
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
        let transports = self.transports.unwrap_or_else(Transports::tcp);
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
            .map(|l| PeerAddr::new(&l.local_addr()).map_err(|_| NodeError::BadAddr(l.local_addr())))
            .collect::<Result<_, _>>()?;
        let parse = |list: &[String]| {
            list.iter()
                .map(|p| PeerAddr::new(p).map_err(|_| NodeError::BadAddr(p.clone())))
                .collect::<Result<Vec<_>, _>>()
        };
        let peers = parse(&self.peers)?;
        let advertised = if self.announce.is_empty() {
            listen_addrs.iter().filter(|a| !is_unspecified(a)).cloned().collect()
        } else {
            parse(&self.announce)?
        };
        let node_id = identity.node_id();
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let setup = driver::Setup {
            identity,
            user_agent: self.user_agent,
            listen_addrs: advertised.clone(),
            listeners,
            peers,
            transports,
            source,
            store: store.clone(),
            seed_downloads: self.seed_downloads && store.is_persistent(),
        };
        let task = tokio::spawn(driver::run(setup, cmd_rx));
        Ok(Node { cmd: cmd_tx, node_id, listen_addrs, advertised, store, task: Some(task) })
    }
}

/// Whether a TCP address names no host in particular (`0.0.0.0`, `[::]`): such an address is
/// only meaningful for binding, and must not be handed to peers.
fn is_unspecified(addr: &PeerAddr) -> bool {
    addr.transport() == "tcp"
        && addr.address().parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_unspecified())
}

pub(crate) fn load_identity(dir: &Path) -> Result<Identity, NodeError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir).map_err(|e| NodeError::io("creating the data directory", e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let path = dir.join("identity.key");
    match std::fs::read(&path) {
        Ok(bytes) => {
            Identity::from_secret_bytes(&bytes).map_err(|_| NodeError::Corrupt("identity key"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::generate(&mut rand_core::OsRng);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
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
    task: Option<tokio::task::JoinHandle<()>>,
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

    /// Encrypts `path` into the node's store (its data directory or vault) and starts serving
    /// it. Returns the share link, with this node's listen addresses as peer hints. Needs a
    /// data directory or a vault.
    ///
    /// The file is read once and streamed, encrypted, straight into the store: no other copy
    /// is written.
    pub async fn share(&self, path: &Path) -> Result<ShareLink, NodeError> {
        if !self.store.is_persistent() {
            return Err(NodeError::Io {
                context: "sharing",
                source: std::io::Error::other("this node has no data directory or vault"),
            });
        }
        let (path, store) = (path.to_owned(), self.store.clone());
        let (root, outboard, key) = tokio::task::spawn_blocking(move || encode_file(&path, &store))
            .await
            .map_err(|_| NodeError::Stopped)??;
        self.call(|reply| Command::Register { root, outboard, reply }).await??;
        Ok(ShareLink { root, key, peers: self.advertised.clone() })
    }

    /// Starts downloading `link` into `out` (resuming from `out.part` if present).
    pub async fn fetch(&self, link: &ShareLink, out: &Path) -> Result<Fetch, NodeError> {
        let (root, key, out_path) = (link.root, link.key.clone(), out.to_owned());
        let (target, resume) =
            tokio::task::spawn_blocking(move || download::prepare(&out_path, root, key))
                .await
                .map_err(|_| NodeError::Stopped)??;
        let (progress_tx, progress_rx) = mpsc::channel(64);
        let (outcome_tx, outcome_rx) = oneshot::channel();
        let cmd = Command::Fetch {
            target: Box::new(target),
            resume,
            peers: link.peers.clone(),
            progress: progress_tx,
            outcome: outcome_tx,
        };
        self.cmd.send(cmd).await.map_err(|_| NodeError::Stopped)?;
        Ok(Fetch { progress: progress_rx, outcome: outcome_rx })
    }

    /// Current connections.
    pub async fn peers(&self) -> Result<Vec<PeerSummary>, NodeError> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// Dials a peer.
    pub async fn connect(&self, addr: &str) -> Result<(), NodeError> {
        let addr = PeerAddr::new(addr).map_err(|_| NodeError::BadAddr(addr.to_owned()))?;
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

    /// Stops the node and waits for its task to end.
    pub async fn shutdown(mut self) {
        let _ = self.cmd.send(Command::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Encrypts a file into the store, returning what the driver needs to serve it.
fn encode_file(
    path: &Path,
    store: &Store,
) -> Result<(ContentRoot, samizdat_content::Outboard, ContentKey), NodeError> {
    let file =
        std::fs::File::open(path).map_err(|e| NodeError::io("opening the file to share", e))?;
    let meta = file.metadata().map_err(|e| NodeError::io("reading the file to share", e))?;
    if !meta.is_file() {
        return Err(NodeError::io("sharing", std::io::Error::other("not a regular file")));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let manifest = Manifest { name, size: meta.len(), mime: "application/octet-stream".into() };
    let key = ContentKey::generate(&mut rand_core::OsRng);
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let (root, outboard) = store.put_blob(|sink| {
        let encoded = encode(&key, &manifest, reader, sink)?;
        Ok((encoded.root, encoded.outboard))
    })?;
    Ok((root, outboard, key))
}
