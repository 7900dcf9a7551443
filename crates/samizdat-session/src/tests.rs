#![allow(clippy::unwrap_used, clippy::disallowed_methods)]
use super::*;
use samizdat_wire::ContentRoot;

const T0: u64 = 1_800_000_000;

fn config(nonce: u64) -> SessionConfig {
    SessionConfig::new(Identity::generate(&mut rand_core::OsRng), nonce)
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
    let mut a = Session::initiator(config(1), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(2), [2; 32], T0 + 5, now);
    pump(&mut a, &mut b, now).unwrap();
    (a, b, now)
}

#[test]
fn handshake_authenticates_both_sides() {
    let now = Instant::now();
    let (ca, cb) = (config(1), config(2));
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
    let group = Message::Group { root: ContentRoot([9; 32]), index: 3, data: vec![7; 32 * 1024] };
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
    let mut a = Session::initiator(config(1), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(2), [2; 32], T0, now);
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
    let (mut a, _b, _) = pair();
    a.send(&Message::Ping { nonce: 5 }).unwrap();
    let wire = a.poll_transmit().unwrap();
    // Ping encodes to 9 bytes: a clear length would show as 0x0009 at the start.
    assert_eq!(wire.len(), HEADER_LEN + 9 + TAG_LEN);
    assert_ne!(&wire[..2], &[0, 9]);
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
    let mut a = Session::initiator(config(1), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(2), [2; 32], T0 + 3600, now);
    assert!(matches!(pump(&mut a, &mut b, now), Err(SessionError::ClockSkew(3600))));
}

#[test]
fn self_connection_is_detected() {
    let now = Instant::now();
    let mut a = Session::initiator(config(7), [1; 32], T0, now).unwrap();
    let mut b = Session::responder(config(7), [2; 32], T0, now);
    assert!(matches!(pump(&mut a, &mut b, now), Err(SessionError::SelfConnection)));
}

#[test]
fn features_are_intersected() {
    let now = Instant::now();
    let mut ca = config(1);
    ca.features = features::SERVE_CONTENT;
    ca.privacy = privacy_bits();
    let mut cb = config(2);
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
    let mut b = Session::responder(config(2), [2; 32], T0, now);
    let later = b.poll_timeout().unwrap();
    assert!(matches!(b.handle_timeout(later), Err(SessionError::HandshakeTimeout)));
}

#[test]
fn same_seeds_give_same_bytes() {
    let now = Instant::now();
    let id = Identity::generate(&mut rand_core::OsRng);
    let mk = || SessionConfig::new(id.clone(), 1);
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
        let mut b = Session::responder(config(2), [2; 32], T0, now);
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
