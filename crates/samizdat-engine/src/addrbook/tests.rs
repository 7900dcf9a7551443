#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::BTreeSet;

/// The tests' reference instant (tests may read the clock; the module never does).
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn a(s: &str) -> PeerAddr {
    PeerAddr::new(s).unwrap()
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn book(cfg: AddrBookConfig) -> AddrBook {
    AddrBook::new(cfg, [42; 32])
}

fn local() -> AddrBookConfig {
    AddrBookConfig { allow_local: true, ..AddrBookConfig::default() }
}

/// A tiny table: `new_buckets × new_size` new slots and one tried slot.
fn tiny(new_buckets: usize, size: usize) -> AddrBookConfig {
    AddrBookConfig {
        new_buckets,
        tried_buckets: 1,
        bucket_size: size,
        new_buckets_per_source_group: new_buckets,
        tried_buckets_per_group: 1,
        ..local()
    }
}

/// A public IPv4 address from an index: group `(g >> 8, g & 0xff)` shifted into public space.
fn public(group: u16, host: u16, port: u16) -> PeerAddr {
    let [g1, g2] = group.to_be_bytes();
    let [h1, h2] = host.to_be_bytes();
    // 11.x.x.x .. 99.x.x.x hold no special-use range.
    a(&format!("tcp/{}.{g2}.{h1}.{h2}:{port}", 11 + (g1 % 88)))
}

const SRC: &str = "tcp/8.8.8.8:1";

#[test]
fn public_addresses_are_admitted_and_canonicalised() {
    let b = book(AddrBookConfig::default());
    assert_eq!(b.check(&a("tcp/8.8.8.8:4000")), Ok(a("tcp/8.8.8.8:4000")));
    assert_eq!(b.check(&a("tcp/[2606:4700::1111]:443")), Ok(a("tcp/[2606:4700::1111]:443")));
    // IPv4-mapped IPv6 and a padded port are the same host and port.
    assert_eq!(b.check(&a("tcp/[::ffff:8.8.8.8]:04000")), Ok(a("tcp/8.8.8.8:4000")));
    assert_eq!(b.check(&a("tcp/[2606:4700:0::1111]:443")), Ok(a("tcp/[2606:4700::1111]:443")));
}

#[test]
fn rejects_unknown_transports() {
    let b = book(AddrBookConfig::default());
    assert_eq!(b.check(&a("udp/8.8.8.8:1")), Err(Rejected::UnknownTransport));
    assert_eq!(b.check(&a("test/0")), Err(Rejected::UnknownTransport));
}

#[test]
fn rejects_malformed_tcp_addresses() {
    let b = book(AddrBookConfig::default());
    for s in [
        "tcp/8.8.8.8",
        "tcp/8.8.8.8:",
        "tcp/8.8.8.8:99999",
        "tcp/8.8.8.8:123456",
        "tcp/:80",
        "tcp/::1:80",
        "tcp/[::1:80",
        "tcp/[zz]:80",
        "tcp/[8.8.8.8]:80",
        "tcp/[fe80::1%2]:80",
        "tcp/8.8.8.8:+1",
    ] {
        assert_eq!(b.check(&a(s)), Err(Rejected::BadShape), "{s}");
    }
}

#[test]
fn rejects_host_names_from_peers() {
    let b = book(local());
    for s in [
        "tcp/tracking-id-1234.example:1",
        "tcp/localhost:80",
        "tcp/8.8.8:80",
        "tcp/010.1.1.1:80",
        "tcp/0x8.8.8.8:80",
    ] {
        assert_eq!(b.check(&a(s)), Err(Rejected::HostName), "{s}");
    }
}

#[test]
fn rejects_port_zero() {
    let b = book(local());
    assert_eq!(b.check(&a("tcp/8.8.8.8:0")), Err(Rejected::PortZero));
    assert_eq!(b.check(&a("tcp/[2606:4700::1]:00")), Err(Rejected::PortZero));
}

#[test]
fn rejects_special_use_ranges_unless_local() {
    let special = [
        "0.0.0.0",
        "0.1.2.3",
        "10.1.2.3",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "169.254.1.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.1",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "[::]",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:10.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::808:808]",
        "[100::1]",
        "[fc00::1]",
        "[fd12:3456::1]",
        "[fe80::1]",
        "[fec0::1]",
        "[ff02::1]",
        "[2001::1]",
        "[2001:10::1]",
        "[2001:db8::1]",
        "[2002:808:808::1]",
        "[3fff::1]",
        "[4000::1]",
    ];
    let strict = book(AddrBookConfig::default());
    let lan = book(local());
    for ip in special {
        let addr = a(&format!("tcp/{ip}:4000"));
        assert_eq!(strict.check(&addr), Err(Rejected::SpecialUse), "{ip}");
        assert!(lan.check(&addr).is_ok(), "{ip} with allow_local");
    }
    // Just outside the special ranges.
    for ip in [
        "1.1.1.1",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "169.253.0.1",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.1",
        "192.0.3.1",
        "192.167.1.1",
        "192.169.0.1",
        "198.17.0.1",
        "198.20.0.1",
        "223.255.255.255",
        "[2001:200::1]",
        "[2001:db9::1]",
        "[2003::1]",
        "[3ffe::1]",
        "[2606:4700::1]",
    ] {
        let addr = a(&format!("tcp/{ip}:4000"));
        assert!(strict.check(&addr).is_ok(), "{ip}");
    }
}

#[test]
fn mem_addresses_need_a_flag() {
    let strict = book(AddrBookConfig::default());
    assert_eq!(strict.check(&a("mem/1")), Err(Rejected::MemNotAllowed));
    let mem_only = book(AddrBookConfig { allow_mem: true, ..AddrBookConfig::default() });
    assert_eq!(mem_only.check(&a("mem/1")), Ok(a("mem/1")));
    assert_eq!(mem_only.check(&a("tcp/127.0.0.1:1")), Err(Rejected::SpecialUse));
    assert_eq!(book(local()).check(&a("mem/1")), Ok(a("mem/1")));
}

#[test]
fn other_listed_transports_get_the_same_ip_checks() {
    let cfg = AddrBookConfig {
        transports: vec!["tcp".into(), "quic".into(), "onion".into()],
        ..AddrBookConfig::default()
    };
    let b = book(cfg);
    assert_eq!(b.check(&a("quic/8.8.8.8:443")), Ok(a("quic/8.8.8.8:443")));
    assert_eq!(b.check(&a("quic/10.0.0.1:443")), Err(Rejected::SpecialUse));
    assert_eq!(b.check(&a("quic/tracker.example:443")), Err(Rejected::HostName));
    assert_eq!(b.check(&a("quic/8.8.8.8:0")), Err(Rejected::PortZero));
    // Not host:port shaped: an opaque address of a listed transport.
    assert_eq!(b.check(&a("onion/abcdefghijklmnop")), Ok(a("onion/abcdefghijklmnop")));
    assert_eq!(b.check(&a("sctp/8.8.8.8:1")), Err(Rejected::UnknownTransport));
}

#[test]
fn rejections_print_one_line() {
    for r in [
        Rejected::UnknownTransport,
        Rejected::BadShape,
        Rejected::HostName,
        Rejected::PortZero,
        Rejected::SpecialUse,
        Rejected::MemNotAllowed,
        Rejected::SourceQuota,
        Rejected::SlotTaken,
        Rejected::TrustedFull,
    ] {
        let s = r.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{r:?}");
    }
}

#[test]
fn add_inserts_then_knows_and_contains_any_spelling() {
    let now = t0();
    let mut b = book(AddrBookConfig::default());
    assert!(b.is_empty());
    let x = a("tcp/8.8.4.4:53");
    assert_eq!(b.add(&x, &a(SRC), now), Ok(Added::Inserted));
    assert_eq!(b.add(&a("tcp/[::ffff:8.8.4.4]:53"), &a(SRC), now), Ok(Added::Known));
    assert_eq!(b.len(), 1);
    assert_eq!(b.len_new(), 1);
    assert!(b.contains(&a("tcp/[::ffff:8.8.4.4]:053")));
    assert!(!b.contains(&a("tcp/8.8.4.4:54")));
    assert_eq!(b.add(&a("tcp/10.0.0.1:1"), &a(SRC), now), Err(Rejected::SpecialUse));
    assert_eq!(b.len(), 1);
    assert_eq!(b.config().bucket_size, 32);
}

#[test]
fn source_quota_limits_one_source_group() {
    let now = t0();
    let cfg = AddrBookConfig { max_per_source_group: 3, ..AddrBookConfig::default() };
    let mut b = book(cfg);
    // Two sources in one /16 share a quota.
    let (s1, s2) = (a("tcp/8.8.1.1:1"), a("tcp/8.8.200.9:7"));
    let mut inserted = 0;
    for i in 0..3 {
        if b.add(&public(i, 1, 1), if i % 2 == 0 { &s1 } else { &s2 }, now).is_ok() {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 3);
    assert_eq!(b.add(&public(50, 1, 1), &s2, now), Err(Rejected::SourceQuota));
    // Another source group is not affected, and a removal frees quota.
    assert_eq!(b.add(&public(50, 1, 1), &a("tcp/9.9.9.9:1"), now), Ok(Added::Inserted));
    assert!(b.remove(&public(0, 1, 1)));
    assert_eq!(b.add(&public(51, 1, 1), &s1, now), Ok(Added::Inserted));
    // Moving to tried frees quota too.
    assert!(b.mark_good(&public(1, 1, 1), now));
    assert_eq!(b.add(&public(52, 1, 1), &s1, now), Ok(Added::Inserted));
}

#[test]
fn collisions_keep_useful_entries_and_evict_terrible_ones() {
    let now = t0();
    let mut b = book(tiny(1, 1));
    let (x, y) = (a("tcp/8.8.8.8:1"), a("tcp/9.9.9.9:1"));
    assert_eq!(b.add(&x, &a(SRC), now), Ok(Added::Inserted));
    assert_eq!(b.add(&y, &a(SRC), now), Err(Rejected::SlotTaken));
    for _ in 0..3 {
        assert!(b.mark_attempt(&x, now));
    }
    // Never connected after 3 tries, but tried within the last minute: still kept.
    assert_eq!(b.add(&y, &a(SRC), now + Duration::from_secs(30)), Err(Rejected::SlotTaken));
    assert_eq!(b.add(&y, &a(SRC), now + Duration::from_secs(120)), Ok(Added::Inserted));
    assert!(!b.contains(&x));
    assert_eq!(b.len(), 1);
}

#[test]
fn entries_not_heard_of_within_the_horizon_are_terrible() {
    let now = t0();
    let cfg = AddrBookConfig { horizon: Duration::from_secs(100), ..tiny(1, 1) };
    let mut b = book(cfg);
    let (x, y) = (a("tcp/8.8.8.8:1"), a("tcp/9.9.9.9:1"));
    b.add(&x, &a(SRC), now).unwrap();
    assert_eq!(b.add(&x, &a(SRC), now + Duration::from_secs(90)), Ok(Added::Known));
    // Refreshed at +90: not yet stale at +150.
    assert_eq!(b.add(&y, &a(SRC), now + Duration::from_secs(150)), Err(Rejected::SlotTaken));
    assert_eq!(b.add(&y, &a(SRC), now + Duration::from_secs(191)), Ok(Added::Inserted));
}

#[test]
fn many_failures_make_an_entry_terrible() {
    let now = t0();
    let mut b = book(tiny(1, 1));
    let (x, y) = (a("tcp/8.8.8.8:1"), a("tcp/9.9.9.9:1"));
    b.add(&x, &a(SRC), now).unwrap();
    for _ in 0..9 {
        assert!(b.mark_failed(&x));
    }
    assert_eq!(b.add(&y, &a(SRC), now), Err(Rejected::SlotTaken));
    assert!(b.mark_failed(&x));
    assert_eq!(b.add(&y, &a(SRC), now), Ok(Added::Inserted));
}

#[test]
fn unknown_addresses_are_reported() {
    let now = t0();
    let mut b = book(AddrBookConfig::default());
    let x = a("tcp/8.8.8.8:1");
    assert!(!b.mark_good(&x, now));
    assert!(!b.mark_attempt(&x, now));
    assert!(!b.mark_failed(&x));
    assert!(!b.remove(&x));
}

#[test]
fn mark_good_moves_to_tried_and_resets_counters() {
    let now = t0();
    let mut b = book(AddrBookConfig::default());
    let x = a("tcp/8.8.8.8:1");
    b.add(&x, &a(SRC), now).unwrap();
    for _ in 0..5 {
        b.mark_attempt(&x, now);
        b.mark_failed(&x);
    }
    assert!(b.mark_good(&a("tcp/[::ffff:8.8.8.8]:1"), now));
    assert_eq!((b.len_new(), b.len_tried()), (0, 1));
    assert!(b.mark_good(&x, now));
    assert_eq!((b.len_new(), b.len_tried()), (0, 1));
    let e = b.entry_mut(&x).unwrap().2;
    assert_eq!((e.attempts, e.failures), (0, 0));
    assert!(b.remove(&x));
    assert!(b.is_empty());
}

#[test]
fn a_displaced_tried_entry_goes_back_to_new() {
    let now = t0();
    let mut b = book(tiny(64, 1));
    let (x, y) = (a("tcp/8.8.8.8:1"), a("tcp/9.9.9.9:1"));
    b.add(&x, &a(SRC), now).unwrap();
    b.add(&y, &a(SRC), now).unwrap();
    assert!(b.mark_good(&x, now));
    assert!(b.mark_good(&y, now));
    // One tried slot: y took it, x went back to new.
    assert_eq!((b.len_new(), b.len_tried()), (1, 1));
    assert!(b.contains(&x) && b.contains(&y));
    assert_eq!(b.index[&x].0, Which::New);
    assert_eq!(b.index[&y].0, Which::Tried);
}

/// Finds addresses so that, in a 1×2 new table, `x`'s home slot (from its source) differs
/// from `y`'s and `z`'s home slot equals `x`'s. Deterministic: the key is fixed.
fn arrange(b: &AddrBook, source: &Group) -> (PeerAddr, PeerAddr, PeerAddr) {
    let pos = |p: &PeerAddr| b.new_pos(p, &lenient_group(p), source);
    let cands: Vec<PeerAddr> = (0..64).map(|i| public(i, 7, 7)).collect();
    let x = cands[0].clone();
    let y = cands.iter().find(|c| pos(c) != pos(&x)).unwrap().clone();
    let z = cands[1..].iter().find(|c| pos(c) == pos(&x)).unwrap().clone();
    (x, y, z)
}

#[test]
fn a_displaced_tried_entry_is_dropped_when_its_new_slot_is_useful() {
    let now = t0();
    let mut b = book(tiny(1, 2));
    let src = lenient_group(&a(SRC));
    let (x, y, z) = arrange(&b, &src);
    b.add(&x, &a(SRC), now).unwrap();
    assert!(b.mark_good(&x, now));
    b.add(&z, &a(SRC), now).unwrap(); // takes x's home slot in new
    b.add(&y, &a(SRC), now).unwrap();
    assert!(b.mark_good(&y, now)); // displaces x from tried; its new slot is z's
    assert!(!b.contains(&x));
    assert!(b.contains(&y) && b.contains(&z));
    assert_eq!(b.len(), 2);
}

#[test]
fn a_displaced_tried_entry_is_dropped_when_its_source_is_over_quota() {
    let now = t0();
    let cfg = AddrBookConfig { max_per_source_group: 1, ..tiny(64, 1) };
    let mut b = book(cfg);
    let (x, y, w) = (a("tcp/8.8.8.8:1"), a("tcp/9.9.9.9:1"), a("tcp/12.0.0.1:1"));
    b.add(&x, &a(SRC), now).unwrap();
    assert!(b.mark_good(&x, now));
    b.add(&w, &a(SRC), now).unwrap(); // SRC's quota is used again
    b.add(&y, &a("tcp/13.0.0.1:1"), now).unwrap();
    assert!(b.mark_good(&y, now));
    assert!(!b.contains(&x));
    assert!(b.contains(&w) && b.contains(&y));
}

#[test]
fn trusted_entries_are_bounded_and_never_evicted_by_peers() {
    let now = t0();
    let cfg = AddrBookConfig { max_trusted: 2, allow_local: false, ..tiny(1, 1) };
    let mut b = book(cfg);
    // Host names and special-use addresses are fine when the user gives them.
    let name = a("tcp/bridge.example.org:443");
    assert_eq!(b.add_trusted(&name, now), Ok(Added::Inserted));
    assert_eq!(b.add_trusted(&name, now), Ok(Added::Known));
    // The slot is held by a user-given entry: peers cannot evict it, even when it is terrible.
    for _ in 0..20 {
        b.mark_failed(&name);
    }
    let later = now + Duration::from_secs(3600);
    assert_eq!(b.add(&a("tcp/8.8.8.8:1"), &a(SRC), later), Err(Rejected::SlotTaken));
    // A second user-given address finds no slot that is not user-given.
    assert_eq!(b.add_trusted(&a("tcp/127.0.0.1:4000"), now), Err(Rejected::SlotTaken));
    assert!(b.remove(&name));
    assert_eq!(b.trusted, 0);
}

#[test]
fn trusted_entries_evict_peer_entries_and_respect_their_cap() {
    let now = t0();
    let cfg = AddrBookConfig { max_trusted: 1, ..tiny(1, 1) };
    let mut b = book(cfg);
    let peer = a("tcp/8.8.8.8:1");
    b.add(&peer, &a(SRC), now).unwrap();
    assert_eq!(b.add_trusted(&a("mem/bridge"), now), Ok(Added::Inserted));
    assert!(!b.contains(&peer));
    assert_eq!(b.add_trusted(&a("tcp/1.2.3.4:5"), now), Err(Rejected::TrustedFull));
    assert_eq!(b.per_source.len(), 1);
}

#[test]
fn a_known_peer_entry_becomes_trusted_once() {
    let now = t0();
    let cfg = AddrBookConfig { max_trusted: 1, ..AddrBookConfig::default() };
    let mut b = book(cfg);
    let x = a("tcp/8.8.8.8:1");
    b.add(&x, &a(SRC), now).unwrap();
    assert_eq!(b.add_trusted(&a("tcp/[::ffff:8.8.8.8]:1"), now), Ok(Added::Known));
    assert_eq!(b.add_trusted(&x, now), Ok(Added::Known));
    assert_eq!(b.trusted, 1);
    assert_eq!(b.add_trusted(&a("tcp/8.8.4.4:1"), now), Err(Rejected::TrustedFull));
    // A known peer entry cannot become user-given beyond the cap either.
    b.add(&a("tcp/8.8.4.4:1"), &a(SRC), now).unwrap();
    assert_eq!(b.add_trusted(&a("tcp/8.8.4.4:1"), now), Err(Rejected::TrustedFull));
    assert_eq!(b.trusted, 1);
}

/// Takes the only tried entry out and demotes it, as `mark_good` of another entry would.
fn displace_tried(b: &mut AddrBook, now: Instant) {
    let e = b.tried.take(0).unwrap();
    b.index.remove(&e.addr);
    b.demote(e, now);
}

#[test]
fn a_displaced_trusted_entry_returns_to_new_over_peer_entries() {
    let now = t0();
    let mut b = book(tiny(1, 1));
    let (x, z) = (a("tcp/bridge.example:1"), a("tcp/8.8.8.8:1"));
    b.add_trusted(&x, now).unwrap();
    assert!(b.mark_good(&x, now));
    b.add(&z, &a(SRC), now).unwrap(); // a useful peer entry in the only new slot
    displace_tried(&mut b, now);
    assert!(b.contains(&x), "user-given entry kept");
    assert!(!b.contains(&z));
    assert_eq!((b.trusted, b.len()), (1, 1));
}

#[test]
fn a_displaced_trusted_entry_is_dropped_when_only_trusted_slots_remain() {
    let now = t0();
    let mut b = book(tiny(1, 1));
    let (x, z) = (a("tcp/host-a.example:1"), a("tcp/host-b.example:1"));
    b.add_trusted(&x, now).unwrap();
    assert!(b.mark_good(&x, now));
    b.add_trusted(&z, now).unwrap();
    assert_eq!(b.trusted, 2);
    displace_tried(&mut b, now);
    assert!(!b.contains(&x) && b.contains(&z));
    assert_eq!(b.trusted, 1);
}

#[test]
fn zero_sizes_are_raised_to_one() {
    let cfg = AddrBookConfig {
        new_buckets: 0,
        tried_buckets: 0,
        bucket_size: 0,
        new_buckets_per_source_group: 0,
        tried_buckets_per_group: 0,
        ..AddrBookConfig::default()
    };
    let mut b = book(cfg);
    assert_eq!(b.capacity(), 2);
    assert_eq!(b.add(&a("tcp/8.8.8.8:1"), &a(SRC), t0()), Ok(Added::Inserted));
}

#[test]
fn debug_shows_no_addresses_or_key() {
    let mut b = AddrBook::new(AddrBookConfig::default(), [0xab; 32]);
    b.add(&a("tcp/8.8.8.8:1"), &a(SRC), t0()).unwrap();
    let s = format!("{b:?}");
    assert!(s.contains("new: 1"), "{s}");
    assert!(!s.contains("8.8.8.8") && !s.contains("171"), "{s}");
}

#[test]
fn select_from_empty_new_only_tried_only_and_both() {
    let now = t0();
    let mut b = book(AddrBookConfig::default());
    let mut r = rng(7);
    assert_eq!(b.select(now, &mut r), None);
    let (x, y) = (a("tcp/8.8.8.8:1"), a("tcp/9.9.9.9:1"));
    b.add(&x, &a(SRC), now).unwrap();
    assert_eq!(b.select(now, &mut r), Some(x.clone()));
    b.mark_good(&x, now);
    assert_eq!(b.select(now, &mut r), Some(x.clone()));
    b.add(&y, &a(SRC), now).unwrap();
    let picks: BTreeSet<PeerAddr> = (0..200).filter_map(|_| b.select(now, &mut r)).collect();
    assert_eq!(picks, BTreeSet::from([x, y]));
}

#[test]
fn select_prefers_entries_not_dialled_recently() {
    let now = t0();
    let mut b = book(AddrBookConfig::default());
    let (x, y) = (a("tcp/8.8.8.8:1"), a("tcp/9.9.9.9:1"));
    b.add(&x, &a(SRC), now).unwrap();
    b.add(&y, &a("tcp/9.9.9.9:2"), now).unwrap();
    for _ in 0..8 {
        b.mark_attempt(&x, now);
    }
    let mut r = rng(3);
    let xs = (0..2000).filter(|_| b.select(now, &mut r) == Some(x.clone())).count();
    assert!(xs < 100, "recently dialled entry selected {xs}/2000");
    // Alone, it is still selected (the search is bounded and settles).
    b.remove(&y);
    assert_eq!(b.select(now, &mut r), Some(x));
}

#[test]
fn select_distinct_returns_distinct_addresses() {
    let now = t0();
    let mut b = book(local());
    let mut r = rng(5);
    assert!(b.select_distinct(now, &mut r, 8).is_empty());
    for i in 0..20 {
        b.add(&a(&format!("mem/{i}")), &a(&format!("mem/src{i}")), now).unwrap();
    }
    let got = b.select_distinct(now, &mut r, 8);
    assert_eq!(got.len(), 8);
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 8);
    let few = book(local());
    assert!(few.select_distinct(now, &mut r, 0).is_empty());
    let mut two = book(local());
    two.add(&a("mem/1"), &a("mem/s"), now).unwrap();
    two.add(&a("mem/2"), &a("mem/s"), now).unwrap();
    assert_eq!(two.select_distinct(now, &mut r, 8).len(), 2);
}

/// Fraction of `rounds` selections that fall in `set`.
fn share(b: &AddrBook, set: &BTreeSet<PeerAddr>, rounds: usize, seed: u64, now: Instant) -> f64 {
    let mut r = rng(seed);
    let hits =
        (0..rounds).filter(|_| b.select(now, &mut r).is_some_and(|x| set.contains(&x))).count();
    hits as f64 / rounds as f64
}

/// Inserts 1000 lexicographically lowest addresses from one attacker source group and 100
/// honest addresses from 100 groups, each told by its own source; returns the book, the
/// attacker's accepted addresses and how many it inserted.
/// With `spread`, the attacker's addresses span 250 /16s instead of one.
fn eclipse_setup(key: [u8; 32], now: Instant, spread: bool) -> (AddrBook, BTreeSet<PeerAddr>) {
    let mut b = AddrBook::new(AddrBookConfig::default(), key);
    let attacker_src = a("tcp/1.1.1.1:1");
    let mut attacker = BTreeSet::new();
    for i in 0..1000u32 {
        // tcp/1.0.x.y sorts before every honest address below.
        let addr = if spread {
            a(&format!("tcp/1.{}.0.{}:1", i % 250, i / 250 + 1))
        } else {
            a(&format!("tcp/1.0.{}.{}:1", i / 250, i % 250 + 1))
        };
        if b.add(&addr, &attacker_src, now).is_ok() {
            attacker.insert(addr);
        }
    }
    for i in 0..100u16 {
        let addr = a(&format!("tcp/{}.{}.1.1:4000", 20 + i / 50, i % 50 + 1));
        let src = a(&format!("tcp/{}.{}.9.9:1", 120 + i / 50, i % 50 + 1));
        // A few honest ones collide with each other in their slots.
        let _ = b.add(&addr, &src, now);
    }
    (b, attacker)
}

#[test]
fn an_attacker_with_low_sorting_addresses_is_not_preferred() {
    let now = t0();
    let (b, attacker) = eclipse_setup([9; 32], now, false);
    // The attacker sent 1000 of 1100 addresses (91%); one /16 from one source reaches one
    // bucket, so at most a bucket's worth (32) was kept.
    assert!(attacker.len() <= b.config().bucket_size, "{}", attacker.len());
    eprintln!("attacker entries kept: {} of {}", attacker.len(), b.len());
    let got = share(&b, &attacker, 20_000, 11, now);
    eprintln!("attacker share of selections: {got:.3} (inserted share 0.909)");
    assert!(got < 0.25, "attacker selected {got}");
}

#[test]
fn an_attacker_spread_over_many_groups_is_still_bounded_by_its_source() {
    let now = t0();
    let (b, attacker) = eclipse_setup([9; 32], now, true);
    // Spread over 250 /16s it reaches its 8 buckets, and the source quota caps it at 64.
    assert!(attacker.len() <= b.config().max_per_source_group, "{}", attacker.len());
    let got = share(&b, &attacker, 20_000, 12, now);
    eprintln!(
        "spread attacker: {} of {} entries, share of selections {got:.3}",
        attacker.len(),
        b.len()
    );
    assert!(got < 0.3, "attacker selected {got}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// 100,000 addresses from one /16 source never exceed the bounds and occupy only a small
    /// part of the table.
    #[test]
    fn a_flood_from_one_source_stays_small(key in any::<[u8; 32]>(), seed in any::<u64>(),
                                           src_host in any::<u16>()) {
        let now = t0();
        let mut b = AddrBook::new(AddrBookConfig::default(), key);
        let mut r = rng(seed);
        let [h1, h2] = src_host.to_be_bytes();
        let source = a(&format!("tcp/8.8.{h1}.{h2}:1"));
        for _ in 0..100_000 {
            let n = r.next_u32();
            let addr = public((n >> 16) as u16, n as u16, 1 + (r.next_u32() % 65535) as u16);
            let _ = b.add(&addr, &source, now);
        }
        let cfg = b.config().clone();
        prop_assert!(b.len() <= cfg.max_per_source_group);
        prop_assert!(b.len() * 20 <= b.capacity(), "{} of {}", b.len(), b.capacity());
        let buckets = b.new.per_bucket.iter().filter(|&&n| n > 0).count();
        prop_assert!(buckets <= cfg.new_buckets_per_source_group);
        // Honest sources still get in (a few may land on a flooded slot).
        let honest = (0..20u16)
            .filter(|&i| b.add(&public(200 + i, 1, 1), &public(300 + i, 9, 9), now).is_ok())
            .count();
        prop_assert!(honest >= 16, "{} of 20 honest addresses admitted", honest);
    }

    /// Addresses of one /16 that all reach tried occupy only a few tried buckets.
    #[test]
    fn one_group_fills_few_tried_buckets(key in any::<[u8; 32]>()) {
        let now = t0();
        let mut b = AddrBook::new(AddrBookConfig::default(), key);
        for i in 0..2000u32 {
            let addr = a(&format!("tcp/8.8.{}.{}:{}", i / 200, i % 200 + 1, 1000 + i));
            let src = a(&format!("tcp/{}.{}.1.1:1", 20 + i / 200, i % 200 + 1));
            if b.add(&addr, &src, now).is_ok() {
                b.mark_good(&addr, now);
            }
        }
        let buckets = b.tried.per_bucket.iter().filter(|&&n| n > 0).count();
        prop_assert!(buckets <= b.config().tried_buckets_per_group);
        prop_assert!(b.len() <= b.capacity());
    }

    /// Over random keys, the attacker of the eclipse scenario stays well below its share.
    #[test]
    fn eclipse_share_is_low_for_any_key(key in any::<[u8; 32]>(), seed in any::<u64>()) {
        let now = t0();
        let (b, attacker) = eclipse_setup(key, now, seed % 2 == 0);
        let got = share(&b, &attacker, 4000, seed, now);
        prop_assert!(got < 0.3, "attacker selected {}", got);
    }

    /// Whatever is added, the book's counters agree with its tables and stay bounded.
    #[test]
    fn counters_stay_consistent(ops in proptest::collection::vec((0u8..6, 0u16..40, 0u16..6), 1..300)) {
        let now = t0();
        let mut b = book(AddrBookConfig { max_trusted: 4, ..tiny(2, 3) });
        for (op, x, s) in ops {
            let addr = public(x % 8, x, 1);
            let src = public(100 + s, 1, 1);
            match op {
                0 | 1 => { let _ = b.add(&addr, &src, now); }
                2 => { b.mark_good(&addr, now); }
                3 => { b.mark_attempt(&addr, now); b.mark_failed(&addr); }
                4 => { b.remove(&addr); }
                _ => { let _ = b.add_trusted(&addr, now); }
            }
            prop_assert_eq!(b.len(), b.new.len + b.tried.len);
            prop_assert!(b.len() <= b.capacity());
            let trusted = b.new.slots.iter().chain(&b.tried.slots).flatten().filter(|e| e.trusted).count();
            prop_assert_eq!(trusted, b.trusted);
            prop_assert!(b.trusted <= 4);
            let owned: usize = b.per_source.values().sum();
            prop_assert_eq!(owned, b.new.len);
            for (addr, &(w, p)) in &b.index {
                let t = if w == Which::New { &b.new } else { &b.tried };
                prop_assert_eq!(&t.slots[p].as_ref().unwrap().addr, addr);
            }
        }
    }
}

#[test]
fn ipv6_entries_are_grouped_by_slash_32() {
    let now = t0();
    let cfg = AddrBookConfig { max_per_source_group: 2, ..AddrBookConfig::default() };
    let mut b = book(cfg);
    let src = a("tcp/[2606:4700:1::1]:1");
    // Another source in the same /32 shares the quota.
    let same_32 = a("tcp/[2606:4700:ffff::9]:1");
    assert_eq!(b.add(&a("tcp/[2a00:1450::1]:443"), &src, now), Ok(Added::Inserted));
    assert_eq!(b.add(&a("tcp/[2a00:1450::2]:443"), &same_32, now), Ok(Added::Inserted));
    assert_eq!(b.add(&a("tcp/[2a00:1450::3]:443"), &src, now), Err(Rejected::SourceQuota));
    assert_eq!(
        b.add(&a("tcp/[2a00:1450::3]:443"), &a("tcp/[2606:4701::1]:1"), now),
        Ok(Added::Inserted)
    );
    assert!(b.mark_good(&a("tcp/[2a00:1450::1]:443"), now));
    assert_eq!(b.len_tried(), 1);
}

#[test]
fn add_all_counts_new_entries_only() {
    let now = t0();
    let mut b = book(AddrBookConfig::default());
    let batch = [
        a("tcp/8.8.8.8:1"),
        a("tcp/8.8.8.8:1"),
        a("tcp/10.0.0.1:1"),
        a("tcp/name.example:1"),
        a("tcp/9.9.9.9:1"),
    ];
    assert_eq!(b.add_all(&batch, &a(SRC), now), 2);
    assert_eq!(b.add_all(&batch, &a(SRC), now), 0);
    assert_eq!(b.len(), 2);
}

#[test]
fn ip_shaped_mem_addresses_are_found_under_any_spelling() {
    // Found by the addrbook fuzz target: stored as written, looked up canonicalised.
    let cfg = AddrBookConfig { allow_mem: true, ..AddrBookConfig::default() };
    let mut book = AddrBook::new(cfg, [3; 32]);
    let now = t0();
    let odd = PeerAddr::new("mem/1.2.3.4:05").unwrap();
    let src = PeerAddr::new("tcp/9.9.9.9:1").unwrap();
    assert!(book.add(&odd, &src, now).is_ok());
    assert!(book.contains(&odd));
    assert!(book.contains(&PeerAddr::new("mem/1.2.3.4:5").unwrap()));
    assert!(book.remove(&odd));
    assert!(book.is_empty());
}

#[test]
fn pinned_entries_keep_their_first_pin_through_moves() {
    let mut b = book(AddrBookConfig::default());
    let now = t0();
    let node = NodeId([1; 32]);
    let teller = NodeId([2; 32]);
    let x = a("tcp/8.8.4.4:4000");
    let pin = Pin { node, teller: Some(teller), vouched: true };
    assert_eq!(b.add_pinned(&x, &a(SRC), pin, now), Ok(Added::Inserted));
    assert_eq!(b.pin(&x), Some(pin));
    // The same address in another spelling is the same entry.
    assert_eq!(b.pin(&a("tcp/[::ffff:8.8.4.4]:4000")), Some(pin));
    // A record signed by another key for the same address does not take the entry over.
    let other = Pin { node: NodeId([3; 32]), teller: None, vouched: false };
    assert_eq!(b.add_pinned(&x, &a("tcp/9.9.9.9:1"), other, now), Ok(Added::Known));
    assert_eq!(b.pin(&x), Some(pin));
    // The pin moves with the entry into the tried table.
    assert!(b.mark_good(&x, now));
    assert_eq!(b.len_tried(), 1);
    assert_eq!(b.pin(&x), Some(pin));
    // Unpinned and unknown addresses have none; a refused address is refused pinned too.
    let y = a("tcp/1.1.1.1:4000");
    b.add(&y, &a(SRC), now).unwrap();
    assert_eq!(b.pin(&y), None);
    assert_eq!(b.pin(&a("tcp/1.0.0.1:1")), None);
    assert_eq!(b.add_pinned(&a("tcp/127.0.0.1:1"), &a(SRC), pin, now), Err(Rejected::SpecialUse));
    assert!(b.remove(&x));
    assert_eq!(b.pin(&x), None);
}
