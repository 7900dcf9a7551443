//! `samizdat-lab`: runs named, seeded scenarios over simulated networks and prints what they
//! measured, as one JSON object with `--json`. Not part of the shipped `samizdat` binary.
//!
//! Every run is determined by its `--seed`: the same command prints the same numbers, so a
//! figure in BENCHMARKS.md or a failure can be replayed exactly.
//!
//! ```text
//! samizdat-lab dht-sybil --nodes 10000 --sybil 0.2 --seed 1 --json
//! samizdat-lab dht-sybil --nodes 10000 --sybil 0.2 --seed 1 --disjoint 1 --json
//! samizdat-lab dht-churn --nodes 10000 --churn-per-hour 0.3 --seed 1 --json
//! samizdat-lab discovery --block bootstrap --seed 1 --json
//! samizdat-lab discovery --block all --seed 1 --json
//! samizdat-lab dht-contact --rounds 2000 --json
//! samizdat-lab censor --from 10.78.1.0/24 --port 15000 --block-probability 1
//! samizdat-lab censor --from 10.78.1.0/24 --block-probability 0 --block-sni www.example.org
//! ```
//!
//! `censor` is not a simulation: run as root on a Linux router (a network namespace), it
//! applies the fully-encrypted rules to the real TCP flows it forwards (see
//! `samizdat_lab::censor`).
#![forbid(unsafe_code)]

mod contact;
mod discovery;

use clap::{Parser, Subcommand};
use samizdat_dht::scenario::{ChurnParams, SybilParams, run_churn, run_sybil};
use std::time::Instant;

/// Seeded whole-network scenarios for Samizdat.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Lookups in a DHT where a fraction of the nodes are colluding Sybils that answer every
    /// lookup only with each other (an eclipse attempt).
    DhtSybil {
        /// Nodes in the network, Sybils included.
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        /// Fraction of the nodes that are Sybils (0..1).
        #[arg(long, default_value_t = 0.2, value_parser = fraction)]
        sybil: f64,
        /// Disjoint lookup paths (1 is plain Kademlia, without the S/Kademlia hardening).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=16))]
        disjoint: u8,
        /// Node lookups to measure.
        #[arg(long, default_value_t = 1000)]
        lookups: usize,
        /// Records published and then looked up by other nodes.
        #[arg(long, default_value_t = 300)]
        value_lookups: usize,
        /// Kademlia's bucket size k.
        #[arg(long, default_value_t = 20)]
        k: usize,
        /// The seed everything derives from.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Lookups and records while a fraction of the nodes leave and as many fresh ones join
    /// every simulated hour.
    DhtChurn {
        /// Nodes online at any time.
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        /// Fraction of the nodes replaced per simulated hour (0..1).
        #[arg(long, default_value_t = 0.3, value_parser = fraction)]
        churn_per_hour: f64,
        /// Simulated hours.
        #[arg(long, default_value_t = 3)]
        hours: usize,
        /// Records published at the start.
        #[arg(long, default_value_t = 100)]
        records: usize,
        /// Node lookups measured at the end.
        #[arg(long, default_value_t = 300)]
        lookups: usize,
        /// Disjoint lookup paths.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=16))]
        disjoint: u8,
        /// The seed everything derives from.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// A new node joins while a censor blocks some ways in; it runs every discovery method at
    /// once (bootstrap peers, peer exchange, overlay rendezvous points, the Mainline DHT, the
    /// LAN) and the report says what each found, and when.
    Discovery {
        /// Nodes in the network.
        #[arg(long, default_value_t = 1000)]
        nodes: usize,
        /// What the censor blocks: none, bootstrap, mainline, lan, all (or a comma list).
        #[arg(long, default_value = "bootstrap", value_parser = discovery::Block::parse)]
        block: discovery::Block,
        /// Online nodes on the newcomer's LAN.
        #[arg(long, default_value_t = 0)]
        lan_peers: usize,
        /// Fraction of peer-exchange records that are forged (0..1).
        #[arg(long, default_value_t = 0.0, value_parser = fraction)]
        poison: f64,
        /// Simulated seconds the run lasts at most.
        #[arg(long, default_value_t = 30)]
        until: u64,
        /// The seed everything derives from.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// What asking one DHT contact one question costs over a full session and as a
    /// one-round-trip exchange: bytes, messages, round trips and CPU time.
    DhtContact {
        /// Questions asked each way.
        #[arg(long, default_value_t = 1000)]
        rounds: usize,
        /// The seed the identities and messages derive from.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// A censor on a real router (root, nftables): every TCP flow from `--from` is redirected
    /// through it and judged by the fully-encrypted rules; a blocked flow's 3-tuple is dropped
    /// for `--block-for` seconds. Prints one JSON line per judged flow; runs until killed.
    Censor {
        /// The censored region, an IPv4 prefix.
        #[arg(long)]
        from: String,
        /// The local port flows are redirected to.
        #[arg(long, default_value_t = 15_000)]
        port: u16,
        /// Chance that a flow without an exemption is blocked (the paper measured 0.26).
        #[arg(long, default_value_t = 0.26, value_parser = probability)]
        block_probability: f64,
        /// Seconds a blocked 3-tuple stays blocked.
        #[arg(long, default_value_t = 180)]
        block_for: u64,
        /// Seeds the block rolls.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Reset every TLS flow whose SNI is this name or a name under it (repeatable).
        #[arg(long, value_name = "NAME")]
        block_sni: Vec<String>,
        /// Probe the server of every flow judged fully encrypted with a replay of its first
        /// payload and with random bytes; a server answering the replay is blocked.
        #[arg(long)]
        probe: bool,
    },
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a fraction from 0 up to (not including) 1")),
    }
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a probability from 0 to 1")),
    }
}

// A binary: the clock is read here, once, and handed to the sans-IO scenarios.
#[allow(clippy::disallowed_methods)]
fn main() {
    let started = Instant::now();
    // Virtual time in the scenarios is an offset from this instant; nothing waits on it.
    let base = started;
    match Cli::parse().scenario {
        Scenario::Censor { from, port, block_probability, block_for, seed, block_sni, probe } => {
            let config = samizdat_lab::censor::CensorConfig {
                port,
                from,
                block_probability,
                block_for: std::time::Duration::from_secs(block_for),
                seed,
                block_sni,
                probe,
            };
            if let Err(e) = samizdat_lab::censor::run(config, Box::new(std::io::stdout())) {
                eprintln!("samizdat-lab censor: {e}");
                std::process::exit(1);
            }
        }
        Scenario::DhtSybil { nodes, sybil, disjoint, lookups, value_lookups, k, seed, json } => {
            let params = SybilParams {
                nodes,
                sybil_fraction: sybil,
                disjoint_paths: usize::from(disjoint),
                lookups,
                value_lookups,
                k,
                seed,
                ..SybilParams::default()
            };
            let r = run_sybil(&params, base);
            if json {
                println!("{}", with_wall(&r.to_json(), started));
            } else {
                println!(
                    "dht-sybil: {} nodes ({} Sybils), d = {}: {} lookups, {:.1}% found the \
                     target, median {} hops; {} value lookups, {:.1}% found the record; \
                     {:.0} messages and {:.0} bytes per lookup",
                    r.nodes,
                    r.sybils,
                    r.disjoint_paths,
                    r.lookups,
                    r.lookup_success * 100.0,
                    r.median_hops,
                    r.value_lookups,
                    r.value_success * 100.0,
                    r.mean_messages,
                    r.mean_bytes
                );
            }
        }
        Scenario::DhtChurn {
            nodes,
            churn_per_hour,
            hours,
            records,
            lookups,
            disjoint,
            seed,
            json,
        } => {
            let params = ChurnParams {
                nodes,
                churn_per_hour,
                hours,
                records,
                lookups,
                disjoint_paths: usize::from(disjoint),
                seed,
                ..ChurnParams::default()
            };
            let r = run_churn(&params, base);
            if json {
                println!("{}", with_wall(&r.to_json(), started));
            } else {
                println!(
                    "dht-churn: {} nodes, {} replaced over {hours} h: {:.1}% of {} lookups \
                     found the target, {:.1}% of records found",
                    r.nodes,
                    r.churned,
                    r.lookup_success * 100.0,
                    r.lookups,
                    r.records_found * 100.0
                );
            }
        }
        Scenario::DhtContact { rounds, seed, json } => {
            let r = match contact::run(rounds, seed) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("dht-contact: {e}");
                    std::process::exit(1);
                }
            };
            if json {
                println!("{}", with_wall(&r.to_json(), started));
            } else {
                let ways = [
                    ("session", &r.session),
                    ("exchange", &r.exchange),
                    ("anonymous", &r.anonymous),
                ];
                for (name, c) in ways {
                    println!(
                        "{name}: {} bytes out, {} in, {} messages, {} round trips, {:.0} µs CPU",
                        c.bytes_out,
                        c.bytes_in,
                        c.messages,
                        c.round_trips(),
                        c.cpu_us
                    );
                }
            }
        }
        Scenario::Discovery { nodes, block, lan_peers, poison, until, seed, json } => {
            let params = discovery::Params {
                nodes,
                block,
                lan_peers,
                poison,
                until: std::time::Duration::from_secs(until),
                seed,
            };
            let r = discovery::run(params);
            if json {
                println!("{}", with_wall(&r.to_json(), started));
            } else {
                println!(
                    "discovery: {} nodes, blocked: {}; {} peers found ({} within 5 s), 8th at \
                     {:.1} s; refused {} records",
                    r.nodes, r.block, r.peers_found, r.peers_at_5s, r.seconds, r.records_refused
                );
                for m in &r.methods {
                    let first = m.first_peer_seconds.map_or("-".into(), |s| format!("{s:.2} s"));
                    let error = m.error.as_deref().unwrap_or("");
                    println!(
                        "  {}: {} peers, first {first}, ran {:.1} s {error}",
                        m.name, m.peers, m.elapsed_seconds
                    );
                }
            }
        }
    }
}

/// Adds the run's wall time (seconds, this machine) to a report's JSON object.
fn with_wall(report: &str, started: Instant) -> String {
    let body = report.strip_suffix('}').unwrap_or(report);
    format!("{body},\"wall_seconds\":{:.1}}}", started.elapsed().as_secs_f64())
}
