//! What each address (one transport to one peer) did when it was last used: how a node picks
//! which of a peer's transports to dial, and moves off one that a censor blocked.
//!
//! A peer reachable several ways (its links and invite lines carry every transport it
//! listens on) is dialled one address at a time, in this order: the address that last
//! worked, then those not seen failing lately in the order the peer gave them, then those
//! that failed (least recently first). A dial still not through after [`RACE_AFTER`] gets
//! the next address raced beside it, so a transport whose packets are silently dropped costs
//! seconds, not the dial timeout; a link that goes silent while it owes us data is dropped
//! (see `EngineConfig::silence_timeout`) and its address marked, so the next dial goes
//! elsewhere.

use samizdat_wire::PeerAddr;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Addresses remembered at most (the least recently used is forgotten first).
pub const MAX_TRACKED: usize = 1024;
/// How long a failure keeps an address behind the others.
pub const FAIL_MEMORY: Duration = Duration::from_secs(600);
/// How long a dial may take before the next address is tried beside it.
pub const RACE_AFTER: Duration = Duration::from_secs(3);

/// Why a link to an address failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkFailure {
    /// The connection was refused (a closed port, or a reset answering the connect).
    Refused,
    /// The connection was reset (an injected RST looks like this), or closed while it owed
    /// us data.
    Reset,
    /// The dial did not complete in time (packets dropped).
    Timeout,
    /// No route to the address.
    Unreachable,
    /// The transport refused the peer (a certificate that does not match the pin, a TLS
    /// alert, a server that would not open the tunnel).
    Refusal,
    /// An established link went silent while it owed us data.
    Silent,
    /// Anything else.
    Other,
}

impl LinkFailure {
    /// The failure an I/O error of a dial stands for.
    pub fn from_io(kind: std::io::ErrorKind) -> Self {
        use std::io::ErrorKind as K;
        match kind {
            K::ConnectionRefused => LinkFailure::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                LinkFailure::Reset
            }
            K::TimedOut | K::WouldBlock => LinkFailure::Timeout,
            K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
                LinkFailure::Unreachable
            }
            K::PermissionDenied | K::InvalidData => LinkFailure::Refusal,
            _ => LinkFailure::Other,
        }
    }

    /// The failure named `name` (as [`LinkFailure::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            LinkFailure::Refused,
            LinkFailure::Reset,
            LinkFailure::Timeout,
            LinkFailure::Unreachable,
            LinkFailure::Refusal,
            LinkFailure::Silent,
            LinkFailure::Other,
        ]
        .into_iter()
        .find(|f| f.as_str() == name)
    }

    /// A short name (`reset`, `timeout`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkFailure::Refused => "refused",
            LinkFailure::Reset => "reset",
            LinkFailure::Timeout => "timeout",
            LinkFailure::Unreachable => "unreachable",
            LinkFailure::Refusal => "refusal",
            LinkFailure::Silent => "silent",
            LinkFailure::Other => "other",
        }
    }
}

/// What one address did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// When a link through it last came up.
    pub last_ok: Option<Instant>,
    /// The last failure and when.
    pub last_fail: Option<(Instant, LinkFailure)>,
    /// Failures since it last worked.
    pub fails: u32,
}

impl Health {
    /// Whether it failed within [`FAIL_MEMORY`] and has not worked since.
    pub fn failing(&self, now: Instant) -> bool {
        match self.last_fail {
            Some((at, _)) => {
                now.saturating_duration_since(at) < FAIL_MEMORY
                    && self.last_ok.is_none_or(|ok| ok < at)
            }
            None => false,
        }
    }

    fn last_seen(&self) -> Option<Instant> {
        self.last_ok.max(self.last_fail.map(|f| f.0))
    }
}

/// What one address did, as kept across restarts: how long ago instead of when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SavedHealth {
    /// How long ago a link through it last came up.
    pub ok_ago: Option<Duration>,
    /// How long ago it last failed, and why.
    pub fail: Option<(Duration, LinkFailure)>,
    /// Failures since it last worked.
    pub fails: u32,
}

impl SavedHealth {
    /// The same record `elapsed` later (the time between saving it and now).
    pub fn aged(self, elapsed: Duration) -> Self {
        SavedHealth {
            ok_ago: self.ok_ago.map(|d| d.saturating_add(elapsed)),
            fail: self.fail.map(|(d, why)| (d.saturating_add(elapsed), why)),
            fails: self.fails,
        }
    }
}

/// The instant `age` before `now`, or (for an age the clock cannot name: a monotonic clock may
/// start at boot) an early instant every such age shares, so order is kept among the rest.
fn before(now: Instant, age: Duration) -> Instant {
    now.checked_sub(age).unwrap_or_else(|| {
        // The earliest instant found by halving from a year: the same for every such age.
        let mut back = Duration::from_secs(365 * 24 * 3600);
        loop {
            if let Some(t) = now.checked_sub(back) {
                return t;
            }
            if back.is_zero() {
                return now;
            }
            back /= 2;
        }
    })
}

/// The table of addresses and what they did.
#[derive(Debug, Default)]
pub struct HealthTable {
    entries: HashMap<PeerAddr, Health>,
}

impl HealthTable {
    fn entry(&mut self, addr: &PeerAddr) -> &mut Health {
        if !self.entries.contains_key(addr) && self.entries.len() >= MAX_TRACKED {
            let oldest = self.entries.iter().min_by_key(|(_, h)| h.last_seen()).map(|(a, _)| a);
            if let Some(oldest) = oldest.cloned() {
                self.entries.remove(&oldest);
            }
        }
        self.entries.entry(addr.clone()).or_default()
    }

    /// A link through `addr` came up.
    pub fn ok(&mut self, addr: &PeerAddr, now: Instant) {
        let h = self.entry(addr);
        h.last_ok = Some(now);
        h.fails = 0;
    }

    /// A link through `addr` failed.
    pub fn failed(&mut self, addr: &PeerAddr, now: Instant, why: LinkFailure) {
        let h = self.entry(addr);
        h.last_fail = Some((now, why));
        h.fails = h.fails.saturating_add(1);
    }

    /// What `addr` did, if anything is known.
    pub fn get(&self, addr: &PeerAddr) -> Option<Health> {
        self.entries.get(addr).copied()
    }

    /// Everything known, most recently seen first, as ages (to keep across restarts).
    pub fn export(&self, now: Instant) -> Vec<(PeerAddr, SavedHealth)> {
        let mut all: Vec<_> = self.entries.iter().collect();
        all.sort_by_key(|(a, h)| (std::cmp::Reverse(h.last_seen()), (*a).clone()));
        all.into_iter()
            .map(|(a, h)| {
                let ago = |t: Instant| now.saturating_duration_since(t);
                let saved = SavedHealth {
                    ok_ago: h.last_ok.map(ago),
                    fail: h.last_fail.map(|(t, why)| (ago(t), why)),
                    fails: h.fails,
                };
                (a.clone(), saved)
            })
            .collect()
    }

    /// Takes back what [`HealthTable::export`] gave (ages counted back from `now`); what is
    /// known already wins, and at most [`MAX_TRACKED`] addresses are kept.
    pub fn restore(&mut self, now: Instant, saved: Vec<(PeerAddr, SavedHealth)>) {
        for (addr, s) in saved {
            if self.entries.len() >= MAX_TRACKED {
                break;
            }
            // A failure the clock cannot place is older than anything it can, so long past
            // FAIL_MEMORY: it is forgotten rather than clamped into looking recent.
            let last_fail = s.fail.and_then(|(age, why)| Some((now.checked_sub(age)?, why)));
            self.entries.entry(addr).or_insert(Health {
                last_ok: s.ok_ago.map(|age| before(now, age)),
                last_fail,
                fails: s.fails,
            });
        }
    }

    /// Everything known, for display.
    pub fn all(&self) -> impl Iterator<Item = (&PeerAddr, &Health)> {
        self.entries.iter()
    }

    /// `candidates` in the order to dial them when transports rotate: every connection
    /// through the one used longest ago (never used first, in the peer's order), failing ones
    /// still last.
    pub fn rotated<'a>(&self, now: Instant, candidates: &[&'a PeerAddr]) -> Vec<&'a PeerAddr> {
        let mut order: Vec<(usize, &PeerAddr)> = candidates.iter().copied().enumerate().collect();
        order.sort_by_key(|(i, a)| {
            let h = self.get(a).unwrap_or_default();
            let failing = h.failing(now);
            let failed_at = if failing { h.last_fail.map(|f| f.0) } else { None };
            (failing, failed_at, h.last_ok, *i)
        });
        order.into_iter().map(|(_, a)| a).collect()
    }

    /// `candidates` (a peer's addresses in the order it gave them) in the order to dial them.
    pub fn ranked<'a>(&self, now: Instant, candidates: &[&'a PeerAddr]) -> Vec<&'a PeerAddr> {
        let mut order: Vec<(usize, &PeerAddr)> = candidates.iter().copied().enumerate().collect();
        order.sort_by_key(|(i, a)| {
            let h = self.get(a).unwrap_or_default();
            let failing = h.failing(now);
            // Working first, most recently working first; then the untried and the long
            // quiet in the peer's order; then the failing, least recently failed first.
            let worked = (!failing).then_some(h.last_ok).flatten();
            let failed_at = if failing { h.last_fail.map(|f| f.0) } else { None };
            (failing, worked.is_none(), std::cmp::Reverse(worked), failed_at, *i)
        });
        order.into_iter().map(|(_, a)| a).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::disallowed_methods)]
    use super::*;

    fn a(s: &str) -> PeerAddr {
        PeerAddr::new(s).unwrap()
    }

    #[test]
    fn addresses_are_ranked_by_what_they_did() {
        let t0 = Instant::now();
        let (https, tcp, other) =
            (a("https/10.0.0.1:443"), a("tcp/10.0.0.1:7070"), a("tcp/10.0.0.1:1"));
        let given = [&https, &tcp, &other];
        let mut t = HealthTable::default();
        // Nothing known: the peer's order.
        assert_eq!(t.ranked(t0, &given), [&https, &tcp, &other]);
        // The first is blocked: it goes last.
        t.failed(&https, t0, LinkFailure::Silent);
        assert_eq!(t.ranked(t0, &given), [&tcp, &other, &https]);
        // What worked comes first, the most recent first.
        t.ok(&other, t0 + Duration::from_secs(1));
        assert_eq!(t.ranked(t0, &given), [&other, &tcp, &https]);
        t.ok(&tcp, t0 + Duration::from_secs(2));
        assert_eq!(t.ranked(t0, &given), [&tcp, &other, &https]);
        // Two failing: the one that failed longest ago is tried first.
        t.failed(&tcp, t0 + Duration::from_secs(3), LinkFailure::Reset);
        t.failed(&other, t0 + Duration::from_secs(4), LinkFailure::Timeout);
        assert_eq!(t.ranked(t0, &given), [&https, &tcp, &other]);
        assert_eq!(t.get(&tcp).unwrap().fails, 1);
        // Failures are forgotten after a while; what worked before is first again.
        let later = t0 + FAIL_MEMORY + Duration::from_secs(5);
        assert!(!t.get(&https).unwrap().failing(later));
        assert_eq!(t.ranked(later, &given), [&tcp, &other, &https]);
    }

    #[test]
    fn rotation_takes_the_transport_used_longest_ago() {
        let t0 = Instant::now();
        let (https, tcp) = (a("https/10.0.0.1:443"), a("tcp/10.0.0.1:7070"));
        let given = [&https, &tcp];
        let mut t = HealthTable::default();
        assert_eq!(t.rotated(t0, &given), [&https, &tcp]);
        t.ok(&https, t0);
        assert_eq!(t.rotated(t0, &given), [&tcp, &https]);
        t.ok(&tcp, t0 + Duration::from_secs(1));
        assert_eq!(t.rotated(t0, &given), [&https, &tcp]);
        // A failing transport is not rotated back in while it fails.
        t.failed(&https, t0 + Duration::from_secs(2), LinkFailure::Reset);
        assert_eq!(t.rotated(t0 + Duration::from_secs(3), &given), [&tcp, &https]);
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut t = HealthTable::default();
        for i in 0..MAX_TRACKED + 10 {
            let addr = a(&format!("tcp/10.{}.{}.1:1", i / 256, i % 256));
            t.ok(&addr, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(t.all().count(), MAX_TRACKED);
        // The oldest went first.
        assert!(t.get(&a("tcp/10.0.0.1:1")).is_none());
        assert!(
            t.get(&a(&format!(
                "tcp/10.{}.{}.1:1",
                (MAX_TRACKED + 9) / 256,
                (MAX_TRACKED + 9) % 256
            )))
            .is_some()
        );
    }

    #[test]
    fn io_errors_name_their_failure() {
        use std::io::ErrorKind as K;
        let cases = [
            (K::ConnectionRefused, "refused"),
            (K::ConnectionReset, "reset"),
            (K::TimedOut, "timeout"),
            (K::NetworkUnreachable, "unreachable"),
            (K::PermissionDenied, "refusal"),
            (K::Other, "other"),
        ];
        for (kind, name) in cases {
            assert_eq!(LinkFailure::from_io(kind).as_str(), name);
        }
        assert_eq!(LinkFailure::Silent.as_str(), "silent");
    }

    #[test]
    fn what_worked_survives_export_and_restore_and_old_failures_fade() {
        let t0 = Instant::now() + Duration::from_secs(7200);
        let (https, tcp, dead) =
            (a("https/10.0.0.1:443"), a("tcp/10.0.0.1:7070"), a("tcp/10.0.0.1:1"));
        let mut table = HealthTable::default();
        table.failed(&https, t0, LinkFailure::Silent);
        table.ok(&tcp, t0 + Duration::from_secs(1));
        table.failed(&dead, t0 + Duration::from_secs(2), LinkFailure::Refused);
        let later = t0 + Duration::from_secs(10);
        let saved = table.export(later);
        assert_eq!(saved[0].0, dead, "most recently seen first");
        assert_eq!(saved[0].1.fail, Some((Duration::from_secs(8), LinkFailure::Refused)));
        assert_eq!(saved[1].1.ok_ago, Some(Duration::from_secs(9)));
        // A restarted node, a minute on: the same order, the same reasons.
        let restart = later + Duration::from_secs(60);
        let mut again = HealthTable::default();
        again.restore(restart, saved.clone());
        let order = again.ranked(restart, &[&https, &dead, &tcp]);
        assert_eq!(order, [&tcp, &https, &dead]);
        assert_eq!(again.get(&https).unwrap().last_fail.unwrap().1, LinkFailure::Silent);
        // What the new run learnt wins over what was saved.
        let mut live = HealthTable::default();
        live.ok(&https, restart);
        live.restore(restart, saved.clone());
        assert_eq!(live.get(&https).unwrap().fails, 0);
        // Long after, the failures no longer hold their addresses back.
        let mut old = HealthTable::default();
        let much_later = restart + FAIL_MEMORY;
        old.restore(much_later, saved.into_iter().map(|(a, s)| (a, s.aged(FAIL_MEMORY))).collect());
        assert!(!old.get(&https).unwrap().failing(much_later));
        // Ages older than the clock can name are clamped, not a panic.
        assert!(before(Instant::now(), Duration::from_secs(u64::MAX / 4)) <= Instant::now());
        for f in
            [LinkFailure::Refused, LinkFailure::Silent, LinkFailure::Other, LinkFailure::Refusal]
        {
            assert_eq!(LinkFailure::from_name(f.as_str()), Some(f));
        }
        assert_eq!(LinkFailure::from_name("nonsense"), None);
    }

    #[test]
    fn restore_keeps_the_table_bounded() {
        let now = Instant::now();
        let saved: Vec<_> = (0..MAX_TRACKED + 10)
            .map(|i| (a(&format!("tcp/10.0.{}.{}:1", i / 256, i % 256)), SavedHealth::default()))
            .collect();
        let mut table = HealthTable::default();
        table.restore(now, saved);
        assert_eq!(table.all().count(), MAX_TRACKED);
    }
}
