#![allow(clippy::unwrap_used, clippy::disallowed_methods)]
use super::*;
use samizdat_wire::{GROUP_SIZE, TransferMsg};

const T0: u64 = 1_800_000_000;

fn config() -> SessionConfig {
    SessionConfig::new(Identity::generate(&mut rand_core::OsRng))
}

/// Shuttles bytes between two sessions until neither has anything to send.
fn pump(a: &mut Session, b: &mut Session, now: Instant) -> Result<(), SessionError> {
    loop {
        let mut moved = false;
        if let Some(bytes) = a.poll_transmit() {
            b.handle_input(now, &bytes)?;
            moved = true;
        }
        if let Some(bytes) = b.poll_transmit() {
            a.handle_input(now, &bytes)?;
            moved = true;
        }
        if !moved {
            return Ok(());
        }
    }
}

fn pair() -> (Session, Session, Instant) {
    let now = Instant::now();
    let mut a = Session::initiator(config(), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(), [2; 32], T0 + 5, now);
    pump(&mut a, &mut b, now).unwrap();
    (a, b, now)
}

#[test]
fn handshake_authenticates_both_sides() {
    let now = Instant::now();
    let (ca, cb) = (config(), config());
    let (ida, idb) = (ca.identity.node_id(), cb.identity.node_id());
    let mut a = Session::initiator(ca, [1; 32], T0, now).unwrap();
    let mut b = Session::responder(cb, [2; 32], T0, now);
    pump(&mut a, &mut b, now).unwrap();
    let Some(SessionEvent::Established(pa)) = a.poll_event() else { panic!("a not established") };
    let Some(SessionEvent::Established(pb)) = b.poll_event() else { panic!("b not established") };
    assert_eq!(pa.node_id, idb);
    assert_eq!(pb.node_id, ida);
    assert_eq!(pa.features, features::ALL);
    assert_eq!(pa.hello.user_agent, DEFAULT_USER_AGENT);
}

#[test]
fn messages_flow_both_ways_in_order() {
    let (mut a, mut b, now) = pair();
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    for i in 0..100u64 {
        a.send(&Message::Ping { nonce: i }).unwrap();
    }
    let group =
        Message::Transfer(TransferMsg::Group { req: 1, index: 3, data: vec![7; 32 * 1024] });
    b.send(&group).unwrap();
    pump(&mut a, &mut b, now).unwrap();
    for i in 0..100u64 {
        match b.poll_event() {
            Some(SessionEvent::Message(Message::Ping { nonce })) => assert_eq!(nonce, i),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(matches!(a.poll_event(), Some(SessionEvent::Message(m)) if m == group));
}

#[test]
fn byte_at_a_time_delivery_works() {
    let now = Instant::now();
    let mut a = Session::initiator(config(), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(), [2; 32], T0, now);
    for _ in 0..6 {
        if let Some(bytes) = a.poll_transmit() {
            for byte in bytes {
                b.handle_input(now, &[byte]).unwrap();
            }
        }
        if let Some(bytes) = b.poll_transmit() {
            for byte in bytes {
                a.handle_input(now, &[byte]).unwrap();
            }
        }
    }
    assert!(a.is_established() && b.is_established());
}

#[test]
fn frame_lengths_are_not_in_clear() {
    let (mut a, _b, _) = pair_with(Shaping::OFF);
    a.send(&Message::Ping { nonce: 5 }).unwrap();
    let wire = a.poll_transmit().unwrap();
    // Ping encodes to 9 bytes: a clear length would show as 0x0009 at the start.
    assert_eq!(wire.len(), HEADER_LEN + 9 + TAG_LEN);
    assert_ne!(&wire[..2], &[0, 9]);
    // Shaped (the default), the flush is padded to the bucket.
    let (mut a, _b, _) = pair();
    a.send(&Message::Ping { nonce: 5 }).unwrap();
    assert_eq!(a.poll_transmit().unwrap().len(), 512);
}

fn pair_with(shaping: Shaping) -> (Session, Session, Instant) {
    let now = Instant::now();
    let cfg = || SessionConfig { shaping: shaping.clone(), ..config() };
    let mut a = Session::initiator(cfg(), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(cfg(), [2; 32], T0, now);
    pump(&mut a, &mut b, now).unwrap();
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    assert!(a.is_established() && b.is_established());
    (a, b, now)
}

#[test]
fn padding_hides_message_sizes_within_the_budget_and_never_reaches_the_owner() {
    let shaping = Shaping { allowance: 4096, chaff_every: None, ..Shaping::default() };
    let (mut a, mut b, now) = pair_with(shaping);
    let (real0, pad0) = a.shaping_totals();
    let mut sizes = Vec::new();
    for n in 0..200u64 {
        // Messages of many sizes, one flush each.
        let payload = vec![7u8; (n as usize * 37) % 900];
        a.send(&Message::Dht { pow: None, payload }).unwrap();
        let wire = a.poll_transmit().unwrap();
        sizes.push(wire.len());
        b.handle_input(now, &wire).unwrap();
        match b.poll_event() {
            Some(SessionEvent::Message(Message::Dht { payload, .. })) => {
                assert_eq!(payload.len(), (n as usize * 37) % 900);
            }
            other => panic!("{other:?}"),
        }
        assert!(b.poll_event().is_none(), "padding surfaced");
    }
    let (real, pad) = a.shaping_totals();
    assert!(pad > pad0 && real > real0);
    // The budget: the allowance plus 10 % of what was really sent.
    assert!(pad <= 4096 + real / 10, "{pad} of padding for {real} real bytes");
    // While it lasted, every flush was a multiple of the bucket.
    let padded = sizes.iter().take_while(|&&n| n % 512 == 0).count();
    assert!(padded >= 8, "{sizes:?}");
    // Once the budget runs out, flushes go out as they are.
    assert!(sizes.iter().any(|&n| n % 512 != 0));
}

#[test]
fn chaff_comes_on_an_idle_link_and_the_peer_drops_it() {
    let (mut a, mut b, now) = pair_with(Shaping::default());
    let due = a.poll_timeout().expect("chaff is scheduled on an established link");
    assert!(due >= now + Duration::from_secs(5) && due <= now + Duration::from_secs(15));
    a.handle_timeout(due - Duration::from_millis(1)).unwrap();
    assert!(a.poll_transmit().is_none(), "not yet");
    a.handle_timeout(due).unwrap();
    let chaff = a.poll_transmit().expect("chaff");
    assert!((MIN_CHAFF..=MAX_CHAFF + 512).contains(&chaff.len()), "{}", chaff.len());
    b.handle_input(due, &chaff).unwrap();
    assert!(b.poll_event().is_none(), "chaff reaches nobody");
    assert!(a.poll_timeout().unwrap() > due, "the next one is scheduled");
}

#[test]
fn tampering_replay_and_reordering_are_rejected() {
    let (mut a, mut b, now) = pair();
    a.send(&Message::Ping { nonce: 1 }).unwrap();
    let first = a.poll_transmit().unwrap();
    a.send(&Message::Ping { nonce: 2 }).unwrap();
    let second = a.poll_transmit().unwrap();

    // Flip one bit anywhere: rejected.
    for i in [0, HEADER_LEN + 1, first.len() - 1] {
        let (_a2, mut b2, _) = pair();
        let mut bad = first.clone();
        bad[i] ^= 1;
        assert!(matches!(b2.handle_input(now, &bad), Err(SessionError::FrameAuth)), "bit {i}");
    }
    // Reordering: frame 2 before frame 1 fails.
    let (mut a3, mut b3, _) = pair();
    a3.send(&Message::Ping { nonce: 1 }).unwrap();
    let _f1 = a3.poll_transmit().unwrap();
    a3.send(&Message::Ping { nonce: 2 }).unwrap();
    let f2 = a3.poll_transmit().unwrap();
    assert!(b3.handle_input(now, &f2).is_err());
    // Replay: the same frame twice fails the second time.
    b.handle_input(now, &first).unwrap();
    assert!(b.handle_input(now, &first).is_err());
    // And the dead session refuses everything after.
    assert!(matches!(b.handle_input(now, &second), Err(SessionError::Failed)));
}

#[test]
fn clock_skew_is_bounded() {
    let now = Instant::now();
    let mut a = Session::initiator(config(), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(), [2; 32], T0 + 3600, now);
    assert!(matches!(pump(&mut a, &mut b, now), Err(SessionError::ClockSkew(3600))));
}

#[test]
fn dialling_ourselves_is_detected_by_node_id() {
    // The same identity on both ends (a node dialling its own address): the initiator sees
    // its own node ID in the responder's identity payload.
    let now = Instant::now();
    let id = Identity::generate(&mut rand_core::OsRng);
    let mut a = Session::initiator(SessionConfig::new(id.clone()), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(SessionConfig::new(id), [2; 32], T0, now);
    b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
    let msg2 = b.poll_transmit().unwrap();
    assert!(matches!(a.handle_input(now, &msg2), Err(SessionError::SelfConnection)));
    assert!(a.poll_transmit().is_none(), "no identity payload is sent to ourselves");
}

#[test]
fn an_anonymous_initiator_shows_a_different_throwaway_identity_on_every_link() {
    let now = Instant::now();
    let mut ca = config();
    let real = ca.identity.node_id();
    ca.listen = vec!["tcp/192.0.2.7:7070".parse().unwrap()];
    ca.user_agent = "samizdat/0.3 (linux)".to_owned();
    ca.privacy = privacy_bits();
    let cb = config();
    let responder_id = cb.identity.node_id();
    let mut seen = Vec::new();
    for seed in 1..=3u8 {
        let mut a = Session::anonymous_initiator(ca.clone(), [seed; 32], T0, now).unwrap();
        assert!(a.is_anonymous());
        let mut b = Session::responder(cb.clone(), [9; 32], T0, now);
        assert!(!b.is_anonymous());
        pump(&mut a, &mut b, now).unwrap();
        let Some(SessionEvent::Established(pa)) = a.poll_event() else { panic!("a not up") };
        let Some(SessionEvent::Established(pb)) = b.poll_event() else { panic!("b not up") };
        // We still authenticate the responder; it sees a stranger.
        assert_eq!(pa.node_id, responder_id);
        assert_ne!(pb.node_id, real);
        assert!(!seen.contains(&pb.node_id), "the same throwaway identity twice");
        seen.push(pb.node_id);
        // Nothing in our Hello is particular to this node.
        assert!(pb.hello.listen.is_empty());
        assert_eq!(pb.hello.user_agent, DEFAULT_USER_AGENT);
        assert_eq!(pb.hello.privacy, 0);
        assert_eq!(pb.hello.timestamp % 60, 0, "the time to the minute only");
        assert_eq!(pb.hello.features, features::SERVE_CONTENT);
        assert_eq!(pb.features, features::SERVE_CONTENT);
        // Messages flow as on any link.
        a.send(&Message::Ping { nonce: 5 }).unwrap();
        pump(&mut a, &mut b, now).unwrap();
        assert!(matches!(b.poll_event(), Some(SessionEvent::Message(Message::Ping { nonce: 5 }))));
    }
    // The same seed gives the same link bytes (the simulator replays anonymous dials too).
    let first = |seed| {
        let mut a = Session::anonymous_initiator(ca.clone(), seed, T0, now).unwrap();
        a.poll_transmit().unwrap()
    };
    assert_eq!(first([4; 32]), first([4; 32]));
    assert_ne!(first([4; 32]), first([5; 32]));
}

#[test]
fn an_anonymous_initiator_still_recognises_itself() {
    let now = Instant::now();
    let id = Identity::generate(&mut rand_core::OsRng);
    let mut a =
        Session::anonymous_initiator(SessionConfig::new(id.clone()), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(SessionConfig::new(id), [2; 32], T0, now);
    b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
    let msg2 = b.poll_transmit().unwrap();
    assert!(matches!(a.handle_input(now, &msg2), Err(SessionError::SelfConnection)));
}

#[test]
fn responder_detects_an_initiator_with_its_own_identity() {
    let now = Instant::now();
    let id = Identity::generate(&mut rand_core::OsRng);
    let mut b = Session::responder(SessionConfig::new(id.clone()), [2; 32], T0, now);
    let mut raw = RawInitiator::new();
    b.handle_input(now, &raw.msg1(&[])).unwrap();
    raw.read_msg2(&b.poll_transmit().unwrap());
    let msg3 = raw.msg3(&raw.auth(&id));
    assert!(matches!(b.handle_input(now, &msg3), Err(SessionError::SelfConnection)));
}

#[test]
fn features_are_intersected() {
    let now = Instant::now();
    let mut ca = config();
    ca.features = features::SERVE_CONTENT;
    ca.privacy = privacy_bits();
    let mut cb = config();
    cb.privacy = samizdat_wire::privacy::PADDING;
    let mut a = Session::initiator(ca, [1; 32], T0, now).unwrap();
    let mut b = Session::responder(cb, [2; 32], T0, now);
    pump(&mut a, &mut b, now).unwrap();
    let Some(SessionEvent::Established(p)) = b.poll_event() else { panic!() };
    assert_eq!(p.features, features::SERVE_CONTENT);
    assert_eq!(p.privacy, samizdat_wire::privacy::PADDING);
}

fn privacy_bits() -> u32 {
    samizdat_wire::privacy::PADDING | samizdat_wire::privacy::JITTER
}

#[test]
fn handshake_times_out() {
    let now = Instant::now();
    let mut b = Session::responder(config(), [2; 32], T0, now);
    let later = b.poll_timeout().unwrap();
    assert!(matches!(b.handle_timeout(later), Err(SessionError::HandshakeTimeout)));
}

#[test]
fn same_seeds_give_same_bytes() {
    let now = Instant::now();
    let id = Identity::generate(&mut rand_core::OsRng);
    let mk = || SessionConfig::new(id.clone());
    let mut a1 = Session::initiator(mk(), [4; 32], T0, now).unwrap();
    let mut a2 = Session::initiator(mk(), [4; 32], T0, now).unwrap();
    assert_eq!(a1.poll_transmit(), a2.poll_transmit());
    let mut a3 = Session::initiator(mk(), [5; 32], T0, now).unwrap();
    let mut a4 = Session::initiator(mk(), [4; 32], T0, now).unwrap();
    assert_ne!(a3.poll_transmit(), a4.poll_transmit());
}

proptest::proptest! {
    #[test]
    fn garbage_input_never_panics(chunks in proptest::collection::vec(
        proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), 0..6)) {
        let now = Instant::now();
        let mut b = Session::responder(config(), [2; 32], T0, now);
        for c in chunks {
            if b.handle_input(now, &c).is_err() { break; }
        }
    }
}

/// Our in-place transport cipher is Noise's AESGCM `CipherState`: check it against snow's.
#[test]
fn transport_cipher_matches_snow() {
    let params: snow::params::NoiseParams = NOISE_PARAMS.parse().unwrap();
    let mk = |init: bool| {
        let b = snow::Builder::new(params.clone());
        let kp = b.generate_keypair().unwrap();
        let b = snow::Builder::new(params.clone()).local_private_key(&kp.private).unwrap();
        if init { b.build_initiator().unwrap() } else { b.build_responder().unwrap() }
    };
    let (mut i, mut r) = (mk(true), mk(false));
    let mut buf = [0u8; 1024];
    let mut payload = [0u8; 1024];
    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n], &mut payload).unwrap();
    let n = r.write_message(&[], &mut buf).unwrap();
    i.read_message(&buf[..n], &mut payload).unwrap();
    let n = i.write_message(&[], &mut buf).unwrap();
    r.read_message(&buf[..n], &mut payload).unwrap();
    let (k1, _k2) = i.dangerously_get_raw_split();
    let mut snow_ts = i.into_transport_mode().unwrap();
    let mut ours = cipher::CipherState::new(&k1).unwrap();
    for msg in [&b"first"[..], b"", &[7u8; 3000][..]] {
        let mut expected = vec![0u8; msg.len() + 16];
        snow_ts.write_message(msg, &mut expected).unwrap();
        let mut mine = msg.to_vec();
        mine.extend([0u8; 16]);
        ours.seal(&mut mine).unwrap();
        assert_eq!(mine, expected);
    }
    let (_, k2) = r.dangerously_get_raw_split();
    let mut r_ts = r.into_transport_mode().unwrap();
    let mut ours_recv = cipher::CipherState::new(&k2).unwrap();
    let mut ct = vec![0u8; 21];
    r_ts.write_message(b"hello", &mut ct).unwrap();
    let n = ours_recv.open(&mut ct).unwrap();
    assert_eq!(&ct[..n], b"hello");
}

/// A hand-driven Noise XX initiator, to send a [`Session`] responder handshake messages and
/// frames an honest session never would.
struct RawInitiator {
    hs: snow::HandshakeState,
    static_pub: Vec<u8>,
    send: Option<cipher::CipherState>,
}

/// Puts the 2-byte length in front of a handshake message.
fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = (msg.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    out
}

impl RawInitiator {
    fn new() -> Self {
        let params: snow::params::NoiseParams = NOISE_PARAMS.parse().unwrap();
        let kp = snow::Builder::new(params.clone()).generate_keypair().unwrap();
        let hs = snow::Builder::new(params)
            .local_private_key(&kp.private)
            .unwrap()
            .build_initiator()
            .unwrap();
        RawInitiator { hs, static_pub: kp.public, send: None }
    }

    fn msg1(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; 512];
        let n = self.hs.write_message(payload, &mut buf).unwrap();
        framed(&buf[..n])
    }

    /// Reads the responder's message 2; returns its payload.
    fn read_msg2(&mut self, wire: &[u8]) -> Vec<u8> {
        let mut payload = [0u8; 512];
        let n = self.hs.read_message(&wire[2..], &mut payload).unwrap();
        payload[..n].to_vec()
    }

    /// A valid identity payload for `identity` over this initiator's static key.
    fn auth(&self, identity: &Identity) -> Vec<u8> {
        let mut signed = SIGNED_STATIC_CONTEXT.to_vec();
        signed.extend_from_slice(&self.static_pub);
        let mut payload = identity.public_key().to_vec();
        payload.extend_from_slice(&identity.sign(&signed));
        payload
    }

    /// Writes message 3 and switches to transport mode.
    fn msg3(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; 512];
        let n = self.hs.write_message(payload, &mut buf).unwrap();
        let (k1, _k2) = self.hs.dangerously_get_raw_split();
        self.send = Some(cipher::CipherState::new(&k1).unwrap());
        framed(&buf[..n])
    }

    /// A transport frame whose encrypted length field says `len` around `body`.
    fn frame_claiming(&mut self, len: u16, body: &[u8]) -> Vec<u8> {
        let send = self.send.as_mut().unwrap();
        let mut header = len.to_be_bytes().to_vec();
        header.extend([0u8; TAG_LEN]);
        send.seal(&mut header).unwrap();
        let mut sealed = body.to_vec();
        sealed.extend([0u8; TAG_LEN]);
        send.seal(&mut sealed).unwrap();
        header.extend(sealed);
        header
    }

    fn frame(&mut self, body: &[u8]) -> Vec<u8> {
        self.frame_claiming(body.len() as u16, body)
    }

    fn message(&mut self, msg: &Message) -> Vec<u8> {
        self.frame(&msg.encode_to_vec())
    }
}

fn hello(timestamp: u64) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        timestamp,
        features: features::ALL,
        privacy: 0,
        user_agent: DEFAULT_USER_AGENT.to_owned(),
        listen: Vec::new(),
    }
}

/// A responder that has accepted a raw initiator's valid handshake; the responder's `Hello`
/// is waiting in its output.
fn raw_pair() -> (RawInitiator, Session, Instant) {
    let now = Instant::now();
    let mut b = Session::responder(config(), [2; 32], T0, now);
    let mut raw = RawInitiator::new();
    b.handle_input(now, &raw.msg1(&[])).unwrap();
    let payload = raw.read_msg2(&b.poll_transmit().unwrap());
    assert_eq!(payload.len(), AUTH_PAYLOAD_LEN);
    let id = Identity::generate(&mut rand_core::OsRng);
    let msg3 = raw.msg3(&raw.auth(&id));
    b.handle_input(now, &msg3).unwrap();
    assert_eq!(b.peer_id(), Some(id.node_id()));
    assert!(!b.is_established());
    (raw, b, now)
}

fn bad_frame(r: Result<(), SessionError>) -> &'static str {
    match r {
        Err(SessionError::BadFrame(why)) => why,
        other => panic!("expected BadFrame, got {other:?}"),
    }
}

#[test]
fn empty_handshake_message_is_refused() {
    let mut b = Session::responder(config(), [2; 32], T0, Instant::now());
    assert_eq!(bad_frame(b.handle_input(Instant::now(), &[0, 0])), "empty handshake message");
}

#[test]
fn overlong_handshake_message_is_refused_before_it_arrives() {
    // A responder's first message may be an exchange request (longer than a handshake's).
    let mut b = Session::responder(config(), [2; 32], T0, Instant::now());
    let len = (exchange::MAX_EXCHANGE_MSG as u16 + 1).to_be_bytes();
    assert_eq!(bad_frame(b.handle_input(Instant::now(), &len)), "exchange message too long");
    // Any later handshake message is held to the handshake's limit.
    let mut a = Session::initiator(config(), [1; 32], T0, Instant::now()).unwrap();
    let len = (MAX_HANDSHAKE_MSG as u16 + 1).to_be_bytes();
    assert_eq!(bad_frame(a.handle_input(Instant::now(), &len)), "handshake message too long");
}

#[test]
fn payload_in_the_first_message_is_refused() {
    let now = Instant::now();
    let mut b = Session::responder(config(), [2; 32], T0, now);
    let mut raw = RawInitiator::new();
    let msg1 = raw.msg1(b"hello in clear");
    // Longer than a bare ephemeral key, it is read as an exchange request, which it is not.
    assert!(b.handle_input(now, &msg1).is_err());
}

#[test]
fn identity_payload_of_the_wrong_size_is_refused() {
    for len in [0, AUTH_PAYLOAD_LEN - 1, AUTH_PAYLOAD_LEN + 1] {
        let now = Instant::now();
        let mut b = Session::responder(config(), [2; 32], T0, now);
        let mut raw = RawInitiator::new();
        b.handle_input(now, &raw.msg1(&[])).unwrap();
        raw.read_msg2(&b.poll_transmit().unwrap());
        let id = Identity::generate(&mut rand_core::OsRng);
        let mut payload = raw.auth(&id);
        payload.resize(len, 0);
        let msg3 = raw.msg3(&payload);
        assert_eq!(
            bad_frame(b.handle_input(now, &msg3)),
            "identity payload has the wrong size",
            "payload of {len} bytes"
        );
    }
}

#[test]
fn identity_signature_over_another_key_is_refused() {
    let now = Instant::now();
    let mut b = Session::responder(config(), [2; 32], T0, now);
    let mut raw = RawInitiator::new();
    b.handle_input(now, &raw.msg1(&[])).unwrap();
    raw.read_msg2(&b.poll_transmit().unwrap());
    // A valid signature, but over some other Noise static key (a replayed identity payload).
    let id = Identity::generate(&mut rand_core::OsRng);
    let mut payload = raw.auth(&id);
    let mut signed = SIGNED_STATIC_CONTEXT.to_vec();
    signed.extend_from_slice(&[9u8; 32]);
    payload[32..].copy_from_slice(&id.sign(&signed));
    let msg3 = raw.msg3(&payload);
    assert!(matches!(b.handle_input(now, &msg3), Err(SessionError::Identity(_))));
    assert_eq!(b.peer_id(), None);
}

#[test]
fn tampered_handshake_message_is_refused() {
    let now = Instant::now();
    let mut a = Session::initiator(config(), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(), [2; 32], T0, now);
    b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
    let mut msg2 = b.poll_transmit().unwrap();
    let last = msg2.len() - 1;
    msg2[last] ^= 1;
    assert!(matches!(a.handle_input(now, &msg2), Err(SessionError::Crypto(_))));
}

#[test]
fn hello_of_another_version_is_refused() {
    let (mut raw, mut b, now) = raw_pair();
    let msg = raw.message(&Message::Hello(Hello { version: PROTOCOL_VERSION + 1, ..hello(T0) }));
    assert!(
        matches!(b.handle_input(now, &msg), Err(SessionError::Version(v)) if v == PROTOCOL_VERSION + 1)
    );
}

#[test]
fn clock_skew_bound_is_inclusive_both_ways() {
    for (ts, ok) in [(T0 - 600, true), (T0 + 600, true), (T0 - 601, false), (T0 + 601, false)] {
        let (mut raw, mut b, now) = raw_pair();
        let r = b.handle_input(now, &raw.message(&Message::Hello(hello(ts))));
        if ok {
            r.unwrap();
            assert!(b.is_established());
        } else {
            assert!(matches!(r, Err(SessionError::ClockSkew(601))), "{ts}: {r:?}");
        }
    }
}

#[test]
fn message_before_hello_is_refused() {
    let (mut raw, mut b, now) = raw_pair();
    let msg = raw.message(&Message::Ping { nonce: 1 });
    assert!(matches!(
        b.handle_input(now, &msg),
        Err(SessionError::Unexpected("message before hello"))
    ));
}

#[test]
fn second_hello_is_refused() {
    let (mut raw, mut b, now) = raw_pair();
    b.handle_input(now, &raw.message(&Message::Hello(hello(T0)))).unwrap();
    let again = raw.message(&Message::Hello(hello(T0)));
    assert!(matches!(b.handle_input(now, &again), Err(SessionError::Unexpected("second hello"))));
}

#[test]
fn undecodable_message_is_refused() {
    let (mut raw, mut b, now) = raw_pair();
    let msg = raw.frame(&[0xEE, 1, 2, 3]);
    assert!(matches!(b.handle_input(now, &msg), Err(SessionError::Decode(_))));
}

#[test]
fn frame_claiming_more_than_the_maximum_is_refused_at_its_header() {
    let (mut raw, mut b, now) = raw_pair();
    let frame = raw.frame_claiming(MAX_FRAME_PLAINTEXT as u16 + 1, &[0; 8]);
    // The header alone is enough to refuse it: nothing waits for 64 KiB that never come.
    assert_eq!(
        bad_frame(b.handle_input(now, &frame[..HEADER_LEN])),
        "frame longer than the maximum"
    );
}

#[test]
fn frame_whose_length_was_tampered_with_is_refused() {
    let (mut raw, mut b, now) = raw_pair();
    let mut frame = raw.message(&Message::Hello(hello(T0)));
    frame[0] ^= 0x80;
    assert!(matches!(b.handle_input(now, &frame), Err(SessionError::FrameAuth)));
}

#[test]
fn sending_before_the_handshake_is_refused() {
    let mut a = Session::initiator(config(), [1; 32], T0, Instant::now()).unwrap();
    let queued = a.pending_transmit();
    assert!(matches!(
        a.send(&Message::Ping { nonce: 1 }),
        Err(SessionError::Unexpected("send before handshake"))
    ));
    assert_eq!(a.pending_transmit(), queued);
}

#[test]
fn largest_messages_fit_in_one_frame() {
    // Every message the wire encodes is at most `MAX_MESSAGE_LEN` (the codec caps group data,
    // leaves and addresses), under the frame limit, so `TooLarge` guards only future ones.
    const { assert!(samizdat_wire::MAX_MESSAGE_LEN <= MAX_FRAME_PLAINTEXT) };
    let (mut a, mut b, now) = pair();
    while b.poll_event().is_some() {}
    let data = vec![5; samizdat_wire::GROUP_SIZE];
    let big = Message::Transfer(TransferMsg::Group { req: 1, index: 0, data });
    a.send(&big).unwrap();
    pump(&mut a, &mut b, now).unwrap();
    assert!(matches!(b.poll_event(), Some(SessionEvent::Message(m)) if m == big));
}

#[test]
fn handshake_deadline_applies_to_input_too() {
    let now = Instant::now();
    let mut a = Session::initiator(config(), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(), [2; 32], T0, now);
    let deadline = b.poll_timeout().unwrap();
    assert_eq!(deadline, now + Duration::from_secs(20));
    b.handle_timeout(deadline - Duration::from_millis(1)).unwrap();
    let msg1 = a.poll_transmit().unwrap();
    assert!(matches!(b.handle_input(deadline, &msg1), Err(SessionError::HandshakeTimeout)));
    assert!(matches!(b.handle_input(deadline, &msg1), Err(SessionError::Failed)));
    assert_eq!(b.poll_timeout(), None);
}

#[test]
fn established_sessions_have_no_deadline() {
    let (a, b, now) = pair_with(Shaping::OFF);
    assert_eq!(a.poll_timeout(), None);
    assert_eq!(b.poll_timeout(), None);
    let mut a = a;
    a.handle_timeout(now + Duration::from_secs(3600)).unwrap();
    assert!(a.is_established());
}

fn transport(s: &mut Session) -> &mut Transport {
    match &mut s.state {
        State::Transport(t) => t,
        _ => panic!("not in transport mode"),
    }
}

#[test]
fn nonce_exhaustion_ends_the_session() {
    let (mut a, mut b, now) = pair();
    // Sending: the header takes the last usable nonce, the body finds none left.
    transport(&mut a).send.set_counter(u64::MAX - 1);
    assert!(matches!(a.send(&Message::Ping { nonce: 1 }), Err(SessionError::NonceExhausted)));
    // Receiving: no frame can be read once the counter is at its end.
    let (mut c, _d, _) = pair();
    c.send(&Message::Ping { nonce: 2 }).unwrap();
    let frame = c.poll_transmit().unwrap();
    transport(&mut b).recv.set_counter(u64::MAX);
    assert!(matches!(b.handle_input(now, &frame), Err(SessionError::NonceExhausted)));
}

#[test]
fn poll_transmit_reusing_hands_back_the_frames() {
    let (mut a, mut b, now) = pair();
    while b.poll_event().is_some() {}
    assert!(a.poll_transmit_reusing(Vec::new()).is_none());
    let mut spare = Vec::with_capacity(1 << 16);
    spare.extend_from_slice(b"stale bytes are discarded");
    a.send(&Message::Ping { nonce: 11 }).unwrap();
    let wire = a.poll_transmit_reusing(spare).unwrap();
    // The next frame goes into the spare buffer, without its stale contents.
    a.send(&Message::Ping { nonce: 12 }).unwrap();
    assert!(a.outbuf.capacity() >= 1 << 16);
    assert_eq!(a.pending_transmit(), HEADER_LEN + 9 + TAG_LEN);
    b.handle_input(now, &wire).unwrap();
    b.handle_input(now, &a.poll_transmit().unwrap()).unwrap();
    for n in [11, 12] {
        assert!(
            matches!(b.poll_event(), Some(SessionEvent::Message(Message::Ping { nonce })) if nonce == n)
        );
    }
}

#[test]
fn listen_addresses_and_user_agent_are_announced() {
    let now = Instant::now();
    let mut ca = config();
    ca.listen = vec![PeerAddr::new("tcp/192.0.2.1:4000").unwrap()];
    ca.user_agent = "test agent".to_owned();
    let mut a = Session::initiator(ca, [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(), [2; 32], T0, now);
    pump(&mut a, &mut b, now).unwrap();
    let Some(SessionEvent::Established(p)) = b.poll_event() else { panic!() };
    assert_eq!(p.hello.listen, vec![PeerAddr::new("tcp/192.0.2.1:4000").unwrap()]);
    assert_eq!(p.hello.user_agent, "test agent");
    assert_eq!(p.hello.timestamp, T0);
}

#[test]
fn idle_session_holds_no_buffers() {
    let (mut a, mut b, now) = pair();
    let group =
        Message::Transfer(TransferMsg::Group { req: 1, index: 3, data: vec![7; 32 * 1024] });
    for _ in 0..8 {
        a.send(&group).unwrap();
        b.send(&group).unwrap();
    }
    pump(&mut a, &mut b, now).unwrap();
    for s in [&mut a, &mut b] {
        let mut got = 0;
        while let Some(ev) = s.poll_event() {
            got += usize::from(matches!(ev, SessionEvent::Message(_)));
        }
        assert_eq!(got, 8);
        assert_eq!(s.inbuf.capacity(), 0, "input buffer kept");
        assert_eq!(s.outbuf.capacity(), 0, "output buffer kept");
        assert_eq!(s.events.capacity(), 0, "event queue kept");
        assert_eq!(s.auth_payload.capacity(), 0, "identity payload kept");
        assert!(s.local.listen.is_empty() && s.local.user_agent.is_empty());
    }
    // What an established session holds inline stays small (the identity is not copied in).
    assert!(std::mem::size_of::<Session>() <= 400, "{}", std::mem::size_of::<Session>());
}

#[test]
fn after_a_burst_the_next_frame_reserves_what_the_last_flush_held() {
    let (mut a, _b, _) = pair();
    let group =
        Message::Transfer(TransferMsg::Group { req: 1, index: 3, data: vec![7; 32 * 1024] });
    for _ in 0..4 {
        a.send(&group).unwrap();
    }
    let flushed = a.poll_transmit().unwrap().len();
    a.send(&group).unwrap();
    assert!(a.outbuf.capacity() >= flushed, "regrowing from nothing");
}

#[test]
fn debug_output_names_only_the_peer() {
    let (a, _b, _) = pair();
    let text = format!("{a:?}");
    assert!(text.starts_with("Session") && text.contains("established: true"), "{text}");
}

/// Everything `a` sends from the start (handshake, `Hello`, then `msgs`), and the events `b`
/// sees when fed it by `feed` in pieces cut at `cuts`.
fn replay_in_pieces(
    cuts: &[usize],
    msgs: &[Message],
    feed: impl Fn(&mut Session, Instant, &[u8]) -> Result<(), SessionError>,
) -> Vec<Option<Message>> {
    let now = Instant::now();
    let fixed = SessionConfig::new(Identity::from_secret_bytes(&[7; 32]).unwrap());
    let mut a = Session::initiator(fixed, [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(), [2; 32], T0, now);
    // Handshake messages one by one; the initiator's last one and everything after it are
    // collected into one stream and cut up.
    let m1 = a.poll_transmit().unwrap();
    b.handle_input(now, &m1).unwrap();
    a.handle_input(now, &b.poll_transmit().unwrap()).unwrap();
    for m in msgs {
        a.send(m).unwrap();
    }
    let stream = a.poll_transmit().unwrap();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();
    for w in points.windows(2) {
        feed(&mut b, now, &stream[w[0]..w[1]]).unwrap();
    }
    assert!(b.inbuf.is_empty(), "nothing left pending once the stream is in");
    let peer = b.peer_id();
    std::iter::from_fn(|| b.poll_event())
        .map(|e| match e {
            SessionEvent::Established(info) => {
                assert_eq!(Some(info.node_id), peer);
                None
            }
            SessionEvent::Message(m) => Some(m),
            SessionEvent::Query(_) | SessionEvent::Answer(_) => panic!("not an exchange"),
        })
        .collect()
}

proptest::proptest! {
    #[test]
    fn owned_input_decodes_exactly_what_borrowed_input_does(
        cuts in proptest::collection::vec(0usize..300_000, 0..12),
        sizes in proptest::collection::vec(0usize..=GROUP_SIZE, 1..8),
    ) {
        let msgs: Vec<Message> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| if n % 3 == 0 {
                Message::Ping { nonce: n as u64 }
            } else {
                Message::Transfer(TransferMsg::Group { req: i as u32, index: 0, data: vec![i as u8; n] })
            })
            .collect();
        let borrowed = replay_in_pieces(&cuts, &msgs, |s, now, d| s.handle_input(now, d));
        let owned = replay_in_pieces(&cuts, &msgs, |s, now, d| s.handle_input_owned(now, d.to_vec()));
        let expected: Vec<Option<Message>> =
            std::iter::once(None).chain(msgs.into_iter().map(Some)).collect();
        proptest::prop_assert_eq!(&borrowed, &expected);
        proptest::prop_assert_eq!(&owned, &expected);
    }
}

#[test]
fn owned_input_refuses_tampering_and_then_everything() {
    let (mut a, mut b, now) = pair();
    a.send(&Message::Ping { nonce: 1 }).unwrap();
    a.send(&Message::Ping { nonce: 2 }).unwrap();
    let mut bytes = a.poll_transmit().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    // The first frame arrives split, the second (tampered) one whole.
    let (head, tail) = bytes.split_at(5);
    b.handle_input_owned(now, head.to_vec()).unwrap();
    assert!(matches!(b.handle_input_owned(now, tail.to_vec()), Err(SessionError::FrameAuth)));
    assert!(matches!(b.handle_input_owned(now, vec![0; 10]), Err(SessionError::Failed)));
}

#[test]
fn owned_input_refuses_an_overlong_frame_at_its_header() {
    let (mut raw, mut b, now) = raw_pair();
    let hello = raw.message(&Message::Hello(hello(T0)));
    b.handle_input_owned(now, hello).unwrap();
    // A header claiming more than the maximum, split so the length arrives in two reads.
    let frame = raw.frame_claiming((MAX_FRAME_PLAINTEXT + 1) as u16, &[]);
    b.handle_input_owned(now, frame[..3].to_vec()).unwrap();
    let r = b.handle_input_owned(now, frame[3..HEADER_LEN].to_vec());
    assert_eq!(bad_frame(r), "frame longer than the maximum");
}
