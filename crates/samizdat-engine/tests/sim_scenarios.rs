//! Acceptance scenarios: whole networks of engines in the deterministic simulator.
//!
//! Every scenario runs from a fixed seed, so a failure replays exactly. Run with
//! `cargo test -p samizdat-engine --test sim_scenarios -- --nocapture` to see the figures.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{
    Blob, Corrupting, EngineHost, FRAME_OVERHEAD, GROUP_HEADER, OUTBOARD_HEADER, addr, pinned,
    source_id, spawn, spawn_with,
};
use samizdat_content::GROUP_SIZE;
use samizdat_engine::{MemorySource, Offence, Resume};
use samizdat_session::Shaping;
use samizdat_sim::{LinkConfig, Sim, SimConfig};
use samizdat_wire::MAX_LEAVES_PER_MESSAGE;

const MIB: usize = 1 << 20;

fn link(latency_ms: u64, jitter_ms: u64, loss: f64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(latency_ms),
        jitter: Duration::from_millis(jitter_ms),
        loss,
        ..LinkConfig::default()
    }
}

/// A pseudo-random value in `0..1` for scenario decisions, from the simulation seed.
fn unit(sim: &Sim<EngineHost>, salt: u64) -> f64 {
    let x = sim.node_seed(usize::MAX - salt as usize);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn host(sim: &Sim<EngineHost>, node: usize) -> &EngineHost {
    sim.host(node).unwrap()
}

/// Wire bytes of the messages that carry `blob`'s outboard.
fn outboard_wire_bytes(blob: &Blob) -> u64 {
    let leaves = u64::from(blob.groups());
    let pages = leaves.div_ceil(MAX_LEAVES_PER_MESSAGE as u64);
    leaves * 32 + pages * (OUTBOARD_HEADER + FRAME_OVERHEAD)
}

/// Wire bytes of the `Group` messages for `indices`.
fn group_wire_bytes(blob: &Blob, indices: impl Iterator<Item = u32>) -> u64 {
    indices.map(|i| blob.group_len(i) + GROUP_HEADER + FRAME_OVERHEAD).sum()
}

/// Handshake, `Hello`, `Addr`, pings: everything on a connection that is neither groups nor
/// outboard stays below this.
const CONTROL_SLACK: u64 = 1024;

/// (a) 64 MiB over a 50 ms, 5 % loss link; the link is cut part-way, both ends notice, and the
/// download resumes from what the fetcher verified. At most one partly received group is sent
/// again.
#[test]
fn lossy_64mib_with_cut_and_resume() {
    let wall = Instant::now();
    let seed = 0x5a_1d_a7;
    let mut config = SimConfig::default();
    // 100 Mbit/s x 100 ms RTT is ~960 segments in flight.
    config.transport.window = 1024;
    config.transport.recv_window = 4096;
    let mut sim = Sim::new(seed, config);
    let blob = Blob::new(64 * MIB, seed);
    // Without padding: what this counts as waste is what the engine received and did not
    // keep, and padding (within its own budget, tested in the session) is neither.
    let unshaped = |c: &mut samizdat_engine::EngineConfig| c.session.shaping = Shaping::OFF;
    let seeder = spawn_with(&mut sim, Box::new(blob.source()), unshaped);
    let fetcher = spawn_with(&mut sim, Box::new(MemorySource::new()), unshaped);
    let lossy = LinkConfig { bandwidth_bps: 100_000_000, ..link(50, 0, 0.05) };
    sim.set_link(seeder, fetcher, lossy).unwrap();
    let root = blob.root;
    let groups = blob.groups() as usize;
    let encoded = wall.elapsed();

    let frac = 0.2 + 0.6 * unit(&sim, 1);
    let cut_after = (groups as f64 * frac) as usize;
    let spec = blob.spec();
    let pinned_seeder = pinned(&sim, seeder);
    sim.with_host(fetcher, |h, now| {
        h.engine.fetch(now, spec, vec![pinned_seeder.clone()], Resume::default());
    })
    .unwrap();
    let limit = Duration::from_secs(120);
    assert!(
        sim.run_until_cond(limit, |s| host(s, fetcher).have(&root) >= cut_after),
        "no progress to the cut point"
    );

    // Cut. Everything in flight on the link is lost.
    let cut_at = sim.elapsed();
    let link_at_cut = sim.link_stats(seeder, fetcher);
    let h = host(&sim, fetcher);
    let rx_before = h.rx_total;
    let before: Vec<u32> = h.disk[&root].keys().copied().collect();
    sim.cut(seeder, fetcher).unwrap();
    let noticed = sim.run_until_cond(cut_at + Duration::from_secs(60), |s| {
        !host(s, fetcher).down.is_empty() && !host(s, seeder).down.is_empty()
    });
    assert!(noticed, "the ends did not notice the cut");
    let noticed_after = sim.elapsed() - cut_at;
    assert_eq!(
        sim.link_stats(seeder, fetcher).delivered_payload_bytes,
        link_at_cut.delivered_payload_bytes
    );
    sim.heal(seeder, fetcher).unwrap();

    // Resume from the fetcher's "disk", as a restarted node would.
    let resume = host(&sim, fetcher).resume(&root);
    assert_eq!(resume.have.iter().filter(|h| **h).count(), before.len());
    let resumed_at = sim.elapsed();
    let spec = blob.spec();
    let pinned_seeder = pinned(&sim, seeder);
    sim.with_host(fetcher, |h, now| {
        // The first attempt is still registered (the engine is redialling for it; `fetch`
        // would be a no-op). Start over from the disk, as a node asked to fetch again does.
        h.engine.cancel(&root);
        h.engine.fetch(now, spec, vec![pinned_seeder.clone()], resume);
    })
    .unwrap();
    let done =
        sim.run_until_cond(resumed_at + limit, |s| host(s, fetcher).complete.contains(&root));
    assert!(done, "download did not complete after resume");
    let virt = sim.elapsed();

    let h = host(&sim, fetcher);
    assert!(h.file(&root).unwrap() == blob.bytes, "reassembled blob differs");
    assert!(h.reverified.is_empty(), "groups verified twice: {:?}", h.reverified);
    assert!(h.failed.is_empty());

    // (ii) Of what reached the fetcher's engine before the cut, how much was thrown away:
    // stream bytes minus verified groups, outboard and control traffic. Only the group that
    // was partly received at the cut may be missing (+ framing).
    let kept_before = group_wire_bytes(&blob, before.iter().copied()) + outboard_wire_bytes(&blob);
    let wasted = rx_before.saturating_sub(kept_before);
    let one_group = GROUP_SIZE as u64 + GROUP_HEADER + FRAME_OVERHEAD;
    // After the resume: only the missing groups (and a handshake) came over.
    let rx_after = h.rx_total - rx_before;
    let missing = (0..blob.groups()).filter(|i| before.binary_search(i).is_err());
    let needed_after = group_wire_bytes(&blob, missing);
    // The link view: payload the transport delivered before the cut that the engine never
    // saw (out-of-order segments behind a loss, duplicate retransmissions).
    let transport_discarded = link_at_cut.delivered_payload_bytes.saturating_sub(rx_before);
    let brief_wasted = link_at_cut.delivered_payload_bytes.saturating_sub(kept_before);
    let st = sim.link_stats(seeder, fetcher);
    let wall = wall.elapsed();
    println!(
        "(a) 64 MiB, 50 ms, 5% loss, 100 Mbit/s: cut at {:.0}% ({} of {groups} groups, {cut_at:?}), \
         noticed after {noticed_after:?}; done at virtual {virt:?}, wall {wall:?} (encode {encoded:?}); \
         goodput {:.1} Mbit/s; wasted at the engine {wasted} B (bound {} B); \
         transport-discarded before cut {transport_discarded} B (delivered-minus-kept {brief_wasted} B); \
         after resume received {rx_after} B for {needed_after} B of groups; \
         link 0->1 payload sent {} B, retransmitted {} B, lost {} segments",
        frac * 100.0,
        before.len(),
        blob.bytes.len() as f64 * 8.0 / (virt - noticed_after).as_secs_f64() / 1e6,
        one_group + CONTROL_SLACK,
        st.payload_bytes_sent,
        st.retransmitted_bytes,
        st.lost,
    );
    assert!(wasted <= one_group + CONTROL_SLACK, "wasted {wasted} B, more than one group");
    assert!(rx_after >= needed_after && rx_after - needed_after <= CONTROL_SLACK, "resent data");
}

/// Runs 1,000 engines, each dialling 3 others, until every session is up. Returns the trace
/// digest, the virtual time and the number of sessions.
fn thousand_handshakes(seed: u64) -> ([u8; 32], Duration, usize) {
    let n = 1000;
    let config = SimConfig { default_link: link(20, 20, 0.01), ..SimConfig::default() };
    let mut sim = Sim::new(seed, config);
    for _ in 0..n {
        spawn(&mut sim, Box::new(MemorySource::new()));
    }
    let mut dials = 0;
    for i in 0..n {
        let mut x = sim.node_seed(i);
        let mut peers = Vec::new();
        while peers.len() < 3 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let p = ((x >> 33) % n as u64) as usize;
            if p != i && !peers.contains(&p) {
                peers.push(p);
            }
        }
        for p in peers {
            let conn = sim.with_host(i, |h, now| h.engine.connect(now, addr(p))).unwrap();
            assert!(conn.is_some(), "node {i} refused to dial {p}");
            dials += 1;
        }
    }
    let expected = 2 * dials;
    let up = |s: &Sim<EngineHost>| (0..n).map(|i| host(s, i).up.len()).sum::<usize>();
    while up(&sim) < expected && sim.elapsed() < Duration::from_secs(60) {
        sim.run_for(Duration::from_millis(100));
    }
    assert_eq!(up(&sim), expected, "not every handshake completed");
    for i in 0..n {
        let h = host(&sim, i);
        assert!(h.down.is_empty(), "node {i} lost a connection: {:?}", h.down);
        assert!(h.engine.peers().iter().all(|p| p.established), "node {i}");
    }
    assert_eq!(sim.stats().host_errors, 0);
    (sim.trace_digest(), sim.elapsed(), expected)
}

/// (b) 1,000 nodes connect and authenticate; the run replays exactly from its seed.
#[test]
fn thousand_nodes_handshake_and_replay() {
    let wall = Instant::now();
    let (a, virt, sessions) = thousand_handshakes(1000);
    let first = wall.elapsed();
    let (b, _, _) = thousand_handshakes(1000);
    let (c, _, _) = thousand_handshakes(1001);
    println!(
        "(b) 1000 nodes, {sessions} session ends up at virtual {virt:?}; wall {first:?} per run, \
         {:?} for three runs",
        wall.elapsed()
    );
    assert_eq!(a, b, "same seed, different trace");
    assert_ne!(a, c, "different seed, same trace");
}

/// (c) A peer serving corrupt groups is caught and penalised; the honest peer completes
/// the download. Holds for every seed tried.
#[test]
fn corrupt_peer_is_penalised_and_download_completes() {
    for seed in [11, 12, 13, 14, 15] {
        let wall = Instant::now();
        let mut sim = Sim::new(seed, SimConfig::default());
        let blob = Blob::new(8 * MIB, seed);
        let offset = (sim.node_seed(0) % 3) as u32;
        let bad = Corrupting { inner: blob.source(), every: 3, offset };
        let liar = spawn(&mut sim, Box::new(bad));
        let honest = spawn(&mut sim, Box::new(blob.source()));
        let fetcher = spawn(&mut sim, Box::new(MemorySource::new()));
        sim.set_link(liar, fetcher, link(30, 10, 0.02)).unwrap();
        sim.set_link(honest, fetcher, link(40, 10, 0.02)).unwrap();
        let root = blob.root;
        let spec = blob.spec();
        let pinned_liar = pinned(&sim, liar);
        let pinned_honest = pinned(&sim, honest);
        sim.with_host(fetcher, |h, now| {
            h.engine.fetch(
                now,
                spec,
                vec![pinned_liar.clone(), pinned_honest.clone()],
                Resume::default(),
            );
        })
        .unwrap();
        let done = sim.run_until_cond(Duration::from_secs(120), |s| {
            host(s, fetcher).complete.contains(&root)
        });
        assert!(done, "seed {seed}: download did not complete");
        let h = host(&sim, fetcher);
        assert!(h.file(&root).unwrap() == blob.bytes, "seed {seed}: blob differs");
        let liar_id = source_id(&sim, liar);
        let honest_id = source_id(&sim, honest);
        assert!(
            h.penalized.contains(&(liar_id, Offence::CorruptGroup)),
            "seed {seed}: liar not penalised: {:?}",
            h.penalized
        );
        assert!(h.penalized.iter().all(|(p, _)| *p == liar_id), "seed {seed}: honest penalised");
        assert!(h.engine.reputation(&liar_id) < 0);
        assert_eq!(h.engine.reputation(&honest_id), 0);
        let by = h.served_by(&root);
        println!(
            "(c) seed {seed}: done at virtual {:?}, wall {:?}; liar reputation {}, groups from liar \
             {}, from honest {}",
            sim.elapsed(),
            wall.elapsed(),
            h.engine.reputation(&liar_id),
            by.get(&liar_id).copied().unwrap_or(0),
            by.get(&honest_id).copied().unwrap_or(0),
        );
    }
}

/// (d) Three seeders, one fetcher: groups arrive from all three.
#[test]
fn multi_source_download_uses_every_seeder() {
    let wall = Instant::now();
    let seed = 21;
    let mut sim = Sim::new(seed, SimConfig::default());
    let blob = Blob::new(16 * MIB, seed);
    let seeders: Vec<usize> = (0..3).map(|_| spawn(&mut sim, Box::new(blob.source()))).collect();
    let fetcher = spawn(&mut sim, Box::new(MemorySource::new()));
    for (k, &s) in seeders.iter().enumerate() {
        let cfg = LinkConfig { bandwidth_bps: 20_000_000, ..link(20 + 15 * k as u64, 5, 0.01) };
        sim.set_link(s, fetcher, cfg).unwrap();
    }
    let root = blob.root;
    let peers = seeders.iter().map(|&s| pinned(&sim, s)).collect();
    let spec = blob.spec();
    sim.with_host(fetcher, |h, now| h.engine.fetch(now, spec, peers, Resume::default())).unwrap();
    let done =
        sim.run_until_cond(Duration::from_secs(120), |s| host(s, fetcher).complete.contains(&root));
    assert!(done, "download did not complete");
    let h = host(&sim, fetcher);
    assert!(h.file(&root).unwrap() == blob.bytes);
    assert!(h.reverified.is_empty());
    let by = h.served_by(&root);
    let counts: Vec<usize> =
        seeders.iter().map(|&s| by.get(&source_id(&sim, s)).copied().unwrap_or(0)).collect();
    let virt = sim.elapsed();
    println!(
        "(d) 16 MiB from 3 seeders (20 Mbit/s each): virtual {virt:?}, wall {:?}, goodput \
         {:.1} Mbit/s, groups per seeder {counts:?}",
        wall.elapsed(),
        blob.bytes.len() as f64 * 8.0 / virt.as_secs_f64() / 1e6
    );
    assert!(counts.iter().all(|&c| c > 0), "a seeder served nothing: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), blob.groups() as usize);
    // Faster than any single 20 Mbit/s link could carry it.
    assert!(virt.as_secs_f64() < blob.bytes.len() as f64 * 8.0 / 20e6);
}

/// (e) A seeder crashes mid-transfer; the groups it had in flight go back to the pool and the
/// other seeder finishes the download, without restarting the fetch.
#[test]
fn seeder_crash_mid_transfer_other_seeder_finishes() {
    let wall = Instant::now();
    let seed = 31;
    let mut sim = Sim::new(seed, SimConfig::default());
    let blob = Blob::new(16 * MIB, seed);
    let doomed = spawn(&mut sim, Box::new(blob.source()));
    let survivor = spawn(&mut sim, Box::new(blob.source()));
    let fetcher = spawn(&mut sim, Box::new(MemorySource::new()));
    let cfg = LinkConfig { bandwidth_bps: 20_000_000, ..link(25, 5, 0.02) };
    sim.set_link(doomed, fetcher, cfg.clone()).unwrap();
    sim.set_link(survivor, fetcher, cfg).unwrap();
    let root = blob.root;
    let groups = blob.groups() as usize;
    let spec = blob.spec();
    let pinned_doomed = pinned(&sim, doomed);
    let pinned_survivor = pinned(&sim, survivor);
    sim.with_host(fetcher, |h, now| {
        h.engine.fetch(
            now,
            spec,
            vec![pinned_doomed.clone(), pinned_survivor.clone()],
            Resume::default(),
        );
    })
    .unwrap();
    let crash_after = (groups as f64 * (0.2 + 0.4 * unit(&sim, 2))) as usize;
    let limit = Duration::from_secs(120);
    assert!(sim.run_until_cond(limit, |s| host(s, fetcher).have(&root) >= crash_after));
    let doomed_id = source_id(&sim, doomed);
    let survivor_id = source_id(&sim, survivor);
    let from_doomed = host(&sim, fetcher).served_by(&root).get(&doomed_id).copied().unwrap_or(0);
    assert!(from_doomed > 0, "the doomed seeder had not served anything yet");
    let crash_at = sim.elapsed();
    let verified_at_crash = host(&sim, fetcher).verified.len();
    sim.crash(doomed).unwrap();
    let done = sim.run_until_cond(crash_at + limit, |s| host(s, fetcher).complete.contains(&root));
    assert!(done, "download did not complete after the crash");
    let h = host(&sim, fetcher);
    assert!(h.file(&root).unwrap() == blob.bytes);
    assert!(h.reverified.is_empty());
    assert!(h.failed.is_empty());
    let noticed = h
        .down
        .iter()
        .find(|(_, p, _)| p.map(samizdat_engine::SourceId::Node) == Some(doomed_id))
        .map(|d| d.2);
    let noticed = noticed.expect("crash never noticed") - sim.instant(crash_at);
    // Segments the crashed node had already put on the wire still arrive; after that, every
    // group comes from the survivor.
    let after = &h.verified[verified_at_crash..];
    let on_the_wire = sim.instant(crash_at + Duration::from_secs(1));
    let late = after.iter().filter(|v| v.from == doomed_id);
    assert!(late.clone().all(|v| v.at < on_the_wire), "groups from a crashed node");
    assert!(after.iter().any(|v| v.from == survivor_id));
    println!(
        "(e) 16 MiB, crash at {crash_at:?} after {crash_after} of {groups} groups ({from_doomed} \
         from the crashed seeder): done at virtual {:?}, wall {:?}; {} groups after the crash \
         ({} of them already on the wire from the crashed seeder); crash noticed after {noticed:?}",
        sim.elapsed(),
        wall.elapsed(),
        after.len(),
        late.count(),
    );
}

/// A seeder that stops serving but keeps its connection alive (it still answers pings) must
/// not pin the download: its requests should time out and go to the other seeder.
/// (Regression: requests used to have no timeout, and `poll_timeout` returned a past stall
/// deadline forever, which made drivers spin.)
#[test]
fn silent_seeder_does_not_pin_the_download() {
    let seed = 41;
    let mut sim = Sim::new(seed, SimConfig::default());
    let blob = Blob::new(4 * MIB, seed);
    let silent = spawn(&mut sim, Box::new(blob.source()));
    let honest = spawn(&mut sim, Box::new(blob.source()));
    let fetcher = spawn(&mut sim, Box::new(MemorySource::new()));
    sim.with_host(silent, |h, _| h.withhold_writes = true).unwrap();
    sim.set_link(silent, fetcher, link(20, 0, 0.0)).unwrap();
    sim.set_link(honest, fetcher, link(40, 0, 0.0)).unwrap();
    let root = blob.root;
    let spec = blob.spec();
    let pinned_silent = pinned(&sim, silent);
    let pinned_honest = pinned(&sim, honest);
    sim.with_host(fetcher, |h, now| {
        h.engine.fetch(
            now,
            spec,
            vec![pinned_silent.clone(), pinned_honest.clone()],
            Resume::default(),
        );
    })
    .unwrap();
    let done =
        sim.run_until_cond(Duration::from_secs(300), |s| host(s, fetcher).complete.contains(&root));
    let h = host(&sim, fetcher);
    println!(
        "silent seeder: complete {done}, {} of {} groups at virtual {:?}",
        h.have(&root),
        blob.groups(),
        sim.elapsed()
    );
    assert!(done, "download pinned by a silent seeder");
    assert!(h.file(&root).unwrap() == blob.bytes);
}

/// A reset of the only connection does not lose the download: the engine redials the peers
/// it was given, and a second `fetch` with the on-disk state (what a node does when asked
/// again) neither fails nor fetches anything twice.
#[test]
fn download_survives_connection_reset_and_fetch_again() {
    let seed = 51;
    let mut sim = Sim::new(seed, SimConfig::default());
    let blob = Blob::new(4 * MIB, seed);
    let seeder = spawn(&mut sim, Box::new(blob.source()));
    let fetcher = spawn(&mut sim, Box::new(MemorySource::new()));
    sim.set_link(seeder, fetcher, link(30, 0, 0.01)).unwrap();
    let root = blob.root;
    let spec = blob.spec();
    let pinned_seeder = pinned(&sim, seeder);
    sim.with_host(fetcher, |h, now| {
        h.engine.fetch(now, spec, vec![pinned_seeder.clone()], Resume::default());
    })
    .unwrap();
    let third = blob.groups() as usize / 3;
    assert!(sim.run_until_cond(Duration::from_secs(60), |s| host(s, fetcher).have(&root) >= third));
    // Both ends see the connection go at once.
    sim.reset_link(seeder, fetcher).unwrap();
    assert_eq!(host(&sim, fetcher).down.len(), 1);
    let retry_at = sim.elapsed();
    let resume = host(&sim, fetcher).resume(&root);
    let spec = blob.spec();
    let pinned_seeder = pinned(&sim, seeder);
    sim.with_host(fetcher, |h, now| h.engine.fetch(now, spec, vec![pinned_seeder.clone()], resume))
        .unwrap();
    let done = sim.run_until_cond(retry_at + Duration::from_secs(30), |s| {
        let h = host(s, fetcher);
        h.complete.contains(&root) || !h.failed.is_empty()
    });
    let h = host(&sim, fetcher);
    println!(
        "reset + fetch again: complete {}, failed {}, {} of {} groups, {:?} after the retry",
        h.complete.contains(&root),
        h.failed.len(),
        h.have(&root),
        blob.groups(),
        sim.elapsed() - retry_at
    );
    assert!(done && h.complete.contains(&root), "the download did not resume");
    assert!(h.file(&root).unwrap() == blob.bytes);
    assert!(h.reverified.is_empty(), "groups verified twice: {:?}", h.reverified);
}
