//! External pluggable transports: any program that speaks Tor's pluggable-transport protocol
//! (pt-spec v1, "managed proxy") carries our streams, so users can run obfs4 (Debian's
//! `obfs4proxy`) between nodes.
//!
//! Dialling (`obfs4/IP:PORT?cert=…&iat-mode=0`): the transport starts the program once as a
//! client (`TOR_PT_CLIENT_TRANSPORTS`), reads the SOCKS5 address it prints, and for each
//! stream connects there and asks for the peer's address, the address's arguments in the SOCKS5
//! user name and password. A program that exits is started again on the next dial.
//!
//! Listening (`obfs4/IP:PORT`): the transport binds a loopback port for the program to deliver
//! streams to (its "ORPort"), starts the program as a server bound to `IP:PORT` with the
//! node's keys as server options (for obfs4, from [`obfs4_keys`]; the node keeps them sealed so
//! its addresses survive restarts), and publishes the `SMETHOD` arguments (obfs4's `cert`) in
//! its address: only a client holding the address can open an obfs4 handshake; every other
//! prober gets silence and a close, obfs4's cover behaviour.
//!
//! The program keeps its state in a fresh directory only the node's user can read, in memory
//! (`/dev/shm`) where there is one; the files it writes there (obfs4 writes its keys and a
//! bridge line) are deleted once it is up, and the directory when it stops. Its environment,
//! which carries the server keys, is readable only by the same user (unlike argv). It learns
//! the peers' addresses, as the kernel does; it is not told anything else, and its standard
//! error is discarded.
//!
//! The server hands streams over on the extended ORPort (ext-orport-spec): the proxy proves it
//! holds a per-run cookie (SAFE_COOKIE, HMAC-SHA256; the cookie file is the one file left in
//! the private directory) and reports each client's address, so the node's per-prefix limits
//! apply to obfs4 clients and no other local process reaches the node past obfs4.

mod extor;
mod proto;

pub use proto::{PtAddr, PtLine, client_args, server_options, socks5_connect};

use crate::{BoxFuture, BoxStream, Incoming, Listener, Transport};
use rand_core::{OsRng, RngCore};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdin, Command};

/// How long a program may take to print its methods.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a dial may take, the transport's own handshake included.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes read from a program before it has printed its methods.
const MAX_STARTUP_OUTPUT: u64 = 64 * 1024;

/// Fresh obfs4 server keys (`node-id`, `private-key`, `drbg-seed`, `iat-mode=0`), for
/// [`PtTransport::with_server`]. Keep them to keep the node's obfs4 address.
pub fn obfs4_keys() -> Vec<(String, String)> {
    let hex = |n: usize| {
        let mut raw = vec![0u8; n];
        OsRng.fill_bytes(&mut raw);
        data_encoding::HEXLOWER.encode(&raw)
    };
    vec![
        ("node-id".into(), hex(20)),
        ("private-key".into(), hex(32)),
        ("drbg-seed".into(), hex(24)),
        ("iat-mode".into(), "0".into()),
    ]
}

/// Where `name` is on this process's `PATH` (the program then runs with an empty
/// environment), else `/usr/bin/NAME`, Debian's place for `obfs4proxy`.
pub fn find_program(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let runnable = |p: &PathBuf| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    std::env::var_os("PATH")
        .and_then(|path| {
            // Only absolute entries: an empty or relative one would run what is in the
            // working directory.
            std::env::split_paths(&path)
                .filter(|dir| dir.is_absolute())
                .map(|dir| dir.join(name))
                .find(runnable)
        })
        .unwrap_or_else(|| Path::new("/usr/bin").join(name))
}

/// A directory only this user can enter, removed when dropped.
#[derive(Debug)]
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> io::Result<Self> {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
        let mut name = [0u8; 12];
        OsRng.fill_bytes(&mut name);
        let path = base.join(format!("samizdat-pt-{}", data_encoding::HEXLOWER.encode(&name)));
        // `create` (not `create_all`) fails on anything already there, a symlink included.
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(PrivateDir(path))
    }

    /// Deletes what the program wrote (it reads its state only when it starts), all but
    /// `keep`.
    fn empty(&self, keep: &str) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.0)? {
            let entry = entry?;
            if entry.file_name() == keep {
                continue;
            }
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `program` as a managed proxy: an empty environment but for the pt-spec's variables, its
/// state in `dir`, standard error discarded, killed when dropped.
fn pt_command(program: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("TOR_PT_MANAGED_TRANSPORT_VER", "1")
        .env("TOR_PT_STATE_LOCATION", dir)
        .env("TOR_PT_EXIT_ON_STDIN_CLOSE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// A running managed proxy: killed, and its directory removed, when dropped.
#[derive(Debug)]
struct Proxy {
    child: Child,
    /// Held open: the program exits when it closes (`TOR_PT_EXIT_ON_STDIN_CLOSE`).
    _stdin: Option<ChildStdin>,
    _dir: PrivateDir,
}

/// Starts `cmd` and reads its output up to `CMETHODS DONE` / `SMETHODS DONE`, returning the
/// method lines.
async fn start(
    mut cmd: Command,
    dir: PrivateDir,
    program: &Path,
) -> io::Result<(Proxy, Vec<PtLine>)> {
    let mut child = cmd.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot start the pluggable transport {}: {e}", program.display()),
        )
    })?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?;
    let mut lines = BufReader::new(stdout.take(MAX_STARTUP_OUTPUT)).lines();
    let read = async {
        let mut methods = Vec::new();
        loop {
            let Some(line) = lines.next_line().await? else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} exited before naming its methods", program.display()),
                ));
            };
            match PtLine::parse(&line)? {
                PtLine::Version(v) if v != "1" => {
                    return Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        "the pluggable transport speaks another protocol version",
                    ));
                }
                PtLine::Error(e) => {
                    return Err(io::Error::other(format!("pluggable transport: {e}")));
                }
                PtLine::Done => return Ok(methods),
                m @ (PtLine::CMethod { .. } | PtLine::SMethod { .. }) => methods.push(m),
                PtLine::Version(_) | PtLine::Other => {}
            }
        }
    };
    let methods = match tokio::time::timeout(STARTUP_TIMEOUT, read).await {
        Ok(m) => m?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{} did not name its methods in time", program.display()),
            ));
        }
    };
    // The program may go on printing (LOG, STATUS); read it so it never blocks on a full pipe.
    let mut rest = lines.into_inner().into_inner().into_inner();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
    });
    Ok((Proxy { child, _stdin: stdin, _dir: dir }, methods))
}

/// After a program fails to start, dials fail at once with the same error for this long
/// (so peers handing out addresses of a transport that cannot run cost nothing).
pub const START_BACKOFF: Duration = Duration::from_secs(60);

/// The client side's proxy, or why it last failed to start.
#[derive(Debug, Default)]
struct Client {
    running: Option<(Proxy, SocketAddr)>,
    failed: Option<(tokio::time::Instant, io::ErrorKind, String)>,
}

/// A transport carried by an external program speaking the pluggable-transport protocol,
/// named after the method it runs (`obfs4`).
pub struct PtTransport {
    method: &'static str,
    program: PathBuf,
    server: Option<Vec<(String, String)>>,
    client: tokio::sync::Mutex<Client>,
    /// The process id of the last server proxy started (0: none).
    server_pid: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl std::fmt::Debug for PtTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the server keys.
        f.debug_struct("PtTransport")
            .field("method", &self.method)
            .field("program", &self.program)
            .field("server", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl PtTransport {
    /// Dials `method/IP:PORT?args` through `program` (started on the first dial).
    pub fn client(method: &'static str, program: impl Into<PathBuf>) -> Self {
        PtTransport {
            method,
            program: program.into(),
            server: None,
            client: Default::default(),
            server_pid: Default::default(),
        }
    }

    /// Also listens, passing `options` (for obfs4, [`obfs4_keys`]) to the program's server.
    pub fn with_server(
        method: &'static str,
        program: impl Into<PathBuf>,
        options: Vec<(String, String)>,
    ) -> Self {
        PtTransport { server: Some(options), ..Self::client(method, program) }
    }

    fn command(&self, dir: &Path) -> Command {
        pt_command(&self.program, dir)
    }

    /// The running client proxy's SOCKS5 address, starting it when it is not running.
    async fn socks(&self) -> io::Result<SocketAddr> {
        let mut client = self.client.lock().await;
        if let Some((proxy, socks)) = client.running.as_mut() {
            if proxy.child.try_wait()?.is_none() {
                return Ok(*socks);
            }
        }
        client.running = None;
        if let Some((at, kind, why)) = &client.failed {
            if at.elapsed() < START_BACKOFF {
                return Err(io::Error::new(*kind, why.clone()));
            }
        }
        match self.start_client().await {
            Ok((proxy, socks)) => {
                client.running = Some((proxy, socks));
                client.failed = None;
                Ok(socks)
            }
            Err(e) => {
                client.failed = Some((tokio::time::Instant::now(), e.kind(), e.to_string()));
                Err(e)
            }
        }
    }

    /// The process id of the server proxy a listener last started, if any (for monitoring;
    /// it may have exited since, and its listener starts it again).
    pub fn server_pid(&self) -> Option<u32> {
        Some(self.server_pid.load(std::sync::atomic::Ordering::Relaxed)).filter(|p| *p != 0)
    }

    /// The process id of the running client proxy, if one runs (for monitoring).
    pub async fn client_pid(&self) -> Option<u32> {
        self.client.lock().await.running.as_ref().and_then(|(p, _)| p.child.id())
    }

    async fn start_client(&self) -> io::Result<(Proxy, SocketAddr)> {
        let dir = PrivateDir::new()?;
        let mut cmd = self.command(&dir.0);
        cmd.env("TOR_PT_CLIENT_TRANSPORTS", self.method);
        let (proxy, methods) = start(cmd, dir, &self.program).await?;
        let socks = methods
            .iter()
            .find_map(|m| match m {
                PtLine::CMethod { name, socks } if name == self.method => Some(*socks),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "the program does not offer the method")
            })?;
        Ok((proxy, socks))
    }
}

/// How long the proxy may take to hand a stream over on the extended ORPort (it answers at
/// once; goptlib allows itself 5 s).
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);
/// Hand-overs in progress at once; further connections wait for a slot.
const MAX_HANDOVERS: usize = 64;

/// A server proxy that exited is started again at most this often.
const RESTART_EVERY: Duration = Duration::from_secs(5);

/// What it takes to start a listener's server proxy (again).
struct ServerSpec {
    method: &'static str,
    program: PathBuf,
    options: Vec<(String, String)>,
    bind: SocketAddr,
    /// The extended ORPort the proxy hands streams to (ours, kept across restarts).
    ext: String,
    /// The contents of the cookie file each run reads.
    cookie_file: zeroize::Zeroizing<Vec<u8>>,
    pid: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl ServerSpec {
    /// Starts the proxy in a fresh private directory; returns it with the address it serves.
    async fn start(&self) -> io::Result<(Proxy, PtAddr)> {
        let dir = PrivateDir::new()?;
        let cookie_path = dir.0.join(extor::COOKIE_FILE);
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&cookie_path)?
                .write_all(&self.cookie_file)?;
        }
        let mut cmd = pt_command(&self.program, &dir.0);
        cmd.env("TOR_PT_SERVER_TRANSPORTS", self.method)
            .env("TOR_PT_SERVER_BINDADDR", format!("{}-{}", self.method, self.bind))
            .env("TOR_PT_ORPORT", &self.ext)
            .env("TOR_PT_EXTENDED_SERVER_PORT", &self.ext)
            .env("TOR_PT_AUTH_COOKIE_FILE", &cookie_path)
            .env("TOR_PT_SERVER_TRANSPORT_OPTIONS", server_options(self.method, &self.options));
        let (proxy, methods) = start(cmd, dir, &self.program).await?;
        self.pid.store(proxy.child.id().unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        // The proxy reads the cookie for every stream; everything else it wrote goes.
        proxy._dir.empty(extor::COOKIE_FILE)?;
        let (addr, args) = methods
            .into_iter()
            .find_map(|m| match m {
                PtLine::SMethod { name, addr, args } if name == self.method => Some((addr, args)),
                _ => None,
            })
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "the program does not offer the method")
            })?;
        let public = PtAddr { endpoint: addr, args };
        // What the program published must be an address peers can parse back.
        let checked = PtAddr::parse(&public.to_string()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "the program published an odd address")
        })?;
        Ok((proxy, checked))
    }
}

struct PtListener {
    streams: tokio::sync::mpsc::Receiver<Incoming>,
    acceptor: tokio::task::JoinHandle<()>,
    local: String,
    proxy: Proxy,
    spec: ServerSpec,
    started: tokio::time::Instant,
}

impl PtListener {
    /// Starts the server proxy again after it exited (at most every [`RESTART_EVERY`]). The
    /// same keys on the same port: peers' addresses stay good.
    async fn restart(&mut self) -> io::Result<()> {
        tokio::time::sleep_until(self.started + RESTART_EVERY).await;
        self.started = tokio::time::Instant::now();
        let (proxy, addr) = self.spec.start().await.map_err(|e| {
            io::Error::new(e.kind(), format!("the pluggable transport's program exited: {e}"))
        })?;
        self.proxy = proxy;
        self.local = format!("{}/{addr}", self.spec.method);
        Ok(())
    }
}

impl Drop for PtListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Listener for PtListener {
    fn local_addr(&self) -> String {
        self.local.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>> {
        Box::pin(async move {
            loop {
                if self.proxy.child.try_wait()?.is_some() {
                    self.restart().await?;
                }
                tokio::select! {
                    stream = self.streams.recv() => {
                        return stream.ok_or_else(|| io::Error::other("the transport stopped"));
                    }
                    // Exited: started again at the top.
                    _ = self.proxy.child.wait() => {}
                }
            }
        })
    }
}

/// Accepts the proxy's connections on the extended ORPort; each that proves it holds the
/// cookie is handed to the node with the client address the proxy reports.
async fn hand_over(
    inner: TcpListener,
    cookie: std::sync::Arc<zeroize::Zeroizing<[u8; 32]>>,
    tx: tokio::sync::mpsc::Sender<Incoming>,
) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_HANDOVERS));
    while !tx.is_closed() {
        let Ok((mut stream, _)) = inner.accept().await else {
            // Out of descriptors, say: try again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = std::sync::Arc::clone(&permits).acquire_owned().await else { return };
        let (tx, cookie) = (tx.clone(), std::sync::Arc::clone(&cookie));
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = extor::accept(&mut stream, &cookie);
            if let Ok(Ok(user)) = tokio::time::timeout(HANDOVER_TIMEOUT, handshake).await {
                if stream.set_nodelay(true).is_ok() {
                    let remote = user.map(|a| a.ip());
                    let _ = tx.send(Incoming { stream: Box::new(stream), remote }).await;
                }
            }
        });
    }
}

impl Transport for PtTransport {
    fn name(&self) -> &'static str {
        self.method
    }

    fn dial(&self, addr: &str) -> BoxFuture<'_, io::Result<BoxStream>> {
        let target = PtAddr::parse(addr);
        Box::pin(async move {
            let target = target?;
            let socks = self.socks().await?;
            let connect = async {
                let mut stream = TcpStream::connect(socks).await?;
                stream.set_nodelay(true)?;
                socks5_connect(&mut stream, target.endpoint, &client_args(&target.args)).await?;
                Ok::<_, io::Error>(stream)
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                Ok(stream) => Ok(Box::new(stream?) as BoxStream),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "pluggable transport dial")),
            }
        })
    }

    fn listen(&self, addr: &str) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        let bind = addr.parse::<SocketAddr>();
        Box::pin(async move {
            let bind = bind.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "listen on a pluggable transport at IP:PORT",
                )
            })?;
            let options = self.server.as_ref().ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "this transport was set up to dial only")
            })?;
            let inner = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            let (cookie, cookie_file) = extor::new_cookie();
            let spec = ServerSpec {
                method: self.method,
                program: self.program.clone(),
                options: options.clone(),
                bind,
                ext: inner.local_addr()?.to_string(),
                cookie_file,
                pid: std::sync::Arc::clone(&self.server_pid),
            };
            let mut spec = spec;
            let (proxy, addr) = spec.start().await?;
            // A restart binds where the first run did (the port it chose for :0).
            if spec.bind.port() == 0 && addr.endpoint.ip() == spec.bind.ip() {
                spec.bind = addr.endpoint;
            }
            let local = format!("{}/{addr}", self.method);
            let (tx, streams) = tokio::sync::mpsc::channel(16);
            let acceptor = tokio::spawn(hand_over(inner, std::sync::Arc::new(cookie), tx));
            let started = tokio::time::Instant::now();
            Ok(Box::new(PtListener { streams, acceptor, local, proxy, spec, started })
                as Box<dyn Listener>)
        })
    }
}
