//! `veil/IP:PORT?k=KEY`: the bare session behind a probe-resistant, look-like-nothing layer
//! (obfs4's design, built in: no external program, AES-GCM instead of NaCl secretbox).
//!
//! On the wire there is nothing fixed and nothing in clear:
//!
//! ```text
//! client → X' (32) || mask(len) (2) || AES-GCM_h(time (8) || padding 0–1400)
//! server → Y' (32) || mask(len) (2) || AES-GCM_s2c(padding 0–1400)
//! both   → records: mask(len) (2) || AES-GCM(data_len (2) || data || padding)
//! ```
//!
//! * `X'`, `Y'` are Elligator2 representatives of ephemeral X25519 keys whose points carry a
//!   random low-order component and whose two spare bits are random, so they are uniform
//!   32-byte strings (a raw key fails a Legendre-symbol test one time in two).
//! * The hello's key comes from `x·K`, `K` the server's static key from the address (which
//!   holders of its links and invite lines know, and its peers in the overlay: it is in the
//!   node's announced addresses). A server that cannot open the hello — a prober's bytes, a
//!   replay (`X'` seen in the last hour or two), a hello more than 20 minutes off its clock,
//!   an altered byte — never sends a byte: it reads and discards until a time between 20 and
//!   60 s after the connection came (drawn per client address and hour from the server's
//!   secret), then closes. So a probe learns nothing, and the close time says nothing about
//!   where the check failed. Only hellos that open are remembered against replays.
//! * The session keys come from `x·K || x·Y` (forward secret), bound to `X, Y, K`; the reply's
//!   record proves the server holds `K`'s secret.
//! * Every length is masked with an AES keystream per record (QUIC's header protection);
//!   the first 8 records each way carry 0–255 bytes of random padding, so the session's
//!   fixed-size handshake messages inside are not visible either.
//!
//! What it does not do: look like a known protocol (a censor that blocks "fully encrypted"
//! traffic blocks it as it blocks obfs4; use `https/` there), or pad the bulk of a transfer.

mod handshake;
mod stream;

pub use handshake::{Refusal, ServerKey};
pub use stream::VeilStream;

/// The handshake as pure functions (for the fuzzer and tests).
pub mod wire {
    pub use super::handshake::{
        ClientHello, HELLO_HEAD, Keys, MAX_HANDSHAKE_PAD, client_hello, server_read_all,
    };
}

use crate::{BoxFuture, BoxStream, Incoming, Listener, Transport};
use handshake::HELLO_HEAD;
use rand_core::{OsRng, RngCore};
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a dial may take to connect and finish the handshake.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a client has to send its whole hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in their handshake at once; more are closed.
const MAX_PENDING: usize = 512;
/// Connections in their handshake at once from one source (an IPv4 address, an IPv6 /64).
const MAX_PENDING_PER_SOURCE: usize = 16;
/// Refused connections held silent at once; more are closed at once.
const MAX_HELD: usize = 2048;
/// Hellos remembered per replay generation (two generations, turned over hourly).
const REPLAY_GENERATION: usize = 1 << 17;
/// How often the replay memory turns over (it remembers a hello for one to two periods,
/// longer than the clock window lets a hello live).
const REPLAY_PERIOD: u64 = 3600;

/// A veil address: `IP:PORT?k=KEY` (the server's public key, unpadded base64url).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VeilAddr {
    /// Where the server listens (an IP address, never a name).
    pub endpoint: SocketAddr,
    /// The server's public key.
    pub key: [u8; 32],
}

impl std::fmt::Debug for VeilAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is what lets a prober in: never in a log line.
        f.debug_struct("VeilAddr").finish_non_exhaustive()
    }
}

impl std::fmt::Display for VeilAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}?k={}", self.endpoint, data_encoding::BASE64URL_NOPAD.encode(&self.key))
    }
}

fn bad_addr(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("veil address: {why}"))
}

impl VeilAddr {
    /// Parses `IP:PORT?k=KEY`.
    pub fn parse(s: &str) -> io::Result<Self> {
        let (endpoint, params) = s.split_once('?').ok_or_else(|| bad_addr("needs ?k=KEY"))?;
        let endpoint: SocketAddr = endpoint.parse().map_err(|_| bad_addr("not IP:PORT"))?;
        let mut key = None;
        for pair in params.split('&') {
            match pair.split_once('=') {
                Some(("k", v)) if key.is_none() => {
                    let bytes = data_encoding::BASE64URL_NOPAD
                        .decode(v.as_bytes())
                        .map_err(|_| bad_addr("k is not base64url"))?;
                    key = Some(<[u8; 32]>::try_from(bytes).map_err(|_| bad_addr("k length"))?);
                }
                _ => return Err(bad_addr("unknown or repeated parameter")),
            }
        }
        let key = key.ok_or_else(|| bad_addr("needs k"))?;
        Ok(VeilAddr { endpoint, key })
    }
}

#[allow(clippy::disallowed_methods)] // the hello carries the wall-clock time
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn random_pad(max: usize) -> usize {
    (OsRng.next_u32() as usize) % (max + 1)
}

/// Dials the server at `addr` over `stream`: the client's half of the handshake.
pub async fn client<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut stream: S,
    server: &[u8; 32],
) -> io::Result<VeilStream<S>> {
    let mut hello = Vec::with_capacity(2048);
    let pad = random_pad(handshake::MAX_HANDSHAKE_PAD);
    let state = handshake::client_hello(&mut OsRng, server, unix_now(), pad, &mut hello)?;
    stream.write_all(&hello).await?;
    stream.flush().await?;
    let mut head = [0u8; HELLO_HEAD];
    stream.read_exact(&mut head).await?;
    let reply = state.reply_head(&head)?;
    let mut body = vec![0u8; reply.body_len];
    stream.read_exact(&mut body).await?;
    let keys = reply.finish(&mut body)?;
    Ok(VeilStream::new(stream, keys, Vec::new()))
}

/// Hellos seen recently: two generations of their representatives' first 16 bytes.
#[derive(Default)]
struct Replays {
    period: u64,
    current: HashSet<[u8; 16]>,
    previous: HashSet<[u8; 16]>,
}

impl Replays {
    /// Remembers `x` (of a hello that opened); `Err` if it was seen: a replay.
    fn check(&mut self, x: &[u8; 32], now: u64) -> Result<(), Refusal> {
        let period = now / REPLAY_PERIOD;
        // Forward only: a clock stepped back keeps what is remembered.
        if period > self.period {
            self.previous = if period == self.period + 1 {
                std::mem::take(&mut self.current)
            } else {
                HashSet::new()
            };
            self.current = HashSet::new();
            self.period = period;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&x[..16]);
        if self.current.contains(&id) || self.previous.contains(&id) {
            return Err(Refusal::Replay);
        }
        if self.current.len() >= REPLAY_GENERATION {
            // Only hellos made with the key get here, so only a holder of the key fills the
            // memory, and it can make fresh hellos anyway: turn over early rather than refuse.
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(id);
        Ok(())
    }
}

/// A server's side: its key and its replay memory.
pub struct Server {
    key: ServerKey,
    replays: Mutex<Replays>,
}

impl Server {
    /// A server with `key`.
    pub fn new(key: ServerKey) -> Self {
        Server { key, replays: Mutex::new(Replays::default()) }
    }

    /// How long a refused connection from `from` is held, from its arrival: 20–60 s, fixed
    /// for one client address in one hour, different across addresses and hours.
    fn hold_time(&self, from: Option<IpAddr>, now: u64) -> Duration {
        let mut info = Vec::with_capacity(32);
        info.extend_from_slice(b"hold");
        info.extend_from_slice(&(now / 3600).to_be_bytes());
        match from {
            Some(IpAddr::V4(ip)) => info.extend_from_slice(&ip.octets()),
            Some(IpAddr::V6(ip)) => info.extend_from_slice(&ip.octets()),
            None => {}
        }
        let d = self.key.derive(&info);
        Duration::from_millis(20_000 + u64::from_be_bytes(d) % 40_000)
    }

    /// The address peers dial for a listener bound at `endpoint`.
    pub fn addr(&self, endpoint: SocketAddr) -> VeilAddr {
        VeilAddr { endpoint, key: self.key.public() }
    }

    /// The server's half of the handshake on `stream`, within [`HELLO_TIMEOUT`]: the keys, or
    /// why the connection is refused (then send it nothing: see [`Server::hold`]).
    pub async fn handshake<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
    ) -> io::Result<handshake::Keys> {
        let handshake = async {
            let mut head = [0u8; HELLO_HEAD];
            stream.read_exact(&mut head).await?;
            let head = handshake::server_hello_head(&self.key, &head)?;
            let mut body = vec![0u8; head.body_len];
            stream.read_exact(&mut body).await?;
            let now = unix_now();
            let hello = handshake::server_open(head, &mut body, now)?;
            {
                let mut replays = self.replays.lock().unwrap_or_else(|e| e.into_inner());
                replays.check(hello.representative(), now)?;
            }
            let mut reply = Vec::with_capacity(2048);
            let pad = random_pad(handshake::MAX_HANDSHAKE_PAD);
            let keys = handshake::server_reply(&mut OsRng, &self.key, hello, pad, &mut reply)?;
            stream.write_all(&reply).await?;
            stream.flush().await?;
            Ok::<_, io::Error>(keys)
        };
        match tokio::time::timeout(HELLO_TIMEOUT, handshake).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "veil: no hello in time")),
        }
    }

    /// Holds a refused connection from `from`: reads and discards, sending nothing, until its
    /// hold time after `arrived` or the peer's end.
    pub async fn hold<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        arrived: tokio::time::Instant,
        from: Option<IpAddr>,
    ) {
        hold(stream, arrived + self.hold_time(from, unix_now())).await;
    }

    /// [`Server::handshake`], then [`Server::hold`] if it was refused.
    pub async fn accept<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(
        &self,
        mut stream: S,
        arrived: tokio::time::Instant,
        from: Option<IpAddr>,
    ) -> io::Result<VeilStream<S>> {
        match self.handshake(&mut stream).await {
            Ok(keys) => Ok(VeilStream::new(stream, keys, Vec::new())),
            Err(e) => {
                self.hold(&mut stream, arrived, from).await;
                Err(e)
            }
        }
    }
}

/// A source's share of the pending handshakes: an IPv4 address, an IPv6 /64.
fn source_of(ip: IpAddr) -> [u8; 8] {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            [4, 0, 0, 0, o[0], o[1], o[2], o[3]]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]
        }
    }
}

/// Handshakes pending per source.
#[derive(Default)]
struct Sources(Mutex<std::collections::HashMap<[u8; 8], usize>>);

/// One pending handshake of a source, released when dropped.
struct SourceSlot(Arc<Sources>, [u8; 8]);

impl Sources {
    fn take(this: &Arc<Sources>, ip: IpAddr) -> Option<SourceSlot> {
        let key = source_of(ip);
        let mut map = this.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= MAX_PENDING_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot(Arc::clone(this), key))
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.0.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// Reads and discards until `until` or the peer's end, sending nothing.
async fn hold<S: AsyncRead + Unpin>(stream: &mut S, until: tokio::time::Instant) {
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout_at(until, drain).await;
}

/// The veil transport: dials `veil/IP:PORT?k=KEY` addresses; with a server key, also
/// listens.
pub struct VeilTransport {
    server: Option<Arc<Server>>,
}

impl std::fmt::Debug for VeilTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VeilTransport").field("server", &self.server.is_some()).finish()
    }
}

impl VeilTransport {
    /// Dials only.
    pub fn client() -> Self {
        VeilTransport { server: None }
    }

    /// Dials, and listens with `key`.
    pub fn with_server(key: ServerKey) -> Self {
        VeilTransport { server: Some(Arc::new(Server::new(key))) }
    }
}

struct VeilListener {
    streams: tokio::sync::mpsc::Receiver<Incoming>,
    acceptor: tokio::task::JoinHandle<()>,
    local: String,
}

impl Drop for VeilListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl Listener for VeilListener {
    fn local_addr(&self) -> String {
        self.local.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>> {
        Box::pin(async move {
            self.streams.recv().await.ok_or_else(|| io::Error::other("the transport stopped"))
        })
    }
}

/// Accepts TCP connections and runs each handshake in a task of its own (at most
/// [`MAX_PENDING`] at once, [`MAX_PENDING_PER_SOURCE`] from one source), handing the good
/// ones over and holding the refused ones apart (at most [`MAX_HELD`]), so neither a flood
/// of idle connections from a few hosts nor one of probes locks honest clients out.
async fn run_listener(
    listener: TcpListener,
    server: Arc<Server>,
    tx: tokio::sync::mpsc::Sender<Incoming>,
) {
    let pending = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING));
    let held = Arc::new(tokio::sync::Semaphore::new(MAX_HELD));
    let sources = Arc::new(Sources::default());
    while !tx.is_closed() {
        let Ok((mut stream, remote)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let arrived = tokio::time::Instant::now();
        let from = remote.ip();
        // Full: closed at once (an honest client retries; its source is not the one flooding).
        let Some(slot) = Sources::take(&sources, from) else { continue };
        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else { continue };
        let (server, tx, held) = (Arc::clone(&server), tx.clone(), Arc::clone(&held));
        tokio::spawn(async move {
            if stream.set_nodelay(true).is_err() {
                return;
            }
            let outcome = server.handshake(&mut stream).await;
            drop((permit, slot));
            match outcome {
                Ok(keys) => {
                    let s = VeilStream::new(stream, keys, Vec::new());
                    let _ = tx.send(Incoming { stream: Box::new(s), remote: Some(from) }).await;
                }
                Err(_) => {
                    if let Ok(_held) = held.try_acquire_owned() {
                        server.hold(&mut stream, arrived, Some(from)).await;
                    }
                }
            }
        });
    }
}

impl Transport for VeilTransport {
    fn name(&self) -> &'static str {
        "veil"
    }

    fn dial(&self, addr: &str) -> BoxFuture<'_, io::Result<BoxStream>> {
        let target = VeilAddr::parse(addr);
        Box::pin(async move {
            let target = target?;
            let dial = async {
                let stream = TcpStream::connect(target.endpoint).await?;
                stream.set_nodelay(true)?;
                client(stream, &target.key).await
            };
            match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
                Ok(s) => Ok(Box::new(s?) as BoxStream),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "veil dial")),
            }
        })
    }

    fn listen(&self, addr: &str) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        let bind = addr.parse::<SocketAddr>();
        let server = self.server.clone();
        Box::pin(async move {
            let bind = bind.map_err(|_| bad_addr("listen at IP:PORT"))?;
            let server = server.ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "this transport was set up to dial only")
            })?;
            let listener = TcpListener::bind(bind).await?;
            let local = format!("veil/{}", server.addr(listener.local_addr()?));
            let (tx, streams) = tokio::sync::mpsc::channel(16);
            let acceptor = tokio::spawn(run_listener(listener, server, tx));
            Ok(Box::new(VeilListener { streams, acceptor, local }) as Box<dyn Listener>)
        })
    }
}

#[cfg(test)]
mod tests;
