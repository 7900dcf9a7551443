//! Per-transport throughput on loopback, in one run: the same bytes through plain TCP (the
//! baseline), veil, the HTTPS camouflage transport, meek (request/response over HTTPS) and obfs4 (through the real `obfs4proxy`),
//! reporting the median MB/s and the CPU-seconds per GiB summed over this process and the
//! transport's helper processes. A benchmark, not a timed test: run it with
//!
//! ```sh
//! cargo test -p samizdat-transport --test throughput -- --ignored --nocapture
//! ```
//!
//! (`THROUGHPUT_MIB`, default 256, sets the size; `THROUGHPUT_RUNS`, default 3, the runs.)
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use samizdat_transport::https::{Decoy, HttpsServerConfig, ServerCert};
use samizdat_transport::pt::{PtTransport, obfs4_keys};
use samizdat_transport::veil::{ServerKey, VeilTransport};
use samizdat_transport::{
    BoxStream, HttpsTransport, Incoming, Listener, MeekTransport, TcpTransport, Transport,
};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// CPU time (user + system, seconds) of a process from `/proc/PID/stat`.
fn cpu_of(pid: &str) -> Option<(f64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ppid: u32 = f.get(1)?.parse().ok()?;
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some((ticks / 100.0, ppid))
}

/// CPU seconds of this process and its children (the transports' helper programs).
fn cpu_seconds() -> f64 {
    let me = std::process::id();
    let mut total = cpu_of("self").map_or(0.0, |(c, _)| c);
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.bytes().all(|b| b.is_ascii_digit()) {
            if let Some((cpu, ppid)) = cpu_of(&name) {
                if ppid == me {
                    total += cpu;
                }
            }
        }
    }
    total
}

/// Sends `bytes` one way through a fresh stream, from the dialler (or, with `down`, to it);
/// returns (seconds, CPU-seconds).
async fn one_way(
    t: &dyn Transport,
    listener: &mut Box<dyn Listener>,
    bytes: usize,
    down: bool,
) -> (f64, f64) {
    let local = listener.local_addr();
    let addr = local.split_once('/').unwrap().1.to_owned();
    let (dialled, accepted) = tokio::join!(t.dial(&addr), listener.accept());
    let (mut a, mut b) = (dialled.unwrap(), accepted.unwrap().stream);
    if down {
        std::mem::swap(&mut a, &mut b);
    }
    let chunk = vec![0x5au8; 256 << 10];
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0;
        while got < bytes {
            let n = b.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream ended early");
            got += n;
        }
        b
    });
    let mut sent = 0;
    while sent < bytes {
        a.write_all(&chunk).await.unwrap();
        sent += chunk.len();
    }
    a.flush().await.unwrap();
    let _b = reader.await.unwrap();
    (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0)
}

/// `meek` to an `https` listener (which serves it), without fronting.
struct MeekToHttps(HttpsTransport);

struct MeekListener(Box<dyn Listener>);

impl Listener for MeekListener {
    fn local_addr(&self) -> String {
        let https = self.0.local_addr();
        format!("meek/{}&front=www.example.org", https.strip_prefix("https/").unwrap())
    }

    fn accept(&mut self) -> samizdat_transport::BoxFuture<'_, std::io::Result<Incoming>> {
        self.0.accept()
    }
}

impl Transport for MeekToHttps {
    fn name(&self) -> &'static str {
        "meek"
    }

    fn dial(&self, addr: &str) -> samizdat_transport::BoxFuture<'_, std::io::Result<BoxStream>> {
        MeekTransport.dial(addr)
    }

    fn listen(
        &self,
        addr: &str,
    ) -> samizdat_transport::BoxFuture<'_, std::io::Result<Box<dyn Listener>>> {
        let addr = addr.to_owned();
        Box::pin(async move {
            let l = self.0.listen(&addr).await?;
            Ok(Box::new(MeekListener(l)) as Box<dyn Listener>)
        })
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn throughput_per_transport() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let mib = env("THROUGHPUT_MIB", 256);
    let runs = env("THROUGHPUT_RUNS", 3);
    let bytes = mib << 20;
    let cert = ServerCert::generate("www.example.org").unwrap();
    let https = HttpsTransport::with_server(
        HttpsServerConfig::new([9; 32], "www.example.org", cert, Decoy::Welcome).unwrap(),
    )
    .unwrap();
    let cert = ServerCert::generate("www.example.org").unwrap();
    let meek = MeekToHttps(
        HttpsTransport::with_server(
            HttpsServerConfig::new([9; 32], "www.example.org", cert, Decoy::Welcome).unwrap(),
        )
        .unwrap(),
    );
    let obfs4 = PtTransport::with_server("obfs4", "/usr/bin/obfs4proxy", obfs4_keys());
    let veil = VeilTransport::with_server(ServerKey::from_secret([3; 32]));
    let mut transports: Vec<(&str, Box<dyn Transport>)> = vec![
        ("tcp", Box::new(TcpTransport)),
        ("veil", Box::new(veil)),
        ("https", Box::new(https)),
        ("meek", Box::new(meek)),
    ];
    if std::path::Path::new("/usr/bin/obfs4proxy").exists() {
        transports.push(("obfs4", Box::new(obfs4)));
    }
    let mut base = None;
    for (name, t) in &transports {
        let mut listener = t.listen("127.0.0.1:0").await.unwrap();
        // One warm-up stream (starts helper programs, fills caches).
        // meek is asymmetric (an answer carries more than a request): measured downstream,
        // the way a fetch's data goes; the others upstream.
        let down = *name == "meek";
        one_way(t.as_ref(), &mut listener, 8 << 20, down).await;
        let (mut rates, mut cpus) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let (secs, cpu) = one_way(t.as_ref(), &mut listener, bytes, down).await;
            rates.push(bytes as f64 / secs / 1e6);
            cpus.push(cpu / (bytes as f64 / f64::from(1u32 << 30)));
        }
        let (rate, cpu) = (median(rates), median(cpus));
        let base_rate = *base.get_or_insert(rate);
        println!(
            "{{\"transport\":\"{name}\",\"mib\":{mib},\"runs\":{runs},\"median_mb_s\":{rate:.0},\"ratio_to_tcp\":{:.3},\"cpu_s_per_gib\":{cpu:.2}}}",
            rate / base_rate
        );
    }
}
