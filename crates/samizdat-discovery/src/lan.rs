//! LAN discovery over multicast DNS, for when the internet is shut down but the local network
//! (a campus, an office, a mesh of home routers) still works.
//!
//! On the wire this is ordinary DNS-SD over mDNS (RFC 6762, RFC 6763): UDP port 5353, IPv4
//! group 224.0.0.251, IP TTL 255. A browse is a PTR query for the service type
//! ([`LanConfig::service`], `_samizdat._udp.local` by default); every node that announced
//! answers by multicast with a PTR, an SRV and a TXT record whose strings carry its signed
//! [`PeerRecord`] ([`service`] describes the records). Nothing here trusts the LAN: each
//! record is verified (signature and age) and the set collected is bounded.
//!
//! The layers: [`dns`] is the strict, bounded message codec; [`service`] maps records to
//! DNS-SD and holds the sans-IO [`Responder`] and
//! [`Browse`]; [`LanDiscovery`] owns the sockets and the responder task.
//!
//! # What the service name gives away
//!
//! Anyone on the LAN sees who browses and who answers, and for which service type. The default
//! `_samizdat._udp.local` names the software outright: a network operator who lists mDNS
//! traffic learns which machines run Samizdat. A generic type (e.g. `_http._tcp.local` or
//! `_device-info._tcp.local`) blends into the chatter of printers and phones, at the cost of
//! talking to those services' browsers: ordinary clients browsing that type will see our
//! instances (with opaque names and TXT strings) and may try to connect to the SRV port. All
//! nodes of one network must use the same type, so it travels with invites like the rest of
//! the configuration. The TXT strings (base64 of a signed record with the node's public key and
//! addresses) are not hidden by any name: this method is for LANs where being found by peers
//! matters more than not being seen.
//!
//! # Bounds
//!
//! - A responder answers only queries for its service or instance, with one datagram of at
//!   most [`MAX_ANSWER_LEN`](service::MAX_ANSWER_LEN) bytes, multicast at most once per second
//!   however many queries arrive (no amplification, and no unicast replies to spoofable
//!   sources). Datagrams that do not decode are counted and dropped; the task goes on.
//! - A discover listens for [`LanConfig::window`] only, reads datagrams of at most
//!   [`dns::MAX_MESSAGE_LEN`] bytes, and keeps at most [`LanConfig::max_records`] records
//!   (a random sample once full, see [`Browse`]).
//! - The sockets are bound to the group address, so (on Linux) the kernel delivers only
//!   datagrams sent to the group: a unicast packet from off the link never reaches the parser.
//!
//! # Not done
//!
//! IPv6 (`ff02::fb`); joining every interface (one [`LanDiscovery`] serves one interface, the
//! configured one or the kernel's default for multicast); checking that a packet's IP TTL is
//! 255 (RFC 6762 §11), which needs control messages that the safe socket API does not give;
//! goodbye packets when a node stops.

pub mod dns;
pub mod service;

use crate::{BoxFuture, Discovery, DiscoveryError, PeerRecord, unix_now};
use dns::Name;
use rand_core::OsRng;
use samizdat_identity::NodeId;
use service::{Browse, Browsed, Responder};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The method's name in reports.
pub const NAME: &str = "mdns";
/// The mDNS port.
pub const MDNS_PORT: u16 = 5353;
/// The mDNS IPv4 multicast group.
pub const MDNS_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// The default service type. It names the software: see the [module docs](self).
pub const DEFAULT_SERVICE: &str = "_samizdat._udp.local";
/// The IP TTL of every datagram sent (RFC 6762 §11 requires 255).
pub const MULTICAST_TTL: u32 = 255;
/// A browse sends its query again after this long (with known answers), if its window is
/// longer (RFC 6762 §5.2: at least one second between the first two queries).
pub const REQUERY_AFTER: Duration = Duration::from_secs(1);

/// Settings of a [`LanDiscovery`].
///
/// ```
/// use samizdat_discovery::lan::{LanConfig, service::service_name};
///
/// let mut config = LanConfig::default();
/// config.service = service_name("_device-info._tcp.local").unwrap(); // less telling
/// config.interface = "192.168.1.20".parse().unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LanConfig {
    /// The local IPv4 address of the interface to join the group on and send from (default
    /// 0.0.0.0: the kernel's choice, the interface of the route to the group).
    pub interface: Ipv4Addr,
    /// The UDP port (default [`MDNS_PORT`]; tests use another to stay clear of avahi).
    pub port: u16,
    /// The multicast group (default [`MDNS_GROUP_V4`]).
    pub group: Ipv4Addr,
    /// The DNS-SD service type browsed and announced (default [`DEFAULT_SERVICE`]); build it
    /// with [`service::service_name`].
    pub service: Name,
    /// How long a discover collects answers (default 1.5 s: a responder that answered someone
    /// else less than a second ago answers again within a second).
    pub window: Duration,
    /// The most records one discover keeps (default 64).
    pub max_records: usize,
    /// The oldest record accepted, and announced (default two hours).
    pub max_age: Duration,
}

impl Default for LanConfig {
    fn default() -> Self {
        LanConfig {
            interface: Ipv4Addr::UNSPECIFIED,
            port: MDNS_PORT,
            group: MDNS_GROUP_V4,
            // The constant is a valid service name.
            service: service::service_name(DEFAULT_SERVICE).unwrap_or_default(),
            window: Duration::from_millis(1500),
            max_records: 64,
            max_age: Duration::from_secs(2 * 3600),
        }
    }
}

struct Running {
    updates: watch::Sender<PeerRecord>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    own: Option<NodeId>,
    responder: Option<Running>,
}

/// The mDNS LAN method (see the [module docs](self)).
///
/// The responder task starts with the first [`LanDiscovery::announce_at`] and stops when the
/// `LanDiscovery` is dropped.
pub struct LanDiscovery {
    config: LanConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for LanDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanDiscovery").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Drop for LanDiscovery {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = state.responder.take() {
            running.task.abort();
        }
    }
}

impl LanDiscovery {
    /// A LAN method with `config`. Opens no socket yet: announcing starts the responder,
    /// each discover opens its own socket.
    pub fn new(config: LanConfig) -> Self {
        LanDiscovery { config, state: Mutex::new(State::default()) }
    }

    /// The settings in use.
    pub fn config(&self) -> &LanConfig {
        &self.config
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the responder task is running.
    pub fn is_responding(&self) -> bool {
        self.state().responder.as_ref().is_some_and(|r| !r.task.is_finished())
    }

    /// Makes `record` (this node's own, verified as of `now`) the one answered with, and
    /// announces it once unsolicited. The first call opens the socket and starts the
    /// responder task; later calls replace the record.
    ///
    /// The record should list addresses reachable from the LAN. Others refuse it once it is
    /// older than their `max_age`, so announce a freshly signed one well before that.
    ///
    /// Fails with [`DiscoveryError::Unreachable`] if the socket cannot join the group,
    /// [`DiscoveryError::Announce`] if the answer would not fit one datagram.
    pub async fn announce_at(&self, record: &PeerRecord, now: u64) -> Result<(), DiscoveryError> {
        record.verify(now, self.config.max_age)?;
        let responder = Responder::new(self.config.service.clone(), record)
            .map_err(|e| DiscoveryError::Announce { method: NAME, detail: e.to_string() })?;
        let mut state = self.state();
        state.own = Some(record.node_id());
        if let Some(running) = &state.responder {
            if !running.task.is_finished() {
                running.updates.send_replace(record.clone());
                return Ok(());
            }
        }
        let socket = open_socket(&self.config)?;
        let (updates, rx) = watch::channel(record.clone());
        let dest = SocketAddrV4::new(self.config.group, self.config.port);
        let task = tokio::spawn(respond(socket, responder, rx, dest));
        state.responder = Some(Running { updates, task });
        Ok(())
    }

    /// Browses the LAN as of `now` for [`LanConfig::window`]: sends a query (and again after
    /// [`REQUERY_AFTER`], listing what it has), collects the answers, and returns the verified
    /// records, one per node, without our own.
    ///
    /// Finding nobody is not an error. Fails with [`DiscoveryError::Unreachable`] if the socket
    /// cannot join the group or the query cannot be sent.
    pub async fn discover_at(&self, now: u64) -> Result<Browsed, DiscoveryError> {
        let socket = open_socket(&self.config)?;
        let own = self.state().own;
        let config = &self.config;
        let mut browse =
            Browse::new(config.service.clone(), own, now, config.max_age, config.max_records);
        let dest = SocketAddrV4::new(config.group, config.port);
        send_query(&socket, &browse, dest).await?;
        let start = Instant::now();
        let deadline = start + config.window;
        let mut requery = (config.window > REQUERY_AFTER).then_some(start + REQUERY_AFTER);
        let mut buf = vec![0u8; dns::MAX_MESSAGE_LEN + 1];
        loop {
            tokio::select! {
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, _)) => browse.handle_input(&buf[..n], &mut OsRng),
                    Err(e) => tracing::debug!(error = %e, "mdns: receive failed"),
                },
                () = sleep_until(requery) => {
                    requery = None;
                    send_query(&socket, &browse, dest).await?;
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        Ok(browse.finish())
    }
}

async fn send_query(
    socket: &UdpSocket,
    browse: &Browse,
    dest: SocketAddrV4,
) -> Result<(), DiscoveryError> {
    let unreachable = |detail: String| DiscoveryError::Unreachable { method: NAME, detail };
    let query = browse.query().map_err(|e| unreachable(format!("building the query: {e}")))?;
    socket
        .send_to(&query, dest)
        .await
        .map_err(|e| unreachable(format!("sending the query to {dest}: {e}")))?;
    Ok(())
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A UDP socket bound to `group:port` (so only datagrams sent to the group arrive), shared
/// with other mDNS sockets on the host (SO_REUSEADDR, SO_REUSEPORT), joined to the group on
/// the configured interface, sending there with TTL 255 and loopback on (so nodes on one host
/// hear each other).
fn open_socket(config: &LanConfig) -> Result<UdpSocket, DiscoveryError> {
    let unreachable = |what: &str, e: std::io::Error| DiscoveryError::Unreachable {
        method: NAME,
        detail: format!("{what} (group {}, interface {}): {e}", config.group, config.interface),
    };
    if !config.group.is_multicast() {
        return Err(DiscoveryError::Unreachable {
            method: NAME,
            detail: format!("{} is not a multicast group", config.group),
        });
    }
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuse_port(true)?;
    let bind = SocketAddr::V4(SocketAddrV4::new(config.group, config.port));
    socket.bind(&SockAddr::from(bind)).or_else(|_| {
        // Systems that cannot bind a multicast address take the wildcard instead.
        let any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, config.port));
        socket.bind(&SockAddr::from(any))
    })?;
    socket
        .join_multicast_v4(&config.group, &config.interface)
        .map_err(|e| unreachable("cannot join the multicast group", e))?;
    socket
        .set_multicast_if_v4(&config.interface)
        .map_err(|e| unreachable("cannot send on the interface", e))?;
    socket.set_multicast_ttl_v4(MULTICAST_TTL)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket.into())?)
}

/// The responder task: feeds datagrams to the [`Responder`] and multicasts what it says, until
/// the [`LanDiscovery`] is dropped.
async fn respond(
    socket: UdpSocket,
    mut responder: Responder,
    mut updates: watch::Receiver<PeerRecord>,
    dest: SocketAddrV4,
) {
    let mut buf = vec![0u8; dns::MAX_MESSAGE_LEN + 1];
    loop {
        if let Some(answer) = responder.poll_transmit(Instant::now().into_std()) {
            if let Err(e) = socket.send_to(answer, dest).await {
                tracing::debug!(error = %e, "mdns: sending an answer failed");
            }
        }
        let wake = responder.poll_timeout().map(Instant::from_std);
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    let input = responder.handle_input(&buf[..n]);
                    tracing::trace!(?input, %from, "mdns: datagram");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "mdns: receive failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            changed = updates.changed() => {
                if changed.is_err() {
                    return;
                }
                let record = updates.borrow_and_update().clone();
                if let Err(e) = responder.set_record(&record) {
                    tracing::warn!(error = %e, "mdns: cannot announce the new record");
                }
            }
            () = sleep_until(wake) => {}
        }
    }
}

impl Discovery for LanDiscovery {
    fn name(&self) -> &'static str {
        NAME
    }

    fn announce<'a>(&'a self, record: &'a PeerRecord) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(async move { self.announce_at(record, unix_now()).await })
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<PeerRecord>, DiscoveryError>> {
        Box::pin(async move { self.discover_at(unix_now()).await.map(|b| b.records) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use samizdat_identity::Identity;

    #[tokio::test]
    async fn a_group_that_is_not_multicast_is_unreachable_and_the_method_says_what_it_is() {
        let c = LanConfig { group: Ipv4Addr::new(192, 0, 2, 1), ..LanConfig::default() };
        let lan = LanDiscovery::new(c);
        assert_eq!(lan.config().group, Ipv4Addr::new(192, 0, 2, 1));
        assert!(format!("{lan:?}").starts_with("LanDiscovery"));
        let err = lan.discover_at(unix_now()).await.unwrap_err();
        assert!(matches!(err, DiscoveryError::Unreachable { method: NAME, .. }), "{err}");
        assert!(err.to_string().contains("not a multicast group"));
        let id = Identity::from_secret_bytes(&[4; 32]).unwrap();
        let record = PeerRecord::sign(&id, &["tcp/127.0.0.1:7001"], unix_now()).unwrap();
        assert!(matches!(lan.announce(&record).await, Err(DiscoveryError::Unreachable { .. })));
        assert!(!lan.is_responding());
    }

    #[tokio::test]
    async fn the_responder_takes_new_records_survives_send_errors_and_stops_with_its_owner() {
        // A plain unicast socket: the task's loop does not care where datagrams come from.
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to_it = socket.local_addr().unwrap();
        let id = Identity::from_secret_bytes(&[5; 32]).unwrap();
        let now = unix_now();
        let record = PeerRecord::sign(&id, &["tcp/127.0.0.1:7001"], now).unwrap();
        let responder = Responder::new(LanConfig::default().service, &record).unwrap();
        let (updates, rx) = watch::channel(record);
        // Port 0 cannot be sent to: the unsolicited announcement fails and is only logged.
        let dest = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0);
        let task = tokio::spawn(respond(socket, responder, rx, dest));
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        peer.send_to(b"not dns", to_it).await.unwrap();
        let newer = PeerRecord::sign(&id, &["tcp/127.0.0.1:7002"], now + 1).unwrap();
        updates.send_replace(newer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!task.is_finished(), "garbage and a new record keep it running");
        drop(updates);
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_receive_error_does_not_stop_the_responder() {
        // A socket connected to a closed port: the announcement sent there comes back as an
        // ICMP error, which the next receive reports.
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let SocketAddr::V4(dest) = closed else { unreachable!("bound to IPv4") };
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(closed).await.unwrap();
        let id = Identity::from_secret_bytes(&[6; 32]).unwrap();
        let record = PeerRecord::sign(&id, &["tcp/127.0.0.1:7003"], unix_now()).unwrap();
        let responder = Responder::new(LanConfig::default().service, &record).unwrap();
        let (updates, rx) = watch::channel(record);
        let task = tokio::spawn(respond(socket, responder, rx, dest));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!task.is_finished(), "still running after the error");
        drop(updates);
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    #[test]
    fn defaults() {
        let c = LanConfig::default();
        assert_eq!(c.service.to_string(), DEFAULT_SERVICE);
        assert_eq!((c.group, c.port), (MDNS_GROUP_V4, MDNS_PORT));
        assert_eq!(c.interface, Ipv4Addr::UNSPECIFIED);
        assert!(c.window > REQUERY_AFTER && c.window < Duration::from_secs(2));
        assert_eq!(c.max_records, 64);
        let lan = LanDiscovery::new(c);
        assert_eq!(lan.name(), "mdns");
        assert!(!lan.is_responding());
    }
}
