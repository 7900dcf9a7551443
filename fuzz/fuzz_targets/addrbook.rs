//! Arbitrary peer address strings fed to a small `AddrBook`: `PeerAddr::new`, then
//! `AddrBook::check` and `AddrBook::add` from a fixed source, `add_trusted`, and the calls a
//! node makes afterwards (`mark_good`, `mark_attempt`, `mark_failed`, `remove`, `select`,
//! `select_distinct`, `add_pinned`, `pin`, `repin`, `unvouch`). Nothing may panic, and the
//! book never holds more than its capacity.
//!
//! Input layout: `flags || line ('\n' line)*`, each line `op || address text`. Flag bit 0 sets
//! `allow_local`, bit 1 `allow_mem`, bit 2 accepts a second transport (`onion`, opaque
//! addresses); the top five bits are the clock step between lines (in units of 5 minutes, so
//! entries can outlive the book's horizon).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use samizdat_engine::addrbook::{Added, AddrBook, AddrBookConfig, Pin, Rejected};
use samizdat_identity::NodeId;
use samizdat_wire::PeerAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The peers that "sent" the addresses: fixed, one per address family and an opaque one.
static SOURCES: LazyLock<[PeerAddr; 3]> = LazyLock::new(|| {
    ["tcp/203.0.113.7:4000", "tcp/[2001:db8::7]:4000", "mem/source"]
        .map(|s| PeerAddr::new(s).expect("a fixed source address"))
});

/// A small book, so that buckets fill up, quotas bite and entries get evicted and demoted.
fn config(flags: u8) -> AddrBookConfig {
    let mut transports = vec!["tcp".to_owned(), "https".to_owned()];
    if flags & 4 != 0 {
        transports.push("onion".to_owned());
    }
    AddrBookConfig {
        new_buckets: 8,
        tried_buckets: 4,
        bucket_size: 4,
        new_buckets_per_source_group: 2,
        tried_buckets_per_group: 2,
        max_per_source_group: 6,
        max_trusted: 4,
        allow_local: flags & 1 != 0,
        allow_mem: flags & 2 != 0,
        transports,
        horizon: Duration::from_secs(3600),
        max_retries: 2,
        max_failures: 3,
    }
}

fn check_invariants(book: &AddrBook) {
    assert!(book.len() <= book.capacity(), "{} entries > capacity {}", book.len(), book.capacity());
    assert_eq!(book.len(), book.len_new() + book.len_tried(), "index and tables disagree");
    assert_eq!(book.is_empty(), book.len() == 0);
}

/// A peer-supplied address: `check` and `add` agree on admission.
fn add_from_peer(book: &mut AddrBook, addr: &PeerAddr, source: &PeerAddr, now: Instant) {
    let checked = book.check(addr);
    if let Ok(canonical) = &checked {
        assert_eq!(book.check(canonical).as_ref(), Ok(canonical), "canonical form is stable");
    }
    let added = book.add(addr, source, now);
    match (&checked, &added) {
        (Err(c), Err(a)) => assert_eq!(c, a, "add rejects what check rejects, for the same reason"),
        (Err(_), Ok(_)) => panic!("add accepted an address check rejects"),
        (Ok(_), Err(Rejected::SourceQuota | Rejected::SlotTaken)) => {}
        (Ok(_), Err(e)) => panic!("add rejected an admissible address: {e}"),
        (Ok(canonical), Ok(Added::Inserted | Added::Known)) => {
            assert!(book.contains(canonical), "an added address is in the book");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let step = Duration::from_secs(u64::from(flags >> 3) * 300);
    let mut book = AddrBook::new(config(flags), [0x42; 32]);
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(flags));
    let mut now = Instant::now();

    for line in rest.split(|&b| b == b'\n') {
        now += step;
        let Some((&op, text)) = line.split_first() else { continue };
        let Ok(text) = std::str::from_utf8(text) else { continue };
        let Ok(addr) = PeerAddr::new(text) else { continue };
        match op % 8 {
            0..=1 => add_from_peer(&mut book, &addr, &SOURCES[usize::from(op % 8)], now),
            2 => {
                // From a signed record: a new entry takes the pin, a known one keeps its own.
                let pin = Pin { node: NodeId([op; 32]), teller: None, vouched: op & 8 != 0 };
                let before = book.pin(&addr);
                match book.add_pinned(&addr, &SOURCES[2], pin, now) {
                    Ok(Added::Inserted) => assert_eq!(book.pin(&addr), Some(pin)),
                    Ok(Added::Known) => assert_eq!(book.pin(&addr), before),
                    Err(_) => {}
                }
                if book.unvouch(&addr) {
                    assert!(book.pin(&addr).is_none_or(|p| !p.vouched));
                    assert!(book.repin(&addr, pin));
                    assert_eq!(book.pin(&addr), Some(pin));
                }
            }
            3 => {
                if book.add_trusted(&addr, now).is_ok() {
                    assert!(book.contains(&addr), "a user-given address is in the book");
                }
            }
            4 => {
                let known = book.contains(&addr);
                assert_eq!(book.mark_good(&addr, now), known, "mark_good finds known addresses");
            }
            5 => {
                let known = book.contains(&addr);
                assert_eq!(book.mark_attempt(&addr, now), known);
                assert_eq!(book.mark_failed(&addr), known);
            }
            6 => {
                let known = book.contains(&addr);
                assert_eq!(book.remove(&addr), known, "remove finds known addresses");
                assert!(!book.contains(&addr), "a removed address is gone");
            }
            _ => {
                if let Some(a) = book.select(now, &mut rng) {
                    assert!(book.contains(&a), "select returns a known address");
                }
                let n = usize::from(op >> 3);
                let distinct = book.select_distinct(now, &mut rng, n);
                assert!(distinct.len() <= n && distinct.iter().all(|a| book.contains(a)));
            }
        }
        check_invariants(&book);
    }
});
