//! The tokio driver: one task owns the engine; reader and writer tasks per connection move
//! bytes; bounded channels carry everything between them.

use crate::download::Target;
use crate::state::{BlobSource, Store};
use crate::writer::{Job, Seed, Writer};
use crate::{FetchOutcome, NodeError, Progress};
use samizdat_content::Locator;
use samizdat_content::{ContentRoot, Outboard};
use samizdat_engine::{
    Action, ConnId, ContentSource, Engine, EngineConfig, Event, FetchSpec, PeerSummary, ReadId,
    Resume, SourceSpec,
};
use samizdat_identity::{Identity, NodeId};
use samizdat_session::SessionConfig;
use samizdat_transport::{BoxStream, Listener, Transports};
use samizdat_wire::PeerAddr;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// Smallest and largest read buffer of a connection (see [`next_read_size`]).
const MIN_READ: usize = 16 * 1024;
const MAX_READ: usize = 256 * 1024;

/// The next read's buffer size: doubled after a read that filled the buffer (the link has more
/// waiting), halved after one that used less than a quarter of it.
fn next_read_size(size: usize, read: usize) -> usize {
    if read == size {
        (size * 2).min(MAX_READ)
    } else if read < size / 4 {
        (size / 2).max(MIN_READ)
    } else {
        size
    }
}
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
        /// DHT keys to look the content's providers up under (for a link without hints).
        providers: Vec<NodeId>,
        /// The link's provider base: this node announces itself under its keys if it keeps a
        /// seeding copy.
        provider_base: [u8; 32],
        progress: mpsc::Sender<Progress>,
        outcome: oneshot::Sender<Result<FetchOutcome, NodeError>>,
    },
    /// Announces this node in the DHT as a provider of each key until its expiry (Unix s).
    Provide {
        keys: Vec<(NodeId, u64)>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerSummary>>,
    },
    LinkHealth {
        reply: oneshot::Sender<Vec<(PeerAddr, samizdat_engine::health::Health)>>,
    },
    Connect {
        addr: PeerAddr,
        reply: oneshot::Sender<()>,
    },
    /// Dials a peer a discovery method found, once, pinned to the identity that signed it.
    Dial {
        addr: PeerAddr,
        node: NodeId,
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

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, BlobSource> {
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

pub(crate) enum Io {
    Accepted(BoxStream, Option<IpAddr>),
    /// A batch of chunk-group reads finished.
    Reads(Vec<(ReadId, Option<Vec<u8>>)>),
    Dialed(ConnId, std::io::Result<BoxStream>),
    Data(ConnId, Vec<u8>),
    Written(ConnId, usize),
    Closed(ConnId),
    /// A download's writer (of the given generation) stored this many more groups.
    Stored(ContentRoot, u64, u32),
    /// A download's writer could not write (or panicked); the caller has its answer.
    WriteFailed(ContentRoot, u64),
    /// A download's seeding copy was kept: announce this node under the keys of this
    /// provider base, and remember it.
    Seeded(ContentRoot, [u8; 32]),
}

pub(crate) struct Setup {
    pub identity: Identity,
    pub user_agent: Option<String>,
    pub listen_addrs: Vec<PeerAddr>,
    pub listeners: Vec<Box<dyn Listener>>,
    /// Whether this node runs on a local network (loopback or private addresses from peers are
    /// accepted).
    pub local_network: bool,
    pub rotate_transports: bool,
    /// The most a link's writes wait when a burst starts after a pause.
    pub jitter: Duration,
    /// Padding and chaff on every link.
    pub shaping: samizdat_session::Shaping,
    /// Where the DHT contacts are remembered across restarts (none for an ephemeral node).
    pub peer_book: Option<crate::peers::PeerBook>,
    /// The contacts remembered from the last run.
    pub remembered: Vec<samizdat_dht::contact::Contact>,
    /// What each dialled address did in the last run.
    pub remembered_health: Vec<(PeerAddr, samizdat_engine::health::SavedHealth)>,
    /// Peers to keep connections to, each pinned to an identity when an invite named it.
    pub peers: Vec<(PeerAddr, Option<NodeId>)>,
    pub transports: Transports,
    pub source: BlobSource,
    pub store: Store,
    pub seed_downloads: bool,
    /// Where kept seeding copies are remembered (none for an ephemeral node).
    pub seed_book: Option<Arc<Mutex<crate::seeds::SeedBook>>>,
    /// Counts the bytes served to peers.
    pub served: Arc<AtomicU64>,
}

/// A running download, as the driver sees it: its writer does the rest.
struct Download {
    /// Tells this download's writer's messages from those of an earlier one for the same root.
    generation: u64,
    jobs: std::sync::mpsc::Sender<Job>,
    /// Verified groups not yet handed to the writer (sent at the end of the driver's turn).
    batch: Vec<(u32, Vec<u8>)>,
    /// Closed when the caller drops its `Fetch` (a cancel).
    progress: mpsc::Sender<Progress>,
}

impl Download {
    /// Hands the batched groups to the writer.
    fn send_groups(&mut self) {
        if !self.batch.is_empty() {
            let _ = self.jobs.send(Job::Groups(std::mem::take(&mut self.batch)));
        }
    }

    /// Sends a job after the groups that came before it.
    fn send(&mut self, job: Job) {
        self.send_groups();
        let _ = self.jobs.send(job);
    }
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
    seed_book: Option<Arc<Mutex<crate::seeds::SeedBook>>>,
    /// Chunk-group reads asked for while draining, started together afterwards.
    reads: Vec<(ReadId, ContentRoot, u32)>,
    /// The latest writer of each root (awaited at shutdown, so an output is released by
    /// then; a new download of a root waits until its previous writer is done).
    writers: BTreeMap<ContentRoot, (tokio::task::JoinHandle<()>, Arc<AtomicBool>)>,
    /// Fetches waiting for an earlier writer of the same root to finish.
    deferred: Vec<Command>,
    next_generation: u64,
    /// Where the DHT contacts are remembered, and when they are next saved.
    peer_book: Option<Arc<crate::peers::PeerBook>>,
    next_remember: Instant,
    /// The most a link's writes wait when a burst starts after a pause.
    jitter: Duration,
}

/// Writes what the engine sends on one link, telling the driver what was written (or that
/// the link failed). A burst after a pause of [`BURST_GAP`] starts a random time of at most
/// `jitter` later; within a burst nothing waits.
async fn write_loop<W: tokio::io::AsyncWrite + Unpin>(
    mut wr: W,
    mut wrx: mpsc::Receiver<Vec<u8>>,
    jitter: Duration,
    conn: ConnId,
    io_tx: mpsc::Sender<Io>,
) {
    let mut last_write = tokio::time::Instant::now();
    while let Some(buf) = wrx.recv().await {
        if !jitter.is_zero() && last_write.elapsed() >= BURST_GAP {
            let bound = u64::try_from(jitter.as_micros()).unwrap_or(u64::MAX);
            let wait = rand_core::RngCore::next_u64(&mut rand_core::OsRng) % (bound + 1);
            tokio::time::sleep(Duration::from_micros(wait)).await;
        }
        let written = wr.write_all(&buf).await;
        last_write = tokio::time::Instant::now();
        if written.is_err() {
            let _ = io_tx.send(Io::Closed(conn)).await;
            return;
        }
        if io_tx.send(Io::Written(conn, buf.len())).await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// A link silent this long starts a new burst (whose first write gets the jitter).
const BURST_GAP: Duration = Duration::from_millis(50);

/// How often the DHT contacts are saved (and once more when the node stops).
const REMEMBER_EVERY: Duration = Duration::from_secs(300);

impl Driver {
    /// Saves the contacts worth remembering, off the driver task (or, at shutdown, waited for).
    fn remember_peers(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        let book = self.peer_book.clone()?;
        self.next_remember = Instant::now() + REMEMBER_EVERY;
        let contacts = self.engine.dht_contacts(crate::peers::MAX_REMEMBERED);
        let health = self.engine.export_link_health(Instant::now());
        if contacts.is_empty() && health.is_empty() {
            return None;
        }
        Some(tokio::task::spawn_blocking(move || {
            if !contacts.is_empty() {
                if let Err(e) = book.save(&contacts) {
                    tracing::debug!("cannot remember peers: {e}");
                }
            }
            if !health.is_empty() {
                if let Err(e) = book.save_health(&health) {
                    tracing::debug!("cannot remember transport health: {e}");
                }
            }
        }))
    }
}

pub(crate) async fn run(setup: Setup, mut commands: mpsc::Receiver<Command>) {
    let now = Instant::now();
    let wall = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut session = SessionConfig::new(setup.identity);
    session.listen = setup.listen_addrs;
    if let Some(ua) = setup.user_agent {
        session.user_agent = ua;
    }
    session.shaping = setup.shaping;
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let source = Counted { inner: Arc::new(RwLock::new(setup.source)), served: setup.served };
    let mut config = EngineConfig::new(session);
    // On a local network, peers' loopback and private addresses are real ones.
    config.addrbook.allow_local = setup.local_network;
    config.rotate_transports = setup.rotate_transports;
    let engine = Engine::new(config, source, seed, now, wall);
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
        seed_book: setup.seed_book,
        reads: Vec::new(),
        writers: BTreeMap::new(),
        deferred: Vec::new(),
        next_generation: 0,
        peer_book: setup.peer_book.map(Arc::new),
        next_remember: now + REMEMBER_EVERY,
        jitter: setup.jitter,
    };
    d.engine.restore_dht_contacts(now, setup.remembered);
    d.engine.restore_link_health(now, setup.remembered_health);
    for (addr, pinned) in setup.peers {
        match pinned {
            Some(node) => d.engine.add_persistent_pinned(Instant::now(), addr, node),
            None => d.engine.add_persistent(Instant::now(), addr),
        }
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
            _ = reap.tick() => {
                d.reap_cancelled();
                if Instant::now() >= d.next_remember {
                    d.remember_peers();
                }
                for cmd in std::mem::take(&mut d.deferred) {
                    d.on_command(cmd);
                }
            }
        }
        d.drain();
    }
    if let Some(saving) = d.remember_peers() {
        let _ = saving.await;
    }
    for t in accept_tasks {
        t.abort();
    }
    for (_, c) in std::mem::take(&mut d.conns) {
        c.reader.abort();
    }
    // Nobody reads the channel any more: close it so writers never block sending to it.
    io_rx.close();
    for (_, mut dl) in std::mem::take(&mut d.downloads) {
        dl.send(Job::Abort(NodeError::Stopped));
    }
    for (_, (_, cancel)) in d.writers.iter() {
        cancel.store(true, Ordering::Relaxed);
    }
    for (_, (w, _)) in std::mem::take(&mut d.writers) {
        let _ = w.await;
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
            Command::Fetch {
                target,
                resume,
                spec,
                sources,
                providers,
                provider_base,
                progress,
                outcome,
            } => {
                let root = target.root;
                if self.writers.get(&root).is_some_and(|(w, _)| !w.is_finished())
                    && !self.downloads.contains_key(&root)
                {
                    // The previous download of this root is still winding up (its writer owns
                    // the seeding copy's path): start once it is done.
                    let cmd = Command::Fetch {
                        target,
                        resume,
                        spec,
                        sources,
                        providers,
                        provider_base,
                        progress,
                        outcome,
                    };
                    self.deferred.push(cmd);
                    return;
                }
                if self.downloads.contains_key(&root) {
                    let _ = outcome.send(Err(NodeError::io(
                        "fetching",
                        std::io::Error::other("this content is already being downloaded"),
                    )));
                    return;
                }
                let seed = self.open_seed_copy(&root, spec.locator);
                let verified = target.resumed_bytes;
                let _ = progress.try_send(Progress {
                    verified_bytes: verified,
                    total_bytes: Some(spec.blob_len),
                    resumed_bytes: verified,
                });
                let (jobs, rx) = std::sync::mpsc::channel();
                self.next_generation += 1;
                let generation = self.next_generation;
                let cancel = Arc::new(AtomicBool::new(false));
                let writer = Writer {
                    generation,
                    cancel: cancel.clone(),
                    target: *target,
                    seed,
                    store: self.store.clone(),
                    source: self.engine.source().clone(),
                    progress: progress.clone(),
                    outcome,
                    io: self.io_tx.clone(),
                    resumed: resume.outboard.clone().map(|o| (o, resume.have.clone())),
                    provider_base,
                };
                // The writer's queue is bounded by the engine's store window.
                let io = self.io_tx.clone();
                let task = tokio::task::spawn_blocking(move || {
                    // A writer that panics must not leave its download waiting for ever.
                    let run = std::panic::AssertUnwindSafe(|| writer.run(rx));
                    if std::panic::catch_unwind(run).is_err() {
                        let _ = io.blocking_send(Io::WriteFailed(root, generation));
                    }
                });
                self.writers.insert(root, (task, cancel));
                self.downloads
                    .insert(root, Download { generation, jobs, batch: Vec::new(), progress });
                self.engine.fetch(now, spec, sources, resume);
                for key in providers {
                    self.engine.find_providers(now, root, key);
                }
            }
            Command::Provide { keys } => self.provide(now, keys),
            Command::Peers { reply } => {
                let _ = reply.send(self.engine.peers());
            }
            Command::LinkHealth { reply } => {
                let _ = reply.send(self.engine.link_health());
            }
            Command::Connect { addr, reply } => {
                self.engine.add_persistent(now, addr);
                let _ = reply.send(());
            }
            Command::Dial { addr, node } => {
                self.engine.connect_pinned(now, addr, node);
            }
            Command::Unregister { root, reply } => {
                let _ = reply.send(self.engine.source().write().remove(&root));
            }
            Command::Shutdown => {}
        }
    }

    /// Announces this node in the DHT under each key until its expiry.
    fn provide(&mut self, now: Instant, keys: Vec<(NodeId, u64)>) {
        for (key, expires) in keys {
            self.engine.provide(now, key, expires);
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
            Io::Reads(done) => {
                for (read, data) in done {
                    self.engine.read_done(read, data);
                }
            }
            Io::Accepted(stream, remote) => match self.engine.accept(now, remote) {
                Some(conn) => self.install(conn, stream),
                None => drop(stream),
            },
            Io::Dialed(conn, Ok(stream)) => {
                self.install(conn, stream);
                self.engine.connected(now, conn);
            }
            Io::Dialed(conn, Err(e)) => {
                self.engine.connect_failed(
                    now,
                    conn,
                    samizdat_engine::health::LinkFailure::from_io(e.kind()),
                );
            }
            Io::Data(conn, data) => self.engine.handle_input_owned(now, conn, data),
            Io::Written(conn, n) => self.engine.on_written(conn, n),
            Io::Closed(conn) => {
                if let Some(c) = self.conns.remove(&conn) {
                    c.reader.abort();
                    self.engine.closed(now, conn);
                }
            }
            Io::Stored(root, generation, groups) => {
                if self.downloads.get(&root).is_some_and(|d| d.generation == generation) {
                    self.engine.stored(now, &root, groups);
                }
            }
            Io::Seeded(root, base) => {
                self.provide(now, crate::provider_keys_for(&base));
                if let Some(book) = self.seed_book.clone() {
                    // Blocking; losing it only costs the announcement after a restart.
                    tokio::task::spawn_blocking(move || {
                        let mut book = book.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Err(e) = book.add(root, base) {
                            tracing::debug!("cannot remember a seed: {e}");
                        }
                    });
                }
            }
            Io::WriteFailed(root, generation) => {
                if self.downloads.get(&root).is_some_and(|d| d.generation == generation) {
                    self.engine.cancel(&root);
                    self.downloads.remove(&root);
                }
            }
        }
    }

    fn install(&mut self, conn: ConnId, stream: BoxStream) {
        let (mut rd, wr) = tokio::io::split(stream);
        let (wtx, wrx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let io_tx = self.io_tx.clone();
        tokio::spawn(write_loop(wr, wrx, self.jitter, conn, io_tx));
        let io_tx = self.io_tx.clone();
        let reader = tokio::spawn(async move {
            // Each read lands in a fresh buffer that is handed to the engine as it is (the
            // session decrypts whole frames in place), sized to what the link delivers: a busy
            // link reads up to MAX_READ at once, an idle one holds a small buffer.
            let mut size = MIN_READ;
            loop {
                let mut buf = Vec::with_capacity(size);
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = io_tx.send(Io::Closed(conn)).await;
                        return;
                    }
                    Ok(n) => {
                        size = next_read_size(size, n);
                        if io_tx.send(Io::Data(conn, buf)).await.is_err() {
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
                break;
            }
        }
        for dl in self.downloads.values_mut() {
            dl.send_groups();
        }
        self.start_reads();
    }

    /// Runs the reads asked for in one blocking task: disk and vault reads never run on the
    /// driver task (a slow read must not stall every other peer), and one task per batch
    /// instead of per group saves a thread wake-up per 32 KiB.
    fn start_reads(&mut self) {
        if self.reads.is_empty() {
            return;
        }
        let reads = std::mem::take(&mut self.reads);
        let (source, tx) = (self.engine.source().clone(), self.io_tx.clone());
        tokio::task::spawn_blocking(move || {
            let done = reads
                .into_iter()
                .map(|(read, root, index)| (read, source.read_group(&root, index)))
                .collect();
            let _ = tx.blocking_send(Io::Reads(done));
        });
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
            Action::ReadGroup { read, root, index } => self.reads.push((read, root, index)),
            // Actions of later engine versions this driver does not know are ignored.
            _ => {}
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::OutboardVerified { root, outboard } => {
                if let Some(dl) = self.downloads.get_mut(&root) {
                    dl.send(Job::Outboard(outboard));
                }
            }
            Event::GroupVerified { root, index, data, .. } => {
                let Some(dl) = self.downloads.get_mut(&root) else { return };
                if dl.progress.is_closed() {
                    self.fail(root, NodeError::Cancelled);
                    return;
                }
                dl.batch.push((index, data));
            }
            Event::TransferComplete { root } => {
                if let Some(mut dl) = self.downloads.remove(&root) {
                    dl.send(Job::Finish);
                }
            }
            Event::TransferFailed { root, error } => {
                let error = match error {
                    samizdat_engine::TransferError::IdentityMismatch => NodeError::IdentityMismatch,
                    samizdat_engine::TransferError::TooLarge(n) => NodeError::TooLarge(n),
                    samizdat_engine::TransferError::NoProviders => NodeError::NoProviders,
                    _ => NodeError::NoSources,
                };
                self.fail(root, error);
            }
            Event::IdentityMismatch { .. } => {
                tracing::debug!("a dialled peer did not prove the identity it was dialled for");
            }
            // Peer comings and goings need no action here (and are never logged).
            _ => {}
        }
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
        if let Some(mut dl) = self.downloads.remove(&root) {
            if let Some((_, cancel)) = self.writers.get(&root) {
                cancel.store(true, Ordering::Relaxed);
            }
            dl.send(Job::Abort(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    #[allow(clippy::unwrap_used)]
    async fn a_burst_after_a_pause_waits_at_most_the_jitter_and_nothing_within_it() {
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let (wtx, wrx) = mpsc::channel(8);
        let (io_tx, mut io_rx) = mpsc::channel(8);
        let jitter = Duration::from_millis(300);
        tokio::spawn(write_loop(ours, wrx, jitter, ConnId(7), io_tx));
        let mut waits = Vec::new();
        for _ in 0..8 {
            tokio::time::sleep(BURST_GAP * 2).await;
            let t0 = tokio::time::Instant::now();
            wtx.send(vec![1; 10]).await.unwrap();
            assert!(matches!(io_rx.recv().await, Some(Io::Written(ConnId(7), 10))));
            waits.push(t0.elapsed());
            // The rest of the burst goes at once.
            let t1 = tokio::time::Instant::now();
            wtx.send(vec![2; 5]).await.unwrap();
            assert!(matches!(io_rx.recv().await, Some(Io::Written(ConnId(7), 5))));
            assert_eq!(t1.elapsed(), Duration::ZERO);
        }
        assert!(waits.iter().all(|w| *w <= jitter), "{waits:?}");
        assert!(waits.iter().any(|w| !w.is_zero()), "{waits:?}");
        let mut got = vec![0u8; 8 * 15];
        tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut got).await.unwrap();
        // A failed write is the link's close.
        drop(theirs);
        wtx.send(vec![3; 4]).await.unwrap();
        assert!(matches!(io_rx.recv().await, Some(Io::Closed(ConnId(7)))));
    }

    #[test]
    fn read_buffers_grow_on_a_busy_link_and_shrink_on_an_idle_one() {
        let mut size = MIN_READ;
        for _ in 0..10 {
            size = next_read_size(size, size);
        }
        assert_eq!(size, MAX_READ);
        assert_eq!(next_read_size(MAX_READ, MAX_READ / 2), MAX_READ, "a half-full read keeps it");
        for _ in 0..10 {
            size = next_read_size(size, 100);
        }
        assert_eq!(size, MIN_READ);
    }
}
