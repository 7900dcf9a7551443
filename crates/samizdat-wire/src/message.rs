//! The message set of protocol version 1.

use crate::codec::{DecodeError, Reader, Writer};
use std::fmt;

/// The protocol version this code speaks.
pub const PROTOCOL_VERSION: u16 = 3;
/// Bytes in one chunk group: the unit of verification, transfer and resumption.
pub const GROUP_SIZE: usize = 32 * 1024;
/// Largest encoded message (plaintext) a peer may send.
pub const MAX_MESSAGE_LEN: usize = GROUP_SIZE + 1024;
/// Most peer addresses in one `Hello`.
pub const MAX_ADDRS: usize = 64;
/// Longest peer address, in bytes.
pub const MAX_PEER_ADDR_LEN: usize = 255;
/// Most signed peer records in one [`PeersMsg::Records`].
pub const MAX_PEER_RECORDS: usize = 16;
/// Longest encoded peer record carried in [`PeersMsg::Records`] (a `samizdat-identity`
/// `PeerRecord` is at most 622 bytes).
pub const MAX_PEER_RECORD_LEN: usize = 640;
/// Longest user agent string, in bytes.
pub const MAX_USER_AGENT_LEN: usize = 64;
/// Most leaf hashes in one `Outboard` message.
pub const MAX_LEAVES_PER_MESSAGE: usize = 1000;
/// Most chunk groups one `GetGroups` may ask for.
pub const MAX_GROUPS_PER_REQUEST: u32 = 256;

/// General feature flags (bit positions in [`Hello::features`]).
pub mod features {
    /// Serves content (answers `GetOutboard`/`GetGroups`).
    pub const SERVE_CONTENT: u32 = 1 << 0;
    /// Answers `GetAddr` with signed peer records ([`super::PeersMsg::Records`]).
    pub const PEER_EXCHANGE: u32 = 1 << 1;
    /// Speaks the DHT protocol ([`super::Message::Dht`]); only peers that announce it are sent
    /// DHT messages.
    pub const DHT: u32 = 1 << 2;
    /// Every feature this version implements.
    pub const ALL: u32 = SERVE_CONTENT | PEER_EXCHANGE | DHT;
}

/// Privacy feature flags (bit positions in [`Hello::privacy`]).
pub mod privacy {
    /// Pads messages to hide their true sizes (reserved; negotiated but not yet applied).
    pub const PADDING: u32 = 1 << 0;
    /// Adds timing jitter (reserved; negotiated but not yet applied).
    pub const JITTER: u32 = 1 << 1;
}

/// The BLAKE3 root hash of an encrypted content blob: what a share link points to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentRoot(pub [u8; 32]);

impl fmt::Debug for ContentRoot {
    // Roots identify content: print only a short prefix so logs never carry a full handle.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentRoot({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// A transport address of a peer, such as `tcp/127.0.0.1:4000` or `mem/7`: the transport name,
/// a slash, and a transport-specific address. Printable ASCII, at most
/// [`MAX_PEER_ADDR_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddr(String);

impl PeerAddr {
    /// Parses and validates an address.
    pub fn new(s: &str) -> Result<Self, DecodeError> {
        let field = "peer address";
        if s.len() > MAX_PEER_ADDR_LEN {
            return Err(DecodeError::TooLong { field, len: s.len(), max: MAX_PEER_ADDR_LEN });
        }
        if !s.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(DecodeError::BadText { field });
        }
        match s.split_once('/') {
            Some((t, a)) if !t.is_empty() && !a.is_empty() => Ok(PeerAddr(s.to_owned())),
            _ => Err(DecodeError::Invalid { field }),
        }
    }

    /// The transport name (before the slash).
    pub fn transport(&self) -> &str {
        self.0.split_once('/').map_or("", |(t, _)| t)
    }

    /// The transport-specific part (after the slash).
    pub fn address(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, a)| a)
    }

    /// Where the transport connects: the transport-specific part without its parameters
    /// (`127.0.0.1:443` of `https/127.0.0.1:443?name=…`).
    pub fn endpoint(&self) -> &str {
        let a = self.address();
        a.split_once('?').map_or(a, |(e, _)| e)
    }

    /// The transport's parameters after `?` (names, pins, secrets), if any.
    pub fn params(&self) -> Option<&str> {
        self.address().split_once('?').map(|(_, p)| p)
    }

    /// The whole address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PeerAddr {
    // Peer addresses are sensitive: Debug output (which reaches logs) hides them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerAddr({}/…)", self.transport())
    }
}

impl std::str::FromStr for PeerAddr {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, DecodeError> {
        PeerAddr::new(s)
    }
}

/// The first message each side sends inside a fresh session: version and feature negotiation.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version of the sender.
    pub version: u16,
    /// Sender's wall clock, seconds since the Unix epoch.
    pub timestamp: u64,
    /// General feature flags ([`features`]).
    pub features: u32,
    /// Privacy feature flags ([`privacy`]).
    pub privacy: u32,
    /// Software name; generic by default so it does not fingerprint the user.
    pub user_agent: String,
    /// Addresses where the sender accepts connections (possibly none).
    pub listen: Vec<PeerAddr>,
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("features", &self.features)
            .field("privacy", &self.privacy)
            .field("listen", &self.listen.len())
            .finish_non_exhaustive()
    }
}

/// A content locator: what peers are asked for instead of the content root. It is derived from
/// the link's key (see `samizdat_content::ContentKey::locator`), so a peer without the link can
/// neither tell what is fetched nor probe a node for a file whose root it knows.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locator(pub [u8; 32]);

impl fmt::Debug for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Locator({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// Identifies a request on one stream; the answer carries the same id.
pub type RequestId = u32;

/// Most relayed streams one link may have open through a node.
pub const MAX_RELAY_STREAMS: usize = 64;

/// Every message of protocol version 1, grouped per protocol: link upkeep at the top level,
/// then one nested enum per protocol ([`PeersMsg`], [`TransferMsg`], [`RelayMsg`]).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Version and feature negotiation; first message in each direction.
    Hello(Hello),
    /// Liveness check; answered with `Pong` carrying the same nonce.
    Ping {
        /// Echoed back.
        nonce: u64,
    },
    /// Answer to `Ping`.
    Pong {
        /// The nonce of the `Ping`.
        nonce: u64,
    },
    /// Padding or chaff: this many zero bytes, which the receiver drops (the session adds and
    /// removes these itself; see `samizdat_session::Shaping`). At most [`MAX_PADDING`].
    Padding(u32),
    /// Peer exchange.
    Peers(PeersMsg),
    /// The transfer protocol on the session's own (direct) stream.
    Transfer(TransferMsg),
    /// Streams relayed through the receiving node.
    Relay(RelayMsg),
    /// The DHT protocol: `payload` is one message of the `samizdat-dht` codec (which this
    /// crate does not interpret); `pow` is the sender's proof-of-work nonce when it offers
    /// itself as a DHT contact (a node others can dial), so the receiver can admit it.
    Dht {
        /// The sender's proof-of-work nonce, if it offers itself as a contact.
        pow: Option<u64>,
        /// One encoded DHT message (at most [`MAX_DHT_PAYLOAD`] bytes).
        payload: Vec<u8>,
    },
}

/// Largest payload of one [`Message::Padding`].
pub const MAX_PADDING: usize = 16 * 1024;

/// Largest payload of one [`Message::Dht`].
pub const MAX_DHT_PAYLOAD: usize = 16 * 1024;

/// Peer exchange messages.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeersMsg {
    /// Asks for known peers.
    GetAddr,
    /// Known peers: encoded self-certifying peer records (each signed by the key of the peer
    /// it names; this crate does not interpret them). At most [`MAX_PEER_RECORDS`], each at
    /// most [`MAX_PEER_RECORD_LEN`] bytes.
    Records {
        /// The encoded records.
        records: Vec<Vec<u8>>,
        /// Bit `i` set: the sender vouches that it dialled the node of record `i` at an
        /// address the record names and that node authenticated (the receiver may hold it to
        /// that); clear: passed on unchecked.
        vouched: u16,
    },
}

/// The transfer protocol: requests name a [`Locator`] and carry a [`RequestId`]; answers carry
/// only the request id. It runs over any stream (a direct session or a relayed stream).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferMsg {
    /// Asks for leaf hashes `first..first+count` of a blob's verification tree.
    GetOutboard {
        /// The request.
        req: RequestId,
        /// The content.
        locator: Locator,
        /// First leaf index.
        first: u32,
        /// How many leaves (at most [`MAX_LEAVES_PER_MESSAGE`]).
        count: u32,
    },
    /// Leaf hashes (BLAKE3 chaining values of each chunk group) of a blob.
    Outboard {
        /// The request answered.
        req: RequestId,
        /// Length of the whole encrypted blob in bytes, as the server claims it.
        blob_len: u64,
        /// Index of the first leaf in `leaves`.
        first: u32,
        /// The leaf chaining values.
        leaves: Vec<[u8; 32]>,
    },
    /// Asks for chunk groups `first..first+count` (at most [`MAX_GROUPS_PER_REQUEST`]).
    GetGroups {
        /// The request.
        req: RequestId,
        /// The content.
        locator: Locator,
        /// First group index.
        first: u32,
        /// How many groups.
        count: u32,
    },
    /// One chunk group of encrypted content.
    Group {
        /// The request answered.
        req: RequestId,
        /// Group index.
        index: u32,
        /// The group's bytes (at most [`GROUP_SIZE`]).
        data: Vec<u8>,
    },
    /// The sender does not have what this request asked for.
    NotFound {
        /// The request answered.
        req: RequestId,
    },
    /// Withdraws a request (only the sender's own request, by id).
    Cancel {
        /// The request withdrawn.
        req: RequestId,
    },
}

/// Relaying: a node with sessions to both ends joins a stream from one to the other. The
/// payload of [`RelayMsg::Data`] is an encoded [`TransferMsg`] of the relayed stream.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayMsg {
    /// Opens relayed stream `stream` on this link. Sent to a relay, `target` names the peer to
    /// reach; sent by a relay to that peer, `target` is the peer's own ID (the stream ends
    /// there).
    Open {
        /// The stream's number on this link (chosen by the sender).
        stream: u32,
        /// Node ID of the far end.
        target: [u8; 32],
    },
    /// Bytes of a relayed stream.
    Data {
        /// The stream.
        stream: u32,
        /// One encoded message of the stream's protocol.
        payload: Vec<u8>,
    },
    /// Closes a relayed stream (either direction; also the answer to an `Open` that failed).
    Close {
        /// The stream.
        stream: u32,
    },
}

impl fmt::Debug for Message {
    // Never print payloads, locators or addresses in full.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Hello(h) => h.fmt(f),
            Message::Ping { .. } => f.write_str("Ping"),
            Message::Pong { .. } => f.write_str("Pong"),
            Message::Padding(n) => write!(f, "Padding({n})"),
            Message::Peers(m) => m.fmt(f),
            Message::Transfer(m) => m.fmt(f),
            Message::Relay(m) => m.fmt(f),
            Message::Dht { payload, .. } => write!(f, "Dht({} bytes)", payload.len()),
        }
    }
}

impl fmt::Debug for PeersMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeersMsg::GetAddr => f.write_str("GetAddr"),
            PeersMsg::Records { records, .. } => write!(f, "Records({} records)", records.len()),
        }
    }
}

impl fmt::Debug for TransferMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferMsg::GetOutboard { req, first, count, .. } => {
                write!(f, "GetOutboard(#{req} {first}+{count})")
            }
            TransferMsg::Outboard { req, first, leaves, .. } => {
                write!(f, "Outboard(#{req} {first}+{})", leaves.len())
            }
            TransferMsg::GetGroups { req, first, count, .. } => {
                write!(f, "GetGroups(#{req} {first}+{count})")
            }
            TransferMsg::Group { req, index, data } => {
                write!(f, "Group(#{req} {index}, {} bytes)", data.len())
            }
            TransferMsg::NotFound { req } => write!(f, "NotFound(#{req})"),
            TransferMsg::Cancel { req } => write!(f, "Cancel(#{req})"),
        }
    }
}

impl fmt::Debug for RelayMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayMsg::Open { stream, .. } => write!(f, "RelayOpen({stream})"),
            RelayMsg::Data { stream, payload } => {
                write!(f, "RelayData({stream}, {} bytes)", payload.len())
            }
            RelayMsg::Close { stream } => write!(f, "RelayClose({stream})"),
        }
    }
}

mod tag {
    pub const HELLO: u8 = 0x01;
    pub const PING: u8 = 0x02;
    pub const PONG: u8 = 0x03;
    pub const PADDING: u8 = 0x07;
    pub const GET_ADDR: u8 = 0x04;
    // 0x05 was the unsigned `Addr` of protocol version 2.
    pub const RECORDS: u8 = 0x06;
    pub const GET_OUTBOARD: u8 = 0x10;
    pub const OUTBOARD: u8 = 0x11;
    pub const GET_GROUPS: u8 = 0x12;
    pub const GROUP: u8 = 0x13;
    pub const NOT_FOUND: u8 = 0x14;
    pub const CANCEL: u8 = 0x15;
    pub const RELAY_OPEN: u8 = 0x20;
    pub const RELAY_DATA: u8 = 0x21;
    pub const RELAY_CLOSE: u8 = 0x22;
    pub const DHT: u8 = 0x30;
    pub const DHT_CONTACT: u8 = 0x31;
}

fn write_addrs(w: &mut Writer<'_>, addrs: &[PeerAddr]) {
    let addrs = &addrs[..addrs.len().min(MAX_ADDRS)];
    w.u16(addrs.len() as u16);
    for a in addrs {
        w.short_bytes(a.0.as_bytes());
    }
}

fn read_addrs(r: &mut Reader<'_>) -> Result<Vec<PeerAddr>, DecodeError> {
    let n = usize::from(r.u16("address count")?);
    if n > MAX_ADDRS {
        return Err(DecodeError::TooLong { field: "address count", len: n, max: MAX_ADDRS });
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let text = r.text(MAX_PEER_ADDR_LEN, "peer address")?;
        out.push(PeerAddr::new(&text)?);
    }
    Ok(out)
}

fn read_records(r: &mut Reader<'_>) -> Result<Vec<Vec<u8>>, DecodeError> {
    let n = usize::from(r.u8("record count")?);
    if n > MAX_PEER_RECORDS {
        return Err(DecodeError::TooLong { field: "record count", len: n, max: MAX_PEER_RECORDS });
    }
    (0..n).map(|_| Ok(r.short_bytes(MAX_PEER_RECORD_LEN, "peer record")?.to_vec())).collect()
}

fn read_count(r: &mut Reader<'_>, max: u32, field: &'static str) -> Result<u32, DecodeError> {
    let count = r.u32(field)?;
    if count == 0 {
        return Err(DecodeError::Invalid { field });
    }
    if count > max {
        return Err(DecodeError::TooLong { field, len: count as usize, max: max as usize });
    }
    Ok(count)
}

fn check_len(buf: &[u8]) -> Result<(), DecodeError> {
    if buf.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong {
            field: "message",
            len: buf.len(),
            max: MAX_MESSAGE_LEN,
        });
    }
    Ok(())
}

impl TransferMsg {
    fn encode_into(&self, w: &mut Writer<'_>) {
        match self {
            TransferMsg::GetOutboard { req, locator, first, count } => {
                w.u8(tag::GET_OUTBOARD);
                w.u32(*req);
                w.bytes(&locator.0);
                w.u32(*first);
                w.u32(*count);
            }
            TransferMsg::Outboard { req, blob_len, first, leaves } => {
                w.u8(tag::OUTBOARD);
                w.u32(*req);
                w.u64(*blob_len);
                w.u32(*first);
                let leaves = &leaves[..leaves.len().min(MAX_LEAVES_PER_MESSAGE)];
                w.u16(leaves.len() as u16);
                for leaf in leaves {
                    w.bytes(leaf);
                }
            }
            TransferMsg::GetGroups { req, locator, first, count } => {
                w.u8(tag::GET_GROUPS);
                w.u32(*req);
                w.bytes(&locator.0);
                w.u32(*first);
                w.u32(*count);
            }
            TransferMsg::Group { req, index, data } => {
                w.u8(tag::GROUP);
                w.u32(*req);
                w.u32(*index);
                w.long_bytes(&data[..data.len().min(GROUP_SIZE)]);
            }
            TransferMsg::NotFound { req } => {
                w.u8(tag::NOT_FOUND);
                w.u32(*req);
            }
            TransferMsg::Cancel { req } => {
                w.u8(tag::CANCEL);
                w.u32(*req);
            }
        }
    }

    fn decode_tagged(t: u8, r: &mut Reader<'_>) -> Result<Option<TransferMsg>, DecodeError> {
        Ok(Some(match t {
            tag::GET_OUTBOARD => TransferMsg::GetOutboard {
                req: r.u32("request id")?,
                locator: Locator(r.array("locator")?),
                first: r.u32("first leaf")?,
                count: read_count(r, MAX_LEAVES_PER_MESSAGE as u32, "leaf count")?,
            },
            tag::OUTBOARD => {
                let req = r.u32("request id")?;
                let blob_len = r.u64("blob length")?;
                let first = r.u32("first leaf")?;
                let n = usize::from(r.u16("leaf count")?);
                if n > MAX_LEAVES_PER_MESSAGE {
                    return Err(DecodeError::TooLong {
                        field: "leaf count",
                        len: n,
                        max: MAX_LEAVES_PER_MESSAGE,
                    });
                }
                let mut leaves = Vec::with_capacity(n);
                for _ in 0..n {
                    leaves.push(r.array("leaf")?);
                }
                TransferMsg::Outboard { req, blob_len, first, leaves }
            }
            tag::GET_GROUPS => TransferMsg::GetGroups {
                req: r.u32("request id")?,
                locator: Locator(r.array("locator")?),
                first: r.u32("first group")?,
                count: read_count(r, MAX_GROUPS_PER_REQUEST, "group count")?,
            },
            tag::GROUP => TransferMsg::Group {
                req: r.u32("request id")?,
                index: r.u32("group index")?,
                data: r.long_bytes(GROUP_SIZE, "group data")?.to_vec(),
            },
            tag::NOT_FOUND => TransferMsg::NotFound { req: r.u32("request id")? },
            tag::CANCEL => TransferMsg::Cancel { req: r.u32("request id")? },
            _ => return Ok(None),
        }))
    }

    /// Appends the encoding of this message to `out` (the same bytes as inside a
    /// [`Message::Transfer`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_into(&mut Writer::new(out));
    }

    /// Encodes into a new vector.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes exactly one transfer message (e.g. the payload of a relayed stream).
    pub fn decode(buf: &[u8]) -> Result<TransferMsg, DecodeError> {
        check_len(buf)?;
        let mut r = Reader::new(buf);
        let t = r.u8("tag")?;
        let msg = TransferMsg::decode_tagged(t, &mut r)?.ok_or(DecodeError::UnknownTag(t))?;
        r.finish()?;
        Ok(msg)
    }
}

impl Message {
    /// Appends the encoding of this message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        match self {
            Message::Hello(h) => {
                w.u8(tag::HELLO);
                w.u16(h.version);
                w.u64(h.timestamp);
                w.u32(h.features);
                w.u32(h.privacy);
                let ua = &h.user_agent.as_bytes()[..h.user_agent.len().min(MAX_USER_AGENT_LEN)];
                w.short_bytes(ua);
                write_addrs(&mut w, &h.listen);
            }
            Message::Ping { nonce } => {
                w.u8(tag::PING);
                w.u64(*nonce);
            }
            Message::Pong { nonce } => {
                w.u8(tag::PONG);
                w.u64(*nonce);
            }
            Message::Padding(n) => {
                let n = (*n as usize).min(MAX_PADDING);
                w.u8(tag::PADDING);
                w.u32(n as u32);
                w.zeros(n);
            }
            Message::Peers(PeersMsg::GetAddr) => w.u8(tag::GET_ADDR),
            Message::Peers(PeersMsg::Records { records, vouched }) => {
                let records = &records[..records.len().min(MAX_PEER_RECORDS)];
                w.u8(tag::RECORDS);
                w.u16(*vouched);
                w.u8(records.len() as u8);
                for r in records {
                    w.short_bytes(&r[..r.len().min(MAX_PEER_RECORD_LEN)]);
                }
            }
            Message::Transfer(m) => m.encode_into(&mut w),
            Message::Relay(RelayMsg::Open { stream, target }) => {
                w.u8(tag::RELAY_OPEN);
                w.u32(*stream);
                w.bytes(target);
            }
            Message::Relay(RelayMsg::Data { stream, payload }) => {
                w.u8(tag::RELAY_DATA);
                w.u32(*stream);
                w.long_bytes(&payload[..payload.len().min(MAX_RELAY_PAYLOAD)]);
            }
            Message::Relay(RelayMsg::Close { stream }) => {
                w.u8(tag::RELAY_CLOSE);
                w.u32(*stream);
            }
            Message::Dht { pow, payload } => {
                match pow {
                    Some(nonce) => {
                        w.u8(tag::DHT_CONTACT);
                        w.u64(*nonce);
                    }
                    None => w.u8(tag::DHT),
                }
                w.long_bytes(&payload[..payload.len().min(MAX_DHT_PAYLOAD)]);
            }
        }
    }

    /// Encodes into a new vector.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes exactly one message from `buf`.
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
        check_len(buf)?;
        let mut r = Reader::new(buf);
        let t = r.u8("tag")?;
        let msg = match t {
            tag::HELLO => Message::Hello(Hello {
                version: r.u16("version")?,
                timestamp: r.u64("timestamp")?,
                features: r.u32("features")?,
                privacy: r.u32("privacy features")?,
                user_agent: r.text(MAX_USER_AGENT_LEN, "user agent")?,
                listen: read_addrs(&mut r)?,
            }),
            tag::PING => Message::Ping { nonce: r.u64("nonce")? },
            tag::PONG => Message::Pong { nonce: r.u64("nonce")? },
            tag::PADDING => {
                let zeros = r.long_bytes(MAX_PADDING, "padding")?;
                // Zeros only: one encoding per message, and no room for a covert channel.
                if zeros.iter().any(|&b| b != 0) {
                    return Err(DecodeError::Invalid { field: "padding" });
                }
                Message::Padding(zeros.len() as u32)
            }
            tag::GET_ADDR => Message::Peers(PeersMsg::GetAddr),
            tag::RECORDS => {
                let vouched = r.u16("vouched")?;
                Message::Peers(PeersMsg::Records { vouched, records: read_records(&mut r)? })
            }
            tag::RELAY_OPEN => Message::Relay(RelayMsg::Open {
                stream: r.u32("stream")?,
                target: r.array("target")?,
            }),
            tag::RELAY_DATA => Message::Relay(RelayMsg::Data {
                stream: r.u32("stream")?,
                payload: r.long_bytes(MAX_RELAY_PAYLOAD, "relay payload")?.to_vec(),
            }),
            tag::RELAY_CLOSE => Message::Relay(RelayMsg::Close { stream: r.u32("stream")? }),
            tag::DHT => Message::Dht {
                pow: None,
                payload: r.long_bytes(MAX_DHT_PAYLOAD, "dht payload")?.to_vec(),
            },
            tag::DHT_CONTACT => Message::Dht {
                pow: Some(r.u64("pow nonce")?),
                payload: r.long_bytes(MAX_DHT_PAYLOAD, "dht payload")?.to_vec(),
            },
            other => match TransferMsg::decode_tagged(other, &mut r)? {
                Some(m) => Message::Transfer(m),
                None => return Err(DecodeError::UnknownTag(other)),
            },
        };
        r.finish()?;
        Ok(msg)
    }
}

/// The body of a DHT request sent in a one-round-trip exchange rather than over a session
/// (`samizdat_session::exchange`): the DHT message and, from a node that offers itself as a
/// contact (an identified exchange), its proof-of-work nonce and the address it is reached at.
/// An answer's body is the DHT message alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtQuery {
    /// The sender's proof-of-work nonce and listen address, if it offers itself as a contact.
    pub offer: Option<(u64, PeerAddr)>,
    /// One encoded DHT message (at most [`MAX_DHT_PAYLOAD`] bytes).
    pub payload: Vec<u8>,
}

impl DhtQuery {
    /// The encoding: a flag byte, the offer if flagged, and the payload behind its length.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.payload.len());
        let mut w = Writer::new(&mut out);
        match &self.offer {
            Some((pow, addr)) => {
                w.u8(1);
                w.u64(*pow);
                w.short_bytes(addr.0.as_bytes());
            }
            None => w.u8(0),
        }
        w.long_bytes(&self.payload[..self.payload.len().min(MAX_DHT_PAYLOAD)]);
        out
    }

    /// Decodes exactly one query from `buf`.
    pub fn decode(buf: &[u8]) -> Result<DhtQuery, DecodeError> {
        let mut r = Reader::new(buf);
        let offer = match r.u8("offer flag")? {
            0 => None,
            1 => {
                let pow = r.u64("pow nonce")?;
                let addr = PeerAddr::new(&r.text(MAX_PEER_ADDR_LEN, "peer address")?)?;
                Some((pow, addr))
            }
            other => return Err(DecodeError::UnknownTag(other)),
        };
        let payload = r.long_bytes(MAX_DHT_PAYLOAD, "dht payload")?.to_vec();
        r.finish()?;
        Ok(DhtQuery { offer, payload })
    }
}

/// Largest payload of one [`RelayMsg::Data`]: one encoded transfer message.
pub const MAX_RELAY_PAYLOAD: usize = GROUP_SIZE + 512;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = PeerAddr> {
        "[a-z]{1,5}/[a-zA-Z0-9.:]{1,40}".prop_map(|s| PeerAddr::new(&s).unwrap())
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                any::<u16>(),
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                "[ -~]{0,64}",
                proptest::collection::vec(addr(), 0..8)
            )
                .prop_map(
                    |(version, timestamp, features, privacy, user_agent, listen)| {
                        Message::Hello(Hello {
                            version,
                            timestamp,
                            features,
                            privacy,
                            user_agent,
                            listen,
                        })
                    }
                ),
            any::<u64>().prop_map(|nonce| Message::Ping { nonce }),
            any::<u64>().prop_map(|nonce| Message::Pong { nonce }),
            (0..=MAX_PADDING as u32).prop_map(Message::Padding),
            Just(Message::Peers(PeersMsg::GetAddr)),
            proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..=MAX_PEER_RECORD_LEN),
                0..=MAX_PEER_RECORDS
            )
            .prop_flat_map(|records| (Just(records), any::<u16>()))
            .prop_map(|(records, vouched)| Message::Peers(PeersMsg::Records { records, vouched })),
            transfer().prop_map(Message::Transfer),
            (any::<u32>(), any::<[u8; 32]>())
                .prop_map(|(stream, target)| Message::Relay(RelayMsg::Open { stream, target })),
            (any::<u32>(), transfer()).prop_map(|(stream, m)| Message::Relay(RelayMsg::Data {
                stream,
                payload: m.encode_to_vec()
            })),
            any::<u32>().prop_map(|stream| Message::Relay(RelayMsg::Close { stream })),
            (proptest::option::of(any::<u64>()), proptest::collection::vec(any::<u8>(), 0..300))
                .prop_map(|(pow, payload)| Message::Dht { pow, payload }),
        ]
    }

    fn transfer() -> impl Strategy<Value = TransferMsg> {
        let loc = any::<[u8; 32]>().prop_map(Locator);
        prop_oneof![
            (any::<u32>(), loc.clone(), any::<u32>(), 1..=MAX_LEAVES_PER_MESSAGE as u32).prop_map(
                |(req, locator, first, count)| TransferMsg::GetOutboard {
                    req,
                    locator,
                    first,
                    count
                }
            ),
            (
                any::<u32>(),
                any::<u64>(),
                any::<u32>(),
                proptest::collection::vec(any::<[u8; 32]>(), 0..50)
            )
                .prop_map(|(req, blob_len, first, leaves)| TransferMsg::Outboard {
                    req,
                    blob_len,
                    first,
                    leaves
                }),
            (any::<u32>(), loc, any::<u32>(), 1..=MAX_GROUPS_PER_REQUEST).prop_map(
                |(req, locator, first, count)| TransferMsg::GetGroups {
                    req,
                    locator,
                    first,
                    count
                }
            ),
            (any::<u32>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..2000))
                .prop_map(|(req, index, data)| TransferMsg::Group { req, index, data }),
            any::<u32>().prop_map(|req| TransferMsg::NotFound { req }),
            any::<u32>().prop_map(|req| TransferMsg::Cancel { req }),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip(msg in message()) {
            let bytes = msg.encode_to_vec();
            prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
            prop_assert_eq!(Message::decode(&bytes).unwrap(), msg);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::decode(&bytes);
            let _ = DhtQuery::decode(&bytes);
        }

        #[test]
        fn dht_queries_roundtrip_and_truncation_fails(
            offer in proptest::option::of((any::<u64>(), addr())),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            cut in any::<prop::sample::Index>(),
        ) {
            let q = DhtQuery { offer, payload };
            let bytes = q.encode_to_vec();
            prop_assert_eq!(DhtQuery::decode(&bytes).unwrap(), q);
            prop_assert!(DhtQuery::decode(&bytes[..cut.index(bytes.len())]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(DhtQuery::decode(&longer).is_err());
        }

        #[test]
        fn truncation_is_an_error(msg in message(), cut in any::<prop::sample::Index>()) {
            let bytes = msg.encode_to_vec();
            let cut = cut.index(bytes.len());
            prop_assert!(Message::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn padding_is_zeros_within_its_limit() {
        assert_eq!(Message::Padding(2).encode_to_vec(), [7, 0, 0, 0, 2, 0, 0]);
        assert_eq!(Message::decode(&[7, 0, 0, 0, 2, 0, 0]), Ok(Message::Padding(2)));
        // The fuzzer's find: bytes other than zeros would decode to the same message.
        assert_eq!(
            Message::decode(&[7, 0, 0, 0, 6, 58, 0, 128, 0, 0, 6]),
            Err(DecodeError::Invalid { field: "padding" })
        );
        let mut over = vec![7];
        over.extend_from_slice(&(MAX_PADDING as u32 + 1).to_be_bytes());
        over.resize(over.len() + MAX_PADDING + 1, 0);
        assert!(Message::decode(&over).is_err());
        assert_eq!(format!("{:?}", Message::Padding(3)), "Padding(3)");
    }

    #[test]
    fn dht_query_vectors_and_bad_flags() {
        let q = DhtQuery { offer: None, payload: vec![7] };
        assert_eq!(q.encode_to_vec(), [0, 0, 0, 0, 1, 7]);
        assert_eq!(DhtQuery::decode(&[2, 0, 0, 0, 0]), Err(DecodeError::UnknownTag(2)));
        let big = vec![0u8; MAX_DHT_PAYLOAD + 1];
        let mut bytes = vec![0];
        bytes.extend_from_slice(&(big.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&big);
        assert!(DhtQuery::decode(&bytes).is_err());
    }

    #[test]
    fn test_vectors() {
        let ping = Message::Ping { nonce: 0x0102030405060708 };
        assert_eq!(ping.encode_to_vec(), [0x02, 1, 2, 3, 4, 5, 6, 7, 8]);
        let get = Message::Transfer(TransferMsg::GetGroups {
            req: 9,
            locator: Locator([0xaa; 32]),
            first: 1,
            count: 2,
        });
        let mut expect = vec![0x12, 0, 0, 0, 9];
        expect.extend([0xaa; 32]);
        expect.extend([0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(get.encode_to_vec(), expect);
    }

    #[test]
    fn typed_errors() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Truncated { field: "tag" }));
        assert_eq!(Message::decode(&[0xee]), Err(DecodeError::UnknownTag(0xee)));
        assert_eq!(Message::decode(&[0x04, 0]), Err(DecodeError::TrailingBytes(1)));
        let mut zero = vec![0x12];
        zero.extend([0; 44]);
        assert_eq!(Message::decode(&zero), Err(DecodeError::Invalid { field: "group count" }));
        // The unsigned address list of version 2 is gone.
        assert_eq!(Message::decode(&[0x05, 0, 0]), Err(DecodeError::UnknownTag(0x05)));
        // A record list claiming more entries than allowed, a record longer than allowed.
        assert!(matches!(
            Message::decode(&[0x06, 0, 0, MAX_PEER_RECORDS as u8 + 1]),
            Err(DecodeError::TooLong { field: "record count", .. })
        ));
        let mut long = vec![0x06, 0, 0, 1];
        long.extend((MAX_PEER_RECORD_LEN as u16 + 1).to_be_bytes());
        long.resize(long.len() + MAX_PEER_RECORD_LEN + 1, 0);
        assert!(matches!(
            Message::decode(&long),
            Err(DecodeError::TooLong { field: "peer record", .. })
        ));
        assert!(matches!(
            Message::decode(&[0x06, 0, 1, 2, 0, 1, 7]),
            Err(DecodeError::Truncated { field: "peer record" })
        ));
        let records =
            Message::Peers(PeersMsg::Records { records: vec![vec![1, 2], vec![]], vouched: 1 });
        assert_eq!(Message::decode(&records.encode_to_vec()).unwrap(), records);
        assert_eq!(format!("{records:?}"), "Records(2 records)");
    }

    #[test]
    fn transfer_messages_decode_alone_and_nested() {
        let m = TransferMsg::NotFound { req: 7 };
        assert_eq!(TransferMsg::decode(&m.encode_to_vec()).unwrap(), m);
        assert_eq!(
            Message::decode(&m.encode_to_vec()).unwrap(),
            Message::Transfer(TransferMsg::NotFound { req: 7 })
        );
        // A link-level tag is not a transfer message.
        assert_eq!(TransferMsg::decode(&[0x02, 0, 0]), Err(DecodeError::UnknownTag(0x02)));
        assert!(TransferMsg::decode(&vec![0x14; MAX_MESSAGE_LEN + 1]).is_err());
        assert!(
            format!("{:?}", Message::Relay(RelayMsg::Open { stream: 1, target: [9; 32] }))
                .starts_with("RelayOpen")
        );
        let loc = Locator([0xab; 32]);
        assert!(!format!("{loc:?}").contains("abababab"));
    }

    #[test]
    fn peer_addr_parts() {
        let a = PeerAddr::new("tcp/127.0.0.1:9").unwrap();
        assert_eq!(a.transport(), "tcp");
        assert_eq!(a.address(), "127.0.0.1:9");
        assert!(PeerAddr::new("nope").is_err());
        assert!(!format!("{a:?}").contains("127"));
    }
}
