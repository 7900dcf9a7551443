//! The event trace: a BLAKE3 digest over every event, and a bounded log of recent ones.

use std::collections::VecDeque;

use crate::middlebox::SegmentKind;
use crate::transport::Packet;

/// What happened, in a [`TraceEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceKind {
    /// A node was added (`node`).
    NodeAdded,
    /// A node crashed.
    Crash,
    /// A crashed node restarted with a new host.
    Restart,
    /// The link `node`–`peer` was cut.
    Cut,
    /// The link `node`–`peer` was healed.
    Heal,
    /// `node` was isolated from every other node.
    Isolate,
    /// `node` rejoined the network.
    Rejoin,
    /// A scenario reset every connection between `node` and `peer`.
    ResetLink,
    /// A transport handed a segment (`segment`, `seq`, `bytes` of payload) to the link
    /// `node -> peer`; `id` is the flow.
    PacketSent,
    /// The segment was lost at random.
    DropLoss,
    /// The segment was tail-dropped by a full queue.
    DropQueue,
    /// The segment was dropped because the link was cut or an endpoint isolated.
    DropCut,
    /// A middlebox dropped the segment.
    DropMiddlebox,
    /// A middlebox answered the segment with resets to both ends.
    RstInjected,
    /// The segment reached a crashed node.
    DropDown,
    /// The segment reached the far node.
    Delivered,
    /// The host at `node` accepted a connection from `peer` as `id`.
    Accept,
    /// The host's outbound connection `id` is established.
    Connected,
    /// The host's outbound connection `id` failed.
    ConnectFailed,
    /// The host received `bytes` on connection `id`.
    Receive,
    /// The host's connection `id` closed.
    Closed,
    /// The host's timeout fired.
    Timeout,
    /// The host asked to connect to `peer` as `id`.
    ActionConnect,
    /// The host queued `bytes` on connection `id`.
    ActionSend,
    /// The host closed connection `id`.
    ActionClose,
    /// The host did something invalid (unknown or reused connection id); it was ignored.
    HostError,
}

/// One entry of the simulator's trace. Contains no wall-clock values, only virtual time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual nanoseconds since the simulator started.
    pub time_ns: u64,
    /// What happened.
    pub kind: TraceKind,
    /// The node it happened at (for segments: the sender).
    pub node: u64,
    /// The other node involved, or `u64::MAX`.
    pub peer: u64,
    /// The connection id (host events) or flow id (segments), or 0.
    pub id: u64,
    /// For segments, the segment's kind.
    pub segment: Option<SegmentKind>,
    /// For segments, the sequence number.
    pub seq: u64,
    /// Payload bytes involved.
    pub bytes: u64,
}

impl TraceEvent {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.kind as u8);
        out.push(self.segment.map_or(0, |s| s as u8 + 1));
        for v in [self.time_ns, self.node, self.peer, self.id, self.seq, self.bytes] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Hashes every event and keeps the most recent ones.
pub(crate) struct Tracer {
    hasher: blake3::Hasher,
    pending: Vec<u8>,
    log: VecDeque<TraceEvent>,
    capacity: usize,
    count: u64,
}

const FLUSH_AT: usize = 64 * 1024;

impl Tracer {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            hasher: blake3::Hasher::new_derive_key("samizdat-sim trace v1"),
            pending: Vec::with_capacity(FLUSH_AT + 64),
            log: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
            count: 0,
        }
    }

    pub(crate) fn record(&mut self, event: TraceEvent) {
        event.encode(&mut self.pending);
        self.count += 1;
        if self.pending.len() >= FLUSH_AT {
            self.hasher.update(&self.pending);
            self.pending.clear();
        }
        if self.capacity > 0 {
            if self.log.len() == self.capacity {
                self.log.pop_front();
            }
            self.log.push_back(event);
        }
    }

    /// Records a segment event at virtual time `now`.
    pub(crate) fn packet(&mut self, kind: TraceKind, now: std::time::Duration, p: &Packet) {
        self.record(TraceEvent {
            time_ns: u64::try_from(now.as_nanos()).unwrap_or(u64::MAX),
            kind,
            node: p.from as u64,
            peer: p.to as u64,
            id: p.flow,
            segment: Some(p.kind),
            seq: if p.kind == SegmentKind::Ack { p.ack } else { p.seq },
            bytes: p.payload.len() as u64,
        });
    }

    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut h = self.hasher.clone();
        h.update(&self.pending);
        h.update(&self.count.to_le_bytes());
        *h.finalize().as_bytes()
    }

    pub(crate) fn log(&self) -> impl Iterator<Item = &TraceEvent> {
        self.log.iter()
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }
}
