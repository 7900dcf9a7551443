//! Censors that classify protocols: the rules a national firewall is known to use against
//! "fully encrypted" traffic, as a pure function of a flow's first client payload and as a
//! [`Middlebox`] for the simulator.
//!
//! The rules are those measured by Wu et al., "How the Great Firewall of China Detects and
//! Blocks Fully Encrypted Traffic" (USENIX Security 2023). A flow is *exempt* (let through)
//! when the first payload its client sends
//!
//! 1. has an average popcount per byte of at most 3.4 or at least 4.6, or
//! 2. begins with 6 printable ASCII bytes, or
//! 3. is more than half printable ASCII, or
//! 4. holds a run of more than 20 printable ASCII bytes, or
//! 5. begins like TLS (a handshake or application-data record header) or like an HTTP
//!    request.
//!
//! Every other flow looks like random bytes and is blocked with some probability (the paper
//! measured about 26%); a blocked flow's client, server and server port (here: the pair of
//! nodes, the simulator has no ports) are then blocked for a while (180 s in the paper).
//! The function is pure so the same rules can judge real traffic captured on a real kernel.

use std::collections::BTreeMap;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::NodeId;
use crate::middlebox::{Middlebox, Segment, SegmentKind, Verdict};

/// Why a first payload is let through by the fully-encrypted rules, or that it is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetVerdict {
    /// Exemption 1: the average popcount per byte is at most 3.4 or at least 4.6.
    Popcount,
    /// Exemption 2: the first 6 bytes are printable.
    PrintablePrefix,
    /// Exemption 3: more than half of the bytes are printable.
    MostlyPrintable,
    /// Exemption 4: a run of more than 20 printable bytes.
    PrintableRun,
    /// Exemption 5: it starts like a TLS record or an HTTP request.
    KnownProtocol,
    /// No exemption: the payload looks fully encrypted.
    FullyEncrypted,
}

impl FetVerdict {
    /// Whether the censor lets the flow through for sure.
    pub fn is_exempt(self) -> bool {
        self != FetVerdict::FullyEncrypted
    }
}

fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"PUT ",
    b"POST ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"CONNECT ",
    b"PATCH ",
    b"TRACE ",
];

/// Judges a flow's first client payload by the fully-encrypted rules (the first exemption that
/// applies, in the paper's order). An empty payload is exempt: nothing has been seen yet.
pub fn classify_first_payload(payload: &[u8]) -> FetVerdict {
    if payload.is_empty() {
        return FetVerdict::Popcount;
    }
    let ones: u64 = payload.iter().map(|b| u64::from(b.count_ones())).sum();
    // popcount/len <= 3.4  <=>  10*ones <= 34*len (exact, no floating point).
    let len = payload.len() as u64;
    if 10 * ones <= 34 * len || 10 * ones >= 46 * len {
        return FetVerdict::Popcount;
    }
    if payload.len() >= 6 && payload[..6].iter().all(|&b| printable(b)) {
        return FetVerdict::PrintablePrefix;
    }
    let printable_count = payload.iter().filter(|&&b| printable(b)).count();
    if printable_count * 2 > payload.len() {
        return FetVerdict::MostlyPrintable;
    }
    let mut run = 0usize;
    for &b in payload {
        run = if printable(b) { run + 1 } else { 0 };
        if run > 20 {
            return FetVerdict::PrintableRun;
        }
    }
    let tls = payload.len() >= 3
        && (0x16..=0x17).contains(&payload[0])
        && payload[1] == 0x03
        && payload[2] <= 0x09;
    if tls || HTTP_METHODS.iter().any(|m| payload.starts_with(m)) {
        return FetVerdict::KnownProtocol;
    }
    FetVerdict::FullyEncrypted
}

/// Connections a [`FullyEncryptedCensor`] remembers while they have sent no payload yet.
pub const MAX_PENDING_FLOWS: usize = 65_536;

/// The fully-encrypted-traffic censor as a middlebox: it judges the first data segment each
/// connection's initiator sends, drops a fully-encrypted flow with probability
/// `block_probability` (resetting nothing: the firewall in the paper drops silently), and then
/// drops every segment between that client and server, the blocked flow's included, for
/// `block_for`.
///
/// At most [`MAX_PENDING_FLOWS`] connections wait for their first payload; past that the
/// oldest is forgotten (and never judged), so flows that never send cannot grow it.
#[derive(Debug)]
pub struct FullyEncryptedCensor {
    block_probability: f64,
    block_for: Duration,
    rng: ChaCha8Rng,
    /// Flow id -> its initiator, until the first client payload is judged.
    pending: BTreeMap<u64, NodeId>,
    /// (client, server) -> blocked until.
    blocked_pairs: BTreeMap<(NodeId, NodeId), Duration>,
    judged: u64,
    flows_blocked: u64,
}

impl FullyEncryptedCensor {
    /// The censor as measured: blocks about 26% of fully-encrypted flows, then the pair for
    /// 180 s.
    pub fn measured(seed: u64) -> Self {
        Self::new(seed, 0.263, Duration::from_secs(180))
    }

    /// A censor that blocks a fully-encrypted flow with `block_probability` (0..=1) and then
    /// the pair of hosts for `block_for`.
    pub fn new(seed: u64, block_probability: f64, block_for: Duration) -> Self {
        Self {
            block_probability: block_probability.clamp(0.0, 1.0),
            block_for,
            rng: ChaCha8Rng::seed_from_u64(seed),
            pending: BTreeMap::new(),
            blocked_pairs: BTreeMap::new(),
            judged: 0,
            flows_blocked: 0,
        }
    }

    /// Flows whose first client payload was judged.
    pub fn flows_judged(&self) -> u64 {
        self.judged
    }

    /// Flows dropped because their first payload looked fully encrypted.
    pub fn flows_blocked(&self) -> u64 {
        self.flows_blocked
    }

    fn roll(&mut self) -> bool {
        // 53 random bits make a uniform float in [0, 1).
        let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < self.block_probability
    }
}

impl Middlebox for FullyEncryptedCensor {
    fn inspect(&mut self, now: Duration, segment: &Segment<'_>) -> Verdict {
        self.blocked_pairs.retain(|_, until| *until > now);
        if self.blocked_pairs.contains_key(&(segment.from, segment.to))
            || self.blocked_pairs.contains_key(&(segment.to, segment.from))
        {
            return Verdict::Drop;
        }
        match segment.kind {
            SegmentKind::Syn => {
                self.pending.entry(segment.flow).or_insert(segment.from);
                if self.pending.len() > MAX_PENDING_FLOWS {
                    self.pending.pop_first();
                }
            }
            SegmentKind::Data if self.pending.get(&segment.flow) == Some(&segment.from) => {
                self.pending.remove(&segment.flow);
                self.judged += 1;
                if !classify_first_payload(segment.payload).is_exempt() && self.roll() {
                    self.flows_blocked += 1;
                    self.blocked_pairs.insert((segment.from, segment.to), now + self.block_for);
                    return Verdict::Drop;
                }
            }
            SegmentKind::Rst | SegmentKind::Fin => {
                self.pending.remove(&segment.flow);
            }
            _ => {}
        }
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes with popcount 4 each, none printable: 0xF0 (1111_0000) and 0x87 (1000_0111).
    fn random_looking(n: usize) -> Vec<u8> {
        (0..n).map(|i| if i % 2 == 0 { 0xF0 } else { 0x87 }).collect()
    }

    #[test]
    fn each_exemption_applies() {
        assert_eq!(classify_first_payload(&random_looking(64)), FetVerdict::FullyEncrypted);
        assert_eq!(classify_first_payload(&[0u8; 64]), FetVerdict::Popcount);
        assert_eq!(classify_first_payload(&[0xFF; 64]), FetVerdict::Popcount);
        let mut p = random_looking(64);
        p[..6].copy_from_slice(b"SSH-2.");
        assert_eq!(classify_first_payload(&p), FetVerdict::PrintablePrefix);
        // 33 of 64 printable but never 6 at the start and no run over 20: alternate.
        let mut p = random_looking(64);
        for i in (1..64).step_by(2) {
            p[i] = b'5'; // 0x35: popcount 4, printable
        }
        p[0] = b'5';
        assert_eq!(classify_first_payload(&p), FetVerdict::MostlyPrintable);
        let mut p = random_looking(100);
        p[40..61].copy_from_slice(&[b'U'; 21]); // 0x55: popcount 4
        assert_eq!(classify_first_payload(&p), FetVerdict::PrintableRun);
        let mut p = random_looking(100);
        p[40..60].copy_from_slice(&[b'U'; 20]);
        assert_eq!(
            classify_first_payload(&p),
            FetVerdict::FullyEncrypted,
            "a run of 20 is not enough"
        );
        let mut p = random_looking(64);
        p[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
        assert_eq!(classify_first_payload(&p), FetVerdict::KnownProtocol);
        let mut p = random_looking(64);
        p[..3].copy_from_slice(&[0x16, 0x03, 0x0a]);
        assert_eq!(classify_first_payload(&p), FetVerdict::FullyEncrypted);
        assert_eq!(classify_first_payload(b""), FetVerdict::Popcount);
    }

    fn seg(from: NodeId, to: NodeId, flow: u64, kind: SegmentKind, payload: &[u8]) -> Segment<'_> {
        Segment { from, to, flow, kind, seq: 0, payload, retransmission: false }
    }

    #[test]
    fn the_censor_blocks_encrypted_flows_and_then_the_pair_for_a_while() {
        let mut c = FullyEncryptedCensor::new(1, 1.0, Duration::from_secs(180));
        let t = Duration::from_secs(1);
        let enc = random_looking(40);
        assert_eq!(c.inspect(t, &seg(0, 1, 7, SegmentKind::Syn, &[])), Verdict::Pass);
        assert_eq!(c.inspect(t, &seg(1, 0, 7, SegmentKind::SynAck, &[])), Verdict::Pass);
        assert_eq!(c.inspect(t, &seg(0, 1, 7, SegmentKind::Data, &enc)), Verdict::Drop);
        assert_eq!(c.flows_blocked(), 1);
        // The pair is blocked both ways, even for a new flow that would be exempt.
        assert_eq!(c.inspect(t, &seg(0, 1, 8, SegmentKind::Syn, &[])), Verdict::Drop);
        assert_eq!(c.inspect(t, &seg(1, 0, 7, SegmentKind::Ack, &[])), Verdict::Drop);
        // Another pair with a TLS-looking start passes.
        let mut tls = random_looking(40);
        tls[..3].copy_from_slice(&[0x16, 0x03, 0x01]);
        assert_eq!(c.inspect(t, &seg(2, 1, 9, SegmentKind::Syn, &[])), Verdict::Pass);
        assert_eq!(c.inspect(t, &seg(2, 1, 9, SegmentKind::Data, &tls)), Verdict::Pass);
        // Only the first client payload is judged.
        assert_eq!(c.inspect(t, &seg(2, 1, 9, SegmentKind::Data, &enc)), Verdict::Pass);
        assert_eq!(c.inspect(t, &seg(1, 2, 9, SegmentKind::Data, &enc)), Verdict::Pass);
        assert_eq!(c.flows_judged(), 2);
        // After the block time the pair may connect again.
        let later = t + Duration::from_secs(181);
        assert_eq!(c.inspect(later, &seg(0, 1, 10, SegmentKind::Syn, &[])), Verdict::Pass);
    }

    #[test]
    fn the_block_probability_is_honoured() {
        let mut c = FullyEncryptedCensor::measured(42);
        let enc = random_looking(40);
        for flow in 0..10_000u64 {
            // A fresh pair each time so earlier blocks do not interfere.
            let (a, b) = (flow as NodeId * 2, flow as NodeId * 2 + 1);
            c.inspect(Duration::ZERO, &seg(a, b, flow, SegmentKind::Syn, &[]));
            c.inspect(Duration::ZERO, &seg(a, b, flow, SegmentKind::Data, &enc));
        }
        let rate = c.flows_blocked() as f64 / 10_000.0;
        assert!((0.24..0.29).contains(&rate), "{rate}");
        let mut never = FullyEncryptedCensor::new(3, 0.0, Duration::from_secs(180));
        for flow in 0..100u64 {
            never.inspect(Duration::ZERO, &seg(0, 1, flow, SegmentKind::Syn, &[]));
            assert_eq!(
                never.inspect(Duration::ZERO, &seg(0, 1, flow, SegmentKind::Data, &enc)),
                Verdict::Pass
            );
        }
        assert_eq!((never.flows_judged(), never.flows_blocked()), (100, 0));
    }

    #[test]
    fn flows_that_never_send_are_forgotten_past_the_bound() {
        let mut c = FullyEncryptedCensor::new(1, 1.0, Duration::from_secs(180));
        for flow in 0..=MAX_PENDING_FLOWS as u64 {
            c.inspect(Duration::ZERO, &seg(0, 1, flow, SegmentKind::Syn, &[]));
        }
        assert_eq!(c.pending.len(), MAX_PENDING_FLOWS);
        // The oldest was forgotten, so its first payload is never judged.
        let enc = random_looking(40);
        assert_eq!(
            c.inspect(Duration::ZERO, &seg(0, 1, 0, SegmentKind::Data, &enc)),
            Verdict::Pass
        );
        assert_eq!(c.flows_judged(), 0);
    }
}
