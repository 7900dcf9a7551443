//! Sans-IO encrypted peer sessions.
//!
//! A [`Session`] turns a byte stream from any transport into an authenticated, forward-secret,
//! encrypted channel of typed [`Message`]s. It contains no networking code and does not read
//! the clock: bytes and `now` go in through [`Session::handle_input`], encrypted bytes come out
//! of [`Session::poll_transmit`], decoded events out of [`Session::poll_event`], and the
//! handshake deadline out of [`Session::poll_timeout`].
//!
//! # Protocol
//! 1. **Noise XX** (`Noise_XX_25519_AESGCM_SHA256`, AES-GCM from ring) with a fresh static key
//!    per session.
//!    Handshake messages travel behind a 2-byte length. The responder's second message and the
//!    initiator's third each carry, encrypted, the sender's Ed25519 identity key and its
//!    signature over the session's Noise static key: mutual authentication without ever
//!    sending an identity in clear.
//! 2. **Frames.** After the handshake every frame is `enc(len) || enc(body)`: the 2-byte body
//!    length is itself AEAD-encrypted, so lengths never appear in clear and a modified length is
//!    detected before it is used. A body holds at most [`MAX_FRAME_PLAINTEXT`] bytes. Noise's
//!    implicit, strictly increasing nonces give replay protection: a replayed, reordered,
//!    dropped or injected frame fails authentication and ends the session.
//! 3. **Hello.** Each side's first frame is a [`Hello`] (version, wall-clock timestamp checked
//!    against a skew bound, feature and privacy-feature flags of which only those both sides set
//!    are on, a generic user agent, and the listen addresses; nothing constant per node).
//!    [`SessionEvent::Established`] fires once the peer's `Hello` checks out.
//!
//! 4. **Exchanges.** A responder also answers a one-round-trip [`exchange`] (one request and
//!    its answer under Noise NK against its identity key, no session), told apart by the
//!    length of the first message: [`SessionEvent::Query`], then [`Session::answer`]; the
//!    asking side is [`Session::exchange`], which ends with [`SessionEvent::Answer`].
//!
//! 5. **Anonymous initiator.** [`Session::anonymous_initiator`] opens a link under a
//!    throwaway identity with a `Hello` that carries nothing particular to the node: the
//!    responder can neither tell who dialled nor link two such links to each other.
//!
//! A peer that authenticates with our own identity is ourselves (only the holder of the
//! identity key can sign for its node ID): the handshake ends with
//! [`SessionError::SelfConnection`] as soon as the peer's identity is verified.
//!
//! ```
//! use samizdat_session::{Session, SessionConfig, SessionEvent};
//! use samizdat_identity::Identity;
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let cfg = || SessionConfig::new(Identity::generate(&mut rand_core::OsRng));
//! let mut a = Session::initiator(cfg(), [1; 32], 1_700_000_000, now).unwrap();
//! let mut b = Session::responder(cfg(), [2; 32], 1_700_000_000, now);
//! // Shuttle bytes until both sides are established.
//! for _ in 0..4 {
//!     while let Some(bytes) = a.poll_transmit() { b.handle_input(now, &bytes).unwrap(); }
//!     while let Some(bytes) = b.poll_transmit() { a.handle_input(now, &bytes).unwrap(); }
//! }
//! assert!(matches!(a.poll_event(), Some(SessionEvent::Established(_))));
//! assert!(matches!(b.poll_event(), Some(SessionEvent::Established(_))));
//! ```
#![forbid(unsafe_code)]

mod cipher;
pub mod exchange;
mod noise;
mod shaping;

use cipher::{CipherError, CipherState};
pub use exchange::Query;
use noise::SeededResolver;
use samizdat_identity::{Identity, IdentityError, NodeId};
use samizdat_wire::{DecodeError, Hello, Message, PROTOCOL_VERSION, PeerAddr, features};
use shaping::Shaper;
pub use shaping::{MAX_CHAFF, MIN_CHAFF, Shaping};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Noise protocol name used by every session.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_AESGCM_SHA256";
/// Largest plaintext in one transport frame (a Noise message is at most 65535 bytes).
pub const MAX_FRAME_PLAINTEXT: usize = 65535 - TAG_LEN;
use cipher::TAG_LEN;
const HEADER_LEN: usize = 2 + TAG_LEN;
/// A padding frame's bytes on the wire besides its zeros: the header, the message's tag and
/// length, the body's tag.
const PAD_FRAME_OVERHEAD: usize = HEADER_LEN + 1 + 4 + TAG_LEN;
const SIGNED_STATIC_CONTEXT: &[u8] = b"samizdat 2026 noise static key v1";
const AUTH_PAYLOAD_LEN: usize = 32 + 64;
/// Noise XX's longest handshake message: the responder's (ephemeral key, encrypted static key
/// and tag, encrypted identity payload and tag). Anything longer is refused before decryption,
/// so every payload fits in a small stack buffer.
const MAX_HANDSHAKE_MSG: usize = 32 + (32 + TAG_LEN) + AUTH_PAYLOAD_LEN + TAG_LEN;
/// Largest output buffer capacity reserved ahead of a send after a flush handed the previous
/// buffer out (see [`Session::poll_transmit`]).
const MAX_RESERVE: usize = 1 << 20;

/// Default user agent: deliberately generic so it does not single out a version or platform.
pub const DEFAULT_USER_AGENT: &str = "samizdat";

/// Why a session failed. Every error closes the session; none of them panics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The Noise handshake or a frame's authentication failed (tampering, replay, wrong key).
    #[error("cryptographic failure: {0}")]
    Crypto(#[from] snow::Error),
    /// The peer's identity signature over its Noise static key is invalid.
    #[error("peer authentication failed: {0}")]
    Identity(#[from] IdentityError),
    /// A handshake message or frame announced an impossible length.
    #[error("malformed frame: {0}")]
    BadFrame(&'static str),
    /// A decrypted message could not be decoded.
    #[error("malformed message: {0}")]
    Decode(#[from] DecodeError),
    /// The peer speaks a protocol version we do not.
    #[error("unsupported protocol version {0}")]
    Version(u16),
    /// The peer's clock differs from ours by more than the configured bound.
    #[error("peer clock differs by {0} s, above the bound")]
    ClockSkew(u64),
    /// The peer authenticated with our own identity: we connected to ourselves.
    #[error("connected to ourselves")]
    SelfConnection,
    /// A message arrived that is not allowed in the current state.
    #[error("unexpected {0} message")]
    Unexpected(&'static str),
    /// The handshake did not complete in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// A frame failed authentication (tampered, replayed, reordered or injected).
    #[error("frame failed authentication")]
    FrameAuth,
    /// The session has sent or received 2^64 - 1 frames and must be replaced.
    #[error("session nonce space exhausted")]
    NonceExhausted,
    /// A message was too large to send in one frame.
    #[error("message of {0} bytes exceeds the frame limit")]
    TooLarge(usize),
    /// The session already failed; no further input is processed.
    #[error("session already failed")]
    Failed,
}

/// Settings of one side of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// The local long-term identity.
    pub identity: Identity,
    /// General feature flags we support.
    pub features: u32,
    /// Privacy feature flags we support.
    pub privacy: u32,
    /// Our user agent (generic by default).
    pub user_agent: String,
    /// Addresses we accept connections on, announced in `Hello`.
    pub listen: Vec<PeerAddr>,
    /// Largest accepted difference between the peer's clock and ours.
    pub max_clock_skew: Duration,
    /// How long the handshake (including both `Hello`s) may take.
    pub handshake_timeout: Duration,
    /// Padding and chaff ([`Shaping`]).
    pub shaping: Shaping,
}

impl SessionConfig {
    /// A configuration with every implemented feature and default limits. Self-connection is
    /// detected by comparing the authenticated peer [`NodeId`] with ours (nothing constant
    /// per node, such as a nonce, is sent that would link its connections).
    pub fn new(identity: Identity) -> Self {
        SessionConfig {
            identity,
            features: features::ALL,
            privacy: 0,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            listen: Vec::new(),
            max_clock_skew: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(20),
            shaping: Shaping::default(),
        }
    }
}

/// What the handshake established about the peer.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer's node ID (derived from its authenticated identity key).
    pub node_id: NodeId,
    /// The peer's Ed25519 identity key.
    pub public_key: [u8; 32],
    /// Features both sides support.
    pub features: u32,
    /// Privacy features both sides support.
    pub privacy: u32,
    /// The peer's `Hello` as received.
    pub hello: Hello,
}

/// Something the session wants its owner to know.
#[derive(Debug)]
pub enum SessionEvent {
    /// Handshake and negotiation are complete; messages may flow.
    Established(Box<PeerInfo>),
    /// A message from the peer.
    Message(Message),
    /// A responder's exchange request arrived (see [`exchange`]): answer it with
    /// [`Session::answer`]; the session is then done.
    Query(Box<Query>),
    /// An initiator's exchange was answered (see [`Session::exchange`]); the session is done.
    Answer(Vec<u8>),
}

impl From<CipherError> for SessionError {
    fn from(e: CipherError) -> Self {
        match e {
            CipherError::Open => SessionError::FrameAuth,
            CipherError::Exhausted => SessionError::NonceExhausted,
        }
    }
}

struct Transport {
    send: CipherState,
    recv: CipherState,
}

enum State {
    Handshake(Box<snow::HandshakeState>),
    Transport(Box<Transport>),
    /// An exchange initiator waiting for its answer.
    Asked(Box<snow::HandshakeState>),
    /// An exchange responder holding a request until its owner answers.
    Asking(Box<snow::HandshakeState>),
    /// An exchange that is over.
    Done,
    Failed,
}

/// What a session keeps of its [`SessionConfig`]. The user agent and listen addresses are
/// taken out when our `Hello` is sent.
struct Local {
    features: u32,
    privacy: u32,
    user_agent: String,
    listen: Vec<PeerAddr>,
    max_clock_skew: u64,
}

/// One side of an encrypted session (see the crate docs).
pub struct Session {
    local: Local,
    /// Our own node ID, to recognise a connection to ourselves.
    own_id: NodeId,
    state: State,
    /// Peer identity once authenticated (before its `Hello` arrives).
    peer_key: Option<([u8; 32], NodeId)>,
    /// Our identity payload, sent once and then freed.
    auth_payload: Vec<u8>,
    established: bool,
    wall_secs: u64,
    deadline: Instant,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// Length of the last buffer handed out by [`Session::poll_transmit`]: what to reserve
    /// when the next frame is queued into the (then unallocated) output buffer.
    last_flush: usize,
    events: VecDeque<SessionEvent>,
    /// A responder's key for an exchange, until the first message shows what it is.
    exchange_key: Option<Box<exchange::ResponderKey>>,
    /// Whether this is (or was, even once failed) an exchange rather than a session.
    exchange: bool,
    /// Whether we opened this link under a throwaway identity.
    anonymous: bool,
    /// Padding and chaff (boxed: most of a session's inline size otherwise).
    shaper: Box<Shaper>,
    /// The time of the latest input, for timers started by what it brought.
    last_now: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("established", &self.established)
            .field("peer", &self.peer_key.map(|(_, id)| id))
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts the initiating side; its first handshake message is queued for transmission.
    ///
    /// `seed` feeds the session's key generation (give each session fresh random bytes, or a
    /// seed derived from the simulator's for replayable runs); `wall_secs` is the current Unix
    /// time, used for the `Hello` timestamp and the peer's skew check.
    pub fn initiator(
        config: SessionConfig,
        seed: [u8; 32],
        wall_secs: u64,
        now: Instant,
    ) -> Result<Self, SessionError> {
        let (mut s, identity) = Self::new(config, wall_secs, now);
        s.start(&identity, seed, true)?;
        let mut msg = [0u8; 128];
        let State::Handshake(hs) = &mut s.state else {
            return Err(SessionError::Unexpected("handshake"));
        };
        let n = hs.write_message(&[], &mut msg)?;
        s.push_handshake(&msg[..n]);
        Ok(s)
    }

    /// Starts an initiating side that does not reveal who it is: the session is authenticated
    /// with a throwaway identity drawn from `seed` (so the responder sees a different node ID on
    /// every link, unrelated to ours), and our `Hello` carries nothing constant of this node:
    /// no listen addresses, the generic user agent, no privacy flags, the time rounded down to
    /// the minute, and as features exactly [`features::SERVE_CONTENT`] (so the responder may
    /// serve us; peer exchange and the DHT, which would name us, stay off). Whether the peer is ourselves is still checked against
    /// our real identity ([`SessionError::SelfConnection`]).
    ///
    /// This is the link a fetcher (and later an onion client) uses with a peer that must not
    /// learn which node asks. The owner must hold up its side too: answer no content, relay
    /// or peer-exchange requests on such a link (they would tell the peer what this node holds
    /// or is; see [`Session::is_anonymous`]).
    pub fn anonymous_initiator(
        mut config: SessionConfig,
        seed: [u8; 32],
        wall_secs: u64,
        now: Instant,
    ) -> Result<Self, SessionError> {
        use rand_chacha::ChaCha20Rng;
        use rand_core::{RngCore, SeedableRng};
        let own_id = config.identity.node_id();
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut secret[..]);
        let mut noise_seed = [0u8; 32];
        rng.fill_bytes(&mut noise_seed);
        config.identity = Identity::from_secret_bytes(&secret[..])?;
        config.listen.clear();
        config.user_agent = DEFAULT_USER_AGENT.to_owned();
        config.privacy = 0;
        config.features = features::SERVE_CONTENT;
        // The whole minute: the clock's offset and phase, constant for a running node, would
        // otherwise tell its links apart from everyone else's.
        let wall_secs = wall_secs - wall_secs % 60;
        let mut s = Self::initiator(config, noise_seed, wall_secs, now)?;
        s.own_id = own_id;
        s.anonymous = true;
        Ok(s)
    }

    /// Whether this is our side of a link opened by [`Session::anonymous_initiator`].
    pub fn is_anonymous(&self) -> bool {
        self.anonymous
    }

    /// Starts the responding side; it waits for the initiator's first message.
    pub fn responder(config: SessionConfig, seed: [u8; 32], wall_secs: u64, now: Instant) -> Self {
        let (mut s, identity) = Self::new(config, wall_secs, now);
        // Starting only fails if the compiled-in Noise parameters are unsupported, which the
        // test suite rules out; the session then stays failed rather than panic.
        if s.start(&identity, seed, false).is_err() {
            s.state = State::Failed;
        }
        s.exchange_key = Some(Box::new(exchange::ResponderKey::new(&identity, seed)));
        s
    }

    /// Starts a one-round-trip exchange (see [`exchange`]) with the holder of the Ed25519
    /// identity key `responder`: `body` is sent at once, encrypted so only that holder can read
    /// it, with our identity (proven by Diffie-Hellman, Noise IK) only if `identify`. Its answer arrives as
    /// [`SessionEvent::Answer`]; an impostor's bytes fail with an error instead.
    pub fn exchange(
        config: SessionConfig,
        seed: [u8; 32],
        now: Instant,
        responder: &[u8; 32],
        identify: bool,
        body: &[u8],
    ) -> Result<Self, SessionError> {
        let (mut s, identity) = Self::new(config, 0, now);
        let hs = exchange::initiate(&identity, seed, responder, identify, body, &mut s.outbuf)?;
        s.state = State::Asked(Box::new(hs));
        s.exchange = true;
        Ok(s)
    }

    /// Answers the request of [`SessionEvent::Query`]; the answer is queued for transmission
    /// and the session is done.
    pub fn answer(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let State::Asking(hs) = &mut self.state else {
            return Err(SessionError::Unexpected("answer without a request"));
        };
        let result = exchange::answer(hs, body, &mut self.outbuf);
        self.state = if result.is_ok() { State::Done } else { State::Failed };
        result
    }

    /// Whether this is (or was, even once failed) an exchange rather than a session.
    pub fn is_exchange(&self) -> bool {
        self.exchange
    }

    /// A session in the failed state, holding what it needs of `config`, and the identity,
    /// which it does not keep: the key is used once, in [`Session::start`], rather than
    /// copied into every session.
    fn new(config: SessionConfig, wall_secs: u64, now: Instant) -> (Self, Identity) {
        let session = Session {
            local: Local {
                features: config.features,
                privacy: config.privacy,
                user_agent: config.user_agent,
                listen: config.listen,
                max_clock_skew: config.max_clock_skew.as_secs(),
            },
            own_id: config.identity.node_id(),
            state: State::Failed,
            peer_key: None,
            auth_payload: Vec::new(),
            established: false,
            wall_secs,
            deadline: now + config.handshake_timeout,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            last_flush: 0,
            events: VecDeque::new(),
            exchange_key: None,
            exchange: false,
            anonymous: false,
            shaper: Box::new(Shaper::new(config.shaping, [0; 32])),
            last_now: now,
        };
        (session, config.identity)
    }

    /// Builds the Noise handshake and our identity payload.
    fn start(
        &mut self,
        identity: &Identity,
        seed: [u8; 32],
        initiator: bool,
    ) -> Result<(), SessionError> {
        self.shaper.reseed(seed);
        let params = NOISE_PARAMS.parse().map_err(SessionError::Crypto)?;
        let builder = snow::Builder::with_resolver(params, Box::new(SeededResolver::new(seed)));
        let static_key = builder.generate_keypair()?;
        let builder = builder.local_private_key(&static_key.private)?;
        let hs = if initiator { builder.build_initiator()? } else { builder.build_responder()? };
        // Our identity payload: the Ed25519 key and its signature over this session's static key.
        let mut signed = SIGNED_STATIC_CONTEXT.to_vec();
        signed.extend_from_slice(&static_key.public);
        let mut auth_payload = Vec::with_capacity(AUTH_PAYLOAD_LEN);
        auth_payload.extend_from_slice(&identity.public_key());
        auth_payload.extend_from_slice(&identity.sign(&signed));
        self.auth_payload = auth_payload;
        self.state = State::Handshake(Box::new(hs));
        Ok(())
    }

    fn push_handshake(&mut self, msg: &[u8]) {
        self.outbuf.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        self.outbuf.extend_from_slice(msg);
    }

    /// Whether both `Hello`s have been exchanged.
    pub fn is_established(&self) -> bool {
        self.established
    }

    /// The authenticated peer's node ID, once its identity has been verified.
    pub fn peer_id(&self) -> Option<NodeId> {
        self.peer_key.map(|(_, id)| id)
    }

    /// Feeds bytes received from the transport. On error the session is dead: close the
    /// transport connection.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) -> Result<(), SessionError> {
        self.check_alive(now)?;
        self.last_now = now;
        self.inbuf.extend_from_slice(data);
        let result = self.process_inbuf();
        self.after_input(result)
    }

    /// Like [`Session::handle_input`], but takes the received buffer, so frames that arrive
    /// whole are decrypted where they are instead of being copied into the session first: only
    /// the bytes that complete a frame split across reads (and a trailing partial frame) are
    /// copied. The driver of a fast link should use this one.
    pub fn handle_input_owned(&mut self, now: Instant, data: Vec<u8>) -> Result<(), SessionError> {
        self.check_alive(now)?;
        self.last_now = now;
        let result = self.feed_owned(data);
        self.after_input(result)
    }

    fn check_alive(&mut self, now: Instant) -> Result<(), SessionError> {
        match self.state {
            State::Failed => return Err(SessionError::Failed),
            State::Done | State::Asking(_) => {
                // An exchange takes one message each way: anything more breaks it.
                self.state = State::Failed;
                return Err(SessionError::Unexpected("exchange input"));
            }
            _ => {}
        }
        if !self.established && now >= self.deadline {
            self.state = State::Failed;
            return Err(SessionError::HandshakeTimeout);
        }
        Ok(())
    }

    fn after_input(&mut self, result: Result<(), SessionError>) -> Result<(), SessionError> {
        if result.is_err() {
            self.state = State::Failed;
            self.inbuf = Vec::new();
        } else if self.inbuf.is_empty() {
            // Everything was consumed: an idle session keeps no input buffer.
            self.inbuf = Vec::new();
        }
        result
    }

    fn feed_owned(&mut self, mut data: Vec<u8>) -> Result<(), SessionError> {
        let mut off = 0;
        // First complete what is pending, copying only the bytes it lacks.
        while !self.inbuf.is_empty() && off < data.len() {
            let take = match self.frame_need()? {
                Some(need) => need.min(data.len() - off),
                None => data.len() - off,
            };
            self.inbuf.extend_from_slice(&data[off..off + take]);
            off += take;
            self.process_inbuf()?;
        }
        if off == data.len() {
            return Ok(());
        }
        // Nothing pending: decrypt the rest in place and keep only a trailing partial frame.
        let consumed = self.process_in(&mut data[off..])?;
        if off == 0 && consumed == 0 {
            self.inbuf = data;
        } else {
            self.inbuf = data[off + consumed..].to_vec();
        }
        Ok(())
    }

    /// How many more bytes the pending transport frame in `inbuf` needs before it can be
    /// processed (`None` during the handshake, whose messages are tiny: take everything).
    fn frame_need(&mut self) -> Result<Option<usize>, SessionError> {
        let State::Transport(t) = &mut self.state else { return Ok(None) };
        let have = self.inbuf.len();
        if have < HEADER_LEN {
            return Ok(Some(HEADER_LEN - have));
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.inbuf[..HEADER_LEN]);
        t.recv.peek(&mut header)?;
        let total = HEADER_LEN + usize::from(u16::from_be_bytes([header[0], header[1]])) + TAG_LEN;
        // An impossible length fails in `process_frame`; asking for one byte gets it there.
        Ok(Some(total.saturating_sub(have).max(1)))
    }

    /// Checks the handshake deadline; call when [`Session::poll_timeout`] passes.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if !self.established && !matches!(self.state, State::Done) && now >= self.deadline {
            self.state = State::Failed;
            self.inbuf = Vec::new();
            return Err(SessionError::HandshakeTimeout);
        }
        if self.established && matches!(self.state, State::Transport(_)) {
            if let Some(size) = self.shaper.chaff_due(now) {
                self.pad(size);
            }
        }
        Ok(())
    }

    /// When [`Session::handle_timeout`] should next be called: the handshake's deadline, then
    /// the next chaff frame's time.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.established {
            return matches!(self.state, State::Transport(_))
                .then(|| self.shaper.next_chaff())
                .flatten();
        }
        (!matches!(self.state, State::Failed | State::Done)).then_some(self.deadline)
    }

    /// Encrypted bytes to write to the transport, if any.
    ///
    /// The session keeps no output buffer afterwards (an idle session holds no buffers); the
    /// next frame reserves about as much as this flush held, so a steady sender does not
    /// regrow its buffer from nothing.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.outbuf.is_empty() {
            return None;
        }
        self.pad_flush();
        self.last_flush = self.outbuf.len();
        Some(std::mem::take(&mut self.outbuf))
    }

    /// Like [`Session::poll_transmit`], but hands back a buffer the caller is done with (its
    /// contents are discarded), so a steady sender reuses two buffers instead of allocating.
    pub fn poll_transmit_reusing(&mut self, mut spare: Vec<u8>) -> Option<Vec<u8>> {
        if self.outbuf.is_empty() {
            return None;
        }
        self.pad_flush();
        spare.clear();
        self.last_flush = self.outbuf.len();
        Some(std::mem::replace(&mut self.outbuf, spare))
    }

    /// How many encrypted bytes are waiting in [`Session::poll_transmit`] (for backpressure).
    pub fn pending_transmit(&self) -> usize {
        self.outbuf.len()
    }

    /// The next decoded event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        let event = self.events.pop_front();
        if event.is_none() && self.events.capacity() > 0 {
            // Drained: an idle session keeps no event queue.
            self.events = VecDeque::new();
        }
        event
    }

    /// Encrypts and queues a message. Only valid once the Noise handshake is complete
    /// (messages sent before [`SessionEvent::Established`] are fine: the peer's `Hello` may
    /// still be in flight).
    pub fn send(&mut self, msg: &Message) -> Result<(), SessionError> {
        let n = self.seal(msg)?;
        self.shaper.sent_real(n);
        Ok(())
    }

    /// Queues a padding frame of exactly `total` bytes on the wire.
    fn pad(&mut self, total: usize) {
        let payload = total.saturating_sub(PAD_FRAME_OVERHEAD);
        let _ = self.seal(&Message::Padding(payload as u32));
    }

    /// Pads what is queued up to the next bucket boundary, if the budget allows.
    fn pad_flush(&mut self) {
        if matches!(self.state, State::Transport(_)) {
            let max = PAD_FRAME_OVERHEAD + samizdat_wire::MAX_PADDING;
            if let Some(total) = self.shaper.pad_for(self.outbuf.len(), PAD_FRAME_OVERHEAD, max) {
                self.pad(total);
            }
        }
    }

    /// Real bytes and padding or chaff bytes this session has queued (frames on the wire).
    pub fn shaping_totals(&self) -> (u64, u64) {
        self.shaper.totals()
    }

    /// Encrypts and queues one frame; returns its length on the wire.
    fn seal(&mut self, msg: &Message) -> Result<usize, SessionError> {
        let State::Transport(t) = &mut self.state else {
            return Err(SessionError::Unexpected("send before handshake"));
        };
        // Encode straight into the output buffer behind room for the header, then encrypt
        // both parts in place: one pass over the data besides the encoding itself.
        if self.outbuf.capacity() == 0 {
            self.outbuf.reserve(self.last_flush.clamp(HEADER_LEN + TAG_LEN + 64, MAX_RESERVE));
        }
        let start = self.outbuf.len();
        self.outbuf.resize(start + HEADER_LEN, 0);
        msg.encode(&mut self.outbuf);
        let body_len = self.outbuf.len() - start - HEADER_LEN;
        if body_len > MAX_FRAME_PLAINTEXT {
            self.outbuf.truncate(start);
            return Err(SessionError::TooLarge(body_len));
        }
        self.outbuf.resize(self.outbuf.len() + TAG_LEN, 0);
        let frame = &mut self.outbuf[start..];
        frame[..2].copy_from_slice(&(body_len as u16).to_be_bytes());
        let total = frame.len();
        let (header, body) = frame.split_at_mut(HEADER_LEN);
        t.send.seal(header)?;
        t.send.seal(body)?;
        Ok(total)
    }

    /// Processes what `inbuf` holds and drops the consumed bytes.
    fn process_inbuf(&mut self) -> Result<(), SessionError> {
        let mut buf = std::mem::take(&mut self.inbuf);
        let result = self.process_in(&mut buf);
        if let Ok(n) = result {
            buf.drain(..n);
            self.inbuf = buf;
        }
        result.map(|_| ())
    }

    /// Processes every complete handshake message or frame at the start of `buf`; returns the
    /// bytes consumed.
    fn process_in(&mut self, buf: &mut [u8]) -> Result<usize, SessionError> {
        let mut pos = 0;
        loop {
            if pos == buf.len() {
                return Ok(pos);
            }
            let consumed = match self.state {
                State::Handshake(_) => self.process_handshake(&buf[pos..])?,
                State::Transport(_) => self.process_frame(&mut buf[pos..])?,
                State::Asked(_) => self.process_answer(&buf[pos..])?,
                State::Asking(_) | State::Done => {
                    return Err(SessionError::Unexpected("exchange input"));
                }
                State::Failed => return Err(SessionError::Failed),
            };
            match consumed {
                Some(n) => pos += n,
                None => return Ok(pos),
            }
        }
    }

    /// Processes one handshake message at the start of `buf`; returns the bytes consumed.
    fn process_handshake(&mut self, buf: &[u8]) -> Result<Option<usize>, SessionError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        if len == 0 {
            return Err(SessionError::BadFrame("empty handshake message"));
        }
        // A responder's first message is a session's ephemeral key or an exchange request.
        if self.exchange_key.is_some() {
            if len != exchange::SESSION_FIRST_LEN {
                return self.process_query(buf, len);
            }
            // A session: the exchange key is not needed.
            self.exchange_key = None;
        }
        if len > MAX_HANDSHAKE_MSG {
            return Err(SessionError::BadFrame("handshake message too long"));
        }
        if buf.len() < 2 + len {
            return Ok(None);
        }
        let State::Handshake(hs) = &mut self.state else {
            return Err(SessionError::Unexpected("handshake"));
        };
        // A payload is never longer than its message.
        let mut payload = [0u8; MAX_HANDSHAKE_MSG];
        let n = hs.read_message(&buf[2..2 + len], &mut payload)?;
        // Noise XX: once the peer's static key is known (message 2 for the initiator, 3 for the
        // responder), the same message carries the peer's identity and its signature.
        if let Some(remote_static) = hs.get_remote_static() {
            if self.peer_key.is_some() {
                return Err(SessionError::Unexpected("second identity"));
            }
            if n != AUTH_PAYLOAD_LEN {
                return Err(SessionError::BadFrame("identity payload has the wrong size"));
            }
            let mut signed = SIGNED_STATIC_CONTEXT.to_vec();
            signed.extend_from_slice(remote_static);
            let mut public = [0u8; 32];
            public.copy_from_slice(&payload[..32]);
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&payload[32..AUTH_PAYLOAD_LEN]);
            let node_id = samizdat_identity::verify(&public, &signed, &sig)?;
            // Only a holder of our identity key can sign for our node ID: this is ourselves
            // (a nonce, which a peer can echo, proves nothing).
            if node_id == self.own_id {
                return Err(SessionError::SelfConnection);
            }
            self.peer_key = Some((public, node_id));
        } else if n != 0 {
            return Err(SessionError::BadFrame("unexpected handshake payload"));
        }
        if !hs.is_handshake_finished() && hs.is_my_turn() {
            let mut out = [0u8; MAX_HANDSHAKE_MSG];
            let auth_payload = std::mem::take(&mut self.auth_payload);
            let m = hs.write_message(&auth_payload, &mut out)?;
            self.outbuf.extend_from_slice(&(m as u16).to_be_bytes());
            self.outbuf.extend_from_slice(&out[..m]);
        }
        if hs.is_handshake_finished() {
            let State::Handshake(mut hs) = std::mem::replace(&mut self.state, State::Failed) else {
                return Err(SessionError::Unexpected("handshake"));
            };
            if self.peer_key.is_none() {
                return Err(SessionError::BadFrame("peer never authenticated"));
            }
            let (k1, k2) = hs.dangerously_get_raw_split();
            let (k1, k2) = (zeroize::Zeroizing::new(k1), zeroize::Zeroizing::new(k2));
            let (send, recv) = if hs.is_initiator() { (k1, k2) } else { (k2, k1) };
            let transport =
                Transport { send: CipherState::new(&send)?, recv: CipherState::new(&recv)? };
            self.state = State::Transport(Box::new(transport));
            let hello = self.hello();
            self.send(&Message::Hello(hello))?;
        }
        Ok(Some(2 + len))
    }

    /// Reads an exchange request of `len` bytes behind its length at the start of `buf`.
    fn process_query(&mut self, buf: &[u8], len: usize) -> Result<Option<usize>, SessionError> {
        if len > exchange::MAX_EXCHANGE_MSG {
            return Err(SessionError::BadFrame("exchange message too long"));
        }
        if buf.len() < 2 + len {
            return Ok(None);
        }
        let key = self.exchange_key.take().ok_or(SessionError::Unexpected("exchange"))?;
        self.exchange = true;
        let (query, hs) = exchange::respond(&key, self.own_id, &buf[2..2 + len])?;
        self.state = State::Asking(Box::new(hs));
        self.events.push_back(SessionEvent::Query(Box::new(query)));
        Ok(Some(2 + len))
    }

    /// Reads the answer to our exchange at the start of `buf`.
    fn process_answer(&mut self, buf: &[u8]) -> Result<Option<usize>, SessionError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        if len > exchange::MAX_EXCHANGE_MSG {
            return Err(SessionError::BadFrame("exchange message too long"));
        }
        if buf.len() < 2 + len {
            return Ok(None);
        }
        let State::Asked(hs) = &mut self.state else {
            return Err(SessionError::Unexpected("answer"));
        };
        let body = exchange::read_answer(hs, &buf[2..2 + len])?;
        self.state = State::Done;
        self.events.push_back(SessionEvent::Answer(body));
        Ok(Some(2 + len))
    }

    /// Our `Hello`; sent once, so it takes the user agent and listen addresses out of the
    /// configuration rather than keeping a second copy for the session's lifetime.
    fn hello(&mut self) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            timestamp: self.wall_secs,
            features: self.local.features,
            privacy: self.local.privacy,
            user_agent: std::mem::take(&mut self.local.user_agent),
            listen: std::mem::take(&mut self.local.listen),
        }
    }

    /// Decrypts one transport frame at the start of `buf` in place; returns the bytes consumed.
    fn process_frame(&mut self, buf: &mut [u8]) -> Result<Option<usize>, SessionError> {
        let State::Transport(t) = &mut self.state else {
            return Err(SessionError::Unexpected("frame"));
        };
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        // Read the length from a copy so the header can be read again once the body is here.
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&buf[..HEADER_LEN]);
        t.recv.peek(&mut header)?;
        let body_len = usize::from(u16::from_be_bytes([header[0], header[1]]));
        if body_len > MAX_FRAME_PLAINTEXT {
            return Err(SessionError::BadFrame("frame longer than the maximum"));
        }
        let total = HEADER_LEN + body_len + TAG_LEN;
        if buf.len() < total {
            return Ok(None);
        }
        t.recv.advance();
        let body = &mut buf[HEADER_LEN..total];
        let n = t.recv.open(body)?;
        let msg = Message::decode(&body[..n])?;
        self.on_message(msg)?;
        Ok(Some(total))
    }

    fn on_message(&mut self, msg: Message) -> Result<(), SessionError> {
        match (self.established, msg) {
            // Padding and chaff: dropped here, whenever they come.
            (_, Message::Padding(_)) => {}
            (false, Message::Hello(hello)) => {
                if hello.version != PROTOCOL_VERSION {
                    return Err(SessionError::Version(hello.version));
                }
                let skew = hello.timestamp.abs_diff(self.wall_secs);
                if skew > self.local.max_clock_skew {
                    return Err(SessionError::ClockSkew(skew));
                }
                let (public_key, node_id) =
                    self.peer_key.ok_or(SessionError::Unexpected("hello before identity"))?;
                self.established = true;
                self.shaper.start(self.last_now);
                self.events.push_back(SessionEvent::Established(Box::new(PeerInfo {
                    node_id,
                    public_key,
                    features: hello.features & self.local.features,
                    privacy: hello.privacy & self.local.privacy,
                    hello,
                })));
            }
            (false, _) => return Err(SessionError::Unexpected("message before hello")),
            (true, Message::Hello(_)) => return Err(SessionError::Unexpected("second hello")),
            (true, msg) => self.events.push_back(SessionEvent::Message(msg)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
