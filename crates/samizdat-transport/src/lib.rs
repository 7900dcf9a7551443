//! Pluggable transports: every way of carrying a byte stream between peers sits behind one
//! [`Transport`] trait (dial and listen, giving [`BoxStream`]s), chosen by the transport name
//! of a peer address (`tcp/127.0.0.1:4000`, `https/127.0.0.1:443?name=…`, `mem/alice`).
//!
//! The session layer above never knows which transport carries it, so adding HTTPS camouflage,
//! HTTP request/response, DNS shapes or an external pluggable transport means adding one module
//! here that implements [`Transport`] and registering it in [`Transports`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! use samizdat_transport::{MemoryTransport, Transports};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! let mut transports = Transports::new();
//! transports.register(MemoryTransport::new());
//! let mut listener = transports.listen("mem/server").await?;
//! let dial = transports.dial("mem/server");
//! let (client, server) = tokio::join!(dial, listener.accept());
//! let (mut client, mut server) = (client?, server?.stream);
//! client.write_all(b"hi").await?;
//! let mut buf = [0u8; 2];
//! server.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"hi");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod https;
pub mod meek;
mod memory;
pub mod pt;
mod tcp;
pub mod veil;

pub use https::HttpsTransport;
pub use meek::MeekTransport;
pub use memory::MemoryTransport;
pub use pt::PtTransport;
pub use tcp::TcpTransport;
pub use veil::VeilTransport;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// A future returned by transports.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A bidirectional byte stream.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A boxed byte stream from any transport.
pub type BoxStream = Box<dyn Stream>;

/// An accepted inbound stream.
pub struct Incoming {
    /// The stream.
    pub stream: BoxStream,
    /// The remote IP address, where the transport has one (for per-address limits; never
    /// logged).
    pub remote: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Incoming")
    }
}

/// Accepts inbound streams.
pub trait Listener: Send {
    /// The full address (`name/address`) peers can dial to reach this listener.
    fn local_addr(&self) -> String;
    /// Waits for the next inbound stream.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>>;
}

/// A way to carry byte streams between peers.
pub trait Transport: Send + Sync + 'static {
    /// The name used as the prefix of peer addresses (`tcp`, `mem`, ...).
    fn name(&self) -> &'static str;
    /// Opens a stream to `addr` (the part after `name/`).
    fn dial(&self, addr: &str) -> BoxFuture<'_, io::Result<BoxStream>>;
    /// Starts accepting streams at `addr` (the part after `name/`).
    fn listen(&self, addr: &str) -> BoxFuture<'_, io::Result<Box<dyn Listener>>>;
}

/// The set of transports a node can use, by name.
#[derive(Clone, Default)]
pub struct Transports {
    by_name: BTreeMap<&'static str, Arc<dyn Transport>>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

fn split(full: &str) -> io::Result<(&str, &str)> {
    full.split_once('/').ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "address must look like transport/address")
    })
}

impl Transports {
    /// No transports.
    pub fn new() -> Self {
        Self::default()
    }

    /// TCP only: the default for real nodes.
    pub fn tcp() -> Self {
        let mut t = Self::new();
        t.register(TcpTransport);
        t
    }

    /// Adds (or replaces) a transport.
    pub fn register<T: Transport>(&mut self, transport: T) {
        self.by_name.insert(transport.name(), Arc::new(transport));
    }

    fn get(&self, name: &str) -> io::Result<&Arc<dyn Transport>> {
        self.by_name.get(name).ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, format!("no transport named {name:?}"))
        })
    }

    /// Dials a full address such as `tcp/127.0.0.1:4000`.
    pub async fn dial(&self, full: &str) -> io::Result<BoxStream> {
        let (name, addr) = split(full)?;
        self.get(name)?.dial(addr).await
    }

    /// Listens on a full address such as `tcp/127.0.0.1:0`.
    pub async fn listen(&self, full: &str) -> io::Result<Box<dyn Listener>> {
        let (name, addr) = split(full)?;
        self.get(name)?.listen(addr).await
    }
}
