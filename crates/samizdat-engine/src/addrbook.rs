//! The address book: a bounded, bucketed table of peer addresses, sampled at random.
//!
//! Modelled on Bitcoin Core's `addrman`. Addresses live in two fixed-size tables of
//! buckets × slots: **new** (addresses we have heard of) and **tried** (addresses we connected
//! to and authenticated, see [`AddrBook::mark_good`]). Nothing a peer sends can grow the book
//! beyond `(new_buckets + tried_buckets) × bucket_size` entries.
//!
//! # How it resists eclipse attacks
//!
//! An attacker who wants every dial of a node to land on its own hosts has to fill the book.
//! The book makes that expensive:
//!
//! - **Placement is keyed.** Which bucket and slot an address gets is a BLAKE3 keyed hash whose
//!   key is secret per node ([`AddrBook::new`]), so an attacker cannot compute addresses that
//!   land on the slots of honest entries, and every node places the same address elsewhere.
//! - **Placement is grouped.** A "new" address goes into one of only
//!   [`AddrBookConfig::new_buckets_per_source_group`] buckets chosen by the hash of (address
//!   group, source group); a "tried" address into one of
//!   [`AddrBookConfig::tried_buckets_per_group`] buckets chosen by its own group. An address
//!   group is an IPv4 /16, an IPv6 /32, or (for `mem/…` and other opaque addresses) the address
//!   itself. One source, or one /16 of hosts, therefore reaches only a few buckets however many
//!   addresses it sends.
//! - **Quotas.** One source group may own at most [`AddrBookConfig::max_per_source_group`]
//!   entries of the new table at a time.
//! - **No eviction of useful entries.** When a slot is taken, a newcomer replaces the occupant
//!   only if the occupant is "terrible" (never connected after several tries, many failures,
//!   or not heard of for [`AddrBookConfig::horizon`]); otherwise the newcomer is dropped.
//!   Addresses the user gave ([`AddrBook::add_trusted`]) are never evicted by peer input.
//! - **Random choice.** [`AddrBook::select`] picks the table (tried or new) at random, then a
//!   random non-empty *bucket*, then a random entry in it, so an attacker confined to a few
//!   buckets is chosen about as often as its share of buckets, not of addresses.
//!   Lexicographic order plays no part anywhere. (Nothing in the book is ever sent to peers:
//!   peer exchange passes on signed records, see `pex.rs`.)
//! - **Pinned entries.** Addresses learnt from a signed peer record ([`AddrBook::add_pinned`])
//!   carry the identity that signed them and the peer that passed the record on
//!   ([`AddrBook::pin`]): the caller dials them pinned (a session with another key is refused)
//!   and can hold the teller to account. A later record never changes an entry's pin, so a
//!   key that signs someone else's address cannot take over that address's entry.
//! - **Admission rules.** Peer-supplied addresses must be literal `IP:PORT` (host names are
//!   never accepted from peers: resolving `tcp/<tracking-id>.example:1` would make our resolver
//!   report the fetch), port 0 and special-use ranges (loopback, private, link-local, CGNAT,
//!   multicast, documentation, ULA, …) are refused unless [`AddrBookConfig::allow_local`] is
//!   set, and only transports the caller lists are accepted. [`Rejected`] says why.
//!
//! The book is sans-IO: time comes in as `now` arguments and randomness from the caller's RNG.

use rand_core::RngCore;
use samizdat_identity::NodeId;
use samizdat_wire::PeerAddr;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

/// A dial attempt younger than this makes an entry unlikely to be selected again, and never
/// terrible.
const RECENT_ATTEMPT: Duration = Duration::from_secs(600);
/// An entry tried less than this long ago is never considered terrible.
const GRACE: Duration = Duration::from_secs(60);
/// Most rounds [`AddrBook::select`] spends before it settles for the last candidate.
const MAX_SELECT_ROUNDS: usize = 256;

/// Tunables of an [`AddrBook`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrBookConfig {
    /// Buckets of the "new" table (addresses heard of).
    pub new_buckets: usize,
    /// Buckets of the "tried" table (addresses connected to and authenticated).
    pub tried_buckets: usize,
    /// Slots per bucket, in both tables.
    pub bucket_size: usize,
    /// How many new buckets the addresses from one source group can reach.
    pub new_buckets_per_source_group: usize,
    /// How many tried buckets the addresses of one group can reach.
    pub tried_buckets_per_group: usize,
    /// Most entries of the new table that one source group may own at a time.
    pub max_per_source_group: usize,
    /// Most addresses the user gave ([`AddrBook::add_trusted`]) kept at a time.
    pub max_trusted: usize,
    /// Accept special-use addresses (loopback, private, link-local, …) and `mem/…` from peers:
    /// for tests, simulations and local networks only.
    pub allow_local: bool,
    /// Accept `mem/…` addresses from peers (implied by `allow_local`).
    pub allow_mem: bool,
    /// Transport names accepted from peers, such as `tcp`.
    pub transports: Vec<String>,
    /// An entry not heard of for this long is terrible (may be evicted, is not shared).
    pub horizon: Duration,
    /// Dial attempts after which a never-connected entry is terrible.
    pub max_retries: u32,
    /// Failures since the last success after which an entry is terrible.
    pub max_failures: u32,
}

impl Default for AddrBookConfig {
    fn default() -> Self {
        AddrBookConfig {
            new_buckets: 64,
            tried_buckets: 16,
            bucket_size: 32,
            new_buckets_per_source_group: 8,
            tried_buckets_per_group: 4,
            max_per_source_group: 64,
            max_trusted: 64,
            allow_local: false,
            allow_mem: false,
            transports: ["tcp", "https", "obfs4", "veil", "meek"].map(str::to_owned).to_vec(),
            horizon: Duration::from_secs(30 * 24 * 3600),
            max_retries: 3,
            max_failures: 10,
        }
    }
}

/// Why an address was not added to the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// The transport is not one this node accepts from peers.
    #[error("unknown transport")]
    UnknownTransport,
    /// The address is not in the transport's `IP:PORT` form.
    #[error("address is not of the form IP:PORT")]
    BadShape,
    /// The address names a host instead of an IP literal; peer-supplied names are never
    /// resolved.
    #[error("host names are not accepted from peers")]
    HostName,
    /// Port 0 cannot be dialled.
    #[error("port 0 is not dialable")]
    PortZero,
    /// The IP is in a special-use range (loopback, private, link-local, documentation, …) and
    /// the book is not configured for a local network.
    #[error("special-use address range")]
    SpecialUse,
    /// `mem/…` addresses are accepted only with `allow_mem` or `allow_local`.
    #[error("in-memory addresses are not accepted")]
    MemNotAllowed,
    /// The source group already owns its quota of new entries.
    #[error("source group quota reached")]
    SourceQuota,
    /// The address's slot holds an entry that is still useful.
    #[error("slot taken by a useful entry")]
    SlotTaken,
    /// The book already holds as many user-given addresses as it keeps.
    #[error("too many user-given addresses")]
    TrustedFull,
}

/// What [`AddrBook::add`] did with an acceptable address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// It is a new entry of the book.
    Inserted,
    /// The book already knew it; its last-seen time was refreshed.
    Known,
}

/// The group an address belongs to for placement and quotas.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Group {
    /// An IPv4 /16.
    V4([u8; 2]),
    /// An IPv6 /32.
    V6([u8; 4]),
    /// An opaque address or host name: its own group.
    Name(String),
    /// The user (source of [`AddrBook::add_trusted`] entries).
    Local,
}

impl Group {
    fn of_ip(ip: IpAddr) -> Group {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Group::V4([o[0], o[1]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Group::V6([o[0], o[1], o[2], o[3]])
            }
        }
    }

    fn feed(&self, h: &mut blake3::Hasher) {
        match self {
            Group::V4(b) => h.update(&[4]).update(b),
            Group::V6(b) => h.update(&[6]).update(b),
            Group::Name(s) => {
                h.update(&[0]).update(&(s.len() as u64).to_le_bytes()).update(s.as_bytes())
            }
            Group::Local => h.update(&[255]),
        };
    }
}

/// Which table an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    New,
    Tried,
}

/// One remembered address.
#[derive(Clone)]
struct Entry {
    addr: PeerAddr,
    group: Group,
    source: Group,
    trusted: bool,
    last_seen: Instant,
    last_try: Option<Instant>,
    last_success: Option<Instant>,
    /// Dial attempts since the last success.
    attempts: u32,
    /// Failures since the last success.
    failures: u32,
    /// The identity a dial must authenticate as, and who told us (see [`AddrBook::pin`]).
    pin: Option<Pin>,
}

/// Who an address belongs to, as a signed peer record said, and who passed the record on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The identity that signed the address (the session must authenticate as it).
    pub node: NodeId,
    /// The peer that sent the record (`None` when the node itself said so, e.g. in its
    /// `Hello`).
    pub teller: Option<NodeId>,
    /// Whether the teller vouched for this address (it reached the record's node at the
    /// record's first address itself): only then, and only for the first dial, does it
    /// answer for what a dial finds.
    pub vouched: bool,
}

impl Entry {
    fn is_terrible(&self, now: Instant, cfg: &AddrBookConfig) -> bool {
        if self.last_try.is_some_and(|t| now.saturating_duration_since(t) < GRACE) {
            return false;
        }
        now.saturating_duration_since(self.last_seen) > cfg.horizon || self.is_hopeless(cfg)
    }

    /// The time-independent part of [`Entry::is_terrible`].
    fn is_hopeless(&self, cfg: &AddrBookConfig) -> bool {
        (self.last_success.is_none() && self.attempts >= cfg.max_retries)
            || self.failures >= cfg.max_failures
    }

    /// Relative chance of being selected: recent attempts and repeated ones lower it.
    fn chance(&self, now: Instant) -> f64 {
        let mut c = 1.0;
        if self.last_try.is_some_and(|t| now.saturating_duration_since(t) < RECENT_ATTEMPT) {
            c *= 0.01;
        }
        c * 0.66f64.powi(self.attempts.min(8) as i32)
    }
}

/// One table: `buckets × size` slots.
struct Table {
    size: usize,
    slots: Vec<Option<Entry>>,
    per_bucket: Vec<usize>,
    len: usize,
}

impl Table {
    fn new(buckets: usize, size: usize) -> Table {
        Table { size, slots: vec![None; buckets * size], per_bucket: vec![0; buckets], len: 0 }
    }

    fn put(&mut self, pos: usize, e: Entry) {
        debug_assert!(self.slots[pos].is_none());
        self.slots[pos] = Some(e);
        self.per_bucket[pos / self.size] += 1;
        self.len += 1;
    }

    fn take(&mut self, pos: usize) -> Option<Entry> {
        let e = self.slots.get_mut(pos)?.take()?;
        self.per_bucket[pos / self.size] -= 1;
        self.len -= 1;
        Some(e)
    }

    /// A random entry: a random non-empty bucket, then a random entry in it.
    fn random(&self, rng: &mut impl RngCore) -> Option<&Entry> {
        let nonempty: Vec<usize> =
            (0..self.per_bucket.len()).filter(|&b| self.per_bucket[b] > 0).collect();
        let bucket = *nonempty.get(below(rng, nonempty.len()))?;
        let k = below(rng, self.per_bucket[bucket]);
        self.slots[bucket * self.size..(bucket + 1) * self.size].iter().flatten().nth(k)
    }
}

/// A bounded, bucketed address book; see the [module documentation](self).
pub struct AddrBook {
    config: AddrBookConfig,
    key: [u8; 32],
    new: Table,
    tried: Table,
    index: HashMap<PeerAddr, (Which, usize)>,
    /// New-table entries owned per source group (only groups with entries are present).
    per_source: HashMap<Group, usize>,
    trusted: usize,
}

impl fmt::Debug for AddrBook {
    // Neither the key nor any address is printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddrBook")
            .field("new", &self.new.len)
            .field("tried", &self.tried.len)
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl AddrBook {
    /// An empty book. `key` is the node's secret placement key: choose it at random and keep it
    /// (a node that reveals it lets an attacker aim at its slots). Zero sizes in `config` are
    /// raised to 1.
    ///
    /// ```
    /// use samizdat_engine::addrbook::{AddrBook, AddrBookConfig};
    /// let book = AddrBook::new(AddrBookConfig::default(), [7; 32]);
    /// assert!(book.is_empty());
    /// ```
    pub fn new(mut config: AddrBookConfig, key: [u8; 32]) -> AddrBook {
        for n in [
            &mut config.new_buckets,
            &mut config.tried_buckets,
            &mut config.bucket_size,
            &mut config.new_buckets_per_source_group,
            &mut config.tried_buckets_per_group,
        ] {
            *n = (*n).max(1);
        }
        AddrBook {
            new: Table::new(config.new_buckets, config.bucket_size),
            tried: Table::new(config.tried_buckets, config.bucket_size),
            config,
            key,
            index: HashMap::new(),
            per_source: HashMap::new(),
            trusted: 0,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &AddrBookConfig {
        &self.config
    }

    /// Entries in both tables.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when the book holds no address.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Entries in the "new" table.
    pub fn len_new(&self) -> usize {
        self.new.len
    }

    /// Entries in the "tried" table.
    pub fn len_tried(&self) -> usize {
        self.tried.len
    }

    /// Most entries the book can ever hold.
    pub fn capacity(&self) -> usize {
        self.new.slots.len() + self.tried.slots.len()
    }

    /// True when the book holds `addr` (in any spelling of the same IP and port).
    pub fn contains(&self, addr: &PeerAddr) -> bool {
        self.index.contains_key(&lenient_canonical(addr))
    }

    /// Checks a peer-supplied address against the admission rules without adding it; returns
    /// its canonical spelling.
    pub fn check(&self, addr: &PeerAddr) -> Result<PeerAddr, Rejected> {
        self.admit(addr).map(|(a, _)| a)
    }

    /// Adds an address a peer told us about. `source` is the address of the peer that sent it
    /// (its connection's remote address; it is grouped, not checked).
    pub fn add(
        &mut self,
        addr: &PeerAddr,
        source: &PeerAddr,
        now: Instant,
    ) -> Result<Added, Rejected> {
        self.add_with(addr, source, None, now)
    }

    /// Like [`AddrBook::add`], for an address from a verified signed peer record: the entry is
    /// pinned to `pin` (unless the book already knew the address: its pin, or lack of one,
    /// stays).
    pub fn add_pinned(
        &mut self,
        addr: &PeerAddr,
        source: &PeerAddr,
        pin: Pin,
        now: Instant,
    ) -> Result<Added, Rejected> {
        self.add_with(addr, source, Some(pin), now)
    }

    /// The pin of a known address, if it came from a signed record.
    pub fn pin(&self, addr: &PeerAddr) -> Option<Pin> {
        let &(which, pos) = self.index.get(&lenient_canonical(addr))?;
        let table = match which {
            Which::New => &self.new,
            Which::Tried => &self.tried,
        };
        table.slots.get(pos)?.as_ref()?.pin
    }

    /// Replaces the pin of a known address (after a session there authenticated as someone
    /// else: the address is theirs). Returns false when the book does not know it.
    pub fn repin(&mut self, addr: &PeerAddr, pin: Pin) -> bool {
        self.update(addr, |e| e.pin = Some(pin))
    }

    /// Withdraws the teller's voucher from a known address's pin (it is judged once, on the
    /// first dial). Returns false when the book does not know it.
    pub fn unvouch(&mut self, addr: &PeerAddr) -> bool {
        self.update(addr, |e| {
            if let Some(p) = &mut e.pin {
                p.vouched = false;
            }
        })
    }

    fn add_with(
        &mut self,
        addr: &PeerAddr,
        source: &PeerAddr,
        pin: Option<Pin>,
        now: Instant,
    ) -> Result<Added, Rejected> {
        let (addr, group) = self.admit(addr)?;
        if let Some(added) = self.refresh(&addr, now) {
            return Ok(added);
        }
        let source = lenient_group(source);
        if self.per_source.get(&source).copied().unwrap_or(0) >= self.config.max_per_source_group {
            return Err(Rejected::SourceQuota);
        }
        let pos = self.new_pos(&addr, &group, &source);
        if let Some(old) = &self.new.slots[pos] {
            if old.trusted || !old.is_terrible(now, &self.config) {
                return Err(Rejected::SlotTaken);
            }
            self.evict(Which::New, pos);
        }
        let mut entry = Entry::fresh(addr, group, source, false, now);
        entry.pin = pin;
        self.place_new(pos, entry);
        Ok(Added::Inserted)
    }

    /// Adds every address of a batch from one source; returns how many became new entries.
    pub fn add_all<'a>(
        &mut self,
        addrs: impl IntoIterator<Item = &'a PeerAddr>,
        source: &PeerAddr,
        now: Instant,
    ) -> usize {
        addrs.into_iter().filter(|a| self.add(a, source, now) == Ok(Added::Inserted)).count()
    }

    /// Adds an address the user gave (`--peer`, a link's hint): no special-use check, host
    /// names and any transport allowed, never evicted by peer input. At most
    /// [`AddrBookConfig::max_trusted`] are kept.
    pub fn add_trusted(&mut self, addr: &PeerAddr, now: Instant) -> Result<Added, Rejected> {
        let addr = lenient_canonical(addr);
        let full = self.trusted >= self.config.max_trusted;
        if let Some((_, _, e)) = self.entry_mut(&addr) {
            if !e.trusted && full {
                return Err(Rejected::TrustedFull);
            }
            e.last_seen = e.last_seen.max(now);
            if !std::mem::replace(&mut e.trusted, true) {
                self.trusted += 1;
            }
            return Ok(Added::Known);
        }
        if full {
            return Err(Rejected::TrustedFull);
        }
        let group = lenient_group(&addr);
        let home = self.new_pos(&addr, &group, &Group::Local);
        let size = self.new.size;
        let bucket = home / size;
        // The first slot of the bucket, from the home slot on, that no user-given entry holds.
        let pos = (0..size)
            .map(|i| bucket * size + (home % size + i) % size)
            .find(|&p| self.new.slots[p].as_ref().is_none_or(|e| !e.trusted))
            .ok_or(Rejected::SlotTaken)?;
        if self.new.slots[pos].is_some() {
            self.evict(Which::New, pos);
        }
        self.place_new(pos, Entry::fresh(addr, group, Group::Local, true, now));
        self.trusted += 1;
        Ok(Added::Inserted)
    }

    /// Records that we connected to `addr` and authenticated the peer: the entry moves to the
    /// tried table (an entry it displaces there goes back to new). Returns false when the book
    /// does not know `addr`.
    pub fn mark_good(&mut self, addr: &PeerAddr, now: Instant) -> bool {
        let Some((which, pos, e)) = self.entry_mut(&lenient_canonical(addr)) else {
            return false;
        };
        e.last_seen = e.last_seen.max(now);
        e.last_try = Some(now);
        e.last_success = Some(now);
        e.attempts = 0;
        e.failures = 0;
        let Some(entry) = (which == Which::New).then(|| self.new.take(pos)).flatten() else {
            return true;
        };
        self.index.remove(&entry.addr);
        self.release_source(&entry.source);
        let tpos = self.tried_pos(&entry.addr, &entry.group);
        if let Some(old) = self.tried.take(tpos) {
            self.index.remove(&old.addr);
            self.demote(old, now);
        }
        self.index.insert(entry.addr.clone(), (Which::Tried, tpos));
        self.tried.put(tpos, entry);
        true
    }

    /// Records a dial attempt to `addr`. Returns false when the book does not know it.
    pub fn mark_attempt(&mut self, addr: &PeerAddr, now: Instant) -> bool {
        self.update(addr, |e| {
            e.last_try = Some(now);
            e.attempts = e.attempts.saturating_add(1);
        })
    }

    /// Records that a dial to `addr` failed (no connection, or authentication failed). Returns
    /// false when the book does not know it.
    pub fn mark_failed(&mut self, addr: &PeerAddr) -> bool {
        self.update(addr, |e| e.failures = e.failures.saturating_add(1))
    }

    /// Forgets `addr`. Returns false when the book did not know it.
    pub fn remove(&mut self, addr: &PeerAddr) -> bool {
        match self.index.get(&lenient_canonical(addr)) {
            Some(&(which, pos)) => {
                self.evict(which, pos);
                true
            }
            None => false,
        }
    }

    /// A random address to dial, or `None` when the book is empty. The table is tried or new
    /// with equal odds (when both hold entries), then a random non-empty bucket, then a random
    /// entry in it; entries dialled recently or often are less likely.
    pub fn select(&self, now: Instant, rng: &mut impl RngCore) -> Option<PeerAddr> {
        if self.is_empty() {
            return None;
        }
        let mut factor = 1.0;
        (1..=MAX_SELECT_ROUNDS).find_map(|round| {
            let use_tried = match (self.tried.len, self.new.len) {
                (0, _) => false,
                (_, 0) => true,
                _ => rng.next_u32() & 1 == 1,
            };
            let table = if use_tried { &self.tried } else { &self.new };
            let e = table.random(rng)?;
            // The factor grows until any entry is accepted (after about 45 rounds); the round
            // limit only makes the bound explicit.
            let accept = round == MAX_SELECT_ROUNDS || unit(rng) < e.chance(now) * factor;
            factor *= 1.2;
            accept.then(|| e.addr.clone())
        })
    }

    /// Up to `n` distinct addresses from repeated [`AddrBook::select`]s (a bounded number of
    /// rounds, so fewer may come back even when the book holds more).
    pub fn select_distinct(&self, now: Instant, rng: &mut impl RngCore, n: usize) -> Vec<PeerAddr> {
        let mut out: Vec<PeerAddr> = Vec::new();
        for _ in 0..n.saturating_mul(8).min(self.len().saturating_mul(8)) {
            if out.len() >= n {
                break;
            }
            if let Some(a) = self.select(now, rng).filter(|a| !out.contains(a)) {
                out.push(a);
            }
        }
        out
    }

    // --- internals ---

    /// Admission rules for peer-supplied addresses: the canonical address and its group.
    fn admit(&self, addr: &PeerAddr) -> Result<(PeerAddr, Group), Rejected> {
        let transport = addr.transport();
        if transport == "mem" {
            return if self.config.allow_mem || self.config.allow_local {
                // Stored as every lookup spells it (an IP-shaped name is canonicalised).
                let addr = lenient_canonical(addr);
                let group = Group::Name(addr.as_str().to_owned());
                Ok((addr, group))
            } else {
                Err(Rejected::MemNotAllowed)
            };
        }
        if !self.config.transports.iter().any(|t| t == transport) {
            return Err(Rejected::UnknownTransport);
        }
        let Some((host, port)) = split_host_port(addr.endpoint()) else {
            // Opaque addresses of a listed transport (not host:port shaped) are their own group;
            // plain TCP must be IP:PORT.
            return if transport == "tcp" {
                Err(Rejected::BadShape)
            } else {
                Ok((addr.clone(), Group::Name(addr.as_str().to_owned())))
            };
        };
        let ip = parse_ip(host)?;
        let port: u16 = port.parse().map_err(|_| Rejected::BadShape)?;
        if port == 0 {
            return Err(Rejected::PortZero);
        }
        let ip = canonical_ip(ip);
        if !self.config.allow_local && is_special(ip) {
            return Err(Rejected::SpecialUse);
        }
        let canonical = with_params(transport, SocketAddr::new(ip, port), addr);
        let canonical = PeerAddr::new(&canonical).map_err(|_| Rejected::BadShape)?;
        Ok((canonical, Group::of_ip(ip)))
    }

    /// If `addr` is known, refreshes it and returns [`Added::Known`].
    fn refresh(&mut self, addr: &PeerAddr, now: Instant) -> Option<Added> {
        let (_, _, e) = self.entry_mut(addr)?;
        e.last_seen = e.last_seen.max(now);
        Some(Added::Known)
    }

    fn update(&mut self, addr: &PeerAddr, f: impl FnOnce(&mut Entry)) -> bool {
        self.entry_mut(&lenient_canonical(addr)).map(|(_, _, e)| f(e)).is_some()
    }

    /// The entry of an address (already canonical) and which table holds it.
    fn entry_mut(&mut self, addr: &PeerAddr) -> Option<(Which, usize, &mut Entry)> {
        let &(which, pos) = self.index.get(addr)?;
        let table = match which {
            Which::New => &mut self.new,
            Which::Tried => &mut self.tried,
        };
        table.slots.get_mut(pos)?.as_mut().map(|e| (which, pos, e))
    }

    fn place_new(&mut self, pos: usize, e: Entry) {
        *self.per_source.entry(e.source.clone()).or_insert(0) += 1;
        self.index.insert(e.addr.clone(), (Which::New, pos));
        self.new.put(pos, e);
    }

    /// Removes the entry at a slot entirely.
    fn evict(&mut self, which: Which, pos: usize) {
        let e = match which {
            Which::New => self.new.take(pos),
            Which::Tried => self.tried.take(pos),
        };
        if let Some(e) = e {
            self.index.remove(&e.addr);
            if which == Which::New {
                self.release_source(&e.source);
            }
            if e.trusted {
                self.trusted -= 1;
            }
        }
    }

    /// A tried entry displaced by another goes back to new if its slot there is free (or holds
    /// a terrible peer entry) and its source still has quota; otherwise it is dropped.
    fn demote(&mut self, e: Entry, now: Instant) {
        let pos = self.new_pos(&e.addr, &e.group, &e.source);
        let free = match &self.new.slots[pos] {
            None => true,
            Some(old) => !old.trusted && (e.trusted || old.is_terrible(now, &self.config)),
        };
        let quota = e.trusted
            || self.per_source.get(&e.source).copied().unwrap_or(0)
                < self.config.max_per_source_group;
        if free && quota {
            self.evict(Which::New, pos);
            self.place_new(pos, e);
        } else if e.trusted {
            self.trusted -= 1;
        }
    }

    fn release_source(&mut self, source: &Group) {
        if let Some(n) = self.per_source.get_mut(source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(source);
            }
        }
    }

    fn hash(&self, f: impl FnOnce(&mut blake3::Hasher)) -> u64 {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        f(&mut h);
        let out = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&out.as_bytes()[..8]);
        u64::from_le_bytes(b)
    }

    /// Slot in the new table: bucket from (address group, source group), slot from the address.
    fn new_pos(&self, addr: &PeerAddr, group: &Group, source: &Group) -> usize {
        let cfg = &self.config;
        let h1 = self.hash(|h| {
            h.update(b"samizdat addrbook new 1");
            group.feed(h);
            source.feed(h);
        }) % cfg.new_buckets_per_source_group as u64;
        let bucket = self.hash(|h| {
            h.update(b"samizdat addrbook new 2");
            source.feed(h);
            h.update(&h1.to_le_bytes());
        }) % cfg.new_buckets as u64;
        self.slot_in(b"samizdat addrbook new slot", bucket, addr)
    }

    /// Slot in the tried table: bucket from the address group, slot from the address.
    fn tried_pos(&self, addr: &PeerAddr, group: &Group) -> usize {
        let cfg = &self.config;
        let h1 = self.hash(|h| {
            h.update(b"samizdat addrbook tried 1");
            h.update(addr.as_str().as_bytes());
        }) % cfg.tried_buckets_per_group as u64;
        let bucket = self.hash(|h| {
            h.update(b"samizdat addrbook tried 2");
            group.feed(h);
            h.update(&h1.to_le_bytes());
        }) % cfg.tried_buckets as u64;
        self.slot_in(b"samizdat addrbook tried slot", bucket, addr)
    }

    fn slot_in(&self, domain: &[u8], bucket: u64, addr: &PeerAddr) -> usize {
        let size = self.config.bucket_size as u64;
        let slot = self.hash(|h| {
            h.update(domain);
            h.update(&bucket.to_le_bytes());
            h.update(addr.as_str().as_bytes());
        }) % size;
        (bucket * size + slot) as usize
    }
}

impl Entry {
    fn fresh(addr: PeerAddr, group: Group, source: Group, trusted: bool, now: Instant) -> Entry {
        Entry {
            addr,
            group,
            source,
            trusted,
            last_seen: now,
            last_try: None,
            last_success: None,
            attempts: 0,
            failures: 0,
            pin: None,
        }
    }
}

/// A uniform integer below `n` (0 when `n` is 0).
fn below(rng: &mut impl RngCore, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// A uniform float in [0, 1).
fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Splits `host:port` (IPv6 hosts in brackets) when the part after the last colon is a port
/// number; `None` when the address is not host:port shaped.
fn split_host_port(a: &str) -> Option<(&str, &str)> {
    let (host, port) = a.rsplit_once(':')?;
    (!port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()))
        .then_some((host, port))
}

/// An IP literal: dotted IPv4 or bracketed IPv6. Anything else that looks like a name is
/// [`Rejected::HostName`].
fn parse_ip(host: &str) -> Result<IpAddr, Rejected> {
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(Rejected::BadShape)?;
        return inner.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| Rejected::BadShape);
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Ok(IpAddr::V4(v4));
    }
    if host.is_empty() || host.contains([':', '[', ']']) {
        return Err(Rejected::BadShape);
    }
    Err(Rejected::HostName)
}

/// IPv4-mapped IPv6 addresses become IPv4, so one host has one spelling and one group.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// True for addresses that are not publicly routable unicast.
fn is_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_special_v4(v4),
        IpAddr::V6(v6) => is_special_v6(v6),
    }
}

fn is_special_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    let in_net = |net: [u8; 4], bits: u32| {
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    o[0] == 0 // "this network", unspecified
        || o[0] == 10 // private
        || in_net([100, 64, 0, 0], 10) // CGNAT
        || o[0] == 127 // loopback
        || in_net([169, 254, 0, 0], 16) // link-local
        || in_net([172, 16, 0, 0], 12) // private
        || in_net([192, 0, 0, 0], 24) // IETF protocol assignments
        || in_net([192, 0, 2, 0], 24) // TEST-NET-1
        || in_net([192, 88, 99, 0], 24) // 6to4 relay anycast
        || in_net([192, 168, 0, 0], 16) // private
        || in_net([198, 18, 0, 0], 15) // benchmarking
        || in_net([198, 51, 100, 0], 24) // TEST-NET-2
        || in_net([203, 0, 113, 0], 24) // TEST-NET-3
        || o[0] >= 224 // multicast, reserved, broadcast
}

fn is_special_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // Only global unicast (2000::/3) is public; mapped IPv4 was handled by `canonical_ip`, and
    // everything else outside 2000::/3 (::, ::1, fc00::/7, fe80::/10, ff00::/8, NAT64, …) is
    // special.
    s[0] & 0xe000 != 0x2000
        || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 IETF protocol assignments
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[0] == 0x2002 // 6to4: embeds an IPv4 address
        || (s[0] == 0x3fff && s[1] < 0x1000) // 3fff::/20 documentation
}

/// `transport/ip:port`, then `addr`'s parameters (`?…`) as they were.
fn with_params(transport: &str, endpoint: SocketAddr, addr: &PeerAddr) -> String {
    match addr.params() {
        Some(p) => format!("{transport}/{endpoint}?{p}"),
        None => format!("{transport}/{endpoint}"),
    }
}

/// The canonical spelling of an IP-shaped address, without admission checks (for lookups and
/// user-given addresses); other addresses unchanged.
pub(crate) fn lenient_canonical(addr: &PeerAddr) -> PeerAddr {
    let ip_port = split_host_port(addr.endpoint())
        .and_then(|(h, p)| Some((parse_ip(h).ok()?, p.parse::<u16>().ok()?)));
    match ip_port {
        Some((ip, port)) => {
            let s = with_params(addr.transport(), SocketAddr::new(canonical_ip(ip), port), addr);
            PeerAddr::new(&s).unwrap_or_else(|_| addr.clone())
        }
        None => addr.clone(),
    }
}

/// The group of any address, without admission checks: IP group for IP literals, the host
/// name (lower case) for `host:port`, the whole address otherwise.
fn lenient_group(addr: &PeerAddr) -> Group {
    match split_host_port(addr.endpoint()) {
        Some((host, _)) => match parse_ip(host) {
            Ok(ip) => Group::of_ip(ip),
            Err(_) => Group::Name(host.to_ascii_lowercase()),
        },
        None => Group::Name(addr.as_str().to_owned()),
    }
}
