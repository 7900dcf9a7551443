//! One-round-trip exchanges: a request and its answer, authenticated by the responder's
//! identity key, without a session.
//!
//! A DHT contact is asked one question and answers once; a full session (Noise XX, two
//! signatures, two `Hello`s, then the request) costs three round trips and both identities
//! for that. An exchange is **Noise NK** (`Noise_NK_25519_AESGCM_SHA256`) against the X25519
//! form of the responder's Ed25519 identity key, which the initiator already knows from the
//! contact ([`samizdat_identity::x25519_public`]):
//!
//! ```text
//! -> e, es, enc(flags || [identity key || signature] || body)
//! <- e, ee, enc(answer)
//! ```
//!
//! * **The responder is authenticated:** only the holder of the identity key can compute `es`,
//!   so only it can read the request, and the answer (under `ee` and `es`) can only come from
//!   it. An impostor at the address fails to decrypt and the initiator's read fails.
//! * **The initiator is anonymous** unless it chooses to identify itself (a node that offers
//!   itself as a contact, or stores records): then the request carries its Ed25519 key and a
//!   signature over the responder's key and the body, readable by the responder only. The
//!   signature names the responder, so it cannot be used with anyone else.
//! * **Forward secrecy:** the answer is under the ephemeral-ephemeral key. The request is
//!   readable by whoever later steals the responder's identity key (as in any 0-RTT
//!   handshake); the responder reads it anyway, so this exposes nothing to a third party that
//!   the responder could not have logged.
//! * **Replays:** a replayed request is answered again, under a fresh ephemeral key the
//!   replayer cannot use. The DHT's requests are idempotent (the same signed record stored
//!   twice is a no-op), and a replay from another host fails the address checks that tie a
//!   contact or a provider record to the host it came from.
//!
//! Messages travel behind a 2-byte length, like the session's handshake messages; the
//! responder tells an exchange from a session by its first message's length (a session's is
//! exactly the 32-byte ephemeral key).

use crate::SessionError;
use crate::noise::SeededResolver;
use samizdat_identity::{Identity, NodeId};
use zeroize::Zeroizing;

/// Noise protocol of an exchange.
pub const EXCHANGE_PARAMS: &str = "Noise_NK_25519_AESGCM_SHA256";
/// Largest body of a request or an answer.
pub const MAX_EXCHANGE_BODY: usize = 20 * 1024;
const PROLOGUE: &[u8] = b"samizdat 2026 exchange v1";
const SIGNED_CONTEXT: &[u8] = b"samizdat 2026 exchange request v1";
const TAG_LEN: usize = 16;
const FLAG_IDENTIFIED: u8 = 1;
const IDENTITY_LEN: usize = 32 + 64;
/// Length of a session's first handshake message (the ephemeral key alone).
pub(crate) const SESSION_FIRST_LEN: usize = 32;
/// Longest exchange message: ephemeral key, flags, identity, body, tag.
pub(crate) const MAX_EXCHANGE_MSG: usize = 32 + 1 + IDENTITY_LEN + MAX_EXCHANGE_BODY + TAG_LEN;

/// A request that arrived in an exchange.
#[derive(Debug)]
pub struct Query {
    /// The initiator's identity key and node ID, if it identified itself (verified).
    pub from: Option<([u8; 32], NodeId)>,
    /// The request.
    pub body: Vec<u8>,
}

/// What a responder session keeps to answer an exchange, until its first message arrives.
pub(crate) struct ResponderKey {
    pub(crate) secret: Zeroizing<[u8; 32]>,
    pub(crate) public_key: [u8; 32],
    pub(crate) seed: [u8; 32],
}

impl ResponderKey {
    pub(crate) fn new(identity: &Identity, seed: [u8; 32]) -> Self {
        // A seed of its own, independent of the one the session's handshake draws from.
        let mut seed = seed;
        seed[0] ^= 0x5a;
        seed[31] ^= 0xa5;
        ResponderKey { secret: identity.x25519_secret(), public_key: identity.public_key(), seed }
    }
}

fn builder<'a>(seed: [u8; 32]) -> Result<snow::Builder<'a>, SessionError> {
    let params = EXCHANGE_PARAMS.parse().map_err(SessionError::Crypto)?;
    Ok(snow::Builder::with_resolver(params, Box::new(SeededResolver::new(seed)))
        .prologue(PROLOGUE)?)
}

fn signed_message(responder: &[u8; 32], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNED_CONTEXT.len() + 32 + body.len());
    m.extend_from_slice(SIGNED_CONTEXT);
    m.extend_from_slice(responder);
    m.extend_from_slice(body);
    m
}

/// Writes the first message of an exchange with the holder of `responder` (an Ed25519
/// identity key) into `out` (behind its length); returns the handshake waiting for the answer.
pub(crate) fn initiate(
    identity: &Identity,
    seed: [u8; 32],
    responder: &[u8; 32],
    identify: bool,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<snow::HandshakeState, SessionError> {
    if body.len() > MAX_EXCHANGE_BODY {
        return Err(SessionError::TooLarge(body.len()));
    }
    if *responder == identity.public_key() {
        return Err(SessionError::SelfConnection);
    }
    let remote = samizdat_identity::x25519_public(responder)?;
    let mut hs = builder(seed)?.remote_public_key(&remote)?.build_initiator()?;
    let mut plain = Vec::with_capacity(1 + IDENTITY_LEN + body.len());
    if identify {
        plain.push(FLAG_IDENTIFIED);
        plain.extend_from_slice(&identity.public_key());
        plain.extend_from_slice(&identity.sign(&signed_message(responder, body)));
    } else {
        plain.push(0);
    }
    plain.extend_from_slice(body);
    let mut msg = vec![0u8; 32 + plain.len() + TAG_LEN];
    let n = hs.write_message(&plain, &mut msg)?;
    push_message(out, &msg[..n]);
    Ok(hs)
}

/// Reads an exchange's first message `msg` (without its length) as the holder of `key`;
/// returns the request and the handshake ready to answer it.
pub(crate) fn respond(
    key: &ResponderKey,
    own_id: NodeId,
    msg: &[u8],
) -> Result<(Query, snow::HandshakeState), SessionError> {
    let mut hs = builder(key.seed)?.local_private_key(&key.secret[..])?.build_responder()?;
    let mut plain = vec![0u8; msg.len()];
    let n = hs.read_message(msg, &mut plain)?;
    plain.truncate(n);
    let (&flags, rest) = plain.split_first().ok_or(SessionError::BadFrame("empty request"))?;
    let (from, body) = match flags {
        0 => (None, rest),
        FLAG_IDENTIFIED => {
            if rest.len() < IDENTITY_LEN {
                return Err(SessionError::BadFrame("request identity cut short"));
            }
            let (ident, body) = rest.split_at(IDENTITY_LEN);
            let mut public = [0u8; 32];
            public.copy_from_slice(&ident[..32]);
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&ident[32..]);
            let node =
                samizdat_identity::verify(&public, &signed_message(&key.public_key, body), &sig)?;
            if node == own_id {
                return Err(SessionError::SelfConnection);
            }
            (Some((public, node)), body)
        }
        _ => return Err(SessionError::BadFrame("unknown request flags")),
    };
    if body.len() > MAX_EXCHANGE_BODY {
        return Err(SessionError::TooLarge(body.len()));
    }
    Ok((Query { from, body: body.to_vec() }, hs))
}

/// Writes the answer `body` (behind its length) into `out`.
pub(crate) fn answer(
    hs: &mut snow::HandshakeState,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SessionError> {
    if body.len() > MAX_EXCHANGE_BODY {
        return Err(SessionError::TooLarge(body.len()));
    }
    let mut msg = vec![0u8; 32 + body.len() + TAG_LEN];
    let n = hs.write_message(body, &mut msg)?;
    push_message(out, &msg[..n]);
    Ok(())
}

/// Reads the answer `msg` (without its length).
pub(crate) fn read_answer(
    hs: &mut snow::HandshakeState,
    msg: &[u8],
) -> Result<Vec<u8>, SessionError> {
    let mut plain = vec![0u8; msg.len()];
    let n = hs.read_message(msg, &mut plain)?;
    plain.truncate(n);
    Ok(plain)
}

fn push_message(out: &mut Vec<u8>, msg: &[u8]) {
    // Every message is at most MAX_EXCHANGE_MSG bytes, well under 65536.
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use super::*;
    use crate::{Session, SessionConfig, SessionEvent};
    use std::time::{Duration, Instant};

    fn config() -> SessionConfig {
        SessionConfig::new(Identity::generate(&mut rand_core::OsRng))
    }

    /// Runs one exchange from `a` to the holder of `b`; returns what each side saw.
    fn run(a: &SessionConfig, b: &SessionConfig, identify: bool, body: &[u8]) -> (Query, Vec<u8>) {
        let now = Instant::now();
        let responder = b.identity.public_key();
        let mut ask =
            Session::exchange(a.clone(), [1; 32], now, &responder, identify, body).unwrap();
        assert!(ask.is_exchange());
        let mut answer = Session::responder(b.clone(), [2; 32], 0, now);
        // Delivered a byte at a time: partial messages wait for the rest.
        for byte in ask.poll_transmit().unwrap() {
            answer.handle_input(now, &[byte]).unwrap();
        }
        let Some(SessionEvent::Query(query)) = answer.poll_event() else { panic!("no query") };
        answer.answer(b"the answer").unwrap();
        assert!(answer.is_exchange() && answer.poll_timeout().is_none());
        assert!(answer.answer(b"twice").is_err());
        ask.handle_input(now, &answer.poll_transmit().unwrap()).unwrap();
        let Some(SessionEvent::Answer(got)) = ask.poll_event() else { panic!("no answer") };
        assert!(ask.poll_timeout().is_none());
        // Both ends are done: more input is refused.
        assert!(ask.handle_input(now, &[0, 1, 2]).is_err());
        assert!(answer.handle_input(now, &[0, 1, 2]).is_err());
        (*query, got)
    }

    #[test]
    fn an_anonymous_exchange_carries_one_request_and_its_answer() {
        let (a, b) = (config(), config());
        let (query, answer) = run(&a, &b, false, b"find node X");
        assert!(query.from.is_none());
        assert_eq!(query.body, b"find node X");
        assert_eq!(answer, b"the answer");
    }

    #[test]
    fn an_identified_exchange_proves_the_initiators_identity() {
        let (a, b) = (config(), config());
        let (query, answer) = run(&a, &b, true, b"");
        let a_key = a.identity.public_key();
        assert_eq!(query.from, Some((a_key, a.identity.node_id())));
        assert!(query.body.is_empty());
        assert_eq!(answer, b"the answer");
    }

    #[test]
    fn only_the_holder_of_the_responders_key_can_read_or_answer() {
        let now = Instant::now();
        let (a, b, impostor) = (config(), config(), config());
        let responder = b.identity.public_key();
        let mut ask = Session::exchange(a.clone(), [1; 32], now, &responder, true, b"q").unwrap();
        let request = ask.poll_transmit().unwrap();
        // Someone else at the address cannot decrypt the request.
        let mut wrong = Session::responder(impostor.clone(), [3; 32], 0, now);
        assert!(wrong.handle_input(now, &request).is_err());
        // A tampered request fails at the real responder.
        let mut tampered = request.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let mut real = Session::responder(b.clone(), [2; 32], 0, now);
        assert!(real.handle_input(now, &tampered).is_err());
        // A tampered answer fails at the initiator.
        let mut real = Session::responder(b.clone(), [2; 32], 0, now);
        real.handle_input(now, &request).unwrap();
        real.answer(b"a").unwrap();
        let mut reply = real.poll_transmit().unwrap();
        reply[5] ^= 1;
        assert!(ask.handle_input(now, &reply).is_err());
        // An answer from another exchange (another responder's keys) fails too.
        let mut ask = Session::exchange(a.clone(), [4; 32], now, &responder, false, b"q").unwrap();
        let mut other =
            Session::exchange(a, [5; 32], now, &impostor.identity.public_key(), false, b"q")
                .unwrap();
        let mut fake = Session::responder(impostor, [6; 32], 0, now);
        fake.handle_input(now, &other.poll_transmit().unwrap()).unwrap();
        fake.answer(b"lies").unwrap();
        let _ = ask.poll_transmit();
        assert!(ask.handle_input(now, &fake.poll_transmit().unwrap()).is_err());
    }

    #[test]
    fn exchanges_with_ourselves_weak_keys_and_oversized_bodies_are_refused() {
        let now = Instant::now();
        let a = config();
        let own = a.identity.public_key();
        let err = Session::exchange(a.clone(), [1; 32], now, &own, false, b"").unwrap_err();
        assert!(matches!(err, SessionError::SelfConnection));
        let mut neutral = [0u8; 32];
        neutral[0] = 1;
        let err = Session::exchange(a.clone(), [1; 32], now, &neutral, false, b"").unwrap_err();
        assert!(matches!(err, SessionError::Identity(_)));
        let big = vec![0u8; MAX_EXCHANGE_BODY + 1];
        let b = config().identity.public_key();
        let err = Session::exchange(a, [1; 32], now, &b, false, &big).unwrap_err();
        assert!(matches!(err, SessionError::TooLarge(_)));
    }

    #[test]
    fn a_request_signed_for_another_responder_or_malformed_is_refused() {
        let (a, b, c) = (config(), config(), config());
        let key = ResponderKey::new(&b.identity, [7; 32]);
        let remote = samizdat_identity::x25519_public(&b.identity.public_key()).unwrap();
        let request = |plain: &[u8]| {
            let builder = builder([8; 32]).unwrap().remote_public_key(&remote).unwrap();
            let mut hs = builder.build_initiator().unwrap();
            let mut msg = vec![0u8; 32 + plain.len() + TAG_LEN];
            let n = hs.write_message(plain, &mut msg).unwrap();
            msg.truncate(n);
            msg
        };
        let own = b.identity.node_id();
        // Signed for c, sent to b.
        let mut plain = vec![FLAG_IDENTIFIED];
        plain.extend_from_slice(&a.identity.public_key());
        plain.extend_from_slice(&a.identity.sign(&signed_message(&c.identity.public_key(), b"x")));
        plain.extend_from_slice(b"x");
        assert!(matches!(respond(&key, own, &request(&plain)), Err(SessionError::Identity(_))));
        // Signed by b itself: a copy of our own key talking to us.
        let mut plain = vec![FLAG_IDENTIFIED];
        plain.extend_from_slice(&b.identity.public_key());
        plain.extend_from_slice(&b.identity.sign(&signed_message(&b.identity.public_key(), b"")));
        assert!(matches!(respond(&key, own, &request(&plain)), Err(SessionError::SelfConnection)));
        // Unknown flags, a cut identity, no flags at all.
        assert!(matches!(respond(&key, own, &request(&[9])), Err(SessionError::BadFrame(_))));
        let cut = [FLAG_IDENTIFIED, 1, 2, 3];
        assert!(matches!(respond(&key, own, &request(&cut)), Err(SessionError::BadFrame(_))));
        assert!(matches!(respond(&key, own, &request(&[])), Err(SessionError::BadFrame(_))));
        // The right signature passes.
        let mut plain = vec![FLAG_IDENTIFIED];
        plain.extend_from_slice(&a.identity.public_key());
        plain.extend_from_slice(&a.identity.sign(&signed_message(&b.identity.public_key(), b"x")));
        plain.extend_from_slice(b"x");
        let (query, _) = respond(&key, own, &request(&plain)).unwrap();
        assert_eq!(query.from.map(|f| f.1), Some(a.identity.node_id()));
    }

    #[test]
    fn an_exchange_length_beyond_the_limit_or_a_late_answer_fails() {
        let now = Instant::now();
        let b = config();
        let mut r = Session::responder(b.clone(), [2; 32], 0, now);
        let too_long = (MAX_EXCHANGE_MSG as u16 + 1).to_be_bytes();
        assert!(matches!(r.handle_input(now, &too_long), Err(SessionError::BadFrame(_))));
        let a = config();
        let mut ask =
            Session::exchange(a, [1; 32], now, &b.identity.public_key(), false, b"q").unwrap();
        assert!(matches!(ask.handle_input(now, &too_long), Err(SessionError::BadFrame(_))));
        // Nothing answered within the handshake deadline.
        let a = config();
        let mut ask =
            Session::exchange(a, [1; 32], now, &b.identity.public_key(), false, b"q").unwrap();
        let late = now + Duration::from_secs(3600);
        assert!(ask.poll_timeout().is_some());
        assert!(matches!(ask.handle_timeout(late), Err(SessionError::HandshakeTimeout)));
        // Answering outside an exchange is refused.
        let mut r = Session::responder(b, [2; 32], 0, now);
        assert!(r.answer(b"").is_err());
    }
}
