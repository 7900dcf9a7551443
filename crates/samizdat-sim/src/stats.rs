//! Counters the simulator keeps per link direction and overall.

/// Counters for one link direction (`from -> to`), as returned by
/// [`crate::Sim::link_stats`].
///
/// "Sent" counts every segment a transport handed to the link, including retransmissions
/// and segments later lost or dropped; "delivered" counts segments that reached the far node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Segments handed to the link (data and control).
    pub packets_sent: u64,
    /// Payload bytes handed to the link, retransmissions included.
    pub payload_bytes_sent: u64,
    /// Bytes on the wire (payload plus simulated headers), retransmissions included.
    pub wire_bytes_sent: u64,
    /// Data segments that were retransmissions.
    pub retransmitted_packets: u64,
    /// Payload bytes in retransmissions.
    pub retransmitted_bytes: u64,
    /// Segments that reached the far node's network stack.
    pub delivered_packets: u64,
    /// Payload bytes in delivered segments.
    pub delivered_payload_bytes: u64,
    /// Segments lost to random loss.
    pub lost: u64,
    /// Segments tail-dropped because the queue was full.
    pub dropped_queue: u64,
    /// Segments dropped because the link was cut or an endpoint isolated.
    pub dropped_cut: u64,
    /// Segments a middlebox dropped (including those it answered with resets).
    pub dropped_middlebox: u64,
    /// Segments that arrived at a crashed node.
    pub dropped_down: u64,
    /// Resets a middlebox injected.
    pub rst_injected: u64,
}

impl LinkStats {
    /// Adds every counter of `other` to `self`.
    pub fn add(&mut self, other: &LinkStats) {
        self.packets_sent += other.packets_sent;
        self.payload_bytes_sent += other.payload_bytes_sent;
        self.wire_bytes_sent += other.wire_bytes_sent;
        self.retransmitted_packets += other.retransmitted_packets;
        self.retransmitted_bytes += other.retransmitted_bytes;
        self.delivered_packets += other.delivered_packets;
        self.delivered_payload_bytes += other.delivered_payload_bytes;
        self.lost += other.lost;
        self.dropped_queue += other.dropped_queue;
        self.dropped_cut += other.dropped_cut;
        self.dropped_middlebox += other.dropped_middlebox;
        self.dropped_down += other.dropped_down;
        self.rst_injected += other.rst_injected;
    }
}

/// Simulator-wide counters, as returned by [`crate::Sim::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Events processed (deliveries, timers).
    pub events: u64,
    /// The sum of every link direction's counters.
    pub links: LinkStats,
    /// Connections opened (outbound attempts plus accepted inbound ones).
    pub connections_opened: u64,
    /// Host mistakes the simulator ignored: actions on unknown connections, reused ids.
    pub host_errors: u64,
}
