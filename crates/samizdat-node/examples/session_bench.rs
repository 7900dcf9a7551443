//! Benchmark: bulk data through an encrypted session between two processes over loopback TCP,
//! against raw TCP in the same run.
//!
//! `cargo run --release -p samizdat-node --example session_bench -- [SIZE_MIB] [ROUNDS] [--pin]`
//!
//! With `--pin` the sender runs on CPU 0 and every receiver on CPU 1 (through `taskset`), for
//! both the raw and the session runs: on a small shared machine this removes most of the noise
//! that comes from the scheduler placing both processes on one core.
//!
//! Each round runs raw TCP then the session, each with a fresh receiver process (this binary
//! re-executed with `--recv`). The receiver reports its throughput, CPU seconds and peak RSS.
//! The medians over the rounds are printed as one JSON line at the end.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use samizdat_identity::Identity;
use samizdat_session::{Session, SessionConfig, SessionEvent};
use samizdat_wire::{GROUP_SIZE, Message, TransferMsg};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Instant;

const T0: u64 = 1_800_000_000;

fn cpu_seconds() -> f64 {
    // utime and stime are fields 14 and 15 of /proc/self/stat, in clock ticks (100 Hz).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    // After the ')' come fields #3 (state) onwards, so utime (#14) is at index 11.
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (field(11) + field(12)) as f64 / 100.0
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn receiver(mode: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    std::io::stdout().flush().unwrap();
    let (mut s, _) = listener.accept().unwrap();
    s.set_nodelay(true).unwrap();
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let mut buf = vec![0u8; 256 * 1024];
    let mut payload: u64 = 0;
    if mode == "raw" {
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            payload += n as u64;
        }
    } else {
        let cfg = SessionConfig::new(Identity::from_secret_bytes(&[2; 32]).unwrap());
        let mut session = Session::responder(cfg, [2; 32], T0, Instant::now());
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            session.handle_input(Instant::now(), &buf[..n]).unwrap();
            while let Some(out) = session.poll_transmit() {
                s.write_all(&out).unwrap();
            }
            while let Some(ev) = session.poll_event() {
                if let SessionEvent::Message(Message::Transfer(TransferMsg::Group {
                    data, ..
                })) = ev
                {
                    payload += data.len() as u64;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"bytes\":{payload},\"seconds\":{secs},\"cpu\":{},\"peak_rss_kib\":{}}}",
        cpu_seconds() - cpu0,
        peak_rss_kib()
    );
}

struct Run {
    mib_s: f64,
    recv_cpu: f64,
    send_cpu: f64,
    rss_kib: u64,
}

fn run(mode: &str, size: u64, pin: bool) -> Run {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let mut child = cmd.args(["--recv", mode]).stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    let cpu0 = cpu_seconds();
    if mode == "raw" {
        let block = vec![0x5au8; 256 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            s.write_all(&block[..n]).unwrap();
            left -= n as u64;
        }
    } else {
        let cfg = SessionConfig::new(Identity::from_secret_bytes(&[1; 32]).unwrap());
        let mut session = Session::initiator(cfg, [1; 32], T0, Instant::now()).unwrap();
        let mut rbuf = vec![0u8; 4096];
        while !session.is_established() {
            while let Some(b) = session.poll_transmit() {
                s.write_all(&b).unwrap();
            }
            let n = s.read(&mut rbuf).unwrap();
            session.handle_input(Instant::now(), &rbuf[..n]).unwrap();
            while let Some(b) = session.poll_transmit() {
                s.write_all(&b).unwrap();
            }
            while session.poll_event().is_some() {}
        }
        let mut msg = Message::Transfer(TransferMsg::Group {
            req: 1,
            index: 0,
            data: vec![0x5a; GROUP_SIZE],
        });
        let mut left = size;
        let mut i = 0u32;
        let mut spare = Vec::new();
        while left > 0 {
            // Eight groups (256 KiB) per write, as the node's writer batches them.
            for _ in 0..8 {
                if left == 0 {
                    break;
                }
                let n = left.min(GROUP_SIZE as u64) as usize;
                if let Message::Transfer(TransferMsg::Group { index, data, .. }) = &mut msg {
                    *index = i;
                    data.truncate(n);
                }
                session.send(&msg).unwrap();
                left -= n as u64;
                i += 1;
            }
            let b = session.poll_transmit_reusing(std::mem::take(&mut spare)).unwrap();
            s.write_all(&b).unwrap();
            spare = b;
        }
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let send_cpu = cpu_seconds() - cpu0;
    let mut report = String::new();
    out.read_line(&mut report).unwrap();
    child.wait().unwrap();
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["bytes"].as_u64().unwrap(), size, "receiver got everything");
    let secs = v["seconds"].as_f64().unwrap();
    Run {
        mib_s: size as f64 / (1 << 20) as f64 / secs,
        recv_cpu: v["cpu"].as_f64().unwrap(),
        send_cpu,
        rss_kib: v["peak_rss_kib"].as_u64().unwrap(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--recv") {
        receiver(&args[2]);
        return;
    }
    let pin = args.iter().any(|a| a == "--pin");
    if pin && std::env::var_os("SESSION_BENCH_PINNED").is_none() {
        // Re-run ourselves on CPU 0; receivers go to CPU 1.
        let status = Command::new("taskset")
            .args(["-c", "0"])
            .arg(std::env::current_exe().unwrap())
            .args(&args[1..])
            .env("SESSION_BENCH_PINNED", "1")
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let numbers: Vec<&String> = args.iter().skip(1).filter(|a| !a.starts_with("--")).collect();
    let size_mib: u64 = numbers.first().and_then(|a| a.parse().ok()).unwrap_or(1024);
    let rounds: usize = numbers.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let size = size_mib << 20;
    let gib = size as f64 / (1u64 << 30) as f64;
    let (mut ratios, mut raw, mut sess, mut cpu, mut raw_cpu, mut rss) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let r = run("raw", size, pin);
        let e = run("session", size, pin);
        println!(
            "round {round}: raw {:.0} MiB/s, session {:.0} MiB/s (ratio {:.2}), session cpu send {:.2} s + recv {:.2} s, receiver peak RSS {} KiB",
            r.mib_s,
            e.mib_s,
            e.mib_s / r.mib_s,
            e.send_cpu,
            e.recv_cpu,
            e.rss_kib
        );
        ratios.push(e.mib_s / r.mib_s);
        raw.push(r.mib_s);
        sess.push(e.mib_s);
        cpu.push((e.send_cpu + e.recv_cpu) / gib);
        raw_cpu.push((r.send_cpu + r.recv_cpu) / gib);
        rss.push(e.rss_kib as f64);
    }
    println!(
        "{{\"size_mib\":{size_mib},\"rounds\":{rounds},\"pinned\":{pin},\"raw_mib_s\":{:.0},\"session_mib_s\":{:.0},\"ratio\":{:.3},\"session_cpu_s_per_gib\":{:.2},\"raw_cpu_s_per_gib\":{:.2},\"receiver_peak_rss_mib\":{:.1}}}",
        median(raw),
        median(sess),
        median(ratios),
        median(cpu),
        median(raw_cpu),
        median(rss) / 1024.0
    );
}
