//! One download: which chunk groups are missing, who is fetching what, and verification.
//!
//! The outboard (leaf hashes) comes first, from one peer, and must hash to the content root
//! before any group is accepted. Missing groups are then handed out in contiguous runs to every
//! usable peer, at most `window` in flight per peer. Every group is checked against its leaf
//! before it leaves this module; a peer that serves a bad group or bad leaves is banned from
//! this download and its groups go back to the pool for the others.

use crate::{Conn, ConnId, Offence};
use samizdat_content::{ContentRoot, Outboard, group_count};
use samizdat_identity::NodeId;
use samizdat_wire::{MAX_GROUPS_PER_REQUEST, MAX_LEAVES_PER_MESSAGE, Message};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Why a download failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// No reachable peer had the content for longer than the stall timeout.
    #[error("no reachable peer has this content")]
    NoSources,
}

/// What a download already has on disk.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The outboard persisted by an earlier attempt (checked against the root again).
    pub outboard: Option<Outboard>,
    /// `have[i]` is true when group `i` is already verified on disk (requires `outboard`).
    pub have: Vec<bool>,
}

/// The result of feeding a message into a transfer.
pub(crate) enum Input {
    Ignored,
    Verified(Vec<u8>),
    OutboardReady(Outboard),
    Corrupt(Offence),
}

struct LeafFetch {
    conn: ConnId,
    /// When the last page arrived (or the fetch started).
    since: Instant,
    blob_len: Option<u64>,
    leaves: Vec<[u8; 32]>,
    requested: u32,
}

pub(crate) struct Transfer {
    root: ContentRoot,
    outboard: Option<Outboard>,
    leaf_fetch: Option<LeafFetch>,
    have: Vec<bool>,
    have_count: u32,
    missing: BTreeSet<u32>,
    in_flight: BTreeMap<u32, ConnId>,
    per_conn: BTreeMap<ConnId, u32>,
    /// Per connection with requests outstanding: when it last delivered a group (or was first
    /// asked). A connection silent for the request timeout loses its requests.
    last_delivery: BTreeMap<ConnId, Instant>,
    excluded: BTreeSet<ConnId>,
    banned: BTreeSet<NodeId>,
    last_progress: Instant,
    /// Addresses to (re)dial while no usable peer is connected.
    pub(crate) hints: Vec<samizdat_wire::PeerAddr>,
    /// Redial rounds used so far.
    pub(crate) redials: u32,
    /// When the next redial round is due, if one is scheduled.
    pub(crate) next_redial: Option<Instant>,
}

impl Transfer {
    pub(crate) fn new(now: Instant, root: ContentRoot, resume: Resume) -> Self {
        let mut t = Transfer {
            root,
            outboard: None,
            leaf_fetch: None,
            have: Vec::new(),
            have_count: 0,
            missing: BTreeSet::new(),
            in_flight: BTreeMap::new(),
            per_conn: BTreeMap::new(),
            last_delivery: BTreeMap::new(),
            excluded: BTreeSet::new(),
            banned: BTreeSet::new(),
            last_progress: now,
            hints: Vec::new(),
            redials: 0,
            next_redial: None,
        };
        if let Some(o) = resume.outboard {
            if o.check_root(&root).is_ok() {
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
                let full =
                    self.have_count.saturating_sub(u32::from(self.have.last() == Some(&true)));
                let last = if self.have.last() == Some(&true) {
                    let r = samizdat_content::group_range(o.blob_len, o.groups() - 1);
                    r.end - r.start
                } else {
                    0
                };
                (u64::from(full) * samizdat_content::GROUP_SIZE as u64 + last, Some(o.blob_len))
            }
            None => (0, None),
        }
    }

    /// Whether any connection could still serve this download (or is still being set up).
    pub(crate) fn has_source(&self, conns: &BTreeMap<ConnId, Conn>) -> bool {
        conns.iter().any(|(id, c)| !c.session.is_established() || self.usable(*id, c))
    }

    fn usable(&self, conn: ConnId, c: &Conn) -> bool {
        c.can_serve()
            && !self.excluded.contains(&conn)
            && c.peer_id().is_some_and(|p| !self.banned.contains(&p))
    }

    /// Whether nobody can serve us and nothing happened for `stall`.
    pub(crate) fn stalled(&self, now: Instant, stall: Duration) -> bool {
        self.in_flight.is_empty() && self.leaf_fetch.is_none() && now >= self.last_progress + stall
    }

    /// The next instant at which [`Transfer::expire`] or [`Transfer::stalled`] could act.
    pub(crate) fn deadline(&self, stall: Duration, request_timeout: Duration) -> Option<Instant> {
        let idle = (self.in_flight.is_empty() && self.leaf_fetch.is_none())
            .then(|| self.last_progress + stall);
        let requests = self.last_delivery.values().map(|t| *t + request_timeout).min();
        let leaves = self.leaf_fetch.as_ref().map(|f| f.since + request_timeout);
        [idle, requests, leaves, self.next_redial].into_iter().flatten().min()
    }

    /// Takes the requests away from connections that delivered nothing for `timeout`, and
    /// stops asking them for this download (they keep their other work).
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) {
        let silent: Vec<ConnId> = self
            .last_delivery
            .iter()
            .filter(|(_, t)| now >= **t + timeout)
            .map(|(c, _)| *c)
            .collect();
        let leaf = self.leaf_fetch.as_ref().filter(|f| now >= f.since + timeout).map(|f| f.conn);
        for conn in silent.into_iter().chain(leaf) {
            self.not_found(conn);
        }
    }

    pub(crate) fn schedule(
        &mut self,
        now: Instant,
        conns: &mut BTreeMap<ConnId, Conn>,
        window: u32,
    ) {
        if self.outboard.is_none() {
            if self.leaf_fetch.is_none() {
                let pick = conns.iter().find(|(id, c)| self.usable(**id, c)).map(|(id, _)| *id);
                if let (Some(conn), Some(c)) = (pick, pick.and_then(|id| conns.get_mut(&id))) {
                    let count = MAX_LEAVES_PER_MESSAGE as u32;
                    let _ =
                        c.session.send(&Message::GetOutboard { root: self.root, first: 0, count });
                    self.leaf_fetch = Some(LeafFetch {
                        conn,
                        since: now,
                        blob_len: None,
                        leaves: Vec::new(),
                        requested: count,
                    });
                    self.last_progress = now;
                }
            }
            return;
        }
        let ids: Vec<ConnId> =
            conns.iter().filter(|(id, c)| self.usable(**id, c)).map(|(id, _)| *id).collect();
        for id in ids {
            let Some(c) = conns.get_mut(&id) else { continue };
            let busy = self.per_conn.get(&id).copied().unwrap_or(0);
            let mut budget = window.saturating_sub(busy);
            while budget > 0 {
                let Some(first) = self.missing.pop_first() else { return };
                let mut count = 1;
                while count < budget.min(MAX_GROUPS_PER_REQUEST)
                    && self.missing.remove(&(first + count))
                {
                    count += 1;
                }
                for i in first..first + count {
                    self.in_flight.insert(i, id);
                }
                *self.per_conn.entry(id).or_insert(0) += count;
                self.last_delivery.entry(id).or_insert(now);
                budget -= count;
                let _ = c.session.send(&Message::GetGroups { root: self.root, first, count });
            }
        }
    }

    pub(crate) fn on_leaves(
        &mut self,
        now: Instant,
        conn: ConnId,
        blob_len: u64,
        first: u32,
        leaves: Vec<[u8; 32]>,
        max_blob_len: u64,
    ) -> Input {
        let Some(f) = self.leaf_fetch.as_mut().filter(|f| f.conn == conn) else {
            return Input::Ignored;
        };
        let total = group_count(blob_len);
        let consistent = f.blob_len.is_none_or(|b| b == blob_len);
        let in_order = first as usize == f.leaves.len();
        let expected_len =
            (total as usize - f.leaves.len().min(total as usize)).min(MAX_LEAVES_PER_MESSAGE);
        if blob_len > max_blob_len || !consistent || !in_order || leaves.len() != expected_len {
            self.leaf_fetch = None;
            return Input::Corrupt(Offence::CorruptOutboard);
        }
        f.blob_len = Some(blob_len);
        f.since = now;
        f.leaves.extend(leaves);
        self.last_progress = now;
        if (f.leaves.len() as u64) < total {
            // Pipeline the remaining pages on the same connection (responses arrive in order).
            return Input::Ignored;
        }
        let outboard = Outboard { blob_len, leaves: std::mem::take(&mut f.leaves) };
        self.leaf_fetch = None;
        if outboard.check_root(&self.root).is_err() {
            return Input::Corrupt(Offence::CorruptOutboard);
        }
        self.install_outboard(outboard.clone(), &[]);
        Input::OutboardReady(outboard)
    }

    /// Requests further outboard pages; called after [`Transfer::on_leaves`].
    pub(crate) fn request_more_leaves(&mut self, conns: &mut BTreeMap<ConnId, Conn>) {
        let Some(f) = self.leaf_fetch.as_mut() else { return };
        let Some(blob_len) = f.blob_len else { return };
        let total = group_count(blob_len) as u32;
        let Some(c) = conns.get_mut(&f.conn) else { return };
        // Keep at most 8 pages outstanding.
        let limit =
            (f.leaves.len() as u32).saturating_add(8 * MAX_LEAVES_PER_MESSAGE as u32).min(total);
        while f.requested < limit {
            let count = (limit - f.requested).min(MAX_LEAVES_PER_MESSAGE as u32);
            let _ = c.session.send(&Message::GetOutboard {
                root: self.root,
                first: f.requested,
                count,
            });
            f.requested += count;
        }
    }

    pub(crate) fn on_group(
        &mut self,
        now: Instant,
        conn: ConnId,
        index: u32,
        data: Vec<u8>,
    ) -> Input {
        let Some(outboard) = &self.outboard else { return Input::Ignored };
        if self.have.get(index as usize) != Some(&false) {
            return Input::Ignored;
        }
        let assigned = self.in_flight.get(&index) == Some(&conn);
        if outboard.verify_group(&self.root, index, &data).is_err() {
            if assigned {
                return Input::Corrupt(Offence::CorruptGroup);
            }
            return Input::Ignored;
        }
        if let Some(owner) = self.in_flight.remove(&index) {
            if let Some(n) = self.per_conn.get_mut(&owner) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_conn.remove(&owner);
                    self.last_delivery.remove(&owner);
                }
            }
        }
        if self.per_conn.contains_key(&conn) {
            self.last_delivery.insert(conn, now);
        }
        self.missing.remove(&index);
        self.have[index as usize] = true;
        self.have_count += 1;
        self.last_progress = now;
        Input::Verified(data)
    }

    fn release(&mut self, conn: ConnId) {
        let mine: Vec<u32> =
            self.in_flight.iter().filter(|(_, c)| **c == conn).map(|(i, _)| *i).collect();
        for i in mine {
            self.in_flight.remove(&i);
            self.missing.insert(i);
        }
        self.per_conn.remove(&conn);
        self.last_delivery.remove(&conn);
        if self.leaf_fetch.as_ref().is_some_and(|f| f.conn == conn) {
            self.leaf_fetch = None;
        }
    }

    pub(crate) fn conn_lost(&mut self, conn: ConnId) {
        self.release(conn);
        self.excluded.remove(&conn);
    }

    pub(crate) fn not_found(&mut self, conn: ConnId) {
        self.release(conn);
        self.excluded.insert(conn);
    }

    pub(crate) fn ban(&mut self, conn: ConnId, peer: NodeId) {
        self.release(conn);
        self.banned.insert(peer);
    }
}
