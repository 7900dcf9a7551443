//! What padding and chaff cost and hide, on a link's real mix: the handshake, a burst of small
//! requests of many sizes (what a fetch's control traffic looks like), then a bulk transfer
//! of 16 KiB groups. A benchmark, not a timed test:
//!
//! ```sh
//! cargo test -p samizdat-session --test shaping -- --ignored --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use samizdat_identity::Identity;
use samizdat_session::{Session, SessionConfig, Shaping};
use samizdat_wire::Message;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

struct Run {
    /// Bytes of each flush of the small-request phase.
    small_flushes: Vec<usize>,
    wire_small: usize,
    wire_bulk: usize,
    real: u64,
    padding: u64,
}

fn run(shaping: Shaping) -> Run {
    let now = Instant::now();
    let cfg = || SessionConfig {
        shaping: shaping.clone(),
        ..SessionConfig::new(Identity::generate(&mut rand_core::OsRng))
    };
    let mut a = Session::initiator(cfg(), [1; 32], 1_800_000_000, now).unwrap();
    let mut b = Session::responder(cfg(), [2; 32], 1_800_000_000, now);
    loop {
        let mut moved = false;
        if let Some(x) = a.poll_transmit() {
            b.handle_input(now, &x).unwrap();
            moved = true;
        }
        if let Some(x) = b.poll_transmit() {
            a.handle_input(now, &x).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    let mut small_flushes = Vec::new();
    for i in 0..300usize {
        let payload = vec![1u8; 20 + (i * 97) % 700];
        a.send(&Message::Dht { pow: None, payload }).unwrap();
        let wire = a.poll_transmit().unwrap();
        small_flushes.push(wire.len());
        b.handle_input(now, &wire).unwrap();
    }
    let wire_small = small_flushes.iter().sum();
    let mut wire_bulk = 0;
    let group = vec![9u8; 16 * 1024];
    for _ in 0..64 {
        // Flushes of 16 groups, as a busy link's writer takes them.
        for _ in 0..16 {
            a.send(&Message::Dht { pow: None, payload: group.clone() }).unwrap();
        }
        let wire = a.poll_transmit().unwrap();
        wire_bulk += wire.len();
        b.handle_input(now, &wire).unwrap();
    }
    // An hour of silence: chaff within the budget.
    let end = now + Duration::from_secs(3600);
    while let Some(due) = a.poll_timeout().filter(|&t| t <= end) {
        a.handle_timeout(due).unwrap();
        if let Some(x) = a.poll_transmit() {
            b.handle_input(due, &x).unwrap();
        }
    }
    while b.poll_event().is_some() {}
    let (real, padding) = a.shaping_totals();
    Run { small_flushes, wire_small, wire_bulk, real, padding }
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn shaping_overhead_and_what_it_hides() {
    for (name, shaping) in [
        ("off", Shaping::OFF),
        ("default", Shaping::default()),
        ("budget 60%", Shaping { budget_percent: 60, ..Shaping::default() }),
    ] {
        let r = run(shaping);
        let distinct: BTreeSet<usize> = r.small_flushes.iter().copied().collect();
        // Flushes padded to a bucket before the budget first ran out.
        let padded_first = r.small_flushes.iter().take_while(|&&n| n % 512 == 0).count();
        println!(
            "{{\"shaping\":\"{name}\",\"small_requests\":300,\"padded_before_budget_ran_out\":{padded_first},\"distinct_small_sizes\":{},\"small_wire_bytes\":{},\"bulk_wire_bytes\":{},\"real_bytes\":{},\"padding_and_chaff_bytes\":{},\"overhead\":{:.4}}}",
            distinct.len(),
            r.wire_small,
            r.wire_bulk,
            r.real,
            r.padding,
            r.padding as f64 / r.real as f64
        );
    }
}
