//! One download as a state machine over streams: which chunk groups are missing, which source
//! stream fetches what, and verification.
//!
//! A transfer never touches a session or a connection. It is fed `(stream, message)` pairs and
//! the streams it may use (each a [`StreamId`] with the [`SourceId`] it reaches), and it emits
//! `(stream, message)` pairs to send and [`Output`]s for its owner. Whether a stream is a
//! direct session or a relayed (later: onion) stream is decided by the engine.
//!
//! The outboard (leaf hashes) comes first, from one source, and must hash to the content root
//! and match the blob length the link pins before any group is accepted. It must arrive within
//! a deadline that grows with its size (a peer that trickles pages is dropped for another).
//! Missing groups are then handed out in contiguous runs to every usable stream, at most
//! `window` in flight per stream. Every group is checked against its leaf before it leaves this
//! module; a source that serves a bad group or bad leaves is banned from this download, and
//! only that source: the length is the link's, so no honest peer is ever blamed for another's
//! lie.

use crate::{SourceId, StreamId};
use samizdat_content::{ContentRoot, Locator, Outboard, group_count};
use samizdat_wire::{MAX_GROUPS_PER_REQUEST, MAX_LEAVES_PER_MESSAGE, RequestId, TransferMsg};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// No reachable peer had the content for longer than the stall timeout.
    #[error("no reachable peer has this content")]
    NoSources,
    /// The only peers reached authenticated as someone other than the link names.
    #[error("identity mismatch: the peer at the link's address is not the one the link names")]
    IdentityMismatch,
    /// The link's blob length is above this node's limit.
    #[error("the file is larger than this node accepts ({0} bytes)")]
    TooLarge(u64),
    /// The link names no peer and the DHT knows no provider of the content.
    #[error("nobody sharing this file was found in the DHT")]
    NoProviders,
}

/// What a download fetches: everything here comes from the link, never from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchSpec {
    /// What the blob must hash to.
    pub root: ContentRoot,
    /// What sources are asked for.
    pub locator: Locator,
    /// The blob's length, pinned by the link.
    pub blob_len: u64,
}

/// What a download already has on disk.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The outboard persisted by an earlier attempt (checked against the root and the pinned
    /// length again).
    pub outboard: Option<Outboard>,
    /// `have[i]` is true when group `i` is already verified on disk (requires `outboard`).
    pub have: Vec<bool>,
}

/// What a transfer reports to its owner.
#[derive(Debug)]
pub(crate) enum Output {
    /// A group passed verification.
    Verified { index: u32, data: Vec<u8>, source: SourceId },
    /// The outboard is complete and checked.
    OutboardReady(Outboard),
    /// A source served bad data; it is banned from this transfer.
    Corrupt { source: SourceId, offence: crate::Offence },
}

/// Time allowed for the whole outboard: a base plus one second per this many leaves
/// (500 leaves of 32 bytes a second is 16 KB/s, below the 256 kbit/s floor we must work at).
const LEAF_DEADLINE_BASE: Duration = Duration::from_secs(10);
const LEAVES_PER_SECOND: u64 = 500;
/// Outboard pages in flight at once.
const LEAF_PIPELINE: u32 = 8;

struct LeafFetch {
    stream: StreamId,
    /// When the last page arrived (or the fetch started): silence for the request timeout
    /// drops the source.
    since: Instant,
    /// The whole outboard must have arrived by then.
    deadline: Instant,
    leaves: Vec<[u8; 32]>,
    /// Leaves requested so far.
    requested: u32,
    /// Outstanding page requests, in the order they were sent: `(req, first, count)`.
    pages: VecDeque<(RequestId, u32, u32)>,
}

struct StreamState {
    source: SourceId,
    /// Groups in flight on this stream.
    busy: u32,
    /// When it last delivered a group (or was first asked, while it has requests).
    last_delivery: Option<Instant>,
    /// It said it has nothing, was silent, or too slow: not asked again in this transfer.
    excluded: bool,
    /// Outstanding group requests: `req -> groups not yet delivered`.
    reqs: BTreeMap<RequestId, u32>,
}

pub(crate) struct Transfer {
    pub(crate) spec: FetchSpec,
    outboard: Option<Outboard>,
    leaf_fetch: Option<LeafFetch>,
    have: Vec<bool>,
    have_count: u32,
    missing: BTreeSet<u32>,
    /// Group -> (stream, request) it was asked on.
    in_flight: BTreeMap<u32, (StreamId, RequestId)>,
    /// Verified groups handed to the owner and not yet reported stored.
    unstored: u32,
    streams: BTreeMap<StreamId, StreamState>,
    banned: BTreeSet<SourceId>,
    last_progress: Instant,
    outbox: VecDeque<(StreamId, TransferMsg)>,
    outputs: VecDeque<Output>,
}

impl Transfer {
    pub(crate) fn new(now: Instant, spec: FetchSpec, resume: Resume) -> Self {
        let mut t = Transfer {
            spec,
            outboard: None,
            leaf_fetch: None,
            have: Vec::new(),
            have_count: 0,
            missing: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            unstored: 0,
            streams: BTreeMap::new(),
            banned: BTreeSet::new(),
            last_progress: now,
            outbox: VecDeque::new(),
            outputs: VecDeque::new(),
        };
        if let Some(o) = resume.outboard {
            if o.blob_len == spec.blob_len && o.check_root(&spec.root).is_ok() {
                t.install_outboard(o, &resume.have);
            }
        }
        t
    }

    fn install_outboard(&mut self, outboard: Outboard, have: &[bool]) {
        let n = outboard.groups();
        self.have = (0..n).map(|i| have.get(i as usize).copied().unwrap_or(false)).collect();
        self.have_count = self.have.iter().filter(|h| **h).count() as u32;
        self.missing = (0..n).filter(|i| !self.have[*i as usize]).collect();
        self.outboard = Some(outboard);
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.outboard.as_ref().is_some_and(|o| self.have_count == o.groups())
    }

    pub(crate) fn progress(&self) -> (u64, Option<u64>) {
        match &self.outboard {
            Some(o) => {
                let last_done = self.have.last() == Some(&true);
                let full = self.have_count.saturating_sub(u32::from(last_done));
                let last = if last_done {
                    let r = samizdat_content::group_range(o.blob_len, o.groups() - 1);
                    r.end - r.start
                } else {
                    0
                };
                (u64::from(full) * samizdat_content::GROUP_SIZE as u64 + last, Some(o.blob_len))
            }
            None => (0, Some(self.spec.blob_len)),
        }
    }

    /// Offers a stream that reaches `source`. Banned sources are refused.
    pub(crate) fn add_stream(&mut self, stream: StreamId, source: SourceId) {
        if self.banned.contains(&source) || self.streams.contains_key(&stream) {
            return;
        }
        self.streams.insert(
            stream,
            StreamState {
                source,
                busy: 0,
                last_delivery: None,
                excluded: false,
                reqs: BTreeMap::new(),
            },
        );
    }

    /// The streams this transfer uses.
    pub(crate) fn streams(&self) -> impl Iterator<Item = &StreamId> {
        self.streams.keys()
    }

    /// Whether some stream can still be asked.
    pub(crate) fn has_usable_stream(&self) -> bool {
        self.streams.values().any(|s| !s.excluded)
    }

    /// Whether this transfer waits for data on a stream of connection `conn`.
    pub(crate) fn waiting_on(&self, conn: crate::ConnId) -> bool {
        self.waiting_since(conn).is_some()
    }

    /// If this transfer waits for data on a stream of connection `conn`: since when (the
    /// latest ask or delivery on it).
    pub(crate) fn waiting_since(&self, conn: crate::ConnId) -> Option<Instant> {
        let groups = self
            .streams
            .iter()
            .filter(|(id, s)| id.conn() == conn && (s.busy > 0 || !s.reqs.is_empty()))
            .map(|(_, s)| s.last_delivery.unwrap_or(self.last_progress));
        let leaves = self.leaf_fetch.as_ref().filter(|f| f.stream.conn() == conn).map(|f| f.since);
        groups.chain(leaves).max()
    }

    /// Whether `source` is banned from this transfer.
    pub(crate) fn is_banned(&self, source: &SourceId) -> bool {
        self.banned.contains(source)
    }

    /// Whether the answer `req` on `stream` belongs to this transfer.
    pub(crate) fn owns(&self, stream: StreamId, req: RequestId) -> bool {
        self.streams.get(&stream).is_some_and(|s| s.reqs.contains_key(&req))
            || self
                .leaf_fetch
                .as_ref()
                .is_some_and(|f| f.stream == stream && f.pages.iter().any(|p| p.0 == req))
    }

    /// The next message to send.
    pub(crate) fn poll_transmit(&mut self) -> Option<(StreamId, TransferMsg)> {
        self.outbox.pop_front()
    }

    /// The next output for the owner.
    pub(crate) fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Whether nobody can serve us and nothing happened for `stall`.
    pub(crate) fn stalled(&self, now: Instant, stall: Duration) -> bool {
        // A usable stream gets the next request first: dropping one source (say, a leaf source
        // past its deadline) must not fail a download that others can still serve.
        self.idle() && !self.has_usable_stream() && now >= self.last_progress + stall
    }

    /// Nothing is asked of anyone and the owner has stored everything it was given (a slow
    /// disk is not a stalled download).
    fn idle(&self) -> bool {
        self.in_flight.is_empty() && self.leaf_fetch.is_none() && self.unstored == 0
    }

    /// The next instant at which [`Transfer::expire`] or [`Transfer::stalled`] could act.
    pub(crate) fn deadline(&self, stall: Duration, request_timeout: Duration) -> Option<Instant> {
        let idle = self.idle().then(|| self.last_progress + stall);
        let requests =
            self.streams.values().filter_map(|s| s.last_delivery).map(|t| t + request_timeout);
        let leaves = self.leaf_fetch.as_ref().map(|f| (f.since + request_timeout).min(f.deadline));
        idle.into_iter().chain(requests).chain(leaves).min()
    }

    /// Takes the requests away from streams that delivered nothing for `timeout` (and from a
    /// leaf source past its deadline), and stops asking them in this transfer.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) {
        let silent: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.last_delivery.is_some_and(|t| now >= t + timeout))
            .map(|(id, _)| *id)
            .collect();
        let leaf = self
            .leaf_fetch
            .as_ref()
            .filter(|f| now >= f.since + timeout || now >= f.deadline)
            .map(|f| f.stream);
        for stream in silent.into_iter().chain(leaf) {
            self.exclude(stream);
        }
    }

    /// The owner stored `groups` verified groups.
    pub(crate) fn stored(&mut self, groups: u32) {
        self.unstored = self.unstored.saturating_sub(groups);
    }

    /// Hands out requests: the outboard first, then runs of missing groups, at most `window`
    /// in flight per stream and `store_window` in flight or unstored in all.
    pub(crate) fn schedule(
        &mut self,
        now: Instant,
        window: u32,
        store_window: u32,
        next_req: &mut RequestId,
    ) {
        if self.outboard.is_none() {
            if self.leaf_fetch.is_none() {
                let pick = self.streams.iter().find(|(_, s)| !s.excluded).map(|(id, _)| *id);
                if let Some(stream) = pick {
                    let total = group_count(self.spec.blob_len);
                    let allowed =
                        LEAF_DEADLINE_BASE + Duration::from_secs(total / LEAVES_PER_SECOND);
                    self.leaf_fetch = Some(LeafFetch {
                        stream,
                        since: now,
                        deadline: now + allowed,
                        leaves: Vec::new(),
                        requested: 0,
                        pages: VecDeque::new(),
                    });
                    self.request_more_leaves(next_req);
                }
            }
            return;
        }
        let ids: Vec<StreamId> =
            self.streams.iter().filter(|(_, s)| !s.excluded).map(|(id, _)| *id).collect();
        let mut room =
            store_window.saturating_sub(self.unstored.saturating_add(self.in_flight.len() as u32));
        for id in ids {
            let Some(s) = self.streams.get_mut(&id) else { continue };
            let mut budget = window.saturating_sub(s.busy).min(room);
            while budget > 0 {
                let Some(first) = self.missing.pop_first() else { return };
                let mut count = 1;
                while count < budget.min(MAX_GROUPS_PER_REQUEST)
                    && self.missing.remove(&(first + count))
                {
                    count += 1;
                }
                let req = take_req(next_req);
                for i in first..first + count {
                    self.in_flight.insert(i, (id, req));
                }
                s.busy += count;
                s.reqs.insert(req, count);
                s.last_delivery.get_or_insert(now);
                budget -= count;
                room -= count;
                let locator = self.spec.locator;
                self.outbox.push_back((id, TransferMsg::GetGroups { req, locator, first, count }));
            }
        }
    }

    fn request_more_leaves(&mut self, next_req: &mut RequestId) {
        let total = group_count(self.spec.blob_len) as u32;
        let Some(f) = self.leaf_fetch.as_mut() else { return };
        let limit = (f.leaves.len() as u32)
            .saturating_add(LEAF_PIPELINE * MAX_LEAVES_PER_MESSAGE as u32)
            .min(total);
        while f.requested < limit {
            let count = (limit - f.requested).min(MAX_LEAVES_PER_MESSAGE as u32);
            let req = take_req(next_req);
            let first = f.requested;
            f.pages.push_back((req, first, count));
            self.outbox.push_back((
                f.stream,
                TransferMsg::GetOutboard { req, locator: self.spec.locator, first, count },
            ));
            f.requested += count;
        }
    }

    /// Feeds an answer that [`Transfer::owns`].
    pub(crate) fn on_message(
        &mut self,
        now: Instant,
        stream: StreamId,
        msg: TransferMsg,
        next_req: &mut RequestId,
    ) {
        match msg {
            TransferMsg::Outboard { req, blob_len, first, leaves } => {
                self.on_leaves(now, stream, req, blob_len, first, leaves, next_req);
            }
            TransferMsg::Group { req, index, data } => self.on_group(now, stream, req, index, data),
            TransferMsg::NotFound { .. } => self.exclude(stream),
            _ => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_leaves(
        &mut self,
        now: Instant,
        stream: StreamId,
        req: RequestId,
        blob_len: u64,
        first: u32,
        leaves: Vec<[u8; 32]>,
        next_req: &mut RequestId,
    ) {
        let Some(f) = self.leaf_fetch.as_mut().filter(|f| f.stream == stream) else { return };
        // Pages are answered in order; the first outstanding one must be this one, starting
        // where we are and with exactly what was asked (the length comes from the link).
        let expected = f.pages.front().copied();
        let ok = expected.is_some_and(|(r, fst, count)| {
            r == req
                && fst == first
                && first as usize == f.leaves.len()
                && leaves.len() == count as usize
        }) && blob_len == self.spec.blob_len;
        if !ok {
            self.corrupt(stream, crate::Offence::CorruptOutboard);
            return;
        }
        f.pages.pop_front();
        f.since = now;
        f.leaves.extend(leaves);
        if (f.leaves.len() as u64) < group_count(self.spec.blob_len) {
            self.request_more_leaves(next_req);
            return;
        }
        let outboard = Outboard { blob_len, leaves: std::mem::take(&mut f.leaves) };
        self.leaf_fetch = None;
        if outboard.check_root(&self.spec.root).is_err() {
            self.corrupt(stream, crate::Offence::CorruptOutboard);
            return;
        }
        // Only verified data is progress: sources that start an outboard and never finish it
        // (or serve junk) do not keep a download alive for ever.
        self.last_progress = now;
        self.install_outboard(outboard.clone(), &[]);
        self.outputs.push_back(Output::OutboardReady(outboard));
    }

    fn on_group(
        &mut self,
        now: Instant,
        stream: StreamId,
        req: RequestId,
        index: u32,
        data: Vec<u8>,
    ) {
        let Some(outboard) = &self.outboard else { return };
        if self.in_flight.get(&index) != Some(&(stream, req)) {
            // Not asked of this stream under this request (late, duplicate or unsolicited).
            return;
        }
        if outboard.verify_group(&self.spec.root, index, &data).is_err() {
            self.corrupt(stream, crate::Offence::CorruptGroup);
            return;
        }
        self.in_flight.remove(&index);
        let Some(s) = self.streams.get_mut(&stream) else { return };
        s.busy = s.busy.saturating_sub(1);
        if let Some(left) = s.reqs.get_mut(&req) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                s.reqs.remove(&req);
            }
        }
        s.last_delivery = (s.busy > 0).then_some(now);
        let source = s.source;
        self.missing.remove(&index);
        self.have[index as usize] = true;
        self.have_count += 1;
        self.unstored = self.unstored.saturating_add(1);
        self.last_progress = now;
        self.outputs.push_back(Output::Verified { index, data, source });
    }

    /// Bans the stream's source from this transfer and reports it.
    fn corrupt(&mut self, stream: StreamId, offence: crate::Offence) {
        let Some(source) = self.streams.get(&stream).map(|s| s.source) else { return };
        self.ban(source);
        self.outputs.push_back(Output::Corrupt { source, offence });
    }

    /// Returns a stream's requests to the pool (cancelling them with the peer if `cancel`).
    fn release(&mut self, stream: StreamId, cancel: bool) {
        let mine: Vec<u32> =
            self.in_flight.iter().filter(|(_, (s, _))| *s == stream).map(|(i, _)| *i).collect();
        for i in mine {
            self.in_flight.remove(&i);
            self.missing.insert(i);
        }
        if let Some(s) = self.streams.get_mut(&stream) {
            s.busy = 0;
            s.last_delivery = None;
            for req in std::mem::take(&mut s.reqs).into_keys() {
                if cancel {
                    self.outbox.push_back((stream, TransferMsg::Cancel { req }));
                }
            }
        }
        if let Some(f) = self.leaf_fetch.take_if(|f| f.stream == stream) {
            if cancel {
                for (req, _, _) in f.pages {
                    self.outbox.push_back((stream, TransferMsg::Cancel { req }));
                }
            }
        }
    }

    /// The stream is gone (its connection closed).
    pub(crate) fn stream_lost(&mut self, stream: StreamId) {
        self.release(stream, false);
        self.streams.remove(&stream);
    }

    /// The stream has nothing for us, or was too slow: stop asking it in this transfer.
    fn exclude(&mut self, stream: StreamId) {
        self.release(stream, true);
        if let Some(s) = self.streams.get_mut(&stream) {
            s.excluded = true;
        }
    }

    /// Bans a source from this transfer: every stream to it is dropped.
    pub(crate) fn ban(&mut self, source: SourceId) {
        self.banned.insert(source);
        let streams: Vec<StreamId> =
            self.streams.iter().filter(|(_, s)| s.source == source).map(|(id, _)| *id).collect();
        for stream in streams {
            self.release(stream, true);
            self.streams.remove(&stream);
        }
    }

    /// Cancels every outstanding request (the transfer is being abandoned).
    pub(crate) fn cancel_all(&mut self) {
        let streams: Vec<StreamId> = self.streams.keys().copied().collect();
        for s in streams {
            self.release(s, true);
        }
    }
}

fn take_req(next: &mut RequestId) -> RequestId {
    *next = next.wrapping_add(1);
    *next
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use super::*;
    use crate::ConnId;
    use samizdat_identity::NodeId;

    fn spec(blob_len: u64) -> FetchSpec {
        FetchSpec { root: ContentRoot([1; 32]), locator: Locator([2; 32]), blob_len }
    }

    fn source(i: u8) -> (StreamId, SourceId) {
        (StreamId::Direct(ConnId(u64::from(i))), SourceId::Node(NodeId([i; 32])))
    }

    /// Answers the outstanding leaf page on `stream` with zero leaves of the right shape.
    fn answer_page(t: &mut Transfer, now: Instant, stream: StreamId, next: &mut RequestId) -> bool {
        let Some(f) = t.leaf_fetch.as_ref().filter(|f| f.stream == stream) else { return false };
        let Some(&(req, first, count)) = f.pages.front() else { return false };
        let msg = TransferMsg::Outboard {
            req,
            blob_len: t.spec.blob_len,
            first,
            leaves: vec![[0; 32]; count as usize],
        };
        t.on_message(now, stream, msg, next);
        true
    }

    #[test]
    fn a_trickling_outboard_source_is_dropped_for_another_by_the_deadline() {
        // 40,000 leaves (a 1.3 GB blob): the deadline is 10 s + 80 s.
        let blob_len = 40_000 * samizdat_content::GROUP_SIZE as u64;
        let t0 = Instant::now();
        let mut t = Transfer::new(t0, spec(blob_len), Resume::default());
        let (slow, slow_id) = source(1);
        let (other, _) = source(2);
        t.add_stream(slow, slow_id);
        let mut next = 0;
        t.schedule(t0, 64, 512, &mut next);
        assert_eq!(t.leaf_fetch.as_ref().unwrap().stream, slow);
        // One page every 29 s: always inside the 30 s request timeout.
        let timeout = Duration::from_secs(30);
        let mut now = t0;
        for _ in 0..4 {
            now += Duration::from_secs(29);
            t.expire(now, timeout);
            if !answer_page(&mut t, now, slow, &mut next) {
                break;
            }
        }
        assert!(now >= t0 + Duration::from_secs(91));
        assert!(t.leaf_fetch.is_none(), "the trickling source kept the outboard fetch");
        assert!(!t.has_usable_stream());
        // A second source gets the outboard fetch.
        t.add_stream(other, source(2).1);
        t.schedule(now, 64, 512, &mut next);
        assert_eq!(t.leaf_fetch.as_ref().unwrap().stream, other);
        // The deadline is reported so the driver wakes for it.
        let d = t.deadline(Duration::from_secs(60), timeout).unwrap();
        assert!(d <= now + timeout);
        // Cancels went to the slow source for its outstanding pages.
        let cancels = std::iter::from_fn(|| t.poll_transmit())
            .filter(|(s, m)| *s == slow && matches!(m, TransferMsg::Cancel { .. }))
            .count();
        assert!(cancels > 0);
    }

    #[test]
    fn an_outboard_page_out_of_order_or_of_the_wrong_length_is_corrupt() {
        let blob_len = 3000 * samizdat_content::GROUP_SIZE as u64;
        let t0 = Instant::now();
        for bad in 0..3 {
            let mut t = Transfer::new(t0, spec(blob_len), Resume::default());
            let (s, id) = source(1);
            t.add_stream(s, id);
            let mut next = 0;
            t.schedule(t0, 64, 512, &mut next);
            let &(req, first, count) = t.leaf_fetch.as_ref().unwrap().pages.front().unwrap();
            let msg = match bad {
                0 => TransferMsg::Outboard {
                    req,
                    blob_len: blob_len - 1,
                    first,
                    leaves: vec![[0; 32]; count as usize],
                },
                1 => TransferMsg::Outboard {
                    req,
                    blob_len,
                    first: first + 1,
                    leaves: vec![[0; 32]; count as usize],
                },
                _ => TransferMsg::Outboard { req, blob_len, first, leaves: vec![[0; 32]; 3] },
            };
            t.on_message(t0, s, msg, &mut next);
            assert!(matches!(
                t.poll_output(),
                Some(Output::Corrupt { offence: crate::Offence::CorruptOutboard, .. })
            ));
            assert!(t.is_banned(&id));
        }
    }

    #[test]
    fn unstored_groups_hold_back_requests_until_the_owner_stores_them() {
        // 100 groups with a known outboard; a store window of 8 groups.
        let size = 100 * samizdat_content::GROUP_SIZE;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let m = samizdat_content::Manifest { name: "f".into(), size: size as u64, mime: "".into() };
        let key = samizdat_content::ContentKey::from_bytes([5; 32]);
        let mut blob = Vec::new();
        let enc = samizdat_content::encode(&key, &m, &data[..], &mut blob).unwrap();
        let (root, outboard, blob_len) = (enc.root, enc.outboard, blob.len() as u64);
        let spec = FetchSpec { root, locator: Locator([2; 32]), blob_len };
        let resume = Resume { outboard: Some(outboard.clone()), have: Vec::new() };
        let t0 = Instant::now();
        let mut t = Transfer::new(t0, spec, resume);
        let (s, id) = source(1);
        t.add_stream(s, id);
        let mut next = 0;
        let asked = |t: &mut Transfer| {
            std::iter::from_fn(|| t.poll_transmit())
                .filter_map(|(_, m)| match m {
                    TransferMsg::GetGroups { req, first, count, .. } => Some((req, first, count)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        t.schedule(t0, 64, 8, &mut next);
        let reqs = asked(&mut t);
        assert_eq!(reqs.iter().map(|r| r.2).sum::<u32>(), 8, "the window caps what is asked");
        for &(req, first, count) in &reqs {
            for index in first..first + count {
                let r = samizdat_content::group_range(blob_len, index);
                let data = blob[r.start as usize..r.end as usize].to_vec();
                t.on_message(t0, s, TransferMsg::Group { req, index, data }, &mut next);
            }
        }
        // All delivered but none stored: nothing more is asked, and it is not a stall.
        t.schedule(t0, 64, 8, &mut next);
        assert!(asked(&mut t).is_empty());
        assert!(!t.stalled(t0 + Duration::from_secs(3600), Duration::from_secs(60)));
        // Storing three lets three more be asked.
        t.stored(3);
        t.schedule(t0, 64, 8, &mut next);
        assert_eq!(asked(&mut t).iter().map(|r| r.2).sum::<u32>(), 3);
    }

    #[test]
    fn dropping_the_leaf_source_does_not_fail_a_download_others_can_serve() {
        // A 1.3 GB blob: the leaf deadline (90 s) is past the stall timeout (60 s).
        let blob_len = 40_000 * samizdat_content::GROUP_SIZE as u64;
        let t0 = Instant::now();
        let mut t = Transfer::new(t0, spec(blob_len), Resume::default());
        let (slow, slow_id) = source(1);
        let (other, other_id) = source(2);
        t.add_stream(slow, slow_id);
        t.add_stream(other, other_id);
        let mut next = 0;
        t.schedule(t0, 64, 512, &mut next);
        assert_eq!(t.leaf_fetch.as_ref().unwrap().stream, slow);
        let (timeout, stall) = (Duration::from_secs(30), Duration::from_secs(60));
        let mut now = t0;
        for _ in 0..3 {
            now += Duration::from_secs(29);
            t.expire(now, timeout);
            answer_page(&mut t, now, slow, &mut next);
        }
        now += Duration::from_secs(29);
        t.expire(now, timeout);
        assert!(t.leaf_fetch.is_none(), "the slow leaf source was dropped");
        assert!(!t.stalled(now, stall), "a download with a usable source was failed");
        t.schedule(now, 64, 512, &mut next);
        assert_eq!(t.leaf_fetch.as_ref().unwrap().stream, other);
    }

    #[test]
    fn unsolicited_answers_are_ignored() {
        let t0 = Instant::now();
        let mut t = Transfer::new(t0, spec(100_000), Resume::default());
        let (s, id) = source(1);
        t.add_stream(s, id);
        let mut next = 0;
        t.on_message(t0, s, TransferMsg::Group { req: 99, index: 0, data: vec![1] }, &mut next);
        assert!(t.poll_output().is_none());
        assert!(!t.owns(s, 99));
        assert_eq!(t.progress(), (0, Some(100_000)));
    }
}
