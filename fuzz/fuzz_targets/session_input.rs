//! Arbitrary transport bytes fed to a `Session` in every state a peer can reach without our
//! keys: a fresh responder, an initiator waiting for message 2, an exchange waiting for its
//! answer, an answered exchange, and (when the input asks) an established session. Errors are expected; a panic is a bug.
//!
//! Input layout: `flags || u16 split || u16 split || payload`. The two split points (modulo the
//! payload length) cut the payload into three chunks, so the fuzzer explores messages that
//! arrive across several reads. Flag bit 0 also drives an established session; bit 1 delivers
//! the last chunk after the handshake deadline; bit 2 feeds owned buffers
//! (`handle_input_owned`, which decrypts whole frames in place) instead of borrowed ones; bit 3
//! makes the exchange an identified one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_identity::Identity;
use samizdat_session::{Session, SessionConfig};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

const T: u64 = 1_800_000_000;

/// The two sides' configurations, built once: deriving an identity is not what is under test.
static CONFIGS: LazyLock<[SessionConfig; 2]> = LazyLock::new(|| {
    let config = |secret: u8| {
        let identity = Identity::from_secret_bytes(&[secret; 32]).expect("a fixed identity");
        SessionConfig::new(identity)
    };
    [config(7), config(8)]
});

/// Shuttles bytes between two honest sessions until neither has anything to send.
fn pump(a: &mut Session, b: &mut Session, now: Instant) {
    loop {
        let mut moved = false;
        if let Some(bytes) = a.poll_transmit() {
            b.handle_input(now, &bytes).expect("honest handshake");
            moved = true;
        }
        if let Some(bytes) = b.poll_transmit() {
            a.handle_input(now, &bytes).expect("honest handshake");
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

/// Feeds the chunks in order, draining output and events after each, and checks that a failed
/// session stays failed.
fn drive(session: &mut Session, chunks: &[&[u8]], now: Instant, late: bool, owned: bool) {
    for (i, chunk) in chunks.iter().enumerate() {
        let t = if late && i + 1 == chunks.len() { now + Duration::from_secs(3600) } else { now };
        let result = if owned {
            session.handle_input_owned(t, chunk.to_vec())
        } else {
            session.handle_input(t, chunk)
        };
        while session.poll_transmit().is_some() {}
        while session.poll_event().is_some() {}
        if result.is_err() {
            assert!(session.handle_input(t, chunk).is_err(), "a failed session accepts input");
            assert!(session.poll_timeout().is_none(), "a failed session asks for a timeout");
            return;
        }
    }
    let _ = session.poll_timeout();
    let _ = session.handle_timeout(now);
}

fuzz_target!(|data: &[u8]| {
    let [flags, a0, a1, b0, b1, payload @ ..] = data else { return };
    let n = payload.len() + 1;
    let a = usize::from(u16::from_be_bytes([*a0, *a1])) % n;
    let b = usize::from(u16::from_be_bytes([*b0, *b1])) % n;
    let (lo, hi) = (a.min(b), a.max(b));
    let chunks = [&payload[..lo], &payload[lo..hi], &payload[hi..]];
    let (late, owned) = (flags & 2 != 0, flags & 4 != 0);
    let now = Instant::now();
    let [c7, c8] = &*CONFIGS;

    let mut responder = Session::responder(c7.clone(), [0; 32], T, now);
    drive(&mut responder, &chunks, now, late, owned);

    let mut initiator = Session::initiator(c8.clone(), [1; 32], T, now).expect("initiator");
    let _ = initiator.poll_transmit(); // message 1 goes nowhere: the fuzzer plays the responder
    drive(&mut initiator, &chunks, now, late, owned);

    // An exchange waiting for its answer (the fuzzer plays the responder), and one that was
    // asked honestly and answered (anything more must fail it).
    let responder = c7.identity.public_key();
    let identify = flags & 8 != 0;
    let mut asking =
        Session::exchange(c8.clone(), [4; 32], now, &responder, identify, b"q").expect("exchange");
    let request = asking.poll_transmit().expect("a request");
    drive(&mut asking, &chunks, now, late, owned);
    let mut answered = Session::responder(c7.clone(), [5; 32], T, now);
    answered.handle_input(now, &request).expect("an honest request");
    answered.answer(b"a").expect("an answer");
    let _ = answered.poll_transmit();
    drive(&mut answered, &chunks, now, late, owned);

    if flags & 1 != 0 {
        let mut a = Session::initiator(c7.clone(), [2; 32], T, now).expect("initiator");
        let mut b = Session::responder(c8.clone(), [3; 32], T, now);
        pump(&mut a, &mut b, now);
        assert!(a.is_established() && b.is_established(), "honest handshake completes");
        drive(&mut a, &chunks, now, late, owned);
        drive(&mut b, &chunks, now, late, owned);
    }
});
