//! The routing table: 256 k-buckets with pending entries and network-prefix admission limits.
//!
//! Each bucket holds at most `k` entries, least recently seen first, plus at most
//! `pending_slots` pending contacts. A new contact for a full bucket waits as pending while
//! the least-recently-seen entry is probed ([`RoutingTable::next_probe`]); if the probe fails
//! the pending contact takes its place, if it answers the entry stays (old, proven contacts are
//! preferred, as in Kademlia, so a flood of fresh identities cannot displace them).
//!
//! Admission limits keep one operator from filling a table: at most
//! [`TableConfig::max_per_bucket_group`] entries per /24 (IPv4) or /48 (IPv6) in a bucket, and
//! at most [`TableConfig::max_per_table_group`] per /16 or /32 in the whole table.
//!
//! A **sibling list** (S/Kademlia §4.2) keeps the [`TableConfig::siblings`] live contacts
//! closest to the local ID whatever their buckets hold: a bucket near the local ID may be full
//! (its newcomers only pending), yet a node must know its whole neighbourhood to answer for the
//! keys near it and to tell whether it is among those responsible for a key
//! ([`RoutingTable::is_among_closest`]). One /24 or /48 gets at most
//! [`TableConfig::max_per_bucket_group`] of its places.
//!
//! Memory is bounded by construction: `256 * (k + pending_slots) + siblings` contacts of
//! bounded size.

use crate::contact::{Contact, NetGroup};
use crate::key::{bucket_index, distance};
use samizdat_identity::NodeId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Parameters of a [`RoutingTable`].
#[derive(Clone, Debug)]
pub struct TableConfig {
    /// Entries per bucket (Kademlia's k).
    pub k: usize,
    /// Pending contacts per bucket.
    pub pending_slots: usize,
    /// How long a pending contact waits before it is forgotten.
    pub pending_timeout: Duration,
    /// Entries per /24 (IPv4) or /48 (IPv6) in one bucket.
    pub max_per_bucket_group: usize,
    /// Entries per /16 (IPv4) or /32 (IPv6) in the whole table.
    pub max_per_table_group: usize,
    /// Consecutive failures after which an entry is dropped.
    pub max_failures: u8,
    /// A bucket not refreshed for this long is due for a refresh lookup.
    pub refresh_interval: Duration,
    /// Size of the sibling list: the live contacts closest to the local ID (S/Kademlia's
    /// η·s, here with η = 2 and s = k).
    pub siblings: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            k: 20,
            pending_slots: 3,
            pending_timeout: Duration::from_secs(60),
            max_per_bucket_group: 2,
            max_per_table_group: 10,
            max_failures: 2,
            refresh_interval: Duration::from_secs(3600),
            siblings: 2 * 20,
        }
    }
}

/// One entry of a bucket.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The contact.
    pub contact: Contact,
    /// When it last answered (or was vouched for).
    pub last_seen: Instant,
    /// Consecutive failures since.
    pub failures: u8,
}

#[derive(Clone, Debug)]
struct Pending {
    contact: Contact,
    since: Instant,
}

#[derive(Clone, Debug)]
struct Bucket {
    /// Least recently seen first.
    entries: Vec<Entry>,
    pending: Vec<Pending>,
    /// The entry being probed on behalf of the pending contacts.
    probing: Option<NodeId>,
    last_refresh: Instant,
}

/// Why a contact was not admitted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum Rejection {
    /// The contact is this node.
    SelfId,
    /// The bucket already holds the maximum from this /24 or /48.
    BucketGroupFull,
    /// The table already holds the maximum from this /16 or /32.
    TableGroupFull,
    /// The bucket and its pending slots are full.
    PendingFull,
}

/// What [`RoutingTable::insert`] did.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// Added to its bucket.
    Inserted,
    /// Already present: marked seen (moved to the most-recently-seen end).
    Updated,
    /// The bucket is full: the contact waits in a pending slot; [`RoutingTable::next_probe`]
    /// will name the entry to probe.
    Pending,
    /// Not admitted.
    Rejected(Rejection),
}

/// The Kademlia routing table of one node.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    local: NodeId,
    config: TableConfig,
    buckets: Vec<Bucket>,
    wide_groups: HashMap<NetGroup, usize>,
    len: usize,
    /// The live contacts closest to `local`, closest first.
    siblings: Vec<Contact>,
}

impl RoutingTable {
    /// An empty table for `local`.
    pub fn new(local: NodeId, config: TableConfig, now: Instant) -> Self {
        let bucket =
            Bucket { entries: Vec::new(), pending: Vec::new(), probing: None, last_refresh: now };
        RoutingTable {
            local,
            config,
            buckets: vec![bucket; 256],
            wide_groups: HashMap::new(),
            len: 0,
            siblings: Vec::new(),
        }
    }

    /// The local node's ID.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The configuration.
    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The number of entries (pending contacts excluded).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of pending contacts.
    pub fn pending_len(&self) -> usize {
        self.buckets.iter().map(|b| b.pending.len()).sum()
    }

    /// Whether `id` is an entry.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.entry(id).is_some()
    }

    /// The entry of `id`.
    pub fn entry(&self, id: &NodeId) -> Option<&Entry> {
        let b = bucket_index(&self.local, id)?;
        self.buckets[b].entries.iter().find(|e| e.contact.id() == *id)
    }

    /// The entries of bucket `index` (least recently seen first).
    pub fn bucket(&self, index: usize) -> &[Entry] {
        self.buckets.get(index).map(|b| b.entries.as_slice()).unwrap_or(&[])
    }

    fn group_ok(&self, b: usize, c: &Contact) -> Result<(), Rejection> {
        let g = c.net_groups();
        let in_bucket =
            self.buckets[b].entries.iter().filter(|e| e.contact.net_groups().narrow == g.narrow);
        if in_bucket.count() >= self.config.max_per_bucket_group {
            return Err(Rejection::BucketGroupFull);
        }
        if self.wide_groups.get(&g.wide).copied().unwrap_or(0) >= self.config.max_per_table_group {
            return Err(Rejection::TableGroupFull);
        }
        Ok(())
    }

    fn push_entry(&mut self, b: usize, contact: Contact, now: Instant) {
        *self.wide_groups.entry(contact.net_groups().wide).or_insert(0) += 1;
        self.buckets[b].entries.push(Entry { contact, last_seen: now, failures: 0 });
        self.len += 1;
    }

    fn remove_at(&mut self, b: usize, i: usize) -> Entry {
        let e = self.buckets[b].entries.remove(i);
        let wide = e.contact.net_groups().wide;
        if let Some(n) = self.wide_groups.get_mut(&wide) {
            *n -= 1;
            if *n == 0 {
                self.wide_groups.remove(&wide);
            }
        }
        self.len -= 1;
        e
    }

    /// Records that `contact` is alive (it answered a request, or the caller vouches for it on
    /// an authenticated link). The caller has checked its proof of work.
    ///
    /// A known contact moves to the most-recently-seen end and keeps the address it was
    /// admitted with (an address someone else mentions for it never replaces it: remove and
    /// re-insert to move a node); a probe of it succeeds, which drops the oldest pending
    /// contact of its bucket.
    pub fn insert(&mut self, contact: Contact, now: Instant) -> InsertOutcome {
        let Some(b) = bucket_index(&self.local, &contact.id()) else {
            return InsertOutcome::Rejected(Rejection::SelfId);
        };
        self.offer_sibling(&contact);
        let id = contact.id();
        if let Some(i) = self.buckets[b].entries.iter().position(|e| e.contact.id() == id) {
            let e = self.remove_at(b, i);
            let bucket = &mut self.buckets[b];
            if bucket.probing == Some(id) {
                bucket.probing = None;
                if !bucket.pending.is_empty() {
                    bucket.pending.remove(0);
                }
            }
            self.push_entry(b, e.contact, now);
            return InsertOutcome::Updated;
        }
        if let Err(r) = self.group_ok(b, &contact) {
            return InsertOutcome::Rejected(r);
        }
        if self.buckets[b].entries.len() < self.config.k {
            self.push_entry(b, contact, now);
            return InsertOutcome::Inserted;
        }
        let timeout = self.config.pending_timeout;
        let bucket = &mut self.buckets[b];
        bucket.pending.retain(|p| now.saturating_duration_since(p.since) < timeout);
        if let Some(p) = bucket.pending.iter_mut().find(|p| p.contact.id() == id) {
            p.contact = contact;
            return InsertOutcome::Pending;
        }
        if bucket.pending.len() >= self.config.pending_slots {
            return InsertOutcome::Rejected(Rejection::PendingFull);
        }
        bucket.pending.push(Pending { contact, since: now });
        InsertOutcome::Pending
    }

    /// The next least-recently-seen entry to ping on behalf of pending contacts, if any
    /// bucket has pending contacts and no probe running. Report the answer with
    /// [`RoutingTable::insert`] and a failure with [`RoutingTable::failed`].
    pub fn next_probe(&mut self, now: Instant) -> Option<Contact> {
        let timeout = self.config.pending_timeout;
        for bucket in &mut self.buckets {
            bucket.pending.retain(|p| now.saturating_duration_since(p.since) < timeout);
            if bucket.probing.is_none() && !bucket.pending.is_empty() {
                let lrs = bucket.entries.first()?.contact.clone();
                bucket.probing = Some(lrs.id());
                return Some(lrs);
            }
        }
        None
    }

    /// Offers a live contact to the sibling list: it takes a place if the list has room or
    /// the contact is closer than the farthest sibling (which then leaves), unless its /24 or
    /// /48 already has its share. A known sibling keeps the address it came with.
    fn offer_sibling(&mut self, contact: &Contact) {
        let cap = self.config.siblings;
        let id = contact.id();
        if cap == 0 || self.siblings.iter().any(|c| c.id() == id) {
            return;
        }
        let d = distance(&id, &self.local);
        let pos = self.siblings.partition_point(|c| distance(&c.id(), &self.local) < d);
        if pos >= cap {
            return;
        }
        let narrow = contact.net_groups().narrow;
        let same = self.siblings.iter().filter(|c| c.net_groups().narrow == narrow).count();
        if same >= self.config.max_per_bucket_group {
            return;
        }
        self.siblings.insert(pos, contact.clone());
        self.siblings.truncate(cap);
    }

    /// The sibling list: the live contacts closest to the local ID, closest first.
    pub fn siblings(&self) -> &[Contact] {
        &self.siblings
    }

    /// Whether fewer than `n` of the contacts this table knows are closer to `key` than the
    /// local node: it is among the `n` nodes responsible for `key`, as far as it can tell.
    pub fn is_among_closest(&self, key: &NodeId, n: usize) -> bool {
        let mine = distance(&self.local, key);
        let closer = self.closest(key, n).iter().filter(|c| distance(&c.id(), key) < mine).count();
        closer < n
    }

    /// Records a failed request to `id` (a timeout, an error). The entry is dropped after
    /// [`TableConfig::max_failures`] consecutive failures, or at once if it was being probed;
    /// a pending contact then takes its place. Returns the promoted contact. A sibling that is
    /// no bucket entry leaves the sibling list at its first failure.
    pub fn failed(&mut self, id: &NodeId, now: Instant) -> Option<Contact> {
        let b = bucket_index(&self.local, id)?;
        let Some(i) = self.buckets[b].entries.iter().position(|e| e.contact.id() == *id) else {
            self.siblings.retain(|c| c.id() != *id);
            return None;
        };
        let probed = self.buckets[b].probing == Some(*id);
        let e = &mut self.buckets[b].entries[i];
        e.failures = e.failures.saturating_add(1);
        if probed || e.failures >= self.config.max_failures {
            self.siblings.retain(|c| c.id() != *id);
            self.remove_at(b, i);
            self.buckets[b].probing = None;
            return self.promote(b, now);
        }
        None
    }

    /// A probe of `id` was given up without an answer either way: the bucket may probe again.
    pub fn probe_abandoned(&mut self, id: &NodeId) {
        if let Some(b) = bucket_index(&self.local, id) {
            if self.buckets[b].probing == Some(*id) {
                self.buckets[b].probing = None;
            }
        }
    }

    /// Removes `id` at once (it misbehaved); a pending contact takes its place.
    pub fn remove(&mut self, id: &NodeId, now: Instant) -> bool {
        let Some(b) = bucket_index(&self.local, id) else { return false };
        self.siblings.retain(|c| c.id() != *id);
        self.buckets[b].pending.retain(|p| p.contact.id() != *id);
        let Some(i) = self.buckets[b].entries.iter().position(|e| e.contact.id() == *id) else {
            return false;
        };
        self.remove_at(b, i);
        if self.buckets[b].probing == Some(*id) {
            self.buckets[b].probing = None;
        }
        self.promote(b, now);
        true
    }

    fn promote(&mut self, b: usize, now: Instant) -> Option<Contact> {
        let timeout = self.config.pending_timeout;
        self.buckets[b].pending.retain(|p| now.saturating_duration_since(p.since) < timeout);
        while !self.buckets[b].pending.is_empty() {
            let p = self.buckets[b].pending.remove(0);
            if self.group_ok(b, &p.contact).is_ok() {
                self.push_entry(b, p.contact.clone(), now);
                return Some(p.contact);
            }
        }
        None
    }

    /// Up to `n` contacts closest to `target`, closest first: bucket entries and siblings.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<Contact> {
        let entries = self.buckets.iter().flat_map(|b| b.entries.iter()).map(|e| &e.contact);
        let not_in_buckets = |c: &&Contact| self.entry(&c.id()).is_none();
        let siblings = self.siblings.iter().filter(not_in_buckets);
        let mut all: Vec<(crate::key::Distance, &Contact)> =
            entries.chain(siblings).map(|c| (distance(&c.id(), target), c)).collect();
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
            all.truncate(n);
        }
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().take(n).map(|(_, c)| c.clone()).collect()
    }

    /// Buckets due for a refresh, farthest first: every bucket from the farthest (255) down
    /// to the closest non-empty one whose last refresh is older than the interval.
    pub fn buckets_to_refresh(&self, now: Instant) -> Vec<usize> {
        let Some(lowest) = self.buckets.iter().position(|b| !b.entries.is_empty()) else {
            return Vec::new();
        };
        (lowest..256)
            .rev()
            .filter(|&i| {
                now.saturating_duration_since(self.buckets[i].last_refresh)
                    >= self.config.refresh_interval
            })
            .collect()
    }

    /// The earliest time a bucket falls due for refresh.
    pub fn next_refresh(&self) -> Option<Instant> {
        let lowest = self.buckets.iter().position(|b| !b.entries.is_empty())?;
        self.buckets[lowest..].iter().map(|b| b.last_refresh + self.config.refresh_interval).min()
    }

    /// Marks the bucket `target` falls in as refreshed (a lookup for it started).
    pub fn mark_refreshed(&mut self, target: &NodeId, now: Instant) {
        if let Some(b) = bucket_index(&self.local, target) {
            self.buckets[b].last_refresh = now;
        }
    }

    /// Every entry, bucket by bucket (for persistence and tests).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::random_id_in_bucket;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A contact whose ID falls in `bucket` of `local`. Contacts are built from a public key,
    /// so the search tries keys until one lands in the bucket (cheap for far buckets).
    fn contact_in(local: &NodeId, bucket: usize, addr: &str, seed: &mut u64) -> Contact {
        loop {
            *seed += 1;
            let mut pk = [0u8; 32];
            pk[..8].copy_from_slice(&seed.to_le_bytes());
            let c = Contact::new(pk, 0, addr).unwrap();
            if bucket_index(local, &c.id()) == Some(bucket) {
                return c;
            }
        }
    }

    fn cfg() -> TableConfig {
        TableConfig { k: 4, pending_slots: 2, max_per_table_group: 100, ..TableConfig::default() }
    }

    fn t0() -> Instant {
        #[allow(clippy::disallowed_methods)]
        Instant::now()
    }

    #[test]
    fn insert_update_and_self() {
        let now = t0();
        let local = NodeId([0; 32]);
        let mut t = RoutingTable::new(local, cfg(), now);
        let mut seed = 0;
        let a = contact_in(&local, 255, "tcp/1.0.0.1:1", &mut seed);
        let b = contact_in(&local, 255, "tcp/2.0.0.1:1", &mut seed);
        assert_eq!(t.insert(a.clone(), now), InsertOutcome::Inserted);
        assert_eq!(t.insert(b.clone(), now), InsertOutcome::Inserted);
        assert_eq!(t.bucket(255)[0].contact, a);
        assert_eq!(t.insert(a.clone(), now), InsertOutcome::Updated);
        assert_eq!(t.bucket(255)[1].contact, a, "a moved to the most-recent end");
        assert_eq!(t.len(), 2);
        assert!(t.contains(&a.id()));
        let me = Contact::new([0; 32], 0, "x").unwrap();
        let mut t2 = RoutingTable::new(me.id(), cfg(), now);
        assert_eq!(t2.insert(me, now), InsertOutcome::Rejected(Rejection::SelfId));
    }

    #[test]
    fn pending_probe_replace_and_keep() {
        let now = t0();
        let local = NodeId([0; 32]);
        let mut t = RoutingTable::new(local, cfg(), now);
        let mut seed = 0;
        let full: Vec<Contact> = (0..4)
            .map(|i| contact_in(&local, 255, &format!("tcp/{i}.0.0.1:1"), &mut seed))
            .collect();
        for c in &full {
            assert_eq!(t.insert(c.clone(), now), InsertOutcome::Inserted);
        }
        assert_eq!(t.next_probe(now), None, "no pending, no probe");
        let p1 = contact_in(&local, 255, "tcp/9.0.0.1:1", &mut seed);
        let p2 = contact_in(&local, 255, "tcp/9.1.0.1:1", &mut seed);
        let p3 = contact_in(&local, 255, "tcp/9.2.0.1:1", &mut seed);
        assert_eq!(t.insert(p1.clone(), now), InsertOutcome::Pending);
        assert_eq!(t.insert(p2.clone(), now), InsertOutcome::Pending);
        assert_eq!(t.insert(p3, now), InsertOutcome::Rejected(Rejection::PendingFull));
        assert_eq!(t.pending_len(), 2);
        // The least recently seen entry is probed, once; a probe given up may start again.
        assert_eq!(t.next_probe(now), Some(full[0].clone()));
        assert_eq!(t.next_probe(now), None);
        t.probe_abandoned(&full[0].id());
        assert_eq!(t.next_probe(now), Some(full[0].clone()));
        // It answers: it stays, the oldest pending is dropped.
        assert_eq!(t.insert(full[0].clone(), now), InsertOutcome::Updated);
        assert_eq!(t.pending_len(), 1);
        // The next probe targets the new least recently seen entry; it fails: p2 replaces it.
        assert_eq!(t.next_probe(now), Some(full[1].clone()));
        assert_eq!(t.failed(&full[1].id(), now), Some(p2.clone()));
        assert!(t.contains(&p2.id()));
        assert!(!t.contains(&full[1].id()));
        assert_eq!(t.len(), 4);
        assert!(!t.contains(&p1.id()));
    }

    #[test]
    fn failures_and_removal() {
        let now = t0();
        let local = NodeId([0; 32]);
        let mut t = RoutingTable::new(local, cfg(), now);
        let mut seed = 0;
        let a = contact_in(&local, 254, "tcp/1.0.0.1:1", &mut seed);
        t.insert(a.clone(), now);
        assert_eq!(t.failed(&a.id(), now), None);
        assert!(t.contains(&a.id()));
        assert_eq!(t.entry(&a.id()).unwrap().failures, 1);
        t.failed(&a.id(), now);
        assert!(!t.contains(&a.id()), "dropped after max_failures");
        t.insert(a.clone(), now);
        assert_eq!(t.entry(&a.id()).unwrap().failures, 0);
        assert!(t.remove(&a.id(), now));
        assert!(!t.remove(&a.id(), now));
        assert!(t.is_empty());
    }

    #[test]
    fn pending_entries_expire() {
        let now = t0();
        let local = NodeId([0; 32]);
        let mut t = RoutingTable::new(local, cfg(), now);
        let mut seed = 0;
        for i in 0..4 {
            t.insert(contact_in(&local, 255, &format!("tcp/{i}.0.0.1:1"), &mut seed), now);
        }
        t.insert(contact_in(&local, 255, "tcp/9.0.0.1:1", &mut seed), now);
        assert_eq!(t.pending_len(), 1);
        let later = now + Duration::from_secs(61);
        assert_eq!(t.next_probe(later), None);
        assert_eq!(t.pending_len(), 0);
    }

    #[test]
    fn prefix_limits() {
        let now = t0();
        let local = NodeId([0; 32]);
        let config = TableConfig { k: 20, max_per_table_group: 3, ..TableConfig::default() };
        let mut t = RoutingTable::new(local, config, now);
        let mut seed = 0;
        let c1 = contact_in(&local, 255, "tcp/10.1.1.1:1", &mut seed);
        let c2 = contact_in(&local, 255, "tcp/10.1.1.2:1", &mut seed);
        let c3 = contact_in(&local, 255, "tcp/10.1.1.3:1", &mut seed);
        assert_eq!(t.insert(c1, now), InsertOutcome::Inserted);
        assert_eq!(t.insert(c2, now), InsertOutcome::Inserted);
        assert_eq!(t.insert(c3, now), InsertOutcome::Rejected(Rejection::BucketGroupFull));
        // Same /24 in another bucket is fine, until the /16 cap for the table.
        let c4 = contact_in(&local, 254, "tcp/10.1.1.4:1", &mut seed);
        assert_eq!(t.insert(c4, now), InsertOutcome::Inserted);
        let c5 = contact_in(&local, 253, "tcp/10.1.2.1:1", &mut seed);
        assert_eq!(t.insert(c5, now), InsertOutcome::Rejected(Rejection::TableGroupFull));
        let v6a = contact_in(&local, 255, "tcp/[2001:db8:1::1]:1", &mut seed);
        let v6b = contact_in(&local, 255, "tcp/[2001:db8:1::2]:1", &mut seed);
        let v6c = contact_in(&local, 255, "tcp/[2001:db8:1:ffff::3]:1", &mut seed);
        assert_eq!(t.insert(v6a, now), InsertOutcome::Inserted);
        assert_eq!(t.insert(v6b, now), InsertOutcome::Inserted);
        assert_eq!(t.insert(v6c, now), InsertOutcome::Rejected(Rejection::BucketGroupFull));
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn flood_stays_bounded() {
        let now = t0();
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let local = NodeId([0x55; 32]);
        let mut t = RoutingTable::new(local, TableConfig::default(), now);
        for i in 0..20_000u32 {
            let mut pk = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rng, &mut pk);
            let addr = format!("tcp/{}.{}.{}.1:1", i % 251, (i / 251) % 251, i % 7);
            t.insert(Contact::new(pk, 0, addr).unwrap(), now);
        }
        assert!(t.len() <= 256 * 20);
        assert!(t.pending_len() <= 256 * 3);
        // Far buckets are full; closest(n) returns sorted results.
        assert_eq!(t.bucket(255).len(), 20);
        let target = random_id_in_bucket(&local, 200, &mut rng);
        let close = t.closest(&target, 20);
        assert_eq!(close.len(), 20);
        for w in close.windows(2) {
            assert!(distance(&w[0].id(), &target) <= distance(&w[1].id(), &target));
        }
        let all = t.closest(&target, 100_000);
        let extra = t.siblings().iter().filter(|c| !t.contains(&c.id())).count();
        assert_eq!(all.len(), t.len() + extra);
        assert!(t.siblings().len() <= TableConfig::default().siblings);
    }

    #[test]
    fn the_sibling_list_knows_the_closest_nodes_that_full_buckets_turn_away() {
        let now = t0();
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let local = NodeId([0x33; 32]);
        // Small buckets, so the neighbourhood overflows them.
        let config = TableConfig { k: 2, pending_slots: 0, siblings: 12, ..TableConfig::default() };
        let mut t = RoutingTable::new(local, config, now);
        let mut all = Vec::new();
        for i in 0..3000u32 {
            let mut pk = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rng, &mut pk);
            // Every contact in a /24 (and /16) of its own.
            let c = Contact::new(pk, 0, format!("tcp/{}.{}.7.1:1", i / 250 + 1, i % 250)).unwrap();
            t.insert(c.clone(), now);
            all.push(c);
        }
        all.sort_by_key(|c| distance(&c.id(), &local));
        let want: Vec<NodeId> = all.iter().take(12).map(Contact::id).collect();
        let got: Vec<NodeId> = t.siblings().iter().map(Contact::id).collect();
        assert_eq!(got, want, "the 12 closest, closest first");
        // The buckets alone miss some of them; closest() does not.
        assert!(want.iter().any(|id| !t.contains(id)), "a bucket turned one away");
        let close: Vec<NodeId> = t.closest(&local, 12).iter().map(Contact::id).collect();
        assert_eq!(close, want);
        // Responsible for our own neighbourhood, not for a key far from us.
        assert!(t.is_among_closest(&local, 4));
        let far = NodeId([!0x33; 32]);
        assert!(!t.is_among_closest(&far, 4));
        // A failed or removed sibling leaves the list.
        let gone = want[0];
        t.remove(&gone, now);
        assert!(!t.siblings().iter().any(|c| c.id() == gone));
        let only_sibling = *want.iter().find(|id| !t.contains(id)).unwrap();
        t.failed(&only_sibling, now);
        assert!(!t.siblings().iter().any(|c| c.id() == only_sibling));
        // One /24 gets at most its share of places.
        let mut crowd =
            RoutingTable::new(local, TableConfig { siblings: 12, ..TableConfig::default() }, now);
        for _ in 0..50 {
            let mut pk = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rng, &mut pk);
            crowd.insert(Contact::new(pk, 0, "tcp/203.0.113.9:1").unwrap(), now);
        }
        assert_eq!(crowd.siblings().len(), TableConfig::default().max_per_bucket_group);
    }

    #[test]
    fn refresh_schedule() {
        let now = t0();
        let local = NodeId([0; 32]);
        let mut t = RoutingTable::new(local, cfg(), now);
        assert!(t.buckets_to_refresh(now + Duration::from_secs(7200)).is_empty());
        assert_eq!(t.next_refresh(), None);
        let mut seed = 0;
        t.insert(contact_in(&local, 250, "tcp/1.0.0.1:1", &mut seed), now);
        assert!(t.buckets_to_refresh(now).is_empty());
        let later = now + Duration::from_secs(3600);
        assert_eq!(t.buckets_to_refresh(later), (250..256).rev().collect::<Vec<_>>());
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        t.mark_refreshed(&random_id_in_bucket(&local, 255, &mut rng), later);
        assert_eq!(t.buckets_to_refresh(later), (250..255).rev().collect::<Vec<_>>());
        assert_eq!(t.next_refresh(), Some(later));
    }
}
