//! The simulated stream transport: one sans-IO state machine per connection endpoint.
//!
//! Sequence numbers count segments, not bytes. Every data or FIN segment carries a
//! per-connection transmission number (`xmit`); the receiver acknowledges each data segment
//! with its cumulative ack, up to [`MAX_SACK_RANGES`] selective-ack ranges, and an echo of
//! the `(seq, xmit)` that triggered the ack. The echo gives exact round-trip samples even for
//! retransmissions, and drives loss detection: a transmission is lost once one sent
//! `reorder_threshold` transmissions later has arrived (RACK-like). A retransmission timeout
//! backs this up for tail losses.
//!
//! Host-visible lifecycle: the acceptor's host learns of the connection at once (SYN
//! received); the initiator's host when any segment of the peer arrives. A FIN is delivered
//! in sequence; when it is, the host is told `Closed` and the endpoint sends its own FIN
//! after its queued data. The endpoint finishes once both FINs are through, or on RST or
//! timeout.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::NodeId;
use crate::config::{CongestionControl, TransportConfig};
use crate::middlebox::SegmentKind;

/// Simulated header bytes per segment (counted against link bandwidth).
pub(crate) const HEADER_BYTES: usize = 40;
/// At most this many selective-ack ranges per ack.
pub(crate) const MAX_SACK_RANGES: usize = 32;
/// Simulated bytes per selective-ack range.
const SACK_RANGE_BYTES: usize = 8;

/// A segment on the simulated wire.
#[derive(Clone, Debug)]
pub(crate) struct Packet {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) flow: u64,
    pub(crate) kind: SegmentKind,
    /// Data/FIN: segment sequence number.
    pub(crate) seq: u64,
    /// Data/FIN: transmission number.
    pub(crate) xmit: u64,
    /// Ack: cumulative ack (next expected sequence number).
    pub(crate) ack: u64,
    /// Ack: received ranges `[start, end)` above the cumulative ack.
    pub(crate) sacks: Vec<(u64, u64)>,
    /// Ack: the `(seq, xmit)` of the segment that triggered it; `None` for keepalive answers.
    pub(crate) echo: Option<(u64, u64)>,
    pub(crate) payload: Vec<u8>,
    pub(crate) retransmission: bool,
}

impl Packet {
    pub(crate) fn control(from: NodeId, to: NodeId, flow: u64, kind: SegmentKind) -> Self {
        Self {
            from,
            to,
            flow,
            kind,
            seq: 0,
            xmit: 0,
            ack: 0,
            sacks: Vec::new(),
            echo: None,
            payload: Vec::new(),
            retransmission: false,
        }
    }

    /// Bytes the segment occupies on the wire.
    pub(crate) fn wire_len(&self) -> usize {
        HEADER_BYTES + self.payload.len() + self.sacks.len() * SACK_RANGE_BYTES
    }

    /// Keepalive traffic does not keep [`crate::Sim::run_until_idle`] running.
    pub(crate) fn is_background(&self) -> bool {
        self.kind == SegmentKind::Ping || (self.kind == SegmentKind::Ack && self.echo.is_none())
    }
}

/// What a connection endpoint wants the simulator to do.
#[derive(Debug)]
pub(crate) enum Output {
    Transmit(Packet),
    Connected,
    ConnectFailed,
    Data(Vec<u8>),
    Closed,
}

/// When the endpoint next needs [`Connection::on_timer`], and whether that timer matters
/// for idleness (retransmissions do; keepalives do not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timer {
    pub(crate) at: Duration,
    pub(crate) active: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    SynSent,
    Established,
}

struct Sent {
    data: Vec<u8>,
    fin: bool,
    xmit: u64,
    sent_at: Duration,
    retransmitted: bool,
}

/// One end of a simulated stream connection.
pub(crate) struct Connection {
    me: NodeId,
    peer: NodeId,
    flow: u64,
    state: State,
    /// The host knows the connection and no `Closed` has been emitted for it yet.
    host_open: bool,
    /// The simulator has told the host the connection closed.
    told_closed: bool,
    finished: bool,

    connect_started: Duration,
    syn_deadline: Duration,
    syn_rto: Duration,
    syn_retransmitted: bool,

    send_buf: VecDeque<u8>,
    close_requested: bool,
    fin_seq: Option<u64>,
    snd_una: u64,
    snd_nxt: u64,
    in_flight: BTreeMap<u64, Sent>,
    /// Transmissions in the network, by transmission number: the "pipe".
    outstanding: BTreeMap<u64, u64>,
    lost: BTreeSet<u64>,
    next_xmit: u64,
    max_delivered_xmit: Option<u64>,
    cwnd: u32,
    ssthresh: u32,
    ca_acked: u32,
    recovery_until: u64,
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    rto_deadline: Option<Duration>,
    last_progress: Duration,

    rcv_nxt: u64,
    ooo: BTreeMap<u64, Vec<u8>>,
    /// Received runs `start -> end` (exclusive) at or above `rcv_nxt`.
    ranges: BTreeMap<u64, u64>,
    peer_fin_seq: Option<u64>,
    peer_fin_done: bool,
    last_recv: Duration,
    last_ping: Duration,
}

impl Connection {
    fn new(me: NodeId, peer: NodeId, flow: u64, now: Duration, cfg: &TransportConfig) -> Self {
        let cwnd = match cfg.congestion {
            CongestionControl::Fixed => cfg.window.max(1),
            CongestionControl::Aimd => cfg.window.clamp(1, 10),
        };
        Self {
            me,
            peer,
            flow,
            state: State::SynSent,
            host_open: false,
            told_closed: false,
            finished: false,
            connect_started: now,
            syn_deadline: now + cfg.initial_rto,
            syn_rto: cfg.initial_rto,
            syn_retransmitted: false,
            send_buf: VecDeque::new(),
            close_requested: false,
            fin_seq: None,
            snd_una: 0,
            snd_nxt: 0,
            in_flight: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            lost: BTreeSet::new(),
            next_xmit: 0,
            max_delivered_xmit: None,
            cwnd,
            ssthresh: u32::MAX,
            ca_acked: 0,
            recovery_until: 0,
            srtt: None,
            rttvar: Duration::ZERO,
            rto: cfg.initial_rto,
            rto_deadline: None,
            last_progress: now,
            rcv_nxt: 0,
            ooo: BTreeMap::new(),
            ranges: BTreeMap::new(),
            peer_fin_seq: None,
            peer_fin_done: false,
            last_recv: now,
            last_ping: now,
        }
    }

    /// Starts an outbound connection: sends a SYN.
    pub(crate) fn connect(
        me: NodeId,
        peer: NodeId,
        flow: u64,
        now: Duration,
        cfg: &TransportConfig,
        out: &mut Vec<Output>,
    ) -> Self {
        let c = Self::new(me, peer, flow, now, cfg);
        out.push(Output::Transmit(c.control(SegmentKind::Syn)));
        c
    }

    /// Accepts an inbound connection (its SYN just arrived): sends a SYN-ACK. The host has
    /// already been told.
    pub(crate) fn accept(
        me: NodeId,
        peer: NodeId,
        flow: u64,
        now: Duration,
        cfg: &TransportConfig,
        out: &mut Vec<Output>,
    ) -> Self {
        let mut c = Self::new(me, peer, flow, now, cfg);
        c.state = State::Established;
        c.host_open = true;
        out.push(Output::Transmit(c.control(SegmentKind::SynAck)));
        c
    }

    pub(crate) fn peer(&self) -> NodeId {
        self.peer
    }

    /// The endpoint is done and can be forgotten.
    pub(crate) fn is_finished(&self) -> bool {
        self.finished || (self.peer_fin_done && self.fin_seq.is_some_and(|f| self.snd_una > f))
    }

    /// Whether the host may still send on this connection.
    pub(crate) fn accepts_data(&self) -> bool {
        !self.close_requested && !self.told_closed && !self.finished
    }

    /// The host has now seen `Closed` (after a peer FIN, it may have queued a last reply
    /// while handling data delivered just before): queue our FIN after whatever it sent.
    pub(crate) fn host_told_closed(
        &mut self,
        now: Duration,
        cfg: &TransportConfig,
        out: &mut Vec<Output>,
    ) {
        self.told_closed = true;
        self.close_requested = true;
        self.pump(now, cfg, out);
    }

    fn control(&self, kind: SegmentKind) -> Packet {
        Packet::control(self.me, self.peer, self.flow, kind)
    }

    /// Queues stream bytes.
    pub(crate) fn send(&mut self, data: &[u8]) {
        self.send_buf.extend(data);
    }

    /// Requests a graceful close: FIN after queued data.
    pub(crate) fn close(&mut self) {
        self.close_requested = true;
    }

    /// Aborts the connection locally (scenario reset); tells the host.
    pub(crate) fn abort(&mut self, out: &mut Vec<Output>) {
        self.terminate(out);
    }

    fn terminate(&mut self, out: &mut Vec<Output>) {
        if self.finished {
            return;
        }
        if self.host_open {
            out.push(Output::Closed);
        } else if self.state == State::SynSent {
            out.push(Output::ConnectFailed);
        }
        self.host_open = false;
        self.finished = true;
    }

    fn establish(&mut self, now: Duration, cfg: &TransportConfig, out: &mut Vec<Output>) {
        self.state = State::Established;
        self.host_open = true;
        self.last_progress = now;
        if !self.syn_retransmitted {
            self.rtt_sample(now.saturating_sub(self.connect_started), cfg);
        }
        out.push(Output::Connected);
    }

    fn rtt_sample(&mut self, rtt: Duration, cfg: &TransportConfig) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.rto = (srtt + (self.rttvar * 4).max(Duration::from_millis(1)))
            .clamp(cfg.min_rto, cfg.max_rto);
    }

    /// Handles a segment from the peer.
    pub(crate) fn handle(
        &mut self,
        now: Duration,
        pkt: Packet,
        cfg: &TransportConfig,
        out: &mut Vec<Output>,
    ) {
        if self.finished {
            return;
        }
        self.last_recv = now;
        if pkt.kind == SegmentKind::Rst {
            self.terminate(out);
            return;
        }
        // Any segment of the peer means it has accepted our SYN.
        if self.state == State::SynSent {
            self.establish(now, cfg, out);
        }
        match pkt.kind {
            SegmentKind::Syn => out.push(Output::Transmit(self.control(SegmentKind::SynAck))),
            SegmentKind::SynAck | SegmentKind::Rst => {}
            SegmentKind::Ping => out.push(Output::Transmit(self.ack(None))),
            SegmentKind::Data | SegmentKind::Fin => self.on_data(pkt, cfg, out),
            SegmentKind::Ack => self.on_ack(now, &pkt, cfg),
        }
        self.pump(now, cfg, out);
        self.compact();
    }

    /// Frees the storage of empty queues and maps, so that an idle connection holds only its
    /// fixed-size state however much it carried (a map keeps a node allocated once used, a
    /// queue its largest capacity). Idle connections are what most of a large simulated
    /// network consists of.
    fn compact(&mut self) {
        if self.send_buf.is_empty() && self.send_buf.capacity() > 0 {
            self.send_buf = VecDeque::new();
        }
        if self.in_flight.is_empty() {
            self.in_flight = BTreeMap::new();
        }
        if self.outstanding.is_empty() {
            self.outstanding = BTreeMap::new();
        }
        if self.lost.is_empty() {
            self.lost = BTreeSet::new();
        }
        if self.ooo.is_empty() {
            self.ooo = BTreeMap::new();
        }
        if self.ranges.is_empty() {
            self.ranges = BTreeMap::new();
        }
    }

    fn ack(&self, echo: Option<(u64, u64)>) -> Packet {
        let mut p = self.control(SegmentKind::Ack);
        p.ack = self.rcv_nxt;
        // Like TCP's first SACK block: the run holding the segment that triggered this ack
        // (so every arrival is reported at least once), then the lowest runs.
        let current = echo.and_then(|(seq, _)| {
            self.ranges.range(..=seq).next_back().filter(|&(_, &e)| e > seq).map(|(&s, &e)| (s, e))
        });
        p.sacks.extend(current);
        p.sacks.extend(
            self.ranges
                .iter()
                .map(|(&s, &e)| (s, e))
                .filter(|&r| Some(r) != current)
                .take(MAX_SACK_RANGES - p.sacks.len()),
        );
        p.echo = echo;
        p
    }

    fn on_data(&mut self, pkt: Packet, cfg: &TransportConfig, out: &mut Vec<Output>) {
        let seq = pkt.seq;
        let in_window = seq >= self.rcv_nxt && seq < self.rcv_nxt + u64::from(cfg.recv_window);
        if in_window && !self.ooo.contains_key(&seq) && !self.peer_fin_done {
            if pkt.kind == SegmentKind::Fin {
                self.peer_fin_seq = Some(seq);
            }
            self.ooo.insert(seq, pkt.payload);
            self.insert_range(seq);
            let mut delivered: Vec<u8> = Vec::new();
            let mut fin_reached = false;
            while let Some(entry) = self.ooo.first_entry() {
                if *entry.key() != self.rcv_nxt {
                    break;
                }
                let data = entry.remove();
                if self.peer_fin_seq == Some(self.rcv_nxt) {
                    fin_reached = true;
                }
                if delivered.is_empty() {
                    delivered = data;
                } else {
                    delivered.extend_from_slice(&data);
                }
                self.rcv_nxt += 1;
            }
            if let Some((&start, _)) = self.ranges.first_key_value() {
                if start < self.rcv_nxt {
                    self.ranges.remove(&start);
                }
            }
            if !delivered.is_empty() && self.host_open {
                out.push(Output::Data(delivered));
            }
            if fin_reached {
                self.peer_fin_done = true;
                if self.host_open {
                    // Our FIN follows once the host has seen this (`host_told_closed`).
                    self.host_open = false;
                    out.push(Output::Closed);
                } else {
                    self.close_requested = true;
                }
            }
        }
        out.push(Output::Transmit(self.ack(Some((seq, pkt.xmit)))));
    }

    fn insert_range(&mut self, seq: u64) {
        let mut start = seq;
        let mut end = seq + 1;
        if let Some((&s, &e)) = self.ranges.range(..seq).next_back() {
            if e == seq {
                start = s;
                self.ranges.remove(&s);
            }
        }
        if let Some(e) = self.ranges.remove(&(seq + 1)) {
            end = e;
        }
        self.ranges.insert(start, end);
    }

    fn remove_in_flight(&mut self, seq: u64) -> bool {
        match self.in_flight.remove(&seq) {
            Some(s) => {
                self.outstanding.remove(&s.xmit);
                self.lost.remove(&seq);
                true
            }
            None => false,
        }
    }

    fn on_ack(&mut self, now: Duration, pkt: &Packet, cfg: &TransportConfig) {
        if let Some((seq, xmit)) = pkt.echo {
            if let Some(s) = self.in_flight.get(&seq) {
                if s.xmit == xmit {
                    let sample = now.saturating_sub(s.sent_at);
                    self.rtt_sample(sample, cfg);
                }
            }
            self.max_delivered_xmit = Some(self.max_delivered_xmit.map_or(xmit, |m| m.max(xmit)));
        }
        let mut newly_acked: u32 = 0;
        if pkt.ack > self.snd_una {
            let rest = self.in_flight.split_off(&pkt.ack);
            let acked = std::mem::replace(&mut self.in_flight, rest);
            for (seq, s) in acked {
                self.outstanding.remove(&s.xmit);
                self.lost.remove(&seq);
                newly_acked = newly_acked.saturating_add(1);
            }
            self.snd_una = pkt.ack;
        }
        for &(start, end) in &pkt.sacks {
            let start = start.max(self.snd_una);
            if start >= end {
                continue;
            }
            while let Some(seq) = self.in_flight.range(start..end).next().map(|(&k, _)| k) {
                self.remove_in_flight(seq);
                newly_acked = newly_acked.saturating_add(1);
            }
        }
        // Loss detection: transmissions overtaken by `reorder_threshold` later ones.
        let mut loss = false;
        if let Some(max) = self.max_delivered_xmit {
            while let Some((&x, &seq)) = self.outstanding.first_key_value() {
                if x.saturating_add(cfg.reorder_threshold) > max {
                    break;
                }
                self.outstanding.remove(&x);
                self.lost.insert(seq);
                loss = true;
            }
        }
        if cfg.congestion == CongestionControl::Aimd {
            if loss && self.snd_una >= self.recovery_until {
                self.ssthresh = (self.cwnd / 2).max(2);
                self.cwnd = self.ssthresh;
                self.ca_acked = 0;
                self.recovery_until = self.snd_nxt;
            } else if newly_acked > 0 && self.snd_una >= self.recovery_until {
                if self.cwnd < self.ssthresh {
                    self.cwnd = self.cwnd.saturating_add(newly_acked);
                } else {
                    self.ca_acked = self.ca_acked.saturating_add(newly_acked);
                    if self.ca_acked >= self.cwnd {
                        self.ca_acked -= self.cwnd;
                        self.cwnd += 1;
                    }
                }
                self.cwnd = self.cwnd.min(cfg.window.max(1));
            }
        }
        if newly_acked > 0 {
            self.last_progress = now;
            self.rto_deadline = (!self.in_flight.is_empty()).then(|| now + self.rto);
        }
    }

    /// Sends what the window allows: retransmissions first, then new data, then FIN.
    pub(crate) fn pump(&mut self, now: Duration, cfg: &TransportConfig, out: &mut Vec<Output>) {
        if self.state != State::Established || self.finished {
            return;
        }
        let recv_window = u64::from(cfg.recv_window.max(1));
        while self.outstanding.len() < self.cwnd as usize {
            let xmit = self.next_xmit;
            if let Some(seq) = self.lost.pop_first() {
                let Some(s) = self.in_flight.get_mut(&seq) else { continue };
                s.xmit = xmit;
                s.sent_at = now;
                s.retransmitted = true;
                let mut p = Packet::control(
                    self.me,
                    self.peer,
                    self.flow,
                    if s.fin { SegmentKind::Fin } else { SegmentKind::Data },
                );
                p.seq = seq;
                p.xmit = xmit;
                p.payload = s.data.clone();
                p.retransmission = true;
                self.outstanding.insert(xmit, seq);
                self.next_xmit += 1;
                out.push(Output::Transmit(p));
                continue;
            }
            if self.fin_seq.is_some() || self.snd_nxt >= self.snd_una + recv_window {
                break;
            }
            let (data, fin) = if !self.send_buf.is_empty() {
                let n = self.send_buf.len().min(cfg.mss.max(1));
                (self.send_buf.drain(..n).collect::<Vec<u8>>(), false)
            } else if self.close_requested {
                (Vec::new(), true)
            } else {
                break;
            };
            if self.in_flight.is_empty() {
                self.last_progress = now;
            }
            let seq = self.snd_nxt;
            self.snd_nxt += 1;
            if fin {
                self.fin_seq = Some(seq);
            }
            let mut p = Packet::control(
                self.me,
                self.peer,
                self.flow,
                if fin { SegmentKind::Fin } else { SegmentKind::Data },
            );
            p.seq = seq;
            p.xmit = xmit;
            p.payload = data.clone();
            self.in_flight
                .insert(seq, Sent { data, fin, xmit, sent_at: now, retransmitted: false });
            self.outstanding.insert(xmit, seq);
            self.next_xmit += 1;
            out.push(Output::Transmit(p));
        }
        if !self.in_flight.is_empty() && self.rto_deadline.is_none() {
            self.rto_deadline = Some(now + self.rto);
        }
        self.compact();
    }

    /// The next time [`Connection::on_timer`] has work.
    pub(crate) fn next_timer(&self, cfg: &TransportConfig) -> Option<Timer> {
        if self.finished {
            return None;
        }
        match self.state {
            State::SynSent => Some(Timer {
                at: self.syn_deadline.min(self.connect_started + cfg.connect_timeout),
                active: true,
            }),
            State::Established => {
                let mut at = self.last_recv + cfg.dead_timeout;
                if self.in_flight.is_empty() {
                    at = at.min(self.last_recv.max(self.last_ping) + cfg.keepalive);
                    Some(Timer { at, active: false })
                } else {
                    at = at.min(self.last_progress + cfg.dead_timeout);
                    if let Some(rto) = self.rto_deadline {
                        at = at.min(rto);
                    }
                    Some(Timer { at, active: true })
                }
            }
        }
    }

    /// Runs whatever timers are due at `now`.
    pub(crate) fn on_timer(&mut self, now: Duration, cfg: &TransportConfig, out: &mut Vec<Output>) {
        if self.finished {
            return;
        }
        match self.state {
            State::SynSent => {
                if now >= self.connect_started + cfg.connect_timeout {
                    self.terminate(out);
                } else if now >= self.syn_deadline {
                    self.syn_retransmitted = true;
                    self.syn_rto = (self.syn_rto * 2).min(cfg.max_rto);
                    self.syn_deadline = now + self.syn_rto;
                    out.push(Output::Transmit(self.control(SegmentKind::Syn)));
                }
            }
            State::Established => {
                let stalled =
                    !self.in_flight.is_empty() && now >= self.last_progress + cfg.dead_timeout;
                if now >= self.last_recv + cfg.dead_timeout || stalled {
                    self.terminate(out);
                    return;
                }
                if self.rto_deadline.is_some_and(|t| now >= t) {
                    if self.in_flight.is_empty() {
                        self.rto_deadline = None;
                    } else {
                        let outstanding = std::mem::take(&mut self.outstanding);
                        self.lost.extend(outstanding.into_values());
                        self.rto = (self.rto * 2).min(cfg.max_rto);
                        self.rto_deadline = Some(now + self.rto);
                        if cfg.congestion == CongestionControl::Aimd {
                            self.ssthresh = (self.cwnd / 2).max(2);
                            self.cwnd = 1;
                            self.ca_acked = 0;
                            self.recovery_until = self.snd_nxt;
                        }
                        self.pump(now, cfg, out);
                    }
                }
                if self.in_flight.is_empty()
                    && now >= self.last_recv.max(self.last_ping) + cfg.keepalive
                {
                    self.last_ping = now;
                    out.push(Output::Transmit(self.control(SegmentKind::Ping)));
                }
            }
        }
        self.compact();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(seq: u64, payload: &[u8]) -> Packet {
        let mut p = Packet::control(0, 1, 9, SegmentKind::Data);
        p.seq = seq;
        p.xmit = seq;
        p.payload = payload.to_vec();
        p
    }

    fn received(out: &[Output]) -> Vec<u8> {
        out.iter()
            .filter_map(|o| match o {
                Output::Data(d) => Some(d.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn receiver_reorders_and_tracks_sack_ranges() {
        let cfg = TransportConfig::default();
        let mut out = Vec::new();
        let mut c = Connection::accept(1, 0, 9, Duration::ZERO, &cfg, &mut out);
        out.clear();
        for seq in [2, 4, 3, 6] {
            c.handle(Duration::ZERO, data(seq, &[seq as u8]), &cfg, &mut out);
        }
        assert!(received(&out).is_empty());
        assert_eq!(c.ranges.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>(), [(2, 5), (6, 7)]);
        out.clear();
        c.handle(Duration::ZERO, data(0, &[0]), &cfg, &mut out);
        assert_eq!(received(&out), [0]);
        c.handle(Duration::ZERO, data(1, &[1]), &cfg, &mut out);
        assert_eq!(received(&out), [0, 1, 2, 3, 4]);
        assert_eq!(c.rcv_nxt, 5);
        assert_eq!(c.ranges.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>(), [(6, 7)]);
        // Duplicates are acknowledged but not delivered again.
        out.clear();
        c.handle(Duration::ZERO, data(3, &[3]), &cfg, &mut out);
        assert!(received(&out).is_empty());
        let acks: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Transmit(p) if p.kind == SegmentKind::Ack => Some((p.ack, p.sacks.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(acks, [(5, vec![(6, 7)])]);
    }

    #[test]
    fn sender_detects_loss_by_reordering_threshold() {
        let cfg = TransportConfig::default();
        let mut out = Vec::new();
        let mut c = Connection::connect(0, 1, 9, Duration::ZERO, &cfg, &mut out);
        let t = Duration::from_millis(100);
        c.handle(t, Packet::control(1, 0, 9, SegmentKind::SynAck), &cfg, &mut out);
        c.send(&vec![7u8; cfg.mss * 6]);
        out.clear();
        c.pump(t, &cfg, &mut out);
        assert_eq!(out.len(), 6);
        // Segment 0 is lost; 1..=3 arrive and are selectively acknowledged.
        let mut ack = Packet::control(1, 0, 9, SegmentKind::Ack);
        ack.ack = 0;
        ack.sacks = vec![(1, 4)];
        ack.echo = Some((3, 3));
        out.clear();
        c.handle(t * 2, ack, &cfg, &mut out);
        let retx: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                Output::Transmit(p) if p.retransmission => Some(p.seq),
                _ => None,
            })
            .collect();
        assert_eq!(retx, [0]);
        assert_eq!(c.in_flight.keys().copied().collect::<Vec<_>>(), [0, 4, 5]);
    }
}
