//! HTTPS camouflage: the tunnel is an ordinary-looking TLS 1.3 connection to an ordinary web
//! server (`https/IP:PORT?name=…&pin=…&key=…`, see [`HttpsAddr`]).
//!
//! - The client's TLS ClientHello and HTTP requests are a current Chromium's (BoringSSL with a
//!   maintained emulation profile). It loads `/` like a browser, checks the server
//!   certificate's pin, and only then asks for a WebSocket-style upgrade on a path only
//!   holders of the node's secret can form (an hour-bound, single-use token). After the `101`
//!   the connection carries raw session bytes.
//! - The server is a web server: without the secret you get the decoy site ([`Decoy`]) with
//!   nginx's headers and error pages, whatever you send. It terminates TLS itself, or runs
//!   plain HTTP behind a reverse proxy that does ([`HttpsServerConfig::behind_proxy`]).

mod addr;
pub(crate) mod client;
mod decoy;
mod http1;
pub(crate) mod meek;
mod parse;
mod tls;
pub(crate) mod token;

pub use addr::{HttpsAddr, valid_tls_name};
pub use client::{DIAL_TIMEOUT, PROFILE, emulation};
pub use decoy::{Decoy, MAX_FILE, WELCOME_MTIME};
pub use http1::{
    HEAD_TIMEOUT, KEEPALIVE_TIMEOUT, LINGERING_TIME, LINGERING_TIMEOUT, MAX_BODY, MAX_HEAD,
    MAX_REQUESTS, Prefixed, ServeCtx, civil_date, http_date, serve,
};
pub use tls::{ServerCert, der_pin};
pub use token::{path_prefix, request_key, upgrade_path};

use crate::{BoxFuture, BoxStream, Incoming, Listener, Transport};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Connections served at once before their tunnel is open (TLS handshakes and decoy
/// requests); more are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections from one source (an IPv4 address, an IPv6 /64) served at once before their
/// tunnel is open, so one host cannot take every slot; more are closed at once. Behind a
/// reverse proxy every connection comes from the proxy, and there is no such cap.
pub const MAX_PER_SOURCE: usize = 64;
/// Opened tunnels waiting for the node to take them.
const BACKLOG: usize = 64;
/// How long an opened tunnel waits for the node to take it before it is dropped.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// How a node serves the HTTPS transport.
#[derive(Clone)]
pub struct HttpsServerConfig {
    /// The transport secret clients must prove (from the node's addresses).
    pub secret: [u8; 32],
    /// The host name the node answers for (certificate name, advertised SNI).
    pub tls_name: String,
    /// The certificate, or `None` when a reverse proxy in front terminates TLS.
    pub cert: Option<ServerCert>,
    /// The pin advertised in the node's addresses: the certificate's own, or the front
    /// proxy's when there is one.
    pub pin: [u8; 32],
    /// What strangers get.
    pub decoy: Decoy,
}

impl std::fmt::Debug for HttpsServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the secret nor the name belongs in a log line.
        f.debug_struct("HttpsServerConfig").field("terminates_tls", &self.cert.is_some()).finish()
    }
}

impl HttpsServerConfig {
    /// The node terminates TLS with `cert` (generate one with [`ServerCert::generate`]).
    pub fn new(
        secret: [u8; 32],
        tls_name: &str,
        cert: ServerCert,
        decoy: Decoy,
    ) -> io::Result<Self> {
        let pin = cert.pin()?;
        Self::checked(secret, tls_name, Some(cert), pin, decoy)
    }

    /// The node speaks plain HTTP behind a reverse proxy that terminates TLS for `tls_name`
    /// with a certificate whose pin is `front_pin`, and passes upgrades on the secret path
    /// (see [`path_prefix`]) to the node.
    pub fn behind_proxy(
        secret: [u8; 32],
        tls_name: &str,
        front_pin: [u8; 32],
        decoy: Decoy,
    ) -> io::Result<Self> {
        Self::checked(secret, tls_name, None, front_pin, decoy)
    }

    fn checked(
        secret: [u8; 32],
        tls_name: &str,
        cert: Option<ServerCert>,
        pin: [u8; 32],
        decoy: Decoy,
    ) -> io::Result<Self> {
        if !valid_tls_name(tls_name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the TLS name must be a DNS host name",
            ));
        }
        Ok(HttpsServerConfig { secret, tls_name: tls_name.to_ascii_lowercase(), cert, pin, decoy })
    }
}

struct Server {
    config: HttpsServerConfig,
    acceptor: Option<btls::ssl::SslAcceptor>,
    ctx: ServeCtx,
}

/// The HTTPS camouflage transport (`https`). Without a server configuration it only dials.
#[derive(Clone, Default)]
pub struct HttpsTransport {
    server: Option<Arc<Server>>,
}

impl std::fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsTransport").field("serves", &self.server.is_some()).finish()
    }
}

impl HttpsTransport {
    /// A transport that dials only.
    pub fn client() -> Self {
        Self::default()
    }

    /// A transport that dials and serves as `config` says.
    pub fn with_server(config: HttpsServerConfig) -> io::Result<Self> {
        let acceptor = config.cert.as_ref().map(ServerCert::acceptor).transpose()?;
        let ctx = ServeCtx::new(config.secret, config.decoy.clone());
        Ok(HttpsTransport { server: Some(Arc::new(Server { config, acceptor, ctx })) })
    }
}

struct HttpsListener {
    local: String,
    incoming: mpsc::Receiver<Incoming>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener for HttpsListener {
    fn local_addr(&self) -> String {
        self.local.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>> {
        Box::pin(async move {
            self.incoming
                .recv()
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "https listener stopped"))
        })
    }
}

/// The first byte of a TLS record (a handshake) or of an SSLv2 hello: nginx starts TLS on
/// these and takes anything else as plain HTTP sent to its TLS port.
fn starts_tls(first: u8) -> bool {
    first == 0x16 || first & 0x80 != 0
}

async fn handle(
    tcp: TcpStream,
    remote: IpAddr,
    server: Arc<Server>,
    ctx: ServeCtx,
    tx: mpsc::Sender<Incoming>,
) {
    let opened = tokio::time::Instant::now();
    // Terminating TLS ourselves, the TCP peer is the client (a meek session it opens is its).
    let mut ctx = ctx;
    if server.acceptor.is_some() {
        ctx.peer = Some(remote);
    }
    let _ = tcp.set_nodelay(true);
    let tunnel: Option<BoxStream> = match &server.acceptor {
        Some(acceptor) => {
            let mut first = [0u8; 1];
            let peeked = tokio::time::timeout_at(opened + HEAD_TIMEOUT, tcp.peek(&mut first));
            if !matches!(peeked.await, Ok(Ok(1))) {
                return;
            }
            if !starts_tls(first[0]) {
                let _ = http1::serve_conn(tcp, &ctx, http1::Mode::PlainOnTlsPort, opened).await;
                return;
            }
            let Ok(ssl) = btls::ssl::Ssl::new(acceptor.context()) else { return };
            let Ok(mut tls) = tokio_btls::SslStream::new(ssl, tcp) else { return };
            let handshake = Pin::new(&mut tls).accept();
            if !matches!(
                tokio::time::timeout_at(opened + HEAD_TIMEOUT, handshake).await,
                Ok(Ok(()))
            ) {
                return;
            }
            match http1::serve_conn(tls, &ctx, http1::Mode::Http, opened).await {
                Ok(Some(s)) => Some(Box::new(s)),
                _ => None,
            }
        }
        None => match http1::serve_conn(tcp, &ctx, http1::Mode::Http, opened).await {
            Ok(Some(s)) => Some(Box::new(s)),
            _ => None,
        },
    };
    if let Some(stream) = tunnel {
        // Behind a proxy the TCP peer is the proxy, not the client.
        let remote = server.acceptor.is_some().then_some(remote);
        // A node that does not take tunnels must not pile up connections here.
        let _ = tokio::time::timeout(HANDOVER_TIMEOUT, tx.send(Incoming { stream, remote })).await;
    }
}

/// The source a connection is counted against: its IPv4 address, or its IPv6 /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

async fn accept_loop(
    listener: TcpListener,
    server: Arc<Server>,
    ctx: ServeCtx,
    tx: mpsc::Sender<Incoming>,
) {
    let mut conns = JoinSet::new();
    let mut per_source: HashMap<IpAddr, usize> = HashMap::new();
    // Behind a proxy every connection is the proxy's.
    let capped = server.acceptor.is_some();
    let mut sweep = tokio::time::interval(meek::SESSION_IDLE / 3);
    loop {
        tokio::select! {
            _ = sweep.tick() => {
                if let Some(sessions) = &ctx.meek {
                    sessions.sweep();
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    let source = source_of(remote.ip());
                    let open = per_source.get(&source).copied().unwrap_or(0);
                    if conns.len() < MAX_CONNECTIONS && (!capped || open < MAX_PER_SOURCE) {
                        *per_source.entry(source).or_default() += 1;
                        let task = handle(tcp, remote.ip(), server.clone(), ctx.clone(), tx.clone());
                        conns.spawn(async move {
                            task.await;
                            source
                        });
                    }
                }
                // Out of descriptors or similar: do not spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                // A task that panicked is not counted back; that leaks one slot, not more.
                if let Ok(source) = done {
                    if let Some(n) = per_source.get_mut(&source) {
                        *n -= 1;
                        if *n == 0 {
                            per_source.remove(&source);
                        }
                    }
                }
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

impl Transport for HttpsTransport {
    fn name(&self) -> &'static str {
        "https"
    }

    fn dial(&self, addr: &str) -> BoxFuture<'_, io::Result<BoxStream>> {
        let parsed = HttpsAddr::parse(addr);
        Box::pin(async move { client::dial(&parsed?).await })
    }

    /// Listens at `IP:PORT`; the listener's address carries the name, pin and secret.
    fn listen(&self, addr: &str) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        let server = self.server.clone();
        let addr = addr.to_owned();
        Box::pin(async move {
            let server = server.ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "https: no server configuration")
            })?;
            let bind: SocketAddr = addr.parse().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "https: listen on IP:PORT")
            })?;
            let listener = TcpListener::bind(bind).await?;
            let public = HttpsAddr {
                socket: listener.local_addr()?,
                name: server.config.tls_name.clone(),
                pin: server.config.pin,
                key: server.config.secret,
            };
            let (tx, incoming) = mpsc::channel(BACKLOG);
            let ctx = server.ctx.clone().at(public.socket).with_meek(tx.clone());
            let task = tokio::spawn(accept_loop(listener, server, ctx, tx));
            Ok(Box::new(HttpsListener { local: format!("https/{public}"), incoming, task })
                as Box<dyn Listener>)
        })
    }
}
