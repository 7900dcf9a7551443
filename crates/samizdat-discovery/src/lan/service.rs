//! DNS-SD service records that carry a [`PeerRecord`], and the two sans-IO state machines of
//! LAN discovery: the [`Responder`] (answers browses for our service, rate limited) and the
//! [`Browse`] (collects, verifies and bounds the answers to one query).
//!
//! Neither touches a socket or a clock: bytes and times come in as arguments, datagrams go out
//! as return values, so the driver in [`crate::lan`] stays thin and the logic is tested with
//! virtual time.
//!
//! # One answer
//!
//! For a node whose [`NodeId`] starts with the bytes `3f a1 c2 d9 e0 b4`, and the service type
//! `_samizdat._udp.local`, an answer holds three records in its answer section, as an
//! RFC 6762 §8.3 announcement does:
//!
//! ```text
//! _samizdat._udp.local              PTR  3fa1c2d9e0b4._samizdat._udp.local    TTL 4500
//! 3fa1c2d9e0b4._samizdat._udp.local SRV  0 0 7070 3fa1c2d9e0b4.local          TTL 120, flush
//! 3fa1c2d9e0b4._samizdat._udp.local TXT  "txtvers=1" "r0=…" "r1=…" "r2=…" "r3=…"   TTL 4500, flush
//! ```
//!
//! The `rN=` strings are the base64 (RFC 4648, padded) of [`PeerRecord::encode`] cut into
//! chunks of at most [`CHUNK_LEN`] characters; a reader needs every chunk `r0..rK`, each once,
//! and ignores other keys. The SRV port is the port of the record's first address (0 if it has
//! none); no A record is sent, since the datagram's source already says where it came from and
//! the record says where to dial.

use crate::PeerRecord;
use crate::lan::dns::{
    CLASS_IN, CLASS_TOP_BIT, DnsError, FLAG_AUTHORITATIVE, FLAG_RESPONSE, Message, Name, Question,
    RData, Record, rtype,
};
use crate::record::RecordError;
use data_encoding::{BASE64, HEXLOWER};
use rand_core::RngCore;
use samizdat_identity::NodeId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The longest answer datagram we send (fits one Ethernet frame: 1500 − 28 bytes of IPv4 and
/// UDP headers, with room to spare).
pub const MAX_ANSWER_LEN: usize = 1400;
/// The most base64 characters in one `rN=` TXT string (with the key, under 255 bytes).
pub const CHUNK_LEN: usize = 250;
/// The most `rN=` chunks a reader accepts.
pub const MAX_CHUNKS: usize = 8;
/// The TXT string first in every answer (RFC 6763 §6.7).
pub const TXT_VERSION: &[u8] = b"txtvers=1";
/// The time to live of the PTR and TXT records (RFC 6762 §10: 75 minutes).
pub const TTL_SHARED: u32 = 4500;
/// The time to live of the SRV record (RFC 6762 §10: records naming a host, 2 minutes).
pub const TTL_HOST: u32 = 120;
/// A responder multicasts its answer at most once per this interval (RFC 6762 §6), however
/// many queries arrive: queries cannot be amplified beyond one answer per second.
pub const MIN_ANSWER_INTERVAL: Duration = Duration::from_secs(1);
/// The most known answers a [`Browse::query`] lists (RFC 6762 §7.1).
pub const MAX_KNOWN_ANSWERS: usize = 16;

/// The DNS-SD instance label of a node: the first 6 bytes of its ID in hex.
pub fn instance_label(node: &NodeId) -> String {
    HEXLOWER.encode(&node.0[..6])
}

/// The TXT strings that carry `record`.
pub fn txt_strings(record: &PeerRecord) -> Vec<Vec<u8>> {
    let b64 = BASE64.encode(&record.encode());
    let mut out = vec![TXT_VERSION.to_vec()];
    for (i, chunk) in b64.as_bytes().chunks(CHUNK_LEN).enumerate() {
        let mut s = format!("r{i}=").into_bytes();
        s.extend_from_slice(chunk);
        out.push(s);
    }
    out
}

/// Why the TXT strings of an answer did not give a peer record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxtError {
    /// A chunk is missing, repeated, empty or numbered beyond [`MAX_CHUNKS`].
    #[error("bad or missing record chunks in the TXT strings")]
    Chunks,
    /// The chunks do not form valid base64.
    #[error("record chunks are not base64")]
    Base64,
    /// The bytes are not a well-formed peer record.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Reassembles and decodes the peer record in TXT `strings` (not yet verified).
pub fn record_from_txt(strings: &[Vec<u8>]) -> Result<PeerRecord, TxtError> {
    let mut chunks: [Option<&[u8]>; MAX_CHUNKS] = [None; MAX_CHUNKS];
    for s in strings {
        let [b'r', digit, b'=', value @ ..] = s.as_slice() else { continue };
        if !digit.is_ascii_digit() {
            continue;
        }
        let slot = chunks.get_mut(usize::from(digit - b'0')).ok_or(TxtError::Chunks)?;
        if slot.is_some() || value.is_empty() || value.len() > CHUNK_LEN {
            return Err(TxtError::Chunks);
        }
        *slot = Some(value);
    }
    let count = chunks.iter().take_while(|c| c.is_some()).count();
    if count == 0 || chunks[count..].iter().any(Option::is_some) {
        return Err(TxtError::Chunks);
    }
    let b64: Vec<u8> = chunks.iter().flatten().flat_map(|c| c.iter().copied()).collect();
    let bytes = BASE64.decode(&b64).map_err(|_| TxtError::Base64)?;
    Ok(PeerRecord::decode(&bytes)?)
}

fn srv_port(record: &PeerRecord) -> u16 {
    record
        .addrs()
        .first()
        .and_then(|a| a.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(0)
}

/// The answer datagram announcing `record` under `service` (see the [module docs](self)).
/// Fails if it would exceed [`MAX_ANSWER_LEN`] (a very long service name).
pub fn answer(service: &Name, record: &PeerRecord) -> Result<Vec<u8>, DnsError> {
    let label = instance_label(&record.node_id());
    let instance = service.child(label.as_bytes())?;
    let domain = service.labels().last().map_or(&b"local"[..], Vec::as_slice);
    let host = Name::from_labels([label.as_bytes(), domain])?;
    let unique = CLASS_IN | CLASS_TOP_BIT;
    let msg = Message {
        flags: FLAG_RESPONSE | FLAG_AUTHORITATIVE,
        answers: vec![
            Record {
                name: service.clone(),
                class: CLASS_IN,
                ttl: TTL_SHARED,
                data: RData::Ptr(instance.clone()),
            },
            Record {
                name: instance.clone(),
                class: unique,
                ttl: TTL_HOST,
                data: RData::Srv { priority: 0, weight: 0, port: srv_port(record), target: host },
            },
            Record {
                name: instance,
                class: unique,
                ttl: TTL_SHARED,
                data: RData::Txt(txt_strings(record)),
            },
        ],
        ..Message::default()
    };
    let bytes = msg.encode()?;
    if bytes.len() > MAX_ANSWER_LEN {
        return Err(DnsError::TooLong { len: bytes.len(), limit: MAX_ANSWER_LEN });
    }
    Ok(bytes)
}

/// A browse query for `service` (PTR, class IN, multicast response), listing the instances of
/// `known` nodes as known answers (at most [`MAX_KNOWN_ANSWERS`]) so that they stay quiet.
pub fn query(service: &Name, known: &[NodeId]) -> Result<Vec<u8>, DnsError> {
    let mut answers = Vec::new();
    for node in known.iter().take(MAX_KNOWN_ANSWERS) {
        answers.push(Record {
            name: service.clone(),
            class: CLASS_IN,
            ttl: TTL_SHARED,
            data: RData::Ptr(service.child(instance_label(node).as_bytes())?),
        });
    }
    Message {
        questions: vec![Question { name: service.clone(), qtype: rtype::PTR, qclass: CLASS_IN }],
        answers,
        ..Message::default()
    }
    .encode()
}

/// What a [`Responder`] made of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A query for our service or instance: an answer is due.
    Query,
    /// A query for us that already lists our answer as known (RFC 6762 §7.1).
    Suppressed,
    /// Well formed but not for us (another service, or a response).
    Ignored,
    /// Not a DNS message this codec accepts.
    Malformed,
}

/// Counters of a [`Responder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponderStats {
    /// Queries for us.
    pub queries: u64,
    /// Queries for us that listed our answer as known.
    pub suppressed: u64,
    /// Datagrams not for us.
    pub ignored: u64,
    /// Datagrams that did not decode.
    pub malformed: u64,
    /// Answers sent.
    pub sent: u64,
}

/// Answers browses for one service with one record (sans-IO).
///
/// A query for the service (PTR or ANY) or for our instance (SRV, TXT or ANY) makes an answer
/// *due*; a due answer goes out as soon as [`MIN_ANSWER_INTERVAL`] has passed since the last
/// one. Answers go to the multicast group, where every querier hears them, so a flood of
/// queries costs one answer of at most [`MAX_ANSWER_LEN`] bytes per second, and a querier
/// that arrives during the pause still gets an answer within a second. Queries for anything
/// else are never answered.
#[derive(Debug)]
pub struct Responder {
    service: Name,
    instance: Name,
    answer: Vec<u8>,
    due: bool,
    next_allowed: Option<Instant>,
    stats: ResponderStats,
}

impl Responder {
    /// A responder for `service` announcing `record`. The first answer (an unsolicited
    /// announcement) is due at once.
    pub fn new(service: Name, record: &PeerRecord) -> Result<Self, DnsError> {
        let answer = answer(&service, record)?;
        let instance = service.child(instance_label(&record.node_id()).as_bytes())?;
        Ok(Responder {
            service,
            instance,
            answer,
            due: true,
            next_allowed: None,
            stats: ResponderStats::default(),
        })
    }

    /// Replaces the record (a newer one of ours); an announcement of it is due.
    pub fn set_record(&mut self, record: &PeerRecord) -> Result<(), DnsError> {
        self.answer = answer(&self.service, record)?;
        self.instance = self.service.child(instance_label(&record.node_id()).as_bytes())?;
        self.due = true;
        Ok(())
    }

    /// Takes one received datagram.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Input {
        let input = match Message::decode(bytes) {
            Err(_) => Input::Malformed,
            Ok(m) if !self.wants(&m) => Input::Ignored,
            Ok(m) if self.already_known(&m) => Input::Suppressed,
            Ok(_) => Input::Query,
        };
        match input {
            Input::Query => {
                self.stats.queries += 1;
                self.due = true;
            }
            Input::Suppressed => self.stats.suppressed += 1,
            Input::Ignored => self.stats.ignored += 1,
            Input::Malformed => self.stats.malformed += 1,
        }
        input
    }

    fn wants(&self, m: &Message) -> bool {
        if m.is_response() || m.opcode() != 0 {
            return false;
        }
        m.questions.iter().any(|q| {
            let class = q.qclass & !CLASS_TOP_BIT;
            (class == CLASS_IN || class == rtype::ANY)
                && ((q.name.eq_ignore_case(&self.service)
                    && matches!(q.qtype, rtype::PTR | rtype::ANY))
                    || (q.name.eq_ignore_case(&self.instance)
                        && matches!(q.qtype, rtype::SRV | rtype::TXT | rtype::ANY)))
        })
    }

    fn already_known(&self, m: &Message) -> bool {
        m.answers.iter().any(|r| {
            r.ttl >= TTL_SHARED / 2
                && r.name.eq_ignore_case(&self.service)
                && matches!(&r.data, RData::Ptr(target) if target.eq_ignore_case(&self.instance))
        })
    }

    /// The answer to multicast now, if one is due and allowed.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<&[u8]> {
        if !self.due || self.next_allowed.is_some_and(|t| now < t) {
            return None;
        }
        self.due = false;
        self.next_allowed = Some(now + MIN_ANSWER_INTERVAL);
        self.stats.sent += 1;
        Some(&self.answer)
    }

    /// When [`Self::poll_transmit`] will next have something (`None`: only after new input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.due { self.next_allowed } else { None }
    }

    /// The counters so far.
    pub fn stats(&self) -> ResponderStats {
        self.stats
    }
}

/// What a [`Browse`] collected.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Browsed {
    /// Verified records, at most one per node, at most the browse's `max_records`.
    pub records: Vec<PeerRecord>,
    /// Responses received (well-formed DNS responses of any kind).
    pub responses: u64,
    /// Answers for our service whose record did not decode or verify (forged, expired,
    /// garbled).
    pub rejected: u64,
    /// Distinct nodes seen after the set was full (sampled in at random, see [`Browse`]).
    pub over_capacity: u64,
}

/// Collects the answers to one browse (sans-IO).
///
/// Every TXT record named `<instance>.<service>` in a response is decoded, verified
/// (signature, age at `now`) and kept, one per node (the newest); our own node is skipped.
/// Once `max_records` nodes are held, each further distinct node replaces a random one with
/// probability `max_records / seen` (reservoir sampling), so the set stays bounded and a LAN
/// flooded with valid records from throwaway identities holds a uniform sample of everything
/// heard rather than whatever came first. Records already held are not verified again.
#[derive(Debug)]
pub struct Browse {
    service: Name,
    own: Option<NodeId>,
    now: u64,
    max_age: Duration,
    max_records: usize,
    index: HashMap<NodeId, usize>,
    out: Browsed,
}

impl Browse {
    /// A browse for `service` as of `now` (Unix seconds), skipping `own`.
    pub fn new(
        service: Name,
        own: Option<NodeId>,
        now: u64,
        max_age: Duration,
        max_records: usize,
    ) -> Self {
        Browse {
            service,
            own,
            now,
            max_age,
            max_records,
            index: HashMap::new(),
            out: Browsed::default(),
        }
    }

    /// The query to send; it lists the nodes collected so far as known answers.
    pub fn query(&self) -> Result<Vec<u8>, DnsError> {
        let known: Vec<NodeId> = self.out.records.iter().map(PeerRecord::node_id).collect();
        query(&self.service, &known)
    }

    /// Takes one received datagram; `rng` picks reservoir slots.
    pub fn handle_input<R: RngCore + ?Sized>(&mut self, bytes: &[u8], rng: &mut R) {
        let Ok(m) = Message::decode(bytes) else { return };
        if !m.is_response() || m.opcode() != 0 || m.rcode() != 0 {
            return;
        }
        self.out.responses += 1;
        for r in m.records() {
            let RData::Txt(strings) = &r.data else { continue };
            if r.name.child_label_of(&self.service).is_none() {
                continue;
            }
            match record_from_txt(strings) {
                Ok(record) => self.offer(record, rng),
                Err(e) => {
                    tracing::debug!(error = %e, "mdns: rejected an answer");
                    self.out.rejected += 1;
                }
            }
        }
    }

    fn verified(&mut self, record: &PeerRecord) -> bool {
        match record.verify(self.now, self.max_age) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(error = %e, "mdns: rejected a record");
                self.out.rejected += 1;
                false
            }
        }
    }

    fn offer<R: RngCore + ?Sized>(&mut self, record: PeerRecord, rng: &mut R) {
        let node = record.node_id();
        if self.own == Some(node) {
            return;
        }
        if let Some(&i) = self.index.get(&node) {
            if record.timestamp() > self.out.records[i].timestamp() && self.verified(&record) {
                self.out.records[i] = record;
            }
            return;
        }
        if self.out.records.len() < self.max_records {
            if self.verified(&record) {
                self.index.insert(node, self.out.records.len());
                self.out.records.push(record);
            }
            return;
        }
        self.out.over_capacity += 1;
        let seen = self.max_records as u64 + self.out.over_capacity;
        let slot = rng.next_u64() % seen;
        if slot < self.max_records as u64 && self.verified(&record) {
            let slot = slot as usize;
            self.index.remove(&self.out.records[slot].node_id());
            self.index.insert(node, slot);
            self.out.records[slot] = record;
        }
    }

    /// The records collected so far.
    pub fn records(&self) -> &[PeerRecord] {
        &self.out.records
    }

    /// Ends the browse.
    pub fn finish(self) -> Browsed {
        self.out
    }
}

/// Parses a service type such as `_samizdat._udp.local` for [`crate::lan::LanConfig`].
pub fn service_name(s: &str) -> Result<Name, DnsError> {
    let name: Name = s.parse()?;
    if name.labels().is_empty() {
        return Err(DnsError::BadLabel);
    }
    // Room for an instance label in front.
    name.child(instance_label(&NodeId([0; 32])).as_bytes())?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lan::dns::MAX_LABEL_LEN;
    use rand_core::OsRng;
    use samizdat_identity::Identity;

    const NOW: u64 = 1_780_000_000;
    const HOUR: Duration = Duration::from_secs(3600);

    fn identity(seed: u8) -> Identity {
        Identity::from_secret_bytes(&[seed; 32]).expect("32 bytes")
    }

    fn record(seed: u8, ts: u64) -> PeerRecord {
        PeerRecord::sign(&identity(seed), &["tcp/192.0.2.1:7070"], ts).expect("valid")
    }

    fn service() -> Name {
        service_name("_samizdat._udp.local").expect("valid")
    }

    fn start() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    #[test]
    fn answer_carries_the_record_and_looks_like_dns_sd() {
        let addr = "a".repeat(crate::record::MAX_ADDR_LEN);
        let big = PeerRecord::sign(&identity(1), &[&addr, &addr, &addr, &addr], NOW).expect("ok");
        for r in [record(1, NOW), big] {
            let bytes = answer(&service(), &r).expect("fits");
            assert!(bytes.len() <= MAX_ANSWER_LEN, "{}", bytes.len());
            let m = Message::decode(&bytes).expect("decodes");
            assert!(m.is_response());
            assert_eq!(m.flags, FLAG_RESPONSE | FLAG_AUTHORITATIVE);
            let types: Vec<u16> = m.answers.iter().map(|a| a.data.rtype()).collect();
            assert_eq!(types, [rtype::PTR, rtype::SRV, rtype::TXT]);
            let RData::Txt(strings) = &m.answers[2].data else { panic!("TXT") };
            assert_eq!(strings[0], TXT_VERSION);
            assert!(strings.iter().all(|s| s.len() <= 255));
            assert_eq!(record_from_txt(strings), Ok(r));
        }
        let m = Message::decode(&answer(&service(), &record(1, NOW)).expect("ok")).expect("ok");
        let label = instance_label(&identity(1).node_id());
        assert_eq!(m.answers[0].data, RData::Ptr(service().child(label.as_bytes()).expect("ok")));
        assert!(matches!(&m.answers[1].data, RData::Srv { port: 7070, .. }));
    }

    #[test]
    fn txt_chunks_are_strict() {
        let good = txt_strings(&record(2, NOW));
        let mut shuffled = good.clone();
        shuffled.reverse();
        shuffled.push(b"note=hello".to_vec());
        assert!(record_from_txt(&shuffled).is_ok(), "order and unknown keys do not matter");
        let mut missing = good.clone();
        missing.remove(1); // r0
        assert_eq!(record_from_txt(&missing), Err(TxtError::Chunks));
        let mut repeated = good.clone();
        repeated.push(good[1].clone());
        assert_eq!(record_from_txt(&repeated), Err(TxtError::Chunks));
        let mut beyond = good.clone();
        beyond.push(b"r9=AAAA".to_vec());
        assert_eq!(record_from_txt(&beyond), Err(TxtError::Chunks));
        let mut gap = good.clone();
        gap.push(b"r7=AAAA".to_vec());
        assert_eq!(record_from_txt(&gap), Err(TxtError::Chunks));
        let mut garbled = good.clone();
        garbled[1][3] = b'*';
        assert_eq!(record_from_txt(&garbled), Err(TxtError::Base64));
        assert_eq!(record_from_txt(&[]), Err(TxtError::Chunks));
        let short = vec![b"r0=AAAA".to_vec()];
        assert!(matches!(record_from_txt(&short), Err(TxtError::Record(_))));
    }

    #[test]
    fn service_names() {
        assert!(service_name("_http._tcp.local").is_ok());
        assert!(service_name("").is_err());
        assert!(service_name("a..b").is_err());
        // A name that leaves no room for the instance label.
        let long = vec!["x".repeat(MAX_LABEL_LEN); 3].join(".") + "." + &"y".repeat(50);
        assert!(long.parse::<Name>().is_ok());
        assert!(service_name(&long).is_err());
    }

    fn query_for(name: &str, qtype: u16) -> Vec<u8> {
        Message {
            questions: vec![Question { name: name.parse().expect("ok"), qtype, qclass: CLASS_IN }],
            ..Message::default()
        }
        .encode()
        .expect("ok")
    }

    #[test]
    fn responder_answers_only_queries_for_us() {
        let r = record(3, NOW);
        let mut resp = Responder::new(service(), &r).expect("ok");
        let t0 = start();
        assert!(resp.poll_transmit(t0).is_some(), "announces at once");
        let instance = format!("{}._samizdat._udp.local", instance_label(&r.node_id()));
        assert_eq!(resp.handle_input(&query_for("_other._udp.local", rtype::PTR)), Input::Ignored);
        assert_eq!(resp.handle_input(&query_for("_samizdat._udp.local", rtype::A)), Input::Ignored);
        assert_eq!(resp.handle_input(&query_for(&instance, rtype::A)), Input::Ignored);
        assert_eq!(resp.handle_input(b"\x00\x01garbage"), Input::Malformed);
        let mut response = Message::decode(&answer(&service(), &r).expect("ok")).expect("ok");
        response.questions.push(Question { name: service(), qtype: rtype::PTR, qclass: 1 });
        assert_eq!(resp.handle_input(&response.encode().expect("ok")), Input::Ignored);
        assert_eq!(resp.poll_timeout(), None, "nothing due");
        assert_eq!(resp.poll_transmit(t0 + 10 * MIN_ANSWER_INTERVAL), None);

        assert_eq!(resp.handle_input(&query_for("_SAMIZDAT._udp.local", rtype::PTR)), Input::Query);
        assert_eq!(resp.handle_input(&query_for(&instance, rtype::TXT)), Input::Query);
        assert_eq!(resp.handle_input(&query_for("_samizdat._udp.local", rtype::ANY)), Input::Query);
        // Known-answer suppression.
        let known = query(&service(), &[r.node_id()]).expect("ok");
        assert_eq!(resp.handle_input(&known), Input::Suppressed);
        let stats = resp.stats();
        assert_eq!((stats.queries, stats.suppressed, stats.malformed, stats.ignored), (3, 1, 1, 4));
    }

    #[test]
    fn responder_sends_at_most_one_answer_per_interval() {
        let mut resp = Responder::new(service(), &record(4, NOW)).expect("ok");
        let q = query(&service(), &[]).expect("ok");
        let t0 = start();
        let mut sent = Vec::new();
        // 100 queries per second for 10 s, polled every 10 ms.
        for step in 0..1000u32 {
            let now = t0 + Duration::from_millis(10) * step;
            resp.handle_input(&q);
            if resp.poll_transmit(now).is_some() {
                sent.push(now);
            }
        }
        assert_eq!(sent.len(), 10, "one answer per second: {sent:?}");
        assert!(sent.windows(2).all(|w| w[1] - w[0] >= MIN_ANSWER_INTERVAL));
        // A query during the pause is answered when the pause ends, not dropped.
        let last = *sent.last().expect("sent");
        let mut resp2 = Responder::new(service(), &record(4, NOW)).expect("ok");
        assert!(resp2.poll_transmit(last).is_some());
        resp2.handle_input(&q);
        assert_eq!(resp2.poll_transmit(last + Duration::from_millis(500)), None);
        assert_eq!(resp2.poll_timeout(), Some(last + MIN_ANSWER_INTERVAL));
        assert!(resp2.poll_transmit(last + MIN_ANSWER_INTERVAL).is_some());
        // A new record is announced (within the same limit).
        resp2.set_record(&record(4, NOW + 60)).expect("ok");
        assert_eq!(resp2.poll_timeout(), Some(last + 2 * MIN_ANSWER_INTERVAL));
    }

    fn response_with(records: &[PeerRecord]) -> Vec<u8> {
        let mut m = Message { flags: FLAG_RESPONSE | FLAG_AUTHORITATIVE, ..Message::default() };
        for r in records {
            let one = Message::decode(&answer(&service(), r).expect("ok")).expect("ok");
            m.answers.extend(one.answers);
        }
        m.encode().expect("fits")
    }

    #[test]
    fn browse_verifies_dedups_and_skips_own() {
        let own = identity(5).node_id();
        let mut b = Browse::new(service(), Some(own), NOW, 2 * HOUR, 64);
        // (A forgery of a node already held with the same timestamp is not even checked.)
        let mut forged = record(11, NOW).encode();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let forged = PeerRecord::decode(&forged).expect("well formed");
        let input = [
            record(5, NOW),            // our own
            record(6, NOW - 100),      // node 6, older
            record(6, NOW),            // node 6, newer
            record(6, NOW - 50),       // node 6, in between: ignored
            record(7, NOW - 3 * 3600), // expired
            record(8, NOW + 3600),     // from the future
            forged,
            record(9, NOW),
        ];
        b.handle_input(&response_with(&input[..4]), &mut OsRng);
        b.handle_input(&response_with(&input[4..]), &mut OsRng);
        // A query, another service's TXT, and garbage are not responses for us.
        b.handle_input(&query(&service(), &[]).expect("ok"), &mut OsRng);
        let other = service_name("_other._udp.local").expect("ok");
        b.handle_input(&answer(&other, &record(10, NOW)).expect("ok"), &mut OsRng);
        b.handle_input(b"junk", &mut OsRng);
        // The next query lists what we have.
        let q = Message::decode(&b.query().expect("ok")).expect("ok");
        assert_eq!(q.answers.len(), 2);
        let out = b.finish();
        let mut nodes: Vec<NodeId> = out.records.iter().map(PeerRecord::node_id).collect();
        nodes.sort();
        let mut want = vec![identity(6).node_id(), identity(9).node_id()];
        want.sort();
        assert_eq!(nodes, want);
        let six = out.records.iter().find(|r| r.node_id() == identity(6).node_id());
        assert_eq!(six.map(PeerRecord::timestamp), Some(NOW));
        assert_eq!(out.rejected, 3);
        assert_eq!(out.responses, 3);
    }

    #[test]
    fn browse_stays_bounded_and_samples_a_flood() {
        let max = 8;
        let mut b = Browse::new(service(), None, NOW, HOUR, max);
        let mut rng = OsRng;
        let ids: Vec<Identity> = (0..200).map(|_| Identity::generate(&mut rng)).collect();
        for id in &ids {
            let r = PeerRecord::sign(id, &["tcp/192.0.2.9:1"], NOW).expect("ok");
            b.handle_input(&response_with(&[r]), &mut rng);
            assert!(b.records().len() <= max);
        }
        let out = b.finish();
        assert_eq!(out.records.len(), max);
        assert_eq!(out.over_capacity, 200 - max as u64);
        // Not simply the first eight.
        let first: Vec<NodeId> = ids[..max].iter().map(Identity::node_id).collect();
        let kept: Vec<NodeId> = out.records.iter().map(PeerRecord::node_id).collect();
        assert_ne!(kept, first, "reservoir replaced some (fails with probability ~1e-8)");
        let mut dedup = kept.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), max);
    }
}
