//! `dht-contact`: what asking one DHT contact one question costs, over a full session (the
//! Noise XX handshake, both identity signatures, both `Hello`s, then the request) and as a
//! one-round-trip exchange (`samizdat_session::exchange`: against the contact's identity key,
//! the request in the first message and the answer in the second), anonymous (Noise NK, how
//! every lookup is sent) and identified (Noise IK, how a node that offers itself sends stores).
//!
//! Both run the real session code in memory, with a real `FindNode` request and a real answer
//! of 20 contacts; the wire bytes, the messages and the flights (bytes sent one way before
//! the other side answers) are counted exactly, and the CPU time of both ends together is the
//! median over the rounds (both ends run on one thread, so the wall time is their CPU time).
//! The transport's own set-up (a TCP handshake: one more round trip) is the same for both and
//! not counted.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use samizdat_dht::codec::{self, DhtMessage, DhtRequest, DhtResponse, RequestId};
use samizdat_dht::contact::Contact;
use samizdat_identity::{Identity, NodeId};
use samizdat_session::{Session, SessionConfig, SessionError, SessionEvent};
use samizdat_wire::{DhtQuery, Message, PeerAddr};
use std::time::Instant;

/// What one way of asking cost.
#[derive(Clone, Debug, Default)]
pub struct Cost {
    /// Bytes the asking side sent.
    pub bytes_out: usize,
    /// Bytes the asked side sent.
    pub bytes_in: usize,
    /// Transport writes, both sides.
    pub messages: usize,
    /// Flights of bytes (one way, before the other side answers), both sides.
    pub flights: usize,
    /// Median CPU time of both ends together, microseconds.
    pub cpu_us: f64,
}

impl Cost {
    /// Round trips from the first byte sent to the answer read (transport set-up excluded).
    pub fn round_trips(&self) -> f64 {
        self.flights as f64 / 2.0
    }

    fn to_json(&self) -> String {
        format!(
            "{{\"bytes_out\":{},\"bytes_in\":{},\"bytes\":{},\"messages\":{},\"flights\":{},\
             \"round_trips\":{},\"cpu_us\":{:.1}}}",
            self.bytes_out,
            self.bytes_in,
            self.bytes_out + self.bytes_in,
            self.messages,
            self.flights,
            self.round_trips(),
            self.cpu_us
        )
    }
}

/// The report of a run.
pub struct Report {
    /// Rounds measured.
    pub rounds: usize,
    /// Over a full session.
    pub session: Cost,
    /// As an identified exchange (how a node that offers itself sends a store).
    pub exchange: Cost,
    /// As an anonymous exchange (how every lookup is sent).
    pub anonymous: Cost,
}

impl Report {
    /// One JSON object.
    pub fn to_json(&self) -> String {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        let bytes = |c: &Cost| (c.bytes_in + c.bytes_out) as f64;
        format!(
            "{{\"scenario\":\"dht-contact\",\"rounds\":{},\"session\":{},\"exchange\":{},\
             \"exchange_anonymous\":{},\"bytes_ratio\":{:.3},\"round_trip_ratio\":{:.3},\
             \"cpu_ratio\":{:.3},\"identified_cpu_ratio\":{:.3}}}",
            self.rounds,
            self.session.to_json(),
            self.exchange.to_json(),
            self.anonymous.to_json(),
            ratio(bytes(&self.anonymous), bytes(&self.session)),
            ratio(self.anonymous.round_trips(), self.session.round_trips()),
            ratio(self.anonymous.cpu_us, self.session.cpu_us),
            ratio(self.exchange.cpu_us, self.session.cpu_us),
        )
    }
}

/// A realistic question and answer: `FindNode` and 20 contacts with IPv4 addresses.
struct Dialogue {
    asker: SessionConfig,
    asked: SessionConfig,
    pow: u64,
    offer: PeerAddr,
    request: Vec<u8>,
    answer: Vec<u8>,
}

fn dialogue(rng: &mut ChaCha20Rng) -> Dialogue {
    let identity = |rng: &mut ChaCha20Rng| {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        Identity::from_secret_bytes(&secret).unwrap_or_else(|_| unreachable!("32 bytes"))
    };
    let contacts: Vec<Contact> = (0..20)
        .filter_map(|i| {
            let id = identity(rng);
            Contact::for_identity(&id, 4, format!("tcp/203.0.113.{}:7070", i + 1)).ok()
        })
        .collect();
    let (asker, asked) = (identity(rng), identity(rng));
    let mut target = [0u8; 32];
    rng.fill_bytes(&mut target);
    let request = codec::encode(&DhtMessage::Request {
        id: RequestId(rng.next_u64()),
        request: DhtRequest::FindNode { target: NodeId(target) },
    });
    let answer = codec::encode(&DhtMessage::Response {
        id: RequestId(1),
        response: DhtResponse::Nodes { closer: contacts },
    });
    let offer = PeerAddr::new("tcp/198.51.100.7:7070").unwrap_or_else(|_| unreachable!("valid"));
    Dialogue {
        asker: SessionConfig::new(asker),
        asked: SessionConfig::new(asked),
        pow: 7,
        offer,
        request,
        answer,
    }
}

/// Counts what crosses between two ends.
#[derive(Default)]
struct Meter {
    cost: Cost,
    last_from_asker: Option<bool>,
}

impl Meter {
    fn carry(&mut self, from_asker: bool, bytes: &[u8]) {
        if from_asker {
            self.cost.bytes_out += bytes.len();
        } else {
            self.cost.bytes_in += bytes.len();
        }
        self.cost.messages += 1;
        if self.last_from_asker != Some(from_asker) {
            self.cost.flights += 1;
            self.last_from_asker = Some(from_asker);
        }
    }
}

/// One question over a full session, the way the engine asks a peer it has just dialled: the
/// request goes out once the asker's session is established.
fn over_session(d: &Dialogue, seed: u64, now: Instant) -> Result<Cost, SessionError> {
    let mut seeds = ChaCha20Rng::seed_from_u64(seed);
    let mut s = [[0u8; 32]; 2];
    for x in &mut s {
        seeds.fill_bytes(x);
    }
    let wall = 1_800_000_000;
    let mut asker = Session::initiator(d.asker.clone(), s[0], wall, now)?;
    let mut asked = Session::responder(d.asked.clone(), s[1], wall, now);
    let mut meter = Meter::default();
    let (mut sent, mut answered) = (false, false);
    for _ in 0..16 {
        if let Some(bytes) = asker.poll_transmit() {
            meter.carry(true, &bytes);
            asked.handle_input(now, &bytes)?;
        }
        while let Some(ev) = asked.poll_event() {
            if let SessionEvent::Message(Message::Dht { .. }) = ev {
                asked.send(&Message::Dht { pow: None, payload: d.answer.clone() })?;
            }
        }
        if let Some(bytes) = asked.poll_transmit() {
            meter.carry(false, &bytes);
            asker.handle_input(now, &bytes)?;
        }
        while let Some(ev) = asker.poll_event() {
            match ev {
                SessionEvent::Established(_) if !sent => {
                    sent = true;
                    let payload = d.request.clone();
                    asker.send(&Message::Dht { pow: Some(d.pow), payload })?;
                }
                SessionEvent::Message(Message::Dht { payload, .. }) => {
                    answered = payload == d.answer;
                }
                _ => {}
            }
        }
        if answered {
            return Ok(meter.cost);
        }
    }
    Err(SessionError::Unexpected("no answer over the session"))
}

/// One question as an exchange, identified (as a node that offers itself asks) or anonymous.
fn as_exchange(
    d: &Dialogue,
    seed: u64,
    now: Instant,
    identify: bool,
) -> Result<Cost, SessionError> {
    let mut seeds = ChaCha20Rng::seed_from_u64(seed);
    let mut s = [[0u8; 32]; 2];
    for x in &mut s {
        seeds.fill_bytes(x);
    }
    let offer = identify.then(|| (d.pow, d.offer.clone()));
    let body = DhtQuery { offer, payload: d.request.clone() }.encode_to_vec();
    let responder = d.asked.identity.public_key();
    let mut asker = Session::exchange(d.asker.clone(), s[0], now, &responder, identify, &body)?;
    let mut asked = Session::responder(d.asked.clone(), s[1], 0, now);
    let mut meter = Meter::default();
    let request = asker.poll_transmit().ok_or(SessionError::Unexpected("no request"))?;
    meter.carry(true, &request);
    asked.handle_input(now, &request)?;
    let Some(SessionEvent::Query(q)) = asked.poll_event() else {
        return Err(SessionError::Unexpected("no query"));
    };
    let query = DhtQuery::decode(&q.body)?;
    if query.payload != d.request || q.from.is_some() != identify {
        return Err(SessionError::Unexpected("the wrong query"));
    }
    asked.answer(&d.answer)?;
    let answer = asked.poll_transmit().ok_or(SessionError::Unexpected("no answer"))?;
    meter.carry(false, &answer);
    asker.handle_input(now, &answer)?;
    match asker.poll_event() {
        Some(SessionEvent::Answer(body)) if body == d.answer => Ok(meter.cost),
        _ => Err(SessionError::Unexpected("the wrong answer")),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Measures `rounds` questions each way (alternating, so machine noise hits both alike).
pub fn run(rounds: usize, seed: u64) -> Result<Report, SessionError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let d = dialogue(&mut rng);
    let (mut session, mut exchange, mut anonymous) =
        (Cost::default(), Cost::default(), Cost::default());
    let (mut session_us, mut exchange_us, mut anonymous_us) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds.max(1) as u64 {
        // The clock is only read to time the rounds; the sessions are driven with `now`.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        session = over_session(&d, seed ^ round, now)?;
        session_us.push(now.elapsed().as_secs_f64() * 1e6);
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        exchange = as_exchange(&d, seed ^ round ^ 1 << 32, now, true)?;
        exchange_us.push(now.elapsed().as_secs_f64() * 1e6);
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        anonymous = as_exchange(&d, seed ^ round ^ 2 << 32, now, false)?;
        anonymous_us.push(now.elapsed().as_secs_f64() * 1e6);
    }
    session.cpu_us = median(session_us);
    exchange.cpu_us = median(exchange_us);
    anonymous.cpu_us = median(anonymous_us);
    Ok(Report { rounds: rounds.max(1), session, exchange, anonymous })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_exchange_costs_one_round_trip_and_fewer_bytes_than_a_session() {
        let r = run(3, 1).unwrap();
        // Session: msg 1, msg 2, msg 3 with our Hello, their Hello, the request, the answer.
        assert_eq!(r.session.round_trips(), 3.0);
        assert_eq!(r.exchange.round_trips(), 1.0);
        assert_eq!(r.exchange.messages, 2);
        assert_eq!(r.anonymous.round_trips(), 1.0);
        // Padded alike: an anonymous request is never longer than an identified one.
        assert!(r.anonymous.bytes_out <= r.exchange.bytes_out);
        assert_eq!((r.exchange.bytes_out - 2) % 256, 0, "padded");
        assert!(
            r.exchange.bytes_out + r.exchange.bytes_in < r.session.bytes_out + r.session.bytes_in
        );
        // The answer dominates both; the exchange adds only its keys and tags around it.
        assert!(r.exchange.bytes_in < r.session.bytes_in);
        let json = r.to_json();
        assert!(json.contains("\"round_trip_ratio\":0.333"), "{json}");
    }
}
