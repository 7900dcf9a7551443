//! Middleboxes: code that sits on a link (or in front of a node) and sees every segment.
//!
//! This is where censors and adversaries plug in. A middlebox inspects each segment as it
//! enters a link and returns a [`Verdict`]: pass it, drop it, delay it, rewrite its payload,
//! or answer it with injected resets to both ends (the classic RST-injection censor).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::NodeId;

/// The kind of a simulated transport segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SegmentKind {
    /// Connection request.
    Syn,
    /// Connection accepted.
    SynAck,
    /// Stream bytes.
    Data,
    /// End of the sender's stream (carries a sequence number, no payload).
    Fin,
    /// Acknowledgement (cumulative plus selective).
    Ack,
    /// Keepalive probe; the peer answers with an [`SegmentKind::Ack`].
    Ping,
    /// Abort the connection.
    Rst,
}

/// A segment as a middlebox sees it.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    /// The sending node.
    pub from: NodeId,
    /// The receiving node.
    pub to: NodeId,
    /// The simulator's id for the connection (the same in both directions).
    pub flow: u64,
    /// What the segment is.
    pub kind: SegmentKind,
    /// The segment's sequence number (data and FIN: segment index in the stream).
    pub seq: u64,
    /// The payload (empty for control segments).
    pub payload: &'a [u8],
    /// Whether this is a retransmission of a segment sent before.
    pub retransmission: bool,
}

/// What a middlebox decides about a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through unchanged.
    Pass,
    /// Drop it silently.
    Drop,
    /// Let it through after an extra delay.
    Delay(Duration),
    /// Replace its payload (the transport does not notice: there is no checksum).
    Rewrite(Vec<u8>),
    /// Drop it and inject a reset towards both ends of the connection.
    Reset,
}

/// Code that sees every segment crossing the link (or node) it is installed on.
///
/// Install with [`crate::Sim::add_middlebox`] (one link, both directions) or
/// [`crate::Sim::add_node_middlebox`] (every link of a node). Middleboxes run in the order
/// they were installed (the sender's node, then the link, then the receiver's node); a
/// rewrite is seen by later middleboxes, delays add up, and the first drop or reset wins.
/// Implementations must be deterministic: take randomness only from a seeded generator.
///
/// Any `FnMut(Duration, &Segment) -> Verdict` closure is a middlebox.
pub trait Middlebox {
    /// Decides the fate of `segment`; `now` is virtual time since the simulation started.
    fn inspect(&mut self, now: Duration, segment: &Segment<'_>) -> Verdict;
}

impl<F: FnMut(Duration, &Segment<'_>) -> Verdict> Middlebox for F {
    fn inspect(&mut self, now: Duration, segment: &Segment<'_>) -> Verdict {
        self(now, segment)
    }
}

/// Drops every segment to or from a set of blocked nodes: an IP blocklist.
///
/// Connections to a blocked node fail with [`crate::Host::connect_failed`]; established ones
/// time out.
#[derive(Clone, Debug, Default)]
pub struct Blocklist {
    blocked: BTreeSet<NodeId>,
    dropped: u64,
}

impl Blocklist {
    /// A blocklist for `nodes`.
    pub fn new(nodes: impl IntoIterator<Item = NodeId>) -> Self {
        Self { blocked: nodes.into_iter().collect(), dropped: 0 }
    }

    /// Segments dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl Middlebox for Blocklist {
    fn inspect(&mut self, _now: Duration, segment: &Segment<'_>) -> Verdict {
        if self.blocked.contains(&segment.from) || self.blocked.contains(&segment.to) {
            self.dropped += 1;
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    }
}

/// Resets a connection once it has carried more than a byte budget: a volume-based
/// RST-injecting censor.
///
/// Counts first-transmission payload bytes per flow, in both directions. The segment that
/// takes a flow over `limit` is dropped and answered with resets to both ends, and so is
/// every later segment of that flow.
#[derive(Clone, Debug)]
pub struct RstAfterBytes {
    limit: u64,
    seen: BTreeMap<u64, u64>,
    resets: u64,
}

impl RstAfterBytes {
    /// A censor that lets each flow carry at most `limit` payload bytes.
    pub fn new(limit: u64) -> Self {
        Self { limit, seen: BTreeMap::new(), resets: 0 }
    }

    /// Resets injected so far (one per segment answered).
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Flows that have been cut off.
    pub fn blocked_flows(&self) -> usize {
        self.seen.values().filter(|&&n| n > self.limit).count()
    }
}

impl Middlebox for RstAfterBytes {
    fn inspect(&mut self, _now: Duration, segment: &Segment<'_>) -> Verdict {
        let seen = self.seen.entry(segment.flow).or_insert(0);
        if !segment.retransmission {
            *seen = seen.saturating_add(segment.payload.len() as u64);
        }
        if *seen > self.limit && segment.kind != SegmentKind::Rst {
            self.resets += 1;
            Verdict::Reset
        } else {
            Verdict::Pass
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flow: u64, payload: &[u8], retransmission: bool) -> Segment<'_> {
        Segment { from: 0, to: 1, flow, kind: SegmentKind::Data, seq: 0, payload, retransmission }
    }

    #[test]
    fn rst_after_bytes_counts_per_flow_and_ignores_retransmissions() {
        let mut m = RstAfterBytes::new(10);
        assert_eq!(m.inspect(Duration::ZERO, &seg(1, &[0; 6], false)), Verdict::Pass);
        assert_eq!(m.inspect(Duration::ZERO, &seg(1, &[0; 6], true)), Verdict::Pass);
        assert_eq!(m.inspect(Duration::ZERO, &seg(2, &[0; 6], false)), Verdict::Pass);
        assert_eq!(m.inspect(Duration::ZERO, &seg(1, &[0; 6], false)), Verdict::Reset);
        assert_eq!(m.inspect(Duration::ZERO, &seg(1, &[], false)), Verdict::Reset);
        assert_eq!(m.blocked_flows(), 1);
        assert_eq!(m.resets(), 2);
    }

    #[test]
    fn blocklist_drops_both_directions() {
        let mut m = Blocklist::new([1]);
        assert_eq!(m.inspect(Duration::ZERO, &seg(1, b"x", false)), Verdict::Drop);
        let back = Segment { from: 1, to: 0, ..seg(1, b"x", false) };
        assert_eq!(m.inspect(Duration::ZERO, &back), Verdict::Drop);
        let other = Segment { from: 2, to: 0, ..seg(1, b"x", false) };
        assert_eq!(m.inspect(Duration::ZERO, &other), Verdict::Pass);
        assert_eq!(m.dropped(), 2);
    }
}
