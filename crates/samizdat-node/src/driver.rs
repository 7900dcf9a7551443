//! The tokio driver: one task owns the engine; reader and writer tasks per connection move
//! bytes; bounded channels carry everything between them.

use crate::download::Target;
use crate::state::{BlobSource, Store};
use crate::store::PendingBlob;
use crate::{FetchOutcome, NodeError, Progress};
use samizdat_content::Locator;
use samizdat_content::{ContentKey, ContentRoot, GROUP_SIZE, HEADER_LEN, Outboard, group_range};
use samizdat_engine::{
    Action, ConnId, ContentSource, Engine, EngineConfig, Event, FetchSpec, PeerSummary, ReadId,
    Resume, SourceSpec,
};
use samizdat_identity::Identity;
use samizdat_session::SessionConfig;
use samizdat_transport::{BoxStream, Listener, Transports};
use samizdat_wire::PeerAddr;
use std::collections::BTreeMap;
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

const READ_BUFFER: usize = 64 * 1024;
const WRITE_QUEUE: usize = 1024;
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) enum Command {
    Register {
        root: ContentRoot,
        locator: Locator,
        outboard: Outboard,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Fetch {
        target: Box<Target>,
        resume: Resume,
        spec: FetchSpec,
        sources: Vec<SourceSpec>,
        progress: mpsc::Sender<Progress>,
        outcome: oneshot::Sender<Result<FetchOutcome, NodeError>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerSummary>>,
    },
    Connect {
        addr: PeerAddr,
        reply: oneshot::Sender<()>,
    },
    /// Stops serving a blob; answers whether it was served.
    Unregister {
        root: ContentRoot,
        reply: oneshot::Sender<bool>,
    },
    Shutdown,
}

/// The engine's content source, shared with the blocking tasks that read chunk groups off the
/// driver task, and counting the bytes it serves (for the node's status log).
#[derive(Clone)]
pub(crate) struct Counted {
    inner: Arc<RwLock<BlobSource>>,
    served: Arc<AtomicU64>,
}

impl Counted {
    fn read(&self) -> RwLockReadGuard<'_, BlobSource> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, BlobSource> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ContentSource for Counted {
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, Arc<Outboard>)> {
        self.read().lookup(locator)
    }

    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        let data = self.read().read_group(root, index)?;
        self.served.fetch_add(data.len() as u64, Ordering::Relaxed);
        Some(data)
    }
}

enum Io {
    Accepted(BoxStream, Option<IpAddr>),
    /// A chunk-group read finished.
    Read(ReadId, Option<Vec<u8>>),
    Dialed(ConnId, std::io::Result<BoxStream>),
    Data(ConnId, Vec<u8>),
    Written(ConnId, usize),
    Closed(ConnId),
    /// A blocking task finished storing the seeding copy of a download.
    SeedStored(Box<SeedStored>),
}

/// The end of a download whose seeding copy was stored off the driver task.
struct SeedStored {
    root: ContentRoot,
    locator: Locator,
    /// The outboard to serve the copy with, if it was stored.
    outboard: Option<Outboard>,
    outcome: oneshot::Sender<Result<FetchOutcome, NodeError>>,
    result: Result<FetchOutcome, NodeError>,
}

/// The ciphertext copy a download keeps for seeding.
enum Seed {
    /// Data directory: a blob file, written at each group's offset as the group is verified
    /// (removed if the download does not complete).
    File(PendingBlob),
    /// Vault: a vault file is written once, sequentially, so the copy is made when the
    /// download completes, by re-encrypting the finished output group by group and streaming
    /// it into the vault. Only group 0 (which carries the encrypted manifest, not file bytes)
    /// is kept from the wire; it is fetched again by every attempt.
    Vault { group0: Option<Vec<u8>> },
}

pub(crate) struct Setup {
    pub identity: Identity,
    pub user_agent: Option<String>,
    pub listen_addrs: Vec<PeerAddr>,
    pub listeners: Vec<Box<dyn Listener>>,
    pub peers: Vec<PeerAddr>,
    pub transports: Transports,
    pub source: BlobSource,
    pub store: Store,
    pub seed_downloads: bool,
    /// Counts the bytes served to peers.
    pub served: Arc<AtomicU64>,
}

struct Download {
    target: Target,
    progress: mpsc::Sender<Progress>,
    outcome: oneshot::Sender<Result<FetchOutcome, NodeError>>,
    verified: u64,
    /// Ciphertext copy for seeding, if enabled.
    seed: Option<Seed>,
}

struct ConnIo {
    writer: mpsc::Sender<Vec<u8>>,
    reader: tokio::task::JoinHandle<()>,
}

struct Driver {
    engine: Engine<Counted>,
    transports: Transports,
    io_tx: mpsc::Sender<Io>,
    conns: BTreeMap<ConnId, ConnIo>,
    downloads: BTreeMap<ContentRoot, Download>,
    store: Store,
    seed_downloads: bool,
}

pub(crate) async fn run(setup: Setup, mut commands: mpsc::Receiver<Command>) {
    let now = Instant::now();
    let wall = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut nonce = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let mut session = SessionConfig::new(setup.identity, u64::from_le_bytes(nonce));
    session.listen = setup.listen_addrs;
    if let Some(ua) = setup.user_agent {
        session.user_agent = ua;
    }
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let source = Counted { inner: Arc::new(RwLock::new(setup.source)), served: setup.served };
    let engine = Engine::new(EngineConfig::new(session), source, seed, now, wall);
    let (io_tx, mut io_rx) = mpsc::channel(256);
    let mut accept_tasks = Vec::new();
    for mut listener in setup.listeners {
        let tx = io_tx.clone();
        accept_tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(samizdat_transport::Incoming { stream, remote }) => {
                        if tx.send(Io::Accepted(stream, remote)).await.is_err() {
                            return;
                        }
                    }
                    // Transient accept errors (e.g. too many open files): back off briefly.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }
    let mut d = Driver {
        engine,
        transports: setup.transports,
        io_tx,
        conns: BTreeMap::new(),
        downloads: BTreeMap::new(),
        store: setup.store,
        seed_downloads: setup.seed_downloads,
    };
    for addr in setup.peers {
        d.engine.add_persistent(Instant::now(), addr);
    }
    d.drain();
    // Downloads whose caller went away are noticed within a second even when no data arrives
    // (their output stays locked until then).
    let mut reap = tokio::time::interval(Duration::from_secs(1));
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wake = d.engine.poll_timeout().map(tokio::time::Instant::from_std);
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Shutdown) | None => break,
                Some(cmd) => d.on_command(cmd),
            },
            Some(io) = io_rx.recv() => {
                d.on_io(io);
                // Batch whatever else is ready before draining.
                for _ in 0..64 {
                    match io_rx.try_recv() {
                        Ok(io) => d.on_io(io),
                        Err(_) => break,
                    }
                }
            }
            () = sleep => d.engine.handle_timeout(Instant::now()),
            _ = reap.tick() => d.reap_cancelled(),
        }
        d.drain();
    }
    for t in accept_tasks {
        t.abort();
    }
    for (_, c) in std::mem::take(&mut d.conns) {
        c.reader.abort();
    }
    for (_, dl) in std::mem::take(&mut d.downloads) {
        let _ = dl.outcome.send(Err(NodeError::Stopped));
    }
}

impl Driver {
    fn on_command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Register { root, locator, outboard, reply } => {
                let r = self.engine.source().write().register(&self.store, root, locator, outboard);
                let _ = reply.send(r);
            }
            Command::Fetch { target, resume, spec, sources, progress, outcome } => {
                let root = target.root;
                if self.downloads.contains_key(&root) {
                    let _ = outcome.send(Err(NodeError::io(
                        "fetching",
                        std::io::Error::other("this content is already being downloaded"),
                    )));
                    return;
                }
                let seed = self.open_seed_copy(&root, spec.locator);
                let verified = target.resumed_bytes;
                let total = Some(spec.blob_len);
                let _ = progress.try_send(Progress {
                    verified_bytes: verified,
                    total_bytes: total,
                    resumed_bytes: verified,
                });
                let dl = Download { target: *target, progress, outcome, verified, seed };
                if let (Some(o), Some(Seed::File(file))) = (&resume.outboard, &dl.seed) {
                    // Resumed groups must also be in the seeding copy: rebuild it from the output.
                    let _ = copy_resumed(&dl.target, o, &resume.have, file);
                }
                self.downloads.insert(root, dl);
                self.engine.fetch(now, spec, sources, resume);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.engine.peers());
            }
            Command::Connect { addr, reply } => {
                self.engine.add_persistent(now, addr);
                let _ = reply.send(());
            }
            Command::Unregister { root, reply } => {
                let _ = reply.send(self.engine.source().write().remove(&root));
            }
            Command::Shutdown => {}
        }
    }

    fn open_seed_copy(&self, root: &ContentRoot, locator: Locator) -> Option<Seed> {
        let source = self.engine.source().read();
        if !self.seed_downloads || source.contains(root) {
            return None;
        }
        match (&self.store, &*source) {
            (Store::Vault(_), _) => Some(Seed::Vault { group0: None }),
            (Store::Dir { .. }, BlobSource::Files(files)) => {
                files.pending(root, locator).map(Seed::File)
            }
            _ => None,
        }
    }

    fn on_io(&mut self, io: Io) {
        let now = Instant::now();
        match io {
            Io::Read(read, data) => self.engine.read_done(read, data),
            Io::Accepted(stream, remote) => match self.engine.accept(now, remote) {
                Some(conn) => self.install(conn, stream),
                None => drop(stream),
            },
            Io::Dialed(conn, Ok(stream)) => {
                self.install(conn, stream);
                self.engine.connected(now, conn);
            }
            Io::Dialed(conn, Err(_)) => self.engine.connect_failed(now, conn),
            Io::Data(conn, data) => self.engine.handle_input(now, conn, &data),
            Io::Written(conn, n) => self.engine.on_written(conn, n),
            Io::Closed(conn) => {
                if let Some(c) = self.conns.remove(&conn) {
                    c.reader.abort();
                    self.engine.closed(now, conn);
                }
            }
            Io::SeedStored(done) => {
                let SeedStored { root, locator, outboard, outcome, result } = *done;
                if let Some(outboard) = outboard {
                    let mut source = self.engine.source().write();
                    if let Err(e) = source.register(&self.store, root, locator, outboard) {
                        tracing::debug!("cannot serve a seeding copy: {e}");
                    }
                }
                let _ = outcome.send(result);
            }
        }
    }

    fn install(&mut self, conn: ConnId, stream: BoxStream) {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let (wtx, mut wrx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let io_tx = self.io_tx.clone();
        tokio::spawn(async move {
            while let Some(buf) = wrx.recv().await {
                if wr.write_all(&buf).await.is_err() {
                    let _ = io_tx.send(Io::Closed(conn)).await;
                    return;
                }
                if io_tx.send(Io::Written(conn, buf.len())).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        let io_tx = self.io_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; READ_BUFFER];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = io_tx.send(Io::Closed(conn)).await;
                        return;
                    }
                    Ok(n) => {
                        if io_tx.send(Io::Data(conn, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        self.conns.insert(conn, ConnIo { writer: wtx, reader });
    }

    /// Carries out the engine's actions and handles its events until both queues are empty.
    fn drain(&mut self) {
        loop {
            let mut busy = false;
            while let Some(action) = self.engine.poll_action() {
                busy = true;
                self.on_action(action);
            }
            while let Some(event) = self.engine.poll_event() {
                busy = true;
                self.on_event(event);
            }
            if !busy {
                return;
            }
        }
    }

    fn on_action(&mut self, action: Action) {
        match action {
            Action::Connect { conn, addr } => {
                let transports = self.transports.clone();
                let tx = self.io_tx.clone();
                tokio::spawn(async move {
                    let result =
                        match tokio::time::timeout(DIAL_TIMEOUT, transports.dial(addr.as_str()))
                            .await
                        {
                            Ok(r) => r,
                            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                        };
                    let _ = tx.send(Io::Dialed(conn, result)).await;
                });
            }
            Action::Send { conn, data } => {
                let full = match self.conns.get(&conn) {
                    Some(c) => c.writer.try_send(data).is_err(),
                    None => false,
                };
                if full {
                    // The engine bounds unwritten bytes, so this only happens to a dead link.
                    if let Some(c) = self.conns.remove(&conn) {
                        c.reader.abort();
                    }
                    self.engine.closed(Instant::now(), conn);
                }
            }
            Action::Close { conn } => {
                if let Some(c) = self.conns.remove(&conn) {
                    c.reader.abort();
                    // Dropping the writer sender lets the writer flush and shut down.
                }
            }
            Action::ReadGroup { read, root, index } => {
                // Disk and vault reads never run on the driver task: a slow read must not
                // stall every other peer.
                let (source, tx) = (self.engine.source().clone(), self.io_tx.clone());
                tokio::task::spawn_blocking(move || {
                    let data = source.read_group(&root, index);
                    let _ = tx.blocking_send(Io::Read(read, data));
                });
            }
            // Actions of later engine versions this driver does not know are ignored.
            _ => {}
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::OutboardVerified { root, outboard } => {
                let result = match self.downloads.get_mut(&root) {
                    Some(dl) => dl.target.save_outboard(&outboard),
                    None => Ok(()),
                };
                if let Err(e) = result {
                    self.fail(root, e);
                }
            }
            Event::GroupVerified { root, index, data, .. } => {
                let Some(dl) = self.downloads.get_mut(&root) else { return };
                if dl.progress.is_closed() {
                    self.fail(root, NodeError::Cancelled);
                    return;
                }
                match &mut dl.seed {
                    Some(Seed::File(file)) => {
                        let offset = u64::from(index) * GROUP_SIZE as u64;
                        if file.write_at(offset, &data).is_err() {
                            dl.seed = None;
                        }
                    }
                    Some(Seed::Vault { group0 }) if index == 0 => *group0 = Some(data.clone()),
                    _ => {}
                }
                dl.verified += data.len() as u64;
                let result = dl.target.write_group(index, data);
                let _ = dl.progress.try_send(Progress {
                    verified_bytes: dl.verified,
                    total_bytes: dl.target.blob_len,
                    resumed_bytes: dl.target.resumed_bytes,
                });
                if let Err(e) = result {
                    self.fail(root, e);
                }
            }
            Event::TransferComplete { root } => {
                let Some(dl) = self.downloads.remove(&root) else { return };
                let resumed_bytes = dl.target.resumed_bytes;
                let outboard = self.engine_outboard_for_seed(&dl);
                let key = dl.target.key.clone();
                let locator = key.locator(&root);
                let finished = dl.target.finish();
                let path = finished.as_ref().map(|(_, p)| p.clone()).unwrap_or_default();
                let result = finished.map(|(manifest, path)| FetchOutcome {
                    bytes: manifest.size,
                    manifest,
                    resumed_bytes,
                    path,
                });
                match (result.is_ok(), dl.seed, outboard) {
                    (true, Some(Seed::File(file)), Some(outboard)) => {
                        if let BlobSource::Files(files) = &mut *self.engine.source().write() {
                            if let Err(e) = files.commit(file, outboard) {
                                tracing::debug!("cannot keep a seeding copy: {e}");
                            }
                        }
                    }
                    (true, Some(Seed::Vault { group0: Some(group0) }), Some(outboard)) => {
                        // Streaming the copy into the vault takes as long as writing the
                        // file: do it off the driver task and answer the caller afterwards,
                        // so that a completed fetch means the node seeds it.
                        let (store, tx, outcome) =
                            (self.store.clone(), self.io_tx.clone(), dl.outcome);
                        tokio::task::spawn_blocking(move || {
                            let outboard =
                                match seed_into_store(&store, &path, &key, root, outboard, &group0)
                                {
                                    Ok(o) => Some(o),
                                    Err(e) => {
                                        tracing::debug!("cannot keep a seeding copy: {e}");
                                        None
                                    }
                                };
                            let done = SeedStored { root, locator, outboard, outcome, result };
                            let _ = tx.blocking_send(Io::SeedStored(Box::new(done)));
                        });
                        return;
                    }
                    _ => {}
                }
                let _ = dl.outcome.send(result);
            }
            Event::TransferFailed { root, error } => {
                let error = match error {
                    samizdat_engine::TransferError::IdentityMismatch => NodeError::IdentityMismatch,
                    samizdat_engine::TransferError::TooLarge(n) => NodeError::TooLarge(n),
                    _ => NodeError::NoSources,
                };
                self.fail(root, error);
            }
            Event::IdentityMismatch { .. } => {
                tracing::info!("a peer at a link's address is not the node the link names");
            }
            // Peer comings and goings need no action here (and are never logged).
            _ => {}
        }
    }

    fn engine_outboard_for_seed(&self, dl: &Download) -> Option<Outboard> {
        dl.seed.as_ref()?;
        dl.target.outboard.clone()
    }

    /// Cancels downloads whose `Fetch` was dropped (its progress receiver is gone).
    fn reap_cancelled(&mut self) {
        let gone: Vec<ContentRoot> = self
            .downloads
            .iter()
            .filter(|(_, dl)| dl.progress.is_closed())
            .map(|(root, _)| *root)
            .collect();
        for root in gone {
            self.fail(root, NodeError::Cancelled);
        }
    }

    fn fail(&mut self, root: ContentRoot, error: NodeError) {
        self.engine.cancel(&root);
        if let Some(dl) = self.downloads.remove(&root) {
            let _ = dl.outcome.send(Err(error));
        }
    }
}

/// Streams the ciphertext of a finished download into the store: group 0 as received, every
/// other group re-encrypted from the output file and checked against its leaf (so a file
/// changed on disk since is not seeded). Blocking.
fn seed_into_store(
    store: &Store,
    out: &Path,
    key: &ContentKey,
    root: ContentRoot,
    outboard: Outboard,
    group0: &[u8],
) -> Result<Outboard, NodeError> {
    let file = File::open(out).map_err(|e| NodeError::io("reading a finished download", e))?;
    let corrupt = |_| NodeError::Corrupt("download (changed on disk before it was seeded)");
    let write = |e| NodeError::io("storing a seeding copy", e);
    let locator = key.locator(&root);
    let (_, _, outboard) = store.put_blob(|sink| {
        outboard.verify_group(&root, 0, group0).map_err(corrupt)?;
        sink.write_all(group0).map_err(write)?;
        let mut buf = vec![0u8; GROUP_SIZE];
        for g in 1..outboard.groups() {
            let r = group_range(outboard.blob_len, g);
            let data = &mut buf[..(r.end - r.start) as usize];
            file.read_exact_at(data, r.start - HEADER_LEN as u64)
                .map_err(|e| NodeError::io("reading a finished download", e))?;
            key.apply(g, data);
            outboard.verify_group(&root, g, data).map_err(corrupt)?;
            sink.write_all(data).map_err(write)?;
        }
        Ok((root, locator, outboard))
    })?;
    Ok(outboard)
}

/// Copies groups resumed from the output file into the seeding copy (re-encrypting them).
fn copy_resumed(
    target: &Target,
    outboard: &Outboard,
    have: &[bool],
    seed: &PendingBlob,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; samizdat_content::GROUP_SIZE];
    for (g, _) in have.iter().enumerate().filter(|(_, h)| **h) {
        let g = g as u32;
        let r = samizdat_content::group_range(outboard.blob_len, g);
        let len = (r.end - r.start) as usize;
        let data = &mut buf[..len];
        target.file.read_exact_at(data, r.start - samizdat_content::HEADER_LEN as u64)?;
        target.key.apply(g, data);
        seed.write_at(r.start, data)?;
    }
    Ok(())
}
