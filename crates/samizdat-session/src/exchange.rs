//! One-round-trip exchanges: a request and its answer, authenticated by the responder's
//! identity key, without a session.
//!
//! A DHT contact is asked one question and answers once; a full session (Noise XX, two
//! signatures, two `Hello`s, then the request) costs three round trips and both identities
//! for that. An exchange is one Noise handshake against the X25519 form of the responder's
//! Ed25519 identity key, which the initiator already knows from the contact
//! ([`samizdat_identity::x25519_public`]), with the request in its first message and the
//! answer in its second:
//!
//! ```text
//! anonymous   Noise_NK_25519_AESGCM_SHA256   -> e, es, enc(request)
//!                                             <- e, ee, enc(answer)
//! identified  Noise_IK_25519_AESGCM_SHA256   -> e, es, s, ss, enc(identity key || request)
//!                                             <- e, ee, se, enc(answer)
//! ```
//!
//! * **The responder is authenticated:** only the holder of the identity key can compute `es`,
//!   so only it can read the request, and an answer that decrypts can only come from it. An
//!   impostor at the address fails to decrypt and the initiator's read fails.
//! * **The initiator is anonymous** unless it identifies itself (a node that offers itself as a
//!   contact): then its static key is the X25519 form of its identity key, proven by `ss` and
//!   `se`, and the request names the Ed25519 key it comes from (checked against that static
//!   key; the X25519 form drops the Ed25519 sign bit, so the holder of a key can also name
//!   its negation, a different identity that needs a proof of work of its own, as a fresh key
//!   would). This is Diffie-Hellman authentication, as deniable as a session's: the responder
//!   learns who asks, but holds nothing it could show anyone else as proof of what was asked
//!   (a signature over the request would be such a proof).
//! * **Forward secrecy:** the answer is under the ephemeral-ephemeral key. The request is
//!   readable by whoever later steals the responder's identity key (as in any 0-RTT
//!   handshake); the responder reads it anyway, so this exposes nothing to a third party that
//!   the responder could not have logged.
//! * **Replays:** a replayed request carries the same initiator ephemeral key
//!   ([`Query::ephemeral`]), so the owner can refuse ones it has seen; any answer is under a
//!   fresh key the replayer cannot use.
//! * **Lengths:** request and answer are padded (inside the encryption) to a multiple of
//!   256 bytes, so anonymous and identified requests of the DHT's sizes look alike.
//!
//! Messages travel behind a 2-byte length, like the session's handshake messages; the
//! responder tells an exchange from a session by its first message's length (a session's is
//! exactly the 32-byte ephemeral key), and an identified request from an anonymous one by
//! which handshake decrypts it.

use crate::SessionError;
use crate::noise::SeededResolver;
use samizdat_identity::{Identity, NodeId};
use zeroize::Zeroizing;

/// Noise protocol of an anonymous exchange.
pub const EXCHANGE_PARAMS: &str = "Noise_NK_25519_AESGCM_SHA256";
/// Noise protocol of an identified exchange.
pub const IDENTIFIED_EXCHANGE_PARAMS: &str = "Noise_IK_25519_AESGCM_SHA256";
/// Largest body of a request or an answer.
pub const MAX_EXCHANGE_BODY: usize = 20 * 1024;
const PROLOGUE: &[u8] = b"samizdat 2026 exchange v2";
const TAG_LEN: usize = 16;
/// Messages are padded to a multiple of this.
const PAD_TO: usize = 256;
/// Length of a session's first handshake message (the ephemeral key alone).
pub(crate) const SESSION_FIRST_LEN: usize = 32;
/// Longest exchange message: ephemeral key, encrypted static key, identity key, body length,
/// body, tag, padding.
pub(crate) const MAX_EXCHANGE_MSG: usize =
    32 + (32 + TAG_LEN) + 32 + 2 + MAX_EXCHANGE_BODY + TAG_LEN + PAD_TO;

/// A request that arrived in an exchange.
#[derive(Debug)]
pub struct Query {
    /// The initiator's identity key and node ID, if it identified itself (proven).
    pub from: Option<([u8; 32], NodeId)>,
    /// The initiator's ephemeral key: the same in every replay of one request.
    pub ephemeral: [u8; 32],
    /// The request.
    pub body: Vec<u8>,
}

/// What a responder session keeps to answer an exchange, until its first message arrives.
pub(crate) struct ResponderKey {
    pub(crate) secret: Zeroizing<[u8; 32]>,
    pub(crate) seed: [u8; 32],
}

impl ResponderKey {
    pub(crate) fn new(identity: &Identity, seed: [u8; 32]) -> Self {
        // A seed of its own, independent of the one the session's handshake draws from.
        let mut seed = seed;
        seed[0] ^= 0x5a;
        seed[31] ^= 0xa5;
        ResponderKey { secret: identity.x25519_secret(), seed }
    }
}

fn builder<'a>(params: &str, seed: [u8; 32]) -> Result<snow::Builder<'a>, SessionError> {
    let params = params.parse().map_err(SessionError::Crypto)?;
    Ok(snow::Builder::with_resolver(params, Box::new(SeededResolver::new(seed)))
        .prologue(PROLOGUE)?)
}

/// `prefix || len(body) || body || zeros`, long enough that the Noise message (`overhead`
/// bytes of keys and tag besides this plaintext) is a multiple of [`PAD_TO`].
fn padded(prefix: &[u8], body: &[u8], overhead: usize) -> Vec<u8> {
    let plain = prefix.len() + 2 + body.len();
    let total = (overhead + plain).div_ceil(PAD_TO) * PAD_TO;
    let mut out = Vec::with_capacity(total - overhead);
    out.extend_from_slice(prefix);
    // Bodies are at most MAX_EXCHANGE_BODY bytes, well under 65536.
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out.resize(total - overhead, 0);
    out
}

/// The body of a padded plaintext (the padding must be zeros).
fn unpadded(plain: &[u8]) -> Result<&[u8], SessionError> {
    let [a, b, rest @ ..] = plain else { return Err(SessionError::BadFrame("exchange cut short")) };
    let len = usize::from(u16::from_be_bytes([*a, *b]));
    if len > MAX_EXCHANGE_BODY {
        return Err(SessionError::TooLarge(len));
    }
    let body = rest.get(..len).ok_or(SessionError::BadFrame("exchange body cut short"))?;
    if rest[len..].iter().any(|&b| b != 0) {
        return Err(SessionError::BadFrame("exchange padding is not zeros"));
    }
    Ok(body)
}

/// Whether an exchange message (without its length) has a padded length.
fn check_padded(msg: &[u8]) -> Result<(), SessionError> {
    if msg.len() % PAD_TO != 0 {
        return Err(SessionError::BadFrame("exchange message not padded"));
    }
    Ok(())
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
    let (mut hs, plain) = if identify {
        let secret = identity.x25519_secret();
        let b = builder(IDENTIFIED_EXCHANGE_PARAMS, seed)?;
        let hs = b.local_private_key(&secret[..])?.remote_public_key(&remote)?.build_initiator()?;
        (hs, padded(&identity.public_key(), body, 32 + 32 + TAG_LEN + TAG_LEN))
    } else {
        let hs = builder(EXCHANGE_PARAMS, seed)?.remote_public_key(&remote)?.build_initiator()?;
        (hs, padded(&[], body, 32 + TAG_LEN))
    };
    let mut msg = vec![0u8; plain.len() + 32 + 32 + TAG_LEN + TAG_LEN];
    let n = hs.write_message(&plain, &mut msg)?;
    push_message(out, &msg[..n]);
    Ok(hs)
}

/// Reads an exchange's first message `msg` (without its length) as the holder of `key`;
/// returns the request and the handshake ready to answer it. An anonymous request is tried
/// first, then an identified one.
pub(crate) fn respond(
    key: &ResponderKey,
    own_id: NodeId,
    msg: &[u8],
) -> Result<(Query, snow::HandshakeState), SessionError> {
    check_padded(msg)?;
    let ephemeral: [u8; 32] = msg
        .get(..32)
        .and_then(|e| e.try_into().ok())
        .ok_or(SessionError::BadFrame("exchange cut short"))?;
    let mut plain = vec![0u8; msg.len()];
    let secret = &key.secret[..];
    let mut hs =
        builder(EXCHANGE_PARAMS, key.seed)?.local_private_key(secret)?.build_responder()?;
    if let Ok(n) = hs.read_message(msg, &mut plain) {
        let body = unpadded(&plain[..n])?.to_vec();
        return Ok((Query { from: None, ephemeral, body }, hs));
    }
    let b = builder(IDENTIFIED_EXCHANGE_PARAMS, key.seed)?;
    let mut hs = b.local_private_key(secret)?.build_responder()?;
    let n = hs.read_message(msg, &mut plain)?;
    let (public, rest) =
        plain[..n].split_at_checked(32).ok_or(SessionError::BadFrame("no identity"))?;
    let public: [u8; 32] = public.try_into().map_err(|_| SessionError::BadFrame("no identity"))?;
    // The static key that proved itself must be the named identity's.
    let proven = hs.get_remote_static().ok_or(SessionError::BadFrame("no static key"))?;
    if samizdat_identity::x25519_public(&public)?[..] != *proven {
        return Err(SessionError::Identity(samizdat_identity::IdentityError::BadSignature));
    }
    let node = NodeId::from_public_key(&public);
    if node == own_id {
        return Err(SessionError::SelfConnection);
    }
    let body = unpadded(rest)?.to_vec();
    Ok((Query { from: Some((public, node)), ephemeral, body }, hs))
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
    let plain = padded(&[], body, 32 + TAG_LEN);
    let mut msg = vec![0u8; 32 + plain.len() + TAG_LEN];
    let n = hs.write_message(&plain, &mut msg)?;
    push_message(out, &msg[..n]);
    Ok(())
}

/// Reads the answer `msg` (without its length).
pub(crate) fn read_answer(
    hs: &mut snow::HandshakeState,
    msg: &[u8],
) -> Result<Vec<u8>, SessionError> {
    check_padded(msg)?;
    let mut plain = vec![0u8; msg.len()];
    let n = hs.read_message(msg, &mut plain)?;
    Ok(unpadded(&plain[..n])?.to_vec())
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

    /// A raw first message: `params` from `local` (a static key, for IK) to `to`, `plain`
    /// followed by zeros up to a padded length.
    fn raw_request(params: &str, local: Option<&Identity>, to: &Identity, plain: &[u8]) -> Vec<u8> {
        let overhead = if local.is_some() { 96 } else { 48 };
        let mut plain = plain.to_vec();
        plain.resize((plain.len() + overhead).div_ceil(PAD_TO) * PAD_TO - overhead, 0);
        let plain = &plain[..];
        let remote = samizdat_identity::x25519_public(&to.public_key()).unwrap();
        let secret = local.map(Identity::x25519_secret);
        let mut b = builder(params, [8; 32]).unwrap().remote_public_key(&remote).unwrap();
        if let Some(secret) = &secret {
            b = b.local_private_key(&secret[..]).unwrap();
        }
        let mut hs = b.build_initiator().unwrap();
        let mut msg = vec![0u8; plain.len() + 128];
        let n = hs.write_message(plain, &mut msg).unwrap();
        msg.truncate(n);
        msg
    }

    #[test]
    fn a_request_naming_an_identity_it_cannot_prove_or_malformed_is_refused() {
        let (a, b, c) = (config().identity, config().identity, config().identity);
        let key = ResponderKey::new(&b, [7; 32]);
        let own = b.node_id();
        let ik = IDENTIFIED_EXCHANGE_PARAMS;
        // c's static key, a's name: refused.
        let mut plain = a.public_key().to_vec();
        plain.extend_from_slice(&[0, 1, b'x']);
        let lie = raw_request(ik, Some(&c), &b, &plain);
        assert!(matches!(respond(&key, own, &lie), Err(SessionError::Identity(_))));
        // b's own key talking to b.
        let mut plain = b.public_key().to_vec();
        plain.extend_from_slice(&[0, 0]);
        let me = raw_request(ik, Some(&b), &b, &plain);
        assert!(matches!(respond(&key, own, &me), Err(SessionError::SelfConnection)));
        // No valid identity key in an identified request.
        let short = raw_request(ik, Some(&a), &b, &[1, 2, 3]);
        assert!(matches!(respond(&key, own, &short), Err(SessionError::Identity(_))));
        // Bodies that overrun their message, or the limit; padding that is not zeros; a
        // message of no padded length.
        let nk = EXCHANGE_PARAMS;
        let overrun = raw_request(nk, None, &b, &[0x0f, 0, 1]);
        assert!(matches!(respond(&key, own, &overrun), Err(SessionError::BadFrame(_))));
        let huge = raw_request(nk, None, &b, &[0xff, 0xff]);
        assert!(matches!(respond(&key, own, &huge), Err(SessionError::TooLarge(_))));
        let dirty = raw_request(nk, None, &b, &[0, 1, b'x', 1]);
        assert!(matches!(respond(&key, own, &dirty), Err(SessionError::BadFrame(_))));
        assert!(matches!(respond(&key, own, &[0; 20]), Err(SessionError::BadFrame(_))));
        // Garbage of a padded length fails both handshakes.
        assert!(matches!(respond(&key, own, &[1; 256]), Err(SessionError::Crypto(_))));
        // The proven identity passes.
        let mut plain = a.public_key().to_vec();
        plain.extend_from_slice(&[0, 1, b'x']);
        let (query, _) = respond(&key, own, &raw_request(ik, Some(&a), &b, &plain)).unwrap();
        assert_eq!(query.from.map(|f| f.1), Some(a.node_id()));
        assert_eq!(query.body, b"x");
    }

    #[test]
    fn identified_and_anonymous_requests_are_padded_alike_and_replays_show_their_key() {
        let now = Instant::now();
        let (a, b) = (config(), config());
        let to = b.identity.public_key();
        let len = |identify: bool, body: &[u8]| {
            let mut s = Session::exchange(a.clone(), [1; 32], now, &to, identify, body).unwrap();
            s.poll_transmit().unwrap().len()
        };
        assert_eq!(len(true, &[7; 60]), len(false, &[7; 60]));
        assert_eq!((len(false, b"") - 2) % PAD_TO, 0);
        // The same request twice shows the same ephemeral key.
        let mut ask = Session::exchange(a, [1; 32], now, &to, true, b"q").unwrap();
        let request = ask.poll_transmit().unwrap();
        let ephemeral = |bytes: &[u8]| {
            let mut r = Session::responder(b.clone(), [2; 32], 0, now);
            r.handle_input(now, bytes).unwrap();
            let Some(SessionEvent::Query(q)) = r.poll_event() else { panic!("no query") };
            q.ephemeral
        };
        assert_eq!(ephemeral(&request), ephemeral(&request));
        assert_eq!(ephemeral(&request)[..], request[2..34]);
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
