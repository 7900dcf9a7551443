//! Configuration of links, the simulated transport, and the simulator as a whole.

use std::time::Duration;

/// Properties of one link (both directions share them; each direction has its own queue).
///
/// A segment entering a link direction waits behind earlier segments (its serialization
/// delay is `wire bytes * 8 / bandwidth_bps`), is dropped if the queue already holds more
/// than `queue_limit` bytes, is lost with probability `loss`, and otherwise arrives
/// `latency + uniform(0..=jitter)` after it leaves the queue. Jitter reorders segments.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per segment; reorders segments.
    pub jitter: Duration,
    /// Bits per second per direction; `0` means unlimited (no serialization delay).
    pub bandwidth_bps: u64,
    /// Probability in `0.0..=1.0` that a segment is lost.
    pub loss: f64,
    /// Bytes that may wait in a direction's queue before new segments are tail-dropped.
    pub queue_limit: usize,
}

impl Default for LinkConfig {
    /// 10 ms latency, no jitter, 100 Mbit/s, no loss, 1 MiB queue.
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            bandwidth_bps: 100_000_000,
            loss: 0.0,
            queue_limit: 1 << 20,
        }
    }
}

/// How the sender's congestion window moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CongestionControl {
    /// Always [`TransportConfig::window`] segments in flight. Keeps goodput high under random
    /// loss (which a loss-based controller would mistake for congestion).
    #[default]
    Fixed,
    /// Slow start, then additive increase / multiplicative decrease, capped at
    /// [`TransportConfig::window`]. Use it when link queues, not random loss, should set the
    /// pace.
    Aimd,
}

/// Parameters of the simulated stream transport.
#[derive(Clone, Debug, PartialEq)]
pub struct TransportConfig {
    /// Maximum payload bytes per data segment.
    pub mss: usize,
    /// Congestion window cap: segments in flight (sent, not yet acknowledged or lost).
    pub window: u32,
    /// Receive window in segments: how far past the first missing segment a sender may go.
    /// Bounds the receiver's out-of-order buffer. Must be at least `window`.
    pub recv_window: u32,
    /// Fixed window or AIMD.
    pub congestion: CongestionControl,
    /// Retransmission timeout before any round-trip sample (also the first SYN timeout).
    pub initial_rto: Duration,
    /// Lower bound on the retransmission timeout.
    pub min_rto: Duration,
    /// Upper bound on the retransmission timeout after exponential backoff.
    pub max_rto: Duration,
    /// An outbound connection that has no answer after this long fails.
    pub connect_timeout: Duration,
    /// A connection closes when nothing arrives from the peer for this long, or when sent
    /// data sees no acknowledgement progress for this long.
    pub dead_timeout: Duration,
    /// An idle connection probes its peer after this long without hearing from it.
    pub keepalive: Duration,
    /// A segment counts as lost once a segment transmitted this many transmissions later has
    /// been acknowledged. Higher values tolerate more reordering.
    pub reorder_threshold: u64,
    /// How long a node remembers a finished flow and answers stray SYNs of it (late
    /// retransmissions) with RST instead of accepting a new connection. Stray SYNs are sent
    /// at most `connect_timeout` after the flow began, so this must exceed `connect_timeout`
    /// plus the largest one-way delay a scenario gives a segment (latency, jitter, queueing,
    /// middlebox delays). Memory: one entry per flow finished in the last `time_wait`.
    pub time_wait: Duration,
}

impl Default for TransportConfig {
    /// 1,300-byte segments, window 512, receive window 2,048, fixed window, RTO 1 s initial
    /// and 200 ms..4 s, connect and dead timeouts 10 s, keepalive 2 s, reorder threshold 3,
    /// time-wait 60 s.
    fn default() -> Self {
        Self {
            mss: 1300,
            window: 512,
            recv_window: 2048,
            congestion: CongestionControl::Fixed,
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(10),
            dead_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(2),
            reorder_threshold: 3,
            time_wait: Duration::from_secs(60),
        }
    }
}

/// Everything [`crate::Sim::new`] needs besides the seed.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// Link properties for every pair of nodes not configured with [`crate::Sim::set_link`].
    pub default_link: LinkConfig,
    /// The transport every connection uses.
    pub transport: TransportConfig,
    /// How many recent [`crate::TraceEvent`]s [`crate::Sim::trace_log`] keeps (0: none).
    /// The digest always covers every event regardless.
    pub trace_log_capacity: usize,
    /// [`crate::Sim::run_until_idle`] gives up after this much virtual time.
    pub idle_limit: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            default_link: LinkConfig::default(),
            transport: TransportConfig::default(),
            trace_log_capacity: 0,
            idle_limit: Duration::from_secs(3600),
        }
    }
}
